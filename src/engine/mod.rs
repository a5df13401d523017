//! Everything that talks to the Restate engine: its admin API and ingress, the
//! service's endpoint, the list of nodes, and the secrets shared with it. Starting
//! the engine (and PostgreSQL) on this machine is `order-stack`'s.

pub mod admin;
pub mod endpoint;
pub mod ingress;
pub mod nodes;
pub mod secrets;
