//! The fast tier: no restate-server, no simulator, no service process. Each test
//! gets a PostgreSQL database of its own (`TEST_DATABASE_URL`, else the local
//! server on 5432). The read model is driven through its functions; the API's
//! router is served in process in front of a stand-in for Restate's ingress that
//! records what reaches it. `cargo test --release --test fast`.

mod db;
mod read_model;
mod router;
