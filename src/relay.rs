//! Delivers the outbox: each order's events to the bus and its notifications to the
//! customer, in the order they were written, outside any saga. Every replica runs a
//! relay; an advisory lock per (order, kind) queue keeps two from delivering the same
//! queue at once, so order is kept per order while different orders go in parallel.

use crate::domain::{OrderEvent, OrderNotification};
use crate::downstream::{Downstream, DownstreamError};
use crate::read_model::outbox::{self, Kind, Pending};
use sqlx::PgPool;
use std::time::Duration;
use tokio::task::JoinSet;
use uuid::Uuid;

/// How often an idle relay looks for work.
const IDLE_POLL: Duration = Duration::from_millis(50);
/// The longest wait between two attempts at one message.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Runs until `stop` completes, delivering up to `parallel` queues at once (each
/// holds a database connection while it delivers).
pub async fn run(
    db: PgPool,
    downstream: Downstream,
    parallel: u32,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    loop {
        let busy = match deliver_due(&db, &downstream, parallel.max(1)).await {
            Ok(queues) => queues > 0,
            Err(e) => {
                tracing::warn!(error = %e, "outbox relay could not read the outbox");
                false
            }
        };
        let pause = if busy { Duration::ZERO } else { IDLE_POLL };
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Delivers what is due in up to `parallel` queues; returns how many.
async fn deliver_due(db: &PgPool, downstream: &Downstream, parallel: u32) -> sqlx::Result<usize> {
    let queues = outbox::due_queues(db, parallel.into()).await?;
    let count = queues.len();
    let mut tasks = JoinSet::new();
    for (order_id, kind) in queues {
        let (db, downstream) = (db.clone(), downstream.clone());
        tasks.spawn(async move { deliver_queue(&db, &downstream, order_id, kind).await });
    }
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "outbox queue not delivered");
        }
    }
    Ok(count)
}

/// Delivers one order's queue of `kind`, oldest first, stopping at the first message
/// that fails for now (it keeps its place, so later ones never overtake it).
async fn deliver_queue(
    db: &PgPool,
    downstream: &Downstream,
    order_id: Uuid,
    kind: Kind,
) -> sqlx::Result<()> {
    let mut tx = db.begin().await?;
    // Losing the record of a delivery to a crash only means delivering it again
    // (same id, dropped downstream), so this commit need not wait for the disk.
    sqlx::query("SET LOCAL synchronous_commit TO OFF")
        .execute(&mut *tx)
        .await?;
    let Some(queue) = outbox::lock_queue(&mut tx, order_id, kind).await? else {
        return Ok(());
    };
    let mut sent = Vec::new();
    for message in queue {
        if !message.due {
            break;
        }
        match deliver(downstream, &message).await {
            Ok(()) => sent.push(message.id),
            Err(DownstreamError::Rejected(r)) => {
                // Refused for good: kept with the answer for operators; the queue
                // goes on, since no retry can deliver it.
                tracing::error!(order.id = %order_id, rejection = %r, "message refused");
                outbox::mark_failed(&mut tx, message.id, &r.to_string(), None).await?;
            }
            Err(e) => {
                let retry_in = backoff(message.attempts);
                tracing::warn!(order.id = %order_id, error = %e, ?retry_in, "message not delivered, will retry");
                outbox::mark_failed(&mut tx, message.id, &e.to_string(), Some(retry_in)).await?;
                break;
            }
        }
    }
    outbox::mark_sent(&mut tx, &sent).await?;
    tx.commit().await
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
