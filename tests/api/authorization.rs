//! Authorization with bearer JWTs: who may call the API, which orders each caller
//! sees, and what each role may do; a refused call changes nothing.

use crate::helpers::{
    assert_problem, mug_order, order_body, Answer, AsCaller, Options, OrderLedger, TestApp,
};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

const SECRET: &str = "an end-to-end test secret of 32 bytes or more";
const VISA: Option<&str> = Some("pm_card_visa");

fn fixture(name: &str) -> String {
    format!("{}/tests/api/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims of `sub` valid for ten minutes, with `extra` on top.
fn claims(sub: &str, extra: Value) -> Value {
    json!({ "sub": sub, "exp": now() + 600 }).merge(extra)
}

/// JSON objects merged: `extra`'s members on top of `self`'s.
trait Merge {
    fn merge(self, extra: Value) -> Value;
}

impl Merge for Value {
    fn merge(mut self, extra: Value) -> Value {
        let extra = extra.as_object().expect("an object").clone();
        self.as_object_mut().expect("an object").extend(extra);
        self
    }
}

fn hs256(claims: &Value) -> String {
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
}

/// A customer's token: no `roles` claim at all.
pub(crate) fn customer(id: Uuid) -> String {
    hs256(&claims(&id.to_string(), json!({})))
}

fn with_roles(sub: &str, roles: &[&str]) -> String {
    hs256(&claims(sub, json!({ "roles": roles })))
}

pub(crate) fn staff() -> String {
    with_roles("staff-1", &["staff"])
}

pub(crate) fn service() -> String {
    with_roles("billing", &["service"])
}

fn operator() -> String {
    with_roles("operator-1", &["operator"])
}

/// The service with authorization on, HS256 with [`SECRET`], and `env` besides.
async fn secured_with(mut env: Vec<(&'static str, String)>) -> TestApp {
    env.push(("ORDER_AUTH_JWT_SECRET", SECRET.into()));
    TestApp::spawn_with(Options {
        env,
        ..Default::default()
    })
    .await
}

pub(crate) async fn secured() -> TestApp {
    secured_with(Vec::new()).await
}

/// The seed's mug order (2 units) of `customer`, paid when `method` is given.
fn order_for(customer: Option<Uuid>, method: Option<&str>) -> Value {
    let mut body = mug_order(method);
    body["customer_id"] = json!(customer);
    body
}

fn id_of(order: &Value) -> String {
    order["id"].as_str().expect("an order id").to_owned()
}

fn ids(page: &Value) -> Vec<String> {
    let orders = page["orders"].as_array().expect("a page of orders");
    orders.iter().map(id_of).collect()
}

/// Creates `body` as `caller`; the order, answered `201`.
async fn created(caller: &AsCaller<'_>, body: &Value) -> Value {
    let (status, order, _) = caller.post("/orders", body, None).await;
    assert_eq!(status, 201, "{order}");
    order
}

/// Moves order `id` through `statuses` as `caller`, each answered `200`.
async fn advance_as(caller: &AsCaller<'_>, id: &str, statuses: &[&str]) {
    for to in statuses {
        let path = format!("/orders/{id}/status");
        let (status, moved, _) = caller.put(&path, &json!({ "status": to }), None).await;
        assert_eq!(
            (status, moved["status"].as_str()),
            (200, Some(*to)),
            "{moved}"
        );
    }
}

fn assert_unauthenticated(answer: &Answer, challenge: &str) {
    assert_problem(answer, 401, "unauthenticated");
    assert_eq!(answer.2["www-authenticate"], challenge, "{}", answer.1);
}

fn assert_forbidden(answer: &Answer) {
    assert_problem(answer, 403, "forbidden");
}

/// Every route of `/api/v1` but health, with a body for those that take one.
fn every_route(id: Uuid) -> Vec<(Method, String, Value)> {
    let items = json!({"items": [{"item_id": 1, "quantity": 1}]});
    let (get, post, put) = (Method::GET, Method::POST, Method::PUT);
    let order = format!("/orders/{id}");
    let ret = format!("{order}/returns/{}", Uuid::new_v4());
    vec![
        (post.clone(), "/orders".into(), order_for(Some(id), VISA)),
        (get.clone(), "/orders".into(), json!(null)),
        (get.clone(), order.clone(), json!(null)),
        (
            get.clone(),
            "/orders/by-number/ORD-20260101-000001".into(),
            json!(null),
        ),
        (
            post.clone(),
            format!("{order}/payments"),
            json!({"method": "pm_card_visa"}),
        ),
        (
            put,
            format!("{order}/status"),
            json!({"status": "processing"}),
        ),
        (get.clone(), format!("{order}/status-history"), json!(null)),
        (get.clone(), format!("{order}/edit-history"), json!(null)),
        (post.clone(), format!("{order}/cancel"), json!({})),
        (post.clone(), format!("{order}/cancel-items"), items.clone()),
        (post.clone(), format!("{order}/returns"), items.clone()),
        (get.clone(), format!("{order}/returns"), json!(null)),
        (post.clone(), format!("{ret}/receive"), json!({})),
        (post.clone(), format!("{ret}/reject"), json!({})),
        (post.clone(), format!("{order}/refund-items"), items),
        (get.clone(), "/ops/orders/stuck".into(), json!(null)),
        (post.clone(), "/ops/orders/retry".into(), json!(null)),
        (get.clone(), format!("/ops{order}/timeline"), json!(null)),
        (post.clone(), format!("/ops{order}/retry"), json!(null)),
        (post, format!("/ops{order}/resolve"), json!({"reason": "x"})),
        (get.clone(), "/orders/analytics".into(), json!(null)),
        // Not served, yet not open either.
        (get, "".into(), json!(null)),
    ]
}

#[tokio::test]
async fn without_a_token_every_api_call_is_401_but_health_the_console_and_metrics() {
    let app = secured().await;

    for (method, path, body) in every_route(Uuid::new_v4()) {
        let body = match body {
            Value::Null => Vec::new(),
            body => serde_json::to_vec(&body).unwrap(),
        };
        let json = [("content-type", b"application/json".as_slice())];
        let answer = app.send_raw(method.clone(), &path, &json, body).await;
        assert_unauthenticated(&answer, "Bearer");
        assert_eq!(
            answer.1["detail"], "this call needs a token: send Authorization: Bearer <JWT>",
            "{method} {path}"
        );
    }
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 0);

    assert_eq!(
        app.get("/orders/health").await,
        (200, json!({"status": "ok"}))
    );
    let (status, health) = app.get("/orders/health/dependencies").await;
    assert_eq!(status, 200, "{health}");
    let (status, document) = app.get("/openapi.json").await;
    assert_eq!((status, document["openapi"].as_str()), (200, Some("3.1.0")));

    let root = app.api.trim_end_matches("/api/v1");
    for (path, kind) in [("/ops", "text/html"), ("/metrics", "text/plain")] {
        let response = app.http.get(format!("{root}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
    }
}

#[tokio::test]
async fn forged_expired_and_malformed_tokens_are_401() {
    let app = secured().await;
    assert_eq!(app.as_caller(staff()).get("/orders").await.0, 200);

    let staff_claims = |extra: Value| claims("staff-1", json!({"roles": ["staff"]})).merge(extra);
    let other_key = EncodingKey::from_secret(b"another secret, also of 32 bytes or more");
    let rsa_key =
        EncodingKey::from_rsa_pem(&std::fs::read(fixture("rs256-private.pem")).unwrap()).unwrap();
    // A customer's token whose payload was swapped for a staff one.
    let customer_token = customer(Uuid::new_v4());
    let staff_payload = staff().split('.').nth(1).unwrap().to_owned();
    let parts: Vec<&str> = customer_token.split('.').collect();
    let tampered = format!("{}.{staff_payload}.{}", parts[0], parts[2]);
    // `{"alg":"none","typ":"JWT"}`, and no signature.
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{staff_payload}.");
    let refused = [
        (
            encode(&Header::default(), &staff_claims(json!({})), &other_key).unwrap(),
            "the token's signature does not verify",
        ),
        (tampered, "the token's signature does not verify"),
        (
            hs256(&staff_claims(json!({"exp": now() - 3600}))),
            "the token has expired",
        ),
        (
            hs256(&staff_claims(json!({"nbf": now() + 3600}))),
            "the token is not valid yet (nbf)",
        ),
        (
            hs256(&json!({"sub": "staff-1", "roles": ["staff"]})),
            "the token has no exp claim",
        ),
        (
            encode(
                &Header::new(Algorithm::RS256),
                &staff_claims(json!({})),
                &rsa_key,
            )
            .unwrap(),
            "the token must be signed with HS256",
        ),
        (unsigned, "the token is not a valid JWT"),
        ("not-a-jwt".to_owned(), "the token is not a valid JWT"),
        (
            hs256(&staff_claims(json!({"roles": "staff"}))),
            "the token is not a valid JWT",
        ),
    ];
    for (token, says) in refused {
        let answer = app.as_caller(token.clone()).get("/orders").await;
        assert_unauthenticated(&answer, r#"Bearer error="invalid_token""#);
        let detail = answer.1["detail"].as_str().unwrap();
        assert!(detail.starts_with(says), "{token}: {detail}");
    }

    let valid = format!("Bearer {}", staff());
    let malformed: [&[(&str, &[u8])]; 7] = [
        &[("authorization", b"Basic dXNlcjpwYXNzd29yZA==")],
        &[("authorization", b"Bearer")],
        &[("authorization", b"Bearer ")],
        &[("authorization", b"Bearer a.b.c d")],
        &[(
            "authorization",
            valid.trim_start_matches("Bearer ").as_bytes(),
        )],
        &[("authorization", b"Bearer \xc3\xa9")],
        // Two tokens, even the same valid one twice.
        &[
            ("authorization", valid.as_bytes()),
            ("authorization", valid.as_bytes()),
        ],
    ];
    for headers in malformed {
        let answer = app.send_raw(Method::GET, "/orders", headers, vec![]).await;
        assert_unauthenticated(&answer, "Bearer");
    }
    // The scheme is read in any case.
    let lower = format!("bearer {}", staff());
    let headers: &[(&str, &[u8])] = &[("authorization", lower.as_bytes())];
    let answer = app.send_raw(Method::GET, "/orders", headers, vec![]).await;
    assert_eq!(answer.0, 200, "{}", answer.1);
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_set() {
    let issuer = "https://id.example.test";
    let app = secured_with(vec![
        ("ORDER_AUTH_ISSUER", issuer.into()),
        ("ORDER_AUTH_AUDIENCE", "order-service".into()),
    ])
    .await;
    let token = |extra: Value| hs256(&claims("staff-1", json!({"roles": ["staff"]}).merge(extra)));

    for accepted in [
        json!({"iss": issuer, "aud": "order-service"}),
        json!({"iss": issuer, "aud": ["storefront", "order-service"]}),
    ] {
        let (status, page, _) = app.as_caller(token(accepted.clone())).get("/orders").await;
        assert_eq!(status, 200, "{accepted}: {page}");
    }
    for (claims, says) in [
        (
            json!({"iss": "https://id.elsewhere.test", "aud": "order-service"}),
            "the token's issuer is not accepted",
        ),
        (
            json!({"aud": "order-service"}),
            "the token has no iss claim",
        ),
        (
            json!({"iss": issuer, "aud": "storefront"}),
            "the token's audience is not accepted",
        ),
        (json!({"iss": issuer}), "the token has no aud claim"),
    ] {
        let answer = app.as_caller(token(claims.clone())).get("/orders").await;
        assert_unauthenticated(&answer, r#"Bearer error="invalid_token""#);
        assert_eq!(answer.1["detail"], says, "{claims}");
    }
}

#[tokio::test]
async fn a_uuid_sub_must_be_in_canonical_form_and_iss_a_string() {
    let app = secured().await;
    let alice = Uuid::new_v4();
    let as_sub = |sub: String| app.as_caller(hs256(&claims(&sub, json!({}))));
    created(&as_sub(alice.to_string()), &order_for(Some(alice), VISA)).await;

    // Other spellings of alice's id are not alice.
    for sub in [
        alice.to_string().to_uppercase(),
        format!("{{{alice}}}"),
        alice.simple().to_string(),
        format!("urn:uuid:{alice}"),
    ] {
        for answer in [
            as_sub(sub.clone()).get("/orders").await,
            as_sub(sub.clone())
                .post("/orders", &order_for(Some(alice), VISA), None)
                .await,
        ] {
            assert_unauthenticated(&answer, r#"Bearer error="invalid_token""#);
            let detail = answer.1["detail"].as_str().unwrap();
            assert!(detail.contains("canonical lower-case"), "{sub}: {detail}");
        }
    }
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 1);

    // An issuer that is not a string is refused, though none is expected.
    let staff_with =
        |extra: Value| hs256(&claims("staff-1", json!({"roles": ["staff"]})).merge(extra));
    for iss in [
        json!(7),
        json!(null),
        json!(["https://id.example.test"]),
        json!({}),
    ] {
        let answer = app
            .as_caller(staff_with(json!({ "iss": iss })))
            .get("/orders")
            .await;
        assert_unauthenticated(&answer, r#"Bearer error="invalid_token""#);
        let detail = answer.1["detail"].as_str().unwrap();
        assert!(detail.contains("iss must be a string"), "{iss}: {detail}");
    }
    let named = staff_with(json!({ "iss": "https://id.example.test" }));
    assert_eq!(app.as_caller(named).get("/orders").await.0, 200);
}

#[tokio::test]
async fn a_max_token_age_refuses_longer_lived_tokens_and_tokens_without_iat() {
    let app = secured_with(vec![("ORDER_AUTH_MAX_TOKEN_AGE", "900".into())]).await;
    let t = now();
    let token = |times: Value| hs256(&json!({"sub": "staff-1", "roles": ["staff"]}).merge(times));

    let short = token(json!({"iat": t, "exp": t + 900}));
    assert_eq!(app.as_caller(short).get("/orders").await.0, 200);
    for (times, says) in [
        (
            json!({"iat": t, "exp": t + 3600}),
            "the token lives longer (exp - iat) than the 900 s allowed",
        ),
        (json!({"exp": t + 60}), "the token has no iat claim"),
        (
            json!({"iat": t + 86_400, "exp": t + 86_400 + 600}),
            "the token is not valid yet",
        ),
    ] {
        let answer = app.as_caller(token(times.clone())).get("/orders").await;
        assert_unauthenticated(&answer, r#"Bearer error="invalid_token""#);
        assert!(
            answer.1["detail"].as_str().unwrap().starts_with(says),
            "{times}: {}",
            answer.1
        );
    }
}

#[tokio::test]
async fn an_invalid_max_token_age_stops_the_start_naming_it() {
    let var = "ORDER_AUTH_MAX_TOKEN_AGE";
    for value in ["0", "15 minutes", "-1"] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_order-service"))
            .arg("serve")
            .env("ORDER_AUTH_JWT_SECRET", SECRET)
            .env(var, value)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {stderr}");
        assert!(stderr.contains(&format!("invalid {var}=")), "{stderr}");
    }
}

#[tokio::test]
async fn a_customer_creates_orders_for_itself_only() {
    let app = secured().await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let as_alice = app.as_caller(customer(alice));
    let staff = app.as_caller(staff());

    let for_bob = order_for(Some(bob), VISA);
    let refused = as_alice.post("/orders", &for_bob, Some("alice-1")).await;
    assert_forbidden(&refused);
    let guest = as_alice.post("/orders", &order_for(None, VISA), None).await;
    assert_forbidden(&guest);
    // A customer whose sub is not a UUID owns nothing, so it can create nothing.
    let named = app.as_caller(with_roles("alice@example.test", &["customer"]));
    let refused = named
        .post("/orders", &order_for(Some(alice), VISA), None)
        .await;
    assert_forbidden(&refused);

    // Nothing was made, reserved, or bound to the key.
    assert_eq!(staff.get("/orders").await.1["orders"], json!([]));
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM idempotency_keys").await, 0);
    assert!(app.ledger().reservations.is_empty());

    // For itself, with the same key (which the refusal left free): 201.
    let own = order_for(Some(alice), VISA);
    let (status, order, _) = as_alice.post("/orders", &own, Some("alice-1")).await;
    assert_eq!(
        (status, order["status"].as_str()),
        (201, Some("confirmed")),
        "{order}"
    );
    assert_eq!(order["customer_id"], json!(alice));

    // Staff and services create for anyone, guests included.
    let bobs = created(&staff, &for_bob).await;
    let guests = created(&app.as_caller(service()), &order_for(None, None)).await;
    let mut all = ids(&staff.get("/orders").await.1);
    all.sort();
    let mut expected = vec![id_of(&order), id_of(&bobs), id_of(&guests)];
    expected.sort();
    assert_eq!(all, expected);
}

#[tokio::test]
async fn a_customer_sees_only_its_own_orders_and_others_are_as_unknown() {
    let app = secured().await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let staff = app.as_caller(staff());
    let mine = created(
        &app.as_caller(customer(alice)),
        &order_for(Some(alice), VISA),
    )
    .await;
    let bobs = created(&staff, &order_for(Some(bob), VISA)).await;
    let guests = created(&staff, &order_for(None, VISA)).await;

    let paths = |order: &Value| {
        let (id, number) = (id_of(order), order["order_number"].as_str().unwrap());
        vec![
            format!("/orders/{id}"),
            format!("/orders/by-number/{number}"),
            format!("/orders/{id}/status-history"),
            format!("/orders/{id}/edit-history"),
            format!("/orders/{id}/returns"),
        ]
    };
    let unknown = json!({"id": Uuid::new_v4(), "order_number": "ORD-19990101-999999"});
    // No roles, the customer role, or only roles the service does not know: a customer.
    let alice_sub = alice.to_string();
    for token in [
        customer(alice),
        with_roles(&alice_sub, &["customer"]),
        with_roles(&alice_sub, &["admin", "superuser"]),
    ] {
        let me = app.as_caller(token);
        for path in paths(&mine) {
            let (status, body, _) = me.get(&path).await;
            assert_eq!(status, 200, "{path}: {body}");
        }
        assert_eq!(me.get(&paths(&mine)[0]).await.1["id"], mine["id"]);
        for other in [&bobs, &guests] {
            for (path, unknown_path) in paths(other).into_iter().zip(paths(&unknown)) {
                let hidden = me.get(&path).await;
                assert_problem(&hidden, 404, "order_not_found");
                let (_, as_unknown, _) = me.get(&unknown_path).await;
                assert_eq!(hidden.1, as_unknown, "{path}");
            }
        }

        // The list holds its own orders only, whatever the filter.
        assert_eq!(ids(&me.get("/orders").await.1), [id_of(&mine)]);
        let own = me.get(&format!("/orders?customer_id={alice}")).await.1;
        assert_eq!(ids(&own), [id_of(&mine)]);
        let bobs_list = me.get(&format!("/orders?customer_id={bob}")).await;
        assert_eq!((bobs_list.0, ids(&bobs_list.1)), (200, vec![]));
        assert_eq!(
            ids(&me.get("/orders?status=confirmed").await.1),
            [id_of(&mine)]
        );
    }

    // A customer whose sub is not a UUID owns nothing and sees nothing.
    let named = app.as_caller(with_roles("alice@example.test", &["customer"]));
    assert_eq!(ids(&named.get("/orders").await.1), Vec::<String>::new());
    assert_problem(&named.get(&paths(&mine)[0]).await, 404, "order_not_found");

    // Staff see every order.
    assert_eq!(ids(&staff.get("/orders").await.1).len(), 3);
    let filtered = staff.get(&format!("/orders?customer_id={bob}")).await.1;
    assert_eq!(ids(&filtered), [id_of(&bobs)]);
    for order in [&mine, &bobs, &guests] {
        for path in paths(order) {
            assert_eq!(staff.get(&path).await.0, 200, "{path}");
        }
    }
}

#[tokio::test]
async fn a_customer_pays_and_cancels_its_own_orders_and_anothers_are_untouched() {
    let app = secured().await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let as_alice = app.as_caller(customer(alice));
    let staff = app.as_caller(staff());
    let bobs_draft = created(&staff, &order_for(Some(bob), None)).await;
    let bobs_order = created(&staff, &order_for(Some(bob), VISA)).await;
    assert_eq!(bobs_draft["status"], "draft");
    let item = bobs_order["items"][0]["id"].clone();
    let one_unit = json!({"items": [{"item_id": item, "quantity": 1}]});

    let unknown = Uuid::new_v4().to_string();
    let refused = [
        (&bobs_draft, "payments", json!({"method": "pm_card_visa"})),
        (&bobs_draft, "cancel", json!({})),
        (&bobs_order, "cancel", json!({"reason": "changed my mind"})),
        (&bobs_order, "cancel-items", one_unit.clone()),
        (&bobs_order, "returns", one_unit.clone()),
    ];
    for (order, action, body) in &refused {
        let before = staff.get(&format!("/orders/{}", id_of(order))).await.1;
        let path = format!("/orders/{}/{action}", id_of(order));
        let answer = as_alice.post(&path, body, Some("alice-key")).await;
        assert_problem(&answer, 404, "order_not_found");
        let path = format!("/orders/{unknown}/{action}");
        let as_unknown = as_alice.post(&path, body, Some("alice-key")).await;
        assert_eq!(answer.1, as_unknown.1, "{action}");
        // Unchanged, version and all.
        let after = staff.get(&format!("/orders/{}", id_of(order))).await.1;
        assert_eq!(after, before, "{action}");
    }
    assert_eq!(app.count("SELECT count(*) FROM idempotency_keys").await, 0);
    let ledger = app.settled_ledger().await;
    let draft = OrderLedger::of(&ledger, &id_of(&bobs_draft));
    assert!(
        draft.captures.is_empty() && draft.releases.is_empty(),
        "{draft:?}"
    );
    let paid = OrderLedger::of(&ledger, &id_of(&bobs_order));
    assert_eq!(paid.captures.len(), 1);
    assert!(
        paid.refunds.is_empty() && paid.releases.is_empty(),
        "{paid:?}"
    );
    assert_eq!(paid.fulfillment_cancels, 0);

    // Its own draft it pays, then cancels one unit, then the rest.
    let mine = created(&as_alice, &order_for(Some(alice), None)).await;
    let id = id_of(&mine);
    let pay = json!({"method": "pm_card_visa"});
    let path = format!("/orders/{id}/payments");
    let (status, paid, _) = as_alice.post(&path, &pay, Some("alice-key")).await;
    assert_eq!(
        (status, paid["status"].as_str()),
        (200, Some("confirmed")),
        "{paid}"
    );
    let one_unit = json!({"items": [{"item_id": mine["items"][0]["id"], "quantity": 1}]});
    let path = format!("/orders/{id}/cancel-items");
    let (status, part, _) = as_alice.post(&path, &one_unit, None).await;
    assert_eq!(status, 200, "{part}");
    let path = format!("/orders/{id}/cancel");
    let (status, cancelled, _) = as_alice.post(&path, &json!({}), None).await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("cancelled")),
        "{cancelled}"
    );
    let own = OrderLedger::of(&app.settled_ledger().await, &id);
    assert_eq!(own.captures.len(), 1);
    assert_eq!(own.refunds.len(), 2, "{own:?}");
}

#[tokio::test]
async fn only_staff_move_statuses_receive_or_reject_returns_and_refund_items() {
    let app = secured().await;
    let alice = Uuid::new_v4();
    let as_alice = app.as_caller(customer(alice));
    let (staff, service) = (app.as_caller(staff()), app.as_caller(service()));
    let mut body = order_body(&[("SKU-TEA", 3, "12.00")], VISA);
    body["customer_id"] = json!(alice);
    let order = created(&as_alice, &body).await;
    let id = id_of(&order);
    advance_as(&staff, &id, &["processing", "shipped"]).await;
    advance_as(&service, &id, &["delivered"]).await;

    // Its returns a customer asks for itself.
    let item = order["items"][0]["id"].clone();
    let one_unit = json!({"items": [{"item_id": item, "quantity": 1}]});
    let path = format!("/orders/{id}/returns");
    let (status, first, _) = as_alice.post(&path, &one_unit, None).await;
    assert_eq!(status, 201, "{first}");
    let (status, second, _) = as_alice.post(&path, &one_unit, None).await;
    assert_eq!(status, 201, "{second}");
    let return_id = |r: &Value| r["return_id"].as_str().unwrap().to_owned();
    let (first, second) = (return_id(&first), return_id(&second));
    let before = staff.get(&format!("/orders/{id}")).await.1;

    // The rest is for the shop: 403, on its own order or on one that does not exist.
    for order_id in [id.clone(), Uuid::new_v4().to_string()] {
        let order = format!("/orders/{order_id}");
        let moved = json!({"status": "processing"});
        assert_forbidden(
            &as_alice
                .put(&format!("{order}/status"), &moved, Some("k"))
                .await,
        );
        for (action, body) in [
            (format!("returns/{first}/receive"), json!({})),
            (format!("returns/{second}/reject"), json!({"reason": "no"})),
            ("refund-items".to_owned(), one_unit.clone()),
        ] {
            let answer = as_alice
                .post(&format!("{order}/{action}"), &body, Some("k"))
                .await;
            assert_forbidden(&answer);
        }
    }
    assert_eq!(staff.get(&format!("/orders/{id}")).await.1, before);
    let returns = staff.get(&format!("/orders/{id}/returns")).await.1;
    let statuses: Vec<&Value> = returns["returns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["status"])
        .collect();
    assert_eq!(statuses, ["requested", "requested"]);
    let after = OrderLedger::of(&app.settled_ledger().await, &id);
    assert!(after.refunds.is_empty(), "{after:?}");
    assert_eq!(app.count("SELECT count(*) FROM idempotency_keys").await, 0);

    // Staff, services and operators may.
    let path = format!("/orders/{id}/returns/{first}/receive");
    let (status, received, _) = staff.post(&path, &json!({}), None).await;
    assert_eq!(status, 200, "{received}");
    let path = format!("/orders/{id}/returns/{second}/reject");
    let (status, rejected, _) = service.post(&path, &json!({"reason": "worn"}), None).await;
    assert_eq!(status, 200, "{rejected}");
    let path = format!("/orders/{id}/refund-items");
    let (status, refunded, _) = app.as_caller(operator()).post(&path, &one_unit, None).await;
    assert_eq!(status, 200, "{refunded}");
    let returns = as_alice.get(&format!("/orders/{id}/returns")).await.1;
    let status_of = |id: &str| {
        let list = returns["returns"].as_array().unwrap();
        list.iter().find(|r| r["return_id"] == id).unwrap()["status"].clone()
    };
    assert_eq!(
        (status_of(&first), status_of(&second)),
        (json!("refunded"), json!("rejected"))
    );
    let after = OrderLedger::of(&app.settled_ledger().await, &id);
    assert_eq!(after.refunds.len(), 2, "{after:?}");
}

#[tokio::test]
async fn the_analytics_are_for_staff_services_and_operators() {
    let app = secured().await;
    let alice = Uuid::new_v4();
    created(
        &app.as_caller(customer(alice)),
        &order_for(Some(alice), VISA),
    )
    .await;

    // The whole shop's figures: a customer is refused before its query is read.
    let as_alice = app.as_caller(customer(alice));
    assert_forbidden(&as_alice.get("/orders/analytics").await);
    assert_forbidden(&as_alice.get("/orders/analytics?from=yesterday").await);
    for token in [staff(), service(), operator()] {
        let (status, figures, _) = app.as_caller(token).get("/orders/analytics").await;
        assert_eq!(status, 200, "{figures}");
        assert_eq!(figures["order_count"], 1, "{figures}");
    }
}

#[tokio::test]
async fn the_operator_api_is_for_operators_only() {
    let app = secured().await;
    let bob = Uuid::new_v4();
    let order = created(&app.as_caller(staff()), &order_for(Some(bob), VISA)).await;
    let id = id_of(&order);
    let ops = [
        (Method::GET, "/ops/orders/stuck".to_owned(), json!(null)),
        (Method::POST, "/ops/orders/retry".into(), json!(null)),
        (
            Method::GET,
            format!("/ops/orders/{id}/timeline"),
            json!(null),
        ),
        (Method::POST, format!("/ops/orders/{id}/retry"), json!(null)),
        (
            Method::POST,
            format!("/ops/orders/{id}/resolve"),
            json!({"reason": "by hand"}),
        ),
    ];
    for token in [
        staff(),
        service(),
        customer(bob),
        with_roles("everyone-else", &["staff", "service", "customer", "admin"]),
    ] {
        let caller = app.as_caller(token);
        for (method, path, body) in &ops {
            let answer = match *method {
                Method::GET => caller.get(path).await,
                _ => caller.post(path, body, None).await,
            };
            assert_forbidden(&answer);
            assert_eq!(answer.1["detail"], "the operator API is for operators");
        }
    }
    assert_eq!(app.count("SELECT count(*) FROM idempotency_keys").await, 0);

    for token in [operator(), with_roles("operator-2", &["staff", "operator"])] {
        let operator = app.as_caller(token);
        let (status, stuck, _) = operator.get("/ops/orders/stuck").await;
        assert_eq!(
            (status, stuck["orders"].clone()),
            (200, json!([])),
            "{stuck}"
        );
        let (status, timeline, _) = operator.get(&ops[2].1).await;
        assert_eq!(status, 200, "{timeline}");
        let nothing = operator.post(&ops[3].1, &json!(null), None).await;
        assert_problem(&nothing, 409, "nothing_to_retry");
        let (status, all, _) = operator.post(&ops[1].1, &json!(null), None).await;
        assert_eq!(status, 202, "{all}");
        let unresolved = operator.post(&ops[4].1, &ops[4].2, None).await;
        assert_problem(&unresolved, 409, "nothing_to_resolve");
    }

    // And whatever staff may.
    let operator = app.as_caller(operator());
    assert_eq!(operator.get(&format!("/orders/{id}")).await.0, 200);
    advance_as(&operator, &id, &["processing"]).await;
}

/// The service verifying with the public key in `public`; tokens signed with
/// `private` by `algorithm` pass, and nothing else does.
async fn key_file_verifies(algorithm: Algorithm, private: &str, public: &str) {
    let file = fixture(public);
    let app = TestApp::spawn_with(Options {
        env: vec![("ORDER_AUTH_JWT_PUBLIC_KEY_FILE", file.clone())],
        ..Default::default()
    })
    .await;
    let pem = std::fs::read(fixture(private)).unwrap();
    let key = match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
        _ => EncodingKey::from_ec_pem(&pem).unwrap(),
    };
    let sign = |claims: &Value| encode(&Header::new(algorithm), claims, &key).unwrap();
    let alice = Uuid::new_v4();

    let as_alice = app.as_caller(sign(&claims(&alice.to_string(), json!({}))));
    let mine = created(&as_alice, &order_for(Some(alice), VISA)).await;
    assert_eq!(
        as_alice.get(&format!("/orders/{}", id_of(&mine))).await.0,
        200
    );
    let staff = app.as_caller(sign(&claims("staff-1", json!({"roles": ["staff"]}))));
    let refused = as_alice.post("/orders", &order_for(None, VISA), None).await;
    assert_forbidden(&refused);
    assert_eq!(ids(&staff.get("/orders").await.1), [id_of(&mine)]);

    // An HS256 token keyed with the public key, as if it were a secret.
    let public_pem = std::fs::read(file).unwrap();
    let forged = EncodingKey::from_secret(&public_pem);
    let staff_claims = claims("staff-1", json!({"roles": ["staff"]}));
    let token = encode(&Header::new(Algorithm::HS256), &staff_claims, &forged).unwrap();
    let answer = app.as_caller(token).get("/orders").await;
    assert_unauthenticated(&answer, r#"Bearer error="invalid_token""#);
    assert_eq!(
        answer.1["detail"],
        format!("the token must be signed with {algorithm:?}")
    );
    let anonymous = app.send_raw(Method::GET, "/orders", &[], vec![]).await;
    assert_unauthenticated(&anonymous, "Bearer");
}

#[tokio::test]
async fn an_rs256_public_key_file_verifies_rs256_tokens() {
    key_file_verifies(Algorithm::RS256, "rs256-private.pem", "rs256-public.pem").await;
}

#[tokio::test]
async fn an_es256_public_key_file_verifies_es256_tokens() {
    key_file_verifies(Algorithm::ES256, "es256-private.pem", "es256-public.pem").await;
}

#[tokio::test]
async fn a_key_that_cannot_verify_stops_the_start_with_exit_code_2() {
    let key_file = "ORDER_AUTH_JWT_PUBLIC_KEY_FILE";
    for (var, value, says) in [
        (
            key_file,
            fixture("no-such-key.pem"),
            "cannot read the key file",
        ),
        (key_file, fixture("../main.rs"), "not a PEM file"),
        (key_file, fixture("rs256-private.pem"), "not a public key"),
        (key_file, fixture("p384-public.pem"), "P-256"),
        (
            "ORDER_AUTH_JWT_SECRET",
            "too short".into(),
            "at least 32 bytes",
        ),
        (
            "ORDER_AUTH_ISSUER",
            "https://id.example.test".into(),
            "authorization is off",
        ),
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_order-service"))
            .arg("serve")
            .env(var, &value)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {stderr}");
        assert!(
            stderr.contains(&format!("invalid {var}=")) && stderr.contains(says),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn with_authorization_off_no_token_is_needed_or_looked_at() {
    let app = TestApp::spawn().await;
    let alice = Uuid::new_v4();
    assert_eq!(app.get("/orders").await.0, 200);
    for token in ["not-a-jwt".to_owned(), customer(alice)] {
        let caller = app.as_caller(token);
        assert_eq!(caller.get("/ops/orders/stuck").await.0, 200);
        let order = created(&caller, &order_for(Some(Uuid::new_v4()), VISA)).await;
        advance_as(&caller, &id_of(&order), &["processing"]).await;
    }
}

/// api-changes.md §12: a customer asks for an exchange or a claim (without a
/// return) on its own order and cancels its own requested exchange; receiving,
/// resolving and rejecting are for staff; another customer's order stays `404`.
#[tokio::test]
async fn a_customer_asks_for_exchanges_and_claims_and_staff_settle_them() {
    let app = secured().await;
    let (me, other) = (Uuid::new_v4(), Uuid::new_v4());
    let (mine, theirs) = (app.as_caller(customer(me)), app.as_caller(customer(other)));
    let staff_caller = app.as_caller(staff());
    let order = created(&mine, &order_for(Some(me), VISA)).await;
    let id = id_of(&order);
    advance_as(&staff_caller, &id, &["processing", "shipped", "delivered"]).await;
    let exchange = json!({
        "return_items": [{"item_id": 1, "quantity": 1}],
        "new_items": [{"product_id": Uuid::new_v4(), "product_sku": "SKU-MUG-L",
            "product_name": "Mug, large", "warehouse_id": Uuid::new_v4(),
            "quantity": 1, "unit_price": "49.05"}],
    });
    let path = format!("/orders/{id}/exchanges");
    assert_problem(
        &theirs.post(&path, &exchange, None).await,
        404,
        "order_not_found",
    );
    let (status, asked, _) = mine.post(&path, &exchange, None).await;
    assert_eq!(status, 201, "{asked}");
    let exchange_path = format!("{path}/{}", asked["exchange_id"].as_str().unwrap());
    assert_forbidden(
        &mine
            .post(&format!("{exchange_path}/receive"), &json!({}), None)
            .await,
    );
    let (status, cancelled, _) = mine
        .post(&format!("{exchange_path}/cancel"), &json!({}), None)
        .await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("cancelled")),
        "{cancelled}"
    );

    let claims = format!("/orders/{id}/claims");
    let damaged = |require_return: bool| {
        json!({"items": [{"item_id": 1, "quantity": 1, "claim_type": "damaged"}],
               "require_return": require_return})
    };
    assert_forbidden(&mine.post(&claims, &damaged(true), None).await);
    assert_problem(
        &theirs.post(&claims, &damaged(false), None).await,
        404,
        "order_not_found",
    );
    let (status, claim, _) = mine.post(&claims, &damaged(false), None).await;
    assert_eq!(status, 201, "{claim}");
    let claim_path = format!("{claims}/{}", claim["claim_id"].as_str().unwrap());
    let resolve = json!({"resolution": "refund"});
    assert_forbidden(
        &mine
            .post(&format!("{claim_path}/resolve"), &resolve, None)
            .await,
    );
    assert_forbidden(
        &mine
            .post(&format!("{claim_path}/reject"), &json!({}), None)
            .await,
    );
    assert_eq!(theirs.get(&claim_path).await.0, 404);
    assert_eq!(mine.get(&claim_path).await.0, 200);
    let (status, resolved, _) = staff_caller
        .post(&format!("{claim_path}/resolve"), &resolve, None)
        .await;
    assert_eq!(
        (status, resolved["status"].as_str()),
        (200, Some("resolved")),
        "{resolved}"
    );
}
