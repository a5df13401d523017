//! Fills the read model for the list figure: one order made through the API is the
//! template, copied `count` times in one `INSERT ... SELECT` with its own id,
//! number, customer (ten orders each) and creation time, so that every listed
//! document is a real one. The per-row counting trigger is off while it runs, as
//! for any bulk load, and the daily counts are rebuilt after it.

use serde_json::Value;
use sqlx::PgPool;
use std::time::Instant;

/// Orders per customer.
const PER_CUSTOMER: i64 = 10;
/// Customers the list runs go through.
const LISTED: i64 = 1000;

/// The copy: every column from the template but those it makes its own.
const COPY: &str = "
INSERT INTO orders ({columns})
SELECT {values}
FROM orders t
CROSS JOIN generate_series(1::bigint, $2) AS g
CROSS JOIN LATERAL (SELECT md5('bench-list-' || g)::uuid AS id,
                           'ORD-LIST-' || lpad(g::text, 8, '0') AS order_number,
                           md5('bench-customer-' || g % $3)::uuid AS customer_id,
                           t.created_at - make_interval(secs => g) AS at) AS c
WHERE t.id = $1";

/// Puts `count` orders into the read model beside what is there, copies of one
/// made from `body`; the customers to list (each holding ten of them).
pub async fn fill(
    db: &PgPool,
    api: &str,
    http: &reqwest::Client,
    count: i64,
    mut body: Value,
) -> anyhow::Result<Vec<String>> {
    let started = Instant::now();
    body["customer_id"] = Value::String(uuid::Uuid::new_v4().to_string());
    let template: Value = http
        .post(format!("{api}/orders"))
        .json(&body)
        .send()
        .await?
        .json()
        .await?;
    let template: uuid::Uuid = template["id"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(|_| anyhow::anyhow!("the template order was not created: {template}"))?;

    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns
         WHERE table_name = 'orders' AND table_schema = current_schema()
         ORDER BY ordinal_position",
    )
    .fetch_all(db)
    .await?;
    let values: Vec<String> = columns
        .iter()
        .map(|column| match column.as_str() {
            "id" | "order_number" | "customer_id" => format!("c.{column}"),
            "created_at" | "updated_at" => "c.at".to_owned(),
            "document" => "t.document || jsonb_build_object('id', c.id, 'order_number', \
                 c.order_number, 'customer_id', c.customer_id, 'created_at', c.at, \
                 'updated_at', c.at)"
                .to_owned(),
            other => format!("t.{other}"),
        })
        .collect();
    let copy = COPY
        .replace("{columns}", &columns.join(", "))
        .replace("{values}", &values.join(", "));

    let customers = (count / PER_CUSTOMER).max(1);
    let mut tx = db.begin().await?;
    sqlx::query("ALTER TABLE orders DISABLE TRIGGER order_daily_stats_insert_delete")
        .execute(&mut *tx)
        .await?;
    sqlx::query(&copy)
        .bind(template)
        .bind(count)
        .bind(customers)
        .execute(&mut *tx)
        .await?;
    sqlx::query("ALTER TABLE orders ENABLE TRIGGER order_daily_stats_insert_delete")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT order_daily_stats_rebuild()")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    sqlx::query("VACUUM ANALYZE orders").execute(db).await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(db)
        .await?;
    println!(
        "read model filled to {total} orders ({count} copies of one, {PER_CUSTOMER} per customer) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let listed = sqlx::query_scalar(
        "SELECT md5('bench-customer-' || k)::uuid::text FROM generate_series(0::bigint, $1 - 1) AS k",
    )
    .bind(LISTED.min(customers))
    .fetch_all(db)
    .await?;
    Ok(listed)
}
