//! Auto-cancel of a draft that was not paid in time, fired by a durable timer.
//!
//! 1. `release_stock`.
//! 2. `update_read_model`: cancelled.
//! 3. `publish_event` (`order.cancelled`), then `notify_customer` (`order_cancelled`).

use super::order::OrderObjectClient;
use super::saga::Saga;
use super::steps::{notify_customer, publish_events, release_stock};
use crate::domain::{Order, OrderStatus};
use restate_sdk::prelude::*;
use std::time::Duration;

/// Schedules the expiry of this draft: a delayed call to the order's own object,
/// kept by Restate, so it fires even if every process restarts meanwhile.
pub fn schedule(ctx: &ObjectContext<'_>, after: Duration) {
    ctx.object_client::<OrderObjectClient>(ctx.key())
        .expire_draft()
        .send_after(after);
}

/// Cancels `order`, an unpaid draft.
pub async fn expire_draft(saga: &mut Saga<'_, '_>, order: Order) -> Result<(), TerminalError> {
    if let Some(reservation_id) = order.reservation_id.clone() {
        if let Err(refused) = release_stock(saga, &reservation_id, None).await? {
            tracing::error!(order.id = %order.id, ?refused, "warehouse refused to release a draft's stock");
        }
    }

    let (order, events) = saga
        .commit(&order, &["order.cancelled"], |o, at| {
            let reason = "payment not received in time".to_owned();
            o.transition(OrderStatus::Cancelled, Some(reason), "system", at);
        })
        .await?;
    publish_events(saga, &events).await?;
    notify_customer(saga, &order, "order_cancelled").await
}
