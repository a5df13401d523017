//! The saga core: refusals that park an order, cancellation through Restate,
//! side effects that never hold an order, bounded amounts, and `202`/`503` answers
//! that say whether Restate accepted the call.

use crate::helpers::{mug_order, TestApp};
use order_sim::ReservationStatus;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_refund_refused_during_a_compensation_parks_the_order_and_counts_no_refund() {
    let app = TestApp::spawn().await;
    app.inject(json!({"service": "fulfillment", "operation": "create", "status": 422, "times": 1}));
    app.inject(json!({"service": "payment", "operation": "refund", "status": 409}));

    let (status, order) = app.create(&mug_order(Some("pm_card_visa"))).await;

    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "failed");
    assert_eq!(order["failure"]["code"], "fulfillment_refused");
    assert_eq!(order["attention"]["step"], "refund_payment");
    assert_eq!(order["attention"]["code"], "compensation_refused");
    assert!(
        order["attention"]["message"]
            .as_str()
            .unwrap()
            .contains("409"),
        "the downstream's answer: {order}"
    );
    assert!(order["attention"]["since"].is_string());
    // Only what the payment service confirmed is counted.
    assert_eq!(order["captured_amount"], "103.10");
    assert_eq!(order["refunded_amount"], "0.00");
    assert_eq!(order["payment_status"], "captured");
    let ledger = app.settled_ledger().await;
    assert!(ledger.refunds.is_empty());
    assert_eq!(ledger.captures.len(), 1);
    assert_eq!(
        ledger.reservations[0].status,
        ReservationStatus::Released,
        "the other compensation still ran"
    );
    let id = order["id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/orders/{id}")).await,
        (200, order.clone())
    );
}

#[tokio::test]
async fn a_create_cancelled_through_restate_during_a_slow_charge_refunds_it_and_releases_the_stock()
{
    let app = TestApp::spawn().await;
    app.inject(json!({"service": "payment", "operation": "charge", "delay_ms": 2500, "times": 1}));
    let (client, url) = (app.http.clone(), format!("{}/orders", app.api));
    let body = mug_order(Some("pm_card_visa"));
    tokio::spawn(async move { client.post(url).json(&body).send().await });
    let id = wait_until_charging(&app).await;

    app.cancel_invocation(&id, "create").await;

    let order = app
        .wait_for(&id, Duration::from_secs(30), |o| o["status"] == "failed")
        .await;
    assert_eq!(order["failure"]["code"], "cancelled");
    assert_eq!(order["captured_amount"], "103.10");
    assert_eq!(order["refunded_amount"], "103.10");
    assert_eq!(order["payment_status"], "refunded");
    let ledger = app.settled_ledger().await;
    assert_eq!(ledger.captures.len(), 1, "one capture");
    assert_eq!(ledger.refunds.len(), 1, "refunded once");
    assert_eq!(ledger.refunds[0].amount.to_string(), "103.10");
    assert_eq!(ledger.reservations.len(), 1);
    assert_eq!(ledger.reservations[0].status, ReservationStatus::Released);
    assert!(ledger.fulfillments.is_empty());
    let topics: Vec<&str> = ledger.events.iter().map(|e| e.topic.as_str()).collect();
    assert_eq!(topics, ["order.created", "order.failed"]);
}

/// Waits until the create saga is inside its (slow) charge; returns the order id.
async fn wait_until_charging(app: &TestApp) -> String {
    let start = Instant::now();
    loop {
        let id: Option<String> = sqlx::query_scalar("SELECT id::text FROM orders")
            .fetch_optional(&app.db)
            .await
            .unwrap();
        let reserved = app.ledger().calls.iter().any(|c| c.operation == "reserve");
        if let (Some(id), true) = (id, reserved) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            return id;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never charged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_notification_service_that_is_down_never_holds_the_order() {
    let app = TestApp::spawn().await;
    app.inject(json!({"service": "notification", "status": 503}));

    let (status, order) = app.create(&mug_order(Some("pm_card_visa"))).await;
    assert_eq!((status, order["status"].as_str()), (201, Some("confirmed")));
    let path = format!("/orders/{}/status", order["id"].as_str().unwrap());
    for to in ["processing", "shipped"] {
        let (status, moved, _) = app.put(&path, &json!({ "status": to }), None).await;
        assert_eq!(
            (status, moved["status"].as_str()),
            (200, Some(to)),
            "{moved}"
        );
    }

    // Events still flow; notifications wait in the outbox, retried.
    let ledger = app
        .wait_for_ledger(Duration::from_secs(10), |l| {
            l.events
                .iter()
                .filter(|e| e.topic == "order.status_changed")
                .count()
                == 2
        })
        .await;
    assert!(ledger.notifications.is_empty());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let retried = app
        .count("SELECT count(*) FROM outbox WHERE kind = 'notification' AND sent_at IS NULL AND attempts > 0 AND last_error IS NOT NULL")
        .await;
    assert!(retried >= 1, "the head notification is being retried");

    // Once the service is back, every notification goes out, in order.
    app.sim.sim.clear_faults();
    let ledger = app.settled_ledger().await;
    let templates: Vec<&str> = ledger
        .notifications
        .iter()
        .map(|n| n.template.as_str())
        .collect();
    assert_eq!(
        templates,
        [
            "order_confirmed",
            "order_status_changed",
            "order_status_changed"
        ]
    );
}

#[tokio::test]
async fn a_downstream_404_on_a_forward_step_parks_the_order_instead_of_retrying() {
    let app = TestApp::spawn().await;
    app.inject(json!({"service": "payment", "operation": "charge", "status": 404}));

    let (status, order) = app.create(&mug_order(Some("pm_card_visa"))).await;

    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "failed");
    assert_eq!(order["failure"]["code"], "step_refused");
    assert_eq!(order["attention"]["step"], "charge_payment");
    assert_eq!(order["attention"]["code"], "step_refused");
    let ledger = app.settled_ledger().await;
    let charges = ledger
        .calls
        .iter()
        .filter(|c| c.operation == "charge")
        .count();
    assert_eq!(charges, 1, "a 404 is not retried");
    assert_eq!(ledger.reservations[0].status, ReservationStatus::Released);
    assert_eq!(ledger.notifications[0].template, "order_failed");
}

#[tokio::test]
async fn amounts_beyond_the_bounds_are_refused_with_the_field_named_and_nothing_created() {
    let app = TestApp::spawn().await;
    let cases = [
        ("9999999999.99", 100_000, "0.00", "items[0].unit_price"),
        ("99999999999.99", 1, "0.01", "items[0].tax_amount"),
        ("100000000000.00", 1, "0.00", "items[0].unit_price"),
    ];
    for (price, quantity, tax, field) in cases {
        let mut body = mug_order(Some("pm_card_visa"));
        body["items"][0]["unit_price"] = json!(price);
        body["items"][0]["quantity"] = json!(quantity);
        body["items"][0]["discount_amount"] = json!("0.00");
        body["items"][0]["tax_amount"] = json!(tax);

        let (status, problem) = app.create(&body).await;

        assert_eq!(status, 422, "{problem}");
        assert_eq!(problem["code"], "validation_failed");
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 0);
    assert!(app.ledger().calls.is_empty());
}

#[tokio::test]
async fn a_create_while_restate_is_down_answers_503_and_the_retry_creates_one_order() {
    let mut app = TestApp::spawn().await;
    app.kill_restate().await;
    let body = mug_order(Some("pm_card_visa"));

    let (status, problem, headers) = app.post("/orders", &body, Some("down-1")).await;

    assert_eq!(status, 503, "{problem}");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 0);
    assert!(app.ledger().calls.is_empty(), "nothing was sent downstream");

    app.restart_restate().await;
    let (status, order, _) = app.post("/orders", &body, Some("down-1")).await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "confirmed");
    let (status, again, _) = app.post("/orders", &body, Some("down-1")).await;
    assert_eq!((status, &again), (201, &order));
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 1);
    assert_eq!(app.ledger().captures.len(), 1);
}

#[tokio::test]
async fn every_downstream_step_occurrence_has_its_own_idempotency_key() {
    let app = TestApp::spawn().await;
    // A draft paid twice (declined, then accepted), whose second payment's
    // fulfillment is refused: charges, a refund and releases across three sagas.
    app.inject(json!({"service": "fulfillment", "operation": "create", "status": 422, "times": 1}));
    let (_, draft) = app.create(&mug_order(None)).await;
    let pay = format!("/orders/{}/payments", draft["id"].as_str().unwrap());
    let (declined, _, _) = app
        .post(&pay, &json!({"method": "pm_card_declined"}), None)
        .await;
    assert_eq!(declined, 402);
    let (status, failed, _) = app
        .post(&pay, &json!({"method": "pm_card_visa"}), None)
        .await;
    assert_eq!(status, 200, "{failed}");
    assert_eq!(failed["failure"]["code"], "fulfillment_refused");

    let ledger = app.settled_ledger().await;
    let mut keys: Vec<&str> = ledger
        .calls
        .iter()
        .filter(|c| c.service != "pubsub")
        .map(|c| c.idempotency_key.as_deref().expect("every call has a key"))
        .collect();
    let calls = keys.len();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(
        keys.len(),
        calls,
        "a key was used twice: {:#?}",
        ledger.calls
    );
    let charges: Vec<&str> = ledger
        .calls
        .iter()
        .filter(|c| c.operation == "charge")
        .filter_map(|c| c.idempotency_key.as_deref())
        .collect();
    // A charge's key is its payment attempt's.
    assert!(charges[0].ends_with(":charge#1") && charges[1].ends_with(":charge#2"));
}

#[tokio::test]
async fn the_draft_timer_handler_cannot_be_called_from_outside_restate() {
    let app = TestApp::spawn().await;
    let (_, draft) = app.create(&mug_order(None)).await;
    let id = draft["id"].as_str().unwrap();
    let ingress = format!("http://127.0.0.1:{}", app.restate_ingress_port());

    let res = app
        .http
        .post(format!("{ingress}/restate/call/Order/{id}/expire_draft"))
        .send()
        .await
        .unwrap();

    assert!(res.status().is_client_error(), "{}", res.status());
    let (_, still) = app.get(&format!("/orders/{id}")).await;
    assert_eq!(still["status"], "draft");
}

#[tokio::test]
async fn the_state_fallback_behind_a_202_reads_the_order_object() {
    let app = TestApp::spawn().await;
    let (_, order) = app.create(&mug_order(Some("pm_card_visa"))).await;
    let id = order["id"].as_str().unwrap();
    let ingress = app.ingress();

    let held: Option<serde_json::Value> = ingress
        .read("Order", id, "get", Duration::from_secs(5))
        .await
        .unwrap();
    let unknown: Option<serde_json::Value> = ingress
        .read(
            "Order",
            &uuid::Uuid::new_v4().to_string(),
            "get",
            Duration::from_secs(5),
        )
        .await
        .unwrap();

    assert_eq!(
        held,
        Some(order),
        "the object holds what the read model shows"
    );
    assert_eq!(unknown, None);
}

#[tokio::test]
async fn read_model_errors_that_no_retry_can_pass_are_final_and_others_are_retried() {
    let app = TestApp::spawn().await;
    let permanent = |sql: &'static str| {
        let db = app.db.clone();
        async move { sqlx::query(sql).execute(&db).await.unwrap_err() }
    };

    // What PostgreSQL answers to a NUL byte in text, as a saga's write would send it.
    let nul = sqlx::query("SELECT $1::text")
        .bind("a\0b")
        .execute(&app.db)
        .await
        .unwrap_err();
    let overflow = permanent("SELECT 1e20::numeric(19,4)").await;
    let duplicate = permanent(
        "INSERT INTO order_number_counters (day, last_value) VALUES ('2026-01-01', 1), ('2026-01-01', 2)",
    )
    .await;
    let closed =
        <sqlx::PgConnection as sqlx::Connection>::connect("postgres://postgres@127.0.0.1:1/none")
            .await
            .unwrap_err();

    for e in [&nul, &overflow, &duplicate] {
        assert!(order_service::read_model::is_permanent(e), "{e}");
    }
    assert!(
        !order_service::read_model::is_permanent(&closed),
        "{closed}"
    );
}
