//! `order-stack cluster`: the topology of production on one machine. Three
//! restate-server nodes form one cluster (replicated log and Raft metadata on every
//! node, each partition and log record on two), and two replicas of the service
//! stand behind it: each lists all three ingress and admin URLs, in a different
//! order, and both serve one registered deployment through a TCP balancer. A private
//! PostgreSQL and the simulator come from `dev` ([`DevStack`]).

use crate::balancer::Balancer;
use crate::dev::{describe, restart, with_local_secrets, DevStack, Watched};
use crate::process::{check_ports_free, free_port, PortUse};
use crate::restate_server::{self, RestateCluster, RestateServer, NODES, REPLICATION};
use crate::service::{replica_backends, REPLICAS};
use order_service::config::Config;
use order_service::engine::secrets::RequestIdentity;
use order_service::startup::{listen, stop_signal, RunningService};
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::task::Poll;

/// Where the parts of the cluster listen.
struct Plan {
    /// Per node: ingress, admin and node (fabric) port.
    nodes: Vec<(u16, u16, u16)>,
    /// Per replica: HTTP and gRPC port, and its own endpoint port.
    replicas: Vec<(u16, u16, u16)>,
    /// The one deployment URL's port, in front of the replicas' endpoints.
    deployment_port: u16,
}

/// `cluster`: starts everything, prints `ready <replica 1 URL> <replica 2 URL>`, and
/// stops all of it (replicas, nodes, simulator, PostgreSQL) on Ctrl-C or SIGTERM. A
/// node that dies is started again, as `dev` does.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let config = Config {
        bind_host: Some(config.bind_host_or("127.0.0.1").to_owned()),
        restate_force_register: Some(config.restate_force_register.unwrap_or(true)),
        data_dir: config.data_dir.join("cluster"),
        ..config
    };
    let config = with_local_secrets(config)?;
    let stop = stop_signal();
    tokio::pin!(stop);
    let mut parts = Parts::default();
    let started = tokio::select! {
        started = parts.start(&config) => Some(started),
        _ = &mut stop => None,
    };
    let outcome = match started {
        Some(Ok(())) => {
            let urls: Vec<String> = parts.replicas.iter().map(|r| r.local_url()).collect();
            println!("ready {}", urls.join(" "));
            let _ = std::io::stdout().flush();
            parts.watch(stop).await
        }
        Some(Err(e)) => Err(e),
        None => Ok(()),
    };
    tracing::info!("stopping");
    parts.stop().await;
    outcome
}

/// Ports of node `i` (from 0) and of replica `i`: the configured port plus `i`, or
/// free ones when the configured port is 0.
fn plan(config: &Config) -> anyhow::Result<Plan> {
    let port = |base: u16, i: usize| -> anyhow::Result<u16> {
        if base == 0 {
            return Ok(free_port()?);
        }
        base.checked_add(i as u16)
            .ok_or_else(|| anyhow::anyhow!("port {base} + {i} is past 65535"))
    };
    let nodes = (0..NODES)
        .map(|i| {
            Ok((
                port(config.restate_ingress_port, i)?,
                port(config.restate_admin_port, i)?,
                port(config.restate_node_port, i)?,
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    let replicas = (0..REPLICAS)
        .map(|i| {
            Ok((
                port(config.http_port, i)?,
                port(config.grpc_port, i)?,
                free_port()?,
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Plan {
        nodes,
        replicas,
        deployment_port: port(config.restate_endpoint_port, 0)?,
    })
}

/// What the command started.
#[derive(Default)]
struct Parts {
    nodes: Vec<Watched<RestateServer>>,
    stack: DevStack,
    replicas: Vec<RunningService>,
    balancer: Option<Balancer>,
}

impl Parts {
    async fn start(&mut self, config: &Config) -> anyhow::Result<()> {
        let own_nodes =
            config.restate_ingress_urls.is_none() || config.restate_admin_urls.is_none();
        let plan = plan(config)?;
        let host = config.bind_host_or("127.0.0.1");
        let mut ports: Vec<PortUse> = Vec::new();
        if own_nodes {
            for &(ingress, admin, node) in &plan.nodes {
                ports.push(PortUse::set_by(
                    "ORDER_RESTATE_INGRESS_PORT",
                    "127.0.0.1",
                    ingress,
                ));
                ports.push(PortUse::set_by(
                    "ORDER_RESTATE_ADMIN_PORT",
                    "127.0.0.1",
                    admin,
                ));
                ports.push(PortUse::set_by(
                    "ORDER_RESTATE_NODE_PORT",
                    "127.0.0.1",
                    node,
                ));
            }
        }
        for &(http, grpc, _) in &plan.replicas {
            ports.push(PortUse::set_by("ORDER_HTTP_PORT", host, http));
            ports.push(PortUse::set_by("ORDER_GRPC_PORT", host, grpc));
        }
        ports.push(PortUse::set_by(
            "ORDER_RESTATE_ENDPOINT_PORT",
            host,
            plan.deployment_port,
        ));
        check_ports_free(&ports)?;

        let (ingress_urls, admin_urls) = if own_nodes {
            let bin = restate_server::find_binary(config.restate_server_bin.as_deref())?;
            std::fs::create_dir_all(&config.data_dir)?;
            let base_dir = std::path::absolute(&config.data_dir)?;
            let identity = RequestIdentity::in_dir(&config.data_dir)?;
            let settings = RestateCluster::settings(
                &bin,
                &base_dir,
                "order-service",
                &plan.nodes,
                REPLICATION,
                Some(&identity.private_key_file),
            );
            tracing::info!(nodes = NODES, "starting the restate cluster");
            let cluster = RestateCluster::start(&settings).await?;
            let urls = (cluster.ingress_urls(), cluster.admin_urls());
            for node in &cluster.nodes {
                tracing::info!(
                    ingress = %node.ingress_url,
                    admin = %node.admin_url,
                    pid = node.pid().unwrap_or_default(),
                    log = %node.log_path().display(),
                    "restate node up"
                );
            }
            self.nodes = cluster.nodes.into_iter().map(Watched::new).collect();
            urls
        } else {
            (
                config.restate_ingress_urls.clone().unwrap_or_default(),
                config.restate_admin_urls.clone().unwrap_or_default(),
            )
        };

        // PostgreSQL and the simulator as `dev` makes them; its port checks cover
        // replica 1's ports again, which are still free.
        let (http, grpc, _) = plan.replicas[0];
        let backends = self
            .stack
            .start(&Config {
                restate_ingress_urls: Some(ingress_urls.clone()),
                restate_admin_urls: Some(admin_urls.clone()),
                http_port: http,
                grpc_port: grpc,
                restate_endpoint_port: 0,
                ..config.clone()
            })
            .await?;

        let deployment = listen(host, plan.deployment_port).await?;
        let endpoints = plan
            .replicas
            .iter()
            .map(|&(_, _, endpoint)| std::net::SocketAddr::from(([127, 0, 0, 1], endpoint)))
            .collect();
        let balancer = Balancer::start(deployment, endpoints)?;
        let deployment_url = balancer.url.clone();
        self.balancer = Some(balancer);

        for (i, &(http_port, grpc_port, endpoint_port)) in plan.replicas.iter().enumerate() {
            let replica_config = Config {
                http_port,
                grpc_port,
                restate_endpoint_port: endpoint_port,
                restate_endpoint_url: Some(deployment_url.clone()),
                ..config.clone()
            };
            let listed = replica_backends(&backends, i);
            let replica =
                RunningService::start(&replica_config, &listed, crate::faults::from_env()).await?;
            tracing::info!(
                replica = i + 1,
                api = %replica.local_url(),
                grpc = %replica.grpc_addr,
                endpoint = %replica.endpoint_addr,
                deployment = %deployment_url,
                ingress = %listed.ingress_urls.join(","),
                "service replica serving"
            );
            self.replicas.push(replica);
        }
        Ok(())
    }

    /// Waits for a stop signal, starting again any node that dies meanwhile.
    async fn watch(&mut self, mut stop: Pin<&mut impl Future<Output = ()>>) -> anyhow::Result<()> {
        loop {
            let (i, status) = tokio::select! {
                _ = stop.as_mut() => return Ok(()),
                died = next_death(&mut self.nodes) => died,
            };
            tracing::warn!(node = i + 1, "restate node stopped");
            tokio::select! {
                _ = stop.as_mut() => return Ok(()),
                restarted = restart(&mut self.nodes[i], describe(status)) => restarted?,
            }
        }
    }

    /// Stops the replicas, the balancer, the nodes, then the simulator and
    /// PostgreSQL.
    async fn stop(&mut self) {
        for replica in self.replicas.drain(..) {
            replica.stop().await;
        }
        if let Some(balancer) = self.balancer.take() {
            balancer.stop().await;
        }
        let nodes = std::mem::take(&mut self.nodes)
            .into_iter()
            .map(|w| w.engine)
            .collect();
        RestateCluster { nodes }.stop().await;
        self.stack.stop().await;
    }
}

/// The first node to exit, and how; never, when there is none. Cancel safe.
async fn next_death(
    nodes: &mut [Watched<RestateServer>],
) -> (usize, std::io::Result<std::process::ExitStatus>) {
    if nodes.is_empty() {
        return std::future::pending().await;
    }
    let mut exits: Vec<_> = nodes
        .iter_mut()
        .enumerate()
        .map(|(i, w)| Box::pin(async move { (i, w.engine.exited().await) }))
        .collect();
    std::future::poll_fn(|cx| {
        for exit in exits.iter_mut() {
            if let Poll::Ready(died) = exit.as_mut().poll(cx) {
                return Poll::Ready(died);
            }
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_follow_the_configured_ones() {
        let config = Config::from_lookup(|_| None).unwrap();
        let plan = plan(&config).unwrap();
        assert_eq!(
            plan.nodes,
            [(8080, 9070, 5122), (8081, 9071, 5123), (8082, 9072, 5124)]
        );
        assert_eq!(
            plan.replicas
                .iter()
                .map(|&(h, g, _)| (h, g))
                .collect::<Vec<_>>(),
            [(8004, 9004), (8005, 9005)]
        );
        assert_eq!(plan.deployment_port, 9080);
    }
}
