//! Crash safety: a saga killed mid-step resumes and ends right, with one charge and
//! one reservation.

use crate::helpers::{mug_order, TestApp};
use order_service::sim::ReservationStatus;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn order_confirms_with_one_charge_when_the_service_dies_during_a_slow_payment() {
    let mut app = TestApp::spawn().await;
    let order_id = start_order_with_a_slow_charge(&app).await;

    app.kill_service().await;
    app.start_service().await;

    assert_confirmed_once(&app, &order_id).await;
}

#[tokio::test]
async fn order_confirms_with_one_charge_when_restate_dies_during_a_slow_payment() {
    let mut app = TestApp::spawn().await;
    let order_id = start_order_with_a_slow_charge(&app).await;

    app.kill_restate().await;
    // Let the slow capture land while the engine is down: its answer is lost.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    app.restart_restate().await;

    assert_confirmed_once(&app, &order_id).await;
}

/// Creates a paid order whose charge takes 1.5 s, and returns once the saga is
/// inside that charge. The create call itself may be cut off by the crash that
/// follows; the saga must not be.
async fn start_order_with_a_slow_charge(app: &TestApp) -> String {
    app.inject(json!({"service": "payment", "operation": "charge", "delay_ms": 1500, "times": 1}));
    let (client, url) = (app.http.clone(), format!("{}/orders", app.api));
    let body = mug_order(Some("pm_card_visa"));
    tokio::spawn(async move { client.post(url).json(&body).send().await });
    let ledger = app
        .wait_for_ledger(Duration::from_secs(20), |l| {
            l.calls.iter().any(|c| c.operation == "reserve")
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ledger.reservations[0].order_id.clone()
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
    let ledger = app
        .wait_for_ledger(Duration::from_secs(10), |l| {
            l.notifications
                .iter()
                .any(|n| n.template == "order_confirmed")
        })
        .await;
    assert_eq!(ledger.captures.len(), 1, "no double charge");
    assert_eq!(ledger.reservations.len(), 1, "one reservation");
    assert_eq!(
        ledger.reservations[0].status,
        ReservationStatus::Active,
        "nothing leaked or released"
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
        "SELECT topic FROM order_events WHERE order_id = $1::uuid ORDER BY version, topic",
    )
    .bind(order_id)
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(topics, ["order.created", "order.confirmed"]);
    assert_eq!(app.count("SELECT count(*) FROM payments").await, 1);
    let published: std::collections::HashSet<&str> =
        ledger.events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        published.len(),
        2,
        "two distinct events, however often delivered"
    );
}
