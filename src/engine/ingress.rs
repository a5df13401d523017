//! Calls into Restate's ingress: how the API invokes the order object.
//!
//! A command is called under an idempotency key and waited for a bounded time.
//! When no result comes in that time (or the call breaks), the same invocation is
//! *sent* under the same key: Restate answers that only once it holds the
//! invocation (new or already accepted), so a `202` from the API always means
//! Restate will run it, and a call Restate never accepted is reported as such, for
//! the client to retry safely with the same key.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// How long Restate gets to confirm it holds an invocation before the API answers
/// `503`.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an ingress call did not return a result.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// Accepted, and still running after the wait; it goes on inside Restate.
    #[error("still running after {0:?}")]
    StillRunning(Duration),
    /// The handler ended with a terminal error.
    #[error("handler failed with {status}: {message}")]
    Failed { status: u16, message: String },
    /// Restate did not accept the invocation (unreachable, timed out, or answered
    /// an error of its own): nothing was started.
    #[error("restate did not accept the call: {0}")]
    NotAccepted(String),
}

/// Client of the Restate ingress.
#[derive(Clone)]
pub struct Ingress {
    http: reqwest::Client,
    base_url: String,
}

impl Ingress {
    /// A client of the ingress at `base_url`.
    pub fn new(base_url: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .tcp_nodelay(true)
            .build()?;
        Ok(Ingress {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// Submits `handler` of virtual object `object` keyed `key` under
    /// `idempotency_key` (a repeat joins the same invocation) and waits up to
    /// `wait` for its result.
    pub async fn submit<Req: Serialize, Res: DeserializeOwned>(
        &self,
        object: &str,
        key: &str,
        handler: &str,
        request: &Req,
        idempotency_key: &str,
        wait: Duration,
    ) -> Result<Res, IngressError> {
        let target = format!("{object}/{key}/{handler}");
        let called = self
            .http
            .post(format!("{}/restate/call/{target}", self.base_url))
            .header("idempotency-key", idempotency_key)
            .headers(crate::telemetry::headers())
            .json(request)
            .timeout(wait)
            .send()
            .await;
        let answer = match called {
            Ok(response) => {
                let status = response.status();
                response.bytes().await.map(|body| (status, body))
            }
            Err(e) => Err(e),
        };
        match answer {
            // Restate's own troubles (overloaded, no quorum): did it take the call?
            Ok((status, _)) if (502..=504).contains(&status.as_u16()) => {
                Err(self.confirm(&target, request, idempotency_key, wait).await)
            }
            Ok((status, body)) => result(status, &body),
            Err(_) => Err(self.confirm(&target, request, idempotency_key, wait).await),
        }
    }

    /// After a call that gave no result: sends the same invocation under the same
    /// key, which Restate answers once it holds it (it deduplicates, so a call it had
    /// accepted is not started twice).
    async fn confirm<Req: Serialize>(
        &self,
        target: &str,
        request: &Req,
        idempotency_key: &str,
        wait: Duration,
    ) -> IngressError {
        let sent = self
            .http
            .post(format!("{}/restate/send/{target}", self.base_url))
            .header("idempotency-key", idempotency_key)
            .headers(crate::telemetry::headers())
            .json(request)
            .timeout(ACCEPT_TIMEOUT)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => IngressError::StillRunning(wait),
            Ok(r) => IngressError::NotAccepted(format!("restate answered {}", r.status())),
            Err(e) => IngressError::NotAccepted(e.to_string()),
        }
    }

    /// Calls the shared handler `handler` (no input) of `object` keyed `key`.
    pub async fn read<Res: DeserializeOwned>(
        &self,
        object: &str,
        key: &str,
        handler: &str,
        wait: Duration,
    ) -> Result<Res, IngressError> {
        let url = format!("{}/restate/call/{object}/{key}/{handler}", self.base_url);
        let response = self
            .http
            .post(url)
            .timeout(wait)
            .send()
            .await
            .map_err(|e| IngressError::NotAccepted(e.to_string()))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| IngressError::NotAccepted(e.to_string()))?;
        result(status, &body)
    }

    /// True when the ingress answers.
    pub async fn healthy(&self) -> bool {
        let url = format!("{}/restate/health", self.base_url);
        matches!(self.http.get(url).send().await, Ok(r) if r.status().is_success())
    }
}

/// A handler's answer: its result, or the terminal error it ended with.
fn result<Res: DeserializeOwned>(
    status: reqwest::StatusCode,
    body: &[u8],
) -> Result<Res, IngressError> {
    if !status.is_success() {
        return Err(IngressError::Failed {
            status: status.as_u16(),
            message: error_message(body),
        });
    }
    serde_json::from_slice(body).map_err(|e| IngressError::Failed {
        status: 500,
        message: format!("unreadable result: {e}"),
    })
}

/// The `message` of an error body, or the body itself.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}
