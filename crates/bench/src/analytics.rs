//! `order-bench analytics` (`make bench-analytics`): `GET /orders/analytics` over a
//! million orders. Makes a fresh database on the PostgreSQL server at
//! `BENCH_DATABASE_URL` (default: the tests' server), migrates it as `order-service
//! migrate` does, loads the orders with one `INSERT ... SELECT`, then times the
//! endpoint over HTTP for the default 30-day window and for all 90 days, checks
//! its answers against a scan of `orders`, and drops the database.

use chrono::{DateTime, TimeDelta, Utc};
use order_service::api::{self, ApiSettings, ApiState};
use order_service::caller::CallerKey;
use order_service::config::Config;
use order_service::downstream::Downstream;
use order_service::engine::admin::Admin;
use order_service::engine::ingress::Ingress;
use order_service::read_model;
use order_stack::postgres::{quiet_connection, ServerDatabase};
use serde_json::{json, Value};
use sqlx::{Connection, PgPool, Row};
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

const ORDERS: i64 = 1_000_000;
const DAYS: i64 = 90;
const RUNS: usize = 20;

/// The orders, spread evenly over the 90 days before now: 60 % USD, 30 % EUR,
/// 10 % GBP; totals from 5.00 to 499.99; every status, 40 % delivered; 84 % placed
/// (all but the drafts, the failed and a seventh of the cancelled), the cancelled
/// and refunded placed ones refunded in full, a twentieth of the delivered ones by
/// a third. The per-row counting triggers are off while it runs, as for any bulk
/// load; the daily counts are rebuilt after it.
const GENERATE: &str = "
INSERT INTO orders (id, order_number, status, payment_status, currency, subtotal,
    discount_amount, tax_amount, shipping_amount, total_amount, captured_amount,
    refunded_amount, shipping_address, billing_address, metadata, version, document,
    created_at, updated_at)
SELECT md5('bench' || g)::uuid, 'ORD-BENCH-' || lpad(g::text, 7, '0'), s.status,
       CASE WHEN s.refunded = t.total THEN 'refunded'
            WHEN s.refunded > 0 THEN 'partially_refunded'
            WHEN s.placed THEN 'captured'
            WHEN s.status = 'failed' THEN 'failed' ELSE 'pending' END,
       c.currency, t.total, 0, 0, 0, t.total,
       CASE WHEN s.placed THEN t.total ELSE 0 END, s.refunded,
       '{}', '{}', '{}', 1, '{}', a.at, a.at
FROM generate_series(1::bigint, $1) AS g
CROSS JOIN LATERAL (SELECT (g * 2654435761) % 4294967296 AS h) AS hash
CROSS JOIN LATERAL (SELECT $2::timestamptz - make_interval(days => $3) * (1 - g::float8 / $1) AS at) AS a
CROSS JOIN LATERAL (SELECT (5 + (g * 7919) % 49500 / 100.0)::numeric(19,4) AS total) AS t
CROSS JOIN LATERAL (
    SELECT CASE WHEN hash.h / 100 % 10 < 6 THEN 'USD'
                WHEN hash.h / 100 % 10 < 9 THEN 'EUR' ELSE 'GBP' END AS currency) AS c
CROSS JOIN LATERAL (
    SELECT CASE WHEN p < 5 THEN 'draft' WHEN p < 15 THEN 'confirmed'
                WHEN p < 25 THEN 'processing' WHEN p < 40 THEN 'shipped'
                WHEN p < 80 THEN 'delivered' WHEN p < 87 THEN 'cancelled'
                WHEN p < 90 THEN 'refunded' ELSE 'failed' END AS status,
           p BETWEEN 5 AND 85 OR p BETWEEN 87 AND 89 AS placed,
           CASE WHEN p BETWEEN 80 AND 85 OR p BETWEEN 87 AND 89 THEN t.total
                WHEN p BETWEEN 40 AND 79 AND g % 20 = 0 THEN round(t.total / 3, 2)
                ELSE 0 END AS refunded
    FROM (SELECT hash.h % 100 AS p) AS pick) AS s";

/// The reference: the same groups from the covering index alone, without the
/// daily counts.
const SCAN: &str = "
SELECT status, currency, count(*) AS orders, count(*) FILTER (WHERE captured_amount > 0) AS placed,
       round(coalesce(sum(total_amount) FILTER (WHERE captured_amount > 0), 0), 2)::text AS total,
       round(sum(refunded_amount), 2)::text AS refunded
FROM orders WHERE created_at >= $1 AND created_at < $2
GROUP BY status, currency";

/// Runs the analytics benchmark on a database of its own.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let server = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("order_bench_{}", uuid::Uuid::new_v4().simple());
    let database = ServerDatabase::create(&server, &name).await?;
    let outcome = measure(&config, &database.dsn).await;
    database.drop_database().await?;
    outcome
}

async fn measure(config: &Config, dsn: &str) -> anyhow::Result<()> {
    let db = &read_model::connect(dsn, config.db_max_connections).await?;
    read_model::migrate(db).await?;
    let now = Utc::now();
    generate(dsn, now).await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}/api/v1", listener.local_addr()?);
    let server = tokio::spawn(axum::serve(listener, router(config, db.clone())?).into_future());
    let all_days = format!(
        "?from={}&to={}",
        rfc3339(now - TimeDelta::days(DAYS)),
        rfc3339(now + TimeDelta::seconds(1))
    );
    let windows = [
        ("last 30 days (default)", String::new()),
        ("all 90 days", all_days),
    ];
    println!(
        "{:<44} {:>8} {:>9} {:>9} {:>9}",
        "GET /orders/analytics", "orders", "p50 ms", "p95 ms", "max ms"
    );
    for (label, query) in &windows {
        time_endpoint(db, &format!("{api}/orders/analytics{query}"), label).await?;
    }
    // Today's orders are still being written by their sagas: their newest versions
    // are not yet all-visible, so the last partial day is read from the table too.
    sqlx::query("UPDATE orders SET version = version + 1 WHERE created_at >= $1")
        .bind(now - TimeDelta::days(1))
        .execute(db)
        .await?;
    for (label, query) in &windows {
        let label = format!("{label}, last 24 h rewritten");
        time_endpoint(db, &format!("{api}/orders/analytics{query}"), &label).await?;
    }

    // The reference: the same groups from the covering index alone.
    for (label, days) in [
        ("scan of orders: 30 days", 30),
        ("scan of orders: 90 days", DAYS),
    ] {
        let (from, to) = (now - TimeDelta::days(days), now + TimeDelta::seconds(1));
        let mut latencies = Vec::new();
        for _ in 0..5 {
            let sent = Instant::now();
            sqlx::query(SCAN).bind(from).bind(to).fetch_all(db).await?;
            latencies.push(sent.elapsed());
        }
        print_row(label, "", &latencies);
    }
    println!("every answer checked against a scan of orders: the same counts and sums");
    write_cost(dsn).await?;
    server.abort();
    db.close().await;
    // `close` can return while a connection is still on its way back to the pool:
    // let it come back and close before the database is dropped under it.
    for _ in 0..100 {
        if db.size() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Loads the orders ending at `now` over a connection of its own (that does not log
/// its long statements), then vacuums as autovacuum would soon after.
async fn generate(dsn: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
    let mut db = quiet_connection(dsn).await?;
    let start = Instant::now();
    let mut tx = db.begin().await?;
    sqlx::query("ALTER TABLE orders DISABLE TRIGGER order_daily_stats_insert_delete")
        .execute(&mut *tx)
        .await?;
    sqlx::query(GENERATE)
        .bind(ORDERS)
        .bind(now)
        .bind(DAYS as i32)
        .execute(&mut *tx)
        .await?;
    sqlx::query("ALTER TABLE orders ENABLE TRIGGER order_daily_stats_insert_delete")
        .execute(&mut *tx)
        .await?;
    let inserted = start.elapsed();
    sqlx::query("SELECT order_daily_stats_rebuild()")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let counted = start.elapsed() - inserted;
    // Statistics, and the visibility map that lets the partial days be read from
    // the index alone.
    sqlx::query("VACUUM ANALYZE orders, order_daily_stats")
        .execute(&mut db)
        .await?;
    let daily_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM order_daily_stats")
        .fetch_one(&mut db)
        .await?;
    println!(
        "order-service analytics bench: {ORDERS} orders over {DAYS} days, generated in {:.1} s \
         (insert {:.1} s, daily counts {:.1} s, vacuum {:.1} s); {daily_rows} rows of daily counts",
        start.elapsed().as_secs_f64(),
        inserted.as_secs_f64(),
        counted.as_secs_f64(),
        (start.elapsed() - inserted - counted).as_secs_f64(),
    );
    Ok(db.close().await?)
}

/// What keeping the daily counts costs a write of an order: 5,000 single-row
/// updates in one statement, inside PostgreSQL, each way; rolled back after.
async fn write_cost(dsn: &str) -> anyhow::Result<()> {
    const WRITES: i64 = 5_000;
    let flip = "UPDATE orders SET status = CASE status WHEN 'shipped' THEN 'delivered' \
                ELSE 'shipped' END, version = version + 1";
    let touch = "UPDATE orders SET version = version + 1";
    let cases = [
        ("a status change", flip, true),
        ("a status change, triggers off", flip, false),
        ("a write of no counted column", touch, true),
    ];
    let mut db = quiet_connection(dsn).await?;
    let mut costs = Vec::new();
    for (label, update, triggers) in cases {
        let mut tx = db.begin().await?;
        if !triggers {
            sqlx::query("ALTER TABLE orders DISABLE TRIGGER order_daily_stats_update")
                .execute(&mut *tx)
                .await?;
        }
        let block = format!(
            "DO $$ BEGIN FOR i IN 1..{WRITES} LOOP \
             {update} WHERE id = md5('bench' || i)::uuid; END LOOP; END $$"
        );
        let start = Instant::now();
        sqlx::query(&block).execute(&mut *tx).await?;
        costs.push(format!(
            "{label} {:.3} ms",
            ms(start.elapsed()) / WRITES as f64
        ));
        tx.rollback().await?;
    }
    println!("one order write, in PostgreSQL: {}", costs.join(", "));
    Ok(db.close().await?)
}

/// Times `RUNS` requests of `url` one after the other (after three that warm the
/// connection and the caches), checks the answer and prints a row.
async fn time_endpoint(db: &PgPool, url: &str, label: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let mut latencies = Vec::with_capacity(RUNS);
    let mut answer = Value::Null;
    for run in 0..RUNS + 3 {
        let sent = Instant::now();
        let response = http.get(url).send().await?;
        anyhow::ensure!(response.status() == 200, "{url}: {}", response.status());
        answer = response.json().await?;
        if run >= 3 {
            latencies.push(sent.elapsed());
        }
    }
    check(db, &answer).await?;
    print_row(label, &answer["order_count"].to_string(), &latencies);
    Ok(())
}

fn print_row(label: &str, orders: &str, latencies: &[Duration]) {
    println!(
        "{label:<44} {orders:>8} {:>9.2} {:>9.2} {:>9.2}",
        ms(quantile(latencies, 0.50)),
        ms(quantile(latencies, 0.95)),
        ms(quantile(latencies, 1.0)),
    );
}

/// The service's API router over the database only: the analytics read nothing
/// else, so no Restate and no downstream service stand behind it.
fn router(config: &Config, db: PgPool) -> anyhow::Result<axum::Router> {
    let nowhere = "http://127.0.0.1:9";
    Ok(api::router(ApiState {
        db,
        ingress: Ingress::new(&[nowhere], CallerKey::generate()?.0)?,
        admin: Admin::new(&[nowhere]),
        downstream: Downstream::new(
            &config.downstream.or_all(nowhere),
            &config.pubsub_name,
            config.downstream_timeout,
        )?,
        settings: Arc::new(ApiSettings::from_config(config)),
    }))
}

/// Fails unless `answer` holds the counts and sums of a scan of `orders` over its
/// window.
async fn check(db: &PgPool, answer: &Value) -> anyhow::Result<()> {
    let time = |v: &Value| v.as_str().unwrap_or_default().parse::<DateTime<Utc>>();
    let (from, to) = (time(&answer["from"])?, time(&answer["to"])?);
    let statuses = sqlx::query(
        "SELECT status, count(*) AS orders FROM orders
         WHERE created_at >= $1 AND created_at < $2 GROUP BY status",
    )
    .bind(from)
    .bind(to)
    .fetch_all(db)
    .await?;
    let mut total = 0;
    for row in &statuses {
        let (status, orders): (String, i64) = (row.get("status"), row.get("orders"));
        total += orders;
        anyhow::ensure!(answer["by_status"][&status] == orders, "{status}: {answer}");
    }
    anyhow::ensure!(answer["order_count"] == total, "{total} orders: {answer}");
    let currencies: Vec<Value> = sqlx::query(
        "SELECT currency::text, count(*) AS placed, round(sum(total_amount), 2)::text AS total,
                round(sum(refunded_amount), 2)::text AS refunded
         FROM orders WHERE created_at >= $1 AND created_at < $2 AND captured_amount > 0
         GROUP BY currency ORDER BY currency",
    )
    .bind(from)
    .bind(to)
    .fetch_all(db)
    .await?
    .iter()
    .map(|row| {
        json!({"currency": row.get::<String, _>("currency"),
               "order_count": row.get::<i64, _>("placed"),
               "total_value": row.get::<String, _>("total"),
               "refunded_total": row.get::<String, _>("refunded")})
    })
    .collect();
    let answered: Vec<Value> = answer["currencies"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            json!({"currency": c["currency"], "order_count": c["order_count"],
                   "total_value": c["total_value"], "refunded_total": c["refunded_total"]})
        })
        .collect();
    anyhow::ensure!(answered == currencies, "{currencies:?}: {answer}");
    Ok(())
}

/// The `q` quantile of `latencies` by nearest rank: the 95th of 20 is the 19th.
fn quantile(latencies: &[Duration], q: f64) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let rank = (sorted.len() as f64 * q).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1))
        .copied()
        .unwrap_or_default()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
