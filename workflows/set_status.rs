//! A move along the fulfilment path, asked for through `PUT /orders/{id}/status`.
//!
//! 1. `update_read_model`: the new status, with who and why.
//! 2. `publish_event` (`order.status_changed`), then `notify_customer`
//!    (`order_status_changed`).

use super::saga::Saga;
use super::steps::{notify_customer, publish_events};
use crate::domain::{Order, OrderStatus};
use restate_sdk::prelude::*;

/// Moves `order` to `to`, which the caller has checked is allowed.
pub async fn set_status(
    saga: &mut Saga<'_, '_>,
    order: Order,
    to: OrderStatus,
    reason: Option<String>,
) -> Result<Order, TerminalError> {
    let (order, events) = saga
        .commit(&order, &["order.status_changed"], move |o, at| {
            o.transition(to, reason, "api", at);
        })
        .await?;
    publish_events(saga, &events).await?;
    notify_customer(saga, &order, "order_status_changed").await?;
    Ok(order)
}
