//! `POST /orders/{id}/cancel-items`: units cancelled, released and refunded by the
//! cumulative rule, shipping only with the last units, which cancel the order; the
//! edit history; refusals that change nothing; repeats and races.

use crate::helpers::{
    assert_problem, cents, give_back, money, mug_order, order_body, Options, OrderLedger, TestApp,
};
use order_sim::{FulfillmentStatus, ReservationStatus, SkuQty};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn id(order: &Value) -> String {
    order["id"].as_str().unwrap().to_owned()
}

fn sku_qty(sku: &str, quantity: u32) -> SkuQty {
    SkuQty {
        sku: sku.into(),
        quantity,
    }
}

/// The example of the money rules: 3 units at 10.00, discount 1.00, tax 0.83
/// (29.83), shipping 5.00: 34.83 in all.
fn cup_order(method: Option<&str>) -> Value {
    let mut body = order_body(&[("SKU-CUP", 3, "10.00")], method);
    body["items"][0]["discount_amount"] = json!("1.00");
    body["items"][0]["tax_amount"] = json!("0.83");
    body
}

fn cancel_items(items: &[(i64, i64)], reason: &str) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|(item_id, quantity)| json!({"item_id": item_id, "quantity": quantity}))
        .collect();
    json!({"items": items, "reason": reason})
}

async fn edit_history(app: &TestApp, id: &str) -> Vec<Value> {
    let (status, edits) = app.get(&format!("/orders/{id}/edit-history")).await;
    assert_eq!(status, 200, "{edits}");
    edits.as_array().unwrap().clone()
}

#[tokio::test]
async fn cancelling_units_one_by_one_refunds_the_cumulative_shares_and_the_last_cancel_the_order() {
    let app = TestApp::spawn().await;
    let (_, order) = app.create(&cup_order(Some("pm_card_visa"))).await;
    assert_eq!(order["total_amount"], "34.83", "{order}");
    let id = id(&order);
    let path = format!("/orders/{id}/cancel-items");

    let mut version = order["version"].as_i64().unwrap();
    let steps = [
        (1, "9.95", "partially_refunded", "confirmed"),
        (2, "19.88", "partially_refunded", "confirmed"),
        (3, "34.83", "refunded", "cancelled"),
    ];
    for (cancelled, refunded, payment_status, status) in steps {
        let (code, now, _) = app.post(&path, &cancel_items(&[(1, 1)], "r"), None).await;

        assert_eq!(code, 200, "{now}");
        assert_eq!(now["items"][0]["cancelled_quantity"], cancelled, "{now}");
        assert_eq!(now["refunded_amount"], refunded);
        assert_eq!(now["payment_status"], payment_status);
        assert_eq!(now["status"], status);
        assert_eq!(now["captured_amount"], "34.83");
        assert_eq!(now["total_amount"], "34.83", "totals stay as placed");
        assert_eq!(now["items"][0]["total_price"], "29.83");
        assert!(now["version"].as_i64().unwrap() > version, "{now}");
        version = now["version"].as_i64().unwrap();
        assert_eq!(app.get(&format!("/orders/{id}")).await, (200, now.clone()));

        if cancelled == 1 {
            assert_eq!(now["cancelled_at"], Value::Null);
            let edits = edit_history(&app, &id).await;
            let count = edits
                .iter()
                .find(|e| e["field"] == "cancelled_quantity")
                .unwrap_or_else(|| panic!("no cancelled_quantity edit: {edits:?}"));
            assert_eq!(
                (
                    &count["item_id"],
                    &count["old"],
                    &count["new"],
                    &count["reason"],
                    &count["actor"],
                    &count["version"],
                ),
                (
                    &json!(1),
                    &json!(0),
                    &json!(1),
                    &json!("r"),
                    &json!("api"),
                    &json!(version)
                ),
                "{edits:?}"
            );
            assert!(count["at"].is_string());
            let amount = edits
                .iter()
                .find(|e| e["field"] == "refunded_amount")
                .unwrap_or_else(|| panic!("no refunded_amount edit: {edits:?}"));
            assert_eq!(
                (
                    &amount["item_id"],
                    &amount["old"],
                    &amount["new"],
                    &amount["version"]
                ),
                (
                    &Value::Null,
                    &json!("0.00"),
                    &json!("9.95"),
                    &json!(version)
                ),
                "{edits:?}"
            );
        }
    }

    let (_, cancelled) = app.get(&format!("/orders/{id}")).await;
    assert!(cancelled["cancelled_at"].is_string());
    let ledger = OrderLedger::of(&app.settled_ledger().await, &id);
    assert_eq!(
        ledger.refund_amounts(),
        ["9.95", "9.93", "14.95"],
        "each unit's share, shipping with the last"
    );
    assert!(ledger
        .refunds
        .iter()
        .all(|r| r.payment_id == ledger.captures[0].payment_id));
    let mut keys: Vec<&str> = ledger
        .refunds
        .iter()
        .map(|r| r.idempotency_key.as_str())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 3, "one key per refund");
    assert_eq!(cents(ledger.captures[0].refunded), "34.83");
    let released: Vec<Vec<SkuQty>> = ledger.releases.iter().map(|r| r.released.clone()).collect();
    assert_eq!(released, vec![vec![sku_qty("SKU-CUP", 1)]; 3]);
    assert_eq!(ledger.reservations[0].status, ReservationStatus::Released);
    assert_eq!(ledger.fulfillment_cancels, 3);
    assert_eq!(ledger.fulfillments[0].cancelled, [sku_qty("SKU-CUP", 3)]);
    assert_eq!(ledger.fulfillments[0].status, FulfillmentStatus::Cancelled);
    assert_eq!(ledger.count_topic("order.items_cancelled"), 3);
    assert_eq!(ledger.count_topic("order.cancelled"), 1);
    assert_eq!(ledger.count_template("order_items_cancelled"), 3);

    let edits = edit_history(&app, &id).await;
    let versions: Vec<i64> = edits
        .iter()
        .map(|e| e["version"].as_i64().unwrap())
        .collect();
    assert!(versions.is_sorted(), "ordered by version: {edits:?}");
    let changes = |field: &str| -> Vec<(Value, Value)> {
        edits
            .iter()
            .filter(|e| e["field"] == field)
            .map(|e| (e["old"].clone(), e["new"].clone()))
            .collect()
    };
    assert_eq!(
        changes("cancelled_quantity"),
        [
            (json!(0), json!(1)),
            (json!(1), json!(2)),
            (json!(2), json!(3))
        ]
    );
    assert_eq!(
        changes("refunded_amount"),
        [
            (json!("0.00"), json!("9.95")),
            (json!("9.95"), json!("19.88")),
            (json!("19.88"), json!("34.83"))
        ]
    );
    let (_, history) = app.get(&format!("/orders/{id}/status-history")).await;
    let to_cancelled: Vec<&Value> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["to"] == "cancelled")
        .collect();
    assert_eq!(to_cancelled.len(), 1, "{history}");
    assert_eq!(to_cancelled[0]["from"], "confirmed");

    let more = app.post(&path, &cancel_items(&[(1, 1)], "r"), None).await;
    assert_problem(&more, 409, "invalid_transition");
    let whole = app
        .post(&format!("/orders/{id}/cancel"), &json!({}), None)
        .await;
    assert_problem(&whole, 409, "invalid_transition");
    assert_eq!(OrderLedger::of(&app.ledger(), &id).refunds.len(), 3);
}

#[tokio::test]
async fn cancelling_items_of_a_processing_order_refunds_shipping_only_with_the_last_units() {
    let app = TestApp::spawn().await;
    // Mug: 2 x 50.00 - 10.00 + 8.10 = 98.10; cup: 29.83; shipping 5.00.
    let mut body = mug_order(Some("pm_card_visa"));
    body["items"]
        .as_array_mut()
        .unwrap()
        .push(cup_order(None)["items"][0].clone());
    let (_, order) = app.create(&body).await;
    assert_eq!(order["total_amount"], "132.93", "{order}");
    let id = id(&order);
    let (status, moved, _) = app
        .put(
            &format!("/orders/{id}/status"),
            &json!({"status": "processing"}),
            None,
        )
        .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(
        (&order["items"][0]["id"], &order["items"][1]["id"]),
        (&json!(1), &json!(2))
    );
    let path = format!("/orders/{id}/cancel-items");

    // One unit of each in one request: one refund of both shares.
    let (status, first, _) = app
        .post(&path, &cancel_items(&[(1, 1), (2, 1)], "too many"), None)
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["status"], "processing");
    assert_eq!(first["refunded_amount"], "59.00", "49.05 + 9.95");
    assert_eq!(first["payment_status"], "partially_refunded");
    assert_eq!(first["items"][0]["cancelled_quantity"], 1);
    assert_eq!(first["items"][1]["cancelled_quantity"], 1);

    // The mug's last unit: the item is gone, the order and its shipping stay.
    let (status, second, _) = app
        .post(&path, &cancel_items(&[(1, 1)], "too many"), None)
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["status"], "processing");
    assert_eq!(second["refunded_amount"], "108.05");
    assert_eq!(second["items"][0]["cancelled_quantity"], 2);
    assert_eq!(second["cancelled_at"], Value::Null);

    // The cups left: 9.93 + 9.95, and now the shipping.
    let (status, last, _) = app
        .post(&path, &cancel_items(&[(2, 2)], "too many"), None)
        .await;
    assert_eq!(status, 200, "{last}");
    assert_eq!(last["status"], "cancelled");
    assert_eq!(last["refunded_amount"], "132.93");
    assert_eq!(last["captured_amount"], "132.93");
    assert_eq!(last["payment_status"], "refunded");
    assert_eq!(last["items"][1]["cancelled_quantity"], 3);
    assert!(last["cancelled_at"].is_string());

    let ledger = OrderLedger::of(&app.settled_ledger().await, &id);
    assert_eq!(ledger.refund_amounts(), ["59.00", "49.05", "24.88"]);
    let mut released: Vec<Vec<SkuQty>> =
        ledger.releases.iter().map(|r| r.released.clone()).collect();
    released[0].sort_by(|a, b| a.sku.cmp(&b.sku));
    assert_eq!(
        released,
        [
            vec![sku_qty("SKU-CUP", 1), sku_qty("SKU-MUG", 1)],
            vec![sku_qty("SKU-MUG", 1)],
            vec![sku_qty("SKU-CUP", 2)]
        ]
    );
    assert_eq!(ledger.reservations[0].status, ReservationStatus::Released);
    let mut cancelled = ledger.fulfillments[0].cancelled.clone();
    cancelled.sort_by(|a, b| a.sku.cmp(&b.sku));
    assert_eq!(cancelled, [sku_qty("SKU-CUP", 3), sku_qty("SKU-MUG", 2)]);
    assert_eq!(ledger.fulfillments[0].status, FulfillmentStatus::Cancelled);
    assert_eq!(ledger.fulfillment_cancels, 3);
    assert_eq!(ledger.count_topic("order.items_cancelled"), 3);
    assert_eq!(ledger.count_topic("order.cancelled"), 1);
}

#[tokio::test]
async fn cancel_items_refuses_bad_items_and_quantities_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let (_, order) = app.create(&cup_order(Some("pm_card_visa"))).await;
    let id = id(&order);
    let path = format!("/orders/{id}/cancel-items");

    // (items, status, code, field at fault)
    type Refusal<'a> = (&'a [(i64, i64)], u16, &'a str, Option<&'a str>);
    let refusals: [Refusal; 7] = [
        (&[(1, 4)], 422, "quantity_exceeded", None),
        (
            &[(2, 1)],
            422,
            "validation_failed",
            Some("items[0].item_id"),
        ),
        (
            &[(0, 1)],
            422,
            "validation_failed",
            Some("items[0].item_id"),
        ),
        (
            &[(1, 1), (7, 1)],
            422,
            "validation_failed",
            Some("items[1].item_id"),
        ),
        (&[(1, 1), (1, 1)], 422, "validation_failed", None),
        (&[(1, 0)], 422, "validation_failed", None),
        (&[(1, -1)], 422, "validation_failed", None),
    ];
    for (items, status, code, field) in refusals {
        let answer = app.post(&path, &cancel_items(items, "r"), None).await;
        assert_problem(&answer, status, code);
        if let Some(field) = field {
            assert_eq!(
                answer.1["errors"][0]["field"], field,
                "{items:?}: {}",
                answer.1
            );
        }
    }
    assert_eq!(
        app.get(&format!("/orders/{id}")).await,
        (200, order.clone()),
        "nothing changed"
    );

    // Two of the three go; then two more are more than is left.
    let (status, two, _) = app.post(&path, &cancel_items(&[(1, 2)], "r"), None).await;
    assert_eq!(status, 200, "{two}");
    assert_eq!(two["refunded_amount"], "19.88", "9.95 + 9.93");
    let exceeded = app.post(&path, &cancel_items(&[(1, 2)], "r"), None).await;
    assert_problem(&exceeded, 422, "quantity_exceeded");
    assert_eq!(app.get(&format!("/orders/{id}")).await, (200, two.clone()));

    let ledger = OrderLedger::of(&app.settled_ledger().await, &id);
    assert_eq!(ledger.refund_amounts(), ["19.88"]);
    assert_eq!(ledger.releases.len(), 1);
    assert_eq!(ledger.releases[0].released, [sku_qty("SKU-CUP", 2)]);
    assert_eq!(ledger.fulfillment_cancels, 1);
    assert_eq!(ledger.count_topic("order.items_cancelled"), 1);
}

#[tokio::test]
async fn cancelling_items_of_a_draft_releases_them_and_the_payment_charges_what_is_left() {
    let app = TestApp::spawn().await;
    let (_, draft) = app.create(&mug_order(None)).await;
    assert_eq!(draft["status"], "draft", "{draft}");
    let id = id(&draft);
    let path = format!("/orders/{id}/cancel-items");

    let (status, fewer, _) = app
        .post(&path, &cancel_items(&[(1, 1)], "one is enough"), None)
        .await;

    assert_eq!(status, 200, "{fewer}");
    assert_eq!(fewer["status"], "draft");
    assert_eq!(fewer["payment_status"], "pending");
    assert_eq!(fewer["refunded_amount"], "0.00");
    assert_eq!(fewer["items"][0]["cancelled_quantity"], 1);
    assert_eq!(fewer["total_amount"], "103.10", "totals stay as placed");
    let ledger = OrderLedger::of(&app.settled_ledger().await, &id);
    assert_eq!(ledger.releases.len(), 1);
    assert_eq!(ledger.releases[0].released, [sku_qty("SKU-MUG", 1)]);
    assert_eq!(ledger.reservations[0].status, ReservationStatus::Active);
    assert_eq!(ledger.reservations[0].items[0].remaining, 1);
    assert!(ledger.refund_calls.is_empty() && ledger.fulfillments.is_empty());

    // 103.10 less the cancelled unit's 49.05.
    let (status, paid, _) = app
        .post(
            &format!("/orders/{id}/payments"),
            &json!({"method": "pm_card_visa"}),
            None,
        )
        .await;

    assert_eq!(status, 200, "{paid}");
    assert_eq!(paid["status"], "confirmed");
    assert_eq!(paid["captured_amount"], "54.05");
    assert_eq!(paid["items"][0]["cancelled_quantity"], 1);
    let ledger = OrderLedger::of(&app.settled_ledger().await, &id);
    assert_eq!(ledger.captures.len(), 1);
    assert_eq!(cents(ledger.captures[0].amount), "54.05");
    assert_eq!(
        ledger.fulfillments[0].items[0].quantity, 1,
        "the cancelled unit is not shipped"
    );

    // The last unit goes with the shipping: everything captured comes back.
    let (status, last, _) = app
        .post(&path, &cancel_items(&[(1, 1)], "none after all"), None)
        .await;

    assert_eq!(status, 200, "{last}");
    assert_eq!(last["status"], "cancelled");
    assert_eq!(last["refunded_amount"], "54.05");
    assert_eq!(last["payment_status"], "refunded");
    let ledger = OrderLedger::of(&app.settled_ledger().await, &id);
    assert_eq!(ledger.refund_amounts(), ["54.05"], "49.05 + 5.00");
    assert_eq!(ledger.reservations[0].status, ReservationStatus::Released);
    assert_eq!(ledger.fulfillments[0].status, FulfillmentStatus::Cancelled);
}

#[tokio::test]
async fn a_repeated_cancel_items_answers_the_same_and_refunds_once() {
    let app = TestApp::spawn().await;
    let (_, order) = app.create(&cup_order(Some("pm_card_visa"))).await;
    let id = id(&order);
    let path = format!("/orders/{id}/cancel-items");
    let body = cancel_items(&[(1, 1)], "r");

    let first = app.post(&path, &body, Some("ci-1")).await;
    let again = app.post(&path, &body, Some("ci-1")).await;
    let other = app
        .post(&path, &cancel_items(&[(1, 2)], "r"), Some("ci-1"))
        .await;

    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!((again.0, &again.1), (first.0, &first.1), "the first answer");
    assert_problem(&other, 422, "idempotency_key_reused");
    assert_eq!(
        app.get(&format!("/orders/{id}")).await,
        (200, first.1.clone())
    );
    assert_eq!(
        OrderLedger::of(&app.settled_ledger().await, &id).refund_amounts(),
        ["9.95"]
    );

    // Another key is another request.
    let (status, second, _) = app.post(&path, &body, Some("ci-2")).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["items"][0]["cancelled_quantity"], 2);
    let ledger = OrderLedger::of(&app.settled_ledger().await, &id);
    assert_eq!(ledger.refund_amounts(), ["9.95", "9.93"]);
    assert_eq!(ledger.releases.len(), 2);
    assert_eq!(ledger.count_topic("order.items_cancelled"), 2);
}

#[tokio::test]
async fn concurrent_cancel_items_each_apply_once_and_refund_exactly_their_shares() {
    // Long enough that 20 requests queued on one order all answer once rested.
    let app = TestApp::spawn_with(Options {
        env: vec![("ORDER_CREATE_WAIT_MS", "25000".into())],
        ..Default::default()
    })
    .await;

    // 31 units, requests of 2 and 4 (60 in all): the accepted ones leave an odd
    // number of units that no later request fits, so some are refused as too many.
    let mut body = order_body(&[("SKU-PEN", 31, "7.99")], Some("pm_card_visa"));
    body["items"][0]["discount_amount"] = json!("3.00");
    body["items"][0]["tax_amount"] = json!("2.17");
    let (_, order) = app.create(&body).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    let quantities: Vec<i64> = (0..20).map(|i| i % 2 * 2 + 2).collect();
    let answers = cancel_concurrently(&app, &id(&order), &quantities).await;
    assert!(
        answers.iter().any(|(_, status, _)| *status == 422),
        "{answers:?}"
    );
    assert_race_outcome(&app, &id(&order), &answers).await;

    // 20 units, 20 requests of one: every one goes, and one of them cancels the order.
    let mut body = order_body(&[("SKU-INK", 20, "2.50")], Some("pm_card_visa"));
    body["items"][0]["discount_amount"] = json!("0.70");
    body["items"][0]["tax_amount"] = json!("0.33");
    let (_, order) = app.create(&body).await;
    let answers = cancel_concurrently(&app, &id(&order), &[1; 20]).await;
    let accepted = answers
        .iter()
        .filter(|(_, status, _)| *status == 200)
        .count();
    assert_eq!(accepted, 20, "{answers:?}");
    let cancelled = assert_race_outcome(&app, &id(&order), &answers).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["refunded_amount"], cancelled["captured_amount"]);
}

/// Sends one cancel-items of `quantities[i]` units of item 1 per entry, all at once,
/// each with a key of its own; a `409 order_busy` is sent again after its
/// Retry-After, as api.md allows. Answers (quantity, status, body) per request.
async fn cancel_concurrently(
    app: &TestApp,
    id: &str,
    quantities: &[i64],
) -> Vec<(i64, u16, Value)> {
    let mut requests = tokio::task::JoinSet::new();
    for (i, &quantity) in quantities.iter().enumerate() {
        let client = app.http.clone();
        let url = format!("{}/orders/{id}/cancel-items", app.api);
        let key = format!("race-{id}-{i}");
        let body = cancel_items(&[(1, quantity)], "race");
        requests.spawn(async move {
            for _ in 0..60 {
                let res = client
                    .post(&url)
                    .header("Idempotency-Key", &key)
                    .json(&body)
                    .send()
                    .await
                    .expect("request sent");
                let status = res.status().as_u16();
                let retry_after = res
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                    .unwrap_or(1);
                let answer: Value = res.json().await.unwrap_or(Value::Null);
                if status == 409 && answer["code"] == "order_busy" {
                    tokio::time::sleep(Duration::from_secs(retry_after.min(2))).await;
                    continue;
                }
                return (quantity, status, answer);
            }
            panic!("request {key} stayed busy");
        });
    }
    requests.join_all().await
}

/// Checks the end of a race of cancel-items on the single item of order `id`: each
/// accepted request cancelled, released and refunded its units once, in some order,
/// the refunds following the cumulative rule; a refused one could not have fit.
/// Returns the order.
async fn assert_race_outcome(app: &TestApp, id: &str, answers: &[(i64, u16, Value)]) -> Value {
    for (quantity, status, body) in answers {
        match status {
            200 | 202 => {}
            422 => assert_eq!(body["code"], "quantity_exceeded", "{quantity}: {body}"),
            // Once the last units went, the order is cancelled: no flow applies.
            409 => assert_eq!(body["code"], "invalid_transition", "{quantity}: {body}"),
            _ => panic!("{quantity} units: {status} {body}"),
        }
    }
    let late: Vec<i64> = answers
        .iter()
        .filter(|(_, status, _)| *status == 202)
        .map(|(q, _, _)| *q)
        .collect();
    let order = if late.is_empty() {
        app.get(&format!("/orders/{id}")).await.1
    } else {
        wait_until_still(app, id).await
    };
    let item = &order["items"][0];
    let n = item["quantity"].as_i64().unwrap();
    let shipping = money(&order["shipping_amount"]);
    let ledger = OrderLedger::of(&app.settled_ledger().await, id);

    // The requests that took effect, read back from the refunds in the order made.
    let mut given = 0;
    let mut taken = Vec::new();
    for refund in &ledger.refunds {
        let q = (1..=n - given)
            .find(|&q| {
                let last = if given + q == n {
                    shipping
                } else {
                    Decimal::ZERO
                };
                give_back(item, given, q) + last == refund.amount
            })
            .unwrap_or_else(|| {
                panic!(
                    "refund {} is no share of units {given}.. by the cumulative rule: {:?}",
                    refund.amount,
                    ledger.refund_amounts()
                )
            });
        taken.push(q);
        given += q;
    }
    let mut accepted: Vec<i64> = answers
        .iter()
        .filter(|(_, status, _)| *status == 200)
        .map(|(q, _, _)| *q)
        .collect();
    let mut took = taken.clone();
    if late.is_empty() {
        accepted.sort_unstable();
        took.sort_unstable();
        assert_eq!(took, accepted, "one refund per accepted request");
    } else {
        for q in accepted {
            let at = took
                .iter()
                .position(|t| *t == q)
                .unwrap_or_else(|| panic!("an accepted {q} was not refunded: {taken:?}"));
            took.remove(at);
        }
        assert!(
            took.iter().all(|q| late.contains(q)),
            "refunds of no request: {took:?}"
        );
    }

    assert_eq!(item["cancelled_quantity"], given, "{order}");
    let refunded: Decimal = ledger.refunds.iter().map(|r| r.amount).sum();
    let expected = give_back(item, 0, given) + if given == n { shipping } else { Decimal::ZERO };
    assert_eq!(cents(refunded), cents(expected));
    assert_eq!(order["refunded_amount"], cents(refunded), "{order}");
    assert!(refunded <= money(&order["captured_amount"]), "{order}");
    assert_eq!(ledger.captures[0].refunded, refunded);
    let released: Vec<i64> = ledger
        .releases
        .iter()
        .map(|r| r.released.iter().map(|s| i64::from(s.quantity)).sum())
        .collect();
    assert_eq!(
        released, taken,
        "one release per accepted request, of its units"
    );
    let fulfilled_cancel: u32 = ledger.fulfillments[0]
        .cancelled
        .iter()
        .map(|c| c.quantity)
        .sum();
    assert_eq!(i64::from(fulfilled_cancel), given);
    assert_eq!(ledger.fulfillment_cancels, taken.len());
    for (quantity, status, _) in answers {
        match status {
            422 => assert!(
                *quantity > n - given,
                "{quantity} units were refused but fit"
            ),
            409 => assert_eq!(given, n, "refused as cancelled, but the order is not"),
            _ => {}
        }
    }
    assert_eq!(ledger.count_topic("order.items_cancelled"), taken.len());
    if given == n {
        assert_eq!(order["status"], "cancelled");
        assert_eq!(order["payment_status"], "refunded");
        assert_eq!(ledger.count_topic("order.cancelled"), 1);
    } else {
        assert_eq!(order["status"], "confirmed");
        assert_eq!(order["payment_status"], "partially_refunded");
        assert_eq!(ledger.count_topic("order.cancelled"), 0);
    }
    order
}

/// Waits until the order has not changed for 3 s: the requests answered `202` are done.
async fn wait_until_still(app: &TestApp, id: &str) -> Value {
    let start = Instant::now();
    let mut last = app.get(&format!("/orders/{id}")).await.1;
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = app.get(&format!("/orders/{id}")).await.1;
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() > Duration::from_secs(3) {
            return now;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "order {id} never rested"
        );
    }
}
