//! Reading the read model: get, list with filters and cursor, health.

use crate::helpers::{order_body, TestApp};
use serde_json::{json, Value};

#[tokio::test]
async fn list_filters_by_customer_and_status_and_pages_newest_first() {
    let app = TestApp::spawn().await;
    let alice = uuid::Uuid::new_v4();
    let mut ids = Vec::new();
    for i in 0..5 {
        let method = if i == 4 {
            "pm_card_declined"
        } else {
            "pm_card_visa"
        };
        let mut body = order_body(&[("SKU-1", 1, "10.00")], Some(method));
        if i < 3 {
            body["customer_id"] = json!(alice);
        }
        let (status, order) = app.create(&body).await;
        assert_eq!(status, 201, "{order}");
        ids.push(order["id"].as_str().unwrap().to_owned());
    }

    let (status, all) = app.get("/orders").await;
    assert_eq!(status, 200);
    let listed: Vec<&str> = all["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(listed, newest_first);
    assert_eq!(all["next_cursor"], Value::Null);

    let (_, mine) = app.get(&format!("/orders?customer_id={alice}")).await;
    assert_eq!(mine["orders"].as_array().unwrap().len(), 3);
    assert!(mine["orders"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o["customer_id"] == json!(alice)));

    let (_, failed) = app.get("/orders?status=failed").await;
    let failed = failed["orders"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["id"], ids[4].as_str());

    // Two at a time: three pages that together give every order once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..3 {
        let path = match &cursor {
            Some(c) => format!("/orders?limit=2&cursor={c}"),
            None => "/orders?limit=2".to_owned(),
        };
        let (status, page) = app.get(&path).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(
            page["orders"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["id"].as_str().unwrap().to_owned()),
        );
        cursor = page["next_cursor"].as_str().map(str::to_owned);
    }
    assert_eq!(cursor, None);
    assert_eq!(seen, ids.iter().rev().cloned().collect::<Vec<_>>());

    let (_, none) = app.get("/orders?created_to=2000-01-01T00:00:00Z").await;
    assert!(none["orders"].as_array().unwrap().is_empty());
    let (_, recent) = app
        .get("/orders?created_from=2000-01-01T00:00:00Z&limit=200")
        .await;
    assert_eq!(recent["orders"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn unknown_orders_and_bad_filters_get_problems() {
    let app = TestApp::spawn().await;
    let unknown = uuid::Uuid::new_v4();

    for path in [
        format!("/orders/{unknown}"),
        "/orders/not-a-uuid".to_owned(),
        "/orders/by-number/ORD-20260101-000001".to_owned(),
        format!("/orders/{unknown}/status-history"),
    ] {
        let (status, problem) = app.get(&path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(problem["code"], "order_not_found", "{path}");
        assert_eq!(problem["status"], 404);
    }

    for (query, field) in [
        ("status=lost", "status"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("customer_id=42", "customer_id"),
        ("created_from=yesterday", "created_from"),
        ("cursor=nonsense", "cursor"),
    ] {
        let (status, problem) = app.get(&format!("/orders?{query}")).await;
        assert_eq!(status, 422, "{query}");
        assert_eq!(problem["code"], "validation_failed");
        assert_eq!(problem["errors"][0]["field"], field, "{query}");
    }
}

#[tokio::test]
async fn health_reports_each_dependency() {
    let app = TestApp::spawn().await;

    assert_eq!(
        app.get("/orders/health").await,
        (200, json!({"status": "ok"}))
    );
    let (status, health) = app.get("/orders/health/dependencies").await;

    assert_eq!(status, 200, "{health}");
    for dep in [
        "postgres",
        "restate",
        "warehouse",
        "payment",
        "fulfillment",
        "notification",
        "pubsub",
    ] {
        assert_eq!(health["dependencies"][dep]["status"], "up", "{dep}");
    }
}
