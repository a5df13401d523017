//! The order virtual object: one per order, keyed by the order id. It holds the
//! authoritative state and serializes every change to its order; each exclusive
//! handler runs one saga.

use super::create_order::create_order;
use super::expire_draft::expire_draft;
use super::pay_order::{charge_and_confirm, OnDecline};
use super::saga::{Saga, ORDER_STATE};
use super::set_status::set_status;
use super::undo::{settle, Ending};
use super::Deps;
use crate::domain::{Compensation, Money, NewOrder, Order, OrderStatus, OrderView, PaymentStatus};
use restate_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::Duration;
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
    /// The caller's `Idempotency-Key`: a repeat gets the first outcome again.
    #[serde(default)]
    pub request_key: Option<String>,
}

/// A move along the fulfilment path (`PUT /orders/{id}/status`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusRequest {
    pub status: OrderStatus,
    #[serde(default)]
    pub reason: Option<String>,
    /// The caller's `Idempotency-Key`: a repeat gets the first outcome again.
    #[serde(default)]
    pub request_key: Option<String>,
}

/// Where a saga left the order; the API reads the order itself from the read model,
/// so the journal does not carry it twice.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Rested {
    pub status: OrderStatus,
    pub version: i64,
}

impl From<&Order> for Rested {
    fn from(order: &Order) -> Self {
        Rested {
            status: order.status,
            version: order.version,
        }
    }
}

/// How a command on an existing order ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CommandOutcome {
    /// Done; where the order now rests.
    Done(Rested),
    /// Refused, with the HTTP status and problem code the API answers with.
    Refused {
        status: u16,
        code: String,
        message: String,
    },
}

impl CommandOutcome {
    fn refused(status: u16, code: &str, message: impl Into<String>) -> Self {
        CommandOutcome::Refused {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

#[restate_sdk::object(name = "Order")]
impl OrderObject {
    /// Creates the order and runs the create saga until it rests (`confirmed`,
    /// `draft` or `failed`). A repeat returns the order as it stands.
    #[handler]
    async fn create(
        &self,
        ctx: ObjectContext<'_>,
        Json(new): Json<NewOrder>,
    ) -> HandlerResult<Json<Rested>> {
        if let Some(Json(order)) = ctx.get::<Json<Order>>(ORDER_STATE).await? {
            return Ok(Json(Rested::from(&order)));
        }
        let errors = new.validate();
        if !errors.is_empty() {
            let detail = serde_json::to_string(&errors).unwrap_or_default();
            return Err(TerminalError::new_with_code(400, detail).into());
        }
        let mut saga = Saga::new(&ctx, &self.deps, order_id(&ctx)?, "create_order".into());
        let result = create_order(&mut saga, new).await;
        let order = settle(&mut saga, result, Ending::Fail).await;
        saga.finish().await;
        let order = order?;
        if order.status == OrderStatus::Draft {
            schedule_expiry(&ctx, &order);
        }
        Ok(Json(Rested::from(&order)))
    }

    /// Pays a draft, which then goes on as a paid create.
    #[handler]
    async fn pay(
        &self,
        ctx: ObjectContext<'_>,
        Json(req): Json<PayRequest>,
    ) -> HandlerResult<Json<CommandOutcome>> {
        let key = req.request_key.clone();
        once(&ctx, "pay", key, self.pay_draft(&ctx, req)).await
    }

    /// Moves the order along `confirmed` -> `processing` -> `shipped` -> `delivered`.
    #[handler]
    async fn set_status(
        &self,
        ctx: ObjectContext<'_>,
        Json(req): Json<StatusRequest>,
    ) -> HandlerResult<Json<CommandOutcome>> {
        let key = req.request_key.clone();
        once(&ctx, "set_status", key, self.move_status(&ctx, req)).await
    }

    /// Fired by the draft's timer: cancels it if it is still unpaid. Only Restate
    /// calls it.
    #[handler(ingress_private)]
    async fn expire_draft(&self, ctx: ObjectContext<'_>) -> HandlerResult<()> {
        // A paid or cancelled order is left alone.
        let Some(Json(order)) = ctx.get::<Json<Order>>(ORDER_STATE).await? else {
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

    /// The order as the object holds it, for inspection while a saga runs.
    #[handler]
    async fn get(&self, ctx: SharedObjectContext<'_>) -> HandlerResult<Json<Option<OrderView>>> {
        let order = ctx.get::<Json<Order>>(ORDER_STATE).await?;
        Ok(Json(order.map(|Json(o)| o.view())))
    }
}

impl OrderObject {
    async fn move_status(
        &self,
        ctx: &ObjectContext<'_>,
        req: StatusRequest,
    ) -> Result<CommandOutcome, TerminalError> {
        let Some(Json(order)) = ctx.get::<Json<Order>>(ORDER_STATE).await? else {
            return Ok(CommandOutcome::refused(
                404,
                "order_not_found",
                "no such order",
            ));
        };
        if !order.status.can_be_set_manually(req.status) {
            let message = format!("an order cannot go from {} to {}", order.status, req.status);
            return Ok(CommandOutcome::refused(409, "invalid_transition", message));
        }
        let saga_name = format!("set_status#{}", order.version + 1);
        let mut saga = Saga::new(ctx, &self.deps, order.id, saga_name);
        let order = set_status(&mut saga, order, req.status, req.reason).await;
        saga.finish().await;
        Ok(CommandOutcome::Done(Rested::from(&order?)))
    }

    async fn pay_draft(
        &self,
        ctx: &ObjectContext<'_>,
        req: PayRequest,
    ) -> Result<CommandOutcome, TerminalError> {
        let Some(Json(order)) = ctx.get::<Json<Order>>(ORDER_STATE).await? else {
            return Ok(CommandOutcome::refused(
                404,
                "order_not_found",
                "no such order",
            ));
        };
        if order.status != OrderStatus::Draft {
            let message = format!("only a draft can be paid; this order is {}", order.status);
            return Ok(CommandOutcome::refused(409, "invalid_transition", message));
        }
        if req.amount.is_some_and(|a| a != order.total_amount) {
            let message = format!("amount must equal the order total {}", order.total_amount);
            return Ok(CommandOutcome::refused(422, "validation_failed", message));
        }

        let saga_name = format!("pay_order#{}", order.next_payment_attempt());
        let mut saga = Saga::new(ctx, &self.deps, order.id, saga_name);
        saga.begin_with(&order);
        if let Some(reservation_id) = order.reservation_id.clone() {
            saga.on_rejection(Compensation::ReleaseStock { reservation_id });
        }
        let result = charge_and_confirm(&mut saga, order, &req.method, OnDecline::KeepDraft).await;
        let order = settle(&mut saga, result, Ending::Fail).await;
        saga.finish().await;
        let order = order?;

        Ok(match (order.status, order.payment_status) {
            (OrderStatus::Draft, PaymentStatus::Failed) => {
                CommandOutcome::refused(402, "payment_declined", "the payment was declined")
            }
            _ => CommandOutcome::Done(Rested::from(&order)),
        })
    }
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

/// Runs `command` once per caller's request key: the outcome is kept in the object's
/// state, so a repeat (same `Idempotency-Key`) gets the first outcome, never a
/// second run. Without a key it simply runs.
async fn once(
    ctx: &ObjectContext<'_>,
    name: &str,
    request_key: Option<String>,
    command: impl Future<Output = Result<CommandOutcome, TerminalError>>,
) -> HandlerResult<Json<CommandOutcome>> {
    let state_key = request_key.map(|k| format!("request:{name}:{k}"));
    if let Some(key) = &state_key {
        if let Some(first) = ctx.get::<Json<CommandOutcome>>(key).await? {
            return Ok(first);
        }
    }
    let outcome = command.await?;
    if let Some(key) = &state_key {
        ctx.set(key, Json(outcome.clone()));
    }
    Ok(Json(outcome))
}

fn order_id(ctx: &ObjectContext<'_>) -> Result<Uuid, TerminalError> {
    ctx.key()
        .parse()
        .map_err(|_| TerminalError::new_with_code(400, "the order key must be a UUID"))
}
