//! Wiring of the service itself: `serve`, and the service part of `dev` (see
//! [`crate::dev`] for the processes the embedded default runs beside it).

use crate::api::{self, ApiSettings, ApiState};
use crate::caller::CallerKey;
use crate::config::{Config, DownstreamAddrs};
use crate::downstream::Downstream;
use crate::engine::admin::{Admin, Handlers};
use crate::engine::endpoint;
use crate::engine::ingress::Ingress;
use crate::serving::{self, Limits};
use crate::workflows::{self, Deps};
use crate::{grpc, read_model, relay};
use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const ALL_INTERFACES: &str = "0.0.0.0";

/// The secrets that keep the sagas behind the API: the caller assertion's key, and
/// the Restate request identities the endpoint accepts. Without either the service
/// does not start, unless unsigned Restate requests are allowed on purpose.
fn trust(config: &Config) -> anyhow::Result<(CallerKey, &[String])> {
    let internal_key = config.internal_key.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "ORDER_INTERNAL_KEY is not set: the order object accepts only calls the API \
             signs with it (a secret of at least 32 bytes, the same on every replica)"
        )
    })?;
    if config.restate_identity_keys.is_empty() {
        anyhow::ensure!(
            config.restate_allow_unsigned,
            "ORDER_RESTATE_IDENTITY_KEYS is not set: the Restate endpoint would run any \
             request that reaches its port. Give it the public key of restate-server's \
             request identity (publickeyv1_...), or set ORDER_RESTATE_ALLOW_UNSIGNED=true \
             to serve unsigned requests on purpose"
        );
        tracing::warn!(
            "ORDER_RESTATE_ALLOW_UNSIGNED=true: the Restate endpoint serves UNSIGNED requests; \
             anyone who reaches its port can run the sagas. Set ORDER_RESTATE_IDENTITY_KEYS"
        );
    }
    Ok((internal_key, &config.restate_identity_keys))
}

/// Where the service finds PostgreSQL, Restate and the downstream services.
#[derive(Debug, Clone)]
pub struct Backends {
    pub database_dsn: String,
    /// Restate's ingress: one URL, or one per node of a cluster, in the order to use.
    pub ingress_urls: Vec<String>,
    /// Restate's admin API, the same way.
    pub admin_urls: Vec<String>,
    pub downstream: DownstreamAddrs,
}

/// The running service: REST API, gRPC and Restate endpoint.
pub struct RunningService {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub endpoint_addr: SocketAddr,
    /// The URL the deployment is registered with.
    pub endpoint_url: String,
    /// The handlers the endpoint serves.
    pub served: Handlers,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningService {
    /// Starts the service: migrates the read model, serves the Restate endpoint,
    /// registers it with Restate, then serves the API. `faults` are the tests'
    /// (`Faults::default()`: none).
    pub async fn start(
        config: &Config,
        backends: &Backends,
        faults: workflows::Faults,
    ) -> anyhow::Result<RunningService> {
        // Installed before any handler can record a metric.
        crate::metrics::handle();
        tracing::info!(
            postgres = %redacted_dsn(&backends.database_dsn),
            "read model in PostgreSQL"
        );
        tracing::info!(
            ingress = %backends.ingress_urls.join(","),
            admin = %backends.admin_urls.join(","),
            "engine: Restate"
        );
        let (internal_key, identity_keys) = trust(config)?;
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

        let endpoint_listener = listen(
            config.bind_host_or(ALL_INTERFACES),
            config.restate_endpoint_port,
        )
        .await?;
        let endpoint_addr = endpoint_listener.local_addr()?;
        let deps = Deps {
            db: db.clone(),
            downstream: downstream.clone(),
            draft_ttl: config.auto_cancel_draft_after,
            return_window: config.return_window,
            return_parcel_wait: config.return_parcel_wait,
            caller_key: internal_key.clone(),
            faults,
        };
        // What this code serves, asked in process: no request identity needed.
        let served = endpoint::handlers(&workflows::endpoint(deps.clone(), &[])?).await?;
        let endpoint_task = tokio::spawn(endpoint::serve(
            endpoint_listener,
            workflows::endpoint(deps, identity_keys)?,
            until_stopped(),
        ));
        let relay_task = tokio::spawn(relay::run(db.clone(), downstream.clone(), until_stopped()));

        let admin = Admin::new(&backends.admin_urls);
        let endpoint_url = config
            .restate_endpoint_url
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{}", endpoint_addr.port()));
        admin
            .register_deployment(
                &endpoint_url,
                &served,
                config.restate_force_register.unwrap_or(false),
                Duration::from_secs(60),
            )
            .await?;

        let state = ApiState {
            db,
            ingress: Ingress::new(&backends.ingress_urls, internal_key)?,
            admin,
            downstream,
            settings: Arc::new(ApiSettings::from_config(config)),
        };
        let http_listener = listen(config.bind_host_or(ALL_INTERFACES), config.http_port).await?;
        let http_addr = http_listener.local_addr()?;
        let grpc_listener = listen(config.bind_host_or(ALL_INTERFACES), config.grpc_port).await?;
        let grpc_addr = grpc_listener.local_addr()?;
        let limits = Limits {
            header_read: config.header_read_timeout,
            request: config.request_timeout,
            max_connections: config.max_connections,
        };
        let grpc = grpc::serve(
            grpc_listener,
            api::routes(state.clone()),
            limits,
            until_stopped(),
        );
        let grpc_task = tokio::spawn(async move {
            if let Err(e) = grpc.await {
                tracing::error!(error = %e, "gRPC server failed");
            }
        });
        tracing::info!(http = %http_addr, grpc = %grpc_addr, "serving the API");
        let app = api::router(state);
        let shutdown = until_stopped();
        let http_task = tokio::spawn(serving::serve_http(http_listener, app, limits, shutdown));
        Ok(RunningService {
            http_addr,
            grpc_addr,
            endpoint_addr,
            endpoint_url,
            served,
            stop,
            tasks: vec![endpoint_task, relay_task, grpc_task, http_task],
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
/// services the configuration names, with `faults` (none but in the tests' stack).
pub async fn serve(config: Config, faults: workflows::Faults) -> anyhow::Result<()> {
    let missing = |var: &str| anyhow::anyhow!("{var} must be set for `serve`");
    let downstream = &config.downstream;
    for (var, addr) in downstream.by_variable() {
        addr.as_ref().ok_or_else(|| missing(var))?;
    }
    let backends = Backends {
        database_dsn: config
            .database_dsn
            .clone()
            .ok_or_else(|| missing("ORDER_DATABASE_DSN"))?,
        ingress_urls: config
            .restate_ingress_urls
            .clone()
            .unwrap_or_else(|| vec![format!("http://127.0.0.1:{}", config.restate_ingress_port)]),
        admin_urls: config
            .restate_admin_urls
            .clone()
            .unwrap_or_else(|| vec![format!("http://127.0.0.1:{}", config.restate_admin_port)]),
        downstream: downstream.clone(),
    };
    let service = RunningService::start(&config, &backends, faults).await?;
    announce_ready(&service);
    stop_signal().await;
    service.stop().await;
    Ok(())
}

/// Prints the `ready` line harnesses wait for.
pub fn announce_ready(service: &RunningService) {
    use std::io::Write;
    println!("ready {}", service.local_url());
    let _ = std::io::stdout().flush();
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed when this is
/// called, so that a signal that comes before the future is polled is not lost.
pub fn stop_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT handler");
    async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = term.recv() => {}
        }
    }
}

/// Binds `host:port`; the error names the address.
pub async fn listen(host: &str, port: u16) -> anyhow::Result<TcpListener> {
    TcpListener::bind((host, port))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {host}:{port}: {e}"))
}

/// The DSN without password or options, for logs.
fn redacted_dsn(dsn: &str) -> String {
    match reqwest::Url::parse(dsn) {
        Ok(mut url) => {
            let _ = url.set_password(None);
            url.set_query(None);
            url.to_string()
        }
        Err(_) => "(a DSN that is not a URL)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_dsn_drops_password_and_options() {
        assert_eq!(
            redacted_dsn("postgres://orders:secret@db:5432/orders?sslmode=require&password=x"),
            "postgres://orders@db:5432/orders"
        );
        assert_eq!(
            redacted_dsn("postgres://postgres@127.0.0.1:5432/orders"),
            "postgres://postgres@127.0.0.1:5432/orders"
        );
    }

    #[tokio::test]
    async fn listen_names_the_address_when_the_port_is_taken() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();

        let e = listen("127.0.0.1", port).await.unwrap_err();

        assert!(
            e.to_string()
                .starts_with(&format!("cannot listen on 127.0.0.1:{port}: ")),
            "{e}"
        );
    }
}

/// A command line that cannot run as given (an unknown command, a command of the
/// other binary): printed as it is, exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// The `main` of a binary named `program`: tracing set up before the runtime (the
/// trace exporter's blocking HTTP client must not be made or dropped inside it) and
/// flushed after; `run` gets the command and the configuration. A bad configuration
/// or a [`Usage`] error is exit code 2, any other error 1.
pub fn command_line<F>(program: &str, run: impl FnOnce(String, Config) -> F) -> ExitCode
where
    F: Future<Output = anyhow::Result<()>>,
{
    crate::telemetry::init(crate::config::default_value("RUST_LOG"));
    let code = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(async {
            let command = std::env::args().nth(1).unwrap_or_default();
            let config = match Config::from_env() {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("{program}: {e}");
                    return ExitCode::from(2);
                }
            };
            match run(command, config).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.is::<Usage>() => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("{program}: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }),
        Err(e) => {
            eprintln!("{program}: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    };
    crate::telemetry::shutdown();
    code
}
