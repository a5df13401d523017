//! Cancelling an order before it ships: whole, or some of its units.

use super::body::{read_request, JsonBody};
use super::commands::{command, existing, reason_rules, Answer};
use super::idempotency::{self, Reply};
use super::params::OrderId;
use super::{ApiError, ApiState};
use crate::auth::Caller;
use crate::domain::{FieldError, ItemQuantity, MAX_ITEMS, MAX_QUANTITY};
use crate::workflows::ItemsRequest;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use uuid::Uuid;

/// The cancel routes.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/orders/{id}/cancel", post(cancel_order))
        .route("/orders/{id}/cancel-items", post(cancel_items))
}

/// The body of `POST /orders/{id}/cancel`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /orders/{id}/cancel`: cancels the whole order before it ships.
#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn cancel_order(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Reply, ApiError> {
    let (request, body) = read_request(body, |b: &CancelBody| reason_rules(&b.reason))?;
    let cancel = ItemsRequest {
        items: Vec::new(),
        reason: body.reason,
        request_key: idempotency::request_key(&headers)?,
    };
    existing(&state, &caller, id).await?;
    let key = cancel.request_key.clone();
    command(
        &state,
        id,
        "cancel",
        key,
        &request,
        |_| cancel,
        Answer::Order,
    )
    .await
}

/// The body of `POST /orders/{id}/cancel-items` and `.../refund-items`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ItemsBody {
    pub items: Vec<ItemQuantity>,
    #[serde(default)]
    pub reason: Option<String>,
}

impl ItemsBody {
    /// The shape of the request; which items the order has and how many units
    /// are left is for the order to say.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = reason_rules(&self.reason);
        let units = self.items.iter().map(|i| (i.item_id, i.quantity));
        errors.extend(units_rules(units));
        errors
    }
}

/// `POST /orders/{id}/cancel-items`: cancels some units before the order ships.
#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn cancel_items(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Reply, ApiError> {
    items_command(&state, &caller, id, &headers, body, "cancel_items").await
}

/// Runs `handler` on the units an [`ItemsBody`] names.
pub(super) async fn items_command(
    state: &ApiState,
    caller: &Caller,
    id: Uuid,
    headers: &HeaderMap,
    body: JsonBody,
    handler: &str,
) -> Result<Reply, ApiError> {
    let (request, body) = read_request(body, ItemsBody::validate)?;
    let units = ItemsRequest {
        items: body.items,
        reason: body.reason,
        request_key: idempotency::request_key(headers)?,
    };
    existing(state, caller, id).await?;
    let key = units.request_key.clone();
    command(state, id, handler, key, &request, |_| units, Answer::Order).await
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
