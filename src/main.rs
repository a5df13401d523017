//! `order-service dev | serve | migrate | sim`.

use order_service::config::Config;
use order_service::{bench, read_model, sim, startup, telemetry};
use std::process::ExitCode;

const USAGE: &str = "usage: order-service <command>

  dev      the embedded default: private PostgreSQL (unless ORDER_DATABASE_DSN),
           restate-server, the downstream simulator and the service
  serve    the service alone, against the configured PostgreSQL, Restate and services
  migrate  apply the read-model migrations to ORDER_DATABASE_DSN and exit
  sim      the downstream simulator alone, on ORDER_SIM_PORT (9010)
  bench    load figures for create-order and get-order on a fresh embedded default";

#[tokio::main]
async fn main() -> ExitCode {
    telemetry::init("info,restate_sdk=warn,sqlx=warn");
    let command = std::env::args().nth(1).unwrap_or_default();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("order-service: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = match command.as_str() {
        "dev" => startup::dev(config).await,
        "serve" => startup::serve(config).await,
        "migrate" => migrate(config).await,
        "sim" => run_sim(config).await,
        "bench" => bench::run(config).await,
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

async fn run_sim(config: Config) -> anyhow::Result<()> {
    let host: std::net::IpAddr = config.bind_host_or("0.0.0.0").parse()?;
    let handle = sim::Simulator::spawn((host, config.sim_port).into()).await?;
    println!("ready http://127.0.0.1:{}", handle.addr.port());
    startup::stop_signal().await;
    handle.shutdown();
    Ok(())
}
