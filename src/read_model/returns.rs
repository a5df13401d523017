//! The returns of each order, as the API shows them.

use crate::domain::{Order, Return};
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

/// Pushes the upsert of the order's returns as a part of its write (see
/// [`super::project`]); a row only ever moves to a newer version.
pub(super) fn push_upsert<'q>(q: &mut QueryBuilder<'q, Postgres>, order: &'q Order) {
    super::part::push_part(
        q,
        "returns",
        "INSERT INTO returns (id, order_id, status, items, requested_at, received_at,
            refunded_at, closed_at, expires_at, version, document)",
        &order.returns,
        |mut b, r| {
            b.push_bind(r.return_id)
                .push_bind(r.order_id)
                .push_bind(r.status.as_str())
                .push_bind(serde_json::to_value(&r.items).unwrap_or_default())
                .push_bind(r.requested_at)
                .push_bind(r.received_at)
                .push_bind(r.refunded_at)
                .push_bind(r.closed_at)
                .push_bind(r.expires_at)
                .push_bind(r.version)
                .push_bind(serde_json::to_value(r).unwrap_or_default());
        },
        "ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status,
            received_at = EXCLUDED.received_at, refunded_at = EXCLUDED.refunded_at,
            closed_at = EXCLUDED.closed_at, version = EXCLUDED.version,
            document = EXCLUDED.document
         WHERE returns.version < EXCLUDED.version",
    );
}

pub async fn get_return(pool: &PgPool, order_id: Uuid, id: Uuid) -> sqlx::Result<Option<Return>> {
    let row: Option<(sqlx::types::Json<Return>,)> =
        sqlx::query_as("SELECT document FROM returns WHERE id = $1 AND order_id = $2")
            .bind(id)
            .bind(order_id)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|(r,)| r.0))
}

/// The order's returns, oldest first; `None` when the order does not exist.
pub async fn list_returns(pool: &PgPool, order_id: Uuid) -> sqlx::Result<Option<Vec<Return>>> {
    if !super::order_exists(pool, order_id).await? {
        return Ok(None);
    }
    let rows: Vec<(sqlx::types::Json<Return>,)> = sqlx::query_as(
        "SELECT document FROM returns WHERE order_id = $1 ORDER BY requested_at, id",
    )
    .bind(order_id)
    .fetch_all(pool)
    .await?;
    Ok(Some(rows.into_iter().map(|(r,)| r.0).collect()))
}
