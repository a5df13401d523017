//! Returns of a delivered order and refunds without a return.

use super::auth::Staff;
use super::body::{read_request, JsonBody};
use super::cancel::{items_command, units_rules};
use super::commands::{command, existing, reason_rules, Answer};
use super::idempotency::{self, Reply};
use super::params::{OrderId, ReturnId};
use super::{ApiError, ApiState};
use crate::auth::Caller;
use crate::domain::{FieldError, ReturnItem};
use crate::read_model;
use crate::workflows::{ReturnCommand, ReturnRequest};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

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
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReturnBody {
    items: Vec<ReturnItem>,
    #[serde(default)]
    reason: Option<String>,
}

impl ReturnBody {
    fn validate(&self) -> Vec<FieldError> {
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

/// `POST /orders/{id}/returns`: answers `201` with the return, `requested`.
#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn request_return(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Reply, ApiError> {
    let (request, body) = read_request(body, ReturnBody::validate)?;
    let request_key = idempotency::request_key(&headers)?;
    existing(&state, &caller, id).await?;
    let key = request_key.clone();
    let payload = |return_id| ReturnRequest {
        return_id,
        items: body.items,
        reason: body.reason,
        request_key,
    };
    let handler = "request_return";
    command(
        &state,
        id,
        handler,
        key,
        &request,
        payload,
        Answer::NewReturn,
    )
    .await
}

/// The body of `.../receive` and `.../reject`; receiving needs none.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReturnCommandBody {
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /orders/{id}/returns/{return_id}/receive`: the parcel arrived.
#[tracing::instrument(skip_all, fields(order.id = %id, return.id = %return_id))]
async fn receive_return(
    _: Staff,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    ReturnId(return_id): ReturnId,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Reply, ApiError> {
    // A receipt carries nothing; a body, when sent, must still be a valid one.
    let body = match bytes.is_empty() {
        true => JsonBody(json!({})),
        false => JsonBody::from_bytes(&headers, &bytes)?,
    };
    return_command(state, id, return_id, headers, body, "receive_return").await
}

/// `POST /orders/{id}/returns/{return_id}/reject`: the return is refused.
#[tracing::instrument(skip_all, fields(order.id = %id, return.id = %return_id))]
async fn reject_return(
    _: Staff,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    ReturnId(return_id): ReturnId,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Reply, ApiError> {
    return_command(state, id, return_id, headers, body, "reject_return").await
}

async fn return_command(
    state: ApiState,
    id: uuid::Uuid,
    return_id: uuid::Uuid,
    headers: HeaderMap,
    body: JsonBody,
    handler: &str,
) -> Result<Reply, ApiError> {
    let (request, body) = read_request(body, |b: &ReturnCommandBody| reason_rules(&b.reason))?;
    let change = ReturnCommand {
        return_id,
        reason: body.reason,
        request_key: idempotency::request_key(&headers)?,
    };
    if read_model::get_return(&state.db, id, return_id)
        .await?
        .is_none()
    {
        return Err(ApiError::ReturnNotFound);
    }
    let key = change.request_key.clone();
    // The key's scope is the order; the return is part of the request.
    let request = json!({ "return_id": return_id, "body": request });
    command(
        &state,
        id,
        handler,
        key,
        &request,
        |_| change,
        Answer::Order,
    )
    .await
}

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

/// `POST /orders/{id}/refund-items`: refunds units of a shipped or delivered order
/// without a return.
#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn refund_items(
    Staff(caller): Staff,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Reply, ApiError> {
    items_command(&state, &caller, id, &headers, body, "refund_items").await
}
