//! `PUT /orders/{id}/status`: the fulfilment path and nothing else.

use crate::helpers::{mug_order, TestApp};
use serde_json::json;

#[tokio::test]
async fn status_moves_along_the_fulfilment_path_with_history_events_and_notifications() {
    let app = TestApp::spawn().await;
    let (_, order) = app.create(&mug_order(Some("pm_card_visa"))).await;
    let id = order["id"].as_str().unwrap();
    let path = format!("/orders/{id}/status");

    let mut version = order["version"].as_i64().unwrap();
    for (to, reason) in [
        ("processing", "picked"),
        ("shipped", "handed to carrier"),
        ("delivered", "signed for"),
    ] {
        let (status, moved, _) = app
            .put(&path, &json!({"status": to, "reason": reason}), None)
            .await;
        assert_eq!(status, 200, "{moved}");
        assert_eq!(moved["status"], to);
        assert!(
            moved["version"].as_i64().unwrap() > version,
            "the version grows"
        );
        version = moved["version"].as_i64().unwrap();
    }

    let (_, delivered) = app.get(&format!("/orders/{id}")).await;
    assert!(delivered["completed_at"].is_string());
    let (_, history) = app.get(&format!("/orders/{id}/status-history")).await;
    let moves: Vec<(&str, &str, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .skip(2)
        .map(|h| {
            (
                h["from"].as_str().unwrap(),
                h["to"].as_str().unwrap(),
                h["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            ("confirmed", "processing", "picked"),
            ("processing", "shipped", "handed to carrier"),
            ("shipped", "delivered", "signed for")
        ]
    );
    assert!(history
        .as_array()
        .unwrap()
        .iter()
        .skip(2)
        .all(|h| h["actor"] == "api"));
    let ledger = app.settled_ledger().await;
    let changed = ledger
        .events
        .iter()
        .filter(|e| e.topic == "order.status_changed")
        .count();
    assert_eq!(changed, 3);
    let told = ledger
        .notifications
        .iter()
        .filter(|n| n.template == "order_status_changed")
        .count();
    assert_eq!(told, 3);
}

#[tokio::test]
async fn status_refuses_moves_outside_the_fulfilment_path() {
    let app = TestApp::spawn().await;
    let (_, draft) = app.create(&mug_order(None)).await;
    let (_, confirmed) = app.create(&mug_order(Some("pm_card_visa"))).await;
    let draft_path = format!("/orders/{}/status", draft["id"].as_str().unwrap());
    let path = format!("/orders/{}/status", confirmed["id"].as_str().unwrap());

    for (path, to) in [
        (&draft_path, "confirmed"),
        (&path, "cancelled"),
        (&path, "refunded"),
        (&path, "shipped"),
        (&path, "draft"),
    ] {
        let (status, problem, _) = app.put(path, &json!({"status": to}), None).await;
        assert_eq!(status, 409, "{to}: {problem}");
        assert_eq!(problem["code"], "invalid_transition", "{to}");
    }
    let (status, problem, _) = app.put(&path, &json!({"status": "lost"}), None).await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["field"], "status");
    let unknown = format!("/orders/{}/status", uuid::Uuid::new_v4());
    let (status, problem, _) = app
        .put(&unknown, &json!({"status": "processing"}), None)
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("order_not_found"))
    );

    let (_, still) = app
        .get(&format!("/orders/{}", confirmed["id"].as_str().unwrap()))
        .await;
    assert_eq!(still["status"], "confirmed");
    assert_eq!(still["version"], confirmed["version"], "nothing changed");
}

#[tokio::test]
async fn a_repeated_status_change_is_applied_once() {
    let app = TestApp::spawn().await;
    let (_, order) = app.create(&mug_order(Some("pm_card_visa"))).await;
    let path = format!("/orders/{}/status", order["id"].as_str().unwrap());
    let body = json!({"status": "processing"});

    let first = app.put(&path, &body, Some("move-1")).await;
    let again = app.put(&path, &body, Some("move-1")).await;

    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!((again.0, &again.1), (first.0, &first.1));
    let changed = app
        .settled_ledger()
        .await
        .events
        .iter()
        .filter(|e| e.topic == "order.status_changed")
        .count();
    assert_eq!(changed, 1);
}
