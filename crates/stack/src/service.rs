//! The service as the stack runs it: where each replica finds everything
//! ([`Backends`], the same for the service in this process and in a child process),
//! and `order-service serve` as a child process that can be killed and started again.

use crate::process::{free_port, wait_ready};
use anyhow::Context;
use order_service::startup::Backends;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// Service replicas in front of a cluster on this machine (`cluster`, and the stack
/// of the chaos run and the benchmark), behind one deployment address.
pub const REPLICAS: usize = 2;

/// How long a service process may take to print its `ready` line.
const READY_WITHIN: Duration = Duration::from_secs(90);

/// `backends` as replica `i` (from 0) uses them: the Restate nodes listed from node
/// `i` on, so that each replica starts on another node.
pub fn replica_backends(backends: &Backends, i: usize) -> Backends {
    Backends {
        ingress_urls: rotated(&backends.ingress_urls, i),
        admin_urls: rotated(&backends.admin_urls, i),
        ..backends.clone()
    }
}

/// `urls` starting at entry `by`.
fn rotated(urls: &[String], by: usize) -> Vec<String> {
    let mut urls = urls.to_vec();
    if !urls.is_empty() {
        let by = by % urls.len();
        urls.rotate_left(by);
    }
    urls
}

/// The ports one service process listens on, on the loopback.
#[derive(Debug, Clone, Copy)]
pub struct ServicePorts {
    pub http: u16,
    pub grpc: u16,
    pub endpoint: u16,
}

impl ServicePorts {
    /// Three free ones.
    pub fn free() -> std::io::Result<ServicePorts> {
        Ok(ServicePorts {
            http: free_port()?,
            grpc: free_port()?,
            endpoint: free_port()?,
        })
    }
}

/// The environment that tells `order-service serve` where it listens and where
/// everything is: what [`order_service::startup::serve`] reads back into
/// [`Backends`].
pub fn serve_env(backends: &Backends, ports: &ServicePorts) -> Vec<(String, String)> {
    let downstream = &backends.downstream;
    let mut env: Vec<(&str, String)> = vec![
        ("ORDER_DATABASE_DSN", backends.database_dsn.clone()),
        ("ORDER_BIND_HOST", "127.0.0.1".into()),
        ("ORDER_HTTP_PORT", ports.http.to_string()),
        ("ORDER_GRPC_PORT", ports.grpc.to_string()),
        ("ORDER_RESTATE_ENDPOINT_PORT", ports.endpoint.to_string()),
        ("ORDER_RESTATE_INGRESS_URL", backends.ingress_urls.join(",")),
        ("ORDER_RESTATE_ADMIN_URL", backends.admin_urls.join(",")),
    ];
    for (var, addr) in downstream.by_variable() {
        if let Some(addr) = addr {
            env.push((var, addr.clone()));
        }
    }
    env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Sets `var` to `value` in `env`, in place of what it held.
pub fn set_var(env: &mut Vec<(String, String)>, var: &str, value: String) {
    env.retain(|(k, _)| k != var);
    env.push((var.to_owned(), value));
}

/// Where a service process writes its log.
#[derive(Debug, Clone)]
pub struct ServiceOutput {
    /// Its log file (stderr), appended to at each start.
    pub log_path: PathBuf,
    /// Its stderr to this process's stderr instead.
    pub inherit: bool,
    /// Its `RUST_LOG`.
    pub filter: String,
}

/// `order-service serve` as a child process: started with [`ServiceProcess::start`]
/// (until its `ready` line), killed as a crash would, started again with the same
/// environment or a changed one.
pub struct ServiceProcess {
    bin: PathBuf,
    env: Vec<(String, String)>,
    output: ServiceOutput,
    child: Option<Child>,
}

impl ServiceProcess {
    /// A service process, not yet started, of binary `bin` with `env`.
    pub fn new(bin: &Path, env: Vec<(String, String)>, output: ServiceOutput) -> ServiceProcess {
        ServiceProcess {
            bin: bin.to_owned(),
            env,
            output,
            child: None,
        }
    }

    /// Starts it and waits for its `ready` line.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.output.log_path)?;
        let mut child = Command::new(&self.bin)
            .arg("serve")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", &self.output.filter)
            .stdout(Stdio::piped())
            .stderr(match self.output.inherit {
                true => Stdio::inherit(),
                false => Stdio::from(log),
            })
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        anyhow::ensure!(
            wait_ready(&mut child, READY_WITHIN).await,
            "the service did not print its ready line; see {}",
            self.output.log_path.display()
        );
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL, as a crash would; waits until it is gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// The environment it is started with.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Sets `var` in the environment it is next started with.
    pub fn set_env(&mut self, var: &str, value: String) {
        set_var(&mut self.env, var, value);
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        &self.output.log_path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_replica_starts_on_another_node() {
        let urls: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        assert_eq!(rotated(&urls, 0), ["a", "b", "c"]);
        assert_eq!(rotated(&urls, 1), ["b", "c", "a"]);
        assert_eq!(rotated(&urls, 4), ["b", "c", "a"]);
    }

    #[test]
    fn set_var_replaces_the_value() {
        let mut env = vec![("A".to_owned(), "1".to_owned())];
        set_var(&mut env, "A", "2".into());
        set_var(&mut env, "B", "3".into());
        assert_eq!(
            env,
            [("A".into(), "2".into()), ("B".into(), "3".into())] as [(String, String); 2]
        );
    }
}
