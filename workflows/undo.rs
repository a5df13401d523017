//! The undo path: the compensations that give back what a saga took, what each gave
//! back, and how a saga that was refused, cancelled through Restate or met an error
//! no retry can pass ends the order.

use super::saga::{is_cancellation, Saga, Step};
use crate::domain::{Compensation, DomainError, Order, OrderStatus};
use crate::downstream::Rejection;
use chrono::{DateTime, Utc};
use restate_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// What an undo gave back, for the commit that follows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Undone {
    Released,
    /// A refund of the payment a saga named (kept by journals of earlier versions;
    /// counted on the newest payment with room).
    Refunded(crate::domain::Money),
    /// A refund on `payment_id`, as the payment service confirmed it.
    RefundedOn {
        payment_id: String,
        refund_id: String,
        amount: crate::domain::Money,
    },
    /// The refund of a received return, owed since the payment service refused it.
    ReturnRefunded(uuid::Uuid, crate::domain::Money),
    /// The refused restock of a received return went through.
    Restocked,
    /// A charge whose outcome was unknown had gone through and is now refunded.
    RefundedCapture {
        payment_id: String,
        method: String,
        captured: crate::domain::Money,
        refunded: crate::domain::Money,
    },
    FulfillmentCancelled,
    /// The forward step had done nothing.
    Nothing,
    /// The downstream finally refused the compensation.
    Refused(Compensation, Rejection),
}

/// How a saga ends when it cannot go on (cancelled through Restate, or an error no
/// retry can pass): after undoing what it did, the order becomes `failed` (a create
/// or a payment) or `cancelled` (an expiring draft).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Fail,
    Cancel,
}

/// Undoes, newest first, everything registered so far. Each compensation is
/// retried while its failure is transient; one that is finally refused is
/// returned as [`Undone::Refused`], for the order to carry until an operator
/// deals with it.
pub async fn compensate(saga: &mut Saga<'_, '_>) -> Result<Vec<Undone>, TerminalError> {
    let mut undone = Vec::new();
    while let Some(c) = saga.pop_compensation() {
        undone.push(match undo(saga, &c).await? {
            Ok(u) => u,
            Err(refusal) => {
                tracing::error!(order.id = %saga.order_id, %refusal, "compensation refused");
                Undone::Refused(c, refusal)
            }
        });
    }
    Ok(undone)
}

/// Ends a saga that stopped with `error` (a cancellation through Restate, or an
/// error no retry can pass): undoes what it did and ends the order as `ending`
/// says, with the reason. Without an order there is nothing to undo.
pub async fn settle(
    saga: &mut Saga<'_, '_>,
    result: Result<Order, TerminalError>,
    ending: Ending,
) -> Result<Order, TerminalError> {
    let error = match result {
        Ok(order) => return Ok(order),
        Err(e) => e,
    };
    let Some(order) = saga.latest().cloned() else {
        return Err(error);
    };
    let (code, message) = if is_cancellation(&error) {
        (
            "cancelled",
            "the saga was cancelled through Restate".to_owned(),
        )
    } else {
        ("internal_error", error.message().to_owned())
    };
    tracing::warn!(order.id = %saga.order_id, code, %message, "undoing the saga");
    let undone = compensate(saga).await?;
    match ending {
        Ending::Fail => {
            saga.commit(
                &order,
                &["order.failed"],
                Some("order_failed"),
                move |o, at| {
                    apply(o, &undone, at)?;
                    o.fail(code, &message, at)
                },
            )
            .await
        }
        Ending::Cancel => end_cancelled(saga, &order, undone, message).await,
    }
}

/// Ends the order `cancelled` with `reason`, recording what was given back.
pub async fn end_cancelled(
    saga: &mut Saga<'_, '_>,
    order: &Order,
    undone: Vec<Undone>,
    reason: String,
) -> Result<Order, TerminalError> {
    saga.commit(
        order,
        &["order.cancelled"],
        Some("order_cancelled"),
        move |o, at| {
            apply(o, &undone, at)?;
            o.transition(OrderStatus::Cancelled, Some(reason), "system", at)
        },
    )
    .await
}

/// Records on the order what the compensations gave back; a refused one parks
/// the order for an operator. Only what a downstream confirmed is counted.
pub fn apply(order: &mut Order, undone: &[Undone], at: DateTime<Utc>) -> Result<(), DomainError> {
    for u in undone {
        match u {
            Undone::Refunded(amount) => order.record_refund(*amount)?,
            Undone::RefundedOn {
                payment_id,
                refund_id,
                amount,
            } => {
                order.record_refund_on(Some(payment_id), *amount)?;
                order.tag_latest_refund(refund_id);
            }
            Undone::ReturnRefunded(return_id, amount) => {
                order.record_return_refunded(*return_id, *amount, at)?;
            }
            Undone::RefundedCapture {
                payment_id,
                method,
                captured,
                refunded,
            } => {
                let attempt = order.next_payment_attempt();
                order.record_capture(attempt, method, payment_id, *captured, at);
                order.record_refund(*refunded)?;
            }
            Undone::Released
            | Undone::FulfillmentCancelled
            | Undone::Restocked
            | Undone::Nothing => {}
            Undone::Refused(c, refusal) => {
                order.owed.push(c.clone());
                let code = match c {
                    Compensation::Restock { .. } => "step_refused",
                    _ => "compensation_refused",
                };
                order.park(c.step(), code, &refusal.to_string(), at);
            }
        }
    }
    Ok(())
}

/// Runs the compensation `c`.
async fn undo(saga: &mut Saga<'_, '_>, c: &Compensation) -> Step<Undone> {
    let d = saga.deps.downstream.clone();
    let (step, compensates) = (c.step(), c.undoes());
    let reason = saga.reason().to_owned();
    match c.clone() {
        Compensation::ReleaseStock {
            reservation_id,
            items,
        } => {
            saga.compensation_step(step, compensates, move |key| async move {
                d.warehouse.release(&key, &reservation_id, &items).await?;
                Ok(Undone::Released)
            })
            .await
        }
        Compensation::RefundPayment {
            payment_id,
            amount,
            return_id,
        } => {
            saga.compensation_step(step, compensates, move |key| async move {
                let receipt = d.payment.refund(&key, &payment_id, amount, &reason).await?;
                Ok(match return_id {
                    Some(id) => Undone::ReturnRefunded(id, receipt.amount),
                    None => Undone::RefundedOn {
                        payment_id,
                        refund_id: receipt.refund_id,
                        amount: receipt.amount,
                    },
                })
            })
            .await
        }
        Compensation::CancelFulfillment {
            fulfillment_id,
            items,
        } => {
            saga.compensation_step(step, compensates, move |key| async move {
                d.fulfillment.cancel(&key, &fulfillment_id, &items).await?;
                Ok(Undone::FulfillmentCancelled)
            })
            .await
        }
        // The outcome of the forward call is unknown: a lookup under its key shows
        // what it made, and only that is undone. Sending the call again to find out
        // would make it when it never took effect. A key makes at most one of each
        // (the idempotency rule), so the first found is all there is.
        Compensation::ReleaseStockReservedUnder { key: original } => {
            saga.compensation_step(step, compensates, move |key| async move {
                let found = d.warehouse.reservations_under(&original).await?;
                let Some(reserved) = found.into_iter().next() else {
                    return Ok(Undone::Nothing);
                };
                d.warehouse
                    .release(&key, &reserved.reservation_id, &[])
                    .await?;
                Ok(Undone::Released)
            })
            .await
        }
        Compensation::RefundChargeUnder {
            key: original,
            method,
        } => {
            saga.compensation_step(step, compensates, move |key| async move {
                let found = d.payment.captures_under(&original).await?;
                let Some(capture) = found.into_iter().next() else {
                    return Ok(Undone::Nothing);
                };
                let receipt = d
                    .payment
                    .refund(&key, &capture.payment_id, capture.amount, &reason)
                    .await?;
                // The capture is recorded with its refund, so that both sides count.
                Ok(Undone::RefundedCapture {
                    payment_id: capture.payment_id,
                    method,
                    captured: capture.amount,
                    refunded: receipt.amount,
                })
            })
            .await
        }
        // Not an undo: the refused restock, asked again.
        Compensation::Restock { return_id } => {
            // Owed only on a parked order, retried from it (`retry_owed`).
            let order = saga
                .latest()
                .cloned()
                .ok_or_else(|| TerminalError::new("a restock is retried only on an order"))?;
            let restocked = super::returns::restock(saga, &order, return_id).await?;
            Ok(restocked.map(|_| Undone::Restocked))
        }
        Compensation::CancelFulfillmentCreatedUnder { key: original } => {
            saga.compensation_step(step, compensates, move |key| async move {
                let found = d.fulfillment.fulfillments_under(&original).await?;
                let Some(id) = found.into_iter().next() else {
                    return Ok(Undone::Nothing);
                };
                d.fulfillment.cancel(&key, &id, &[]).await?;
                Ok(Undone::FulfillmentCancelled)
            })
            .await
        }
    }
}
