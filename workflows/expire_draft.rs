//! Auto-cancel of a draft that was not paid in time, fired by a durable timer.
//!
//! 1. `release_stock`; refused: the order is parked for an operator.
//! 2. `update_read_model`: cancelled (`order.cancelled`, `order_cancelled`).

use super::saga::Saga;
use super::undo::{compensate, end_cancelled};
use crate::domain::{Compensation, Order};
use restate_sdk::prelude::*;

/// Cancels `order`, an unpaid draft: its reservation is undone like any other.
pub async fn expire_draft(saga: &mut Saga<'_, '_>, order: Order) -> Result<Order, TerminalError> {
    if let Some(reservation_id) = order.reservation_id.clone() {
        saga.on_rejection(Compensation::ReleaseStock {
            reservation_id,
            items: Vec::new(),
        });
    }
    let undone = compensate(saga).await?;
    let reason = "payment not received in time".to_owned();
    end_cancelled(saga, &order, undone, reason).await
}
