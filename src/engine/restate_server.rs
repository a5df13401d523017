//! Runs a local `restate-server` (the pinned npm package) for the embedded default
//! and the tests.

use super::process::{die_with_parent, stop};
use std::path::{Path, PathBuf};
use std::process::Stdio;
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

/// A running restate-server child process.
pub struct RestateServer {
    child: Child,
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
    /// Starts the server and waits until its admin API answers.
    pub async fn start(settings: &RestateSettings) -> anyhow::Result<RestateServer> {
        std::fs::create_dir_all(&settings.base_dir)?;
        let config = settings.base_dir.join("restate.toml");
        std::fs::write(&config, CONFIG)?;
        let log = std::fs::File::create(settings.base_dir.join("restate-server.log"))?;
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
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", settings.bin.display()))?;
        let server = RestateServer {
            child,
            ingress_url: format!("http://127.0.0.1:{}", settings.ingress_port),
            admin_url: format!("http://127.0.0.1:{}", settings.admin_port),
        };
        super::admin::Admin::new(&server.admin_url)
            .wait_healthy(Duration::from_secs(60))
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "{e}; see {}",
                    settings.base_dir.join("restate-server.log").display()
                )
            })?;
        Ok(server)
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
