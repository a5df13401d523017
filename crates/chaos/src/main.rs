//! `order-chaos` (`make chaos`): a seeded run of every order flow while the
//! simulator injects faults into about a fifth of the downstream calls, the event
//! bus refuses every publish (`404`) for stretches, and the service and
//! restate-server are killed with SIGKILL and started again. Then
//! everything settles and every invariant is checked order by order
//! ([`checks`]). Prints the figures; exits non-zero on any violation.
//!
//! ```text
//! order-chaos [--seed N] [--orders N] [--minutes M] [--cluster]
//! ```
//!
//! With `--cluster` it runs on three Restate nodes (replication 2) and two service
//! replicas, and kills a node or a replica each time.

mod checks;
mod flows;

use checks::Violations;
use flows::{Client, Expected};
use order_invariants::Checker;
use order_service::engine::admin::Admin;
use order_service::engine::ingress::Ingress;
use order_sim::{DropMode, Fault};
use order_stack::{Stack, StackOptions, Topology};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a downstream call may take before the service gives up on it; the
/// faults' delays go past it.
const DOWNSTREAM_TIMEOUT_MS: u64 = 1000;
/// Drafts left unpaid are cancelled after this many hours (18 s).
const DRAFT_HOURS: &str = "0.005";
/// Returns whose parcel does not come expire after this many days (about 17 s).
const PARCEL_DAYS: &str = "0.0002";

/// Orders in flight at once.
const CONCURRENCY: u64 = 12;
/// Kills per minute of load, on average, and at least this many in a run.
const KILLS_PER_MINUTE: f64 = 3.0;
const KILLS_AT_LEAST: f64 = 6.0;

struct Args {
    seed: u64,
    orders: u64,
    minutes: f64,
    topology: Topology,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        seed: 1,
        orders: 400,
        minutes: 10.0,
        topology: Topology::Single,
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        if flag == "--cluster" {
            args.topology = Topology::Cluster;
            continue;
        }
        let value = given.next().ok_or(format!("{flag} needs a value"))?;
        let bad = || format!("{flag} {value}: not a number");
        match flag.as_str() {
            "--seed" => args.seed = value.parse().map_err(|_| bad())?,
            "--orders" => args.orders = value.parse().map_err(|_| bad())?,
            "--minutes" => args.minutes = value.parse().map_err(|_| bad())?,
            _ => {
                let known = "--seed, --orders, --minutes, --cluster";
                return Err(format!("unknown flag {flag} ({known})"));
            }
        }
    }
    if args.orders == 0 || !args.minutes.is_finite() || args.minutes <= 0.0 {
        return Err("--orders and --minutes must be above 0".into());
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("order-chaos: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("order-chaos: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The whole run; the number of violations.
async fn run(args: Args) -> anyhow::Result<u64> {
    let admin_dsn = std::env::var("CHAOS_DATABASE_URL")
        .or_else(|_| std::env::var("TEST_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    println!(
        "chaos: seed {}, {} orders over {} min, {:?}",
        args.seed, args.orders, args.minutes, args.topology
    );
    let options = StackOptions {
        service_env: [
            (
                "ORDER_DOWNSTREAM_TIMEOUT_MS",
                DOWNSTREAM_TIMEOUT_MS.to_string(),
            ),
            ("ORDER_AUTO_CANCEL_DRAFT_HOURS", DRAFT_HOURS.into()),
            ("ORDER_RETURN_PARCEL_DAYS", PARCEL_DAYS.into()),
            ("ORDER_DB_MAX_CONNECTIONS", "16".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
        ..StackOptions::new("chaos", args.topology)
    };
    let stack = Stack::start(&admin_dsn, &options).await?;
    inject_faults(&stack);
    let sim = stack.sim.sim.clone();
    let started = Instant::now();
    let client = Client::new(&stack.apis, args.seed);
    let period = Duration::from_secs_f64(args.minutes * 60.0);

    let stack = Arc::new(tokio::sync::Mutex::new(stack));
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let kills = Arc::new(Kills::default());
    let kills_wanted = (args.minutes * KILLS_PER_MINUTE).max(KILLS_AT_LEAST);
    let every = period.div_f64(kills_wanted);
    let outages = tokio::spawn(bus_outages(sim, args.seed, done_rx.clone()));
    let killer = tokio::spawn(killer(
        stack.clone(),
        args.seed,
        every,
        kills.clone(),
        done_rx,
    ));
    let lives = load(&client, args.orders, period).await;
    let _ = done_tx.send(true);
    killer.await??;
    let outages = outages.await?;
    let load_took = started.elapsed();

    let stack = Arc::try_unwrap(stack)
        .map_err(|_| anyhow::anyhow!("the stack is still shared"))?
        .into_inner();
    stack.sim.sim.clear_faults();
    let settle_started = Instant::now();
    settle(&stack).await?;
    let ledger = stack.sim.sim.ledger();
    let checker = Checker {
        http: reqwest::Client::new(),
        api: &stack.apis[0],
        ingress: Ingress::new(&stack.ingress_urls(), stack.secrets.internal_key.clone())?,
        ledger: &ledger,
        db: &stack.db,
    };
    let mut violations = Violations::default();
    for life in &lives {
        checks::order(&checker, life, &mut violations).await;
    }

    let tally = &client.tally;
    let mut per_life: BTreeMap<&str, u64> = BTreeMap::new();
    for life in &lives {
        *per_life.entry(life.life).or_default() += 1;
    }
    let faulted = ledger.calls.iter().filter(|c| c.status >= 500).count();
    println!("\n== figures (seed {}, {:?})", args.seed, args.topology);
    println!("orders            {} ({per_life:?})", lives.len());
    println!(
        "orders written    {}",
        lives.iter().filter(|l| l.order_id.is_some()).count()
    );
    println!(
        "changes applied   {}",
        lives
            .iter()
            .filter(|l| l.quantity.iter().any(Option::is_some))
            .count()
    );
    let ended = |of: fn(&Expected) -> &[(uuid::Uuid, &'static str)], end: &str| {
        lives.iter().flat_map(of).filter(|(_, e)| *e == end).count()
    };
    println!(
        "exchanges settled {}",
        ended(|l| l.exchanges.as_slice(), "settled")
    );
    println!(
        "claims resolved   {}",
        ended(|l| l.claims.as_slice(), "resolved")
    );
    println!(
        "requests          {} accepted, {} sent again",
        lives.iter().map(|l| u64::from(l.accepted)).sum::<u64>(),
        tally.resent.load(Ordering::Relaxed)
    );
    println!(
        "kills             {} (service {}, restate-server {})",
        kills.service.load(Ordering::Relaxed) + kills.restate.load(Ordering::Relaxed),
        kills.service.load(Ordering::Relaxed),
        kills.restate.load(Ordering::Relaxed)
    );
    println!(
        "downstream calls  {} ({faulted} answered 5xx; faults: 503, delays past {DOWNSTREAM_TIMEOUT_MS} ms, connections dropped before and after the side effect)",
        ledger.calls.len()
    );
    println!(
        "bus outages       {} stretches of 404 on every publish, {:.0} s in all",
        outages.count,
        outages.total.as_secs_f64()
    );
    println!(
        "time              load {:.0} s, settle {:.0} s",
        load_took.as_secs_f64(),
        settle_started.elapsed().as_secs_f64()
    );
    let mut counts = violations.counts.clone();
    counts.insert(
        "no_500_answers",
        tally.server_errors.load(Ordering::Relaxed),
    );
    counts.insert(
        "every_request_answered",
        tally.unfinished.load(Ordering::Relaxed),
    );
    counts.insert(
        "no_unexpected_refusals",
        tally.unexpected_refusals.load(Ordering::Relaxed),
    );
    println!("\n== invariants (violations)");
    let extra = [
        "no_500_answers",
        "every_request_answered",
        "no_unexpected_refusals",
    ];
    for invariant in checks::invariants().into_iter().chain(extra) {
        println!(
            "{invariant:34} {}",
            counts.get(invariant).copied().unwrap_or(0)
        );
    }
    for example in &violations.examples {
        println!("  {example}");
    }
    let total: u64 = counts.values().sum();
    let keep = total > 0;
    if keep {
        println!("\nlogs kept in {}", stack.dir.display());
    }
    stack.stop(keep).await;
    println!("\n{}", if total == 0 { "PASSED" } else { "FAILED" });
    Ok(total)
}

/// About a fifth of all downstream calls fail on their own: `503`, a delay past
/// the service's timeout, or the connection dropped before or after the side
/// effect. Declined cards and missing stock come from the orders themselves.
fn inject_faults(stack: &Stack) {
    for service in [
        "warehouse",
        "payment",
        "fulfillment",
        "notification",
        "pubsub",
    ] {
        let fault = |rate: f64| Fault {
            service: service.into(),
            operation: None,
            status: None,
            delay_ms: None,
            drop: None,
            times: None,
            rate: Some(rate),
        };
        stack.sim.sim.inject(Fault {
            status: Some(503),
            ..fault(0.06)
        });
        stack.sim.sim.inject(Fault {
            delay_ms: Some(DOWNSTREAM_TIMEOUT_MS + 500),
            ..fault(0.04)
        });
        stack.sim.sim.inject(Fault {
            drop: Some(DropMode::Before),
            ..fault(0.05)
        });
        stack.sim.sim.inject(Fault {
            drop: Some(DropMode::After),
            ..fault(0.05)
        });
    }
}

/// The stretches the event bus refused every publish.
#[derive(Default)]
struct Outages {
    count: u32,
    total: Duration,
}

/// Until the load is done, makes the event bus answer `404` to every publish (a
/// Dapr component still loading) for a few seconds at a time, some seconds apart:
/// the relay must keep every event and deliver each order's in order afterwards.
async fn bus_outages(
    sim: order_sim::Simulator,
    seed: u64,
    mut done: tokio::sync::watch::Receiver<bool>,
) -> Outages {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6275_7330);
    let refusing = Fault {
        status: Some(404),
        ..Fault::new("pubsub").on("publish")
    };
    let mut outages = Outages::default();
    loop {
        let (gap, stretch) = (rng.random_range(5.0..15.0), rng.random_range(2.0..8.0));
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(gap)) => {}
            _ = done.wait_for(|d| *d) => return outages,
        }
        sim.inject(refusing.clone());
        let started = Instant::now();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(stretch)) => {}
            _ = done.wait_for(|d| *d) => {}
        }
        sim.remove_fault(&refusing);
        outages.count += 1;
        outages.total += started.elapsed();
    }
}

/// Runs every order's life, [`CONCURRENCY`] at a time, spread over `period`.
async fn load(client: &Client, orders: u64, period: Duration) -> Vec<Expected> {
    let next = Arc::new(AtomicU64::new(0));
    let pace = period
        .mul_f64(0.8)
        .div_f64(orders as f64 / CONCURRENCY as f64);
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (client, next) = (client.clone(), next.clone());
            tokio::spawn(async move {
                let mut lives = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= orders {
                        return lives;
                    }
                    let started = Instant::now();
                    lives.push(client.life(n).await);
                    tokio::time::sleep(pace.saturating_sub(started.elapsed())).await;
                }
            })
        })
        .collect();
    let mut lives = Vec::new();
    for worker in workers {
        lives.extend(worker.await.unwrap_or_default());
    }
    lives
}

#[derive(Default)]
struct Kills {
    service: AtomicU64,
    restate: AtomicU64,
}

/// Kills the service or restate-server at random moments, `every` apart on
/// average, until the load is done, and starts it again after a pause.
async fn killer(
    stack: Arc<tokio::sync::Mutex<Stack>>,
    seed: u64,
    every: Duration,
    kills: Arc<Kills>,
    mut done: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6b69_6c6c);
    let mean = every.as_secs_f64();
    loop {
        let wait = Duration::from_secs_f64(rng.random_range(mean * 0.4..mean * 1.6));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = done.wait_for(|d| *d) => return Ok(()),
        }
        let pause = Duration::from_millis(rng.random_range(300..3000));
        let mut stack = stack.lock().await;
        if rng.random_bool(0.6) {
            let replica = rng.random_range(0..stack.apis.len());
            stack.kill_service(replica).await;
            kills.service.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(pause).await;
            stack.start_service(replica).await?;
        } else {
            // One node at a time: a cluster keeps its quorum.
            let node = rng.random_range(0..stack.nodes.len());
            stack.nodes[node].crash().await;
            kills.restate.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(pause).await;
            stack.nodes[node].restart().await?;
        }
    }
}

/// Waits until no invocation is left but completed ones (timers included: drafts
/// and returns expire within a minute here) and every outbox message is sent.
async fn settle(stack: &Stack) -> anyhow::Result<()> {
    let admin = Admin::new(&stack.admin_urls());
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let open = admin
            .query("SELECT count(*) AS n FROM sys_invocation WHERE status != 'completed'")
            .await
            .ok()
            .and_then(|rows| rows.first().and_then(|r| r["n"].as_i64()))
            .unwrap_or(-1);
        let (unsent,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM outbox WHERE sent_at IS NULL AND refused_at IS NULL",
        )
        .fetch_one(&stack.db)
        .await?;
        if open == 0 && unsent == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "did not settle in 5 min: {open} invocations open, {unsent} outbox messages unsent"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
