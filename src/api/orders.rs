//! `/orders`: create, read, list, pay, move along the status path, the status and
//! edit histories.

use super::auth::{visible, Staff};
use super::body::{Rules, Valid};
use super::commands::{
    accepted_or_unavailable, command, existing, order_command, read_back, reason_rules, Answer,
};
use super::error::Problem;
use super::idempotency::{self, IdemKey, Reply};
use super::openapi::shapes::{AcceptedOrder, IdempotencyKey, ListQuery};
use super::params::{OrderId, OrderNumber, QueryParams};
use super::{ApiError, ApiState};
use crate::auth::{Caller, Reach};
use crate::domain::{FieldError, Money, NewOrder, NewPayment, OrderStatus, OrderView};
use crate::engine::ingress::IngressError;
use crate::read_model::{self, Cursor, EditEntry, ListFilter, OrderPage, StatusHistoryEntry};
use crate::workflows::{PayRequest, Rested, StatusRequest, BAD_INPUT, ORDER_OBJECT};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use utoipa::ToSchema;
use uuid::Uuid;

/// The order routes.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/orders", post(create_order).get(list_orders))
        .route("/orders/{id}", get(get_order))
        .route("/orders/by-number/{order_number}", get(get_order_by_number))
        .route("/orders/{id}/payments", post(pay_order))
        .route("/orders/{id}/status", put(set_status))
        .route("/orders/{id}/status-history", get(status_history))
        .route("/orders/{id}/edit-history", get(edit_history))
}

#[utoipa::path(
    post,
    path = "/api/v1/orders",
    tag = "orders",
    params(IdempotencyKey),
    request_body = NewOrder,
    responses(
        (status = 201, description = "The order once its create saga rests: `confirmed` when paid, `draft` without a payment (stock reserved until it is paid or expires), `failed` when stock, payment or fulfillment refused (see `failure`).", body = OrderView, headers(("Location" = String, description = "The order's URL."))),
        (status = 202, description = "The saga has not rested within a few seconds and goes on: the order as it stands, or only its id while it is not yet written.", body = AcceptedOrder, headers(("Location" = String, description = "The order's URL."))),
        (status = 403, description = "`forbidden`: a customer may create orders only for itself (`customer_id` must be its token's `sub`).", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency_key_reused`, or `validation_failed` (the fields at fault in `errors`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the order engine did not accept the request; retry with the same `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /orders`: runs the create saga and answers once it rests, or with `202`.
#[tracing::instrument(skip_all, fields(order.id))]
async fn create_order(
    caller: Caller,
    State(state): State<ApiState>,
    key: IdemKey,
    Valid { body: new, json }: Valid<NewOrder>,
) -> Result<Reply, ApiError> {
    let started = std::time::Instant::now();
    if !caller.may_access(new.customer_id) {
        return Err(ApiError::Forbidden(
            "a customer may create orders only for itself: customer_id must be the token's sub",
        ));
    }
    let key = key.checked()?;
    let (state, scope, key) = (&state, "create_order", key.as_deref());
    idempotency::once(&state.db, scope, key, &json, |id| async move {
        tracing::Span::current().record("order.id", tracing::field::display(id));
        let restate_key = format!("{scope}:{}", key.unwrap_or(&id.to_string()));
        let wait = state.settings.create_wait;
        let id_text = id.to_string();
        let outcome = state
            .ingress
            .submit::<_, Rested>(ORDER_OBJECT, &id_text, "create", &new, &restate_key, wait)
            .await;
        match outcome {
            Ok(_) => {
                let seconds = started.elapsed().as_secs_f64();
                metrics::histogram!("order_creation_duration_seconds").record(seconds);
                Ok(Reply {
                    status: StatusCode::CREATED,
                    body: json!(read_back(state, id).await?),
                    produced: None,
                })
            }
            // The object's own check of the order (the API's already passed).
            Err(IngressError::Failed { status, message }) if status == BAD_INPUT => {
                Err(ApiError::Validation(vec![FieldError::new("body", message)]))
            }
            Err(e) => accepted_or_unavailable(state, id, e).await,
        }
    })
    .await
}

#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/payments",
    tag = "orders",
    params(("id" = Uuid, Path, description = "The order's id."), IdempotencyKey),
    request_body = NewPayment,
    responses(
        (status = 200, description = "The order once the payment saga rests, `confirmed`.", body = OrderView),
        (status = 202, description = "The saga has not rested within a few seconds and goes on: the order as it stands.", body = OrderView, headers(("Location" = String, description = "The order's URL."))),
        (status = 402, description = "`payment_declined`: the payment was declined; the order stays a draft and may be paid again.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`: no such order, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_transition`: only a draft can be paid.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency_key_reused`, or `validation_failed` (the fields at fault in `errors`); `amount`, when given, must equal the amount due; a draft that owes nothing (every unit left is free) cannot be charged.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the order engine did not accept the request; retry with the same `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /orders/{id}/payments`: pays a draft.
#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn pay_order(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    key: IdemKey,
    Valid {
        body: payment,
        json,
    }: Valid<NewPayment>,
) -> Result<Reply, ApiError> {
    let order = existing(&state, &caller, id).await?;
    // A draft whose every unit left is free: the payment service charges no zero.
    if order.status == OrderStatus::Draft && order.amount_due() == Money::ZERO {
        let message = "the order owes nothing (0.00): there is nothing to charge";
        return Err(ApiError::Validation(vec![FieldError::new(
            "amount", message,
        )]));
    }
    if payment.amount.is_some_and(|a| a != order.amount_due()) {
        let message = format!("must equal the amount due {}", order.amount_due());
        return Err(ApiError::Validation(vec![FieldError::new(
            "amount", message,
        )]));
    }
    let pay = PayRequest {
        method: payment.method.trim().to_owned(),
        amount: payment.amount,
    };
    let key = key.checked()?;
    command(&state, id, "pay", key, &json, |_| pay, Answer::Order).await
}

impl Rules for NewOrder {
    fn rules(&self) -> Vec<FieldError> {
        self.validate()
    }
}

impl Rules for NewPayment {
    fn rules(&self) -> Vec<FieldError> {
        self.validate("")
    }
}

/// The body of `PUT /orders/{id}/status`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SetStatusRequest)]
struct StatusBody {
    status: OrderStatus,
    #[serde(default)]
    #[schema(
        max_length = 500,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    reason: Option<String>,
}

#[utoipa::path(
    put,
    path = "/api/v1/orders/{id}/status",
    tag = "orders",
    params(("id" = Uuid, Path, description = "The order's id."), IdempotencyKey),
    request_body = StatusBody,
    responses(
        (status = 200, description = "The order once its saga rests.", body = OrderView),
        (status = 202, description = "The saga has not rested within a few seconds and goes on: the order as it stands.", body = OrderView, headers(("Location" = String, description = "The order's URL."))),
        (status = 403, description = "`forbidden`: for staff, services and operators, not customers.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`: no such order, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_transition`: only `confirmed` -> `processing` -> `shipped` -> `delivered`, one step at a time.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency_key_reused`, or `validation_failed` (the fields at fault in `errors`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the order engine did not accept the request; retry with the same `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `PUT /orders/{id}/status`: moves the order along its fulfilment path.
#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn set_status(
    Staff(caller): Staff,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    key: IdemKey,
    Valid { body, json }: Valid<StatusBody>,
) -> Result<Reply, ApiError> {
    let change = StatusRequest {
        status: body.status,
        reason: body.reason,
    };
    order_command(&state, &caller, id, key, "set_status", &json, change).await
}

impl Rules for StatusBody {
    fn rules(&self) -> Vec<FieldError> {
        reason_rules(&self.reason)
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}",
    tag = "orders",
    params(("id" = Uuid, Path, description = "The order's id.")),
    responses(
        (status = 200, description = "The order, from the read model.", body = OrderView, headers(("ETag" = String, description = "The order's version, quoted (`\"7\"`): what a change's `If-Match` names."))),
        (status = 404, description = "`order_not_found`: no such order, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /orders/{id}`: the order, with its version as its `ETag`.
async fn get_order(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
) -> Result<impl IntoResponse, ApiError> {
    let order = existing(&state, &caller, id).await?;
    let etag = format!("\"{}\"", order.version);
    Ok(([(header::ETAG, etag)], Json(order)))
}

#[utoipa::path(
    get,
    path = "/api/v1/orders/by-number/{order_number}",
    tag = "orders",
    params(("order_number" = String, Path, description = "The order's number, `ORD-YYYYMMDD-NNNNNN`; anything else names no order.", example = "ORD-20261125-000001")),
    responses(
        (status = 200, description = "The order, from the read model.", body = OrderView),
        (status = 404, description = "`order_not_found`: no such order, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /orders/by-number/{order_number}`.
async fn get_order_by_number(
    caller: Caller,
    State(state): State<ApiState>,
    OrderNumber(number): OrderNumber,
) -> Result<Json<OrderView>, ApiError> {
    let order = read_model::get_order_by_number(&state.db, &number).await?;
    visible(&caller, order).map(Json)
}

#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}/status-history",
    tag = "orders",
    params(("id" = Uuid, Path, description = "The order's id.")),
    responses(
        (status = 200, description = "Every status change, oldest first.", body = Vec<StatusHistoryEntry>),
        (status = 404, description = "`order_not_found`: no such order, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /orders/{id}/status-history`.
async fn status_history(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
) -> Result<Json<Value>, ApiError> {
    existing(&state, &caller, id).await?;
    let history = read_model::status_history(&state.db, id).await?;
    history
        .map(|h| Json(json!(h)))
        .ok_or(ApiError::OrderNotFound)
}

#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}/edit-history",
    tag = "orders",
    params(("id" = Uuid, Path, description = "The order's id.")),
    responses(
        (status = 200, description = "Every change to quantities, amounts, addresses and returns, oldest first.", body = Vec<EditEntry>),
        (status = 404, description = "`order_not_found`: no such order, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /orders/{id}/edit-history`.
async fn edit_history(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
) -> Result<Json<Vec<read_model::EditEntry>>, ApiError> {
    existing(&state, &caller, id).await?;
    let history = read_model::edit_history(&state.db, id).await?;
    history.map(Json).ok_or(ApiError::OrderNotFound)
}

#[utoipa::path(
    get,
    path = "/api/v1/orders",
    tag = "orders",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of orders, newest first; a customer's holds its own orders only, whatever the filter.", body = OrderPage),
        (status = 422, description = "`validation_failed`: a filter that does not parse, a `limit` outside 1 to 200, a cursor no page returned, or a parameter given twice.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /orders`: newest first, filtered, a page at a time; a customer's list holds
/// its own orders only, whatever the filter.
async fn list_orders(
    caller: Caller,
    State(state): State<ApiState>,
    QueryParams(params): QueryParams,
) -> Result<Json<OrderPage>, ApiError> {
    let filter = list_filter(&params)?;
    let page = match within_reach(&caller, filter) {
        Some(filter) => read_model::list_orders(&state.db, &filter).await?,
        None => OrderPage {
            orders: Vec::new(),
            next_cursor: None,
        },
    };
    Ok(Json(page))
}

/// `filter` narrowed to the orders the caller reaches; `None` when it reaches none
/// of those it selects (a customer filtering on another customer, or owning none).
fn within_reach(caller: &Caller, mut filter: ListFilter) -> Option<ListFilter> {
    match caller.reach() {
        Reach::All => Some(filter),
        Reach::Customer(None) => None,
        Reach::Customer(Some(me)) => match filter.customer_id.replace(me) {
            Some(other) if other != me => None,
            _ => Some(filter),
        },
    }
}

fn list_filter(params: &HashMap<String, String>) -> Result<ListFilter, ApiError> {
    let mut errors = Vec::new();
    let mut parse = |name: &str, what: &str, f: &dyn Fn(&str) -> bool| {
        let value = params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        if let Some(v) = value {
            if !f(v) {
                errors.push(FieldError::new(name, format!("must be {what}")));
            }
        }
        value.map(str::to_owned)
    };
    let customer_id = parse("customer_id", "a UUID", &|v| v.parse::<Uuid>().is_ok());
    let status = parse("status", "an order status", &|v| {
        v.parse::<OrderStatus>().is_ok()
    });
    let from = parse("created_from", "an RFC 3339 time", &|v| {
        v.parse::<DateTime<Utc>>().is_ok()
    });
    let to = parse("created_to", "an RFC 3339 time", &|v| {
        v.parse::<DateTime<Utc>>().is_ok()
    });
    let limit = parse("limit", "a whole number from 1 to 200", &|v| {
        v.parse::<i64>().is_ok_and(|n| (1..=200).contains(&n))
    });
    let cursor = parse("cursor", "a cursor returned by a previous page", &|v| {
        Cursor::decode(v).is_some()
    });
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok(ListFilter {
        customer_id: customer_id.and_then(|v| v.parse().ok()),
        status: status.and_then(|v| v.parse().ok()),
        created_from: from.and_then(|v| v.parse().ok()),
        created_to: to.and_then(|v| v.parse().ok()),
        after: cursor.and_then(|v| Cursor::decode(&v)),
        limit: limit.and_then(|v| v.parse().ok()).unwrap_or(50),
    })
}
