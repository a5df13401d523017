//! Claims (api-changes.md §7): a replacement moves no money and ships once
//! (rule 16), a refund gives back the units' share, and each state move: open ->
//! resolved or rejected; with a required return open -> received -> resolved or
//! rejected, or expired.

use crate::helpers::{
    advance, assert_problem, delivered_order, give_back, money, order_body, Answer, Options,
    OrderLedger, TestApp,
};
use serde_json::{json, Value};
use std::time::Duration;

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// 3 cups at 10.00 with discount 1.00 and tax 0.83, no shipping: 29.83.
fn cups() -> Value {
    let mut body = order_body(&[("SKU-CUP", 3, "10.00")], Some("pm_card_visa"));
    body["items"][0]["discount_amount"] = json!("1.00");
    body["items"][0]["tax_amount"] = json!("0.83");
    body["shipping_amount"] = json!("0.00");
    body
}

async fn shipped(app: &TestApp) -> Value {
    let (status, order) = app.create(&cups()).await;
    assert_eq!(status, 201, "{order}");
    advance(app, &id(&order), &["processing", "shipped"]).await
}

async fn claim(app: &TestApp, order: &Value, quantity: i64, require_return: bool) -> Answer {
    let body = json!({
        "items": [{"item_id": order["items"][0]["id"], "quantity": quantity, "claim_type": "damaged", "note": "cracked"}],
        "require_return": require_return,
        "reason": "arrived broken",
    });
    app.post(&format!("/orders/{}/claims", id(order)), &body, None)
        .await
}

async fn opened(app: &TestApp, order: &Value, quantity: i64, require_return: bool) -> Value {
    let (status, c, _) = claim(app, order, quantity, require_return).await;
    assert_eq!((status, c["status"].as_str()), (201, Some("open")), "{c}");
    c
}

async fn on(app: &TestApp, claim: &Value, what: &str, body: &Value) -> Answer {
    let path = format!(
        "/orders/{}/claims/{}/{what}",
        claim["order_id"].as_str().unwrap(),
        claim["claim_id"].as_str().unwrap()
    );
    app.post(&path, body, None).await
}

#[tokio::test]
async fn a_replacement_moves_no_money_ships_once_and_counts_the_units_replaced() {
    let app = TestApp::spawn().await;
    let order = shipped(&app).await;
    let c = opened(&app, &order, 1, false).await;
    // The claimed unit is held: a refund of all three is refused meanwhile.
    let (status, _, _) = app
        .post(
            &format!("/orders/{}/refund-items", id(&order)),
            &json!({"items": [{"item_id": order["items"][0]["id"], "quantity": 3}], "reason": "x"}),
            None,
        )
        .await;
    assert_eq!(status, 422);

    let (status, resolved, _) =
        on(&app, &c, "resolve", &json!({"resolution": "replacement"})).await;

    assert_eq!(
        (status, resolved["status"].as_str()),
        (200, Some("resolved")),
        "{resolved}"
    );
    assert_eq!(resolved["resolution"], "replacement");
    assert_eq!(resolved["refund_amount"], Value::Null);
    let of = OrderLedger::of(&app.settled_ledger().await, &id(&order));
    assert_eq!(
        (of.captures.len(), of.refunds.len()),
        (1, 0),
        "no money moves: {of:?}"
    );
    assert_eq!(of.fulfillments.len(), 2, "one new parcel");
    assert_eq!(of.fulfillments[1].items[0].sku, "SKU-CUP");
    assert_eq!(of.fulfillments[1].items[0].quantity, 1);
    assert!(
        app.ledger()
            .restocks
            .iter()
            .all(|r| r.order_id != id(&order)),
        "never restocked"
    );
    let (_, now) = app.get(&format!("/orders/{}", id(&order))).await;
    let original = &now["items"][0];
    assert_eq!(original["replaced_quantity"], 1);
    let replacement = &now["items"][1];
    assert_eq!(replacement["replaces_item_id"], original["id"]);
    assert_eq!(
        replacement["added_by"],
        json!({"kind": "claim", "id": c["claim_id"]})
    );
    // The replacement is worth what the claimed unit was paid: its share.
    let share = give_back(&order["items"][0], 0, 1);
    assert_eq!(money(&replacement["total_price"]), share, "{replacement}");
    assert_eq!(
        (
            replacement["discount_amount"].as_str(),
            replacement["tax_amount"].as_str()
        ),
        (Some("0.33"), Some("0.28"))
    );
    assert_eq!(now["captured_amount"], "29.83");
    assert_eq!(
        money(&now["total_amount"]) - share,
        money(&now["captured_amount"])
    );
    assert_eq!(of.count_topic("order.claim_opened"), 1);
    assert_eq!(of.count_topic("order.claim_resolved"), 1);
    assert_eq!(of.count_template("claim_opened"), 1);
    assert_eq!(of.count_template("claim_resolved"), 1);
    // Resolving again answers the same and ships nothing more.
    let (status, again, _) = on(&app, &c, "resolve", &json!({"resolution": "replacement"})).await;
    assert_eq!((status, &again), (200, &resolved));
    assert_eq!(
        OrderLedger::of(&app.ledger(), &id(&order))
            .fulfillments
            .len(),
        2
    );
    let text = crate::metrics::scrape(&app).await;
    let labels = [("claim_type", "damaged"), ("resolution", "replacement")];
    let counted = crate::metrics::value(&text, "order_claims_total", &labels);
    assert_eq!(counted, 1.0, "{text}");
}

#[tokio::test]
async fn a_refund_gives_back_the_units_share_and_refund_and_replacement_ships_a_free_item() {
    let app = TestApp::spawn().await;
    let order = shipped(&app).await;
    let item = order["items"][0].clone();
    let refund = opened(&app, &order, 1, false).await;
    let both = opened(&app, &order, 1, false).await;

    let (status, refunded, _) =
        on(&app, &refund, "resolve", &json!({"resolution": "refund"})).await;
    assert_eq!(
        (status, refunded["status"].as_str()),
        (200, Some("resolved")),
        "{refunded}"
    );
    let first = give_back(&item, 0, 1);
    assert_eq!(money(&refunded["refund_amount"]), first);

    let (status, resolved, _) = on(
        &app,
        &both,
        "resolve",
        &json!({"resolution": "refund_and_replacement"}),
    )
    .await;
    assert_eq!(
        (status, resolved["status"].as_str()),
        (200, Some("resolved")),
        "{resolved}"
    );
    let second = give_back(&item, 1, 1);
    assert_eq!(money(&resolved["refund_amount"]), second);
    let free = &resolved["replacement_items"][0];
    assert_eq!(
        (
            free["discount_amount"].as_str(),
            free["tax_amount"].as_str(),
            free["total_price"].as_str()
        ),
        (Some("10.00"), Some("0.00"), Some("0.00"))
    );

    let of = OrderLedger::of(&app.settled_ledger().await, &id(&order));
    let expected: Vec<String> = [first, second].iter().map(|m| format!("{m:.2}")).collect();
    assert_eq!(of.refund_amounts(), expected);
    assert_eq!(of.fulfillments.len(), 2, "only the free item ships");
    let (_, now) = app.get(&format!("/orders/{}", id(&order))).await;
    assert_eq!(now["items"][0]["refunded_quantity"], 2);
    assert_eq!(now["items"][0]["replaced_quantity"], 0);
    assert_eq!(money(&now["refunded_amount"]), first + second);
    assert_eq!(of.count_template("refund_issued"), 2);
}

#[tokio::test]
async fn a_claim_with_a_return_waits_for_its_parcel_and_is_rejected_or_expires() {
    // 0.0001 days = 8.64 s for the parcel.
    let app = TestApp::spawn_with(Options {
        env: vec![("ORDER_RETURN_PARCEL_DAYS", "0.0001".into())],
        ..Options::default()
    })
    .await;
    let order = delivered_order(&app, &cups()).await;
    let c = opened(&app, &order, 1, true).await;
    assert!(c["expires_at"].is_string(), "{c}");

    // Resolving before the parcel came is refused and changes nothing.
    let early = on(&app, &c, "resolve", &json!({"resolution": "refund"})).await;
    assert_problem(&early, 409, "invalid_transition");
    let (status, received, _) = on(&app, &c, "receive", &json!({})).await;
    assert_eq!(
        (status, received["status"].as_str()),
        (200, Some("received")),
        "{received}"
    );
    let (status, resolved, _) = on(&app, &c, "resolve", &json!({"resolution": "refund"})).await;
    assert_eq!(
        (status, resolved["status"].as_str()),
        (200, Some("resolved")),
        "{resolved}"
    );
    let (_, now) = app.get(&format!("/orders/{}", id(&order))).await;
    assert_eq!(
        (
            now["items"][0]["returned_quantity"].as_i64(),
            now["items"][0]["refunded_quantity"].as_i64()
        ),
        (Some(1), Some(0))
    );
    assert!(
        app.ledger()
            .restocks
            .iter()
            .all(|r| r.order_id != id(&order)),
        "claimed goods are not restocked"
    );

    // Rejected while open: the unit is free again.
    let open = opened(&app, &order, 2, false).await;
    let (status, rejected, _) =
        on(&app, &open, "reject", &json!({"reason": "no damage seen"})).await;
    assert_eq!(
        (status, rejected["status"].as_str()),
        (200, Some("rejected")),
        "{rejected}"
    );
    // Rejected once received: the unit counts as returned, with no refund.
    let sent = opened(&app, &order, 1, true).await;
    on(&app, &sent, "receive", &json!({})).await;
    let (status, rejected, _) =
        on(&app, &sent, "reject", &json!({"reason": "customer damage"})).await;
    assert_eq!(
        (status, rejected["status"].as_str()),
        (200, Some("rejected")),
        "{rejected}"
    );
    let (_, now) = app.get(&format!("/orders/{}", id(&order))).await;
    assert_eq!(now["items"][0]["returned_quantity"], 2);
    let of = OrderLedger::of(&app.settled_ledger().await, &id(&order));
    assert_eq!(of.refunds.len(), 1);
    assert_eq!(of.count_template("claim_rejected"), 2);

    // One whose parcel never comes expires and frees its unit.
    let waiting = opened(&app, &order, 1, true).await;
    let path = format!(
        "/orders/{}/claims/{}",
        id(&order),
        waiting["claim_id"].as_str().unwrap()
    );
    let expired = app
        .poll(&path, Duration::from_secs(40), |c| c["status"] == "expired")
        .await;
    assert_eq!(expired["status"], "expired", "{expired}");
    let again = opened(&app, &order, 1, false).await;
    assert_eq!(again["items"][0]["quantity"], 1);
    let (status, list) = app.get(&format!("/orders/{}/claims", id(&order))).await;
    assert_eq!(status, 200);
    let states: Vec<&str> = list["claims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["resolved", "rejected", "rejected", "expired", "open"]
    );
}

#[tokio::test]
async fn a_replacement_out_of_stock_is_refused_and_the_claim_stays_open() {
    let app = TestApp::spawn().await;
    let order = shipped(&app).await;
    let c = opened(&app, &order, 1, false).await;
    // More units than are left change nothing.
    let too_many = claim(&app, &order, 3, false).await;
    assert_problem(&too_many, 422, "quantity_exceeded");
    app.inject(json!({"service": "warehouse", "operation": "reserve", "status": 409, "times": 1}));

    let refused = on(&app, &c, "resolve", &json!({"resolution": "replacement"})).await;

    assert_problem(&refused, 409, "insufficient_stock");
    let (_, still) = app
        .get(&format!(
            "/orders/{}/claims/{}",
            id(&order),
            c["claim_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(still["status"], "open", "{still}");
    let of = OrderLedger::of(&app.settled_ledger().await, &id(&order));
    assert_eq!(
        (of.captures.len(), of.refunds.len(), of.fulfillments.len()),
        (1, 0, 1)
    );
    let (_, now) = app.get(&format!("/orders/{}", id(&order))).await;
    assert_eq!(now["items"].as_array().unwrap().len(), 1);
    // Once there is stock, a new request resolves it.
    let (status, resolved, _) = app
        .post(
            &format!(
                "/orders/{}/claims/{}/resolve",
                id(&order),
                c["claim_id"].as_str().unwrap()
            ),
            &json!({"resolution": "replacement"}),
            Some("second-try"),
        )
        .await;
    assert_eq!(
        (status, resolved["status"].as_str()),
        (200, Some("resolved")),
        "{resolved}"
    );
    let missing = app
        .get(&format!(
            "/orders/{}/claims/{}",
            id(&order),
            uuid::Uuid::new_v4()
        ))
        .await;
    assert_eq!(
        (missing.0, missing.1["code"].as_str()),
        (404, Some("claim_not_found"))
    );
}
