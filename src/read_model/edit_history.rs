//! The edit history: every quantity, amount and address change, written in the
//! statement that writes the change itself.

use crate::domain::FieldChange;
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

/// Pushes, as a part of the order's write (see [`super::project`]), the insert of
/// the `changes` (not none) of the order's `version`, made only when the order's
/// row was `written`.
pub(super) fn push_insert<'q>(
    q: &mut QueryBuilder<'q, Postgres>,
    order_id: Uuid,
    version: i64,
    at: DateTime<Utc>,
    author: Author<'q>,
    changes: &'q [FieldChange],
) {
    q.push(
        "INSERT INTO order_edit_history (order_id, version, seq, field, item_id, return_id,
            old_value, new_value, reason, actor, at) SELECT * FROM (",
    );
    q.push_values(changes.iter().zip(0i32..), |mut b, (c, seq)| {
        b.push_bind(order_id)
            .push_bind(version)
            .push_bind(seq)
            .push_bind(&c.field)
            .push_bind(c.item_id)
            .push_bind(c.return_id)
            .push_bind(&c.old)
            .push_bind(&c.new)
            .push_bind(author.reason)
            .push_bind(author.actor)
            .push_bind(at);
    });
    q.push(") AS v WHERE EXISTS (SELECT FROM written) ON CONFLICT DO NOTHING");
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
