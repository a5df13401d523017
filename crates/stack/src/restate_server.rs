//! Runs a local `restate-server` (the pinned npm package) for `dev`, `cluster`, the
//! tests, the chaos run and the benchmark: a single node, or the nodes of a cluster
//! on this machine ([`RestateCluster`]).

use crate::process::{free_port, isolate, stop, wait_listening, PortUse};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::process::{Child, Command};

/// The project's `restate.toml` (at the root of the workspace), written next to the
/// server's data at start.
const CONFIG: &str = include_str!("../../../restate.toml");

/// Restate nodes in a cluster on this machine (`cluster`, and the stack of the chaos
/// run and the benchmark).
pub const NODES: usize = 3;
/// On how many of them each log record and partition is kept.
pub const REPLICATION: u8 = 2;

/// Where and how to run the server.
#[derive(Debug, Clone)]
pub struct RestateSettings {
    pub bin: PathBuf,
    pub base_dir: PathBuf,
    pub ingress_port: u16,
    pub admin_port: u16,
    pub node_port: u16,
    /// Membership of a cluster; `None`: a single node with the project's
    /// `restate.toml`.
    pub cluster: Option<ClusterMember>,
    /// The PEM file of the private key the server signs its requests to the
    /// service's endpoint with (its request identity); `None`: unsigned.
    pub identity_key: Option<PathBuf>,
}

/// What makes a node one of a cluster of nodes on this machine: a replicated log
/// and a replicated (Raft) metadata store on every node.
#[derive(Debug, Clone)]
pub struct ClusterMember {
    pub cluster_name: String,
    pub node_name: String,
    /// The node (fabric) ports of every member, where the metadata store is found.
    pub member_node_ports: Vec<u16>,
    /// True on exactly one node: it provisions the cluster the first time.
    pub auto_provision: bool,
    /// On how many nodes each log record and each partition is kept.
    pub replication: u8,
}

impl RestateSettings {
    /// A single node with the project's `restate.toml`, its data under `base_dir`,
    /// listening on `(ingress, admin, node)` ports of the loopback.
    pub fn single(
        bin: &Path,
        base_dir: &Path,
        (ingress_port, admin_port, node_port): (u16, u16, u16),
        identity_key: Option<PathBuf>,
    ) -> RestateSettings {
        RestateSettings {
            bin: bin.to_owned(),
            base_dir: base_dir.to_owned(),
            ingress_port,
            admin_port,
            node_port,
            cluster: None,
            identity_key,
        }
    }

    /// A single node on free ports of the loopback, its data under `base_dir`, with
    /// the binary that `RESTATE_SERVER_BIN` names or [`find_binary`] finds.
    pub fn on_free_ports(
        base_dir: &Path,
        identity_key: Option<PathBuf>,
    ) -> anyhow::Result<RestateSettings> {
        Ok(RestateSettings::single(
            &configured_binary()?,
            base_dir,
            free_ports()?,
            identity_key,
        ))
    }

    /// The three ports the server listens on, with the variables that set them.
    pub fn ports(&self) -> [PortUse; 3] {
        let on = |var, port| PortUse::set_by(var, "127.0.0.1", port);
        [
            on("ORDER_RESTATE_INGRESS_PORT", self.ingress_port),
            on("ORDER_RESTATE_ADMIN_PORT", self.admin_port),
            on("ORDER_RESTATE_NODE_PORT", self.node_port),
        ]
    }

    fn log_path(&self) -> PathBuf {
        self.base_dir.join("restate-server.log")
    }

    fn node_name(&self) -> &str {
        match &self.cluster {
            Some(member) => &member.node_name,
            None => "order-service",
        }
    }

    /// The server's configuration file: the project's `restate.toml` for a single
    /// node; for a cluster member, a file of its own with everything in it (the
    /// environment set at start says the same), so that it can also be started by
    /// hand with `restate-server --config-file <it>`.
    fn config_file(&self) -> String {
        let Some(member) = &self.cluster else {
            return CONFIG.to_owned();
        };
        let members: Vec<String> = member
            .member_node_ports
            .iter()
            .map(|port| format!("\"http://127.0.0.1:{port}/\""))
            .collect();
        format!(
            r#"# Node {node} of the cluster {cluster}, written at each start.
node-name = "{node}"
cluster-name = "{cluster}"
base-dir = "{base_dir}"
listen-mode = "tcp"
bind-address = "127.0.0.1:{node_port}"
advertised-address = "http://127.0.0.1:{node_port}/"
# True on one node only: it provisions the cluster the first time.
auto-provision = {auto_provision}
# Fixed when the cluster is provisioned.
default-num-partitions = 2
# Each log record and each partition on {replication} nodes.
default-replication = {replication}
# Caps for several nodes on one machine.
rocksdb-total-memory-size = "1 GiB"

[bifrost]
default-provider = "replicated"
record-cache-memory-size = "128 MiB"

[metadata-client]
type = "replicated"
addresses = [{members}]

[admin]
bind-address = "127.0.0.1:{admin_port}"

[admin.query-engine]
memory-size = "256 MiB"

[ingress]
bind-address = "127.0.0.1:{ingress_port}"

[worker.invoker]
inactivity-timeout = "1m"
{identity}"#,
            node = member.node_name,
            cluster = member.cluster_name,
            base_dir = self.base_dir.display(),
            node_port = self.node_port,
            auto_provision = member.auto_provision,
            replication = member.replication,
            members = members.join(", "),
            admin_port = self.admin_port,
            ingress_port = self.ingress_port,
            identity = match &self.identity_key {
                Some(file) => format!(
                    "request-identity-private-key-pem-file = \"{}\"\n",
                    file.display()
                ),
                None => String::new(),
            },
        )
    }
}

/// A running restate-server child process.
pub struct RestateServer {
    child: Child,
    settings: RestateSettings,
    pub ingress_url: String,
    pub admin_url: String,
}

/// Three free ports of the loopback: ingress, admin and node.
pub fn free_ports() -> std::io::Result<(u16, u16, u16)> {
    Ok((free_port()?, free_port()?, free_port()?))
}

/// The restate-server binary that `RESTATE_SERVER_BIN` names, else the one
/// [`find_binary`] finds.
pub fn configured_binary() -> anyhow::Result<PathBuf> {
    let configured = std::env::var_os("RESTATE_SERVER_BIN").map(PathBuf::from);
    find_binary(configured.as_deref())
}

/// Finds the restate-server binary: `configured` (`RESTATE_SERVER_BIN`), else the one
/// `make setup` installed under `node_modules/`, else `restate-server` on the PATH.
pub fn find_binary(configured: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(bin) = configured {
        anyhow::ensure!(
            bin.is_file(),
            "RESTATE_SERVER_BIN={} is not a file",
            bin.display()
        );
        return Ok(bin.to_owned());
    }
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "x64"
    };
    let relative =
        format!("node_modules/@restatedev/restate-server-linux-{arch}/bin/restate-server");
    // The workspace root, two folders above this crate.
    let roots = [
        std::env::current_dir().ok(),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")),
    ];
    if let Some(found) = roots
        .into_iter()
        .flatten()
        .map(|r| r.join(&relative))
        .find(|p| p.is_file())
    {
        return Ok(found);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("restate-server"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        anyhow::anyhow!(
            "restate-server not found: run `make setup` (installs the pinned npm package) or set RESTATE_SERVER_BIN"
        )
    })
}

impl RestateServer {
    /// Starts the server and waits until its admin API answers and it listens on its
    /// three ports (not another copy's server).
    pub async fn start(settings: &RestateSettings) -> anyhow::Result<RestateServer> {
        let child = spawn(settings, false).await?;
        Ok(RestateServer {
            child,
            settings: settings.clone(),
            ingress_url: format!("http://127.0.0.1:{}", settings.ingress_port),
            admin_url: format!("http://127.0.0.1:{}", settings.admin_port),
        })
    }

    /// Starts the server again on the same data and ports, after it stopped; its log
    /// goes on in the same file.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.child = spawn(&self.settings, true).await?;
        Ok(())
    }

    /// Waits until the process exits (cancel safe).
    pub async fn exited(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Its log file.
    pub fn log_path(&self) -> PathBuf {
        self.settings.log_path()
    }

    /// Stops the server gracefully (SIGTERM), killing it after 10 s.
    pub async fn stop(mut self) {
        stop(&mut self.child, libc::SIGTERM, Duration::from_secs(10)).await;
    }

    /// Kills the server at once, as a crash would.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// Kills the server at once, as a crash would, keeping what is needed to
    /// [`restart`](RestateServer::restart) it.
    pub async fn crash(&mut self) {
        let _ = self.child.kill().await;
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// How it is run.
    pub fn settings(&self) -> &RestateSettings {
        &self.settings
    }
}

/// Several restate-server nodes on this machine forming one cluster.
pub struct RestateCluster {
    pub nodes: Vec<RestateServer>,
}

impl RestateCluster {
    /// Settings for a cluster `name` of one node per `(ingress, admin, node)` ports
    /// triple, each with its data under `base_dir/n<i>` (i from 1) and signing with
    /// `identity_key`; node 1 provisions it, and everything is kept on
    /// `replication` nodes.
    pub fn settings(
        bin: &Path,
        base_dir: &Path,
        name: &str,
        ports: &[(u16, u16, u16)],
        replication: u8,
        identity_key: Option<&Path>,
    ) -> Vec<RestateSettings> {
        let members: Vec<u16> = ports.iter().map(|(_, _, node)| *node).collect();
        ports
            .iter()
            .enumerate()
            .map(
                |(i, &(ingress_port, admin_port, node_port))| RestateSettings {
                    bin: bin.to_owned(),
                    base_dir: base_dir.join(format!("n{}", i + 1)),
                    ingress_port,
                    admin_port,
                    node_port,
                    identity_key: identity_key.map(Path::to_owned),
                    cluster: Some(ClusterMember {
                        cluster_name: name.to_owned(),
                        node_name: format!("n{}", i + 1),
                        member_node_ports: members.clone(),
                        auto_provision: i == 0,
                        replication,
                    }),
                },
            )
            .collect()
    }

    /// Starts every node at once (the others wait for the first to provision the
    /// cluster) and waits until each answers; stops those started when one fails.
    pub async fn start(settings: &[RestateSettings]) -> anyhow::Result<RestateCluster> {
        let started = join_all(settings.iter().map(RestateServer::start)).await;
        let mut nodes = Vec::new();
        let mut failure = None;
        for (i, node) in started.into_iter().enumerate() {
            match node {
                Ok(node) => nodes.push(node),
                Err(e) => failure = failure.or(Some(e.context(format!("node n{}", i + 1)))),
            }
        }
        if let Some(e) = failure {
            RestateCluster { nodes }.stop().await;
            return Err(e);
        }
        Ok(RestateCluster { nodes })
    }

    /// Every node's ingress URL, node 1 first.
    pub fn ingress_urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.ingress_url.clone()).collect()
    }

    /// Every node's admin API URL, node 1 first.
    pub fn admin_urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.admin_url.clone()).collect()
    }

    /// Stops every node gracefully, all at once.
    pub async fn stop(self) {
        join_all(self.nodes.into_iter().map(RestateServer::stop)).await;
    }
}

/// Runs the futures together and gives their outputs in order.
async fn join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = handles.iter().map(|_| None).collect();
    let mut handles: Vec<Option<_>> = handles.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, output) in handles.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}

/// Starts the process and waits until it answers and listens on its ports.
async fn spawn(settings: &RestateSettings, append_log: bool) -> anyhow::Result<Child> {
    std::fs::create_dir_all(&settings.base_dir)?;
    let config = settings.base_dir.join("restate.toml");
    std::fs::write(&config, settings.config_file())?;
    let log_path = settings.log_path();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append_log)
        .truncate(!append_log)
        .open(&log_path)?;
    let mut cmd = Command::new(&settings.bin);
    cmd.arg("--config-file")
        .arg(&config)
        .env("RESTATE_BASE_DIR", &settings.base_dir)
        .env("RESTATE_NODE_NAME", settings.node_name())
        .env(
            "RESTATE_BIND_ADDRESS",
            format!("127.0.0.1:{}", settings.node_port),
        )
        .env(
            "RESTATE_ADVERTISED_ADDRESS",
            format!("http://127.0.0.1:{}", settings.node_port),
        )
        .env(
            "RESTATE_INGRESS__BIND_ADDRESS",
            format!("127.0.0.1:{}", settings.ingress_port),
        )
        .env(
            "RESTATE_ADMIN__BIND_ADDRESS",
            format!("127.0.0.1:{}", settings.admin_port),
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    if let Some(file) = &settings.identity_key {
        cmd.env(
            "RESTATE_WORKER__INVOKER__REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE",
            file,
        );
    }
    isolate(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", settings.bin.display()))?;
    let admin_url = format!("http://127.0.0.1:{}", settings.admin_port);
    let ports = settings.ports();
    let ready = async {
        // The admin API may answer from another copy's server on that port: the
        // check of who listens tells.
        let admin = order_service::engine::admin::Admin::new(&[&admin_url]);
        let start = std::time::Instant::now();
        while !admin.healthy().await {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!(
                    "restate-server exited during start ({status}); see {}",
                    log_path.display()
                );
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(60),
                "restate admin API at {admin_url} did not answer within 60s; see {}",
                log_path.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        wait_listening(
            &mut child,
            "restate-server",
            &ports,
            Duration::from_secs(30),
            &log_path,
        )
        .await
    };
    if let Err(e) = ready.await {
        stop(&mut child, libc::SIGKILL, Duration::from_secs(5)).await;
        return Err(e);
    }
    Ok(child)
}
