//! Delivers the outbox: each order's events to the bus and its notifications to the
//! customer, in the order they were written, outside any saga. Every replica runs a
//! relay; a relay claims a queue (order and kind) by locking its oldest undelivered
//! message until it has recorded the outcome, so one relay at a time delivers an
//! order's messages, in order, while different orders go in parallel. Nothing is
//! dropped: what fails is tried again with backoff, and what is refused for good
//! stays in the outbox for operators.

use crate::domain::{OrderEvent, OrderNotification};
use crate::downstream::{Downstream, DownstreamError};
use crate::read_model::outbox::{self, Kind, Pending};
use sqlx::PgPool;
use std::time::Duration;
use tokio::task::JoinSet;

/// How often an idle relay looks for work.
const IDLE_POLL: Duration = Duration::from_millis(50);
/// After a round that found only a few messages, the pause that lets more gather:
/// under load, fewer and fuller rounds cost PostgreSQL far less per message.
const GATHER: Duration = Duration::from_millis(20);
/// A round that takes at least this many goes on at once.
const FULL_ROUND: usize = 64;
/// The longest wait between two attempts at one message.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Messages taken per round.
const BATCH: i64 = 256;

/// Runs until `stop` completes: events and notifications each in a loop of their
/// own, so that a slow notification service never delays an event.
pub async fn run(db: PgPool, downstream: Downstream, stop: impl std::future::Future<Output = ()>) {
    let events = relay(db.clone(), downstream.clone(), Kind::Event);
    let notifications = relay(db, downstream, Kind::Notification);
    tokio::select! {
        _ = stop => {}
        _ = events => {}
        _ = notifications => {}
    }
}

async fn relay(db: PgPool, downstream: Downstream, kind: Kind) {
    loop {
        let pause = match deliver_due(&db, &downstream, kind).await {
            Ok(taken) if taken >= FULL_ROUND => None,
            Ok(0) => Some(IDLE_POLL),
            Ok(_) => Some(GATHER),
            Err(e) => {
                tracing::warn!(error = %e, "outbox relay could not read the outbox");
                Some(IDLE_POLL)
            }
        };
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        }
    }
}

/// One round: claims the queues of `kind` whose oldest message is due, delivers
/// each queue oldest first and the queues in parallel, and records the outcomes in
/// one transaction. Returns how many messages were taken.
async fn deliver_due(db: &PgPool, downstream: &Downstream, kind: Kind) -> sqlx::Result<usize> {
    let mut tx = db.begin().await?;
    // Losing the record of a delivery to a crash only means delivering it again
    // (same id, dropped downstream), so this commit need not wait for the disk.
    sqlx::query("SET LOCAL synchronous_commit TO OFF")
        .execute(&mut *tx)
        .await?;
    let queues = outbox::claim(&mut tx, kind, BATCH).await?;
    let count = queues.iter().map(Vec::len).sum();
    let mut tasks = JoinSet::new();
    for queue in queues {
        let downstream = downstream.clone();
        tasks.spawn(async move { deliver_queue(&downstream, queue).await });
    }
    let mut sent = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let Ok(outcomes) = done else { continue };
        for (message, outcome) in outcomes {
            match outcome {
                Outcome::Sent => sent.push(message.id),
                Outcome::Refused(error) => {
                    outbox::mark_refused(&mut tx, message.id, &error).await?
                }
                Outcome::Failed { error, retry_in } => {
                    outbox::mark_failed(&mut tx, &message, &error, retry_in).await?
                }
            }
        }
    }
    outbox::mark_sent(&mut tx, &sent).await?;
    tx.commit().await?;
    Ok(count)
}

enum Outcome {
    Sent,
    /// Refused for good: the receiving service cannot read it (`400`).
    Refused(String),
    /// Not delivered now: it and the rest of its queue are tried again after
    /// `retry_in`.
    Failed {
        error: String,
        retry_in: Duration,
    },
}

/// Delivers one queue in order, stopping at the first message that fails for now
/// (it keeps its place, so later ones never overtake it). Every answer is tried
/// again but a `400`: a bus answers `404` while its component loads and `403` while
/// its scopes forbid the topic, and an operator fixes both; only a body the
/// service cannot read is refused for good, and the queue goes on past it.
async fn deliver_queue(downstream: &Downstream, queue: Vec<Pending>) -> Vec<(Pending, Outcome)> {
    let mut outcomes = Vec::new();
    for message in queue {
        match deliver(downstream, &message).await {
            Ok(()) => outcomes.push((message, Outcome::Sent)),
            Err(DownstreamError::Rejected(r)) if r.status == 400 => {
                tracing::error!(order.id = %message.order_id, rejection = %r, "message refused for good");
                outcomes.push((message, Outcome::Refused(r.to_string())));
            }
            Err(e) => {
                let retry_in = backoff(message.attempts);
                tracing::warn!(order.id = %message.order_id, error = %e, ?retry_in, "message not delivered, will retry");
                let error = e.to_string();
                outcomes.push((message, Outcome::Failed { error, retry_in }));
                break;
            }
        }
    }
    outcomes
}

async fn deliver(downstream: &Downstream, message: &Pending) -> Result<(), DownstreamError> {
    let unreadable = |e: serde_json::Error| DownstreamError::Transient {
        service: "outbox",
        detail: format!("unreadable message {}: {e}", message.id),
    };
    match message.kind {
        Kind::Event => {
            let event: OrderEvent =
                serde_json::from_value(message.payload.clone()).map_err(unreadable)?;
            downstream.pubsub.publish(&event).await
        }
        Kind::Notification => {
            let n: OrderNotification =
                serde_json::from_value(message.payload.clone()).map_err(unreadable)?;
            downstream
                .notification
                .notify(&n.key, n.order_id, n.customer_id, &n.template, &n.data)
                .await
                .map(|_| ())
        }
    }
}

/// 100 ms, doubling per attempt, at most [`MAX_BACKOFF`].
fn backoff(attempts: i32) -> Duration {
    let exp = attempts.clamp(0, 16) as u32;
    (Duration::from_millis(100) * 2u32.pow(exp)).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(3), Duration::from_millis(800));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
