//! The REST API (`/api/v1`): routes, the shared state, problem+json errors and the
//! extractors that check every token, body, path and query value at the edge.

mod analytics;
mod auth;
mod body;
mod cancel;
mod change_requests;
mod changes;
mod claims;
mod commands;
mod console;
mod error;
mod exchanges;
mod health;
mod idempotency;
mod metrics;
pub mod openapi;
mod ops;
mod orders;
mod params;
mod returns;
mod timeout;
mod trace;

pub use error::ApiError;
pub use idempotency::Produced;

use crate::auth::Verifier;
use crate::config::Config;
use crate::downstream::Downstream;
use crate::engine::admin::Admin;
use crate::engine::ingress::Ingress;
use crate::operators::Operators;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::Router;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    pub db: PgPool,
    pub ingress: Ingress,
    pub admin: Admin,
    pub downstream: Downstream,
    pub settings: Arc<ApiSettings>,
}

/// The configuration the handlers use.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// How long a create or a payment waits for its saga before answering `202`.
    pub create_wait: Duration,
    /// How long an order may rest in a transitional state before it is stuck.
    pub stuck_after: Duration,
    /// The verifier of bearer tokens; `None`: authorization is off.
    pub auth: Option<Verifier>,
    /// How long a whole REST request may take, body included.
    pub request_timeout: Duration,
}

impl ApiSettings {
    /// Settings taken from the service configuration.
    pub fn from_config(config: &Config) -> Self {
        ApiSettings {
            create_wait: config.create_wait,
            stuck_after: config.stuck_after,
            auth: config.auth.clone(),
            request_timeout: config.request_timeout,
        }
    }
}

impl ApiState {
    /// The operators' view over the read model and the engine.
    pub fn operators(&self) -> Operators {
        Operators {
            db: self.db.clone(),
            admin: self.admin.clone(),
            stuck_after: self.settings.stuck_after,
        }
    }
}

/// The whole API, ready to serve: [`routes`] within the time limit of a request,
/// counted in the HTTP metrics (time-outs included).
pub fn router(state: ApiState) -> Router {
    routes(state.clone())
        .layer(middleware::from_fn_with_state(state, timeout::limit))
        .layer(axum::middleware::from_fn(metrics::track))
}

/// Every route, authenticated and traced. The gRPC server calls these in process,
/// so that both interfaces share every rule.
pub fn routes(state: ApiState) -> Router {
    Router::new()
        .nest(
            "/api/v1",
            orders::router()
                .merge(analytics::router())
                .merge(cancel::router())
                .merge(changes::router())
                .merge(change_requests::router())
                .merge(returns::router())
                .merge(exchanges::router())
                .merge(claims::router())
                .merge(ops::router())
                .merge(health::router())
                .merge(openapi::router()),
        )
        .merge(console::router())
        .merge(metrics::router())
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // An unauthenticated call is refused before anything else is done, and
        // still traced.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn(trace::trace))
        .with_state(state)
}
