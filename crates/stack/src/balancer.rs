//! A TCP balancer for several service replicas (`cluster`, and the stack of the
//! chaos run and the benchmark): one address for the Restate deployment, in front of
//! the replicas' endpoints, as a load balancer or a Kubernetes service is in
//! production.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A balancer running in this process until [`Balancer::stop`].
pub struct Balancer {
    /// The deployment URL: `http://127.0.0.1:PORT`.
    pub url: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Balancer {
    /// Balances the connections accepted on `listener` over `backends`.
    pub fn start(listener: TcpListener, backends: Vec<SocketAddr>) -> std::io::Result<Balancer> {
        let url = format!("http://127.0.0.1:{}", listener.local_addr()?.port());
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(balance(listener, backends, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        Ok(Balancer { url, stop, task })
    }

    /// Stops accepting connections (those under way go on until they close).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Hands each connection accepted on `listener` to the next of `backends` (in turn)
/// that takes it, until `shutdown` completes.
pub async fn balance(
    listener: TcpListener,
    backends: Vec<SocketAddr>,
    shutdown: impl Future<Output = ()>,
) {
    let backends: Arc<[SocketAddr]> = backends.into();
    let turn = Arc::new(AtomicUsize::new(0));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (mut inbound, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "balancer: accept failed");
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let (backends, turn) = (backends.clone(), turn.clone());
        tokio::spawn(async move {
            let _ = inbound.set_nodelay(true);
            let first = turn.fetch_add(1, Ordering::Relaxed);
            for i in 0..backends.len() {
                let backend = backends[(first + i) % backends.len()];
                match TcpStream::connect(backend).await {
                    Ok(mut outbound) => {
                        let _ = outbound.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(%backend, error = %e, "balancer: replica not taking connections")
                    }
                }
            }
            tracing::warn!(%remote, "balancer: no replica takes connections");
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A backend that answers every connection with its `name`.
    async fn backend(name: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let _ = s.write_all(name).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn connections_go_in_turn_to_the_backends_that_take_them() {
        let a = backend(b"a").await;
        let b = backend(b"b").await;
        let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = gone.local_addr().unwrap();
        drop(gone);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = listener.local_addr().unwrap();
        tokio::spawn(balance(listener, vec![a, dead, b], std::future::pending()));

        let mut seen = Vec::new();
        for _ in 0..3 {
            let mut s = TcpStream::connect(front).await.unwrap();
            let mut name = [0u8; 1];
            s.read_exact(&mut name).await.unwrap();
            seen.push(name[0]);
        }
        // The dead one's turn goes to the next.
        assert_eq!(seen, b"abb");
    }
}
