//! The change quotes and changes of each order, as the API shows them.

use crate::domain::{Change, Quote};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::PgPool;
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

/// Writes the change as it now stands; an older revision never overwrites a newer.
/// True when this call wrote it (false: a replay found it written).
pub async fn save_change(pool: &PgPool, change: &Change) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO order_changes (change_id, order_id, status, rev, document, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (change_id) DO UPDATE SET status = EXCLUDED.status, rev = EXCLUDED.rev,
            document = EXCLUDED.document
         WHERE order_changes.rev < EXCLUDED.rev",
    )
    .bind(change.change_id)
    .bind(change.order_id)
    .bind(change.status.as_str())
    .bind(change.rev)
    .bind(Json(change.view()))
    .bind(change.created_at)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
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
