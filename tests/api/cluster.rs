//! A 3-node Restate cluster: the node whose ingress the service uses is killed while
//! orders are created; the service moves to the next node, no create fails, none is
//! lost or charged twice, and the node comes back.

use crate::helpers::{mug_order, Options, TestApp};
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
    app.cluster().nodes[0].crash().await;
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
    let node = &mut app.cluster().nodes[0];
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
