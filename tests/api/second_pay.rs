//! A second pay never charges while a charge is held: a saga killed through
//! Restate's admin API (no compensation runs) after its charge, or while its
//! charge is in doubt, leaves a draft that the customer pays again. That pay goes
//! on with the first charge instead of making another.

use crate::helpers::{mug_order, OrderLedger, TestApp};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Kills the invocation of `handler` on order `id` through Restate's admin API.
async fn kill(app: &TestApp, id: &str, handler: &str) {
    let invocation = app.invocation_id(id, handler).await;
    let killed = app
        .http
        .patch(format!(
            "{}/invocations/{invocation}/kill",
            app.restate_admin()
        ))
        .send()
        .await
        .unwrap();
    assert!(killed.status().is_success(), "{}", killed.status());
}

/// Waits until order `id` has one capture and `operation` failed twice after it.
async fn wait_for_capture_then(app: &TestApp, id: &str, operation: &str) {
    let started = Instant::now();
    loop {
        let ledger = app.ledger();
        let captured = OrderLedger::of(&ledger, id).captures.len() == 1;
        let failing = ledger
            .calls
            .iter()
            .filter(|c| c.operation == operation && c.status != 201)
            .count();
        if captured && failing >= 2 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never captured then stuck in {operation}: {:#?}",
            ledger.calls
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pays draft `id` with `method` and checks that it is confirmed on one capture.
async fn pay_again_and_confirm_once(app: &TestApp, id: &str, method: &str) {
    let path = format!("/orders/{id}/payments");
    let (status, order, _) = app
        .post(&path, &json!({ "method": method }), Some("pay-again"))
        .await;

    assert_eq!(
        (status, order["status"].as_str()),
        (200, Some("confirmed")),
        "{order}"
    );
    assert_eq!(order["captured_amount"], order["total_amount"]);
    assert_eq!(order["refunded_amount"], "0.00");
    let ledger = OrderLedger::of(&app.settled_ledger().await, id);
    assert_eq!(
        ledger.captures.len(),
        1,
        "one capture: {:?}",
        ledger.captures
    );
    assert!(ledger.refunds.is_empty(), "{:?}", ledger.refunds);
    assert_eq!(ledger.fulfillments.len(), 1);
}

#[tokio::test]
async fn paying_again_after_a_pay_killed_holding_its_charge_charges_once() {
    let app = TestApp::spawn().await;
    let (_, draft) = app.create(&mug_order(None)).await;
    let id = draft["id"].as_str().unwrap().to_owned();
    // The charge goes through; the saga then waits on the warehouse.
    app.inject(json!({"service": "warehouse", "operation": "commit", "status": 503}));
    let (client, url) = (
        app.http.clone(),
        format!("{}/orders/{id}/payments", app.api),
    );
    tokio::spawn(async move {
        let body = json!({"method": "pm_card_visa"});
        client.post(url).json(&body).send().await
    });
    wait_for_capture_then(&app, &id, "commit").await;

    kill(&app, &id, "pay").await;
    app.sim.sim.clear_faults();

    pay_again_and_confirm_once(&app, &id, "pm_card_visa").await;
}

/// A paid create whose every charge takes effect but loses its answer is killed;
/// its draft is then paid with `method`.
async fn pay_after_a_create_killed_in_its_charge(method: &str) {
    let app = TestApp::spawn().await;
    app.inject(json!({"service": "payment", "operation": "charge", "drop": "after"}));
    let (client, url) = (app.http.clone(), format!("{}/orders", app.api));
    tokio::spawn(async move {
        let body: Value = mug_order(Some("pm_card_visa"));
        client.post(url).json(&body).send().await
    });
    let started = Instant::now();
    let id = loop {
        let id: Option<String> = sqlx::query_scalar("SELECT id::text FROM orders")
            .fetch_optional(&app.db)
            .await
            .unwrap();
        if let Some(id) = id {
            break id;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no order");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    wait_for_capture_then(&app, &id, "charge").await;

    kill(&app, &id, "create").await;
    app.sim.sim.clear_faults();

    pay_again_and_confirm_once(&app, &id, method).await;
}

#[tokio::test]
async fn paying_a_create_killed_while_its_charge_was_in_doubt_charges_once() {
    pay_after_a_create_killed_in_its_charge("pm_card_visa").await;
}

#[tokio::test]
async fn paying_with_another_card_a_create_killed_while_its_charge_was_in_doubt_charges_once() {
    pay_after_a_create_killed_in_its_charge("pm_card_mastercard").await;
}
