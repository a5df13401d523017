//! Corners where money or stock went wrong: a shipped order refunded whole, units
//! held by a return whose refund was refused, a received return rejected, a refund
//! an operator made outside the service, and a refused restock retried.

use crate::helpers::{
    advance, assert_problem, delivered_order, mug_order, order_body, Answer, OrderLedger, TestApp,
};
use crate::operators::{entry, wait_for_stuck};
use order_sim::Ledger;
use serde_json::{json, Value};

/// 2 units at 10.00 with tax 0.01 and no shipping: 20.01. By the cumulative rule
/// the first unit given back returns 10.00 and the second 10.01.
fn two_with_a_cent_of_tax() -> Value {
    let mut body = order_body(&[("SKU-PEN", 2, "10.00")], Some("pm_card_visa"));
    body["items"][0]["tax_amount"] = json!("0.01");
    body["shipping_amount"] = json!("0.00");
    body
}

fn id(order: &Value) -> String {
    order["id"].as_str().unwrap().to_owned()
}

fn item_id(order: &Value) -> i64 {
    order["items"][0]["id"].as_i64().unwrap()
}

/// `(item_id, quantity)` lines as a request's `items`.
fn lines(items: &[(i64, i64)]) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|(item, qty)| json!({"item_id": item, "quantity": qty}))
        .collect();
    json!(items)
}

async fn refund_items(app: &TestApp, order_id: &str, items: &[(i64, i64)]) -> Answer {
    let body = json!({"items": lines(items), "reason": "goodwill"});
    let path = format!("/orders/{order_id}/refund-items");
    app.post(&path, &body, None).await
}

async fn ask_return(app: &TestApp, order_id: &str, items: &[(i64, i64)]) -> Answer {
    let body = json!({ "items": lines(items) });
    app.post(&format!("/orders/{order_id}/returns"), &body, None)
        .await
}

/// A return of `items` that must be accepted; returns its id.
async fn new_return(app: &TestApp, order_id: &str, items: &[(i64, i64)]) -> String {
    let (status, made, _) = ask_return(app, order_id, items).await;
    assert_eq!(status, 201, "{made}");
    made["return_id"].as_str().unwrap().to_owned()
}

/// Receives return `return_id`, which must answer `200` with the order.
async fn receive(app: &TestApp, order_id: &str, return_id: &str) -> Value {
    let path = format!("/orders/{order_id}/returns/{return_id}/receive");
    let (status, order, _) = app.post(&path, &json!({}), None).await;
    assert_eq!(status, 200, "{order}");
    order
}

/// Receives return `return_id` while the payment service refuses one refund: the
/// units are restocked, the refund is owed and the order waits for an operator.
async fn receive_refund_refused(app: &TestApp, order_id: &str, return_id: &str) -> Value {
    app.inject(json!({"service": "payment", "operation": "refund", "status": 409, "times": 1}));
    let parked = receive(app, order_id, return_id).await;
    assert_eq!(parked["attention"]["step"], "refund_payment", "{parked}");
    parked
}

async fn return_of(app: &TestApp, order_id: &str, return_id: &str) -> Value {
    let (status, body) = app.get(&format!("/orders/{order_id}/returns")).await;
    assert_eq!(status, 200, "{body}");
    let found = body["returns"].as_array().unwrap().iter();
    let mut found = found.filter(|r| r["return_id"] == return_id);
    found.next().cloned().unwrap_or_else(|| panic!("{body}"))
}

async fn order_of(app: &TestApp, order_id: &str) -> Value {
    let (status, order) = app.get(&format!("/orders/{order_id}")).await;
    assert_eq!(status, 200, "{order}");
    order
}

/// The last move of the order's status history, `(from, to)`.
async fn last_move(app: &TestApp, order_id: &str) -> (Value, Value) {
    let (_, history) = app.get(&format!("/orders/{order_id}/status-history")).await;
    let last = history.as_array().unwrap().last().unwrap();
    (last["from"].clone(), last["to"].clone())
}

/// Units restocked for `order_id`, one entry per restock.
fn restocked_units(ledger: &Ledger, order_id: &str) -> Vec<u32> {
    let restocks = ledger.restocks.iter().filter(|r| r.order_id == order_id);
    restocks
        .map(|r| r.items.iter().map(|i| i.quantity).sum())
        .collect()
}

async fn retry(app: &TestApp, order_id: &str) -> Answer {
    let path = format!("/ops/orders/{order_id}/retry");
    app.post(&path, &json!({}), None).await
}

async fn resolve(app: &TestApp, order_id: &str, body: Value) -> Answer {
    let path = format!("/ops/orders/{order_id}/resolve");
    app.post(&path, &body, None).await
}

#[tokio::test]
async fn a_shipped_order_refunded_unit_by_unit_ends_refunded_with_everything_captured_given_back() {
    let app = TestApp::spawn().await;
    let (status, order) = app.create(&two_with_a_cent_of_tax()).await;
    assert_eq!(status, 201, "{order}");
    let order_id = id(&order);
    let item = item_id(&order);
    advance(&app, &order_id, &["processing", "shipped"]).await;

    let (status, partly, _) = refund_items(&app, &order_id, &[(item, 1)]).await;
    assert_eq!(status, 200, "{partly}");
    assert_eq!(partly["status"], "shipped");
    assert_eq!(partly["payment_status"], "partially_refunded");
    assert_eq!(partly["refunded_amount"], "10.00");

    let (status, whole, _) = refund_items(&app, &order_id, &[(item, 1)]).await;
    assert_eq!(status, 200, "the refund rests: {whole}");
    assert_eq!(whole["status"], "refunded", "{whole}");
    assert_eq!(whole["payment_status"], "refunded");
    assert_eq!(whole["refunded_amount"], "20.01");
    assert_eq!(whole["captured_amount"], "20.01");
    assert_eq!(whole["items"][0]["refunded_quantity"], 2);
    assert!(whole["completed_at"].is_string(), "{whole}");
    assert_eq!(
        last_move(&app, &order_id).await,
        (json!("shipped"), json!("refunded"))
    );
    assert_eq!(
        order_of(&app, &order_id).await,
        whole,
        "the read model agrees"
    );

    // A refunded order goes nowhere, and nothing of it is stuck.
    let path = format!("/orders/{order_id}/status");
    let moved = app.put(&path, &json!({"status": "delivered"}), None).await;
    assert_problem(&moved, 409, "invalid_transition");
    assert_problem(
        &refund_items(&app, &order_id, &[(item, 1)]).await,
        409,
        "invalid_transition",
    );
    let (_, stuck) = app.get("/ops/orders/stuck?older_than=0s").await;
    assert!(entry(&stuck, &order_id).is_none(), "{stuck}");

    // Every unit at once.
    let (_, order) = app.create(&two_with_a_cent_of_tax()).await;
    let at_once = id(&order);
    advance(&app, &at_once, &["processing", "shipped"]).await;
    let (status, whole, _) = refund_items(&app, &at_once, &[(item_id(&order), 2)]).await;
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["status"], "refunded", "{whole}");
    assert_eq!(whole["refunded_amount"], "20.01");

    let ledger = app.settled_ledger().await;
    assert_eq!(
        OrderLedger::of(&ledger, &order_id).refund_amounts(),
        ["10.00", "10.01"]
    );
    assert_eq!(
        OrderLedger::of(&ledger, &at_once).refund_amounts(),
        ["20.01"]
    );
}

#[tokio::test]
async fn units_held_by_a_return_whose_refund_was_refused_are_not_priced_again() {
    let app = TestApp::spawn().await;
    let order = delivered_order(&app, &two_with_a_cent_of_tax()).await;
    let order_id = id(&order);
    let item = item_id(&order);

    // The return holds the first unit's share (10.00) from its request on; its
    // refund is refused and owed.
    let held = new_return(&app, &order_id, &[(item, 1)]).await;
    let parked = receive_refund_refused(&app, &order_id, &held).await;
    assert_eq!(parked["refunded_amount"], "0.00");

    // The other unit takes the next share.
    let (status, partly, _) = refund_items(&app, &order_id, &[(item, 1)]).await;
    assert_eq!(status, 200, "{partly}");
    assert_eq!(partly["refunded_amount"], "10.01", "{partly}");

    // The operator's retry pays the return what it holds: everything is refunded.
    let (status, retried, _) = retry(&app, &order_id).await;
    assert_eq!(status, 202, "{retried}");
    let after = order_of(&app, &order_id).await;
    assert_eq!(after["refunded_amount"], "20.01", "{after}");
    assert_eq!(after["payment_status"], "refunded");
    assert_eq!(after["status"], "refunded");
    assert_eq!(after["attention"], Value::Null);
    assert_eq!(after["items"][0]["returned_quantity"], 1);
    assert_eq!(after["items"][0]["refunded_quantity"], 1);
    let refunded = return_of(&app, &order_id, &held).await;
    assert_eq!(refunded["status"], "refunded", "{refunded}");
    assert_eq!(refunded["refund_amount"], "10.00");
    let ledger = app.settled_ledger().await;
    assert_eq!(
        OrderLedger::of(&ledger, &order_id).refund_amounts(),
        ["10.01", "10.00"]
    );

    // A requested return that is rejected gives its place back: the next
    // give-back takes it, and the shares still add up to the item's total.
    // 3 units at 10.00, discount 1.00, tax 0.83: 9.95, 9.93, 9.95 by place.
    let mut body = order_body(&[("SKU-CUP", 3, "10.00")], Some("pm_card_visa"));
    body["items"][0]["discount_amount"] = json!("1.00");
    body["items"][0]["tax_amount"] = json!("0.83");
    body["shipping_amount"] = json!("0.00");
    let order = delivered_order(&app, &body).await;
    let (cups, cup) = (id(&order), item_id(&order));
    let first = new_return(&app, &cups, &[(cup, 1)]).await;
    let second = new_return(&app, &cups, &[(cup, 1)]).await;
    let path = format!("/orders/{cups}/returns/{first}/reject");
    let (status, rejected, _) = app.post(&path, &json!({"reason": "no"}), None).await;
    assert_eq!(status, 200, "{rejected}");
    let (status, one, _) = refund_items(&app, &cups, &[(cup, 1)]).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["refunded_amount"], "9.95", "the first place: {one}");
    let got = receive(&app, &cups, &second).await;
    assert_eq!(got["refunded_amount"], "19.88", "the second place: {got}");
    let (status, last, _) = refund_items(&app, &cups, &[(cup, 1)]).await;
    assert_eq!(status, 200, "{last}");
    assert_eq!(last["refunded_amount"], "29.83", "{last}");
    assert_eq!(last["status"], "refunded");
}

#[tokio::test]
async fn a_received_return_rejected_keeps_its_units_returned_so_they_are_never_restocked_twice() {
    let app = TestApp::spawn().await;
    let order = delivered_order(&app, &mug_order(Some("pm_card_visa"))).await;
    let order_id = id(&order);
    let mug = item_id(&order);

    let first = new_return(&app, &order_id, &[(mug, 1)]).await;
    receive_refund_refused(&app, &order_id, &first).await;
    let path = format!("/orders/{order_id}/returns/{first}/reject");
    let (status, rejected, _) = app
        .post(&path, &json!({"reason": "the parcel held a brick"}), None)
        .await;
    assert_eq!(status, 200, "{rejected}");
    assert_eq!(rejected["attention"], Value::Null, "{rejected}");
    assert_eq!(rejected["refunded_amount"], "0.00");
    assert_eq!(rejected["items"][0]["returned_quantity"], 1, "{rejected}");
    let closed = return_of(&app, &order_id, &first).await;
    assert_eq!(closed["status"], "rejected", "{closed}");
    assert!(closed["received_at"].is_string(), "{closed}");
    assert_eq!(closed["refund_amount"], Value::Null);

    // The restocked unit can be neither returned nor refunded again.
    assert_problem(
        &ask_return(&app, &order_id, &[(mug, 2)]).await,
        422,
        "quantity_exceeded",
    );
    assert_problem(
        &refund_items(&app, &order_id, &[(mug, 2)]).await,
        422,
        "quantity_exceeded",
    );

    // The other unit comes back once, at its own share.
    let second = new_return(&app, &order_id, &[(mug, 1)]).await;
    let after = receive(&app, &order_id, &second).await;
    assert_eq!(after["refunded_amount"], "49.05", "{after}");
    assert_eq!(after["items"][0]["returned_quantity"], 2);
    assert_eq!(after["status"], "delivered", "the first refund was dropped");
    assert_problem(
        &ask_return(&app, &order_id, &[(mug, 1)]).await,
        422,
        "quantity_exceeded",
    );
    let ledger = app.settled_ledger().await;
    assert_eq!(
        restocked_units(&ledger, &order_id),
        [1, 1],
        "each unit once"
    );
    assert_eq!(
        OrderLedger::of(&ledger, &order_id).refund_amounts(),
        ["49.05"]
    );
}

#[tokio::test]
async fn resolve_counts_a_refund_made_outside_and_closes_the_return_it_was_owed_for() {
    let app = TestApp::spawn().await;
    let order = delivered_order(&app, &two_with_a_cent_of_tax()).await;
    let order_id = id(&order);
    let item = item_id(&order);
    let (status, partly, _) = refund_items(&app, &order_id, &[(item, 1)]).await;
    assert_eq!(status, 200, "{partly}");
    assert_eq!(partly["refunded_amount"], "10.00");
    let owed = new_return(&app, &order_id, &[(item, 1)]).await;
    receive_refund_refused(&app, &order_id, &owed).await;

    // More than is owed (10.01), or not an amount: refused, nothing changes.
    for bad in [json!("10.02"), json!("-1.00"), json!("ten")] {
        let body = json!({"reason": "refunded by hand", "refunded_outside": bad});
        let refused = resolve(&app, &order_id, body).await;
        assert_problem(&refused, 422, "validation_failed");
        assert_eq!(
            refused.1["errors"][0]["field"], "refunded_outside",
            "{}",
            refused.1
        );
    }
    let unchanged = order_of(&app, &order_id).await;
    assert_eq!(unchanged["attention"]["step"], "refund_payment");

    let reason = "refunded by bank transfer, ticket 4712";
    let body = json!({"reason": reason, "refunded_outside": "10.01"});
    let (status, resolved, _) = resolve(&app, &order_id, body).await;
    assert_eq!(status, 200, "{resolved}");
    let after = &resolved["order"];
    assert_eq!(after["attention"], Value::Null, "{after}");
    assert_eq!(after["refunded_amount"], "20.01");
    assert_eq!(after["payment_status"], "refunded");
    assert_eq!(after["status"], "refunded");
    assert_eq!(after["items"][0]["returned_quantity"], 1);
    assert_eq!(
        last_move(&app, &order_id).await,
        (json!("delivered"), json!("refunded"))
    );
    let closed = return_of(&app, &order_id, &owed).await;
    assert_eq!(closed["status"], "refunded", "{closed}");
    assert_eq!(closed["refund_amount"], "10.01");

    // On the order's record: the edit history and the refunds, with no refund
    // asked of the payment service.
    let (_, history) = app.get(&format!("/orders/{order_id}/edit-history")).await;
    let change = history
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["field"] == "refunded_amount" && e["new"] == "20.01")
        .unwrap_or_else(|| panic!("the refund is in the edit history: {history}"));
    assert_eq!(
        (&change["actor"], &change["reason"]),
        (&json!("operator"), &json!(reason))
    );
    assert_eq!(change["old"], "10.00");
    let recorded = format!(
        "SELECT count(*) FROM refunds WHERE order_id = '{order_id}' AND amount = 10.01 \
         AND refund_id IS NULL AND reason = '{reason}'"
    );
    assert_eq!(app.count(&recorded).await, 1);
    let ledger = app.settled_ledger().await;
    assert_eq!(
        OrderLedger::of(&ledger, &order_id).refund_amounts(),
        ["10.00"]
    );
    let (_, stuck) = app.get("/ops/orders/stuck").await;
    assert!(entry(&stuck, &order_id).is_none(), "{stuck}");
    assert_problem(&retry(&app, &order_id).await, 409, "nothing_to_retry");

    // Without a refund made outside, nothing is counted and the return is
    // rejected; its restocked unit stays returned.
    let order = delivered_order(&app, &mug_order(Some("pm_card_visa"))).await;
    let (mugs, mug) = (id(&order), item_id(&order));
    let dropped = new_return(&app, &mugs, &[(mug, 1)]).await;
    receive_refund_refused(&app, &mugs, &dropped).await;
    let (status, resolved, _) = resolve(&app, &mugs, json!({"reason": "no refund due"})).await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["order"]["refunded_amount"], "0.00", "{resolved}");
    assert_eq!(resolved["order"]["items"][0]["returned_quantity"], 1);
    assert_eq!(return_of(&app, &mugs, &dropped).await["status"], "rejected");
    assert_problem(
        &ask_return(&app, &mugs, &[(mug, 2)]).await,
        422,
        "quantity_exceeded",
    );
    new_return(&app, &mugs, &[(mug, 1)]).await;
}

#[tokio::test]
async fn a_refused_restock_is_retried_by_the_operator_and_restocked_once() {
    let app = TestApp::spawn().await;
    let order = delivered_order(&app, &mug_order(Some("pm_card_visa"))).await;
    let order_id = id(&order);
    let mug = item_id(&order);
    let return_id = new_return(&app, &order_id, &[(mug, 1)]).await;

    app.inject(json!({"service": "warehouse", "operation": "restock", "status": 409}));
    let parked = receive(&app, &order_id, &return_id).await;
    assert_eq!(parked["attention"]["step"], "restock", "{parked}");
    assert_eq!(parked["attention"]["code"], "step_refused");
    assert_eq!(
        parked["refunded_amount"], "49.05",
        "the refund is due anyway"
    );
    let list = wait_for_stuck(&app, "?step=restock", |l| entry(l, &order_id).is_some()).await;
    assert_eq!(entry(&list, &order_id).unwrap()["reason"], "parked");
    assert!(app.ledger().restocks.is_empty());

    // Refused again: still parked, with the warehouse's answer.
    let (status, retried, _) = retry(&app, &order_id).await;
    assert_eq!(status, 202, "{retried}");
    let still = order_of(&app, &order_id).await;
    assert_eq!(still["attention"]["step"], "restock", "{still}");

    app.sim.sim.clear_faults();
    let (status, retried, _) = retry(&app, &order_id).await;
    assert_eq!(status, 202, "{retried}");
    assert_eq!(retried["retried"].as_array().unwrap().len(), 1, "{retried}");
    let after = order_of(&app, &order_id).await;
    assert_eq!(after["attention"], Value::Null, "{after}");
    assert_eq!(after["refunded_amount"], "49.05");
    assert_problem(&retry(&app, &order_id).await, 409, "nothing_to_retry");
    let (_, stuck) = app.get("/ops/orders/stuck").await;
    assert!(entry(&stuck, &order_id).is_none(), "{stuck}");

    let ledger = app.settled_ledger().await;
    assert_eq!(restocked_units(&ledger, &order_id), [1], "restocked once");
    assert_eq!(ledger.restocks[0].return_id, return_id);
    assert_eq!(
        OrderLedger::of(&ledger, &order_id).refund_amounts(),
        ["49.05"]
    );
}
