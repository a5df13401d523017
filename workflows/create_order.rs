//! The create-order saga.
//!
//! 1. `update_read_model`: record the order as a draft with its number.
//! 2. `reserve_stock`; refused: the order fails.
//! 3. Without a payment: rest as a draft, holding the stock, with a timer to expire it.
//! 4. With one: charge, fulfil and confirm (see [`super::pay_order`]).

use super::expire_draft;
use super::pay_order::{self, OnDecline};
use super::saga::{Compensation, Saga};
use super::steps::{publish_events, reserve_stock};
use crate::domain::{NewOrder, Order};
use restate_sdk::prelude::*;

/// Runs the saga for a new order (the saga's order id).
pub async fn create_order(saga: &mut Saga<'_, '_>, new: NewOrder) -> Result<Order, TerminalError> {
    let (order, events) = saga.commit_new(&new).await?;

    let reservation_id = match reserve_stock(saga, &order).await? {
        Ok(reservation_id) => reservation_id,
        Err(refused) => {
            let message = match refused.message.as_str() {
                "" => "not enough stock".to_owned(),
                m => m.to_owned(),
            };
            return pay_order::fail_order(
                saga,
                &order,
                events,
                "insufficient_stock",
                &message,
                |_, _| {},
            )
            .await;
        }
    };
    saga.on_rejection(Compensation::ReleaseStock {
        reservation_id: reservation_id.clone(),
    });

    let Some(method) = order.payment_method.clone() else {
        let (order, more) = saga
            .commit(&order, &[], move |o, _| {
                o.reservation_id = Some(reservation_id)
            })
            .await?;
        expire_draft::schedule(saga.ctx, saga.deps.draft_ttl);
        publish_events(saga, &[events, more].concat()).await?;
        return Ok(order);
    };

    let mut order = order;
    order.reservation_id = Some(reservation_id);
    pay_order::charge_and_confirm(saga, order, &method, events, OnDecline::FailOrder).await
}
