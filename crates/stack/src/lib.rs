//! Everything that runs the order service on this machine, from one set of parts:
//! PostgreSQL (a database made on a given server, or a private `initdb` cluster),
//! restate-server (one node, or a cluster of three), the downstream simulator, and
//! the service (in this process, or as `order-service serve` child processes).
//!
//! They make the commands `order-stack dev | cluster | sim | serve` ([`dev`], [`cluster`])
//! and the [`Stack`] that the end-to-end tests, the chaos run and the benchmark
//! stand on.

/// A TCP balancer in front of several service replicas.
pub mod balancer;
/// `order-stack cluster`: a 3-node Restate cluster and two service replicas.
pub mod cluster;
/// `order-stack dev`: the embedded default, watched while it runs.
pub mod dev;
/// The fault hook the tests set in the sagas.
pub mod faults;
/// A database on a given server, or a private PostgreSQL cluster.
pub mod postgres;
/// Child processes: started, watched, stopped; the ports they take.
pub mod process;
/// restate-server: one node, or the nodes of a cluster.
pub mod restate_server;
/// The service's replicas: where they find everything, and as child processes.
pub mod service;
/// The whole stack on free ports, for the tests, the chaos run and the benchmark.
pub mod stack;

pub use stack::{Stack, StackOptions, Topology};
