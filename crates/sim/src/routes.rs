//! HTTP face of the simulated services: one route per contract call, each passing through
//! the fault pipeline (delay, injected status, dropped connection) before it is handled.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use chrono::Utc;
use hyper::body::Frame;

use super::faults::{self, DropMode, Effect};
use super::ledger::Call;
use super::services::{Incoming, Op, Outcome, Reply};
use super::Simulator;

/// Routes of all five services; their paths do not clash, so they share one port.
pub(super) fn service_routes() -> Router<Simulator> {
    Router::new()
        .route(
            "/v1/reservations",
            endpoint(Op::Reserve).merge(lookup(Op::FindReservations)),
        )
        .route("/v1/reservations/{id}/release", endpoint(Op::Release))
        .route("/v1/reservations/{id}/commit", endpoint(Op::Commit))
        .route("/v1/restocks", endpoint(Op::Restock))
        .route(
            "/v1/payments",
            endpoint(Op::Charge).merge(lookup(Op::FindPayments)),
        )
        .route("/v1/payments/{id}/refunds", endpoint(Op::Refund))
        .route(
            "/v1/fulfillments",
            endpoint(Op::Fulfil).merge(lookup(Op::FindFulfillments)),
        )
        .route(
            "/v1/fulfillments/{id}/cancel",
            endpoint(Op::CancelFulfillment),
        )
        .route(
            "/v1/fulfillments/{id}/update",
            endpoint(Op::UpdateFulfillment),
        )
        .route("/v1/notifications", endpoint(Op::Notify))
        .route("/v1.0/publish/{pubsub}/{topic}", endpoint(Op::Publish))
}

/// A `POST` handler for `op` that reads the raw body so errors keep the contract's shape.
fn endpoint(op: Op) -> MethodRouter<Simulator> {
    post(
        move |State(sim): State<Simulator>,
              params: Option<Path<Vec<String>>>,
              uri: Uri,
              headers: HeaderMap,
              body: Bytes| async move {
            let incoming = Incoming {
                op,
                params: params.map(|Path(params)| params).unwrap_or_default(),
                path: uri.path().to_owned(),
                idempotency_key: idempotency_key(&headers),
                traceparent: traceparent(&headers),
                body,
            };
            serve(sim, incoming).await
        },
    )
}

/// A `GET ...?idempotency_key=` handler for the lookup `op`: through the same fault
/// pipeline as every call, with the key asked about as the call's key.
fn lookup(op: Op) -> MethodRouter<Simulator> {
    get(
        move |State(sim): State<Simulator>,
              Query(query): Query<HashMap<String, String>>,
              uri: Uri,
              headers: HeaderMap| async move {
            let incoming = Incoming {
                op,
                params: Vec::new(),
                path: uri.path().to_owned(),
                idempotency_key: query
                    .get("idempotency_key")
                    .filter(|k| !k.is_empty())
                    .cloned(),
                traceparent: traceparent(&headers),
                body: Bytes::new(),
            };
            serve(sim, incoming).await
        },
    )
}

fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("idempotency-key")?.to_str().ok()?;
    (!value.is_empty()).then(|| value.to_owned())
}

fn traceparent(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("traceparent")?.to_str().ok()?;
    Some(value.to_owned())
}

async fn serve(sim: Simulator, req: Incoming) -> Response {
    let fault = sim.take_fault(req.op);
    if let Some(delay_ms) = fault.as_ref().and_then(|fault| fault.delay_ms) {
        let _delaying = sim.delay(req.op);
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    match fault.map_or(Effect::Pass, |fault| fault.effect()) {
        Effect::Pass => reply_response(sim.execute(&req, false).reply),
        Effect::Status(status) => {
            sim.record(&req, status);
            injected_response(status)
        }
        Effect::Drop(DropMode::Before) => {
            sim.record(&req, 0);
            dropped_response()
        }
        Effect::Drop(DropMode::After) => {
            sim.execute(&req, true);
            dropped_response()
        }
    }
}

/// A call being delayed, from [`Simulator::delay`] until dropped (also when its
/// caller goes away mid-delay).
struct Delaying {
    sim: Simulator,
    op: Op,
}

impl Drop for Delaying {
    fn drop(&mut self) {
        let mut state = self.sim.state();
        if let Some(n) = state.delayed.iter().position(|op| *op == self.op) {
            state.delayed.remove(n);
        }
    }
}

impl Simulator {
    fn delay(&self, op: Op) -> Delaying {
        self.state().delayed.push(op);
        Delaying {
            sim: self.clone(),
            op,
        }
    }

    fn take_fault(&self, op: Op) -> Option<faults::Fault> {
        let fault = faults::take_fault(&mut self.state().faults, op, faults::random_unit)?;
        tracing::info!(
            sim = true,
            service = op.service(),
            operation = op.name(),
            ?fault,
            "injecting fault"
        );
        Some(fault)
    }

    /// Handles the call and logs it in the ledger under one lock, so both stay in order.
    fn execute(&self, req: &Incoming, dropped: bool) -> Outcome {
        let mut state = self.state();
        let outcome = state.handle(req);
        let status = if dropped {
            0
        } else {
            outcome.reply.status.as_u16()
        };
        state.ledger.calls.push(call(req, status, outcome.replayed));
        outcome
    }

    /// Logs a call that a fault answered before it reached the service.
    fn record(&self, req: &Incoming, status: u16) {
        self.state().ledger.calls.push(call(req, status, false));
    }
}

fn call(req: &Incoming, status: u16, replayed: bool) -> Call {
    tracing::debug!(
        sim = true,
        service = req.op.service(),
        operation = req.op.name(),
        path = %req.path,
        status,
        replayed,
        "simulated call"
    );
    Call {
        service: req.op.service().to_owned(),
        operation: req.op.name().to_owned(),
        path: req.path.clone(),
        idempotency_key: req.idempotency_key.clone(),
        traceparent: req.traceparent.clone(),
        status,
        replayed,
        at: Utc::now(),
    }
}

/// Turns a reply into a response; a `Null` body means none (e.g. `204`).
pub(super) fn reply_response(reply: Reply) -> Response {
    if reply.body.is_null() {
        return reply.status.into_response();
    }
    (reply.status, Json(reply.body)).into_response()
}

fn injected_response(status: u16) -> Response {
    // Fault validation keeps the status in 100..=599; fall back rather than panic.
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = format!("simulator fault injected with status {}", status.as_u16());
    reply_response(Reply::error(status, "injected_fault", message))
}

/// A response whose body fails at once, so hyper aborts the connection.
///
/// The status is a 502 so that a client that somehow sees it still treats it as transient.
fn dropped_response() -> Response {
    (StatusCode::BAD_GATEWAY, Body::new(BrokenBody)).into_response()
}

/// A body that yields an I/O error on its first poll.
struct BrokenBody;

impl HttpBody for BrokenBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let error = io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "simulated dropped connection",
        );
        Poll::Ready(Some(Err(error)))
    }
}
