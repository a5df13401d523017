//! Running a command on an order's object from the API: once per
//! `Idempotency-Key`, waiting a few seconds for its saga to rest, and answering
//! with the order, the refusal, or `202`.

use super::auth::visible;
use super::idempotency::{self, IdemKey, Reply};
use super::{ApiError, ApiState};
use crate::auth::Caller;
use crate::domain::{FieldError, OrderView, Refusal};
use crate::engine::ingress::IngressError;
use crate::read_model;
use crate::workflows::{CommandOutcome, ORDER_OBJECT};
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

/// A reason is free text of at most 500 characters.
pub(super) fn reason_rules(reason: &Option<String>) -> Vec<FieldError> {
    match reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        true => vec![FieldError::new("reason", "must be at most 500 characters")],
        false => vec![],
    }
}

/// A body that holds only an optional reason: cancelling an order or a change,
/// receiving or rejecting a return, withdrawing a change request.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ReasonRequest)]
pub(super) struct ReasonBody {
    #[serde(default)]
    #[schema(
        max_length = 500,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    pub(super) reason: Option<String>,
}

impl super::body::Rules for ReasonBody {
    fn rules(&self) -> Vec<FieldError> {
        reason_rules(&self.reason)
    }
}

/// The order, if it is in the read model and the caller may see it; `404`
/// otherwise. Every command asks this first, so that a refused request claims no
/// `Idempotency-Key` and runs nothing.
pub(super) async fn existing(
    state: &ApiState,
    caller: &Caller,
    id: Uuid,
) -> Result<OrderView, ApiError> {
    visible(caller, read_model::get_order(&state.db, id).await?)
}

/// What a command answers once it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    /// `200` with the order as it rests.
    Order,
    /// `201` with the return the command made (the id bound to the request).
    NewReturn,
    /// `201` with the change quote the command made.
    NewQuote,
    /// `201` with the change the command ran, whatever its outcome.
    NewChange,
    /// `204`, nothing to show.
    Deleted,
    /// `200` with change `0` as it rests (`202` with it as it stands).
    Change(Uuid),
    /// `201` with the change request the command made.
    NewRequest,
    /// `200` with change request `0` as it rests.
    Request(Uuid),
    /// `201` with the exchange or claim the command made.
    NewOf(read_model::Kind),
    /// `200` with exchange or claim `1` as it rests (`202` with it as it stands).
    Of(read_model::Kind, Uuid),
}

/// Runs `handler` of order `id` with `payload` once per `Idempotency-Key` and
/// answers with the order: the order must exist and `caller` must see it (`404`),
/// and the key must be usable (`422`), in that order.
pub(super) async fn order_command<Req: Serialize>(
    state: &ApiState,
    caller: &Caller,
    id: Uuid,
    key: IdemKey,
    handler: &str,
    request: &Value,
    payload: Req,
) -> Result<Reply, ApiError> {
    existing(state, caller, id).await?;
    let key = key.checked()?;
    command(state, id, handler, key, request, |_| payload, Answer::Order).await
}

/// Runs `handler` of the order's object once per `Idempotency-Key` and answers as
/// `answer` says, with the refusal, or `202` if it takes longer. `payload` builds
/// the handler's request from the id bound to the key (a fresh one the first time),
/// so that a repeat names what the first request made.
pub(super) async fn command<Req: Serialize>(
    state: &ApiState,
    id: Uuid,
    handler: &str,
    key: Option<String>,
    request: &Value,
    payload: impl FnOnce(Uuid) -> Req,
    answer: Answer,
) -> Result<Reply, ApiError> {
    let (scope, key) = (&format!("{handler}:{id}"), key.as_deref());
    idempotency::once(&state.db, scope, key, request, |bound| async move {
        // Without a caller's key, every request is a command of its own.
        let fresh = || Uuid::new_v4().to_string();
        let restate_key = format!("{scope}:{}", key.map_or_else(fresh, str::to_owned));
        let outcome = state
            .ingress
            .submit::<_, CommandOutcome>(
                ORDER_OBJECT,
                &id.to_string(),
                handler,
                &payload(bound),
                &restate_key,
                state.settings.create_wait,
            )
            .await;
        Ok(match outcome {
            Ok(CommandOutcome::Done(rested)) if answer == Answer::NewReturn => Reply {
                status: StatusCode::CREATED,
                produced: Some(rested.version),
                body: json!(read_model::get_return(&state.db, id, bound)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!(
                        "return {bound} was made but is not in the read model"
                    ))?),
            },
            Ok(CommandOutcome::Done(rested)) if answer == Answer::NewQuote => Reply {
                status: StatusCode::CREATED,
                produced: Some(rested.version),
                body: read_model::get_quote(&state.db, id, bound)
                    .await?
                    .ok_or_else(|| {
                        anyhow::anyhow!("quote {bound} was made but is not in the read model")
                    })?,
            },
            Ok(CommandOutcome::Done(rested)) if answer == Answer::NewChange => Reply {
                status: StatusCode::CREATED,
                produced: Some(rested.version),
                body: read_model::get_change(&state.db, id, bound)
                    .await?
                    .ok_or_else(|| {
                        anyhow::anyhow!("change {bound} rested but is not in the read model")
                    })?,
            },
            Ok(CommandOutcome::Done(rested)) if matches!(answer, Answer::Change(_)) => Reply {
                status: StatusCode::OK,
                produced: Some(rested.version),
                body: change_body(state, id, answer, bound).await?,
            },
            Ok(CommandOutcome::Done(rested))
                if matches!(answer, Answer::NewRequest | Answer::Request(_)) =>
            {
                let request_id = match answer {
                    Answer::Request(request_id) => request_id,
                    _ => bound,
                };
                Reply {
                    status: match answer {
                        Answer::NewRequest => StatusCode::CREATED,
                        _ => StatusCode::OK,
                    },
                    produced: Some(rested.version),
                    body: read_model::get_request(&state.db, id, request_id)
                        .await?
                        .ok_or_else(|| {
                            anyhow::anyhow!("change request {request_id} is not in the read model")
                        })?,
                }
            }
            Ok(CommandOutcome::Done(rested))
                if matches!(answer, Answer::NewOf(_) | Answer::Of(..)) =>
            {
                Reply {
                    status: match answer {
                        Answer::NewOf(_) => StatusCode::CREATED,
                        _ => StatusCode::OK,
                    },
                    produced: Some(rested.version),
                    body: resource_body(state, id, answer, bound).await?,
                }
            }
            Ok(CommandOutcome::Done(rested)) if answer == Answer::Deleted => Reply {
                status: StatusCode::NO_CONTENT,
                produced: Some(rested.version),
                body: Value::Null,
            },
            Ok(CommandOutcome::Done(rested)) => Reply {
                status: StatusCode::OK,
                body: json!(read_back(state, id).await?),
                produced: Some(rested.version),
            },
            Ok(CommandOutcome::Refused(refusal)) => ApiError::from(refusal).into(),
            Err(e) => {
                let mut reply = accepted_or_unavailable(state, id, e).await?;
                if reply.status == StatusCode::ACCEPTED {
                    reply.body = match answer {
                        Answer::NewChange | Answer::Change(_) => {
                            change_body(state, id, answer, bound).await?
                        }
                        Answer::NewOf(_) | Answer::Of(..) => {
                            resource_body(state, id, answer, bound).await?
                        }
                        Answer::NewQuote => read_model::get_quote(&state.db, id, bound)
                            .await?
                            .unwrap_or_else(
                                || json!({"quote_id": bound, "order_id": id, "status": "holding"}),
                            ),
                        _ => reply.body,
                    };
                }
                reply
            }
        })
    })
    .await
}

/// The change a command answers with: the one it names, or the one it made.
async fn change_body(
    state: &ApiState,
    id: Uuid,
    answer: Answer,
    bound: Uuid,
) -> Result<Value, ApiError> {
    let change_id = match answer {
        Answer::Change(change_id) => change_id,
        _ => bound,
    };
    let change = read_model::get_change(&state.db, id, change_id).await?;
    Ok(change
        .unwrap_or_else(|| json!({"change_id": change_id, "order_id": id, "status": "applying"})))
}

/// The exchange or claim a command answers with, as the read model holds it: the
/// one it names, or the one it made (`{"<kind>_id", "order_id"}` until written).
async fn resource_body(
    state: &ApiState,
    id: Uuid,
    answer: Answer,
    bound: Uuid,
) -> Result<Value, ApiError> {
    let (kind, of) = match answer {
        Answer::Of(kind, of) => (kind, of),
        Answer::NewOf(kind) => (kind, bound),
        _ => return Ok(Value::Null),
    };
    let found: Option<Value> = read_model::get_one(&state.db, kind, id, of).await?;
    Ok(found.unwrap_or_else(|| json!({ kind.id_field(): of, "order_id": id })))
}

/// The order from the read model, which the saga wrote before it rested.
pub(super) async fn read_back(state: &ApiState, id: Uuid) -> Result<OrderView, ApiError> {
    read_model::get_order(&state.db, id).await?.ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!(
            "order {id} rested but is not in the read model"
        ))
    })
}

/// The saga has not rested in time: `202` with the order as it stands (it goes on
/// inside Restate). A call Restate did not accept is `503`, safe to retry with the
/// same `Idempotency-Key`. A saga that already failed for good is `500`
/// `saga_failed`: never a `202` for a flow that will not go on.
pub(super) async fn accepted_or_unavailable(
    state: &ApiState,
    id: Uuid,
    error: IngressError,
) -> Result<Reply, ApiError> {
    match &error {
        IngressError::NotAccepted(reason) => {
            tracing::warn!(order.id = %id, reason, "restate did not accept the call");
            return Err(ApiError::Unavailable(
                "the order engine did not accept the request; retry with the same Idempotency-Key"
                    .into(),
            ));
        }
        IngressError::Failed { status, message } => {
            tracing::error!(order.id = %id, status, message, "order handler failed");
            let message = format!(
                "the order's saga failed: {message}. The order is listed for operators \
                 (GET /api/v1/ops/orders/stuck)"
            );
            return Ok(ApiError::from(Refusal::SagaFailed { message }).into());
        }
        IngressError::StillRunning(_) => {}
    }
    let current = match read_model::get_order(&state.db, id).await? {
        Some(order) => Some(order),
        None => state
            .ingress
            .read::<Option<OrderView>>(ORDER_OBJECT, &id.to_string(), "get", Duration::from_secs(1))
            .await
            .ok()
            .flatten(),
    };
    let body = match current {
        Some(order) => json!(order),
        None => json!({ "id": id, "status": "pending" }),
    };
    Ok(Reply {
        status: StatusCode::ACCEPTED,
        body,
        produced: None,
    })
}
