//! The embedded default: `order-service dev` with nothing configured.

use crate::helpers::mug_order;
use order_service::engine::process::free_port;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn dev_brings_everything_up_serves_an_order_and_stops_cleanly_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("order-dev-{}", uuid::Uuid::new_v4().simple()));
    let ports: Vec<u16> = (0..6).map(|_| free_port().unwrap()).collect();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_order-service"));
    cmd.arg("dev")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ORDER_DATA_DIR", &dir)
        .env("ORDER_HTTP_PORT", ports[0].to_string())
        .env("ORDER_RESTATE_ENDPOINT_PORT", ports[1].to_string())
        .env("ORDER_RESTATE_INGRESS_PORT", ports[2].to_string())
        .env("ORDER_RESTATE_ADMIN_PORT", ports[3].to_string())
        .env("ORDER_RESTATE_NODE_PORT", ports[4].to_string())
        .env("ORDER_SIM_PORT", ports[5].to_string())
        .env("ORDER_BIND_HOST", "127.0.0.1")
        .stdout(Stdio::piped())
        .stderr(if std::env::var_os("TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true);
    if let Some(bin) = std::env::var_os("RESTATE_SERVER_BIN") {
        cmd.env("RESTATE_SERVER_BIN", bin);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(120), lines.next_line()).await;
    let line = ready.expect("ready in time").unwrap().unwrap_or_default();
    assert_eq!(line, format!("ready http://127.0.0.1:{}", ports[0]));

    let http = reqwest::Client::new();
    let res = http
        .post(format!("http://127.0.0.1:{}/api/v1/orders", ports[0]))
        .json(&mug_order(Some("pm_card_visa")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let order: serde_json::Value = res.json().await.unwrap();
    assert_eq!(order["status"], "confirmed");
    // The simulator is up on its port with a ledger that saw the capture.
    let ledger: serde_json::Value = http
        .get(format!("http://127.0.0.1:{}/_sim/ledger", ports[5]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ledger["captures"].as_array().unwrap().len(), 1);

    // SIGTERM stops everything it started.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(40), child.wait())
        .await
        .expect("stops in time")
        .unwrap();
    assert!(status.success(), "{status}");
    for port in &ports[..5] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", *port)).is_err(),
            "port {port} still open after shutdown"
        );
    }
    assert!(
        dir.join("postgres").join("PG_VERSION").exists(),
        "the private cluster is kept"
    );
    let _ = std::fs::remove_dir_all(dir);
}
