//! The PostgreSQL read model: written by the sagas, read by every query endpoint.

mod after_delivery;
mod analytics;
mod changes;
mod edit_history;
mod idempotency;
mod operators;
pub mod outbox;
mod part;
mod projection;
mod queries;
mod returns;
mod saga_steps;

pub use after_delivery::{get_one, list, Kind};
pub use analytics::{
    order_analytics, Analytics, CurrencyFigures, StatusCounts, Window, MAX_WINDOW_DAYS,
};
pub use changes::{
    ask_cancel, cancel_asked, get_change, get_quote, get_request, list_changes, list_quotes,
    list_requests, owed, save_change, save_quote, save_request, Told,
};
pub use edit_history::{edit_history, Author, EditEntry};
pub use idempotency::{claim_key, store_response, Claim};
pub use operators::{
    last_step_of_invocation, numbers_and_statuses, overdue_drafts, parked_orders, saga_steps_of,
    stuck_changes, stuck_resources, OverdueDraft, Parked, SagaStepRow, StuckChange, StuckResource,
};
pub use projection::{order_number, project, Numbered};
pub use queries::{
    get_order, get_order_by_number, list_orders, order_state, status_history, Cursor, ListFilter,
    OrderPage, StatusHistoryEntry,
};
pub use returns::{get_return, list_returns};
pub use saga_steps::{record_steps, StepRecord};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::str::FromStr;
use std::time::Duration;

/// True for a database error that will not pass by retrying: bad data (SQLSTATE
/// class 22) or a broken constraint (class 23). The API is meant to refuse such
/// input first; a saga that meets one anyway must not retry it for ever.
pub fn is_permanent(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(e) => e
            .code()
            .is_some_and(|c| c.starts_with("22") || c.starts_with("23")),
        _ => false,
    }
}

/// Whether the read model has the order `id`.
async fn order_exists(pool: &PgPool, id: uuid::Uuid) -> sqlx::Result<bool> {
    let version: Option<i64> = sqlx::query_scalar("SELECT version FROM orders WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(version.is_some())
}

/// Opens a pool on `dsn`.
pub async fn connect(dsn: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(dsn)?;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await?;
    Ok(pool)
}

/// Applies the migrations in `migrations/` (embedded at build time).
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::migrate!("./migrations").run(pool).await?;
    Ok(())
}
