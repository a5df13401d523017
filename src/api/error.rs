//! API errors as RFC 9457 `application/problem+json`.

use crate::auth::Unauthenticated;
use crate::domain::{FieldError, Refusal};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

/// Everything the API can answer other than success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is well-formed JSON but breaks a rule (422).
    #[error("the request is not valid")]
    Validation(Vec<FieldError>),
    /// The body is not JSON at all (400).
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("the body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    NotFound(String),
    #[error("no such order")]
    OrderNotFound,
    #[error("the order has no such return")]
    ReturnNotFound,
    #[error("this method is not allowed on this route")]
    MethodNotAllowed,
    #[error("the Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    /// A change needs `If-Match` with the order's version (428).
    #[error("this call needs If-Match with the order's version, e.g. If-Match: \"7\" (the ETag of GET /orders/{{id}})")]
    PreconditionRequired,
    /// No valid bearer token where one is needed (401).
    #[error(transparent)]
    Unauthenticated(#[from] Unauthenticated),
    /// The caller's roles do not allow the call (403).
    #[error("{0}")]
    Forbidden(&'static str),
    /// A command the order's object refused (see [`refusal_answer`]).
    #[error("{0}")]
    Refused(Refusal),
    /// An operator's command is still under way after the wait (409).
    #[error("{0}")]
    StillRunning(String),
    /// The request took longer than its limit (408).
    #[error("{0}")]
    RequestTimeout(String),
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

/// A refusal with a field at fault is a validation problem like any other.
impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::ValidationFailed {
                field: Some(field),
                message,
            } => ApiError::Validation(vec![FieldError::new(field, message)]),
            refusal => ApiError::Refused(refusal),
        }
    }
}

/// The HTTP status and problem code of each refusal of the order's object: the one
/// place they are decided (`api.md` is the contract). The gRPC code follows from
/// the status (`grpc::transcode`).
fn refusal_answer(refusal: &Refusal) -> (StatusCode, &'static str) {
    match refusal {
        Refusal::OrderNotFound => (StatusCode::NOT_FOUND, "order_not_found"),
        Refusal::ReturnNotFound => (StatusCode::NOT_FOUND, "return_not_found"),
        Refusal::InvalidTransition { .. } => (StatusCode::CONFLICT, "invalid_transition"),
        Refusal::NotCancellable { .. } => (StatusCode::CONFLICT, "not_cancellable"),
        Refusal::AlreadyShipped { .. } => (StatusCode::CONFLICT, "already_shipped"),
        Refusal::RefundRefused { .. } => (StatusCode::CONFLICT, "refund_refused"),
        Refusal::StepRefused { .. } => (StatusCode::BAD_GATEWAY, "step_refused"),
        Refusal::PaymentDeclined => (StatusCode::PAYMENT_REQUIRED, "payment_declined"),
        Refusal::QuantityExceeded { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "quantity_exceeded"),
        Refusal::ReturnWindowClosed { .. } => {
            (StatusCode::UNPROCESSABLE_ENTITY, "return_window_closed")
        }
        Refusal::ValidationFailed { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        Refusal::NothingToRetry { .. } => (StatusCode::CONFLICT, "nothing_to_retry"),
        Refusal::NothingToResolve { .. } => (StatusCode::CONFLICT, "nothing_to_resolve"),
        Refusal::SagaFailed { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "saga_failed"),
        Refusal::ExchangeNotFound => (StatusCode::NOT_FOUND, "exchange_not_found"),
        Refusal::ClaimNotFound => (StatusCode::NOT_FOUND, "claim_not_found"),
        Refusal::QuoteNotFound => (StatusCode::NOT_FOUND, "quote_not_found"),
        Refusal::ChangeNotFound => (StatusCode::NOT_FOUND, "change_not_found"),
        Refusal::NotEditable { .. } => (StatusCode::CONFLICT, "not_editable"),
        Refusal::ChangeInProgress { .. } => (StatusCode::CONFLICT, "change_in_progress"),
        Refusal::InsufficientStock { .. } => (StatusCode::CONFLICT, "insufficient_stock"),
        Refusal::QuoteExpired { .. } => (StatusCode::GONE, "quote_expired"),
        Refusal::VersionConflict { .. } => (StatusCode::CONFLICT, "version_conflict"),
        Refusal::QuoteSuperseded { .. } => (StatusCode::CONFLICT, "quote_superseded"),
        Refusal::AmountMismatch { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "amount_mismatch"),
        Refusal::PastPointOfNoReturn { .. } => (StatusCode::CONFLICT, "past_point_of_no_return"),
        Refusal::ChangeRequestNotFound => (StatusCode::NOT_FOUND, "change_request_not_found"),
        Refusal::RequestExpired => (StatusCode::GONE, "request_expired"),
    }
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) | ApiError::IdempotencyKeyReused => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound(_) | ApiError::OrderNotFound | ApiError::ReturnNotFound => {
                StatusCode::NOT_FOUND
            }
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Refused(refusal) => refusal_answer(refusal).0,
            ApiError::StillRunning(_) => StatusCode::CONFLICT,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem code.
    pub fn code(&self) -> &str {
        match self {
            ApiError::Validation(_) => "validation_failed",
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::NotFound(_) => "not_found",
            ApiError::OrderNotFound => "order_not_found",
            ApiError::ReturnNotFound => "return_not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::PreconditionRequired => "precondition_required",
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Refused(refusal) => refusal_answer(refusal).1,
            ApiError::StillRunning(_) => "still_running",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// The problem document.
    pub fn body(&self) -> Value {
        let status = self.status();
        let errors = match self {
            ApiError::Validation(errors) => Some(errors.clone()),
            ApiError::MalformedJson(message) => {
                Some(vec![FieldError::new("body", message.clone())])
            }
            _ => None,
        };
        let detail = match errors.as_ref().and_then(|e| e.first()) {
            Some(first) => format!("{}: {}", first.field, first.message),
            None => self.to_string(),
        };
        let mut body = json!(Problem {
            problem_type: format!("https://errors.order-service.dev/{}", self.code()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            code: self.code().to_owned(),
            errors,
        });
        if let (ApiError::Refused(refusal), Some(fields)) = (self, body.as_object_mut()) {
            fields.extend(refusal.extras());
        }
        body
    }
}

/// An RFC 9457 problem document, as every refusal is answered
/// (`application/problem+json`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem; it ends with the `code`.
    #[serde(rename = "type")]
    #[schema(
        format = "uri",
        example = "https://errors.order-service.dev/order_not_found"
    )]
    pub problem_type: String,
    /// The HTTP reason phrase of the status.
    #[schema(example = "Not Found")]
    pub title: String,
    /// The HTTP status.
    #[schema(minimum = 400, maximum = 599, example = 404)]
    pub status: u16,
    /// What went wrong, for a person; with `errors`, the first of them.
    pub detail: String,
    /// The stable, machine-readable code, e.g. `validation_failed`.
    #[schema(example = "order_not_found")]
    pub code: String,
    /// The fields at fault, for `validation_failed` and `malformed_json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub errors: Option<Vec<FieldError>>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(e) = &self {
            tracing::error!(error = ?e, "request failed");
        }
        let mut response = problem_response(self.status(), self.body());
        if let ApiError::Unauthenticated(why) = &self {
            // RFC 6750: a token that was sent but refused is an `invalid_token`.
            let challenge = match why {
                Unauthenticated::Missing | Unauthenticated::MalformedHeader => "Bearer",
                _ => r#"Bearer error="invalid_token""#,
            };
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_answered_with_the_code_it_is_named_by() {
        let message = || "m".to_owned();
        let refusals = [
            Refusal::OrderNotFound,
            Refusal::ReturnNotFound,
            Refusal::InvalidTransition { message: message() },
            Refusal::NotCancellable { message: message() },
            Refusal::AlreadyShipped { message: message() },
            Refusal::RefundRefused { message: message() },
            Refusal::StepRefused { message: message() },
            Refusal::PaymentDeclined,
            Refusal::QuantityExceeded { message: message() },
            Refusal::ReturnWindowClosed { message: message() },
            Refusal::ValidationFailed {
                field: None,
                message: message(),
            },
            Refusal::NothingToRetry { message: message() },
            Refusal::NothingToResolve { message: message() },
            Refusal::SagaFailed { message: message() },
            Refusal::ExchangeNotFound,
            Refusal::ClaimNotFound,
            Refusal::QuoteNotFound,
            Refusal::ChangeNotFound,
            Refusal::NotEditable { message: message() },
            Refusal::ChangeInProgress {
                change_id: uuid::Uuid::nil(),
            },
            Refusal::InsufficientStock {
                sku: Some("SKU-1".into()),
                message: message(),
            },
            Refusal::QuoteExpired { message: message() },
            Refusal::VersionConflict {
                asked: 1,
                current_version: 2,
            },
            Refusal::QuoteSuperseded {
                quote_version: 1,
                current_version: 2,
                preview: None,
            },
            Refusal::AmountMismatch {
                delta: "1.00".into(),
            },
            Refusal::PastPointOfNoReturn {
                change_id: uuid::Uuid::nil(),
                status: "applied".into(),
            },
            Refusal::ChangeRequestNotFound,
            Refusal::RequestExpired,
        ];
        for refusal in refusals {
            let wire = serde_json::to_value(&refusal).unwrap();
            let body = ApiError::from(refusal).body();
            assert_eq!(body["code"], wire["code"], "{body}");
        }
    }

    #[test]
    fn refusals_keep_the_status_and_detail_of_the_contract() {
        let answer = |refusal: Refusal| {
            let body = ApiError::from(refusal).body();
            (body["status"].as_u64().unwrap(), body["detail"].clone())
        };
        assert_eq!(
            answer(Refusal::OrderNotFound),
            (404, json!("no such order"))
        );
        assert_eq!(
            answer(Refusal::PaymentDeclined),
            (402, json!("the payment was declined"))
        );
        let message = "the fulfillment service refused: shipped".to_owned();
        assert_eq!(
            answer(Refusal::AlreadyShipped {
                message: message.clone()
            }),
            (409, json!(message))
        );
        let conflict = ApiError::from(Refusal::VersionConflict {
            asked: 6,
            current_version: 7,
        })
        .body();
        assert_eq!(
            (
                conflict["status"].clone(),
                conflict["current_version"].clone()
            ),
            (json!(409), json!(7))
        );
        assert!(conflict.get("asked").is_none(), "{conflict}");
        let invalid = ApiError::from(Refusal::invalid("refunded_outside", "too much")).body();
        assert_eq!(invalid["status"], 422);
        assert_eq!(invalid["detail"], "refunded_outside: too much");
        assert_eq!(invalid["errors"][0]["field"], "refunded_outside");
        let whole = ApiError::from(Refusal::ValidationFailed {
            field: None,
            message: "amount must equal the amount due 5.00".into(),
        })
        .body();
        assert_eq!(whole["code"], "validation_failed");
        assert!(whole.get("errors").is_none(), "{whole}");
    }
}
