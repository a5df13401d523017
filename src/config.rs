//! Configuration, read once from the environment. Every variable is listed in
//! [`VARIABLES`] with its default and meaning: the readers below take their defaults
//! from it, and `docs/configuration.md` is made from it (a unit test keeps the two
//! in step).

use crate::auth::{Expected, Verifier};
use crate::caller::CallerKey;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// One environment variable: its name, what applies when it is unset, and what it
/// means (Markdown, one line of the table in `docs/configuration.md`).
#[derive(Debug, Clone, Copy)]
pub struct Variable {
    pub name: &'static str,
    pub default: Fallback,
    pub meaning: &'static str,
}

/// What applies when a variable is unset.
#[derive(Debug, Clone, Copy)]
pub enum Fallback {
    /// This value, read exactly as if it had been set.
    Value(&'static str),
    /// No value; the text says what happens instead (Markdown).
    Text(&'static str),
}

const fn var(name: &'static str, default: Fallback, meaning: &'static str) -> Variable {
    Variable {
        name,
        default,
        meaning,
    }
}

use Fallback::{Text, Value};

/// Every variable the service reads, in the order of the documentation.
pub const VARIABLES: &[Variable] = &[
    var("ORDER_DATABASE_DSN", Text("unset"), "PostgreSQL URL of the read model, e.g. `postgres://user:pass@host:5432/orders`. Required by `serve` and `migrate`; unset under `dev` means the private cluster."),
    var("ORDER_DB_MAX_CONNECTIONS", Value("32"), "Size of the service's connection pool."),
    var("ORDER_BIND_HOST", Text("`dev`: `127.0.0.1`; `serve`, `sim`: `0.0.0.0`"), "Address the REST API, the Restate endpoint (and `sim`) listen on."),
    var("ORDER_HTTP_PORT", Value("8004"), "REST API port (HTTP/1.1; the console and `/metrics` too)."),
    var("ORDER_GRPC_PORT", Value("9004"), "The gRPC API (`order.v1.OrderService`, reflection, health)."),
    var("ORDER_RESTATE_ENDPOINT_PORT", Value("9080"), "Port of the endpoint Restate calls to run the sagas."),
    var("ORDER_RESTATE_ENDPOINT_URL", Text("`http://127.0.0.1:<ORDER_RESTATE_ENDPOINT_PORT>`"), "URL under which Restate reaches that endpoint; registered with Restate at start."),
    var("ORDER_RESTATE_INGRESS_URL", Text("`dev`: its own restate-server; `serve`: `http://127.0.0.1:<ORDER_RESTATE_INGRESS_PORT>`"), "Restate ingress: one URL, or one per node separated by commas (the next is used when one stops answering; see [operations](operations.md#several-restate-nodes))."),
    var("ORDER_RESTATE_ADMIN_URL", Text("`dev`: its own restate-server; `serve`: `http://127.0.0.1:<ORDER_RESTATE_ADMIN_PORT>`"), "Restate admin API, one URL or a comma-separated list the same way. `dev` and `cluster` use an existing Restate only when both are set."),
    var("ORDER_RESTATE_INGRESS_PORT", Value("8080"), "Ingress port of the restate-server that `dev` starts."),
    var("ORDER_RESTATE_ADMIN_PORT", Value("9070"), "Admin port of the restate-server that `dev` starts."),
    var("ORDER_RESTATE_NODE_PORT", Value("5122"), "Node port of the restate-server that `dev` starts."),
    var("RESTATE_SERVER_BIN", Text("the pinned npm package, else `restate-server` on the `PATH`"), "restate-server binary for `dev` and the tests."),
    var("ORDER_RESTATE_FORCE_REGISTER", Text("`dev`: `true`; `serve`: `false`"), "Register the endpoint with `force`, replacing whatever handlers Restate knows at that URL. Leave it off in production (see [operations](operations.md#deploying-a-new-version))."),
    var("ORDER_DATA_DIR", Value(".data"), "Where `dev` keeps the private PostgreSQL cluster and Restate's data and logs."),
    var("ORDER_SIM_PORT", Value("9010"), "Port of the simulator (`dev`: on 127.0.0.1; `sim`: on `ORDER_BIND_HOST`)."),
    var("ORDER_SIM_RESERVATION_TTL_SECS", Value("3600"), "How long the simulator's reservations hold stock unless committed (decimal allowed)."),
    var("ORDER_RETURN_WINDOW_DAYS", Value("30"), "Days after delivery during which a return is accepted; a decimal such as `0.0001` is allowed."),
    var("ORDER_RETURN_PARCEL_DAYS", Value("14"), "Days a return waits for its parcel before it expires; decimal allowed."),
    var("ORDER_AUTO_CANCEL_DRAFT_HOURS", Value("24"), "How long an unpaid draft holds its stock before it is cancelled. A decimal is allowed (`0.001` is 3.6 s). Must be > 0."),
    var("ORDER_WAREHOUSE_SERVICE_ADDR", Text("unset"), "Base URL of the warehouse service, e.g. `http://warehouse:8080`."),
    var("ORDER_PAYMENT_SERVICE_ADDR", Text("unset"), "Base URL of the payment service."),
    var("ORDER_FULFILLMENT_SERVICE_ADDR", Text("unset"), "Base URL of the fulfillment service."),
    var("ORDER_NOTIFICATION_SERVICE_ADDR", Text("unset"), "Base URL of the notification service."),
    var("ORDER_PUBSUB_ADDR", Text("unset"), "Base URL of the Dapr sidecar's HTTP API, e.g. `http://127.0.0.1:3500`."),
    var("ORDER_PUBSUB_NAME", Value("pubsub"), "Dapr pub/sub component the events are published to."),
    var("ORDER_DOWNSTREAM_TIMEOUT_MS", Value("5000"), "Time limit of one downstream call (connecting: at most 2 s of it). Must be > 0."),
    var("ORDER_CREATE_WAIT_MS", Value("3000"), "How long a create or a command waits for its saga to rest before answering `202`. Must be > 0."),
    var("ORDER_STUCK_AFTER_SECS", Value("300"), "When an order resting in a transitional state (a saga under way, a draft whose auto-cancel is overdue) counts as stuck: the default `older_than` of the stuck list. Must be > 0."),
    var("ORDER_HTTP_HEADER_TIMEOUT_SECS", Value("20"), "How long a REST connection may take to send a request's headers, from when it opens or its last answer was sent; then it is closed. Decimal allowed."),
    var("ORDER_REQUEST_TIMEOUT_SECS", Value("60"), "Time limit of a whole REST request, body included (`408 request_timeout` after it), and of a gRPC call. Must be longer than `ORDER_CREATE_WAIT_MS`."),
    var("ORDER_MAX_CONNECTIONS", Value("512"), "Connections the REST server, and the gRPC server, each serve at once; further ones wait to be accepted. Must be > 0."),
    var("ORDER_RESTATE_IDENTITY_KEYS", Text("`dev`, `cluster`: made in the data folder; `serve`: required"), "Comma-separated public keys (`publickeyv1_...`) of the Restate servers allowed to call the endpoint; requests without a valid signature are refused (`401`), and a start against a Restate that does not sign its requests stops at once, naming this variable."),
    var("ORDER_RESTATE_ALLOW_UNSIGNED", Value("false"), "`true` lets `serve` start without `ORDER_RESTATE_IDENTITY_KEYS`, serving the endpoint to any caller that reaches its port; it warns at every start."),
    var("ORDER_INTERNAL_KEY", Text("`dev`, `cluster`: made in the data folder; `serve`: required"), "The secret (at least 32 bytes) of the API's caller assertion, without which the order object refuses every call; the same on every replica."),
    var("ORDER_AUTH_JWT_SECRET", Text("unset"), "Turns authorization on with HS256 tokens: the secret is the value's UTF-8 bytes, at least 32 of them. Set this or `ORDER_AUTH_JWT_PUBLIC_KEY_FILE`, not both."),
    var("ORDER_AUTH_JWT_PUBLIC_KEY_FILE", Text("unset"), "Turns authorization on with RS256 or ES256 tokens: path of a PEM public key (`PUBLIC KEY` or `RSA PUBLIC KEY`); an RSA key means RS256, an EC key on P-256 ES256. An unreadable file, a private key, or another kind of key stops the start."),
    var("ORDER_AUTH_ISSUER", Text("unset"), "When set, a token's `iss` must be exactly this. Needs one of the two variables above."),
    var("ORDER_AUTH_AUDIENCE", Text("unset"), "When set, a token's `aud` must be or contain this. Needs one of the two variables above."),
    var("ORDER_AUTH_MAX_TOKEN_AGE", Text("unset"), "Seconds (decimal allowed): when set, a token whose lifetime `exp - iat` is longer, or that has no `iat`, is `401`. Needs one of the two variables above."),
    var("RUST_LOG", Value("info,restate_sdk=warn,sqlx=warn"), "Log filter (`tracing` env-filter syntax)."),
    var("OTEL_EXPORTER_OTLP_ENDPOINT", Text("unset"), "OTLP/HTTP collector to export traces to (see [operations](operations.md#traces-opentelemetry)); unset: no traces."),
];

/// The value `name` takes when unset, from [`VARIABLES`]. Panics when the list
/// gives it none: a reader with a default must have one there.
pub fn default_value(name: &str) -> &'static str {
    match VARIABLES.iter().find(|v| v.name == name).map(|v| v.default) {
        Some(Value(value)) => value,
        _ => panic!("config.rs: {name} has no default value in VARIABLES"),
    }
}

/// The table of [`VARIABLES`], as `docs/configuration.md` shows it.
pub fn markdown_table() -> String {
    let mut table = String::from("| variable | default | meaning |\n|---|---|---|\n");
    for v in VARIABLES {
        let default = match v.default {
            Value(value) => format!("`{value}`"),
            Text(text) => text.to_owned(),
        };
        table.push_str(&format!("| `{}` | {default} | {} |\n", v.name, v.meaning));
    }
    table
}

/// Addresses of the services the sagas call; `None` means "start the simulator".
#[derive(Debug, Clone, Default)]
pub struct DownstreamAddrs {
    pub warehouse: Option<String>,
    pub payment: Option<String>,
    pub fulfillment: Option<String>,
    pub notification: Option<String>,
    pub pubsub: Option<String>,
}

impl DownstreamAddrs {
    /// Each address with the variable that sets it.
    pub fn by_variable(&self) -> [(&'static str, &Option<String>); 5] {
        [
            ("ORDER_WAREHOUSE_SERVICE_ADDR", &self.warehouse),
            ("ORDER_PAYMENT_SERVICE_ADDR", &self.payment),
            ("ORDER_FULFILLMENT_SERVICE_ADDR", &self.fulfillment),
            ("ORDER_NOTIFICATION_SERVICE_ADDR", &self.notification),
            ("ORDER_PUBSUB_ADDR", &self.pubsub),
        ]
    }

    /// True when at least one service has no address and so needs the simulator.
    pub fn any_missing(&self) -> bool {
        self.by_variable().iter().any(|(_, a)| a.is_none())
    }

    /// Fills every missing address with `url`.
    pub fn or_all(&self, url: &str) -> DownstreamAddrs {
        let pick = |a: &Option<String>| Some(a.clone().unwrap_or_else(|| url.to_owned()));
        DownstreamAddrs {
            warehouse: pick(&self.warehouse),
            payment: pick(&self.payment),
            fulfillment: pick(&self.fulfillment),
            notification: pick(&self.notification),
            pubsub: pick(&self.pubsub),
        }
    }
}

/// Everything the service and the embedded default can be told.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_dsn: Option<String>,
    /// Interface the API and the Restate endpoint listen on; unset, `serve` and `sim`
    /// listen on all interfaces and `dev` on the loopback only.
    pub bind_host: Option<String>,
    pub http_port: u16,
    pub grpc_port: u16,
    pub restate_endpoint_port: u16,
    /// The URL restate-server uses to reach this service's endpoint.
    pub restate_endpoint_url: Option<String>,
    /// `ORDER_RESTATE_INGRESS_URL`: one URL, or one per node of a cluster separated
    /// by commas (used in that order, the next when one stops answering).
    pub restate_ingress_urls: Option<Vec<String>>,
    /// `ORDER_RESTATE_ADMIN_URL`: the same, for the admin API.
    pub restate_admin_urls: Option<Vec<String>>,
    pub restate_ingress_port: u16,
    pub restate_admin_port: u16,
    pub restate_node_port: u16,
    pub restate_server_bin: Option<PathBuf>,
    /// `ORDER_RESTATE_FORCE_REGISTER`: register the deployment with `"force": true`,
    /// which overwrites a deployment already registered at the same URL even when its
    /// handlers changed incompatibly, so that journals of invocations under way would
    /// replay on other code. Unset: `serve` does not force (a conflict stops the
    /// start), `dev` does (its engine is private and the code changes between runs).
    pub restate_force_register: Option<bool>,
    pub data_dir: PathBuf,
    pub sim_port: u16,
    /// `ORDER_SIM_RESERVATION_TTL_SECS` (3600, decimal allowed): how long a simulated
    /// reservation holds its stock unless committed (`sim` and `dev`).
    pub sim_reservation_ttl: Duration,
    /// `ORDER_RETURN_WINDOW_DAYS` (30, decimal allowed): how long after delivery a
    /// return can be requested.
    pub return_window: Duration,
    /// `ORDER_RETURN_PARCEL_DAYS` (14, decimal allowed): how long a return waits for
    /// its parcel before it expires.
    pub return_parcel_wait: Duration,
    /// `ORDER_AUTO_CANCEL_DRAFT_HOURS` (24, decimal allowed).
    pub auto_cancel_draft_after: Duration,
    pub downstream: DownstreamAddrs,
    pub pubsub_name: String,
    pub downstream_timeout: Duration,
    /// How long `POST /orders` waits for the saga to rest before answering `202`.
    pub create_wait: Duration,
    pub stuck_after: Duration,
    pub db_max_connections: u32,
    /// `ORDER_HTTP_HEADER_TIMEOUT_SECS` (20, decimal allowed): how long a REST
    /// connection may take to send a request's headers (idle keep-alive included).
    pub header_read_timeout: Duration,
    /// `ORDER_REQUEST_TIMEOUT_SECS` (60, decimal allowed): how long a whole REST or
    /// gRPC request may take; above `ORDER_CREATE_WAIT_MS`, which it would cut.
    pub request_timeout: Duration,
    /// `ORDER_MAX_CONNECTIONS` (512): the open connections the REST server, and
    /// the gRPC server, each serve at once; further ones wait.
    pub max_connections: usize,
    /// Public keys of the Restate servers allowed to call the endpoint
    /// (`publickeyv1_...`); without any, the service starts only with
    /// `restate_allow_unsigned`.
    pub restate_identity_keys: Vec<String>,
    /// `ORDER_RESTATE_ALLOW_UNSIGNED`: serve the endpoint to unsigned requests, on
    /// purpose (a warning at every start).
    pub restate_allow_unsigned: bool,
    /// `ORDER_INTERNAL_KEY`: the secret of the API's caller assertion, the same on
    /// every replica; `dev` and `cluster` make one when it is unset.
    pub internal_key: Option<CallerKey>,
    /// `ORDER_AUTH_*`: the verifier of the API's bearer tokens; `None`: authorization
    /// is off and every call is allowed.
    pub auth: Option<Verifier>,
}

/// A variable that could not be understood; the message names it.
#[derive(Debug, thiserror::Error)]
#[error("invalid {var}={value:?}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub reason: String,
}

impl Config {
    /// The interface to listen on, or `default` when none is configured.
    pub fn bind_host_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.bind_host.as_deref().unwrap_or(default)
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads configuration through `get`, so tests can supply their own values.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = Env(&get);
        let create_wait = Duration::from_millis(env.positive("ORDER_CREATE_WAIT_MS")?);
        Ok(Config {
            database_dsn: env.string("ORDER_DATABASE_DSN"),
            bind_host: env.string("ORDER_BIND_HOST"),
            http_port: env.parse("ORDER_HTTP_PORT")?,
            grpc_port: env.parse("ORDER_GRPC_PORT")?,
            restate_endpoint_port: env.parse("ORDER_RESTATE_ENDPOINT_PORT")?,
            restate_endpoint_url: env.url("ORDER_RESTATE_ENDPOINT_URL")?,
            restate_ingress_urls: env.url_list("ORDER_RESTATE_INGRESS_URL")?,
            restate_admin_urls: env.url_list("ORDER_RESTATE_ADMIN_URL")?,
            restate_ingress_port: env.parse("ORDER_RESTATE_INGRESS_PORT")?,
            restate_admin_port: env.parse("ORDER_RESTATE_ADMIN_PORT")?,
            restate_node_port: env.parse("ORDER_RESTATE_NODE_PORT")?,
            restate_server_bin: env.string("RESTATE_SERVER_BIN").map(PathBuf::from),
            restate_force_register: env.flag("ORDER_RESTATE_FORCE_REGISTER")?,
            data_dir: PathBuf::from(env.value("ORDER_DATA_DIR")),
            sim_port: env.parse("ORDER_SIM_PORT")?,
            sim_reservation_ttl: env.seconds("ORDER_SIM_RESERVATION_TTL_SECS")?,
            return_window: env.span("ORDER_RETURN_WINDOW_DAYS", DAY, "days")?,
            return_parcel_wait: env.span("ORDER_RETURN_PARCEL_DAYS", DAY, "days")?,
            auto_cancel_draft_after: env.span("ORDER_AUTO_CANCEL_DRAFT_HOURS", HOUR, "hours")?,
            downstream: DownstreamAddrs {
                warehouse: env.url("ORDER_WAREHOUSE_SERVICE_ADDR")?,
                payment: env.url("ORDER_PAYMENT_SERVICE_ADDR")?,
                fulfillment: env.url("ORDER_FULFILLMENT_SERVICE_ADDR")?,
                notification: env.url("ORDER_NOTIFICATION_SERVICE_ADDR")?,
                pubsub: env.url("ORDER_PUBSUB_ADDR")?,
            },
            pubsub_name: env.value("ORDER_PUBSUB_NAME"),
            downstream_timeout: Duration::from_millis(env.positive("ORDER_DOWNSTREAM_TIMEOUT_MS")?),
            create_wait,
            stuck_after: Duration::from_secs(env.positive("ORDER_STUCK_AFTER_SECS")?),
            db_max_connections: env.parse("ORDER_DB_MAX_CONNECTIONS")?,
            header_read_timeout: env.seconds("ORDER_HTTP_HEADER_TIMEOUT_SECS")?,
            request_timeout: env.request_timeout(create_wait)?,
            max_connections: env.positive("ORDER_MAX_CONNECTIONS")? as usize,
            restate_identity_keys: env.identity_keys("ORDER_RESTATE_IDENTITY_KEYS")?,
            restate_allow_unsigned: env.switch("ORDER_RESTATE_ALLOW_UNSIGNED")?,
            internal_key: env.internal_key("ORDER_INTERNAL_KEY")?,
            auth: env.auth()?,
        })
    }
}

struct Env<'a, F: Fn(&str) -> Option<String>>(&'a F);

const HOUR: u32 = 3600;
const DAY: u32 = 24 * HOUR;

impl<F: Fn(&str) -> Option<String>> Env<'_, F> {
    /// Comma-separated Restate request identity keys, each checked as the SDK
    /// reads it, so that a bad one stops the start here rather than later.
    fn identity_keys(&self, var: &'static str) -> Result<Vec<String>, ConfigError> {
        let Some(v) = self.string(var) else {
            return Ok(Vec::new());
        };
        let keys: Vec<String> = v
            .split(',')
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .collect();
        for key in &keys {
            if let Err(e) = restate_sdk::endpoint::Endpoint::builder().identity_key(key) {
                return Err(ConfigError {
                    var,
                    value: key.clone(),
                    reason: format!("not a Restate public key (publickeyv1_...): {e:?}"),
                });
            }
        }
        Ok(keys)
    }

    /// The caller assertion's secret: the variable's UTF-8 bytes, at least 32.
    fn internal_key(&self, var: &'static str) -> Result<Option<CallerKey>, ConfigError> {
        let Some(v) = self.string(var) else {
            return Ok(None);
        };
        CallerKey::new(v.trim().as_bytes())
            .map(Some)
            .map_err(|reason| ConfigError {
                var,
                value: "(hidden)".into(),
                reason,
            })
    }

    /// The token verifier: an HS256 secret (its UTF-8 bytes) or a PEM public key
    /// file, never both; the issuer and audience to expect only with one of them,
    /// so that a half-made set-up does not leave the API open.
    fn auth(&self) -> Result<Option<Verifier>, ConfigError> {
        const SECRET: &str = "ORDER_AUTH_JWT_SECRET";
        const KEY_FILE: &str = "ORDER_AUTH_JWT_PUBLIC_KEY_FILE";
        let text = |var| self.string(var).map(|v| v.trim().to_owned());
        const MAX_AGE: &str = "ORDER_AUTH_MAX_TOKEN_AGE";
        let max_age = match self.string(MAX_AGE) {
            Some(_) => Some(self.seconds(MAX_AGE)?),
            None => None,
        };
        let expected = Expected {
            issuer: text("ORDER_AUTH_ISSUER"),
            audience: text("ORDER_AUTH_AUDIENCE"),
            max_age,
        };
        let verifier = match (self.string(SECRET), text(KEY_FILE)) {
            (Some(_), Some(file)) => {
                return Err(ConfigError {
                    var: KEY_FILE,
                    value: file,
                    reason: format!("set either {SECRET} or {KEY_FILE}, not both"),
                })
            }
            (Some(secret), None) => {
                Verifier::hs256(secret.as_bytes(), expected).map_err(|e| ConfigError {
                    var: SECRET,
                    value: "(hidden)".into(),
                    reason: e.to_string(),
                })?
            }
            (None, Some(file)) => {
                let refused = |reason: String| ConfigError {
                    var: KEY_FILE,
                    value: file.clone(),
                    reason,
                };
                let pem = std::fs::read(&file)
                    .map_err(|e| refused(format!("cannot read the key file: {e}")))?;
                Verifier::public_key_pem(&pem, expected).map_err(|e| refused(e.to_string()))?
            }
            (None, None) => {
                let set = [
                    ("ORDER_AUTH_ISSUER", expected.issuer),
                    ("ORDER_AUTH_AUDIENCE", expected.audience),
                    (MAX_AGE, self.string(MAX_AGE)),
                ];
                if let Some((var, Some(value))) = set.into_iter().find(|(_, v)| v.is_some()) {
                    return Err(ConfigError {
                        var,
                        value,
                        reason: format!("authorization is off: set {SECRET} or {KEY_FILE} too"),
                    });
                }
                return Ok(None);
            }
        };
        Ok(Some(verifier))
    }

    fn string(&self, var: &str) -> Option<String> {
        (self.0)(var).filter(|v| !v.trim().is_empty())
    }

    /// The variable's value, or its default from [`VARIABLES`].
    fn value(&self, var: &str) -> String {
        self.string(var)
            .unwrap_or_else(|| default_value(var).to_owned())
    }

    fn parse<T: FromStr>(&self, var: &'static str) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        let v = self.value(var);
        v.trim().parse().map_err(|e: T::Err| ConfigError {
            var,
            value: v.clone(),
            reason: e.to_string(),
        })
    }

    fn positive(&self, var: &'static str) -> Result<u64, ConfigError> {
        let v = self.parse(var)?;
        if v == 0 {
            return Err(ConfigError {
                var,
                value: "0".into(),
                reason: "must be greater than zero".into(),
            });
        }
        Ok(v)
    }

    /// A yes/no switch with its default from [`VARIABLES`].
    fn switch(&self, var: &'static str) -> Result<bool, ConfigError> {
        Self::yes_no(var, self.value(var))
    }

    /// A yes/no switch with no default.
    fn flag(&self, var: &'static str) -> Result<Option<bool>, ConfigError> {
        self.string(var).map(|v| Self::yes_no(var, v)).transpose()
    }

    /// `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`.
    fn yes_no(var: &'static str, v: String) -> Result<bool, ConfigError> {
        match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(ConfigError {
                var,
                value: v,
                reason: "must be true or false".into(),
            }),
        }
    }

    /// `ORDER_REQUEST_TIMEOUT_SECS`, which must leave a request time to wait
    /// `create_wait` for its saga and answer.
    fn request_timeout(&self, create_wait: Duration) -> Result<Duration, ConfigError> {
        const VAR: &str = "ORDER_REQUEST_TIMEOUT_SECS";
        let limit = self.seconds(VAR)?;
        match limit > create_wait {
            true => Ok(limit),
            false => Err(ConfigError {
                var: VAR,
                value: format!("{}", limit.as_secs_f64()),
                reason: "must be longer than the saga wait (ORDER_CREATE_WAIT_MS)".into(),
            }),
        }
    }

    /// A positive number of seconds; decimals such as `0.5` are allowed.
    fn seconds(&self, var: &'static str) -> Result<Duration, ConfigError> {
        self.span(var, 1, "seconds")
    }

    /// A positive number of `unit`s of `unit_secs` seconds each; decimals such as
    /// `0.001` are allowed, so that tests can wait seconds for what takes days.
    fn span(&self, var: &'static str, unit_secs: u32, unit: &str) -> Result<Duration, ConfigError> {
        let n: Decimal = self.parse(var)?;
        n.checked_mul(Decimal::from(unit_secs))
            .and_then(|secs| secs.to_f64())
            .filter(|s| *s > 0.0 && s.is_finite())
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .ok_or_else(|| ConfigError {
                var,
                value: n.to_string(),
                reason: format!("must be a positive number of {unit}"),
            })
    }

    /// One URL or several separated by commas, each a full URL, none twice.
    fn url_list(&self, var: &'static str) -> Result<Option<Vec<String>>, ConfigError> {
        let Some(v) = self.string(var) else {
            return Ok(None);
        };
        crate::engine::nodes::parse_list(&v)
            .map(Some)
            .map_err(|reason| ConfigError {
                var,
                value: v,
                reason,
            })
    }

    fn url(&self, var: &'static str) -> Result<Option<String>, ConfigError> {
        let Some(v) = self.string(var) else {
            return Ok(None);
        };
        let ok = (v.starts_with("http://") || v.starts_with("https://"))
            && reqwest::Url::parse(&v).is_ok();
        if !ok {
            return Err(ConfigError {
                var,
                value: v,
                reason: "must be a full URL such as http://127.0.0.1:9010".into(),
            });
        }
        Ok(Some(v.trim_end_matches('/').to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    /// Every variable `from_lookup` reads is in [`VARIABLES`], and every listed one
    /// is read (but those read elsewhere: the log filter and the trace exporter).
    #[test]
    fn every_variable_read_is_listed() {
        let asked = std::sync::Mutex::new(std::collections::BTreeSet::new());
        Config::from_lookup(|k| {
            asked.lock().unwrap().insert(k.to_owned());
            None
        })
        .unwrap();
        let asked = asked.into_inner().unwrap();
        let listed: std::collections::BTreeSet<String> =
            VARIABLES.iter().map(|v| v.name.to_owned()).collect();
        let unlisted: Vec<_> = asked.difference(&listed).collect();
        assert!(
            unlisted.is_empty(),
            "read but not in VARIABLES: {unlisted:?}"
        );
        let elsewhere = ["RUST_LOG", "OTEL_EXPORTER_OTLP_ENDPOINT"];
        let unread: Vec<_> = listed
            .difference(&asked)
            .filter(|name| !elsewhere.contains(&name.as_str()))
            .collect();
        assert!(unread.is_empty(), "in VARIABLES but never read: {unread:?}");
    }

    /// `docs/configuration.md` shows [`markdown_table`] between its two markers.
    /// `UPDATE_DOCS=1 cargo test --release --lib config::` writes it.
    #[test]
    fn docs_configuration_md_is_current() {
        const BEGIN: &str = "<!-- BEGIN generated from src/config.rs -->\n";
        const END: &str = "<!-- END generated -->";
        let path = format!("{}/docs/configuration.md", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        let start = text.find(BEGIN).expect("the BEGIN marker") + BEGIN.len();
        let end = text.find(END).expect("the END marker");
        let table = markdown_table();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            let updated = format!("{}{table}{}", &text[..start], &text[end..]);
            std::fs::write(&path, updated).unwrap();
            return;
        }
        assert!(
            text[start..end] == table,
            "docs/configuration.md is not the table of src/config.rs VARIABLES; \
             regenerate it with `UPDATE_DOCS=1 cargo test --release --lib config::`"
        );
    }

    #[test]
    fn defaults_match_the_api() {
        let c = with(&[]).unwrap();
        assert_eq!(c.http_port, 8004);
        assert_eq!(c.restate_endpoint_port, 9080);
        assert_eq!(c.auto_cancel_draft_after, Duration::from_secs(24 * 3600));
        assert_eq!(c.return_window, Duration::from_secs(30 * 86400));
        assert_eq!(c.return_parcel_wait, Duration::from_secs(14 * 86400));
        assert_eq!(c.pubsub_name, "pubsub");
        assert_eq!(c.downstream_timeout, Duration::from_millis(5000));
        assert!(c.downstream.any_missing());
    }

    #[test]
    fn fractional_draft_hours_are_allowed() {
        let c = with(&[("ORDER_AUTO_CANCEL_DRAFT_HOURS", "0.001")]).unwrap();
        assert_eq!(c.auto_cancel_draft_after, Duration::from_millis(3600));
    }

    #[test]
    fn return_days_take_decimals_and_refuse_zero() {
        let c = with(&[
            ("ORDER_RETURN_WINDOW_DAYS", "0.0001"),
            ("ORDER_RETURN_PARCEL_DAYS", "0.5"),
        ])
        .unwrap();
        assert_eq!(c.return_window, Duration::from_secs_f64(8.64));
        assert_eq!(c.return_parcel_wait, Duration::from_secs(43200));
        let e = with(&[("ORDER_RETURN_PARCEL_DAYS", "0")]).unwrap_err();
        assert!(e.to_string().contains("ORDER_RETURN_PARCEL_DAYS"), "{e}");
    }

    #[test]
    fn the_internal_key_is_hidden_and_must_be_long() {
        assert!(with(&[]).unwrap().internal_key.is_none());
        let long = "k".repeat(32);
        assert!(with(&[("ORDER_INTERNAL_KEY", &long)])
            .unwrap()
            .internal_key
            .is_some());
        let e = with(&[("ORDER_INTERNAL_KEY", "short-secret")]).unwrap_err();
        let message = e.to_string();
        assert!(message.contains("ORDER_INTERNAL_KEY"), "{message}");
        assert!(!message.contains("short-secret"), "{message}");
        assert!(!with(&[]).unwrap().restate_allow_unsigned);
        let open = with(&[("ORDER_RESTATE_ALLOW_UNSIGNED", "true")]).unwrap();
        assert!(open.restate_allow_unsigned);
    }

    #[test]
    fn force_register_is_unset_unless_given() {
        assert_eq!(with(&[]).unwrap().restate_force_register, None);
        let on = with(&[("ORDER_RESTATE_FORCE_REGISTER", "true")]).unwrap();
        assert_eq!(on.restate_force_register, Some(true));
        let off = with(&[("ORDER_RESTATE_FORCE_REGISTER", "0")]).unwrap();
        assert_eq!(off.restate_force_register, Some(false));
    }

    #[test]
    fn sim_reservation_ttl_takes_decimal_seconds() {
        assert_eq!(
            with(&[]).unwrap().sim_reservation_ttl,
            Duration::from_secs(3600)
        );
        let c = with(&[("ORDER_SIM_RESERVATION_TTL_SECS", "0.25")]).unwrap();
        assert_eq!(c.sim_reservation_ttl, Duration::from_millis(250));
    }

    #[test]
    fn identity_keys_are_read_as_the_sdk_reads_them() {
        // The SDK's own documented example key.
        let key = "publickeyv1_ChjENKeMvCtRnqG2mrBK1HmPKufgFUc98K8B3ononQvp";
        let c = with(&[("ORDER_RESTATE_IDENTITY_KEYS", &format!(" {key}, "))]).unwrap();
        assert_eq!(c.restate_identity_keys, [key]);
        assert!(with(&[]).unwrap().restate_identity_keys.is_empty());
    }

    fn fixture(name: &str) -> String {
        format!("{}/tests/api/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn auth_is_off_unless_a_secret_or_a_key_file_is_set() {
        assert!(with(&[]).unwrap().auth.is_none());
        let secret = "0123456789abcdef0123456789abcdef";
        let c = with(&[("ORDER_AUTH_JWT_SECRET", secret)]).unwrap();
        assert_eq!(c.auth.unwrap().algorithm(), jsonwebtoken::Algorithm::HS256);
        let key = fixture("es256-public.pem");
        let c = with(&[
            ("ORDER_AUTH_JWT_PUBLIC_KEY_FILE", &key),
            ("ORDER_AUTH_ISSUER", "https://id.example"),
            ("ORDER_AUTH_AUDIENCE", "orders"),
        ])
        .unwrap();
        assert_eq!(c.auth.unwrap().algorithm(), jsonwebtoken::Algorithm::ES256);
    }

    #[test]
    fn auth_errors_name_the_variable_and_hide_the_secret() {
        let e = with(&[("ORDER_AUTH_JWT_SECRET", "short secret")]).unwrap_err();
        assert!(e.to_string().contains("ORDER_AUTH_JWT_SECRET"), "{e}");
        assert!(!e.to_string().contains("short secret"), "{e}");
        let missing = fixture("no-such-key.pem");
        let not_pem = fixture("../main.rs");
        let private = fixture("rs256-private.pem");
        for (file, says) in [
            (missing.as_str(), "cannot read the key file"),
            (not_pem.as_str(), "not a PEM file"),
            (private.as_str(), "not a public key"),
        ] {
            let e = with(&[("ORDER_AUTH_JWT_PUBLIC_KEY_FILE", file)]).unwrap_err();
            let text = e.to_string();
            assert!(
                text.contains("ORDER_AUTH_JWT_PUBLIC_KEY_FILE") && text.contains(says),
                "{e}"
            );
        }
        let both = with(&[
            ("ORDER_AUTH_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            (
                "ORDER_AUTH_JWT_PUBLIC_KEY_FILE",
                &fixture("rs256-public.pem"),
            ),
        ])
        .unwrap_err();
        assert!(both.to_string().contains("not both"), "{both}");
        for var in ["ORDER_AUTH_ISSUER", "ORDER_AUTH_AUDIENCE"] {
            let e = with(&[(var, "x")]).unwrap_err();
            assert!(
                e.to_string().contains(var) && e.to_string().contains("off"),
                "{e}"
            );
        }
    }

    #[test]
    fn max_token_age_is_seconds_and_needs_authorization() {
        let secret = ("ORDER_AUTH_JWT_SECRET", "0123456789abcdef0123456789abcdef");
        assert!(with(&[secret, ("ORDER_AUTH_MAX_TOKEN_AGE", "900")]).is_ok());
        for bad in ["0", "-5", "15 minutes", "1e999"] {
            let e = with(&[secret, ("ORDER_AUTH_MAX_TOKEN_AGE", bad)]).unwrap_err();
            assert!(e.to_string().contains("ORDER_AUTH_MAX_TOKEN_AGE"), "{e}");
        }
        let e = with(&[("ORDER_AUTH_MAX_TOKEN_AGE", "900")]).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("ORDER_AUTH_MAX_TOKEN_AGE") && text.contains("off"),
            "{e}"
        );
    }

    #[test]
    fn server_limits_have_sane_defaults_and_name_their_variable() {
        let c = with(&[]).unwrap();
        assert!(c.header_read_timeout <= Duration::from_secs(30));
        assert!(c.request_timeout > c.create_wait * 5);
        assert!(c.max_connections >= 64);
        let c = with(&[
            ("ORDER_HTTP_HEADER_TIMEOUT_SECS", "0.5"),
            ("ORDER_MAX_CONNECTIONS", "3"),
        ])
        .unwrap();
        assert_eq!(c.header_read_timeout, Duration::from_millis(500));
        assert_eq!(c.max_connections, 3);
        for (var, bad) in [
            ("ORDER_HTTP_HEADER_TIMEOUT_SECS", "0"),
            ("ORDER_REQUEST_TIMEOUT_SECS", "soon"),
            ("ORDER_REQUEST_TIMEOUT_SECS", "2"),
            ("ORDER_MAX_CONNECTIONS", "0"),
        ] {
            let e = with(&[(var, bad)]).unwrap_err();
            assert!(e.to_string().contains(var), "{e}");
        }
    }

    #[test]
    fn restate_urls_take_one_url_or_a_list() {
        let c = with(&[
            ("ORDER_RESTATE_INGRESS_URL", "http://127.0.0.1:8080/"),
            (
                "ORDER_RESTATE_ADMIN_URL",
                "http://n1:9070, http://n2:9070 ,http://n3:9070",
            ),
        ])
        .unwrap();
        assert_eq!(c.restate_ingress_urls.unwrap(), ["http://127.0.0.1:8080"]);
        assert_eq!(
            c.restate_admin_urls.unwrap(),
            ["http://n1:9070", "http://n2:9070", "http://n3:9070"]
        );
        assert!(with(&[]).unwrap().restate_ingress_urls.is_none());
        for (bad, says) in [
            (
                "http://n1:8080,,http://n2:8080",
                "entry 2 of the comma-separated list is empty",
            ),
            ("http://n1:8080,n2:8080", "must be a full URL"),
            ("http://n1:8080,http://n1:8080/", "listed twice"),
        ] {
            for var in ["ORDER_RESTATE_INGRESS_URL", "ORDER_RESTATE_ADMIN_URL"] {
                let e = with(&[(var, bad)]).unwrap_err().to_string();
                assert!(
                    e.starts_with(&format!("invalid {var}=")) && e.contains(says),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn errors_name_the_variable() {
        let e = with(&[("ORDER_HTTP_PORT", "eighty")]).unwrap_err();
        assert!(e.to_string().contains("ORDER_HTTP_PORT"), "{e}");
        let e = with(&[("ORDER_PAYMENT_SERVICE_ADDR", "localhost:1")]).unwrap_err();
        assert!(e.to_string().contains("ORDER_PAYMENT_SERVICE_ADDR"), "{e}");
        for (var, bad) in [
            ("ORDER_RESTATE_FORCE_REGISTER", "maybe"),
            ("ORDER_SIM_RESERVATION_TTL_SECS", "0"),
            ("ORDER_SIM_RESERVATION_TTL_SECS", "soon"),
            ("ORDER_RESTATE_IDENTITY_KEYS", "publickeyv1_notakey"),
        ] {
            let e = with(&[(var, bad)]).unwrap_err();
            assert!(e.to_string().contains(var), "{e}");
        }
        let e = with(&[("ORDER_AUTO_CANCEL_DRAFT_HOURS", "-1")]).unwrap_err();
        assert!(
            e.to_string().contains("ORDER_AUTO_CANCEL_DRAFT_HOURS"),
            "{e}"
        );
    }
}
