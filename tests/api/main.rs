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
mod docs;
mod drafts;
mod grpc;
mod helpers;
mod idempotency;
mod in_doubt;
mod journaled_config;
mod kill_every_step;
mod limits;
mod metrics;
mod money_corners;
mod openapi;
mod operators;
mod parked;
mod queries;
mod registration;
mod relay;
mod returns;
mod saga_core;
mod schemathesis;
mod second_pay;
mod status;
mod traces;
mod trust;
mod validation;
