//! The trust boundaries: Restate's ingress and the service's Restate endpoint are
//! not doors to the sagas. A call that does not come through the API moves no
//! money or stock and reads nothing.

use crate::helpers::{delivered_order, mug_order, TestApp};
use serde_json::{json, Value};

/// What a forged call could have moved: refunds, releases, restocks, captures and
/// fulfilment cancellations in the simulator's ledger.
fn moved(app: &TestApp) -> Value {
    let ledger = app.ledger();
    json!({
        "refunds": ledger.refunds.len(),
        "releases": ledger.releases.len(),
        "restocks": ledger.restocks.len(),
        "captures": ledger.captures.len(),
        "cancelled": ledger.fulfillments.iter().map(|f| f.cancelled.len()).sum::<usize>(),
    })
}

/// Calls `handler` of order `id` on Restate's ingress directly, as anyone who
/// reaches its port could, with `headers`; the status and body of the answer.
async fn at_ingress(
    app: &TestApp,
    id: &str,
    handler: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let url = format!(
        "http://127.0.0.1:{}/restate/call/Order/{id}/{handler}",
        app.restate_ingress_port()
    );
    let mut request = app.http.post(url);
    if let Some(body) = body {
        request = request.json(body);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let answer = request.send().await.expect("the ingress answers");
    (answer.status().as_u16(), answer.text().await.unwrap())
}

#[tokio::test]
async fn calls_at_restate_ingress_without_the_api_are_refused_and_move_nothing() {
    // Arrange: a confirmed order (stock held, paid, fulfilment made) and a delivered one.
    let app = TestApp::spawn().await;
    let (status, confirmed) = app.create(&mug_order(Some("pm_card_visa"))).await;
    assert_eq!(status, 201, "{confirmed}");
    let delivered = delivered_order(&app, &mug_order(Some("pm_card_visa"))).await;
    let confirmed_id = confirmed["id"].as_str().unwrap();
    let delivered_id = delivered["id"].as_str().unwrap();
    let before = moved(&app);
    let one_unit = json!({"items": [{"item_id": 1, "quantity": 1}], "reason": "forged"});
    let every_unit = json!({"items": [], "reason": "forged"});

    // Act: the calls the issue reproduced, without and with a made-up assertion.
    let forged = [
        ("x-order-request", "forged-1"),
        (
            "x-order-caller",
            "v1.0.00000000000000000000000000000000000000000000000000000000000000",
        ),
    ];
    let mut answers = Vec::new();
    for headers in [&[][..], &forged[..]] {
        for (id, handler, body) in [
            (delivered_id, "refund_items", Some(&one_unit)),
            (confirmed_id, "cancel_items", Some(&every_unit)),
            (confirmed_id, "cancel_items", Some(&one_unit)),
            (confirmed_id, "cancel", Some(&json!({"reason": "forged"}))),
            (delivered_id, "get", None),
            (confirmed_id, "get", None),
        ] {
            let (status, text) = at_ingress(&app, id, handler, body, headers).await;
            answers.push((handler, headers.len(), status, text));
        }
    }

    // Assert: each is refused with 401 and reads nothing of the order.
    for (handler, headers, status, text) in &answers {
        assert_eq!(*status, 401, "{handler} with {headers} headers: {text}");
        assert!(!text.contains("shipping_address"), "{handler}: {text}");
        assert!(!text.contains("captured_amount"), "{handler}: {text}");
    }
    assert_eq!(moved(&app), before, "a forged call moved money or stock");
    for (id, was) in [(confirmed_id, &confirmed), (delivered_id, &delivered)] {
        let (_, now) = app.get(&format!("/orders/{id}")).await;
        assert_eq!(now["version"], was["version"], "{now}");
        assert_eq!(now["status"], was["status"], "{now}");
        assert_eq!(now["refunded_amount"], "0.00", "{now}");
        let (_, edits) = app.get(&format!("/orders/{id}/edit-history")).await;
        assert_eq!(edits, json!([]), "{id}");
    }
}

#[tokio::test]
async fn a_signed_call_is_refused_for_another_handler_order_or_body() {
    let app = TestApp::spawn().await;
    let first = delivered_order(&app, &mug_order(Some("pm_card_visa"))).await;
    let second = delivered_order(&app, &mug_order(Some("pm_card_visa"))).await;
    let (first_id, second_id) = (
        first["id"].as_str().unwrap(),
        second["id"].as_str().unwrap(),
    );
    let before = moved(&app);

    // The API's own call of refund_items on the first order, as it went over the
    // wire, taken by someone who reaches the ingress and sent elsewhere.
    let key = app.secrets_internal_key();
    let body = json!({"items": [{"item_id": 1, "quantity": 1}], "reason": null});
    let bytes = serde_json::to_vec(&body).unwrap();
    let digest = order_service::caller::digest(&bytes);
    let call = order_service::caller::Call {
        handler: "refund_items",
        key: first_id,
        request: "refund_items:taken",
        digest: &digest,
    };
    let assertion = key.sign(call, None);
    let headers = [
        ("x-order-request", "refund_items:taken"),
        ("x-order-caller", assertion.as_str()),
    ];
    let two_units = json!({"items": [{"item_id": 1, "quantity": 2}], "reason": null});
    for (id, handler, body) in [
        (second_id, "refund_items", &body),
        (first_id, "refund_items", &two_units),
        (first_id, "cancel_items", &body),
    ] {
        let (status, text) = at_ingress(&app, id, handler, Some(body), &headers).await;
        assert_eq!(status, 401, "{handler} on {id}: {text}");
    }
    assert_eq!(moved(&app), before);
    let (_, still) = app.get(&format!("/orders/{second_id}")).await;
    assert_eq!(still["refunded_amount"], "0.00", "{still}");
}

#[tokio::test]
async fn the_restate_endpoint_refuses_unsigned_requests_discovery_included() {
    let app = TestApp::spawn().await;
    let port = app
        .service_env()
        .into_iter()
        .find(|(k, _)| k == "ORDER_RESTATE_ENDPOINT_PORT")
        .map(|(_, v)| v)
        .unwrap();
    // The endpoint speaks HTTP/2 without TLS, as restate-server does.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let id = uuid::Uuid::new_v4();
    let before = moved(&app);

    let discover = h2
        .get(format!("http://127.0.0.1:{port}/discover"))
        .header("accept", "application/vnd.restate.endpointmanifest.v4+json")
        .send()
        .await
        .unwrap();
    let invoke = h2
        .post(format!("http://127.0.0.1:{port}/invoke/Order/create"))
        .header("content-type", "application/vnd.restate.invocation.v5")
        .body(Vec::<u8>::new())
        .send()
        .await
        .unwrap();

    assert_eq!(discover.status().as_u16(), 401);
    assert_eq!(invoke.status().as_u16(), 401);
    assert_eq!(moved(&app), before);
    let (status, _) = app.get(&format!("/orders/{id}")).await;
    assert_eq!(status, 404);
    // And the API's own calls, signed by restate-server, still run.
    let (status, order) = app.create(&mug_order(Some("pm_card_visa"))).await;
    assert_eq!((status, order["status"].as_str()), (201, Some("confirmed")));
}

/// Starts `serve` with the test app's environment but for `without`, plus `with`;
/// what it printed on stderr, and whether it got as far as its ready line.
async fn serve_with(app: &TestApp, without: &str, with: &[(&str, &str)]) -> (String, bool) {
    let env: Vec<(String, String)> = app
        .service_env()
        .into_iter()
        .filter(|(k, _)| k != without)
        .collect();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_order-service"))
        .arg("serve")
        .env_clear()
        .envs(env)
        .envs(with.iter().copied())
        .env("ORDER_RESTATE_FORCE_REGISTER", "true")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let ready =
        order_stack::process::wait_ready(&mut child, std::time::Duration::from_secs(30)).await;
    let _ = child.start_kill();
    let out = child.wait_with_output().await.unwrap();
    (String::from_utf8_lossy(&out.stderr).into_owned(), ready)
}

#[tokio::test]
async fn serve_refuses_to_start_open_unless_told_so_on_purpose() {
    let mut app = TestApp::spawn().await;
    app.kill_service().await;

    let (no_identity, started) = serve_with(&app, "ORDER_RESTATE_IDENTITY_KEYS", &[]).await;
    assert!(
        !started,
        "served unsigned requests by default: {no_identity}"
    );
    assert!(
        no_identity.contains("ORDER_RESTATE_IDENTITY_KEYS")
            && no_identity.contains("ORDER_RESTATE_ALLOW_UNSIGNED"),
        "{no_identity}"
    );

    let (no_key, started) = serve_with(&app, "ORDER_INTERNAL_KEY", &[]).await;
    assert!(!started, "started without the caller key: {no_key}");
    assert!(no_key.contains("ORDER_INTERNAL_KEY"), "{no_key}");

    let (opted_out, started) = serve_with(
        &app,
        "ORDER_RESTATE_IDENTITY_KEYS",
        &[("ORDER_RESTATE_ALLOW_UNSIGNED", "true")],
    )
    .await;
    assert!(started, "{opted_out}");
    assert!(opted_out.contains("UNSIGNED"), "no warning: {opted_out}");
}
