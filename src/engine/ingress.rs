//! Calls into Restate's ingress: how the API invokes the order object.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// Why an ingress call did not return a result.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// No answer within the wait; the invocation goes on inside Restate.
    #[error("still running after {0:?}")]
    StillRunning(Duration),
    /// The handler ended with a terminal error.
    #[error("handler failed with {status}: {message}")]
    Failed { status: u16, message: String },
    /// Restate could not be reached or answered something unreadable.
    #[error("restate ingress unavailable: {0}")]
    Unavailable(String),
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

    /// Calls `handler` of virtual object `object` keyed `key` and waits up to `wait`
    /// for its result.
    pub async fn call<Req: Serialize, Res: DeserializeOwned>(
        &self,
        object: &str,
        key: &str,
        handler: &str,
        request: &Req,
        wait: Duration,
    ) -> Result<Res, IngressError> {
        let url = format!("{}/{object}/{key}/{handler}", self.base_url);
        let send = self.http.post(url).json(request).send();
        let response = match tokio::time::timeout(wait, send).await {
            Err(_) => return Err(IngressError::StillRunning(wait)),
            Ok(Err(e)) => return Err(IngressError::Unavailable(e.to_string())),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| IngressError::Unavailable(e.to_string()))?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|e| IngressError::Unavailable(format!("unreadable result: {e}")));
        }
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        match status.as_u16() {
            // Restate's own troubles, not the handler's answer.
            502..=504 => Err(IngressError::Unavailable(message)),
            s => Err(IngressError::Failed { status: s, message }),
        }
    }

    /// True when the ingress answers.
    pub async fn healthy(&self) -> bool {
        let url = format!("{}/restate/health", self.base_url);
        matches!(self.http.get(url).send().await, Ok(r) if r.status().is_success())
    }
}
