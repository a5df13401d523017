//! `order-bench` (`make bench`): create-order, cancel, cancel-items, status change,
//! return received, refund-items and get-order under load on a fresh embedded
//! default, beside the two references that show what durability and the
//! saga cost. Prints figures; asserts nothing.
//!
//! `order-bench analytics` (`make bench-analytics`) times the analytics over a
//! million orders instead; see [`analytics`].

mod analytics;
mod load;
mod references;

use load::{closed_loop, open_loop, Figures};
use order_service::config::Config;
use order_service::dev::DevStack;
use order_service::downstream::Downstream;
use order_service::engine::admin::{served_handlers, Admin};
use order_service::engine::process::free_port;
use order_service::startup::{Backends, RunningService};
use order_service::telemetry;
use references::{direct_router, BenchFloor};
use restate_sdk::prelude::*;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

const CONCURRENCY: [usize; 4] = [1, 16, 64, 128];

#[tokio::main]
async fn main() -> ExitCode {
    telemetry::init("info,restate_sdk=warn,sqlx=warn");
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("order-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = match std::env::args().nth(1).as_deref() {
        None => run(config).await,
        Some("analytics") => analytics::run(config).await,
        Some(other) => {
            eprintln!("order-bench: unknown command {other:?} (none, or `analytics`)");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("order-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every scenario and prints the figures. `BENCH_SECONDS` sets the length of
/// each run (default 8).
async fn run(config: Config) -> anyhow::Result<()> {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let duration = Duration::from_secs(seconds);
    let dir = std::env::temp_dir().join(format!("order-bench-{}", uuid::Uuid::new_v4().simple()));
    let config = Config {
        data_dir: dir.clone(),
        http_port: free_port()?,
        grpc_port: free_port()?,
        restate_endpoint_port: free_port()?,
        restate_ingress_port: free_port()?,
        restate_admin_port: free_port()?,
        restate_node_port: free_port()?,
        sim_port: free_port()?,
        bind_host: Some("127.0.0.1".into()),
        ..config
    };
    let mut stack = DevStack::default();
    let outcome = async {
        let backends = stack.start(&config).await?;
        let service = RunningService::start(&config, &backends).await?;
        let result = scenarios(&config, &backends, &service, duration).await;
        service.stop().await;
        result
    }
    .await;
    stack.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

async fn scenarios(
    config: &Config,
    backends: &Backends,
    service: &RunningService,
    duration: Duration,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .tcp_nodelay(true)
        .build()?;
    let sim_url = backends.downstream.notification.clone().unwrap_or_default();

    // The engine floor: a bare Restate service with five journaled calls.
    let floor_listener = TcpListener::bind("127.0.0.1:0").await?;
    let floor_port = floor_listener.local_addr()?.port();
    let floor = BenchFloor {
        http: http.clone(),
        url: format!("{sim_url}/v1/notifications"),
    };
    tokio::spawn(order_service::engine::endpoint::serve(
        floor_listener,
        Endpoint::builder().bind(floor).build(),
        std::future::pending(),
    ));
    let floor_url = format!("http://127.0.0.1:{floor_port}");
    Admin::new(&backends.admin_urls)
        .register_deployment(
            &floor_url,
            &served_handlers(&floor_url).await?,
            false,
            Duration::from_secs(30),
        )
        .await?;

    // The direct reference: the same downstream calls from a plain handler.
    let downstream = Downstream::new(
        &backends.downstream,
        &config.pubsub_name,
        config.downstream_timeout,
    )?;
    let direct_listener = TcpListener::bind("127.0.0.1:0").await?;
    let direct_url = format!("http://{}/direct", direct_listener.local_addr()?);
    tokio::spawn(async move { axum::serve(direct_listener, direct_router(downstream)).await });

    let api = format!("{}/api/v1", service.local_url());
    let body = Arc::new(order_body());
    let create = {
        let (http, url, body) = (http.clone(), format!("{api}/orders"), body.clone());
        move |_| {
            let (http, url, body) = (http.clone(), url.clone(), body.clone());
            async move { matches!(http.post(url).json(&*body).send().await, Ok(r) if r.status() == 201) }
        }
    };
    let floor_call = {
        let (http, url) = (
            http.clone(),
            format!("{}/BenchFloor/run", backends.ingress_urls[0]),
        );
        move |_| {
            let (http, url) = (http.clone(), url.clone());
            async move { matches!(http.post(url).send().await, Ok(r) if r.status().is_success()) }
        }
    };
    let direct_call = {
        let http = http.clone();
        move |_| {
            let (http, url) = (http.clone(), direct_url.clone());
            async move { matches!(http.post(url).send().await, Ok(r) if r.status() == 201) }
        }
    };

    println!(
        "order-service bench: {}s per run, all processes on this machine",
        duration.as_secs()
    );
    println!(
        "{:<34} {:>11} {:>8} {:>9} {:>9} {:>9}",
        "scenario", "requests/s", "errors", "p50 ms", "p95 ms", "p99 ms"
    );
    let _ = closed_loop(8, Duration::from_secs(2), create.clone()).await; // warm-up
                                                                          // The latency target is measured first, on an engine not yet busy compacting
                                                                          // the runs below.
    print_row(
        "create-order  open loop 100/s",
        &open_loop(100, duration, create.clone()).await,
    );
    commands_on_confirmed_orders(&http, &api, duration).await?;
    refunds_on_delivered_orders(&http, &api, duration).await?;
    let mut create_at = Vec::new();
    for c in CONCURRENCY {
        let f = closed_loop(c, duration, create.clone()).await;
        print_row(&format!("create-order  c={c}"), &f);
        create_at.push(f);
    }
    let mut floor_at = Vec::new();
    for c in CONCURRENCY {
        let f = closed_loop(c, duration, floor_call.clone()).await;
        print_row(&format!("floor: 5 journaled steps  c={c}"), &f);
        floor_at.push(f);
    }
    let mut direct_at = Vec::new();
    for c in CONCURRENCY {
        let f = closed_loop(c, duration, direct_call.clone()).await;
        print_row(&format!("direct: no journal  c={c}"), &f);
        direct_at.push(f);
    }

    // get-order over the orders created above.
    let ids = order_ids(&http, &api).await?;
    let get = {
        let (http, ids) = (http.clone(), Arc::new(ids));
        move |n: u64| {
            let (http, url) = (
                http.clone(),
                format!("{api}/orders/{}", ids[n as usize % ids.len()]),
            );
            async move { matches!(http.get(url).send().await, Ok(r) if r.status() == 200) }
        }
    };
    print_row(
        "get-order  c=64",
        &closed_loop(64, duration, get.clone()).await,
    );
    print_row(
        "get-order  open loop 5000/s",
        &open_loop(5000, duration, get).await,
    );

    println!();
    for (i, c) in CONCURRENCY.iter().enumerate() {
        let (create, floor, direct) = (&create_at[i], &floor_at[i], &direct_at[i]);
        println!(
            "c={c:<4} create/floor throughput {:.2}   create/direct throughput {:.2}   p50 create-floor {:+.1} ms",
            create.per_second / floor.per_second.max(f64::MIN_POSITIVE),
            create.per_second / direct.per_second.max(f64::MIN_POSITIVE),
            ms(create.p50) - ms(floor.p50),
        );
    }
    Ok(())
}

/// Cancel, cancel-items and a status change at 100/s, each on orders confirmed
/// beforehand, one order per request.
async fn commands_on_confirmed_orders(
    http: &reqwest::Client,
    api: &str,
    duration: Duration,
) -> anyhow::Result<()> {
    let rate = 100;
    let count = rate as usize * duration.as_secs() as usize;
    let scenarios: [(&str, &str, Value); 3] = [
        (
            "cancel  open loop 100/s",
            "cancel",
            json!({"reason": "bench"}),
        ),
        (
            "cancel-items  open loop 100/s",
            "cancel-items",
            json!({"items": [{"item_id": 1, "quantity": 1}], "reason": "bench"}),
        ),
        (
            "status change  open loop 100/s",
            "status",
            json!({"status": "processing"}),
        ),
    ];
    for (name, action, body) in scenarios {
        let ids = Arc::new(create_orders(http, api, count).await?);
        let (http, api, body) = (http.clone(), api.to_owned(), Arc::new(body));
        let call = move |n: u64| {
            let url = format!("{api}/orders/{}/{action}", ids[n as usize % ids.len()]);
            let request = match action {
                "status" => http.put(url),
                _ => http.post(url),
            };
            let body = body.clone();
            async move { matches!(request.json(&*body).send().await, Ok(r) if r.status() == 200) }
        };
        print_row(name, &open_loop(rate, duration, call).await);
    }
    Ok(())
}

/// A return received (restock and refund) and a refund without a return at
/// 100/s, each on orders delivered beforehand.
async fn refunds_on_delivered_orders(
    http: &reqwest::Client,
    api: &str,
    duration: Duration,
) -> anyhow::Result<()> {
    let rate = 100;
    let count = rate as usize * duration.as_secs() as usize;
    let one_unit = json!({"items": [{"item_id": 1, "quantity": 1}], "reason": "bench"});

    let ids = deliver(http, api, create_orders(http, api, count).await?).await?;
    let returns = Arc::new(
        in_batches(
            ids,
            |http, id| {
                let (url, body) = (format!("{api}/orders/{id}/returns"), one_unit.clone());
                async move {
                    let r: Value = http.post(url).json(&body).send().await?.json().await?;
                    let return_id = r["return_id"].as_str().unwrap_or_default().to_owned();
                    anyhow::ensure!(!return_id.is_empty(), "a return was not made: {r}");
                    Ok(format!("{id}/returns/{return_id}/receive"))
                }
            },
            http,
        )
        .await?,
    );
    let receive = {
        let (http, api) = (http.clone(), api.to_owned());
        move |n: u64| {
            let url = format!("{api}/orders/{}", returns[n as usize % returns.len()]);
            let request = http.post(url);
            async move { matches!(request.send().await, Ok(r) if r.status() == 200) }
        }
    };
    print_row(
        "return received  open loop 100/s",
        &open_loop(rate, duration, receive).await,
    );

    let ids = Arc::new(deliver(http, api, create_orders(http, api, count).await?).await?);
    let refund = {
        let (http, api, body) = (http.clone(), api.to_owned(), Arc::new(one_unit));
        move |n: u64| {
            let url = format!("{api}/orders/{}/refund-items", ids[n as usize % ids.len()]);
            let request = http.post(url).json(&*body);
            async move { matches!(request.send().await, Ok(r) if r.status() == 200) }
        }
    };
    print_row(
        "refund-items  open loop 100/s",
        &open_loop(rate, duration, refund).await,
    );
    Ok(())
}

/// Moves each order of `ids` to `delivered`, 32 orders at a time.
async fn deliver(
    http: &reqwest::Client,
    api: &str,
    ids: Vec<String>,
) -> anyhow::Result<Vec<String>> {
    in_batches(
        ids,
        |http, id| {
            let url = format!("{api}/orders/{id}/status");
            async move {
                for status in ["processing", "shipped", "delivered"] {
                    let r = http
                        .put(&url)
                        .json(&json!({ "status": status }))
                        .send()
                        .await?;
                    anyhow::ensure!(r.status() == 200, "moving to {status}: {}", r.status());
                }
                Ok(id)
            }
        },
        http,
    )
    .await
}

/// Runs `step` for each of `items`, 32 at a time, and returns what each gave, in
/// no particular order.
async fn in_batches<T, F, Fut>(
    items: Vec<String>,
    step: F,
    http: &reqwest::Client,
) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(reqwest::Client, String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(32) {
        let mut batch = tokio::task::JoinSet::new();
        for item in chunk {
            batch.spawn(step(http.clone(), item.clone()));
        }
        while let Some(done) = batch.join_next().await {
            out.push(done??);
        }
    }
    Ok(out)
}

/// Creates `count` confirmed orders, 32 at a time, and returns their ids.
async fn create_orders(
    http: &reqwest::Client,
    api: &str,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    let body = Arc::new(order_body());
    let mut ids = Vec::with_capacity(count);
    let mut batch = tokio::task::JoinSet::new();
    while ids.len() < count {
        for _ in 0..32.min(count - ids.len()) {
            let (http, url, body) = (http.clone(), format!("{api}/orders"), body.clone());
            batch.spawn(async move {
                let order: Value = http.post(url).json(&*body).send().await?.json().await?;
                anyhow::Ok(order["id"].as_str().unwrap_or_default().to_owned())
            });
        }
        while let Some(id) = batch.join_next().await {
            let id = id??;
            anyhow::ensure!(!id.is_empty(), "an order was not created");
            ids.push(id);
        }
    }
    Ok(ids)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn print_row(name: &str, f: &Figures) {
    println!(
        "{name:<34} {:>11.1} {:>8} {:>9.2} {:>9.2} {:>9.2}",
        f.per_second,
        f.errors,
        ms(f.p50),
        ms(f.p95),
        ms(f.p99)
    );
}

/// A paid order of two lines: every saga step runs.
fn order_body() -> Value {
    json!({
        "customer_id": null,
        "currency": "USD",
        "items": [
            {"product_id": uuid::Uuid::nil(), "product_sku": "SKU-BENCH-1", "product_name": "Mug",
             "warehouse_id": uuid::Uuid::nil(), "quantity": 2, "unit_price": "12.50",
             "discount_amount": "0.00", "tax_amount": "2.00"},
            {"product_id": uuid::Uuid::nil(), "product_sku": "SKU-BENCH-2", "product_name": "Plate",
             "warehouse_id": uuid::Uuid::nil(), "quantity": 1, "unit_price": "30.00",
             "discount_amount": "3.00", "tax_amount": "2.16"}
        ],
        "shipping_amount": "4.90",
        "shipping_address": {"city": "Springfield"},
        "payment": {"method": "pm_card_visa"}
    })
}

async fn order_ids(http: &reqwest::Client, api: &str) -> anyhow::Result<Vec<String>> {
    let page: Value = http
        .get(format!("{api}/orders?limit=200"))
        .send()
        .await?
        .json()
        .await?;
    let ids: Vec<String> = page["orders"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    anyhow::ensure!(!ids.is_empty(), "no orders to read");
    Ok(ids)
}
