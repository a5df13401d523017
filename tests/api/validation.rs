//! Bad input gets a problem+json 4xx naming the field, and changes nothing.

use crate::helpers::{mug_order, TestApp};
use serde_json::{json, Value};

fn with(change: impl FnOnce(&mut Value)) -> Value {
    let mut body = mug_order(Some("pm_card_visa"));
    change(&mut body);
    body
}

#[tokio::test]
async fn bad_orders_are_refused_with_the_field_named_and_nothing_created() {
    let app = TestApp::spawn().await;
    let cases: Vec<(&str, Value, &str)> = vec![
        ("empty items", with(|b| b["items"] = json!([])), "items"),
        (
            "zero quantity",
            with(|b| b["items"][0]["quantity"] = json!(0)),
            "items[0].quantity",
        ),
        (
            "negative quantity",
            with(|b| b["items"][0]["quantity"] = json!(-2)),
            "items[0].quantity",
        ),
        (
            "quantity as text",
            with(|b| b["items"][0]["quantity"] = json!("two")),
            "items[0].quantity",
        ),
        (
            "negative price",
            with(|b| b["items"][0]["unit_price"] = json!("-1.00")),
            "items[0].unit_price",
        ),
        (
            "three decimals",
            with(|b| b["items"][0]["unit_price"] = json!("1.005")),
            "items[0].unit_price",
        ),
        (
            "money as a number",
            with(|b| b["items"][0]["unit_price"] = json!(50.0)),
            "items[0].unit_price",
        ),
        (
            "negative shipping",
            with(|b| b["shipping_amount"] = json!("-5.00")),
            "shipping_amount",
        ),
        (
            "unknown currency",
            with(|b| b["currency"] = json!("XYZ")),
            "currency",
        ),
        (
            "missing currency",
            with(|b| drop(b.as_object_mut().unwrap().remove("currency"))),
            "currency",
        ),
        (
            "missing sku",
            with(|b| drop(b["items"][0].as_object_mut().unwrap().remove("product_sku"))),
            "items[0].product_sku",
        ),
        (
            "customer not a uuid",
            with(|b| b["customer_id"] = json!("bob")),
            "customer_id",
        ),
        (
            "discount above line",
            with(|b| b["items"][0]["discount_amount"] = json!("500.00")),
            "items[0].discount_amount",
        ),
        (
            "address not an object",
            with(|b| b["shipping_address"] = json!("nowhere")),
            "shipping_address",
        ),
        (
            "empty payment method",
            with(|b| b["payment"]["method"] = json!(" ")),
            "payment.method",
        ),
        (
            "items not a list",
            with(|b| b["items"] = json!({})),
            "items",
        ),
    ];

    for (case, body, field) in cases {
        let (status, problem, headers) = app.post("/orders", &body, None).await;
        assert_eq!(status, 422, "{case}: {problem}");
        assert_eq!(
            headers["content-type"], "application/problem+json",
            "{case}"
        );
        assert_eq!(problem["code"], "validation_failed", "{case}");
        assert_eq!(problem["status"], 422, "{case}");
        assert!(
            problem["title"].is_string() && problem["detail"].is_string(),
            "{case}"
        );
        assert_eq!(problem["errors"][0]["field"], field, "{case}: {problem}");
    }

    let (status, problem, _) = app
        .post_raw("/orders", b"{\"currency\": \"USD\", ".to_vec())
        .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["code"], "malformed_json");
    assert_eq!(problem["errors"][0]["field"], "body");

    let mut huge = mug_order(None);
    huge["notes"] = json!("x".repeat(300 * 1024));
    let (status, problem, _) = app
        .post_raw("/orders", serde_json::to_vec(&huge).unwrap())
        .await;
    assert_eq!(status, 413, "{problem}");
    assert_eq!(problem["code"], "payload_too_large");

    assert_eq!(
        app.count("SELECT count(*) FROM orders").await,
        0,
        "nothing was created"
    );
    assert!(
        app.ledger().calls.is_empty(),
        "no downstream service was called"
    );
}
