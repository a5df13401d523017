//! The change quotes and changes of each order, as the API shows them.

use crate::domain::{Change, OrderEvent, OrderNotification, Quote};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

/// Writes the quote as it now stands; an older revision never overwrites a newer.
/// True when this call wrote it (false: a replay found it written).
pub async fn save_quote(pool: &PgPool, quote: &Quote) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO change_quotes (quote_id, order_id, status, rev, document, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (quote_id) DO UPDATE SET status = EXCLUDED.status, rev = EXCLUDED.rev,
            document = EXCLUDED.document
         WHERE change_quotes.rev < EXCLUDED.rev",
    )
    .bind(quote.quote_id)
    .bind(quote.order_id)
    .bind(quote.status.as_str())
    .bind(quote.rev)
    .bind(Json(quote.view()))
    .bind(quote.created_at)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// What a change tells as it is written: its event and notification, at an order
/// version.
pub struct Told<'a> {
    pub events: &'a [OrderEvent],
    pub notification: Option<&'a OrderNotification>,
    pub version: i64,
    pub at: DateTime<Utc>,
}

/// Writes the change as it now stands, with what it tells (into the outbox), in
/// one statement; an older revision never overwrites a newer, and a message is
/// enqueued once. True when this call wrote the change (false: a replay found it
/// written).
pub async fn save_change(pool: &PgPool, change: &Change, told: Told<'_>) -> sqlx::Result<bool> {
    let mut q = QueryBuilder::<Postgres>::new(
        "WITH written AS (INSERT INTO order_changes (change_id, order_id, status, rev, document,
            created_at) ",
    );
    q.push_values([change], |mut b, c| {
        b.push_bind(c.change_id)
            .push_bind(c.order_id)
            .push_bind(c.status.as_str())
            .push_bind(c.rev)
            .push_bind(Json(c.view()))
            .push_bind(c.created_at);
    });
    q.push(
        " ON CONFLICT (change_id) DO UPDATE SET status = EXCLUDED.status, rev = EXCLUDED.rev,
            document = EXCLUDED.document
         WHERE order_changes.rev < EXCLUDED.rev
         RETURNING 1)",
    );
    let at = (change.order_id, told.version, told.at);
    super::outbox::push_enqueue(&mut q, at, told.events, told.notification);
    q.push(" SELECT count(*) FROM written");
    let written: i64 = q.build_query_scalar().fetch_one(pool).await?;
    Ok(written == 1)
}

/// Records that change `change_id` of order `order_id` is asked to stop, while it
/// is `applying`; its saga looks at each step boundary before its point of no
/// return ([`cancel_asked`]). True when the change was applying.
pub async fn ask_cancel(
    pool: &PgPool,
    order_id: Uuid,
    change_id: Uuid,
    reason: Option<&str>,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE order_changes SET cancel_asked_at = coalesce(cancel_asked_at, now()),
            cancel_reason = coalesce(cancel_reason, $3)
         WHERE change_id = $1 AND order_id = $2 AND status = 'applying'",
    )
    .bind(change_id)
    .bind(order_id)
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether change `change_id` was asked to stop, and why.
pub async fn cancel_asked(pool: &PgPool, change_id: Uuid) -> sqlx::Result<Option<Option<String>>> {
    sqlx::query_scalar(
        "SELECT cancel_reason FROM order_changes
         WHERE change_id = $1 AND cancel_asked_at IS NOT NULL",
    )
    .bind(change_id)
    .fetch_optional(pool)
    .await
}

/// Quote `id` of order `order_id`.
pub async fn get_quote(pool: &PgPool, order_id: Uuid, id: Uuid) -> sqlx::Result<Option<Value>> {
    document(
        pool,
        "SELECT document FROM change_quotes WHERE quote_id = $1 AND order_id = $2",
        id,
        order_id,
    )
    .await
}

/// Change `id` of order `order_id`.
pub async fn get_change(pool: &PgPool, order_id: Uuid, id: Uuid) -> sqlx::Result<Option<Value>> {
    document(
        pool,
        "SELECT document FROM order_changes WHERE change_id = $1 AND order_id = $2",
        id,
        order_id,
    )
    .await
}

async fn document(
    pool: &PgPool,
    sql: &str,
    id: Uuid,
    order_id: Uuid,
) -> sqlx::Result<Option<Value>> {
    let doc: Option<Json<Value>> = sqlx::query_scalar(sql)
        .bind(id)
        .bind(order_id)
        .fetch_optional(pool)
        .await?;
    Ok(doc.map(|d| d.0))
}

/// The order's quotes, oldest first.
pub async fn list_quotes(pool: &PgPool, order_id: Uuid) -> sqlx::Result<Vec<Value>> {
    let docs: Vec<Json<Value>> = sqlx::query_scalar(
        "SELECT document FROM change_quotes WHERE order_id = $1 ORDER BY created_at, quote_id",
    )
    .bind(order_id)
    .fetch_all(pool)
    .await?;
    Ok(docs.into_iter().map(|d| d.0).collect())
}

/// The order's changes, oldest first, with `status` if given.
pub async fn list_changes(
    pool: &PgPool,
    order_id: Uuid,
    status: Option<&str>,
) -> sqlx::Result<Vec<Value>> {
    let docs: Vec<Json<Value>> = sqlx::query_scalar(
        "SELECT document FROM order_changes WHERE order_id = $1
            AND ($2::text IS NULL OR status = $2) ORDER BY created_at, change_id",
    )
    .bind(order_id)
    .bind(status)
    .fetch_all(pool)
    .await?;
    Ok(docs.into_iter().map(|d| d.0).collect())
}

/// How many changes wait for their payment, and what applied changes left owed,
/// by currency (the gauges of a scrape).
pub async fn owed(pool: &PgPool) -> sqlx::Result<(i64, Vec<(String, rust_decimal::Decimal)>)> {
    let awaiting: i64 =
        sqlx::query_scalar("SELECT count(*) FROM order_changes WHERE status = 'awaiting_payment'")
            .fetch_one(pool)
            .await?;
    let outstanding = sqlx::query_as(
        "SELECT currency, sum((document->>'outstanding_amount')::numeric)
         FROM orders WHERE (document->>'outstanding_amount')::numeric > 0
         GROUP BY currency ORDER BY currency",
    )
    .fetch_all(pool)
    .await?;
    Ok((awaiting, outstanding))
}
