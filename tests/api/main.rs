//! End-to-end tests: the real service binary, a real restate-server, a real
//! PostgreSQL and the downstream simulator over HTTP.

mod analytics;
mod authorization;
mod bad_requests;
mod cancel;
mod cancel_items;
mod cluster;
mod console;
mod crash;
mod create_order;
mod dev_mode;
mod drafts;
mod grpc;
mod helpers;
mod idempotency;
mod kill_every_step;
mod limits;
mod metrics;
mod openapi;
mod operators;
mod queries;
mod registration;
mod returns;
mod saga_core;
mod schemathesis;
mod status;
mod traces;
mod validation;
