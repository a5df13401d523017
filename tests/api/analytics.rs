//! `GET /orders/analytics`: orders made through the API counted by status, the
//! placed ones valued per currency to the cent, the window's bounds, and the
//! refusals of a bad window.

use crate::helpers::{assert_problem, delivered_order, mug_order, order_body, TestApp};
use chrono::{DateTime, Days, NaiveTime, SecondsFormat, TimeDelta, Utc};
use serde_json::{json, Value};

/// Creates the order `body`, which must rest in `status`.
async fn created(app: &TestApp, body: &Value, status: &str) -> Value {
    let (code, order) = app.create(body).await;
    assert_eq!(
        (code, order["status"].as_str()),
        (201, Some(status)),
        "{order}"
    );
    order
}

/// Cancels the order, which must answer `200` cancelled.
async fn cancel(app: &TestApp, order: &Value) -> Value {
    let path = format!("/orders/{}/cancel", order["id"].as_str().unwrap());
    let (status, cancelled, _) = app
        .post(&path, &json!({"reason": "changed my mind"}), None)
        .await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("cancelled")),
        "{cancelled}"
    );
    cancelled
}

async fn analytics(app: &TestApp, query: &str) -> Value {
    let (status, figures) = app.get(&format!("/orders/analytics{query}")).await;
    assert_eq!(status, 200, "{query}: {figures}");
    figures
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

/// A time as a query value.
fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn midnight(t: DateTime<Utc>) -> DateTime<Utc> {
    t.date_naive().and_time(NaiveTime::MIN).and_utc()
}

/// The figures without the window they are about.
fn figures_only(mut figures: Value) -> Value {
    let object = figures.as_object_mut().unwrap();
    object.remove("from");
    object.remove("to");
    figures
}

#[tokio::test]
async fn orders_are_counted_by_status_now_and_placed_ones_valued_per_currency() {
    let app = TestApp::spawn().await;
    // USD, placed: confirmed 103.10, cancelled 103.10 (refunded in full), confirmed
    // 10.00 (5.00 and 5.00 shipping) and delivered 103.10 with one mug refunded.
    created(&app, &mug_order(Some("pm_card_visa")), "confirmed").await;
    let placed = created(&app, &mug_order(Some("pm_card_visa")), "confirmed").await;
    assert_eq!(cancel(&app, &placed).await["refunded_amount"], "103.10");
    let ten = order_body(&[("SKU-TEN", 1, "5.00")], Some("pm_card_visa"));
    assert_eq!(
        created(&app, &ten, "confirmed").await["total_amount"],
        "10.00"
    );
    let delivered = delivered_order(&app, &mug_order(Some("pm_card_visa"))).await;
    let (status, refunded, _) = app
        .post(
            &format!("/orders/{}/refund-items", delivered["id"].as_str().unwrap()),
            &json!({"items": [{"item_id": delivered["items"][0]["id"], "quantity": 1}],
                    "reason": "dented"}),
            None,
        )
        .await;
    assert_eq!(
        (status, refunded["status"].as_str()),
        (200, Some("delivered")),
        "{refunded}"
    );
    assert_eq!(refunded["refunded_amount"], "49.05", "50.00 - 5.00 + 4.05");
    // USD, never placed: a draft, a draft cancelled, a declined payment.
    created(&app, &mug_order(None), "draft").await;
    let draft = created(&app, &mug_order(None), "draft").await;
    cancel(&app, &draft).await;
    created(&app, &mug_order(Some("pm_card_declined")), "failed").await;
    // EUR, placed.
    let mut euros = mug_order(Some("pm_card_visa"));
    euros["currency"] = json!("EUR");
    let euros = created(&app, &euros, "confirmed").await;

    let figures = analytics(&app, "").await;

    assert_eq!(figures["order_count"], 8, "{figures}");
    assert_eq!(
        figures["by_status"],
        json!({"draft": 1, "confirmed": 3, "processing": 0, "shipped": 0, "delivered": 1,
               "cancelled": 2, "refunded": 0, "failed": 1})
    );
    assert_eq!(
        figures["currencies"],
        json!([
            {"currency": "EUR", "order_count": 1, "total_value": "103.10",
             "average_value": "103.10", "refunded_total": "0.00"},
            // 319.30 / 4 = 79.825, half-even to 79.82.
            {"currency": "USD", "order_count": 4, "total_value": "319.30",
             "average_value": "79.82", "refunded_total": "152.15"},
        ])
    );
    // The cancelled draft was never placed: 1 of 5 placed orders was cancelled.
    assert_eq!(figures["cancellation_rate"], "0.2000");
    let (from, to) = (time(&figures["from"]), time(&figures["to"]));
    assert_eq!(to - from, TimeDelta::days(30), "{figures}");
    assert!(to > time(&euros["created_at"]), "{figures}");

    // A window of whole days, from yesterday to the end of tomorrow, counts the same.
    let today = midnight(Utc::now());
    let days = analytics(
        &app,
        &format!(
            "?from={}&to={}",
            rfc3339(today - Days::new(1)),
            rfc3339(today + Days::new(2))
        ),
    )
    .await;
    assert_eq!(figures_only(days), figures_only(figures));
}

#[tokio::test]
async fn the_window_takes_orders_from_from_and_before_to() {
    let app = TestApp::spawn().await;
    let first = created(&app, &mug_order(Some("pm_card_visa")), "confirmed").await;
    let second = created(&app, &mug_order(None), "draft").await;
    let (first_at, second_at) = (time(&first["created_at"]), time(&second["created_at"]));
    assert!(first_at < second_at);

    let only_first = analytics(
        &app,
        &format!("?from={}&to={}", rfc3339(first_at), rfc3339(second_at)),
    )
    .await;
    assert_eq!(only_first["order_count"], 1, "{only_first}");
    assert_eq!(only_first["by_status"]["confirmed"], 1);
    assert_eq!(only_first["currencies"][0]["order_count"], 1);
    assert_eq!(time(&only_first["from"]), first_at);
    assert_eq!(time(&only_first["to"]), second_at);

    let micro = TimeDelta::microseconds(1);
    let only_second = analytics(
        &app,
        &format!(
            "?from={}&to={}",
            rfc3339(second_at),
            rfc3339(second_at + micro)
        ),
    )
    .await;
    assert_eq!(only_second["order_count"], 1, "{only_second}");
    assert_eq!(only_second["by_status"]["draft"], 1);
    assert_eq!(only_second["currencies"], json!([]));

    let after = analytics(&app, &format!("?from={}", rfc3339(second_at + micro))).await;
    assert_eq!(after["order_count"], 0, "{after}");

    // A `to` in the past: the 30 days before it, and nothing in them.
    let past = analytics(&app, "?to=2020-01-01T00:00:00Z").await;
    assert_eq!(
        past,
        json!({
            "from": "2019-12-02T00:00:00Z", "to": "2020-01-01T00:00:00Z", "order_count": 0,
            "by_status": {"draft": 0, "confirmed": 0, "processing": 0, "shipped": 0,
                          "delivered": 0, "cancelled": 0, "refunded": 0, "failed": 0},
            "currencies": [], "cancellation_rate": "0.0000",
        })
    );
}

#[tokio::test]
async fn a_bad_window_is_refused_naming_the_parameter() {
    let app = TestApp::spawn().await;
    let refused = [
        ("from=yesterday", "from"),
        ("to=2026-13-01T00:00:00Z", "to"),
        ("from=2026-11-01", "from"),
        // `+` decodes to a space: an offset needs `%2B`.
        ("from=2026-11-01T00:00:00+01:00", "from"),
        ("from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z", "to"),
        ("from=2026-11-01T00:00:00Z&to=2026-11-01T00:00:00Z", "to"),
        ("from=2024-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", "to"),
        ("from=2000-01-01T00:00:00Z", "from"),
        ("from=2999-01-01T00:00:00Z", "from"),
        (
            "from=2026-11-01T00:00:00Z&from=2026-11-02T00:00:00Z",
            "from",
        ),
    ];
    for (query, field) in refused {
        let path = format!("/orders/analytics?{query}");
        let answer = app.send_raw(reqwest::Method::GET, &path, &[], vec![]).await;
        assert_problem(&answer, 422, "validation_failed");
        assert_eq!(
            answer.1["errors"][0]["field"], field,
            "{query}: {}",
            answer.1
        );
    }

    let offset = analytics(
        &app,
        "?from=2026-11-01T00:00:00%2B01:00&to=2026-11-02T00:00:00Z",
    )
    .await;
    assert_eq!(offset["from"], "2026-10-31T23:00:00Z");
    let unknown = analytics(&app, "?colour=blue&limit=5").await;
    assert_eq!(unknown["order_count"], 0, "an unknown parameter is ignored");
}

#[tokio::test]
async fn analytics_is_not_taken_for_an_order_id() {
    let app = TestApp::spawn().await;
    let (status, figures) = app.get("/orders/analytics").await;
    assert_eq!(status, 200, "{figures}");
    assert_eq!(figures["cancellation_rate"], "0.0000", "{figures}");
    for path in ["/orders/analytic", "/orders/analytics/status-history"] {
        let answer = app.send_raw(reqwest::Method::GET, path, &[], vec![]).await;
        assert_problem(&answer, 404, "order_not_found");
    }
}
