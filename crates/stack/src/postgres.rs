//! The read model's PostgreSQL: a database of its own made on a given server (the
//! tests, the chaos run, the benchmark), or a private cluster for `dev`, made with
//! `initdb` and kept under the data directory between runs.

use crate::process::{isolate, stop, wait_listening, PortUse};
use anyhow::Context;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// `dsn` naming the database `db` on the same server, with the same options.
pub fn with_database(dsn: &str, db: &str) -> String {
    let (base, query) = match dsn.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (dsn, None),
    };
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    match query {
        Some(q) => format!("{server}/{db}?{q}"),
        None => format!("{server}/{db}"),
    }
}

/// A database made for one run on an existing server, dropped after it.
#[derive(Debug, Clone)]
pub struct ServerDatabase {
    /// DSN of the server's maintenance database, where it is made and dropped.
    admin_dsn: String,
    pub name: String,
    /// DSN of the database itself.
    pub dsn: String,
}

impl ServerDatabase {
    /// Makes the empty database `name` on the server at `admin_dsn`.
    pub async fn create(admin_dsn: &str, name: &str) -> anyhow::Result<ServerDatabase> {
        let mut admin = quiet_connection(admin_dsn)
            .await
            .with_context(|| format!("PostgreSQL reachable at {admin_dsn}"))?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        let _ = admin.close().await;
        Ok(ServerDatabase {
            admin_dsn: admin_dsn.to_owned(),
            name: name.to_owned(),
            dsn: with_database(admin_dsn, name),
        })
    }

    /// Drops the database, with whatever connections are still open to it.
    pub async fn drop_database(&self) -> anyhow::Result<()> {
        let mut admin = quiet_connection(&self.admin_dsn).await?;
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        sqlx::query(&drop).execute(&mut admin).await?;
        let _ = admin.close().await;
        Ok(())
    }

    /// [`drop_database`](ServerDatabase::drop_database) where nothing can be
    /// awaited (in `Drop`): on a thread and a runtime of its own, waited for.
    pub fn drop_database_blocking(&self) {
        let database = self.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                let _ = runtime.block_on(database.drop_database());
            }
        })
        .join();
    }
}

/// A connection that does not log its statements, however long they take (dropping
/// a database of a million orders does).
pub async fn quiet_connection(dsn: &str) -> anyhow::Result<PgConnection> {
    let options = PgConnectOptions::from_str(dsn)?.disable_statement_logging();
    Ok(PgConnection::connect_with(&options).await?)
}

/// A running private cluster.
pub struct PrivateCluster {
    child: Child,
    bin: PathBuf,
    user: Option<(u32, u32)>,
    dir: PathBuf,
    port: u16,
    log_path: PathBuf,
    /// DSN of the service's database in this cluster.
    pub dsn: String,
}

const MISSING: &str =
    "PostgreSQL server binaries (initdb, postgres) not found: install PostgreSQL \
     (for example `apt-get install postgresql`) or set ORDER_DATABASE_DSN to an existing server";

/// The directory holding `initdb` and `postgres`.
fn bin_dir() -> anyhow::Result<PathBuf> {
    let has_both = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Ok(out) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_both(&dir) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort();
    if let Some(dir) = versions.into_iter().rev().find(|d| has_both(d)) {
        return Ok(dir);
    }
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).find(|d| has_both(d)))
        .ok_or_else(|| anyhow::anyhow!(MISSING))
}

/// PostgreSQL refuses to run as root; as root we run it as the `postgres` user, or
/// `nobody` when there is none.
fn unprivileged_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions; getpwnam reads a static record that we
    // copy out at once.
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        for name in [c"postgres", c"nobody"] {
            let pw = libc::getpwnam(name.as_ptr());
            if !pw.is_null() {
                return Some(((*pw).pw_uid, (*pw).pw_gid));
            }
        }
    }
    None
}

fn command(bin: &Path, user: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(bin);
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    isolate(&mut cmd);
    cmd
}

fn chown_tree(path: &Path, (uid, gid): (u32, u32)) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), (uid, gid))?;
        }
    }
    Ok(())
}

impl PrivateCluster {
    /// The port the cluster listens on, as named in errors.
    pub fn port_use(port: u16) -> PortUse {
        PortUse {
            host: "127.0.0.1".into(),
            port,
            var: None,
            what: "private PostgreSQL",
        }
    }

    /// Starts the cluster in `dir` (creating it with `initdb` the first time) on the
    /// loopback `port`, and makes sure the `orders` database exists.
    pub async fn start(dir: &Path, port: u16) -> anyhow::Result<PrivateCluster> {
        let bin = bin_dir()?;
        let user = unprivileged_user();
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        if let Some(owner) = user {
            chown_tree(&dir, owner)?;
        }
        if !dir.join("PG_VERSION").exists() {
            let out = command(&bin.join("initdb"), user)
                .args([
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "-D",
                ])
                .arg(&dir)
                .output()
                .await?;
            anyhow::ensure!(
                out.status.success(),
                "initdb failed in {} (as root it runs as the postgres user, which must be able to \
                 reach that folder; or set ORDER_DATABASE_DSN): {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let log_path = dir.with_extension("log");
        let child = spawn(&bin, user, &dir, port, &log_path, false)?;
        let mut cluster = PrivateCluster {
            child,
            bin,
            user,
            dsn: format!("postgres://postgres@127.0.0.1:{port}/orders"),
            dir,
            port,
            log_path,
        };
        if let Err(e) = cluster.ready().await {
            cluster.stop().await;
            return Err(e);
        }
        Ok(cluster)
    }

    /// Starts the server again on the same data and port, after it stopped; its log
    /// goes on in the same file.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.child = spawn(
            &self.bin,
            self.user,
            &self.dir,
            self.port,
            &self.log_path,
            true,
        )?;
        if let Err(e) = self.ready().await {
            self.stop().await;
            return Err(e);
        }
        Ok(())
    }

    /// Waits until the server answers, listens on its port itself (not another
    /// process that took the port), and has the `orders` database.
    async fn ready(&mut self) -> anyhow::Result<()> {
        let admin_dsn = format!("postgres://postgres@127.0.0.1:{}/postgres", self.port);
        let start = Instant::now();
        let pool = loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!(
                    "private PostgreSQL exited during start ({status}); see {}",
                    self.log_path.display()
                );
            }
            match order_service::read_model::connect(&admin_dsn, 1).await {
                Ok(pool) => break pool,
                Err(e) if start.elapsed() > Duration::from_secs(30) => {
                    anyhow::bail!(
                        "private PostgreSQL did not start: {e}; see {}",
                        self.log_path.display()
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let result = async {
            wait_listening(
                &mut self.child,
                "private PostgreSQL",
                &[Self::port_use(self.port)],
                Duration::from_secs(10),
                &self.log_path,
            )
            .await?;
            let exists: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'orders')",
            )
            .fetch_one(&pool)
            .await?;
            if !exists {
                sqlx::query("CREATE DATABASE orders").execute(&pool).await?;
            }
            anyhow::Ok(())
        }
        .await;
        pool.close().await;
        result
    }

    /// Waits until the server exits (cancel safe).
    pub async fn exited(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Fast shutdown: SIGINT, then kill after 15 s.
    pub async fn stop(&mut self) {
        stop(&mut self.child, libc::SIGINT, Duration::from_secs(15)).await;
    }
}

/// Starts the postmaster in the background.
fn spawn(
    bin: &Path,
    user: Option<(u32, u32)>,
    dir: &Path,
    port: u16,
    log_path: &Path,
    append_log: bool,
) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append_log)
        .truncate(!append_log)
        .open(log_path)?;
    if let Some((uid, gid)) = user {
        let _ = std::os::unix::fs::chown(log_path, Some(uid), Some(gid));
    }
    let mut cmd = command(&bin.join("postgres"), user);
    cmd.arg("-D")
        .arg(dir)
        .args(["-p", &port.to_string(), "-h", "127.0.0.1"])
        .args([
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    Ok(cmd.spawn()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_database_swaps_only_the_database() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "orders"),
            "postgres://postgres@127.0.0.1:5432/orders"
        );
        assert_eq!(
            with_database("postgres://u:p@db:5432/x?sslmode=require", "orders"),
            "postgres://u:p@db:5432/orders?sslmode=require"
        );
    }
}
