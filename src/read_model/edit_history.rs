//! The edit history: every quantity, amount and address change, written in the
//! transaction that writes the change itself.

use crate::domain::FieldChange;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};
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

/// Records the `changes` of the order's `version`; a replay changes nothing.
pub(super) async fn record(
    tx: &mut PgConnection,
    order_id: Uuid,
    version: i64,
    at: DateTime<Utc>,
    author: Author<'_>,
    changes: &[FieldChange],
) -> sqlx::Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut q = QueryBuilder::<Postgres>::new(
        "INSERT INTO order_edit_history (order_id, version, seq, field, item_id, return_id,
            old_value, new_value, reason, actor, at) ",
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
    q.push(" ON CONFLICT DO NOTHING");
    q.build().execute(tx).await?;
    Ok(())
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
