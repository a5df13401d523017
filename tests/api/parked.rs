//! Nothing ends silently: a saga whose outcome cannot be recorded after money moved
//! parks its order for an operator, and the API says the flow failed.

use crate::helpers::{delivered_order, mug_order, TestApp};
use serde_json::json;

#[tokio::test]
async fn a_commit_refused_after_a_refund_parks_the_order_and_never_answers_202() {
    // Arrange: a delivered order, and a read model that refuses any refunded amount
    // from now on (as a broken migration or constraint would).
    let app = TestApp::spawn().await;
    let order = delivered_order(&app, &mug_order(Some("pm_card_visa"))).await;
    let id = order["id"].as_str().unwrap();
    sqlx::query(
        "ALTER TABLE orders ADD CONSTRAINT refuses_refunds CHECK (refunded_amount = 0) NOT VALID",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let refund = json!({"items": [{"item_id": 1, "quantity": 1}], "reason": "damaged"});

    // Act: the refund goes through downstream, its commit is refused; then the same
    // request again.
    let path = format!("/orders/{id}/refund-items");
    let (status, problem, _) = app.post(&path, &refund, Some("refund-1")).await;
    let (again, repeated, _) = app.post(&path, &refund, Some("refund-1")).await;

    // Assert: a failure, not 202; the money moved once; the order is parked and stuck.
    assert_eq!(
        (status, problem["code"].as_str()),
        (500, Some("saga_failed")),
        "{problem}"
    );
    assert_eq!((again, &repeated), (status, &problem));
    let refunds = app.ledger().refunds;
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    let (_, parked) = app.get(&format!("/orders/{id}")).await;
    assert_eq!(parked["attention"]["step"], "update_read_model", "{parked}");
    assert_eq!(parked["attention"]["code"], "commit_refused", "{parked}");
    assert_eq!(parked["version"], order["version"].as_i64().unwrap() + 1);
    let (_, stuck) = app.get("/ops/orders/stuck").await;
    let listed = stuck["orders"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["order_id"] == id);
    assert!(listed, "{stuck}");
}
