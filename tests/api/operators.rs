//! Operators: the stuck list, an order's timeline, retries that never repeat a step
//! that went through, and resolving a parked order by hand.

use crate::helpers::{
    assert_problem, cents, delivered_order, give_back, mug_order, OrderLedger, TestApp,
};
use crate::metrics::{gauge, scrape};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Polls the stuck list (with `query`) until `done` holds of it.
pub async fn wait_for_stuck(app: &TestApp, query: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let (status, list) = app.get(&format!("/ops/orders/stuck{query}")).await;
        assert_eq!(status, 200, "{list}");
        if done(&list) {
            return list;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the stuck list did not get there: {list}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The entry of order `id` in a stuck list.
pub fn entry<'a>(list: &'a Value, id: &str) -> Option<&'a Value> {
    list["orders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["order_id"] == id)
}

/// An order whose every charge the payment service answers `503`: its create saga
/// backs off on `charge_payment`. Returns the order id.
pub async fn order_stuck_on_payment(app: &TestApp) -> String {
    app.inject(json!({"service": "payment", "operation": "charge", "status": 503}));
    let (status, order) = app.create(&mug_order(Some("pm_card_visa"))).await;
    assert_eq!(
        status, 202,
        "the saga cannot rest while the payment fails: {order}"
    );
    order["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_payment_outage_is_listed_and_one_retry_after_it_confirms_the_order_with_one_capture() {
    let app = TestApp::spawn().await;
    let id = order_stuck_on_payment(&app).await;

    let list = wait_for_stuck(&app, "", |l| {
        entry(l, &id).is_some_and(|e| e["attempts"].as_i64() >= Some(2))
    })
    .await;
    let stuck = entry(&list, &id).unwrap();
    assert_eq!(stuck["step"], "charge_payment", "{stuck}");
    assert_eq!(stuck["saga"], "create_order");
    assert!(
        stuck["last_error"].as_str().unwrap().contains("503"),
        "the downstream's answer: {stuck}"
    );
    assert_eq!(stuck["status"], "draft");
    assert!(stuck["order_number"].as_str().unwrap().starts_with("ORD-"));
    assert!(stuck["since"].is_string());
    let invocation = app.invocation_id(&id, "create").await;
    assert_eq!(stuck["invocation_id"], invocation.as_str());
    assert!(
        ["backing-off", "paused"].contains(&stuck["invocation_status"].as_str().unwrap()),
        "{stuck}"
    );
    assert!(list["counts"]["by_step"]["charge_payment"].as_u64() >= Some(1));
    // Filters by step and by a piece of the error.
    let by_step = app.get("/ops/orders/stuck?step=charge_payment").await.1;
    assert!(entry(&by_step, &id).is_some(), "{by_step}");
    let other_step = app.get("/ops/orders/stuck?step=reserve_stock").await.1;
    assert!(entry(&other_step, &id).is_none(), "{other_step}");
    let by_error = app.get("/ops/orders/stuck?error=503").await.1;
    assert!(entry(&by_error, &id).is_some(), "{by_error}");
    assert_eq!(gauge(&scrape(&app).await, "order_stuck_orders"), 1.0);
    // The timeline shows the saga whole while it is stuck: what went through, and
    // the step that fails.
    let (_, timeline) = app.get(&format!("/ops/orders/{id}/timeline")).await;
    let steps: Vec<(&str, &str)> = timeline["sagas"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("update_read_model", "succeeded"),
            ("reserve_stock", "succeeded"),
            ("charge_payment", "failed")
        ],
        "{timeline}"
    );
    assert_eq!(
        timeline["sagas"][0]["invocation_status"],
        stuck["invocation_status"]
    );

    app.sim.sim.clear_faults();
    let (status, retried, _) = app
        .post(&format!("/ops/orders/{id}/retry"), &json!({}), None)
        .await;
    assert_eq!(status, 202, "{retried}");
    assert_eq!(retried["order_id"], id.as_str());
    assert_eq!(retried["retried"], json!([invocation]));

    let order = app
        .wait_for(&id, Duration::from_secs(20), |o| o["status"] == "confirmed")
        .await;
    assert_eq!(order["captured_amount"], "103.10");
    let ledger = app.settled_ledger().await;
    let mine = OrderLedger::of(&ledger, &id);
    assert_eq!(mine.captures.len(), 1, "exactly one capture: {mine:?}");
    assert_eq!(
        mine.reservations.len(),
        1,
        "the reservation was not made again"
    );
    let list = wait_for_stuck(&app, "", |l| entry(l, &id).is_none()).await;
    assert!(list["orders"].as_array().unwrap().is_empty(), "{list}");
    assert_eq!(gauge(&scrape(&app).await, "order_stuck_orders"), 0.0);

    // Nothing is stuck any more: a second retry changes nothing.
    let again = app
        .post(&format!("/ops/orders/{id}/retry"), &json!({}), None)
        .await;
    assert_problem(&again, 409, "nothing_to_retry");
    let ledger = app.settled_ledger().await;
    assert_eq!(OrderLedger::of(&ledger, &id).captures.len(), 1);

    // The timeline tells the story: the charge failed, was retried and went through.
    let (status, timeline) = app.get(&format!("/ops/orders/{id}/timeline")).await;
    assert_eq!(status, 200, "{timeline}");
    let create = &timeline["sagas"][0];
    assert_eq!(create["saga"], "create_order");
    assert_eq!(create["invocation_id"], invocation.as_str());
    assert_eq!(create["invocation_status"], "completed");
    let charge = create["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "charge_payment")
        .expect("the charge step is recorded");
    assert_eq!(charge["outcome"], "succeeded");
    assert!(charge["attempts"].as_i64() >= Some(3), "{charge}");
    assert!(charge["last_error"].as_str().unwrap().contains("503"));
}

#[tokio::test]
async fn a_drafts_timeline_shows_its_create_saga_and_its_auto_cancel_timer() {
    let app = TestApp::spawn().await;
    let (status, draft) = app.create(&mug_order(None)).await;
    assert_eq!((status, draft["status"].as_str()), (201, Some("draft")));
    let id = draft["id"].as_str().unwrap();

    let (status, timeline) = app.get(&format!("/ops/orders/{id}/timeline")).await;
    assert_eq!(status, 200, "{timeline}");
    assert_eq!(timeline["order_id"], id);
    assert_eq!(timeline["status"], "draft");
    let steps: Vec<&str> = timeline["sagas"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["update_read_model", "reserve_stock", "update_read_model"]
    );
    let timers = timeline["timers"].as_array().unwrap();
    assert_eq!(timers.len(), 1, "{timeline}");
    assert_eq!(timers[0]["name"], "draft_auto_cancel");
    let fires_at: chrono::DateTime<chrono::Utc> = timers[0]["fires_at"]
        .as_str()
        .unwrap_or_else(|| panic!("the timer says when it fires: {timeline}"))
        .parse()
        .unwrap();
    let expires_at: chrono::DateTime<chrono::Utc> =
        draft["expires_at"].as_str().unwrap().parse().unwrap();
    assert!(
        (fires_at - expires_at).num_seconds().abs() <= 2,
        "the timer fires when the draft expires: {fires_at} vs {expires_at}"
    );
    // A draft is not stuck while its payment window is open.
    let (_, list) = app.get("/ops/orders/stuck").await;
    assert!(entry(&list, id).is_none(), "{list}");

    let (status, _) = app
        .get("/ops/orders/7d1f3a8e-0000-4000-8000-000000000000/timeline")
        .await;
    assert_eq!(status, 404);
}

/// An order whose create saga was refused by fulfillment and whose refund the
/// payment service refused: `failed`, parked with the refund owed.
async fn parked_order(app: &TestApp) -> String {
    app.inject(json!({"service": "fulfillment", "operation": "create", "status": 422, "times": 1}));
    app.inject(json!({"service": "payment", "operation": "refund", "status": 409}));
    let (status, order) = app.create(&mug_order(Some("pm_card_visa"))).await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(
        order["attention"]["code"], "compensation_refused",
        "{order}"
    );
    order["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_parked_order_is_listed_and_resolved_by_hand_with_the_reason_on_record() {
    let app = TestApp::spawn().await;
    let id = parked_order(&app).await;

    let list = wait_for_stuck(&app, "", |l| entry(l, &id).is_some()).await;
    let stuck = entry(&list, &id).unwrap();
    assert_eq!(stuck["step"], "refund_payment", "{stuck}");
    assert_eq!(stuck["status"], "failed");
    assert_eq!(stuck["reason"], "parked");
    assert!(stuck["last_error"].as_str().unwrap().contains("409"));

    // While the payment service still refuses, a retry runs the refund again and
    // the order stays parked with nothing counted.
    let (status, retried, _) = app
        .post(&format!("/ops/orders/{id}/retry"), &json!({}), None)
        .await;
    assert_eq!(status, 202, "{retried}");
    assert_eq!(retried["retried"].as_array().unwrap().len(), 1);
    let (_, order) = app.get(&format!("/orders/{id}")).await;
    assert_eq!(order["attention"]["step"], "refund_payment", "{order}");
    assert_eq!(order["refunded_amount"], "0.00");
    let ledger = app.settled_ledger().await;
    let mine = OrderLedger::of(&ledger, &id);
    assert!(mine.refunds.is_empty());
    assert_eq!(
        mine.refund_calls.len(),
        2,
        "the refund was asked for again once"
    );
    let list = app.get("/ops/orders/stuck").await.1;
    assert!(entry(&list, &id).is_some(), "still stuck: {list}");

    // Settled outside the service: resolved by hand, with the reason.
    let missing = app
        .post(&format!("/ops/orders/{id}/resolve"), &json!({}), None)
        .await;
    assert_problem(&missing, 422, "validation_failed");
    let path = format!("/ops/orders/{id}/resolve");
    let reason = "refunded by hand in the payment console, ticket 4711";
    let (status, resolved, _) = app.post(&path, &json!({ "reason": reason }), None).await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["order"]["attention"], Value::Null);
    assert_eq!(
        resolved["order"]["refunded_amount"], "0.00",
        "nothing is counted"
    );
    let list = app.get("/ops/orders/stuck").await.1;
    assert!(entry(&list, &id).is_none(), "{list}");
    let (_, history) = app.get(&format!("/orders/{id}/edit-history")).await;
    let change = history
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["field"] == "attention" && e["new"].is_null())
        .unwrap_or_else(|| panic!("the resolution is in the edit history: {history}"));
    assert_eq!(change["actor"], "operator");
    assert_eq!(change["reason"], reason);
    assert_eq!(change["old"]["step"], "refund_payment");

    assert_problem(
        &app.post(&path, &json!({ "reason": reason }), None).await,
        409,
        "nothing_to_resolve",
    );
    assert_problem(
        &app.post(&format!("/ops/orders/{id}/retry"), &json!({}), None)
            .await,
        409,
        "nothing_to_retry",
    );
}

#[tokio::test]
async fn a_parked_refund_retried_once_the_payment_service_takes_it_refunds_exactly_once() {
    let app = TestApp::spawn().await;
    let id = parked_order(&app).await;

    app.sim.sim.clear_faults();
    let (status, retried, _) = app
        .post(&format!("/ops/orders/{id}/retry"), &json!({}), None)
        .await;
    assert_eq!(status, 202, "{retried}");

    let (_, order) = app.get(&format!("/orders/{id}")).await;
    assert_eq!(order["attention"], Value::Null, "{order}");
    assert_eq!(order["status"], "failed");
    assert_eq!(order["refunded_amount"], "103.10");
    assert_eq!(order["payment_status"], "refunded");
    let ledger = app.settled_ledger().await;
    let mine = OrderLedger::of(&ledger, &id);
    assert_eq!(mine.refund_amounts(), ["103.10"]);
    assert_eq!(mine.count_template("refund_issued"), 1);

    assert_problem(
        &app.post(&format!("/ops/orders/{id}/retry"), &json!({}), None)
            .await,
        409,
        "nothing_to_retry",
    );
    let ledger = app.settled_ledger().await;
    assert_eq!(OrderLedger::of(&ledger, &id).refunds.len(), 1);
    let list = app.get("/ops/orders/stuck").await.1;
    assert!(entry(&list, &id).is_none(), "{list}");
}

#[tokio::test]
async fn bad_operator_requests_are_refused_and_change_nothing() {
    let app = TestApp::spawn().await;
    let unknown = "7d1f3a8e-0000-4000-8000-000000000000";
    for path in [
        format!("/ops/orders/{unknown}/retry"),
        "/ops/orders/not-a-uuid/retry".to_owned(),
    ] {
        assert_problem(
            &app.post(&path, &json!({}), None).await,
            404,
            "order_not_found",
        );
    }
    let body = json!({"reason": "x"});
    let resolve = format!("/ops/orders/{unknown}/resolve");
    assert_problem(
        &app.post(&resolve, &body, None).await,
        404,
        "order_not_found",
    );
    for query in ["older_than=abc", "older_than=5x", "older_than=-1s"] {
        let (status, problem) = app.get(&format!("/ops/orders/stuck?{query}")).await;
        assert_eq!(status, 422, "{query}: {problem}");
        assert_eq!(problem["errors"][0]["field"], "older_than");
    }
    let (status, list) = app.get("/ops/orders/stuck?older_than=0s").await;
    assert_eq!((status, list["orders"].clone()), (200, json!([])));
    let (status, bulk, _) = app.post("/ops/orders/retry", &json!({}), None).await;
    assert_eq!(status, 202, "{bulk}");
    assert_eq!(bulk, json!({"retried": [], "skipped": []}));
}

#[tokio::test]
async fn bulk_retry_resumes_every_order_stuck_on_the_step() {
    let app = TestApp::spawn().await;
    let first = order_stuck_on_payment(&app).await;
    let (status, second) = app.create(&mug_order(Some("pm_card_visa"))).await;
    assert_eq!(status, 202, "{second}");
    let second = second["id"].as_str().unwrap().to_owned();
    wait_for_stuck(&app, "?step=charge_payment", |l| {
        entry(l, &first).is_some() && entry(l, &second).is_some()
    })
    .await;

    app.sim.sim.clear_faults();
    let (status, bulk, _) = app
        .post("/ops/orders/retry?step=charge_payment", &json!({}), None)
        .await;
    assert_eq!(status, 202, "{bulk}");
    assert_eq!(bulk["retried"].as_array().unwrap().len(), 2, "{bulk}");
    for id in [&first, &second] {
        app.wait_for(id, Duration::from_secs(20), |o| o["status"] == "confirmed")
            .await;
    }
    let ledger = app.settled_ledger().await;
    for id in [&first, &second] {
        assert_eq!(OrderLedger::of(&ledger, id).captures.len(), 1);
    }
}

/// Asks for a return of one unit of `item`; returns its id.
async fn ask_return_of_one(app: &TestApp, id: &str, item: &Value) -> String {
    let body = json!({"items": [{"item_id": item["id"], "quantity": 1}]});
    let (status, made, _) = app
        .post(&format!("/orders/{id}/returns"), &body, None)
        .await;
    assert_eq!(status, 201, "{made}");
    made["return_id"].as_str().unwrap().to_owned()
}

/// Receives return `return_id`, which answers `200` with the order.
async fn receive_return(app: &TestApp, id: &str, return_id: &str) -> Value {
    let path = format!("/orders/{id}/returns/{return_id}/receive");
    let (status, order, _) = app.post(&path, &json!({}), None).await;
    assert_eq!(status, 200, "{order}");
    order
}

#[tokio::test]
async fn a_received_return_whose_refund_was_refused_is_refunded_by_a_retry_or_dropped_by_a_reject()
{
    let app = TestApp::spawn().await;
    let order = delivered_order(&app, &mug_order(Some("pm_card_visa"))).await;
    let id = order["id"].as_str().unwrap().to_owned();
    let item = order["items"][0].clone();
    app.inject(json!({"service": "payment", "operation": "refund", "status": 409}));
    let first = ask_return_of_one(&app, &id, &item).await;
    let parked = receive_return(&app, &id, &first).await;
    assert_eq!(parked["attention"]["step"], "refund_payment", "{parked}");
    let list = wait_for_stuck(&app, "?step=refund_payment", |l| entry(l, &id).is_some()).await;
    assert_eq!(entry(&list, &id).unwrap()["reason"], "parked");

    app.sim.sim.clear_faults();
    let (status, retried, _) = app
        .post(&format!("/ops/orders/{id}/retry"), &json!({}), None)
        .await;
    assert_eq!(status, 202, "{retried}");
    let share = cents(give_back(&item, 0, 1));
    let (_, now) = app.get(&format!("/orders/{id}")).await;
    assert_eq!(now["attention"], Value::Null, "{now}");
    assert_eq!(now["refunded_amount"], share.as_str());
    assert_eq!(now["items"][0]["returned_quantity"], 1);
    let (_, returns) = app.get(&format!("/orders/{id}/returns")).await;
    let refunded = &returns["returns"][0];
    assert_eq!(refunded["status"], "refunded", "{returns}");
    assert_eq!(refunded["refund_amount"], share.as_str());
    let ledger = app.settled_ledger().await;
    let mine = OrderLedger::of(&ledger, &id);
    assert_eq!(mine.refund_amounts(), std::slice::from_ref(&share));
    assert_eq!(mine.count_template("refund_issued"), 1);

    // The other unit: its refund is refused too, and the return is then rejected,
    // so nothing is owed any more and there is nothing to retry.
    app.inject(json!({"service": "payment", "operation": "refund", "status": 409}));
    let second = ask_return_of_one(&app, &id, &item).await;
    let parked = receive_return(&app, &id, &second).await;
    assert_eq!(parked["attention"]["step"], "refund_payment", "{parked}");
    let path = format!("/orders/{id}/returns/{second}/reject");
    let (status, rejected, _) = app
        .post(&path, &json!({"reason": "the parcel held a brick"}), None)
        .await;
    assert_eq!(status, 200, "{rejected}");
    assert_eq!(rejected["attention"], Value::Null, "{rejected}");
    app.sim.sim.clear_faults();
    assert_problem(
        &app.post(&format!("/ops/orders/{id}/retry"), &json!({}), None)
            .await,
        409,
        "nothing_to_retry",
    );
    let ledger = app.settled_ledger().await;
    assert_eq!(OrderLedger::of(&ledger, &id).refund_amounts(), [share]);
}
