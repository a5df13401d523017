//! Path and query values, checked once: one that does not parse gets a problem, never
//! axum's own plain-text rejection, and never reaches PostgreSQL (which refuses NUL).

use super::ApiError;
use crate::domain::FieldError;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use percent_encoding::percent_decode_str;
use std::collections::HashMap;
use uuid::Uuid;

/// The order id of the path. Anything that is not a UUID (not UTF-8, NUL, ...) names
/// no order.
pub struct OrderId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for OrderId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let raw = path_param(parts, "id").await?;
        raw.parse()
            .map(OrderId)
            .map_err(|_| ApiError::OrderNotFound)
    }
}

/// The return id of the path; anything that is not a UUID names no return.
pub struct ReturnId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for ReturnId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let raw = path_param(parts, "return_id").await?;
        raw.parse()
            .map(ReturnId)
            .map_err(|_| ApiError::ReturnNotFound)
    }
}

/// The order number of the path; anything not shaped `ORD-YYYYMMDD-NNNNNN` names no
/// order.
pub struct OrderNumber(pub String);

impl<S: Send + Sync> FromRequestParts<S> for OrderNumber {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let raw = path_param(parts, "order_number").await?;
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        let shaped = raw
            .strip_prefix("ORD-")
            .and_then(|rest| rest.split_once('-'))
            // The counter is zero-padded to 6 digits and may grow past them.
            .is_some_and(|(day, n)| day.len() == 8 && n.len() >= 6 && digits(day) && digits(n));
        match shaped {
            true => Ok(OrderNumber(raw)),
            false => Err(ApiError::OrderNotFound),
        }
    }
}

/// Every path parameter names an order (or a part of one), so one that does not even
/// decode names nothing.
async fn path_param(parts: &mut Parts, name: &str) -> Result<String, ApiError> {
    let Path(mut params) = Path::<HashMap<String, String>>::from_request_parts(parts, &())
        .await
        .map_err(|_| ApiError::OrderNotFound)?;
    params
        .remove(name)
        .ok_or_else(|| anyhow::anyhow!("the route has no {{{name}}} parameter").into())
}

/// The query parameters by name. A parameter given twice, or whose name or value is
/// not UTF-8 or holds a control character, is `422` naming it.
pub struct QueryParams(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let mut params = HashMap::new();
        let mut errors = Vec::new();
        let pairs = parts.uri.query().unwrap_or("").split('&');
        for pair in pairs.filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            // Axum's `Query` would replace bytes that are not UTF-8 with U+FFFD.
            let Some(name) = decode(name) else {
                errors.push(FieldError::new("query", "names must be UTF-8"));
                continue;
            };
            let problem = match decode(value) {
                None => Some("must be UTF-8"),
                Some(v) if v.chars().chain(name.chars()).any(char::is_control) => {
                    Some("must not contain control characters")
                }
                Some(v) => params
                    .insert(name.clone(), v)
                    .map(|_| "must be given only once"),
            };
            errors.extend(problem.map(|message| FieldError::new(name, message)));
        }
        match errors.is_empty() {
            true => Ok(QueryParams(params)),
            false => Err(ApiError::Validation(errors)),
        }
    }
}

/// `application/x-www-form-urlencoded` decoding that refuses what is not UTF-8.
fn decode(raw: &str) -> Option<String> {
    let raw = raw.replace('+', " ");
    let decoded = percent_decode_str(&raw).decode_utf8().ok()?;
    Some(decoded.into_owned())
}
