//! Test harness: each `TestApp` stands on an `order-stack` [`Stack`] of its own (a
//! database, restate-server, the simulator and the service process, all on free
//! ports), so tests run in parallel.

use order_service::engine::secrets::RequestIdentity;
use order_sim::{
    Call, Capture, Event, Fault, Fulfillment, Ledger, Notification, Refund, Release, Reservation,
    SimConfig,
};
use order_stack::restate_server::{RestateServer, RestateSettings};
use order_stack::{Stack, StackOptions, Topology};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The server that test databases are created on.
pub fn admin_dsn() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A restate-server on free loopback ports with its data under `dir/restate`,
/// signing with the request identity kept in `dir`.
pub fn restate_settings(dir: &std::path::Path) -> RestateSettings {
    let identity = RequestIdentity::in_dir(dir).unwrap().private_key_file;
    RestateSettings::on_free_ports(&dir.join("restate"), Some(identity)).unwrap()
}

/// The `order-stack` binary (`dev`, `cluster`, `serve` with the fault hook), beside
/// the service's: cargo builds it with every binary of the workspace (`make test`:
/// `cargo test --workspace`), not for this package's tests alone.
pub fn order_stack_bin() -> PathBuf {
    let bin =
        std::path::Path::new(env!("CARGO_BIN_EXE_order-service")).with_file_name("order-stack");
    assert!(
        bin.is_file(),
        "{} not found: build it first with `cargo build --release -p order-stack` \
         (`make test` builds it)",
        bin.display()
    );
    bin
}

/// Extra environment for the service process, and the simulator's settings.
#[derive(Default, Clone)]
pub struct Options {
    pub env: Vec<(&'static str, String)>,
    pub sim: SimConfig,
    /// A cluster of three restate-server nodes (replication 2) instead of one
    /// node; the service lists all three, node 1 first.
    pub cluster: bool,
}

/// A [`Stack`] of one service process (its simulator `sim`, its database `db`...),
/// with the calls the tests make.
pub struct TestApp {
    pub http: reqwest::Client,
    /// `http://127.0.0.1:PORT/api/v1`
    pub api: String,
    /// `http://127.0.0.1:PORT`, the gRPC server.
    pub grpc: String,
    stack: Stack,
}

impl std::ops::Deref for TestApp {
    type Target = Stack;

    fn deref(&self) -> &Stack {
        &self.stack
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(options: Options) -> TestApp {
        let topology = match options.cluster {
            true => Topology::Cluster,
            false => Topology::Single,
        };
        let service_env: Vec<(String, String)> = [
            ("ORDER_DOWNSTREAM_TIMEOUT_MS", "3000".to_owned()),
            ("ORDER_DB_MAX_CONNECTIONS", "8".to_owned()),
        ]
        .into_iter()
        .chain(options.env)
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        // The service a deployment runs, or `order-stack serve` (the same service
        // with the tests' fault hook) when the test sets that hook.
        let service_bin = if service_env
            .iter()
            .any(|(k, _)| k.starts_with("ORDER_FAULT_"))
        {
            order_stack_bin()
        } else {
            PathBuf::from(env!("CARGO_BIN_EXE_order-service"))
        };
        let stack_options = StackOptions {
            // One service, also on a cluster.
            replicas: 1,
            service_env,
            sim: options.sim,
            service_bin: Some(service_bin),
            service_log_filter: std::env::var("RUST_LOG")
                .unwrap_or_else(|_| "info,restate_sdk=warn".into()),
            service_stderr_inherit: std::env::var_os("TEST_LOG").is_some(),
            keep_dir: std::env::var_os("TEST_KEEP").is_some(),
            ..StackOptions::new("test", topology)
        };
        let stack = match Stack::start(&admin_dsn(), &stack_options).await {
            Ok(stack) => stack,
            Err(e) => panic!("the test stack starts: {e:#}"),
        };
        TestApp {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            api: stack.apis[0].clone(),
            grpc: stack.grpcs[0].clone(),
            stack,
        }
    }

    /// Starts the service process and waits for its `ready` line.
    pub async fn start_service(&mut self) {
        if let Err(e) = self.stack.start_service(0).await {
            panic!("{e:#}");
        }
    }

    /// What the service process has logged so far (unless `TEST_LOG` shows it).
    pub fn service_log(&self) -> String {
        std::fs::read_to_string(self.stack.service(0).log_path()).unwrap_or_default()
    }

    /// The environment the service process is started with.
    pub fn service_env(&self) -> Vec<(String, String)> {
        self.stack.service(0).env().to_vec()
    }

    /// Kills the service process at once, as a crash would.
    pub async fn kill_service(&mut self) {
        self.stack.kill_service(0).await;
    }

    /// Kills restate-server at once, as a crash would.
    pub async fn kill_restate(&mut self) {
        self.stack.nodes[0].crash().await;
    }

    /// Starts restate-server again on the same data and ports.
    pub async fn restart_restate(&mut self) {
        self.stack.nodes[0]
            .restart()
            .await
            .expect("restate-server restarts");
    }

    /// The nodes of the Restate cluster (with [`Options::cluster`]), node 1 first.
    pub fn cluster(&mut self) -> &mut [RestateServer] {
        assert_eq!(
            self.stack.nodes.len(),
            3,
            "a TestApp spawned with a cluster"
        );
        &mut self.stack.nodes
    }

    /// Sets `var` in the environment the service process is next started with.
    pub fn set_service_env(&mut self, var: &str, value: String) {
        self.stack.service_mut(0).set_env(var, value);
    }

    /// The API's caller key (`ORDER_INTERNAL_KEY`).
    pub fn secrets_internal_key(&self) -> order_service::caller::CallerKey {
        self.stack.secrets.internal_key.clone()
    }

    /// A client of Restate's ingress that signs its calls as the API does.
    pub fn ingress(&self) -> order_service::engine::ingress::Ingress {
        let url = format!("http://127.0.0.1:{}", self.restate_ingress_port());
        let key = self.stack.secrets.internal_key.clone();
        order_service::engine::ingress::Ingress::new(&[url], key).unwrap()
    }

    /// Restate's admin API (node 1's).
    pub fn restate_admin(&self) -> String {
        self.stack.nodes[0].admin_url.clone()
    }

    /// Restate's ingress port (node 1's).
    pub fn restate_ingress_port(&self) -> u16 {
        self.stack.nodes[0].settings().ingress_port
    }

    /// The id of the invocation of `handler` on the order object `order_id`.
    pub async fn invocation_id(&self, order_id: &str, handler: &str) -> String {
        let query = format!(
            "SELECT id FROM sys_invocation WHERE target_service_key = '{order_id}' \
             AND target_handler_name = '{handler}'"
        );
        let rows: Value = self
            .http
            .post(format!("{}/query", self.restate_admin()))
            .header("accept", "application/json")
            .json(&json!({ "query": query }))
            .send()
            .await
            .expect("admin query sent")
            .json()
            .await
            .expect("admin query answer");
        rows["rows"][0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no {handler} invocation for {order_id}: {rows}"))
            .to_owned()
    }

    /// Cancels the invocation of `handler` on order `order_id` through Restate's
    /// admin API, as an operator would.
    pub async fn cancel_invocation(&self, order_id: &str, handler: &str) {
        self.invocation_action(order_id, handler, "cancel").await;
    }

    /// Kills the invocation of `handler` on order `order_id` through Restate's
    /// admin API: it ends at once, running nothing more (no compensation).
    pub async fn kill_invocation(&self, order_id: &str, handler: &str) {
        self.invocation_action(order_id, handler, "kill").await;
    }

    async fn invocation_action(&self, order_id: &str, handler: &str, verb: &str) {
        let invocation = self.invocation_id(order_id, handler).await;
        let url = format!("{}/invocations/{invocation}/{verb}", self.restate_admin());
        let answer = self.http.patch(url).send().await.unwrap();
        assert!(answer.status().is_success(), "{verb}: {}", answer.status());
    }

    pub fn ledger(&self) -> Ledger {
        self.sim.sim.ledger()
    }

    pub fn inject(&self, fault: Value) {
        let fault: Fault = serde_json::from_value(fault).expect("fault");
        self.sim.sim.inject(fault);
    }

    pub async fn post(&self, path: &str, body: &Value, key: Option<&str>) -> Answer {
        self.send(reqwest::Method::POST, path, body, key).await
    }

    pub async fn put(&self, path: &str, body: &Value, key: Option<&str>) -> Answer {
        self.send(reqwest::Method::PUT, path, body, key).await
    }

    /// Sends `body` as JSON, with an `Idempotency-Key` when `key` is given.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
        key: Option<&str>,
    ) -> Answer {
        self.request(None, method, path, Some(body), key).await
    }

    /// Sends `body` (if any) as JSON, with a bearer `token` and an
    /// `Idempotency-Key` when given.
    async fn request(
        &self,
        token: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.api));
        if let Some(body) = body {
            req = req.json(body);
        }
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        read(req.send().await.expect("request sent")).await
    }

    /// The API as the bearer of `token` calls it.
    pub fn as_caller(&self, token: impl Into<String>) -> AsCaller<'_> {
        AsCaller {
            app: self,
            token: token.into(),
        }
    }

    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> Answer {
        let json = [("content-type", b"application/json".as_slice())];
        self.send_raw(reqwest::Method::POST, path, &json, body)
            .await
    }

    /// Sends `body` as it is, with exactly `headers` (no Content-Type unless given).
    pub async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &[u8])],
        body: Vec<u8>,
    ) -> Answer {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.api))
            .body(body);
        for (name, value) in headers {
            let value = reqwest::header::HeaderValue::from_bytes(value).expect("header value");
            req = req.header(*name, value);
        }
        read(req.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let res = self
            .http
            .get(format!("{}{path}", self.api))
            .send()
            .await
            .expect("request sent");
        let (status, body, _) = read(res).await;
        (status, body)
    }

    /// Creates an order and returns the answer.
    pub async fn create(&self, body: &Value) -> (u16, Value) {
        let (status, body, _) = self.post("/orders", body, None).await;
        (status, body)
    }

    /// Polls the order until `done` holds, for at most `limit`.
    pub async fn wait_for(
        &self,
        id: &str,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let (status, order) = self.get(&format!("/orders/{id}")).await;
            if status == 200 && done(&order) {
                return order;
            }
            assert!(
                start.elapsed() < limit,
                "order {id} did not get there in {limit:?}: {order}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `GET` of `path` until its answer satisfies `done` or `limit` passed; the
    /// last answer, for the caller to assert on.
    pub async fn poll(&self, path: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let (_, now) = self.get(path).await;
            if done(&now) || start.elapsed() > limit {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the simulator's ledger satisfies `done`.
    pub async fn wait_for_ledger(&self, limit: Duration, done: impl Fn(&Ledger) -> bool) -> Ledger {
        let start = Instant::now();
        loop {
            let ledger = self.ledger();
            if done(&ledger) {
                return ledger;
            }
            assert!(
                start.elapsed() < limit,
                "ledger did not get there in {limit:?}: {ledger:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The ledger once the outbox has delivered every event and notification that
    /// can be delivered.
    pub async fn settled_ledger(&self) -> Ledger {
        let start = Instant::now();
        loop {
            let pending = self
                .count("SELECT count(*) FROM outbox WHERE sent_at IS NULL AND refused_at IS NULL")
                .await;
            if pending == 0 {
                return self.ledger();
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{pending} outbox messages still undelivered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.db).await.unwrap()
    }
}

/// Calls to the API with `Authorization: Bearer <token>`.
pub struct AsCaller<'a> {
    app: &'a TestApp,
    token: String,
}

impl AsCaller<'_> {
    pub async fn get(&self, path: &str) -> Answer {
        let get = reqwest::Method::GET;
        self.app
            .request(Some(&self.token), get, path, None, None)
            .await
    }

    pub async fn post(&self, path: &str, body: &Value, key: Option<&str>) -> Answer {
        let post = reqwest::Method::POST;
        self.app
            .request(Some(&self.token), post, path, Some(body), key)
            .await
    }

    pub async fn put(&self, path: &str, body: &Value, key: Option<&str>) -> Answer {
        let put = reqwest::Method::PUT;
        self.app
            .request(Some(&self.token), put, path, Some(body), key)
            .await
    }
}

/// Status, JSON body (`null` when none) and headers of an answer.
pub type Answer = (u16, Value, reqwest::header::HeaderMap);

pub async fn read(res: reqwest::Response) -> Answer {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, body, headers)
}

/// An order body: `(sku, quantity, unit_price)` per line, with a payment when
/// `method` is given.
pub fn order_body(lines: &[(&str, i64, &str)], method: Option<&str>) -> Value {
    let items: Vec<Value> = lines
        .iter()
        .map(|(sku, qty, price)| {
            json!({
                "product_id": Uuid::new_v4(), "product_sku": sku, "product_name": format!("Product {sku}"),
                "warehouse_id": "6f1c1a54-0000-4000-8000-000000000001", "quantity": qty,
                "unit_price": price, "discount_amount": "0.00", "tax_amount": "0.00",
            })
        })
        .collect();
    let mut body = json!({
        "customer_id": Uuid::new_v4(),
        "currency": "USD",
        "items": items,
        "shipping_amount": "5.00",
        "shipping_address": {"line1": "1 Main St", "city": "Springfield", "country": "US"},
        "billing_address": {},
        "notes": null,
        "metadata": {"channel": "web"},
    });
    if let Some(method) = method {
        body["payment"] = json!({ "method": method });
    }
    body
}

/// The seed's example order: 2 x 50.00, discount 10.00, tax 8.10, shipping 5.00.
pub fn mug_order(method: Option<&str>) -> Value {
    let mut body = order_body(&[("SKU-MUG", 2, "50.00")], method);
    body["items"][0]["discount_amount"] = json!("10.00");
    body["items"][0]["tax_amount"] = json!("8.10");
    body
}

/// Asserts that `answer` is a problem+json refusal with `status` and `code`.
pub fn assert_problem(answer: &Answer, status: u16, code: &str) {
    let (got, problem, headers) = answer;
    assert_eq!(
        (*got, problem["code"].as_str()),
        (status, Some(code)),
        "{problem}"
    );
    assert_eq!(headers["content-type"], "application/problem+json");
}

/// What the simulator's ledger holds about one order.
#[derive(Debug)]
pub struct OrderLedger {
    pub reservations: Vec<Reservation>,
    /// Release calls on the order's reservations that took effect.
    pub releases: Vec<Release>,
    pub captures: Vec<Capture>,
    /// Refunds against the order's captures, in the order they were made.
    pub refunds: Vec<Refund>,
    /// Every refund call against the order's captures: failed and replayed ones too.
    pub refund_calls: Vec<Call>,
    pub fulfillments: Vec<Fulfillment>,
    /// Cancel calls on the order's fulfillments that took effect (`200`, not replayed).
    pub fulfillment_cancels: usize,
    /// Published events, each once however often it was delivered.
    pub events: Vec<Event>,
    pub notifications: Vec<Notification>,
}

impl OrderLedger {
    pub fn of(ledger: &Ledger, order_id: &str) -> OrderLedger {
        let reservations: Vec<Reservation> = ledger
            .reservations
            .iter()
            .filter(|r| r.order_id == order_id)
            .cloned()
            .collect();
        let captures: Vec<Capture> = ledger
            .captures
            .iter()
            .filter(|c| c.order_id == order_id)
            .cloned()
            .collect();
        let fulfillments: Vec<Fulfillment> = ledger
            .fulfillments
            .iter()
            .filter(|f| f.order_id == order_id)
            .cloned()
            .collect();
        let releases = ledger
            .releases
            .iter()
            .filter(|r| {
                reservations
                    .iter()
                    .any(|x| x.reservation_id == r.reservation_id)
            })
            .cloned()
            .collect();
        let refunds = ledger
            .refunds
            .iter()
            .filter(|r| captures.iter().any(|c| c.payment_id == r.payment_id))
            .cloned()
            .collect();
        let calls_on = |service: &str, operation: &str, ids: Vec<&str>| -> Vec<Call> {
            ledger
                .calls
                .iter()
                .filter(|c| c.service == service && c.operation == operation)
                .filter(|c| ids.iter().any(|id| c.path.contains(id)))
                .cloned()
                .collect()
        };
        let refund_calls = calls_on(
            "payment",
            "refund",
            captures.iter().map(|c| c.payment_id.as_str()).collect(),
        );
        let fulfillment_cancels = calls_on(
            "fulfillment",
            "cancel",
            fulfillments
                .iter()
                .map(|f| f.fulfillment_id.as_str())
                .collect(),
        )
        .iter()
        .filter(|c| c.status == 200 && !c.replayed)
        .count();
        let mut events: Vec<Event> = Vec::new();
        for event in ledger
            .events
            .iter()
            .filter(|e| e.cloud_event["subject"] == order_id)
        {
            if !events.iter().any(|e| e.id == event.id) {
                events.push(event.clone());
            }
        }
        let notifications = ledger
            .notifications
            .iter()
            .filter(|n| n.order_id == order_id)
            .cloned()
            .collect();
        OrderLedger {
            reservations,
            releases,
            captures,
            refunds,
            refund_calls,
            fulfillments,
            fulfillment_cancels,
            events,
            notifications,
        }
    }

    /// The refunded amounts, in the order they were made.
    pub fn refund_amounts(&self) -> Vec<String> {
        self.refunds.iter().map(|r| cents(r.amount)).collect()
    }

    /// Event topics, in the order they were published.
    pub fn topics(&self) -> Vec<&str> {
        self.events.iter().map(|e| e.topic.as_str()).collect()
    }

    /// How many distinct events of `topic` were published.
    pub fn count_topic(&self, topic: &str) -> usize {
        self.events.iter().filter(|e| e.topic == topic).count()
    }

    /// How many notifications with `template` were sent.
    pub fn count_template(&self, template: &str) -> usize {
        self.notifications
            .iter()
            .filter(|n| n.template == template)
            .count()
    }
}

/// An amount as the API writes it: 2 fraction digits.
pub fn cents(amount: Decimal) -> String {
    format!("{amount:.2}")
}

/// Parses a money string of the API.
pub fn money(text: &Value) -> Decimal {
    text.as_str()
        .unwrap_or_else(|| panic!("not a money string: {text}"))
        .parse()
        .unwrap()
}

/// What `q` more units of `item` (an order resource's item) give back when `given`
/// were given back already: the cumulative rule of api.md's money rules, computed
/// here independently of the service.
pub fn give_back(item: &Value, given: i64, q: i64) -> Decimal {
    let n = item["quantity"].as_i64().unwrap();
    let part = |total: Decimal, m: i64| {
        (total * Decimal::from(m) / Decimal::from(n))
            .round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven)
    };
    let (discount, tax) = (money(&item["discount_amount"]), money(&item["tax_amount"]));
    money(&item["unit_price"]) * Decimal::from(q)
        - (part(discount, given + q) - part(discount, given))
        + (part(tax, given + q) - part(tax, given))
}

/// Moves order `id` through `statuses` with `PUT /status`, each answered `200`;
/// returns the order as the last move answered it.
pub async fn advance(app: &TestApp, id: &str, statuses: &[&str]) -> Value {
    let path = format!("/orders/{id}/status");
    let mut order = Value::Null;
    for to in statuses {
        let (status, moved, _) = app.put(&path, &json!({ "status": to }), None).await;
        assert_eq!(
            (status, moved["status"].as_str()),
            (200, Some(*to)),
            "{moved}"
        );
        order = moved;
    }
    order
}

/// Creates the paid order `body` and moves it to `delivered`; returns it delivered.
pub async fn delivered_order(app: &TestApp, body: &Value) -> Value {
    let (status, order) = app.create(body).await;
    assert_eq!(
        (status, order["status"].as_str()),
        (201, Some("confirmed")),
        "{order}"
    );
    let id = order["id"].as_str().unwrap();
    advance(app, id, &["processing", "shipped", "delivered"]).await
}
