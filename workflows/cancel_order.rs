//! Cancelling an order before it ships, whole (`POST /orders/{id}/cancel`) or some
//! of its units (`POST /orders/{id}/cancel-items`).
//!
//! 1. `cancel_fulfillment` of those units (all of it for a whole cancel); refused
//!    (`already_shipped`): the cancel is refused and nothing changes.
//! 2. `release_stock` of those units (all that is left for a whole cancel).
//! 3. `refund_payment` of their share, with the shipping when they are the last
//!    units, once the order was paid.
//! 4. `update_read_model`: the units cancelled, and the order `cancelled` when none
//!    is left (`order.items_cancelled` / `order.cancelled` and the matching
//!    notification in the outbox).
//!
//! A release or a refund that is finally refused does not stop the cancel: the
//! order carries it (`attention`, `owed`) for an operator, and counts only the
//! money the payment service confirmed. Every step must finish, so a cancellation
//! through Restate never leaves a cancel half done.

use super::saga::{Saga, Step};
use super::undo::{apply, compensate};
use crate::domain::{Compensation, GiveBack, Order, OrderStatus, SkuQuantity};
use restate_sdk::prelude::*;

/// Whether the whole order or some of its units are cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Whole,
    Items,
}

/// Cancels the units of `plan`. A refusal of the fulfillment service comes back as
/// `Ok(Err(..))`, with the order unchanged.
/// A whole cancel also releases `quote_holds`, the reservations of the order's open
/// change quotes.
pub async fn cancel_units(
    saga: &mut Saga<'_, '_>,
    order: Order,
    plan: GiveBack,
    scope: Scope,
    quote_holds: Vec<String>,
) -> Step<Order> {
    // The downstream services take "no items" to mean "everything left".
    let skus = match scope {
        Scope::Whole => Vec::new(),
        Scope::Items => plan.skus(),
    };

    if let Some(fulfillment_id) = order.fulfillment_id.clone() {
        if let Err(refused) = cancel_fulfillment(saga, fulfillment_id, skus.clone()).await? {
            return Ok(Err(refused));
        }
    }

    // Run newest first: the stock goes back before the money.
    let (refund, clears) = order
        .refund_for(&plan)
        .and_then(|r| Ok((r, order.clears_for(&plan)?)))
        .map_err(|e| TerminalError::new(e.to_string()))?;
    // Across the payments, newest first (a change may have charged a second one).
    for (payment_id, amount) in order.refund_split(refund).into_iter().rev() {
        saga.on_rejection(Compensation::RefundPayment {
            payment_id,
            amount,
            return_id: None,
        });
    }
    let releases = match scope {
        // Everything: the create's reservation, the changes' and the open quotes'.
        Scope::Whole => {
            let mut all: Vec<String> = order.reservation_id.iter().cloned().collect();
            for id in order
                .holds
                .iter()
                .map(|h| &h.reservation_id)
                .chain(&quote_holds)
            {
                if !all.contains(id) {
                    all.push(id.clone());
                }
            }
            all.into_iter().map(|id| (id, Vec::new())).collect()
        }
        Scope::Items => order.release_plan(&skus),
    };
    for (reservation_id, items) in releases {
        saga.on_rejection(Compensation::ReleaseStock {
            reservation_id,
            items,
        });
    }
    let undone = compensate(saga).await?;

    let (topics, notify): (&'static [&'static str], _) = match (scope, plan.last) {
        (Scope::Whole, _) => (&["order.cancelled"], "order_cancelled"),
        (Scope::Items, false) => (&["order.items_cancelled"], "order_items_cancelled"),
        (Scope::Items, true) => (
            &["order.items_cancelled", "order.cancelled"],
            "order_items_cancelled",
        ),
    };
    let (actor, reason) = (saga.actor().to_owned(), saga.given_reason());
    let order = saga
        .commit(&order, topics, Some(notify), move |o, at| {
            apply(o, &undone, at)?;
            o.clear_owed(clears, at);
            match scope {
                Scope::Whole => o.holds.clear(),
                Scope::Items => o.take_holds(&skus),
            }
            o.record_cancel(&plan)?;
            if plan.last {
                o.transition(OrderStatus::Cancelled, reason, &actor, at)?;
            }
            Ok(())
        })
        .await?;
    Ok(Ok(order))
}

/// `cancel_fulfillment`: tells the fulfillment service not to ship `items` (all
/// when empty). It must finish once started, like a compensation.
async fn cancel_fulfillment(
    saga: &mut Saga<'_, '_>,
    fulfillment_id: String,
    items: Vec<SkuQuantity>,
) -> Step<()> {
    let fulfillment = saga.deps.downstream.fulfillment.clone();
    saga.compensation_step(
        "cancel_fulfillment",
        "create_fulfillment",
        move |key| async move { fulfillment.cancel(&key, &fulfillment_id, &items).await },
    )
    .await
}
