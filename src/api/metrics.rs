//! `GET /metrics`: the Prometheus exposition of the process's metrics. The stuck
//! orders are counted at each scrape, so the gauge is as fresh as the scrape.

use super::ApiState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// The metrics route (at the root, beside `/api/v1`).
pub fn router() -> Router<ApiState> {
    Router::new().route("/metrics", get(scrape))
}

/// The process's recorder, installed the first time it is asked for.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may be installed already (a test harness): then this
        // one still renders what is recorded through it.
        metrics::set_global_recorder(recorder).ok();
        handle
    })
}

async fn scrape(State(state): State<ApiState>) -> impl IntoResponse {
    let handle = handle();
    match state.operators().stuck(&Default::default()).await {
        Ok(list) => metrics::gauge!("order_stuck_orders").set(list.orders.len() as f64),
        // The last count stays; the failure is for the logs, not the scrape.
        Err(e) => tracing::warn!(error = %e, "could not count the stuck orders"),
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
}
