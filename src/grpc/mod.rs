//! The gRPC interface (`order.v1.OrderService` of `proto/order/v1/order.proto`) on
//! `ORDER_GRPC_PORT`, with server reflection and the standard health service.
//! Each call is transcoded to its REST twin and run on the same routes in process
//! ([`orders`]), so no rule exists twice.

mod orders;
mod transcode;

use crate::serving::{capped_incoming, Limits};
use axum::Router;
use orders::Orders;
use proto::order_service_server::OrderServiceServer;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic_health::ServingStatus;
use tower::ServiceExt;

/// The code generated from the proto, and its descriptors.
pub mod proto {
    tonic::include_proto!("order.v1");

    /// The encoded `FileDescriptorSet` of the proto and what it imports.
    pub const DESCRIPTORS: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/order_descriptor.bin"));
}

/// The name health checks ask about.
const SERVICE: &str = "order.v1.OrderService";

/// How often the health service asks the dependencies.
const HEALTH_EVERY: Duration = Duration::from_secs(5);

/// Calls under way at once on one connection.
const CALLS_PER_CONNECTION: usize = 64;

/// How long a connection lives before it is asked to go (clients open another):
/// no client, trickling or not, holds one for ever.
const CONNECTION_AGE: Duration = Duration::from_secs(600);

/// How often a quiet connection is pinged, and how long the answer may take.
const KEEPALIVE: (Duration, Duration) = (Duration::from_secs(30), Duration::from_secs(10));

/// Serves gRPC on `listener` over `routes` (see [`crate::api::routes`]) within
/// `limits` (the connection cap, and the time limit of a call, also after a
/// connection was asked to go) until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    routes: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // v1, and v1alpha for the clients that only know it (older grpcurl).
    let described = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::DESCRIPTORS)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = described().build_v1()?;
    let reflection_alpha = described().build_v1alpha()?;
    let (reporter, health) = tonic_health::server::health_reporter();
    let watch = tokio::spawn(watch_dependencies(reporter, routes.clone()).await);
    let served = tonic::transport::Server::builder()
        .timeout(limits.request)
        .concurrency_limit_per_connection(CALLS_PER_CONNECTION)
        .max_concurrent_streams(CALLS_PER_CONNECTION as u32)
        .http2_keepalive_interval(Some(KEEPALIVE.0))
        .http2_keepalive_timeout(Some(KEEPALIVE.1))
        .max_connection_age(CONNECTION_AGE)
        .max_connection_age_grace(limits.request)
        .add_service(OrderServiceServer::new(Orders::new(routes)))
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(health)
        .serve_with_incoming_shutdown(capped_incoming(listener, limits.max_connections), shutdown)
        .await;
    watch.abort();
    Ok(served?)
}

/// Keeps `order.v1.OrderService`'s health as the REST dependency check says:
/// serving while PostgreSQL, Restate and the downstream services answer. The
/// server as a whole (`""`) is serving while it runs. The first check is made
/// before the server serves.
async fn watch_dependencies(
    reporter: tonic_health::server::HealthReporter,
    routes: Router,
) -> impl Future<Output = ()> {
    reporter
        .set_service_status(SERVICE, dependencies(&routes).await)
        .await;
    async move {
        loop {
            tokio::time::sleep(HEALTH_EVERY).await;
            reporter
                .set_service_status(SERVICE, dependencies(&routes).await)
                .await;
        }
    }
}

async fn dependencies(routes: &Router) -> ServingStatus {
    let check = axum::http::Request::get("/api/v1/orders/health/dependencies")
        .body(axum::body::Body::empty())
        .expect("a valid request");
    match routes.clone().oneshot(check).await {
        Ok(response) if response.status().is_success() => ServingStatus::Serving,
        _ => ServingStatus::NotServing,
    }
}
