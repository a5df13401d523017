//! The edit history: every quantity, amount and address change, written in the
//! statement that writes the change itself.

use crate::domain::{FieldChange, Order};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgPool, Postgres, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

/// Who made a change and why.
#[derive(Debug, Clone, Copy)]
pub struct Author<'a> {
    pub actor: &'a str,
    pub reason: Option<&'a str>,
}

/// One entry of `GET /orders/{id}/edit-history`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct EditEntry {
    pub field: String,
    pub item_id: Option<i32>,
    pub return_id: Option<Uuid>,
    pub old: Option<Value>,
    pub new: Option<Value>,
    pub reason: Option<String>,
    pub actor: String,
    pub at: DateTime<Utc>,
    pub version: i64,
}

/// Pushes the insert of the fields the order's version `changes` as a part of its
/// write (see [`super::project`]); a replay changes nothing.
pub(super) fn push_insert<'q>(
    q: &mut QueryBuilder<'q, Postgres>,
    order: &'q Order,
    author: Author<'q>,
    changes: &'q [FieldChange],
) {
    super::part::push_part(
        q,
        "edits",
        "INSERT INTO order_edit_history (order_id, version, seq, field, item_id, return_id,
            old_value, new_value, reason, actor, at)",
        changes.iter().zip(0i32..),
        |mut b, (c, seq)| {
            b.push_bind(order.id)
                .push_bind(order.version)
                .push_bind(seq)
                .push_bind(&c.field)
                .push_bind(c.item_id)
                .push_bind(c.return_id)
                .push_bind(&c.old)
                .push_bind(&c.new)
                .push_bind(author.reason)
                .push_bind(author.actor)
                .push_bind(order.updated_at);
        },
        "ON CONFLICT DO NOTHING",
    );
}

/// The order's edits, oldest first; `None` when the order does not exist.
pub async fn edit_history(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<Vec<EditEntry>>> {
    if !super::order_exists(pool, id).await? {
        return Ok(None);
    }
    let rows = sqlx::query_as::<_, EditEntry>(
        r#"SELECT field, item_id, return_id, old_value AS "old", new_value AS "new", reason, actor, at,
                  version
           FROM order_edit_history WHERE order_id = $1 ORDER BY version, seq"#,
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    Ok(Some(rows))
}
