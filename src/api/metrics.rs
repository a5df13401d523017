//! `GET /metrics`: the Prometheus exposition of the process's metrics, and the
//! HTTP metrics of every request. The stuck orders and the undelivered messages
//! are counted at each scrape, so the gauges are as fresh as the scrape.

use super::ApiState;
use axum::extract::State;
use axum::extract::{MatchedPath, Request};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use metrics::{counter, histogram};
use std::time::Instant;

/// The metrics route (at the root, beside `/api/v1`).
pub fn router() -> Router<ApiState> {
    Router::new().route("/metrics", get(scrape))
}

/// Counts every request by route template (never by raw path, which would make a
/// label per order) and standard method, and times it. Both labels take few values
/// whatever a client sends, so that made-up methods cannot mint series.
pub async fn track(request: Request, next: Next) -> Response {
    let method = method_label(request.method()).to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let took = start.elapsed().as_secs_f64();
    let labels = [("method", method.clone()), ("route", route.clone())];
    histogram!("http_request_duration_seconds", &labels).record(took);
    let labels = [("method", method), ("route", route), ("status", status)];
    counter!("http_requests_total", &labels).increment(1);
    response
}

/// The method's label: one of the standard methods, or `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses((status = 200, description = "The Prometheus text exposition of the process's metrics.", body = String, content_type = "text/plain; version=0.0.4"))
)]
/// `GET /metrics`: the exposition, with the stuck orders and the undelivered
/// messages counted now.
async fn scrape(State(state): State<ApiState>) -> impl IntoResponse {
    let handle = crate::metrics::handle();
    match state.operators().stuck(&Default::default()).await {
        Ok(list) => metrics::gauge!("order_stuck_orders").set(list.orders.len() as f64),
        // The last count stays; the failure is for the logs, not the scrape.
        Err(e) => tracing::warn!(error = %e, "could not count the stuck orders"),
    }
    match crate::read_model::owed(&state.db).await {
        Ok((awaiting, outstanding)) => crate::metrics::set_owed(awaiting, &outstanding),
        Err(e) => tracing::warn!(error = %e, "could not sum what is owed"),
    }
    match crate::read_model::outbox::backlog(&state.db).await {
        Ok(backlog) => crate::metrics::set_outbox_backlog(&backlog),
        Err(e) => tracing::warn!(error = %e, "could not count the undelivered messages"),
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_label() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        for made_up in ["FOO", "get", "PROPFIND", "X1"] {
            let method = Method::from_bytes(made_up.as_bytes()).unwrap();
            assert_eq!(method_label(&method), "other", "{made_up}");
        }
    }
}
