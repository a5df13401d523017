//! Crash safety: a saga killed mid-step resumes and ends right, with one charge and
//! one reservation.

use crate::helpers::{mug_order, TestApp};
use order_sim::ReservationStatus;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn order_confirms_with_one_charge_when_the_service_dies_during_a_slow_payment() {
    let mut app = TestApp::spawn().await;
    let order_id = start_order_with_a_slow("payment", "charge", Some("reserve"), &app).await;

    app.kill_service().await;
    app.start_service().await;

    assert_confirmed_once(&app, &order_id).await;
}

#[tokio::test]
async fn order_confirms_with_one_charge_when_restate_dies_during_a_slow_payment() {
    let mut app = TestApp::spawn().await;
    let order_id = start_order_with_a_slow("payment", "charge", Some("reserve"), &app).await;

    app.kill_restate().await;
    // Let the slow capture land while the engine is down: its answer is lost.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    app.restart_restate().await;

    assert_confirmed_once(&app, &order_id).await;
}

#[tokio::test]
async fn order_confirms_once_when_the_service_dies_inside_any_other_downstream_step() {
    for (service, operation, previous) in [
        ("warehouse", "reserve", None),
        ("fulfillment", "create", Some("charge")),
        ("pubsub", "publish", Some("create")),
        ("notification", "notify", Some("publish")),
    ] {
        let mut app = TestApp::spawn().await;
        let order_id = start_order_with_a_slow(service, operation, previous, &app).await;

        app.kill_service().await;
        app.start_service().await;

        assert_confirmed_once(&app, &order_id).await;
    }
}

/// Creates a paid order whose `operation` of `service` takes 1.5 s, and returns once
/// the saga is inside it: just after the `previous` call, or once the order was first
/// written when there is none. The create call itself may be cut off by the crash
/// that follows; the saga must not be.
async fn start_order_with_a_slow(
    service: &str,
    operation: &str,
    previous: Option<&str>,
    app: &TestApp,
) -> String {
    app.inject(json!({"service": service, "operation": operation, "delay_ms": 1500, "times": 1}));
    let (client, url) = (app.http.clone(), format!("{}/orders", app.api));
    let body = mug_order(Some("pm_card_visa"));
    tokio::spawn(async move { client.post(url).json(&body).send().await });
    let start = std::time::Instant::now();
    let order_id = loop {
        let written: Option<String> = sqlx::query_scalar("SELECT id::text FROM orders")
            .fetch_optional(&app.db)
            .await
            .unwrap();
        let calls = app.ledger().calls;
        let previous_done = previous.is_none_or(|p| calls.iter().any(|c| c.operation == p));
        if let (Some(id), true) = (written, previous_done) {
            break id;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the saga never reached {operation}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    order_id
}

/// The order ends confirmed with one capture, one live reservation, and each status
/// change and event in the read model exactly once.
async fn assert_confirmed_once(app: &TestApp, order_id: &str) {
    let order = app
        .wait_for(order_id, Duration::from_secs(90), |o| {
            o["status"] == "confirmed"
        })
        .await;
    assert_eq!(order["payment_status"], "captured");
    let ledger = app.settled_ledger().await;
    assert_eq!(ledger.captures.len(), 1, "no double charge");
    assert_eq!(ledger.reservations.len(), 1, "one reservation");
    assert_eq!(
        ledger.reservations[0].status,
        ReservationStatus::Committed,
        "committed, nothing leaked or released"
    );
    assert_eq!(ledger.fulfillments.len(), 1);

    let (_, history) = app.get(&format!("/orders/{order_id}/status-history")).await;
    let moves: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["to"].as_str().unwrap())
        .collect();
    assert_eq!(moves, ["draft", "confirmed"]);
    let topics: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM outbox WHERE order_id = $1::uuid AND kind = 'event' ORDER BY id",
    )
    .bind(order_id)
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(topics, ["order.created", "order.confirmed"]);
    assert_eq!(app.count("SELECT count(*) FROM payments").await, 1);
    assert_eq!(ledger.notifications.len(), 1, "one notification");
    let published: std::collections::HashSet<&str> =
        ledger.events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        published.len(),
        2,
        "two distinct events, however often delivered"
    );
}
