//! Changing an order after checkout (api-changes.md §1, §2, "Rules a test can
//! check"): binding quotes, changes applied with `If-Match`, their money, stock and
//! parcel, and what a refused step leaves.

use crate::authorization::{customer, secured, staff};
use crate::helpers::{
    assert_problem, cents, give_back, money, order_body, read, Answer, OrderLedger, TestApp,
};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

pub(crate) const VISA: Option<&str> = Some("pm_card_visa");

/// 3 units at 10.00 with discount 1.00 and tax 0.83, no shipping: the example of
/// "Money of a change".
fn example_order() -> Value {
    let mut body = order_body(&[("SKU-CUP", 3, "10.00")], VISA);
    body["items"][0]["discount_amount"] = json!("1.00");
    body["items"][0]["tax_amount"] = json!("0.83");
    body["shipping_amount"] = json!("0.00");
    body
}

/// A confirmed order made of `body`.
pub(crate) async fn confirmed(app: &TestApp, body: &Value) -> Value {
    let (status, order) = app.create(body).await;
    assert_eq!(
        (status, order["status"].as_str()),
        (201, Some("confirmed")),
        "{order}"
    );
    order
}

pub(crate) fn id(order: &Value) -> String {
    order["id"].as_str().unwrap().to_owned()
}

/// The order and its `ETag`.
pub(crate) async fn order_and_tag(app: &TestApp, order_id: &str) -> (Value, String) {
    let res = app
        .http
        .get(format!("{}/orders/{order_id}", app.api))
        .send()
        .await
        .unwrap();
    let (status, order, headers) = read(res).await;
    assert_eq!(status, 200, "{order}");
    let tag = headers["etag"].to_str().unwrap().to_owned();
    (order, tag)
}

/// Sends `method path` with `body`, an `Idempotency-Key` and `If-Match` when given.
pub(crate) async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
    key: Option<&str>,
    if_match: Option<&str>,
) -> Answer {
    let mut req = app.http.request(method, format!("{}{path}", app.api));
    if let Some(body) = body {
        req = req.json(body);
    }
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    if let Some(tag) = if_match {
        req = req.header("If-Match", tag);
    }
    read(req.send().await.unwrap()).await
}

pub(crate) async fn quote(app: &TestApp, order_id: &str, body: &Value) -> Answer {
    let path = format!("/orders/{order_id}/change-quotes");
    send(app, reqwest::Method::POST, &path, Some(body), None, None).await
}

pub(crate) async fn apply(
    app: &TestApp,
    order_id: &str,
    body: &Value,
    tag: Option<&str>,
    key: Option<&str>,
) -> Answer {
    let path = format!("/orders/{order_id}/changes");
    send(app, reqwest::Method::POST, &path, Some(body), key, tag).await
}

/// A quote that must be made; returns it.
async fn new_quote(app: &TestApp, order_id: &str, body: &Value) -> Value {
    let (status, made, headers) = quote(app, order_id, body).await;
    assert_eq!(status, 201, "{made}");
    let location = format!(
        "/api/v1/orders/{order_id}/change-quotes/{}",
        made["quote_id"].as_str().unwrap()
    );
    assert_eq!(headers["location"], location.as_str());
    made
}

pub(crate) fn set_quantity(item_id: &Value, quantity: i64) -> Value {
    json!({"op": "set_quantity", "item_id": item_id, "quantity": quantity})
}

pub(crate) fn add_item(sku: &str, quantity: i64, price: &str) -> Value {
    json!({"op": "add_item", "product_id": Uuid::new_v4(), "product_sku": sku, "product_name": "Saucer",
           "warehouse_id": "6f1c1a54-0000-4000-8000-000000000001", "quantity": quantity, "unit_price": price})
}

/// The calls a change makes (stock, money, parcel), for "nothing was called";
/// events and notifications of earlier facts go out meanwhile.
fn calls(app: &TestApp) -> usize {
    let services = ["warehouse", "payment", "fulfillment"];
    let ledger = app.ledger();
    ledger
        .calls
        .iter()
        .filter(|c| services.contains(&c.service.as_str()))
        .count()
}

#[tokio::test]
async fn a_held_quote_applies_exactly_its_settlement_at_the_next_version() {
    let app = TestApp::spawn().await;
    let order = confirmed(&app, &example_order()).await;
    let order_id = id(&order);
    let item = order["items"][0]["id"].clone();
    let cancel = json!({"items": [{"item_id": item, "quantity": 1}]});
    let (status, _, _) = app
        .post(&format!("/orders/{order_id}/cancel-items"), &cancel, None)
        .await;
    assert_eq!(status, 200);
    let (before, tag) = order_and_tag(&app, &order_id).await;

    let made = new_quote(
        &app,
        &order_id,
        &json!({"operations": [set_quantity(&item, 4)], "reason": "customer called"}),
    )
    .await;

    // The example of "Money of a change", pinned by the quote.
    assert_eq!(made["status"], "open");
    assert_eq!(made["order_version"], before["version"]);
    let after = &made["lines"][0]["after"];
    assert_eq!(
        (
            after["quantity"].as_i64(),
            after["discount_amount"].as_str(),
            after["tax_amount"].as_str(),
            after["total_price"].as_str()
        ),
        (Some(4), Some("1.33"), Some("1.11"), Some("39.78")),
        "{made}"
    );
    assert_eq!(made["settlement"]["delta"], "9.95");
    assert_eq!(
        made["settlement"]["charge"],
        json!({"method": "pm_card_visa", "amount": "9.95"})
    );
    assert_eq!(made["hold"]["items"][0]["quantity"], 1, "{made}");
    let hold = made["hold"]["reservation_id"].as_str().unwrap().to_owned();
    let reservations_before = OrderLedger::of(&app.ledger(), &order_id).reservations.len();

    let body = json!({"quote_id": made["quote_id"]});
    let (status, change, headers) =
        apply(&app, &order_id, &body, Some(&tag), Some("apply-1")).await;

    assert_eq!(
        (status, change["status"].as_str()),
        (201, Some("applied")),
        "{change}"
    );
    let location = format!(
        "/api/v1/orders/{order_id}/changes/{}",
        change["change_id"].as_str().unwrap()
    );
    assert_eq!(headers["location"], location.as_str());
    let version = before["version"].as_i64().unwrap();
    assert_eq!(
        (
            change["version_before"].as_i64(),
            change["version_after"].as_i64()
        ),
        (Some(version), Some(version + 1))
    );
    assert_eq!(
        change["settlement"]["charges"][0]["amount"], "9.95",
        "{change}"
    );
    assert_eq!(change["point_of_no_return"], true);

    let (now, tag_after) = order_and_tag(&app, &order_id).await;
    assert_eq!(tag_after, format!("\"{}\"", version + 1));
    assert_eq!(
        now["total_amount"],
        change["totals"]["after"]["total_amount"]
    );
    assert_eq!(now["total_amount"], "39.78");
    assert_eq!(
        (
            now["captured_amount"].as_str(),
            now["refunded_amount"].as_str()
        ),
        (Some("39.78"), Some("9.95"))
    );
    assert_eq!(now["items"][0]["quantity"], 4);
    assert_eq!(now["items"][0]["cancelled_quantity"], 1);

    let ledger = app.settled_ledger().await;
    let of = OrderLedger::of(&ledger, &order_id);
    // One charge of the difference; the quote's hold became the change's, with no
    // reservation call, and is committed.
    let charges: Vec<String> = of.captures.iter().map(|c| cents(c.amount)).collect();
    assert_eq!(charges, ["29.83", "9.95"]);
    assert_eq!(of.reservations.len(), reservations_before);
    assert!(ledger.commits.contains(&hold), "{:?}", ledger.commits);
    // The parcel holds every unit left.
    let parcel = &of.fulfillments[0];
    assert_eq!(
        parcel.items.iter().map(|i| i.quantity).sum::<u32>(),
        3,
        "{parcel:?}"
    );
    assert_eq!(of.count_topic("order.changed"), 1);
    assert_eq!(of.count_topic("order.payment_added"), 1);
    assert_eq!(of.count_template("order_changed"), 1);

    // The ledger: every charge and refund, with the flow that made it.
    let (status, ledger) = app.get(&format!("/orders/{order_id}/ledger")).await;
    assert_eq!(status, 200, "{ledger}");
    assert_eq!(
        (ledger["charged"].as_str(), ledger["refunded"].as_str()),
        (Some("39.78"), Some("9.95"))
    );
    let moves: Vec<(String, String, String)> = ledger["movements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["kind"].as_str().unwrap().into(),
                m["amount"].as_str().unwrap().into(),
                m["flow"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    let expected = [
        ("charge", "29.83", "create_order"),
        ("refund", "9.95", "cancel_items"),
        ("charge", "9.95", "apply_change"),
    ];
    assert_eq!(
        moves,
        expected.map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned())),
        "{ledger}"
    );
    let last = &ledger["movements"][2];
    assert_eq!(
        (&last["change_id"], last["version"].as_i64()),
        (&change["change_id"], Some(version + 1))
    );
    assert!(
        last["idempotency_key"]
            .as_str()
            .is_some_and(|k| k.contains("change")),
        "{last}"
    );
    for payment in ledger["payments"].as_array().unwrap() {
        assert!(
            money(&payment["refunded"]) <= money(&payment["charged"]),
            "{payment}"
        );
    }

    let (_, used) = app
        .get(&format!(
            "/orders/{order_id}/change-quotes/{}",
            made["quote_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(used["status"], "used");
    // Each fact counted once: the quote used, the change applied, its charge.
    let text = crate::metrics::scrape(&app).await;
    let value = |name, labels: &[(&str, &str)]| crate::metrics::value(&text, name, labels);
    assert_eq!(
        value("order_change_quotes_total", &[("outcome", "used")]),
        1.0,
        "{text}"
    );
    assert_eq!(value("order_changes_total", &[("outcome", "applied")]), 1.0);
    let settled = [("currency", "USD"), ("direction", "charge")];
    assert_eq!(value("order_change_settled_value", &settled), 9.95);
    let (_, listed) = app.get(&format!("/orders/{order_id}/changes")).await;
    assert_eq!(listed["changes"].as_array().unwrap().len(), 1);
    let (_, read_back) = app.get(&location.replace("/api/v1", "")).await;
    assert_eq!(read_back["change_id"], change["change_id"]);
}

#[tokio::test]
async fn a_stale_or_missing_if_match_moves_nothing_and_a_released_quote_calls_nothing_again() {
    let app = TestApp::spawn().await;
    let order = confirmed(&app, &order_body(&[("SKU-MUG", 2, "10.00")], VISA)).await;
    let order_id = id(&order);
    let made = new_quote(
        &app,
        &order_id,
        &json!({"operations": [add_item("SKU-SAUCER", 1, "4.00")]}),
    )
    .await;
    let quote_path = format!(
        "/orders/{order_id}/change-quotes/{}",
        made["quote_id"].as_str().unwrap()
    );
    let version = order["version"].as_i64().unwrap();
    let body = json!({"quote_id": made["quote_id"]});
    let before = calls(&app);

    let stale = apply(
        &app,
        &order_id,
        &body,
        Some(&format!("\"{}\"", version - 1)),
        None,
    )
    .await;
    assert_problem(&stale, 409, "version_conflict");
    assert_eq!(stale.1["current_version"], version);
    assert_problem(
        &apply(&app, &order_id, &body, None, None).await,
        428,
        "precondition_required",
    );
    assert_problem(
        &apply(&app, &order_id, &body, Some("\"seven\""), None).await,
        422,
        "validation_failed",
    );
    let both = json!({"quote_id": made["quote_id"], "operations": [add_item("SKU-X", 1, "1.00")]});
    assert_problem(
        &apply(&app, &order_id, &both, Some(&version.to_string()), None).await,
        422,
        "validation_failed",
    );
    let unknown = json!({"quote_id": Uuid::new_v4()});
    assert_problem(
        &apply(&app, &order_id, &unknown, None, None).await,
        404,
        "quote_not_found",
    );

    // Nothing called; the quote stays open with its hold.
    assert_eq!(calls(&app), before);
    let (_, still) = app.get(&quote_path).await;
    assert_eq!(
        (still["status"].as_str(), still["hold"].is_object()),
        (Some("open"), true),
        "{still}"
    );
    let (_, order_now) = app.get(&format!("/orders/{order_id}")).await;
    assert_eq!(order_now["version"], version);

    // Released now, once: a second DELETE answers the same and calls nothing.
    let hold = made["hold"]["reservation_id"].as_str().unwrap().to_owned();
    let (status, _, _) = send(&app, reqwest::Method::DELETE, &quote_path, None, None, None).await;
    assert_eq!(status, 204);
    let released = |app: &TestApp| {
        app.ledger()
            .releases
            .iter()
            .filter(|r| r.reservation_id == hold)
            .count()
    };
    assert_eq!(released(&app), 1);
    let after_release = calls(&app);
    let (status, _, _) = send(&app, reqwest::Method::DELETE, &quote_path, None, None, None).await;
    assert_eq!(status, 204);
    assert_eq!(calls(&app), after_release);
    let (_, gone) = app.get(&quote_path).await;
    assert_eq!(gone["status"], "released");
    let expired = apply(&app, &order_id, &body, Some(&version.to_string()), None).await;
    assert_problem(&expired, 410, "quote_expired");
}

#[tokio::test]
async fn a_quote_past_its_expiry_is_gone_and_its_hold_released_once() {
    let app = TestApp::spawn().await;
    let order = confirmed(&app, &order_body(&[("SKU-MUG", 1, "10.00")], VISA)).await;
    let order_id = id(&order);
    let body = json!({"operations": [set_quantity(&order["items"][0]["id"], 2)], "ttl_seconds": 1});
    let made = new_quote(&app, &order_id, &body).await;
    let quote_path = format!(
        "/orders/{order_id}/change-quotes/{}",
        made["quote_id"].as_str().unwrap()
    );
    let hold = made["hold"]["reservation_id"].as_str().unwrap().to_owned();

    let start = std::time::Instant::now();
    loop {
        let (_, q) = app.get(&quote_path).await;
        if q["status"] == "expired" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{q}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let tag = order["version"].to_string();
    let answer = apply(
        &app,
        &order_id,
        &json!({"quote_id": made["quote_id"]}),
        Some(&tag),
        None,
    )
    .await;
    assert_problem(&answer, 410, "quote_expired");
    let (status, _, _) = send(&app, reqwest::Method::DELETE, &quote_path, None, None, None).await;
    assert_eq!(status, 204);
    let releases = app
        .ledger()
        .releases
        .iter()
        .filter(|r| r.reservation_id == hold)
        .count();
    assert_eq!(releases, 1);
}

#[tokio::test]
async fn lowering_an_item_refunds_what_cancelling_those_units_would_and_a_cancel_then_refunds_the_rest(
) {
    let app = TestApp::spawn().await;
    let mut body = order_body(&[("SKU-PEN", 5, "19.99")], VISA);
    body["items"][0]["discount_amount"] = json!("3.33");
    body["items"][0]["tax_amount"] = json!("1.71");
    let order = confirmed(&app, &body).await;
    let order_id = id(&order);
    let tag = order["version"].to_string();
    let item = &order["items"][0];
    let share = give_back(item, 0, 2);

    let ops = json!({"operations": [set_quantity(&item["id"], 3)], "expected_delta": format!("-{}", cents(share))});
    let (status, change, _) = apply(&app, &order_id, &ops, Some(&tag), Some("lower")).await;

    assert_eq!(
        (status, change["status"].as_str()),
        (201, Some("applied")),
        "{change}"
    );
    let refunds: Vec<Decimal> = change["settlement"]["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| money(&r["amount"]))
        .collect();
    assert_eq!(refunds, [share]);
    let of = OrderLedger::of(&app.ledger(), &order_id);
    assert_eq!(of.refund_amounts(), [cents(share)]);
    let released: u32 = of
        .releases
        .iter()
        .flat_map(|r| &r.released)
        .map(|l| l.quantity)
        .sum();
    assert_eq!(released, 2);
    assert_eq!(of.fulfillments[0].items[0].quantity, 3);

    // A wrong expected_delta changes nothing.
    let wrong = json!({"operations": [set_quantity(&item["id"], 2)], "expected_delta": "-1.00"});
    let next = (order["version"].as_i64().unwrap() + 1).to_string();
    let mismatch = apply(&app, &order_id, &wrong, Some(&next), None).await;
    assert_problem(&mismatch, 422, "amount_mismatch");

    let (status, cancelled, _) = app
        .post(&format!("/orders/{order_id}/cancel"), &json!({}), None)
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(
        cancelled["refunded_amount"], cancelled["captured_amount"],
        "{cancelled}"
    );
}

#[tokio::test]
async fn a_declined_difference_rolls_back_without_touching_the_parcel() {
    let app = TestApp::spawn().await;
    let order = confirmed(&app, &order_body(&[("SKU-MUG", 1, "10.00")], VISA)).await;
    let order_id = id(&order);
    let tag = order["version"].to_string();
    let body = json!({"operations": [add_item("SKU-SAUCER", 2, "3.00")], "payment": {"method": "pm_card_declined"}});

    let (status, change, _) = apply(&app, &order_id, &body, Some(&tag), None).await;

    assert_eq!(
        (status, change["status"].as_str()),
        (201, Some("rolled_back")),
        "{change}"
    );
    assert_eq!(change["failure"]["code"], "payment_declined");
    let text = crate::metrics::scrape(&app).await;
    let failures = [("code", "payment_declined")];
    assert_eq!(
        crate::metrics::value(&text, "order_change_failures_total", &failures),
        1.0
    );
    assert_eq!(change["version_after"], Value::Null);
    let ledger = app.ledger();
    let of = OrderLedger::of(&ledger, &order_id);
    assert_eq!(of.captures.len(), 1);
    let updates = ledger
        .calls
        .iter()
        .filter(|c| c.service == "fulfillment" && c.operation == "update")
        .count();
    assert_eq!(updates, 0);
    let new_stock = of
        .reservations
        .iter()
        .find(|r| r.items.iter().any(|i| i.sku == "SKU-SAUCER"))
        .expect("reserved");
    assert!(
        of.releases
            .iter()
            .any(|r| r.reservation_id == new_stock.reservation_id),
        "{of:?}"
    );
    let (_, now) = app.get(&format!("/orders/{order_id}")).await;
    assert_eq!(
        (
            now["version"].clone(),
            now["total_amount"].clone(),
            now["items"].as_array().unwrap().len()
        ),
        (order["version"].clone(), order["total_amount"].clone(), 1)
    );
}

#[tokio::test]
async fn a_shipped_parcel_rolls_the_change_back_with_its_charge_refunded() {
    let app = TestApp::spawn().await;
    let order = confirmed(&app, &order_body(&[("SHIPPED-MUG", 1, "10.00")], VISA)).await;
    let order_id = id(&order);
    let tag = order["version"].to_string();
    let body = json!({"operations": [add_item("SKU-SAUCER", 1, "4.00")]});

    let (status, change, _) = apply(&app, &order_id, &body, Some(&tag), None).await;

    assert_eq!(
        (status, change["status"].as_str()),
        (201, Some("rolled_back")),
        "{change}"
    );
    assert_eq!(change["failure"]["code"], "already_shipped");
    let of = OrderLedger::of(&app.ledger(), &order_id);
    let charge = of
        .captures
        .iter()
        .find(|c| cents(c.amount) == "4.00")
        .expect("the difference was charged");
    assert_eq!(of.refunds.len(), 1);
    assert_eq!(
        (
            of.refunds[0].payment_id.as_str(),
            cents(of.refunds[0].amount)
        ),
        (charge.payment_id.as_str(), "4.00".to_owned())
    );
    let new_stock = of
        .reservations
        .iter()
        .find(|r| r.items.iter().any(|i| i.sku == "SKU-SAUCER"))
        .unwrap();
    assert!(of
        .releases
        .iter()
        .any(|r| r.reservation_id == new_stock.reservation_id));
    // Money moved and was given back: one version on, the items as they were.
    let (_, now) = app.get(&format!("/orders/{order_id}")).await;
    assert_eq!(now["version"], order["version"].as_i64().unwrap() + 1);
    assert_eq!(now["items"], order["items"]);
    assert_eq!(
        money(&now["captured_amount"]) - money(&now["refunded_amount"]),
        money(&order["captured_amount"])
    );
}

#[tokio::test]
async fn an_unheld_quote_rolls_back_when_the_stock_is_gone() {
    let app = TestApp::spawn().await;
    let order = confirmed(&app, &order_body(&[("SKU-MUG", 1, "10.00")], VISA)).await;
    let order_id = id(&order);
    let made = new_quote(
        &app,
        &order_id,
        &json!({"operations": [add_item("OOS-SAUCER", 1, "4.00")], "hold_stock": false}),
    )
    .await;
    assert_eq!(made["hold"], Value::Null);
    let tag = order["version"].to_string();

    let (status, change, _) = apply(
        &app,
        &order_id,
        &json!({"quote_id": made["quote_id"]}),
        Some(&tag),
        None,
    )
    .await;

    assert_eq!(
        (status, change["status"].as_str()),
        (201, Some("rolled_back")),
        "{change}"
    );
    assert_eq!(change["failure"]["code"], "insufficient_stock");
    assert_eq!(OrderLedger::of(&app.ledger(), &order_id).captures.len(), 1);
    let (_, now) = app.get(&format!("/orders/{order_id}")).await;
    assert_eq!(now["version"], order["version"]);
    // A held quote of that stock is refused at once, holding nothing.
    let refused = quote(
        &app,
        &order_id,
        &json!({"operations": [add_item("OOS-SAUCER", 1, "4.00")]}),
    )
    .await;
    assert_problem(&refused, 409, "insufficient_stock");
    assert_eq!(refused.1["sku"], "OOS-SAUCER");
}

#[tokio::test]
async fn two_applies_on_one_version_make_one_change_and_a_replay_answers_the_first() {
    let app = TestApp::spawn().await;
    let order = confirmed(&app, &order_body(&[("SKU-MUG", 1, "10.00")], VISA)).await;
    let order_id = id(&order);
    let tag = order["version"].to_string();
    let body = json!({"operations": [add_item("SKU-SAUCER", 1, "4.00")]});

    let (first, second) = tokio::join!(
        apply(&app, &order_id, &body, Some(&tag), Some("first")),
        apply(&app, &order_id, &body, Some(&tag), Some("second")),
    );

    let ((won, winner_key), lost) = match first.0 {
        201 => ((first, "first"), second),
        _ => ((second, "second"), first),
    };
    assert_eq!(
        (won.0, won.1["status"].as_str()),
        (201, Some("applied")),
        "{}",
        won.1
    );
    assert_eq!(lost.0, 409, "{}", lost.1);
    let code = lost.1["code"].as_str();
    assert!(
        matches!(code, Some("version_conflict" | "change_in_progress")),
        "{}",
        lost.1
    );
    let charges = |app: &TestApp| OrderLedger::of(&app.ledger(), &order_id).captures.len();
    assert_eq!(charges(&app), 2);

    // The same key, body and If-Match: the first change again, no second charge,
    // even after the version moved on.
    let replay = apply(&app, &order_id, &body, Some(&tag), Some(winner_key)).await;
    assert_eq!(
        (replay.0, &replay.1["change_id"]),
        (201, &won.1["change_id"])
    );
    assert_eq!(charges(&app), 2);
    let other_tag = apply(&app, &order_id, &body, Some("99"), Some(winner_key)).await;
    assert_problem(&other_tag, 422, "idempotency_key_reused");
}

#[tokio::test]
async fn customers_read_changes_but_only_the_shop_makes_them() {
    let app = secured().await;
    let me = Uuid::new_v4();
    let mut body = order_body(&[("SKU-MUG", 1, "10.00")], VISA);
    body["customer_id"] = json!(me);
    let (status, order, _) = app.as_caller(staff()).post("/orders", &body, None).await;
    assert_eq!(status, 201, "{order}");
    let order_id = id(&order);
    let ops = json!({"operations": [add_item("SKU-SAUCER", 1, "4.00")]});
    let quotes = format!("/orders/{order_id}/change-quotes");

    let mine = app.as_caller(customer(me));
    assert_problem(&mine.post(&quotes, &ops, None).await, 403, "forbidden");
    assert_problem(
        &mine
            .post(&format!("/orders/{order_id}/changes"), &ops, None)
            .await,
        403,
        "forbidden",
    );
    let (status, listed, _) = mine.get(&quotes).await;
    assert_eq!(
        (status, listed["quotes"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{listed}"
    );
    let stranger = app.as_caller(customer(Uuid::new_v4()));
    assert_problem(
        &stranger.post(&quotes, &ops, None).await,
        404,
        "order_not_found",
    );
    assert_problem(&stranger.get(&quotes).await, 404, "order_not_found");

    let (status, made, _) = app.as_caller(staff()).post(&quotes, &ops, None).await;
    assert_eq!(status, 201, "{made}");
}

#[tokio::test]
async fn a_size_swap_an_added_unit_and_a_new_address_move_stock_money_and_parcel_together() {
    let app = TestApp::spawn().await;
    let order = confirmed(
        &app,
        &order_body(&[("SKU-TEE-M", 1, "20.00"), ("SKU-MUG", 2, "8.00")], VISA),
    )
    .await;
    let order_id = id(&order);
    let tag = order["version"].to_string();
    let office = json!({"line1": "9 Office Park", "city": "Springfield", "country": "US"});
    let mut tee_l = add_item("SKU-TEE-L", 1, "20.00");
    tee_l.as_object_mut().unwrap().remove("op");
    let ops = json!({"operations": [
        {"op": "replace_item", "item_id": order["items"][0]["id"], "new_item": tee_l},
        set_quantity(&order["items"][1]["id"], 3),
        {"op": "set_shipping_address", "address": office},
    ]});

    let (status, change, _) = apply(&app, &order_id, &ops, Some(&tag), None).await;

    assert_eq!(
        (status, change["status"].as_str()),
        (201, Some("applied")),
        "{change}"
    );
    assert_eq!(change["settlement"]["delta"], "8.00");
    let (_, now) = app.get(&format!("/orders/{order_id}")).await;
    let items: Vec<(&str, i64)> = now["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["product_sku"].as_str().unwrap(),
                i["quantity"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        items,
        [("SKU-TEE-M", 0), ("SKU-MUG", 3), ("SKU-TEE-L", 1)],
        "{now}"
    );
    assert_eq!(now["items"][2]["added_by"]["id"], change["change_id"]);
    assert_eq!(now["shipping_address"], office);
    let of = OrderLedger::of(&app.ledger(), &order_id);
    let parcel = &of.fulfillments[0];
    let mut shipped: Vec<(String, u32)> = parcel
        .items
        .iter()
        .map(|i| (i.sku.clone(), i.quantity))
        .collect();
    shipped.sort();
    assert_eq!(
        shipped,
        [("SKU-MUG".to_owned(), 3), ("SKU-TEE-L".to_owned(), 1)]
    );
    assert_eq!(parcel.shipping_address, office);
    let released: Vec<_> = of
        .releases
        .iter()
        .flat_map(|r| &r.released)
        .map(|l| (l.sku.as_str(), l.quantity))
        .collect();
    assert_eq!(released, [("SKU-TEE-M", 1)]);

    // The swapped item's units were all given back: a whole cancel refunds the rest.
    let (status, cancelled, _) = app
        .post(&format!("/orders/{order_id}/cancel"), &json!({}), None)
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["refunded_amount"], cancelled["captured_amount"]);
    assert_eq!(cancelled["captured_amount"], "49.00");
}

/// Rule 1: a held quote keeps the last unit (the simulator's `LAST-` SKU has one)
/// against a competing order, whose create fails `insufficient_stock`; the change
/// then applies with no reservation call.
#[tokio::test]
async fn a_held_quote_keeps_the_last_unit_against_a_competing_order() {
    let app = TestApp::spawn().await;
    let order = confirmed(&app, &order_body(&[("SKU-MUG", 1, "10.00")], VISA)).await;
    let order_id = id(&order);
    let (_, tag) = order_and_tag(&app, &order_id).await;
    let made = new_quote(
        &app,
        &order_id,
        &json!({"operations": [add_item("LAST-VASE", 1, "30.00")]}),
    )
    .await;
    assert_eq!(made["hold"]["items"][0]["sku"], "LAST-VASE", "{made}");

    let (status, competing) = app
        .create(&order_body(&[("LAST-VASE", 1, "30.00")], VISA))
        .await;
    assert_eq!(
        (status, competing["status"].as_str()),
        (201, Some("failed")),
        "{competing}"
    );
    assert_eq!(competing["failure"]["code"], "insufficient_stock");
    let reserve_calls = |app: &TestApp| {
        app.ledger()
            .calls
            .iter()
            .filter(|c| c.service == "warehouse" && c.operation == "reserve")
            .count()
    };
    let before = reserve_calls(&app);

    let body = json!({"quote_id": made["quote_id"]});
    let (status, change, _) = apply(&app, &order_id, &body, Some(&tag), None).await;

    assert_eq!(
        (status, change["status"].as_str()),
        (201, Some("applied")),
        "{change}"
    );
    assert_eq!(reserve_calls(&app), before, "the apply takes over the hold");
    let (now, _) = order_and_tag(&app, &order_id).await;
    assert_eq!(now["items"][1]["product_sku"], "LAST-VASE");
    let of = OrderLedger::of(&app.settled_ledger().await, &order_id);
    assert_eq!(of.captures.len(), 2);
}
