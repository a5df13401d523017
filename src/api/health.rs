//! Liveness and dependency health.

use super::openapi::shapes::{DependencyReport, Liveness};
use super::ApiState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

/// The health routes.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/orders/health", get(live))
        .route("/orders/health/dependencies", get(dependencies))
}

#[utoipa::path(
    get,
    path = "/api/v1/orders/health",
    tag = "health",
    responses((status = 200, description = "The service answers.", body = Liveness))
)]
/// `GET /orders/health`: the process answers; nothing else is asked.
async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

#[utoipa::path(
    get,
    path = "/api/v1/orders/health/dependencies",
    tag = "health",
    responses(
        (status = 200, description = "PostgreSQL, Restate and every downstream service are up.", body = DependencyReport),
        (status = 503, description = "Some dependency is down; `status` is `degraded`.", body = DependencyReport),
    )
)]
/// `GET /orders/health/dependencies`: PostgreSQL, Restate and each downstream.
async fn dependencies(State(state): State<ApiState>) -> (StatusCode, Json<Value>) {
    let mut checks = Map::new();
    let db = sqlx::query("SELECT 1").execute(&state.db).await.is_ok();
    checks.insert("postgres".into(), up(db));
    let restate = state.admin.healthy().await && state.ingress.healthy().await;
    checks.insert("restate".into(), up(restate));
    let mut all = db && restate;
    for (service, url) in state.downstream.endpoints() {
        let ok = state.downstream.reachable(url).await;
        all &= ok;
        checks.insert(service.into(), up(ok));
    }
    let status = if all {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({ "status": if all { "ok" } else { "degraded" }, "dependencies": checks });
    (status, Json(body))
}

fn up(ok: bool) -> Value {
    json!({ "status": if ok { "up" } else { "down" } })
}
