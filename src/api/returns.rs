//! Returns of a delivered order and refunds without a return.

use super::auth::Staff;
use super::body::{body_rejection, JsonBody, Rules, Valid};
use super::cancel::{units_rules, ItemsBody};
use super::commands::{command, existing, order_command, reason_rules, Answer, ReasonBody};
use super::error::Problem;
use super::idempotency::{IdemKey, Reply};
use super::openapi::shapes::{IdempotencyKey, ReturnList};
use super::params::{OrderId, ReturnId};
use super::{ApiError, ApiState};
use crate::auth::Caller;
use crate::domain::{FieldError, OrderView, Return, ReturnItem};
use crate::read_model;
use crate::workflows::{ReturnCommand, ReturnRequest};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

/// The return and refund routes.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route(
            "/orders/{id}/returns",
            post(request_return).get(list_returns),
        )
        .route(
            "/orders/{id}/returns/{return_id}/receive",
            post(receive_return),
        )
        .route(
            "/orders/{id}/returns/{return_id}/reject",
            post(reject_return),
        )
        .route("/orders/{id}/refund-items", post(refund_items))
}

/// The body of `POST /orders/{id}/returns`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ReturnRequest)]
struct ReturnBody {
    #[schema(min_items = 1, max_items = 200)]
    items: Vec<ReturnItem>,
    #[serde(default)]
    #[schema(
        max_length = 500,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    reason: Option<String>,
}

impl Rules for ReturnBody {
    fn rules(&self) -> Vec<FieldError> {
        let mut errors = reason_rules(&self.reason);
        errors.extend(units_rules(
            self.items.iter().map(|i| (i.item_id, i.quantity)),
        ));
        for (n, item) in self.items.iter().enumerate() {
            if item
                .reason
                .as_ref()
                .is_some_and(|r| r.chars().count() > 500)
            {
                let field = format!("items[{n}].reason");
                errors.push(FieldError::new(field, "must be at most 500 characters"));
            }
        }
        errors
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/returns",
    tag = "returns",
    params(("id" = Uuid, Path, description = "The order's id."), IdempotencyKey),
    request_body = ReturnBody,
    responses(
        (status = 201, description = "The return, `requested`: its units are held until its parcel is received, it is rejected, or it expires.", body = Return),
        (status = 202, description = "The saga has not rested within a few seconds and goes on: the order as it stands.", body = OrderView, headers(("Location" = String, description = "The order's URL."))),
        (status = 404, description = "`order_not_found`: no such order, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_transition`: only a `delivered` order can be returned.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`quantity_exceeded`: more units than are left; `return_window_closed`; `idempotency_key_reused`, or `validation_failed` (the fields at fault in `errors`), e.g. an unknown `item_id`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the order engine did not accept the request; retry with the same `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /orders/{id}/returns`: answers `201` with the return, `requested`.
#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn request_return(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    key: IdemKey,
    Valid { body, json }: Valid<ReturnBody>,
) -> Result<Reply, ApiError> {
    let key = key.checked()?;
    existing(&state, &caller, id).await?;
    let payload = |return_id| ReturnRequest {
        return_id,
        items: body.items,
        reason: body.reason,
    };
    let handler = "request_return";
    command(&state, id, handler, key, &json, payload, Answer::NewReturn).await
}

#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/returns/{return_id}/receive",
    tag = "returns",
    params(("id" = Uuid, Path, description = "The order's id."), ("return_id" = Uuid, Path, description = "The return's id."), IdempotencyKey),
    request_body(content = Option<ReasonBody>, description = "Optional: receiving needs no body; one that is sent must be valid."),
    responses(
        (status = 200, description = "The order once the saga rests: the units restocked and refunded, the return `refunded`. A return already received or refunded answers the same and changes nothing.", body = OrderView),
        (status = 202, description = "The saga has not rested within a few seconds and goes on: the order as it stands.", body = OrderView, headers(("Location" = String, description = "The order's URL."))),
        (status = 403, description = "`forbidden`: for staff, services and operators, not customers.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`, or `return_not_found`: the order has no such return.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_transition`: the return is `rejected` or `expired`.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency_key_reused`, or `validation_failed` (the fields at fault in `errors`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the order engine did not accept the request; retry with the same `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /orders/{id}/returns/{return_id}/receive`: the parcel arrived.
#[tracing::instrument(skip_all, fields(order.id = %id, return.id = %return_id))]
async fn receive_return(
    Staff(_): Staff,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    ReturnId(return_id): ReturnId,
    key: IdemKey,
    Receipt(body): Receipt,
) -> Result<Reply, ApiError> {
    let handler = "receive_return";
    return_command(&state, (id, return_id), key, body, handler).await
}

/// The body of a receipt, which carries nothing (no body, or `null`); one that is
/// sent must still be a valid one.
pub(super) struct Receipt(pub(super) Valid<ReasonBody>);

impl<S: Send + Sync> FromRequest<S> for Receipt {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let headers = req.headers().clone();
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        let body = match bytes.is_empty() {
            true => JsonBody(json!({})),
            false => match JsonBody::from_bytes(&headers, &bytes)? {
                JsonBody(Value::Null) => JsonBody(json!({})),
                body => body,
            },
        };
        Valid::check(body).map(Receipt)
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/returns/{return_id}/reject",
    tag = "returns",
    params(("id" = Uuid, Path, description = "The order's id."), ("return_id" = Uuid, Path, description = "The return's id."), IdempotencyKey),
    request_body = ReasonBody,
    responses(
        (status = 200, description = "The order once the saga rests, its return `rejected`: nothing restocked or refunded, its units left again.", body = OrderView),
        (status = 202, description = "The saga has not rested within a few seconds and goes on: the order as it stands.", body = OrderView, headers(("Location" = String, description = "The order's URL."))),
        (status = 403, description = "`forbidden`: for staff, services and operators, not customers.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`, or `return_not_found`: the order has no such return.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_transition`: the return is already `refunded`, `rejected` or `expired`.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency_key_reused`, or `validation_failed` (the fields at fault in `errors`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the order engine did not accept the request; retry with the same `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /orders/{id}/returns/{return_id}/reject`: the return is refused.
#[tracing::instrument(skip_all, fields(order.id = %id, return.id = %return_id))]
async fn reject_return(
    Staff(_): Staff,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    ReturnId(return_id): ReturnId,
    key: IdemKey,
    body: Valid<ReasonBody>,
) -> Result<Reply, ApiError> {
    let handler = "reject_return";
    return_command(&state, (id, return_id), key, body, handler).await
}

/// Runs `handler` on return `return_id` of order `id`, which must have it.
async fn return_command(
    state: &ApiState,
    (id, return_id): (Uuid, Uuid),
    key: IdemKey,
    Valid { body, json }: Valid<ReasonBody>,
    handler: &str,
) -> Result<Reply, ApiError> {
    let key = key.checked()?;
    if read_model::get_return(&state.db, id, return_id)
        .await?
        .is_none()
    {
        return Err(ApiError::ReturnNotFound);
    }
    let change = ReturnCommand {
        return_id,
        reason: body.reason,
    };
    // The key's scope is the order; the return is part of the request.
    let request = json!({ "return_id": return_id, "body": json });
    command(state, id, handler, key, &request, |_| change, Answer::Order).await
}

#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}/returns",
    tag = "returns",
    params(("id" = Uuid, Path, description = "The order's id.")),
    responses(
        (status = 200, description = "The order's returns, oldest first.", body = ReturnList),
        (status = 404, description = "`order_not_found`: no such order, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /orders/{id}/returns`.
async fn list_returns(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
) -> Result<Json<Value>, ApiError> {
    existing(&state, &caller, id).await?;
    let returns = read_model::list_returns(&state.db, id).await?;
    let returns = returns.ok_or(ApiError::OrderNotFound)?;
    Ok(Json(json!({ "returns": returns })))
}

#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/refund-items",
    tag = "returns",
    params(("id" = Uuid, Path, description = "The order's id."), IdempotencyKey),
    request_body = ItemsBody,
    responses(
        (status = 200, description = "The order once the saga rests: the units' prorated share refunded; `refunded` when everything captured is.", body = OrderView),
        (status = 202, description = "The saga has not rested within a few seconds and goes on: the order as it stands.", body = OrderView, headers(("Location" = String, description = "The order's URL."))),
        (status = 403, description = "`forbidden`: for staff, services and operators, not customers.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`: no such order, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_transition`: only a `shipped` or `delivered` order; `refund_refused`: the payment service refused the refund.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`quantity_exceeded`: more units than are left; `idempotency_key_reused`, or `validation_failed` (the fields at fault in `errors`), e.g. an unknown `item_id`.", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`step_refused`: a downstream service finally refused a step; the order waits for an operator (`attention`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the order engine did not accept the request; retry with the same `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /orders/{id}/refund-items`: refunds units of a shipped or delivered order
/// without a return.
#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn refund_items(
    Staff(caller): Staff,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    key: IdemKey,
    Valid { body, json }: Valid<ItemsBody>,
) -> Result<Reply, ApiError> {
    let units = body.into_request();
    order_command(&state, &caller, id, key, "refund_items", &json, units).await
}
