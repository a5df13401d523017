//! `GET /metrics`: the business facts counted once each, also when a step is
//! retried and the saga replayed; step attempts as they ran; HTTP requests by
//! route template.

use crate::helpers::{mug_order, TestApp};
use serde_json::json;
use std::collections::BTreeMap;

/// The samples of `name` in the exposition `text`, each with its labels.
fn samples(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, labels) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let labels = labels
                .split(',')
                .filter(|p| !p.is_empty())
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    Some((k.to_owned(), v.trim_matches('"').to_owned()))
                })
                .collect();
            Some((labels, value.parse().ok()?))
        })
        .collect()
}

/// The value of `name` with exactly `labels`; 0 when absent.
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let wanted: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples(text, name)
        .into_iter()
        .find(|(l, _)| *l == wanted)
        .map_or(0.0, |(_, v)| v)
}

/// The value of the gauge `name` (no labels), which must be exported.
pub fn gauge(text: &str, name: &str) -> f64 {
    match samples(text, name).as_slice() {
        [(labels, v)] if labels.is_empty() => *v,
        _ => panic!("no single {name} in {text}"),
    }
}

/// `GET /metrics`, which must answer `200` with the text format.
pub async fn scrape(app: &TestApp) -> String {
    let root = app.api.trim_end_matches("/api/v1");
    let response = app
        .http
        .get(format!("{root}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let kind = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(kind.starts_with("text/plain"), "{kind}");
    response.text().await.unwrap()
}

#[tokio::test]
async fn business_facts_count_once_each_even_when_a_lost_answer_replays_the_saga() {
    let app = TestApp::spawn().await;
    // The first capture's answer is lost: the step fails, the invocation is retried
    // and replays what it had journaled, and the charge is asked for again.
    app.inject(json!({"service": "payment", "operation": "charge", "drop": "after", "times": 1}));
    let (status, paid) = app.create(&mug_order(Some("pm_card_visa"))).await;
    assert_eq!(
        (status, paid["status"].as_str()),
        (201, Some("confirmed")),
        "{paid}"
    );
    let (status, draft) = app.create(&mug_order(None)).await;
    assert_eq!((status, draft["status"].as_str()), (201, Some("draft")));
    let (status, failed) = app.create(&mug_order(Some("pm_card_declined"))).await;
    assert_eq!((status, failed["status"].as_str()), (201, Some("failed")));
    let path = format!("/orders/{}/cancel", paid["id"].as_str().unwrap());
    let (status, cancelled, _) = app
        .post(&path, &json!({"reason": "changed my mind"}), None)
        .await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("cancelled"))
    );

    let text = scrape(&app).await;
    for status in ["confirmed", "draft", "failed"] {
        let created = value(&text, "order_created_total", &[("status", status)]);
        assert_eq!(created, 1.0, "{status}: {text}");
    }
    let change = |from, to| {
        value(
            &text,
            "order_status_changes_total",
            &[("from", from), ("to", to)],
        )
    };
    assert_eq!(change("draft", "confirmed"), 1.0, "{text}");
    assert_eq!(change("confirmed", "cancelled"), 1.0);
    assert_eq!(change("draft", "failed"), 1.0);
    assert_eq!(value(&text, "order_cancellations_total", &[]), 1.0);
    let value_created = value(&text, "order_total_value_created", &[("currency", "USD")]);
    assert!((value_created - 103.10).abs() < 1e-6, "{value_created}");
    assert_eq!(
        value(&text, "order_creation_duration_seconds_count", &[]),
        3.0,
        "every create rested within the request: {text}"
    );

    // Step attempts as they ran: the charge failed once and then went through; the
    // two read-model writes of the paid create were each made once, replay or not.
    let attempts = |saga, step, outcome| {
        value(
            &text,
            "order_saga_step_attempts_total",
            &[("saga", saga), ("step", step), ("outcome", outcome)],
        )
    };
    assert_eq!(
        attempts("create_order", "charge_payment", "failed"),
        1.0,
        "{text}"
    );
    assert_eq!(attempts("create_order", "charge_payment", "succeeded"), 1.0);
    assert_eq!(attempts("create_order", "charge_payment", "rejected"), 1.0);
    assert_eq!(
        attempts("create_order", "update_read_model", "succeeded"),
        6.0
    );
    assert_eq!(attempts("cancel_order", "refund_payment", "succeeded"), 1.0);
    let step_time = value(
        &text,
        "order_saga_step_duration_seconds_count",
        &[
            ("saga", "cancel_order"),
            ("step", "refund_payment"),
            ("outcome", "succeeded"),
        ],
    );
    assert_eq!(step_time, 1.0);
    let compensations = |step| {
        value(
            &text,
            "order_saga_compensations_total",
            &[("saga", "cancel_order"), ("step", step)],
        )
    };
    assert_eq!(compensations("refund_payment"), 1.0, "{text}");
    assert_eq!(compensations("release_stock"), 1.0);

    // Requests by route template, never by raw path.
    let requests = |method, route, status| {
        value(
            &text,
            "http_requests_total",
            &[("method", method), ("route", route), ("status", status)],
        )
    };
    assert_eq!(requests("POST", "/api/v1/orders", "201"), 3.0, "{text}");
    assert_eq!(requests("POST", "/api/v1/orders/{id}/cancel", "200"), 1.0);
    assert!(
        !text.contains(paid["id"].as_str().unwrap()),
        "no label per order"
    );
    assert_eq!(gauge(&text, "order_stuck_orders"), 0.0);

    // A second scrape counts nothing new.
    let again = scrape(&app).await;
    assert_eq!(
        value(&again, "order_created_total", &[("status", "confirmed")]),
        1.0
    );
    assert_eq!(value(&again, "order_cancellations_total", &[]), 1.0);
}

#[tokio::test]
async fn made_up_methods_and_paths_do_not_mint_metric_series() {
    let app = TestApp::spawn().await;
    let root = app.api.trim_end_matches("/api/v1").to_owned();
    let series = |text: &str| samples(text, "http_requests_total").len();
    let before = scrape(&app).await;

    // Made-up methods on a route, on unknown paths, and on the metrics page itself.
    for i in 0..3000 {
        let method = reqwest::Method::from_bytes(format!("M{i}").as_bytes()).unwrap();
        let path = match i % 3 {
            0 => "/api/v1/orders/health".to_owned(),
            1 => format!("/made/up/{i}"),
            _ => "/metrics".to_owned(),
        };
        let status = app
            .http
            .request(method, format!("{root}{path}"))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_client_error(), "{i}: {status}");
    }

    let after = scrape(&app).await;
    let others: Vec<_> = samples(&after, "http_requests_total")
        .into_iter()
        .filter(|(labels, _)| labels["method"] == "other")
        .collect();
    let counted: f64 = others.iter().map(|(_, n)| n).sum();
    assert_eq!(counted, 3000.0, "every made-up method is `other`: {after}");
    assert!(
        series(&after) <= series(&before) + 6,
        "{} series before, {} after: {after}",
        series(&before),
        series(&after)
    );
    assert!(
        after.len() < before.len() + 16 * 1024,
        "/metrics grew from {} to {} bytes",
        before.len(),
        after.len()
    );
    for (labels, _) in samples(&after, "http_requests_total") {
        let route = &labels["route"];
        assert!(
            route == "unmatched" || !route.contains("/made/"),
            "a raw path as route: {route}"
        );
    }
}

#[tokio::test]
async fn every_metric_says_what_it_is() {
    // Arrange: an order created and cancelled, so that every family has samples.
    let app = TestApp::spawn().await;
    let (status, order) = app.create(&mug_order(Some("pm_card_visa"))).await;
    assert_eq!(status, 201, "{order}");
    let id = order["id"].as_str().unwrap();
    let (status, _, _) = app
        .post(&format!("/orders/{id}/cancel"), &json!({}), None)
        .await;
    assert_eq!(status, 200);
    app.get("/ops/orders/stuck").await;

    // Act
    let text = scrape(&app).await;

    // Assert: each family has a `# HELP` line, and the business ones are there.
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for name in [
        "order_created_total",
        "order_status_changes_total",
        "order_cancellations_total",
        "order_saga_step_attempts_total",
        "http_requests_total",
    ] {
        assert!(families.contains(&name), "{name} missing:\n{text}");
    }
    let helped = |name: &str| {
        text.lines()
            .any(|l| l.starts_with(&format!("# HELP {name} ")) && l.len() > name.len() + 10)
    };
    let missing: Vec<&&str> = families.iter().filter(|n| !helped(n)).collect();
    assert!(missing.is_empty(), "no # HELP for {missing:?}");
}
