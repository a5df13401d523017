//! The embedded default (`order-stack dev`): a private PostgreSQL, restate-server
//! and the downstream simulator on this machine beside the service (in this
//! process), each started only when the configuration does not name one, and
//! watched while the service runs.
//!
//! Start-up cannot hijack another copy: every port is checked free before anything
//! starts, and each child must be the process that listens on its ports (a second
//! copy's restate-server that could not listen would otherwise leave this copy
//! registering itself on the first copy's engine).

use crate::postgres::PrivateCluster;
use crate::process::{check_ports_free, free_port, PortUse};
use crate::restate_server::{self, RestateServer, RestateSettings};
use order_service::config::Config;
use order_service::engine::admin::Admin;
use order_service::engine::secrets::{LocalSecrets, RequestIdentity};
use order_service::startup::{announce_ready, stop_signal, Backends, RunningService};
use order_sim::{SimConfig, SimHandle, Simulator};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// Restarts of one child in a row before `dev` gives up.
const MAX_RESTARTS: u32 = 3;
/// A child that ran this long has its count of restarts in a row reset.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// `dev`: starts what is not configured, then the service; restarts PostgreSQL or
/// restate-server when one dies (a few times in a row at most, else stops everything
/// with an error); stops all of it, newest first, on Ctrl-C or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    // Everything dev starts is for this machine only, unless told otherwise; its
    // engine is private, so the deployment is overwritten when the code changed.
    let config = Config {
        bind_host: Some(config.bind_host_or("127.0.0.1").to_owned()),
        restate_force_register: Some(config.restate_force_register.unwrap_or(true)),
        ..config
    };
    let config = with_local_secrets(config)?;
    let stop = stop_signal();
    tokio::pin!(stop);
    let mut stack = DevStack::default();
    let started = tokio::select! {
        started = start_service(&mut stack, &config) => Some(started),
        _ = &mut stop => None,
    };
    let service = match started {
        Some(Ok(service)) => service,
        Some(Err(e)) => {
            stack.stop().await;
            return Err(e);
        }
        None => {
            tracing::info!("stopping");
            stack.stop().await;
            return Ok(());
        }
    };
    announce_ready(&service);
    let outcome = watch(&mut stack, &config, &service, stop).await;
    tracing::info!("stopping");
    service.stop().await;
    stack.stop().await;
    outcome
}

/// `config` with the secrets kept in its data folder (made there the first time):
/// the caller assertion's key unless `ORDER_INTERNAL_KEY` is set, and, when the
/// engine is started here too, the public key of the request identity it signs
/// with, so that the endpoint refuses unsigned requests.
pub fn with_local_secrets(config: Config) -> anyhow::Result<Config> {
    let secrets = LocalSecrets::in_dir(&config.data_dir)?;
    let own_engine = config.restate_ingress_urls.is_none() || config.restate_admin_urls.is_none();
    Ok(Config {
        internal_key: Some(config.internal_key.unwrap_or(secrets.internal_key)),
        restate_identity_keys: match own_engine {
            true => vec![secrets.identity.public_key],
            false => config.restate_identity_keys,
        },
        ..config
    })
}

async fn start_service(stack: &mut DevStack, config: &Config) -> anyhow::Result<RunningService> {
    let backends = stack.start(config).await?;
    RunningService::start(config, &backends, crate::faults::from_env()).await
}

/// Waits for a stop signal, restarting the children that die meanwhile; an error
/// when one cannot be brought back.
async fn watch(
    stack: &mut DevStack,
    config: &Config,
    service: &RunningService,
    mut stop: Pin<&mut impl Future<Output = ()>>,
) -> anyhow::Result<()> {
    loop {
        let died = tokio::select! {
            _ = stop.as_mut() => return Ok(()),
            died = stack.next_death() => died,
        };
        let recovered = tokio::select! {
            _ = stop.as_mut() => return Ok(()),
            recovered = stack.recover(died, config, service) => recovered,
        };
        recovered?;
    }
}

/// The processes `dev` started, so that it can watch them and stop them in reverse
/// order.
#[derive(Default)]
pub struct DevStack {
    postgres: Option<Watched<PrivateCluster>>,
    restate: Option<Watched<RestateServer>>,
    sim: Option<SimHandle>,
}

/// A child that died, and how.
#[derive(Debug)]
pub struct Death {
    engine: EngineKind,
    status: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EngineKind {
    Postgres,
    Restate,
}

/// What is started, where: decided before anything starts so that every port can be
/// checked first.
struct Plan {
    postgres: Option<(PathBuf, u16)>,
    restate: Option<RestateSettings>,
    sim: bool,
}

impl DevStack {
    /// Checks that every port it needs is free, then starts whatever `config` does not
    /// point at, and says where everything is.
    pub async fn start(&mut self, config: &Config) -> anyhow::Result<Backends> {
        let plan = plan(config)?;
        check_ports_free(&ports(config, &plan))?;
        std::fs::create_dir_all(&config.data_dir)?;
        let database_dsn = match (&config.database_dsn, plan.postgres) {
            (Some(dsn), _) => dsn.clone(),
            (None, Some((dir, port))) => {
                let cluster = PrivateCluster::start(&dir, port).await?;
                let dsn = cluster.dsn.clone();
                self.postgres = Some(Watched::new(cluster));
                dsn
            }
            (None, None) => unreachable!("the plan starts PostgreSQL when no DSN is set"),
        };
        let (ingress_urls, admin_urls) = match (
            &config.restate_ingress_urls,
            &config.restate_admin_urls,
            plan.restate,
        ) {
            (Some(ingress), Some(admin), _) => (ingress.clone(), admin.clone()),
            (_, _, Some(settings)) => {
                let server = RestateServer::start(&settings).await?;
                let urls = (
                    vec![server.ingress_url.clone()],
                    vec![server.admin_url.clone()],
                );
                self.restate = Some(Watched::new(server));
                urls
            }
            _ => unreachable!("the plan starts Restate when no URLs are set"),
        };
        let downstream = if plan.sim {
            let addr = SocketAddr::from(([127, 0, 0, 1], config.sim_port));
            let sim_config = SimConfig::default().with_reservation_ttl(config.sim_reservation_ttl);
            let sim = Simulator::spawn_with(addr, sim_config).await?;
            let addrs = config.downstream.or_all(&sim.base_url());
            tracing::info!(url = %sim.base_url(), "downstream simulator serving");
            self.sim = Some(sim);
            addrs
        } else {
            config.downstream.clone()
        };
        Ok(Backends {
            database_dsn,
            ingress_urls,
            admin_urls,
            downstream,
        })
    }

    /// Waits until a child dies (never, when there is none). Cancel safe.
    pub async fn next_death(&mut self) -> Death {
        let DevStack {
            postgres, restate, ..
        } = self;
        let postgres = async {
            match postgres {
                Some(w) => w.engine.exited().await,
                None => std::future::pending().await,
            }
        };
        let restate = async {
            match restate {
                Some(w) => w.engine.exited().await,
                None => std::future::pending().await,
            }
        };
        let (engine, status) = tokio::select! {
            status = postgres => (EngineKind::Postgres, status),
            status = restate => (EngineKind::Restate, status),
        };
        Death {
            engine,
            status: describe(status),
        }
    }

    /// Restarts the child that died, on the same data and ports; after
    /// restate-server, registers the service's deployment again if the engine lost
    /// it. An error when it died too often in a row or does not come back.
    pub async fn recover(
        &mut self,
        death: Death,
        config: &Config,
        service: &RunningService,
    ) -> anyhow::Result<()> {
        match death.engine {
            EngineKind::Postgres => {
                let watched = self.postgres.as_mut().expect("a watched PostgreSQL");
                restart(watched, death.status).await
            }
            EngineKind::Restate => {
                let watched = self.restate.as_mut().expect("a watched restate-server");
                restart(watched, death.status).await?;
                let admin = Admin::new(&[&watched.engine.admin_url]);
                // The deployment is kept in restate's data dir, so it is usually there.
                let endpoint_url = &service.endpoint_url;
                if !matches!(admin.has_deployment(endpoint_url).await, Ok(true)) {
                    admin
                        .register_deployment(
                            endpoint_url,
                            &service.served,
                            config.restate_force_register.unwrap_or(false),
                            Duration::from_secs(60),
                        )
                        .await?;
                    tracing::info!(endpoint = %endpoint_url, "deployment registered again");
                }
                Ok(())
            }
        }
    }

    /// Stops what [`DevStack::start`] started, newest first.
    pub async fn stop(&mut self) {
        if let Some(restate) = self.restate.take() {
            restate.engine.stop().await;
        }
        if let Some(sim) = self.sim.take() {
            sim.shutdown();
        }
        if let Some(mut postgres) = self.postgres.take() {
            postgres.engine.stop().await;
        }
    }
}

/// Decides what to start; picks the private PostgreSQL's port.
fn plan(config: &Config) -> anyhow::Result<Plan> {
    let postgres = match config.database_dsn {
        Some(_) => None,
        None => Some((config.data_dir.join("postgres"), free_port()?)),
    };
    let restate = match (&config.restate_ingress_urls, &config.restate_admin_urls) {
        (Some(_), Some(_)) => None,
        _ => Some(RestateSettings::single(
            &restate_server::find_binary(config.restate_server_bin.as_deref())?,
            &std::path::absolute(config.data_dir.join("restate"))?,
            (
                config.restate_ingress_port,
                config.restate_admin_port,
                config.restate_node_port,
            ),
            Some(RequestIdentity::in_dir(&config.data_dir)?.private_key_file),
        )),
    };
    Ok(Plan {
        postgres,
        restate,
        sim: config.downstream.any_missing(),
    })
}

/// Every port the plan and the service will listen on.
fn ports(config: &Config, plan: &Plan) -> Vec<PortUse> {
    let host = config.bind_host_or("127.0.0.1");
    let mut ports = vec![
        PortUse::set_by("ORDER_HTTP_PORT", host, config.http_port),
        PortUse::set_by("ORDER_GRPC_PORT", host, config.grpc_port),
        PortUse::set_by(
            "ORDER_RESTATE_ENDPOINT_PORT",
            host,
            config.restate_endpoint_port,
        ),
    ];
    if let Some(settings) = &plan.restate {
        ports.extend(settings.ports());
    }
    if plan.sim {
        ports.push(PortUse::set_by(
            "ORDER_SIM_PORT",
            "127.0.0.1",
            config.sim_port,
        ));
    }
    if let Some((_, port)) = plan.postgres {
        ports.push(PrivateCluster::port_use(port));
    }
    ports
}

/// A child process `dev` restarts when it dies.
pub(crate) trait Engine {
    const NAME: &'static str;
    async fn restart(&mut self) -> anyhow::Result<()>;
    fn log_path(&self) -> PathBuf;
}

impl Engine for RestateServer {
    const NAME: &'static str = "restate-server";
    async fn restart(&mut self) -> anyhow::Result<()> {
        RestateServer::restart(self).await
    }
    fn log_path(&self) -> PathBuf {
        RestateServer::log_path(self)
    }
}

impl Engine for PrivateCluster {
    const NAME: &'static str = "private PostgreSQL";
    async fn restart(&mut self) -> anyhow::Result<()> {
        PrivateCluster::restart(self).await
    }
    fn log_path(&self) -> PathBuf {
        PrivateCluster::log_path(self).to_owned()
    }
}

/// A child with its count of restarts in a row.
pub(crate) struct Watched<E> {
    pub(crate) engine: E,
    restarts: u32,
    since: Instant,
}

impl<E> Watched<E> {
    pub(crate) fn new(engine: E) -> Self {
        Watched {
            engine,
            restarts: 0,
            since: Instant::now(),
        }
    }
}

/// Starts a dead child again, with a growing pause, unless it already died
/// [`MAX_RESTARTS`] times in a row.
pub(crate) async fn restart<E: Engine>(
    watched: &mut Watched<E>,
    status: String,
) -> anyhow::Result<()> {
    if watched.since.elapsed() >= STABLE_AFTER {
        watched.restarts = 0;
    }
    let mut last = status;
    loop {
        if watched.restarts >= MAX_RESTARTS {
            anyhow::bail!(
                "{} stopped {MAX_RESTARTS} times in a row (last: {last}); stopping everything; \
                 see {}",
                E::NAME,
                watched.engine.log_path().display()
            );
        }
        watched.restarts += 1;
        let pause = Duration::from_millis(500 << (watched.restarts - 1));
        tracing::warn!(
            status = %last,
            attempt = watched.restarts,
            "{} stopped; restarting it in {pause:?}",
            E::NAME
        );
        tokio::time::sleep(pause).await;
        match watched.engine.restart().await {
            Ok(()) => {
                watched.since = Instant::now();
                tracing::info!("{} restarted", E::NAME);
                return Ok(());
            }
            Err(e) => last = format!("restart failed: {e:#}"),
        }
    }
}

pub(crate) fn describe(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(e) => format!("cannot tell how it stopped: {e}"),
    }
}
