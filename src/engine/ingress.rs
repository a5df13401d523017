//! Calls into Restate's ingress: how the API invokes the order object.
//!
//! A command is first *sent* (Restate answers once it has durably accepted the
//! invocation) and then *attached to* for a bounded wait. So a `202` from the API
//! always means Restate holds the invocation, and a request Restate never accepted
//! is reported as such, for the client to retry safely with the same key.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// How long Restate gets to accept an invocation before the API answers `503`.
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Sent {
    invocation_id: String,
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
    /// `idempotency_key` (a repeat attaches to the same invocation), then waits up
    /// to `wait` for its result.
    pub async fn submit<Req: Serialize, Res: DeserializeOwned>(
        &self,
        object: &str,
        key: &str,
        handler: &str,
        request: &Req,
        idempotency_key: &str,
        wait: Duration,
    ) -> Result<Res, IngressError> {
        let start = Instant::now();
        let url = format!("{}/restate/send/{object}/{key}/{handler}", self.base_url);
        let sent = self
            .http
            .post(url)
            .header("idempotency-key", idempotency_key)
            .json(request)
            .timeout(ACCEPT_TIMEOUT)
            .send()
            .await
            .map_err(|e| IngressError::NotAccepted(e.to_string()))?;
        let status = sent.status();
        let body = sent
            .bytes()
            .await
            .map_err(|e| IngressError::NotAccepted(e.to_string()))?;
        if !status.is_success() {
            let message = error_message(&body);
            return Err(match status.as_u16() {
                s @ 400..=499 => IngressError::Failed { status: s, message },
                _ => IngressError::NotAccepted(message),
            });
        }
        let Sent { invocation_id } = serde_json::from_slice(&body)
            .map_err(|e| IngressError::NotAccepted(format!("unreadable answer: {e}")))?;

        // Accepted: from here on the answer is the result, or "still running".
        let left = wait.saturating_sub(start.elapsed());
        let url = format!("{}/restate/attach/{invocation_id}", self.base_url);
        let attached = tokio::time::timeout(left, async {
            let response = self.http.get(url).send().await.ok()?;
            let status = response.status();
            Some((status, response.bytes().await.ok()?))
        })
        .await;
        let Ok(Some((status, body))) = attached else {
            return Err(IngressError::StillRunning(wait));
        };
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| IngressError::Failed {
                status: 500,
                message: format!("unreadable result: {e}"),
            });
        }
        match status.as_u16() {
            // Restate's own troubles while attached: the invocation goes on.
            502..=504 => Err(IngressError::StillRunning(wait)),
            s => Err(IngressError::Failed {
                status: s,
                message: error_message(&body),
            }),
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
        if !status.is_success() {
            return Err(IngressError::Failed {
                status: status.as_u16(),
                message: error_message(&body),
            });
        }
        serde_json::from_slice(&body).map_err(|e| IngressError::Failed {
            status: 500,
            message: format!("unreadable result: {e}"),
        })
    }

    /// True when the ingress answers.
    pub async fn healthy(&self) -> bool {
        let url = format!("{}/restate/health", self.base_url);
        matches!(self.http.get(url).send().await, Ok(r) if r.status().is_success())
    }
}

/// The `message` of an error body, or the body itself.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}
