//! `POST /orders/{id}/cancel`: the fulfillment cancelled, the stock released and the
//! capture refunded, each once, also across crashes; or a refusal that changes
//! nothing.

use crate::helpers::{assert_problem, mug_order, order_body, Options, OrderLedger, TestApp};
use order_sim::{FulfillmentStatus, ReservationStatus, SkuQty};
use serde_json::{json, Value};
use std::time::Duration;

fn sku_qty(sku: &str, quantity: u32) -> SkuQty {
    SkuQty {
        sku: sku.into(),
        quantity,
    }
}

fn id(order: &Value) -> String {
    order["id"].as_str().unwrap().to_owned()
}

/// The statuses an order went through, from its status history.
async fn moves(app: &TestApp, id: &str) -> Vec<Value> {
    let (status, history) = app.get(&format!("/orders/{id}/status-history")).await;
    assert_eq!(status, 200, "{history}");
    history.as_array().unwrap().clone()
}

#[tokio::test]
async fn cancel_refunds_releases_and_cancels_the_fulfillment_of_confirmed_and_processing_orders() {
    let app = TestApp::spawn().await;
    let (_, confirmed) = app.create(&mug_order(Some("pm_card_visa"))).await;
    assert_eq!(confirmed["status"], "confirmed", "{confirmed}");
    let (_, placed) = app.create(&mug_order(Some("pm_card_visa"))).await;
    let (status, processing, _) = app
        .put(
            &format!("/orders/{}/status", id(&placed)),
            &json!({"status": "processing"}),
            None,
        )
        .await;
    assert_eq!(status, 200, "{processing}");

    for (order, from) in [(&confirmed, "confirmed"), (&processing, "processing")] {
        let id = id(order);
        let (status, cancelled, _) = app
            .post(
                &format!("/orders/{id}/cancel"),
                &json!({"reason": "changed my mind"}),
                None,
            )
            .await;

        assert_eq!(status, 200, "{from}: {cancelled}");
        assert_eq!(cancelled["status"], "cancelled");
        assert!(cancelled["cancelled_at"].is_string(), "{cancelled}");
        assert_eq!(cancelled["payment_status"], "refunded");
        assert_eq!(cancelled["captured_amount"], "103.10");
        assert_eq!(cancelled["refunded_amount"], "103.10");
        assert_eq!(
            cancelled["total_amount"], "103.10",
            "the total stays as placed"
        );
        assert_eq!(cancelled["items"][0]["cancelled_quantity"], 2);
        assert_eq!(cancelled["items"][0]["total_price"], "98.10");
        assert_eq!(cancelled["attention"], Value::Null);
        assert!(cancelled["version"].as_i64() > order["version"].as_i64());
        assert_eq!(
            app.get(&format!("/orders/{id}")).await,
            (200, cancelled.clone()),
            "the read model shows what the answer said"
        );

        let ledger = OrderLedger::of(&app.settled_ledger().await, &id);
        assert_eq!(
            ledger.refund_amounts(),
            ["103.10"],
            "one refund of the capture"
        );
        assert_eq!(ledger.refunds[0].payment_id, ledger.captures[0].payment_id);
        assert_eq!(ledger.releases.len(), 1, "{:#?}", ledger.releases);
        assert_eq!(ledger.releases[0].released, [sku_qty("SKU-MUG", 2)]);
        assert_eq!(ledger.reservations[0].status, ReservationStatus::Released);
        assert_eq!(ledger.fulfillments[0].status, FulfillmentStatus::Cancelled);
        assert_eq!(ledger.fulfillments[0].cancelled, [sku_qty("SKU-MUG", 2)]);
        assert_eq!(ledger.fulfillment_cancels, 1);
        assert_eq!(ledger.count_topic("order.cancelled"), 1);
        assert_eq!(ledger.topics().last(), Some(&"order.cancelled"));
        assert_eq!(ledger.count_template("order_cancelled"), 1);

        let history = moves(&app, &id).await;
        let last = history.last().unwrap();
        assert_eq!(
            (&last["from"], &last["to"], &last["reason"], &last["actor"]),
            (
                &json!(from),
                &json!("cancelled"),
                &json!("changed my mind"),
                &json!("api")
            ),
            "{history:?}"
        );

        // Once cancelled, the order can be cancelled no more, wholly or in part.
        let again = app
            .post(&format!("/orders/{id}/cancel"), &json!({}), None)
            .await;
        assert_problem(&again, 409, "invalid_transition");
        let items = json!({"items": [{"item_id": 1, "quantity": 1}]});
        let again = app
            .post(&format!("/orders/{id}/cancel-items"), &items, None)
            .await;
        assert_problem(&again, 409, "invalid_transition");
        assert_eq!(
            app.get(&format!("/orders/{id}")).await,
            (200, cancelled.clone())
        );
        assert_eq!(
            OrderLedger::of(&app.ledger(), &id).refunds.len(),
            1,
            "no second refund"
        );
    }
}

#[tokio::test]
async fn cancel_after_cancelled_items_refunds_and_releases_only_what_is_left() {
    let app = TestApp::spawn().await;
    // Mug: 98.10; cup: 3 x 10.00 - 1.00 + 0.83 = 29.83; shipping 5.00: 132.93.
    let mut body = mug_order(Some("pm_card_visa"));
    let mut cup = order_body(&[("SKU-CUP", 3, "10.00")], None)["items"][0].clone();
    cup["discount_amount"] = json!("1.00");
    cup["tax_amount"] = json!("0.83");
    body["items"].as_array_mut().unwrap().push(cup);
    let (_, order) = app.create(&body).await;
    assert_eq!(order["total_amount"], "132.93", "{order}");
    let id = id(&order);
    let items = json!({"items": [{"item_id": 1, "quantity": 2}, {"item_id": 2, "quantity": 1}]});
    let (status, partly, _) = app
        .post(&format!("/orders/{id}/cancel-items"), &items, None)
        .await;
    assert_eq!(status, 200, "{partly}");
    assert_eq!(partly["refunded_amount"], "108.05", "98.10 + 9.95");

    let (status, cancelled, _) = app
        .post(
            &format!("/orders/{id}/cancel"),
            &json!({"reason": "all"}),
            None,
        )
        .await;

    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["items"][0]["cancelled_quantity"], 2);
    assert_eq!(cancelled["items"][1]["cancelled_quantity"], 3);
    assert_eq!(cancelled["refunded_amount"], "132.93");
    assert_eq!(cancelled["payment_status"], "refunded");
    let ledger = OrderLedger::of(&app.settled_ledger().await, &id);
    assert_eq!(
        ledger.refund_amounts(),
        ["108.05", "24.88"],
        "the cancel refunds what is left, in one refund"
    );
    assert_eq!(ledger.releases.len(), 2);
    assert_eq!(ledger.releases[1].released, [sku_qty("SKU-CUP", 2)]);
    assert_eq!(ledger.reservations[0].status, ReservationStatus::Released);
    let mut fulfillment_cancelled = ledger.fulfillments[0].cancelled.clone();
    fulfillment_cancelled.sort_by(|a, b| a.sku.cmp(&b.sku));
    assert_eq!(
        fulfillment_cancelled,
        [sku_qty("SKU-CUP", 3), sku_qty("SKU-MUG", 2)]
    );
    assert_eq!(ledger.fulfillments[0].status, FulfillmentStatus::Cancelled);
    assert_eq!(ledger.count_topic("order.cancelled"), 1);
}

#[tokio::test]
async fn cancel_is_refused_for_unknown_shipped_delivered_and_failed_orders_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let unknown = uuid::Uuid::new_v4().to_string();
    for (path, body) in [
        ("cancel", json!({"reason": "r"})),
        (
            "cancel-items",
            json!({"items": [{"item_id": 1, "quantity": 1}], "reason": "r"}),
        ),
    ] {
        let answer = app
            .post(&format!("/orders/{unknown}/{path}"), &body, None)
            .await;
        assert_problem(&answer, 404, "order_not_found");
    }
    let (status, problem) = app.get(&format!("/orders/{unknown}/edit-history")).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("order_not_found"))
    );

    let mut cases = Vec::new();
    for to in [
        &["processing", "shipped"][..],
        &["processing", "shipped", "delivered"],
    ] {
        let (_, order) = app.create(&mug_order(Some("pm_card_visa"))).await;
        for step in to {
            let (status, moved, _) = app
                .put(
                    &format!("/orders/{}/status", id(&order)),
                    &json!({"status": step}),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{moved}");
        }
        cases.push((id(&order), "not_cancellable"));
    }
    let (_, failed) = app
        .create(&order_body(&[("OOS-1", 1, "10.00")], Some("pm_card_visa")))
        .await;
    assert_eq!(failed["status"], "failed", "{failed}");
    cases.push((id(&failed), "invalid_transition"));
    let before = app.settled_ledger().await;

    for (id, code) in &cases {
        let (_, order) = app.get(&format!("/orders/{id}")).await;
        let cancel = app
            .post(
                &format!("/orders/{id}/cancel"),
                &json!({"reason": "too late"}),
                None,
            )
            .await;
        assert_problem(&cancel, 409, code);
        let items = json!({"items": [{"item_id": 1, "quantity": 1}], "reason": "too late"});
        let cancel_items = app
            .post(&format!("/orders/{id}/cancel-items"), &items, None)
            .await;
        assert_problem(&cancel_items, 409, code);
        assert_eq!(
            app.get(&format!("/orders/{id}")).await,
            (200, order.clone()),
            "{code}: nothing changed"
        );
    }
    let after = app.settled_ledger().await;
    assert_eq!(after.refunds, before.refunds);
    assert_eq!(after.releases, before.releases);
    assert_eq!(after.fulfillments, before.fulfillments);
    assert!(
        after
            .calls
            .iter()
            .all(|c| c.operation != "cancel" && c.operation != "refund"),
        "nothing was asked downstream"
    );
}

#[tokio::test]
async fn cancel_is_refused_with_already_shipped_when_the_fulfillment_has_shipped() {
    let app = TestApp::spawn().await;
    let (_, order) = app.create(&mug_order(Some("pm_card_visa"))).await;
    let id = id(&order);
    let fulfillment = OrderLedger::of(&app.ledger(), &id).fulfillments[0]
        .fulfillment_id
        .clone();
    // The warehouse shipped it before the order heard about it.
    let shipped = app
        .http
        .post(format!(
            "{}/_sim/fulfillments/{fulfillment}/ship",
            app.sim.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(shipped.status(), 204);

    let cancel = app
        .post(
            &format!("/orders/{id}/cancel"),
            &json!({"reason": "changed my mind"}),
            None,
        )
        .await;
    let items = json!({"items": [{"item_id": 1, "quantity": 1}], "reason": "one is enough"});
    let cancel_items = app
        .post(&format!("/orders/{id}/cancel-items"), &items, None)
        .await;

    assert_problem(&cancel, 409, "already_shipped");
    assert_problem(&cancel_items, 409, "already_shipped");
    let (_, now) = app.get(&format!("/orders/{id}")).await;
    assert_eq!(now["status"], "confirmed");
    assert_eq!(now["version"], order["version"], "order version unchanged");
    assert_eq!(now, order, "nothing changed");
    let ledger = OrderLedger::of(&app.settled_ledger().await, &id);
    assert!(ledger.releases.is_empty(), "{:#?}", ledger.releases);
    assert!(ledger.refunds.is_empty(), "{:#?}", ledger.refunds);
    assert_eq!(ledger.reservations[0].status, ReservationStatus::Committed);
    assert_eq!(ledger.reservations[0].items[0].remaining, 2);
    assert_eq!(ledger.fulfillments[0].status, FulfillmentStatus::Shipped);
    assert_eq!(ledger.count_topic("order.cancelled"), 0);
    assert_eq!(ledger.count_topic("order.items_cancelled"), 0);
    assert_eq!(moves(&app, &id).await.len(), 2, "draft, confirmed");
}

#[tokio::test]
async fn cancelling_a_draft_releases_its_stock_and_its_auto_cancel_timer_then_does_nothing() {
    // 0.002 h = 7.2 s: the timer fires during the test, after the cancel.
    let app = TestApp::spawn_with(Options {
        env: vec![("ORDER_AUTO_CANCEL_DRAFT_HOURS", "0.002".into())],
        ..Default::default()
    })
    .await;
    let (status, draft) = app.create(&mug_order(None)).await;
    assert_eq!((status, draft["status"].as_str()), (201, Some("draft")));
    let id = id(&draft);

    let (status, cancelled, _) = app
        .post(
            &format!("/orders/{id}/cancel"),
            &json!({"reason": "changed my mind"}),
            None,
        )
        .await;

    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled["cancelled_at"].is_string());
    assert_eq!(cancelled["payment_status"], "pending", "nothing was paid");
    assert_eq!(cancelled["refunded_amount"], "0.00");
    assert_eq!(cancelled["items"][0]["cancelled_quantity"], 2);
    let ledger = OrderLedger::of(&app.settled_ledger().await, &id);
    assert_eq!(ledger.releases.len(), 1);
    assert_eq!(ledger.releases[0].released, [sku_qty("SKU-MUG", 2)]);
    assert_eq!(ledger.reservations[0].status, ReservationStatus::Released);
    assert!(ledger.captures.is_empty() && ledger.refund_calls.is_empty());
    assert!(ledger.fulfillments.is_empty());

    // Past the draft's expiry: its timer finds the order cancelled and leaves it.
    let expires_at: chrono::DateTime<chrono::Utc> =
        draft["expires_at"].as_str().unwrap().parse().unwrap();
    let wait = (expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_secs(3)).await;

    assert_eq!(
        app.get(&format!("/orders/{id}")).await,
        (200, cancelled.clone()),
        "the timer changed nothing"
    );
    let later = OrderLedger::of(&app.settled_ledger().await, &id);
    assert_eq!(later.releases, ledger.releases, "no second release");
    assert_eq!(later.count_topic("order.cancelled"), 1);
    assert_eq!(later.count_template("order_cancelled"), 1);
    let history = moves(&app, &id).await;
    let cancels: Vec<&Value> = history.iter().filter(|h| h["to"] == "cancelled").collect();
    assert_eq!(cancels.len(), 1, "{history:?}");
    assert_eq!(cancels[0]["actor"], "api");
    assert_eq!(cancels[0]["from"], "draft");
    let pay = app
        .post(
            &format!("/orders/{id}/payments"),
            &json!({"method": "pm_card_visa"}),
            None,
        )
        .await;
    assert_problem(&pay, 409, "invalid_transition");
}

#[tokio::test]
async fn a_refund_the_payment_service_refuses_still_cancels_and_asks_for_an_operator() {
    let app = TestApp::spawn().await;
    let (_, order) = app.create(&mug_order(Some("pm_card_visa"))).await;
    let id = id(&order);
    app.inject(json!({"service": "payment", "operation": "refund", "status": 409}));

    let (status, cancelled, _) = app
        .post(
            &format!("/orders/{id}/cancel"),
            &json!({"reason": "changed my mind"}),
            None,
        )
        .await;

    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["items"][0]["cancelled_quantity"], 2);
    assert_eq!(cancelled["captured_amount"], "103.10");
    assert_eq!(
        cancelled["refunded_amount"], "0.00",
        "only what was refunded"
    );
    assert_eq!(cancelled["payment_status"], "captured");
    assert_eq!(cancelled["attention"]["step"], "refund_payment");
    assert_eq!(cancelled["attention"]["code"], "compensation_refused");
    assert!(
        cancelled["attention"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("409")),
        "the downstream's answer: {cancelled}"
    );
    assert!(cancelled["attention"]["since"].is_string());
    assert_eq!(
        app.get(&format!("/orders/{id}")).await,
        (200, cancelled.clone())
    );
    let ledger = OrderLedger::of(&app.settled_ledger().await, &id);
    assert!(ledger.refunds.is_empty());
    assert_eq!(ledger.refund_calls.len(), 1, "a 409 is final, not retried");
    assert_eq!(ledger.releases[0].released, [sku_qty("SKU-MUG", 2)]);
    assert_eq!(ledger.reservations[0].status, ReservationStatus::Released);
    assert_eq!(ledger.fulfillments[0].status, FulfillmentStatus::Cancelled);
}

#[tokio::test]
async fn a_refund_that_fails_for_a_while_or_loses_its_answer_is_made_once() {
    let app = TestApp::spawn().await;
    let (_, failing) = app.create(&mug_order(Some("pm_card_visa"))).await;
    let (_, dropped) = app.create(&mug_order(Some("pm_card_visa"))).await;

    // Three 503s, then the refund.
    app.inject(json!({"service": "payment", "operation": "refund", "status": 503, "times": 3}));
    let ledger = cancel_with_faulty_refund(&app, &id(&failing)).await;
    assert_eq!(ledger.refund_calls.len(), 4, "three 503s, then the refund");

    // The refund is made but its answer lost: the retry is answered from the
    // payment service's record of the key, not made again.
    app.inject(json!({"service": "payment", "operation": "refund", "drop": "after", "times": 1}));
    let ledger = cancel_with_faulty_refund(&app, &id(&dropped)).await;
    assert!(
        ledger.refund_calls.iter().any(|c| c.replayed),
        "{:#?}",
        ledger.refund_calls
    );
}

/// Cancels the order `id` while a refund fault is set; checks it ends cancelled with
/// exactly one refund, every attempt under one key; answers its ledger.
async fn cancel_with_faulty_refund(app: &TestApp, id: &str) -> OrderLedger {
    let (status, answer, _) = app
        .post(&format!("/orders/{id}/cancel"), &json!({}), None)
        .await;

    assert!(status == 200 || status == 202, "{status}: {answer}");
    let cancelled = app
        .wait_for(id, Duration::from_secs(30), |o| o["status"] == "cancelled")
        .await;
    assert_eq!(cancelled["refunded_amount"], "103.10");
    assert_eq!(cancelled["payment_status"], "refunded");
    assert_eq!(cancelled["attention"], Value::Null);
    let ledger = OrderLedger::of(&app.settled_ledger().await, id);
    assert_eq!(ledger.refund_amounts(), ["103.10"], "exactly one refund");
    assert!(
        ledger
            .refund_calls
            .iter()
            .all(|c| c.idempotency_key == ledger.refund_calls[0].idempotency_key),
        "every retry reuses the key: {:#?}",
        ledger.refund_calls
    );
    ledger
}

#[tokio::test]
async fn a_repeated_cancel_answers_the_same_and_refunds_once() {
    let app = TestApp::spawn().await;
    let (_, order) = app.create(&mug_order(Some("pm_card_visa"))).await;
    let path = format!("/orders/{}/cancel", id(&order));
    let body = json!({"reason": "changed my mind"});

    let first = app.post(&path, &body, Some("cancel-1")).await;
    let again = app.post(&path, &body, Some("cancel-1")).await;
    let other = app
        .post(
            &path,
            &json!({"reason": "found it cheaper"}),
            Some("cancel-1"),
        )
        .await;

    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!((again.0, &again.1), (first.0, &first.1), "the first answer");
    assert_problem(&other, 422, "idempotency_key_reused");
    let (_, now) = app.get(&format!("/orders/{}", id(&order))).await;
    assert_eq!(now, first.1);
    let ledger = OrderLedger::of(&app.settled_ledger().await, &id(&order));
    assert_eq!(ledger.refund_amounts(), ["103.10"]);
    assert_eq!(ledger.releases.len(), 1);
    assert_eq!(ledger.fulfillment_cancels, 1);
    assert_eq!(ledger.count_topic("order.cancelled"), 1);
}

#[tokio::test]
async fn cancel_ends_once_when_the_service_dies_during_a_slow_refund() {
    let mut app = TestApp::spawn().await;
    let id = start_cancel_with_a_slow_refund(&app).await;

    app.kill_service().await;
    app.start_service().await;

    assert_cancelled_once(&app, &id).await;
}

#[tokio::test]
async fn cancel_ends_once_when_restate_dies_during_a_slow_refund() {
    let mut app = TestApp::spawn().await;
    let id = start_cancel_with_a_slow_refund(&app).await;

    app.kill_restate().await;
    // Let the slow refund land while the engine is down: its answer is lost.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    app.restart_restate().await;

    assert_cancelled_once(&app, &id).await;
}

/// Places a paid order and starts cancelling it with a refund that takes 1.5 s;
/// returns once the saga is inside the refund (the stock is released).
async fn start_cancel_with_a_slow_refund(app: &TestApp) -> String {
    let (_, order) = app.create(&mug_order(Some("pm_card_visa"))).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    let id = id(&order);
    app.inject(json!({"service": "payment", "operation": "refund", "delay_ms": 1500, "times": 1}));
    let (client, url) = (app.http.clone(), format!("{}/orders/{id}/cancel", app.api));
    tokio::spawn(async move { client.post(url).json(&json!({})).send().await });
    app.wait_for_ledger(Duration::from_secs(20), |l| {
        !OrderLedger::of(l, &id).releases.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        OrderLedger::of(&app.ledger(), &id).refunds.is_empty(),
        "still inside the refund"
    );
    id
}

/// The order ends cancelled with one refund, one release and one fulfillment cancel,
/// and its cancellation recorded and told once.
async fn assert_cancelled_once(app: &TestApp, id: &str) {
    let order = app
        .wait_for(id, Duration::from_secs(90), |o| o["status"] == "cancelled")
        .await;
    assert_eq!(order["refunded_amount"], "103.10");
    assert_eq!(order["payment_status"], "refunded");
    assert_eq!(order["items"][0]["cancelled_quantity"], 2);
    let ledger = OrderLedger::of(&app.settled_ledger().await, id);
    assert_eq!(ledger.refund_amounts(), ["103.10"], "refunded once");
    assert_eq!(ledger.releases.len(), 1, "{:#?}", ledger.releases);
    assert_eq!(ledger.releases[0].released, [sku_qty("SKU-MUG", 2)]);
    assert_eq!(ledger.fulfillment_cancels, 1);
    assert_eq!(ledger.fulfillments[0].status, FulfillmentStatus::Cancelled);
    assert_eq!(ledger.count_topic("order.cancelled"), 1);
    assert_eq!(ledger.count_template("order_cancelled"), 1);
    let history = moves(app, id).await;
    assert_eq!(
        history.iter().filter(|h| h["to"] == "cancelled").count(),
        1,
        "{history:?}"
    );
}
