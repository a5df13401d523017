//! The commands on exchanges and claims: each checks the order and the request,
//! then runs its steps ([`super::exchanges`], [`super::claims`]).

use super::change_commands::change_in_progress;
use super::claims::{close_claim, open_claim, receive_claim, resolve_claim};
use super::exchanges::{cancel_exchange, receive_exchange, request_exchange};
use super::killed::current;
use super::outcome::{CommandOutcome, Rested};
use super::returns::ReturnTerms;
use super::saga::Saga;
use super::Deps;
use crate::domain::{
    Claim, ClaimItem, ClaimStatus, Delta, DomainError, Exchange, ExchangeSettlement,
    ExchangeStatus, Money, NewItem, Order, OrderStatus, Refusal, Resolution, ReturnItem,
};
use crate::downstream::Rejection;
use restate_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use uuid::Uuid;

/// An exchange (`POST /orders/{id}/exchanges`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExchangeRequest {
    /// Bound to the request's `Idempotency-Key`, so that a repeat names it.
    pub exchange_id: Uuid,
    pub return_items: Vec<ReturnItem>,
    pub new_items: Vec<NewItem>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
}

/// Receiving, paying or cancelling exchange `exchange_id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExchangeCommand {
    pub exchange_id: Uuid,
    /// For a payment: the method that pays the difference.
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A claim (`POST /orders/{id}/claims`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimRequest {
    /// Bound to the request's `Idempotency-Key`, so that a repeat names it.
    pub claim_id: Uuid,
    pub items: Vec<ClaimItem>,
    pub require_return: bool,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Receiving, resolving or rejecting claim `claim_id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimCommand {
    pub claim_id: Uuid,
    /// For a resolve.
    #[serde(default)]
    pub resolution: Option<Resolution>,
    #[serde(default)]
    pub warehouse_id: Option<Uuid>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A timer to set once a command rests: expire `id` after `after`.
pub struct Expiry {
    pub id: Uuid,
    pub after: Duration,
}

/// Why units of `list` (`items`, `return_items`), which names the items `ids`,
/// cannot be taken: the field at fault for an unknown item or one named twice.
pub(super) fn refuse_units(e: DomainError, list: &str, ids: &[i32]) -> Refusal {
    let message = e.to_string();
    let field = |at: Option<usize>| format!("{list}[{}].item_id", at.unwrap_or(0));
    match e {
        DomainError::UnknownItem(id) => {
            Refusal::invalid(field(ids.iter().position(|i| *i == id)), message)
        }
        DomainError::ItemNamedTwice(id) => {
            Refusal::invalid(field(ids.iter().rposition(|i| *i == id)), message)
        }
        DomainError::QuantityExceeded { .. } => Refusal::QuantityExceeded { message },
        DomainError::ReturnWindowClosed => Refusal::ReturnWindowClosed { message },
        _ => Refusal::InvalidTransition { message },
    }
}

fn done(order: &Order) -> CommandOutcome {
    CommandOutcome::Done(Rested::from(order))
}

/// Asks for an exchange of a delivered order inside the return window.
pub async fn exchange(
    ctx: &ObjectContext<'_>,
    deps: &Deps,
    req: ExchangeRequest,
) -> Result<(CommandOutcome, Option<Expiry>), TerminalError> {
    let (Some(order), _) = current(ctx, deps).await? else {
        return Ok((Refusal::OrderNotFound.into(), None));
    };
    if order.find_exchange(req.exchange_id).is_some() {
        return Ok((done(&order), None));
    }
    if order.status != OrderStatus::Delivered {
        let message = format!(
            "only a delivered order can be exchanged; this one is {}",
            order.status
        );
        return Ok((Refusal::InvalidTransition { message }.into(), None));
    }
    if let Some(refusal) = change_in_progress(ctx).await? {
        return Ok((refusal.into(), None));
    }
    let name = format!("request_exchange:{}", req.exchange_id);
    let mut saga = Saga::new(ctx, deps, order.id, name).asked_by("api", req.reason.clone());
    let (at, terms) = saga.now_with(ReturnTerms::of(deps)).await?;
    let (return_value, new_items) =
        match order.plan_exchange(&req.return_items, &req.new_items, at, terms.window()) {
            Ok(priced) => priced,
            Err(e) => {
                let ids: Vec<i32> = req.return_items.iter().map(|i| i.item_id).collect();
                return Ok((refuse_units(e, "return_items", &ids).into(), None));
            }
        };
    let new_value = Money::sum(new_items.iter().map(|l| l.total_price));
    let Some(new_value) = new_value else {
        return Ok((
            refuse_units(DomainError::AmountOverflow, "new_items", &[]).into(),
            None,
        ));
    };
    let wait = chrono::Duration::from_std(terms.parcel_wait).unwrap_or(chrono::Duration::days(14));
    let exchange = Exchange {
        exchange_id: req.exchange_id,
        order_id: order.id,
        status: ExchangeStatus::Requested,
        return_items: req.return_items,
        new_items,
        return_value,
        new_value,
        difference: Delta::between(return_value, new_value),
        settlement: ExchangeSettlement::default(),
        fulfillment_id: None,
        failure: None,
        attention: None,
        reason: req.reason,
        requested_at: at,
        received_at: None,
        settled_at: None,
        closed_at: None,
        expires_at: at + wait,
        version: 0,
        payment_method: req.method,
        tries: 0,
    };
    let result = request_exchange(&mut saga, order, exchange).await;
    saga.finish().await;
    let expiry = Expiry {
        id: req.exchange_id,
        after: terms.parcel_wait,
    };
    Ok((done(&result?), Some(expiry)))
}

/// The exchange `id` of the order, or why the command cannot name it.
async fn exchange_of(
    ctx: &ObjectContext<'_>,
    deps: &Deps,
    id: Uuid,
) -> Result<Result<(Order, Exchange), Refusal>, TerminalError> {
    let (Some(order), _) = current(ctx, deps).await? else {
        return Ok(Err(Refusal::OrderNotFound));
    };
    match order.find_exchange(id).cloned() {
        Some(exchange) => Ok(Ok((order, exchange))),
        None => Ok(Err(Refusal::ExchangeNotFound)),
    }
}

fn invalid(status: &str, what: &str) -> Refusal {
    let message = format!("the {what} is {status}");
    Refusal::InvalidTransition { message }
}

/// Receives exchange `req.exchange_id` (again, after a refused settlement), or
/// pays it (`paying`): the saga `receive_exchange`.
pub async fn receive(
    ctx: &ObjectContext<'_>,
    deps: &Deps,
    req: ExchangeCommand,
    paying: bool,
) -> Result<CommandOutcome, TerminalError> {
    let (order, exchange) = match exchange_of(ctx, deps, req.exchange_id).await? {
        Ok(found) => found,
        Err(refusal) => return Ok(refusal.into()),
    };
    match exchange.status {
        ExchangeStatus::Settled => return Ok(done(&order)),
        ExchangeStatus::Requested if paying => {
            return Ok(invalid("requested: its parcel has not arrived", "exchange").into())
        }
        ExchangeStatus::Requested | ExchangeStatus::Received => {}
        status => return Ok(invalid(status.as_str(), "exchange").into()),
    }
    let flow = if paying {
        "pay_exchange"
    } else {
        "receive_exchange"
    };
    let name = format!("{flow}:{}@{}", req.exchange_id, ctx.invocation_id());
    let mut saga = Saga::new(ctx, deps, order.id, name).asked_by("api", req.reason);
    let result = receive_exchange(&mut saga, order, req.exchange_id, req.method).await;
    saga.finish().await;
    Ok(done(&result?))
}

/// Cancels exchange `req.exchange_id` (`requested` or `received`).
pub async fn cancel(
    ctx: &ObjectContext<'_>,
    deps: &Deps,
    req: ExchangeCommand,
) -> Result<CommandOutcome, TerminalError> {
    let (order, exchange) = match exchange_of(ctx, deps, req.exchange_id).await? {
        Ok(found) => found,
        Err(refusal) => return Ok(refusal.into()),
    };
    match exchange.status {
        ExchangeStatus::Cancelled => return Ok(done(&order)),
        ExchangeStatus::Requested | ExchangeStatus::Received => {}
        status => return Ok(invalid(status.as_str(), "exchange").into()),
    }
    let name = format!("cancel_exchange:{}", req.exchange_id);
    let mut saga = Saga::new(ctx, deps, order.id, name).asked_by("api", req.reason);
    let result =
        cancel_exchange(&mut saga, order, req.exchange_id, ExchangeStatus::Cancelled).await;
    saga.finish().await;
    Ok(done(&result?))
}

/// Fired by an exchange's timer: one still waiting for its parcel expires.
pub async fn expire_exchange(
    ctx: &ObjectContext<'_>,
    deps: &Deps,
    id: Uuid,
) -> Result<(), TerminalError> {
    let Ok((order, exchange)) = exchange_of(ctx, deps, id).await? else {
        return Ok(());
    };
    if exchange.status != ExchangeStatus::Requested {
        return Ok(());
    }
    let name = format!("exchange_parcel_expiry:{id}");
    let reason = Some("the parcel did not arrive in time".to_owned());
    let mut saga = Saga::new(ctx, deps, order.id, name).asked_by("system", reason);
    let result = cancel_exchange(&mut saga, order, id, ExchangeStatus::Expired).await;
    saga.finish().await;
    result.map(|_| ())
}

/// Opens a claim on a shipped order, or a delivered one inside the window.
pub async fn claim(
    ctx: &ObjectContext<'_>,
    deps: &Deps,
    req: ClaimRequest,
) -> Result<(CommandOutcome, Option<Expiry>), TerminalError> {
    let (Some(order), _) = current(ctx, deps).await? else {
        return Ok((Refusal::OrderNotFound.into(), None));
    };
    if order.find_claim(req.claim_id).is_some() {
        return Ok((done(&order), None));
    }
    if !matches!(order.status, OrderStatus::Shipped | OrderStatus::Delivered) {
        let message = format!(
            "only a shipped or delivered order takes a claim; this one is {}",
            order.status
        );
        return Ok((Refusal::InvalidTransition { message }.into(), None));
    }
    if let Some(refusal) = change_in_progress(ctx).await? {
        return Ok((refusal.into(), None));
    }
    let name = format!("open_claim:{}", req.claim_id);
    let mut saga = Saga::new(ctx, deps, order.id, name).asked_by("api", req.reason.clone());
    let (at, terms) = saga.now_with(ReturnTerms::of(deps)).await?;
    if let Err(e) = order.check_claim(&req.items, at, terms.window()) {
        let ids: Vec<i32> = req.items.iter().map(|i| i.item_id).collect();
        return Ok((refuse_units(e, "items", &ids).into(), None));
    }
    let wait = chrono::Duration::from_std(terms.parcel_wait).unwrap_or(chrono::Duration::days(14));
    let claim = Claim {
        claim_id: req.claim_id,
        order_id: order.id,
        status: ClaimStatus::Open,
        items: req.items,
        require_return: req.require_return,
        resolution: None,
        refund_amount: None,
        replacement_items: Vec::new(),
        fulfillment_id: None,
        failure: None,
        attention: None,
        reason: req.reason,
        opened_at: at,
        received_at: None,
        resolved_at: None,
        closed_at: None,
        expires_at: req.require_return.then_some(at + wait),
        version: 0,
    };
    let result = open_claim(&mut saga, order, claim).await;
    saga.finish().await;
    let expiry = req.require_return.then_some(Expiry {
        id: req.claim_id,
        after: terms.parcel_wait,
    });
    Ok((done(&result?), expiry))
}

/// The claim `id` of the order, or why the command cannot name it.
async fn claim_of(
    ctx: &ObjectContext<'_>,
    deps: &Deps,
    id: Uuid,
) -> Result<Result<(Order, Claim), Refusal>, TerminalError> {
    let (Some(order), _) = current(ctx, deps).await? else {
        return Ok(Err(Refusal::OrderNotFound));
    };
    match order.find_claim(id).cloned() {
        Some(claim) => Ok(Ok((order, claim))),
        None => Ok(Err(Refusal::ClaimNotFound)),
    }
}

/// What a claim command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimMove {
    Receive,
    Resolve,
    Reject,
}

/// Receives, resolves or rejects claim `req.claim_id`.
pub async fn move_claim(
    ctx: &ObjectContext<'_>,
    deps: &Deps,
    req: ClaimCommand,
    how: ClaimMove,
) -> Result<CommandOutcome, TerminalError> {
    let (order, claim) = match claim_of(ctx, deps, req.claim_id).await? {
        Ok(found) => found,
        Err(refusal) => return Ok(refusal.into()),
    };
    let status = claim.status.as_str();
    let id = req.claim_id;
    match (how, claim.status, claim.require_return) {
        (ClaimMove::Receive, ClaimStatus::Received, _) => return Ok(done(&order)),
        (ClaimMove::Receive, ClaimStatus::Open, true) => {}
        (ClaimMove::Receive, ClaimStatus::Open, false) => {
            let message = "the claim asks for no parcel".to_owned();
            return Ok(Refusal::InvalidTransition { message }.into());
        }
        (ClaimMove::Resolve, ClaimStatus::Resolved, _) => return Ok(done(&order)),
        (ClaimMove::Resolve, ClaimStatus::Open, true) => {
            return Ok(invalid("open: its parcel has not arrived", "claim").into())
        }
        (ClaimMove::Resolve, ClaimStatus::Open | ClaimStatus::Received, _) => {}
        (ClaimMove::Reject, ClaimStatus::Rejected, _) => return Ok(done(&order)),
        (ClaimMove::Reject, ClaimStatus::Open | ClaimStatus::Received, _) => {}
        _ => return Ok(invalid(status, "claim").into()),
    }
    let flow = match how {
        ClaimMove::Receive => "receive_claim",
        ClaimMove::Resolve => "resolve_claim",
        ClaimMove::Reject => "reject_claim",
    };
    let name = format!("{flow}:{id}@{}", ctx.invocation_id());
    let mut saga = Saga::new(ctx, deps, order.id, name).asked_by("api", req.reason);
    let outcome = match how {
        ClaimMove::Receive => receive_claim(&mut saga, order, id).await.map(|o| done(&o)),
        ClaimMove::Reject => close_claim(&mut saga, order, id, ClaimStatus::Rejected)
            .await
            .map(|o| done(&o)),
        ClaimMove::Resolve => {
            let resolution = req.resolution.unwrap_or(Resolution::Refund);
            match order.replacement_of(id, resolution, req.warehouse_id) {
                Err(e) => Ok(refuse_units(e, "items", &[]).into()),
                Ok(replacement) => resolve_claim(&mut saga, order, id, resolution, replacement)
                    .await
                    .map(|resolved| match resolved {
                        Ok(order) => done(&order),
                        Err(refused) => refusal_of(refused).into(),
                    }),
            }
        }
    };
    saga.finish().await;
    outcome
}

/// The answer to a resolve the downstream refused before the point of no return.
fn refusal_of(refused: Rejection) -> Refusal {
    let message = refused.to_string();
    // The warehouse refuses a reservation it cannot hold with a 409.
    match refused.service == "warehouse" && refused.status == 409 {
        true => Refusal::InsufficientStock {
            sku: refused.sku,
            message,
        },
        false => Refusal::StepRefused { message },
    }
}

/// Fired by a claim's timer: one still waiting for its parcel expires.
pub async fn expire_claim(
    ctx: &ObjectContext<'_>,
    deps: &Deps,
    id: Uuid,
) -> Result<(), TerminalError> {
    let Ok((order, claim)) = claim_of(ctx, deps, id).await? else {
        return Ok(());
    };
    if claim.status != ClaimStatus::Open {
        return Ok(());
    }
    let name = format!("claim_parcel_expiry:{id}");
    let reason = Some("the parcel did not arrive in time".to_owned());
    let mut saga = Saga::new(ctx, deps, order.id, name).asked_by("system", reason);
    let result = close_claim(&mut saga, order, id, ClaimStatus::Expired).await;
    saga.finish().await;
    result.map(|_| ())
}
