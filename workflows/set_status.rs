//! A move along the fulfilment path, asked for through `PUT /orders/{id}/status`.
//!
//! 1. `update_read_model`: the new status, with who and why
//!    (`order.status_changed` and `order_status_changed` in the outbox).

use super::saga::Saga;
use crate::domain::{Order, OrderStatus};
use restate_sdk::prelude::*;

/// Moves `order` to `to`, which the caller has checked is allowed.
pub async fn set_status(
    saga: &mut Saga<'_, '_>,
    order: Order,
    to: OrderStatus,
    reason: Option<String>,
) -> Result<Order, TerminalError> {
    saga.commit(
        &order,
        &["order.status_changed"],
        Some("order_status_changed"),
        move |o, at| o.transition(to, reason, "api", at),
    )
    .await
}
