//! Claims (api-changes.md §7): damaged, missing or wrong units, resolved by a
//! refund, a replacement, or both.

use super::auth::FOR_STAFF;
use super::body::{Rules, Valid};
use super::cancel::units_rules;
use super::commands::{command, existing, reason_rules, Answer, ReasonBody};
use super::error::Problem;
use super::idempotency::{IdemKey, Reply};
use super::openapi::shapes::{ClaimList, IdempotencyKey};
use super::params::OrderId;
use super::returns::Receipt;
use super::{ApiError, ApiState};
use crate::auth::Caller;
use crate::domain::{Claim, ClaimItem, FieldError, Refusal, Resolution};
use crate::read_model::{self, Kind};
use crate::workflows::{ClaimCommand, ClaimRequest};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

/// The claim routes.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/orders/{id}/claims", post(open_claim).get(list_claims))
        .route("/orders/{id}/claims/{claim_id}", get(get_claim))
        .route(
            "/orders/{id}/claims/{claim_id}/receive",
            post(receive_claim),
        )
        .route(
            "/orders/{id}/claims/{claim_id}/resolve",
            post(resolve_claim),
        )
        .route("/orders/{id}/claims/{claim_id}/reject", post(reject_claim))
}

/// The body of `POST /orders/{id}/claims`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ClaimRequest)]
struct ClaimBody {
    #[schema(min_items = 1, max_items = 200)]
    items: Vec<ClaimItem>,
    /// The customer sends the goods back first.
    #[serde(default)]
    require_return: bool,
    #[serde(default)]
    #[schema(
        max_length = 500,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    reason: Option<String>,
}

impl Rules for ClaimBody {
    fn rules(&self) -> Vec<FieldError> {
        let mut errors = reason_rules(&self.reason);
        errors.extend(units_rules(
            self.items.iter().map(|i| (i.item_id, i.quantity)),
        ));
        for (n, item) in self.items.iter().enumerate() {
            if item.note.as_ref().is_some_and(|r| r.chars().count() > 500) {
                let field = format!("items[{n}].note");
                errors.push(FieldError::new(field, "must be at most 500 characters"));
            }
        }
        errors
    }
}

/// The body of `POST .../claims/{claim_id}/resolve`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ClaimResolution)]
struct ResolveBody {
    resolution: Resolution,
    /// Where the replacement ships from; the claimed item's warehouse otherwise.
    #[serde(default)]
    warehouse_id: Option<Uuid>,
    #[serde(default)]
    #[schema(
        max_length = 500,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    reason: Option<String>,
}

impl Rules for ResolveBody {
    fn rules(&self) -> Vec<FieldError> {
        reason_rules(&self.reason)
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/claims",
    tag = "claims",
    params(("id" = Uuid, Path, description = "The order's id."), IdempotencyKey),
    request_body = ClaimBody,
    responses(
        (status = 201, description = "The claim, `open`: its units are held until it is resolved, rejected or expires.", body = Claim),
        (status = 202, description = "Not rested within a few seconds: the claim as it stands.", body = Claim),
        (status = 403, description = "`forbidden`: a customer opens only a claim with `require_return` false.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_transition`: only a `shipped` or `delivered` order takes a claim; `change_in_progress`.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`quantity_exceeded`, `return_window_closed`, `idempotency_key_reused`, or `validation_failed`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: retry with the same `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /orders/{id}/claims`: answers `201` with the claim, `open`.
#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn open_claim(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    key: IdemKey,
    Valid { body, json }: Valid<ClaimBody>,
) -> Result<Reply, ApiError> {
    existing(&state, &caller, id).await?;
    if body.require_return && !caller.may_manage() {
        return Err(ApiError::Forbidden(
            "a customer opens only a claim that needs no return",
        ));
    }
    let key = key.checked()?;
    let payload = |claim_id| ClaimRequest {
        claim_id,
        items: body.items,
        require_return: body.require_return,
        reason: body.reason,
    };
    let answer = Answer::NewOf(Kind::Claims);
    command(&state, id, "open_claim", key, &json, payload, answer).await
}

#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}/claims",
    tag = "claims",
    params(("id" = Uuid, Path, description = "The order's id.")),
    responses(
        (status = 200, description = "The order's claims, oldest first.", body = ClaimList),
        (status = 404, description = "`order_not_found`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /orders/{id}/claims`.
async fn list_claims(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
) -> Result<Json<Value>, ApiError> {
    existing(&state, &caller, id).await?;
    let claims: Option<Vec<Value>> = read_model::list(&state.db, Kind::Claims, id).await?;
    let claims = claims.ok_or(ApiError::OrderNotFound)?;
    Ok(Json(json!({ "claims": claims })))
}

#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}/claims/{claim_id}",
    tag = "claims",
    params(("id" = Uuid, Path, description = "The order's id."), ("claim_id" = Uuid, Path, description = "The claim's id.")),
    responses(
        (status = 200, description = "The claim.", body = Claim),
        (status = 404, description = "`order_not_found`, or `claim_not_found`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /orders/{id}/claims/{claim_id}`.
async fn get_claim(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    Path((_, claim_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    existing(&state, &caller, id).await?;
    Ok(Json(claim_of(&state, id, &claim_id).await?.1))
}

/// Claim `claim_id` of order `id`: its id and the document.
async fn claim_of(state: &ApiState, id: Uuid, claim_id: &str) -> Result<(Uuid, Value), ApiError> {
    let claim_id: Uuid = claim_id.parse().map_err(|_| Refusal::ClaimNotFound)?;
    let found: Option<Value> = read_model::get_one(&state.db, Kind::Claims, id, claim_id).await?;
    Ok((claim_id, found.ok_or(Refusal::ClaimNotFound)?))
}

#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/claims/{claim_id}/receive",
    tag = "claims",
    params(("id" = Uuid, Path, description = "The order's id."), ("claim_id" = Uuid, Path, description = "The claim's id."), IdempotencyKey),
    request_body(content = Option<ReasonBody>, description = "Optional: receiving needs no body; one that is sent must be valid."),
    responses(
        (status = 200, description = "The claim, `received`: its parcel arrived; nothing is restocked. A received claim answers the same again.", body = Claim),
        (status = 202, description = "Not rested within a few seconds: the claim as it stands.", body = Claim),
        (status = 403, description = "`forbidden`: for staff, services and operators.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`, or `claim_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_transition`: the claim needs no parcel, or is closed.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency_key_reused`, or `validation_failed`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: retry with the same `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /orders/{id}/claims/{claim_id}/receive`.
#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn receive_claim(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    Path((_, claim_id)): Path<(String, String)>,
    key: IdemKey,
    Receipt(Valid { body, json }): Receipt,
) -> Result<Reply, ApiError> {
    let claim_id = staff_on(&state, &caller, id, &claim_id).await?;
    let command_body = ClaimCommand {
        claim_id,
        resolution: None,
        warehouse_id: None,
        reason: body.reason,
    };
    run(&state, id, key, &json, command_body, "receive_claim").await
}

#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/claims/{claim_id}/resolve",
    tag = "claims",
    params(("id" = Uuid, Path, description = "The order's id."), ("claim_id" = Uuid, Path, description = "The claim's id."), IdempotencyKey),
    request_body = ResolveBody,
    responses(
        (status = 200, description = "The claim once `resolve_claim` rests, `resolved`: `refund` refunds the units' share; `replacement` ships the same product again and moves no money (`replaced_quantity`); `refund_and_replacement` does both, the replacement free. A resolved claim answers the same again.", body = Claim),
        (status = 202, description = "Not rested within a few seconds: the claim as it stands.", body = Claim),
        (status = 403, description = "`forbidden`: for staff, services and operators.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`, or `claim_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`insufficient_stock` (with `sku`): the claim stays as it was; `invalid_transition`: its parcel has not arrived, or it is closed.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency_key_reused`, or `validation_failed`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: retry with the same `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /orders/{id}/claims/{claim_id}/resolve`.
#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn resolve_claim(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    Path((_, claim_id)): Path<(String, String)>,
    key: IdemKey,
    Valid { body, json }: Valid<ResolveBody>,
) -> Result<Reply, ApiError> {
    let claim_id = staff_on(&state, &caller, id, &claim_id).await?;
    let command_body = ClaimCommand {
        claim_id,
        resolution: Some(body.resolution),
        warehouse_id: body.warehouse_id,
        reason: body.reason,
    };
    run(&state, id, key, &json, command_body, "resolve_claim").await
}

#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/claims/{claim_id}/reject",
    tag = "claims",
    params(("id" = Uuid, Path, description = "The order's id."), ("claim_id" = Uuid, Path, description = "The claim's id."), IdempotencyKey),
    request_body = ReasonBody,
    responses(
        (status = 200, description = "The claim, `rejected`: an `open` claim's units are free again; a `received` one's count as returned, with no refund. A rejected claim answers the same again.", body = Claim),
        (status = 202, description = "Not rested within a few seconds: the claim as it stands.", body = Claim),
        (status = 403, description = "`forbidden`: for staff, services and operators.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`, or `claim_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_transition`: the claim is closed.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency_key_reused`, or `validation_failed`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: retry with the same `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /orders/{id}/claims/{claim_id}/reject`.
#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn reject_claim(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    Path((_, claim_id)): Path<(String, String)>,
    key: IdemKey,
    Valid { body, json }: Valid<ReasonBody>,
) -> Result<Reply, ApiError> {
    let claim_id = staff_on(&state, &caller, id, &claim_id).await?;
    let command_body = ClaimCommand {
        claim_id,
        resolution: None,
        warehouse_id: None,
        reason: body.reason,
    };
    run(&state, id, key, &json, command_body, "reject_claim").await
}

/// The claim a staff call names: the order first (`404`), then the claim, then
/// the caller's roles (`403`).
async fn staff_on(
    state: &ApiState,
    caller: &Caller,
    id: Uuid,
    claim_id: &str,
) -> Result<Uuid, ApiError> {
    existing(state, caller, id).await?;
    let (claim_id, _) = claim_of(state, id, claim_id).await?;
    match caller.may_manage() {
        true => Ok(claim_id),
        false => Err(ApiError::Forbidden(FOR_STAFF)),
    }
}

/// Runs `handler` on a claim of order `id`, answering with the claim.
async fn run(
    state: &ApiState,
    id: Uuid,
    key: IdemKey,
    json: &Value,
    body: ClaimCommand,
    handler: &str,
) -> Result<Reply, ApiError> {
    let key = key.checked()?;
    let claim_id = body.claim_id;
    // The key's scope is the order; the claim is part of the request.
    let request = json!({ "claim_id": claim_id, "body": json });
    let answer = Answer::Of(Kind::Claims, claim_id);
    command(state, id, handler, key, &request, |_| body, answer).await
}
