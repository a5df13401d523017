//! Taking the payment and confirming: the second half of a paid create, and the
//! whole of paying a draft.
//!
//! 1. `charge_payment`, under the key of the payment attempt; declined: a new order
//!    fails, a draft stays a draft. A draft that already holds a capture (its saga
//!    was killed after the charge) goes on with it and is not charged again.
//! 2. `commit_stock`: the reservation becomes permanent; refused (it expired): the
//!    order fails.
//! 3. `create_fulfillment`; refused: the order fails (`fulfillment_refused`).
//! 4. `update_read_model`: confirmed, with `order.confirmed` and `order_confirmed`
//!    in the outbox.
//!
//! A failure undoes what was done (refund, release) before it is recorded.

use super::saga::Saga;
use super::steps::{charge_payment, commit_stock, create_fulfillment};
use super::undo::{apply, compensate};
use crate::domain::{Compensation, DomainError, Order, OrderStatus};
use crate::downstream::Rejection;
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

/// Charges `order` with `method`, commits its stock, creates its fulfillment and
/// confirms it. Returns the order as it rests.
pub async fn charge_and_confirm(
    saga: &mut Saga<'_, '_>,
    mut order: Order,
    method: &str,
    on_decline: OnDecline,
) -> Result<Order, TerminalError> {
    let attempt = order.next_payment_attempt();
    let method = method.to_owned();

    if let Some(payment_id) = order.payment_id.clone() {
        // A saga killed after its charge left the capture held on the draft: that
        // is the payment, never charged again.
        saga.on_rejection(Compensation::RefundPayment {
            payment_id,
            amount: order.captured_amount,
            return_id: None,
        });
    } else {
        let capture = match charge_payment(saga, &order, &method, attempt).await? {
            Ok(capture) => capture,
            Err(declined) if declined.is_business() && on_decline == OnDecline::KeepDraft => {
                let code = declined.code.clone();
                return saga
                    .commit(&order, &[], Some("payment_failed"), move |o, at| {
                        o.record_decline(attempt, &method, &code, at);
                        Ok(())
                    })
                    .await;
            }
            Err(declined) => {
                let (code, message) = (
                    declined.code.clone(),
                    format!("payment declined: {}", declined.code),
                );
                let record = move |o: &mut Order, at: DateTime<Utc>| {
                    o.record_decline(attempt, &method, &code, at);
                    Ok(())
                };
                let failed = Failed::new("charge_payment", "payment_declined", message, declined);
                return fail_order(saga, &order, failed, record).await;
            }
        };
        order.record_capture(
            attempt,
            &method,
            &capture.payment_id,
            capture.amount,
            saga.clock(),
        );
        saga.hold(&order);
    }

    if let Some(reservation_id) = order.reservation_id.clone() {
        if let Err(refused) = commit_stock(saga, &reservation_id).await? {
            let message = format!(
                "the stock was released before the payment: {}",
                refused.code
            );
            let failed = Failed::new("commit_stock", "insufficient_stock", message, refused);
            return fail_order(saga, &order, failed, |_, _| Ok(())).await;
        }
        order.reservation_committed = true;
    }

    let fulfillment_id = match create_fulfillment(saga, &order).await? {
        Ok(id) => id,
        Err(refused) => {
            let message = format!("fulfillment refused: {}", refused.code);
            let failed = Failed::new(
                "create_fulfillment",
                "fulfillment_refused",
                message,
                refused,
            );
            return fail_order(saga, &order, failed, |_, _| Ok(())).await;
        }
    };

    let topics: &'static [&'static str] = match on_decline {
        OnDecline::KeepDraft => &["order.payment_added", "order.confirmed"],
        OnDecline::FailOrder => &["order.confirmed"],
    };
    saga.commit(&order, topics, Some("order_confirmed"), move |o, at| {
        o.fulfillment_id = Some(fulfillment_id);
        o.transition(OrderStatus::Confirmed, None, "system", at)
    })
    .await
}

/// Why a saga fails: the step, the failure code the order shows, and the
/// downstream's answer.
pub struct Failed {
    step: &'static str,
    code: &'static str,
    message: String,
    refusal: Rejection,
}

impl Failed {
    /// A failure of `step` with `code`. A refusal that is not a business rejection
    /// (a `400`, `401`, `403`, `404`) fails with `step_refused` instead and parks
    /// the order for an operator.
    pub fn new(
        step: &'static str,
        code: &'static str,
        message: String,
        refusal: Rejection,
    ) -> Self {
        let (code, message) = match refusal.is_business() {
            true => (code, message),
            false => ("step_refused", refusal.to_string()),
        };
        Failed {
            step,
            code,
            message,
            refusal,
        }
    }
}

/// Ends the saga in `failed`: undoes what was done, records the failure (after
/// `record`, which notes what the refused step left behind) and tells the bus and
/// the customer (`payment_failed` for a declined card, `order_failed` otherwise).
pub async fn fail_order<F>(
    saga: &mut Saga<'_, '_>,
    order: &Order,
    failed: Failed,
    record: F,
) -> Result<Order, TerminalError>
where
    F: FnOnce(&mut Order, DateTime<Utc>) -> Result<(), DomainError> + Clone + Send + 'static,
{
    let undone = compensate(saga).await?;
    let template = match failed.code {
        "payment_declined" => "payment_failed",
        _ => "order_failed",
    };
    saga.commit(order, &["order.failed"], Some(template), move |o, at| {
        record(o, at)?;
        apply(o, &undone, at)?;
        if !failed.refusal.is_business() {
            o.park(failed.step, "step_refused", &failed.refusal.to_string(), at);
        }
        o.fail(failed.code, &failed.message, at)
    })
    .await
}
