//! `order-stack dev | cluster | sim`.

use order_service::config::Config;
use order_service::{startup, telemetry};
use std::process::ExitCode;

const USAGE: &str = "usage: order-stack <command>

  dev      the embedded default: private PostgreSQL (unless ORDER_DATABASE_DSN),
           restate-server, the downstream simulator and the service
  cluster  like dev, with a 3-node Restate cluster and two service replicas behind it
  sim      the downstream simulator alone, on ORDER_SIM_PORT (9010)

The service alone (`serve`, `migrate`, `secrets`) is `order-service`.
Settings: the service's ORDER_* variables (docs/configuration.md).";

fn main() -> ExitCode {
    // Before the runtime: the trace exporter's blocking HTTP client must not be
    // made or dropped inside it.
    telemetry::init(order_service::config::default_value("RUST_LOG"));
    let code = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("order-stack: cannot start the async runtime: {e}");
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
            eprintln!("order-stack: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = match command.as_str() {
        "dev" => order_stack::dev::run(config).await,
        "cluster" => order_stack::cluster::run(config).await,
        "sim" => run_sim(config).await,
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("order-stack: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `sim`: the downstream simulator alone, until Ctrl-C or SIGTERM.
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
