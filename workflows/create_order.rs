//! The create-order saga.
//!
//! 1. `update_read_model`: record the order as a draft with its number
//!    (`order.created` in the outbox).
//! 2. `reserve_stock`; refused: the order fails (`insufficient_stock`).
//! 3. Without a payment: rest as a draft, holding the stock (the object then sets
//!    the timer that expires it, no later than the reservation does).
//! 4. With one: charge, commit the stock, fulfil and confirm (see
//!    [`super::pay_order`]).

use super::pay_order::{self, Failed, OnDecline};
use super::saga::Saga;
use super::steps::reserve_stock;
use crate::domain::{NewOrder, Order};
use restate_sdk::prelude::*;

/// Runs the saga for a new order (the saga's order id).
pub async fn create_order(saga: &mut Saga<'_, '_>, new: NewOrder) -> Result<Order, TerminalError> {
    let mut order = saga.commit_new(&new).await?;

    let reserved = match reserve_stock(saga, &order).await? {
        Ok(reserved) => reserved,
        Err(refused) => {
            let message = match refused.message.as_str() {
                "" => "not enough stock".to_owned(),
                m => m.to_owned(),
            };
            let failed = Failed::new("reserve_stock", "insufficient_stock", message, refused);
            return pay_order::fail_order(saga, &order, failed, |_, _| Ok(())).await;
        }
    };
    order.record_reservation(&reserved.reservation_id, reserved.expires_at);
    saga.hold(&order);

    let Some(method) = order.payment_method.clone() else {
        return saga.commit(&order, &[], None, |_, _| Ok(())).await;
    };
    pay_order::charge_and_confirm(saga, order, &method, OnDecline::FailOrder).await
}
