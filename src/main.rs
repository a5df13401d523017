//! `order-service serve | migrate | secrets`.

use order_service::config::Config;
use order_service::startup::Usage;
use order_service::workflows::Faults;
use order_service::{read_model, startup};
use std::process::ExitCode;

const USAGE: &str = "usage: order-service <command>

  serve    the service alone, against the configured PostgreSQL, Restate and services
  migrate  apply the read-model migrations to ORDER_DATABASE_DSN and exit
  secrets  <dir>: make the secrets a deployment shares, once (Restate's request
           identity key pair, ORDER_INTERNAL_KEY, a token secret), and exit

Everything on this machine (private PostgreSQL, restate-server, the downstream
simulator and the service): `make run`, or `order-stack dev | cluster | sim`.
Load figures: `make bench`.";

fn main() -> ExitCode {
    startup::command_line("order-service", |command, config| async move {
        match command.as_str() {
            "serve" => startup::serve(config, Faults::default()).await,
            "migrate" => migrate(config).await,
            "secrets" => secrets(),
            "dev" | "cluster" | "sim" => Err(Usage(format!(
                "order-service: no `{command}` here: it is `order-stack {command}`, which runs \
                 PostgreSQL, restate-server and the simulator beside the service (`make run`, \
                 `make cluster`); this binary is the service alone (`serve`, `migrate`, \
                 `secrets`)"
            ))
            .into()),
            _ => Err(Usage(USAGE.into()).into()),
        }
    })
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
