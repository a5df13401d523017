//! Everything that talks to or runs the Restate engine and the local processes of
//! the embedded default (those with the `dev` feature).

pub mod admin;
#[cfg(feature = "dev")]
pub mod balancer;
pub mod endpoint;
pub mod ingress;
pub mod nodes;
#[cfg(feature = "dev")]
pub mod postgres;
#[cfg(feature = "dev")]
pub mod process;
#[cfg(feature = "dev")]
pub mod restate_server;
pub mod secrets;
