//! Writes an order's state into the read model. Every write carries the order
//! version and only ever moves a row forward, so replaying it is a no-op.

use super::{Author, StepRecord};
use crate::domain::{FieldChange, Order, OrderEvent, OrderNotification};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

/// The number and creation time already given to the order, if its first version
/// was written.
pub async fn existing_order_number(
    pool: &PgPool,
    id: Uuid,
) -> sqlx::Result<Option<(String, DateTime<Utc>)>> {
    sqlx::query_as("SELECT order_number, created_at FROM orders WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Takes the next `ORD-YYYYMMDD-NNNNNN` of `day`. The counter row is locked only for
/// this one statement; a number lost to a crash leaves a gap, never a duplicate.
pub async fn allocate_order_number(pool: &PgPool, day: NaiveDate) -> sqlx::Result<String> {
    let n: i64 = sqlx::query_scalar(
        "INSERT INTO order_number_counters (day, last_value) VALUES ($1, 1)
         ON CONFLICT (day) DO UPDATE SET last_value = order_number_counters.last_value + 1
         RETURNING last_value",
    )
    .bind(day)
    .fetch_one(pool)
    .await?;
    Ok(format!("ORD-{}-{n:06}", day.format("%Y%m%d")))
}

/// Writes `order` at its version, with the events and the notification it emitted
/// at that version (into the outbox), the fields it changed (into the edit
/// history), all in one transaction, and the saga steps that led to it. Returns false when the read model already holds this version or
/// a newer one.
pub async fn project(
    pool: &PgPool,
    order: &Order,
    events: &[OrderEvent],
    notification: Option<&OrderNotification>,
    edits: (Author<'_>, &[FieldChange]),
    steps: &[StepRecord],
) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    super::record_steps(&mut *tx, steps).await?;
    let money = |m: crate::domain::Money| Decimal::from(m);
    let document = serde_json::to_value(order.view()).expect("order view serializes");
    let attention = order.attention.as_ref();
    let written = sqlx::query(
        "INSERT INTO orders (id, order_number, customer_id, status, payment_status, currency,
            subtotal, discount_amount, tax_amount, shipping_amount, total_amount,
            captured_amount, refunded_amount, shipping_address, billing_address, notes,
            metadata, failure_code, failure_message, reservation_id, payment_id,
            fulfillment_id, version, document, created_at, updated_at, expires_at,
            cancelled_at, completed_at, attention_step, attention_code, attention_message,
            attention_since)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,
            $21,$22,$23,$24,$25,$26,$27,$28,$29,$30,$31,$32,$33)
         ON CONFLICT (id) DO UPDATE SET
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
         WHERE orders.version < EXCLUDED.version",
    )
    .bind(order.id)
    .bind(&order.order_number)
    .bind(order.customer_id)
    .bind(order.status.as_str())
    .bind(order.payment_status.as_str())
    .bind(order.currency.as_str())
    .bind(money(order.subtotal))
    .bind(money(order.discount_amount))
    .bind(money(order.tax_amount))
    .bind(money(order.shipping_amount))
    .bind(money(order.total_amount))
    .bind(money(order.captured_amount))
    .bind(money(order.refunded_amount))
    .bind(&order.shipping_address)
    .bind(&order.billing_address)
    .bind(&order.notes)
    .bind(&order.metadata)
    .bind(order.failure.as_ref().map(|f| f.code.clone()))
    .bind(order.failure.as_ref().map(|f| f.message.clone()))
    .bind(&order.reservation_id)
    .bind(&order.payment_id)
    .bind(&order.fulfillment_id)
    .bind(order.version)
    .bind(document)
    .bind(order.created_at)
    .bind(order.updated_at)
    .bind(order.expires_at)
    .bind(order.cancelled_at)
    .bind(order.completed_at)
    .bind(attention.map(|a| a.step.clone()))
    .bind(attention.map(|a| a.code.clone()))
    .bind(attention.map(|a| a.message.clone()))
    .bind(attention.map(|a| a.since))
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !written {
        tx.commit().await?;
        return Ok(false);
    }

    let mut items = QueryBuilder::<Postgres>::new(
        "INSERT INTO order_items (order_id, id, product_id, product_sku, product_name,
            warehouse_id, quantity, unit_price, discount_amount, tax_amount, total_price,
            cancelled_quantity, returned_quantity, refunded_quantity) ",
    );
    items.push_values(&order.items, |mut b, i| {
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
    });
    items.push(
        " ON CONFLICT (order_id, id) DO UPDATE SET quantity = EXCLUDED.quantity,
            discount_amount = EXCLUDED.discount_amount, tax_amount = EXCLUDED.tax_amount,
            total_price = EXCLUDED.total_price,
            cancelled_quantity = EXCLUDED.cancelled_quantity,
            returned_quantity = EXCLUDED.returned_quantity,
            refunded_quantity = EXCLUDED.refunded_quantity",
    );
    items.build().execute(&mut *tx).await?;

    if !order.history.is_empty() {
        let mut history = QueryBuilder::<Postgres>::new(
            "INSERT INTO order_status_history (order_id, version, from_status, to_status,
                reason, actor, at) ",
        );
        history.push_values(&order.history, |mut b, h| {
            b.push_bind(order.id)
                .push_bind(h.version)
                .push_bind(h.from.map(|s| s.as_str()))
                .push_bind(h.to.as_str())
                .push_bind(&h.reason)
                .push_bind(&h.actor)
                .push_bind(h.at);
        });
        history.push(" ON CONFLICT DO NOTHING");
        history.build().execute(&mut *tx).await?;
    }

    if !order.payments.is_empty() {
        let mut payments = QueryBuilder::<Postgres>::new(
            "INSERT INTO payments (order_id, attempt, payment_id, method, amount, status,
                failure_code, at) ",
        );
        payments.push_values(&order.payments, |mut b, p| {
            b.push_bind(order.id)
                .push_bind(p.attempt as i32)
                .push_bind(&p.payment_id)
                .push_bind(&p.method)
                .push_bind(money(p.amount))
                .push_bind(&p.status)
                .push_bind(&p.failure_code)
                .push_bind(p.at);
        });
        payments.push(" ON CONFLICT DO NOTHING");
        payments.build().execute(&mut *tx).await?;
    }

    super::returns::record(&mut tx, order).await?;
    let (author, changes) = edits;
    super::edit_history::record(
        &mut tx,
        order.id,
        order.version,
        order.updated_at,
        author,
        changes,
    )
    .await?;
    super::outbox::enqueue(&mut tx, order, events, notification).await?;

    tx.commit().await?;
    Ok(true)
}
