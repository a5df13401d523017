//! Runs a local `restate-server` (the pinned npm package) for the embedded default
//! and the tests.

use super::process::{isolate, stop, wait_listening, PortUse};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::process::{Child, Command};

/// The project's `restate.toml`, written next to the server's data at start.
const CONFIG: &str = include_str!("../../restate.toml");

/// Where and how to run the server.
#[derive(Debug, Clone)]
pub struct RestateSettings {
    pub bin: PathBuf,
    pub base_dir: PathBuf,
    pub ingress_port: u16,
    pub admin_port: u16,
    pub node_port: u16,
}

impl RestateSettings {
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
}

/// A running restate-server child process.
pub struct RestateServer {
    child: Child,
    settings: RestateSettings,
    pub ingress_url: String,
    pub admin_url: String,
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
    let roots = [
        std::env::current_dir().ok(),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
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
}

/// Starts the process and waits until it answers and listens on its ports.
async fn spawn(settings: &RestateSettings, append_log: bool) -> anyhow::Result<Child> {
    std::fs::create_dir_all(&settings.base_dir)?;
    let config = settings.base_dir.join("restate.toml");
    std::fs::write(&config, CONFIG)?;
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
        .env("RESTATE_NODE_NAME", "order-service")
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
    isolate(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", settings.bin.display()))?;
    let admin_url = format!("http://127.0.0.1:{}", settings.admin_port);
    let ports = settings.ports();
    let ready = async {
        // The admin API may answer from another copy's server on that port: the
        // check of who listens tells.
        let admin = super::admin::Admin::new(&[&admin_url]);
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
