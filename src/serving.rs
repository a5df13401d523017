//! The limits every API server keeps, whatever its clients do: a cap on open
//! connections (further ones wait in the listen backlog), and for REST a time
//! limit on reading a request's headers, so that a client that sends nothing or
//! trickles its headers cannot hold a connection. The time limit on whole
//! requests is the API's own layer ([`crate::api`]); gRPC's are tonic's settings
//! ([`crate::grpc`]).

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;

/// What a server allows each client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a connection may take to send a request's headers, from when it
    /// opens or its last answer was sent (idle keep-alive included).
    pub header_read: Duration,
    /// How long a whole request may take, body included.
    pub request: Duration,
    /// How many connections are served at once.
    pub max_connections: usize,
}

/// Serves `app` over HTTP/1.1 on `listener` within `limits` until `shutdown`
/// completes, then lets the requests under way finish. HTTP/1.1 only: that is
/// what browsers and proxies speak over plain TCP, and it is the protocol whose
/// header reads hyper can time (before a protocol is chosen, nothing would be).
pub async fn serve_http(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    let connections = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = accept(&listener, &permits) => accepted,
            _ = &mut shutdown => break,
        };
        let (stream, permit) = accepted;
        let service = TowerToHyperService::new(app.clone());
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "HTTP connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    connections.shutdown().await;
}

/// The next connection once there is room for it, with its place.
async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> (TcpStream, OwnedSemaphorePermit) {
    let permit = permits
        .clone()
        .acquire_owned()
        .await
        .expect("the semaphore is never closed");
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                // Answers are small: send them at once.
                let _ = stream.set_nodelay(true);
                return (stream, permit);
            }
            // Out of file descriptors, or a connection reset before it was taken:
            // wait a little rather than spin.
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The connections of `listener`, at most `max` open at once, as a stream for
/// tonic; the accepting stops when the stream is dropped.
pub fn capped_incoming(
    listener: TcpListener,
    max: usize,
) -> ReceiverStream<std::io::Result<Capped>> {
    let (tx, rx) = mpsc::channel(1);
    let permits = Arc::new(Semaphore::new(max));
    tokio::spawn(async move {
        loop {
            let (stream, permit) = tokio::select! {
                accepted = accept(&listener, &permits) => accepted,
                _ = tx.closed() => return,
            };
            let capped = Capped {
                stream,
                _permit: permit,
            };
            if tx.send(Ok(capped)).await.is_err() {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}

/// A connection that holds its place under the cap until it is dropped.
pub struct Capped {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl tonic::transport::server::Connected for Capped {
    type ConnectInfo = <TcpStream as tonic::transport::server::Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Capped {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Capped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
