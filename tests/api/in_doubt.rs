//! Doubt is resolved by looking, never by doing: a saga cancelled through Restate
//! while a downstream call is in doubt looks up what the call made under its
//! idempotency key and undoes only that; it never sends the call again to find out.

use crate::helpers::{mug_order, TestApp};
use serde_json::json;
use std::time::{Duration, Instant};

/// Creates a paid order whose `operation` answers 503 every time, cancels the
/// create through Restate's admin API while it retries, lets the service recover
/// once the undo has started, and returns the order once it has failed.
async fn cancel_a_create_in_doubt(
    app: &TestApp,
    operation: &str,
    undoes: &str,
) -> serde_json::Value {
    let service = match operation {
        "reserve" => "warehouse",
        "create" => "fulfillment",
        _ => "payment",
    };
    app.inject(json!({"service": service, "operation": operation, "status": 503}));
    let (client, url) = (app.http.clone(), format!("{}/orders", app.api));
    let body = mug_order(Some("pm_card_visa"));
    tokio::spawn(async move { client.post(url).json(&body).send().await });
    let id = wait_for_failed_calls(app, operation).await;

    app.cancel_invocation(&id, "create").await;

    // Once the undo of the step in doubt has run (or tried to), the service
    // recovers: an undo that sends the call again would now make it.
    let sql = format!(
        "SELECT count(*) FROM saga_steps WHERE order_id = '{id}' AND compensates = '{undoes}'"
    );
    let started = Instant::now();
    while app.count(&sql).await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the undo of {undoes} never ran"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.sim.sim.clear_faults();

    app.wait_for(&id, Duration::from_secs(30), |o| o["status"] == "failed")
        .await
}

/// Waits until `operation` has answered 503 twice (the saga retries inside that
/// step); returns the order id.
async fn wait_for_failed_calls(app: &TestApp, operation: &str) -> String {
    let started = Instant::now();
    loop {
        let failed = app
            .ledger()
            .calls
            .iter()
            .filter(|c| c.operation == operation && c.status == 503)
            .count();
        let id: Option<String> = sqlx::query_scalar("SELECT id::text FROM orders")
            .fetch_optional(&app.db)
            .await
            .unwrap();
        if let (Some(id), true) = (id, failed >= 2) {
            return id;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{operation} was never tried"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_create_cancelled_through_restate_while_every_charge_fails_charges_nothing() {
    let app = TestApp::spawn().await;

    let order = cancel_a_create_in_doubt(&app, "charge", "charge_payment").await;

    assert_eq!(order["failure"]["code"], "cancelled");
    assert_eq!(order["captured_amount"], "0.00");
    assert_eq!(order["refunded_amount"], "0.00");
    let ledger = app.settled_ledger().await;
    assert!(
        ledger.captures.is_empty(),
        "no capture: {:?}",
        ledger.captures
    );
    assert!(ledger.refunds.is_empty(), "no refund: {:?}", ledger.refunds);
    assert_eq!(ledger.reservations.len(), 1);
    assert_eq!(
        ledger.reservations[0].status,
        order_sim::ReservationStatus::Released
    );
    let charge_key = ledger
        .calls
        .iter()
        .find(|c| c.operation == "charge")
        .and_then(|c| c.idempotency_key.clone());
    let looked_up = ledger.calls.iter().any(|c| {
        c.service == "payment" && c.operation == "lookup" && c.idempotency_key == charge_key
    });
    assert!(looked_up, "the charge in doubt was looked up by its key");
    let topics: Vec<&str> = ledger.events.iter().map(|e| e.topic.as_str()).collect();
    assert_eq!(topics, ["order.created", "order.failed"]);
}

#[tokio::test]
async fn a_create_cancelled_through_restate_while_every_reserve_fails_reserves_nothing() {
    let app = TestApp::spawn().await;

    let order = cancel_a_create_in_doubt(&app, "reserve", "reserve_stock").await;

    assert_eq!(order["failure"]["code"], "cancelled");
    let ledger = app.settled_ledger().await;
    assert!(
        ledger.reservations.is_empty(),
        "no reservation: {:?}",
        ledger.reservations
    );
    assert!(ledger.releases.is_empty());
    assert!(ledger.calls.iter().all(|c| c.operation != "charge"));
    let looked_up = ledger
        .calls
        .iter()
        .any(|c| c.service == "warehouse" && c.operation == "lookup");
    assert!(looked_up, "the reservation in doubt was looked up");
}

#[tokio::test]
async fn a_create_cancelled_through_restate_while_every_fulfilment_fails_ships_nothing() {
    let app = TestApp::spawn().await;

    let order = cancel_a_create_in_doubt(&app, "create", "create_fulfillment").await;

    // The charge went through before the fulfilment was asked for: it is refunded
    // once, the stock released, and no fulfilment was made or cancelled.
    assert_eq!(order["failure"]["code"], "cancelled");
    let ledger = app.settled_ledger().await;
    assert!(
        ledger.fulfillments.is_empty(),
        "no fulfilment: {:?}",
        ledger.fulfillments
    );
    assert!(ledger.calls.iter().all(|c| c.operation != "cancel"));
    assert_eq!(ledger.captures.len(), 1);
    assert_eq!(ledger.refunds.len(), 1);
    assert_eq!(ledger.refunds[0].amount, ledger.captures[0].amount);
    assert_eq!(order["refunded_amount"], order["captured_amount"]);
    assert_eq!(
        ledger.reservations[0].status,
        order_sim::ReservationStatus::Released
    );
    let looked_up = ledger
        .calls
        .iter()
        .any(|c| c.service == "fulfillment" && c.operation == "lookup");
    assert!(looked_up, "the fulfilment in doubt was looked up");
}
