//! Restate's admin API: health, the registration of this service's deployment,
//! SQL introspection of invocations and resuming them.

use super::nodes::{Attempt, Nodes};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Client of the Restate admin API, on one node of a cluster at a time.
#[derive(Clone)]
pub struct Admin {
    http: reqwest::Client,
    nodes: Nodes,
}

/// How long a node gets to take a connection before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

impl Admin {
    /// A client of the admin API at `urls`: one node's URL, or several nodes of one
    /// cluster, used in that order (the next when one stops answering).
    pub fn new<S: AsRef<str>>(urls: &[S]) -> Self {
        Admin {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .connect_timeout(CONNECT_TIMEOUT)
                .build()
                .expect("http client"),
            nodes: Nodes::new(urls),
        }
    }

    /// The nodes, with the one in use.
    pub fn nodes(&self) -> &Nodes {
        &self.nodes
    }

    /// Sends the request `build` makes for a node's base URL, on the node in use
    /// and, when it does not answer or answers 502-504, on the next ones (every
    /// admin request made here is safe to repeat). The answer's status and body.
    async fn request(
        &self,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, Vec<u8>), String> {
        self.nodes
            .run(Instant::now(), |base, _| {
                let request = build(&base);
                async move {
                    let answer = match request.send().await {
                        Ok(r) => {
                            let status = r.status();
                            r.bytes().await.map(|body| (status, body.to_vec()))
                        }
                        Err(e) => Err(e),
                    };
                    match answer {
                        Err(e) => Attempt::NextNode(e.to_string()),
                        Ok((status, _)) if matches!(status.as_u16(), 502..=504) => {
                            Attempt::NextNode(format!("answered {status}"))
                        }
                        Ok(answer) => Attempt::Done(answer),
                    }
                }
            })
            .await
    }

    /// True when the admin API of a node answers its health check (the one in use,
    /// else the next).
    pub async fn healthy(&self) -> bool {
        let answer = self
            .request(|base| {
                self.http
                    .get(format!("{base}/health"))
                    .timeout(Duration::from_secs(2))
            })
            .await;
        matches!(answer, Ok((status, _)) if status.is_success())
    }

    /// Runs `sql` on Restate's SQL introspection (`POST /query`) and returns its rows;
    /// a column that is NULL is absent from its row.
    pub async fn query(&self, sql: &str) -> anyhow::Result<Vec<Value>> {
        // Right after a start, a partition may not be reachable yet for a moment.
        let mut delay = Duration::from_millis(100);
        loop {
            match self.query_once(sql).await {
                Err(e) if delay < Duration::from_secs(2) => {
                    tracing::debug!(error = %e, "restate query failed, asking again");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                answer => return answer,
            }
        }
    }

    async fn query_once(&self, sql: &str) -> anyhow::Result<Vec<Value>> {
        let query = serde_json::json!({ "query": sql });
        let (status, body) = self
            .request(|base| {
                self.http
                    .post(format!("{base}/query"))
                    .header(reqwest::header::ACCEPT, "application/json")
                    .json(&query)
            })
            .await
            .map_err(|e| anyhow::anyhow!("restate query not answered: {e}"))?;
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        anyhow::ensure!(
            status.is_success(),
            "restate query answered {status}: {body}"
        );
        Ok(body["rows"].as_array().cloned().unwrap_or_default())
    }

    /// Resumes a paused invocation, or retries a backing-off one now.
    pub async fn resume(&self, invocation_id: &str) -> anyhow::Result<()> {
        let (status, body) = self
            .request(|base| {
                self.http
                    .patch(format!("{base}/invocations/{invocation_id}/resume"))
            })
            .await
            .map_err(|e| anyhow::anyhow!("resuming {invocation_id}: no answer: {e}"))?;
        anyhow::ensure!(
            status.is_success(),
            "resuming {invocation_id} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        Ok(())
    }

    /// Registers the deployment serving at `endpoint_url` (its handlers read from
    /// `served_at`, this process's own listener), retrying while Restate is
    /// unreachable or failing (5xx), for at most `limit`; each failed try moves to
    /// the next node (a deployment registered through one node is the cluster's).
    ///
    /// Without `force`, Restate refuses (409 or 400) handlers that break those it
    /// has registered (a changed service type; restate-server 1.7.12 lets a removed
    /// handler through), and answers 200 without any change when a deployment
    /// already has that URL, whatever it serves now: the registered handlers are then
    /// compared with the served ones. Either case stops the start, since invocations
    /// under way would replay on other code. With `force` Restate overwrites the
    /// deployment: only for `dev` and tests (`ORDER_RESTATE_FORCE_REGISTER`).
    pub async fn register_deployment(
        &self,
        endpoint_url: &str,
        served: &Handlers,
        force: bool,
        limit: Duration,
    ) -> anyhow::Result<()> {
        const ADVICE: &str = "serve the new code at a new URL (ORDER_RESTATE_ENDPOINT_URL), \
            or set ORDER_RESTATE_FORCE_REGISTER=true once no invocation runs on the old code";
        let body = serde_json::json!({ "uri": endpoint_url, "force": force });
        let start = Instant::now();
        let answer: Value = loop {
            let (node, base_url) = self.nodes.current();
            let outcome = self
                .http
                .post(format!("{base_url}/deployments"))
                .json(&body)
                .send()
                .await;
            let error = match outcome {
                Ok(r) if r.status().is_success() => break r.json().await?,
                Ok(r) if refused(r.status()) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    anyhow::bail!(
                        "restate at {base_url} refused to register {endpoint_url} ({status}): \
                         {text}; if the handlers changed incompatibly with those registered, \
                         {ADVICE}"
                    );
                }
                Ok(r) => {
                    let text = format!("{}: {}", r.status(), r.text().await.unwrap_or_default());
                    // The endpoint itself refused Restate's discovery call: no retry
                    // changes that.
                    if text.contains("got status code '401")
                        || text.contains("got status code '403")
                    {
                        anyhow::bail!(
                            "the endpoint at {endpoint_url} refused restate's discovery call \
                             ({text}): restate does not sign its requests with a key listed in \
                             ORDER_RESTATE_IDENTITY_KEYS"
                        );
                    }
                    text
                }
                Err(e) => e.to_string(),
            };
            if start.elapsed() > limit {
                anyhow::bail!(
                    "could not register {endpoint_url} with restate at {base_url}: {error}"
                );
            }
            self.nodes.failed(node, &error);
            tracing::debug!(%error, "deployment registration not accepted yet");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let registered = handlers_of(&answer["services"]);
        anyhow::ensure!(
            registered == *served,
            "restate at {} keeps the deployment registered at {endpoint_url} with other \
             handlers ({}) than this code serves ({}); a deployment does not change: {ADVICE}",
            self.nodes.current().1,
            describe(&registered),
            describe(served)
        );
        Ok(())
    }

    /// True when a deployment with this exact `endpoint_url` is registered.
    pub async fn has_deployment(&self, endpoint_url: &str) -> anyhow::Result<bool> {
        let (status, body) = self
            .request(|base| self.http.get(format!("{base}/deployments")))
            .await
            .map_err(|e| anyhow::anyhow!("listing deployments: no answer: {e}"))?;
        anyhow::ensure!(status.is_success(), "listing deployments answered {status}");
        let list: Value = serde_json::from_slice(&body)?;
        let wanted = endpoint_url.trim_end_matches('/');
        let found = list["deployments"].as_array().is_some_and(|all| {
            all.iter().any(|d| {
                d["uri"]
                    .as_str()
                    .is_some_and(|uri| uri.trim_end_matches('/') == wanted)
            })
        });
        Ok(found)
    }
}

/// Handler names per service name.
pub type Handlers = BTreeMap<String, BTreeSet<String>>;

/// The handlers of a list of services, as both the discovery manifest and Restate's
/// registration answer give them (`[{"name", "handlers": [{"name"}]}]`).
pub fn handlers_of(services: &Value) -> Handlers {
    let names = |list: &Value| -> Vec<(String, Value)> {
        list.as_array()
            .map(|all| {
                all.iter()
                    .filter_map(|item| Some((item["name"].as_str()?.to_owned(), item.clone())))
                    .collect()
            })
            .unwrap_or_default()
    };
    names(services)
        .into_iter()
        .map(|(service, item)| {
            let handlers = names(&item["handlers"]).into_iter().map(|(h, _)| h);
            (service, handlers.collect())
        })
        .collect()
}

/// "Order/create Order/get, Other/run".
fn describe(handlers: &Handlers) -> String {
    let all: Vec<String> = handlers
        .iter()
        .flat_map(|(service, names)| names.iter().map(move |h| format!("{service}/{h}")))
        .collect();
    if all.is_empty() {
        "none".to_owned()
    } else {
        all.join(" ")
    }
}

/// The handlers the endpoint at `url` serves, from its discovery manifest (the
/// endpoint speaks HTTP/2 only).
pub async fn served_handlers(url: &str) -> anyhow::Result<Handlers> {
    let manifest: Value = reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(10))
        .build()?
        .get(format!("{}/discover", url.trim_end_matches('/')))
        .header("accept", "application/vnd.restate.endpointmanifest.v4+json")
        .send()
        .await?
        .error_for_status()?
        .json()
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the endpoint's manifest at {url}: {e}"))?;
    Ok(handlers_of(&manifest["services"]))
}

/// A final answer to a registration: the request itself was refused (a conflict
/// with the registered handlers, or an invalid request), not Restate's state.
fn refused(status: reqwest::StatusCode) -> bool {
    status.is_client_error()
        && status != reqwest::StatusCode::REQUEST_TIMEOUT
        && status != reqwest::StatusCode::TOO_MANY_REQUESTS
        && status != reqwest::StatusCode::NOT_FOUND
}
