//! The flows under load on a fresh stack (one node and one service, or three
//! nodes and two replicas), beside the floor and the direct reference, with the
//! CPU per request of each process and the memory of the service and
//! restate-server.

use crate::load::{closed_loop, open_loop, Figures};
use crate::references::{direct_router, BenchFloor};
use crate::usage::{CpuMeter, Group, PeakRss, PgWork};
use crate::{million, Settings};
use order_service::config::DownstreamAddrs;
use order_service::downstream::Downstream;
use order_service::engine::admin::{served_handlers, Admin};
use order_stack::{Stack, StackOptions};
use restate_sdk::prelude::*;
use serde_json::{json, Value};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

const CONCURRENCY: [usize; 4] = [1, 16, 64, 128];
/// The rate of the latency targets.
const RATE: u32 = 100;

/// Starts the stack, runs every scenario, prints the figures and stops it.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let options = StackOptions::new("bench", settings.topology);
    let stack = Stack::start(&settings.database_url, &options).await?;
    let outcome = Bench::new(&stack, &settings).await;
    let outcome = match outcome {
        Ok(bench) => bench.scenarios(&stack, &settings).await,
        Err(e) => Err(e),
    };
    stack.stop(false).await;
    outcome
}

struct Bench {
    http: reqwest::Client,
    /// Each replica's `.../api/v1`; requests go round the replicas.
    apis: Arc<Vec<String>>,
    floor_urls: Arc<Vec<String>>,
    direct_url: String,
    /// The processes measured: the service, restate-server, PostgreSQL and this one
    /// (the simulator, the references and the load).
    groups: Vec<(&'static str, Group)>,
    /// The processes whose memory is printed: restate-server's and the service's.
    watched: [(&'static str, Vec<u32>); 2],
    memory: Arc<Mutex<PeakRss>>,
}

impl Bench {
    async fn new(stack: &Stack, settings: &Settings) -> anyhow::Result<Bench> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .tcp_nodelay(true)
            .build()?;
        let sim = stack.sim.base_url();

        // The engine floor: a bare Restate service with five journaled calls.
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let floor = BenchFloor {
            http: http.clone(),
            url: format!("{sim}/v1/notifications"),
        };
        tokio::spawn(order_service::engine::endpoint::serve(
            listener,
            Endpoint::builder().bind(floor).build(),
            std::future::pending(),
        ));
        Admin::new(&stack.admin_urls())
            .register_deployment(
                &url,
                &served_handlers(&url).await?,
                false,
                Duration::from_secs(60),
            )
            .await?;

        // The direct reference: the create's downstream calls from a plain handler.
        let addrs = DownstreamAddrs {
            warehouse: Some(sim.clone()),
            payment: Some(sim.clone()),
            fulfillment: Some(sim.clone()),
            notification: Some(sim.clone()),
            pubsub: Some(sim.clone()),
        };
        let downstream = Downstream::new(&addrs, "orders", Duration::from_secs(5))?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let direct_url = format!("http://{}/direct", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, direct_router(downstream)).await });

        let nodes: Vec<u32> = stack.nodes.iter().filter_map(|n| n.pid()).collect();
        let watched = [("restate-server", nodes), ("service", stack.service_pids())];
        let mut groups: Vec<_> = watched
            .iter()
            .map(|(name, pids)| (*name, Group::Pids(pids.clone())))
            .collect();
        groups.push(("postgres", Group::Command("postgres")));
        groups.push(("bench+sim", Group::Pids(vec![std::process::id()])));
        let memory = Arc::new(Mutex::new(PeakRss::default()));
        {
            let (memory, pids) = (
                memory.clone(),
                watched
                    .iter()
                    .flat_map(|(_, p)| p.clone())
                    .collect::<Vec<u32>>(),
            );
            tokio::spawn(async move {
                loop {
                    memory.lock().expect("memory").sample(&pids);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
        println!(
            "order-service bench: {:?}, {}s per run, every process on this machine ({} cores)",
            settings.topology,
            settings.duration.as_secs(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
        );
        Ok(Bench {
            http,
            apis: Arc::new(stack.apis.clone()),
            floor_urls: Arc::new(
                stack
                    .ingress_urls()
                    .iter()
                    .map(|u| format!("{u}/BenchFloor/run"))
                    .collect(),
            ),
            direct_url,
            groups,
            watched,
            memory,
        })
    }

    async fn scenarios(self, stack: &Stack, settings: &Settings) -> anyhow::Result<()> {
        let d = settings.duration;
        let count = RATE as usize * d.as_secs() as usize;
        header();
        let _ = closed_loop(8, Duration::from_secs(2), self.create()).await; // warm-up
                                                                             // The latency targets first, on an engine not yet busy compacting the
                                                                             // throughput runs.
        row(
            "create-order  open loop 100/s",
            &open_loop(RATE, d, self.create()).await,
        );
        let drafts = self.create_orders(count, false).await?;
        let pay = self.on_each(drafts, "payments", json!({"method": "pm_card_visa"}), false);
        row(
            "pay a draft  open loop 100/s",
            &open_loop(RATE, d, pay).await,
        );
        for (name, action, body) in [
            (
                "status change  open loop 100/s",
                "status",
                json!({"status": "processing"}),
            ),
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
        ] {
            let ids = self.create_orders(count, true).await?;
            let call = self.on_each(ids, action, body, action == "status");
            row(name, &open_loop(RATE, d, call).await);
        }
        let one_unit = json!({"items": [{"item_id": 1, "quantity": 1}], "reason": "bench"});
        let delivered = self.deliver(self.create_orders(count, true).await?).await?;
        let received = self.receivable(delivered, "returns", &one_unit).await?;
        let receive = self.on_each(received, "receive", json!({}), false);
        row(
            "return received  open loop 100/s",
            &open_loop(RATE, d, receive).await,
        );
        let delivered = self.deliver(self.create_orders(count, true).await?).await?;
        let refund = self.on_each(delivered, "refund-items", one_unit, false);
        row(
            "refund-items  open loop 100/s",
            &open_loop(RATE, d, refund).await,
        );

        // Changes after checkout: a quote (holding the added unit), and a change
        // applied at once (reserve, charge, commit, parcel update), each on a
        // confirmed order of its own at version 2.
        let one_more = json!({"operations": [{"op": "set_quantity", "item_id": 1, "quantity": 3}]});
        let ids = self.create_orders(count, true).await?;
        let quote = self.on_each_created(ids, "change-quotes", one_more.clone(), None);
        row(
            "change quote  open loop 100/s",
            &open_loop(RATE, d, quote).await,
        );
        let ids = self.create_orders(count, true).await?;
        let change = self.on_each_created(ids, "changes", one_more, Some("\"2\""));
        row(
            "change applied  open loop 100/s",
            &open_loop(RATE, d, change).await,
        );

        // An exchange of one mug for a dearer one: restock, reserve, charge the
        // difference, commit, ship the new item. After the changes: the relay
        // still sends its events and notifications for a while.
        let dearer = json!({
            "return_items": [{"item_id": 1, "quantity": 1}],
            "new_items": [{"product_id": uuid::Uuid::nil(), "product_sku": "SKU-BENCH-3",
                "product_name": "Mug, large", "warehouse_id": uuid::Uuid::nil(),
                "quantity": 1, "unit_price": "17.50"}],
        });
        let delivered = self.deliver(self.create_orders(count, true).await?).await?;
        let exchanges = self.receivable(delivered, "exchanges", &dearer).await?;
        let receive = self.on_each(exchanges, "receive", json!({}), false);
        row(
            "exchange received  open loop 100/s",
            &open_loop(RATE, d, receive).await,
        );
        // Reads before the throughput runs, whose compactions would go on under them.
        let ids = self.create_orders(200, true).await?;
        let get = self.get(ids.into_iter().map(|id| format!("orders/{id}")).collect());
        row("get-order  c=64", &closed_loop(64, d, get.clone()).await);
        row(
            "get-order  open loop 5000/s",
            &open_loop(5000, d, get).await,
        );

        // Throughput, with the CPU each process spends per request.
        let mut usage = Vec::new();
        let mut at = |name: String, figures: Figures, meter: CpuMeter| {
            row(&name, &figures);
            usage.push((name, figures.per_second * d.as_secs_f64(), meter.spent()));
            figures
        };
        let mut create_at = Vec::new();
        let mut pg_work = Vec::new();
        for c in CONCURRENCY {
            let (meter, pg) = (
                CpuMeter::start(&self.groups),
                PgWork::read(&stack.db).await?,
            );
            let f = closed_loop(c, d, self.create()).await;
            // PostgreSQL publishes what its backends did within a second.
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let creates = f.per_second * d.as_secs_f64();
            pg_work.push((c, creates, PgWork::read(&stack.db).await?.since(pg)));
            create_at.push(at(format!("create-order  c={c}"), f, meter));
        }
        let rss_create = self.memory_now();
        let mut floor_at = Vec::new();
        for c in CONCURRENCY {
            let meter = CpuMeter::start(&self.groups);
            let f = closed_loop(c, d, self.floor()).await;
            floor_at.push(at(format!("floor: 5 journaled steps  c={c}"), f, meter));
        }
        let mut direct_at = Vec::new();
        for c in CONCURRENCY {
            let meter = CpuMeter::start(&self.groups);
            let f = closed_loop(c, d, self.direct()).await;
            direct_at.push(at(format!("direct: no journal  c={c}"), f, meter));
        }

        if settings.list_orders > 0 {
            let customers = million::fill(
                &stack.db,
                &self.apis[0],
                &self.http,
                settings.list_orders,
                order_body(true),
            )
            .await?;
            let paths = customers
                .iter()
                .map(|c| format!("orders?customer_id={c}&limit=20"))
                .collect();
            let list = self.get(paths);
            let name = format!(
                "list by customer ({}k orders) open loop 1000/s",
                settings.list_orders / 1000
            );
            row(&name, &open_loop(1000, d, list.clone()).await);
            row("list by customer  c=16", &closed_loop(16, d, list).await);
        }

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

        println!("\nCPU per request, ms (user + system, all threads of each process)");
        print!("{:<34}", "run");
        for (name, _) in &self.groups {
            print!(" {name:>14}");
        }
        println!(" {:>10}", "total");
        for (name, requests, spent) in usage {
            print!("{name:<34}");
            let per = |t: Duration| ms(t) / requests.max(1.0);
            for (_, t) in &spent {
                print!(" {:>14.2}", per(*t));
            }
            println!(" {:>10.2}", per(spent.iter().map(|(_, t)| *t).sum()));
        }

        println!("\nPostgreSQL per create (commits in the bench's database; the server's write-ahead log)");
        println!(
            "{:<34} {:>10} {:>12} {:>10} {:>12}",
            "run", "commits", "WAL records", "WAL KB", "WAL flushes"
        );
        for (c, creates, work) in pg_work {
            let per = |n: i64| n as f64 / creates.max(1.0);
            println!(
                "{:<34} {:>10.2} {:>12.1} {:>10.1} {:>12.2}",
                format!("create-order  c={c}"),
                per(work.commits),
                per(work.wal_records),
                per(work.wal_bytes) / 1024.0,
                per(work.wal_flushes)
            );
        }

        let peak = self.memory.lock().expect("memory");
        let mb = |b: u64| b as f64 / 1_048_576.0;
        println!(
            "\nmemory (resident), MB: after the create runs / highest seen in the whole bench"
        );
        for (i, (name, pids)) in self.watched.iter().enumerate() {
            println!(
                "{name:<16} {:>8.0} / {:>8.0}   (largest of {} process(es); targets: service 150, restate-server 1024)",
                mb(rss_create[i]),
                mb(peak.max_of(pids)),
                pids.len()
            );
        }
        Ok(())
    }

    /// The largest resident memory now of the service's and restate-server's
    /// processes.
    fn memory_now(&self) -> [u64; 2] {
        self.watched.each_ref().map(|(_, pids)| {
            pids.iter()
                .filter_map(|&pid| crate::usage::rss(pid))
                .max()
                .unwrap_or_default()
        })
    }

    fn api(&self, n: u64) -> &str {
        &self.apis[n as usize % self.apis.len()]
    }

    /// `POST /orders`, a paid order: every step of the create saga runs.
    fn create(&self) -> impl Fn(u64) -> BoxedCall + Send + Sync + Clone + 'static {
        let (http, apis, body) = (
            self.http.clone(),
            self.apis.clone(),
            Arc::new(order_body(true)),
        );
        move |n| {
            let url = format!("{}/orders", apis[n as usize % apis.len()]);
            let request = http.post(url).json(&*body);
            Box::pin(async move { matches!(request.send().await, Ok(r) if r.status() == 201) })
        }
    }

    fn floor(&self) -> impl Fn(u64) -> BoxedCall + Send + Sync + Clone + 'static {
        let (http, urls) = (self.http.clone(), self.floor_urls.clone());
        move |n| {
            let request = http.post(&urls[n as usize % urls.len()]);
            Box::pin(
                async move { matches!(request.send().await, Ok(r) if r.status().is_success()) },
            )
        }
    }

    fn direct(&self) -> impl Fn(u64) -> BoxedCall + Send + Sync + Clone + 'static {
        let (http, url) = (self.http.clone(), self.direct_url.clone());
        move |_| {
            let request = http.post(&url);
            Box::pin(async move { matches!(request.send().await, Ok(r) if r.status() == 201) })
        }
    }

    /// `GET` of each path in turn, expecting 200.
    fn get(&self, paths: Vec<String>) -> impl Fn(u64) -> BoxedCall + Send + Sync + Clone + 'static {
        let (http, apis, paths) = (self.http.clone(), self.apis.clone(), Arc::new(paths));
        move |n| {
            let api = &apis[n as usize % apis.len()];
            let request = http.get(format!("{api}/{}", paths[n as usize % paths.len()]));
            Box::pin(async move { matches!(request.send().await, Ok(r) if r.status() == 200) })
        }
    }

    /// The command `action` once on each of `targets` (`{order id}` or
    /// `{order id}/returns/{return id}`), expecting 200.
    fn on_each(
        &self,
        targets: Vec<String>,
        action: &'static str,
        body: Value,
        put: bool,
    ) -> impl Fn(u64) -> BoxedCall + Send + Sync + Clone + 'static {
        let (http, apis) = (self.http.clone(), self.apis.clone());
        let (targets, body) = (Arc::new(targets), Arc::new(body));
        move |n| {
            let api = &apis[n as usize % apis.len()];
            let url = format!(
                "{api}/orders/{}/{action}",
                targets[n as usize % targets.len()]
            );
            let request = match put {
                true => http.put(url),
                false => http.post(url),
            };
            let request = request.json(&*body);
            Box::pin(async move { matches!(request.send().await, Ok(r) if r.status() == 200) })
        }
    }

    /// Like [`Bench::on_each`], for calls that answer `201` (a quote, a change),
    /// with `If-Match` when given.
    fn on_each_created(
        &self,
        targets: Vec<String>,
        action: &'static str,
        body: Value,
        if_match: Option<&'static str>,
    ) -> impl Fn(u64) -> BoxedCall + Send + Sync + Clone + 'static {
        let (http, apis) = (self.http.clone(), self.apis.clone());
        let (targets, body) = (Arc::new(targets), Arc::new(body));
        move |n| {
            let api = &apis[n as usize % apis.len()];
            let url = format!(
                "{api}/orders/{}/{action}",
                targets[n as usize % targets.len()]
            );
            let mut request = http.post(url).json(&*body);
            if let Some(version) = if_match {
                request = request.header("if-match", version);
            }
            Box::pin(async move { matches!(request.send().await, Ok(r) if r.status() == 201) })
        }
    }

    /// Creates `count` orders, confirmed when `paid`, drafts otherwise, 32 at a
    /// time; their ids.
    async fn create_orders(&self, count: usize, paid: bool) -> anyhow::Result<Vec<String>> {
        let body = Arc::new(order_body(paid));
        let ids = (0..count).map(|n| n.to_string()).collect();
        self.in_batches(ids, move |http, api, _| {
            let body = body.clone();
            async move {
                let order: Value = http
                    .post(format!("{api}/orders"))
                    .json(&*body)
                    .send()
                    .await?
                    .json()
                    .await?;
                let id = order["id"].as_str().unwrap_or_default().to_owned();
                anyhow::ensure!(!id.is_empty(), "an order was not created: {order}");
                Ok(id)
            }
        })
        .await
    }

    /// Moves each order of `ids` to `delivered`.
    async fn deliver(&self, ids: Vec<String>) -> anyhow::Result<Vec<String>> {
        self.in_batches(ids, |http, api, id| async move {
            for status in ["processing", "shipped", "delivered"] {
                let r = http
                    .put(format!("{api}/orders/{id}/status"))
                    .json(&json!({ "status": status }))
                    .send()
                    .await?;
                anyhow::ensure!(r.status() == 200, "moving to {status}: {}", r.status());
            }
            Ok(id)
        })
        .await
    }

    /// Asks for a return (or an exchange, `kind`) of `body` on each delivered
    /// order; `{id}/{kind}/{its id}`.
    async fn receivable(
        &self,
        ids: Vec<String>,
        kind: &'static str,
        body: &Value,
    ) -> anyhow::Result<Vec<String>> {
        let body = Arc::new(body.clone());
        let field = format!("{}_id", kind.trim_end_matches('s'));
        self.in_batches(ids, move |http, api, id| {
            let (body, field) = (body.clone(), field.clone());
            async move {
                let url = format!("{api}/orders/{id}/{kind}");
                let r: Value = http.post(url).json(&*body).send().await?.json().await?;
                let made = r[&field].as_str().unwrap_or_default().to_owned();
                anyhow::ensure!(!made.is_empty(), "no {field} was made: {r}");
                Ok(format!("{id}/{kind}/{made}"))
            }
        })
        .await
    }

    /// Runs `step` for each of `items`, 32 at a time, round the replicas; what each
    /// gave, in no particular order.
    async fn in_batches<T, F, Fut>(&self, items: Vec<String>, step: F) -> anyhow::Result<Vec<T>>
    where
        T: Send + 'static,
        F: Fn(reqwest::Client, String, String) -> Fut,
        Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
    {
        let mut out = Vec::with_capacity(items.len());
        for (c, chunk) in items.chunks(32).enumerate() {
            let mut batch = tokio::task::JoinSet::new();
            for (i, item) in chunk.iter().enumerate() {
                let api = self.api((c * 32 + i) as u64).to_owned();
                batch.spawn(step(self.http.clone(), api, item.clone()));
            }
            while let Some(done) = batch.join_next().await {
                out.push(done??);
            }
        }
        Ok(out)
    }
}

type BoxedCall = std::pin::Pin<Box<dyn Future<Output = bool> + Send>>;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn header() {
    println!(
        "{:<44} {:>11} {:>8} {:>9} {:>9} {:>9}",
        "scenario", "requests/s", "errors", "p50 ms", "p95 ms", "p99 ms"
    );
}

fn row(name: &str, f: &Figures) {
    println!(
        "{name:<44} {:>11.1} {:>8} {:>9.2} {:>9.2} {:>9.2}",
        f.per_second,
        f.errors,
        ms(f.p50),
        ms(f.p95),
        ms(f.p99)
    );
}

/// An order of two lines, paid or a draft: with a payment every step of the create
/// saga runs.
pub fn order_body(paid: bool) -> Value {
    let mut body = json!({
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
        "shipping_address": {"city": "Springfield"}
    });
    if paid {
        body["payment"] = json!({"method": "pm_card_visa"});
    }
    body
}
