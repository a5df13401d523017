//! Calls into Restate's ingress: how the API invokes the order object.
//!
//! A command is called under an idempotency key and waited for a bounded time.
//! When no result comes in that time (or the call breaks), the same invocation is
//! *sent* under the same key: Restate answers that only once it holds the
//! invocation (new or already accepted), so a `202` from the API always means
//! Restate will run it, and a call Restate never accepted is reported as such, for
//! the client to retry safely with the same key.
//!
//! Every call carries the API's caller assertion ([`crate::caller`]), without which
//! the order object refuses it.

use super::nodes::{node_trouble, timed_out_after_sending, Attempt, Nodes};
use crate::caller::{self, Call, CallerKey};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::{Duration, Instant};

/// How long Restate gets to confirm it holds an invocation before the API answers
/// `503`.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a node gets to take a connection before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a node's health check may take.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

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

/// Client of the Restate ingress, on one node of a cluster at a time.
#[derive(Clone)]
pub struct Ingress {
    http: reqwest::Client,
    nodes: Nodes,
    key: CallerKey,
}

impl Ingress {
    /// A client of the ingress at `urls`: one node's URL, or several nodes of one
    /// cluster, used in that order (the next when one stops answering); calls are
    /// signed with `key`.
    pub fn new<S: AsRef<str>>(urls: &[S], key: CallerKey) -> anyhow::Result<Self> {
        anyhow::ensure!(!urls.is_empty(), "no Restate ingress URL");
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .tcp_nodelay(true)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()?;
        Ok(Ingress {
            http,
            nodes: Nodes::new(urls),
            key,
        })
    }

    /// The nodes, with the one in use.
    pub fn nodes(&self) -> &Nodes {
        &self.nodes
    }

    /// Submits `handler` of virtual object `object` keyed `key` under
    /// `idempotency_key` (a repeat joins the same invocation) and waits up to
    /// `wait` for its result.
    ///
    /// A node that refuses or breaks the connection, or answers that it cannot take
    /// calls (502-504, or 404 for a service it has not loaded yet), did not give the
    /// result: the same call goes to the next node under the same key, which joins
    /// the invocation if the first node had taken it, so nothing runs twice.
    pub async fn submit<Req: Serialize, Res: DeserializeOwned>(
        &self,
        object: &str,
        key: &str,
        handler: &str,
        request: &Req,
        idempotency_key: &str,
        wait: Duration,
    ) -> Result<Res, IngressError> {
        let target = Target {
            path: format!("{object}/{key}/{handler}"),
            handler,
            key,
        };
        let body = serde_json::to_vec(request)
            .map_err(|e| IngressError::NotAccepted(format!("cannot serialize the request: {e}")))?;
        let called = self
            .nodes
            .run(Instant::now() + wait, |base, left| {
                let call = self.invocation(&base, "call", &target, &body, idempotency_key, left);
                async move {
                    match answer(call).await {
                        // Taken, and not done within the wait: the invocation goes on.
                        Err(e) if timed_out_after_sending(&e) => Attempt::Done(None),
                        Err(e) => Attempt::NextNode(e.to_string()),
                        Ok((status, body)) if node_trouble(status, &body) => Attempt::NextNode(
                            format!("answered {status}: {}", error_message(&body)),
                        ),
                        Ok(answer) => Attempt::Done(Some(answer)),
                    }
                }
            })
            .await;
        match called {
            Ok(Some((status, body))) => result(status, &body),
            Ok(None) => Err(self.confirm(&target, &body, idempotency_key, wait).await),
            Err(e) => {
                tracing::debug!(error = %e, "no restate node gave a result");
                Err(self.confirm(&target, &body, idempotency_key, wait).await)
            }
        }
    }

    /// The invocation `body` of `target` on node `base` under `idempotency_key`,
    /// as a call (`verb` `call`: answered with the result) or a send (`send`:
    /// answered once accepted), given `left` to answer. The idempotency key is also
    /// the request id the assertion covers.
    fn invocation(
        &self,
        base: &str,
        verb: &str,
        target: &Target<'_>,
        body: &[u8],
        idempotency_key: &str,
        left: Duration,
    ) -> reqwest::RequestBuilder {
        let call = Call {
            handler: target.handler,
            key: target.key,
            request: idempotency_key,
            digest: &caller::digest(body),
        };
        self.http
            .post(format!("{base}/restate/{verb}/{}", target.path))
            .header("idempotency-key", idempotency_key)
            .header(caller::REQUEST_HEADER, idempotency_key)
            .header(caller::ASSERTION_HEADER, self.key.sign(call, None))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .headers(crate::telemetry::headers())
            .body(body.to_vec())
            .timeout(left)
    }

    /// After a call that gave no result: sends the same invocation under the same
    /// key, which Restate answers once it holds it (it deduplicates, so a call it had
    /// accepted is not started twice), on any node that answers.
    async fn confirm(
        &self,
        target: &Target<'_>,
        body: &[u8],
        idempotency_key: &str,
        wait: Duration,
    ) -> IngressError {
        let sent = self
            .nodes
            .run(Instant::now() + ACCEPT_TIMEOUT, |base, left| {
                let send = self.invocation(&base, "send", target, body, idempotency_key, left);
                async move {
                    match answer(send).await {
                        Err(e) => Attempt::NextNode(e.to_string()),
                        Ok((status, body)) if node_trouble(status, &body) => Attempt::NextNode(
                            format!("answered {status}: {}", error_message(&body)),
                        ),
                        Ok((status, _)) => Attempt::Done(status),
                    }
                }
            })
            .await;
        match sent {
            Ok(status) if status.is_success() => IngressError::StillRunning(wait),
            Ok(status) => IngressError::NotAccepted(format!("restate answered {status}")),
            Err(e) => IngressError::NotAccepted(e),
        }
    }

    /// Calls the shared handler `handler` (no input) of `object` keyed `key`, on the
    /// next node when one does not answer (a read is safe to repeat).
    pub async fn read<Res: DeserializeOwned>(
        &self,
        object: &str,
        key: &str,
        handler: &str,
        wait: Duration,
    ) -> Result<Res, IngressError> {
        // A read is not deduplicated: its request id only names it.
        let request = uuid::Uuid::new_v4().to_string();
        let call = Call {
            handler,
            key,
            request: &request,
            digest: &caller::digest(b""),
        };
        let expires = chrono::Utc::now().timestamp() + caller::READ_TTL_SECS;
        let assertion = self.key.sign(call, Some(expires));
        let read = self
            .nodes
            .run(Instant::now() + wait, |base, left| {
                let call = self
                    .http
                    .post(format!("{base}/restate/call/{object}/{key}/{handler}"))
                    .header(caller::REQUEST_HEADER, &request)
                    .header(caller::ASSERTION_HEADER, &assertion)
                    .timeout(left);
                async move {
                    match answer(call).await {
                        Err(e) if timed_out_after_sending(&e) => Attempt::Done(Err(e.to_string())),
                        Err(e) => Attempt::NextNode(e.to_string()),
                        Ok((status, body)) if node_trouble(status, &body) => Attempt::NextNode(
                            format!("answered {status}: {}", error_message(&body)),
                        ),
                        Ok(answer) => Attempt::Done(Ok(answer)),
                    }
                }
            })
            .await;
        match read {
            Ok(Ok((status, body))) => result(status, &body),
            Ok(Err(e)) | Err(e) => Err(IngressError::NotAccepted(e)),
        }
    }

    /// True when the ingress of a node answers (the one in use, else the next).
    pub async fn healthy(&self) -> bool {
        let checked = self
            .nodes
            .run(Instant::now(), |base, _| {
                let check = self
                    .http
                    .get(format!("{base}/restate/health"))
                    .timeout(HEALTH_TIMEOUT);
                async move {
                    match check.send().await {
                        Ok(r) if r.status().is_success() => Attempt::Done(()),
                        Ok(r) => Attempt::NextNode(format!("health answered {}", r.status())),
                        Err(e) => Attempt::NextNode(e.to_string()),
                    }
                }
            })
            .await;
        checked.is_ok()
    }
}

/// Where an invocation goes: `{object}/{key}/{handler}`, and its parts.
struct Target<'a> {
    path: String,
    handler: &'a str,
    key: &'a str,
}

/// Sends the request and reads the whole answer.
async fn answer(
    request: reqwest::RequestBuilder,
) -> Result<(reqwest::StatusCode, Vec<u8>), reqwest::Error> {
    let response = request.send().await?;
    let status = response.status();
    Ok((status, response.bytes().await?.to_vec()))
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
