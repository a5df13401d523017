//! Traces: one trace from the API request through the saga's steps to each
//! downstream call, exported over OTLP to a collector the test runs.

use crate::helpers::{mug_order, Options, TestApp};
use axum::body::Bytes;
use axum::routing::post;
use axum::Router;
use order_stack::process::free_port;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An OTLP/HTTP (JSON) trace collector that keeps every span it receives.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Value>>>,
}

impl Collector {
    async fn start() -> (Collector, String) {
        let collector = Collector::default();
        let kept = collector.clone();
        let app = Router::new().route(
            "/v1/traces",
            post(move |body: Bytes| {
                let kept = kept.clone();
                async move {
                    let export: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let mut spans = kept.spans.lock().unwrap();
                    for resource in export["resourceSpans"].as_array().into_iter().flatten() {
                        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                            spans.extend(scope["spans"].as_array().into_iter().flatten().cloned());
                        }
                    }
                    axum::Json(json!({}))
                }
            }),
        );
        let port = free_port().unwrap();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (collector, format!("http://127.0.0.1:{port}"))
    }

    /// The spans of `trace_id` once every name of `names` is among them.
    async fn wait_for(&self, trace_id: &str, names: &[&str]) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let spans: Vec<Value> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|s| {
                    s["traceId"]
                        .as_str()
                        .is_some_and(|t| t.eq_ignore_ascii_case(trace_id))
                })
                .cloned()
                .collect();
            if names.iter().all(|n| spans.iter().any(|s| s["name"] == *n)) {
                return spans;
            }
            let seen: Vec<&str> = spans.iter().filter_map(|s| s["name"].as_str()).collect();
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "spans of {trace_id} never showed {names:?}; seen {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// True when `span`'s parents, followed within `spans`, lead to `ancestor`.
fn descends_from(spans: &[Value], span: &Value, ancestor: &Value) -> bool {
    let mut current = span;
    for _ in 0..spans.len() {
        if current["parentSpanId"] == ancestor["spanId"] {
            return true;
        }
        match spans
            .iter()
            .find(|s| s["spanId"] == current["parentSpanId"])
        {
            Some(parent) => current = parent,
            None => return false,
        }
    }
    false
}

fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

#[tokio::test]
async fn one_trace_runs_from_the_request_through_the_saga_to_each_downstream_call() {
    let (collector, url) = Collector::start().await;
    let app = TestApp::spawn_with(Options {
        env: vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", url),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".into()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ],
        ..Default::default()
    })
    .await;
    // One passing failure, so that a log line is written inside the saga.
    app.inject(json!({"service": "payment", "operation": "charge", "status": 503, "times": 1}));
    let (trace_id, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let response = app
        .http
        .post(format!("{}/orders", app.api))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&mug_order(Some("pm_card_visa")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["status"], "confirmed");

    // Each downstream call of the saga carries the trace.
    let ledger = app.ledger();
    let saga_calls: Vec<_> = ledger
        .calls
        .iter()
        .filter(|c| ["warehouse", "payment", "fulfillment"].contains(&c.service.as_str()))
        .collect();
    assert_eq!(
        saga_calls.len(),
        5,
        "reserve, charge twice, commit, fulfil: {saga_calls:#?}"
    );
    for call in &saga_calls {
        let header = call.traceparent.as_deref().unwrap_or("");
        assert!(
            header.starts_with(&format!("00-{trace_id}-")),
            "{} {} carries {header:?}",
            call.service,
            call.operation
        );
    }

    // The exported spans: the request, the saga, and its steps, linked.
    let steps = [
        "reserve_stock",
        "charge_payment",
        "commit_stock",
        "create_fulfillment",
    ];
    let mut wanted = vec!["POST /api/v1/orders", "create", "update_read_model"];
    wanted.extend(steps);
    let spans = collector.wait_for(trace_id, &wanted).await;
    let request = named(&spans, "POST /api/v1/orders")[0];
    assert_eq!(
        request["parentSpanId"], caller_span,
        "the caller's span is the parent"
    );
    // The saga ran twice (the charge failed once): each run continues the request.
    let runs = named(&spans, "create");
    assert_eq!(runs.len(), 2, "{spans:#?}");
    for run in &runs {
        assert!(
            descends_from(&spans, run, request),
            "{run} continues the request"
        );
    }
    let run_ids: Vec<&Value> = runs.iter().map(|r| &r["spanId"]).collect();
    for step in steps.iter().chain(&["update_read_model"]) {
        for span in named(&spans, step) {
            assert!(
                run_ids.contains(&&span["parentSpanId"]),
                "{step} is a step of the saga"
            );
        }
    }
    assert_eq!(
        named(&spans, "charge_payment").len(),
        2,
        "the failed attempt and the retry"
    );
    // The downstream calls name the steps' spans as their parents.
    let step_ids: Vec<&str> = spans
        .iter()
        .filter(|s| steps.contains(&s["name"].as_str().unwrap_or("")))
        .filter_map(|s| s["spanId"].as_str())
        .collect();
    for call in &saga_calls {
        let parent = call
            .traceparent
            .as_deref()
            .unwrap()
            .split('-')
            .nth(2)
            .unwrap();
        assert!(
            step_ids.contains(&parent),
            "{} is called from a step span",
            call.operation
        );
    }

    // Log lines written inside the saga name the trace.
    let log = app.service_log();
    let retried = log
        .lines()
        .find(|l| l.contains("step failed, will retry"))
        .unwrap_or_else(|| panic!("the retry is logged: {log}"));
    assert!(retried.contains(trace_id), "{retried}");
}
