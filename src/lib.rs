//! Order service: e-commerce orders as durable sagas on Restate, with a PostgreSQL
//! read model for every query.

/// REST API (axum): routes, problem+json errors, idempotency.
pub mod api;
/// Bearer tokens, roles and the rules of access, free of HTTP.
pub mod auth;
/// The API's caller assertion, which the order object requires of every call.
pub mod caller;
/// Configuration from the environment.
pub mod config;
/// Pure order types and rules.
pub mod domain;
/// HTTP clients of warehouse, payment, fulfillment, notification and pub/sub.
pub mod downstream;
/// Restate ingress and admin clients, the endpoint server, and the secrets shared
/// with the engine.
pub mod engine;
/// gRPC (`order.v1.OrderService`), transcoded to the REST routes in process.
pub mod grpc;
/// Prometheus metrics: the recorder and the business facts of a commit.
pub mod metrics;
/// The operators' view: stuck orders, timelines, retries.
pub mod operators;
/// PostgreSQL read model: projections and queries.
pub mod read_model;
/// Delivery of the outbox: events and notifications, outside the sagas.
pub mod relay;
/// Connection caps and header-read limits of the API servers.
pub mod serving;
/// Wiring of the service.
pub mod startup;
/// Logging set-up.
pub mod telemetry;
/// The order virtual object and its sagas.
#[path = "../workflows/mod.rs"]
pub mod workflows;
