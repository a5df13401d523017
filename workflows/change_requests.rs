//! Change requests (api-changes.md §5): one side of the order asks, the other
//! accepts (the change then runs as `apply_change`), declines, or lets it expire;
//! the side that asked may withdraw it. Which side may do what is the API's to
//! check (it knows the caller); here each command checks the request's state.

use super::change_commands::{apply, not_editable, priced_refusal, ApplyRequest, Deadline};
use super::change_order::{book, keep_request};
use super::killed::current;
use super::outcome::{CommandOutcome, Rested};
use super::saga::Saga;
use super::Deps;
use crate::domain::{Actor, ChangeBook, ChangeRequest, Operation, Preview, Refusal, RequestStatus};
use restate_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A change request (`POST /orders/{id}/change-requests`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewRequest {
    /// Bound to the request's `Idempotency-Key`, so that a repeat names this one.
    pub request_id: Uuid,
    pub operations: Vec<Operation>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    pub expires_in_seconds: u32,
    /// `customer` or `merchant`.
    pub requested_by: String,
    pub actor: Actor,
}

/// Accepting change request `request_id`: the change it runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AcceptRequest {
    pub request_id: Uuid,
    /// The `If-Match` given, if one was.
    #[serde(default)]
    pub if_match: Option<i64>,
    /// The change, with its `change_id` bound to the request's key; its operations
    /// and `if_match` are filled here.
    pub change: ApplyRequest,
}

/// Declining or withdrawing change request `request_id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecideRequest {
    pub request_id: Uuid,
    #[serde(default)]
    pub reason: Option<String>,
    pub actor: Actor,
}

/// When a request's expiry timer must fire.
pub struct Expiry {
    pub request_id: Uuid,
    pub after: std::time::Duration,
}

/// Makes a change request, priced on the order as it is; it expires on its own.
pub async fn create(
    ctx: &ObjectContext<'_>,
    deps: &Deps,
    req: NewRequest,
) -> Result<(CommandOutcome, Option<Expiry>), TerminalError> {
    let (Some(order), _) = current(ctx, deps).await? else {
        return Ok((Refusal::OrderNotFound.into(), None));
    };
    let mut book = book(ctx).await?;
    if book.request(req.request_id).is_some() {
        return Ok((CommandOutcome::Done(Rested::from(&order)), None));
    }
    if let Some(refusal) = not_editable(&order) {
        return Ok((refusal.into(), None));
    }
    let plan = match order.plan_change(&req.operations, None) {
        Ok(plan) => plan,
        Err(e) => return Ok((priced_refusal(e).into(), None)),
    };
    let name = format!("change_request:{}", req.request_id);
    let mut saga = Saga::new(ctx, deps, order.id, name).asked_by("api", req.reason.clone());
    let at = saga.now().await?;
    let request = ChangeRequest {
        request_id: req.request_id,
        order_id: order.id,
        status: RequestStatus::Open,
        requested_by: req.requested_by,
        requester: req.actor,
        operations: req.operations,
        reason: req.reason,
        message: req.message,
        order_version: plan.order_version,
        preview: Preview::of(&plan),
        expires_at: at + chrono::Duration::seconds(i64::from(req.expires_in_seconds)),
        change_id: None,
        decided_by: None,
        decline_reason: None,
        created_at: at,
        decided_at: None,
        rev: 0,
    };
    keep_request(&saga, &mut book, request, &order).await?;
    saga.finish().await;
    let expiry = Expiry {
        request_id: req.request_id,
        after: std::time::Duration::from_secs(req.expires_in_seconds.into()),
    };
    Ok((CommandOutcome::Done(Rested::from(&order)), Some(expiry)))
}

/// The request, if it can still be decided; its refusal otherwise.
fn open_request(book: &ChangeBook, request_id: Uuid) -> Result<ChangeRequest, Refusal> {
    let request = book
        .request(request_id)
        .ok_or(Refusal::ChangeRequestNotFound)?;
    match request.status {
        RequestStatus::Open => Ok(request.clone()),
        RequestStatus::Expired => Err(Refusal::RequestExpired),
        status => Err(Refusal::InvalidTransition {
            message: format!("the change request is {}", status.as_str()),
        }),
    }
}

/// Accepts a request: its operations priced again on the order as it is must come
/// to what the other side saw, then the change runs as `apply_change` does.
pub async fn accept(
    ctx: &ObjectContext<'_>,
    deps: &Deps,
    req: AcceptRequest,
) -> Result<(CommandOutcome, Option<Deadline>), TerminalError> {
    let (Some(order), _) = current(ctx, deps).await? else {
        return Ok((Refusal::OrderNotFound.into(), None));
    };
    let book = book(ctx).await?;
    let mut change = req.change;
    if book.change(change.change_id).is_none() {
        let request = match open_request(&book, req.request_id) {
            Ok(request) => request,
            Err(refusal) => return Ok((refusal.into(), None)),
        };
        if let Some(asked) = req.if_match.filter(|v| *v != order.version) {
            let current_version = order.version;
            let refusal = Refusal::VersionConflict {
                asked,
                current_version,
            };
            return Ok((refusal.into(), None));
        }
        if let Ok(plan) = order.plan_change(&request.operations, change.method.as_deref()) {
            let now = Preview::of(&plan);
            if !now.same_terms(&request.preview) {
                let refusal = Refusal::QuoteSuperseded {
                    quote_version: request.order_version,
                    current_version: order.version,
                    preview: serde_json::to_value(now).ok(),
                };
                return Ok((refusal.into(), None));
            }
        }
        change.operations = Some(request.operations);
        change.if_match = order.version;
        change.request_id = Some(req.request_id);
    }
    apply(ctx, deps, change).await
}

/// Declines (`declined`) or withdraws (`withdrawn`) an open request.
pub async fn decide(
    ctx: &ObjectContext<'_>,
    deps: &Deps,
    req: DecideRequest,
    status: RequestStatus,
) -> Result<CommandOutcome, TerminalError> {
    let (Some(order), _) = current(ctx, deps).await? else {
        return Ok(Refusal::OrderNotFound.into());
    };
    let mut book = book(ctx).await?;
    if book.request(req.request_id).map(|r| r.status) == Some(status) {
        return Ok(CommandOutcome::Done(Rested::from(&order)));
    }
    let mut request = match open_request(&book, req.request_id) {
        Ok(request) => request,
        Err(refusal) => return Ok(refusal.into()),
    };
    if let Some(active) = book
        .active()
        .filter(|c| c.request_id == Some(req.request_id))
    {
        let change_id = active.change_id;
        return Ok(Refusal::ChangeInProgress { change_id }.into());
    }
    let name = format!("{}_change_request:{}", status.as_str(), req.request_id);
    let mut saga = Saga::new(ctx, deps, order.id, name).asked_by("api", req.reason.clone());
    let at = saga.now().await?;
    if status == RequestStatus::Declined {
        request.decline_reason = req.reason;
    }
    request.decide(status, Some(req.actor), at);
    keep_request(&saga, &mut book, request, &order).await?;
    saga.finish().await;
    Ok(CommandOutcome::Done(Rested::from(&order)))
}

/// The request's timer: an open request expires, unless a change of it is under
/// way (it then expires when that change ends other than applied).
pub async fn expire(
    ctx: &ObjectContext<'_>,
    deps: &Deps,
    request_id: Uuid,
) -> Result<(), TerminalError> {
    let (Some(order), _) = current(ctx, deps).await? else {
        return Ok(());
    };
    let mut book = book(ctx).await?;
    let Some(mut request) = book.request(request_id).cloned() else {
        return Ok(());
    };
    let trying = book
        .active()
        .is_some_and(|c| c.request_id == Some(request_id));
    if request.status != RequestStatus::Open || trying {
        return Ok(());
    }
    let name = format!("change_request_expiry:{request_id}");
    let mut saga = Saga::new(ctx, deps, order.id, name).asked_by("system", None);
    let at = saga.now().await?;
    request.decide(RequestStatus::Expired, None, at);
    keep_request(&saga, &mut book, request, &order).await?;
    saga.finish().await;
    Ok(())
}
