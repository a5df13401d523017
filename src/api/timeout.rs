//! The time limit on a whole request, body included: a client that trickles its
//! body, or a request stuck on a dependency, gets `408 request_timeout` instead of
//! holding its connection. The saga waits of the API are a few seconds, far
//! below the limit (see `ORDER_REQUEST_TIMEOUT_SECS`).

use super::{ApiError, ApiState};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Runs the request within the configured limit.
pub(super) async fn limit(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let limit = state.settings.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::RequestTimeout(format!(
            "the request took longer than {} s; send it again (with the same Idempotency-Key)",
            limit.as_secs_f64()
        ))
        .into_response(),
    }
}
