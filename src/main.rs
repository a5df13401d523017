//! `order-service serve | migrate | secrets`.

use order_service::config::Config;
use order_service::{read_model, startup, telemetry};
use std::process::ExitCode;

const USAGE: &str = "usage: order-service <command>

  serve    the service alone, against the configured PostgreSQL, Restate and services
  migrate  apply the read-model migrations to ORDER_DATABASE_DSN and exit
  secrets  <dir>: make the secrets a deployment shares, once (Restate's request
           identity key pair, ORDER_INTERNAL_KEY, a token secret), and exit

Everything on this machine (private PostgreSQL, restate-server, the downstream
simulator and the service): `make run`, or `order-stack dev | cluster | sim`.
Load figures: `make bench` (`cargo run --release -p order-bench`).";

fn main() -> ExitCode {
    // Before the runtime: the trace exporter's blocking HTTP client must not be
    // made or dropped inside it.
    telemetry::init(order_service::config::default_value("RUST_LOG"));
    let code = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("order-service: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    };
    telemetry::shutdown();
    code
}

async fn run() -> ExitCode {
    let command = std::env::args().nth(1).unwrap_or_default();
    if matches!(command.as_str(), "dev" | "cluster" | "sim") {
        eprintln!(
            "order-service: no `{command}` here: it is `order-stack {command}`, which runs \
             PostgreSQL, restate-server and the simulator beside the service (`make run`, \
             `make cluster`); this binary is the service alone (`serve`, `migrate`, \
             `secrets`)"
        );
        return ExitCode::from(2);
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("order-service: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = match command.as_str() {
        "serve" => startup::serve(config).await,
        "migrate" => migrate(config).await,
        "secrets" => secrets(),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("order-service: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let dsn = config
        .database_dsn
        .ok_or_else(|| anyhow::anyhow!("ORDER_DATABASE_DSN must be set for `migrate`"))?;
    let pool = read_model::connect(&dsn, 1).await?;
    read_model::migrate(&pool).await
}

/// `secrets <dir>`: the secrets of a deployment in `dir`, made there the first time.
fn secrets() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(2)
        .ok_or_else(|| anyhow::anyhow!("usage: order-service secrets <dir>"))?;
    let dir = std::path::Path::new(&dir);
    let secrets = order_service::engine::secrets::LocalSecrets::in_dir(dir)?;
    secrets.write_deployment_files(dir)?;
    println!("secrets in {}", dir.display());
    Ok(())
}
