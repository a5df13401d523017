//! The outbox relay: an event bus that refuses for a while loses nothing and shows
//! what waits; a body the bus cannot read is refused for good and stays visible;
//! several relays on one queue publish each order's events in order.

use crate::helpers::{advance, mug_order, OrderLedger, TestApp};
use crate::metrics::{scrape, value};
use crate::operators::entry;
use order_service::config::DownstreamAddrs;
use order_service::downstream::Downstream;
use serde_json::{json, Value};
use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `probe` until it gives something, for at most `limit`.
async fn poll<T, F: Future<Output = Option<T>>>(
    limit: Duration,
    mut probe: impl FnMut() -> F,
) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(found) = probe().await {
            return Some(found);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

/// The ids of order `id`'s events in the outbox, in the order they were written.
async fn written_events(app: &TestApp, id: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT message_id FROM outbox WHERE order_id = $1::uuid AND kind = 'event' ORDER BY id",
    )
    .bind(id)
    .fetch_all(&app.db)
    .await
    .unwrap()
}

/// The ids of order `id`'s events the bus received, in the order it first got each.
fn published_events(app: &TestApp, id: &str) -> Vec<String> {
    let ledger = OrderLedger::of(&app.ledger(), id);
    ledger.events.iter().map(|e| e.id.clone()).collect()
}

/// Waits until the bus received every event written for each order of `ids`.
async fn all_published(app: &TestApp, ids: &[String], limit: Duration) -> bool {
    poll(limit, || async move {
        for id in ids {
            let written = written_events(app, id).await;
            let published = published_events(app, id);
            if written.iter().any(|w| !published.contains(w)) {
                return None;
            }
        }
        Some(())
    })
    .await
    .is_some()
}

/// The `order_outbox_undelivered` gauge of `kind` and `state` in a fresh scrape, and
/// the age of the oldest.
async fn undelivered(app: &TestApp, kind: &str, state: &str) -> (f64, f64) {
    let text = scrape(app).await;
    let labels = [("kind", kind), ("state", state)];
    (
        value(&text, "order_outbox_undelivered", &labels),
        value(&text, "order_outbox_oldest_undelivered_seconds", &labels),
    )
}

/// Three orders made and moved on while the bus answers `status` to every publish;
/// then the bus recovers. Meanwhile the events wait, counted by the gauge, and the
/// orders are in the stuck list with the bus's answer; afterwards every event is
/// delivered, in the order written, and the orders leave the stuck list.
async fn bus_refusing_for_a_while_loses_no_event(status: u16) {
    let app = &TestApp::spawn().await;
    let refusing = json!({"service": "pubsub", "operation": "publish", "status": status});
    app.inject(refusing);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (code, order) = app.create(&mug_order(Some("pm_card_visa"))).await;
        assert_eq!(
            (code, order["status"].as_str()),
            (201, Some("confirmed")),
            "{order}"
        );
        let id = order["id"].as_str().unwrap().to_owned();
        advance(app, &id, &["processing"]).await;
        ids.push(id);
    }
    let mut written = 0;
    for id in &ids {
        written += written_events(app, id).await.len();
    }
    assert!(written >= 9, "created, confirmed, processing: {written}");
    let ids = &ids;

    // What operators see while the bus refuses (checked once it recovered, so that
    // a lost event is the first thing a failure tells).
    let gauge = poll(Duration::from_secs(10), || async move {
        let (count, oldest) = undelivered(app, "event", "pending").await;
        (count >= written as f64 && oldest > 0.0).then_some((count, oldest))
    })
    .await;
    let listed = poll(Duration::from_secs(30), || async move {
        let (_, list) = app.get("/ops/orders/stuck").await;
        let entries: Vec<Value> = ids
            .iter()
            .filter_map(|id| entry(&list, id).cloned())
            .collect();
        (entries.len() == ids.len()).then_some(entries)
    })
    .await;
    let refused = app
        .ledger()
        .calls
        .iter()
        .filter(|c| c.service == "pubsub" && c.status == status)
        .count();
    assert!(refused > 0, "the bus refused publishes");
    let delivered_meanwhile: usize = ids.iter().map(|id| published_events(app, id).len()).sum();
    assert_eq!(
        delivered_meanwhile, 0,
        "nothing gets through a refusing bus"
    );

    app.sim.sim.clear_faults();
    assert!(
        all_published(app, ids, Duration::from_secs(60)).await,
        "every event of the orders made while the bus answered {status} is delivered"
    );
    for id in ids {
        assert_eq!(
            published_events(app, id),
            written_events(app, id).await,
            "order {id}: its events, in the order written"
        );
    }

    let (count, oldest) = gauge.expect("the gauge showed the events undelivered");
    assert!(count >= written as f64 && oldest > 0.0);
    for stuck in listed.expect("each order was in the stuck list") {
        assert_eq!(stuck["step"], "publish_event", "{stuck}");
        assert_eq!(stuck["reason"], "undelivered", "{stuck}");
        let error = stuck["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains(&format!("pubsub answered {status}")),
            "the bus's answer: {stuck}"
        );
        assert!(stuck["attempts"].as_i64().unwrap() >= 2, "{stuck}");
        assert!(stuck["order_number"].as_str().unwrap().starts_with("ORD-"));
    }

    // Delivered: off the stuck list, the gauge back to nothing.
    let cleared = poll(Duration::from_secs(10), || async move {
        let (_, list) = app.get("/ops/orders/stuck").await;
        let (count, oldest) = undelivered(app, "event", "pending").await;
        let none_listed = ids.iter().all(|id| entry(&list, id).is_none());
        (none_listed && count == 0.0 && oldest == 0.0).then_some(())
    })
    .await;
    assert!(cleared.is_some(), "delivered orders leave the stuck list");
}

#[tokio::test]
async fn bus_answering_404_for_a_while_loses_no_event() {
    bus_refusing_for_a_while_loses_no_event(404).await;
}

#[tokio::test]
async fn bus_answering_403_for_a_while_loses_no_event() {
    bus_refusing_for_a_while_loses_no_event(403).await;
}

#[tokio::test]
async fn event_the_bus_cannot_read_is_refused_for_good_and_shown() {
    let app = &TestApp::spawn().await;
    app.inject(json!({"service": "pubsub", "operation": "publish", "status": 400, "times": 1}));
    let (code, order) = app.create(&mug_order(Some("pm_card_visa"))).await;
    assert_eq!((code, order["status"].as_str()), (201, Some("confirmed")));
    let id = order["id"].as_str().unwrap().to_owned();
    let written = written_events(app, &id).await;
    let (refused_id, rest) = written.split_first().unwrap();
    let id = &id;

    // Listed at once (no retry can deliver it), with the bus's answer.
    let list = poll(Duration::from_secs(10), || async move {
        let (_, list) = app.get("/ops/orders/stuck").await;
        entry(&list, id).is_some().then_some(list)
    })
    .await
    .expect("the order is in the stuck list");
    let stuck = entry(&list, id).unwrap();
    assert_eq!(stuck["step"], "publish_event", "{stuck}");
    assert_eq!(stuck["reason"], "undelivered", "{stuck}");
    let error = stuck["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("pubsub answered 400"), "{stuck}");
    assert_eq!(undelivered(app, "event", "refused").await.0, 1.0);

    // The order's later events go on; the refused one is never sent again, and it
    // stays in the outbox, and in the list.
    assert!(
        all_published_but(app, id, rest).await,
        "later events delivered"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let attempts = app
        .ledger()
        .calls
        .iter()
        .filter(|c| c.idempotency_key.as_deref() == Some(refused_id.as_str()))
        .count();
    assert_eq!(attempts, 1, "a 400 is final");
    assert!(!published_events(app, id).contains(refused_id));
    let kept = app
        .count(&format!(
            "SELECT count(*) FROM outbox WHERE message_id = '{refused_id}'
             AND refused_at IS NOT NULL AND sent_at IS NULL"
        ))
        .await;
    assert_eq!(kept, 1, "the message stays, marked undeliverable");
    let (_, list) = app.get("/ops/orders/stuck").await;
    assert!(entry(&list, id).is_some(), "still listed: {list}");
}

#[tokio::test]
async fn an_operator_sends_a_refused_event_again_or_drops_it_with_a_reason() {
    // Arrange: two orders, the first event of each refused by the bus for good.
    let app = &TestApp::spawn().await;
    let listed = |id: String| async move {
        let (_, list) = app.get("/ops/orders/stuck").await;
        entry(&list, &id).is_some()
    };
    let mut refused = Vec::new();
    for _ in 0..2 {
        app.inject(json!({"service": "pubsub", "operation": "publish", "status": 400, "times": 1}));
        let (code, order) = app.create(&mug_order(Some("pm_card_visa"))).await;
        assert_eq!(code, 201, "{order}");
        let id = order["id"].as_str().unwrap().to_owned();
        // Listed before the next order, so that each refusal falls on its own order.
        let shown = poll(Duration::from_secs(10), || async {
            listed(id.clone()).await.then_some(())
        });
        assert!(shown.await.is_some(), "{id} listed");
        let written = written_events(app, &id).await;
        let (first, rest) = written.split_first().unwrap();
        assert!(all_published_but(app, &id, rest).await, "later events sent");
        refused.push((id, first.clone()));
    }
    let [(sent_again, event), (dropped, _)] = &refused[..] else {
        unreachable!()
    };

    // Act: the bus can read it now; retry the first order, resolve the second.
    let (retried, retry, _) = app
        .post(&format!("/ops/orders/{sent_again}/retry"), &json!({}), None)
        .await;
    let reason = "the bus schema was wrong; the event is not needed";
    let (resolved, resolve, _) = app
        .post(
            &format!("/ops/orders/{dropped}/resolve"),
            &json!({ "reason": reason }),
            None,
        )
        .await;

    // Assert: the first event is delivered and its order leaves the list; the
    // second is kept with the reason, never sent, and its order leaves the list;
    // no refused message is counted any more.
    assert_eq!(retried, 202, "{retry}");
    assert_eq!(retry["requeued_messages"], 1, "{retry}");
    let delivered = poll(Duration::from_secs(10), || async {
        published_events(app, sent_again)
            .contains(event)
            .then_some(())
    });
    assert!(
        delivered.await.is_some(),
        "the refused event was sent again"
    );
    assert_eq!(resolved, 200, "{resolve}");
    assert_eq!(resolve["dropped_messages"], 1, "{resolve}");
    let kept = app
        .count(&format!(
            "SELECT count(*) FROM outbox WHERE order_id = '{dropped}'
             AND dropped_reason = '{reason}' AND sent_at IS NULL"
        ))
        .await;
    assert_eq!(kept, 1, "the dropped message stays on record");
    for (id, _) in &refused {
        let gone = poll(Duration::from_secs(10), || async {
            (!listed(id.clone()).await).then_some(())
        });
        assert!(gone.await.is_some(), "{id} left the stuck list");
    }
    assert_eq!(undelivered(app, "event", "refused").await.0, 0.0);
}

/// Waits until the bus received each of `ids` of order `order`.
async fn all_published_but(app: &TestApp, order: &str, ids: &[String]) -> bool {
    poll(Duration::from_secs(20), || async move {
        let published = published_events(app, order);
        ids.iter().all(|id| published.contains(id)).then_some(())
    })
    .await
    .is_some()
}

#[tokio::test]
async fn relays_running_at_once_publish_each_orders_events_in_order() {
    let app = &TestApp::spawn().await;
    // Three more relays on the service's queue, as more replicas would run.
    let bus = Some(app.sim.base_url());
    let addrs = DownstreamAddrs {
        warehouse: bus.clone(),
        payment: bus.clone(),
        fulfillment: bus.clone(),
        notification: bus.clone(),
        pubsub: bus,
    };
    let downstream = Downstream::new(&addrs, "pubsub", Duration::from_secs(3)).unwrap();
    let relays: Vec<_> = (0..3)
        .map(|_| {
            let run = order_service::relay::run(
                app.db.clone(),
                downstream.clone(),
                std::future::pending(),
            );
            tokio::spawn(run)
        })
        .collect();
    // A bus that often fails or is slow: relays hold their rounds for a while and
    // retry, so they meet on the same orders.
    app.inject(json!({"service": "pubsub", "status": 503, "rate": 0.3}));
    app.inject(json!({"service": "pubsub", "delay_ms": 300, "rate": 0.3}));

    let mut ids = Vec::new();
    for _ in 0..8 {
        let (code, order) = app.create(&mug_order(Some("pm_card_visa"))).await;
        assert_eq!((code, order["status"].as_str()), (201, Some("confirmed")));
        ids.push(order["id"].as_str().unwrap().to_owned());
    }
    for status in ["processing", "shipped", "delivered"] {
        for id in &ids {
            advance(app, id, &[status]).await;
        }
    }
    assert!(
        all_published(app, &ids, Duration::from_secs(90)).await,
        "every event delivered"
    );
    for relay in relays {
        relay.abort();
    }

    for id in &ids {
        let written = written_events(app, id).await;
        assert_eq!(written.len(), 5, "created, confirmed and three moves");
        assert_eq!(
            published_events(app, id),
            written,
            "order {id}: first published in the order written"
        );
        let ledger = OrderLedger::of(&app.ledger(), id);
        let versions: Vec<i64> = ledger
            .events
            .iter()
            .map(|e| e.data["version"].as_i64().unwrap())
            .collect();
        assert!(versions.is_sorted(), "order {id}: versions {versions:?}");
    }
}
