//! `Idempotency-Key` on mutating calls: the same key and body get the first answer
//! again; the same key with another body is refused.

use super::ApiError;
use crate::auth::Caller;
use crate::domain::FieldError;
use crate::read_model::{self, Claim};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::future::Future;
use uuid::Uuid;

/// An answer (success or refusal), in a form that can be stored and given again.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    /// The order version the command produced, for callers in process (the gRPC
    /// server); it travels in the response's extensions and is not stored.
    pub produced: Option<i64>,
}

/// The order version a command produced (see [`Reply::produced`]); the order in
/// the answer may already be a later one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Produced(pub i64);

/// A refusal, as an answer to keep for the repeats.
impl From<ApiError> for Reply {
    fn from(error: ApiError) -> Self {
        Reply {
            status: error.status(),
            body: error.body(),
            produced: None,
        }
    }
}

/// The URL of what an answer's body is: a change, a quote, a change request or
/// an order.
fn location(body: &Value) -> Option<String> {
    let field = |name: &str| body.get(name).and_then(Value::as_str);
    let under = |order: &str| {
        let (change, quote, request) = (field("change_id"), field("quote_id"), field("request_id"));
        match (change, quote, request) {
            (Some(change), _, _) if body.get("requested_by").is_none() => {
                Some(format!("/api/v1/orders/{order}/changes/{change}"))
            }
            (_, _, Some(request)) if body.get("requested_by").is_some() => {
                Some(format!("/api/v1/orders/{order}/change-requests/{request}"))
            }
            (_, Some(quote), _) => Some(format!("/api/v1/orders/{order}/change-quotes/{quote}")),
            _ => None,
        }
    };
    match (field("order_id"), field("id")) {
        (Some(order), _) => under(order),
        (None, Some(id)) => Some(format!("/api/v1/orders/{id}")),
        _ => None,
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let made = matches!(self.status, StatusCode::CREATED | StatusCode::ACCEPTED);
        let location = made.then(|| location(&self.body)).flatten();
        if self.status.is_client_error() || self.status.is_server_error() {
            return super::error::problem_response(self.status, self.body);
        }
        if self.status == StatusCode::NO_CONTENT {
            return StatusCode::NO_CONTENT.into_response();
        }
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if let Some(version) = self.produced {
            response.extensions_mut().insert(Produced(version));
        }
        if let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        response
    }
}

/// The request's `Idempotency-Key`, scoped to its caller ([`request_key`]). A key
/// that is not usable is refused (`422`) only where the command checks it, after
/// its body and its order: a worse problem of the request is answered first.
pub struct IdemKey(Result<Option<String>, ApiError>);

impl<S: Send + Sync> FromRequestParts<S> for IdemKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        Ok(IdemKey(request_key(&caller, &parts.headers)))
    }
}

impl IdemKey {
    /// The key, if one was sent; `422` if it is not usable.
    pub fn checked(self) -> Result<Option<String>, ApiError> {
        self.0
    }
}

/// The request's `Idempotency-Key`, if it has a usable one, scoped to `caller`:
/// what the read model stores, the order's object remembers and Restate's ingress
/// gets as its own idempotency key, so that one caller's key never names another
/// caller's request.
pub fn request_key(caller: &Caller, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if !key.trim().is_empty() && key.len() <= 255 => Ok(Some(scoped(caller, key))),
        _ => Err(ApiError::Validation(vec![FieldError::new(
            "Idempotency-Key",
            "must be 1 to 255 visible ASCII characters",
        )])),
    }
}

/// `key` in the scope of `caller`. With authorization off there is one scope and
/// the key stays as sent; a token's subject and the key are hashed together (the
/// subject's length first, so that no other pair gives the same text).
fn scoped(caller: &Caller, key: &str) -> String {
    match caller {
        Caller::Anyone => key.to_owned(),
        Caller::Token(claims) => {
            let digest = Sha256::new()
                .chain_update((claims.sub.len() as u64).to_be_bytes())
                .chain_update(claims.sub.as_bytes())
                .chain_update(key.as_bytes())
                .finalize();
            format!("sub-{digest:x}")
        }
    }
}

/// A hash of the request that ignores key order and white space.
pub fn request_hash(value: &Value) -> String {
    fn canonical(v: &Value, out: &mut String) {
        match v {
            Value::Object(map) => {
                let mut keys: Vec<_> = map.keys().collect();
                keys.sort();
                out.push('{');
                for k in keys {
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    canonical(&map[k], out);
                    out.push(',');
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for item in items {
                    canonical(item, out);
                    out.push(',');
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut text = String::new();
    canonical(value, &mut text);
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

/// Answers a request once per `key` in `scope`: a repeat gets the first answer
/// again (the same key with another `request` is refused); otherwise `run` answers
/// with the id bound to the key (a fresh one the first time), and a final answer
/// is kept for the repeats.
pub async fn once<Run, Answered>(
    db: &PgPool,
    scope: &str,
    key: Option<&str>,
    request: &Value,
    run: Run,
) -> Result<Reply, ApiError>
where
    Run: FnOnce(Uuid) -> Answered,
    Answered: Future<Output = Result<Reply, ApiError>>,
{
    let bound = match begin(db, scope, key, request, Uuid::new_v4()).await? {
        Begin::Replay(reply) => return Ok(reply),
        Begin::Proceed(bound) => bound,
    };
    let reply = run(bound).await?;
    finish(db, scope, key, &reply).await?;
    Ok(reply)
}

/// Whether to do the work, and for which order.
enum Begin {
    /// Go on; `order_id` is the one the key is bound to (or the fresh one).
    Proceed(Uuid),
    /// Give this stored answer again.
    Replay(Reply),
}

/// Claims `key` for the request, or finds what it already says.
async fn begin(
    db: &PgPool,
    scope: &str,
    key: Option<&str>,
    request: &Value,
    order_id: Uuid,
) -> Result<Begin, ApiError> {
    let Some(key) = key else {
        return Ok(Begin::Proceed(order_id));
    };
    match read_model::claim_key(db, scope, key, &request_hash(request), order_id).await? {
        Claim::Proceed { order_id } => Ok(Begin::Proceed(order_id)),
        Claim::Replay { status, body } => Ok(Begin::Replay(Reply {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            body,
            produced: None,
        })),
        Claim::Reused => Err(ApiError::IdempotencyKeyReused),
    }
}

/// Stores a final answer under `key`. A `202` is not final: a repeat waits again.
async fn finish(
    db: &PgPool,
    scope: &str,
    key: Option<&str>,
    reply: &Reply,
) -> Result<(), ApiError> {
    if let (Some(key), false) = (key, reply.status == StatusCode::ACCEPTED) {
        read_model::store_response(db, scope, key, reply.status.as_u16(), &reply.body).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_scoped_to_the_subject() {
        let token = |sub: &str| {
            Caller::Token(crate::auth::Claims {
                sub: sub.into(),
                roles: [crate::auth::Role::Customer].into(),
            })
        };
        let mut headers = HeaderMap::new();
        headers.insert("idempotency-key", HeaderValue::from_static("k-1"));
        let key = |caller: &Caller| request_key(caller, &headers).unwrap().unwrap();
        assert_eq!(key(&Caller::Anyone), "k-1");
        assert_eq!(key(&token("alice")), key(&token("alice")));
        assert_ne!(key(&token("alice")), key(&token("bob")));
        assert_ne!(key(&token("alice")), key(&Caller::Anyone));
        // The subject's end cannot be moved into the key.
        assert_ne!(
            scoped(&token("alic"), "ek-1"),
            scoped(&token("alice"), "k-1")
        );
        assert!(key(&token(&"x".repeat(10_000))).len() < 80);
    }

    #[test]
    fn hash_ignores_key_order_but_not_values() {
        let a = json!({"a": 1, "b": {"x": [1, 2], "y": "z"}});
        let b = json!({"b": {"y": "z", "x": [1, 2]}, "a": 1});
        let c = json!({"a": 2, "b": {"x": [1, 2], "y": "z"}});
        assert_eq!(request_hash(&a), request_hash(&b));
        assert_ne!(request_hash(&a), request_hash(&c));
    }
}
