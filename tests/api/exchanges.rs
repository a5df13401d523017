//! Exchanges (api-changes.md §6): one net money movement (rule 15), the returned
//! units restocked once, the new items shipped on a parcel of their own, and each
//! state move: requested -> received -> settled, a refused settlement that stays
//! received and is paid or cancelled, cancelled and expired requests.

use crate::helpers::{
    assert_problem, delivered_order, money, order_body, Answer, Options, OrderLedger, TestApp,
};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::time::Duration;

const VISA: Option<&str> = Some("pm_card_visa");

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// Two mugs at 10.00, no discount, tax or shipping: 20.00 captured.
async fn two_mugs(app: &TestApp) -> Value {
    let mut body = order_body(&[("SKU-MUG", 2, "10.00")], VISA);
    body["shipping_amount"] = json!("0.00");
    delivered_order(app, &body).await
}

fn new_item(sku: &str, price: &str) -> Value {
    json!({
        "product_id": "7d0f8f7e-4c11-4a33-9d35-5f0c1b0d9a11",
        "product_sku": sku,
        "product_name": sku,
        "warehouse_id": "0b7a4c9e-2f61-4f1e-8d5a-3c2b1a0f9e88",
        "quantity": 1,
        "unit_price": price,
    })
}

/// Asks for an exchange of one unit of the order's first item for `new_items`.
async fn ask(app: &TestApp, order: &Value, new_items: Value, payment: Option<&str>) -> Answer {
    let mut body = json!({
        "return_items": [{"item_id": order["items"][0]["id"], "quantity": 1, "reason": "too small"}],
        "new_items": new_items,
    });
    if let Some(method) = payment {
        body["payment"] = json!({ "method": method });
    }
    app.post(&format!("/orders/{}/exchanges", id(order)), &body, None)
        .await
}

async fn requested(app: &TestApp, order: &Value, new_items: Value) -> Value {
    let (status, exchange, _) = ask(app, order, new_items, None).await;
    assert_eq!(
        (status, exchange["status"].as_str()),
        (201, Some("requested")),
        "{exchange}"
    );
    exchange
}

async fn on(app: &TestApp, exchange: &Value, what: &str, body: &Value) -> Answer {
    let path = format!(
        "/orders/{}/exchanges/{}/{what}",
        exchange["order_id"].as_str().unwrap(),
        exchange["exchange_id"].as_str().unwrap()
    );
    app.post(&path, body, None).await
}

/// Checks the balance rule on an order whose give-backs were all refunded or
/// carried to an exchange: `captured - refunded` equals `total_amount` less the
/// value of the units returned (by exchanges, here, at `returned` each).
fn assert_balanced(order: &Value, returned: Decimal) {
    let kept = money(&order["total_amount"]) - returned;
    let paid = money(&order["captured_amount"]) - money(&order["refunded_amount"])
        + money(&order["outstanding_amount"]);
    assert_eq!(paid, kept, "{order}");
}

#[tokio::test]
async fn a_cheaper_exchange_refunds_the_difference_and_charges_nothing() {
    let app = TestApp::spawn().await;
    let order = two_mugs(&app).await;
    let exchange = requested(&app, &order, json!([new_item("SKU-MUG-S", "8.00")])).await;
    assert_eq!(
        (
            exchange["return_value"].as_str(),
            exchange["new_value"].as_str(),
            exchange["difference"].as_str()
        ),
        (Some("10.00"), Some("8.00"), Some("-2.00"))
    );
    // Nothing is reserved, charged or shipped before the parcel arrives.
    let before = OrderLedger::of(&app.ledger(), &id(&order));
    assert_eq!(
        (before.reservations.len(), before.fulfillments.len()),
        (1, 1)
    );

    let (status, settled, _) = on(&app, &exchange, "receive", &json!({})).await;

    assert_eq!(
        (status, settled["status"].as_str()),
        (200, Some("settled")),
        "{settled}"
    );
    let of = OrderLedger::of(&app.settled_ledger().await, &id(&order));
    assert_eq!(of.captures.len(), 1, "no charge: {of:?}");
    assert_eq!(of.refund_amounts(), ["2.00"]);
    assert_eq!(settled["settlement"]["refunds"][0]["amount"], "2.00");
    assert_eq!(settled["settlement"]["charge"], Value::Null);
    let restocks: Vec<_> = app
        .ledger()
        .restocks
        .into_iter()
        .filter(|r| r.order_id == id(&order))
        .collect();
    assert_eq!(restocks.len(), 1);
    assert_eq!(
        restocks[0].return_id,
        exchange["exchange_id"].as_str().unwrap()
    );
    // The new item ships on a parcel of its own and joins the order.
    assert_eq!(of.fulfillments.len(), 2);
    assert_eq!(of.fulfillments[1].items[0].sku, "SKU-MUG-S");
    assert_eq!(
        settled["fulfillment_id"].as_str(),
        Some(of.fulfillments[1].fulfillment_id.as_str())
    );
    let (_, now) = app.get(&format!("/orders/{}", id(&order))).await;
    assert_eq!(now["items"][0]["returned_quantity"], 1);
    let added = &now["items"][1];
    assert_eq!(
        (added["product_sku"].as_str(), added["total_price"].as_str()),
        (Some("SKU-MUG-S"), Some("8.00"))
    );
    assert_eq!(
        added["added_by"],
        json!({"kind": "exchange", "id": exchange["exchange_id"]})
    );
    assert_eq!(settled["new_items"][0]["item_id"], added["id"]);
    assert_eq!(now["refunded_amount"], "2.00");
    assert_balanced(&now, money(&exchange["return_value"]));
    assert_eq!(of.count_topic("order.exchange_requested"), 1);
    assert_eq!(of.count_topic("order.exchange_settled"), 1);
    assert_eq!(of.count_template("exchange_settled"), 1);
    assert_eq!(of.count_template("refund_issued"), 1);
    // The ledger links the refund to the exchange.
    let (_, ledger) = app.get(&format!("/orders/{}/ledger", id(&order))).await;
    let refund = ledger["movements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["kind"] == "refund")
        .cloned()
        .unwrap();
    assert_eq!(refund["exchange_id"], exchange["exchange_id"]);
    assert_eq!(refund["amount"], "2.00");

    // Receiving again answers the same, moves nothing and counts nothing.
    let (status, again, _) = on(&app, &exchange, "receive", &json!({})).await;
    assert_eq!((status, &again), (200, &settled));
    assert_eq!(OrderLedger::of(&app.ledger(), &id(&order)).refunds.len(), 1);
    let text = crate::metrics::scrape(&app).await;
    let settled_count =
        crate::metrics::value(&text, "order_exchanges_total", &[("outcome", "settled")]);
    assert_eq!(settled_count, 1.0, "{text}");
}

#[tokio::test]
async fn a_dearer_exchange_is_one_charge_of_the_difference_and_an_equal_one_moves_nothing() {
    let app = TestApp::spawn().await;
    let order = two_mugs(&app).await;
    let dearer = requested(&app, &order, json!([new_item("SKU-MUG-L", "13.50")])).await;
    assert_eq!(dearer["difference"], "3.50");
    let (status, settled, _) = on(&app, &dearer, "receive", &json!({})).await;
    assert_eq!(
        (status, settled["status"].as_str()),
        (200, Some("settled")),
        "{settled}"
    );
    let of = OrderLedger::of(&app.settled_ledger().await, &id(&order));
    let charges: Vec<String> = of
        .captures
        .iter()
        .map(|c| format!("{:.2}", c.amount))
        .collect();
    assert_eq!(charges, ["20.00", "3.50"]);
    assert!(of.refunds.is_empty(), "{of:?}");
    assert_eq!(settled["settlement"]["charge"]["amount"], "3.50");
    assert_eq!(
        settled["settlement"]["charge"]["payment_id"].as_str(),
        Some(of.captures[1].payment_id.as_str())
    );

    let equal = requested(&app, &order, json!([new_item("SKU-MUG-RED", "10.00")])).await;
    assert_eq!(equal["difference"], "0.00");
    let (status, settled, _) = on(&app, &equal, "receive", &json!({})).await;
    assert_eq!(
        (status, settled["status"].as_str()),
        (200, Some("settled")),
        "{settled}"
    );
    let of = OrderLedger::of(&app.settled_ledger().await, &id(&order));
    assert_eq!((of.captures.len(), of.refunds.len()), (2, 0));
    assert_eq!(of.fulfillments.len(), 3);
    let (_, now) = app.get(&format!("/orders/{}", id(&order))).await;
    assert_eq!(now["items"][0]["returned_quantity"], 2);
    assert_eq!(now["captured_amount"], "23.50");
    assert_balanced(&now, Decimal::new(2000, 2));
}

#[tokio::test]
async fn a_declined_difference_stays_received_until_paid_and_out_of_stock_until_cancelled() {
    let app = TestApp::spawn().await;
    let order = two_mugs(&app).await;
    let (status, exchange, _) = ask(
        &app,
        &order,
        json!([new_item("SKU-MUG-L", "13.50")]),
        Some("pm_card_declined"),
    )
    .await;
    assert_eq!(status, 201, "{exchange}");

    let (status, declined, _) = on(&app, &exchange, "receive", &json!({})).await;

    assert_eq!(
        (status, declined["status"].as_str()),
        (200, Some("received")),
        "{declined}"
    );
    assert_eq!(declined["failure"]["code"], "payment_declined");
    assert_eq!(declined["settlement"]["amount_due"], "3.50");
    let of = OrderLedger::of(&app.settled_ledger().await, &id(&order));
    assert_eq!((of.captures.len(), of.fulfillments.len()), (1, 1), "{of:?}");
    assert!(
        of.reservations[1..]
            .iter()
            .all(|r| r.status == order_sim::ReservationStatus::Released),
        "{of:?}"
    );
    let (_, now) = app.get(&format!("/orders/{}", id(&order))).await;
    assert_eq!(
        now["items"][0]["returned_quantity"], 1,
        "restocked once, for good"
    );
    assert_eq!(now["items"].as_array().unwrap().len(), 1);

    // Paid with another card: one charge, and it settles.
    let (status, paid, _) = on(
        &app,
        &exchange,
        "payments",
        &json!({"method": "pm_card_visa"}),
    )
    .await;
    assert_eq!(
        (status, paid["status"].as_str()),
        (200, Some("settled")),
        "{paid}"
    );
    assert_eq!(paid["settlement"]["charge"]["amount"], "3.50");
    assert_eq!(paid["failure"], Value::Null);
    let of = OrderLedger::of(&app.settled_ledger().await, &id(&order));
    assert_eq!(of.captures.len(), 2);
    assert_eq!(
        app.ledger()
            .restocks
            .iter()
            .filter(|r| r.order_id == id(&order))
            .count(),
        1
    );

    // Out of stock: it stays received; cancelled, it is refunded as a return.
    let other = requested(&app, &order, json!([new_item("OOS-MUG", "10.00")])).await;
    let (status, refused, _) = on(&app, &other, "receive", &json!({})).await;
    assert_eq!(
        (status, refused["status"].as_str()),
        (200, Some("received")),
        "{refused}"
    );
    assert_eq!(refused["failure"]["code"], "insufficient_stock");
    let (status, cancelled, _) = on(&app, &other, "cancel", &json!({"reason": "none left"})).await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("cancelled")),
        "{cancelled}"
    );
    // 10.00 back, newest payment first: the 3.50 charge, then 6.50 of the first.
    let refunds: Vec<&str> = cancelled["settlement"]["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["amount"].as_str().unwrap())
        .collect();
    assert_eq!(refunds, ["3.50", "6.50"], "{cancelled}");
    let of = OrderLedger::of(&app.settled_ledger().await, &id(&order));
    assert_eq!(of.refund_amounts(), ["3.50", "6.50"]);
    assert_eq!(of.refunds[0].payment_id, of.captures[1].payment_id);
    let (_, now) = app.get(&format!("/orders/{}", id(&order))).await;
    assert_eq!(now["items"][0]["returned_quantity"], 2);
    // Kept: the dearer mug (13.50); paid 23.50, refunded 10.00.
    assert_balanced(&now, Decimal::new(2000, 2));
    // A cancelled exchange cannot be received.
    let again = on(&app, &other, "receive", &json!({})).await;
    assert_problem(&again, 409, "invalid_transition");
}

#[tokio::test]
async fn a_requested_exchange_cancelled_frees_its_units_and_one_never_sent_expires() {
    // 0.0001 days = 8.64 s for the parcel.
    let app = TestApp::spawn_with(Options {
        env: vec![("ORDER_RETURN_PARCEL_DAYS", "0.0001".into())],
        ..Options::default()
    })
    .await;
    let order = two_mugs(&app).await;
    let item = order["items"][0]["id"].clone();
    let first = requested(&app, &order, json!([new_item("SKU-MUG-S", "8.00")])).await;
    let second = requested(&app, &order, json!([new_item("SKU-MUG-S", "8.00")])).await;
    // Both units are held now.
    let (status, refused, _) =
        ask(&app, &order, json!([new_item("SKU-MUG-S", "8.00")]), None).await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (422, Some("quantity_exceeded")),
        "{refused}"
    );

    let (status, cancelled, _) = on(&app, &first, "cancel", &json!({})).await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("cancelled")),
        "{cancelled}"
    );
    // Its unit is free again: a return may take it.
    let (status, ret, _) = app
        .post(
            &format!("/orders/{}/returns", id(&order)),
            &json!({"items": [{"item_id": item, "quantity": 1}]}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{ret}");

    let path = format!(
        "/orders/{}/exchanges/{}",
        id(&order),
        second["exchange_id"].as_str().unwrap()
    );
    let expired = app
        .poll(&path, Duration::from_secs(40), |e| e["status"] == "expired")
        .await;
    assert_eq!(expired["status"], "expired", "{expired}");
    let of = OrderLedger::of(&app.settled_ledger().await, &id(&order));
    assert_eq!(of.count_template("exchange_expired"), 1);
    assert_eq!(
        (of.captures.len(), of.refunds.len(), of.reservations.len()),
        (1, 0, 1)
    );
    let (status, list) = app.get(&format!("/orders/{}/exchanges", id(&order))).await;
    assert_eq!(status, 200);
    let states: Vec<&str> = list["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["cancelled", "expired"]);
    let missing = app
        .get(&format!(
            "/orders/{}/exchanges/{}",
            id(&order),
            uuid::Uuid::new_v4()
        ))
        .await;
    assert_eq!(
        (missing.0, missing.1["code"].as_str()),
        (404, Some("exchange_not_found"))
    );
}

/// api-changes.md §9: an exchange whose refund the payment service finally
/// refuses is settled (its new item shipped), parks the order, and is listed for
/// operators with its `exchange_id`; the order's retry refunds it and clears both.
#[tokio::test]
async fn a_refused_refund_of_an_exchange_is_listed_for_operators_until_retried() {
    let app = TestApp::spawn().await;
    let order = two_mugs(&app).await;
    let exchange = requested(&app, &order, json!([new_item("SKU-MUG-S", "8.00")])).await;
    let refund = json!({"service": "payment", "operation": "refund", "status": 409});
    app.inject(refund);

    let (status, settled, _) = on(&app, &exchange, "receive", &json!({})).await;

    assert_eq!(
        (status, settled["status"].as_str()),
        (200, Some("settled")),
        "{settled}"
    );
    assert_eq!(settled["attention"]["step"], "refund_payment", "{settled}");
    let (_, now) = app.get(&format!("/orders/{}", id(&order))).await;
    assert_eq!(now["attention"]["step"], "refund_payment", "{now}");
    let (status, stuck) = app.get("/ops/orders/stuck").await;
    assert_eq!(status, 200);
    let rows: Vec<&Value> = stuck["orders"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["exchange_id"] == exchange["exchange_id"])
        .collect();
    assert_eq!(rows.len(), 1, "{stuck}");
    assert_eq!(
        (rows[0]["reason"].as_str(), rows[0]["saga"].as_str()),
        (Some("parked"), Some("receive_exchange"))
    );

    app.sim.sim.clear_faults();
    let path = format!("/ops/orders/{}/retry", id(&order));
    let (status, retried, _) = app.post(&path, &json!({}), None).await;
    assert_eq!(status, 202, "{retried}");
    let exchange_path = format!(
        "/orders/{}/exchanges/{}",
        id(&order),
        exchange["exchange_id"].as_str().unwrap()
    );
    let cleared = app
        .poll(&exchange_path, Duration::from_secs(20), |e| {
            e["attention"].is_null()
        })
        .await;
    assert_eq!(cleared["attention"], Value::Null, "{cleared}");
    let of = OrderLedger::of(&app.settled_ledger().await, &id(&order));
    assert_eq!(of.refund_amounts(), ["2.00"]);
    let (_, stuck) = app.get("/ops/orders/stuck").await;
    let listed = stuck["orders"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["order_id"] == order["id"]);
    assert!(!listed, "{stuck}");
}

/// Rule 15, with something owed: a cheaper exchange first clears what the order
/// still owes (a change's difference kept owed) and refunds only the rest.
#[tokio::test]
async fn a_cheaper_exchange_clears_what_is_owed_before_it_refunds() {
    let app = TestApp::spawn().await;
    let mut body = order_body(&[("SKU-MUG", 2, "10.00")], VISA);
    body["shipping_amount"] = json!("0.00");
    let (status, order) = app.create(&body).await;
    assert_eq!(status, 201, "{order}");
    let order_id = id(&order);
    let change = json!({"operations": [{"op": "add_item", "product_id": "7d0f8f7e-4c11-4a33-9d35-5f0c1b0d9a11",
                          "product_sku": "SKU-SAUCER", "product_name": "Saucer",
                          "warehouse_id": "0b7a4c9e-2f61-4f1e-8d5a-3c2b1a0f9e88",
                          "quantity": 1, "unit_price": "6.00"}],
                        "payment": {"method": "pm_card_declined"},
                        "payment_deadline_seconds": 1, "on_unpaid": "keep_owed"});
    let tag = order["version"].to_string();
    let (status, made, _) = crate::changes::apply(&app, &order_id, &change, Some(&tag), None).await;
    assert_eq!(status, 201, "{made}");
    app.wait_for(&order_id, Duration::from_secs(20), |o| {
        o["outstanding_amount"] == "6.00"
    })
    .await;
    let delivered =
        crate::helpers::advance(&app, &order_id, &["processing", "shipped", "delivered"]).await;
    let exchange = requested(&app, &delivered, json!([new_item("SKU-MUG-S", "1.00")])).await;
    assert_eq!(exchange["difference"], "-9.00");

    let (status, settled, _) = on(&app, &exchange, "receive", &json!({})).await;

    assert_eq!(
        (status, settled["status"].as_str()),
        (200, Some("settled")),
        "{settled}"
    );
    let of = OrderLedger::of(&app.settled_ledger().await, &order_id);
    assert_eq!(of.captures.len(), 1, "no charge: {of:?}");
    assert_eq!(of.refund_amounts(), ["3.00"], "9.00 less the 6.00 owed");
    let (_, now) = app.get(&format!("/orders/{order_id}")).await;
    assert_eq!(
        (
            now["outstanding_amount"].as_str(),
            now["refunded_amount"].as_str()
        ),
        (Some("0.00"), Some("3.00"))
    );
    let (_, ledger) = app.get(&format!("/orders/{order_id}/ledger")).await;
    let cleared: Vec<&Value> = ledger["movements"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "owed_cleared")
        .collect();
    assert_eq!(cleared.len(), 1, "{ledger}");
    assert_eq!(
        (cleared[0]["amount"].as_str(), &cleared[0]["exchange_id"]),
        (Some("6.00"), &exchange["exchange_id"])
    );
    assert_balanced(&now, money(&exchange["return_value"]));
}
