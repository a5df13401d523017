//! The embedded default: `order-stack dev` with nothing configured, and the
//! checks that keep two copies from taking over each other's engine.

use crate::helpers::mug_order;
use order_stack::process::{free_port, listening_pids};
use order_stack::restate_server::{RestateServer, RestateSettings};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The ports one `dev` uses.
#[derive(Debug, Clone, Copy)]
struct DevPorts {
    http: u16,
    grpc: u16,
    endpoint: u16,
    ingress: u16,
    admin: u16,
    node: u16,
    sim: u16,
}

impl DevPorts {
    fn free() -> DevPorts {
        let next = || free_port().unwrap();
        DevPorts {
            http: next(),
            grpc: next(),
            endpoint: next(),
            ingress: next(),
            admin: next(),
            node: next(),
            sim: next(),
        }
    }

    fn all(&self) -> [u16; 7] {
        [
            self.http,
            self.grpc,
            self.endpoint,
            self.ingress,
            self.admin,
            self.node,
            self.sim,
        ]
    }
}

/// A `dev` process with its own data directory; its stderr goes to `log`.
struct Dev {
    child: Child,
    dir: PathBuf,
    log: PathBuf,
    ports: DevPorts,
}

fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn dev_command(data_dir: &Path, ports: &DevPorts, log: &Path) -> Command {
    let mut cmd = Command::new(crate::helpers::order_stack_bin());
    cmd.arg("dev")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ORDER_DATA_DIR", data_dir)
        .env("ORDER_HTTP_PORT", ports.http.to_string())
        .env("ORDER_GRPC_PORT", ports.grpc.to_string())
        .env("ORDER_RESTATE_ENDPOINT_PORT", ports.endpoint.to_string())
        .env("ORDER_RESTATE_INGRESS_PORT", ports.ingress.to_string())
        .env("ORDER_RESTATE_ADMIN_PORT", ports.admin.to_string())
        .env("ORDER_RESTATE_NODE_PORT", ports.node.to_string())
        .env("ORDER_SIM_PORT", ports.sim.to_string())
        .env("ORDER_BIND_HOST", "127.0.0.1")
        .stdout(Stdio::piped())
        .stderr(if std::env::var_os("TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::from(std::fs::File::create(log).unwrap())
        })
        .kill_on_drop(true);
    if let Some(bin) = std::env::var_os("RESTATE_SERVER_BIN") {
        cmd.env("RESTATE_SERVER_BIN", bin);
    }
    cmd
}

impl Dev {
    /// Starts `dev` and waits for its `ready` line.
    async fn start(ports: DevPorts) -> Dev {
        let dir = temp_dir("order-dev");
        let log = dir.join("dev.log");
        let mut child = dev_command(&dir.join("data"), &ports, &log)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(120), lines.next_line()).await;
        let line = ready.expect("ready in time").unwrap().unwrap_or_default();
        let dev = Dev {
            child,
            dir,
            log,
            ports,
        };
        assert_eq!(
            line,
            format!("ready http://127.0.0.1:{}", ports.http),
            "{}",
            dev.log_text()
        );
        // Keep draining stdout so that dev never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        dev
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn api(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1", self.ports.http)
    }

    /// Creates the seed's paid order and returns status and body.
    async fn create(&self) -> (u16, serde_json::Value) {
        let res = reqwest::Client::new()
            .post(format!("{}/orders", self.api()))
            .json(&mug_order(Some("pm_card_visa")))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or_default())
    }

    /// SIGTERM, then the exit status.
    async fn terminate(&mut self) -> ExitStatus {
        unsafe { libc::kill(self.child.id().unwrap() as i32, libc::SIGTERM) };
        tokio::time::timeout(Duration::from_secs(40), self.child.wait())
            .await
            .expect("stops in time")
            .unwrap()
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if std::env::var_os("TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

async fn get_json(url: String) -> serde_json::Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn dev_brings_everything_up_serves_an_order_and_stops_cleanly_on_sigterm() {
    let mut dev = Dev::start(DevPorts::free()).await;

    let (status, order) = dev.create().await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "confirmed");
    // The simulator is up on its port with a ledger that saw the capture.
    let ledger = get_json(format!("http://127.0.0.1:{}/_sim/ledger", dev.ports.sim)).await;
    assert_eq!(ledger["captures"].as_array().unwrap().len(), 1);

    // SIGTERM stops everything it started.
    let status = dev.terminate().await;
    assert!(status.success(), "{status}\n{}", dev.log_text());
    for port in &dev.ports.all()[..5] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", *port)).is_err(),
            "port {port} still open after shutdown"
        );
    }
    assert!(
        dev.dir
            .join("data")
            .join("postgres")
            .join("PG_VERSION")
            .exists(),
        "the private cluster is kept"
    );
    // The start-up log names the database and the engine it uses.
    let log = dev.log_text();
    if std::env::var_os("TEST_LOG").is_none() {
        assert!(log.contains("postgres://postgres@127.0.0.1:"), "{log}");
        let ingress = format!("http://127.0.0.1:{}", dev.ports.ingress);
        assert!(log.contains(&ingress), "{log}");
    }
}

#[tokio::test]
async fn dev_stops_naming_the_port_when_another_copy_holds_the_restate_ports() {
    // Arrange: a first copy, serving.
    let first = Dev::start(DevPorts::free()).await;
    let same_engine = DevPorts {
        ingress: first.ports.ingress,
        admin: first.ports.admin,
        node: first.ports.node,
        ..DevPorts::free()
    };
    let dir = temp_dir("order-dev-second");
    let log = dir.join("dev.log");

    // Act: a second copy on the same restate ports, everything else free.
    let second = dev_command(&dir.join("data"), &same_engine, &log)
        .stderr(Stdio::piped())
        .output();
    let second = tokio::time::timeout(Duration::from_secs(60), second)
        .await
        .expect("the second copy stops in time")
        .unwrap();

    // Assert: it stopped before starting anything, naming the port and its variable.
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    let named = format!(
        "port {} (ORDER_RESTATE_INGRESS_PORT) is already in use: another copy running? \
         set ORDER_RESTATE_INGRESS_PORT",
        first.ports.ingress
    );
    assert!(stderr.contains(&named), "{stderr}");
    assert!(
        !dir.join("data").join("postgres").exists(),
        "nothing was started"
    );
    // The first copy's engine is untouched: one deployment, its own, and it serves.
    let deployments = get_json(format!(
        "http://127.0.0.1:{}/deployments",
        first.ports.admin
    ))
    .await;
    let uris: Vec<&str> = deployments["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["uri"].as_str().map(|u| u.trim_end_matches('/')))
        .collect();
    assert_eq!(
        uris,
        [format!("http://127.0.0.1:{}", first.ports.endpoint).as_str()]
    );
    let (status, order) = first.create().await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "confirmed");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn dev_restarts_restate_server_when_it_is_killed() {
    let mut dev = Dev::start(DevPorts::free()).await;
    let killed = listening_pids(dev.ports.admin);
    assert_eq!(killed.len(), 1, "one restate-server on the admin port");

    unsafe { libc::kill(killed[0] as i32, libc::SIGKILL) };

    // dev notices and starts another restate-server on the same ports and data.
    let start = Instant::now();
    let ingress_health = format!("http://127.0.0.1:{}/restate/health", dev.ports.ingress);
    loop {
        let pids = listening_pids(dev.ports.admin);
        let answers =
            matches!(reqwest::get(&ingress_health).await, Ok(r) if r.status().is_success());
        if answers && !pids.is_empty() && !pids.contains(&killed[0]) {
            break;
        }
        assert!(
            dev.child.try_wait().unwrap().is_none(),
            "dev exited instead of restarting restate-server\n{}",
            dev.log_text()
        );
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "restate-server not restarted\n{}",
            dev.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A create goes through the new engine (the first may meet a stale connection).
    let mut answer = dev.create().await;
    let start = Instant::now();
    while answer.0 != 201 && start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        answer = dev.create().await;
    }
    assert_eq!(answer.0, 201, "{}\n{}", answer.1, dev.log_text());
    assert_eq!(answer.1["status"], "confirmed");
    let status = dev.terminate().await;
    assert!(status.success(), "{status}\n{}", dev.log_text());
    if std::env::var_os("TEST_LOG").is_none() {
        let log = dev.log_text();
        assert!(
            log.contains("restate-server stopped; restarting it"),
            "{log}"
        );
        assert!(log.contains("restate-server restarted"), "{log}");
    }
}

#[tokio::test]
async fn restate_server_start_fails_naming_the_port_when_another_process_answers_on_it() {
    // Another copy's admin API, as far as a health check can tell.
    let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_port = other.local_addr().unwrap().port();
    let app = axum::Router::new().route("/health", axum::routing::get(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(other, app).await });
    let dir = temp_dir("order-restate-taken");
    let settings = RestateSettings {
        admin_port,
        ..crate::helpers::restate_settings(&dir)
    };

    let started = tokio::time::timeout(Duration::from_secs(60), RestateServer::start(&settings))
        .await
        .expect("gives up in time");

    let error = match started {
        Ok(_) => panic!("took another process's admin API for its own"),
        Err(e) => format!("{e:#}"),
    };
    let named = format!("port {admin_port} (ORDER_RESTATE_ADMIN_PORT) is already in use");
    assert!(error.contains(&named), "{error}");
    let _ = std::fs::remove_dir_all(dir);
}
