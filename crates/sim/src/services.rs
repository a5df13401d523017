//! One call to a simulated service, inside the state lock: the `Idempotency-Key` check,
//! replay of an earlier answer, and dispatch to the operation.

use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::{json, Value};

use super::SimState;

/// One operation of one simulated service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Op {
    Reserve,
    Release,
    Commit,
    Restock,
    Charge,
    Refund,
    Fulfil,
    CancelFulfillment,
    UpdateFulfillment,
    Notify,
    Publish,
    /// `GET /v1/reservations?idempotency_key=`: what a reserve under that key made.
    FindReservations,
    /// `GET /v1/payments?idempotency_key=`: what a charge under that key made.
    FindPayments,
    /// `GET /v1/fulfillments?idempotency_key=`: what a create under that key made.
    FindFulfillments,
}

impl Op {
    /// Every operation, in route order.
    pub(super) const ALL: [Op; 14] = [
        Op::Reserve,
        Op::FindReservations,
        Op::Release,
        Op::Commit,
        Op::Restock,
        Op::Charge,
        Op::FindPayments,
        Op::Refund,
        Op::Fulfil,
        Op::FindFulfillments,
        Op::CancelFulfillment,
        Op::UpdateFulfillment,
        Op::Notify,
        Op::Publish,
    ];

    /// Service name, as faults and the ledger spell it.
    pub(super) fn service(self) -> &'static str {
        match self {
            Op::Reserve | Op::FindReservations | Op::Release | Op::Commit | Op::Restock => {
                "warehouse"
            }
            Op::Charge | Op::FindPayments | Op::Refund => "payment",
            Op::Fulfil | Op::FindFulfillments | Op::CancelFulfillment | Op::UpdateFulfillment => {
                "fulfillment"
            }
            Op::Notify => "notification",
            Op::Publish => "pubsub",
        }
    }

    /// Operation name, as faults and the ledger spell it.
    pub(super) fn name(self) -> &'static str {
        match self {
            Op::Reserve => "reserve",
            Op::Release => "release",
            Op::Commit => "commit",
            Op::Restock => "restock",
            Op::Charge => "charge",
            Op::Refund => "refund",
            Op::Fulfil => "create",
            Op::CancelFulfillment => "cancel",
            Op::UpdateFulfillment => "update",
            Op::Notify => "notify",
            Op::Publish => "publish",
            Op::FindReservations | Op::FindPayments | Op::FindFulfillments => "lookup",
        }
    }

    /// For a lookup, the call it looks up and the field of its answer's list.
    fn looks_up(self) -> Option<(Op, &'static str)> {
        match self {
            Op::FindReservations => Some((Op::Reserve, "reservations")),
            Op::FindPayments => Some((Op::Charge, "payments")),
            Op::FindFulfillments => Some((Op::Fulfil, "fulfillments")),
            _ => None,
        }
    }
}

/// A request to a service route, stripped of everything HTTP.
#[derive(Debug, Clone)]
pub(super) struct Incoming {
    pub op: Op,
    /// Path parameters in route order (resource id, or pubsub and topic).
    pub params: Vec<String>,
    pub path: String,
    /// The `Idempotency-Key` of a call; for a lookup, the key it asks about.
    pub idempotency_key: Option<String>,
    /// The W3C `traceparent` header, if any.
    pub traceparent: Option<String>,
    pub body: Bytes,
}

impl Incoming {
    /// The path parameter at `index`, or `""`.
    pub(super) fn param(&self, index: usize) -> &str {
        self.params.get(index).map_or("", String::as_str)
    }
}

/// A status and JSON body; `Value::Null` means no body.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    pub(super) fn new(status: StatusCode, body: Value) -> Self {
        Self { status, body }
    }

    /// The contract's error shape `{"code", "message"}`.
    pub(super) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self::new(status, json!({ "code": code, "message": message.into() }))
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::error(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// Adds a field to an error body, such as the contract's `sku`.
    pub(super) fn with_field(mut self, name: &str, value: &str) -> Self {
        self.body[name] = Value::from(value);
        self
    }
}

/// How a call was answered.
#[derive(Debug, Clone)]
pub(super) struct Outcome {
    pub reply: Reply,
    pub replayed: bool,
}

impl Outcome {
    fn fresh(reply: Reply) -> Self {
        Self {
            reply,
            replayed: false,
        }
    }
}

/// The first answer given to an (operation, key) pair.
#[derive(Debug, Clone)]
pub(super) struct Recorded {
    path: String,
    body: Value,
    reply: Reply,
}

/// An operation's answer; `Err` carries a rejection so `?` can short-circuit.
pub(super) type OpResult = Result<Reply, Reply>;

impl SimState {
    /// Answers one call: key and JSON checks, idempotent replay, then the operation.
    pub(super) fn handle(&mut self, req: &Incoming) -> Outcome {
        if let Some((call, list)) = req.op.looks_up() {
            return Outcome::fresh(self.look_up(req, call, list));
        }
        if req.op == Op::Publish {
            let result = parse_json(&req.body).and_then(|event| self.publish(req, event));
            return Outcome::fresh(flatten(result));
        }
        let Some(key) = req.idempotency_key.clone() else {
            return Outcome::fresh(Reply::error(
                StatusCode::BAD_REQUEST,
                "missing_idempotency_key",
                "the Idempotency-Key header is required",
            ));
        };
        let body = match parse_json(&req.body) {
            Ok(body) => body,
            Err(reply) => return Outcome::fresh(reply),
        };
        if let Some(recorded) = self.idempotency.get(&(req.op, key.clone())) {
            return replay(recorded, req, &body);
        }
        let reply = flatten(self.apply(req, &key, &body));
        // A 400 means the request was not understood, so the key stays free for a fixed body.
        if reply.status != StatusCode::BAD_REQUEST {
            let recorded = Recorded {
                path: req.path.clone(),
                body,
                reply: reply.clone(),
            };
            self.idempotency.insert((req.op, key), recorded);
        }
        Outcome::fresh(reply)
    }

    fn apply(&mut self, req: &Incoming, key: &str, body: &Value) -> OpResult {
        match req.op {
            Op::Reserve => self.reserve(key, body),
            Op::Release => self.release(req.param(0), key, body),
            Op::Commit => self.commit(req.param(0)),
            Op::Restock => self.restock(body),
            Op::Charge => self.charge(key, body),
            Op::Refund => self.refund(req.param(0), key, body),
            Op::Fulfil => self.fulfil(body),
            Op::CancelFulfillment => self.cancel_fulfillment(req.param(0), body),
            Op::UpdateFulfillment => self.update_fulfillment(req.param(0), body),
            Op::Notify => self.notify(body),
            Op::Publish => unreachable!("publish bypasses idempotency"),
            Op::FindReservations | Op::FindPayments | Op::FindFulfillments => {
                unreachable!("lookups bypass idempotency")
            }
        }
    }

    /// A lookup by idempotency key: `{list: [...]}` with the body of the `2xx` answer
    /// that `call` under the key gave, empty when none took effect. It reads only.
    fn look_up(&self, req: &Incoming, call: Op, list: &str) -> Reply {
        let Some(key) = req.idempotency_key.clone() else {
            return Reply::bad_request("the idempotency_key query parameter is required");
        };
        let made: Vec<Value> = self
            .idempotency
            .get(&(call, key))
            .filter(|recorded| recorded.reply.status.is_success())
            .map(|recorded| recorded.reply.body.clone())
            .into_iter()
            .collect();
        Reply::new(StatusCode::OK, json!({ list: made }))
    }
}

/// Same key: the same (path, parsed body) replays the first answer, anything else is a 422.
fn replay(recorded: &Recorded, req: &Incoming, body: &Value) -> Outcome {
    if recorded.path == req.path && recorded.body == *body {
        return Outcome {
            reply: recorded.reply.clone(),
            replayed: true,
        };
    }
    Outcome::fresh(Reply::error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        "the Idempotency-Key was already used for a different request",
    ))
}

fn flatten(result: OpResult) -> Reply {
    match result {
        Ok(reply) | Err(reply) => reply,
    }
}

/// Parses the raw body; an empty body counts as `{}` for calls such as commit.
fn parse_json(body: &Bytes) -> Result<Value, Reply> {
    if body.trim_ascii().is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| Reply::bad_request(format!("malformed JSON: {e}")))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A call as the routes would build it.
    pub(crate) fn call(op: Op, params: &[&str], key: Option<&str>, body: Value) -> Incoming {
        Incoming {
            op,
            params: params.iter().map(|p| p.to_string()).collect(),
            path: format!("/test/{}/{}", op.name(), params.join("/")),
            idempotency_key: key.map(str::to_owned),
            traceparent: None,
            body: Bytes::from(body.to_string()),
        }
    }

    pub(crate) fn charge(amount: &str, method: &str) -> Value {
        json!({ "order_id": "o-1", "amount": amount, "currency": "USD", "method": method })
    }

    #[test]
    fn charge_replays_without_double_capture_when_key_and_body_repeat() {
        let mut state = SimState::default();
        let req = call(
            Op::Charge,
            &[],
            Some("o-1:charge"),
            charge("129.9", "pm_card_visa"),
        );

        let first = state.handle(&req);
        let second = state.handle(&req);

        assert_eq!(first.reply.status, StatusCode::CREATED);
        assert_eq!(first.reply.body["amount"], "129.90");
        assert_eq!(second.reply, first.reply);
        assert!(second.replayed);
        assert_eq!(state.ledger.captures.len(), 1);
    }

    #[test]
    fn charge_rejects_key_reuse_when_body_differs() {
        let mut state = SimState::default();
        state.handle(&call(
            Op::Charge,
            &[],
            Some("k"),
            charge("10", "pm_card_visa"),
        ));

        let reused = state.handle(&call(
            Op::Charge,
            &[],
            Some("k"),
            charge("11", "pm_card_visa"),
        ));

        assert_eq!(reused.reply.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(reused.reply.body["code"], "idempotency_key_reused");
        assert_eq!(state.ledger.captures.len(), 1);
    }

    #[test]
    fn call_rejected_when_idempotency_key_missing() {
        let mut state = SimState::default();

        let outcome = state.handle(&call(Op::Charge, &[], None, charge("5.00", "pm_card_visa")));

        assert_eq!(outcome.reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(outcome.reply.body["code"], "missing_idempotency_key");
    }
}
