//! `Idempotency-Key` of mutating API calls.

use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// What a key says about a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// First use (or a repeat whose first use has not rested yet): go on with
    /// `order_id`.
    Proceed { order_id: Uuid },
    /// A repeat of a request that already has its answer.
    Replay { status: u16, body: Value },
    /// The key was first used with another request.
    Reused,
}

/// Records `key` for `scope` with the request's hash, or reads what it already says.
pub async fn claim_key(
    pool: &PgPool,
    scope: &str,
    key: &str,
    request_hash: &str,
    order_id: Uuid,
) -> sqlx::Result<Claim> {
    sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, request_hash, order_id)
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(scope)
    .bind(key)
    .bind(request_hash)
    .bind(order_id)
    .execute(pool)
    .await?;
    let (hash, order_id, status, body): (String, Uuid, Option<i32>, Option<Value>) =
        sqlx::query_as(
            "SELECT request_hash, order_id, response_status, response_body
         FROM idempotency_keys WHERE scope = $1 AND key = $2",
        )
        .bind(scope)
        .bind(key)
        .fetch_one(pool)
        .await?;
    Ok(match (hash == request_hash, status, body) {
        (false, _, _) => Claim::Reused,
        (true, Some(status), Some(body)) => Claim::Replay {
            status: status as u16,
            body,
        },
        (true, _, _) => Claim::Proceed { order_id },
    })
}

/// Keeps the first final answer given under `key`; later answers do not replace it.
pub async fn store_response(
    pool: &PgPool,
    scope: &str,
    key: &str,
    status: u16,
    body: &Value,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE idempotency_keys SET response_status = $3, response_body = $4
         WHERE scope = $1 AND key = $2 AND response_status IS NULL",
    )
    .bind(scope)
    .bind(key)
    .bind(status as i32)
    .bind(body)
    .execute(pool)
    .await?;
    Ok(())
}
