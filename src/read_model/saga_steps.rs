//! The per-order record of saga steps that operators read.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// The outcome of one attempt at one saga step.
#[derive(Debug, Clone)]
pub struct StepRecord<'a> {
    pub order_id: Uuid,
    pub saga: &'a str,
    pub seq: i32,
    pub step: &'a str,
    /// `succeeded`, `rejected` or `failed` (a transient error: it will be retried).
    pub outcome: &'a str,
    pub error: Option<String>,
    pub compensates: Option<&'a str>,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
}

/// Adds one attempt to the step's row. Each attempt runs this once at most, so the
/// count is what the step took, give or take an attempt cut off by a crash.
pub async fn record_step(pool: &PgPool, r: &StepRecord<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO saga_steps (order_id, saga, seq, step, attempts, outcome, last_error,
            compensates, started_at, ended_at)
         VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $8, $9)
         ON CONFLICT (order_id, saga, seq) DO UPDATE SET
            attempts = saga_steps.attempts + 1, outcome = EXCLUDED.outcome,
            last_error = COALESCE(EXCLUDED.last_error, saga_steps.last_error),
            ended_at = EXCLUDED.ended_at",
    )
    .bind(r.order_id)
    .bind(r.saga)
    .bind(r.seq)
    .bind(r.step)
    .bind(r.outcome)
    .bind(&r.error)
    .bind(r.compensates)
    .bind(r.started_at)
    .bind(r.ended_at)
    .execute(pool)
    .await?;
    Ok(())
}
