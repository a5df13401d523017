//! Auto-cancel of a draft that was not paid in time, fired by a durable timer.
//!
//! 1. `release_stock`; refused: the order is parked for an operator.
//! 2. `update_read_model`: cancelled (`order.cancelled`, `order_cancelled`).

use super::saga::Saga;
use super::undo::{apply, release_draft_stock, Undone};
use crate::domain::{Compensation, Order, OrderStatus};
use restate_sdk::prelude::*;

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
