//! The outbox: events and notifications written with the order change they tell
//! about, and the relay's view of what is left to deliver.

use crate::domain::{Order, OrderEvent, OrderNotification};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};
use std::time::Duration;
use uuid::Uuid;

/// What a message is: an event for the bus or a notification for the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    order: &'q Order,
    events: &'q [OrderEvent],
    notification: Option<&'q OrderNotification>,
) {
    let events = events.iter().map(|e| {
        let payload = Json(Payload::Event(e));
        (e.id.to_string(), Kind::Event, e.topic.as_str(), payload)
    });
    let notification = notification.map(|n| {
        let payload = Json(Payload::Notification(n));
        (
            n.key.clone(),
            Kind::Notification,
            n.template.as_str(),
            payload,
        )
    });
    super::projection::push_part(
        q,
        "messages",
        "INSERT INTO outbox (message_id, order_id, version, kind, name, payload, created_at)",
        events.chain(notification),
        |mut b, (id, kind, name, payload)| {
            b.push_bind(id)
                .push_bind(order.id)
                .push_bind(order.version)
                .push_bind(kind.as_str())
                .push_bind(name)
                .push_bind(payload)
                .push_bind(order.updated_at);
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

/// Takes up to `limit` due messages of `kind`, oldest first, for this transaction: they stay
/// locked (other relays skip them) until it ends. A queue (order and kind) whose
/// older messages are held by another relay or not due yet is left out, so that no
/// message ever overtakes an older one of its queue.
pub async fn take_due(tx: &mut PgConnection, kind: Kind, limit: i64) -> sqlx::Result<Vec<Pending>> {
    let rows = sqlx::query(
        "SELECT id, order_id, kind, payload, attempts FROM outbox
         WHERE kind = $2 AND sent_at IS NULL AND refused_at IS NULL AND next_attempt_at <= now()
         ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .bind(kind.as_str())
    .fetch_all(&mut *tx)
    .await?;
    let taken: Vec<Pending> = rows
        .into_iter()
        .map(|r| Pending {
            id: r.get("id"),
            order_id: r.get("order_id"),
            kind: match r.get::<String, _>("kind").as_str() {
                "event" => Kind::Event,
                _ => Kind::Notification,
            },
            payload: r.get("payload"),
            attempts: r.get("attempts"),
        })
        .collect();
    if taken.is_empty() {
        return Ok(taken);
    }
    // The oldest undelivered message of each queue taken: where it is not ours,
    // the queue waits for the next round.
    let ids: Vec<i64> = taken.iter().map(|p| p.id).collect();
    let heads: Vec<i64> = sqlx::query_scalar(
        "SELECT min(o.id) FROM outbox o
         WHERE o.sent_at IS NULL AND o.refused_at IS NULL
           AND o.kind = $2 AND o.order_id IN (SELECT order_id FROM outbox WHERE id = ANY($1))
         GROUP BY o.order_id",
    )
    .bind(&ids)
    .bind(kind.as_str())
    .fetch_all(&mut *tx)
    .await?;
    let first_taken = |p: &Pending| {
        taken
            .iter()
            .filter(|q| q.order_id == p.order_id && q.kind == p.kind)
            .map(|q| q.id)
            .min()
    };
    Ok(taken
        .iter()
        .filter(|p| first_taken(p).is_some_and(|first| heads.contains(&first)))
        .cloned()
        .collect())
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

/// Records a failed attempt: retried after `retry_in`, or never when it is `None`
/// (the receiving service refused it for good).
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
