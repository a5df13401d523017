//! Exchanges of a delivered order (api-changes.md §6).
//!
//! Asking for one (`POST /orders/{id}/exchanges`): `update_read_model`, the
//! exchange `requested`, holding its returned units (`order.exchange_requested`,
//! `exchange_requested`); the object then sets the timer that expires it.
//!
//! Its parcel arrives (`.../receive`), the saga `receive_exchange`:
//! 1. `restock` of the returned units, never undone;
//! 2. `reserve_stock` of the new items [`release_stock`];
//! 3. `charge_payment` of a positive difference [`refund_payment`];
//! 4. `commit_stock`;
//! 5. `create_fulfillment` of the new items: the point of no return;
//! 6. `refund_payment` of a negative difference, outstanding first, newest
//!    payment first;
//! 7. `update_read_model`: the receipt, the new items and `settled` at one
//!    version (8. `order.exchange_settled`, `exchange_settled`, `refund_issued`).
//!
//! A refusal in 2-5 is undone and the receipt alone is written: the exchange stays
//! `received` with its `failure`, to be received again, paid (`.../payments`, the
//! same saga from step 2) or cancelled (refunded as a plain return).

use super::saga::{Saga, Step};
use super::steps;
use super::undo::{apply, compensate, Undone};
use crate::domain::{
    Compensation, DomainError, Exchange, ExchangeSettlement, ExchangeStatus, Failure, MadeCharge,
    MadeRefund, Money, NewLine, Order, StockLine,
};
use crate::downstream::{Capture, FulfillmentLine, Rejection, Reserved};
use chrono::{DateTime, Utc};
use restate_sdk::prelude::*;
use uuid::Uuid;

/// Records exchange `exchange` as `requested`.
pub async fn request_exchange(
    saga: &mut Saga<'_, '_>,
    order: Order,
    exchange: Exchange,
) -> Result<Order, TerminalError> {
    saga.commit(
        &order,
        &["order.exchange_requested"],
        Some("exchange_requested"),
        move |o, _| o.request_exchange(exchange),
    )
    .await
}

/// Runs `receive_exchange` for exchange `id`: restocks its returned units (when
/// they were not yet), then settles it, the difference charged with `method`
/// (else the exchange's or the order's).
pub async fn receive_exchange(
    saga: &mut Saga<'_, '_>,
    order: Order,
    id: Uuid,
    method: Option<String>,
) -> Result<Order, TerminalError> {
    saga.begin_with(&order);
    let exchange = order.find_exchange(id).cloned();
    let exchange = exchange.ok_or_else(|| TerminalError::new("no such exchange"))?;

    // 1. restock, never undone: a refusal is owed for an operator's retry.
    let mut receipt = Receipt {
        id,
        first: exchange.status == ExchangeStatus::Requested,
        restock_refused: None,
    };
    if receipt.first {
        receipt.restock_refused = super::returns::restock(saga, &order, id).await?.err();
    }

    // 2. reserve_stock
    let lines = stock_lines(&exchange.new_items);
    let reservation = match reserve(saga, &order, &lines).await? {
        Ok(r) => r,
        Err(refused) => return refused_settlement(saga, order, receipt, &refused, None).await,
    };

    // 3. charge_payment of a positive difference
    let mut charged = None;
    if let Some(amount) = exchange.difference.charge() {
        let method = method
            .or(exchange.payment_method.clone())
            .or_else(|| order.latest_method())
            .unwrap_or_default();
        let key = format!("{}:exchange:{id}:charge#{}", order.id, exchange.tries + 1);
        match steps::charge(saga, &order, amount, &method, key.clone()).await? {
            Ok(capture) => charged = Some((capture, method, key)),
            Err(refused) => {
                return refused_settlement(saga, order, receipt, &refused, None).await;
            }
        }
    }

    // 4. commit_stock, 5. create_fulfillment: the point of no return.
    let parcel = match commit_and_ship(saga, &order, reservation, &exchange.new_items).await? {
        Ok(parcel) => parcel,
        Err(refused) => {
            return refused_settlement(saga, order, receipt, &refused, charged).await;
        }
    };
    saga.drop_compensations();

    // 6. refund_payment of a negative difference, outstanding first.
    let back = exchange.difference.give_back().unwrap_or(Money::ZERO);
    let clears = back.min(order.outstanding_amount);
    let undone = refund(
        saga,
        &order,
        back.checked_sub(clears).unwrap_or(Money::ZERO),
    )
    .await?;

    // 7. update_read_model
    let refunds = refunds_made(&undone);
    let refused = undone.iter().any(|u| matches!(u, Undone::Refused(..)));
    let topics: &'static [&'static str] = match (&charged, refunds.is_empty()) {
        (Some(_), _) => &["order.exchange_settled", "order.payment_added"],
        (None, false) => &["order.exchange_settled", "order.refunded"],
        (None, true) => &["order.exchange_settled"],
    };
    let mut notify = vec!["exchange_settled"];
    if !refunds.is_empty() {
        notify.push("refund_issued");
    }
    let settlement = ExchangeSettlement {
        charge: charged.as_ref().map(|(c, method, _)| MadeCharge {
            payment_id: c.payment_id.clone(),
            method: method.clone(),
            amount: c.amount,
        }),
        refunds,
        amount_due: Money::ZERO,
    };
    saga.commit(&order, topics, notify, move |o, at| {
        receipt.record(o, at)?;
        record_charge(o, charged.as_ref(), at);
        o.clear_owed(clears, at);
        apply(o, &undone, at)?;
        o.record_exchange_settled(id, parcel, settlement, at)?;
        if refused {
            o.attend(id);
        }
        Ok(())
    })
    .await
}

/// The receipt of an exchange's parcel, written with whatever ends its saga.
struct Receipt {
    id: Uuid,
    /// The parcel arrives now (not a retry or a payment of a received one).
    first: bool,
    restock_refused: Option<Rejection>,
}

impl Receipt {
    fn record(&self, o: &mut Order, at: DateTime<Utc>) -> Result<(), DomainError> {
        if let Some(refused) = &self.restock_refused {
            o.owed.push(Compensation::Restock { return_id: self.id });
            o.park("restock", "step_refused", &refused.to_string(), at);
        }
        o.record_exchange_received(self.id, at)
    }
}

/// A settlement refused in steps 2-5: what was done is undone and the receipt
/// alone is written; the exchange stays `received` with why (and, after a
/// decline, what is due).
async fn refused_settlement(
    saga: &mut Saga<'_, '_>,
    order: Order,
    receipt: Receipt,
    refused: &Rejection,
    charged: Option<(Capture, String, String)>,
) -> Result<Order, TerminalError> {
    let undone = compensate(saga).await?;
    let exchange = order.find_exchange(receipt.id);
    let difference = exchange.and_then(|e| e.difference.charge());
    let (failure, due) = match (refused.code.as_str(), refused.status) {
        ("insufficient_stock" | "reservation_released", _) => ("insufficient_stock", Money::ZERO),
        (_, 402) => ("payment_declined", difference.unwrap_or(Money::ZERO)),
        _ => ("step_refused", Money::ZERO),
    };
    let failure = Failure {
        code: failure.to_owned(),
        message: refused.to_string(),
    };
    let topics: &'static [&'static str] = match (receipt.first, charged.is_some()) {
        (true, true) => &[
            "order.exchange_received",
            "order.payment_added",
            "order.refunded",
        ],
        (true, false) => &["order.exchange_received"],
        (false, true) => &["order.payment_added", "order.refunded"],
        (false, false) => &[],
    };
    saga.commit(&order, topics, None, move |o, at| {
        receipt.record(o, at)?;
        record_charge(o, charged.as_ref(), at);
        apply(o, &undone, at)?;
        o.record_exchange_refused(receipt.id, failure, due)
    })
    .await
}

/// Cancels exchange `id`: a `requested` one frees its units; a `received` one
/// closes as a plain return, its `return_value` refunded (outstanding first).
pub async fn cancel_exchange(
    saga: &mut Saga<'_, '_>,
    order: Order,
    id: Uuid,
    status: ExchangeStatus,
) -> Result<Order, TerminalError> {
    saga.begin_with(&order);
    let exchange = order.find_exchange(id).cloned();
    let exchange = exchange.ok_or_else(|| TerminalError::new("no such exchange"))?;
    if exchange.status == ExchangeStatus::Requested {
        let (topic, template): (&'static [&'static str], _) = match status {
            ExchangeStatus::Expired => (&["order.exchange_expired"], Some("exchange_expired")),
            _ => (&["order.exchange_cancelled"], None),
        };
        return saga
            .commit(&order, topic, template, move |o, at| {
                o.close_exchange(id, status, Vec::new(), at)
            })
            .await;
    }
    let clears = exchange.return_value.min(order.outstanding_amount);
    let rest = exchange.return_value.checked_sub(clears);
    let undone = refund(saga, &order, rest.unwrap_or(Money::ZERO)).await?;
    let refunds = refunds_made(&undone);
    let refused = undone.iter().any(|u| matches!(u, Undone::Refused(..)));
    let (topics, notify): (&'static [&'static str], _) = match refunds.is_empty() {
        true => (&["order.exchange_cancelled"], None),
        false => (
            &["order.exchange_cancelled", "order.refunded"],
            Some("refund_issued"),
        ),
    };
    saga.commit(&order, topics, notify, move |o, at| {
        o.clear_owed(clears, at);
        apply(o, &undone, at)?;
        o.close_exchange(id, status, refunds, at)?;
        if refused {
            o.attend(id);
        }
        Ok(())
    })
    .await
}

/// The stock that `lines` take.
pub fn stock_lines(lines: &[NewLine]) -> Vec<StockLine> {
    let stock = lines.iter().map(|l| StockLine {
        product_id: l.product_id,
        sku: l.product_sku.clone(),
        warehouse_id: l.warehouse_id,
        quantity: l.quantity,
    });
    stock.collect()
}

/// `reserve_stock` of `lines`; nothing for none.
pub async fn reserve(
    saga: &mut Saga<'_, '_>,
    order: &Order,
    lines: &[StockLine],
) -> Step<Option<Reserved>> {
    if lines.is_empty() {
        return Ok(Ok(None));
    }
    let reserved = super::change_order::reserve(saga, order.id, lines).await?;
    Ok(reserved.map(Some))
}

/// `commit_stock` of `reservation`, then `create_fulfillment` of `lines`: the
/// new parcel's id (none for no lines).
pub async fn commit_and_ship(
    saga: &mut Saga<'_, '_>,
    order: &Order,
    reservation: Option<Reserved>,
    lines: &[NewLine],
) -> Step<Option<String>> {
    let Some(reservation) = reservation else {
        return Ok(Ok(None));
    };
    if let Err(refused) = steps::commit_stock(saga, &reservation.reservation_id).await? {
        return Ok(Err(refused));
    }
    let parcel = lines.iter().map(|l| FulfillmentLine {
        sku: l.product_sku.clone(),
        warehouse_id: l.warehouse_id,
        quantity: l.quantity,
    });
    let shipped = steps::ship(saga, order, parcel.collect()).await?;
    Ok(shipped.map(Some))
}

/// `refund_payment` of `amount` across the order's payments, newest first, each
/// at most what is left of it. A refund finally refused comes back as
/// [`Undone::Refused`], for the commit to park the order.
pub async fn refund(
    saga: &mut Saga<'_, '_>,
    order: &Order,
    amount: Money,
) -> Result<Vec<Undone>, TerminalError> {
    let owed = order.owed_refunds().unwrap_or(Money::ZERO);
    let room = order.refundable().checked_sub(owed).unwrap_or(Money::ZERO);
    // The stack runs newest first: the newest payment's refund goes on last.
    for (payment_id, part) in order.refund_split(amount.min(room)).into_iter().rev() {
        saga.on_rejection(Compensation::RefundPayment {
            payment_id,
            amount: part,
            return_id: None,
        });
    }
    compensate(saga).await
}

/// The refunds that went through.
pub fn refunds_made(undone: &[Undone]) -> Vec<MadeRefund> {
    let made = undone.iter().filter_map(|u| match u {
        Undone::RefundedOn {
            payment_id,
            refund_id,
            amount,
        } => Some(MadeRefund {
            payment_id: payment_id.clone(),
            refund_id: Some(refund_id.clone()),
            amount: *amount,
        }),
        _ => None,
    });
    made.collect()
}

/// Records on the order the charge a settlement made.
fn record_charge(o: &mut Order, charged: Option<&(Capture, String, String)>, at: DateTime<Utc>) {
    if let Some((capture, method, key)) = charged {
        let attempt = o.next_payment_attempt();
        o.record_capture(attempt, method, &capture.payment_id, capture.amount, at);
        o.tag_latest_payment("receive_exchange", key);
    }
}
