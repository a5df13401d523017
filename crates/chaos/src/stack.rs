//! What the run stands on: a database of its own, a restate-server and the service
//! as child processes that can be killed and started again, and the simulator in
//! this process (it plays the downstream services and keeps the ledger, so it
//! never dies).

use anyhow::Context;
use order_service::engine::process::free_port;
use order_service::engine::restate_server::{find_binary, RestateServer, RestateSettings};
use order_sim::{SimConfig, SimHandle, Simulator};
use sqlx::PgPool;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a downstream call may take before the service gives up on it; the
/// faults' delays go past it.
pub const DOWNSTREAM_TIMEOUT_MS: u64 = 1000;
/// Drafts left unpaid are cancelled after this many hours (18 s).
const DRAFT_HOURS: &str = "0.005";
/// Returns whose parcel does not come expire after this many days (about 17 s).
const PARCEL_DAYS: &str = "0.0002";

pub struct Stack {
    pub api: String,
    pub db: PgPool,
    pub sim: SimHandle,
    pub restate: RestateServer,
    pub dir: PathBuf,
    service: Option<Child>,
    service_env: Vec<(String, String)>,
    admin_dsn: String,
    db_name: String,
}

impl Stack {
    /// Starts everything on free ports, with a database made on the server at
    /// `admin_dsn`.
    pub async fn start(admin_dsn: &str) -> anyhow::Result<Stack> {
        let dir =
            std::env::temp_dir().join(format!("order-chaos-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let db_name = format!("order_chaos_{}", uuid::Uuid::new_v4().simple());
        let admin = PgPool::connect(admin_dsn)
            .await
            .context("PostgreSQL (CHAOS_DATABASE_URL) reachable")?;
        sqlx::query(&format!("CREATE DATABASE {db_name}"))
            .execute(&admin)
            .await?;
        admin.close().await;
        let dsn = with_database(admin_dsn, &db_name);

        let sim = Simulator::spawn_with("127.0.0.1:0".parse()?, SimConfig::default()).await?;
        let configured = std::env::var_os("RESTATE_SERVER_BIN").map(PathBuf::from);
        let settings = RestateSettings {
            bin: find_binary(configured.as_deref())?,
            base_dir: dir.join("restate"),
            ingress_port: free_port()?,
            admin_port: free_port()?,
            node_port: free_port()?,
            cluster: None,
        };
        let restate = RestateServer::start(&settings).await?;
        let http_port = free_port()?;
        let service_env = [
            ("ORDER_DATABASE_DSN", dsn.clone()),
            ("ORDER_BIND_HOST", "127.0.0.1".into()),
            ("ORDER_HTTP_PORT", http_port.to_string()),
            ("ORDER_GRPC_PORT", free_port()?.to_string()),
            ("ORDER_RESTATE_ENDPOINT_PORT", free_port()?.to_string()),
            ("ORDER_RESTATE_INGRESS_URL", restate.ingress_url.clone()),
            ("ORDER_RESTATE_ADMIN_URL", restate.admin_url.clone()),
            ("ORDER_WAREHOUSE_SERVICE_ADDR", sim.base_url()),
            ("ORDER_PAYMENT_SERVICE_ADDR", sim.base_url()),
            ("ORDER_FULFILLMENT_SERVICE_ADDR", sim.base_url()),
            ("ORDER_NOTIFICATION_SERVICE_ADDR", sim.base_url()),
            ("ORDER_PUBSUB_ADDR", sim.base_url()),
            (
                "ORDER_DOWNSTREAM_TIMEOUT_MS",
                DOWNSTREAM_TIMEOUT_MS.to_string(),
            ),
            ("ORDER_AUTO_CANCEL_DRAFT_HOURS", DRAFT_HOURS.into()),
            ("ORDER_RETURN_PARCEL_DAYS", PARCEL_DAYS.into()),
            ("ORDER_DB_MAX_CONNECTIONS", "16".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let mut stack = Stack {
            api: format!("http://127.0.0.1:{http_port}/api/v1"),
            db: PgPool::connect(&dsn).await?,
            sim,
            restate,
            dir,
            service: None,
            service_env,
            admin_dsn: admin_dsn.to_owned(),
            db_name,
        };
        stack.start_service().await?;
        Ok(stack)
    }

    /// Starts the service (`order-service serve`, beside this binary) and waits for
    /// its ready line.
    pub async fn start_service(&mut self) -> anyhow::Result<()> {
        let bin = std::env::current_exe()?.with_file_name("order-service");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("service.log"))?;
        let mut child = Command::new(&bin)
            .arg("serve")
            .envs(
                self.service_env
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let ready = tokio::time::timeout(Duration::from_secs(90), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("ready http://") {
                    return true;
                }
            }
            false
        })
        .await;
        anyhow::ensure!(
            matches!(ready, Ok(true)),
            "the service did not start; see {}",
            self.dir.join("service.log").display()
        );
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.service = Some(child);
        Ok(())
    }

    /// SIGKILL, as a crash would.
    pub async fn kill_service(&mut self) {
        if let Some(mut child) = self.service.take() {
            let _ = child.kill().await;
        }
    }

    /// Stops everything and drops the database; the data folder stays when `keep`.
    pub async fn stop(mut self, keep: bool) {
        self.kill_service().await;
        self.restate.stop().await;
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

/// `dsn` naming the database `db` instead.
fn with_database(dsn: &str, db: &str) -> String {
    let (base, query) = match dsn.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (dsn, None),
    };
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    match query {
        Some(q) => format!("{server}/{db}?{q}"),
        None => format!("{server}/{db}"),
    }
}
