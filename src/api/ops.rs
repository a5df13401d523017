//! The operator API (`/api/v1/ops`): the stuck list, an order's timeline, retries
//! (one order or every order of a filter) and resolving a parked order by hand.

use super::auth::operators_only;
use super::body::{Rules, Valid};
use super::commands::{existing, read_back};
use super::error::Problem;
use super::idempotency::IdemKey;
use super::openapi::shapes::{
    BulkRetried, IdempotencyKey, Resolved, ResolvedChange, Retried, RetriedChange, StuckQuery,
};
use super::params::{OrderId, QueryParams};
use super::{ApiError, ApiState};
use crate::auth::Caller;
use crate::domain::{FieldError, Money, MoneyInput, Refusal};
use crate::engine::ingress::IngressError;
use crate::operators::{StuckFilter, StuckList, Timeline};
use crate::read_model::outbox;
use crate::workflows::{CommandOutcome, OperatorOutcome, OperatorRequest, ORDER_OBJECT};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use utoipa::ToSchema;
use uuid::Uuid;

/// The operator routes, for operators only.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/ops/orders/stuck", get(stuck))
        .route("/ops/orders/retry", post(retry_all))
        .route("/ops/orders/{id}/timeline", get(timeline))
        .route("/ops/orders/{id}/retry", post(retry))
        .route("/ops/orders/{id}/resolve", post(resolve))
        .route(
            "/ops/orders/{id}/changes/{change_id}/retry",
            post(retry_change),
        )
        .route(
            "/ops/orders/{id}/changes/{change_id}/resolve",
            post(resolve_change),
        )
        .route_layer(axum::middleware::from_fn(operators_only))
}

#[utoipa::path(
    get,
    path = "/api/v1/ops/orders/stuck",
    tag = "operators",
    params(StuckQuery),
    responses(
        (status = 200, description = "Orders whose saga invocation backs off or is paused, orders parked after a refused step, orders with an event or notification that cannot be delivered (the receiving service's answer as `last_error`), and orders resting in a transitional state too long; oldest first, with counts by step and error.", body = StuckList),
        (status = 403, description = "`forbidden`: the operator API is for operators.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: a filter that does not parse.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the order engine or its admin API cannot be reached now.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /ops/orders/stuck?older_than=&step=&error=`.
async fn stuck(
    State(state): State<ApiState>,
    QueryParams(params): QueryParams,
) -> Result<Json<StuckList>, ApiError> {
    let filter = stuck_filter(&params)?;
    let list = state.operators().stuck(&filter).await.map_err(engine)?;
    Ok(Json(list))
}

#[utoipa::path(
    get,
    path = "/api/v1/ops/orders/{id}/timeline",
    tag = "operators",
    params(("id" = Uuid, Path, description = "The order's id.")),
    responses(
        (status = 200, description = "The order's sagas and their steps, its pending timers and the invocations on its object.", body = Timeline),
        (status = 403, description = "`forbidden`: the operator API is for operators.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`: no such order, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the order engine or its admin API cannot be reached now.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /ops/orders/{id}/timeline`.
async fn timeline(
    State(state): State<ApiState>,
    OrderId(id): OrderId,
) -> Result<Json<Timeline>, ApiError> {
    let timeline = state.operators().timeline(id).await.map_err(engine)?;
    timeline.map(Json).ok_or(ApiError::OrderNotFound)
}

#[utoipa::path(
    post,
    path = "/api/v1/ops/orders/{id}/retry",
    tag = "operators",
    params(("id" = Uuid, Path, description = "The order's id."), IdempotencyKey),
    responses(
        (status = 202, description = "What was retried: the invocations resumed, or the one that runs the owed compensations again.", body = Retried),
        (status = 403, description = "`forbidden`: the operator API is for operators.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`: no such order, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`nothing_to_retry`: nothing of the order is stuck, or its refused step is not a compensation (resolve it by hand); `still_running`: the retry is still under way.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: an `Idempotency-Key` that is not 1 to 255 visible ASCII characters.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the order engine or its admin API cannot be reached now.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /ops/orders/{id}/retry`: resumes now what backs off or is paused, else
/// sends again the messages the bus refused for good and runs again the
/// compensations a parked order owes; `409 nothing_to_retry`
/// otherwise. Steps that went through are never repeated: a resumed invocation
/// replays them from its journal, and a retried compensation keeps its key.
async fn retry(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    key: IdemKey,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    existing(&state, &caller, id).await?;
    let answer = retry_order(&state, id, key.checked()?).await??;
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

#[utoipa::path(
    post,
    path = "/api/v1/ops/orders/retry",
    tag = "operators",
    params(StuckQuery),
    responses(
        (status = 202, description = "Every order of the stuck list the filter selects, retried or skipped with the refusal's code.", body = BulkRetried),
        (status = 403, description = "`forbidden`: the operator API is for operators.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: a filter that does not parse.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the order engine or its admin API cannot be reached now.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /ops/orders/retry?step=&error=&older_than=`: retries every order of the
/// stuck list that the filter selects.
async fn retry_all(
    State(state): State<ApiState>,
    QueryParams(params): QueryParams,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let filter = stuck_filter(&params)?;
    let list = state.operators().stuck(&filter).await.map_err(engine)?;
    let (mut retried, mut skipped) = (Vec::new(), Vec::new());
    for order in list.orders {
        match retry_order(&state, order.order_id, None).await? {
            Ok(answer) => retried.push(answer),
            Err(refusal) => {
                let body = refusal.body();
                skipped.push(json!({
                    "order_id": order.order_id,
                    "code": body["code"],
                    "detail": body["detail"],
                }));
            }
        }
    }
    let answer = json!({ "retried": retried, "skipped": skipped });
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

/// The body of `POST /ops/orders/{id}/resolve`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ResolveRequest)]
struct ResolveBody {
    /// How the operator settled what the order owed.
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    reason: String,
    /// A refund the operator made by other means, at most what the order owes:
    /// counted in `refunded_amount` and on the order's record. Without it nothing
    /// is counted.
    #[serde(default)]
    #[schema(value_type = Option<MoneyInput>)]
    refunded_outside: Option<Money>,
}

/// The reason is what the operator did: it must say something.
impl Rules for ResolveBody {
    fn rules(&self) -> Vec<FieldError> {
        let blank = self.reason.trim().is_empty();
        match !blank && self.reason.chars().count() <= 500 {
            true => vec![],
            false => vec![FieldError::new("reason", "must be 1 to 500 characters")],
        }
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/ops/orders/{id}/resolve",
    tag = "operators",
    params(("id" = Uuid, Path, description = "The order's id."), IdempotencyKey),
    request_body = ResolveBody,
    responses(
        (status = 200, description = "The order settled by hand: off the stuck list, the reason in its edit history; `refunded_outside` counted as refunded; each return whose refund was owed closed (`refunded` with `refunded_outside`, else `rejected`).", body = Resolved),
        (status = 403, description = "`forbidden`: the operator API is for operators.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`: no such order, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`nothing_to_resolve`: the order does not wait for an operator; `still_running`: the resolution is still under way.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: `reason` must be 1 to 500 characters; `refunded_outside` must be an amount of at most the refunds the order owes.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the order engine or its admin API cannot be reached now.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /ops/orders/{id}/resolve` `{"reason", "refunded_outside"?}`: an operator
/// settled by hand what the order owed; it leaves the stuck list, with the reason
/// in its edit history and a refund made by other means counted. Messages the bus
/// refused for good are dropped with the reason (kept in the outbox, never sent).
async fn resolve(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    key: IdemKey,
    Valid { body, .. }: Valid<ResolveBody>,
) -> Result<Json<Value>, ApiError> {
    existing(&state, &caller, id).await?;
    let key = key.checked()?;
    let request = OperatorRequest {
        reason: Some(body.reason.trim().to_owned()),
        refunded_outside: body.refunded_outside,
    };
    // Messages the bus refused for good are dropped, kept with the reason.
    let dropped = outbox::drop_refused(&state.db, id, body.reason.trim())
        .await
        .map_err(ApiError::from)?;
    let outcome = call(&state, id, "resolve", &request, key).await?;
    let invocation_id = match settled(outcome) {
        Ok(invocation_id) => Some(invocation_id),
        Err(Refusal::NothingToResolve { .. }) if dropped > 0 => None,
        Err(refusal) => return Err(refusal.into()),
    };
    let order = read_back(&state, id).await?;
    Ok(Json(json!({
        "order_id": id, "resolved_by": invocation_id, "dropped_messages": dropped, "order": order
    })))
}

/// Change `change_id` of order `id` and its status, if it waits for an operator.
async fn attended_change(
    state: &ApiState,
    id: Uuid,
    change_id: &str,
    nothing: Refusal,
) -> Result<Uuid, ApiError> {
    let change = super::changes::change_of(state, id, change_id).await?;
    let stuck = ["needs_attention", "applying", "awaiting_payment"];
    match change["status"].as_str() {
        Some(status) if stuck.contains(&status) => {
            Ok(change_id.parse().map_err(|_| Refusal::ChangeNotFound)?)
        }
        _ => Err(nothing.into()),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/ops/orders/{id}/changes/{change_id}/retry",
    tag = "operators",
    params(("id" = Uuid, Path, description = "The order's id."), ("change_id" = Uuid, Path, description = "The change's id."), IdempotencyKey),
    responses(
        (status = 202, description = "What was retried for the change: its invocation resumed, or the refused compensation run again under a key of its own; once the order waits for nobody, the change takes the state its saga was heading for.", body = RetriedChange),
        (status = 403, description = "`forbidden`: the operator API is for operators.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`, or `change_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`nothing_to_retry`: the change does not wait for an operator; `still_running`: the retry is still under way.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: an `Idempotency-Key` that is not 1 to 255 visible ASCII characters.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the order engine or its admin API cannot be reached now.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /ops/orders/{id}/changes/{change_id}/retry`: the order's retry, for one
/// of its changes.
async fn retry_change(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    Path((_, change_id)): Path<(String, String)>,
    key: IdemKey,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    existing(&state, &caller, id).await?;
    let message = "the change does not wait for an operator".to_owned();
    let change_id =
        attended_change(&state, id, &change_id, Refusal::NothingToRetry { message }).await?;
    let mut answer = retry_order(&state, id, key.checked()?).await??;
    answer["change_id"] = json!(change_id);
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

#[utoipa::path(
    post,
    path = "/api/v1/ops/orders/{id}/changes/{change_id}/resolve",
    tag = "operators",
    params(("id" = Uuid, Path, description = "The order's id."), ("change_id" = Uuid, Path, description = "The change's id."), IdempotencyKey),
    request_body = ResolveBody,
    responses(
        (status = 200, description = "The change settled outside the service: it takes the state its saga was heading for (`applied` past the point of no return, else `rolled_back`, `cancelled` or `expired`), its `attention` gone; a refund it owed is dropped, and the order's edit history records the operator and the reason.", body = ResolvedChange),
        (status = 403, description = "`forbidden`: the operator API is for operators.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`, or `change_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`nothing_to_resolve`: the change does not wait for an operator; `still_running`: the resolution is still under way.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: `reason` must be 1 to 500 characters.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the order engine or its admin API cannot be reached now.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /ops/orders/{id}/changes/{change_id}/resolve` `{"reason"}`: the order's
/// resolve, for one of its changes.
async fn resolve_change(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    Path((_, change_id)): Path<(String, String)>,
    key: IdemKey,
    Valid { body, .. }: Valid<ResolveBody>,
) -> Result<Json<Value>, ApiError> {
    existing(&state, &caller, id).await?;
    let message = "the change does not wait for an operator".to_owned();
    let nothing = Refusal::NothingToResolve { message };
    let change_id = attended_change(&state, id, &change_id, nothing).await?;
    let key = key.checked()?;
    let request = OperatorRequest {
        reason: Some(body.reason.trim().to_owned()),
        refunded_outside: body.refunded_outside,
    };
    let invocation_id = settled(call(&state, id, "resolve", &request, key).await?)?;
    let order = read_back(&state, id).await?;
    let change = crate::read_model::get_change(&state.db, id, change_id).await?;
    Ok(Json(json!({
        "order_id": id, "change_id": change_id, "resolved_by": invocation_id,
        "dropped_messages": 0, "order": order, "change": change
    })))
}

/// Retries what is stuck of order `id`: `Ok` with what was retried, or the
/// refusal to answer with.
async fn retry_order(
    state: &ApiState,
    id: Uuid,
    key: Option<String>,
) -> Result<Result<Value, ApiError>, ApiError> {
    let resumed = state.operators().resume_stalled(id).await.map_err(engine)?;
    if !resumed.is_empty() {
        return Ok(Ok(json!({ "order_id": id, "retried": resumed })));
    }
    // Messages the bus refused for good go out again (and stay listed until sent).
    let requeued = outbox::requeue_refused(&state.db, id)
        .await
        .map_err(ApiError::from)?;
    let request = OperatorRequest {
        reason: None,
        refunded_outside: None,
    };
    let outcome = call(state, id, "retry", &request, key).await?;
    Ok(match settled(outcome) {
        Ok(invocation_id) => Ok(json!({
            "order_id": id, "retried": [invocation_id], "requeued_messages": requeued
        })),
        Err(Refusal::NothingToRetry { .. }) if requeued > 0 => Ok(json!({
            "order_id": id, "retried": [], "requeued_messages": requeued
        })),
        Err(refusal) => Err(refusal.into()),
    })
}

/// Calls the operator handler `handler` of the order's object and waits for it.
async fn call(
    state: &ApiState,
    id: Uuid,
    handler: &str,
    request: &OperatorRequest,
    key: Option<String>,
) -> Result<OperatorOutcome, ApiError> {
    let key = key.unwrap_or_else(|| Uuid::new_v4().to_string());
    let outcome = state
        .ingress
        .submit::<_, OperatorOutcome>(
            ORDER_OBJECT,
            &id.to_string(),
            handler,
            request,
            &format!("ops_{handler}:{id}:{key}"),
            state.settings.create_wait,
        )
        .await;
    outcome.map_err(|e| match e {
        IngressError::StillRunning(_) => ApiError::StillRunning(format!(
            "the order's {handler} is still under way; look at its timeline"
        )),
        other => ApiError::Unavailable(format!("the order engine did not run it: {other}")),
    })
}

/// The invocation of a command that went through, or its refusal.
fn settled(outcome: OperatorOutcome) -> Result<String, Refusal> {
    match outcome.outcome {
        CommandOutcome::Done(_) => Ok(outcome.invocation_id),
        CommandOutcome::Refused(refusal) => Err(refusal),
    }
}

/// The stuck list's filter from the query: `older_than` as `300`, `300s`, `5m`,
/// `2h` or `1d`; `step` and `error` as given (`error` matches any part, any case).
fn stuck_filter(params: &HashMap<String, String>) -> Result<StuckFilter, ApiError> {
    let mut errors = Vec::new();
    let older_than = params
        .get("older_than")
        .map(|v| v.trim())
        .filter(|v| !v.is_empty());
    let older_than = older_than.and_then(|v| match parse_age(v) {
        Some(age) => Some(age),
        None => {
            errors.push(FieldError::new(
                "older_than",
                "must be a duration such as 300s, 5m, 2h or 1d",
            ));
            None
        }
    });
    let mut text = |name: &str| {
        let given = params.get(name);
        if given.is_some_and(|v| v.chars().count() > 200) {
            errors.push(FieldError::new(name, "must be at most 200 characters"));
        }
        let value = given.map(|v| v.trim()).filter(|v| !v.is_empty());
        value.map(str::to_owned)
    };
    let (step, error) = (text("step"), text("error"));
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok(StuckFilter {
        older_than,
        step,
        error,
    })
}

/// `300`, `300s`, `5m`, `2h`, `1d`: at most a year.
fn parse_age(text: &str) -> Option<Duration> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    (seconds <= 366 * 86_400).then(|| Duration::from_secs(seconds))
}

/// Restate's admin API failed: the operator view cannot be had now.
fn engine(e: anyhow::Error) -> ApiError {
    tracing::warn!(error = %e, "operator view unavailable");
    ApiError::Unavailable(format!("the order engine's admin API failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::parse_age;
    use std::time::Duration;

    #[test]
    fn ages_read_as_seconds_minutes_hours_and_days() {
        assert_eq!(parse_age("300"), Some(Duration::from_secs(300)));
        assert_eq!(parse_age("300s"), Some(Duration::from_secs(300)));
        assert_eq!(parse_age("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_age("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_age("1d"), Some(Duration::from_secs(86_400)));
        for bad in ["", "s", "-5s", "5x", "5 m", "400d", "99999999999999999999"] {
            assert_eq!(parse_age(bad), None, "{bad}");
        }
    }
}
