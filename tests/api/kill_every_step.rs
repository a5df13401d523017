//! Kill at every step: for each flow, the service is killed while its saga waits
//! inside each downstream step in turn (compensations included), started again,
//! and the request sent again with its `Idempotency-Key`. The flow ends as it
//! would have without the crash, and every invariant of `order-invariants` holds:
//! one capture, exact refunds, settled stock, the read model equal to the order
//! object, one event per fact.

use crate::helpers::{delivered_order, mug_order, TestApp};
use order_invariants::Checker;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A request, as sent again until its answer is final.
struct Request {
    method: Method,
    path: String,
    body: Value,
    key: String,
    /// The order version a change names.
    if_match: Option<String>,
}

impl Request {
    fn post(path: impl Into<String>, body: Value, key: &str) -> Request {
        Request {
            method: Method::POST,
            path: path.into(),
            body,
            key: key.to_owned(),
            if_match: None,
        }
    }

    /// The request as sent: its key, body and `If-Match`.
    fn build(&self, http: &reqwest::Client, api: &str) -> reqwest::RequestBuilder {
        let mut req = http
            .request(self.method.clone(), format!("{api}{}", self.path))
            .header("idempotency-key", &self.key)
            .json(&self.body);
        if let Some(version) = &self.if_match {
            req = req.header("if-match", version);
        }
        req
    }

    async fn send(&self, app: &TestApp) -> Option<(u16, Value)> {
        let sent = self.build(&app.http, &app.api).send().await.ok()?;
        let status = sent.status().as_u16();
        Some((status, sent.json().await.unwrap_or(Value::Null)))
    }
}

/// The service that runs `operation`.
fn service(operation: &str) -> &'static str {
    match operation {
        "reserve" | "release" | "commit" | "restock" => "warehouse",
        "charge" | "refund" => "payment",
        "create" | "cancel" | "update" => "fulfillment",
        other => panic!("no step calls {other}"),
    }
}

/// Sends `request` with the next `operation` held for 2 s, kills the service while
/// the saga waits inside it, starts the service again and sends `request` again
/// until its answer is final.
async fn killed_inside(app: &mut TestApp, operation: &str, request: &Request) -> (u16, Value) {
    let held = json!({"service": service(operation), "operation": operation, "delay_ms": 2000, "times": 1});
    app.inject(held);
    let first = request.build(&app.http, &app.api);
    tokio::spawn(async move {
        let _ = first.send().await;
    });
    let started = Instant::now();
    while !app.sim.sim.delaying(operation) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the saga never reached {operation}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.kill_service().await;
    app.start_service().await;
    final_answer(app, request).await
}

/// Sends `request` until the answer is neither `202` nor `503` (nor none).
async fn final_answer(app: &TestApp, request: &Request) -> (u16, Value) {
    let started = Instant::now();
    loop {
        match request.send(app).await {
            Some((status, body)) if status != 202 && status != 503 => return (status, body),
            _ => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} {} never got a final answer",
            request.method,
            request.path
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every invariant of order `id`, once the outbox is delivered.
async fn assert_invariants(app: &TestApp, id: &str) {
    let started = Instant::now();
    while app
        .count("SELECT count(*) FROM outbox WHERE sent_at IS NULL AND refused_at IS NULL")
        .await
        > 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the outbox never emptied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ledger = app.settled_ledger().await;
    let api = app.api.clone();
    let checker = Checker {
        http: app.http.clone(),
        api: &api,
        ingress: app.ingress(),
        ledger: &ledger,
        db: &app.db,
    };
    let (_, order) = app.get(&format!("/orders/{id}")).await;
    let violations = checker.order(id.parse().unwrap(), &order).await;
    assert!(violations.is_empty(), "order {id}: {violations:#?}");
}

fn id_of(order: &Value) -> String {
    order["id"].as_str().expect("an order").to_owned()
}

#[tokio::test]
async fn a_paid_create_killed_inside_each_step_confirms_once() {
    let mut app = TestApp::spawn().await;
    for op in ["reserve", "charge", "commit", "create"] {
        let create = Request::post(
            "/orders",
            mug_order(Some("pm_card_visa")),
            &format!("create-{op}"),
        );

        let (status, order) = killed_inside(&mut app, op, &create).await;

        assert_eq!(
            (status, order["status"].as_str()),
            (201, Some("confirmed")),
            "{op}: {order}"
        );
        assert_invariants(&app, &id_of(&order)).await;
    }
}

#[tokio::test]
async fn a_refused_fulfillment_killed_inside_each_compensation_fails_the_order_whole() {
    let mut app = TestApp::spawn().await;
    for op in ["refund", "release"] {
        app.inject(
            json!({"service": "fulfillment", "operation": "create", "status": 422, "times": 1}),
        );
        let create = Request::post(
            "/orders",
            mug_order(Some("pm_card_visa")),
            &format!("refused-{op}"),
        );

        let (status, order) = killed_inside(&mut app, op, &create).await;

        assert_eq!(
            (status, order["status"].as_str()),
            (201, Some("failed")),
            "{op}: {order}"
        );
        assert_eq!(order["failure"]["code"], "fulfillment_refused");
        assert_eq!(
            order["refunded_amount"], order["captured_amount"],
            "{op}: {order}"
        );
        assert_invariants(&app, &id_of(&order)).await;
    }
}

#[tokio::test]
async fn paying_a_draft_killed_inside_each_step_confirms_once() {
    let mut app = TestApp::spawn().await;
    for op in ["charge", "commit", "create"] {
        let (status, draft) = app.create(&mug_order(None)).await;
        assert_eq!((status, draft["status"].as_str()), (201, Some("draft")));
        let path = format!("/orders/{}/payments", id_of(&draft));
        let pay = Request::post(
            path,
            json!({"method": "pm_card_visa"}),
            &format!("pay-{op}"),
        );

        let (status, order) = killed_inside(&mut app, op, &pay).await;

        assert_eq!(
            (status, order["status"].as_str()),
            (200, Some("confirmed")),
            "{op}: {order}"
        );
        assert_invariants(&app, &id_of(&order)).await;
    }
}

#[tokio::test]
async fn a_cancel_killed_inside_each_step_refunds_and_releases_once() {
    let mut app = TestApp::spawn().await;
    for op in ["cancel", "release", "refund"] {
        let (_, order) = app.create(&mug_order(Some("pm_card_visa"))).await;
        let path = format!("/orders/{}/cancel", id_of(&order));
        let cancel = Request::post(
            path,
            json!({"reason": "changed mind"}),
            &format!("cancel-{op}"),
        );

        let (status, cancelled) = killed_inside(&mut app, op, &cancel).await;

        assert_eq!(
            (status, cancelled["status"].as_str()),
            (200, Some("cancelled")),
            "{op}: {cancelled}"
        );
        assert_eq!(cancelled["refunded_amount"], order["total_amount"]);
        assert_invariants(&app, &id_of(&order)).await;
    }
}

#[tokio::test]
async fn cancelling_items_killed_inside_each_step_gives_back_those_units_once() {
    let mut app = TestApp::spawn().await;
    for op in ["release", "refund"] {
        let (_, order) = app.create(&mug_order(Some("pm_card_visa"))).await;
        let path = format!("/orders/{}/cancel-items", id_of(&order));
        let units = json!({"items": [{"item_id": 1, "quantity": 1}]});
        let cancel = Request::post(path, units, &format!("cancel-items-{op}"));

        let (status, after) = killed_inside(&mut app, op, &cancel).await;

        assert_eq!(status, 200, "{op}: {after}");
        assert_eq!(after["items"][0]["cancelled_quantity"], 1);
        // 2 x 50.00, discount 10.00, tax 8.10: one unit gives back 50.00 - 5.00 + 4.05.
        assert_eq!(after["refunded_amount"], "49.05");
        assert_invariants(&app, &id_of(&order)).await;
    }
}

#[tokio::test]
async fn a_received_return_killed_inside_each_step_restocks_and_refunds_once() {
    let mut app = TestApp::spawn().await;
    for op in ["restock", "refund"] {
        let order = delivered_order(&app, &mug_order(Some("pm_card_visa"))).await;
        let id = id_of(&order);
        let items = json!({"items": [{"item_id": 1, "quantity": 1}]});
        let (status, requested, _) = app
            .post(&format!("/orders/{id}/returns"), &items, None)
            .await;
        assert_eq!(status, 201, "{requested}");
        let return_id = requested["return_id"].as_str().unwrap();
        let path = format!("/orders/{id}/returns/{return_id}/receive");
        let receive = Request::post(path, json!({}), &format!("receive-{op}"));

        let (status, after) = killed_inside(&mut app, op, &receive).await;

        assert_eq!(status, 200, "{op}: {after}");
        assert_eq!(after["refunded_amount"], "49.05");
        let (_, returns) = app.get(&format!("/orders/{id}/returns")).await;
        assert_eq!(returns["returns"][0]["status"], "refunded");
        let restocks = app
            .ledger()
            .restocks
            .iter()
            .filter(|r| r.order_id == id)
            .count();
        assert_eq!(restocks, 1, "{op}");
        assert_invariants(&app, &id).await;
    }
}

#[tokio::test]
async fn a_refund_of_items_killed_inside_its_refund_refunds_once() {
    let mut app = TestApp::spawn().await;
    let order = delivered_order(&app, &mug_order(Some("pm_card_visa"))).await;
    let id = id_of(&order);
    let units = json!({"items": [{"item_id": 1, "quantity": 2}], "reason": "damaged"});
    let refund = Request::post(format!("/orders/{id}/refund-items"), units, "refund-items");

    let (status, after) = killed_inside(&mut app, "refund", &refund).await;

    assert_eq!(status, 200, "{after}");
    assert_eq!(after["refunded_amount"], "98.10");
    assert_invariants(&app, &id).await;
}

/// A change of `order` (an added item, or a lowered quantity) sent with its version.
fn change(order: &Value, operations: Value, key: &str) -> Request {
    let path = format!("/orders/{}/changes", id_of(order));
    let mut request = Request::post(path, json!({ "operations": operations }), key);
    request.if_match = Some(order["version"].to_string());
    request
}

#[tokio::test]
async fn a_change_killed_inside_each_step_applies_once() {
    let mut app = TestApp::spawn().await;
    let saucer = json!([{"op": "add_item", "product_id": "6f1c1a54-0000-4000-8000-0000000000aa",
        "product_sku": "SKU-SAUCER", "product_name": "Saucer",
        "warehouse_id": "6f1c1a54-0000-4000-8000-000000000001", "quantity": 1, "unit_price": "4.00"}]);
    // An added item reserves, charges, commits and updates the parcel; a lowered
    // quantity updates the parcel, refunds and releases.
    let steps = [
        ("reserve", true),
        ("charge", true),
        ("commit", true),
        ("update", true),
        ("update", false),
        ("refund", false),
        ("release", false),
    ];
    for (op, adds) in steps {
        let (_, order) = app.create(&mug_order(Some("pm_card_visa"))).await;
        let operations = match adds {
            true => saucer.clone(),
            false => {
                json!([{"op": "set_quantity", "item_id": order["items"][0]["id"], "quantity": 1}])
            }
        };
        let request = change(&order, operations, &format!("change-{op}-{adds}"));

        let (status, applied) = killed_inside(&mut app, op, &request).await;

        assert_eq!(
            (status, applied["status"].as_str()),
            (201, Some("applied")),
            "{op}: {applied}"
        );
        let (_, now) = app.get(&format!("/orders/{}", id_of(&order))).await;
        assert_eq!(
            now["version"],
            order["version"].as_i64().unwrap() + 1,
            "{op}: {now}"
        );
        assert_eq!(
            now["total_amount"],
            applied["totals"]["after"]["total_amount"]
        );
        assert_invariants(&app, &id_of(&order)).await;
    }
}

#[tokio::test]
async fn a_waiting_change_paid_and_killed_inside_each_step_applies_once() {
    let mut app = TestApp::spawn().await;
    let saucer = json!([{"op": "add_item", "product_id": "6f1c1a54-0000-4000-8000-0000000000aa",
        "product_sku": "SKU-SAUCER", "product_name": "Saucer",
        "warehouse_id": "6f1c1a54-0000-4000-8000-000000000001", "quantity": 1, "unit_price": "4.00"}]);
    // Paying a change that waits charges, commits its held stock and updates the parcel.
    for op in ["charge", "commit", "update"] {
        let (_, order) = app.create(&mug_order(Some("pm_card_visa"))).await;
        let mut waiting = change(&order, saucer.clone(), &format!("wait-{op}"));
        waiting.body["collect"] = json!("await_customer");
        let (status, change) = final_answer(&app, &waiting).await;
        assert_eq!(
            (status, change["status"].as_str()),
            (201, Some("awaiting_payment")),
            "{op}: {change}"
        );
        let path = format!(
            "/orders/{}/changes/{}/payments",
            id_of(&order),
            change["change_id"].as_str().unwrap()
        );
        let pay = Request::post(
            path,
            json!({"method": "pm_card_visa"}),
            &format!("pay-{op}"),
        );

        let (status, paid) = killed_inside(&mut app, op, &pay).await;

        assert_eq!(
            (status, paid["status"].as_str()),
            (200, Some("applied")),
            "{op}: {paid}"
        );
        assert_eq!(paid["settlement"]["charges"][0]["amount"], "4.00");
        let (_, now) = app.get(&format!("/orders/{}", id_of(&order))).await;
        assert_eq!(
            now["version"],
            order["version"].as_i64().unwrap() + 1,
            "{op}: {now}"
        );
        assert_invariants(&app, &id_of(&order)).await;
    }
}

fn new_mug(price: &str) -> Value {
    json!([{
        "product_id": "7d0f8f7e-4c11-4a33-9d35-5f0c1b0d9a11",
        "product_sku": "SKU-MUG-L",
        "product_name": "Mug, large",
        "warehouse_id": "0b7a4c9e-2f61-4f1e-8d5a-3c2b1a0f9e88",
        "quantity": 1,
        "unit_price": price,
    }])
}

#[tokio::test]
async fn a_received_exchange_killed_inside_each_step_settles_once() {
    let mut app = TestApp::spawn().await;
    // A dearer mug (one charge of 10.95) through every forward step; a cheaper
    // one (one refund of 9.05) through its refund.
    let runs = [
        ("restock", "60.00"),
        ("reserve", "60.00"),
        ("charge", "60.00"),
        ("commit", "60.00"),
        ("create", "60.00"),
        ("refund", "40.00"),
    ];
    for (op, price) in runs {
        let order = delivered_order(&app, &mug_order(Some("pm_card_visa"))).await;
        let id = id_of(&order);
        let body =
            json!({"return_items": [{"item_id": 1, "quantity": 1}], "new_items": new_mug(price)});
        let (status, exchange, _) = app
            .post(&format!("/orders/{id}/exchanges"), &body, None)
            .await;
        assert_eq!(status, 201, "{exchange}");
        let exchange_id = exchange["exchange_id"].as_str().unwrap();
        let path = format!("/orders/{id}/exchanges/{exchange_id}/receive");
        let receive = Request::post(path, json!({}), &format!("receive-{op}"));

        let (status, after) = killed_inside(&mut app, op, &receive).await;

        assert_eq!(
            (status, after["status"].as_str()),
            (200, Some("settled")),
            "{op}: {after}"
        );
        let ledger = app.settled_ledger().await;
        let of = crate::helpers::OrderLedger::of(&ledger, &id);
        let (charges, refunds) = match price {
            "60.00" => (2, 0),
            _ => (1, 1),
        };
        assert_eq!(
            (of.captures.len(), of.refunds.len()),
            (charges, refunds),
            "{op}: {of:?}"
        );
        assert_eq!(of.fulfillments.len(), 2, "{op}");
        let restocks = ledger.restocks.iter().filter(|r| r.order_id == id).count();
        assert_eq!(restocks, 1, "{op}");
        assert_invariants(&app, &id).await;
    }
}

#[tokio::test]
async fn a_claim_resolved_and_killed_inside_each_step_resolves_once() {
    let mut app = TestApp::spawn().await;
    for op in ["reserve", "commit", "create", "refund"] {
        let order = delivered_order(&app, &mug_order(Some("pm_card_visa"))).await;
        let id = id_of(&order);
        let body = json!({"items": [{"item_id": 1, "quantity": 1, "claim_type": "damaged"}]});
        let (status, claim, _) = app.post(&format!("/orders/{id}/claims"), &body, None).await;
        assert_eq!(status, 201, "{claim}");
        let claim_id = claim["claim_id"].as_str().unwrap();
        let path = format!("/orders/{id}/claims/{claim_id}/resolve");
        let resolution = json!({"resolution": "refund_and_replacement"});
        let resolve = Request::post(path, resolution, &format!("resolve-{op}"));

        let (status, after) = killed_inside(&mut app, op, &resolve).await;

        assert_eq!(
            (status, after["status"].as_str()),
            (200, Some("resolved")),
            "{op}: {after}"
        );
        assert_eq!(after["refund_amount"], "49.05", "{op}");
        let of = crate::helpers::OrderLedger::of(&app.settled_ledger().await, &id);
        assert_eq!(of.refund_amounts(), ["49.05"], "{op}");
        assert_eq!((of.captures.len(), of.fulfillments.len()), (1, 2), "{op}");
        assert_invariants(&app, &id).await;
    }
}
