//! The downstream steps the sagas share. Each call carries the idempotency key of
//! its step occurrence; each forward step says what undoes it.

use super::saga::{Saga, Undone};
use crate::domain::{Compensation, Order};
use crate::downstream::{Capture, FulfillmentLine, Rejection, ReservationLine, Reserved};
use restate_sdk::prelude::*;

type Step<T> = Result<Result<T, Rejection>, TerminalError>;

fn reservation_lines(order: &Order) -> Vec<ReservationLine> {
    order
        .items
        .iter()
        .map(|i| ReservationLine {
            product_id: i.product_id,
            sku: i.product_sku.clone(),
            warehouse_id: i.warehouse_id,
            quantity: i.quantity,
        })
        .collect()
}

fn fulfillment_lines(order: &Order) -> Vec<FulfillmentLine> {
    order
        .items
        .iter()
        .map(|i| FulfillmentLine {
            sku: i.product_sku.clone(),
            warehouse_id: i.warehouse_id,
            quantity: i.quantity - i.cancelled_quantity,
        })
        .collect()
}

/// `reserve_stock`: holds every line of the order.
pub async fn reserve_stock(saga: &mut Saga<'_, '_>, order: &Order) -> Step<Reserved> {
    let warehouse = saga.deps.downstream.warehouse.clone();
    let (order_id, lines) = (order.id, reservation_lines(order));
    saga.forward(
        "reserve_stock",
        |key| Some(Compensation::ReleaseStockReservedUnder { key }),
        |r: &Reserved| {
            Some(Compensation::ReleaseStock {
                reservation_id: r.reservation_id.clone(),
            })
        },
        move |key| async move { warehouse.reserve(&key, order_id, &lines).await },
    )
    .await
}

/// `charge_payment`: captures the order total with `method`.
pub async fn charge_payment(saga: &mut Saga<'_, '_>, order: &Order, method: &str) -> Step<Capture> {
    let payment = saga.deps.downstream.payment.clone();
    let (order_id, amount, currency) = (order.id, order.total_amount, order.currency.clone());
    let method = method.to_owned();
    let in_doubt_method = method.clone();
    saga.forward(
        "charge_payment",
        |key| {
            Some(Compensation::RefundChargeUnder {
                key,
                method: in_doubt_method,
            })
        },
        |c: &Capture| {
            Some(Compensation::RefundPayment {
                payment_id: c.payment_id.clone(),
                amount: c.amount,
            })
        },
        move |key| async move {
            payment
                .charge(&key, order_id, amount, &currency, &method)
                .await
        },
    )
    .await
}

/// `commit_stock`: makes the order's reservation permanent, so that the warehouse
/// never puts the stock of a paid order back on sale. Nothing to undo: releasing
/// the reservation undoes it too.
pub async fn commit_stock(saga: &mut Saga<'_, '_>, reservation_id: &str) -> Step<()> {
    let warehouse = saga.deps.downstream.warehouse.clone();
    let reservation_id = reservation_id.to_owned();
    saga.forward(
        "commit_stock",
        |_| None,
        |_| None,
        move |key| async move { warehouse.commit(&key, &reservation_id).await },
    )
    .await
}

/// `create_fulfillment`: asks for the order to be shipped.
pub async fn create_fulfillment(saga: &mut Saga<'_, '_>, order: &Order) -> Step<String> {
    let fulfillment = saga.deps.downstream.fulfillment.clone();
    let (order_id, lines) = (order.id, fulfillment_lines(order));
    let address = order.shipping_address.clone();
    saga.forward(
        "create_fulfillment",
        |key| Some(Compensation::CancelFulfillmentCreatedUnder { key }),
        |id: &String| {
            Some(Compensation::CancelFulfillment {
                fulfillment_id: id.clone(),
            })
        },
        move |key| async move { fulfillment.create(&key, order_id, &lines, &address).await },
    )
    .await
}

/// `release_stock` of an expiring draft: gives back all that is left of its
/// reservation. It is the saga's purpose, not a compensation, and it must finish.
pub async fn release_draft_stock(saga: &mut Saga<'_, '_>, reservation_id: &str) -> Step<Undone> {
    let c = Compensation::ReleaseStock {
        reservation_id: reservation_id.to_owned(),
    };
    undo_with(saga, None, &c, None).await
}

/// Runs the compensation `c` for `order`.
pub async fn undo(saga: &mut Saga<'_, '_>, order: &Order, c: &Compensation) -> Step<Undone> {
    undo_with(saga, Some(order), c, Some(c.undoes())).await
}

async fn undo_with(
    saga: &mut Saga<'_, '_>,
    order: Option<&Order>,
    c: &Compensation,
    compensates: Option<&'static str>,
) -> Step<Undone> {
    let d = saga.deps.downstream.clone();
    let step = c.step();
    let reason = "order failed";
    match c.clone() {
        Compensation::ReleaseStock { reservation_id } => {
            saga.compensation_step(step, compensates, move |key| async move {
                d.warehouse.release(&key, &reservation_id, &[]).await?;
                Ok(Undone::Released)
            })
            .await
        }
        Compensation::RefundPayment { payment_id, amount } => {
            saga.compensation_step(step, compensates, move |key| async move {
                let receipt = d.payment.refund(&key, &payment_id, amount, reason).await?;
                Ok(Undone::Refunded(receipt.amount))
            })
            .await
        }
        Compensation::CancelFulfillment { fulfillment_id } => {
            saga.compensation_step(step, compensates, move |key| async move {
                d.fulfillment.cancel(&key, &fulfillment_id, &[]).await?;
                Ok(Undone::FulfillmentCancelled)
            })
            .await
        }
        // The outcome of the forward call is unknown: asking again under its key
        // answers what it did (or does it now), and then it is undone.
        Compensation::ReleaseStockReservedUnder { key: original } => {
            let order = order.expect("an in-doubt reservation belongs to an order");
            let (order_id, lines) = (order.id, reservation_lines(order));
            saga.compensation_step(step, compensates, move |key| async move {
                let reserved = match d.warehouse.reserve(&original, order_id, &lines).await {
                    Ok(r) => r,
                    Err(crate::downstream::DownstreamError::Rejected(r)) if r.is_business() => {
                        return Ok(Undone::Nothing)
                    }
                    Err(e) => return Err(e),
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
            let order = order.expect("an in-doubt charge belongs to an order");
            let (order_id, amount, currency) =
                (order.id, order.total_amount, order.currency.clone());
            saga.compensation_step(step, compensates, move |key| async move {
                let capture = match d
                    .payment
                    .charge(&original, order_id, amount, &currency, &method)
                    .await
                {
                    Ok(c) => c,
                    Err(crate::downstream::DownstreamError::Rejected(r)) if r.is_business() => {
                        return Ok(Undone::Nothing)
                    }
                    Err(e) => return Err(e),
                };
                let receipt = d
                    .payment
                    .refund(&key, &capture.payment_id, capture.amount, reason)
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
        Compensation::CancelFulfillmentCreatedUnder { key: original } => {
            let order = order.expect("an in-doubt fulfillment belongs to an order");
            let (order_id, lines) = (order.id, fulfillment_lines(order));
            let address = order.shipping_address.clone();
            saga.compensation_step(step, compensates, move |key| async move {
                let id = d
                    .fulfillment
                    .create(&original, order_id, &lines, &address)
                    .await?;
                d.fulfillment.cancel(&key, &id, &[]).await?;
                Ok(Undone::FulfillmentCancelled)
            })
            .await
        }
    }
}
