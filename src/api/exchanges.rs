//! Exchanges (api-changes.md §6): units of a delivered order sent back for other
//! items, settled as one net amount when the parcel arrives.

use super::auth::FOR_STAFF;
use super::body::{Rules, Valid};
use super::cancel::units_rules;
use super::changes::{payment_rules, PaymentBody};
use super::commands::{command, existing, reason_rules, Answer, ReasonBody};
use super::error::Problem;
use super::idempotency::{IdemKey, Reply};
use super::openapi::shapes::{ExchangeList, IdempotencyKey};
use super::params::OrderId;
use super::returns::Receipt;
use super::{ApiError, ApiState};
use crate::auth::Caller;
use crate::domain::{
    Exchange, ExchangeStatus, FieldError, NewItem, Refusal, ReturnItem, MAX_ITEMS,
};
use crate::read_model::{self, Kind};
use crate::workflows::{ExchangeCommand, ExchangeRequest};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

/// The exchange routes.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route(
            "/orders/{id}/exchanges",
            post(request_exchange).get(list_exchanges),
        )
        .route("/orders/{id}/exchanges/{exchange_id}", get(get_exchange))
        .route(
            "/orders/{id}/exchanges/{exchange_id}/receive",
            post(receive_exchange),
        )
        .route(
            "/orders/{id}/exchanges/{exchange_id}/payments",
            post(pay_exchange),
        )
        .route(
            "/orders/{id}/exchanges/{exchange_id}/cancel",
            post(cancel_exchange),
        )
}

/// The body of `POST /orders/{id}/exchanges`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ExchangeRequest)]
struct ExchangeBody {
    #[schema(min_items = 1, max_items = 200)]
    return_items: Vec<ReturnItem>,
    /// Priced as a change's `add_item`: omitted discount and tax are `0.00`.
    #[schema(min_items = 1, max_items = 200)]
    new_items: Vec<NewItem>,
    #[serde(default)]
    #[schema(
        max_length = 500,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    reason: Option<String>,
    /// Pays a positive difference; the order's latest method otherwise.
    #[serde(default)]
    payment: Option<PaymentBody>,
}

impl Rules for ExchangeBody {
    fn rules(&self) -> Vec<FieldError> {
        let mut errors = reason_rules(&self.reason);
        let units = units_rules(self.return_items.iter().map(|i| (i.item_id, i.quantity)));
        let renamed = units.into_iter().map(|e| FieldError {
            field: e.field.replacen("items", "return_items", 1),
            ..e
        });
        errors.extend(renamed);
        for (n, item) in self.return_items.iter().enumerate() {
            if item
                .reason
                .as_ref()
                .is_some_and(|r| r.chars().count() > 500)
            {
                let field = format!("return_items[{n}].reason");
                errors.push(FieldError::new(field, "must be at most 500 characters"));
            }
        }
        if self.new_items.is_empty() || self.new_items.len() > MAX_ITEMS {
            let message = format!("must name 1 to {MAX_ITEMS} items");
            errors.push(FieldError::new("new_items", message));
        }
        for (n, item) in self.new_items.iter().enumerate() {
            item.validate(&format!("new_items[{n}]."), &mut errors);
        }
        payment_rules(&self.payment, &mut errors);
        errors
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/exchanges",
    tag = "exchanges",
    params(("id" = Uuid, Path, description = "The order's id."), IdempotencyKey),
    request_body = ExchangeBody,
    responses(
        (status = 201, description = "The exchange, `requested`: its returned units are held and `difference` is fixed; nothing is reserved or moved until the parcel arrives.", body = Exchange),
        (status = 202, description = "Not rested within a few seconds: the exchange as it stands.", body = Exchange),
        (status = 404, description = "`order_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_transition`: only a `delivered` order can be exchanged; `change_in_progress`.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`quantity_exceeded`, `return_window_closed`, `idempotency_key_reused`, or `validation_failed` (the fields at fault in `errors`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: retry with the same `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /orders/{id}/exchanges`: answers `201` with the exchange, `requested`.
#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn request_exchange(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    key: IdemKey,
    Valid { body, json }: Valid<ExchangeBody>,
) -> Result<Reply, ApiError> {
    existing(&state, &caller, id).await?;
    let key = key.checked()?;
    let payload = |exchange_id| ExchangeRequest {
        exchange_id,
        return_items: body.return_items,
        new_items: body.new_items,
        reason: body.reason,
        method: body.payment.map(|p| p.method.trim().to_owned()),
    };
    let answer = Answer::NewOf(Kind::Exchanges);
    command(&state, id, "request_exchange", key, &json, payload, answer).await
}

#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}/exchanges",
    tag = "exchanges",
    params(("id" = Uuid, Path, description = "The order's id.")),
    responses(
        (status = 200, description = "The order's exchanges, oldest first.", body = ExchangeList),
        (status = 404, description = "`order_not_found`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /orders/{id}/exchanges`.
async fn list_exchanges(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
) -> Result<Json<Value>, ApiError> {
    existing(&state, &caller, id).await?;
    let exchanges: Option<Vec<Value>> = read_model::list(&state.db, Kind::Exchanges, id).await?;
    let exchanges = exchanges.ok_or(ApiError::OrderNotFound)?;
    Ok(Json(json!({ "exchanges": exchanges })))
}

#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}/exchanges/{exchange_id}",
    tag = "exchanges",
    params(("id" = Uuid, Path, description = "The order's id."), ("exchange_id" = Uuid, Path, description = "The exchange's id.")),
    responses(
        (status = 200, description = "The exchange.", body = Exchange),
        (status = 404, description = "`order_not_found`, or `exchange_not_found`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /orders/{id}/exchanges/{exchange_id}`.
async fn get_exchange(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    Path((_, exchange_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    existing(&state, &caller, id).await?;
    Ok(Json(exchange_of(&state, id, &exchange_id).await?.1))
}

/// Exchange `exchange_id` of order `id`: its id and the document.
async fn exchange_of(
    state: &ApiState,
    id: Uuid,
    exchange_id: &str,
) -> Result<(Uuid, Value), ApiError> {
    let exchange_id: Uuid = exchange_id.parse().map_err(|_| Refusal::ExchangeNotFound)?;
    let found: Option<Value> =
        read_model::get_one(&state.db, Kind::Exchanges, id, exchange_id).await?;
    Ok((exchange_id, found.ok_or(Refusal::ExchangeNotFound)?))
}

#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/exchanges/{exchange_id}/receive",
    tag = "exchanges",
    params(("id" = Uuid, Path, description = "The order's id."), ("exchange_id" = Uuid, Path, description = "The exchange's id."), IdempotencyKey),
    request_body(content = Option<ReasonBody>, description = "Optional: receiving needs no body; one that is sent must be valid."),
    responses(
        (status = 200, description = "The exchange once `receive_exchange` rests: `settled` (one net charge or refund, the new items shipped), or `received` with `failure` (`insufficient_stock`, `payment_declined` with `amount_due`) when the settlement was refused; receiving again retries it. A `settled` exchange answers the same again.", body = Exchange),
        (status = 202, description = "Not rested within a few seconds: the exchange as it stands.", body = Exchange),
        (status = 403, description = "`forbidden`: for staff, services and operators.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`, or `exchange_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_transition`: the exchange is `cancelled` or `expired`.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency_key_reused`, or `validation_failed`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: retry with the same `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /orders/{id}/exchanges/{exchange_id}/receive`: the parcel arrived.
#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn receive_exchange(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    Path((_, exchange_id)): Path<(String, String)>,
    key: IdemKey,
    Receipt(Valid { body, json }): Receipt,
) -> Result<Reply, ApiError> {
    existing(&state, &caller, id).await?;
    let (exchange_id, _) = exchange_of(&state, id, &exchange_id).await?;
    if !caller.may_manage() {
        return Err(ApiError::Forbidden(FOR_STAFF));
    }
    let command_body = ExchangeCommand {
        exchange_id,
        method: None,
        reason: body.reason,
    };
    run(&state, id, key, &json, command_body, "receive_exchange").await
}

#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/exchanges/{exchange_id}/payments",
    tag = "exchanges",
    params(("id" = Uuid, Path, description = "The order's id."), ("exchange_id" = Uuid, Path, description = "The exchange's id."), IdempotencyKey),
    request_body = PaymentBody,
    responses(
        (status = 200, description = "The exchange once the settlement rests: `settled`, or still `received` with its `failure` (a decline keeps `amount_due`; pay again with a new `Idempotency-Key`).", body = Exchange),
        (status = 202, description = "Not rested within a few seconds: the exchange as it stands.", body = Exchange),
        (status = 404, description = "`order_not_found`, or `exchange_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_transition`: the exchange is not `received`.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency_key_reused`, or `validation_failed`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: retry with the same `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /orders/{id}/exchanges/{exchange_id}/payments`: pays the difference of a
/// received exchange and settles it.
#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn pay_exchange(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    Path((_, exchange_id)): Path<(String, String)>,
    key: IdemKey,
    Valid { body, json }: Valid<PaymentBody>,
) -> Result<Reply, ApiError> {
    existing(&state, &caller, id).await?;
    let (exchange_id, _) = exchange_of(&state, id, &exchange_id).await?;
    let command_body = ExchangeCommand {
        exchange_id,
        method: Some(body.method.trim().to_owned()),
        reason: None,
    };
    run(&state, id, key, &json, command_body, "pay_exchange").await
}

#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/exchanges/{exchange_id}/cancel",
    tag = "exchanges",
    params(("id" = Uuid, Path, description = "The order's id."), ("exchange_id" = Uuid, Path, description = "The exchange's id."), IdempotencyKey),
    request_body = ReasonBody,
    responses(
        (status = 200, description = "`cancelled`: a `requested` exchange frees its units; a `received` one closes as a plain return, `return_value` refunded. A `cancelled` exchange answers the same again.", body = Exchange),
        (status = 202, description = "Not rested within a few seconds: the exchange as it stands.", body = Exchange),
        (status = 403, description = "`forbidden`: a customer cancels only a `requested` exchange.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`, or `exchange_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_transition`: the exchange is `settled` or `expired`.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency_key_reused`, or `validation_failed`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: retry with the same `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /orders/{id}/exchanges/{exchange_id}/cancel`.
#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn cancel_exchange(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    Path((_, exchange_id)): Path<(String, String)>,
    key: IdemKey,
    Valid { body, json }: Valid<ReasonBody>,
) -> Result<Reply, ApiError> {
    existing(&state, &caller, id).await?;
    let (exchange_id, exchange) = exchange_of(&state, id, &exchange_id).await?;
    let requested = exchange["status"] == json!(ExchangeStatus::Requested);
    if !requested && !caller.may_manage() {
        return Err(ApiError::Forbidden(
            "a customer cancels only a requested exchange",
        ));
    }
    let command_body = ExchangeCommand {
        exchange_id,
        method: None,
        reason: body.reason,
    };
    run(&state, id, key, &json, command_body, "cancel_exchange").await
}

/// Runs `handler` on an exchange of order `id`, answering with the exchange.
async fn run(
    state: &ApiState,
    id: Uuid,
    key: IdemKey,
    json: &Value,
    body: ExchangeCommand,
    handler: &str,
) -> Result<Reply, ApiError> {
    let key = key.checked()?;
    let exchange_id = body.exchange_id;
    // The key's scope is the order; the exchange is part of the request.
    let request = json!({ "exchange_id": exchange_id, "body": json });
    let answer = Answer::Of(Kind::Exchanges, exchange_id);
    command(state, id, handler, key, &request, |_| body, answer).await
}
