//! A saga killed through Restate's admin API ends at once: no compensation, no
//! later write. What it left is never lost or silent: the read model's newer
//! version is adopted by the next call, and the order is listed as stuck, then
//! parked for an operator.

use crate::helpers::{delivered_order, money, order_body, TestApp};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Waits until `done` holds for the stuck list, and returns the order's entry.
async fn stuck_entry(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (status, stuck) = app.get("/ops/orders/stuck").await;
        assert_eq!(status, 200, "{stuck}");
        let entry = stuck["orders"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["order_id"] == id)
            .cloned()
            .unwrap_or(Value::Null);
        if done(&entry) {
            return entry;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the stuck list never showed what was expected of {id}: {stuck}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn version_in_read_model(app: &TestApp, id: &str) -> i64 {
    sqlx::query_scalar("SELECT version FROM orders WHERE id = $1::uuid")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_kill_between_the_read_model_write_and_the_state_write_loses_nothing() {
    // Arrange: a confirmed order of two lines, and the first cancel-items commit
    // held for a while after its read-model write, before its state write.
    let mut options = crate::helpers::Options::default();
    options.env.push((
        "ORDER_FAULT_PAUSE_AFTER_PROJECTION",
        "cancel_items".to_owned(),
    ));
    let app = TestApp::spawn_with(options).await;
    let body = order_body(
        &[("SKU-MUG", 2, "10.00"), ("SKU-TEA", 1, "5.00")],
        Some("pm_card_visa"),
    );
    let (status, order) = app.create(&body).await;
    assert_eq!(status, 201, "{order}");
    let id = order["id"].as_str().unwrap().to_owned();
    let before = order["version"].as_i64().unwrap();

    // Act: cancel one mug and kill the saga once its commit is in the read model;
    // then cancel the tea.
    let path = format!("/orders/{id}/cancel-items");
    let first = {
        let (http, url) = (app.http.clone(), format!("{}{path}", app.api));
        tokio::spawn(async move {
            let body = json!({"items": [{"item_id": 1, "quantity": 1}]});
            let sent = http
                .post(url)
                .header("idempotency-key", "cut-1")
                .json(&body);
            sent.send().await.map(|r| r.status().as_u16())
        })
    };
    let started = Instant::now();
    while version_in_read_model(&app, &id).await == before {
        assert!(started.elapsed() < Duration::from_secs(20), "no commit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.kill_invocation(&id, "cancel_items").await;
    let first = first.await.unwrap().unwrap();
    let listed = stuck_entry(&app, &id, |e| e["reason"] == "invocation").await;
    let tea = json!({"items": [{"item_id": 2, "quantity": 1}]});
    let (second, answer, _) = app.post(&path, &tea, Some("cut-2")).await;

    // Assert: the killed request did not claim success and the order was listed;
    // the second cut is on the order with its event, over the first one's version;
    // the refunds on the order are the ones the payment service made; the order
    // is parked for an operator to check, and resolving it clears it.
    assert_eq!(first, 500, "a killed saga is a failed flow");
    assert!(
        listed["saga"].as_str().unwrap().starts_with("cancel_items"),
        "{listed}"
    );
    assert_eq!(second, 200, "{answer}");
    let (_, now) = app.get(&format!("/orders/{id}")).await;
    assert_eq!(now["items"][0]["cancelled_quantity"], 1, "{now}");
    assert_eq!(now["items"][1]["cancelled_quantity"], 1, "{now}");
    assert_eq!(now["attention"]["code"], "saga_killed", "{now}");
    assert_eq!(
        now["version"],
        before + 3,
        "the killed commit, the park, the tea"
    );
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE order_id = $1::uuid AND name = 'order.items_cancelled'",
    )
    .bind(&id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(events, 2, "one event per cut");
    let ledger = app.settled_ledger().await;
    // This test's simulator serves this one order.
    let refunded: rust_decimal::Decimal = ledger.refunds.iter().map(|r| r.amount).sum();
    assert_eq!(ledger.refunds.len(), 2, "{:?}", ledger.refunds);
    assert_eq!(money(&now["refunded_amount"]), refunded, "{now}");
    let entry = stuck_entry(&app, &id, |e| e["reason"] == "parked").await;
    assert_eq!(entry["step"], now["attention"]["step"]);
    let resolve = json!({"reason": "checked: both refunds are on the order"});
    let (status, _, _) = app
        .post(&format!("/ops/orders/{id}/resolve"), &resolve, None)
        .await;
    assert_eq!(status, 200);
    let (_, resolved) = app.get(&format!("/orders/{id}")).await;
    assert_eq!(resolved["attention"], Value::Null, "{resolved}");
}

#[tokio::test]
async fn a_saga_killed_mid_way_is_listed_at_once_and_parked_by_the_operator_retry() {
    // Arrange: a delivered order, and the next refund held by the payment service.
    let app = TestApp::spawn().await;
    let order = delivered_order(&app, &crate::helpers::mug_order(Some("pm_card_visa"))).await;
    let id = order["id"].as_str().unwrap().to_owned();
    app.inject(json!({"service": "payment", "operation": "refund", "delay_ms": 3000, "times": 1}));

    // Act: refund one unit, kill the saga while the refund is under way, then ask
    // the stuck list and retry the order as an operator would.
    let path = format!("/orders/{id}/refund-items");
    let refund = {
        let (http, url) = (app.http.clone(), format!("{}{path}", app.api));
        tokio::spawn(async move {
            let body = json!({"items": [{"item_id": 1, "quantity": 1}]});
            let sent = http.post(url).header("idempotency-key", "r-1").json(&body);
            sent.send().await.map(|r| r.status().as_u16())
        })
    };
    let started = Instant::now();
    while !app.sim.sim.delaying("refund") {
        assert!(started.elapsed() < Duration::from_secs(20), "no refund");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.kill_invocation(&id, "refund_items").await;
    let answered = refund.await.unwrap().unwrap();
    let listed = stuck_entry(&app, &id, |e| e["reason"] == "invocation").await;
    let (retried, retry, _) = app
        .post(&format!("/ops/orders/{id}/retry"), &json!({}), None)
        .await;

    // Assert: no success was claimed; without any call on the order, the stuck list
    // named the killed saga; the retry parked the order for a check by hand.
    assert_eq!(answered, 500);
    assert!(
        listed["saga"].as_str().unwrap().starts_with("refund_items"),
        "{listed}"
    );
    assert!(
        listed["last_error"].as_str().unwrap().contains("killed"),
        "{listed}"
    );
    assert_eq!(retried, 202, "{retry}");
    let (_, parked) = app.get(&format!("/orders/{id}")).await;
    assert_eq!(parked["attention"]["code"], "saga_killed", "{parked}");
    assert_eq!(parked["version"], order["version"].as_i64().unwrap() + 1);
    let entry = stuck_entry(&app, &id, |e| e["reason"] == "parked").await;
    assert!(entry["last_error"]
        .as_str()
        .unwrap()
        .contains("refund_items"));
}
