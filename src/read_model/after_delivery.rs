//! The exchanges and claims of each order, as the API shows them. Both are kept
//! in the order and written as parts of its write, like its returns.

use crate::domain::{Claim, Exchange, Order};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

/// Which of the two tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Exchanges,
    Claims,
}

impl Kind {
    /// The field that names one.
    pub fn id_field(self) -> &'static str {
        match self {
            Kind::Exchanges => "exchange_id",
            Kind::Claims => "claim_id",
        }
    }

    fn table(self) -> &'static str {
        match self {
            Kind::Exchanges => "exchanges",
            Kind::Claims => "claims",
        }
    }
}

/// One row: id, status, opened, closed, version and the document.
type Row<'q> = (
    Uuid,
    &'q str,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    i64,
    serde_json::Value,
);

fn push_rows<'q>(
    q: &mut QueryBuilder<'q, Postgres>,
    order: &'q Order,
    kind: Kind,
    rows: Vec<Row<'q>>,
) {
    let table = kind.table();
    super::part::push_part(
        q,
        table,
        &format!(
            "INSERT INTO {table} (id, order_id, status, opened_at, closed_at, version, document)"
        ),
        rows,
        |mut b, (id, status, opened, closed, version, document)| {
            b.push_bind(id)
                .push_bind(order.id)
                .push_bind(status)
                .push_bind(opened)
                .push_bind(closed)
                .push_bind(version)
                .push_bind(document);
        },
        &format!(
            "ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status,
                closed_at = EXCLUDED.closed_at, version = EXCLUDED.version,
                document = EXCLUDED.document
             WHERE {table}.version < EXCLUDED.version"
        ),
    );
}

/// Pushes the upsert of the order's exchanges and claims as parts of its write
/// (see [`super::project`]); a row only ever moves to a newer version.
pub(super) fn push_upsert<'q>(q: &mut QueryBuilder<'q, Postgres>, order: &'q Order) {
    let exchanges = order.exchanges.iter().map(|e: &Exchange| {
        let shown = e.view();
        (
            e.exchange_id,
            e.status.as_str(),
            e.requested_at,
            e.closed_at,
            e.version,
            shown,
        )
    });
    push_rows(q, order, Kind::Exchanges, exchanges.collect());
    let claims = order.claims.iter().map(|c: &Claim| {
        (
            c.claim_id,
            c.status.as_str(),
            c.opened_at,
            c.closed_at,
            c.version,
            serde_json::to_value(c).unwrap_or_default(),
        )
    });
    push_rows(q, order, Kind::Claims, claims.collect());
}

/// One exchange or claim of order `order_id`.
pub async fn get_one<T: DeserializeOwned + Send + Unpin + 'static>(
    pool: &PgPool,
    kind: Kind,
    order_id: Uuid,
    id: Uuid,
) -> sqlx::Result<Option<T>> {
    let sql = format!(
        "SELECT document FROM {} WHERE id = $1 AND order_id = $2",
        kind.table()
    );
    let row: Option<(sqlx::types::Json<T>,)> = sqlx::query_as(&sql)
        .bind(id)
        .bind(order_id)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|(d,)| d.0))
}

/// The order's exchanges or claims, oldest first; `None` when the order does
/// not exist.
pub async fn list<T: DeserializeOwned + Send + Unpin + 'static>(
    pool: &PgPool,
    kind: Kind,
    order_id: Uuid,
) -> sqlx::Result<Option<Vec<T>>> {
    if !super::order_exists(pool, order_id).await? {
        return Ok(None);
    }
    let sql = format!(
        "SELECT document FROM {} WHERE order_id = $1 ORDER BY opened_at, id",
        kind.table()
    );
    let rows: Vec<(sqlx::types::Json<T>,)> =
        sqlx::query_as(&sql).bind(order_id).fetch_all(pool).await?;
    Ok(Some(rows.into_iter().map(|(d,)| d.0).collect()))
}
