//! The commands that change a placed order: quote, release a quote, let a quote
//! expire, apply a change. Each checks the order and the request in the order
//! api-changes.md gives, then runs its steps ([`super::change_order`]).

use super::change_order::{
    apply_change, book, cancel_waiting, deadline_reached, hold_refused, keep_change, keep_quote,
    pay_change, release_hold, reserve, settle_request,
};
use super::killed::current;
use super::outcome::{CommandOutcome, Rested};
use super::saga::Saga;
use super::{steps, Deps};
use crate::domain::{
    Actor, Change, ChangeBook, ChangeError, ChangeStatus, Delta, Money, Moved, Operation, Order,
    OrderStatus, Quote, QuoteHold, QuoteStatus, Refusal,
};
use restate_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A quote of `operations` (`POST /orders/{id}/change-quotes`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuoteRequest {
    /// Bound to the request's `Idempotency-Key`, so that a repeat names this quote.
    pub quote_id: Uuid,
    pub operations: Vec<Operation>,
    pub hold_stock: bool,
    pub ttl_seconds: u32,
    #[serde(default)]
    pub reason: Option<String>,
    /// The method that pays a positive difference, if not the order's.
    #[serde(default)]
    pub method: Option<String>,
}

/// A command on quote `quote_id` (release).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuoteCommand {
    pub quote_id: Uuid,
}

/// Applying a change (`POST /orders/{id}/changes`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyRequest {
    /// Bound to the request's `Idempotency-Key`, so that a repeat names this change.
    pub change_id: Uuid,
    /// The version `If-Match` names.
    pub if_match: i64,
    #[serde(default)]
    pub quote_id: Option<Uuid>,
    #[serde(default)]
    pub operations: Option<Vec<Operation>>,
    #[serde(default)]
    pub expected_delta: Option<Delta>,
    #[serde(default)]
    pub method: Option<String>,
    pub collect: String,
    pub on_unpaid: String,
    pub payment_deadline_seconds: u32,
    pub notify_customer: bool,
    #[serde(default)]
    pub reason: Option<String>,
    pub actor: Actor,
    /// The change request it accepts.
    #[serde(default)]
    pub request_id: Option<Uuid>,
}

/// Why the order cannot change now, if it cannot.
pub(super) fn not_editable(order: &Order) -> Option<Refusal> {
    let message = match (order.status, &order.attention) {
        (OrderStatus::Confirmed | OrderStatus::Processing, None) => return None,
        (OrderStatus::Confirmed | OrderStatus::Processing, Some(_)) => {
            "the order waits for an operator".to_owned()
        }
        (status, _) => {
            format!("a {status} order cannot change; only a confirmed or processing one can")
        }
    };
    Some(Refusal::NotEditable { message })
}

pub(super) fn priced_refusal(error: ChangeError) -> Refusal {
    match error {
        ChangeError::Invalid(e) => Refusal::invalid(e.field, e.message),
        ChangeError::QuantityExceeded(message) => Refusal::QuantityExceeded { message },
    }
}

/// When an open quote's timer is to fire.
pub struct Expiry {
    pub quote_id: Uuid,
    pub after: std::time::Duration,
}

/// Quotes `req` on the order, holding its added units when asked; an open quote
/// comes with the expiry its timer must fire at.
pub async fn quote(
    ctx: &ObjectContext<'_>,
    deps: &Deps,
    req: QuoteRequest,
) -> Result<(CommandOutcome, Option<Expiry>), TerminalError> {
    let (Some(order), _) = current(ctx, deps).await? else {
        return Ok((Refusal::OrderNotFound.into(), None));
    };
    let mut book = book(ctx).await?;
    if book.quote(req.quote_id).is_some() {
        return Ok((CommandOutcome::Done(Rested::from(&order)), None));
    }
    if let Some(refusal) = not_editable(&order) {
        return Ok((refusal.into(), None));
    }
    if let Some(active) = book.active() {
        let change_id = active.change_id;
        return Ok((Refusal::ChangeInProgress { change_id }.into(), None));
    }
    let plan = match order.plan_change(&req.operations, req.method.as_deref()) {
        Ok(plan) => plan,
        Err(e) => return Ok((priced_refusal(e).into(), None)),
    };

    let name = format!("quote_change:{}", req.quote_id);
    let mut saga = Saga::new(ctx, deps, order.id, name).asked_by("api", req.reason.clone());
    let at = saga.now().await?;
    let mut quote = Quote {
        quote_id: req.quote_id,
        order_id: order.id,
        status: QuoteStatus::Open,
        operations: req.operations,
        reason: req.reason,
        method: req.method,
        expires_at: at + chrono::Duration::seconds(i64::from(req.ttl_seconds)),
        created_at: at,
        hold: None,
        failure: None,
        plan,
        rev: 0,
    };
    if req.hold_stock && !quote.plan.stock.reserve.is_empty() {
        match reserve(&mut saga, order.id, &quote.plan.stock.reserve).await? {
            Ok(reserved) => {
                if let Some(lapses) = reserved.expires_at {
                    quote.expires_at = quote.expires_at.min(lapses);
                }
                quote.hold = Some(QuoteHold {
                    reservation_id: reserved.reservation_id,
                    items: quote.plan.stock.reserve.clone(),
                    expires_at: reserved.expires_at,
                });
            }
            Err(refused) => hold_refused(&mut quote, &refused),
        }
    }
    let quote = keep_quote(&saga, &mut book, quote).await?;
    saga.finish().await;
    if quote.status == QuoteStatus::Refused {
        let sku = quote.plan.stock.reserve.first().map(|l| l.sku.clone());
        let message = quote
            .failure
            .as_ref()
            .map(|f| f.message.clone())
            .unwrap_or_default();
        return Ok((Refusal::InsufficientStock { sku, message }.into(), None));
    }
    let after = (quote.expires_at - at).to_std().unwrap_or_default();
    let expiry = Expiry {
        quote_id: quote.quote_id,
        after,
    };
    Ok((CommandOutcome::Done(Rested::from(&order)), Some(expiry)))
}

/// Releases quote `quote_id` now; a quote that holds nothing any more is left as
/// it is.
pub async fn release(
    ctx: &ObjectContext<'_>,
    deps: &Deps,
    req: QuoteCommand,
) -> Result<CommandOutcome, TerminalError> {
    let (Some(order), _) = current(ctx, deps).await? else {
        return Ok(Refusal::OrderNotFound.into());
    };
    let book = book(ctx).await?;
    let Some(quote) = book.quote(req.quote_id) else {
        return Ok(Refusal::QuoteNotFound.into());
    };
    match quote.status {
        QuoteStatus::Used => {
            let message = "the quote was used by a change".to_owned();
            Ok(Refusal::InvalidTransition { message }.into())
        }
        QuoteStatus::Open | QuoteStatus::Holding => {
            let name = format!("release_quote:{}", req.quote_id);
            let mut saga = Saga::new(ctx, deps, order.id, name).asked_by("api", None);
            end_quote(&mut saga, book, req.quote_id, QuoteStatus::Released).await?;
            saga.finish().await;
            Ok(CommandOutcome::Done(Rested::from(&order)))
        }
        QuoteStatus::Released | QuoteStatus::Expired | QuoteStatus::Refused => {
            Ok(CommandOutcome::Done(Rested::from(&order)))
        }
    }
}

/// The quote's timer: an `open` quote expires and its hold is released.
pub async fn expire(
    ctx: &ObjectContext<'_>,
    deps: &Deps,
    quote_id: Uuid,
) -> Result<(), TerminalError> {
    let (Some(order), _) = current(ctx, deps).await? else {
        return Ok(());
    };
    let book = book(ctx).await?;
    if book.quote(quote_id).map(|q| q.status) != Some(QuoteStatus::Open) {
        return Ok(());
    }
    let name = format!("expire_quote:{quote_id}");
    let mut saga = Saga::new(ctx, deps, order.id, name).asked_by("system", None);
    end_quote(&mut saga, book, quote_id, QuoteStatus::Expired).await?;
    saga.finish().await;
    Ok(())
}

/// Releases the hold of quote `quote_id` (one call) and ends it `status`. A
/// release the warehouse refuses leaves the hold to its own expiry.
async fn end_quote(
    saga: &mut Saga<'_, '_>,
    mut book: ChangeBook,
    quote_id: Uuid,
    status: QuoteStatus,
) -> Result<(), TerminalError> {
    let Some(mut quote) = book.quote(quote_id).cloned() else {
        return Ok(());
    };
    if let Some(hold) = &quote.hold {
        if let Err(refused) = release_hold(saga, hold).await? {
            tracing::warn!(order.id = %quote.order_id, %refused, "the warehouse refused to release a quote's hold");
        }
    }
    quote.status = status;
    keep_quote(saga, &mut book, quote).await?;
    Ok(())
}

/// Applies a change after the checks of api-changes.md §2, in their order.
/// A waiting change comes with the deadline its timer must fire at.
pub async fn apply(
    ctx: &ObjectContext<'_>,
    deps: &Deps,
    req: ApplyRequest,
) -> Result<(CommandOutcome, Option<Deadline>), TerminalError> {
    let outcome = |o: CommandOutcome| Ok((o, None));
    let (Some(order), _) = current(ctx, deps).await? else {
        return outcome(Refusal::OrderNotFound.into());
    };
    let mut book = book(ctx).await?;
    if book.change(req.change_id).is_some() {
        return outcome(CommandOutcome::Done(Rested::from(&order)));
    }
    let quote = match req.quote_id {
        Some(id) => match book.quote(id) {
            Some(q) => Some(q.clone()),
            None => return outcome(Refusal::QuoteNotFound.into()),
        },
        None => None,
    };
    let name = format!("apply_change:{}", req.change_id);
    let mut saga = Saga::new(ctx, deps, order.id, name).asked_by("api", req.reason.clone());
    let at = saga.now().await?;
    if let Some(q) = &quote {
        if q.status != QuoteStatus::Open || at >= q.expires_at {
            let message = match q.status {
                QuoteStatus::Open => "the quote is past its expires_at".to_owned(),
                status => format!(
                    "the quote is {}",
                    serde_json::to_value(status)
                        .unwrap_or_default()
                        .as_str()
                        .unwrap_or("closed")
                ),
            };
            return outcome(Refusal::QuoteExpired { message }.into());
        }
    }
    if req.if_match != order.version {
        let (asked, current_version) = (req.if_match, order.version);
        return outcome(
            Refusal::VersionConflict {
                asked,
                current_version,
            }
            .into(),
        );
    }
    if let Some(q) = &quote {
        if q.plan.order_version != order.version {
            let (quote_version, current_version) = (q.plan.order_version, order.version);
            return outcome(
                Refusal::QuoteSuperseded {
                    quote_version,
                    current_version,
                    preview: None,
                }
                .into(),
            );
        }
    }
    if let Some(active) = book.active() {
        let change_id = active.change_id;
        return outcome(Refusal::ChangeInProgress { change_id }.into());
    }
    if let Some(refusal) = not_editable(&order) {
        return outcome(refusal.into());
    }
    let (operations, mut plan) = match &quote {
        Some(q) => (q.operations.clone(), q.plan.clone()),
        None => {
            let operations = req.operations.clone().unwrap_or_default();
            match order.plan_change(&operations, req.method.as_deref()) {
                Ok(plan) => (operations, plan),
                Err(e) => return outcome(priced_refusal(e).into()),
            }
        }
    };
    if let (Some(method), Some(charge)) = (&req.method, plan.settlement.charge.as_mut()) {
        // Another card; the amount stays pinned.
        charge.method = method.clone();
    }
    if let Some(expected) = req.expected_delta {
        if expected != plan.settlement.delta {
            let delta = plan.settlement.delta.to_string();
            return outcome(Refusal::AmountMismatch { delta }.into());
        }
    }

    let hold = quote.as_ref().and_then(|q| q.hold.clone());
    if let Some(mut q) = quote {
        q.status = QuoteStatus::Used;
        keep_quote(&saga, &mut book, q).await?;
    }
    let change = Change {
        change_id: req.change_id,
        order_id: order.id,
        currency: order.currency.clone(),
        status: ChangeStatus::Applying,
        quote_id: req.quote_id,
        operations,
        reason: req.reason,
        actor: req.actor,
        version_before: order.version,
        version_after: None,
        plan,
        moved: Moved::default(),
        collect: req.collect,
        on_unpaid: req.on_unpaid,
        payment_deadline_seconds: req.payment_deadline_seconds,
        notify_customer: req.notify_customer,
        point_of_no_return: false,
        steps: Vec::new(),
        failure: None,
        attention: None,
        created_at: at,
        applied_at: None,
        closed_at: None,
        rev: 0,
        hold: None,
        amount_due: Money::ZERO,
        pay_by: None,
        outstanding: Money::ZERO,
        request_id: req.request_id,
        heads_for: None,
    };
    let mut change = keep_change(&saga, &mut book, change, &order).await?;
    let result = apply_change(&mut saga, order.clone(), &mut change, hold).await;
    let order = rest(&mut saga, &mut book, change.clone(), &order, result).await?;
    let deadline = deadline_of(book.change(req.change_id));
    Ok((CommandOutcome::Done(Rested::from(&order)), deadline))
}

/// Keeps `change` as its saga left it and finishes the saga. A saga that failed
/// (cancelled through Restate, or an error no retry passes) leaves the change
/// waiting for an operator, as its order does.
async fn rest(
    saga: &mut Saga<'_, '_>,
    book: &mut ChangeBook,
    mut change: Change,
    before: &Order,
    result: Result<Order, TerminalError>,
) -> Result<Order, TerminalError> {
    match result {
        Ok(order) => {
            let change = keep_change(saga, book, change, &order).await?;
            settle_request(saga, book, &change, &order).await?;
            saga.finish().await;
            Ok(order)
        }
        Err(e) => {
            let at = saga.now().await?;
            change.attention = Some(crate::domain::Attention {
                step: "apply_change".into(),
                code: "saga_failed".into(),
                message: e.message().to_owned(),
                since: at,
            });
            change.close(ChangeStatus::NeedsAttention, None, at);
            let order = saga.latest().cloned().unwrap_or_else(|| before.clone());
            keep_change(saga, book, change, &order).await?;
            saga.finish().await;
            Err(e)
        }
    }
}

/// When a waiting change's deadline timer must fire: `pay_by`, set as it began
/// to wait, just now.
pub struct Deadline {
    pub change_id: Uuid,
    pub after: std::time::Duration,
}

fn deadline_of(change: Option<&Change>) -> Option<Deadline> {
    let change = change.filter(|c| c.status == ChangeStatus::AwaitingPayment)?;
    Some(Deadline {
        change_id: change.change_id,
        after: std::time::Duration::from_secs(change.payment_deadline_seconds.into()),
    })
}

/// The order, its book and change `change_id`; the refusal when either is missing.
async fn with_change(
    ctx: &ObjectContext<'_>,
    deps: &Deps,
    change_id: Uuid,
) -> Result<Result<(Order, ChangeBook, Change), Refusal>, TerminalError> {
    let (Some(order), _) = current(ctx, deps).await? else {
        return Ok(Err(Refusal::OrderNotFound));
    };
    let book = book(ctx).await?;
    Ok(match book.change(change_id).cloned() {
        Some(change) => Ok((order, book, change)),
        None => Err(Refusal::ChangeNotFound),
    })
}

/// A payment of a change (`POST /orders/{id}/changes/{change_id}/payments`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PayChangeRequest {
    pub change_id: Uuid,
    pub method: String,
    #[serde(default)]
    pub amount: Option<Money>,
    /// Names this payment's charge for good (from the request's key).
    pub payment_key: String,
}

/// A command on change `change_id` (cancel), or its timer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangeCommand {
    pub change_id: Uuid,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Pays a waiting change (its saga goes on from `commit_stock`), or what an
/// applied one left owed (api-changes.md §3).
pub async fn pay(
    ctx: &ObjectContext<'_>,
    deps: &Deps,
    req: PayChangeRequest,
) -> Result<CommandOutcome, TerminalError> {
    let (order, mut book, mut change) = match with_change(ctx, deps, req.change_id).await? {
        Ok(found) => found,
        Err(refusal) => return Ok(refusal.into()),
    };
    let due = match change.status {
        ChangeStatus::AwaitingPayment => change.amount_due,
        ChangeStatus::Applied
            if change.outstanding > Money::ZERO && order.outstanding_amount > Money::ZERO =>
        {
            change.outstanding.min(order.outstanding_amount)
        }
        status => {
            let message = format!("a change that is {} has nothing to pay", status.as_str());
            return Ok(Refusal::InvalidTransition { message }.into());
        }
    };
    if req.amount.is_some_and(|a| a != due) {
        let delta = due.to_string();
        return Ok(Refusal::AmountMismatch { delta }.into());
    }
    let name = format!("pay_change:{}", req.change_id);
    let mut saga = Saga::new(ctx, deps, order.id, name).asked_by("api", None);
    let key = format!(
        "{}:change:{}:pay:{}",
        order.id, change.change_id, req.payment_key
    );
    if change.status == ChangeStatus::Applied {
        return pay_owed(&mut saga, &mut book, change, order, due, &req.method, key).await;
    }
    let result = pay_change(&mut saga, order.clone(), &mut change, &req.method, key).await;
    let (result, declined) = match result {
        Ok(Ok(order)) => (Ok(order), false),
        Ok(Err(_)) => (Ok(order.clone()), true),
        Err(e) => (Err(e), false),
    };
    let order = rest(&mut saga, &mut book, change, &order, result).await?;
    Ok(match declined {
        true => Refusal::PaymentDeclined.into(),
        false => CommandOutcome::Done(Rested::from(&order)),
    })
}

/// Charges `amount` of what applied change `change` left owed, and lowers what the
/// order and the change owe by it.
async fn pay_owed(
    saga: &mut Saga<'_, '_>,
    book: &mut ChangeBook,
    mut change: Change,
    order: Order,
    amount: Money,
    method: &str,
    key: String,
) -> Result<CommandOutcome, TerminalError> {
    saga.begin_with(&order);
    let capture = match steps::charge(saga, &order, amount, method, key.clone()).await? {
        Ok(capture) => capture,
        Err(_) => {
            saga.finish().await;
            return Ok(Refusal::PaymentDeclined.into());
        }
    };
    let (method, charged_with) = (method.to_owned(), method.to_owned());
    let made = capture.clone();
    let order = saga
        .commit(&order, &["order.payment_added"], None, move |o, at| {
            let attempt = o.next_payment_attempt();
            o.record_capture(attempt, &method, &made.payment_id, made.amount, at);
            o.tag_latest_payment("apply_change", &key);
            o.clear_owed(made.amount, at);
            Ok(())
        })
        .await?;
    change.outstanding = change
        .outstanding
        .checked_sub(capture.amount)
        .unwrap_or(Money::ZERO);
    change.moved.charges.push(crate::domain::MadeCharge {
        payment_id: capture.payment_id,
        method: charged_with,
        amount: capture.amount,
    });
    keep_change(saga, book, change, &order).await?;
    saga.finish().await;
    Ok(CommandOutcome::Done(Rested::from(&order)))
}

/// The deadline of a waiting change: a timer that finds it in another state does
/// nothing.
pub async fn deadline(
    ctx: &ObjectContext<'_>,
    deps: &Deps,
    change_id: Uuid,
) -> Result<(), TerminalError> {
    let Ok((order, mut book, mut change)) = with_change(ctx, deps, change_id).await? else {
        return Ok(());
    };
    if change.status != ChangeStatus::AwaitingPayment {
        return Ok(());
    }
    let name = format!("change_payment_deadline:{change_id}");
    let mut saga = Saga::new(ctx, deps, order.id, name).asked_by("system", None);
    let result = deadline_reached(&mut saga, order.clone(), &mut change).await;
    rest(&mut saga, &mut book, change, &order, result).await?;
    Ok(())
}

/// Cancels a change (api-changes.md §4). A running one was asked to stop at its
/// next step boundary before this runs (the object runs one command at a time), so
/// it is found at rest: a waiting change is undone here, a cancelled one answers
/// the same again, one past its point of no return is refused.
pub async fn cancel(
    ctx: &ObjectContext<'_>,
    deps: &Deps,
    req: ChangeCommand,
) -> Result<CommandOutcome, TerminalError> {
    let (order, mut book, mut change) = match with_change(ctx, deps, req.change_id).await? {
        Ok(found) => found,
        Err(refusal) => return Ok(refusal.into()),
    };
    let status = change.status;
    match status {
        ChangeStatus::Cancelled => return Ok(CommandOutcome::Done(Rested::from(&order))),
        ChangeStatus::AwaitingPayment => {}
        _ if change.point_of_no_return => {
            let (change_id, status) = (change.change_id, status.as_str().to_owned());
            return Ok(Refusal::PastPointOfNoReturn { change_id, status }.into());
        }
        _ => {
            let message = format!("a change that is {} cannot be cancelled", status.as_str());
            return Ok(Refusal::InvalidTransition { message }.into());
        }
    }
    let name = format!("cancel_change:{}", req.change_id);
    let mut saga = Saga::new(ctx, deps, order.id, name).asked_by("api", req.reason);
    let result = cancel_waiting(&mut saga, order.clone(), &mut change).await;
    let order = rest(&mut saga, &mut book, change, &order, result).await?;
    Ok(CommandOutcome::Done(Rested::from(&order)))
}

/// `409 change_in_progress` while a change of the order is under way: no other
/// give-back or change may start (api-changes.md, "One change at a time").
pub async fn change_in_progress(ctx: &ObjectContext<'_>) -> Result<Option<Refusal>, TerminalError> {
    let book = book(ctx).await?;
    Ok(book.active().map(|c| Refusal::ChangeInProgress {
        change_id: c.change_id,
    }))
}

/// Before a whole cancel: cancels the change that waits for its payment, if any,
/// releasing its hold. The order comes back as it then stands.
pub async fn cancel_waiting_change(
    ctx: &ObjectContext<'_>,
    deps: &Deps,
    order: Order,
) -> Result<Order, TerminalError> {
    let mut book = book(ctx).await?;
    let Some(mut change) = book.active().cloned() else {
        return Ok(order);
    };
    let name = format!("cancel_change:{}", change.change_id);
    let mut saga = Saga::new(ctx, deps, order.id, name).asked_by("api", None);
    let result = cancel_waiting(&mut saga, order.clone(), &mut change).await;
    rest(&mut saga, &mut book, change, &order, result).await
}

/// After an operator's retry or resolve left the order waiting for nobody, the
/// changes that waited for an operator take the state their saga was heading for
/// (`applied` past the point of no return, else `rolled_back`, `cancelled` or
/// `expired`).
pub async fn settle_attended(saga: &mut Saga<'_, '_>, order: &Order) -> Result<(), TerminalError> {
    if order.attention.is_some() {
        return Ok(());
    }
    let mut book = book(saga.ctx).await?;
    let attended: Vec<Change> = book
        .changes
        .iter()
        .filter(|c| c.status == ChangeStatus::NeedsAttention)
        .cloned()
        .collect();
    if attended.is_empty() {
        return Ok(());
    }
    let at = saga.now().await?;
    for mut change in attended {
        let status = change
            .heads_for
            .take()
            .unwrap_or(match change.point_of_no_return {
                true => ChangeStatus::Applied,
                false => ChangeStatus::RolledBack,
            });
        change.attention = None;
        let failure = change.failure.take();
        change.close(status, failure, at);
        let change = keep_change(saga, &mut book, change, order).await?;
        settle_request(saga, &mut book, &change, order).await?;
    }
    Ok(())
}

/// The open quotes that hold stock, and their reservations.
pub fn open_quote_holds(book: &ChangeBook) -> Vec<(Uuid, String)> {
    book.quotes
        .iter()
        .filter(|q| q.status == QuoteStatus::Open)
        .filter_map(|q| Some((q.quote_id, q.hold.as_ref()?.reservation_id.clone())))
        .collect()
}

/// Marks `quotes` released: a whole cancel released their holds.
pub async fn mark_released(
    saga: &Saga<'_, '_>,
    book: &mut ChangeBook,
    quotes: &[(Uuid, String)],
) -> Result<(), TerminalError> {
    for (quote_id, _) in quotes {
        if let Some(mut quote) = book.quote(*quote_id).cloned() {
            quote.status = QuoteStatus::Released;
            keep_quote(saga, book, quote).await?;
        }
    }
    Ok(())
}
