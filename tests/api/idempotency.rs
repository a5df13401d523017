//! `Idempotency-Key`: one order per key, and the first answer again.

use crate::helpers::{mug_order, TestApp};
use serde_json::json;

#[tokio::test]
async fn same_key_and_body_returns_the_first_order_and_creates_no_second() {
    let app = TestApp::spawn().await;
    let body = mug_order(Some("pm_card_visa"));

    let first = app.post("/orders", &body, Some("key-1")).await;
    let again = app.post("/orders", &body, Some("key-1")).await;

    assert_eq!(first.0, 201, "{}", first.1);
    assert_eq!(
        (again.0, &again.1),
        (first.0, &first.1),
        "same status, same body"
    );
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 1);
    let ledger = app.ledger();
    assert_eq!(ledger.reservations.len(), 1);
    assert_eq!(ledger.captures.len(), 1);
}

#[tokio::test]
async fn concurrent_repeats_of_one_key_make_one_order() {
    let app = TestApp::spawn().await;
    let body = mug_order(Some("pm_card_visa"));

    let (a, b, c) = tokio::join!(
        app.post("/orders", &body, Some("key-race")),
        app.post("/orders", &body, Some("key-race")),
        app.post("/orders", &body, Some("key-race")),
    );

    for reply in [&a, &b, &c] {
        assert_eq!(reply.0, 201, "{}", reply.1);
        assert_eq!(reply.1["id"], a.1["id"]);
    }
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 1);
    assert_eq!(app.ledger().captures.len(), 1);
}

#[tokio::test]
async fn same_key_with_another_body_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let (status, first, _) = app
        .post("/orders", &mug_order(Some("pm_card_visa")), Some("key-2"))
        .await;
    assert_eq!(status, 201, "{first}");

    let mut other = mug_order(Some("pm_card_visa"));
    other["notes"] = json!("leave at the door");
    let (status, problem, headers) = app.post("/orders", &other, Some("key-2")).await;

    assert_eq!(status, 422);
    assert_eq!(problem["code"], "idempotency_key_reused");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 1);
    assert_eq!(app.ledger().reservations.len(), 1);
}

#[tokio::test]
async fn a_repeated_payment_charges_once() {
    let app = TestApp::spawn().await;
    let (_, draft) = app.create(&mug_order(None)).await;
    let pay = format!("/orders/{}/payments", draft["id"].as_str().unwrap());
    let body = json!({"method": "pm_card_visa"});

    let first = app.post(&pay, &body, Some("pay-1")).await;
    let again = app.post(&pay, &body, Some("pay-1")).await;

    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!((again.0, &again.1), (first.0, &first.1));
    assert_eq!(app.ledger().captures.len(), 1);
}

#[tokio::test]
async fn the_same_key_from_two_callers_names_two_requests() {
    use crate::authorization::{customer, secured, service, staff};
    use uuid::Uuid;

    let app = secured().await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let order_of = |who: Option<Uuid>| {
        let mut body = mug_order(Some("pm_card_visa"));
        body["customer_id"] = json!(who);
        body
    };

    // Two customers and a guest order made by staff, all under one key: three
    // orders, each its caller's own.
    let key = Some("checkout-1");
    let (for_alice, for_bob) = (order_of(Some(alice)), order_of(Some(bob)));
    let a = app
        .as_caller(customer(alice))
        .post("/orders", &for_alice, key)
        .await;
    let b = app
        .as_caller(customer(bob))
        .post("/orders", &for_bob, key)
        .await;
    let g = app
        .as_caller(staff())
        .post("/orders", &order_of(None), key)
        .await;
    for (answer, who) in [(&a, json!(alice)), (&b, json!(bob)), (&g, json!(null))] {
        assert_eq!(answer.0, 201, "{}", answer.1);
        assert_eq!(answer.1["customer_id"], who, "{}", answer.1);
        assert_eq!(answer.1["status"], "confirmed", "{}", answer.1);
    }
    assert_ne!(a.1["id"], b.1["id"]);
    assert_ne!(a.1["id"], g.1["id"]);
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 3);
    assert_eq!(app.ledger().captures.len(), 3);
    // Each caller's repeat still gets its own first answer.
    let again = app
        .as_caller(customer(bob))
        .post("/orders", &for_bob, key)
        .await;
    assert_eq!((again.0, &again.1["id"]), (201, &b.1["id"]));
    let again = app
        .as_caller(customer(alice))
        .post("/orders", &for_alice, key)
        .await;
    assert_eq!((again.0, &again.1["id"]), (201, &a.1["id"]));

    // On one order, staff's key does not answer for a service's request.
    let path = format!("/orders/{}/status", g.1["id"].as_str().unwrap());
    let key = Some("move-1");
    let moved = app
        .as_caller(staff())
        .put(&path, &json!({"status": "processing"}), key)
        .await;
    assert_eq!(
        (moved.0, moved.1["status"].as_str()),
        (200, Some("processing")),
        "{}",
        moved.1
    );
    let moved = app
        .as_caller(service())
        .put(&path, &json!({"status": "shipped"}), key)
        .await;
    assert_eq!(
        (moved.0, moved.1["status"].as_str()),
        (200, Some("shipped")),
        "{}",
        moved.1
    );
}
