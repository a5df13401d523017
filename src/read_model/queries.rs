//! The queries behind the API's read endpoints.

use crate::domain::{Order, OrderStatus, OrderView};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use utoipa::ToSchema;
use uuid::Uuid;

/// The order by id.
pub async fn get_order(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<OrderView>> {
    let doc: Option<Json<OrderView>> =
        sqlx::query_scalar("SELECT document FROM orders WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(doc.map(|d| d.0))
}

/// The version of order `id` in the read model and the order as its object held
/// it at that version; `None` for the order when its document predates the whole
/// order being kept in it.
pub async fn order_state(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<(i64, Option<Order>)>> {
    let row: Option<(i64, Json<serde_json::Value>)> =
        sqlx::query_as("SELECT version, document FROM orders WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|(version, Json(doc))| (version, serde_json::from_value(doc).ok())))
}

/// The order by its number.
pub async fn get_order_by_number(pool: &PgPool, number: &str) -> sqlx::Result<Option<OrderView>> {
    let doc: Option<Json<OrderView>> =
        sqlx::query_scalar("SELECT document FROM orders WHERE order_number = $1")
            .bind(number)
            .fetch_optional(pool)
            .await?;
    Ok(doc.map(|d| d.0))
}

/// Where a page of the list starts: just after this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    /// An opaque token for the API.
    pub fn encode(&self) -> String {
        let raw = format!("{}|{}", self.created_at.timestamp_micros(), self.id);
        raw.bytes().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads a token made by [`Cursor::encode`].
    pub fn decode(token: &str) -> Option<Cursor> {
        if !token.len().is_multiple_of(2) || token.len() > 200 {
            return None;
        }
        let bytes = (0..token.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        let raw = String::from_utf8(bytes).ok()?;
        let (micros, id) = raw.split_once('|')?;
        let cursor = Cursor {
            // No order was made before 1970.
            created_at: DateTime::from_timestamp_micros(micros.parse().ok().filter(|m| *m >= 0)?)?,
            id: id.parse().ok()?,
        };
        // Only the token `encode` makes, which the document's pattern describes.
        (cursor.encode() == token).then_some(cursor)
    }
}

/// Filters of `GET /orders`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub customer_id: Option<Uuid>,
    pub status: Option<OrderStatus>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    pub after: Option<Cursor>,
    pub limit: i64,
}

/// One page of orders, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderPage {
    pub orders: Vec<OrderView>,
    pub next_cursor: Option<String>,
}

/// Orders matching `filter`, newest first, one page at a time.
pub async fn list_orders(pool: &PgPool, filter: &ListFilter) -> sqlx::Result<OrderPage> {
    let mut q =
        QueryBuilder::<Postgres>::new("SELECT document, created_at, id FROM orders WHERE TRUE");
    if let Some(c) = filter.customer_id {
        q.push(" AND customer_id = ").push_bind(c);
    }
    if let Some(s) = filter.status {
        q.push(" AND status = ").push_bind(s.as_str());
    }
    if let Some(from) = filter.created_from {
        q.push(" AND created_at >= ").push_bind(from);
    }
    if let Some(to) = filter.created_to {
        q.push(" AND created_at < ").push_bind(to);
    }
    if let Some(after) = filter.after {
        q.push(" AND (created_at, id) < (")
            .push_bind(after.created_at)
            .push(", ")
            .push_bind(after.id)
            .push(")");
    }
    // One extra row tells whether there is a next page.
    q.push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .push_bind(filter.limit + 1);
    let rows = q.build().fetch_all(pool).await?;
    let more = rows.len() as i64 > filter.limit;
    let rows = &rows[..rows.len().min(filter.limit as usize)];
    let next_cursor = more
        .then(|| rows.last())
        .flatten()
        .map(|r| Cursor {
            created_at: r.get("created_at"),
            id: r.get("id"),
        })
        .map(|c| c.encode());
    let orders = rows
        .iter()
        .map(|r| r.try_get::<Json<OrderView>, _>("document").map(|d| d.0))
        .collect::<sqlx::Result<Vec<_>>>()?;
    Ok(OrderPage {
        orders,
        next_cursor,
    })
}

/// One row of `GET /orders/{id}/status-history`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct StatusHistoryEntry {
    #[schema(value_type = Option<OrderStatus>)]
    pub from: Option<String>,
    #[schema(value_type = OrderStatus)]
    pub to: String,
    pub reason: Option<String>,
    pub actor: String,
    pub at: DateTime<Utc>,
    pub version: i64,
}

/// The order's status changes, oldest first; `None` when the order does not exist.
pub async fn status_history(
    pool: &PgPool,
    id: Uuid,
) -> sqlx::Result<Option<Vec<StatusHistoryEntry>>> {
    if !super::order_exists(pool, id).await? {
        return Ok(None);
    }
    let rows = sqlx::query_as::<_, StatusHistoryEntry>(
        r#"SELECT from_status AS "from", to_status AS "to", reason, actor, at, version
           FROM order_status_history WHERE order_id = $1 ORDER BY version"#,
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    Ok(Some(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = Cursor {
            created_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap(),
            id: Uuid::new_v4(),
        };
        let (token, simple) = (c.encode(), c.id.simple().to_string());
        assert_eq!(Cursor::decode(&token), Some(c));
        assert_eq!(Cursor::decode("zz"), None);
        assert_eq!(Cursor::decode("abc"), None);
        // Only the canonical token: not upper-case hex, not a simple-form id.
        assert_eq!(Cursor::decode(&token.to_uppercase()), None);
        let simple = format!("{}|{simple}", 1_764_000_000_123_456i64);
        let hex: String = simple.bytes().map(|b| format!("{b:02x}")).collect();
        assert_eq!(Cursor::decode(&hex), None);
    }
}
