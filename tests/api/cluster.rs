//! A 3-node Restate cluster: the node whose ingress the service uses is killed while
//! orders are created; the service moves to the next node, no create fails, none is
//! lost or charged twice, and the node comes back.

use crate::helpers::{admin_dsn, mug_order, Options, TestApp};
use order_stack::postgres::ServerDatabase;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Creates sent at once while the node dies.
const WORKERS: usize = 3;

#[tokio::test]
async fn creates_go_on_when_the_node_in_use_is_killed_and_it_rejoins() {
    let mut app = TestApp::spawn_with(Options {
        cluster: true,
        ..Options::default()
    })
    .await;
    // The first create may wait for the partitions to get a leader.
    let (status, first) = app.create(&mug_order(Some("pm_card_visa"))).await;
    assert!(status == 201 || status == 202, "{status} {first}");
    app.wait_for(
        first["id"].as_str().unwrap(),
        Duration::from_secs(30),
        |o| o["status"] == "confirmed",
    )
    .await;

    let running = Arc::new(AtomicBool::new(true));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (http, url) = (app.http.clone(), format!("{}/orders", app.api));
            let running = running.clone();
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while running.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let answer = http
                        .post(&url)
                        .json(&mug_order(Some("pm_card_visa")))
                        .send()
                        .await;
                    let (status, body) = match answer {
                        Ok(r) => (
                            r.status().as_u16(),
                            r.json::<serde_json::Value>().await.unwrap_or_default(),
                        ),
                        Err(e) => (0, serde_json::json!({ "error": e.to_string() })),
                    };
                    answers.push((sent, status, body, sent.elapsed()));
                }
                answers
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed_at = Instant::now();
    app.cluster()[0].crash().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    running.store(false, Ordering::Relaxed);
    let mut answers = Vec::new();
    for worker in workers {
        answers.extend(worker.await.unwrap());
    }

    let after: Vec<_> = answers.iter().filter(|a| a.0 >= killed_at).collect();
    let slowest = answers.iter().map(|a| a.3).max().unwrap_or_default();
    let slowest_after = after.iter().map(|a| a.3).max().unwrap_or_default();
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for answer in &answers {
        *statuses.entry(answer.1).or_default() += 1;
    }
    eprintln!(
        "{} creates ({} sent after the kill), answers {statuses:?}, slowest {slowest:?} \
         (after the kill {slowest_after:?})",
        answers.len(),
        after.len()
    );
    for (_, status, body, _) in &answers {
        assert!(
            *status == 201 || *status == 202,
            "a create failed: {status} {body}"
        );
    }
    assert!(after.len() >= WORKERS, "creates went on after the kill");

    // Every accepted order ends confirmed, charged exactly once.
    let mut ids: Vec<String> = answers
        .iter()
        .map(|(_, _, body, _)| body["id"].as_str().unwrap().to_owned())
        .collect();
    ids.push(first["id"].as_str().unwrap().to_owned());
    for id in &ids {
        app.wait_for(id, Duration::from_secs(60), |o| o["status"] == "confirmed")
            .await;
    }
    let ledger = app.settled_ledger().await;
    let mut captures: HashMap<&str, usize> = HashMap::new();
    for capture in &ledger.captures {
        *captures.entry(capture.order_id.as_str()).or_default() += 1;
    }
    for id in &ids {
        assert_eq!(captures.get(id.as_str()), Some(&1), "captures of {id}");
    }
    assert_eq!(
        ledger.captures.len(),
        ids.len(),
        "no capture for another order"
    );

    // The node rejoins: a service that knows only its ingress creates through it.
    let node = &mut app.cluster()[0];
    node.restart().await.expect("the killed node starts again");
    let ingress = node.ingress_url.clone();
    app.kill_service().await;
    app.set_service_env("ORDER_RESTATE_INGRESS_URL", ingress);
    app.start_service().await;
    let (status, order) = app.create(&mug_order(Some("pm_card_visa"))).await;
    assert_eq!(
        (status, order["status"].as_str()),
        (201, Some("confirmed")),
        "{order}"
    );
}

/// `order-stack cluster`: three nodes and two replicas come up, each replica
/// creates orders, and SIGTERM stops all of it.
#[tokio::test]
async fn the_cluster_command_serves_two_replicas_and_stops_on_sigterm() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let db_name = format!("order_cluster_{}", uuid::Uuid::new_v4().simple());
    let database = ServerDatabase::create(&admin_dsn(), &db_name)
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("order-cluster-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = std::fs::File::create(dir.join("cluster.log")).unwrap();
    let mut cmd = tokio::process::Command::new(crate::helpers::order_stack_bin());
    cmd.arg("cluster")
        .env("ORDER_DATA_DIR", &dir)
        .env("ORDER_DATABASE_DSN", &database.dsn);
    for var in [
        "ORDER_HTTP_PORT",
        "ORDER_GRPC_PORT",
        "ORDER_RESTATE_ENDPOINT_PORT",
        "ORDER_RESTATE_INGRESS_PORT",
        "ORDER_RESTATE_ADMIN_PORT",
        "ORDER_RESTATE_NODE_PORT",
        "ORDER_SIM_PORT",
    ] {
        cmd.env(var, "0");
    }
    for var in ["ORDER_RESTATE_INGRESS_URL", "ORDER_RESTATE_ADMIN_URL"] {
        cmd.env_remove(var);
    }
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(90), lines.next_line())
        .await
        .expect("ready in time")
        .unwrap()
        .unwrap_or_default();
    let replicas: Vec<&str> = ready.split(' ').skip(1).collect();
    assert!(
        ready.starts_with("ready ") && replicas.len() == 2,
        "{ready}; see {}",
        dir.join("cluster.log").display()
    );

    let http = reqwest::Client::new();
    for replica in &replicas {
        let url = format!("{replica}/api/v1/orders");
        let created = http
            .post(&url)
            .json(&mug_order(Some("pm_card_visa")))
            .send()
            .await
            .unwrap();
        assert!(matches!(created.status().as_u16(), 201 | 202));
        let order: serde_json::Value = created.json().await.unwrap();
        let id = order["id"].as_str().unwrap();
        let start = Instant::now();
        loop {
            let read: serde_json::Value = http
                .get(format!("{url}/{id}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap_or_default();
            if read["status"] == "confirmed" {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "{read}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id().unwrap() as i32, libc::SIGTERM);
    }
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stops in time")
        .unwrap();
    assert!(status.success(), "{status}");
    let text = without_colours(&std::fs::read_to_string(dir.join("cluster.log")).unwrap());
    let pids: Vec<u32> = text
        .split("pid=")
        .skip(1)
        .filter_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .filter_map(|pid| pid.parse::<u32>().ok())
        .collect();
    assert_eq!(pids.len(), 3, "the log names the three nodes' pids");
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "restate node {pid} still runs"
        );
    }

    let _ = std::fs::remove_dir_all(&dir);
    let _ = database.drop_database().await;
}

/// `text` without the terminal colour sequences of the log.
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
