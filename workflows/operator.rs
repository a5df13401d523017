//! What an operator does to an order parked after a refused step.
//!
//! Retrying it (`POST /ops/orders/{id}/retry`, once nothing of the order is
//! backing off or paused):
//! 1. every compensation the order owes, oldest first (`release_stock`,
//!    `refund_payment`, `cancel_fulfillment`), under a key of this retry;
//! 2. `update_read_model`: what they gave back is counted; one refused again stays
//!    owed and keeps the order parked, with the new answer.
//!
//! Retrying also asks again a restock the warehouse refused.
//!
//! Resolving it by hand (`POST /ops/orders/{id}/resolve`): `update_read_model`
//! only, the owed compensations dropped with the operator's reason; a refund the
//! operator made by other means (`refunded_outside`) is counted
//! (`order.refunded`), and each return whose refund was owed is closed.

use super::saga::Saga;
use super::undo::{apply, compensate, Undone};
use crate::domain::{Money, Order};
use restate_sdk::prelude::*;

/// Runs again what `order` owes and records the outcome.
pub async fn retry_owed(saga: &mut Saga<'_, '_>, order: Order) -> Result<Order, TerminalError> {
    saga.begin_with(&order);
    // The stack runs newest first: push the oldest last.
    for c in order.owed.iter().rev() {
        saga.on_rejection(c.clone());
    }
    let undone = compensate(saga).await?;
    let refunded = undone.iter().any(|u| {
        matches!(
            u,
            Undone::Refunded(_) | Undone::RefundedOn { .. } | Undone::ReturnRefunded(..)
        )
    });
    let (topics, notify): (&'static [&'static str], _) = match refunded {
        true => (&["order.refunded"], Some("refund_issued")),
        false => (&[], None),
    };
    saga.commit(&order, topics, notify, move |o, at| {
        // What is refused again comes back owed, and parks the order again.
        o.drop_owed(|_| true);
        apply(o, &undone, at)
    })
    .await
}

/// Drops what `order` owes and its need for an operator, counting
/// `refunded_outside`, at most the refunds owed, as refunded by other means.
pub async fn resolve(
    saga: &mut Saga<'_, '_>,
    order: Order,
    refunded_outside: Option<Money>,
) -> Result<Order, TerminalError> {
    let topics: &'static [&'static str] = match refunded_outside > Some(Money::ZERO) {
        true => &["order.refunded"],
        false => &[],
    };
    let reason = saga.given_reason();
    saga.commit(&order, topics, None, move |o, at| {
        o.resolve_owed(refunded_outside, reason, at)
    })
    .await
}
