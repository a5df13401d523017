//! The per-order record of saga steps that operators read.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

/// One attempt at one saga step, or its final outcome.
#[derive(Debug, Clone)]
pub struct StepRecord {
    pub order_id: Uuid,
    pub saga: String,
    /// The Restate invocation that ran the saga.
    pub invocation_id: String,
    pub seq: i32,
    pub step: &'static str,
    /// `succeeded`, `rejected` or `failed` (a transient error: it will be retried).
    pub outcome: &'static str,
    pub error: Option<String>,
    pub compensates: Option<&'static str>,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
}

/// Adds each record to its step's row, counting one attempt per record. A record
/// written again (same step, same end time) counts nothing, so replays are harmless.
pub async fn record_steps<'e>(db: impl PgExecutor<'e>, records: &[StepRecord]) -> sqlx::Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let mut q = QueryBuilder::<Postgres>::new("");
    push_insert(&mut q, records);
    q.build().execute(db).await?;
    Ok(())
}

/// Pushes the statement of [`record_steps`] for `records` (not empty) onto `q`.
pub(super) fn push_insert<'q>(q: &mut QueryBuilder<'q, Postgres>, records: &'q [StepRecord]) {
    q.push(
        "INSERT INTO saga_steps (order_id, saga, invocation_id, seq, step, attempts, outcome,
            last_error, compensates, started_at, ended_at) ",
    );
    q.push_values(records, |mut b, r| {
        b.push_bind(r.order_id)
            .push_bind(&r.saga)
            .push_bind(&r.invocation_id)
            .push_bind(r.seq)
            .push_bind(r.step)
            .push_bind(1)
            .push_bind(r.outcome)
            .push_bind(&r.error)
            .push_bind(r.compensates)
            .push_bind(r.started_at)
            .push_bind(r.ended_at);
    });
    q.push(
        " ON CONFLICT (order_id, saga, seq) DO UPDATE SET
            attempts = saga_steps.attempts
                + CASE WHEN saga_steps.ended_at = EXCLUDED.ended_at THEN 0 ELSE 1 END,
            outcome = EXCLUDED.outcome,
            last_error = COALESCE(EXCLUDED.last_error, saga_steps.last_error),
            ended_at = EXCLUDED.ended_at",
    );
}
