//! Change requests (api-changes.md §5): a customer asks the shop for a change, or
//! the shop proposes one; the other side accepts (the change runs as `POST
//! .../changes` does) or declines, the side that asked may withdraw.

use super::body::{JsonBody, Rules, Valid};
use super::changes::{
    collecting_rules, deadline_of, if_match, operations_rules, Collect, OnUnpaid, PaymentBody,
};
use super::commands::{command, existing, reason_rules, Answer, ReasonBody};
use super::error::Problem;
use super::idempotency::{IdemKey, Reply};
use super::openapi::shapes::{ChangeRequestList, IdempotencyKey, OptionalIfMatch};
use super::params::OrderId;
use super::{ApiError, ApiState};
use crate::auth::Caller;
use crate::domain::{Actor, ChangeRequestView, ChangeView, FieldError, Operation, Refusal};
use crate::read_model;
use crate::workflows::{AcceptRequest, ApplyRequest, DecideRequest, NewRequest};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

/// The change request routes.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route(
            "/orders/{id}/change-requests",
            get(list_requests).post(create_request),
        )
        .route(
            "/orders/{id}/change-requests/{request_id}",
            get(get_request),
        )
        .route(
            "/orders/{id}/change-requests/{request_id}/accept",
            post(accept_request),
        )
        .route(
            "/orders/{id}/change-requests/{request_id}/decline",
            post(decline_request),
        )
        .route(
            "/orders/{id}/change-requests/{request_id}/withdraw",
            post(withdraw_request),
        )
}

/// The body of `POST /orders/{id}/change-requests`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewChangeRequest)]
struct RequestBody {
    #[schema(min_items = 1, max_items = 50)]
    operations: Vec<Operation>,
    #[serde(default)]
    #[schema(
        max_length = 500,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    reason: Option<String>,
    /// For the other side.
    #[serde(default)]
    #[schema(
        max_length = 2000,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    message: Option<String>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 2592000, default = 259200)]
    expires_in_seconds: Option<i64>,
    /// With authorization off only: `customer` or `merchant` (default). A token
    /// decides it otherwise.
    #[serde(default)]
    #[schema(value_type = Option<Side>)]
    requested_by: Option<String>,
}

/// Which side of the order asks.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum Side {
    Customer,
    Merchant,
}

impl Rules for RequestBody {
    fn rules(&self) -> Vec<FieldError> {
        let mut errors = reason_rules(&self.reason);
        operations_rules(&self.operations, &mut errors);
        if self
            .message
            .as_ref()
            .is_some_and(|m| m.chars().count() > 2000)
        {
            let message = "must be at most 2000 characters";
            errors.push(FieldError::new("message", message));
        }
        if !(1..=2_592_000).contains(&self.expires_in_seconds.unwrap_or(259_200)) {
            let message = "must be from 1 to 2592000";
            errors.push(FieldError::new("expires_in_seconds", message));
        }
        if !matches!(
            self.requested_by.as_deref(),
            None | Some("customer") | Some("merchant")
        ) {
            let message = "must be customer or merchant";
            errors.push(FieldError::new("requested_by", message));
        }
        errors
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/change-requests",
    tag = "changes",
    params(("id" = Uuid, Path, description = "The order's id."), IdempotencyKey),
    request_body = RequestBody,
    responses(
        (status = 201, description = "The request, `open`, with its `preview` priced on the order as it is; nothing is held.", body = ChangeRequestView, headers(("Location" = String, description = "The request's URL."))),
        (status = 202, description = "The request has not rested within a few seconds: the order as it stands.", body = Value),
        (status = 404, description = "`order_not_found`: no such order, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`not_editable`.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, `quantity_exceeded` or `idempotency_key_reused`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the order engine did not accept the request; retry with the same `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /orders/{id}/change-requests`: asks the other side for a change.
#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn create_request(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    key: IdemKey,
    Valid { body, json }: Valid<RequestBody>,
) -> Result<Reply, ApiError> {
    existing(&state, &caller, id).await?;
    let key = key.checked()?;
    let requested_by = match caller.side() {
        Some(side) => side.to_owned(),
        None => body.requested_by.unwrap_or_else(|| "merchant".into()),
    };
    let actor = actor_of(&caller);
    let payload = |request_id| NewRequest {
        request_id,
        operations: body.operations,
        reason: body.reason,
        message: body.message,
        expires_in_seconds: body.expires_in_seconds.unwrap_or(259_200) as u32,
        requested_by,
        actor,
    };
    let answer = Answer::NewRequest;
    command(&state, id, "request_change", key, &json, payload, answer).await
}

fn actor_of(caller: &Caller) -> Actor {
    let (role, sub) = caller.actor();
    Actor {
        role: role.into(),
        sub,
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}/change-requests",
    tag = "changes",
    params(("id" = Uuid, Path, description = "The order's id.")),
    responses(
        (status = 200, description = "The order's change requests, oldest first.", body = ChangeRequestList),
        (status = 404, description = "`order_not_found`: no such order, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /orders/{id}/change-requests`.
async fn list_requests(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
) -> Result<Json<Value>, ApiError> {
    existing(&state, &caller, id).await?;
    let requests = read_model::list_requests(&state.db, id).await?;
    Ok(Json(json!({ "change_requests": requests })))
}

/// Change request `request_id` of order `id`.
async fn request_of(state: &ApiState, id: Uuid, request_id: &str) -> Result<Value, ApiError> {
    let request_id: Uuid = request_id
        .parse()
        .map_err(|_| Refusal::ChangeRequestNotFound)?;
    let request = read_model::get_request(&state.db, id, request_id).await?;
    request.ok_or_else(|| Refusal::ChangeRequestNotFound.into())
}

#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}/change-requests/{request_id}",
    tag = "changes",
    params(("id" = Uuid, Path, description = "The order's id."), ("request_id" = Uuid, Path, description = "The request's id.")),
    responses(
        (status = 200, description = "The change request.", body = ChangeRequestView),
        (status = 404, description = "`order_not_found`, or `change_request_not_found`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /orders/{id}/change-requests/{request_id}`.
async fn get_request(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    Path((_, request_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    existing(&state, &caller, id).await?;
    Ok(Json(request_of(&state, id, &request_id).await?))
}

/// Who may decide a request: the other side accepts or declines, the side that
/// asked withdraws. With authorization off every caller is either side.
fn may_decide(caller: &Caller, request: &Value, as_requester: bool) -> Result<(), ApiError> {
    let Some(side) = caller.side() else {
        return Ok(());
    };
    let asked_by = request["requested_by"].as_str().unwrap_or_default();
    match (side == asked_by, as_requester) {
        (true, true) | (false, false) => Ok(()),
        (false, true) => Err(ApiError::Forbidden(
            "only the side that asked withdraws a change request",
        )),
        (true, false) => Err(ApiError::Forbidden(
            "a change request is accepted or declined by the other side",
        )),
    }
}

/// The body of `POST .../change-requests/{request_id}/accept`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AcceptChangeRequest)]
struct AcceptBody {
    #[serde(default)]
    payment: Option<PaymentBody>,
    #[serde(default)]
    #[schema(value_type = Option<Collect>)]
    collect: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<OnUnpaid>)]
    on_unpaid: Option<String>,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 604800)]
    payment_deadline_seconds: Option<i64>,
}

impl Rules for AcceptBody {
    fn rules(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let collecting = (&self.payment, &self.collect, &self.on_unpaid);
        collecting_rules(collecting, self.payment_deadline_seconds, &mut errors);
        errors
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/change-requests/{request_id}/accept",
    tag = "changes",
    params(("id" = Uuid, Path, description = "The order's id."), ("request_id" = Uuid, Path, description = "The request's id."), IdempotencyKey, OptionalIfMatch),
    request_body = AcceptBody,
    responses(
        (status = 201, description = "The change the request ran, once it rests, as `POST .../changes` answers; the request is `accepted` once it applies, and stays `open` (with that `change_id`) otherwise.", body = ChangeView, headers(("Location" = String, description = "The change's URL."))),
        (status = 202, description = "The change has not rested within a few seconds: the change as it stands.", body = ChangeView),
        (status = 403, description = "`forbidden`: a request is accepted by the other side.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`, or `change_request_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`quote_superseded` (with the new `preview`: the order moved since, nothing changed), `version_conflict`, `change_in_progress`, `not_editable`, or `invalid_transition` (the request was accepted, declined or withdrawn).", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`request_expired`.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` or `idempotency_key_reused`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the order engine did not accept the request; retry with the same `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST .../change-requests/{request_id}/accept`: runs the requested change.
#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn accept_request(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    Path((_, request_id)): Path<(String, String)>,
    key: IdemKey,
    headers: HeaderMap,
    JsonBody(raw): JsonBody,
) -> Result<Reply, ApiError> {
    existing(&state, &caller, id).await?;
    let request = request_of(&state, id, &request_id).await?;
    may_decide(&caller, &request, false)?;
    let key = key.checked()?;
    // An empty body accepts on the order's method.
    let raw = if raw.is_null() { json!({}) } else { raw };
    let body: AcceptBody = super::body::from_value(raw.clone())?;
    let errors = body.rules();
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let version = if_match(&headers)?;
    let request_id = Uuid::parse_str(&request_id).unwrap_or_default();
    let deadline = deadline_of(&body.collect, body.payment_deadline_seconds);
    let actor = actor_of(&caller);
    let payload = |change_id| AcceptRequest {
        request_id,
        if_match: version,
        change: ApplyRequest {
            change_id,
            if_match: version.unwrap_or_default(),
            quote_id: None,
            operations: None,
            expected_delta: None,
            method: body.payment.map(|p| p.method),
            collect: body.collect.unwrap_or_else(|| "order_method".into()),
            on_unpaid: body.on_unpaid.unwrap_or_else(|| "revert".into()),
            payment_deadline_seconds: deadline,
            notify_customer: true,
            reason: None,
            actor,
            request_id: Some(request_id),
        },
    };
    let request = json!({ "if_match": version, "body": raw });
    let answer = Answer::NewChange;
    command(
        &state,
        id,
        "accept_change_request",
        key,
        &request,
        payload,
        answer,
    )
    .await
}

/// The body of `POST .../decline`: why.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DeclineChangeRequest)]
struct DeclineBody {
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    reason: String,
}

impl Rules for DeclineBody {
    fn rules(&self) -> Vec<FieldError> {
        let mut errors = reason_rules(&Some(self.reason.clone()));
        if self.reason.trim().is_empty() {
            let message = "say why the request is declined";
            errors.push(FieldError::new("reason", message));
        }
        errors
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/change-requests/{request_id}/decline",
    tag = "changes",
    params(("id" = Uuid, Path, description = "The order's id."), ("request_id" = Uuid, Path, description = "The request's id."), IdempotencyKey),
    request_body = DeclineBody,
    responses(
        (status = 200, description = "The request, `declined` with the reason.", body = ChangeRequestView),
        (status = 403, description = "`forbidden`: a request is declined by the other side.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`, or `change_request_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_transition`: the request was accepted or withdrawn; `change_in_progress`: a change of it waits for its payment.", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`request_expired`.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` (a reason is required) or `idempotency_key_reused`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the order engine did not accept the request; retry with the same `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST .../change-requests/{request_id}/decline`.
#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn decline_request(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    Path((_, request_id)): Path<(String, String)>,
    key: IdemKey,
    Valid { body, json }: Valid<DeclineBody>,
) -> Result<Reply, ApiError> {
    let body = ReasonBody {
        reason: Some(body.reason),
    };
    decide(caller, state, id, request_id, key, body, json, false).await
}

#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/change-requests/{request_id}/withdraw",
    tag = "changes",
    params(("id" = Uuid, Path, description = "The order's id."), ("request_id" = Uuid, Path, description = "The request's id."), IdempotencyKey),
    request_body = ReasonBody,
    responses(
        (status = 200, description = "The request, `withdrawn`.", body = ChangeRequestView),
        (status = 403, description = "`forbidden`: only the side that asked withdraws.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`, or `change_request_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_transition`: the request was accepted or declined; `change_in_progress`: a change of it waits for its payment.", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`request_expired`.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` or `idempotency_key_reused`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the order engine did not accept the request; retry with the same `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST .../change-requests/{request_id}/withdraw`.
#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn withdraw_request(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    Path((_, request_id)): Path<(String, String)>,
    key: IdemKey,
    Valid { body, json }: Valid<ReasonBody>,
) -> Result<Reply, ApiError> {
    decide(caller, state, id, request_id, key, body, json, true).await
}

#[allow(clippy::too_many_arguments)]
async fn decide(
    caller: Caller,
    state: ApiState,
    id: Uuid,
    request_id: String,
    key: IdemKey,
    body: ReasonBody,
    json: Value,
    withdraw: bool,
) -> Result<Reply, ApiError> {
    existing(&state, &caller, id).await?;
    let request = request_of(&state, id, &request_id).await?;
    may_decide(&caller, &request, withdraw)?;
    let key = key.checked()?;
    let request_id = Uuid::parse_str(&request_id).unwrap_or_default();
    let actor = actor_of(&caller);
    let payload = |_| DecideRequest {
        request_id,
        reason: body.reason,
        actor,
    };
    let handler = match withdraw {
        true => "withdraw_change_request",
        false => "decline_change_request",
    };
    let answer = Answer::Request(request_id);
    command(&state, id, handler, key, &json, payload, answer).await
}
