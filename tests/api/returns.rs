//! Returns of delivered orders and refunds without a return: the units they may
//! take, the money they give back to the cent, the restocks, the durable parcel
//! timer, and crashes of the service or of restate-server while a return waits or
//! is being refunded.

use crate::helpers::{advance, delivered_order, mug_order, order_body, Answer, Options, TestApp};
use chrono::{DateTime, Utc};
use order_sim::Ledger;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// 3 cups at 10.00 with discount 1.00 and tax 0.83 (29.83), 2 mugs at 50.00 with
/// discount 10.00 and tax 8.10 (98.10), shipping 5.00: 132.93.
fn cups_and_mugs() -> Value {
    let mut body = order_body(
        &[("SKU-CUP", 3, "10.00"), ("SKU-MUG", 2, "50.00")],
        Some("pm_card_visa"),
    );
    body["items"][0]["discount_amount"] = json!("1.00");
    body["items"][0]["tax_amount"] = json!("0.83");
    body["items"][1]["discount_amount"] = json!("10.00");
    body["items"][1]["tax_amount"] = json!("8.10");
    body
}

/// 3 cups at 10.00 with discount 1.00 and tax 0.83 and no shipping: 29.83.
fn cups_without_shipping() -> Value {
    let mut body = order_body(&[("SKU-CUP", 3, "10.00")], Some("pm_card_visa"));
    body["items"][0]["discount_amount"] = json!("1.00");
    body["items"][0]["tax_amount"] = json!("0.83");
    body["shipping_amount"] = json!("0.00");
    body
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

fn item_id(order: &Value, n: usize) -> i64 {
    order["items"][n]["id"].as_i64().unwrap()
}

fn return_id(r: &Value) -> String {
    r["return_id"].as_str().unwrap().to_owned()
}

/// `POST /orders/{id}/returns` of `(item_id, quantity)` lines.
async fn ask_return(app: &TestApp, order_id: &str, lines: &[(i64, i64)]) -> Answer {
    let items: Vec<Value> = lines
        .iter()
        .map(|(item, qty)| json!({"item_id": item, "quantity": qty}))
        .collect();
    app.post(
        &format!("/orders/{order_id}/returns"),
        &json!({ "items": items }),
        None,
    )
    .await
}

/// A return of `lines` that must be accepted; returns the return resource.
async fn new_return(app: &TestApp, order_id: &str, lines: &[(i64, i64)]) -> Value {
    let (status, r, _) = ask_return(app, order_id, lines).await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["status"], "requested", "{r}");
    r
}

async fn receive(app: &TestApp, order_id: &str, return_id: &str) -> Answer {
    app.post(
        &format!("/orders/{order_id}/returns/{return_id}/receive"),
        &json!({}),
        None,
    )
    .await
}

/// Receives a return, which must answer `200` with the order.
async fn received(app: &TestApp, order_id: &str, return_id: &str) -> Value {
    let (status, order, _) = receive(app, order_id, return_id).await;
    assert_eq!(status, 200, "{order}");
    assert_eq!(order["id"], order_id, "the answer is the order: {order}");
    order
}

async fn reject(app: &TestApp, order_id: &str, return_id: &str, reason: &str) -> Answer {
    app.post(
        &format!("/orders/{order_id}/returns/{return_id}/reject"),
        &json!({ "reason": reason }),
        None,
    )
    .await
}

async fn refund_items(app: &TestApp, order_id: &str, lines: &[(i64, i64)], reason: &str) -> Answer {
    let items: Vec<Value> = lines
        .iter()
        .map(|(item, qty)| json!({"item_id": item, "quantity": qty}))
        .collect();
    app.post(
        &format!("/orders/{order_id}/refund-items"),
        &json!({ "items": items, "reason": reason }),
        None,
    )
    .await
}

async fn returns_of(app: &TestApp, order_id: &str) -> Vec<Value> {
    let (status, body) = app.get(&format!("/orders/{order_id}/returns")).await;
    assert_eq!(status, 200, "{body}");
    body["returns"].as_array().expect("returns list").clone()
}

async fn return_of(app: &TestApp, order_id: &str, return_id: &str) -> Value {
    returns_of(app, order_id)
        .await
        .into_iter()
        .find(|r| r["return_id"] == return_id)
        .unwrap_or_else(|| panic!("return {return_id} not listed for {order_id}"))
}

async fn order_of(app: &TestApp, order_id: &str) -> Value {
    let (status, order) = app.get(&format!("/orders/{order_id}")).await;
    assert_eq!(status, 200, "{order}");
    order
}

/// Polls the return until it is `status`, for at most `limit`.
async fn wait_for_return(
    app: &TestApp,
    order_id: &str,
    return_id: &str,
    status: &str,
    limit: Duration,
) -> Value {
    let start = Instant::now();
    loop {
        let r = return_of(app, order_id, return_id).await;
        if r["status"] == status {
            return r;
        }
        assert!(
            start.elapsed() < limit,
            "return {return_id} not {status} within {limit:?}: {r}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An amount in cents: "19.88" -> 1988.
fn cents(amount: &str) -> i64 {
    let (units, fraction) = amount.split_once('.').unwrap_or((amount, ""));
    let fraction = format!("{fraction:0<2}");
    assert!(fraction.len() == 2, "more than 2 fraction digits: {amount}");
    let units: i64 = units.parse().unwrap();
    units * 100 + fraction.parse::<i64>().unwrap()
}

fn money(v: &Value) -> i64 {
    cents(v.as_str().unwrap_or_else(|| panic!("not money: {v}")))
}

/// The amounts refunded against the capture of `order_id`, in order.
fn refunds_of(ledger: &Ledger, order_id: &str) -> Vec<String> {
    let payments: Vec<&str> = ledger
        .captures
        .iter()
        .filter(|c| c.order_id == order_id)
        .map(|c| c.payment_id.as_str())
        .collect();
    ledger
        .refunds
        .iter()
        .filter(|r| payments.contains(&r.payment_id.as_str()))
        .map(|r| r.amount.to_string())
        .collect()
}

fn total(amounts: &[String]) -> i64 {
    amounts.iter().map(|a| cents(a)).sum()
}

/// `(sku, warehouse_id, quantity)` of a restocked line.
type RestockedLine = (String, String, u32);

/// `(return_id, lines)` of each restock of `order_id`.
fn restocks_of(ledger: &Ledger, order_id: &str) -> Vec<(String, Vec<RestockedLine>)> {
    ledger
        .restocks
        .iter()
        .filter(|r| r.order_id == order_id)
        .map(|r| {
            let items = r
                .items
                .iter()
                .map(|i| (i.sku.clone(), i.warehouse_id.clone(), i.quantity))
                .collect();
            (r.return_id.clone(), items)
        })
        .collect()
}

/// How many distinct events of `topic` were published about `order_id`.
fn events(ledger: &Ledger, order_id: &str, topic: &str) -> usize {
    let mut ids: Vec<&str> = ledger
        .events
        .iter()
        .filter(|e| e.topic == topic && e.cloud_event["subject"] == order_id)
        .map(|e| e.id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.len()
}

/// How many `template` notifications were sent about `order_id`.
fn notifications(ledger: &Ledger, order_id: &str, template: &str) -> usize {
    ledger
        .notifications
        .iter()
        .filter(|n| n.template == template && n.order_id == order_id)
        .count()
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

const WAREHOUSE: &str = "6f1c1a54-0000-4000-8000-000000000001";

#[tokio::test]
async fn returns_refund_the_units_share_to_the_cent_restock_them_and_are_received_once() {
    let app = TestApp::spawn().await;
    let (status, order) = app.create(&cups_and_mugs()).await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["total_amount"], "132.93");
    let order_id = id(&order);
    let (cup, mug) = (item_id(&order, 0), item_id(&order, 1));

    // Not before delivery.
    advance(&app, &order_id, &["processing", "shipped"]).await;
    let (status, problem, _) = ask_return(&app, &order_id, &[(cup, 1)]).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("invalid_transition")),
        "{problem}"
    );
    advance(&app, &order_id, &["delivered"]).await;

    let (status, first, _) = app
        .post(
            &format!("/orders/{order_id}/returns"),
            &json!({"items": [{"item_id": cup, "quantity": 2, "reason": "too big"}],
                    "reason": "does not fit"}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["order_id"], order_id.as_str());
    assert_eq!(first["status"], "requested");
    assert_eq!(
        first["items"],
        json!([{"item_id": cup, "quantity": 2, "reason": "too big"}])
    );
    assert_eq!(first["refund_amount"], Value::Null);
    assert_eq!(first["reason"], "does not fit");
    for field in ["received_at", "refunded_at", "closed_at"] {
        assert_eq!(first[field], Value::Null, "{field}: {first}");
    }
    let waits = time(&first["expires_at"]) - time(&first["requested_at"]);
    assert_eq!(
        waits.num_days(),
        14,
        "the parcel is awaited 14 days: {first}"
    );
    let first_id = return_id(&first);

    // The units under the open return are not left for another one.
    let (status, problem, _) = ask_return(&app, &order_id, &[(cup, 2)]).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("quantity_exceeded")),
        "{problem}"
    );
    let (status, problem, _) = ask_return(&app, &order_id, &[(999, 1)]).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("validation_failed")),
        "{problem}"
    );
    assert_eq!(problem["errors"][0]["field"], "items[0].item_id");
    let waiting = order_of(&app, &order_id).await;
    assert_eq!(waiting["refunded_amount"], "0.00");
    assert_eq!(waiting["payment_status"], "captured");
    assert_eq!(waiting["items"][0]["returned_quantity"], 0);
    assert_eq!(
        returns_of(&app, &order_id).await,
        std::slice::from_ref(&first)
    );

    let after_first = received(&app, &order_id, &first_id).await;

    assert_eq!(after_first["status"], "delivered");
    assert_eq!(after_first["items"][0]["returned_quantity"], 2);
    assert_eq!(after_first["items"][1]["returned_quantity"], 0);
    assert_eq!(after_first["refunded_amount"], "19.88");
    assert_eq!(after_first["captured_amount"], "132.93");
    assert_eq!(after_first["payment_status"], "partially_refunded");
    assert_eq!(order_of(&app, &order_id).await, after_first);
    let ledger = app.ledger();
    assert_eq!(
        restocks_of(&ledger, &order_id),
        [(
            first_id.clone(),
            vec![("SKU-CUP".into(), WAREHOUSE.into(), 2)]
        )]
    );
    assert_eq!(refunds_of(&ledger, &order_id), ["19.88"]);
    let refunded = return_of(&app, &order_id, &first_id).await;
    assert_eq!(refunded["status"], "refunded", "{refunded}");
    assert_eq!(refunded["refund_amount"], "19.88");
    for field in ["received_at", "refunded_at", "closed_at"] {
        assert!(refunded[field].is_string(), "{field}: {refunded}");
    }

    // Receiving again answers the same and changes nothing; without a body too.
    let again = received(&app, &order_id, &first_id).await;
    assert_eq!(again["version"], after_first["version"], "{again}");
    let (status, again, _) = app
        .send_raw(
            reqwest::Method::POST,
            &format!("/orders/{order_id}/returns/{first_id}/receive"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["version"], after_first["version"], "{again}");
    assert_eq!(again["refunded_amount"], "19.88");
    let ledger = app.ledger();
    assert_eq!(ledger.restocks.len(), 1, "one restock");
    assert_eq!(refunds_of(&ledger, &order_id), ["19.88"], "one refund");

    // The rest: the last cup and both mugs.
    let second = new_return(&app, &order_id, &[(cup, 1), (mug, 2)]).await;
    let second_id = return_id(&second);
    let after_second = received(&app, &order_id, &second_id).await;

    assert_eq!(after_second["items"][0]["returned_quantity"], 3);
    assert_eq!(after_second["items"][1]["returned_quantity"], 2);
    // 9.95 for the last cup, 98.10 for the mugs; shipping stays paid.
    assert_eq!(after_second["refunded_amount"], "127.93");
    assert_eq!(after_second["status"], "delivered");
    assert_eq!(after_second["payment_status"], "partially_refunded");
    assert_eq!(
        return_of(&app, &order_id, &second_id).await["refund_amount"],
        "108.05"
    );
    let (status, problem, _) = ask_return(&app, &order_id, &[(cup, 1)]).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("quantity_exceeded")),
        "nothing is left: {problem}"
    );

    let ledger = app.settled_ledger().await;
    let refunds = refunds_of(&ledger, &order_id);
    assert_eq!(refunds, ["19.88", "108.05"]);
    assert_eq!(total(&refunds), cents("132.93") - cents("5.00"));
    let mut restocks = restocks_of(&ledger, &order_id);
    assert_eq!(restocks.len(), 2, "{restocks:?}");
    let (restocked_for, mut lines) = restocks.remove(1);
    lines.sort();
    assert_eq!(restocked_for, second_id);
    assert_eq!(
        lines,
        [
            ("SKU-CUP".into(), WAREHOUSE.into(), 1),
            ("SKU-MUG".into(), WAREHOUSE.into(), 2)
        ]
    );
    let listed: Vec<String> = returns_of(&app, &order_id)
        .await
        .iter()
        .map(return_id)
        .collect();
    assert_eq!(
        listed,
        [first_id.clone(), second_id.clone()],
        "oldest first"
    );
    for (topic, n) in [
        ("order.return_requested", 2),
        ("order.return_received", 2),
        ("order.refunded", 2),
    ] {
        assert_eq!(events(&ledger, &order_id, topic), n, "{topic}");
    }
    for (template, n) in [("return_requested", 2), ("refund_issued", 2)] {
        assert_eq!(notifications(&ledger, &order_id, template), n, "{template}");
    }

    let (status, history) = app.get(&format!("/orders/{order_id}/edit-history")).await;
    assert_eq!(status, 200, "{history}");
    let entries = history.as_array().unwrap();
    let changes = |field: &str| -> Vec<(Value, Value, Value)> {
        entries
            .iter()
            .filter(|e| e["field"] == field)
            .map(|e| {
                let whose = if field == "return_status" {
                    e["return_id"].clone()
                } else {
                    e["item_id"].clone()
                };
                (whose, e["old"].clone(), e["new"].clone())
            })
            .collect()
    };
    assert_eq!(
        changes("return_status"),
        [
            (json!(first_id), json!(null), json!("requested")),
            (json!(first_id), json!("requested"), json!("refunded")),
            (json!(second_id), json!(null), json!("requested")),
            (json!(second_id), json!("requested"), json!("refunded")),
        ],
        "{history}"
    );
    assert_eq!(
        changes("returned_quantity"),
        [
            (json!(cup), json!(0), json!(2)),
            (json!(cup), json!(2), json!(3)),
            (json!(mug), json!(0), json!(2)),
        ],
        "{history}"
    );
    assert_eq!(
        changes("refunded_amount"),
        [
            (json!(null), json!("0.00"), json!("19.88")),
            (json!(null), json!("19.88"), json!("127.93")),
        ],
        "{history}"
    );
}

#[tokio::test]
async fn an_open_return_holds_its_units_until_it_is_rejected_and_a_key_makes_one_return() {
    let app = TestApp::spawn().await;
    let order = delivered_order(&app, &mug_order(Some("pm_card_visa"))).await;
    let order_id = id(&order);
    let mug = item_id(&order, 0);
    let path = format!("/orders/{order_id}/returns");
    let body = json!({"items": [{"item_id": mug, "quantity": 2, "reason": "chipped"}],
                      "reason": "arrived damaged"});

    let (status, first, _) = app.post(&path, &body, Some("return-1")).await;
    assert_eq!(status, 201, "{first}");
    let (status, again, _) = app.post(&path, &body, Some("return-1")).await;
    assert_eq!((status, &again), (201, &first), "the first answer again");
    let other = json!({"items": [{"item_id": mug, "quantity": 1}]});
    let (status, problem, _) = app.post(&path, &other, Some("return-1")).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("idempotency_key_reused")),
        "{problem}"
    );
    assert_eq!(returns_of(&app, &order_id).await.len(), 1, "one return");
    let first_id = return_id(&first);

    // Its units are taken: neither another return nor a refund gets them.
    let (status, problem, _) = ask_return(&app, &order_id, &[(mug, 1)]).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("quantity_exceeded")),
        "{problem}"
    );
    let (status, problem, _) = refund_items(&app, &order_id, &[(mug, 1)], "goodwill").await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("quantity_exceeded")),
        "{problem}"
    );

    let (status, rejected_order, _) =
        reject(&app, &order_id, &first_id, "damaged by customer").await;
    assert_eq!(status, 200, "{rejected_order}");
    assert_eq!(rejected_order["status"], "delivered");
    assert_eq!(rejected_order["refunded_amount"], "0.00");
    assert_eq!(rejected_order["payment_status"], "captured");
    assert_eq!(rejected_order["items"][0]["returned_quantity"], 0);
    let rejected = return_of(&app, &order_id, &first_id).await;
    assert_eq!(rejected["status"], "rejected", "{rejected}");
    assert!(rejected["closed_at"].is_string(), "{rejected}");
    assert_eq!(rejected["refund_amount"], Value::Null);
    assert_eq!(rejected["received_at"], Value::Null);
    let ledger = app.ledger();
    assert!(ledger.restocks.is_empty(), "nothing restocked");
    assert!(ledger.refunds.is_empty(), "nothing refunded");

    // A rejected return stays rejected.
    let (status, problem, _) = reject(&app, &order_id, &first_id, "again").await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("invalid_transition")),
        "{problem}"
    );
    let (status, problem, _) = receive(&app, &order_id, &first_id).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("invalid_transition")),
        "{problem}"
    );
    let unchanged = order_of(&app, &order_id).await;
    assert_eq!(unchanged["version"], rejected_order["version"]);
    assert_eq!(return_of(&app, &order_id, &first_id).await, rejected);

    // Its units are free again.
    let second = new_return(&app, &order_id, &[(mug, 2)]).await;
    let second_id = return_id(&second);
    let refunded_order = received(&app, &order_id, &second_id).await;
    assert_eq!(refunded_order["refunded_amount"], "98.10");
    assert_eq!(refunded_order["items"][0]["returned_quantity"], 2);
    let (status, problem, _) = reject(&app, &order_id, &second_id, "too late").await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("invalid_transition")),
        "a refunded return cannot be rejected: {problem}"
    );
    assert_eq!(
        return_of(&app, &order_id, &second_id).await["status"],
        "refunded"
    );

    // A return whose refund the payment service refuses stays `received`: receiving
    // it again changes nothing, and it can still be rejected.
    let parked = delivered_order(&app, &mug_order(Some("pm_card_visa"))).await;
    let parked_id = id(&parked);
    let held = new_return(&app, &parked_id, &[(item_id(&parked, 0), 1)]).await;
    let held_id = return_id(&held);
    app.inject(json!({"service": "payment", "operation": "refund", "status": 409, "times": 1}));
    let got = received(&app, &parked_id, &held_id).await;
    assert_eq!(got["refunded_amount"], "0.00", "{got}");
    assert_eq!(got["attention"]["step"], "refund_payment", "{got}");
    assert_eq!(
        return_of(&app, &parked_id, &held_id).await["status"],
        "received"
    );
    let again = received(&app, &parked_id, &held_id).await;
    assert_eq!(again["version"], got["version"], "nothing changed: {again}");
    let ledger = app.ledger();
    assert_eq!(restocks_of(&ledger, &parked_id).len(), 1, "one restock");
    assert!(refunds_of(&ledger, &parked_id).is_empty());
    let (status, closed, _) = reject(&app, &parked_id, &held_id, "customer damage").await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(
        return_of(&app, &parked_id, &held_id).await["status"],
        "rejected"
    );
    assert!(refunds_of(&app.ledger(), &parked_id).is_empty());

    // Unknown returns and orders.
    let unknown = uuid::Uuid::new_v4();
    let (status, problem, _) = receive(&app, &order_id, &unknown.to_string()).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("return_not_found")),
        "{problem}"
    );
    let (status, problem, _) = reject(&app, &order_id, &unknown.to_string(), "no").await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("return_not_found")),
        "{problem}"
    );
    let (status, problem) = app.get(&format!("/orders/{unknown}/returns")).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("order_not_found")),
        "{problem}"
    );
    let (status, problem, _) = ask_return(&app, &unknown.to_string(), &[(1, 1)]).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("order_not_found")),
        "{problem}"
    );

    let ledger = app.settled_ledger().await;
    assert_eq!(refunds_of(&ledger, &order_id), ["98.10"]);
    assert_eq!(restocks_of(&ledger, &order_id).len(), 1);
    assert_eq!(events(&ledger, &order_id, "order.return_rejected"), 1);
    assert_eq!(events(&ledger, &order_id, "order.return_requested"), 2);
    assert_eq!(notifications(&ledger, &order_id, "return_rejected"), 1);
    assert_eq!(notifications(&ledger, &order_id, "return_requested"), 2);
    let (_, history) = app.get(&format!("/orders/{order_id}/edit-history")).await;
    let states: Vec<(&str, &Value, &Value)> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["field"] == "return_status" && e["return_id"] == first_id.as_str())
        .map(|e| ("return_status", &e["old"], &e["new"]))
        .collect();
    assert_eq!(
        states,
        [
            ("return_status", &json!(null), &json!("requested")),
            ("return_status", &json!("requested"), &json!("rejected")),
        ],
        "{history}"
    );
}

#[tokio::test]
async fn a_return_is_refused_once_the_return_window_has_closed() {
    // 0.00003 days = 2.6 s after delivery.
    let app = TestApp::spawn_with(Options {
        env: vec![("ORDER_RETURN_WINDOW_DAYS", "0.00003".into())],
        ..Default::default()
    })
    .await;
    let order = delivered_order(&app, &mug_order(Some("pm_card_visa"))).await;
    let order_id = id(&order);
    let mug = item_id(&order, 0);

    new_return(&app, &order_id, &[(mug, 1)]).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (status, problem, _) = ask_return(&app, &order_id, &[(mug, 1)]).await;

    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("return_window_closed")),
        "{problem}"
    );
    assert_eq!(
        returns_of(&app, &order_id).await.len(),
        1,
        "nothing created"
    );
    let ledger = app.settled_ledger().await;
    assert_eq!(events(&ledger, &order_id, "order.return_requested"), 1);
}

#[tokio::test]
async fn a_return_whose_parcel_never_arrives_expires_without_holding_the_order() {
    // 0.0001 days = 8.64 s for the parcel.
    let app = TestApp::spawn_with(Options {
        env: vec![("ORDER_RETURN_PARCEL_DAYS", "0.0001".into())],
        ..Default::default()
    })
    .await;
    let order = delivered_order(
        &app,
        &order_body(
            &[
                ("SKU-A", 2, "10.00"),
                ("SKU-B", 1, "20.00"),
                ("SKU-C", 1, "30.00"),
            ],
            Some("pm_card_visa"),
        ),
    )
    .await;
    let order_id = id(&order);
    let (a, b, c) = (item_id(&order, 0), item_id(&order, 1), item_id(&order, 2));

    let waiting = new_return(&app, &order_id, &[(a, 2)]).await;
    let waiting_id = return_id(&waiting);
    let waits = time(&waiting["expires_at"]) - time(&waiting["requested_at"]);
    assert!(
        (8000..=9500).contains(&waits.num_milliseconds()),
        "the parcel is awaited 8.64 s: {waiting}"
    );

    // While it waits, the order takes reads, other returns and refunds.
    let (status, _) = app.get(&format!("/orders/{order_id}")).await;
    assert_eq!(status, 200);
    let other = new_return(&app, &order_id, &[(b, 1)]).await;
    let other_id = return_id(&other);
    let (status, refunded, _) = refund_items(&app, &order_id, &[(c, 1)], "dented").await;
    assert_eq!(status, 200, "{refunded}");
    assert_eq!(refunded["items"][2]["refunded_quantity"], 1);
    assert_eq!(refunded["refunded_amount"], "30.00");
    let after_other = received(&app, &order_id, &other_id).await;
    assert_eq!(after_other["refunded_amount"], "50.00");
    assert_eq!(
        return_of(&app, &order_id, &waiting_id).await["status"],
        "requested",
        "all of that happened while the first return waited"
    );

    let expired = wait_for_return(
        &app,
        &order_id,
        &waiting_id,
        "expired",
        Duration::from_secs(40),
    )
    .await;
    assert!(expired["closed_at"].is_string(), "{expired}");
    assert_eq!(expired["received_at"], Value::Null);
    assert_eq!(expired["refund_amount"], Value::Null);
    let order_now = order_of(&app, &order_id).await;
    assert_eq!(order_now["items"][0]["returned_quantity"], 0);
    assert_eq!(order_now["refunded_amount"], "50.00");
    let ledger = app.settled_ledger().await;
    assert_eq!(notifications(&ledger, &order_id, "return_expired"), 1);
    assert_eq!(events(&ledger, &order_id, "order.return_expired"), 1);
    for (status, problem, _) in [
        receive(&app, &order_id, &waiting_id).await,
        reject(&app, &order_id, &waiting_id, "late").await,
    ] {
        assert_eq!(
            (status, problem["code"].as_str()),
            (409, Some("invalid_transition")),
            "{problem}"
        );
    }

    // Its units can be returned again.
    let again = new_return(&app, &order_id, &[(a, 2)]).await;
    let again_id = return_id(&again);
    let after_again = received(&app, &order_id, &again_id).await;
    assert_eq!(after_again["items"][0]["returned_quantity"], 2);
    assert_eq!(after_again["refunded_amount"], "70.00");
    assert_eq!(after_again["payment_status"], "partially_refunded");

    // The timers of the returns that were refunded leave them alone.
    let until = time(&again["expires_at"]) + chrono::Duration::seconds(2);
    if let Ok(left) = (until - Utc::now()).to_std() {
        tokio::time::sleep(left).await;
    }
    assert_eq!(
        return_of(&app, &order_id, &again_id).await["status"],
        "refunded"
    );
    assert_eq!(
        return_of(&app, &order_id, &other_id).await["status"],
        "refunded"
    );
    let ledger = app.settled_ledger().await;
    assert_eq!(notifications(&ledger, &order_id, "return_expired"), 1);
    let refunds = refunds_of(&ledger, &order_id);
    assert_eq!(refunds, ["30.00", "20.00", "20.00"]);
    let restocked: Vec<String> = restocks_of(&ledger, &order_id)
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    assert_eq!(
        restocked,
        [other_id, again_id],
        "nothing for the expired one"
    );
    assert_eq!(
        order_of(&app, &order_id).await["version"],
        after_again["version"]
    );
}

#[tokio::test]
async fn refunds_without_a_return_and_after_cancelled_items_add_up_to_the_cent() {
    let app = TestApp::spawn().await;
    let (status, order) = app.create(&cups_and_mugs()).await;
    assert_eq!(status, 201, "{order}");
    let order_id = id(&order);
    let (cup, mug) = (item_id(&order, 0), item_id(&order, 1));

    // Only a shipped or delivered order.
    let (status, problem, _) = refund_items(&app, &order_id, &[(cup, 1)], "early").await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("invalid_transition")),
        "confirmed: {problem}"
    );
    let (status, cancelled, _) = app
        .post(
            &format!("/orders/{order_id}/cancel-items"),
            &json!({"items": [{"item_id": cup, "quantity": 1}], "reason": "one too many"}),
            None,
        )
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["refunded_amount"], "9.95");
    advance(&app, &order_id, &["processing"]).await;
    let (status, problem, _) = refund_items(&app, &order_id, &[(cup, 1)], "early").await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("invalid_transition")),
        "processing: {problem}"
    );
    advance(&app, &order_id, &["shipped"]).await;

    let (status, problem, _) = refund_items(&app, &order_id, &[(cup, 3)], "too many").await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("quantity_exceeded")),
        "one of three was cancelled: {problem}"
    );
    let (status, shipped, _) = refund_items(&app, &order_id, &[(cup, 1)], "scratched").await;
    assert_eq!(status, 200, "{shipped}");
    assert_eq!(shipped["status"], "shipped");
    assert_eq!(shipped["items"][0]["refunded_quantity"], 1);
    assert_eq!(shipped["items"][0]["cancelled_quantity"], 1);
    assert_eq!(shipped["refunded_amount"], "19.88", "9.95 + 9.93");
    assert_eq!(shipped["payment_status"], "partially_refunded");
    assert_eq!(refunds_of(&app.ledger(), &order_id), ["9.95", "9.93"]);

    advance(&app, &order_id, &["delivered"]).await;
    let rest = new_return(&app, &order_id, &[(cup, 1), (mug, 2)]).await;
    let after = received(&app, &order_id, &return_id(&rest)).await;

    assert_eq!(after["refunded_amount"], "127.93");
    assert_eq!(after["captured_amount"], "132.93");
    assert_eq!(after["status"], "delivered", "the shipping stays paid");
    assert_eq!(after["payment_status"], "partially_refunded");
    let item = &after["items"][0];
    assert_eq!(
        (
            &item["cancelled_quantity"],
            &item["refunded_quantity"],
            &item["returned_quantity"]
        ),
        (&json!(1), &json!(1), &json!(1))
    );
    for (status, problem, _) in [
        refund_items(&app, &order_id, &[(mug, 1)], "more").await,
        ask_return(&app, &order_id, &[(cup, 1)]).await,
    ] {
        assert_eq!(
            (status, problem["code"].as_str()),
            (422, Some("quantity_exceeded")),
            "{problem}"
        );
    }
    let ledger = app.settled_ledger().await;
    let refunds = refunds_of(&ledger, &order_id);
    assert_eq!(refunds, ["9.95", "9.93", "108.05"]);
    assert_eq!(total(&refunds), cents("132.93") - cents("5.00"));
    assert_eq!(money(&after["refunded_amount"]), total(&refunds));
    assert_eq!(events(&ledger, &order_id, "order.refunded"), 2);
    assert_eq!(notifications(&ledger, &order_id, "refund_issued"), 2);
    let (_, history) = app.get(&format!("/orders/{order_id}/edit-history")).await;
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["field"] == "refunded_quantity"
                && e["item_id"] == cup
                && e["old"] == 0
                && e["new"] == 1),
        "{history}"
    );
}

#[tokio::test]
async fn an_order_without_shipping_whose_every_unit_comes_back_is_refunded() {
    let app = TestApp::spawn().await;

    // All three units returned at once.
    let order = delivered_order(&app, &cups_without_shipping()).await;
    let order_id = id(&order);
    let cup = item_id(&order, 0);
    let all = new_return(&app, &order_id, &[(cup, 3)]).await;
    let after = received(&app, &order_id, &return_id(&all)).await;

    assert_eq!(after["status"], "refunded", "{after}");
    assert_eq!(after["payment_status"], "refunded");
    assert_eq!(after["refunded_amount"], "29.83");
    assert_eq!(after["captured_amount"], "29.83");
    let (_, history) = app.get(&format!("/orders/{order_id}/status-history")).await;
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (&last["from"], &last["to"]),
        (&json!("delivered"), &json!("refunded"))
    );
    let (status, problem, _) = ask_return(&app, &order_id, &[(cup, 1)]).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("invalid_transition")),
        "{problem}"
    );

    // One refunded without a return, then two returned.
    let order = delivered_order(&app, &cups_without_shipping()).await;
    let mixed_id = id(&order);
    let cup = item_id(&order, 0);
    let (status, partly, _) = refund_items(&app, &mixed_id, &[(cup, 1)], "dented").await;
    assert_eq!(status, 200, "{partly}");
    assert_eq!(partly["refunded_amount"], "9.95");
    assert_eq!(partly["status"], "delivered");
    let two = new_return(&app, &mixed_id, &[(cup, 2)]).await;
    let after = received(&app, &mixed_id, &return_id(&two)).await;

    assert_eq!(after["status"], "refunded", "{after}");
    assert_eq!(after["payment_status"], "refunded");
    assert_eq!(after["refunded_amount"], "29.83");
    let ledger = app.settled_ledger().await;
    assert_eq!(refunds_of(&ledger, &order_id), ["29.83"]);
    assert_eq!(refunds_of(&ledger, &mixed_id), ["9.95", "19.88"]);
    for capture in &ledger.captures {
        assert!(capture.refunded <= capture.amount, "{capture:?}");
    }
}

#[tokio::test]
async fn a_return_survives_the_service_dying_while_it_waits_and_while_it_refunds() {
    let mut app = TestApp::spawn().await;

    // Killed while the return waits for its parcel.
    let order = delivered_order(&app, &mug_order(Some("pm_card_visa"))).await;
    let order_id = id(&order);
    let waiting = new_return(&app, &order_id, &[(item_id(&order, 0), 1)]).await;
    let waiting_id = return_id(&waiting);
    app.kill_service().await;
    app.start_service().await;
    assert_eq!(return_of(&app, &order_id, &waiting_id).await, waiting);
    let after = received(&app, &order_id, &waiting_id).await;
    // One mug of two: 50.00 - 5.00 + 4.05.
    assert_eq!(after["refunded_amount"], "49.05");
    assert_eq!(after["items"][0]["returned_quantity"], 1);
    let ledger = app.ledger();
    assert_eq!(restocks_of(&ledger, &order_id).len(), 1);
    assert_eq!(refunds_of(&ledger, &order_id), ["49.05"]);

    // Killed while the refund of a received return is under way.
    let order = delivered_order(&app, &mug_order(Some("pm_card_visa"))).await;
    let slow_id = id(&order);
    let r = new_return(&app, &slow_id, &[(item_id(&order, 0), 2)]).await;
    let r_id = return_id(&r);
    app.inject(json!({"service": "payment", "operation": "refund", "delay_ms": 3000, "times": 1}));
    let (client, url) = (
        app.http.clone(),
        format!("{}/orders/{slow_id}/returns/{r_id}/receive", app.api),
    );
    tokio::spawn(async move { client.post(url).json(&json!({})).send().await });
    app.wait_for_ledger(Duration::from_secs(20), |l| {
        l.restocks.iter().any(|s| s.return_id == r_id)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.kill_service().await;
    app.start_service().await;

    let refunded =
        wait_for_return(&app, &slow_id, &r_id, "refunded", Duration::from_secs(90)).await;
    assert_eq!(refunded["refund_amount"], "98.10");
    let order_now = order_of(&app, &slow_id).await;
    assert_eq!(order_now["refunded_amount"], "98.10");
    assert_eq!(order_now["items"][0]["returned_quantity"], 2);
    let ledger = app.settled_ledger().await;
    assert_eq!(
        restocks_of(&ledger, &slow_id),
        [(r_id.clone(), vec![("SKU-MUG".into(), WAREHOUSE.into(), 2)])],
        "one restock"
    );
    assert_eq!(refunds_of(&ledger, &slow_id), ["98.10"], "one refund");
    let capture = ledger
        .captures
        .iter()
        .find(|c| c.order_id == slow_id)
        .unwrap();
    assert_eq!(capture.refunded.to_string(), "98.10");
    assert_eq!(events(&ledger, &slow_id, "order.return_received"), 1);
    assert_eq!(events(&ledger, &slow_id, "order.refunded"), 1);
    assert_eq!(notifications(&ledger, &slow_id, "refund_issued"), 1);
    // Receiving once more still changes nothing.
    let again = received(&app, &slow_id, &r_id).await;
    assert_eq!(again["version"], order_now["version"]);
    assert_eq!(refunds_of(&app.ledger(), &slow_id), ["98.10"]);
}

#[tokio::test]
async fn a_return_waiting_across_a_restate_restart_can_be_received_and_still_expires() {
    // 0.0002 days = 17.28 s for the parcel: time to restart restate-server first.
    let mut app = TestApp::spawn_with(Options {
        env: vec![("ORDER_RETURN_PARCEL_DAYS", "0.0002".into())],
        ..Default::default()
    })
    .await;
    let order = delivered_order(&app, &mug_order(Some("pm_card_visa"))).await;
    let received_order = id(&order);
    let to_receive =
        return_id(&new_return(&app, &received_order, &[(item_id(&order, 0), 1)]).await);
    let order = delivered_order(&app, &mug_order(Some("pm_card_visa"))).await;
    let expiring_order = id(&order);
    let to_expire = return_id(&new_return(&app, &expiring_order, &[(item_id(&order, 0), 2)]).await);

    app.kill_restate().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    app.restart_restate().await;

    let after = received(&app, &received_order, &to_receive).await;
    assert_eq!(after["refunded_amount"], "49.05");
    let expired = wait_for_return(
        &app,
        &expiring_order,
        &to_expire,
        "expired",
        Duration::from_secs(60),
    )
    .await;
    assert!(expired["closed_at"].is_string(), "{expired}");
    // By now the timer of the received one has fired too, and left it alone.
    let until = time(&expired["expires_at"]) + chrono::Duration::seconds(2);
    if let Ok(left) = (until - Utc::now()).to_std() {
        tokio::time::sleep(left).await;
    }
    assert_eq!(
        return_of(&app, &received_order, &to_receive).await["status"],
        "refunded"
    );
    let ledger = app.settled_ledger().await;
    assert_eq!(restocks_of(&ledger, &received_order).len(), 1);
    assert_eq!(refunds_of(&ledger, &received_order), ["49.05"]);
    assert!(restocks_of(&ledger, &expiring_order).is_empty());
    assert!(refunds_of(&ledger, &expiring_order).is_empty());
    assert_eq!(notifications(&ledger, &expiring_order, "return_expired"), 1);
    assert_eq!(notifications(&ledger, &received_order, "return_expired"), 0);
    assert_eq!(events(&ledger, &expiring_order, "order.return_expired"), 1);
    let order_now = order_of(&app, &expiring_order).await;
    assert_eq!(order_now["items"][0]["returned_quantity"], 0);
    assert_eq!(order_now["refunded_amount"], "0.00");
}
