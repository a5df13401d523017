//! Order service: e-commerce orders as durable sagas on Restate, with a PostgreSQL
//! read model for every query.

/// REST API (axum): routes, problem+json errors, idempotency.
pub mod api;
/// `order-service bench`: load figures beside the engine floor and a no-journal
/// reference.
pub mod bench;
/// Configuration from the environment.
pub mod config;
/// Pure order types and rules.
pub mod domain;
/// HTTP clients of warehouse, payment, fulfillment, notification and pub/sub.
pub mod downstream;
/// Restate ingress and admin clients, the endpoint server, and local processes.
pub mod engine;
/// PostgreSQL read model: projections and queries.
pub mod read_model;
/// Delivery of the outbox: events and notifications, outside the sagas.
pub mod relay;
/// Built-in simulator of the downstream services, with fault injection.
pub mod sim;
/// Wiring of the service and of the embedded default.
pub mod startup;
/// Logging set-up.
pub mod telemetry;
/// The order virtual object and its sagas.
#[path = "../workflows/mod.rs"]
pub mod workflows;
