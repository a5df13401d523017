//! Built-in downstream simulator: warehouse, payment, fulfillment, notification and
//! Dapr-style pub/sub on one port, per `downstream-contract.md`, with fault injection.
//!
//! Local runs point every unset `ORDER_*_SERVICE_ADDR` here; tests assert side effects
//! through the [`Ledger`] and break calls with [`Fault`]s. Control API:
//!
//! | call | effect |
//! |---|---|
//! | `POST /_sim/faults` (a [`Fault`] as JSON) | `204`, adds the fault |
//! | `DELETE /_sim/faults` | `204`, clears all faults |
//! | `GET /_sim/ledger` | `200`, the [`Ledger`] |
//! | `POST /_sim/reset` | `204`, clears ledger, faults and idempotency records |
//! | `POST /_sim/fulfillments/{id}/ship` | `204`, marks a fulfillment shipped (`404` if unknown) |
//! | `GET /_sim/health` | `200 {"status":"ok"}` |
//!
//! A reservation that is not committed by its `expires_at` (the reservation TTL of
//! [`SimConfig`], one hour by default) gives its stock back: it turns `expired` in the
//! ledger the next time the simulator is called or read.

mod faults;
mod ledger;
mod operations;
mod routes;
mod services;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use faults::{DropMode, Fault};
pub use ledger::{
    Call, Capture, Decline, Event, Fulfillment, FulfillmentStatus, Ledger, Notification, Refund,
    Release, Reservation, ReservationStatus, ReservedItem, Restock, SkuQty, StockItem,
};

use services::{Op, Recorded, Reply};

/// How a simulator behaves beyond the contract's fixed rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// How long a reservation holds its stock unless it is committed.
    pub reservation_ttl: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            reservation_ttl: Duration::from_secs(3600),
        }
    }
}

impl SimConfig {
    /// Sets the reservation TTL.
    pub fn with_reservation_ttl(mut self, ttl: Duration) -> Self {
        self.reservation_ttl = ttl;
        self
    }
}

/// The simulator: cheap to clone, all clones share one state.
#[derive(Debug, Clone, Default)]
pub struct Simulator {
    inner: Arc<Mutex<SimState>>,
}

/// Everything the simulator remembers; guarded by one mutex never held across an `.await`.
#[derive(Debug, Default)]
struct SimState {
    config: SimConfig,
    ledger: Ledger,
    faults: Vec<Fault>,
    idempotency: HashMap<(Op, String), Recorded>,
    /// Reservations that may still expire: (`expires_at`, index in the ledger), soonest first.
    expiries: BinaryHeap<Reverse<(DateTime<Utc>, usize)>>,
    /// Calls a fault is delaying now, by operation: the caller waits inside them.
    delayed: Vec<Op>,
}

impl SimState {
    fn new(config: SimConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }
}

/// A simulator serving in a background task; dropping the handle stops it.
#[derive(Debug)]
pub struct SimHandle {
    /// Address actually bound (the real port when bound to port 0).
    pub addr: SocketAddr,
    /// The served simulator, for ledger reads and fault injection in-process.
    pub sim: Simulator,
    stop: oneshot::Sender<()>,
}

impl Simulator {
    /// A simulator with an empty ledger, no faults and the default [`SimConfig`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A simulator with an empty ledger, no faults and `config`.
    pub fn with_config(config: SimConfig) -> Self {
        Self {
            inner: Arc::new(Mutex::new(SimState::new(config))),
        }
    }

    /// All five services plus the control API under `/_sim`.
    pub fn router(&self) -> Router {
        routes::service_routes()
            .merge(control_routes())
            .fallback(unknown_route)
            .with_state(self.clone())
    }

    /// Binds `addr` (port 0 allowed) and serves a new simulator in a background task.
    pub async fn spawn(addr: SocketAddr) -> anyhow::Result<SimHandle> {
        Self::new().bind(addr).await
    }

    /// Like [`Simulator::spawn`], with `config` instead of the defaults.
    pub async fn spawn_with(addr: SocketAddr, config: SimConfig) -> anyhow::Result<SimHandle> {
        Self::with_config(config).bind(addr).await
    }

    /// Binds `addr` and serves this simulator in a background task.
    pub async fn bind(&self, addr: SocketAddr) -> anyhow::Result<SimHandle> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        let addr = listener
            .local_addr()
            .context("Failed to read the simulator's address")?;
        let (stop, stopped) = oneshot::channel::<()>();
        let router = self.router();
        tokio::spawn(async move {
            // Fires on `shutdown()` and when the handle (the sender) is dropped.
            let signal = async {
                let _ = stopped.await;
            };
            let served = axum::serve(listener, router).with_graceful_shutdown(signal);
            if let Err(error) = served.await {
                tracing::error!(sim = true, %error, "simulator server failed");
            }
        });
        tracing::info!(sim = true, %addr, "downstream simulator listening");
        Ok(SimHandle {
            addr,
            sim: self.clone(),
            stop,
        })
    }

    /// Whether a call of `operation` (`charge`, `reserve`, ...) is being delayed by a
    /// fault now: its caller is waiting inside that step, where a test can kill it.
    pub fn delaying(&self, operation: &str) -> bool {
        self.state().delayed.iter().any(|op| op.name() == operation)
    }

    /// A snapshot of the ledger.
    pub fn ledger(&self) -> Ledger {
        self.state().ledger.clone()
    }

    /// Adds a fault; faults are tried in the order they were added.
    ///
    /// # Panics
    /// If the fault is invalid (see [`Fault::validate`]), since it would never fire.
    pub fn inject(&self, fault: Fault) {
        if let Err(reason) = self.try_inject(fault) {
            panic!("invalid simulator fault: {reason}");
        }
    }

    fn try_inject(&self, fault: Fault) -> Result<(), String> {
        fault.validate()?;
        tracing::info!(sim = true, ?fault, "fault added");
        self.state().faults.push(fault);
        Ok(())
    }

    /// Removes the first fault equal to `fault`, if there is one (a fault that ran out
    /// of `times` is gone already).
    pub fn remove_fault(&self, fault: &Fault) {
        let mut state = self.state();
        if let Some(at) = state.faults.iter().position(|f| f == fault) {
            state.faults.remove(at);
            tracing::info!(sim = true, ?fault, "fault removed");
        }
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.state().faults.clear();
        tracing::info!(sim = true, "faults cleared");
    }

    /// Clears the ledger, the faults and the idempotency records; keeps the config.
    pub fn reset(&self) {
        let mut state = self.state();
        let config = state.config.clone();
        *state = SimState::new(config);
        drop(state);
        tracing::info!(sim = true, "simulator reset");
    }

    /// Marks a fulfillment shipped so that cancelling or updating it answers `409
    /// already_shipped`.
    /// Returns `false` if there is no such fulfillment.
    pub fn mark_shipped(&self, fulfillment_id: &str) -> bool {
        let mut state = self.state();
        let Ok(fulfillment) = state.fulfillment(fulfillment_id) else {
            return false;
        };
        fulfillment.status = FulfillmentStatus::Shipped;
        true
    }

    /// The state, with every reservation past its `expires_at` expired first, so
    /// that calls and ledger reads all see expiry at the time they happen.
    fn state(&self) -> MutexGuard<'_, SimState> {
        // A panicking test thread must not wedge the simulator for the others.
        let mut state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        state.expire_due(Utc::now());
        state
    }
}

impl SimHandle {
    /// `http://127.0.0.1:PORT` (or the bound address when it is not a wildcard).
    pub fn base_url(&self) -> String {
        match self.addr {
            SocketAddr::V4(addr) if addr.ip().is_unspecified() => {
                format!("http://127.0.0.1:{}", addr.port())
            }
            SocketAddr::V6(addr) if addr.ip().is_unspecified() => {
                format!("http://[::1]:{}", addr.port())
            }
            addr => format!("http://{addr}"),
        }
    }

    /// Stops accepting connections and lets in-flight calls finish.
    pub fn shutdown(self) {
        let _ = self.stop.send(());
    }
}

fn control_routes() -> Router<Simulator> {
    Router::new()
        .route("/_sim/faults", post(add_fault).delete(clear_faults))
        .route("/_sim/ledger", get(get_ledger))
        .route("/_sim/reset", post(reset))
        .route("/_sim/fulfillments/{id}/ship", post(ship_fulfillment))
        .route("/_sim/health", get(health))
}

async fn add_fault(State(sim): State<Simulator>, body: Bytes) -> Response {
    let added = serde_json::from_slice::<Fault>(&body)
        .map_err(|e| e.to_string())
        .and_then(|fault| sim.try_inject(fault));
    match added {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(reason) => {
            routes::reply_response(Reply::bad_request(format!("invalid fault: {reason}")))
        }
    }
}

async fn clear_faults(State(sim): State<Simulator>) -> StatusCode {
    sim.clear_faults();
    StatusCode::NO_CONTENT
}

async fn get_ledger(State(sim): State<Simulator>) -> Json<Ledger> {
    Json(sim.ledger())
}

async fn reset(State(sim): State<Simulator>) -> StatusCode {
    sim.reset();
    StatusCode::NO_CONTENT
}

async fn ship_fulfillment(State(sim): State<Simulator>, Path(id): Path<String>) -> Response {
    if sim.mark_shipped(&id) {
        return StatusCode::NO_CONTENT.into_response();
    }
    let reply = Reply::error(
        StatusCode::NOT_FOUND,
        "fulfillment_not_found",
        format!("no fulfillment {id}"),
    );
    routes::reply_response(reply)
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn unknown_route() -> Response {
    let reply = Reply::error(
        StatusCode::NOT_FOUND,
        "not_found",
        "the simulator has no such route",
    );
    routes::reply_response(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    async fn spawn() -> SimHandle {
        Simulator::spawn(([127, 0, 0, 1], 0).into()).await.unwrap()
    }

    async fn post(
        sim: &SimHandle,
        path: &str,
        key: &str,
        body: Value,
    ) -> reqwest::Result<reqwest::Response> {
        let url = format!("{}{path}", sim.base_url());
        let request = reqwest::Client::new().post(url).json(&body);
        let request = if key.is_empty() {
            request
        } else {
            request.header("Idempotency-Key", key)
        };
        request.send().await
    }

    fn charge() -> Value {
        json!({ "order_id": "o-1", "amount": "20.00", "currency": "USD", "method": "pm_card_visa" })
    }

    #[tokio::test]
    async fn charge_applies_once_when_dropped_after_and_retried() {
        let sim = spawn().await;
        sim.sim.inject(
            Fault::new("payment")
                .on("charge")
                .with_drop(DropMode::After)
                .with_times(1),
        );

        let first = match post(&sim, "/v1/payments", "o-1:charge", charge()).await {
            Ok(response) => response.bytes().await.map(|_| ()),
            Err(error) => Err(error),
        };
        let retry = post(&sim, "/v1/payments", "o-1:charge", charge())
            .await
            .unwrap();

        assert!(
            first.is_err(),
            "a dropped call must not look like an answer"
        );
        assert_eq!(retry.status(), reqwest::StatusCode::CREATED);
        let ledger = sim.sim.ledger();
        assert_eq!(ledger.captures.len(), 1);
        let calls: Vec<_> = ledger
            .calls
            .iter()
            .map(|c| (c.status, c.replayed))
            .collect();
        assert_eq!(calls, [(0, false), (201, true)]);
    }

    #[tokio::test]
    async fn status_fault_skips_side_effect_when_injected_through_control_api() {
        let sim = spawn().await;
        let fault =
            json!({ "service": "warehouse", "operation": "reserve", "status": 503, "times": 1 });
        let items = json!([{ "product_id": "p", "sku": "A", "warehouse_id": "w", "quantity": 1 }]);
        let reserve = json!({ "order_id": "o-1", "items": items });

        let added = post(&sim, "/_sim/faults", "", fault).await.unwrap();
        let faulted = post(&sim, "/v1/reservations", "o-1:reserve", reserve.clone())
            .await
            .unwrap();
        let faulted_status = faulted.status();
        let faulted_body: Value = faulted.json().await.unwrap();
        let retried = post(&sim, "/v1/reservations", "o-1:reserve", reserve)
            .await
            .unwrap();
        let url = format!("{}/_sim/ledger", sim.base_url());
        let ledger: Ledger = reqwest::get(url).await.unwrap().json().await.unwrap();

        assert_eq!(added.status(), reqwest::StatusCode::NO_CONTENT);
        assert_eq!(faulted_status, reqwest::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(faulted_body["code"], "injected_fault");
        assert_eq!(retried.status(), reqwest::StatusCode::CREATED);
        assert_eq!(ledger.reservations.len(), 1);
        let statuses: Vec<_> = ledger.calls.iter().map(|c| c.status).collect();
        assert_eq!(statuses, [503, 201]);
    }

    async fn look_up(sim: &SimHandle, path: &str, key: &str) -> (u16, Value) {
        let url = format!("{}{path}", sim.base_url());
        let query = [("idempotency_key", key)];
        let response = reqwest::Client::new()
            .get(url)
            .query(&query)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    #[tokio::test]
    async fn lookup_lists_what_the_key_made_and_makes_nothing_itself() {
        let sim = spawn().await;
        sim.sim
            .inject(Fault::new("payment").on("charge").with_status(503));

        let faulted = post(&sim, "/v1/payments", "o-1:charge", charge())
            .await
            .unwrap();
        let before = look_up(&sim, "/v1/payments", "o-1:charge").await;
        sim.sim.clear_faults();
        let created: Value = post(&sim, "/v1/payments", "o-1:charge", charge())
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let after = look_up(&sim, "/v1/payments", "o-1:charge").await;
        let other = look_up(&sim, "/v1/reservations", "o-1:charge").await;

        assert_eq!(faulted.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(before, (200, json!({ "payments": [] })));
        assert_eq!(after, (200, json!({ "payments": [created] })));
        assert_eq!(other, (200, json!({ "reservations": [] })));
        let ledger = sim.sim.ledger();
        assert_eq!(ledger.captures.len(), 1, "lookups charge nothing");
        assert!(ledger.reservations.is_empty());
        let lookups = ledger.calls.iter().filter(|c| c.operation == "lookup");
        assert_eq!(lookups.count(), 3, "each lookup is logged as a call");
    }

    #[tokio::test]
    async fn lookup_answers_an_injected_fault_and_needs_a_key() {
        let sim = spawn().await;
        sim.sim.inject(
            Fault::new("fulfillment")
                .on("lookup")
                .with_status(503)
                .with_times(1),
        );

        let faulted = look_up(&sim, "/v1/fulfillments", "o-1:ship").await;
        let answered = look_up(&sim, "/v1/fulfillments", "o-1:ship").await;
        let url = format!("{}/v1/fulfillments", sim.base_url());
        let keyless = reqwest::get(url).await.unwrap().status();

        assert_eq!(faulted.0, 503);
        assert_eq!(faulted.1["code"], "injected_fault");
        assert_eq!(answered, (200, json!({ "fulfillments": [] })));
        assert_eq!(keyless, reqwest::StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn a_removed_bus_outage_ends_while_other_faults_stay() {
        let sim = spawn().await;
        let outage = Fault::new("pubsub").on("publish").with_status(404);
        sim.sim.inject(Fault::new("payment").with_status(503));
        sim.sim.inject(outage.clone());
        let event = json!({
            "specversion": "1.0", "id": "e-1", "source": "order-service", "type": "order.created",
            "time": "2025-01-01T00:00:00Z", "datacontenttype": "application/json", "data": {}
        });
        let publish = || {
            post(
                &sim,
                "/v1.0/publish/pubsub/order.created",
                "e-1",
                event.clone(),
            )
        };

        let refused = publish().await.unwrap().status();
        sim.sim.remove_fault(&outage);
        let published = publish().await.unwrap().status();
        let charged = post(&sim, "/v1/payments", "o-1:charge", charge()).await;

        assert_eq!(refused, reqwest::StatusCode::NOT_FOUND);
        assert_eq!(published, reqwest::StatusCode::NO_CONTENT);
        assert_eq!(
            charged.unwrap().status(),
            reqwest::StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(sim.sim.ledger().events.len(), 1);
    }

    #[tokio::test]
    async fn cancel_answers_already_shipped_when_marked_shipped() {
        let sim = spawn().await;
        let items = json!([{ "sku": "A", "warehouse_id": "w", "quantity": 1 }]);
        let body = json!({ "order_id": "o-1", "items": items, "shipping_address": {} });
        let created: Value = post(&sim, "/v1/fulfillments", "o-1:ship", body)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["fulfillment_id"].as_str().unwrap();

        let shipped = post(
            &sim,
            &format!("/_sim/fulfillments/{id}/ship"),
            "",
            json!({}),
        )
        .await
        .unwrap();
        let cancel = post(
            &sim,
            &format!("/v1/fulfillments/{id}/cancel"),
            "o-1:cancel",
            json!({}),
        )
        .await
        .unwrap();

        assert_eq!(shipped.status(), reqwest::StatusCode::NO_CONTENT);
        assert_eq!(cancel.status(), reqwest::StatusCode::CONFLICT);
        let body: Value = cancel.json().await.unwrap();
        assert_eq!(body["code"], "already_shipped");
    }

    #[tokio::test]
    async fn publish_records_every_event_when_sent_as_cloudevents_json() {
        let sim = spawn().await;
        let event = json!({
            "specversion": "1.0", "id": "o-1:created", "source": "order-service",
            "type": "order.created", "time": "2025-01-01T00:00:00Z",
            "datacontenttype": "application/json", "data": { "order_id": "o-1" }
        });
        let url = format!("{}/v1.0/publish/pubsub/order.created", sim.base_url());
        let client = reqwest::Client::new();
        let publish = || {
            client
                .post(&url)
                .header("content-type", "application/cloudevents+json")
                .body(event.to_string())
                .send()
        };

        let first = publish().await.unwrap();
        let second = publish().await.unwrap();

        assert_eq!(first.status(), reqwest::StatusCode::NO_CONTENT);
        assert_eq!(second.status(), reqwest::StatusCode::NO_CONTENT);
        let events = sim.sim.ledger().events;
        assert_eq!(events.len(), 2);
        assert_eq!(
            (events[0].type_.as_str(), events[0].id.as_str()),
            ("order.created", "o-1:created")
        );
    }

    #[tokio::test]
    async fn reservation_expires_over_http_when_ttl_passes_without_commit() {
        let ttl = std::time::Duration::from_millis(300);
        let config = SimConfig::default().with_reservation_ttl(ttl);
        let sim = Simulator::spawn_with(([127, 0, 0, 1], 0).into(), config)
            .await
            .unwrap();
        let items = json!([{ "product_id": "p", "sku": "A", "warehouse_id": "w", "quantity": 1 }]);
        let reserve = json!({ "order_id": "o-1", "items": items });
        let created: Value = post(&sim, "/v1/reservations", "o-1:reserve", reserve)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["reservation_id"].as_str().unwrap();

        tokio::time::sleep(ttl + std::time::Duration::from_millis(100)).await;
        let url = format!("{}/_sim/ledger", sim.base_url());
        let ledger: Ledger = reqwest::get(url).await.unwrap().json().await.unwrap();
        let commit = post(
            &sim,
            &format!("/v1/reservations/{id}/commit"),
            "o-1:commit",
            json!({}),
        )
        .await
        .unwrap();

        assert_eq!(ledger.reservations[0].status, ReservationStatus::Expired);
        assert_eq!(commit.status(), reqwest::StatusCode::CONFLICT);
        let body: Value = commit.json().await.unwrap();
        assert_eq!(body["code"], "reservation_released");
    }

    #[test]
    fn reset_keeps_the_reservation_ttl() {
        let ttl = std::time::Duration::from_secs(42);
        let sim = Simulator::with_config(SimConfig::default().with_reservation_ttl(ttl));

        sim.reset();

        assert_eq!(sim.state().config.reservation_ttl, ttl);
    }

    #[tokio::test]
    async fn spawn_stops_serving_when_shut_down() {
        let sim = spawn().await;
        let url = format!("{}/_sim/health", sim.base_url());
        assert!(reqwest::get(&url).await.unwrap().status().is_success());

        sim.shutdown();

        for _ in 0..100 {
            if reqwest::get(&url).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the simulator still answers after shutdown");
    }
}
