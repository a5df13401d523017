//! `order-bench` (`make bench`): every flow under load (create, pay, status
//! change, cancel, cancel-items, return received, refund-items, get, list by
//! customer at a million orders) on a fresh stack, beside the two references that
//! show what durability and the saga cost, with the CPU each process spends per
//! request and the memory of the service and restate-server. Prints figures;
//! asserts nothing.
//!
//! ```text
//! order-bench [--cluster]     the flows (3 Restate nodes, 2 service replicas with --cluster)
//! order-bench analytics       the analytics over a million orders (see [`analytics`])
//! ```

mod analytics;
mod flows;
mod load;
mod million;
mod references;
mod usage;

use order_service::config::Config;
use order_service::telemetry;
use order_stack::Topology;
use std::process::ExitCode;
use std::time::Duration;

#[tokio::main]
async fn main() -> ExitCode {
    telemetry::init("warn,sqlx=error");
    let outcome = match std::env::args().nth(1).as_deref() {
        None => flows::run(settings(Topology::Single)).await,
        Some("--cluster") => flows::run(settings(Topology::Cluster)).await,
        Some("analytics") => match Config::from_env() {
            Ok(config) => analytics::run(config).await,
            Err(e) => Err(e.into()),
        },
        Some(other) => {
            eprintln!("order-bench: unknown argument {other:?} (none, --cluster or analytics)");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("order-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What a run of the flows is given.
pub struct Settings {
    pub topology: Topology,
    /// Length of each measured run (`BENCH_SECONDS`, default 8).
    pub duration: Duration,
    /// The PostgreSQL server the bench makes its database on (`BENCH_DATABASE_URL`).
    pub database_url: String,
    /// Orders in the read model for the list figure (`BENCH_LIST_ORDERS`, default a
    /// million; 0 leaves it out).
    pub list_orders: i64,
}

fn settings(topology: Topology) -> Settings {
    let number = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    Settings {
        topology,
        duration: Duration::from_secs(number("BENCH_SECONDS", 8)),
        database_url: std::env::var("BENCH_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
        list_orders: number("BENCH_LIST_ORDERS", 1_000_000) as i64,
    }
}
