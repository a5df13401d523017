//! The REST router in process, in front of a stand-in for Restate's ingress (real
//! HTTP on a free port) that records every call and answers what the test says.
//! What the edge decides alone: refusals that reach no saga, the caller's scope,
//! what a call to the engine carries, and answers read from the read model.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use order_service::api::{self, ApiSettings, ApiState};
use order_service::auth::{Expected, Verifier};
use order_service::caller::{CallerKey, ASSERTION_HEADER};
use order_service::config::DownstreamAddrs;
use order_service::downstream::Downstream;
use order_service::engine::admin::Admin;
use order_service::engine::ingress::Ingress;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt;
use uuid::Uuid;

use crate::db::Db;
use crate::read_model::{commit, new_order};

const SECRET: &str = "a router test secret of 32 bytes or more";

/// A call that reached the stand-in ingress.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    idempotency_key: Option<String>,
    asserted: bool,
    body: Value,
}

/// Restate's ingress as the API sees it: every call recorded and answered with
/// `answer`.
#[derive(Clone)]
struct FakeIngress {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeIngress {
    async fn start(answer: (StatusCode, Value)) -> FakeIngress {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let app = axum::Router::new().fallback(move |request: Request<Body>| {
            let (record, answer) = (record.clone(), answer.clone());
            async move {
                let (parts, body) = request.into_parts();
                let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                let header = |name: &str| {
                    parts
                        .headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                record.lock().unwrap().push(Seen {
                    path: parts.uri.path().to_owned(),
                    idempotency_key: header("idempotency-key"),
                    asserted: header(ASSERTION_HEADER).is_some_and(|v| !v.is_empty()),
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                });
                (answer.0, axum::Json(answer.1))
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeIngress { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// The API over `db`, calling `ingress`, with authorization on or off.
struct Api {
    router: axum::Router,
    ingress: FakeIngress,
    db: Db,
}

impl Api {
    async fn new(auth: bool, answer: (StatusCode, Value)) -> Api {
        let db = Db::new().await;
        let ingress = FakeIngress::start(answer).await;
        let nowhere = Some("http://127.0.0.1:9".to_owned());
        let addrs = DownstreamAddrs {
            warehouse: nowhere.clone(),
            payment: nowhere.clone(),
            fulfillment: nowhere.clone(),
            notification: nowhere.clone(),
            pubsub: nowhere,
        };
        let verifier = auth.then(|| {
            let expected = Expected {
                issuer: None,
                audience: None,
                max_age: None,
            };
            Verifier::hs256(SECRET.as_bytes(), expected).unwrap()
        });
        let state = ApiState {
            db: db.pool.clone(),
            ingress: Ingress::new(&[&ingress.url], CallerKey::generate().unwrap().0).unwrap(),
            admin: Admin::new(&[&ingress.url]),
            downstream: Downstream::new(&addrs, "pubsub", Duration::from_secs(1)).unwrap(),
            settings: Arc::new(ApiSettings {
                create_wait: Duration::from_secs(2),
                stuck_after: Duration::from_secs(60),
                auth: verifier,
                request_timeout: Duration::from_secs(10),
            }),
        };
        Api {
            router: api::router(state),
            ingress,
            db,
        }
    }

    async fn call(&self, request: Request<Body>) -> (StatusCode, String, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let kind = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, kind, body)
    }

    async fn count(&self, table: &str) -> i64 {
        self.db
            .count(&format!("SELECT count(*) FROM {table}"))
            .await
    }
}

fn post(path: &str) -> axum::http::request::Builder {
    Request::post(format!("/api/v1{path}")).header("content-type", "application/json")
}

/// `request` with the bearer token of customer `id` (no roles).
fn as_customer(request: axum::http::request::Builder, id: Uuid) -> axum::http::request::Builder {
    let claims = json!({ "sub": id, "exp": chrono::Utc::now().timestamp() + 600 });
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let token = encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap();
    request.header("authorization", format!("Bearer {token}"))
}

fn mug_order(customer: Uuid) -> Value {
    json!({
        "customer_id": customer,
        "currency": "USD",
        "items": [{"product_id": Uuid::new_v4(), "product_sku": "SKU-MUG", "product_name": "Mug",
                   "warehouse_id": Uuid::new_v4(), "quantity": 2, "unit_price": "12.50"}],
        "payment": {"method": "pm_card_visa"}
    })
}

fn not_accepted() -> (StatusCode, Value) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"message": "the partition is not ready"}),
    )
}

#[tokio::test]
async fn bad_input_is_refused_at_the_edge_and_reaches_no_saga() {
    let api = Api::new(false, not_accepted()).await;
    let mut no_items = mug_order(Uuid::new_v4());
    no_items["items"] = json!([]);
    let mut zero = mug_order(Uuid::new_v4());
    zero["items"][0]["quantity"] = json!(0);

    let empty = api
        .call(
            post("/orders")
                .body(Body::from(no_items.to_string()))
                .unwrap(),
        )
        .await;
    let zero = api
        .call(post("/orders").body(Body::from(zero.to_string())).unwrap())
        .await;
    let broken = api
        .call(post("/orders").body(Body::from("{\"items\": [")).unwrap())
        .await;
    let text = api
        .call(
            Request::post("/api/v1/orders")
                .header("content-type", "text/plain")
                .body(Body::from(mug_order(Uuid::new_v4()).to_string()))
                .unwrap(),
        )
        .await;
    let nothing = api
        .call(
            post(&format!("/orders/{}/cancel-items", Uuid::new_v4()))
                .body(Body::from(json!({"items": []}).to_string()))
                .unwrap(),
        )
        .await;

    for (status, kind, body) in [&empty, &zero] {
        assert_eq!(*status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(kind, "application/problem+json");
        assert_eq!(body["code"], "validation_failed", "{body}");
    }
    assert!(
        empty.2["errors"].to_string().contains("items"),
        "{}",
        empty.2
    );
    assert!(
        zero.2["errors"].to_string().contains("quantity"),
        "{}",
        zero.2
    );
    assert_eq!(broken.0, StatusCode::BAD_REQUEST, "{}", broken.2);
    assert_eq!(text.0, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", text.2);
    assert_eq!(nothing.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", nothing.2);
    assert_eq!(nothing.1, "application/problem+json");
    assert!(api.ingress.seen().is_empty(), "{:?}", api.ingress.seen());
    assert_eq!(api.count("orders").await, 0);
    assert_eq!(api.count("idempotency_keys").await, 0);
}

#[tokio::test]
async fn without_a_valid_token_nothing_is_read_or_sent() {
    let api = Api::new(true, not_accepted()).await;
    let order = new_order(&api.db).await;
    commit(&api.db, &order, None, "order.created").await;
    let owner = order.customer_id.unwrap();
    let path = format!("/api/v1/orders/{}", order.id);

    let anonymous = api
        .call(Request::get(&path).body(Body::empty()).unwrap())
        .await;
    let forged = api
        .call(
            Request::get(&path)
                .header("authorization", "Bearer not.a.token")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let stranger = api
        .call(
            as_customer(Request::get(&path), Uuid::new_v4())
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let for_someone_else = api
        .call(
            as_customer(post("/orders"), owner)
                .body(Body::from(mug_order(Uuid::new_v4()).to_string()))
                .unwrap(),
        )
        .await;
    let owners = api
        .call(
            as_customer(Request::get(&path), owner)
                .body(Body::empty())
                .unwrap(),
        )
        .await;

    assert_eq!(anonymous.0, StatusCode::UNAUTHORIZED, "{}", anonymous.2);
    assert_eq!(forged.0, StatusCode::UNAUTHORIZED, "{}", forged.2);
    assert_eq!(stranger.0, StatusCode::NOT_FOUND, "{}", stranger.2);
    assert_eq!(stranger.2["code"], "order_not_found");
    assert_eq!(
        for_someone_else.0,
        StatusCode::FORBIDDEN,
        "{}",
        for_someone_else.2
    );
    assert_eq!(owners.0, StatusCode::OK, "{}", owners.2);
    assert_eq!(owners.2["order_number"], json!(order.order_number));
    assert!(api.ingress.seen().is_empty(), "{:?}", api.ingress.seen());
}

#[tokio::test]
async fn an_order_is_read_with_its_version_as_its_etag() {
    let api = Api::new(false, not_accepted()).await;
    let v1 = new_order(&api.db).await;
    let mut v2 = v1.clone();
    v2.version += 1;
    v2.shipping_address = json!({"line1": "1 New Street", "city": "Lyon"});
    let etag = || async {
        let path = format!("/api/v1/orders/{}", v1.id);
        let response = api
            .router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_owned())
    };

    commit(&api.db, &v1, None, "order.created").await;
    let first = etag().await;
    commit(&api.db, &v2, Some(&v1), "order.updated").await;
    let second = etag().await;

    assert_eq!(first.as_deref(), Some("\"1\""));
    assert_eq!(
        second.as_deref(),
        Some("\"2\""),
        "the tag follows the version"
    );
}

#[tokio::test]
async fn a_create_the_engine_did_not_accept_is_503_and_its_retry_names_the_same_invocation() {
    let api = Api::new(false, not_accepted()).await;
    let body = mug_order(Uuid::new_v4());
    let create = || {
        post("/orders")
            .header("idempotency-key", "checkout-42")
            .body(Body::from(body.to_string()))
            .unwrap()
    };

    let first = api.call(create()).await;
    let calls_after_first = api.ingress.seen().len();
    let again = api.call(create()).await;

    for (status, kind, problem) in [&first, &again] {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
        assert_eq!(kind, "application/problem+json");
        assert_eq!(problem["code"], "unavailable", "{problem}");
    }
    let seen = api.ingress.seen();
    assert!(
        calls_after_first >= 1 && seen.len() > calls_after_first,
        "{seen:?}"
    );
    let first_path = &seen[0].path;
    assert!(
        first_path.contains("/Order/") && first_path.ends_with("/create"),
        "{seen:?}"
    );
    for call in &seen {
        assert!(
            call.asserted,
            "every call carries the API's caller assertion: {call:?}"
        );
        assert_eq!(
            call.idempotency_key.as_deref(),
            Some("create_order:checkout-42")
        );
        assert_eq!(
            &call.path[call.path.find("/Order/").unwrap()..],
            &first_path[first_path.find("/Order/").unwrap()..],
            "the retry names the same order"
        );
        assert_eq!(call.body["items"][0]["quantity"], 2);
    }
    assert_eq!(
        api.count("orders").await,
        0,
        "nothing is readable that does not exist"
    );
}

#[tokio::test]
async fn a_made_up_method_is_405_and_mints_no_metric_series() {
    let api = Api::new(false, not_accepted()).await;
    let scrape = || async {
        let response = api
            .router
            .clone()
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    scrape().await; // The process's recorder is installed at the first scrape.
    let method = format!(
        "BREW{}",
        Uuid::new_v4().simple().to_string()[..6].to_uppercase()
    );

    let brewed = api
        .call(
            Request::builder()
                .method(method.as_str())
                .uri("/api/v1/orders")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let scrape = scrape().await;

    assert_eq!(brewed.0, StatusCode::METHOD_NOT_ALLOWED, "{}", brewed.2);
    assert_eq!(brewed.1, "application/problem+json");
    assert!(scrape.contains("http_requests_total"), "{scrape}");
    assert!(
        !scrape.contains(&method),
        "the made-up method is a label: {scrape}"
    );
}

#[tokio::test]
async fn the_console_is_sent_with_a_policy_that_forbids_framing_and_sniffing() {
    let api = Api::new(false, not_accepted()).await;

    let response = api
        .router
        .clone()
        .oneshot(Request::get("/ops").body(Body::empty()).unwrap())
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let policy = header("content-security-policy");
    let directives: Vec<&str> = policy.split(';').map(str::trim).collect();
    assert!(directives.contains(&"frame-ancestors 'none'"), "{policy}");
    assert!(directives.contains(&"default-src 'none'"), "{policy}");
    // The page's own script runs by its hash, and nothing inline else.
    let script = directives
        .iter()
        .find(|d| d.starts_with("script-src "))
        .unwrap_or_else(|| panic!("no script-src: {policy}"));
    assert!(script.contains("'sha256-"), "{policy}");
    assert!(!policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"));
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert!(header("content-type").starts_with("text/html"));
}
