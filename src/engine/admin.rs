//! Restate's admin API: registering this service's deployment.

use std::time::{Duration, Instant};

/// Client of the Restate admin API.
#[derive(Clone)]
pub struct Admin {
    http: reqwest::Client,
    base_url: String,
}

impl Admin {
    /// A client of the admin API at `base_url`.
    pub fn new(base_url: &str) -> Self {
        Admin {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// True when the admin API answers its health check.
    pub async fn healthy(&self) -> bool {
        let url = format!("{}/health", self.base_url);
        matches!(self.http.get(url).send().await, Ok(r) if r.status().is_success())
    }

    /// Waits until the admin API answers, for at most `limit`.
    pub async fn wait_healthy(&self, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        while !self.healthy().await {
            if start.elapsed() > limit {
                anyhow::bail!(
                    "restate admin API at {} did not answer within {limit:?}",
                    self.base_url
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Registers (or refreshes, with `force`) the deployment serving at `endpoint_url`.
    /// Retries while Restate is still starting, for at most `limit`.
    pub async fn register_deployment(
        &self,
        endpoint_url: &str,
        limit: Duration,
    ) -> anyhow::Result<()> {
        let url = format!("{}/deployments", self.base_url);
        let body = serde_json::json!({ "uri": endpoint_url, "force": true });
        let start = Instant::now();
        loop {
            let outcome = self.http.post(&url).json(&body).send().await;
            let error = match outcome {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
                Err(e) => e.to_string(),
            };
            if start.elapsed() > limit {
                anyhow::bail!(
                    "could not register {endpoint_url} with restate at {}: {error}",
                    self.base_url
                );
            }
            tracing::debug!(%error, "deployment registration not accepted yet");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
