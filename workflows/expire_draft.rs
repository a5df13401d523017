//! Auto-cancel of a draft that was not paid in time, fired by a durable timer.
//!
//! 1. `release_stock`; refused: the order is parked for an operator.
//! 2. `update_read_model`: cancelled (`order.cancelled`, `order_cancelled`).

use super::order::OrderObjectClient;
use super::saga::{apply, Saga, Undone};
use super::steps::release_draft_stock;
use crate::domain::{Compensation, Order, OrderStatus};
use restate_sdk::prelude::*;
use std::time::Duration;

/// Schedules the expiry of this draft at its `expires_at` (the earlier of its
/// payment window and its reservation's expiry): a delayed call to the order's own
/// object, kept by Restate, so it fires even if every process restarts meanwhile.
pub fn schedule(ctx: &ObjectContext<'_>, order: &Order) {
    let deadline = order.expires_at.unwrap_or(order.updated_at);
    // Measured from the commit's journaled instant, so a replay schedules the same.
    let after = (deadline - order.updated_at)
        .to_std()
        .unwrap_or(Duration::ZERO);
    ctx.object_client::<OrderObjectClient>(ctx.key())
        .expire_draft()
        .send_after(after);
}

/// Cancels `order`, an unpaid draft.
pub async fn expire_draft(saga: &mut Saga<'_, '_>, order: Order) -> Result<Order, TerminalError> {
    let mut undone = Vec::new();
    if let Some(reservation_id) = order.reservation_id.clone() {
        undone.push(match release_draft_stock(saga, &reservation_id).await? {
            Ok(u) => u,
            Err(refused) => Undone::Refused(Compensation::ReleaseStock { reservation_id }, refused),
        });
    }
    saga.commit(
        &order,
        &["order.cancelled"],
        Some("order_cancelled"),
        move |o, at| {
            apply(o, &undone, at)?;
            let reason = "payment not received in time".to_owned();
            o.transition(OrderStatus::Cancelled, Some(reason), "system", at)
        },
    )
    .await
}
