//! What the operator API reads: the saga steps of an order, orders parked for an
//! operator, drafts whose auto-cancel is overdue.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use std::collections::HashMap;
use utoipa::ToSchema;
use uuid::Uuid;

/// One step of one saga, as recorded.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct SagaStepRow {
    #[serde(skip)]
    pub saga: String,
    #[serde(skip)]
    pub invocation_id: Option<String>,
    pub seq: i32,
    pub step: String,
    pub attempts: i32,
    /// `succeeded`, `rejected` or `failed` (the last attempt failed; it is retried).
    pub outcome: String,
    pub last_error: Option<String>,
    /// The step this one undoes, for a compensation.
    pub compensates: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

const STEP_COLUMNS: &str = "saga, invocation_id, seq, step, attempts, outcome, last_error,
    compensates, started_at, ended_at";

/// The steps of every saga of the order: sagas in the order they started, each
/// saga's steps in order.
pub async fn saga_steps_of(pool: &PgPool, order_id: Uuid) -> sqlx::Result<Vec<SagaStepRow>> {
    sqlx::query_as(&format!(
        "SELECT {STEP_COLUMNS} FROM saga_steps WHERE order_id = $1
         ORDER BY min(started_at) OVER (PARTITION BY saga), saga, seq"
    ))
    .bind(order_id)
    .fetch_all(pool)
    .await
}

/// The newest step the invocation `id` recorded.
pub async fn last_step_of_invocation(pool: &PgPool, id: &str) -> sqlx::Result<Option<SagaStepRow>> {
    sqlx::query_as(&format!(
        "SELECT {STEP_COLUMNS} FROM saga_steps WHERE invocation_id = $1
         ORDER BY seq DESC LIMIT 1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// An order waiting for an operator after a refused step.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Parked {
    pub order_id: Uuid,
    pub order_number: String,
    pub status: String,
    pub step: String,
    pub message: String,
    pub since: DateTime<Utc>,
}

/// Every order parked for an operator, oldest first.
pub async fn parked_orders(pool: &PgPool) -> sqlx::Result<Vec<Parked>> {
    sqlx::query_as(
        "SELECT id AS order_id, order_number, status, attention_step AS step,
                COALESCE(attention_message, attention_code) AS message,
                attention_since AS since
         FROM orders WHERE attention_since IS NOT NULL ORDER BY attention_since",
    )
    .fetch_all(pool)
    .await
}

/// A change that waits for an operator, runs for too long, or still waits for its
/// payment after its deadline.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StuckChange {
    pub order_id: Uuid,
    pub change_id: Uuid,
    pub status: String,
    pub step: Option<String>,
    pub message: Option<String>,
    pub since: DateTime<Utc>,
}

/// Changes `needs_attention`, `applying` since before `cutoff`, or
/// `awaiting_payment` with a `pay_by` before `cutoff` (its timer did not act).
pub async fn stuck_changes(pool: &PgPool, cutoff: DateTime<Utc>) -> sqlx::Result<Vec<StuckChange>> {
    sqlx::query_as(
        "SELECT order_id, change_id, status,
                COALESCE(document->'attention'->>'step', CASE status
                    WHEN 'awaiting_payment' THEN 'change_payment_deadline'
                    ELSE 'apply_change' END) AS step,
                COALESCE(document->'attention'->>'message', CASE status
                    WHEN 'awaiting_payment' THEN 'the payment deadline has not acted'
                    WHEN 'applying' THEN 'the change has not come to rest'
                    END) AS message,
                CASE status
                    WHEN 'needs_attention' THEN COALESCE(
                        (document->'attention'->>'since')::timestamptz, created_at)
                    WHEN 'awaiting_payment' THEN (document->'settlement'->>'pay_by')::timestamptz
                    ELSE created_at END AS since
         FROM order_changes
         WHERE status = 'needs_attention'
            OR (status = 'applying' AND created_at < $1)
            OR (status = 'awaiting_payment'
                AND (document->'settlement'->>'pay_by')::timestamptz < $1)
         ORDER BY created_at",
    )
    .bind(cutoff)
    .fetch_all(pool)
    .await
}

/// An exchange or claim that waits for an operator (a refund it owes was
/// refused: `parked`), or an exchange whose refused settlement has waited for
/// staff since before the cutoff.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StuckResource {
    /// `exchange` or `claim`.
    pub kind: String,
    pub order_id: Uuid,
    pub id: Uuid,
    pub step: Option<String>,
    pub message: Option<String>,
    pub since: DateTime<Utc>,
    pub parked: bool,
}

/// Exchanges and claims that wait for someone (see [`StuckResource`]).
pub async fn stuck_resources(
    pool: &PgPool,
    cutoff: DateTime<Utc>,
) -> sqlx::Result<Vec<StuckResource>> {
    sqlx::query_as(
        "SELECT 'exchange' AS kind, order_id, id,
                COALESCE(document->'attention'->>'step', 'receive_exchange') AS step,
                COALESCE(document->'attention'->>'message',
                         document->'failure'->>'message') AS message,
                COALESCE((document->'attention'->>'since')::timestamptz,
                         (document->>'received_at')::timestamptz, opened_at) AS since,
                jsonb_typeof(document->'attention') = 'object' AS parked
         FROM exchanges
         WHERE jsonb_typeof(document->'attention') = 'object'
            OR (status = 'received' AND (document->>'received_at')::timestamptz < $1)
         UNION ALL
         SELECT 'claim', order_id, id, document->'attention'->>'step',
                document->'attention'->>'message',
                (document->'attention'->>'since')::timestamptz, true
         FROM claims
         WHERE jsonb_typeof(document->'attention') = 'object'
         ORDER BY since",
    )
    .bind(cutoff)
    .fetch_all(pool)
    .await
}

/// A draft still waiting for its payment after its auto-cancel was due.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OverdueDraft {
    pub order_id: Uuid,
    pub order_number: String,
    pub status: String,
    pub since: DateTime<Utc>,
}

/// Drafts whose auto-cancel was due before `cutoff`.
pub async fn overdue_drafts(
    pool: &PgPool,
    cutoff: DateTime<Utc>,
) -> sqlx::Result<Vec<OverdueDraft>> {
    sqlx::query_as(
        "SELECT id AS order_id, order_number, status, expires_at AS since
         FROM orders WHERE status = 'draft' AND expires_at < $1 ORDER BY expires_at",
    )
    .bind(cutoff)
    .fetch_all(pool)
    .await
}

/// The number and status of each order of `ids` the read model has.
pub async fn numbers_and_statuses(
    pool: &PgPool,
    ids: &[Uuid],
) -> sqlx::Result<HashMap<Uuid, (String, String)>> {
    let rows: Vec<(Uuid, String, String)> =
        sqlx::query_as("SELECT id, order_number, status FROM orders WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(|(id, n, s)| (id, (n, s))).collect())
}
