//! Serves the Restate endpoint (HTTP/2 cleartext) that restate-server calls.
//!
//! The SDK's own server leaves Nagle's algorithm on, which adds tens of
//! milliseconds to every journal round trip; this accept loop sets `TCP_NODELAY`.

use super::admin::{handlers_of, Handlers};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use restate_sdk::endpoint::Endpoint;
use restate_sdk::hyper::HyperEndpoint;
use std::future::Future;
use tokio::net::TcpListener;

/// Serves `endpoint` on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, endpoint: Endpoint, shutdown: impl Future<Output = ()>) {
    let service = HyperEndpoint::new(endpoint);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let conn = http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service.clone());
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%remote, error = ?e, "restate connection ended");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    // Let running invocations reach a journal boundary; Restate resumes the rest.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown()).await;
}

/// The handlers `endpoint` serves, read from its discovery manifest in process
/// (so that no request identity is needed to ask it).
pub async fn handlers(endpoint: &Endpoint) -> anyhow::Result<Handlers> {
    let request = hyper::Request::get("/discover")
        .header("accept", "application/vnd.restate.endpointmanifest.v4+json")
        .body(Empty::<Bytes>::new())?;
    let response = endpoint.handle(request);
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the endpoint's manifest: {e}"))?
        .to_bytes();
    anyhow::ensure!(
        status.is_success(),
        "the endpoint's manifest answered {status}"
    );
    let manifest: serde_json::Value = serde_json::from_slice(&body)?;
    Ok(handlers_of(&manifest["services"]))
}
