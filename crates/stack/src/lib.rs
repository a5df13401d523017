//! What the chaos run and the benchmark stand on: a database of its own; one
//! restate-server, or a cluster of three nodes (replication 2); the service, once or
//! as two replicas behind one deployment address; all as child processes that can
//! be killed, started again and measured. The simulator runs in the calling process
//! (it plays the downstream services and keeps the ledger, so it never dies).

use anyhow::Context;
use order_service::engine::balancer;
use order_service::engine::postgres::with_database;
use order_service::engine::process::{free_port, wait_ready};
use order_service::engine::restate_server::{
    find_binary, RestateCluster, RestateServer, RestateSettings,
};
use order_service::engine::secrets::LocalSecrets;
use order_sim::{SimConfig, SimHandle, Simulator};
use sqlx::PgPool;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// One node and one service, or three nodes and two replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Single,
    Cluster,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub topology: Topology,
    /// Names the data folder and the database (`order_{name}_...`).
    pub name: &'static str,
    /// Settings of the service beyond where everything is (`ORDER_*`).
    pub service_env: Vec<(String, String)>,
}

pub struct Stack {
    /// The secrets the service and the engine share.
    pub secrets: LocalSecrets,
    /// Each replica's `http://HOST:PORT/api/v1`.
    pub apis: Vec<String>,
    pub db: PgPool,
    pub sim: SimHandle,
    /// The Restate nodes.
    pub nodes: Vec<RestateServer>,
    pub dir: PathBuf,
    services: Vec<Option<Child>>,
    service_envs: Vec<Vec<(String, String)>>,
    balancer: Option<watch::Sender<bool>>,
    admin_dsn: String,
    db_name: String,
}

impl Stack {
    /// Starts everything on free ports, with a database made on the server at
    /// `admin_dsn`.
    pub async fn start(admin_dsn: &str, options: &StackOptions) -> anyhow::Result<Stack> {
        let (topology, name) = (options.topology, options.name);
        let id = uuid::Uuid::new_v4().simple();
        let dir = std::env::temp_dir().join(format!("order-{name}-{id}"));
        std::fs::create_dir_all(&dir)?;
        let db_name = format!("order_{name}_{id}");
        let admin = PgPool::connect(admin_dsn)
            .await
            .with_context(|| format!("PostgreSQL reachable at {admin_dsn}"))?;
        sqlx::query(&format!("CREATE DATABASE {db_name}"))
            .execute(&admin)
            .await?;
        admin.close().await;
        let dsn = with_database(admin_dsn, &db_name);

        // The request identity restate-server signs with, and the API's caller key.
        let secrets = LocalSecrets::in_dir(&dir)?;
        let sim = Simulator::spawn_with("127.0.0.1:0".parse()?, SimConfig::default()).await?;
        let configured = std::env::var_os("RESTATE_SERVER_BIN").map(PathBuf::from);
        let bin = find_binary(configured.as_deref())?;
        let nodes = match topology {
            Topology::Single => vec![
                RestateServer::start(&RestateSettings {
                    bin,
                    base_dir: dir.join("restate"),
                    ingress_port: free_port()?,
                    admin_port: free_port()?,
                    node_port: free_port()?,
                    cluster: None,
                    identity_key: Some(secrets.identity.private_key_file.clone()),
                })
                .await?,
            ],
            Topology::Cluster => {
                let ports = (0..3)
                    .map(|_| Ok((free_port()?, free_port()?, free_port()?)))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let mut settings = RestateCluster::settings(
                    &bin,
                    &dir.join("restate"),
                    &format!("order-{name}"),
                    &ports,
                    2,
                );
                for node in &mut settings {
                    node.identity_key = Some(secrets.identity.private_key_file.clone());
                }
                RestateCluster::start(&settings).await?.nodes
            }
        };
        let ingress: Vec<String> = nodes.iter().map(|n| n.ingress_url.clone()).collect();
        let admin: Vec<String> = nodes.iter().map(|n| n.admin_url.clone()).collect();

        // Two replicas serve one deployment through a balancer, as behind a load
        // balancer in production; each lists the nodes starting from another one.
        let replicas = match topology {
            Topology::Single => 1,
            Topology::Cluster => 2,
        };
        let endpoint_ports: Vec<u16> = (0..replicas)
            .map(|_| free_port())
            .collect::<Result<_, _>>()?;
        let mut deployment = None;
        let mut balancer_stop = None;
        if topology == Topology::Cluster {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            deployment = Some(format!("http://{}", listener.local_addr()?));
            let endpoints: Vec<SocketAddr> = endpoint_ports
                .iter()
                .map(|&port| SocketAddr::from(([127, 0, 0, 1], port)))
                .collect();
            let (stop, mut stopped) = watch::channel(false);
            tokio::spawn(balancer::balance(listener, endpoints, async move {
                let _ = stopped.wait_for(|s| *s).await;
            }));
            balancer_stop = Some(stop);
        }
        let mut apis = Vec::new();
        let mut service_envs = Vec::new();
        for (i, endpoint_port) in endpoint_ports.into_iter().enumerate() {
            let http_port = free_port()?;
            let rotated = |urls: &[String]| {
                let mut urls = urls.to_vec();
                let by = i % urls.len();
                urls.rotate_left(by);
                urls.join(",")
            };
            let mut env: Vec<(&str, String)> = vec![
                ("ORDER_DATABASE_DSN", dsn.clone()),
                ("ORDER_BIND_HOST", "127.0.0.1".into()),
                ("ORDER_HTTP_PORT", http_port.to_string()),
                ("ORDER_GRPC_PORT", free_port()?.to_string()),
                ("ORDER_RESTATE_ENDPOINT_PORT", endpoint_port.to_string()),
                ("ORDER_RESTATE_INGRESS_URL", rotated(&ingress)),
                ("ORDER_RESTATE_ADMIN_URL", rotated(&admin)),
                ("ORDER_WAREHOUSE_SERVICE_ADDR", sim.base_url()),
                ("ORDER_PAYMENT_SERVICE_ADDR", sim.base_url()),
                ("ORDER_FULFILLMENT_SERVICE_ADDR", sim.base_url()),
                ("ORDER_NOTIFICATION_SERVICE_ADDR", sim.base_url()),
                ("ORDER_PUBSUB_ADDR", sim.base_url()),
            ];
            if let Some(url) = &deployment {
                env.push(("ORDER_RESTATE_ENDPOINT_URL", url.clone()));
                env.push(("ORDER_RESTATE_FORCE_REGISTER", "true".into()));
            }
            apis.push(format!("http://127.0.0.1:{http_port}/api/v1"));
            let mut env: Vec<(String, String)> =
                env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            env.extend(secrets.service_env());
            env.extend(options.service_env.iter().cloned());
            service_envs.push(env);
        }
        let mut stack = Stack {
            secrets,
            apis,
            db: PgPool::connect(&dsn).await?,
            sim,
            nodes,
            dir,
            services: (0..replicas).map(|_| None).collect(),
            service_envs,
            balancer: balancer_stop,
            admin_dsn: admin_dsn.to_owned(),
            db_name,
        };
        for i in 0..replicas {
            stack.start_service(i).await?;
        }
        Ok(stack)
    }

    pub fn ingress_urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.ingress_url.clone()).collect()
    }

    pub fn admin_urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.admin_url.clone()).collect()
    }

    /// Starts replica `i` (`order-service serve`, beside this binary) and waits for
    /// its ready line.
    pub async fn start_service(&mut self, i: usize) -> anyhow::Result<()> {
        let bin = std::env::current_exe()?.with_file_name("order-service");
        let log_path = self.dir.join(format!("service-{}.log", i + 1));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let env = &self.service_envs[i];
        let mut child = Command::new(&bin)
            .arg("serve")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        anyhow::ensure!(
            wait_ready(&mut child, Duration::from_secs(90)).await,
            "replica {} did not start; see {}",
            i + 1,
            log_path.display()
        );
        self.services[i] = Some(child);
        Ok(())
    }

    /// The process ids of the running replicas.
    pub fn service_pids(&self) -> Vec<u32> {
        self.services
            .iter()
            .flatten()
            .filter_map(Child::id)
            .collect()
    }

    /// SIGKILL to replica `i`, as a crash would.
    pub async fn kill_service(&mut self, i: usize) {
        if let Some(mut child) = self.services[i].take() {
            let _ = child.kill().await;
        }
    }

    /// Stops everything and drops the database; the data folder stays when `keep`.
    pub async fn stop(mut self, keep: bool) {
        for i in 0..self.services.len() {
            self.kill_service(i).await;
        }
        if let Some(stop) = self.balancer.take() {
            let _ = stop.send(true);
        }
        RestateCluster {
            nodes: std::mem::take(&mut self.nodes),
        }
        .stop()
        .await;
        self.db.close().await;
        if let Ok(admin) = PgPool::connect(&self.admin_dsn).await {
            let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db_name);
            let _ = sqlx::query(&drop).execute(&admin).await;
        }
        if !keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
