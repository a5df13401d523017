//! The forward downstream steps the sagas share. Each call carries the idempotency
//! key of its step occurrence; each step says what undoes it (see [`super::undo`]).

use super::saga::{Saga, Step};
use crate::domain::{Compensation, Money, Order, OrderItem};
use crate::downstream::{Capture, DownstreamError, FulfillmentLine, ReservationLine, Reserved};

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

/// The parcel of `items`: every unit left of each.
pub fn fulfillment_lines(items: &[OrderItem]) -> Vec<FulfillmentLine> {
    items
        .iter()
        .map(|i| FulfillmentLine {
            sku: i.product_sku.clone(),
            warehouse_id: i.warehouse_id,
            quantity: i.units_left(),
        })
        // Units cancelled before the payment, or given up by a change, are not shipped.
        .filter(|line| line.quantity > 0)
        .collect()
}

/// `reserve_stock`: holds every line of the order.
pub async fn reserve_stock(saga: &mut Saga<'_, '_>, order: &Order) -> Step<Reserved> {
    reserve_lines(saga, order.id, reservation_lines(order)).await
}

/// `reserve_stock` of `lines` for order `order_id`. Should the saga be cancelled
/// while it runs, a lookup under its key finds what to release.
pub async fn reserve_lines(
    saga: &mut Saga<'_, '_>,
    order_id: uuid::Uuid,
    lines: Vec<ReservationLine>,
) -> Step<Reserved> {
    let warehouse = saga.deps.downstream.warehouse.clone();
    saga.forward(
        "reserve_stock",
        |key| Some(Compensation::ReleaseStockReservedUnder { key }),
        |r: &Reserved| {
            Some(Compensation::ReleaseStock {
                reservation_id: r.reservation_id.clone(),
                items: Vec::new(),
            })
        },
        move |key| async move { warehouse.reserve(&key, order_id, &lines).await },
    )
    .await
}

/// `charge_payment`: captures the order total with `method`, as payment attempt
/// `attempt`. The key is the attempt's, not the saga's: it stays the same until the
/// order records the attempt's outcome, so a saga that pays after one killed with
/// its charge in doubt meets that charge again instead of making a second one.
pub async fn charge_payment(
    saga: &mut Saga<'_, '_>,
    order: &Order,
    method: &str,
    attempt: u32,
) -> Step<Capture> {
    let key = format!("{}:charge#{attempt}", order.id);
    charge(saga, order, order.amount_due(), method, key).await
}

/// `charge_payment` of `amount` with `method` under `key`, which must name the
/// charge for good (a payment attempt, a change): a replay or a retry meets the
/// same charge. Cancelled while in doubt, it is looked up and refunded if made.
pub async fn charge(
    saga: &mut Saga<'_, '_>,
    order: &Order,
    amount: Money,
    method: &str,
    key: String,
) -> Step<Capture> {
    let payment = saga.deps.downstream.payment.clone();
    let (order_id, currency) = (order.id, order.currency.clone());
    let method = method.to_owned();
    let in_doubt_method = method.clone();
    saga.forward_under(
        "charge_payment",
        key,
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
                return_id: None,
            })
        },
        move |key| async move {
            match payment
                .charge(&key, order_id, amount, &currency, &method)
                .await
            {
                // Refused for another reason than the card: the key may have been
                // used before with another body (a charge in doubt, then a pay with
                // another card). What it captured then is this attempt's payment.
                Err(DownstreamError::Rejected(refused)) if refused.status != 402 => {
                    match payment.captures_under(&key).await?.into_iter().next() {
                        Some(capture) => Ok(capture),
                        None => Err(DownstreamError::Rejected(refused)),
                    }
                }
                charged => charged,
            }
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
    ship(saga, order, fulfillment_lines(&order.items)).await
}

/// `create_fulfillment` of a parcel of `lines` to the order's address (an
/// exchange's or a claim's new items).
pub async fn ship(
    saga: &mut Saga<'_, '_>,
    order: &Order,
    lines: Vec<FulfillmentLine>,
) -> Step<String> {
    let fulfillment = saga.deps.downstream.fulfillment.clone();
    let order_id = order.id;
    let address = order.shipping_address.clone();
    saga.forward(
        "create_fulfillment",
        |key| Some(Compensation::CancelFulfillmentCreatedUnder { key }),
        |id: &String| {
            Some(Compensation::CancelFulfillment {
                fulfillment_id: id.clone(),
                items: Vec::new(),
            })
        },
        move |key| async move { fulfillment.create(&key, order_id, &lines, &address).await },
    )
    .await
}
