//! Serves the Restate endpoint (HTTP/2 cleartext) that restate-server calls.
//!
//! The SDK's own server leaves Nagle's algorithm on, which adds tens of
//! milliseconds to every journal round trip; this accept loop sets `TCP_NODELAY`.

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
