//! The order virtual object: one per order, keyed by the order id. It holds the
//! authoritative state and serializes every change to its order; each exclusive
//! handler runs one saga.

use super::admit::{admit_command, admit_read, check_units, order_id, Signed, Unadmitted};
use super::cancel_order::{cancel_units, Scope};
use super::change_commands::{
    self, ApplyRequest, ChangeCommand, Deadline, PayChangeRequest, QuoteCommand, QuoteRequest,
};
use super::change_order;
use super::change_requests::{self, AcceptRequest, DecideRequest, NewRequest};
use super::create_order::create_order;
use super::exchanges_and_claims::{
    self as after_delivery, refuse_units, ClaimCommand, ClaimMove, ClaimRequest, ExchangeCommand,
    ExchangeRequest, Expiry,
};
use super::expire_draft::expire_draft;
use super::killed::current;
use super::operator::{resolve, retry_owed};
pub use super::outcome::{CommandOutcome, Rested};
use super::pay_order::{charge_and_confirm, OnDecline};
use super::returns::{close_return, receive_return, refund_items, request_return, ReturnTerms};
use super::saga::{Saga, ORDER_STATE};
use super::set_status::set_status;
use super::undo::{settle, Ending};
use super::Deps;
use crate::domain::{
    Compensation, ItemQuantity, Money, NewOrder, Order, OrderStatus, OrderView, PaymentStatus,
    Refusal, RequestStatus, ReturnItem, ReturnStatus,
};
use crate::downstream::Rejection;
use restate_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::Duration;
use tracing::Instrument;
use uuid::Uuid;

/// The object's name in Restate.
pub const ORDER_OBJECT: &str = "Order";

/// The order virtual object.
pub struct OrderObject {
    deps: Deps,
}

impl OrderObject {
    /// The object with what its sagas need.
    pub fn new(deps: Deps) -> Self {
        OrderObject { deps }
    }
}

/// A payment for a draft (`POST /orders/{id}/payments`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PayRequest {
    pub method: String,
    #[serde(default)]
    pub amount: Option<Money>,
}

/// A move along the fulfilment path (`PUT /orders/{id}/status`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusRequest {
    pub status: OrderStatus,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A command on some units of the order: cancel them
/// (`POST /orders/{id}/cancel-items`; none: the whole order, `POST
/// /orders/{id}/cancel`) or refund them (`POST /orders/{id}/refund-items`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemsRequest {
    /// The units; none for the whole order.
    #[serde(default)]
    pub items: Vec<ItemQuantity>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A return of some units of a delivered order (`POST /orders/{id}/returns`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReturnRequest {
    /// Chosen by the caller, so that a repeat names the same return.
    pub return_id: Uuid,
    pub items: Vec<ReturnItem>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Receiving or rejecting return `return_id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReturnCommand {
    pub return_id: Uuid,
    #[serde(default)]
    pub reason: Option<String>,
}

/// An operator's retry or resolution of a parked order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorRequest {
    #[serde(default)]
    pub reason: Option<String>,
    /// For a resolve: a refund the operator made by other means, at most what is owed.
    #[serde(default)]
    pub refunded_outside: Option<Money>,
}

/// How an operator's command ended, and the invocation that ran it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorOutcome {
    pub invocation_id: String,
    pub outcome: CommandOutcome,
}

#[restate_sdk::object(name = "Order")]
impl OrderObject {
    /// Creates the order and runs the create saga until it rests (`confirmed`,
    /// `draft` or `failed`). A repeat returns the order as it stands.
    #[handler]
    async fn create(
        &self,
        ctx: ObjectContext<'_>,
        input: Signed<NewOrder>,
    ) -> HandlerResult<Json<Rested>> {
        let (new, _) = self.admit(&ctx, "create", input)?;
        let span = saga_span(&ctx, "create");
        async move {
            if let (Some(order), _) = current(&ctx, &self.deps).await? {
                return Ok(Json(Rested::from(&order)));
            }
            let errors = new.validate();
            if !errors.is_empty() {
                let detail = serde_json::to_string(&errors).unwrap_or_default();
                return Err(TerminalError::from(Unadmitted::BadInput(detail)).into());
            }
            let id = order_id(ctx.key())?;
            let mut saga = Saga::new(&ctx, &self.deps, id, "create_order".into());
            let result = create_order(&mut saga, new).await;
            let order = settle(&mut saga, result, Ending::Fail).await;
            saga.finish().await;
            let order = order?;
            if order.status == OrderStatus::Draft {
                schedule_expiry(&ctx, &order);
            }
            Ok(Json(Rested::from(&order)))
        }
        .instrument(span)
        .await
    }

    /// Pays a draft, which then goes on as a paid create.
    #[handler]
    async fn pay(
        &self,
        ctx: ObjectContext<'_>,
        input: Signed<PayRequest>,
    ) -> HandlerResult<Json<CommandOutcome>> {
        let (req, key) = self.admit(&ctx, "pay", input)?;
        once(&ctx, "pay", key, self.pay_draft(&ctx, req)).await
    }

    /// Moves the order along `confirmed` -> `processing` -> `shipped` -> `delivered`.
    #[handler]
    async fn set_status(
        &self,
        ctx: ObjectContext<'_>,
        input: Signed<StatusRequest>,
    ) -> HandlerResult<Json<CommandOutcome>> {
        let (req, key) = self.admit(&ctx, "set_status", input)?;
        once(&ctx, "set_status", key, self.move_status(&ctx, req)).await
    }

    /// Cancels the whole order before it ships.
    #[handler]
    async fn cancel(
        &self,
        ctx: ObjectContext<'_>,
        input: Signed<ItemsRequest>,
    ) -> HandlerResult<Json<CommandOutcome>> {
        let (req, key) = self.admit(&ctx, "cancel", input)?;
        let command = self.cancel_order(&ctx, req, Scope::Whole);
        once(&ctx, "cancel", key, command).await
    }

    /// Cancels some units of the order before it ships; the last ones cancel it.
    #[handler]
    async fn cancel_items(
        &self,
        ctx: ObjectContext<'_>,
        input: Signed<ItemsRequest>,
    ) -> HandlerResult<Json<CommandOutcome>> {
        let (req, key) = self.admit(&ctx, "cancel_items", input)?;
        check_units(req.items.iter().map(|i| i.quantity))?;
        let command = self.cancel_order(&ctx, req, Scope::Items);
        once(&ctx, "cancel_items", key, command).await
    }

    /// Asks for a return of some units of a delivered order, inside the return
    /// window; the return then waits for its parcel without holding the order.
    #[handler]
    async fn request_return(
        &self,
        ctx: ObjectContext<'_>,
        input: Signed<ReturnRequest>,
    ) -> HandlerResult<Json<CommandOutcome>> {
        let (req, key) = self.admit(&ctx, "request_return", input)?;
        check_units(req.items.iter().map(|i| i.quantity))?;
        once(&ctx, "request_return", key, self.ask_return(&ctx, req)).await
    }

    /// The parcel of a return arrived: restock and refund.
    #[handler]
    async fn receive_return(
        &self,
        ctx: ObjectContext<'_>,
        input: Signed<ReturnCommand>,
    ) -> HandlerResult<Json<CommandOutcome>> {
        let (req, key) = self.admit(&ctx, "receive_return", input)?;
        once(&ctx, "receive_return", key, self.receive(&ctx, req)).await
    }

    /// Refuses a return that is not refunded yet.
    #[handler]
    async fn reject_return(
        &self,
        ctx: ObjectContext<'_>,
        input: Signed<ReturnCommand>,
    ) -> HandlerResult<Json<CommandOutcome>> {
        let (req, key) = self.admit(&ctx, "reject_return", input)?;
        once(&ctx, "reject_return", key, self.reject(&ctx, req)).await
    }

    /// Fired by a return's timer: a return still waiting for its parcel expires.
    /// Only Restate calls it.
    #[handler(ingress_private)]
    async fn expire_return(
        &self,
        ctx: ObjectContext<'_>,
        Json(return_id): Json<Uuid>,
    ) -> HandlerResult<()> {
        let (Some(order), _) = current(&ctx, &self.deps).await? else {
            return Ok(());
        };
        let waiting = order.find_return(return_id).map(|r| r.status);
        if waiting != Some(ReturnStatus::Requested) {
            return Ok(());
        }
        let name = format!("expire_return@{}", ctx.invocation_id());
        let mut saga = Saga::new(&ctx, &self.deps, order.id, name)
            .asked_by("system", Some("the parcel did not arrive in time".into()));
        let result = close_return(&mut saga, order, return_id, ReturnStatus::Expired).await;
        saga.finish().await;
        result.map(|_| ()).map_err(Into::into)
    }

    /// Asks for an exchange of some units of a delivered order; it waits for its
    /// parcel without holding the order.
    #[handler]
    async fn request_exchange(
        &self,
        ctx: ObjectContext<'_>,
        input: Signed<ExchangeRequest>,
    ) -> HandlerResult<Json<CommandOutcome>> {
        let (req, key) = self.admit(&ctx, "request_exchange", input)?;
        check_units(req.return_items.iter().map(|i| i.quantity))?;
        let command = async {
            let (outcome, expiry) = after_delivery::exchange(&ctx, &self.deps, req).await?;
            if let Some(Expiry { id, after }) = expiry {
                ctx.object_client::<OrderObjectClient>(ctx.key())
                    .expire_exchange(Json(id))
                    .send_after(after);
            }
            Ok(outcome)
        };
        once(&ctx, "request_exchange", key, command).await
    }

    /// The parcel of an exchange arrived: the saga `receive_exchange`.
    #[handler]
    async fn receive_exchange(
        &self,
        ctx: ObjectContext<'_>,
        input: Signed<ExchangeCommand>,
    ) -> HandlerResult<Json<CommandOutcome>> {
        let (req, key) = self.admit(&ctx, "receive_exchange", input)?;
        let command = after_delivery::receive(&ctx, &self.deps, req, false);
        once(&ctx, "receive_exchange", key, command).await
    }

    /// Pays the difference of a received exchange whose charge was declined.
    #[handler]
    async fn pay_exchange(
        &self,
        ctx: ObjectContext<'_>,
        input: Signed<ExchangeCommand>,
    ) -> HandlerResult<Json<CommandOutcome>> {
        let (req, key) = self.admit(&ctx, "pay_exchange", input)?;
        let command = after_delivery::receive(&ctx, &self.deps, req, true);
        once(&ctx, "pay_exchange", key, command).await
    }

    /// Cancels an exchange that is not settled.
    #[handler]
    async fn cancel_exchange(
        &self,
        ctx: ObjectContext<'_>,
        input: Signed<ExchangeCommand>,
    ) -> HandlerResult<Json<CommandOutcome>> {
        let (req, key) = self.admit(&ctx, "cancel_exchange", input)?;
        let command = after_delivery::cancel(&ctx, &self.deps, req);
        once(&ctx, "cancel_exchange", key, command).await
    }

    /// Fired by an exchange's timer. Only Restate calls it.
    #[handler(ingress_private)]
    async fn expire_exchange(
        &self,
        ctx: ObjectContext<'_>,
        Json(exchange_id): Json<Uuid>,
    ) -> HandlerResult<()> {
        after_delivery::expire_exchange(&ctx, &self.deps, exchange_id)
            .await
            .map_err(Into::into)
    }

    /// Opens a claim on some units of a shipped or delivered order.
    #[handler]
    async fn open_claim(
        &self,
        ctx: ObjectContext<'_>,
        input: Signed<ClaimRequest>,
    ) -> HandlerResult<Json<CommandOutcome>> {
        let (req, key) = self.admit(&ctx, "open_claim", input)?;
        check_units(req.items.iter().map(|i| i.quantity))?;
        let command = async {
            let (outcome, expiry) = after_delivery::claim(&ctx, &self.deps, req).await?;
            if let Some(Expiry { id, after }) = expiry {
                ctx.object_client::<OrderObjectClient>(ctx.key())
                    .expire_claim(Json(id))
                    .send_after(after);
            }
            Ok(outcome)
        };
        once(&ctx, "open_claim", key, command).await
    }

    /// The parcel of a claim arrived.
    #[handler]
    async fn receive_claim(
        &self,
        ctx: ObjectContext<'_>,
        input: Signed<ClaimCommand>,
    ) -> HandlerResult<Json<CommandOutcome>> {
        let (req, key) = self.admit(&ctx, "receive_claim", input)?;
        let command = after_delivery::move_claim(&ctx, &self.deps, req, ClaimMove::Receive);
        once(&ctx, "receive_claim", key, command).await
    }

    /// Resolves a claim: the saga `resolve_claim`.
    #[handler]
    async fn resolve_claim(
        &self,
        ctx: ObjectContext<'_>,
        input: Signed<ClaimCommand>,
    ) -> HandlerResult<Json<CommandOutcome>> {
        let (req, key) = self.admit(&ctx, "resolve_claim", input)?;
        let command = after_delivery::move_claim(&ctx, &self.deps, req, ClaimMove::Resolve);
        once(&ctx, "resolve_claim", key, command).await
    }

    /// Rejects a claim.
    #[handler]
    async fn reject_claim(
        &self,
        ctx: ObjectContext<'_>,
        input: Signed<ClaimCommand>,
    ) -> HandlerResult<Json<CommandOutcome>> {
        let (req, key) = self.admit(&ctx, "reject_claim", input)?;
        let command = after_delivery::move_claim(&ctx, &self.deps, req, ClaimMove::Reject);
        once(&ctx, "reject_claim", key, command).await
    }

    /// Fired by a claim's timer. Only Restate calls it.
    #[handler(ingress_private)]
    async fn expire_claim(
        &self,
        ctx: ObjectContext<'_>,
        Json(claim_id): Json<Uuid>,
    ) -> HandlerResult<()> {
        after_delivery::expire_claim(&ctx, &self.deps, claim_id)
            .await
            .map_err(Into::into)
    }

    /// Refunds some units of a shipped or delivered order without a return.
    #[handler]
    async fn refund_items(
        &self,
        ctx: ObjectContext<'_>,
        input: Signed<ItemsRequest>,
    ) -> HandlerResult<Json<CommandOutcome>> {
        let (req, key) = self.admit(&ctx, "refund_items", input)?;
        check_units(req.items.iter().map(|i| i.quantity))?;
        once(&ctx, "refund_items", key, self.refund(&ctx, req)).await
    }

    /// Fired by the draft's timer: cancels it if it is still unpaid. Only Restate
    /// calls it.
    #[handler(ingress_private)]
    async fn expire_draft(&self, ctx: ObjectContext<'_>) -> HandlerResult<()> {
        // A paid or cancelled order is left alone.
        let (Some(order), _) = current(&ctx, &self.deps).await? else {
            return Ok(());
        };
        if order.status != OrderStatus::Draft {
            return Ok(());
        }
        let mut saga = Saga::new(&ctx, &self.deps, order.id, "expire_draft".into());
        saga.begin_with(&order);
        let result = expire_draft(&mut saga, order).await;
        let expired = settle(&mut saga, result, Ending::Cancel).await;
        saga.finish().await;
        expired.map(|_| ()).map_err(Into::into)
    }

    /// Runs again the compensations a parked order owes (an operator's retry).
    #[handler]
    async fn retry(
        &self,
        ctx: ObjectContext<'_>,
        input: Signed<OperatorRequest>,
    ) -> HandlerResult<Json<OperatorOutcome>> {
        let (req, key) = self.admit(&ctx, "retry", input)?;
        operator_command(&ctx, "retry", key, self.retry_parked(&ctx, req)).await
    }

    /// Drops what a parked order owes, with the operator's reason.
    #[handler]
    async fn resolve(
        &self,
        ctx: ObjectContext<'_>,
        input: Signed<OperatorRequest>,
    ) -> HandlerResult<Json<OperatorOutcome>> {
        let (req, key) = self.admit(&ctx, "resolve", input)?;
        operator_command(&ctx, "resolve", key, self.resolve_parked(&ctx, req)).await
    }

    /// Quotes a change of the order, holding the stock it adds when asked.
    #[handler]
    async fn quote_change(
        &self,
        ctx: ObjectContext<'_>,
        input: Signed<QuoteRequest>,
    ) -> HandlerResult<Json<CommandOutcome>> {
        let (req, key) = self.admit(&ctx, "quote_change", input)?;
        let command = async {
            let (outcome, expiry) = change_commands::quote(&ctx, &self.deps, req).await?;
            // The quote's timer: kept by Restate, it fires even if every process
            // restarts meanwhile.
            if let Some(expiry) = expiry {
                ctx.object_client::<OrderObjectClient>(ctx.key())
                    .expire_quote(Json(expiry.quote_id))
                    .send_after(expiry.after);
            }
            Ok(outcome)
        };
        once(&ctx, "quote_change", key, command).await
    }

    /// Releases a quote and what it holds.
    #[handler]
    async fn release_quote(
        &self,
        ctx: ObjectContext<'_>,
        input: Signed<QuoteCommand>,
    ) -> HandlerResult<Json<CommandOutcome>> {
        let (req, key) = self.admit(&ctx, "release_quote", input)?;
        let command = change_commands::release(&ctx, &self.deps, req);
        once(&ctx, "release_quote", key, command).await
    }

    /// Fired by a quote's timer at its `expires_at`. Only Restate calls it.
    #[handler(ingress_private)]
    async fn expire_quote(
        &self,
        ctx: ObjectContext<'_>,
        Json(quote_id): Json<Uuid>,
    ) -> HandlerResult<()> {
        change_commands::expire(&ctx, &self.deps, quote_id)
            .await
            .map_err(Into::into)
    }

    /// Applies a change (a quote, or operations priced at once) as the saga
    /// `apply_change`.
    #[handler]
    async fn apply_change(
        &self,
        ctx: ObjectContext<'_>,
        input: Signed<ApplyRequest>,
    ) -> HandlerResult<Json<CommandOutcome>> {
        let (req, key) = self.admit(&ctx, "apply_change", input)?;
        let command = async {
            let (outcome, deadline) = change_commands::apply(&ctx, &self.deps, req).await?;
            schedule_deadline(&ctx, deadline);
            Ok(outcome)
        };
        once(&ctx, "apply_change", key, command).await
    }

    /// Pays a change that waits for its payment, or what an applied one left owed.
    #[handler]
    async fn pay_change(
        &self,
        ctx: ObjectContext<'_>,
        input: Signed<PayChangeRequest>,
    ) -> HandlerResult<Json<CommandOutcome>> {
        let (req, key) = self.admit(&ctx, "pay_change", input)?;
        let command = change_commands::pay(&ctx, &self.deps, req);
        once(&ctx, "pay_change", key, command).await
    }

    /// Cancels a change before its point of no return.
    #[handler]
    async fn cancel_change(
        &self,
        ctx: ObjectContext<'_>,
        input: Signed<ChangeCommand>,
    ) -> HandlerResult<Json<CommandOutcome>> {
        let (req, key) = self.admit(&ctx, "cancel_change", input)?;
        let command = change_commands::cancel(&ctx, &self.deps, req);
        once(&ctx, "cancel_change", key, command).await
    }

    /// Makes a change request; it expires on its own.
    #[handler]
    async fn request_change(
        &self,
        ctx: ObjectContext<'_>,
        input: Signed<NewRequest>,
    ) -> HandlerResult<Json<CommandOutcome>> {
        let (req, key) = self.admit(&ctx, "request_change", input)?;
        let command = async {
            let (outcome, expiry) = change_requests::create(&ctx, &self.deps, req).await?;
            // The request's timer: kept by Restate, like every timer of the order.
            if let Some(expiry) = expiry {
                ctx.object_client::<OrderObjectClient>(ctx.key())
                    .expire_change_request(Json(expiry.request_id))
                    .send_after(expiry.after);
            }
            Ok(outcome)
        };
        once(&ctx, "request_change", key, command).await
    }

    /// Accepts a change request: its change runs as `apply_change`.
    #[handler]
    async fn accept_change_request(
        &self,
        ctx: ObjectContext<'_>,
        input: Signed<AcceptRequest>,
    ) -> HandlerResult<Json<CommandOutcome>> {
        let (req, key) = self.admit(&ctx, "accept_change_request", input)?;
        let command = async {
            let (outcome, deadline) = change_requests::accept(&ctx, &self.deps, req).await?;
            schedule_deadline(&ctx, deadline);
            Ok(outcome)
        };
        once(&ctx, "accept_change_request", key, command).await
    }

    /// Declines a change request.
    #[handler]
    async fn decline_change_request(
        &self,
        ctx: ObjectContext<'_>,
        input: Signed<DecideRequest>,
    ) -> HandlerResult<Json<CommandOutcome>> {
        let (req, key) = self.admit(&ctx, "decline_change_request", input)?;
        let command = change_requests::decide(&ctx, &self.deps, req, RequestStatus::Declined);
        once(&ctx, "decline_change_request", key, command).await
    }

    /// Withdraws a change request.
    #[handler]
    async fn withdraw_change_request(
        &self,
        ctx: ObjectContext<'_>,
        input: Signed<DecideRequest>,
    ) -> HandlerResult<Json<CommandOutcome>> {
        let (req, key) = self.admit(&ctx, "withdraw_change_request", input)?;
        let command = change_requests::decide(&ctx, &self.deps, req, RequestStatus::Withdrawn);
        once(&ctx, "withdraw_change_request", key, command).await
    }

    /// Fired by a change request's timer at its `expires_at`. Only Restate calls it.
    #[handler(ingress_private)]
    async fn expire_change_request(
        &self,
        ctx: ObjectContext<'_>,
        Json(request_id): Json<Uuid>,
    ) -> HandlerResult<()> {
        change_requests::expire(&ctx, &self.deps, request_id)
            .await
            .map_err(Into::into)
    }

    /// Fired by a waiting change's timer at its `pay_by`. Only Restate calls it.
    #[handler(ingress_private)]
    async fn change_payment_deadline(
        &self,
        ctx: ObjectContext<'_>,
        Json(change_id): Json<Uuid>,
    ) -> HandlerResult<()> {
        change_commands::deadline(&ctx, &self.deps, change_id)
            .await
            .map_err(Into::into)
    }

    /// The order as the object holds it, for inspection while a saga runs.
    #[handler]
    async fn get(&self, ctx: SharedObjectContext<'_>) -> HandlerResult<Json<Option<OrderView>>> {
        admit_read(&self.deps.caller_key, ctx.headers(), ctx.key(), "get")?;
        let order = ctx.get::<Json<Order>>(ORDER_STATE).await?;
        Ok(Json(order.map(|Json(o)| o.view())))
    }
}

impl OrderObject {
    /// The input of a call of `handler`, and its request's id, once the API's caller
    /// assertion verifies; a terminal `401` otherwise.
    fn admit<T>(
        &self,
        ctx: &ObjectContext<'_>,
        handler: &str,
        input: Signed<T>,
    ) -> Result<(T, String), TerminalError> {
        admit_command(
            &self.deps.caller_key,
            ctx.headers(),
            ctx.key(),
            handler,
            input,
        )
    }

    async fn move_status(
        &self,
        ctx: &ObjectContext<'_>,
        req: StatusRequest,
    ) -> Result<CommandOutcome, TerminalError> {
        let (Some(order), _) = current(ctx, &self.deps).await? else {
            return Ok(Refusal::OrderNotFound.into());
        };
        if !order.status.can_be_set_manually(req.status) {
            let message = format!("an order cannot go from {} to {}", order.status, req.status);
            return Ok(Refusal::InvalidTransition { message }.into());
        }
        let saga_name = format!("set_status#{}", order.version + 1);
        let mut saga = Saga::new(ctx, &self.deps, order.id, saga_name);
        let order = set_status(&mut saga, order, req.status, req.reason).await;
        saga.finish().await;
        Ok(CommandOutcome::Done(Rested::from(&order?)))
    }

    async fn cancel_order(
        &self,
        ctx: &ObjectContext<'_>,
        req: ItemsRequest,
        scope: Scope,
    ) -> Result<CommandOutcome, TerminalError> {
        let (Some(order), _) = current(ctx, &self.deps).await? else {
            return Ok(Refusal::OrderNotFound.into());
        };
        match order.status {
            OrderStatus::Draft | OrderStatus::Confirmed | OrderStatus::Processing => {}
            OrderStatus::Shipped | OrderStatus::Delivered | OrderStatus::Refunded => {
                let message = format!("a {} order can no longer be cancelled", order.status);
                return Ok(Refusal::NotCancellable { message }.into());
            }
            OrderStatus::Cancelled | OrderStatus::Failed => {
                let message = format!("the order is already {}", order.status);
                return Ok(Refusal::InvalidTransition { message }.into());
            }
        }
        // A whole cancel first cancels a change that waits for its payment.
        let order = match scope {
            Scope::Whole => change_commands::cancel_waiting_change(ctx, &self.deps, order).await?,
            Scope::Items => match change_commands::change_in_progress(ctx).await? {
                Some(refusal) => return Ok(refusal.into()),
                None => order,
            },
        };
        let plan = match scope {
            Scope::Whole => order.plan_cancel_all(),
            Scope::Items => order.plan_cancel(&req.items),
        };
        let plan = match plan {
            Ok(plan) => plan,
            Err(e) => {
                let ids: Vec<i32> = req.items.iter().map(|i| i.item_id).collect();
                return Ok(refuse_units(e, "items", &ids).into());
            }
        };

        // Named by its invocation: a refused cancel changes nothing, so the next
        // one must not meet the answers given to this one.
        let saga_name = match scope {
            Scope::Whole => format!("cancel_order@{}", ctx.invocation_id()),
            Scope::Items => format!("cancel_items@{}", ctx.invocation_id()),
        };
        let mut saga = Saga::new(ctx, &self.deps, order.id, saga_name).asked_by("api", req.reason);
        saga.begin_with(&order);
        // A whole cancel releases the holds of the open change quotes too.
        let mut book = change_order::book(ctx).await?;
        let open = match scope {
            Scope::Whole => change_commands::open_quote_holds(&book),
            Scope::Items => Vec::new(),
        };
        let holds = open.iter().map(|(_, hold)| hold.clone()).collect();
        let result = cancel_units(&mut saga, order, plan, scope, holds).await;
        if matches!(result, Ok(Ok(_))) {
            change_commands::mark_released(&saga, &mut book, &open).await?;
        }
        saga.finish().await;
        Ok(match result? {
            Ok(order) => CommandOutcome::Done(Rested::from(&order)),
            Err(refused) if refused.is_business() => {
                let message = format!("the fulfillment service refused: {}", refused.code);
                Refusal::AlreadyShipped { message }.into()
            }
            Err(refused) => step_refused(refused),
        })
    }

    async fn ask_return(
        &self,
        ctx: &ObjectContext<'_>,
        req: ReturnRequest,
    ) -> Result<CommandOutcome, TerminalError> {
        let (Some(order), _) = current(ctx, &self.deps).await? else {
            return Ok(Refusal::OrderNotFound.into());
        };
        if order.find_return(req.return_id).is_some() {
            return Ok(CommandOutcome::Done(Rested::from(&order)));
        }
        if order.status != OrderStatus::Delivered {
            let message = format!(
                "only a delivered order can be returned; this one is {}",
                order.status
            );
            return Ok(Refusal::InvalidTransition { message }.into());
        }
        if let Some(refusal) = change_commands::change_in_progress(ctx).await? {
            return Ok(refusal.into());
        }
        let name = format!("request_return@{}", ctx.invocation_id());
        let mut saga = Saga::new(ctx, &self.deps, order.id, name).asked_by("api", req.reason);
        let (at, terms) = saga.now_with(ReturnTerms::of(&self.deps)).await?;
        if let Err(e) = order.check_return(&req.items, at, terms.window()) {
            let ids: Vec<i32> = req.items.iter().map(|i| i.item_id).collect();
            return Ok(refuse_units(e, "items", &ids).into());
        }
        let result = request_return(&mut saga, order, req.return_id, req.items, (at, terms)).await;
        saga.finish().await;
        let order = result?;
        ctx.object_client::<OrderObjectClient>(ctx.key())
            .expire_return(Json(req.return_id))
            .send_after(terms.parcel_wait);
        Ok(CommandOutcome::Done(Rested::from(&order)))
    }

    async fn receive(
        &self,
        ctx: &ObjectContext<'_>,
        req: ReturnCommand,
    ) -> Result<CommandOutcome, TerminalError> {
        let (Some(order), _) = current(ctx, &self.deps).await? else {
            return Ok(Refusal::OrderNotFound.into());
        };
        let Some(ret) = order.find_return(req.return_id) else {
            return Ok(Refusal::ReturnNotFound.into());
        };
        match ret.status {
            ReturnStatus::Requested => {}
            // Received already: the first answer again, and nothing changes.
            ReturnStatus::Received | ReturnStatus::Refunded => {
                return Ok(CommandOutcome::Done(Rested::from(&order)))
            }
            status @ (ReturnStatus::Rejected | ReturnStatus::Expired) => {
                let message = format!("the return is {}", status.as_str());
                return Ok(Refusal::InvalidTransition { message }.into());
            }
        }
        let plan = match order.plan_return(req.return_id) {
            Ok(plan) => plan,
            Err(e) => {
                let message = e.to_string();
                return Ok(Refusal::InvalidTransition { message }.into());
            }
        };
        let name = format!("receive_return@{}", ctx.invocation_id());
        let mut saga = Saga::new(ctx, &self.deps, order.id, name).asked_by("api", req.reason);
        let result = receive_return(&mut saga, order, req.return_id, plan).await;
        saga.finish().await;
        Ok(CommandOutcome::Done(Rested::from(&result?)))
    }

    async fn reject(
        &self,
        ctx: &ObjectContext<'_>,
        req: ReturnCommand,
    ) -> Result<CommandOutcome, TerminalError> {
        let (Some(order), _) = current(ctx, &self.deps).await? else {
            return Ok(Refusal::OrderNotFound.into());
        };
        let Some(ret) = order.find_return(req.return_id) else {
            return Ok(Refusal::ReturnNotFound.into());
        };
        if !ret.status.is_open() {
            let message = format!("the return is {}", ret.status.as_str());
            return Ok(Refusal::InvalidTransition { message }.into());
        }
        let name = format!("reject_return@{}", ctx.invocation_id());
        let mut saga = Saga::new(ctx, &self.deps, order.id, name).asked_by("api", req.reason);
        let result = close_return(&mut saga, order, req.return_id, ReturnStatus::Rejected).await;
        saga.finish().await;
        Ok(CommandOutcome::Done(Rested::from(&result?)))
    }

    async fn refund(
        &self,
        ctx: &ObjectContext<'_>,
        req: ItemsRequest,
    ) -> Result<CommandOutcome, TerminalError> {
        let (Some(order), _) = current(ctx, &self.deps).await? else {
            return Ok(Refusal::OrderNotFound.into());
        };
        if !matches!(order.status, OrderStatus::Shipped | OrderStatus::Delivered) {
            let message = format!(
                "only a shipped or delivered order is refunded by items; this one is {}",
                order.status
            );
            return Ok(Refusal::InvalidTransition { message }.into());
        }
        if let Some(refusal) = change_commands::change_in_progress(ctx).await? {
            return Ok(refusal.into());
        }
        let plan = match order.plan_refund(&req.items) {
            Ok(plan) => plan,
            Err(e) => {
                let ids: Vec<i32> = req.items.iter().map(|i| i.item_id).collect();
                return Ok(refuse_units(e, "items", &ids).into());
            }
        };
        let name = format!("refund_items@{}", ctx.invocation_id());
        let mut saga = Saga::new(ctx, &self.deps, order.id, name).asked_by("api", req.reason);
        let result = refund_items(&mut saga, order, plan).await;
        saga.finish().await;
        Ok(match result? {
            Ok(order) => CommandOutcome::Done(Rested::from(&order)),
            Err(refused) if refused.is_business() => {
                let message = format!("the payment service refused the refund: {}", refused.code);
                Refusal::RefundRefused { message }.into()
            }
            Err(refused) => step_refused(refused),
        })
    }

    async fn retry_parked(
        &self,
        ctx: &ObjectContext<'_>,
        req: OperatorRequest,
    ) -> Result<CommandOutcome, TerminalError> {
        let (Some(order), parked) = current(ctx, &self.deps).await? else {
            return Ok(Refusal::OrderNotFound.into());
        };
        // Parking a saga that was killed is what this retry could do.
        if order.owed.is_empty() && parked {
            return Ok(CommandOutcome::Done(Rested::from(&order)));
        }
        if order.owed.is_empty() {
            let message = match &order.attention {
                Some(a) if a.code == super::killed::SAGA_KILLED => format!(
                    "a saga was killed on the order after {}: check what it moved, then resolve it",
                    a.step
                ),
                Some(a) => format!(
                    "{} was refused and is not a compensation to run again: resolve it by hand",
                    a.step
                ),
                None => "nothing of the order is stuck".to_owned(),
            };
            return Ok(Refusal::NothingToRetry { message }.into());
        }
        let name = format!("retry@{}", ctx.invocation_id());
        let mut saga = Saga::new(ctx, &self.deps, order.id, name).asked_by("operator", req.reason);
        let result = retry_owed(&mut saga, order).await;
        if let Ok(order) = &result {
            change_commands::settle_attended(&mut saga, order).await?;
        }
        saga.finish().await;
        Ok(CommandOutcome::Done(Rested::from(&result?)))
    }

    async fn resolve_parked(
        &self,
        ctx: &ObjectContext<'_>,
        req: OperatorRequest,
    ) -> Result<CommandOutcome, TerminalError> {
        let (Some(order), _) = current(ctx, &self.deps).await? else {
            return Ok(Refusal::OrderNotFound.into());
        };
        if order.owed.is_empty() && order.attention.is_none() {
            let message = "the order does not wait for an operator".to_owned();
            return Ok(Refusal::NothingToResolve { message }.into());
        }
        let owed = order.owed_refunds().unwrap_or(Money::ZERO);
        if req.refunded_outside.is_some_and(|outside| outside > owed) {
            let message = format!("must be at most the refunds the order owes ({owed})");
            return Ok(Refusal::invalid("refunded_outside", message).into());
        }
        let name = format!("resolve@{}", ctx.invocation_id());
        let mut saga = Saga::new(ctx, &self.deps, order.id, name).asked_by("operator", req.reason);
        let result = resolve(&mut saga, order, req.refunded_outside).await;
        if let Ok(order) = &result {
            change_commands::settle_attended(&mut saga, order).await?;
        }
        saga.finish().await;
        Ok(CommandOutcome::Done(Rested::from(&result?)))
    }

    async fn pay_draft(
        &self,
        ctx: &ObjectContext<'_>,
        req: PayRequest,
    ) -> Result<CommandOutcome, TerminalError> {
        let (Some(order), _) = current(ctx, &self.deps).await? else {
            return Ok(Refusal::OrderNotFound.into());
        };
        if order.status != OrderStatus::Draft {
            let message = format!("only a draft can be paid; this order is {}", order.status);
            return Ok(Refusal::InvalidTransition { message }.into());
        }
        if req.amount.is_some_and(|a| a != order.amount_due()) {
            // The API checks it first; this is the object's own check, worded as a whole.
            let message = format!("amount must equal the amount due {}", order.amount_due());
            let field = None;
            return Ok(Refusal::ValidationFailed { field, message }.into());
        }

        let saga_name = format!("pay_order#{}", order.next_payment_attempt());
        let mut saga = Saga::new(ctx, &self.deps, order.id, saga_name);
        saga.begin_with(&order);
        if let Some(reservation_id) = order.reservation_id.clone() {
            saga.on_rejection(Compensation::ReleaseStock {
                reservation_id,
                items: Vec::new(),
            });
        }
        let result = charge_and_confirm(&mut saga, order, &req.method, OnDecline::KeepDraft).await;
        let order = settle(&mut saga, result, Ending::Fail).await;
        saga.finish().await;
        let order = order?;

        Ok(match (order.status, order.payment_status) {
            (OrderStatus::Draft, PaymentStatus::Failed) => Refusal::PaymentDeclined.into(),
            _ => CommandOutcome::Done(Rested::from(&order)),
        })
    }
}

/// A step a downstream service refused for another reason than a business one.
fn step_refused(refused: Rejection) -> CommandOutcome {
    let message = refused.to_string();
    Refusal::StepRefused { message }.into()
}

/// Schedules the expiry of this draft at its `expires_at` (the earlier of its
/// payment window and its reservation's expiry): a delayed call to the order's own
/// object, kept by Restate, so it fires even if every process restarts meanwhile.
fn schedule_expiry(ctx: &ObjectContext<'_>, order: &Order) {
    let deadline = order.expires_at.unwrap_or(order.updated_at);
    // Measured from the commit's journaled instant, so a replay schedules the same.
    let after = (deadline - order.updated_at)
        .to_std()
        .unwrap_or(Duration::ZERO);
    ctx.object_client::<OrderObjectClient>(ctx.key())
        .expire_draft()
        .send_after(after);
}

/// Runs `command` once per request (the asserted request id, which carries the
/// caller's `Idempotency-Key` when it sent one): the outcome is kept in the object's
/// state, so a repeat of the request, or a replay of its call, gets the first
/// outcome, never a second run.
async fn once(
    ctx: &ObjectContext<'_>,
    name: &str,
    request: String,
    command: impl Future<Output = Result<CommandOutcome, TerminalError>>,
) -> HandlerResult<Json<CommandOutcome>> {
    let state_key = format!("request:{name}:{request}");
    if let Some(first) = ctx.get::<Json<CommandOutcome>>(&state_key).await? {
        return Ok(first);
    }
    let outcome = match command.instrument(saga_span(ctx, name)).await {
        Ok(outcome) => outcome,
        Err(e) => {
            // Failed for good: a repeat must not run the saga again.
            let message = e.message().to_owned();
            let failed = CommandOutcome::from(Refusal::SagaFailed { message });
            ctx.set(&state_key, Json(failed));
            return Err(e.into());
        }
    };
    ctx.set(&state_key, Json(outcome.clone()));
    Ok(Json(outcome))
}

/// Runs an operator's `command` once per request, like [`once`], answering with its
/// outcome and the invocation that ran it (for the operator API's `retried`).
async fn operator_command(
    ctx: &ObjectContext<'_>,
    name: &str,
    request: String,
    command: impl Future<Output = Result<CommandOutcome, TerminalError>>,
) -> HandlerResult<Json<OperatorOutcome>> {
    let state_key = format!("request:{name}:{request}");
    if let Some(first) = ctx.get::<Json<OperatorOutcome>>(&state_key).await? {
        return Ok(first);
    }
    let outcome = command.instrument(saga_span(ctx, name)).await?;
    let outcome = OperatorOutcome {
        invocation_id: ctx.invocation_id().to_owned(),
        outcome,
    };
    ctx.set(&state_key, Json(outcome.clone()));
    Ok(Json(outcome))
}

/// The span of the saga `name`, continuing the trace of the API request that
/// called it (its `traceparent` comes with the invocation's headers).
fn saga_span(ctx: &ObjectContext<'_>, name: &str) -> tracing::Span {
    let parent = ctx.headers().get(crate::telemetry::TRACEPARENT);
    crate::telemetry::span("saga", name, parent.map(String::as_str))
}

/// A waiting change's deadline: kept by Restate, the timer fires even if every
/// process restarts meanwhile.
fn schedule_deadline(ctx: &ObjectContext<'_>, deadline: Option<Deadline>) {
    if let Some(d) = deadline {
        ctx.object_client::<OrderObjectClient>(ctx.key())
            .change_payment_deadline(Json(d.change_id))
            .send_after(d.after);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_outcome_kept_by_the_previous_version_is_answered_the_same() {
        // A repeat of a request gets the outcome the object kept for it, maybe
        // before refusals were typed: `status` beside the code, and a message.
        let kept = json!({"outcome": "refused", "status": 409, "code": "not_cancellable", "message": "a shipped order can no longer be cancelled"});
        let outcome: CommandOutcome = serde_json::from_value(kept).unwrap();
        let message = "a shipped order can no longer be cancelled".to_owned();
        assert!(matches!(
            outcome,
            CommandOutcome::Refused(Refusal::NotCancellable { message: m }) if m == message
        ));
        let kept = json!({"outcome": "refused", "status": 422, "code": "validation_failed", "message": "must be at most the refunds the order owes (0.00)", "field": "refunded_outside"});
        let outcome: CommandOutcome = serde_json::from_value(kept).unwrap();
        let expected = Refusal::invalid(
            "refunded_outside",
            "must be at most the refunds the order owes (0.00)",
        );
        assert!(matches!(outcome, CommandOutcome::Refused(r) if r == expected));

        let done = json!({"outcome": "done", "status": "confirmed", "version": 3});
        let outcome: CommandOutcome = serde_json::from_value(done.clone()).unwrap();
        assert_eq!(serde_json::to_value(&outcome).unwrap(), done);
        let refused = CommandOutcome::from(Refusal::PaymentDeclined);
        assert_eq!(
            serde_json::to_value(&refused).unwrap(),
            json!({"outcome": "refused", "code": "payment_declined"})
        );
    }
}
