//! `order-service dev | cluster | serve | migrate | sim`.

use order_service::config::Config;
use order_service::{read_model, startup, telemetry};
use std::process::ExitCode;

const USAGE: &str = "usage: order-service <command>

  dev      the embedded default: private PostgreSQL (unless ORDER_DATABASE_DSN),
           restate-server, the downstream simulator and the service
  cluster  like dev, with a 3-node Restate cluster and two service replicas behind it
  serve    the service alone, against the configured PostgreSQL, Restate and services
  migrate  apply the read-model migrations to ORDER_DATABASE_DSN and exit
  secrets  <dir>: make the secrets a deployment shares, once (Restate's request
           identity key pair, ORDER_INTERNAL_KEY, a token secret), and exit
  sim      the downstream simulator alone, on ORDER_SIM_PORT (9010)

`dev`, `cluster` and `sim` need the `dev` feature (on by default, off in the Docker image).
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
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("order-service: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = match command.as_str() {
        #[cfg(feature = "dev")]
        "dev" => order_service::dev::run(config).await,
        #[cfg(feature = "dev")]
        "cluster" => order_service::cluster::run(config).await,
        #[cfg(feature = "dev")]
        "sim" => run_sim(config).await,
        #[cfg(not(feature = "dev"))]
        "dev" | "cluster" | "sim" => {
            eprintln!(
                "order-service: this build has no embedded default (built without the `dev` \
                 feature), so no `{command}`: run `serve` against your PostgreSQL, Restate \
                 and services"
            );
            return ExitCode::from(2);
        }
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

/// `sim`: the downstream simulator alone, until Ctrl-C or SIGTERM.
#[cfg(feature = "dev")]
async fn run_sim(config: Config) -> anyhow::Result<()> {
    use order_sim::{SimConfig, Simulator};
    let host: std::net::IpAddr = config.bind_host_or("0.0.0.0").parse()?;
    let sim_config = SimConfig::default().with_reservation_ttl(config.sim_reservation_ttl);
    let handle = Simulator::spawn_with((host, config.sim_port).into(), sim_config).await?;
    println!("ready http://127.0.0.1:{}", handle.addr.port());
    startup::stop_signal().await;
    handle.shutdown();
    Ok(())
}
