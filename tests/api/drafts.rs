//! Drafts: stock held until paid, or released by the durable auto-cancel timer.

use crate::helpers::{mug_order, Options, TestApp};
use order_sim::ReservationStatus;
use order_sim::SimConfig;
use serde_json::json;
use std::time::Duration;

fn draft_hours(hours: &str) -> Options {
    Options {
        env: vec![("ORDER_AUTO_CANCEL_DRAFT_HOURS", hours.into())],
        ..Default::default()
    }
}

#[tokio::test]
async fn a_draft_never_outlives_its_reservation() {
    // The draft may wait 24 h for its payment, but the warehouse holds its stock for
    // 3 s only: the draft is cancelled when the reservation expires, not later.
    let app = TestApp::spawn_with(Options {
        sim: SimConfig {
            reservation_ttl: Duration::from_secs(3),
        },
        ..draft_hours("24")
    })
    .await;

    let (status, draft) = app.create(&mug_order(None)).await;
    assert_eq!(status, 201, "{draft}");
    let expires_at: chrono::DateTime<chrono::Utc> =
        draft["expires_at"].as_str().unwrap().parse().unwrap();
    let created_at: chrono::DateTime<chrono::Utc> =
        draft["created_at"].as_str().unwrap().parse().unwrap();
    assert!(
        expires_at - created_at <= chrono::Duration::seconds(4),
        "expires_at is the reservation's: {draft}"
    );

    let id = draft["id"].as_str().unwrap();
    let order = app
        .wait_for(id, Duration::from_secs(20), |o| o["status"] == "cancelled")
        .await;
    assert!(order["cancelled_at"].is_string());
    let ledger = app.settled_ledger().await;
    assert!(ledger.captures.is_empty());
    assert!(ledger
        .notifications
        .iter()
        .any(|n| n.template == "order_cancelled"));
}

#[tokio::test]
async fn draft_holds_stock_until_paid_and_then_confirms() {
    // 0.001 h = 3.6 s: the timer fires during the test and must find the order paid.
    let app = TestApp::spawn_with(draft_hours("0.001")).await;

    let (status, draft) = app.create(&mug_order(None)).await;
    assert_eq!(status, 201, "{draft}");
    assert_eq!(draft["status"], "draft");
    assert_eq!(draft["payment_status"], "pending");
    assert!(draft["expires_at"].is_string());
    let id = draft["id"].as_str().unwrap();
    let ledger = app.ledger();
    assert_eq!(ledger.reservations.len(), 1);
    assert_eq!(ledger.reservations[0].status, ReservationStatus::Active);
    assert!(ledger.captures.is_empty());

    let (status, paid, _) = app
        .post(
            &format!("/orders/{id}/payments"),
            &json!({"method": "pm_card_visa"}),
            None,
        )
        .await;

    assert_eq!(status, 200, "{paid}");
    assert_eq!(paid["status"], "confirmed");
    assert_eq!(paid["payment_status"], "captured");
    assert_eq!(paid["captured_amount"], "103.10");
    assert_eq!(paid["expires_at"], json!(null));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, later) = app.get(&format!("/orders/{id}")).await;
    assert_eq!(
        later["status"], "confirmed",
        "the expiry timer leaves a paid order alone"
    );
    let ledger = app.ledger();
    assert_eq!(ledger.captures.len(), 1);
    assert!(ledger.releases.is_empty());
    assert_eq!(ledger.reservations[0].items[0].remaining, 2);
    assert_eq!(ledger.fulfillments.len(), 1);
    let topics: Vec<&str> = ledger.events.iter().map(|e| e.topic.as_str()).collect();
    assert_eq!(
        topics,
        ["order.created", "order.payment_added", "order.confirmed"]
    );
}

#[tokio::test]
async fn draft_is_cancelled_and_its_stock_released_when_not_paid_in_time() {
    let app = TestApp::spawn_with(draft_hours("0.0005")).await;

    let (status, draft) = app.create(&mug_order(None)).await;
    assert_eq!(status, 201, "{draft}");
    let id = draft["id"].as_str().unwrap();

    let order = app
        .wait_for(id, Duration::from_secs(30), |o| o["status"] == "cancelled")
        .await;

    assert!(order["cancelled_at"].is_string());
    let ledger = app.settled_ledger().await;
    assert!(ledger
        .notifications
        .iter()
        .any(|n| n.template == "order_cancelled"));
    assert_eq!(ledger.reservations[0].status, ReservationStatus::Released);
    assert_eq!(ledger.reservations[0].items[0].remaining, 0);
    assert!(ledger.captures.is_empty());
    assert!(ledger.events.iter().any(|e| e.topic == "order.cancelled"));
    let (_, history) = app.get(&format!("/orders/{id}/status-history")).await;
    assert_eq!(history[1]["from"], "draft");
    assert_eq!(history[1]["to"], "cancelled");
    assert_eq!(history[1]["actor"], "system");

    // Too late to pay now.
    let (status, problem, _) = app
        .post(
            &format!("/orders/{id}/payments"),
            &json!({"method": "pm_card_visa"}),
            None,
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(problem["code"], "invalid_transition");
}

#[tokio::test]
async fn declined_payment_keeps_the_draft_so_it_can_be_paid_again() {
    let app = TestApp::spawn().await;
    let (_, draft) = app.create(&mug_order(None)).await;
    let id = draft["id"].as_str().unwrap();
    let pay = format!("/orders/{id}/payments");

    let (status, problem, headers) = app
        .post(&pay, &json!({"method": "pm_card_declined"}), None)
        .await;

    assert_eq!(status, 402, "{problem}");
    assert_eq!(problem["code"], "payment_declined");
    assert_eq!(headers["content-type"], "application/problem+json");
    let (_, still) = app.get(&format!("/orders/{id}")).await;
    assert_eq!(still["status"], "draft");
    assert_eq!(
        app.ledger().reservations[0].status,
        ReservationStatus::Active,
        "the stock stays held"
    );

    let (status, paid, _) = app
        .post(
            &pay,
            &json!({"method": "pm_card_visa", "amount": "103.10"}),
            None,
        )
        .await;

    assert_eq!(status, 200, "{paid}");
    assert_eq!(paid["status"], "confirmed");
    let ledger = app.ledger();
    assert_eq!(ledger.declines.len(), 1);
    assert_eq!(ledger.captures.len(), 1);
    assert_eq!(app.count("SELECT count(*) FROM payments").await, 2);
}

#[tokio::test]
async fn paying_refuses_wrong_amounts_unknown_orders_and_confirmed_orders() {
    let app = TestApp::spawn().await;
    let (_, draft) = app.create(&mug_order(None)).await;
    let id = draft["id"].as_str().unwrap();

    let (status, problem, _) = app
        .post(
            &format!("/orders/{id}/payments"),
            &json!({"method": "pm_card_visa", "amount": "1.00"}),
            None,
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("validation_failed"))
    );
    assert_eq!(problem["errors"][0]["field"], "amount");

    let unknown = uuid::Uuid::new_v4();
    let (status, problem, _) = app
        .post(
            &format!("/orders/{unknown}/payments"),
            &json!({"method": "pm_card_visa"}),
            None,
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("order_not_found"))
    );

    let (status, problem, _) = app
        .post(
            &format!("/orders/{id}/payments"),
            &json!({"method": ""}),
            None,
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["field"], "method");

    let (_, confirmed) = app.create(&mug_order(Some("pm_card_visa"))).await;
    let cid = confirmed["id"].as_str().unwrap();
    let (status, problem, _) = app
        .post(
            &format!("/orders/{cid}/payments"),
            &json!({"method": "pm_card_visa"}),
            None,
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("invalid_transition"))
    );
    assert!(
        app.ledger().captures.len() == 1,
        "only the paid create charged"
    );
}
