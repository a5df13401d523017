//! The Restate nodes a client may talk to, and the one place that decides when to
//! move from one to the next.
//!
//! `ORDER_RESTATE_INGRESS_URL` and `ORDER_RESTATE_ADMIN_URL` may each name several
//! nodes of one cluster. A client uses one of them until it stops answering (the
//! attempt says so by returning [`Attempt::NextNode`]), then the next one in the
//! list, wrapping around. Every clone of a [`Nodes`] shares the node in use, so one
//! request that finds a node dead moves all the others along with it.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Pause after every node in the list failed once, doubled each round up to
/// [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// A list of base URLs of Restate nodes (all ingresses, or all admin APIs), and the
/// index of the one in use.
#[derive(Debug, Clone)]
pub struct Nodes {
    urls: Arc<[String]>,
    current: Arc<AtomicUsize>,
}

/// What one attempt on one node gave.
#[derive(Debug)]
pub enum Attempt<T> {
    /// An answer to keep (a success, or a refusal that another node would repeat).
    Done(T),
    /// The node did not take the request (refused the connection, broke it, timed
    /// out, is overloaded or still loading): try the next one. Only for requests
    /// that are safe to send again, such as those under an idempotency key.
    NextNode(String),
}

impl Nodes {
    /// The nodes at `urls`, used in that order. Panics on an empty list: the
    /// configuration never gives one.
    pub fn new<S: AsRef<str>>(urls: &[S]) -> Nodes {
        assert!(!urls.is_empty(), "at least one Restate URL");
        Nodes {
            urls: urls
                .iter()
                .map(|u| u.as_ref().trim_end_matches('/').to_owned())
                .collect(),
            current: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Every URL, in the configured order.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The node in use: its index and base URL.
    pub fn current(&self) -> (usize, &str) {
        let i = self.current.load(Ordering::Relaxed) % self.urls.len();
        (i, &self.urls[i])
    }

    /// Moves on from node `index`, which did not answer, unless another request
    /// has already moved on from it.
    pub fn failed(&self, index: usize, error: &str) {
        let next = (index + 1) % self.urls.len();
        let moved = self
            .current
            .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        if moved && self.urls.len() > 1 {
            tracing::warn!(
                from = %self.urls[index],
                to = %self.urls[next],
                %error,
                "restate node not answering; using the next one"
            );
        }
    }

    /// Runs `attempt` on the node in use, and on the next ones while they answer
    /// [`Attempt::NextNode`]: every node is tried at least once, then the list again
    /// after a short pause until `deadline`. `attempt` gets the node's base URL and
    /// the time left (at least 100 ms). The error is the last node's.
    pub async fn run<T, F, Fut>(&self, deadline: Instant, mut attempt: F) -> Result<T, String>
    where
        F: FnMut(String, Duration) -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let mut pause = FIRST_PAUSE;
        let mut tried = 0;
        loop {
            let (index, url) = self.current();
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(100));
            let error = match attempt(url.to_owned(), left).await {
                Attempt::Done(answer) => return Ok(answer),
                Attempt::NextNode(error) => error,
            };
            tracing::debug!(node = %url, %error, "restate node did not take the request");
            self.failed(index, &error);
            tried += 1;
            if tried % self.urls.len() == 0 {
                if Instant::now() + pause >= deadline {
                    return Err(error);
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            } else if tried >= self.urls.len() && Instant::now() >= deadline {
                return Err(error);
            }
        }
    }
}

/// Whether a request that got no answer at all may be sent to another node: yes,
/// unless it timed out waiting for its answer after the node took it (the work may
/// be under way there; the caller decides).
pub fn timed_out_after_sending(e: &reqwest::Error) -> bool {
    e.is_timeout() && !e.is_connect()
}

/// Whether an answer is the node's own trouble rather than an answer to the
/// request: a gateway or overload status, or a `404` saying that the service or
/// handler is unknown, which a node that has not loaded the schema yet gives.
pub fn node_trouble(status: reqwest::StatusCode, body: &[u8]) -> bool {
    if matches!(status.as_u16(), 502..=504) {
        return true;
    }
    if status != reqwest::StatusCode::NOT_FOUND {
        return false;
    }
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    (text.contains("service") || text.contains("handler")) && text.contains("not found")
}

/// A comma-separated list of URLs, each checked; the error says what is wrong.
pub fn parse_list(value: &str) -> Result<Vec<String>, String> {
    let mut urls: Vec<String> = Vec::new();
    for (i, item) in value.split(',').map(str::trim).enumerate() {
        if item.is_empty() {
            return Err(format!(
                "entry {} of the comma-separated list is empty",
                i + 1
            ));
        }
        let ok = (item.starts_with("http://") || item.starts_with("https://"))
            && reqwest::Url::parse(item).is_ok();
        if !ok {
            return Err(format!(
                "{item:?} must be a full URL such as http://127.0.0.1:9010"
            ));
        }
        let url = item.trim_end_matches('/').to_owned();
        if urls.contains(&url) {
            return Err(format!("{url} is listed twice"));
        }
        urls.push(url);
    }
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn a_list_is_split_trimmed_and_checked() {
        assert_eq!(
            parse_list(" http://a:1/ , https://b:2").unwrap(),
            ["http://a:1", "https://b:2"]
        );
        assert_eq!(parse_list("http://a:1").unwrap(), ["http://a:1"]);
        assert!(parse_list("http://a:1,,http://b:2")
            .unwrap_err()
            .contains("entry 2"));
        assert!(parse_list("http://a:1,").unwrap_err().contains("entry 2"));
        assert!(parse_list("http://a:1,b:2")
            .unwrap_err()
            .contains("\"b:2\""));
        assert!(parse_list("http://a:1,http://a:1/")
            .unwrap_err()
            .contains("twice"));
    }

    #[test]
    fn node_trouble_is_a_gateway_status_or_an_unknown_service() {
        use reqwest::StatusCode as S;
        assert!(node_trouble(S::SERVICE_UNAVAILABLE, b""));
        assert!(node_trouble(S::BAD_GATEWAY, b""));
        assert!(node_trouble(
            S::NOT_FOUND,
            br#"{"message":"service 'Order' not found"}"#
        ));
        assert!(!node_trouble(
            S::NOT_FOUND,
            br#"{"message":"no such order"}"#
        ));
        assert!(!node_trouble(S::CONFLICT, b"service not found"));
        assert!(!node_trouble(S::INTERNAL_SERVER_ERROR, b""));
    }

    #[tokio::test]
    async fn a_failing_node_moves_every_clone_to_the_next() {
        let nodes = Nodes::new(&["http://a", "http://b", "http://c"]);
        let other = nodes.clone();
        let seen = Mutex::new(Vec::new());
        let answer = nodes
            .run(Instant::now(), |url, _| {
                seen.lock().unwrap().push(url.clone());
                async move {
                    if url == "http://a" {
                        Attempt::NextNode("refused".into())
                    } else {
                        Attempt::Done(url)
                    }
                }
            })
            .await;
        assert_eq!(answer.unwrap(), "http://b");
        assert_eq!(*seen.lock().unwrap(), ["http://a", "http://b"]);
        assert_eq!(other.current(), (1, "http://b"));
    }

    #[tokio::test]
    async fn every_node_is_tried_once_and_the_list_again_until_the_deadline() {
        let nodes = Nodes::new(&["http://a", "http://b"]);
        let count = Mutex::new(0);
        let once: Result<(), String> = nodes
            .run(Instant::now(), |url, _| {
                *count.lock().unwrap() += 1;
                async move { Attempt::NextNode(format!("{url} down")) }
            })
            .await;
        assert_eq!(once.unwrap_err(), "http://b down");
        assert_eq!(*count.lock().unwrap(), 2);

        let start = Instant::now();
        let mut calls = 0;
        let later = nodes
            .run(start + Duration::from_secs(5), |_, _| {
                calls += 1;
                let up = calls == 5;
                async move {
                    if up {
                        Attempt::Done(())
                    } else {
                        Attempt::NextNode("down".into())
                    }
                }
            })
            .await;
        assert!(later.is_ok());
        // Two rounds failed: pauses of 100 ms and 200 ms.
        assert!(start.elapsed() >= Duration::from_millis(300));
    }

    #[test]
    fn a_node_is_skipped_once_when_several_requests_see_it_fail() {
        let nodes = Nodes::new(&["http://a", "http://b", "http://c"]);
        nodes.failed(0, "reset");
        nodes.failed(0, "reset");
        assert_eq!(nodes.current(), (1, "http://b"));
        nodes.failed(1, "refused");
        nodes.failed(2, "refused");
        assert_eq!(nodes.current(), (0, "http://a"));
    }
}
