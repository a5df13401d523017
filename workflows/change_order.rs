//! Changing a placed order (api-changes.md §1, §2).
//!
//! A quote prices the operations on the order at one version and, with
//! `hold_stock`, holds the added units under a reservation of its own; a timer
//! (`expire_quote`) releases it at `expires_at`.
//!
//! The saga `apply_change` applies a quote (or operations priced at once):
//! 1. `reserve_stock` of the added units (a quote's hold is taken over, no call);
//! 2. `charge_payment` of a positive difference;
//! 3. `commit_stock` of that reservation;
//! 4. `update_fulfillment` with every unit left and the address: the point of no
//!    return. A refusal in 1-4 undoes what went before, newest first, and the change
//!    ends `rolled_back`;
//! 5. `refund_payment` of a negative difference, newest payment first;
//! 6. `release_stock` of the removed units;
//! 7. `update_read_model`: the order at its next version (with `order.changed`,
//!    the payment or refund events and the `order_changed` notification in the
//!    outbox, steps 8 and 9).
//!
//! A refund or release finally refused after the point of no return parks the
//! order for an operator and leaves the change `needs_attention`.

use super::saga::{Saga, Step};
use super::steps;
use super::undo::{apply, compensate, Undone};
use crate::domain::{
    AddedBy, Change, ChangeBook, ChangePlan, ChangeRequest, ChangeStatus, Compensation, Failure,
    Hold, MadeCharge, MadeRefund, Money, Order, Quote, QuoteHold, QuoteStatus, RequestStatus,
    StockLine, Telling,
};
use crate::downstream::{Capture, Rejection, ReservationLine, Reserved};
use crate::{metrics, read_model};
use restate_sdk::prelude::*;
use uuid::Uuid;

/// State key of the order's quotes and changes.
pub const CHANGES_STATE: &str = "changes";

/// The order's quotes and changes as its object holds them.
pub async fn book(ctx: &ObjectContext<'_>) -> Result<ChangeBook, TerminalError> {
    let kept = ctx.get::<Json<ChangeBook>>(CHANGES_STATE).await?;
    Ok(kept.map(|Json(b)| b).unwrap_or_default())
}

/// Keeps `quote` in the book and the read model.
pub async fn keep_quote(
    saga: &Saga<'_, '_>,
    book: &mut ChangeBook,
    quote: Quote,
) -> Result<Quote, TerminalError> {
    let quote = book.put_quote(quote);
    saga.ctx.set(CHANGES_STATE, Json(book.clone()));
    let db = saga.deps.db.clone();
    if saga.save(|| read_model::save_quote(&db, &quote)).await? {
        metrics::count_quote(&quote);
    }
    Ok(quote)
}

/// What `item` of `order` tells as it is written (its event and notification),
/// at the saga's clock.
fn told_by(saga: &Saga<'_, '_>, item: &impl Telling, order: &Order) -> read_model::Told {
    let at = saga.clock().max(item.created_at());
    let (topic, template) = item.tells();
    read_model::Told {
        events: topic
            .map(|t| item.event(t, order.version, at))
            .into_iter()
            .collect(),
        notification: template.map(|t| item.notification(t, order)),
        version: order.version,
        at,
    }
}

/// Keeps `change` of `order` in the book and the read model, with the event and
/// notification its status tells (into the outbox, in the same statement).
pub async fn keep_change(
    saga: &Saga<'_, '_>,
    book: &mut ChangeBook,
    change: Change,
    order: &Order,
) -> Result<Change, TerminalError> {
    let before = book.change(change.change_id).cloned();
    let change = book.put_change(change);
    saga.ctx.set(CHANGES_STATE, Json(book.clone()));
    let (db, told) = (saga.deps.db.clone(), told_by(saga, &change, order));
    if saga
        .save(|| read_model::save_change(&db, &change, &told))
        .await?
    {
        metrics::count_change(&change, before.as_ref());
    }
    Ok(change)
}

/// Keeps `request` of `order` in the book and the read model, as
/// [`keep_change`] does.
pub async fn keep_request(
    saga: &Saga<'_, '_>,
    book: &mut ChangeBook,
    request: ChangeRequest,
    order: &Order,
) -> Result<ChangeRequest, TerminalError> {
    let before = book.request(request.request_id).map(|r| r.status);
    let request = book.put_request(request);
    saga.ctx.set(CHANGES_STATE, Json(book.clone()));
    let (db, told) = (saga.deps.db.clone(), told_by(saga, &request, order));
    let written = saga
        .save(|| read_model::save_request(&db, &request, &told))
        .await?;
    if written && before != Some(request.status) {
        metrics::count_request(&request);
    }
    Ok(request)
}

/// After change `change` of a request rests: an applied change accepts its
/// request; one that ended otherwise leaves it open with that try's `change_id`,
/// or expired when its time came meanwhile.
pub async fn settle_request(
    saga: &mut Saga<'_, '_>,
    book: &mut ChangeBook,
    change: &Change,
    order: &Order,
) -> Result<(), TerminalError> {
    let Some(request) = change.request_id.and_then(|id| book.request(id)).cloned() else {
        return Ok(());
    };
    if request.status != RequestStatus::Open {
        return Ok(());
    }
    let mut request = request;
    request.change_id = Some(change.change_id);
    let at = saga.now().await?;
    match change.status {
        ChangeStatus::Applied => {
            request.decide(RequestStatus::Accepted, Some(change.actor.clone()), at)
        }
        status if status.is_final() && at >= request.expires_at => {
            request.decide(RequestStatus::Expired, None, at)
        }
        _ => {}
    }
    keep_request(saga, book, request, order).await?;
    Ok(())
}

/// `reserve_stock` of a change's added units for order `order_id`.
pub async fn reserve(
    saga: &mut Saga<'_, '_>,
    order_id: Uuid,
    lines: &[StockLine],
) -> Step<Reserved> {
    let lines = lines
        .iter()
        .map(|l| ReservationLine {
            product_id: l.product_id,
            sku: l.sku.clone(),
            warehouse_id: l.warehouse_id,
            quantity: l.quantity,
        })
        .collect();
    steps::reserve_lines(saga, order_id, lines).await
}

/// `release_stock` of everything a quote holds, which must finish once started.
pub async fn release_hold(saga: &mut Saga<'_, '_>, hold: &QuoteHold) -> Step<()> {
    let warehouse = saga.deps.downstream.warehouse.clone();
    let reservation_id = hold.reservation_id.clone();
    saga.compensation_step("release_stock", "reserve_stock", move |key| async move {
        warehouse
            .release(&key, &reservation_id, &[])
            .await
            .map(|_| ())
    })
    .await
}

fn release_all(reservation_id: &str) -> Compensation {
    Compensation::ReleaseStock {
        reservation_id: reservation_id.to_owned(),
        items: Vec::new(),
    }
}

/// Why a change rolled back, from the downstream's refusal at `step`.
fn failure_of(step: &str, refused: &Rejection) -> Failure {
    let code = match (step, refused.code.as_str()) {
        (_, "insufficient_stock" | "reservation_released") => "insufficient_stock",
        _ if refused.status == 402 => "payment_declined",
        (_, "already_shipped") => "already_shipped",
        ("update_fulfillment", _) => "fulfillment_refused",
        _ => "step_refused",
    };
    Failure {
        code: code.to_owned(),
        message: refused.to_string(),
    }
}

/// A charge a change made: the capture, its method and its key.
pub type Charged = (Capture, String, String);

/// Runs the saga `apply_change` of `change` on `order`, with the stock `hold` of its
/// quote, until the change rests: `applied`, `awaiting_payment` (the customer
/// pays, or its deadline comes), `rolled_back`, `cancelled` or `needs_attention`.
pub async fn apply_change(
    saga: &mut Saga<'_, '_>,
    order: Order,
    change: &mut Change,
    hold: Option<QuoteHold>,
) -> Result<Order, TerminalError> {
    saga.begin_with(&order);
    let plan = change.plan.clone();

    // 1. reserve_stock
    let mut reservation = None;
    if !plan.stock.reserve.is_empty() {
        match hold {
            Some(h) => {
                saga.on_rejection(release_all(&h.reservation_id));
                reservation = Some(h);
            }
            None => match reserve(saga, order.id, &plan.stock.reserve).await? {
                Ok(r) => reservation = Some(held(r, &plan.stock.reserve)),
                Err(refused) => {
                    let failure = failure_of("reserve_stock", &refused);
                    return end_unapplied(saga, order, change, None, Ending::RolledBack(failure))
                        .await;
                }
            },
        }
    }

    // 2. charge_payment, or wait for the customer to pay.
    let Some(charge) = plan.settlement.charge.clone() else {
        return go_on(saga, order, change, reservation, None).await;
    };
    if let Some(ending) = stop_asked(saga, change).await? {
        return end_unapplied(saga, order, change, None, ending).await;
    }
    if change.collect == "await_customer" {
        return await_payment(saga, order, change, reservation, charge.amount).await;
    }
    let key = format!("{}:change:{}:charge", order.id, change.change_id);
    match steps::charge(saga, &order, charge.amount, &charge.method, key.clone()).await? {
        Ok(capture) => {
            let charged = Some((capture, charge.method, key));
            go_on(saga, order, change, reservation, charged).await
        }
        Err(refused) if refused.status == 402 && change.payment_deadline_seconds > 0 => {
            await_payment(saga, order, change, reservation, charge.amount).await
        }
        Err(refused) => {
            let failure = failure_of("charge_payment", &refused);
            end_unapplied(saga, order, change, None, Ending::RolledBack(failure)).await
        }
    }
}

/// The stock a reservation of `lines` holds.
fn held(reserved: Reserved, lines: &[StockLine]) -> QuoteHold {
    QuoteHold {
        reservation_id: reserved.reservation_id,
        items: lines.to_vec(),
        expires_at: reserved.expires_at,
    }
}

/// A change that waits for its payment (api-changes.md §3): it keeps its new
/// stock, leaves the order as it is, and owes `amount` by its deadline.
async fn await_payment(
    saga: &mut Saga<'_, '_>,
    order: Order,
    change: &mut Change,
    reservation: Option<QuoteHold>,
    amount: Money,
) -> Result<Order, TerminalError> {
    // The hold is the change's now: its end releases it, not this run.
    saga.drop_compensations();
    let at = saga.now().await?;
    let deadline = chrono::Duration::seconds(i64::from(change.payment_deadline_seconds));
    change.hold = reservation;
    change.amount_due = amount;
    change.pay_by = Some(at + deadline);
    change.status = ChangeStatus::AwaitingPayment;
    Ok(order)
}

/// Takes the stock of a waiting change again: its hold, or a new reservation when
/// the hold lapsed (refused: `insufficient_stock`).
pub async fn take_hold(
    saga: &mut Saga<'_, '_>,
    order: &Order,
    change: &Change,
) -> Result<Result<Option<QuoteHold>, Failure>, TerminalError> {
    let Some(hold) = change.hold.clone() else {
        return Ok(Ok(None));
    };
    let now = saga.now().await?;
    if !hold.lapsed(now) {
        saga.on_rejection(release_all(&hold.reservation_id));
        return Ok(Ok(Some(hold)));
    }
    match reserve(saga, order.id, &hold.items).await? {
        Ok(r) => Ok(Ok(Some(held(r, &hold.items)))),
        Err(refused) => Ok(Err(failure_of("reserve_stock", &refused))),
    }
}

/// Pays waiting change `change` with `method`: a charge of `amount_due` under
/// `key`, then the saga goes on from `commit_stock`. A decline leaves the change
/// waiting and comes back as `Ok(Err(..))`.
pub async fn pay_change(
    saga: &mut Saga<'_, '_>,
    order: Order,
    change: &mut Change,
    method: &str,
    key: String,
) -> Result<Result<Order, Rejection>, TerminalError> {
    saga.begin_with(&order);
    let reservation = match take_hold(saga, &order, change).await? {
        Ok(r) => r,
        Err(failure) => {
            let ending = Ending::RolledBack(failure);
            return end_unapplied(saga, order, change, None, ending)
                .await
                .map(Ok);
        }
    };
    let amount = change.amount_due;
    match steps::charge(saga, &order, amount, method, key.clone()).await? {
        Ok(capture) => {
            let charged = Some((capture, method.to_owned(), key));
            go_on(saga, order, change, reservation, charged)
                .await
                .map(Ok)
        }
        Err(refused) => {
            // Still waiting, with the stock it holds now.
            saga.drop_compensations();
            change.hold = reservation;
            Ok(Err(refused))
        }
    }
}

/// The deadline of waiting change `change` came: under `revert` it is undone and
/// ends `expired`; under `keep_owed` it applies unpaid, its difference owed.
pub async fn deadline_reached(
    saga: &mut Saga<'_, '_>,
    order: Order,
    change: &mut Change,
) -> Result<Order, TerminalError> {
    saga.begin_with(&order);
    if change.on_unpaid != "keep_owed" {
        if let Some(hold) = &change.hold {
            saga.on_rejection(release_all(&hold.reservation_id));
        }
        return end_unapplied(saga, order, change, None, Ending::Expired).await;
    }
    match take_hold(saga, &order, change).await? {
        Ok(reservation) => {
            change.outstanding = change.amount_due;
            go_on(saga, order, change, reservation, None).await
        }
        Err(failure) => end_unapplied(saga, order, change, None, Ending::RolledBack(failure)).await,
    }
}

/// Cancels waiting change `change`: its hold is released and it ends `cancelled`.
pub async fn cancel_waiting(
    saga: &mut Saga<'_, '_>,
    order: Order,
    change: &mut Change,
) -> Result<Order, TerminalError> {
    saga.begin_with(&order);
    if let Some(hold) = &change.hold {
        saga.on_rejection(release_all(&hold.reservation_id));
    }
    end_unapplied(saga, order, change, None, Ending::Cancelled).await
}

/// Steps 3 to 9 of `apply_change`, once the difference is paid (or kept owed).
async fn go_on(
    saga: &mut Saga<'_, '_>,
    order: Order,
    change: &mut Change,
    reservation: Option<QuoteHold>,
    charged: Option<Charged>,
) -> Result<Order, TerminalError> {
    let plan = change.plan.clone();

    // 3. commit_stock
    if let Some(hold) = &reservation {
        if let Some(ending) = stop_asked(saga, change).await? {
            return end_unapplied(saga, order, change, charged, ending).await;
        }
        if let Err(refused) = steps::commit_stock(saga, &hold.reservation_id).await? {
            let failure = failure_of("commit_stock", &refused);
            let ending = Ending::RolledBack(failure);
            return end_unapplied(saga, order, change, charged, ending).await;
        }
    }

    // 4. update_fulfillment: the point of no return.
    if let Some(ending) = stop_asked(saga, change).await? {
        return end_unapplied(saga, order, change, charged, ending).await;
    }
    change.point_of_no_return = true;
    if let (Some(fulfillment_id), true) = (order.fulfillment_id.clone(), parcel_changes(&plan)) {
        let updated =
            update_fulfillment(saga, &order, change.change_id, &fulfillment_id, &plan).await?;
        if let Err(refused) = updated {
            change.point_of_no_return = false;
            let failure = failure_of("update_fulfillment", &refused);
            let ending = Ending::RolledBack(failure);
            return end_unapplied(saga, order, change, charged, ending).await;
        }
    }
    saga.drop_compensations();

    // 6. release_stock, then 5. refund_payment: the stack runs newest first.
    for (reservation_id, items) in order.release_plan(&StockLine::skus(&plan.stock.release)) {
        saga.on_rejection(Compensation::ReleaseStock {
            reservation_id,
            items,
        });
    }
    for refund in plan.settlement.refunds.iter().rev() {
        saga.on_rejection(Compensation::RefundPayment {
            payment_id: refund.payment_id.clone(),
            amount: refund.amount,
            return_id: None,
        });
    }
    let undone = compensate(saga).await?;

    // 7. update_read_model, with 8. the events and 9. the notification.
    let refunded = undone
        .iter()
        .any(|u| matches!(u, Undone::RefundedOn { .. }));
    let topics: &'static [&'static str] = match (charged.is_some(), refunded) {
        (true, _) => &["order.payment_added"],
        (false, true) => &["order.refunded"],
        (false, false) => &[],
    };
    let notify = change.notify_customer.then_some("order_changed");
    let change_id = change.change_id;
    let (kept, released) = (reservation.clone(), StockLine::skus(&plan.stock.release));
    let made = charged.clone();
    let undone_kept = undone.clone();
    let owed = change.outstanding;
    let order = saga
        .commit(&order, topics, notify, move |o, at| {
            let before: Vec<i32> = o.items.iter().map(|i| i.id).collect();
            o.apply_change(&plan);
            for item in o.items.iter_mut().filter(|i| !before.contains(&i.id)) {
                item.added_by = Some(AddedBy {
                    kind: "change".into(),
                    id: change_id,
                });
            }
            if let Some((capture, method, key)) = &made {
                let attempt = o.next_payment_attempt();
                o.record_capture(attempt, method, &capture.payment_id, capture.amount, at);
                o.tag_latest_payment("apply_change", key);
            }
            o.clear_owed(plan.settlement.clears_outstanding, at);
            o.owe(owed, at);
            o.take_holds(&released);
            if let Some(hold) = &kept {
                o.holds.extend(hold.items.iter().map(|l| Hold {
                    reservation_id: hold.reservation_id.clone(),
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                }));
            }
            apply(o, &undone_kept, at)
        })
        .await?;

    change.version_after = Some(order.version);
    change.hold = None;
    change.amount_due = Money::ZERO;
    record_moves(change, charged.map(|(c, m, _)| (c, m)), &undone);
    let refused = undone.iter().any(|u| matches!(u, Undone::Refused(..)));
    change.attention = order.attention.clone().filter(|_| refused);
    let status = match refused {
        true => ChangeStatus::NeedsAttention,
        false => ChangeStatus::Applied,
    };
    change.heads_for = refused.then_some(ChangeStatus::Applied);
    change.close(status, None, order.updated_at);
    Ok(order)
}

/// How a change ends without applying.
#[derive(Debug, Clone)]
pub enum Ending {
    /// A step was refused before the point of no return.
    RolledBack(Failure),
    /// Cancelled (api-changes.md §4).
    Cancelled,
    /// Unpaid at its deadline, under `revert`.
    Expired,
}

/// A cancel asked for while the change runs (api-changes.md §4), looked at each
/// step boundary before the point of no return, as a journaled step.
async fn stop_asked(
    saga: &mut Saga<'_, '_>,
    change: &Change,
) -> Result<Option<Ending>, TerminalError> {
    let (db, change_id) = (saga.deps.db.clone(), change.change_id);
    let asked = saga
        .ctx
        .run(|| async move {
            let asked = read_model::cancel_asked(&db, change_id).await;
            Ok(Json(asked.map_err(HandlerError::from)?.is_some()))
        })
        .name("cancel_asked")
        .await?;
    Ok(asked.into_inner().then_some(Ending::Cancelled))
}

/// Undoes what the change did before step 4 and ends it as `ending` says. The
/// order moves a version only when money moved and was given back, or a
/// compensation was refused (it then waits for an operator).
async fn end_unapplied(
    saga: &mut Saga<'_, '_>,
    order: Order,
    change: &mut Change,
    charged: Option<Charged>,
    ending: Ending,
) -> Result<Order, TerminalError> {
    let undone = compensate(saga).await?;
    let refused = undone.iter().any(|u| matches!(u, Undone::Refused(..)));
    let moved = charged.is_some()
        || undone
            .iter()
            .any(|u| matches!(u, Undone::RefundedCapture { .. }));
    let order = if moved || refused {
        let made = charged.clone();
        let undone = undone.clone();
        let topics: &'static [&'static str] = match moved {
            true => &["order.payment_added", "order.refunded"],
            false => &[],
        };
        saga.commit(&order, topics, None, move |o, at| {
            if let Some((capture, method, key)) = &made {
                let attempt = o.next_payment_attempt();
                o.record_capture(attempt, method, &capture.payment_id, capture.amount, at);
                o.tag_latest_payment("apply_change", key);
            }
            apply(o, &undone, at)
        })
        .await?
    } else {
        order
    };
    if moved || refused {
        change.version_after = Some(order.version);
    }
    record_moves(change, charged.map(|(c, m, _)| (c, m)), &undone);
    let at = saga.now().await?;
    change.attention = order.attention.clone().filter(|_| refused);
    change.hold = None;
    let (ended, failure) = match ending {
        Ending::RolledBack(failure) => (ChangeStatus::RolledBack, Some(failure)),
        Ending::Cancelled => (ChangeStatus::Cancelled, None),
        Ending::Expired => (ChangeStatus::Expired, None),
    };
    let status = match refused {
        true => ChangeStatus::NeedsAttention,
        false => ended,
    };
    change.heads_for = refused.then_some(ended);
    change.close(status, failure, at);
    Ok(order)
}

/// Records on the change the charge it made and the refunds that went through.
fn record_moves(change: &mut Change, charged: Option<(Capture, String)>, undone: &[Undone]) {
    if let Some((capture, method)) = charged {
        change.moved.charges.push(MadeCharge {
            payment_id: capture.payment_id,
            method,
            amount: capture.amount,
        });
    }
    for u in undone {
        match u {
            Undone::RefundedOn {
                payment_id,
                refund_id,
                amount,
            } => change.moved.refunds.push(MadeRefund {
                payment_id: payment_id.clone(),
                refund_id: Some(refund_id.clone()),
                amount: *amount,
            }),
            Undone::RefundedCapture {
                payment_id,
                method,
                captured,
                refunded,
            } => {
                change.moved.charges.push(MadeCharge {
                    payment_id: payment_id.clone(),
                    method: method.clone(),
                    amount: *captured,
                });
                change.moved.refunds.push(MadeRefund {
                    payment_id: payment_id.clone(),
                    refund_id: None,
                    amount: *refunded,
                });
            }
            _ => {}
        }
    }
}

/// True when the parcel changes: its units or its address.
fn parcel_changes(plan: &ChangePlan) -> bool {
    plan.shipping_address.is_some()
        || plan
            .lines
            .iter()
            .any(|l| l.before.map(|b| b.quantity) != Some(l.after.quantity))
}

/// `update_fulfillment`: the whole parcel after the change.
async fn update_fulfillment(
    saga: &mut Saga<'_, '_>,
    order: &Order,
    change_id: Uuid,
    fulfillment_id: &str,
    plan: &ChangePlan,
) -> Step<()> {
    let fulfillment = saga.deps.downstream.fulfillment.clone();
    let lines = steps::fulfillment_lines(&plan.result.items);
    let (order_id, fulfillment_id) = (order.id, fulfillment_id.to_owned());
    let address = plan.result.shipping_address.clone();
    saga.forward(
        "update_fulfillment",
        |_| None,
        |_| None,
        move |key| async move {
            fulfillment
                .update(&key, &fulfillment_id, order_id, change_id, &lines, &address)
                .await
        },
    )
    .await
}

/// Marks `quote` refused: the warehouse would not hold its units.
pub fn hold_refused(quote: &mut Quote, refused: &Rejection) {
    quote.status = QuoteStatus::Refused;
    quote.failure = Some(Failure {
        code: "insufficient_stock".into(),
        message: refused.to_string(),
    });
}
