//! Taking the payment and confirming: the second half of a paid create, and the
//! whole of paying a draft.
//!
//! 1. `charge_payment`; declined: a new order fails, a draft stays a draft.
//! 2. `create_fulfillment`; refused: refund, release, and the order fails.
//! 3. `update_read_model`: confirmed.
//! 4. `publish_event`, then `notify_customer` (`order_confirmed`).

use super::saga::{Compensation, Saga};
use super::steps::{charge_payment, create_fulfillment, notify_customer, publish_events};
use crate::domain::{Order, OrderEvent, OrderStatus};
use chrono::{DateTime, Utc};
use restate_sdk::prelude::*;

/// What a declined card does to the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDecline {
    /// The create saga ends: the order fails and its stock is released.
    FailOrder,
    /// A draft keeps its stock and can be paid again until it expires.
    KeepDraft,
}

/// Charges `order` with `method`, creates its fulfillment and confirms it, then
/// publishes `events` plus what this adds. Returns the order as it rests.
pub async fn charge_and_confirm(
    saga: &mut Saga<'_, '_>,
    order: Order,
    method: &str,
    events: Vec<OrderEvent>,
    on_decline: OnDecline,
) -> Result<Order, TerminalError> {
    let attempt = order.next_payment_attempt();
    let method = method.to_owned();

    let capture = match charge_payment(saga, &order, &method, attempt).await? {
        Ok(capture) => capture,
        Err(declined) => {
            let code = declined.code.clone();
            let record = move |o: &mut Order, at: DateTime<Utc>| {
                o.record_decline(attempt, &method, &code, at)
            };
            let message = format!("payment declined: {}", declined.code);
            return match on_decline {
                OnDecline::FailOrder => {
                    fail_order(saga, &order, events, "payment_declined", &message, record).await
                }
                OnDecline::KeepDraft => {
                    let (order, _) = saga.commit(&order, &[], record).await?;
                    notify_customer(saga, &order, "payment_failed").await?;
                    Ok(order)
                }
            };
        }
    };
    saga.on_rejection(Compensation::RefundPayment {
        payment_id: capture.payment_id.clone(),
        amount: capture.amount,
    });

    let record_capture = {
        let (method, capture) = (method.clone(), capture.clone());
        move |o: &mut Order, at| {
            o.record_capture(attempt, &method, &capture.payment_id, capture.amount, at)
        }
    };

    let fulfillment_id = match create_fulfillment(saga, &order).await? {
        Ok(id) => id,
        Err(refused) => {
            let message = format!("fulfillment refused: {}", refused.code);
            return fail_order(
                saga,
                &order,
                events,
                "fulfillment_rejected",
                &message,
                move |o, at| {
                    record_capture(o, at);
                    o.record_full_refund();
                },
            )
            .await;
        }
    };

    let topics: &[&str] = match on_decline {
        OnDecline::KeepDraft => &["order.payment_added", "order.confirmed"],
        OnDecline::FailOrder => &["order.confirmed"],
    };
    let (order, more) = saga
        .commit(&order, topics, move |o, at| {
            record_capture(o, at);
            o.fulfillment_id = Some(fulfillment_id);
            o.transition(OrderStatus::Confirmed, None, "system", at);
        })
        .await?;
    publish_events(saga, &[events, more].concat()).await?;
    notify_customer(saga, &order, "order_confirmed").await?;
    Ok(order)
}

/// Ends the saga in `failed`: undoes what was done, records the failure (after
/// `record`, which notes what the refused step left behind), publishes `order.failed`
/// and tells the customer.
pub async fn fail_order<F>(
    saga: &mut Saga<'_, '_>,
    order: &Order,
    events: Vec<OrderEvent>,
    code: &'static str,
    message: &str,
    record: F,
) -> Result<Order, TerminalError>
where
    F: FnOnce(&mut Order, DateTime<Utc>) + Send + 'static,
{
    saga.compensate().await?;
    let message = message.to_owned();
    let (order, more) = saga
        .commit(order, &["order.failed"], move |o, at| {
            record(o, at);
            o.fail(code, &message, at);
        })
        .await?;
    publish_events(saga, &[events, more].concat()).await?;
    notify_customer(saga, &order, "payment_failed").await?;
    Ok(order)
}
