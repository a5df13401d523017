//! Everything that talks to or runs the Restate engine and the local processes of
//! the embedded default.

pub mod admin;
pub mod endpoint;
pub mod ingress;
pub mod postgres;
pub mod process;
pub mod restate_server;
