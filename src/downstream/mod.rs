//! HTTP clients of the services the sagas call, per `downstream-contract.md`.
//!
//! Each call is classified once, here: `2xx` succeeds; `408`, `429`, `5xx`, timeouts
//! and broken connections are transient and retried; every other `4xx` is final: a
//! business rejection when it is `402`/`409`/`422` (the saga compensates), else a
//! refusal that needs an operator (a `404` the contract gives a meaning to, such as
//! `reservation_not_found` on a release, is read by the caller).

mod fulfillment;
mod notification;
mod payment;
mod pubsub;
mod warehouse;

pub use crate::domain::SkuQuantity;
pub use fulfillment::{FulfillmentClient, FulfillmentLine};
pub use notification::NotificationClient;
pub use payment::{Capture, PaymentClient, RefundReceipt};
pub use pubsub::PubSubClient;
pub use warehouse::{ReservationLine, Reserved, RestockLine, WarehouseClient};

use crate::config::DownstreamAddrs;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A final "no" from a downstream service (or from the read model).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub service: String,
    pub status: u16,
    pub code: String,
    pub message: String,
    /// The SKU a warehouse refusal names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
}

impl Rejection {
    /// A business rejection (`402`, `409`, `422`): the saga compensates. Any other
    /// final answer means something is wrong that an operator must look at.
    pub fn is_business(&self) -> bool {
        matches!(self.status, 402 | 409 | 422)
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} answered {} {}", self.service, self.status, self.code)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// What can go wrong with a downstream call.
#[derive(Debug, thiserror::Error)]
pub enum DownstreamError {
    /// A final answer: not retried.
    #[error("{0}")]
    Rejected(Rejection),
    /// Anything that may pass: retried with backoff, never compensated.
    #[error("{service} unavailable: {detail}")]
    Transient {
        service: &'static str,
        detail: String,
    },
}

/// All downstream clients, sharing one connection pool.
#[derive(Clone)]
pub struct Downstream {
    pub warehouse: WarehouseClient,
    pub payment: PaymentClient,
    pub fulfillment: FulfillmentClient,
    pub notification: NotificationClient,
    pub pubsub: PubSubClient,
}

impl Downstream {
    /// Clients for `addrs`, each call bounded by `timeout`. Every address must be set.
    pub fn new(
        addrs: &DownstreamAddrs,
        pubsub_name: &str,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()?;
        let base = |a: &Option<String>, name: &str| {
            a.clone()
                .ok_or_else(|| anyhow::anyhow!("no address for the {name} service"))
        };
        Ok(Downstream {
            warehouse: WarehouseClient::new(Http::new(
                &http,
                "warehouse",
                base(&addrs.warehouse, "warehouse")?,
            )),
            payment: PaymentClient::new(Http::new(
                &http,
                "payment",
                base(&addrs.payment, "payment")?,
            )),
            fulfillment: FulfillmentClient::new(Http::new(
                &http,
                "fulfillment",
                base(&addrs.fulfillment, "fulfillment")?,
            )),
            notification: NotificationClient::new(Http::new(
                &http,
                "notification",
                base(&addrs.notification, "notification")?,
            )),
            pubsub: PubSubClient::new(
                Http::new(&http, "pubsub", base(&addrs.pubsub, "pubsub")?),
                pubsub_name,
            ),
        })
    }

    /// Base URLs by service name, for health checks.
    pub fn endpoints(&self) -> Vec<(&'static str, &str)> {
        [
            &self.warehouse.http,
            &self.payment.http,
            &self.fulfillment.http,
            &self.notification.http,
            &self.pubsub.http,
        ]
        .into_iter()
        .map(|h| (h.service, h.base_url.as_str()))
        .collect()
    }

    /// True when the service at `base_url` answers HTTP at all.
    pub async fn reachable(&self, base_url: &str) -> bool {
        self.warehouse
            .http
            .client
            .get(base_url)
            .send()
            .await
            .is_ok()
    }
}

/// One service's base URL and the shared client.
#[derive(Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    service: &'static str,
    base_url: String,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    sku: Option<String>,
}

impl Http {
    fn new(client: &reqwest::Client, service: &'static str, base_url: String) -> Self {
        Http {
            client: client.clone(),
            service,
            base_url,
        }
    }

    /// POSTs `body` as JSON with `Idempotency-Key: key` and classifies the answer.
    pub(crate) async fn post<Req: Serialize, Res: DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
        content_type: &str,
        body: &Req,
    ) -> Result<Res, DownstreamError> {
        let transient = |detail: String| DownstreamError::Transient {
            service: self.service,
            detail,
        };
        let payload = serde_json::to_vec(body).map_err(|e| transient(e.to_string()))?;
        let request = self
            .client
            .post(format!("{}{path}", self.base_url))
            .header("Idempotency-Key", key)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(payload);
        self.send(path, request).await
    }

    /// Reads what the call to `path` under idempotency key `key` made (the
    /// contract's lookups), classified like any call: a failing lookup is transient.
    pub(crate) async fn look_up<Res: DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
    ) -> Result<Res, DownstreamError> {
        let request = self
            .client
            .get(format!("{}{path}", self.base_url))
            .query(&[("idempotency_key", key)]);
        self.send(path, request).await
    }

    /// Sends `request` (to `path`, for messages) and classifies the answer.
    async fn send<Res: DeserializeOwned>(
        &self,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Res, DownstreamError> {
        let transient = |detail: String| DownstreamError::Transient {
            service: self.service,
            detail,
        };
        let response = request
            .headers(crate::telemetry::headers())
            .send()
            .await
            .map_err(|e| transient(error_chain(&e)))?;
        let status = response.status();
        // Read the whole body before judging: a connection that breaks mid-answer is
        // as transient as one that never answered.
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transient(error_chain(&e)))?;
        if status.is_success() {
            let text = if bytes.is_empty() {
                &b"null"[..]
            } else {
                &bytes[..]
            };
            return serde_json::from_slice(text)
                .map_err(|e| transient(format!("unreadable answer from {path}: {e}")));
        }
        let err: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
        match status.as_u16() {
            s @ 400..=499 if s != 408 && s != 429 => Err(DownstreamError::Rejected(Rejection {
                service: self.service.to_owned(),
                status: s,
                code: if err.code.is_empty() {
                    "rejected".into()
                } else {
                    err.code
                },
                message: err.message,
                sku: err.sku,
            })),
            s => Err(transient(format!("{path} answered {s} {}", err.code))),
        }
    }
}

/// The error and its causes on one line (reqwest hides the useful part in sources).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
