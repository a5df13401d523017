//! The whole order service on free ports, for the end-to-end tests, the chaos run
//! and the benchmark: a database of its own on a given server; one restate-server,
//! or a cluster of three nodes (replication 2); the service as child processes
//! (`order-service serve`) that can be killed, started again and measured, several
//! of them behind one deployment address. The simulator runs in the calling process
//! (it plays the downstream services and keeps the ledger, so it never dies).

use crate::balancer::Balancer;
use crate::postgres::ServerDatabase;
use crate::restate_server::{
    configured_binary, free_ports, RestateCluster, RestateServer, RestateSettings, NODES,
    REPLICATION,
};
use crate::service::{
    replica_backends, serve_env, set_var, ServiceOutput, ServicePorts, ServiceProcess, REPLICAS,
};
use order_service::config::DownstreamAddrs;
use order_service::engine::secrets::LocalSecrets;
use order_service::startup::Backends;
use order_sim::{SimConfig, SimHandle, Simulator};
use sqlx::PgPool;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// One Restate node, or a cluster of three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Single,
    Cluster,
}

impl Topology {
    /// Its Restate nodes.
    pub fn nodes(self) -> usize {
        match self {
            Topology::Single => 1,
            Topology::Cluster => NODES,
        }
    }

    /// The service replicas it stands for: one on a node, two on a cluster (as
    /// `cluster` runs it).
    pub fn replicas(self) -> usize {
        match self {
            Topology::Single => 1,
            Topology::Cluster => REPLICAS,
        }
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub topology: Topology,
    /// Service replicas; more than one stand behind a balancer as one deployment.
    pub replicas: usize,
    /// Names the data folder (`order-{name}-...`) and the database
    /// (`order_{name}_...`).
    pub name: &'static str,
    /// Settings of the service beyond where everything is (`ORDER_*`); they win
    /// over the stack's.
    pub service_env: Vec<(String, String)>,
    /// The simulator's settings.
    pub sim: SimConfig,
    /// The `order-service` binary; `None`: the one beside this executable.
    pub service_bin: Option<PathBuf>,
    /// The services' `RUST_LOG`.
    pub service_log_filter: String,
    /// The services' stderr to this process's instead of their log files.
    pub service_stderr_inherit: bool,
    /// Keep the data folder (logs, Restate's data) when the stack stops.
    pub keep_dir: bool,
}

impl StackOptions {
    /// `topology` with as many replicas as it stands for, named `name`.
    pub fn new(name: &'static str, topology: Topology) -> StackOptions {
        StackOptions {
            topology,
            replicas: topology.replicas(),
            name,
            service_env: Vec::new(),
            sim: SimConfig::default(),
            service_bin: None,
            service_log_filter: "warn".into(),
            service_stderr_inherit: false,
            keep_dir: false,
        }
    }
}

/// A running stack. Dropped, it kills what it started and drops its database;
/// [`Stack::stop`] stops it gracefully.
pub struct Stack {
    /// The secrets the service and the engine share.
    pub secrets: LocalSecrets,
    /// Each replica's `http://HOST:PORT/api/v1`.
    pub apis: Vec<String>,
    /// Each replica's gRPC server, `http://HOST:PORT`.
    pub grpcs: Vec<String>,
    pub db: PgPool,
    pub sim: SimHandle,
    /// The Restate nodes.
    pub nodes: Vec<RestateServer>,
    pub dir: PathBuf,
    services: Vec<ServiceProcess>,
    balancer: Option<Balancer>,
    database: Option<ServerDatabase>,
    keep_dir: bool,
}

impl Stack {
    /// Starts everything on free ports, with a database made on the server at
    /// `admin_dsn`.
    pub async fn start(admin_dsn: &str, options: &StackOptions) -> anyhow::Result<Stack> {
        let name = options.name;
        let id = uuid::Uuid::new_v4().simple();
        let dir = std::env::temp_dir().join(format!("order-{name}-{id}"));
        std::fs::create_dir_all(&dir)?;
        let database = ServerDatabase::create(admin_dsn, &format!("order_{name}_{id}")).await?;
        let db = PgPool::connect(&database.dsn).await?;
        // The request identity restate-server signs with, and the API's caller key.
        let secrets = LocalSecrets::in_dir(&dir)?;
        let sim = Simulator::spawn_with("127.0.0.1:0".parse()?, options.sim.clone()).await?;
        let mut stack = Stack {
            secrets,
            apis: Vec::new(),
            grpcs: Vec::new(),
            db,
            sim,
            nodes: Vec::new(),
            dir,
            services: Vec::new(),
            balancer: None,
            database: Some(database),
            keep_dir: options.keep_dir,
        };
        // From here on, a failure drops the stack: what started is killed.
        stack.nodes = start_nodes(options.topology, &stack.dir, name, &stack.secrets).await?;
        let backends = Backends {
            database_dsn: stack.database.as_ref().expect("made above").dsn.clone(),
            ingress_urls: stack.ingress_urls(),
            admin_urls: stack.admin_urls(),
            downstream: DownstreamAddrs::default().or_all(&stack.sim.base_url()),
        };
        let ports: Vec<ServicePorts> = (0..options.replicas)
            .map(|_| ServicePorts::free())
            .collect::<Result<_, _>>()?;
        // Several replicas serve one deployment through a balancer, as behind a
        // load balancer in production.
        if options.replicas > 1 {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let endpoints = ports
                .iter()
                .map(|p| SocketAddr::from(([127, 0, 0, 1], p.endpoint)))
                .collect();
            stack.balancer = Some(Balancer::start(listener, endpoints)?);
        }
        let bin = match &options.service_bin {
            Some(bin) => bin.clone(),
            None => std::env::current_exe()?.with_file_name("order-service"),
        };
        for (i, ports) in ports.iter().enumerate() {
            let mut env = serve_env(&replica_backends(&backends, i), ports);
            if let Some(balancer) = &stack.balancer {
                env.push(("ORDER_RESTATE_ENDPOINT_URL".into(), balancer.url.clone()));
                env.push(("ORDER_RESTATE_FORCE_REGISTER".into(), "true".into()));
            }
            env.extend(stack.secrets.service_env());
            for (var, value) in &options.service_env {
                set_var(&mut env, var, value.clone());
            }
            let log = match options.replicas {
                1 => "service.log".to_owned(),
                _ => format!("service-{}.log", i + 1),
            };
            let output = ServiceOutput {
                log_path: stack.dir.join(log),
                inherit: options.service_stderr_inherit,
                filter: options.service_log_filter.clone(),
            };
            stack
                .apis
                .push(format!("http://127.0.0.1:{}/api/v1", ports.http));
            stack.grpcs.push(format!("http://127.0.0.1:{}", ports.grpc));
            stack.services.push(ServiceProcess::new(&bin, env, output));
        }
        for i in 0..options.replicas {
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

    /// Starts replica `i` and waits for its ready line.
    pub async fn start_service(&mut self, i: usize) -> anyhow::Result<()> {
        self.services[i]
            .start()
            .await
            .map_err(|e| e.context(format!("replica {}", i + 1)))
    }

    /// SIGKILL to replica `i`, as a crash would.
    pub async fn kill_service(&mut self, i: usize) {
        self.services[i].kill().await;
    }

    /// Replica `i`: its environment, its log.
    pub fn service(&self, i: usize) -> &ServiceProcess {
        &self.services[i]
    }

    /// Replica `i`, to change the environment it is next started with.
    pub fn service_mut(&mut self, i: usize) -> &mut ServiceProcess {
        &mut self.services[i]
    }

    /// The process ids of the running replicas.
    pub fn service_pids(&self) -> Vec<u32> {
        self.services
            .iter()
            .filter_map(ServiceProcess::pid)
            .collect()
    }

    /// Stops everything gracefully and drops the database; the data folder stays
    /// when `keep`.
    pub async fn stop(mut self, keep: bool) {
        for service in &mut self.services {
            service.kill().await;
        }
        if let Some(balancer) = self.balancer.take() {
            balancer.stop().await;
        }
        RestateCluster {
            nodes: std::mem::take(&mut self.nodes),
        }
        .stop()
        .await;
        self.db.close().await;
        if let Some(database) = self.database.take() {
            let _ = database.drop_database().await;
        }
        self.keep_dir |= keep;
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // The services and the nodes are killed as they are dropped (kill on drop);
        // waiting for them from another runtime would never see them exit.
        self.services.clear();
        self.nodes.clear();
        if let Some(database) = self.database.take() {
            database.drop_database_blocking();
        }
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The Restate nodes of `topology` on free ports, with their data under
/// `dir/restate`, signing with the secrets' request identity.
async fn start_nodes(
    topology: Topology,
    dir: &Path,
    name: &str,
    secrets: &LocalSecrets,
) -> anyhow::Result<Vec<RestateServer>> {
    let identity = &secrets.identity.private_key_file;
    match topology {
        Topology::Single => {
            // A free port can be taken by a parallel start before the server binds
            // it: such a start is tried again on other ports, each try on data of
            // its own (the failed one may have left some).
            let mut attempt = 1;
            loop {
                let base = match attempt {
                    1 => dir.join("restate"),
                    n => dir.join(format!("try-{n}")).join("restate"),
                };
                let settings = RestateSettings::on_free_ports(&base, Some(identity.clone()))?;
                match RestateServer::start(&settings).await {
                    Ok(node) => return Ok(vec![node]),
                    Err(e) if attempt < 3 && e.to_string().contains("exited during start") => {
                        attempt += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Topology::Cluster => {
            let ports = (0..topology.nodes())
                .map(|_| free_ports())
                .collect::<Result<Vec<_>, _>>()?;
            let settings = RestateCluster::settings(
                &configured_binary()?,
                &dir.join("restate"),
                &format!("order-{name}"),
                &ports,
                REPLICATION,
                Some(identity),
            );
            Ok(RestateCluster::start(&settings).await?.nodes)
        }
    }
}
