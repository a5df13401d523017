//! Wiring: the service itself (`serve`) and the embedded default (`dev`), which also
//! runs PostgreSQL, restate-server and the downstream simulator.

use crate::api::{self, ApiSettings, ApiState};
use crate::config::{Config, DownstreamAddrs};
use crate::downstream::Downstream;
use crate::engine::admin::Admin;
use crate::engine::endpoint;
use crate::engine::ingress::Ingress;
use crate::engine::postgres::PrivateCluster;
use crate::engine::restate_server::{self, RestateServer, RestateSettings};
use crate::sim::{SimHandle, Simulator};
use crate::workflows::{self, Deps};
use crate::{read_model, relay};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const ALL_INTERFACES: &str = "0.0.0.0";

/// Where the service finds PostgreSQL, Restate and the downstream services.
#[derive(Debug, Clone)]
pub struct Backends {
    pub database_dsn: String,
    pub ingress_url: String,
    pub admin_url: String,
    pub downstream: DownstreamAddrs,
}

/// The running service: REST API and Restate endpoint.
pub struct RunningService {
    pub http_addr: SocketAddr,
    pub endpoint_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningService {
    /// Starts the service: migrates the read model, serves the Restate endpoint,
    /// registers it with Restate, then serves the API.
    pub async fn start(config: &Config, backends: &Backends) -> anyhow::Result<RunningService> {
        let db = read_model::connect(&backends.database_dsn, config.db_max_connections).await?;
        read_model::migrate(&db).await?;
        let downstream = Downstream::new(
            &backends.downstream,
            &config.pubsub_name,
            config.downstream_timeout,
        )?;
        let (stop, stopped) = watch::channel(false);
        let until_stopped = move || {
            let mut rx = stopped.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };

        let endpoint_listener = TcpListener::bind((
            config.bind_host_or(ALL_INTERFACES),
            config.restate_endpoint_port,
        ))
        .await?;
        let endpoint_addr = endpoint_listener.local_addr()?;
        let deps = Deps {
            db: db.clone(),
            downstream: downstream.clone(),
            draft_ttl: config.auto_cancel_draft_after,
        };
        let endpoint_task = tokio::spawn(endpoint::serve(
            endpoint_listener,
            workflows::endpoint(deps, &config.restate_identity_keys)?,
            until_stopped(),
        ));
        let relay_task = tokio::spawn(relay::run(db.clone(), downstream.clone(), until_stopped()));

        let admin = Admin::new(&backends.admin_url);
        let endpoint_url = config
            .restate_endpoint_url
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{}", endpoint_addr.port()));
        admin
            .register_deployment(&endpoint_url, Duration::from_secs(60))
            .await?;

        let state = ApiState {
            db,
            ingress: Ingress::new(&backends.ingress_url)?,
            admin,
            downstream,
            settings: Arc::new(ApiSettings::from_config(config)),
        };
        let http_listener =
            TcpListener::bind((config.bind_host_or(ALL_INTERFACES), config.http_port)).await?;
        let http_addr = http_listener.local_addr()?;
        let app = api::router(state);
        let shutdown = until_stopped();
        let http_task = tokio::spawn(async move {
            if let Err(e) = axum::serve(http_listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "API server failed");
            }
        });
        Ok(RunningService {
            http_addr,
            endpoint_addr,
            stop,
            tasks: vec![endpoint_task, relay_task, http_task],
        })
    }

    /// The API's base URL on the loopback interface.
    pub fn local_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_addr.port())
    }

    /// Stops serving, letting requests under way finish.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

/// `serve`: the service alone, against the PostgreSQL, Restate and downstream
/// services the configuration names.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let missing = |var: &str| anyhow::anyhow!("{var} must be set for `serve`");
    let downstream = &config.downstream;
    for (var, addr) in [
        ("ORDER_WAREHOUSE_SERVICE_ADDR", &downstream.warehouse),
        ("ORDER_PAYMENT_SERVICE_ADDR", &downstream.payment),
        ("ORDER_FULFILLMENT_SERVICE_ADDR", &downstream.fulfillment),
        ("ORDER_NOTIFICATION_SERVICE_ADDR", &downstream.notification),
        ("ORDER_PUBSUB_ADDR", &downstream.pubsub),
    ] {
        addr.as_ref().ok_or_else(|| missing(var))?;
    }
    let backends = Backends {
        database_dsn: config
            .database_dsn
            .clone()
            .ok_or_else(|| missing("ORDER_DATABASE_DSN"))?,
        ingress_url: config
            .restate_ingress_url
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{}", config.restate_ingress_port)),
        admin_url: config
            .restate_admin_url
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{}", config.restate_admin_port)),
        downstream: downstream.clone(),
    };
    let service = RunningService::start(&config, &backends).await?;
    announce_ready(&service);
    stop_signal().await;
    service.stop().await;
    Ok(())
}

/// `dev`: the embedded default. Starts what is not configured (a private PostgreSQL,
/// restate-server, the simulator), then the service; stops all of it on Ctrl-C or
/// SIGTERM.
pub async fn dev(config: Config) -> anyhow::Result<()> {
    // Everything dev starts is for this machine only, unless told otherwise.
    let config = Config {
        bind_host: Some(config.bind_host_or("127.0.0.1").to_owned()),
        ..config
    };
    let mut stack = DevStack::default();
    let started = match stack.start(&config).await {
        Ok(backends) => RunningService::start(&config, &backends).await,
        Err(e) => Err(e),
    };
    match started {
        Ok(service) => {
            announce_ready(&service);
            stop_signal().await;
            tracing::info!("stopping");
            service.stop().await;
            stack.stop().await;
            Ok(())
        }
        Err(e) => {
            stack.stop().await;
            Err(e)
        }
    }
}

/// The processes `dev` started, so that it can stop them in reverse order.
#[derive(Default)]
pub struct DevStack {
    postgres: Option<PrivateCluster>,
    restate: Option<RestateServer>,
    sim: Option<SimHandle>,
}

impl DevStack {
    /// Starts whatever `config` does not point at, and says where everything is.
    pub async fn start(&mut self, config: &Config) -> anyhow::Result<Backends> {
        std::fs::create_dir_all(&config.data_dir)?;
        let database_dsn = match &config.database_dsn {
            Some(dsn) => dsn.clone(),
            None => {
                let cluster = PrivateCluster::start(&config.data_dir.join("postgres")).await?;
                let dsn = cluster.dsn.clone();
                self.postgres = Some(cluster);
                dsn
            }
        };
        let (ingress_url, admin_url) =
            match (&config.restate_ingress_url, &config.restate_admin_url) {
                (Some(ingress), Some(admin)) => (ingress.clone(), admin.clone()),
                _ => {
                    let settings = RestateSettings {
                        bin: restate_server::find_binary(config.restate_server_bin.as_deref())?,
                        base_dir: std::path::absolute(config.data_dir.join("restate"))?,
                        ingress_port: config.restate_ingress_port,
                        admin_port: config.restate_admin_port,
                        node_port: config.restate_node_port,
                    };
                    let server = RestateServer::start(&settings).await?;
                    let urls = (server.ingress_url.clone(), server.admin_url.clone());
                    self.restate = Some(server);
                    urls
                }
            };
        let downstream = if config.downstream.any_missing() {
            let sim = Simulator::spawn(SocketAddr::from(([127, 0, 0, 1], config.sim_port))).await?;
            let addrs = config.downstream.or_all(&sim.base_url());
            tracing::info!(url = %sim.base_url(), "downstream simulator serving");
            self.sim = Some(sim);
            addrs
        } else {
            config.downstream.clone()
        };
        Ok(Backends {
            database_dsn,
            ingress_url,
            admin_url,
            downstream,
        })
    }

    /// Stops what [`DevStack::start`] started, newest first.
    pub async fn stop(&mut self) {
        if let Some(restate) = self.restate.take() {
            restate.stop().await;
        }
        if let Some(sim) = self.sim.take() {
            sim.shutdown();
        }
        if let Some(mut postgres) = self.postgres.take() {
            postgres.stop().await;
        }
    }
}

fn announce_ready(service: &RunningService) {
    use std::io::Write;
    println!("ready {}", service.local_url());
    let _ = std::io::stdout().flush();
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
pub async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
