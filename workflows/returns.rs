//! Returns of a delivered order, and refunds without a return.
//!
//! Asking for a return (`POST /orders/{id}/returns`):
//! 1. `update_read_model`: the return `requested`, holding its units
//!    (`order.return_requested`, `return_requested`). The object then sets the timer
//!    that expires it; nothing waits in between, so the order takes other commands.
//!
//! Its parcel arrives (`.../receive`):
//! 1. `restock`: `POST /v1/restocks`; refused, it stays owed for an operator's
//!    retry.
//! 2. `refund_payment` of the units' share by the cumulative rule (no shipping).
//! 3. `update_read_model`: the return `refunded`, its units returned
//!    (`order.return_received`, `order.refunded`, `refund_issued`).
//!
//! It is rejected, or its parcel does not arrive in time: `update_read_model` only
//! (units of a received return stay returned: they were restocked).
//!
//! Refunding items without a return (`POST /orders/{id}/refund-items`):
//! 1. `refund_payment`; 2. `update_read_model` (`order.refunded`, `refund_issued`).
//!
//! Every step must finish once started. A refund the payment service finally
//! refuses leaves a received return `received`, with the refund owed and the order
//! parked for an operator.

use super::saga::{Saga, Step};
use super::Deps;
use crate::domain::{Compensation, GiveBack, Money, Order, Return, ReturnItem, ReturnStatus};
use crate::downstream::{Rejection, RestockLine};
use chrono::{DateTime, Utc};
use restate_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The settings a return request is judged and timed by. They are read from
/// configuration once per request and journaled with its clock
/// ([`Saga::now_with`]), so that a replay under another configuration keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnTerms {
    /// How long after delivery a return can be asked for.
    pub window: std::time::Duration,
    /// How long the return waits for its parcel.
    pub parcel_wait: std::time::Duration,
}

impl ReturnTerms {
    /// The terms configured now.
    pub fn of(deps: &Deps) -> Self {
        ReturnTerms {
            window: deps.return_window,
            parcel_wait: deps.return_parcel_wait,
        }
    }

    /// The window, as the order's rules take it.
    pub fn window(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.window).unwrap_or(chrono::Duration::days(30))
    }
}

/// Records return `return_id` of `items`, asked for at `at` under `terms`, as
/// `requested`.
pub async fn request_return(
    saga: &mut Saga<'_, '_>,
    order: Order,
    return_id: Uuid,
    items: Vec<ReturnItem>,
    (at, terms): (DateTime<Utc>, ReturnTerms),
) -> Result<Order, TerminalError> {
    let wait = chrono::Duration::from_std(terms.parcel_wait).unwrap_or(chrono::Duration::days(14));
    let reason = saga.given_reason();
    saga.commit(
        &order,
        &["order.return_requested"],
        Some("return_requested"),
        move |o, _| {
            let version = o.version;
            o.request_return(Return {
                return_id,
                order_id: o.id,
                status: ReturnStatus::Requested,
                items,
                refund_amount: None,
                reason,
                requested_at: at,
                received_at: None,
                refunded_at: None,
                closed_at: None,
                expires_at: at + wait,
                version,
            })
        },
    )
    .await
}

/// The parcel of return `return_id` arrived: restocks its units, refunds their
/// share and records both.
pub async fn receive_return(
    saga: &mut Saga<'_, '_>,
    order: Order,
    return_id: Uuid,
    plan: GiveBack,
) -> Result<Order, TerminalError> {
    let restock_refused = restock(saga, &order, return_id).await?.err();
    // A refused restock stays owed, for an operator's retry to ask again.
    let park_restock = move |o: &mut Order, at: DateTime<Utc>| {
        if let Some(refused) = &restock_refused {
            o.owed.push(Compensation::Restock { return_id });
            o.park("restock", "step_refused", &refused.to_string(), at);
        }
    };
    let (amount, clears) = order
        .refund_for(&plan)
        .and_then(|r| Ok((r, order.clears_for(&plan)?)))
        .map_err(|e| TerminalError::new(e.to_string()))?;
    match refund(saga, &order, amount).await? {
        Ok(refunded) => {
            saga.commit(
                &order,
                &["order.return_received", "order.refunded"],
                Some("refund_issued"),
                move |o, at| {
                    park_restock(o, at);
                    o.clear_owed(clears, at);
                    o.record_return_refunded(return_id, refunded, at)
                },
            )
            .await
        }
        Err(refused) => {
            saga.commit(&order, &["order.return_received"], None, move |o, at| {
                park_restock(o, at);
                o.clear_owed(clears, at);
                o.record_return_received(return_id, at)?;
                owe_refund(o, return_id, amount, &refused, at);
                Ok(())
            })
            .await
        }
    }
}

/// Closes return `return_id` as `status` (`rejected` or `expired`): nothing is
/// refunded; a requested return's units are free again, a received one's stay
/// returned.
pub async fn close_return(
    saga: &mut Saga<'_, '_>,
    order: Order,
    return_id: Uuid,
    status: ReturnStatus,
) -> Result<Order, TerminalError> {
    let (topic, template): (&'static [&'static str], _) = match status {
        ReturnStatus::Expired => (&["order.return_expired"], "return_expired"),
        _ => (&["order.return_rejected"], "return_rejected"),
    };
    saga.commit(&order, topic, Some(template), move |o, at| {
        o.close_return(return_id, status, at)
    })
    .await
}

/// Refunds the units of `plan` without a return. A refund the payment service
/// refuses changes nothing and comes back as `Ok(Err(..))`.
pub async fn refund_items(saga: &mut Saga<'_, '_>, order: Order, plan: GiveBack) -> Step<Order> {
    let (amount, clears) = order
        .refund_for(&plan)
        .and_then(|r| Ok((r, order.clears_for(&plan)?)))
        .map_err(|e| TerminalError::new(e.to_string()))?;
    let refunded = match refund(saga, &order, amount).await? {
        Ok(refunded) => refunded,
        Err(refused) => return Ok(Err(refused)),
    };
    let order = saga
        .commit(
            &order,
            &["order.refunded"],
            Some("refund_issued"),
            move |o, at| {
                o.clear_owed(clears, at);
                o.record_items_refunded(&plan, refunded, at)
            },
        )
        .await?;
    Ok(Ok(order))
}

/// `restock`: puts the units of return (or exchange) `return_id` back on sale. A refusal is for
/// the order to carry; the refund is due either way. An operator's retry asks
/// again the same way.
pub async fn restock(saga: &mut Saga<'_, '_>, order: &Order, return_id: Uuid) -> Step<String> {
    let warehouse = saga.deps.downstream.warehouse.clone();
    let lines: Vec<RestockLine> = order
        .restocked_units(return_id)
        .iter()
        .filter_map(|u| {
            let item = order.items.iter().find(|i| i.id == u.item_id)?;
            Some(RestockLine {
                sku: item.product_sku.clone(),
                warehouse_id: item.warehouse_id,
                quantity: u.quantity,
            })
        })
        .collect();
    let order_id = order.id;
    saga.step("restock", move |key| async move {
        warehouse.restock(&key, order_id, return_id, &lines).await
    })
    .await
}

/// `refund_payment` of `amount`, as the payment service confirmed it. Nothing is
/// called for nothing.
async fn refund(saga: &mut Saga<'_, '_>, order: &Order, amount: Money) -> Step<Money> {
    let Some(payment_id) = order.payment_id.clone().filter(|_| amount > Money::ZERO) else {
        return Ok(Ok(Money::ZERO));
    };
    let payment = saga.deps.downstream.payment.clone();
    let reason = saga.reason().to_owned();
    saga.step("refund_payment", move |key| async move {
        let receipt = payment.refund(&key, &payment_id, amount, &reason).await?;
        Ok(receipt.amount)
    })
    .await
}

/// The refund of return `return_id` that the payment service refused stays owed,
/// and parks the order; an operator's retry refunds the return.
fn owe_refund(
    order: &mut Order,
    return_id: Uuid,
    amount: Money,
    refused: &Rejection,
    at: DateTime<Utc>,
) {
    if let Some(payment_id) = order.payment_id.clone() {
        order.owed.push(Compensation::RefundPayment {
            payment_id,
            amount,
            return_id: Some(return_id),
        });
    }
    order.park("refund_payment", "step_refused", &refused.to_string(), at);
}
