//! The downstream steps the sagas share, each with its stable idempotency key.

use super::saga::Saga;
use crate::domain::{Money, Order, OrderEvent};
use crate::downstream::{Capture, FulfillmentLine, Rejection, ReservationLine};
use restate_sdk::prelude::*;
use serde_json::json;

/// `reserve_stock`: holds every line of the order.
pub async fn reserve_stock(
    saga: &mut Saga<'_, '_>,
    order: &Order,
) -> Result<Result<String, Rejection>, TerminalError> {
    let warehouse = saga.deps.downstream.warehouse.clone();
    let key = format!("{}:reserve", order.id);
    let (order_id, lines): (_, Vec<ReservationLine>) = (
        order.id,
        order
            .items
            .iter()
            .map(|i| ReservationLine {
                product_id: i.product_id,
                sku: i.product_sku.clone(),
                warehouse_id: i.warehouse_id,
                quantity: i.quantity,
            })
            .collect(),
    );
    saga.step("reserve_stock", move || async move {
        warehouse.reserve(&key, order_id, &lines).await
    })
    .await
}

/// `charge_payment`: captures the order total; `attempt` keys the idempotency so that
/// a new attempt after a decline is a new charge and a retry is not.
pub async fn charge_payment(
    saga: &mut Saga<'_, '_>,
    order: &Order,
    method: &str,
    attempt: u32,
) -> Result<Result<Capture, Rejection>, TerminalError> {
    let payment = saga.deps.downstream.payment.clone();
    let key = format!("{}:charge:{attempt}", order.id);
    let (order_id, amount, currency, method) = (
        order.id,
        order.total_amount,
        order.currency.clone(),
        method.to_owned(),
    );
    saga.step("charge_payment", move || async move {
        payment
            .charge(&key, order_id, amount, &currency, &method)
            .await
    })
    .await
}

/// `create_fulfillment`: asks for the order to be shipped.
pub async fn create_fulfillment(
    saga: &mut Saga<'_, '_>,
    order: &Order,
) -> Result<Result<String, Rejection>, TerminalError> {
    let fulfillment = saga.deps.downstream.fulfillment.clone();
    let key = format!("{}:fulfillment", order.id);
    let order_id = order.id;
    let address = order.shipping_address.clone();
    let lines: Vec<FulfillmentLine> = order
        .items
        .iter()
        .map(|i| FulfillmentLine {
            sku: i.product_sku.clone(),
            warehouse_id: i.warehouse_id,
            quantity: i.quantity - i.cancelled_quantity,
        })
        .collect();
    saga.step("create_fulfillment", move || async move {
        fulfillment.create(&key, order_id, &lines, &address).await
    })
    .await
}

/// `release_stock`: gives back all that is left of a reservation; `compensates`
/// names the step it undoes when it runs as a compensation.
pub async fn release_stock(
    saga: &mut Saga<'_, '_>,
    reservation_id: &str,
    compensates: Option<&'static str>,
) -> Result<Result<(), Rejection>, TerminalError> {
    let warehouse = saga.deps.downstream.warehouse.clone();
    let key = format!("{}:{}:release", saga.order_id, saga.name());
    let reservation_id = reservation_id.to_owned();
    saga.step_compensating("release_stock", compensates, move || async move {
        warehouse
            .release(&key, &reservation_id, &[])
            .await
            .map(|_| ())
    })
    .await
}

/// `refund_payment`: gives back `amount` of a capture.
pub async fn refund_payment(
    saga: &mut Saga<'_, '_>,
    payment_id: &str,
    amount: Money,
    reason: &'static str,
    compensates: Option<&'static str>,
) -> Result<Result<(), Rejection>, TerminalError> {
    let payment = saga.deps.downstream.payment.clone();
    let key = format!("{}:{}:refund", saga.order_id, saga.name());
    let payment_id = payment_id.to_owned();
    saga.step_compensating("refund_payment", compensates, move || async move {
        payment
            .refund(&key, &payment_id, amount, reason)
            .await
            .map(|_| ())
    })
    .await
}

/// `publish_event`: publishes the events in order, in one step. Each event keeps its
/// stable id, so a step retried after a partial publish only repeats what consumers
/// already know how to drop.
pub async fn publish_events(
    saga: &mut Saga<'_, '_>,
    events: &[OrderEvent],
) -> Result<(), TerminalError> {
    if events.is_empty() {
        return Ok(());
    }
    let pubsub = saga.deps.downstream.pubsub.clone();
    let events = events.to_vec();
    let outcome = saga
        .step("publish_event", move || async move {
            for event in &events {
                pubsub.publish(event).await?;
            }
            Ok(())
        })
        .await?;
    if let Err(rejection) = outcome {
        // The bus refusing an event is not a reason to undo the order.
        tracing::error!(?rejection, "event bus refused an event");
    }
    Ok(())
}

/// `notify_customer`: sends `template` about the order at its current version.
pub async fn notify_customer(
    saga: &mut Saga<'_, '_>,
    order: &Order,
    template: &'static str,
) -> Result<(), TerminalError> {
    let notification = saga.deps.downstream.notification.clone();
    let key = format!("{}:notify:{template}:{}", order.id, order.version);
    let (order_id, customer_id) = (order.id, order.customer_id);
    let data = json!({
        "order_number": order.order_number,
        "status": order.status,
        "total_amount": order.total_amount,
        "currency": order.currency,
        "failure": order.failure,
    });
    let outcome = saga
        .step("notify_customer", move || async move {
            notification
                .notify(&key, order_id, customer_id, template, &data)
                .await
        })
        .await?;
    if let Err(rejection) = outcome {
        tracing::error!(?rejection, "notification refused");
    }
    Ok(())
}
