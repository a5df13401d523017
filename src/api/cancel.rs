//! Cancelling an order before it ships: whole, or some of its units.

use super::body::{Rules, Valid};
use super::commands::{order_command, reason_rules, ReasonBody};
use super::error::Problem;
use super::idempotency::{IdemKey, Reply};
use super::openapi::shapes::IdempotencyKey;
use super::params::OrderId;
use super::{ApiError, ApiState};
use crate::auth::Caller;
use crate::domain::{FieldError, ItemQuantity, OrderView, MAX_ITEMS, MAX_QUANTITY};
use crate::workflows::ItemsRequest;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use utoipa::ToSchema;

/// The cancel routes.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/orders/{id}/cancel", post(cancel_order))
        .route("/orders/{id}/cancel-items", post(cancel_items))
}

#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/cancel",
    tag = "orders",
    params(("id" = Uuid, Path, description = "The order's id."), IdempotencyKey),
    request_body = ReasonBody,
    responses(
        (status = 200, description = "The order once the cancel saga rests, `cancelled`: the fulfillment cancelled, the stock released, what was captured refunded.", body = OrderView),
        (status = 202, description = "The saga has not rested within a few seconds and goes on: the order as it stands.", body = OrderView, headers(("Location" = String, description = "The order's URL."))),
        (status = 404, description = "`order_not_found`: no such order, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`not_cancellable` from `shipped` on; `already_shipped` when the fulfillment service refuses; `invalid_transition` when already `cancelled` or `failed`.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency_key_reused`, or `validation_failed` (the fields at fault in `errors`).", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`step_refused`: a downstream service finally refused a step; the order waits for an operator (`attention`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the order engine did not accept the request; retry with the same `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /orders/{id}/cancel`: cancels the whole order before it ships.
#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn cancel_order(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    key: IdemKey,
    Valid { body, json }: Valid<ReasonBody>,
) -> Result<Reply, ApiError> {
    let cancel = ItemsRequest {
        items: Vec::new(),
        reason: body.reason,
    };
    order_command(&state, &caller, id, key, "cancel", &json, cancel).await
}

/// The body of `POST /orders/{id}/cancel-items` and `.../refund-items`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ItemsRequest)]
pub(super) struct ItemsBody {
    #[schema(min_items = 1, max_items = 200)]
    pub items: Vec<ItemQuantity>,
    #[serde(default)]
    #[schema(
        max_length = 500,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    pub reason: Option<String>,
}

/// The shape of the request; which items the order has and how many units are
/// left is for the order to say.
impl Rules for ItemsBody {
    fn rules(&self) -> Vec<FieldError> {
        let mut errors = reason_rules(&self.reason);
        let units = self.items.iter().map(|i| (i.item_id, i.quantity));
        errors.extend(units_rules(units));
        errors
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/cancel-items",
    tag = "orders",
    params(("id" = Uuid, Path, description = "The order's id."), IdempotencyKey),
    request_body = ItemsBody,
    responses(
        (status = 200, description = "The order once the saga rests: the units cancelled, their stock released, their prorated share refunded; `cancelled` when no unit is left.", body = OrderView),
        (status = 202, description = "The saga has not rested within a few seconds and goes on: the order as it stands.", body = OrderView, headers(("Location" = String, description = "The order's URL."))),
        (status = 404, description = "`order_not_found`: no such order, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`not_cancellable` from `shipped` on; `already_shipped` when the fulfillment service refuses; `invalid_transition` when already `cancelled` or `failed`.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`quantity_exceeded`: more units than are left; `idempotency_key_reused`, or `validation_failed` (the fields at fault in `errors`), e.g. an unknown `item_id`.", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`step_refused`: a downstream service finally refused a step; the order waits for an operator (`attention`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the order engine did not accept the request; retry with the same `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /orders/{id}/cancel-items`: cancels some units before the order ships.
#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn cancel_items(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    key: IdemKey,
    Valid { body, json }: Valid<ItemsBody>,
) -> Result<Reply, ApiError> {
    let units = body.into_request();
    order_command(&state, &caller, id, key, "cancel_items", &json, units).await
}

impl ItemsBody {
    /// The units, as the order's object takes them.
    pub fn into_request(self) -> ItemsRequest {
        ItemsRequest {
            items: self.items,
            reason: self.reason,
        }
    }
}

/// The shape of the units a request names, `(item_id, quantity)` each; whether
/// the order has those items, and how many of their units are left, is for the
/// order to say.
pub(super) fn units_rules(units: impl ExactSizeIterator<Item = (i32, i64)>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if units.len() == 0 || units.len() > MAX_ITEMS {
        let message = format!("must name 1 to {MAX_ITEMS} items");
        errors.push(FieldError::new("items", message));
    }
    for (n, (item_id, quantity)) in units.enumerate() {
        if item_id < 1 {
            let field = format!("items[{n}].item_id");
            errors.push(FieldError::new(field, "must be an item id of the order"));
        }
        if !(1..=MAX_QUANTITY).contains(&quantity) {
            let field = format!("items[{n}].quantity");
            let message = format!("must be between 1 and {MAX_QUANTITY}");
            errors.push(FieldError::new(field, message));
        }
    }
    errors
}
