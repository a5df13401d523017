//! API errors as RFC 9457 `application/problem+json`, and the JSON body reader that
//! names the field at fault.

use crate::domain::FieldError;
use axum::body::Bytes;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// Everything the API can answer other than success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is well-formed JSON but breaks a rule (422).
    #[error("the request is not valid")]
    Validation(Vec<FieldError>),
    /// The body is not JSON at all (400).
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    NotFound(String),
    #[error("no such order")]
    OrderNotFound,
    #[error("this method is not allowed on this route")]
    MethodNotAllowed,
    #[error("the Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    /// A refusal decided by the order's saga, with its status and code.
    #[error("{message}")]
    Refused {
        status: StatusCode,
        code: String,
        message: String,
    },
    /// The engine or the database cannot be reached now (503).
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Internal(e.into())
    }
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) | ApiError::IdempotencyKeyReused => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound(_) | ApiError::OrderNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Refused { status, .. } => *status,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &str {
        match self {
            ApiError::Validation(_) => "validation_failed",
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::NotFound(_) => "not_found",
            ApiError::OrderNotFound => "order_not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::Refused { code, .. } => code,
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// The problem document.
    pub fn body(&self) -> Value {
        let status = self.status();
        let mut body = json!({
            "type": format!("https://errors.order-service.dev/{}", self.code()),
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": self.to_string(),
            "code": self.code(),
        });
        let errors = match self {
            ApiError::Validation(errors) => Some(errors.clone()),
            ApiError::MalformedJson(message) => {
                Some(vec![FieldError::new("body", message.clone())])
            }
            _ => None,
        };
        if let Some(errors) = errors {
            body["errors"] = json!(errors);
            if let Some(first) = errors.first() {
                body["detail"] = json!(format!("{}: {}", first.field, first.message));
            }
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(e) = &self {
            tracing::error!(error = ?e, "request failed");
        }
        problem_response(self.status(), self.body())
    }
}

/// A problem+json response with `body`.
pub fn problem_response(status: StatusCode, body: Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// Parses a request body as JSON, or says why not.
pub fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.len() > super::MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge(super::MAX_BODY_BYTES));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))
}

/// Reads `value` as `T`, naming the field that is missing or of the wrong type.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        // serde reports a missing field at its parent: name the field itself.
        let field = match message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next())
        {
            Some(missing) if path == "." => missing.to_owned(),
            Some(missing) => format!("{path}.{missing}"),
            None if path == "." => "body".to_owned(),
            None => path,
        };
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_owned();
        ApiError::Validation(vec![FieldError::new(field, message)])
    })
}

/// Reads a JSON request body as `T` and checks it with `rules`. Returns the JSON as
/// sent (for the idempotency hash) and the typed request.
pub fn read_request<T: DeserializeOwned>(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
    rules: impl FnOnce(&T) -> Vec<FieldError>,
) -> Result<(Value, T), ApiError> {
    let json = parse_body(&body.map_err(body_rejection)?)?;
    let request: T = from_value(json.clone())?;
    let errors = rules(&request);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok((json, request))
}

/// Turns a body-reading rejection (too large, unreadable) into a problem.
pub fn body_rejection(rejection: axum::extract::rejection::BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(super::MAX_BODY_BYTES)
    } else {
        ApiError::MalformedJson(rejection.body_text())
    }
}
