//! The outbox: events and notifications written with the order change they tell
//! about, and the relay's view of what is left to deliver.

use crate::domain::{OrderEvent, OrderNotification};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder, Row};
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// What a message is: an event for the bus or a notification for the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Event,
    Notification,
}

impl Kind {
    /// The name stored, and the `kind` label of the gauges.
    pub fn as_str(self) -> &'static str {
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
    pub order_id: Uuid,
    pub kind: Kind,
    pub payload: Value,
    pub attempts: i32,
}

/// Pushes the enqueueing of the messages the order's version emits as a part of
/// its write (see [`super::project`]). A replayed write adds nothing: the message
/// ids are fixed per fact.
pub(super) fn push_enqueue<'q>(
    q: &mut QueryBuilder<'q, Postgres>,
    (order_id, version, at): (Uuid, i64, DateTime<Utc>),
    events: &'q [OrderEvent],
    notifications: &'q [OrderNotification],
) {
    let events = events.iter().map(|e| {
        let payload = Json(Payload::Event(e));
        (e.id.to_string(), Kind::Event, e.topic.as_str(), payload)
    });
    let notifications = notifications.iter().map(|n| {
        let payload = Json(Payload::Notification(n));
        (
            n.key.clone(),
            Kind::Notification,
            n.template.as_str(),
            payload,
        )
    });
    super::part::push_part(
        q,
        "messages",
        "INSERT INTO outbox (message_id, order_id, version, kind, name, payload, created_at)",
        events.chain(notifications),
        |mut b, (id, kind, name, payload)| {
            b.push_bind(id)
                .push_bind(order_id)
                .push_bind(version)
                .push_bind(kind.as_str())
                .push_bind(name)
                .push_bind(payload)
                .push_bind(at);
        },
        "ON CONFLICT (message_id) DO NOTHING",
    );
}

/// A message as stored: serialized straight into the statement.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Payload<'a> {
    Event(&'a OrderEvent),
    Notification(&'a OrderNotification),
}

/// Claims, for this transaction, the queues (order and kind) of up to `limit` orders
/// whose oldest undelivered message of `kind` is due (the longest due first), and
/// returns each queue oldest first. Only that oldest message is locked (other relays skip it, and see the
/// rest of its queue as not first), so an order's messages go out through one
/// relay at a time, in order, however many relays run.
pub async fn claim(
    tx: &mut PgConnection,
    kind: Kind,
    limit: i64,
) -> sqlx::Result<Vec<Vec<Pending>>> {
    let heads: Vec<(i64, Uuid)> = sqlx::query_as(
        "SELECT o.id, o.order_id FROM outbox o
         WHERE o.kind = $2 AND o.sent_at IS NULL AND o.refused_at IS NULL
           AND o.next_attempt_at <= now()
           AND NOT EXISTS (
               SELECT FROM outbox e
               WHERE e.order_id = o.order_id AND e.kind = o.kind AND e.id < o.id
                 AND e.sent_at IS NULL AND e.refused_at IS NULL)
         ORDER BY o.next_attempt_at LIMIT $1
         FOR UPDATE OF o SKIP LOCKED",
    )
    .bind(limit)
    .bind(kind.as_str())
    .fetch_all(&mut *tx)
    .await?;
    if heads.is_empty() {
        return Ok(Vec::new());
    }
    let orders: Vec<Uuid> = heads.iter().map(|(_, order)| *order).collect();
    let heads: HashMap<Uuid, i64> = heads.into_iter().map(|(id, order)| (order, id)).collect();
    let rows = sqlx::query(
        "SELECT id, order_id, payload, attempts FROM outbox
         WHERE order_id = ANY($1) AND kind = $2 AND sent_at IS NULL AND refused_at IS NULL
         ORDER BY order_id, id",
    )
    .bind(&orders)
    .bind(kind.as_str())
    .fetch_all(&mut *tx)
    .await?;
    let mut queues: Vec<Vec<Pending>> = Vec::with_capacity(heads.len());
    for r in rows {
        let message = Pending {
            id: r.get("id"),
            order_id: r.get("order_id"),
            kind,
            payload: r.get("payload"),
            attempts: r.get("attempts"),
        };
        // A queue starts at the message claimed for it.
        if heads
            .get(&message.order_id)
            .is_none_or(|head| message.id < *head)
        {
            continue;
        }
        match queues.last_mut() {
            Some(queue) if queue[0].order_id == message.order_id => queue.push(message),
            _ => queues.push(vec![message]),
        }
    }
    Ok(queues)
}

/// Marks messages delivered.
pub async fn mark_sent(tx: &mut PgConnection, ids: &[i64]) -> sqlx::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE outbox SET sent_at = now(), attempts = attempts + 1, last_error = NULL,
            failing_since = NULL
         WHERE id = ANY($1)",
    )
    .bind(ids)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Records a final refusal (the receiving service cannot read the message): kept
/// with the answer for operators, never sent again.
pub async fn mark_refused(tx: &mut PgConnection, id: i64, error: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE outbox SET attempts = attempts + 1, last_error = $2, refused_at = now(),
            failing_since = COALESCE(failing_since, now())
         WHERE id = $1",
    )
    .bind(id)
    .bind(error)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Puts the messages of order `order_id` that were refused for good back in its
/// queue, due now: an operator's retry, once the receiving service can read them.
/// They stay listed until delivered. Returns how many.
pub async fn requeue_refused(pool: &PgPool, order_id: Uuid) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE outbox SET refused_at = NULL, next_attempt_at = now()
         WHERE order_id = $1 AND sent_at IS NULL AND refused_at IS NOT NULL
           AND dropped_at IS NULL",
    )
    .bind(order_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Drops the messages of order `order_id` that were refused for good, with the
/// operator's reason: kept for the record, never sent, no longer undelivered.
/// Returns how many.
pub async fn drop_refused(pool: &PgPool, order_id: Uuid, reason: &str) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE outbox SET dropped_at = now(), dropped_reason = $2
         WHERE order_id = $1 AND sent_at IS NULL AND refused_at IS NOT NULL
           AND dropped_at IS NULL",
    )
    .bind(order_id)
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Records a failed attempt at `message`, the oldest of its queue: the whole queue
/// waits `retry_in`, so that the relay does not look at it again before then.
pub async fn mark_failed(
    tx: &mut PgConnection,
    message: &Pending,
    error: &str,
    retry_in: Duration,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE outbox SET next_attempt_at = now() + make_interval(secs => $5),
            attempts = attempts + (id = $1)::int,
            last_error = CASE WHEN id = $1 THEN $4 ELSE last_error END,
            failing_since = CASE WHEN id = $1 THEN COALESCE(failing_since, now()) ELSE failing_since END
         WHERE order_id = $2 AND kind = $3 AND id >= $1
           AND sent_at IS NULL AND refused_at IS NULL",
    )
    .bind(message.id)
    .bind(message.order_id)
    .bind(message.kind.as_str())
    .bind(error)
    .bind(retry_in.as_secs_f64())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Undelivered messages of one kind and state, for the gauges of `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backlog {
    pub kind: Kind,
    /// Refused for good (`true`), or still to be delivered.
    pub refused: bool,
    pub count: i64,
    /// Age of the oldest, in seconds (0 when there is none).
    pub oldest_secs: f64,
}

/// What is undelivered, for every kind and state (zeros included).
pub async fn backlog(pool: &PgPool) -> sqlx::Result<Vec<Backlog>> {
    let rows: Vec<(String, bool, i64, f64)> = sqlx::query_as(
        "SELECT kind, refused_at IS NOT NULL, count(*),
                EXTRACT(EPOCH FROM now() - min(created_at))::float8
         FROM outbox WHERE sent_at IS NULL AND dropped_at IS NULL GROUP BY 1, 2",
    )
    .fetch_all(pool)
    .await?;
    let mut all = Vec::new();
    for kind in [Kind::Event, Kind::Notification] {
        for refused in [false, true] {
            let found = rows
                .iter()
                .find(|(k, r, _, _)| k == kind.as_str() && *r == refused);
            all.push(Backlog {
                kind,
                refused,
                count: found.map_or(0, |f| f.2),
                oldest_secs: found.map_or(0.0, |f| f.3.max(0.0)),
            });
        }
    }
    Ok(all)
}

/// An order whose oldest failing message cannot be delivered: refused for good, or
/// failing since before `failing_before`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Undelivered {
    pub order_id: Uuid,
    pub kind: String,
    pub attempts: i32,
    /// The receiving service's last answer.
    pub last_error: String,
    pub since: DateTime<Utc>,
}

/// Every order with an undeliverable message (see [`Undelivered`]), its oldest one.
pub async fn undelivered(
    pool: &PgPool,
    failing_before: DateTime<Utc>,
) -> sqlx::Result<Vec<Undelivered>> {
    sqlx::query_as(
        "SELECT DISTINCT ON (order_id) order_id, kind, attempts, last_error,
                COALESCE(failing_since, refused_at) AS since
         FROM outbox
         WHERE sent_at IS NULL AND dropped_at IS NULL AND last_error IS NOT NULL
           AND (refused_at IS NOT NULL OR failing_since < $1)
         ORDER BY order_id, id",
    )
    .bind(failing_before)
    .fetch_all(pool)
    .await
}
