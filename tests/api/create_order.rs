//! The create-order saga end to end.

use crate::helpers::{mug_order, order_body, TestApp};
use order_sim::ReservationStatus;
use serde_json::json;
use std::collections::HashSet;

#[tokio::test]
async fn create_order_confirms_and_records_every_side_effect_when_paid() {
    let app = TestApp::spawn().await;

    let (status, order, headers) = app
        .post("/orders", &mug_order(Some("pm_card_visa")), None)
        .await;

    assert_eq!(status, 201, "{order}");
    let id = order["id"].as_str().unwrap();
    assert_eq!(headers["location"], format!("/api/v1/orders/{id}").as_str());
    assert_eq!(order["status"], "confirmed");
    assert_eq!(order["payment_status"], "captured");
    assert_eq!(order["subtotal"], "100.00");
    assert_eq!(order["discount_amount"], "10.00");
    assert_eq!(order["tax_amount"], "8.10");
    assert_eq!(order["total_amount"], "103.10");
    assert_eq!(order["captured_amount"], "103.10");
    assert_eq!(order["refunded_amount"], "0.00");
    assert_eq!(order["items"][0]["total_price"], "98.10");
    assert_eq!(order["items"][0]["id"], 1);
    assert_eq!(order["failure"], json!(null));
    assert!(order["version"].as_i64().unwrap() >= 2);
    let number = order["order_number"].as_str().unwrap();
    let today = chrono::Utc::now().format("%Y%m%d").to_string();
    assert!(
        number.starts_with(&format!("ORD-{today}-")) && number.len() == 19,
        "{number}"
    );

    // The read model serves exactly what the create answered.
    assert_eq!(
        app.get(&format!("/orders/{id}")).await,
        (200, order.clone())
    );
    assert_eq!(
        app.get(&format!("/orders/by-number/{number}")).await,
        (200, order.clone())
    );

    let ledger = app.settled_ledger().await;
    assert_eq!(ledger.reservations.len(), 1);
    let reservation = &ledger.reservations[0];
    assert_eq!(
        reservation.status,
        ReservationStatus::Committed,
        "a paid order's stock never expires"
    );
    assert_eq!(
        ledger.commits,
        std::slice::from_ref(&reservation.reservation_id)
    );
    assert_eq!(reservation.order_id, id);
    assert_eq!(reservation.items[0].sku, "SKU-MUG");
    assert_eq!(reservation.items[0].quantity, 2);
    assert_eq!(
        reservation.items[0].remaining, 2,
        "stock stays held for shipping"
    );
    assert_eq!(ledger.captures.len(), 1);
    assert_eq!(ledger.captures[0].amount.to_string(), "103.10");
    assert_eq!(ledger.captures[0].currency, "USD");
    assert_eq!(ledger.captures[0].method, "pm_card_visa");
    assert_eq!(ledger.fulfillments.len(), 1);
    assert_eq!(ledger.fulfillments[0].order_id, id);
    assert_eq!(ledger.fulfillments[0].items[0].quantity, 2);
    assert_eq!(
        ledger.fulfillments[0].shipping_address["city"],
        "Springfield"
    );
    let topics: Vec<&str> = ledger.events.iter().map(|e| e.topic.as_str()).collect();
    assert_eq!(topics, ["order.created", "order.confirmed"]);
    let event_ids: HashSet<&str> = ledger.events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(event_ids.len(), 2, "each event has its own id");
    assert!(ledger
        .events
        .iter()
        .all(|e| e.pubsub == "pubsub" && e.source == "order-service"));
    assert_eq!(ledger.events[1].data["status"], "confirmed");
    let templates: Vec<&str> = ledger
        .notifications
        .iter()
        .map(|n| n.template.as_str())
        .collect();
    assert_eq!(templates, ["order_confirmed"]);
    assert_eq!(
        ledger.notifications[0].customer_id.as_deref(),
        order["customer_id"].as_str()
    );
    assert!(ledger.refunds.is_empty() && ledger.releases.is_empty());

    let (_, history) = app.get(&format!("/orders/{id}/status-history")).await;
    let moves: Vec<(Option<&str>, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["from"].as_str(), h["to"].as_str().unwrap()))
        .collect();
    assert_eq!(moves, [(None, "draft"), (Some("draft"), "confirmed")]);

    // Operators can read every step of the saga.
    let steps: Vec<(String, String)> = sqlx::query_as(
        "SELECT step, outcome FROM saga_steps WHERE order_id = $1::uuid AND saga = 'create_order' ORDER BY seq",
    )
    .bind(id)
    .fetch_all(&app.db)
    .await
    .unwrap();
    let names: Vec<&str> = steps.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "update_read_model",
            "reserve_stock",
            "charge_payment",
            "commit_stock",
            "create_fulfillment",
            "update_read_model"
        ]
    );
    assert!(steps.iter().all(|(_, outcome)| outcome == "succeeded"));
    assert_eq!(
        app.count("SELECT count(*) FROM payments WHERE status = 'captured'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM outbox WHERE kind = 'event'")
            .await,
        2
    );
}

#[tokio::test]
async fn create_order_fails_and_releases_stock_when_card_is_declined() {
    let app = TestApp::spawn().await;

    let (status, order) = app.create(&mug_order(Some("pm_card_declined"))).await;

    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "failed");
    assert_eq!(order["payment_status"], "failed");
    assert_eq!(order["failure"]["code"], "payment_declined");
    assert_eq!(order["captured_amount"], "0.00");
    let ledger = app.settled_ledger().await;
    assert!(ledger.captures.is_empty());
    assert_eq!(ledger.declines.len(), 1);
    assert_eq!(ledger.reservations.len(), 1);
    assert_eq!(ledger.reservations[0].status, ReservationStatus::Released);
    assert!(ledger.reservations[0]
        .items
        .iter()
        .all(|i| i.remaining == 0));
    assert!(ledger.fulfillments.is_empty());
    let topics: Vec<&str> = ledger.events.iter().map(|e| e.topic.as_str()).collect();
    assert_eq!(topics, ["order.created", "order.failed"]);
    let templates: Vec<&str> = ledger
        .notifications
        .iter()
        .map(|n| n.template.as_str())
        .collect();
    assert_eq!(templates, ["payment_failed"]);
    let compensation: (String, Option<String>) = sqlx::query_as(
        "SELECT step, compensates FROM saga_steps WHERE order_id = $1::uuid AND step = 'release_stock'",
    )
    .bind(order["id"].as_str().unwrap())
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(compensation.1.as_deref(), Some("reserve_stock"));
}

#[tokio::test]
async fn create_order_fails_without_charging_when_out_of_stock() {
    let app = TestApp::spawn().await;

    let body = order_body(
        &[("SKU-OK", 1, "10.00"), ("OOS-LAMP", 1, "30.00")],
        Some("pm_card_visa"),
    );
    let (status, order) = app.create(&body).await;

    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "failed");
    assert_eq!(order["failure"]["code"], "insufficient_stock");
    let ledger = app.settled_ledger().await;
    assert!(ledger.reservations.is_empty(), "nothing is held");
    assert!(
        ledger.captures.is_empty() && ledger.declines.is_empty(),
        "nobody is charged"
    );
    let topics: Vec<&str> = ledger.events.iter().map(|e| e.topic.as_str()).collect();
    assert_eq!(topics, ["order.created", "order.failed"]);
    // Not a payment problem: the customer gets `order_failed`.
    assert_eq!(ledger.notifications[0].template, "order_failed");
    let (_, history) = app
        .get(&format!(
            "/orders/{}/status-history",
            order["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(history[1]["to"], "failed");
}

#[tokio::test]
async fn create_order_charges_once_when_payment_answers_503_then_recovers() {
    let app = TestApp::spawn().await;
    app.inject(json!({"service": "payment", "operation": "charge", "status": 503, "times": 3}));

    let (status, order) = app.create(&mug_order(Some("pm_card_visa"))).await;

    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "confirmed");
    let ledger = app.ledger();
    assert_eq!(ledger.captures.len(), 1, "exactly one capture");
    let charges = ledger
        .calls
        .iter()
        .filter(|c| c.operation == "charge")
        .count();
    assert_eq!(
        charges, 4,
        "three refused attempts, then one that went through"
    );
    assert!(
        ledger.releases.is_empty(),
        "a transient error is never compensated"
    );
    let attempts: i32 = sqlx::query_scalar(
        "SELECT attempts FROM saga_steps WHERE order_id = $1::uuid AND step = 'charge_payment'",
    )
    .bind(order["id"].as_str().unwrap())
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(attempts, 4);
}

#[tokio::test]
async fn create_order_charges_once_when_the_answer_to_a_capture_is_lost() {
    let app = TestApp::spawn().await;
    app.inject(json!({"service": "payment", "operation": "charge", "drop": "after", "times": 1}));

    let (status, order) = app.create(&mug_order(Some("pm_card_visa"))).await;

    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "confirmed");
    let ledger = app.ledger();
    assert_eq!(
        ledger.captures.len(),
        1,
        "the retry reuses the idempotency key"
    );
    assert!(ledger
        .calls
        .iter()
        .any(|c| c.operation == "charge" && c.replayed));
}

#[tokio::test]
async fn create_order_refunds_and_releases_when_fulfillment_refuses() {
    let app = TestApp::spawn().await;
    app.inject(json!({"service": "fulfillment", "operation": "create", "status": 422, "times": 1}));

    let (status, order) = app.create(&mug_order(Some("pm_card_visa"))).await;

    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "failed");
    assert_eq!(order["failure"]["code"], "fulfillment_refused");
    assert_eq!(order["payment_status"], "refunded");
    assert_eq!(order["refunded_amount"], "103.10");
    let ledger = app.ledger();
    assert_eq!(ledger.captures.len(), 1);
    assert_eq!(ledger.refunds.len(), 1);
    assert_eq!(ledger.refunds[0].amount.to_string(), "103.10");
    assert_eq!(ledger.reservations[0].status, ReservationStatus::Released);
    // Compensations ran newest first: the refund before the release.
    let undo: Vec<String> = sqlx::query_scalar(
        "SELECT step FROM saga_steps WHERE order_id = $1::uuid AND compensates IS NOT NULL ORDER BY seq",
    )
    .bind(order["id"].as_str().unwrap())
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(undo, ["refund_payment", "release_stock"]);
}

#[tokio::test]
async fn create_order_answers_202_with_location_when_the_saga_outlasts_the_wait() {
    let app = TestApp::spawn_with(crate::helpers::Options {
        env: vec![("ORDER_CREATE_WAIT_MS", "300".into())],
        ..Default::default()
    })
    .await;
    app.inject(json!({"service": "payment", "operation": "charge", "delay_ms": 1500, "times": 1}));
    let body = mug_order(Some("pm_card_visa"));

    let (status, pending, headers) = app.post("/orders", &body, Some("slow-1")).await;

    assert_eq!(status, 202, "{pending}");
    let id = pending["id"].as_str().unwrap();
    assert_eq!(headers["location"], format!("/api/v1/orders/{id}").as_str());
    assert_eq!(pending["status"], "draft", "the order as it stands");
    let order = app
        .wait_for(id, std::time::Duration::from_secs(20), |o| {
            o["status"] == "confirmed"
        })
        .await;
    // A repeat of the request, once the saga rested, gets the final order.
    let (status, again, _) = app.post("/orders", &body, Some("slow-1")).await;
    assert_eq!(status, 201);
    assert_eq!(again, order);
    assert_eq!(app.ledger().captures.len(), 1);
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 1);
}
