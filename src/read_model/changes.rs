//! The change quotes and changes of each order, as the API shows them.

use crate::domain::{Change, ChangeRequest, OrderEvent, OrderNotification, Quote};
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
pub struct Told {
    pub events: Vec<OrderEvent>,
    pub notification: Option<OrderNotification>,
    pub version: i64,
    pub at: DateTime<Utc>,
}

/// Writes the change as it now stands, with what it tells (into the outbox), in
/// one statement; an older revision never overwrites a newer, and a message is
/// enqueued once. True when this call wrote the change (false: a replay found it
/// written).
pub async fn save_change(pool: &PgPool, change: &Change, told: &Told) -> sqlx::Result<bool> {
    let row = Row {
        table: "order_changes",
        key: "change_id",
        id: change.change_id,
        order_id: change.order_id,
        status: change.status.as_str(),
        rev: change.rev,
        document: serde_json::to_value(change.view()).unwrap_or_default(),
        created_at: change.created_at,
    };
    save_told(pool, row, told).await
}

/// Writes the change request as it now stands, with what it tells, as
/// [`save_change`] does.
pub async fn save_request(
    pool: &PgPool,
    request: &ChangeRequest,
    told: &Told,
) -> sqlx::Result<bool> {
    let row = Row {
        table: "change_requests",
        key: "request_id",
        id: request.request_id,
        order_id: request.order_id,
        status: request.status.as_str(),
        rev: request.rev,
        document: serde_json::to_value(request.view()).unwrap_or_default(),
        created_at: request.created_at,
    };
    save_told(pool, row, told).await
}

/// A resource of an order kept in its own table, by revision.
struct Row {
    table: &'static str,
    key: &'static str,
    id: Uuid,
    order_id: Uuid,
    status: &'static str,
    rev: i64,
    document: Value,
    created_at: DateTime<Utc>,
}

async fn save_told(pool: &PgPool, row: Row, told: &Told) -> sqlx::Result<bool> {
    let (table, key) = (row.table, row.key);
    let mut q = QueryBuilder::<Postgres>::new(format!(
        "WITH written AS (INSERT INTO {table} ({key}, order_id, status, rev, document, created_at) "
    ));
    q.push_values([&row], |mut b, r| {
        b.push_bind(r.id)
            .push_bind(r.order_id)
            .push_bind(r.status)
            .push_bind(r.rev)
            .push_bind(Json(&r.document))
            .push_bind(r.created_at);
    });
    q.push(format!(
        " ON CONFLICT ({key}) DO UPDATE SET status = EXCLUDED.status, rev = EXCLUDED.rev,
            document = EXCLUDED.document
         WHERE {table}.rev < EXCLUDED.rev
         RETURNING 1)"
    ));
    let at = (row.order_id, told.version, told.at);
    super::outbox::push_enqueue(&mut q, at, &told.events, told.notification.as_slice());
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

/// Change request `id` of order `order_id`.
pub async fn get_request(pool: &PgPool, order_id: Uuid, id: Uuid) -> sqlx::Result<Option<Value>> {
    document(
        pool,
        "SELECT document FROM change_requests WHERE request_id = $1 AND order_id = $2",
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

/// The order's change requests, oldest first.
pub async fn list_requests(pool: &PgPool, order_id: Uuid) -> sqlx::Result<Vec<Value>> {
    let docs: Vec<Json<Value>> = sqlx::query_scalar(
        "SELECT document FROM change_requests WHERE order_id = $1 ORDER BY created_at, request_id",
    )
    .bind(order_id)
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
