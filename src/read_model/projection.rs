//! Writes an order's state into the read model. Every write carries the order
//! version and only ever moves a row forward, so replaying it is a no-op.

use super::part::push_part;
use super::{Author, StepRecord};
use crate::domain::{FieldChange, Order, OrderEvent, OrderNotification};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

/// An order's number and creation time, and its draft expiry once written.
#[derive(Debug, Clone, PartialEq)]
pub struct Numbered {
    pub number: String,
    pub created_at: DateTime<Utc>,
    /// `expires_at` of the order's row when an earlier attempt wrote it: the
    /// payment window the first run derived from configuration, kept by a replay.
    pub written_expiry: Option<Option<DateTime<Utc>>>,
}

/// The number and creation time of order `id`: those its first version was
/// written with (and the draft expiry written), else the next
/// `ORD-YYYYMMDD-NNNNNN` of the day of `now`, and `now`.
///
/// One statement. The counter row is locked only for it, and its commit does not
/// wait for the disk: the order's own write, which commits waiting for it, comes
/// later in the same log, so a number is durable before any order carries it. A
/// number lost to a crash leaves a gap, never a duplicate.
pub async fn order_number(pool: &PgPool, id: Uuid, now: DateTime<Utc>) -> sqlx::Result<Numbered> {
    type Row = (
        Option<String>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        Option<i64>,
    );
    let (existing, created_at, expires_at, n): Row = sqlx::query_as(
        "WITH existing AS (SELECT order_number, created_at, expires_at FROM orders WHERE id = $1),
         relaxed AS (SELECT set_config('synchronous_commit', 'off', true)),
         taken AS (
            INSERT INTO order_number_counters AS c (day, last_value)
            SELECT $2, 1 FROM relaxed WHERE NOT EXISTS (SELECT FROM existing)
            ON CONFLICT (day) DO UPDATE SET last_value = c.last_value + 1
            RETURNING last_value)
         SELECT (SELECT order_number FROM existing), (SELECT created_at FROM existing),
                (SELECT expires_at FROM existing), (SELECT last_value FROM taken)",
    )
    .bind(id)
    .bind(now.date_naive())
    .fetch_one(pool)
    .await?;
    match (existing, created_at, n) {
        (Some(number), Some(at), _) => Ok(Numbered {
            number,
            created_at: at,
            written_expiry: Some(expires_at),
        }),
        (_, _, Some(n)) => Ok(Numbered {
            number: format!("ORD-{}-{n:06}", now.format("%Y%m%d")),
            created_at: now,
            written_expiry: None,
        }),
        _ => Err(sqlx::Error::RowNotFound),
    }
}

/// Writes `order` at its version, with the events and the notification it emitted
/// at that version (into the outbox), the fields it changed (into the edit
/// history) and the saga steps that led to it, in one statement, so one round
/// trip and one commit. Returns false when the read model already holds this
/// version or a newer one; then only the steps are written.
///
/// The row's `document` is the whole order as its object holds it (the view the
/// API reads, plus what only the sagas need), so that a saga can adopt a version
/// its object never saw ([`order_state`](super::order_state)).
///
/// The order's row is upserted first (`written`, empty when the version is not
/// newer), then each other part ([`push_part`]). PostgreSQL runs every part of the
/// statement to the end, on one snapshot.
pub async fn project(
    pool: &PgPool,
    order: &Order,
    events: &[OrderEvent],
    notifications: &[OrderNotification],
    edits: (Author<'_>, &[FieldChange]),
    steps: &[StepRecord],
) -> sqlx::Result<bool> {
    let money = |m: crate::domain::Money| Decimal::from(m);
    let attention = order.attention.as_ref();
    let mut q = QueryBuilder::<Postgres>::new(
        "WITH written AS (INSERT INTO orders (id, order_number, customer_id, status,
            payment_status, currency, subtotal, discount_amount, tax_amount,
            shipping_amount, total_amount, captured_amount, refunded_amount,
            shipping_address, billing_address, notes, metadata, failure_code,
            failure_message, reservation_id, payment_id, fulfillment_id, version, document,
            created_at, updated_at, expires_at, cancelled_at, completed_at, attention_step,
            attention_code, attention_message, attention_since) ",
    );
    q.push_values([order], |mut b, order| {
        b.push_bind(order.id)
            .push_bind(&order.order_number)
            .push_bind(order.customer_id)
            .push_bind(order.status.as_str())
            .push_bind(order.payment_status.as_str())
            .push_bind(order.currency.as_str())
            .push_bind(money(order.subtotal))
            .push_bind(money(order.discount_amount))
            .push_bind(money(order.tax_amount))
            .push_bind(money(order.shipping_amount))
            .push_bind(money(order.total_amount))
            .push_bind(money(order.captured_amount))
            .push_bind(money(order.refunded_amount))
            .push_bind(&order.shipping_address)
            .push_bind(&order.billing_address)
            .push_bind(&order.notes)
            .push_bind(&order.metadata)
            .push_bind(order.failure.as_ref().map(|f| f.code.clone()))
            .push_bind(order.failure.as_ref().map(|f| f.message.clone()))
            .push_bind(&order.reservation_id)
            .push_bind(&order.payment_id)
            .push_bind(&order.fulfillment_id)
            .push_bind(order.version)
            .push_bind(sqlx::types::Json(order))
            .push_bind(order.created_at)
            .push_bind(order.updated_at)
            .push_bind(order.expires_at)
            .push_bind(order.cancelled_at)
            .push_bind(order.completed_at)
            .push_bind(attention.map(|a| a.step.clone()))
            .push_bind(attention.map(|a| a.code.clone()))
            .push_bind(attention.map(|a| a.message.clone()))
            .push_bind(attention.map(|a| a.since));
    });
    q.push(
        " ON CONFLICT (id) DO UPDATE SET
            status = EXCLUDED.status, payment_status = EXCLUDED.payment_status,
            subtotal = EXCLUDED.subtotal, discount_amount = EXCLUDED.discount_amount,
            tax_amount = EXCLUDED.tax_amount, shipping_amount = EXCLUDED.shipping_amount,
            total_amount = EXCLUDED.total_amount, captured_amount = EXCLUDED.captured_amount,
            refunded_amount = EXCLUDED.refunded_amount,
            shipping_address = EXCLUDED.shipping_address,
            billing_address = EXCLUDED.billing_address, notes = EXCLUDED.notes,
            metadata = EXCLUDED.metadata, failure_code = EXCLUDED.failure_code,
            failure_message = EXCLUDED.failure_message,
            reservation_id = EXCLUDED.reservation_id, payment_id = EXCLUDED.payment_id,
            fulfillment_id = EXCLUDED.fulfillment_id, version = EXCLUDED.version,
            document = EXCLUDED.document, updated_at = EXCLUDED.updated_at,
            expires_at = EXCLUDED.expires_at, cancelled_at = EXCLUDED.cancelled_at,
            completed_at = EXCLUDED.completed_at,
            attention_step = EXCLUDED.attention_step, attention_code = EXCLUDED.attention_code,
            attention_message = EXCLUDED.attention_message,
            attention_since = EXCLUDED.attention_since
         WHERE orders.version < EXCLUDED.version
         RETURNING 1)",
    );

    if !steps.is_empty() {
        q.push(", steps AS (");
        super::saga_steps::push_insert(&mut q, steps);
        q.push(")");
    }

    push_part(
        &mut q,
        "items",
        "INSERT INTO order_items (order_id, id, product_id, product_sku, product_name,
            warehouse_id, quantity, unit_price, discount_amount, tax_amount, total_price,
            cancelled_quantity, returned_quantity, refunded_quantity)",
        &order.items,
        |mut b, i| {
            b.push_bind(order.id)
                .push_bind(i.id)
                .push_bind(i.product_id)
                .push_bind(&i.product_sku)
                .push_bind(&i.product_name)
                .push_bind(i.warehouse_id)
                .push_bind(i.quantity)
                .push_bind(money(i.unit_price))
                .push_bind(money(i.discount_amount))
                .push_bind(money(i.tax_amount))
                .push_bind(money(i.total_price))
                .push_bind(i.cancelled_quantity)
                .push_bind(i.returned_quantity)
                .push_bind(i.refunded_quantity);
        },
        "ON CONFLICT (order_id, id) DO UPDATE SET quantity = EXCLUDED.quantity,
            discount_amount = EXCLUDED.discount_amount, tax_amount = EXCLUDED.tax_amount,
            total_price = EXCLUDED.total_price,
            cancelled_quantity = EXCLUDED.cancelled_quantity,
            returned_quantity = EXCLUDED.returned_quantity,
            refunded_quantity = EXCLUDED.refunded_quantity",
    );
    push_part(
        &mut q,
        "history",
        "INSERT INTO order_status_history (order_id, version, from_status, to_status, reason,
            actor, at)",
        &order.history,
        |mut b, h| {
            b.push_bind(order.id)
                .push_bind(h.version)
                .push_bind(h.from.map(|s| s.as_str()))
                .push_bind(h.to.as_str())
                .push_bind(&h.reason)
                .push_bind(&h.actor)
                .push_bind(h.at);
        },
        "ON CONFLICT DO NOTHING",
    );
    push_part(
        &mut q,
        "payments",
        "INSERT INTO payments (order_id, attempt, payment_id, method, amount, status,
            failure_code, at)",
        &order.payments,
        |mut b, p| {
            b.push_bind(order.id)
                .push_bind(p.attempt as i32)
                .push_bind(&p.payment_id)
                .push_bind(&p.method)
                .push_bind(money(p.amount))
                .push_bind(&p.status)
                .push_bind(&p.failure_code)
                .push_bind(p.at);
        },
        "ON CONFLICT DO NOTHING",
    );
    // Refunds made outside the payment service, recorded by an operator; they
    // have no refund id of the payment service.
    push_part(
        &mut q,
        "refunds",
        "INSERT INTO refunds (order_id, refund_key, payment_id, amount, reason, at)",
        &order.outside_refunds,
        |mut b, r| {
            b.push_bind(order.id)
                .push_bind(&r.key)
                .push_bind(&r.payment_id)
                .push_bind(money(r.amount))
                .push_bind(&r.reason)
                .push_bind(r.at);
        },
        "ON CONFLICT DO NOTHING",
    );
    super::returns::push_upsert(&mut q, order);
    super::after_delivery::push_upsert(&mut q, order);
    let (author, changes) = edits;
    super::edit_history::push_insert(&mut q, order, author, changes);
    let told = (order.id, order.version, order.updated_at);
    super::outbox::push_enqueue(&mut q, told, events, notifications);

    q.push(" SELECT count(*) FROM written");
    let written: i64 = q.build_query_scalar().fetch_one(pool).await?;
    Ok(written == 1)
}
