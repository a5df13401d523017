//! `order-stack dev | cluster | sim | serve`.

use order_service::config::Config;
use order_service::startup::{self, Usage};
use std::process::ExitCode;

const USAGE: &str = "usage: order-stack <command>

  dev      the embedded default: private PostgreSQL (unless ORDER_DATABASE_DSN),
           restate-server, the downstream simulator and the service
  cluster  like dev, with a 3-node Restate cluster and two service replicas behind it
  sim      the downstream simulator alone, on ORDER_SIM_PORT (9010)
  serve    `order-service serve` with the fault hook the tests set
           (ORDER_FAULT_PAUSE_AFTER_PROJECTION=<saga>); never for a deployment

The service alone (`serve`, `migrate`, `secrets`) is `order-service`.
Settings: the service's ORDER_* variables (docs/configuration.md).";

fn main() -> ExitCode {
    startup::command_line("order-stack", |command, config| async move {
        match command.as_str() {
            "dev" => order_stack::dev::run(config).await,
            "cluster" => order_stack::cluster::run(config).await,
            "sim" => run_sim(config).await,
            "serve" => startup::serve(config, order_stack::faults::from_env()).await,
            _ => Err(Usage(USAGE.into()).into()),
        }
    })
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
