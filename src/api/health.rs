//! Liveness and dependency health.

use super::ApiState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

/// The health routes.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route(
            "/orders/health",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/orders/health/dependencies", get(dependencies))
}

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
