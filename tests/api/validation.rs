//! Bad input gets a problem+json 4xx naming the field, and changes nothing.

use crate::helpers::{mug_order, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

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

/// `body`'s compact JSON text with the first `from` replaced by `to`, for what `json!`
/// cannot build (duplicate keys).
fn edited(body: &Value, from: &str, to: &str) -> Vec<u8> {
    let text = body.to_string();
    assert!(text.contains(from), "{from} is not in {text}");
    text.replacen(from, to, 1).into_bytes()
}

fn bytes(body: Value) -> Vec<u8> {
    body.to_string().into_bytes()
}

/// Case, method, path, Content-Type, body, then the status and the field named.
type Case<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    Vec<u8>,
    u16,
    &'a str,
);

#[tokio::test]
async fn strict_input_is_refused_at_the_edge_naming_the_field_and_nothing_changes() {
    let app = TestApp::spawn().await;
    let orders = "/orders";
    let pay = &format!("/orders/{}/payments", Uuid::new_v4());
    let status = &format!("/orders/{}/status", Uuid::new_v4());
    let json = Some("application/json");
    let order = with(|_| {});
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        // Unknown fields, at the top and nested.
        ("misspelt field", "POST", orders, json, bytes(with(|b| b["shiping_amount"] = json!("5.00"))), 422, "shiping_amount"),
        ("unknown item field", "POST", orders, json, bytes(with(|b| b["items"][0]["colour"] = json!("red"))), 422, "items[0].colour"),
        ("unknown payment field", "POST", orders, json, bytes(with(|b| b["payment"]["cvv"] = json!("123"))), 422, "payment.cvv"),
        ("unknown pay field", "POST", pay, json, bytes(json!({"method": "pm_card_visa", "amout": "1.00"})), 422, "amout"),
        ("unknown status field", "PUT", status, json, bytes(json!({"status": "processing", "reasn": "x"})), 422, "reasn"),
        // Duplicate keys, which a JSON object would silently collapse to the last.
        ("duplicate notes", "POST", orders, json, edited(&order, r#""notes":null"#, r#""notes":"a","notes":"b""#), 422, "notes"),
        ("duplicate sku", "POST", orders, json, edited(&order, r#""product_sku":"SKU-MUG""#, r#""product_sku":"SKU-MUG","product_sku":"SKU-MUG""#), 422, "items[0].product_sku"),
        ("duplicate metadata key", "POST", orders, json, edited(&order, r#""channel":"web""#, r#""channel":"web","channel":"app""#), 422, "metadata.channel"),
        ("duplicate payment method", "POST", orders, json, edited(&order, r#""method":"pm_card_visa""#, r#""method":"pm_card_visa","method":"pm_card_declined""#), 422, "payment.method"),
        ("duplicate status", "PUT", status, json, br#"{"status":"processing","status":"shipped"}"#.to_vec(), 422, "status"),
        // Control characters: NUL everywhere, line breaks outside free text.
        ("NUL in notes", "POST", orders, json, bytes(with(|b| b["notes"] = json!("call me\u{0}"))), 422, "notes"),
        ("bell in notes", "POST", orders, json, bytes(with(|b| b["notes"] = json!("ring\u{7}"))), 422, "notes"),
        ("NUL in sku", "POST", orders, json, bytes(with(|b| b["items"][0]["product_sku"] = json!("SKU\u{0}MUG"))), 422, "items[0].product_sku"),
        ("line break in sku", "POST", orders, json, bytes(with(|b| b["items"][0]["product_sku"] = json!("SKU\nMUG"))), 422, "items[0].product_sku"),
        ("C1 control in name", "POST", orders, json, bytes(with(|b| b["items"][0]["product_name"] = json!("Mug\u{85}"))), 422, "items[0].product_name"),
        ("NUL in address", "POST", orders, json, bytes(with(|b| b["shipping_address"]["line1"] = json!("1 Main\u{0} St"))), 422, "shipping_address.line1"),
        ("NUL in metadata key", "POST", orders, json, bytes(with(|b| b["metadata"]["bad\u{0}key"] = json!("v"))), 422, "metadata.bad\u{0}key"),
        ("NUL in payment method", "POST", orders, json, bytes(with(|b| b["payment"]["method"] = json!("pm_card\u{0}visa"))), 422, "payment.method"),
        ("NUL in pay method", "POST", pay, json, bytes(json!({"method": "pm\u{0}"})), 422, "method"),
        ("NUL in reason", "PUT", status, json, bytes(json!({"status": "processing", "reason": "late\u{0}"})), 422, "reason"),
        ("raw control byte", "POST", orders, json, edited(&order, r#""channel":"web""#, "\"channel\":\"w\u{1}b\""), 400, "body"),
        // Bodies that are not JSON; JSON with parameters or a +json type is read.
        ("text/plain", "POST", orders, Some("text/plain"), bytes(order.clone()), 415, ""),
        ("form", "POST", orders, Some("application/x-www-form-urlencoded"), b"currency=USD".to_vec(), 415, ""),
        ("XML", "POST", orders, Some("application/xml"), b"<order/>".to_vec(), 415, ""),
        ("no content type", "POST", orders, None, bytes(order.clone()), 415, ""),
        ("no content type on pay", "POST", pay, None, bytes(json!({"method": "pm_card_visa"})), 415, ""),
        ("text/plain on status", "PUT", status, Some("text/plain"), bytes(json!({"status": "processing"})), 415, ""),
        ("charset", "POST", orders, Some("application/json; charset=utf-8"), bytes(with(|b| b["items"] = json!([]))), 422, "items"),
        ("+json", "POST", orders, Some("application/vnd.order+json"), bytes(with(|b| b["items"] = json!([]))), 422, "items"),
        // Path values that do not name an order, query values that do not parse.
        ("path not UTF-8", "GET", "/orders/%FF", None, vec![], 404, ""),
        ("path with NUL", "GET", "/orders/%00", None, vec![], 404, ""),
        ("history path not UTF-8", "GET", "/orders/%FF/status-history", None, vec![], 404, ""),
        ("pay path not UTF-8", "POST", "/orders/%FF/payments", json, bytes(json!({"method": "pm_card_visa"})), 404, ""),
        ("status path with NUL", "PUT", "/orders/%00/status", json, bytes(json!({"status": "processing"})), 404, ""),
        ("number with NUL", "GET", "/orders/by-number/%00", None, vec![], 404, ""),
        ("number not UTF-8", "GET", "/orders/by-number/%FF", None, vec![], 404, ""),
        ("number misshapen", "GET", "/orders/by-number/ORD-2026-1", None, vec![], 404, ""),
        ("limit not UTF-8", "GET", "/orders?limit=%FF", None, vec![], 422, "limit"),
        ("status with NUL", "GET", "/orders?status=%00", None, vec![], 422, "status"),
        ("customer with NUL", "GET", "/orders?customer_id=%00", None, vec![], 422, "customer_id"),
        ("name not UTF-8", "GET", "/orders?%FF=1", None, vec![], 422, "query"),
        ("limit twice", "GET", "/orders?limit=1&limit=2", None, vec![], 422, "limit"),
    ];

    for (case, method, path, content_type, body, status, field) in cases {
        let headers: Vec<(&str, &[u8])> = content_type
            .map(|ct| ("content-type", ct.as_bytes()))
            .into_iter()
            .collect();
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let (got, problem, headers) = app.send_raw(method, path, &headers, body).await;
        let code = match status {
            400 => "malformed_json",
            404 => "order_not_found",
            415 => "unsupported_media_type",
            _ => "validation_failed",
        };
        assert_eq!(got, status, "{case}: {problem}");
        assert_eq!(
            headers["content-type"], "application/problem+json",
            "{case}"
        );
        assert_eq!(problem["code"], code, "{case}: {problem}");
        if !field.is_empty() {
            assert_eq!(problem["errors"][0]["field"], field, "{case}: {problem}");
        }
    }

    assert_eq!(app.count("SELECT count(*) FROM orders").await, 0);
    assert!(
        app.ledger().calls.is_empty(),
        "no downstream service was called"
    );
}

#[tokio::test]
async fn free_text_keeps_line_breaks_and_tabs() {
    let app = TestApp::spawn().await;
    let mut body = mug_order(None);
    body["notes"] = json!("Leave at the door.\r\nRing twice.\t!");
    body["shipping_address"]["line2"] = json!("Flat 2\nBack door");
    body["metadata"]["gift_message"] = json!("Happy\nbirthday");

    let (status, order) = app.create(&body).await;

    assert_eq!(status, 201, "{order}");
    assert_eq!(order["notes"], body["notes"]);
    assert_eq!(order["shipping_address"], body["shipping_address"]);
    assert_eq!(order["metadata"]["gift_message"], "Happy\nbirthday");
    let number = order["order_number"].as_str().unwrap();
    let (status, found) = app.get(&format!("/orders/by-number/{number}")).await;
    assert_eq!((status, &found["id"]), (200, &order["id"]));
}
