//! Change requests (api-changes.md §5, rule 19): one side of the order asks, the
//! other accepts (the change runs as `apply_change`) or declines, the side that
//! asked withdraws, and an open request expires on its own.

use crate::authorization::{customer, secured, staff};
use crate::changes::{add_item, confirmed, id, set_quantity, VISA};
use crate::helpers::{assert_problem, order_body, OrderLedger, TestApp};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use uuid::Uuid;

fn requests_of(order_id: &str) -> String {
    format!("/orders/{order_id}/change-requests")
}

#[tokio::test]
async fn a_customer_asks_and_the_shop_accepts_the_change_it_previewed() {
    let app = secured().await;
    let me = Uuid::new_v4();
    let mut body = order_body(&[("SKU-MUG", 1, "10.00")], VISA);
    body["customer_id"] = json!(me);
    let (status, order, _) = app.as_caller(staff()).post("/orders", &body, None).await;
    assert_eq!(status, 201, "{order}");
    let order_id = id(&order);
    let mine = app.as_caller(customer(me));
    let ask = json!({"operations": [add_item("SKU-SAUCER", 2, "3.00")],
                     "message": "please add two saucers", "requested_by": "merchant"});

    // Rule 19: a customer's own request is 201; the token says who asked.
    let (status, request, headers) = mine.post(&requests_of(&order_id), &ask, None).await;

    assert_eq!(status, 201, "{request}");
    assert_eq!(
        (request["status"].as_str(), request["requested_by"].as_str()),
        (Some("open"), Some("customer"))
    );
    assert_eq!(request["preview"]["settlement"]["delta"], "6.00");
    assert_eq!(request["order_version"], order["version"]);
    let request_id = request["request_id"].as_str().unwrap().to_owned();
    let one = format!("{}/{request_id}", requests_of(&order_id));
    assert_eq!(headers["location"], format!("/api/v1{one}").as_str());
    // Nothing held, nothing charged, the order as it was.
    let of = OrderLedger::of(&app.ledger(), &order_id);
    assert_eq!((of.reservations.len(), of.captures.len()), (1, 1));
    let stranger = app.as_caller(customer(Uuid::new_v4()));
    assert_problem(&stranger.get(&one).await, 404, "order_not_found");

    // The side that asked does not accept; the other side does not withdraw.
    let accept = format!("{one}/accept");
    assert_problem(
        &mine.post(&accept, &json!({}), None).await,
        403,
        "forbidden",
    );
    let shop = app.as_caller(staff());
    assert_problem(
        &shop
            .post(&format!("{one}/withdraw"), &json!({}), None)
            .await,
        403,
        "forbidden",
    );

    let (status, change, headers) = shop.post(&accept, &json!({}), None).await;

    assert_eq!(
        (status, change["status"].as_str()),
        (201, Some("applied")),
        "{change}"
    );
    assert_eq!(change["request_id"], request_id.as_str());
    assert_eq!(change["settlement"]["charges"][0]["amount"], "6.00");
    let change_id = change["change_id"].as_str().unwrap();
    assert_eq!(
        headers["location"],
        format!("/api/v1/orders/{order_id}/changes/{change_id}").as_str()
    );
    let (_, request) = (mine.get(&one).await.0, mine.get(&one).await.1);
    assert_eq!(request["status"], "accepted", "{request}");
    assert_eq!(request["change_id"], change_id);
    assert_eq!(request["decided_by"]["role"], "staff");
    assert!(request["decided_at"].is_string());
    let answer = shop.post(&accept, &json!({}), Some("accept-again")).await;
    assert_problem(&answer, 409, "invalid_transition");
    let of = OrderLedger::of(&app.settled_ledger().await, &order_id);
    assert_eq!(of.count_topic("order.change_requested"), 1);
    assert_eq!(of.count_topic("order.changed"), 1);
}

#[tokio::test]
async fn a_proposal_is_declined_with_a_reason_withdrawn_by_its_side_or_left_to_expire() {
    let app = TestApp::spawn().await;
    let order = confirmed(&app, &order_body(&[("SKU-MUG", 1, "10.00")], VISA)).await;
    let order_id = id(&order);
    let item = &order["items"][0]["id"];
    let propose = |expires: u32| {
        json!({"operations": [set_quantity(item, 2)], "message": "a second mug at half price?",
               "expires_in_seconds": expires})
    };
    let made = |answer: (u16, Value, reqwest::header::HeaderMap)| {
        assert_eq!(answer.0, 201, "{}", answer.1);
        assert_eq!(answer.1["requested_by"], "merchant", "{}", answer.1);
        answer.1["request_id"].as_str().unwrap().to_owned()
    };
    let path = requests_of(&order_id);

    // Declined: a reason is required; then it stays declined.
    let declined = made(app.post(&path, &propose(3600), None).await);
    let decline = format!("{path}/{declined}/decline");
    let answer = app.post(&decline, &json!({}), None).await;
    assert_problem(&answer, 422, "validation_failed");
    let (status, request, _) = app
        .post(&decline, &json!({"reason": "one mug is enough"}), None)
        .await;
    assert_eq!(
        (status, request["status"].as_str()),
        (200, Some("declined")),
        "{request}"
    );
    assert_eq!(request["decline_reason"], "one mug is enough");
    let accept = format!("{path}/{declined}/accept");
    assert_problem(
        &app.post(&accept, &json!({}), None).await,
        409,
        "invalid_transition",
    );

    // Withdrawn by the side that asked.
    let withdrawn = made(app.post(&path, &propose(3600), None).await);
    let (status, request, _) = app
        .post(&format!("{path}/{withdrawn}/withdraw"), &json!({}), None)
        .await;
    assert_eq!(
        (status, request["status"].as_str()),
        (200, Some("withdrawn")),
        "{request}"
    );

    // Left open: its timer expires it, and it can no longer be accepted.
    let expiring = made(app.post(&path, &propose(1), None).await);
    let one = format!("{path}/{expiring}");
    let start = Instant::now();
    loop {
        let (_, request) = app.get(&one).await;
        if request["status"] == "expired" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{request}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let answer = app.post(&format!("{one}/accept"), &json!({}), None).await;
    assert_problem(&answer, 410, "request_expired");

    let (status, list) = app.get(&path).await;
    assert_eq!(status, 200);
    let statuses: Vec<&str> = list["change_requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["declined", "withdrawn", "expired"]);
    let (_, now) = app.get(&format!("/orders/{order_id}")).await;
    assert_eq!(now["version"], order["version"]);
    let of = OrderLedger::of(&app.settled_ledger().await, &order_id);
    assert_eq!(of.count_template("change_proposed"), 3);
    assert_eq!(of.count_topic("order.change_request_declined"), 1);
    assert_eq!(of.count_template("change_request_expired"), 1);
    let text = crate::metrics::scrape(&app).await;
    for outcome in ["declined", "withdrawn", "expired"] {
        let labels = [("requested_by", "merchant"), ("outcome", outcome)];
        assert_eq!(
            crate::metrics::value(&text, "order_change_requests_total", &labels),
            1.0,
            "{outcome}"
        );
    }
}

#[tokio::test]
async fn a_request_whose_terms_moved_is_superseded_with_its_new_preview() {
    let app = TestApp::spawn().await;
    let order = confirmed(&app, &order_body(&[("SKU-MUG", 2, "10.00")], VISA)).await;
    let order_id = id(&order);
    let item = &order["items"][0]["id"];
    let path = requests_of(&order_id);
    let (status, request, _) = app
        .post(&path, &json!({"operations": [set_quantity(item, 3)]}), None)
        .await;
    assert_eq!(status, 201, "{request}");
    assert_eq!(request["preview"]["settlement"]["delta"], "10.00");
    let request_id = request["request_id"].as_str().unwrap();

    // Another change meanwhile made it 4: 3 now gives a unit back.
    let (status, change, _) = crate::changes::apply(
        &app,
        &order_id,
        &json!({"operations": [set_quantity(item, 4)]}),
        Some(&order["version"].to_string()),
        None,
    )
    .await;
    assert_eq!((status, change["status"].as_str()), (201, Some("applied")));
    let accept = format!("{path}/{request_id}/accept");
    let answer = app.post(&accept, &json!({}), None).await;

    assert_problem(&answer, 409, "quote_superseded");
    assert_eq!(answer.1["preview"]["settlement"]["delta"], "-10.00");
    let (_, request) = app.get(&format!("{path}/{request_id}")).await;
    assert_eq!(request["status"], "open");
    let (_, now) = app.get(&format!("/orders/{order_id}")).await;
    assert_eq!(now["items"][0]["quantity"], 4);

    // A stale If-Match is a conflict, as for any change.
    let answer = app
        .http
        .post(format!("{}{accept}", app.api))
        .header("If-Match", order["version"].to_string())
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let answer = crate::helpers::read(answer).await;
    assert_problem(&answer, 409, "version_conflict");
}
