//! The OpenAPI document: it is 3.1, it names exactly the routes the service serves,
//! and the real answers (and the requests that got them) fit its schemas.

use crate::helpers::{mug_order, Options, TestApp};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use uuid::Uuid;

/// Every route of the service, as its routers declare them (`src/api/*.rs`).
const ROUTES: &[(&str, &str)] = &[
    ("post", "/api/v1/orders"),
    ("get", "/api/v1/orders"),
    ("get", "/api/v1/orders/{id}"),
    ("get", "/api/v1/orders/by-number/{order_number}"),
    ("post", "/api/v1/orders/{id}/payments"),
    ("put", "/api/v1/orders/{id}/status"),
    ("get", "/api/v1/orders/{id}/status-history"),
    ("get", "/api/v1/orders/{id}/edit-history"),
    ("get", "/api/v1/orders/analytics"),
    ("post", "/api/v1/orders/{id}/cancel"),
    ("post", "/api/v1/orders/{id}/cancel-items"),
    ("post", "/api/v1/orders/{id}/returns"),
    ("get", "/api/v1/orders/{id}/returns"),
    ("post", "/api/v1/orders/{id}/returns/{return_id}/receive"),
    ("post", "/api/v1/orders/{id}/returns/{return_id}/reject"),
    ("post", "/api/v1/orders/{id}/refund-items"),
    ("post", "/api/v1/orders/{id}/change-quotes"),
    ("get", "/api/v1/orders/{id}/change-quotes"),
    ("get", "/api/v1/orders/{id}/change-quotes/{quote_id}"),
    ("delete", "/api/v1/orders/{id}/change-quotes/{quote_id}"),
    ("post", "/api/v1/orders/{id}/changes"),
    ("get", "/api/v1/orders/{id}/changes"),
    ("get", "/api/v1/orders/{id}/changes/{change_id}"),
    ("post", "/api/v1/orders/{id}/changes/{change_id}/payments"),
    ("post", "/api/v1/orders/{id}/changes/{change_id}/cancel"),
    ("get", "/api/v1/orders/{id}/ledger"),
    ("post", "/api/v1/orders/{id}/change-requests"),
    ("get", "/api/v1/orders/{id}/change-requests"),
    ("get", "/api/v1/orders/{id}/change-requests/{request_id}"),
    (
        "post",
        "/api/v1/orders/{id}/change-requests/{request_id}/accept",
    ),
    (
        "post",
        "/api/v1/orders/{id}/change-requests/{request_id}/decline",
    ),
    (
        "post",
        "/api/v1/orders/{id}/change-requests/{request_id}/withdraw",
    ),
    ("post", "/api/v1/orders/{id}/exchanges"),
    ("get", "/api/v1/orders/{id}/exchanges"),
    ("get", "/api/v1/orders/{id}/exchanges/{exchange_id}"),
    (
        "post",
        "/api/v1/orders/{id}/exchanges/{exchange_id}/receive",
    ),
    (
        "post",
        "/api/v1/orders/{id}/exchanges/{exchange_id}/payments",
    ),
    ("post", "/api/v1/orders/{id}/exchanges/{exchange_id}/cancel"),
    ("post", "/api/v1/orders/{id}/claims"),
    ("get", "/api/v1/orders/{id}/claims"),
    ("get", "/api/v1/orders/{id}/claims/{claim_id}"),
    ("post", "/api/v1/orders/{id}/claims/{claim_id}/receive"),
    ("post", "/api/v1/orders/{id}/claims/{claim_id}/resolve"),
    ("post", "/api/v1/orders/{id}/claims/{claim_id}/reject"),
    ("get", "/api/v1/ops/orders/stuck"),
    ("post", "/api/v1/ops/orders/retry"),
    ("get", "/api/v1/ops/orders/{id}/timeline"),
    ("post", "/api/v1/ops/orders/{id}/retry"),
    ("post", "/api/v1/ops/orders/{id}/resolve"),
    ("post", "/api/v1/ops/orders/{id}/changes/{change_id}/retry"),
    (
        "post",
        "/api/v1/ops/orders/{id}/changes/{change_id}/resolve",
    ),
    ("get", "/api/v1/orders/health"),
    ("get", "/api/v1/orders/health/dependencies"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/metrics"),
    ("get", "/ops"),
];

/// The routes that need no token when authorization is on.
const OPEN: &[&str] = &[
    "/api/v1/orders/health",
    "/api/v1/orders/health/dependencies",
    "/api/v1/openapi.json",
    "/metrics",
    "/ops",
];

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// Status, content type and JSON body (`null` when not JSON) of an answer.
struct Answer {
    status: u16,
    content_type: String,
    body: Value,
}

/// The service and its OpenAPI document.
struct Documented {
    app: TestApp,
    root: String,
    doc: Value,
}

impl Documented {
    async fn spawn() -> Documented {
        Documented::spawn_with(Options::default()).await
    }

    async fn spawn_with(options: Options) -> Documented {
        let app = TestApp::spawn_with(options).await;
        let root = app.api.trim_end_matches("/api/v1").to_owned();
        let get = Method::GET;
        let answer = call(&app, &root, None, get, "/api/v1/openapi.json", None).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.content_type, "application/json");
        Documented {
            app,
            root,
            doc: answer.body,
        }
    }

    /// Sends a request to `path` (from the root) and checks the answer against the
    /// document's schema of `template` for its status and content type, and a
    /// request that was taken against the schema of its body.
    async fn checked(
        &self,
        method: Method,
        template: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Answer {
        self.checked_as(None, method, template, path, body).await
    }

    /// [`Documented::checked`], with a bearer `token` when given.
    async fn checked_as(
        &self,
        token: Option<&str>,
        method: Method,
        template: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Answer {
        let operation = &self.doc["paths"][template][method.as_str().to_lowercase()];
        assert!(
            operation.is_object(),
            "{method} {template} is not documented"
        );
        let answer = call(&self.app, &self.root, token, method.clone(), path, body).await;
        // A request the service took must be one the document allows.
        if let Some(body) = body.filter(|_| answer.status < 300) {
            let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
            self.fits(schema, body, &format!("request of {method} {template}"));
        }
        let what = format!("{} answer of {method} {template}", answer.status);
        let response = &operation["responses"][answer.status.to_string()];
        assert!(
            response.is_object(),
            "{what} is not documented: {}",
            answer.body
        );
        let content = &response["content"][&answer.content_type];
        assert!(
            content.is_object(),
            "{what} is not documented as {}",
            answer.content_type
        );
        self.fits(&content["schema"], &answer.body, &what);
        answer
    }

    /// Asserts that `instance` fits `schema`, whose `$ref`s name the document's
    /// components.
    fn fits(&self, schema: &Value, instance: &Value, what: &str) {
        let errors = self.misfits(schema, instance, what);
        assert!(
            errors.is_empty(),
            "{what} does not fit: {errors:#?}\n{instance:#}"
        );
    }

    /// Where `instance` breaks `schema`.
    fn misfits(&self, schema: &Value, instance: &Value, what: &str) -> Vec<String> {
        assert!(schema.is_object(), "{what}: no schema");
        let whole = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"],
            "allOf": [schema],
        });
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&whole)
            .unwrap_or_else(|e| panic!("{what}: the schema does not compile: {e}"));
        validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }
}

async fn call(
    app: &TestApp,
    root: &str,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Answer {
    let mut request = app.http.request(method, format!("{root}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        content_type,
        body,
    }
}

#[tokio::test]
async fn the_document_names_every_route_and_the_real_answers_fit_it() {
    let it = Documented::spawn().await;
    let doc = &it.doc;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "Order service");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    // Exactly the routes of the service, each with its methods.
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(move |m| (m.to_string(), path.clone()))
        })
        .collect();
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let missing: Vec<_> = served.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(missing.is_empty(), "not documented: {missing:?}");
    assert!(extra.is_empty(), "documented but not served: {extra:?}");

    // Each route of the list is one the service serves (not the fallback's
    // `not_found` or `method_not_allowed`); each needs a token unless it is open.
    for (method, template) in ROUTES {
        let path = template
            .replace("{id}", &Uuid::new_v4().to_string())
            .replace("{return_id}", &Uuid::new_v4().to_string())
            .replace("{order_number}", "ORD-20260101-000001");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let body = (method != Method::GET).then(|| json!({}));
        let answer = call(
            &it.app,
            &it.root,
            None,
            method.clone(),
            &path,
            body.as_ref(),
        )
        .await;
        assert!(
            answer.status != 405 && answer.body["code"] != "not_found",
            "{method} {template} is not served: {}",
            answer.body
        );
        let operation = &doc["paths"][template][method.as_str().to_lowercase()];
        let security = &operation["security"];
        match OPEN.contains(template) {
            true => assert!(security.is_null(), "{template} needs no token"),
            false => {
                assert_eq!(security, &json!([{ "bearerAuth": [] }]), "{template}");
                assert!(operation["responses"]["401"].is_object(), "{template}");
            }
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );

    // A paid order: created, read, listed, found by number, its histories.
    let paid = mug_order(Some("pm_card_visa"));
    let post = Method::POST;
    let created = it
        .checked(
            post.clone(),
            "/api/v1/orders",
            "/api/v1/orders",
            Some(&paid),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let number = created.body["order_number"].as_str().unwrap().to_owned();
    let order = format!("/api/v1/orders/{id}");
    let get = |template: &'static str, path: String| {
        let it = &it;
        async move { it.checked(Method::GET, template, &path, None).await }
    };
    let read = get("/api/v1/orders/{id}", order.clone()).await;
    assert_eq!((read.status, &read.body), (200, &created.body));
    // The check has teeth: a number for money, an unknown status, a missing field.
    let schema = json!({ "$ref": "#/components/schemas/OrderView" });
    for (field, wrong) in [
        ("total_amount", json!(103.1)),
        ("subtotal", json!("100.0")),
        ("status", json!("pending")),
        ("id", json!("not-a-uuid")),
        ("created_at", Value::Null),
    ] {
        let mut order = created.body.clone();
        order[field] = wrong;
        let errors = it.misfits(&schema, &order, field);
        assert!(!errors.is_empty(), "{field}: {order}");
    }
    let figures = get(
        "/api/v1/orders/analytics",
        "/api/v1/orders/analytics".into(),
    )
    .await;
    assert_eq!(figures.status, 200, "{}", figures.body);
    assert!(figures.body["order_count"].as_i64() >= Some(1));
    let listed = get("/api/v1/orders", "/api/v1/orders?limit=10".into()).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["orders"][0]["id"], id.as_str());
    let by_number = format!("/api/v1/orders/by-number/{number}");
    let found = get("/api/v1/orders/by-number/{order_number}", by_number).await;
    assert_eq!(found.status, 200);
    for template in [
        "/api/v1/orders/{id}/status-history",
        "/api/v1/orders/{id}/edit-history",
        "/api/v1/orders/{id}/returns",
        "/api/v1/ops/orders/{id}/timeline",
    ] {
        let answer = get(template, template.replace("{id}", &id)).await;
        assert_eq!(answer.status, 200, "{template}: {}", answer.body);
    }

    // Refusals: an unknown order, a rule broken, a body that is not JSON, a
    // filter that does not parse.
    let unknown = format!("/api/v1/orders/{}", Uuid::new_v4());
    let missing = get("/api/v1/orders/{id}", unknown).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["code"], "order_not_found");
    let mut broken = mug_order(Some("pm_card_visa"));
    broken["items"][0]["quantity"] = json!(0);
    let refused = it
        .checked(
            post.clone(),
            "/api/v1/orders",
            "/api/v1/orders",
            Some(&broken),
        )
        .await;
    assert_eq!(refused.status, 422);
    assert_eq!(refused.body["code"], "validation_failed");
    assert_eq!(refused.body["errors"][0]["field"], "items[0].quantity");
    let bad_filter = get("/api/v1/orders", "/api/v1/orders?limit=0".into()).await;
    assert_eq!(bad_filter.status, 422);
    let malformed = it
        .app
        .post_raw(&format!("/orders/{id}/cancel"), b"{\"reason\":".to_vec())
        .await;
    assert_eq!(malformed.0, 400);
    let schema = &doc["paths"]["/api/v1/orders/{id}/cancel"]["post"]["responses"]["400"]["content"]
        ["application/problem+json"]["schema"];
    it.fits(
        schema,
        &malformed.1,
        "400 answer of POST /orders/{id}/cancel",
    );

    // A draft, paid later; then the paid order cancelled.
    let draft = it
        .checked(
            post.clone(),
            "/api/v1/orders",
            "/api/v1/orders",
            Some(&mug_order(None)),
        )
        .await;
    assert_eq!(draft.status, 201);
    assert_eq!(draft.body["status"], "draft");
    let draft_id = draft.body["id"].as_str().unwrap();
    let paid_later = it
        .checked(
            post.clone(),
            "/api/v1/orders/{id}/payments",
            &format!("/api/v1/orders/{draft_id}/payments"),
            Some(&json!({ "method": "pm_card_visa", "amount": "103.1" })),
        )
        .await;
    assert_eq!(paid_later.status, 200, "{}", paid_later.body);
    assert_eq!(paid_later.body["status"], "confirmed");
    let cancelled = it
        .checked(
            post.clone(),
            "/api/v1/orders/{id}/cancel",
            &format!("{order}/cancel"),
            Some(&json!({ "reason": "changed my mind" })),
        )
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    let again = it
        .checked(
            post.clone(),
            "/api/v1/orders/{id}/cancel",
            &format!("{order}/cancel"),
            Some(&json!({})),
        )
        .await;
    assert_eq!(again.status, 409);
    assert_eq!(again.body["code"], "invalid_transition");

    // The operators' and the health answers.
    let stuck = get(
        "/api/v1/ops/orders/stuck",
        "/api/v1/ops/orders/stuck".into(),
    )
    .await;
    assert_eq!(stuck.status, 200, "{}", stuck.body);
    let nothing = it
        .checked(
            post.clone(),
            "/api/v1/ops/orders/{id}/retry",
            &format!("/api/v1/ops/orders/{id}/retry"),
            None,
        )
        .await;
    assert_eq!(nothing.status, 409);
    assert_eq!(nothing.body["code"], "nothing_to_retry");
    let live = get("/api/v1/orders/health", "/api/v1/orders/health".into()).await;
    assert_eq!(live.status, 200);
    let deps = "/api/v1/orders/health/dependencies";
    assert_eq!(get(deps, deps.into()).await.status, 200);
}

/// A token of `roles` (a customer's when none) signed with `secret`.
fn token(secret: &str, roles: &[&str]) -> String {
    let exp = chrono::Utc::now().timestamp() + 600;
    let claims = json!({ "sub": Uuid::new_v4(), "roles": roles, "exp": exp });
    let key = EncodingKey::from_secret(secret.as_bytes());
    encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
}

#[tokio::test]
async fn the_refusals_of_authorization_fit_the_document() {
    let secret = "an OpenAPI test secret of 32 bytes or more";
    let env = vec![("ORDER_AUTH_JWT_SECRET", secret.to_owned())];
    let options = Options {
        env,
        ..Default::default()
    };
    // The document itself needs no token.
    let it = Documented::spawn_with(options).await;
    let get = Method::GET;

    let health = "/api/v1/orders/health";
    assert_eq!(
        it.checked(get.clone(), health, health, None).await.status,
        200
    );
    let orders = "/api/v1/orders";
    let unauthenticated = it.checked(get.clone(), orders, orders, None).await;
    assert_eq!(unauthenticated.status, 401);
    assert_eq!(unauthenticated.body["code"], "unauthenticated");

    let customer = token(secret, &[]);
    let customer = Some(customer.as_str());
    let listed = it
        .checked_as(customer, get.clone(), orders, orders, None)
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let id = Uuid::new_v4();
    let status = json!({ "status": "processing" });
    let template = "/api/v1/orders/{id}/status";
    let path = format!("/api/v1/orders/{id}/status");
    let put = Method::PUT;
    let forbidden = it
        .checked_as(customer, put, template, &path, Some(&status))
        .await;
    assert_eq!(forbidden.status, 403);
    assert_eq!(forbidden.body["code"], "forbidden");
    let stuck = "/api/v1/ops/orders/stuck";
    let not_operator = it
        .checked_as(customer, get.clone(), stuck, stuck, None)
        .await;
    assert_eq!(not_operator.status, 403);

    let operator = token(secret, &["operator"]);
    let operator = Some(operator.as_str());
    let listed = it.checked_as(operator, get, stuck, stuck, None).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
}

#[tokio::test]
async fn a_change_s_quote_change_and_ledger_fit_the_document() {
    let it = Documented::spawn().await;
    let order = mug_order(Some("pm_card_visa"));
    let made = it
        .checked(
            Method::POST,
            "/api/v1/orders",
            "/api/v1/orders",
            Some(&order),
        )
        .await;
    let id = made.body["id"].as_str().unwrap().to_owned();
    let item = made.body["items"][0]["id"].clone();
    let base = format!("/api/v1/orders/{id}");
    let ops = json!({"operations": [{"op": "set_quantity", "item_id": item, "quantity": 3},
        {"op": "set_shipping_address", "address": {"line1": "2 Side St", "city": "Springfield", "country": "US"}}],
        "reason": "customer called"});

    let quote = it
        .checked(
            Method::POST,
            "/api/v1/orders/{id}/change-quotes",
            &format!("{base}/change-quotes"),
            Some(&ops),
        )
        .await;
    assert_eq!(quote.status, 201, "{}", quote.body);
    let quote_id = quote.body["quote_id"].as_str().unwrap().to_owned();
    it.checked(
        Method::GET,
        "/api/v1/orders/{id}/change-quotes",
        &format!("{base}/change-quotes"),
        None,
    )
    .await;
    let one = format!("{base}/change-quotes/{quote_id}");
    it.checked(
        Method::GET,
        "/api/v1/orders/{id}/change-quotes/{quote_id}",
        &one,
        None,
    )
    .await;

    // Applied with If-Match, which the walk of `checked` does not send.
    let applied = it
        .app
        .http
        .post(format!("{}{base}/changes", it.root))
        .header("If-Match", made.body["version"].to_string())
        .json(&json!({"quote_id": quote_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(applied.status(), 201);
    let change: Value = applied.json().await.unwrap();
    let operation = &it.doc["paths"]["/api/v1/orders/{id}/changes"]["post"];
    let schema = &operation["responses"]["201"]["content"]["application/json"]["schema"];
    it.fits(
        schema,
        &change,
        "201 answer of POST /api/v1/orders/{id}/changes",
    );
    let change_id = change["change_id"].as_str().unwrap();

    it.checked(
        Method::GET,
        "/api/v1/orders/{id}/changes",
        &format!("{base}/changes"),
        None,
    )
    .await;
    let one = format!("{base}/changes/{change_id}");
    it.checked(
        Method::GET,
        "/api/v1/orders/{id}/changes/{change_id}",
        &one,
        None,
    )
    .await;
    let ledger = it
        .checked(
            Method::GET,
            "/api/v1/orders/{id}/ledger",
            &format!("{base}/ledger"),
            None,
        )
        .await;
    assert_eq!(ledger.body["charged"], "152.15", "{}", ledger.body);

    // A change left to the customer, paid; another, cancelled while it waits.
    let mut version = ledger.body["version"].as_i64().unwrap();
    for (path, body, quantity) in [
        ("payments", json!({"method": "pm_card_visa"}), 5),
        (
            "cancel",
            json!({"reason": "customer changed their mind"}),
            6,
        ),
    ] {
        let waiting = it
            .app
            .http
            .post(format!("{}{base}/changes", it.root))
            .header("If-Match", version.to_string())
            .json(&json!({"operations": [{"op": "set_quantity", "item_id": item, "quantity": quantity}],
                          "collect": "await_customer"}))
            .send()
            .await
            .unwrap();
        let status = waiting.status();
        let waiting: Value = waiting.json().await.unwrap();
        assert_eq!(status, 201, "{waiting}");
        it.fits(
            schema,
            &waiting,
            "201 answer of POST /api/v1/orders/{id}/changes",
        );
        let template = format!("/api/v1/orders/{{id}}/changes/{{change_id}}/{path}");
        let url = format!(
            "{base}/changes/{}/{path}",
            waiting["change_id"].as_str().unwrap()
        );
        let answer = it.checked(Method::POST, &template, &url, Some(&body)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        if path == "payments" {
            assert_eq!(answer.body["status"], "applied", "{}", answer.body);
            version = answer.body["version_after"].as_i64().unwrap();
        } else {
            assert_eq!(answer.body["status"], "cancelled", "{}", answer.body);
        }
    }
}
