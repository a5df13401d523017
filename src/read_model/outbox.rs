//! The outbox: events and notifications written with the order change they tell
//! about, and the relay's view of what is left to deliver.

use crate::domain::{Order, OrderEvent, OrderNotification};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder, Row, Transaction};
use std::time::Duration;
use uuid::Uuid;

/// What a message is: an event for the bus or a notification for the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Event,
    Notification,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Event => "event",
            Kind::Notification => "notification",
        }
    }
}

/// One message waiting to be delivered.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: i64,
    pub kind: Kind,
    pub payload: Value,
    pub attempts: i32,
    pub due: bool,
}

/// Adds the order's events and notification to the outbox. A replayed write adds
/// nothing: the message ids are fixed per fact.
pub(super) async fn enqueue(
    tx: &mut Transaction<'_, Postgres>,
    order: &Order,
    events: &[OrderEvent],
    notification: Option<&OrderNotification>,
) -> sqlx::Result<()> {
    let mut rows: Vec<(String, Kind, &str, Value)> = events
        .iter()
        .map(|e| (e.id.to_string(), Kind::Event, e.topic.as_str(), json(e)))
        .collect();
    if let Some(n) = notification {
        rows.push((n.key.clone(), Kind::Notification, &n.template, json(n)));
    }
    if rows.is_empty() {
        return Ok(());
    }
    let mut q = QueryBuilder::<Postgres>::new(
        "INSERT INTO outbox (message_id, order_id, version, kind, name, payload, created_at) ",
    );
    q.push_values(rows, |mut b, (id, kind, name, payload)| {
        b.push_bind(id)
            .push_bind(order.id)
            .push_bind(order.version)
            .push_bind(kind.as_str())
            .push_bind(name)
            .push_bind(payload)
            .push_bind(order.updated_at);
    });
    q.push(" ON CONFLICT (message_id) DO NOTHING");
    q.build().execute(&mut **tx).await?;
    Ok(())
}

fn json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("outbox payloads serialize")
}

/// Queues (order, kind) with a message due now, oldest first, at most `limit`.
pub async fn due_queues(pool: &PgPool, limit: i64) -> sqlx::Result<Vec<(Uuid, Kind)>> {
    let rows = sqlx::query(
        "SELECT order_id, kind, min(id) AS first FROM outbox
         WHERE sent_at IS NULL AND refused_at IS NULL AND next_attempt_at <= now()
         GROUP BY order_id, kind ORDER BY first LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let kind = match r.get::<String, _>("kind").as_str() {
                "event" => Kind::Event,
                _ => Kind::Notification,
            };
            (r.get("order_id"), kind)
        })
        .collect())
}

/// Takes the queue of `order_id`'s messages of `kind` for this transaction, so that
/// no other relay delivers them meanwhile; `None` when another relay holds it.
/// Messages come oldest first; delivery stops at the first that is not due.
pub async fn lock_queue(
    tx: &mut PgConnection,
    order_id: Uuid,
    kind: Kind,
) -> sqlx::Result<Option<Vec<Pending>>> {
    let locked: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 7))")
            .bind(format!("outbox:{order_id}:{}", kind.as_str()))
            .fetch_one(&mut *tx)
            .await?;
    if !locked {
        return Ok(None);
    }
    let rows = sqlx::query(
        "SELECT id, payload, attempts, next_attempt_at <= now() AS due FROM outbox
         WHERE order_id = $1 AND kind = $2 AND sent_at IS NULL AND refused_at IS NULL
         ORDER BY id",
    )
    .bind(order_id)
    .bind(kind.as_str())
    .fetch_all(&mut *tx)
    .await?;
    Ok(Some(
        rows.into_iter()
            .map(|r| Pending {
                id: r.get("id"),
                kind,
                payload: r.get("payload"),
                attempts: r.get("attempts"),
                due: r.get("due"),
            })
            .collect(),
    ))
}

/// Marks messages delivered.
pub async fn mark_sent(tx: &mut PgConnection, ids: &[i64]) -> sqlx::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE outbox SET sent_at = now(), attempts = attempts + 1, last_error = NULL
         WHERE id = ANY($1)",
    )
    .bind(ids)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Records a failed attempt: retried after `retry_in`, or never when `final` (the
/// receiving service refused it for good).
pub async fn mark_failed(
    tx: &mut PgConnection,
    id: i64,
    error: &str,
    retry_in: Option<Duration>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE outbox SET attempts = attempts + 1, last_error = $2,
            next_attempt_at = now() + make_interval(secs => $3),
            refused_at = CASE WHEN $4 THEN now() END
         WHERE id = $1",
    )
    .bind(id)
    .bind(error)
    .bind(retry_in.unwrap_or_default().as_secs_f64())
    .bind(retry_in.is_none())
    .execute(&mut *tx)
    .await?;
    Ok(())
}
