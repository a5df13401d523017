//! A change's unpaid difference and cancelling a change (api-changes.md §3, §4;
//! rules 12, 13, 14 and 20): a change that waits for its payment holds its stock
//! and leaves the order as it is; paid, it applies; at its deadline it reverts or
//! applies owed; cancelled before its point of no return, it leaves nothing.

use crate::changes::{add_item, apply, confirmed, id, order_and_tag, quote, set_quantity, VISA};
use crate::helpers::{assert_problem, money, order_body, OrderLedger, TestApp};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Polls change `change_id` until its status is `status`.
async fn change_when(app: &TestApp, order_id: &str, change_id: &str, status: &str) -> Value {
    let path = format!("/orders/{order_id}/changes/{change_id}");
    let start = Instant::now();
    loop {
        let (code, change) = app.get(&path).await;
        if code == 200 && change["status"] == status {
            return change;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the change never became {status}: {change}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The reservation that holds `sku`, and whether it was released.
fn reservation_of(of: &OrderLedger, sku: &str) -> (String, bool) {
    let reservation = of
        .reservations
        .iter()
        .find(|r| r.items.iter().any(|i| i.sku == sku))
        .unwrap_or_else(|| panic!("no reservation of {sku}: {of:?}"));
    let id = reservation.reservation_id.clone();
    let released = of.releases.iter().any(|r| r.reservation_id == id);
    (id, released)
}

/// How many fulfilment updates the simulator received for any order.
fn parcel_updates(app: &TestApp) -> usize {
    app.ledger()
        .calls
        .iter()
        .filter(|c| c.service == "fulfillment" && c.operation == "update" && c.status == 200)
        .count()
}

fn movements_of(ledger: &Value, kind: &str) -> Vec<String> {
    ledger["movements"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == kind)
        .map(|m| m["amount"].as_str().unwrap().to_owned())
        .collect()
}

/// `captured - refunded + outstanding` equals the kept value (no give-back is
/// settled otherwise here, so the kept value is `total_amount` less what was
/// cancelled and refunded).
fn balance(order: &Value) -> Decimal {
    money(&order["captured_amount"]) - money(&order["refunded_amount"])
        + money(&order["outstanding_amount"])
}

#[tokio::test]
async fn a_difference_left_to_the_customer_holds_its_stock_and_one_payment_applies_it() {
    let app = TestApp::spawn().await;
    let order = confirmed(&app, &order_body(&[("SKU-MUG", 1, "10.00")], VISA)).await;
    let order_id = id(&order);
    let tag = order["version"].to_string();
    let body =
        json!({"operations": [add_item("SKU-SAUCER", 2, "3.00")], "collect": "await_customer"});

    let (status, change, _) = apply(&app, &order_id, &body, Some(&tag), None).await;

    assert_eq!(
        (status, change["status"].as_str()),
        (201, Some("awaiting_payment")),
        "{change}"
    );
    let change_id = change["change_id"].as_str().unwrap().to_owned();
    let settlement = &change["settlement"];
    assert_eq!(
        (
            settlement["delta"].as_str(),
            settlement["amount_due"].as_str()
        ),
        (Some("6.00"), Some("6.00"))
    );
    assert!(settlement["pay_by"].is_string(), "{change}");
    assert_eq!(change["version_after"], Value::Null);
    // The order is as it was; the new stock is held; nothing is charged yet.
    let (now, etag) = order_and_tag(&app, &order_id).await;
    assert_eq!(etag, format!("\"{tag}\""));
    assert_eq!(now["total_amount"], order["total_amount"]);
    assert_eq!(now["items"].as_array().unwrap().len(), 1);
    let of = OrderLedger::of(&app.settled_ledger().await, &order_id);
    assert_eq!(of.captures.len(), 1);
    assert!(!reservation_of(&of, "SKU-SAUCER").1, "{of:?}");
    assert_eq!(of.count_topic("order.change_awaiting_payment"), 1);
    assert_eq!(of.count_template("change_payment_required"), 1);
    assert_eq!(awaiting_gauge(&app).await, 1.0);

    // Rule 20: one change at a time.
    let item = &order["items"][0]["id"];
    let second = json!({"operations": [set_quantity(item, 2)]});
    for answer in [
        quote(&app, &order_id, &second).await,
        apply(&app, &order_id, &second, Some(&tag), None).await,
        app.post(
            &format!("/orders/{order_id}/cancel-items"),
            &json!({"items": [{"item_id": item, "quantity": 1}]}),
            None,
        )
        .await,
    ] {
        assert_problem(&answer, 409, "change_in_progress");
        assert_eq!(answer.1["change_id"], change_id.as_str(), "{}", answer.1);
    }

    // Another amount, then a declined card: the change keeps waiting.
    let pay = format!("/orders/{order_id}/changes/{change_id}/payments");
    let answer = app
        .post(
            &pay,
            &json!({"method": "pm_card_visa", "amount": "5.00"}),
            None,
        )
        .await;
    assert_problem(&answer, 422, "amount_mismatch");
    assert_eq!(answer.1["delta"], "6.00");
    let answer = app
        .post(&pay, &json!({"method": "pm_card_declined"}), None)
        .await;
    assert_problem(&answer, 402, "payment_declined");
    change_when(&app, &order_id, &change_id, "awaiting_payment").await;

    // Rule 13: paid, it applies with one charge of amount_due and one parcel update.
    let updates = parcel_updates(&app);
    let (status, paid, _) = app
        .post(
            &pay,
            &json!({"method": "pm_card_visa", "amount": "6.00"}),
            None,
        )
        .await;
    assert_eq!(
        (status, paid["status"].as_str()),
        (200, Some("applied")),
        "{paid}"
    );
    let version = order["version"].as_i64().unwrap();
    assert_eq!(paid["version_after"], version + 1);
    assert_eq!(paid["settlement"]["charges"][0]["amount"], "6.00");
    let (now, _) = order_and_tag(&app, &order_id).await;
    assert_eq!(now["version"], version + 1);
    assert_eq!(now["total_amount"], paid["totals"]["after"]["total_amount"]);
    assert_eq!(
        money(&now["captured_amount"]),
        money(&order["captured_amount"]) + Decimal::new(600, 2)
    );
    assert_eq!(now["items"][1]["quantity"], 2);
    assert_eq!(parcel_updates(&app), updates + 1);
    let ledger = app.settled_ledger().await;
    let of = OrderLedger::of(&ledger, &order_id);
    let charges: Vec<Decimal> = of.captures.iter().map(|c| c.amount).collect();
    assert_eq!(charges[1..], [Decimal::new(600, 2)]);
    let (held, released) = reservation_of(&of, "SKU-SAUCER");
    assert!(!released && ledger.commits.contains(&held), "{of:?}");
    assert_eq!(of.count_topic("order.changed"), 1);
    assert_eq!(awaiting_gauge(&app).await, 0.0);
    let text = crate::metrics::scrape(&app).await;
    let applied = [("outcome", "applied")];
    assert_eq!(
        crate::metrics::value(&text, "order_changes_total", &applied),
        1.0
    );
}

async fn awaiting_gauge(app: &TestApp) -> f64 {
    let text = crate::metrics::scrape(app).await;
    crate::metrics::gauge(&text, "order_changes_awaiting_payment")
}

#[tokio::test]
async fn an_unpaid_difference_reverts_at_its_deadline_releasing_its_stock() {
    let app = TestApp::spawn().await;
    let order = confirmed(&app, &order_body(&[("SKU-MUG", 1, "10.00")], VISA)).await;
    let order_id = id(&order);
    let tag = order["version"].to_string();
    let body = json!({"operations": [add_item("SKU-SAUCER", 1, "3.00")],
                      "collect": "await_customer", "payment_deadline_seconds": 1});
    let (status, change, _) = apply(&app, &order_id, &body, Some(&tag), None).await;
    assert_eq!(status, 201, "{change}");
    let change_id = change["change_id"].as_str().unwrap().to_owned();

    // Rule 12, revert: expired, the stock released, nothing charged, the order as it was.
    let expired = change_when(&app, &order_id, &change_id, "expired").await;

    assert!(expired["closed_at"].is_string(), "{expired}");
    assert_eq!(expired["version_after"], Value::Null);
    let (now, _) = order_and_tag(&app, &order_id).await;
    assert_eq!(
        (
            &now["version"],
            &now["total_amount"],
            &now["captured_amount"]
        ),
        (
            &order["version"],
            &order["total_amount"],
            &order["captured_amount"]
        )
    );
    let of = OrderLedger::of(&app.settled_ledger().await, &order_id);
    assert_eq!(of.captures.len(), 1);
    assert!(reservation_of(&of, "SKU-SAUCER").1, "{of:?}");
    assert_eq!(of.count_topic("order.change_expired"), 1);
    assert_eq!(of.count_template("change_reverted"), 1);
    let pay = format!("/orders/{order_id}/changes/{change_id}/payments");
    let answer = app
        .post(&pay, &json!({"method": "pm_card_visa"}), None)
        .await;
    assert_problem(&answer, 409, "invalid_transition");
}

#[tokio::test]
async fn a_declined_difference_kept_owed_applies_at_its_deadline_and_give_backs_clear_it_first() {
    let app = TestApp::spawn().await;
    let order = confirmed(&app, &order_body(&[("SKU-MUG", 1, "10.00")], VISA)).await;
    let order_id = id(&order);
    let tag = order["version"].to_string();
    let body = json!({"operations": [add_item("SKU-SAUCER", 2, "3.00")],
                      "payment": {"method": "pm_card_declined"},
                      "payment_deadline_seconds": 1, "on_unpaid": "keep_owed"});

    // A declined charge with a deadline waits instead of rolling back.
    let (status, change, _) = apply(&app, &order_id, &body, Some(&tag), None).await;
    assert_eq!(
        (status, change["status"].as_str()),
        (201, Some("awaiting_payment")),
        "{change}"
    );
    let change_id = change["change_id"].as_str().unwrap().to_owned();

    // Rule 12, keep_owed: applied, the difference outstanding, one `owed` movement.
    let applied = change_when(&app, &order_id, &change_id, "applied").await;
    assert_eq!(applied["settlement"]["outstanding"], "6.00");
    let (now, _) = order_and_tag(&app, &order_id).await;
    assert_eq!(now["outstanding_amount"], "6.00");
    assert_eq!(now["captured_amount"], order["captured_amount"]);
    assert_eq!(
        money(&now["total_amount"]),
        money(&order["total_amount"]) + Decimal::new(600, 2)
    );
    assert_eq!(balance(&now), money(&now["total_amount"]));
    let (_, ledger) = app.get(&format!("/orders/{order_id}/ledger")).await;
    assert_eq!(movements_of(&ledger, "owed"), ["6.00"]);
    assert_eq!(ledger["outstanding"], "6.00");
    let text = crate::metrics::scrape(&app).await;
    let usd = [("currency", "USD")];
    assert_eq!(
        crate::metrics::value(&text, "order_outstanding_value", &usd),
        6.0
    );

    // A give-back nets against what is owed before anything is refunded.
    let saucer = &now["items"][1]["id"];
    let cancel = json!({"items": [{"item_id": saucer, "quantity": 1}]});
    let (status, after_cancel, _) = app
        .post(&format!("/orders/{order_id}/cancel-items"), &cancel, None)
        .await;
    assert_eq!(status, 200, "{after_cancel}");
    assert_eq!(after_cancel["outstanding_amount"], "3.00");
    assert_eq!(after_cancel["refunded_amount"], "0.00");

    // Paying what is left owed charges it and clears it.
    let pay = format!("/orders/{order_id}/changes/{change_id}/payments");
    let (status, paid, _) = app
        .post(
            &pay,
            &json!({"method": "pm_card_visa", "amount": "3.00"}),
            None,
        )
        .await;
    assert_eq!(status, 200, "{paid}");
    // The lesser of the change's and the order's owed, off both.
    assert_eq!(paid["settlement"]["outstanding"], "3.00");
    let (now, _) = order_and_tag(&app, &order_id).await;
    assert_eq!(now["outstanding_amount"], "0.00");
    let text = crate::metrics::scrape(&app).await;
    assert_eq!(
        crate::metrics::value(&text, "order_outstanding_value", &usd),
        0.0
    );
    let (_, ledger) = app.get(&format!("/orders/{order_id}/ledger")).await;
    assert_eq!(movements_of(&ledger, "owed_cleared"), ["3.00", "3.00"]);
    assert_eq!(
        balance(&now),
        money(&now["total_amount"]) - Decimal::new(300, 2)
    );

    // A whole cancel then refunds exactly what was captured.
    let (status, cancelled, _) = app
        .post(&format!("/orders/{order_id}/cancel"), &json!({}), None)
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["refunded_amount"], cancelled["captured_amount"]);
    assert_eq!(cancelled["outstanding_amount"], "0.00");
}

#[tokio::test]
async fn a_change_cancelled_before_its_point_of_no_return_leaves_the_order_as_it_was() {
    let app = TestApp::spawn().await;
    let order = confirmed(&app, &order_body(&[("SKU-MUG", 1, "10.00")], VISA)).await;
    let order_id = id(&order);
    let tag = order["version"].to_string();

    // A waiting change: its hold is released, twice asked answers the same.
    let body =
        json!({"operations": [add_item("SKU-SAUCER", 1, "3.00")], "collect": "await_customer"});
    let (_, waiting, _) = apply(&app, &order_id, &body, Some(&tag), None).await;
    let waiting_id = waiting["change_id"].as_str().unwrap().to_owned();
    let cancel = format!("/orders/{order_id}/changes/{waiting_id}/cancel");
    for _ in 0..2 {
        let (status, cancelled, _) = app
            .post(
                &cancel,
                &json!({"reason": "customer changed their mind"}),
                None,
            )
            .await;
        assert_eq!(
            (status, cancelled["status"].as_str()),
            (200, Some("cancelled")),
            "{cancelled}"
        );
    }
    let of = OrderLedger::of(&app.settled_ledger().await, &order_id);
    assert!(reservation_of(&of, "SKU-SAUCER").1, "{of:?}");
    assert_eq!(of.count_topic("order.change_cancelled"), 1);

    // A running change stops at its next step boundary: its charge, made while
    // the cancel came, is refunded in full and its stock released.
    app.inject(json!({"service": "payment", "operation": "charge", "delay_ms": 1500, "times": 1}));
    let body = json!({"operations": [add_item("SKU-PLATE", 1, "4.00")]});
    let (client, url) = (
        app.http.clone(),
        format!("{}/orders/{order_id}/changes", app.api),
    );
    let running = tokio::spawn(async move {
        let res = client
            .post(url)
            .header("If-Match", tag.as_str())
            .json(&body)
            .send()
            .await
            .unwrap();
        res.json::<Value>().await.unwrap()
    });
    let start = Instant::now();
    while !app.sim.sim.delaying("charge") {
        assert!(start.elapsed() < Duration::from_secs(20), "never charged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, list) = app
        .get(&format!("/orders/{order_id}/changes?status=applying"))
        .await;
    let running_id = list["changes"][0]["change_id"].as_str().unwrap().to_owned();
    let cancel = format!("/orders/{order_id}/changes/{running_id}/cancel");
    let (status, cancelled, _) = app.post(&cancel, &json!({}), None).await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("cancelled")),
        "{cancelled}"
    );
    assert_eq!(cancelled["point_of_no_return"], false);
    assert_eq!(running.await.unwrap()["status"], "cancelled");
    let ledger = app.settled_ledger().await;
    let of = OrderLedger::of(&ledger, &order_id);
    let plate = Decimal::new(400, 2);
    assert_eq!(of.captures.len(), 2);
    assert_eq!(of.captures[1].amount, plate);
    assert_eq!(of.refunds.len(), 1);
    assert_eq!(
        (of.refunds[0].payment_id.as_str(), of.refunds[0].amount),
        (of.captures[1].payment_id.as_str(), plate)
    );
    assert!(reservation_of(&of, "SKU-PLATE").1, "{of:?}");
    assert_eq!(parcel_updates(&app), 0);
    // Items, totals and address as they were; the version moved once, for the
    // money that moved and was given back.
    let (now, _) = order_and_tag(&app, &order_id).await;
    assert_eq!(now["items"], order["items"]);
    assert_eq!(now["total_amount"], order["total_amount"]);
    assert_eq!(now["shipping_address"], order["shipping_address"]);
    assert_eq!(now["version"], order["version"].as_i64().unwrap() + 1);

    // Past the point of no return: 409 with the change and its status.
    let tag = now["version"].to_string();
    let body = json!({"operations": [set_quantity(&order["items"][0]["id"], 2)]});
    let (_, applied, _) = apply(&app, &order_id, &body, Some(&tag), None).await;
    assert_eq!(applied["status"], "applied", "{applied}");
    let applied_id = applied["change_id"].as_str().unwrap();
    let cancel = format!("/orders/{order_id}/changes/{applied_id}/cancel");
    let answer = app.post(&cancel, &json!({}), None).await;
    assert_problem(&answer, 409, "past_point_of_no_return");
    assert_eq!(
        (answer.1["change_id"].as_str(), answer.1["status"].as_str()),
        (Some(applied_id), Some("applied"))
    );
    let unknown = format!("/orders/{order_id}/changes/{}/cancel", uuid::Uuid::new_v4());
    assert_problem(
        &app.post(&unknown, &json!({}), None).await,
        404,
        "change_not_found",
    );
}

#[tokio::test]
async fn a_change_whose_refund_was_refused_is_listed_for_operators_and_retried_or_resolved() {
    let app = TestApp::spawn().await;
    let mut stuck = Vec::new();
    for _ in 0..2 {
        let order = confirmed(&app, &order_body(&[("SKU-MUG", 3, "10.00")], VISA)).await;
        let order_id = id(&order);
        let tag = order["version"].to_string();
        let body = json!({"operations": [set_quantity(&order["items"][0]["id"], 2)]});
        app.inject(json!({"service": "payment", "operation": "refund", "status": 409, "times": 1}));
        let (status, change, _) = apply(&app, &order_id, &body, Some(&tag), None).await;
        assert_eq!(
            (status, change["status"].as_str()),
            (201, Some("needs_attention")),
            "{change}"
        );
        assert_eq!(change["attention"]["step"], "refund_payment", "{change}");
        assert_eq!(change["point_of_no_return"], true);
        stuck.push((order_id, change["change_id"].as_str().unwrap().to_owned()));
    }

    // Listed with its change, as parked.
    let (status, list) = app.get("/ops/orders/stuck").await;
    assert_eq!(status, 200, "{list}");
    for (order_id, change_id) in &stuck {
        let row = list["orders"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["change_id"] == change_id.as_str())
            .unwrap_or_else(|| panic!("change {change_id} not listed: {list}"));
        assert_eq!(
            (row["order_id"].as_str(), row["reason"].as_str()),
            (Some(order_id.as_str()), Some("parked"))
        );
    }

    // Retried: the refund goes through once and the change applies.
    let (order_id, change_id) = &stuck[0];
    let retry = format!("/ops/orders/{order_id}/changes/{change_id}/retry");
    let (status, retried, _) = app.post(&retry, &json!({}), None).await;
    assert_eq!(status, 202, "{retried}");
    assert_eq!(retried["change_id"], change_id.as_str());
    let (_, change) = app
        .get(&format!("/orders/{order_id}/changes/{change_id}"))
        .await;
    assert_eq!(change["status"], "applied", "{change}");
    assert_eq!(change["attention"], Value::Null);
    let (_, order) = app.get(&format!("/orders/{order_id}")).await;
    assert_eq!(
        (
            order["attention"].clone(),
            order["refunded_amount"].as_str()
        ),
        (Value::Null, Some("10.00"))
    );
    let of = OrderLedger::of(&app.settled_ledger().await, order_id);
    assert_eq!(of.refund_amounts(), ["10.00"]);
    let answer = app.post(&retry, &json!({}), None).await;
    assert_problem(&answer, 409, "nothing_to_retry");

    // Resolved: settled outside, nothing counted, off the list.
    let (order_id, change_id) = &stuck[1];
    let resolve = format!("/ops/orders/{order_id}/changes/{change_id}/resolve");
    let (status, resolved, _) = app
        .post(
            &resolve,
            &json!({"reason": "refunded by bank transfer"}),
            None,
        )
        .await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["change"]["status"], "applied", "{resolved}");
    assert_eq!(resolved["order"]["refunded_amount"], "0.00");
    assert_eq!(resolved["order"]["attention"], Value::Null);
    let (_, list) = app.get("/ops/orders/stuck").await;
    assert!(
        !list["orders"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["order_id"] == order_id.as_str()),
        "{list}"
    );
    let answer = app.post(&resolve, &json!({"reason": "again"}), None).await;
    assert_problem(&answer, 409, "nothing_to_resolve");
}
