//! Configuration that shapes a commit is read once per saga: a saga replayed by a
//! service started with other settings keeps the values its first run read (the
//! draft's payment window, a return's window and parcel wait).

use crate::helpers::{delivered_order, mug_order, TestApp};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

/// Sends `body` to `path` with `key` in the background, once.
fn send_once(app: &TestApp, path: &str, body: Value, key: &str) {
    let (client, url, key) = (
        app.http.clone(),
        format!("{}{path}", app.api),
        key.to_owned(),
    );
    tokio::spawn(async move {
        client
            .post(url)
            .header("idempotency-key", key)
            .json(&body)
            .send()
            .await
    });
}

/// Sends `body` to `path` with `key` until the answer is final (not 202 or 503).
async fn final_answer(app: &TestApp, path: &str, body: &Value, key: &str) -> (u16, Value) {
    let started = Instant::now();
    loop {
        let (status, answer, _) = app.post(path, body, Some(key)).await;
        if status != 202 && status != 503 {
            return (status, answer);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{path} never got a final answer"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_draft_replayed_under_another_payment_window_keeps_the_first() {
    let mut app = TestApp::spawn().await;
    app.set_service_env("ORDER_AUTO_CANCEL_DRAFT_HOURS", "0.1".into());
    app.kill_service().await;
    app.start_service().await;
    // The create waits inside its reservation, after the draft was first written.
    app.inject(
        json!({"service": "warehouse", "operation": "reserve", "delay_ms": 2000, "times": 1}),
    );
    let body = mug_order(None);
    send_once(&app, "/orders", body.clone(), "draft");
    let started = Instant::now();
    while !app.sim.sim.delaying("reserve") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never reserved"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    app.kill_service().await;
    app.set_service_env("ORDER_AUTO_CANCEL_DRAFT_HOURS", "0.2".into());
    app.start_service().await;
    let (status, draft) = final_answer(&app, "/orders", &body, "draft").await;

    assert_eq!(
        (status, draft["status"].as_str()),
        (201, Some("draft")),
        "{draft}"
    );
    let window = time(&draft["expires_at"]) - time(&draft["created_at"]);
    assert_eq!(window.num_minutes(), 6, "the first run's 0.1 h: {draft}");
}

#[tokio::test]
async fn a_return_replayed_under_other_return_settings_keeps_the_first() {
    let mut app = TestApp::spawn().await;
    let order = delivered_order(&app, &mug_order(Some("pm_card_visa"))).await;
    let id = order["id"].as_str().unwrap().to_owned();
    // The return's write waits on a lock the test holds, after the saga read its
    // settings and its clock.
    let mut lock = app.db.begin().await.unwrap();
    sqlx::query(&format!(
        "SELECT 1 FROM orders WHERE id = '{id}' FOR UPDATE"
    ))
    .execute(&mut *lock)
    .await
    .unwrap();
    let path = format!("/orders/{id}/returns");
    let body = json!({"items": [{"item_id": 1, "quantity": 1}]});
    send_once(&app, &path, body.clone(), "return");
    let waiting = "SELECT pid FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
                   WHERE NOT l.granted AND a.datname = current_database()";
    let started = Instant::now();
    let pids: Vec<i32> = loop {
        let pids: Vec<i32> = sqlx::query_scalar(waiting)
            .fetch_all(&app.db)
            .await
            .unwrap();
        if !pids.is_empty() {
            break pids;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the write never waited"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    app.kill_service().await;
    // The killed process's write must not land once the lock goes.
    for pid in pids {
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(&app.db)
            .await
            .unwrap();
    }
    lock.rollback().await.unwrap();
    // A window that has closed since, and a shorter wait for the parcel.
    app.set_service_env("ORDER_RETURN_WINDOW_DAYS", "0.0000001".into());
    app.set_service_env("ORDER_RETURN_PARCEL_DAYS", "2".into());
    app.start_service().await;
    let (status, requested) = final_answer(&app, &path, &body, "return").await;

    assert_eq!(status, 201, "judged by the first run's window: {requested}");
    let waits = time(&requested["expires_at"]) - time(&requested["requested_at"]);
    assert_eq!(
        waits.num_days(),
        14,
        "the first run's parcel wait: {requested}"
    );
}
