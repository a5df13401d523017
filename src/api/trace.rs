//! The span of each API request, continuing the caller's `traceparent`, when
//! traces are on.

use crate::telemetry;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// Runs the request inside its span, named by method and route template.
pub async fn trace(request: Request, next: Next) -> Response {
    if !telemetry::enabled() {
        return next.run(request).await;
    }
    let route = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_owned(),
        |p| p.as_str().to_owned(),
    );
    let name = format!("{} {route}", request.method());
    let parent = request
        .headers()
        .get(telemetry::TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let span = telemetry::span("request", &name, parent.as_deref());
    next.run(request).instrument(span).await
}
