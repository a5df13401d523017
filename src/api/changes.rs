//! Changes after checkout (api-changes.md §1, §2): binding change quotes and
//! changes applied with `If-Match`.

use super::body::{from_value, JsonBody, Rules, Valid};
use super::commands::{command, existing, reason_rules, Answer, ReasonBody};
use super::error::Problem;
use super::idempotency::{IdemKey, Reply};
use super::openapi::shapes::{ChangeList, IdempotencyKey, IfMatch, QuoteList};
use super::params::{OrderId, QueryParams};
use super::{ApiError, ApiState};
use crate::auth::Caller;
use crate::domain::{
    Actor, ChangeView, Delta, FieldError, Ledger, NewPayment, Operation, QuoteView, Refusal,
    MAX_OPERATIONS,
};
use crate::read_model;
use crate::workflows::{ApplyRequest, ChangeCommand, PayChangeRequest, QuoteCommand, QuoteRequest};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

/// The change routes.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route(
            "/orders/{id}/change-quotes",
            get(list_quotes).post(create_quote),
        )
        .route(
            "/orders/{id}/change-quotes/{quote_id}",
            get(get_quote).delete(release_quote),
        )
        .route("/orders/{id}/changes", get(list_changes).post(apply_change))
        .route("/orders/{id}/changes/{change_id}", get(get_change))
        .route(
            "/orders/{id}/changes/{change_id}/payments",
            post(pay_change),
        )
        .route(
            "/orders/{id}/changes/{change_id}/cancel",
            post(cancel_change),
        )
        .route("/orders/{id}/ledger", get(get_ledger))
}

/// `payment` of a quote or a change: the method that pays a positive difference.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ChangePayment)]
pub(super) struct PaymentBody {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub(super) method: String,
}

pub(super) fn payment_rules(payment: &Option<PaymentBody>, errors: &mut Vec<FieldError>) {
    if let Some(p) = payment {
        let fields = p.rules().into_iter();
        errors.extend(fields.map(|e| FieldError::new("payment.method", e.message)));
    }
}

/// As the body of a payment (`POST .../exchanges/{exchange_id}/payments`).
impl Rules for PaymentBody {
    fn rules(&self) -> Vec<FieldError> {
        match self.method.trim().is_empty() || self.method.chars().count() > 100 {
            true => vec![FieldError::new(
                "method",
                "must be a non-empty string of at most 100 characters",
            )],
            false => vec![],
        }
    }
}

pub(super) fn operations_rules(operations: &[Operation], errors: &mut Vec<FieldError>) {
    if operations.is_empty() || operations.len() > MAX_OPERATIONS {
        let message = format!("must hold 1 to {MAX_OPERATIONS} operations");
        errors.push(FieldError::new("operations", message));
    }
}

/// The body of `POST /orders/{id}/change-quotes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ChangeQuoteRequest)]
struct QuoteBody {
    /// Applied in order; an `item_id` appears in at most one of them.
    #[schema(min_items = 1, max_items = 50)]
    operations: Vec<Operation>,
    /// Holds the added units under a reservation of the quote's own (default).
    #[serde(default = "yes")]
    hold_stock: bool,
    #[serde(default = "default_ttl")]
    #[schema(minimum = 1, maximum = 3600, default = 900)]
    ttl_seconds: i64,
    #[serde(default)]
    #[schema(
        max_length = 500,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    reason: Option<String>,
    #[serde(default)]
    payment: Option<PaymentBody>,
}

fn yes() -> bool {
    true
}

fn default_ttl() -> i64 {
    900
}

impl Rules for QuoteBody {
    fn rules(&self) -> Vec<FieldError> {
        let mut errors = reason_rules(&self.reason);
        operations_rules(&self.operations, &mut errors);
        if !(1..=3600).contains(&self.ttl_seconds) {
            errors.push(FieldError::new("ttl_seconds", "must be from 1 to 3600"));
        }
        payment_rules(&self.payment, &mut errors);
        errors
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/change-quotes",
    tag = "changes",
    params(("id" = Uuid, Path, description = "The order's id."), IdempotencyKey),
    request_body = QuoteBody,
    responses(
        (status = 201, description = "The quote, `open`: binding (its stock held, its settlement pinned) until `expires_at` or until the order's version moves.", body = QuoteView, headers(("Location" = String, description = "The quote's URL."))),
        (status = 202, description = "The hold has not rested within a few seconds: the quote as it stands.", body = QuoteView),
        (status = 403, description = "`forbidden`: for staff, services and operators; a customer's own order stays readable.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`: no such order, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`not_editable` (only a `confirmed` or `processing` order with no `attention`), `change_in_progress` (with `change_id`), or `insufficient_stock` (with `sku`; nothing held).", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` naming the field (e.g. `operations[0].item_id`), `quantity_exceeded`, or `idempotency_key_reused`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the order engine did not accept the request; retry with the same `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /orders/{id}/change-quotes`: `201` with the quote, binding until its
/// `expires_at`.
#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn create_quote(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    key: IdemKey,
    body: JsonBody,
) -> Result<Reply, ApiError> {
    existing(&state, &caller, id).await?;
    staff_only(&caller)?;
    let key = key.checked()?;
    let Valid { body, json } = Valid::<QuoteBody>::check(body)?;
    let payload = |quote_id| QuoteRequest {
        quote_id,
        operations: body.operations,
        hold_stock: body.hold_stock,
        ttl_seconds: body.ttl_seconds as u32,
        reason: body.reason,
        method: body.payment.map(|p| p.method),
    };
    command(
        &state,
        id,
        "quote_change",
        key,
        &json,
        payload,
        Answer::NewQuote,
    )
    .await
}

#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}/change-quotes",
    tag = "changes",
    params(("id" = Uuid, Path, description = "The order's id.")),
    responses(
        (status = 200, description = "The order's quotes, oldest first.", body = QuoteList),
        (status = 404, description = "`order_not_found`: no such order, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /orders/{id}/change-quotes`: the order's quotes, oldest first.
async fn list_quotes(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
) -> Result<Json<Value>, ApiError> {
    existing(&state, &caller, id).await?;
    let quotes = read_model::list_quotes(&state.db, id).await?;
    Ok(Json(json!({ "quotes": quotes })))
}

#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}/change-quotes/{quote_id}",
    tag = "changes",
    params(("id" = Uuid, Path, description = "The order's id."), ("quote_id" = Uuid, Path, description = "The quote's id.")),
    responses(
        (status = 200, description = "The quote.", body = QuoteView),
        (status = 404, description = "`order_not_found`, or `quote_not_found`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /orders/{id}/change-quotes/{quote_id}`.
async fn get_quote(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    Path((_, quote_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    existing(&state, &caller, id).await?;
    Ok(Json(quote_of(&state, id, &quote_id).await?))
}

async fn quote_of(state: &ApiState, id: Uuid, quote_id: &str) -> Result<Value, ApiError> {
    let quote_id: Uuid = quote_id.parse().map_err(|_| Refusal::QuoteNotFound)?;
    let quote = read_model::get_quote(&state.db, id, quote_id).await?;
    quote.ok_or_else(|| Refusal::QuoteNotFound.into())
}

#[utoipa::path(
    delete,
    path = "/api/v1/orders/{id}/change-quotes/{quote_id}",
    tag = "changes",
    params(("id" = Uuid, Path, description = "The order's id."), ("quote_id" = Uuid, Path, description = "The quote's id."), IdempotencyKey),
    responses(
        (status = 204, description = "Released, with its hold (one call); a quote already `released`, `expired` or `refused` answers the same and calls nothing."),
        (status = 403, description = "`forbidden`: for staff, services and operators; a customer's own order stays readable.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`, or `quote_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_transition`: the quote was used by a change.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency_key_reused`, or `validation_failed` (the `Idempotency-Key`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the order engine did not accept the request; retry with the same `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `DELETE /orders/{id}/change-quotes/{quote_id}`: releases the quote and its hold
/// (`204`).
#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn release_quote(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    Path((_, quote_id)): Path<(String, String)>,
    key: IdemKey,
) -> Result<Reply, ApiError> {
    existing(&state, &caller, id).await?;
    staff_only(&caller)?;
    let quote = quote_of(&state, id, &quote_id).await?;
    let quote_id: Uuid = quote["quote_id"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(|_| Refusal::QuoteNotFound)?;
    let key = key.checked()?;
    let request = json!({ "quote_id": quote_id });
    let payload = |_| QuoteCommand { quote_id };
    command(
        &state,
        id,
        "release_quote",
        key,
        &request,
        payload,
        Answer::Deleted,
    )
    .await
}

/// The body of `POST /orders/{id}/changes`: exactly one of `quote_id` and
/// `operations` (priced and applied at once).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ChangeRequestBody)]
struct ApplyBody {
    #[serde(default)]
    quote_id: Option<Uuid>,
    #[serde(default)]
    #[schema(min_items = 1, max_items = 50)]
    operations: Option<Vec<Operation>>,
    /// The difference the caller expects; another is `422 amount_mismatch`.
    #[serde(default)]
    expected_delta: Option<Delta>,
    #[serde(default)]
    payment: Option<PaymentBody>,
    /// `order_method` (default): the difference is charged at once; `await_customer`:
    /// the change waits for the customer to pay it.
    #[serde(default)]
    #[schema(value_type = Option<Collect>)]
    collect: Option<String>,
    /// `revert` (default) or `keep_owed`.
    #[serde(default)]
    #[schema(value_type = Option<OnUnpaid>)]
    on_unpaid: Option<String>,
    /// How long an unpaid difference may wait: `0` (the default with
    /// `order_method`: a declined charge rolls the change back) to 604800; with
    /// `await_customer` 86400 by default, and `0` is refused.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 604800)]
    payment_deadline_seconds: Option<i64>,
    /// Sends `order_changed` (default true).
    #[serde(default)]
    notify_customer: Option<bool>,
    #[serde(default)]
    #[schema(
        max_length = 500,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    reason: Option<String>,
}

impl Rules for ApplyBody {
    fn rules(&self) -> Vec<FieldError> {
        let mut errors = reason_rules(&self.reason);
        match (&self.quote_id, &self.operations) {
            (Some(_), None) => {}
            (None, Some(ops)) => operations_rules(ops, &mut errors),
            _ => errors.push(FieldError::new(
                "quote_id",
                "give exactly one of quote_id and operations",
            )),
        }
        collecting_rules(
            (&self.payment, &self.collect, &self.on_unpaid),
            self.payment_deadline_seconds,
            &mut errors,
        );
        errors
    }
}

/// The rules of how a change collects its difference (`payment`, `collect`,
/// `on_unpaid`, `payment_deadline_seconds`), shared by an apply and the accept of
/// a change request.
pub(super) fn collecting_rules(
    (payment, collect, on_unpaid): (&Option<PaymentBody>, &Option<String>, &Option<String>),
    deadline: Option<i64>,
    errors: &mut Vec<FieldError>,
) {
    payment_rules(payment, errors);
    let awaits = match collect.as_deref() {
        None | Some("order_method") => false,
        Some("await_customer") => true,
        Some(_) => {
            let message = "must be order_method or await_customer";
            errors.push(FieldError::new("collect", message));
            false
        }
    };
    if !matches!(
        on_unpaid.as_deref(),
        None | Some("revert") | Some("keep_owed")
    ) {
        errors.push(FieldError::new("on_unpaid", "must be revert or keep_owed"));
    }
    match deadline {
        Some(0) if awaits => errors.push(FieldError::new(
            "payment_deadline_seconds",
            "must be from 1 to 604800 with await_customer: the customer needs time to pay",
        )),
        None | Some(0..=604_800) => {}
        Some(_) => errors.push(FieldError::new(
            "payment_deadline_seconds",
            "must be from 0 to 604800",
        )),
    }
}

/// The deadline of an unpaid difference, defaults applied: a day when the
/// customer pays, none when the order's method is charged.
pub(super) fn deadline_of(collect: &Option<String>, deadline: Option<i64>) -> u32 {
    let default = match collect.as_deref() {
        Some("await_customer") => 86_400,
        _ => 0,
    };
    deadline.unwrap_or(default) as u32
}

/// How a positive difference is collected: charged to the order's method at
/// once, or paid by the customer (`POST .../changes/{change_id}/payments`).
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub(super) enum Collect {
    OrderMethod,
    AwaitCustomer,
}

/// What an unpaid difference does at its deadline.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub(super) enum OnUnpaid {
    Revert,
    KeepOwed,
}

/// The version `If-Match` names: `"7"` or `7`.
pub(super) fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get("if-match") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    let bare = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    match bare.parse::<i64>() {
        Ok(version) if version >= 1 && !bare.starts_with('+') => Ok(Some(version)),
        _ => Err(ApiError::Validation(vec![FieldError::new(
            "If-Match",
            "must name one order version, e.g. \"7\"",
        )])),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/changes",
    tag = "changes",
    params(("id" = Uuid, Path, description = "The order's id."), IdempotencyKey, IfMatch),
    request_body = ApplyBody,
    responses(
        (status = 201, description = "The change once it rests: `applied`, `rolled_back` (with `failure`: a refused step is not an error) or `needs_attention`.", body = ChangeView, headers(("Location" = String, description = "The change's URL."))),
        (status = 202, description = "The change has not rested within a few seconds and goes on: the change as it stands.", body = ChangeView, headers(("Location" = String, description = "The change's URL."))),
        (status = 403, description = "`forbidden`: for staff, services and operators; a customer's own order stays readable.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`, or `quote_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`version_conflict` (with `current_version`), `quote_superseded` (with `quote_version` and `current_version`), `change_in_progress` (with `change_id`) or `not_editable`.", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`quote_expired`: the quote is `expired`, `released`, `refused` or `used`, or past its `expires_at`.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` (the body or an `If-Match` that is not one version), `quantity_exceeded`, `amount_mismatch` (with `delta`) or `idempotency_key_reused`.", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "`precondition_required`: no `If-Match`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the order engine did not accept the request; retry with the same `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /orders/{id}/changes`: applies a quote, or operations priced at once, as
/// the saga `apply_change`; `201` with the change once it rests.
#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn apply_change(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    key: IdemKey,
    headers: HeaderMap,
    JsonBody(raw): JsonBody,
) -> Result<Reply, ApiError> {
    // The checks in the order of the specification: 404, 428, 422.
    existing(&state, &caller, id).await?;
    staff_only(&caller)?;
    if let Some(quote_id) = raw.get("quote_id").and_then(Value::as_str) {
        if quote_id.parse::<Uuid>().is_ok() {
            quote_of(&state, id, quote_id).await?;
        }
    }
    if !headers.contains_key("if-match") {
        return Err(ApiError::PreconditionRequired);
    }
    let key = key.checked()?;
    let body: ApplyBody = from_value(raw.clone())?;
    let errors = body.rules();
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let version = if_match(&headers)?.ok_or(ApiError::PreconditionRequired)?;
    let (role, sub) = caller.actor();
    let request = json!({ "if_match": version, "body": raw });
    let deadline = deadline_of(&body.collect, body.payment_deadline_seconds);
    let payload = |change_id| ApplyRequest {
        change_id,
        if_match: version,
        quote_id: body.quote_id,
        operations: body.operations,
        expected_delta: body.expected_delta,
        method: body.payment.map(|p| p.method),
        collect: body.collect.unwrap_or_else(|| "order_method".into()),
        on_unpaid: body.on_unpaid.unwrap_or_else(|| "revert".into()),
        payment_deadline_seconds: deadline,
        notify_customer: body.notify_customer.unwrap_or(true),
        reason: body.reason,
        actor: Actor {
            role: role.into(),
            sub,
        },
        request_id: None,
    };
    command(
        &state,
        id,
        "apply_change",
        key,
        &request,
        payload,
        Answer::NewChange,
    )
    .await
}

/// The `status` filter of `GET /orders/{id}/changes`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct ChangeFilter {
    /// Only changes in this state.
    #[param(value_type = Option<crate::domain::ChangeStatus>)]
    status: Option<String>,
}

const CHANGE_STATUSES: [&str; 7] = [
    "applying",
    "awaiting_payment",
    "applied",
    "rolled_back",
    "expired",
    "cancelled",
    "needs_attention",
];

#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}/changes",
    tag = "changes",
    params(("id" = Uuid, Path, description = "The order's id."), ChangeFilter),
    responses(
        (status = 200, description = "The order's changes, oldest first.", body = ChangeList),
        (status = 404, description = "`order_not_found`: no such order, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: `status` is not a change state.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /orders/{id}/changes`: the order's changes, oldest first.
async fn list_changes(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    QueryParams(query): QueryParams,
) -> Result<Json<Value>, ApiError> {
    existing(&state, &caller, id).await?;
    // An empty `status` filters nothing.
    let status = query
        .get("status")
        .map(String::as_str)
        .filter(|s| !s.is_empty());
    if let Some(status) = status.filter(|s| !CHANGE_STATUSES.contains(s)) {
        let message = format!("{status:?} is not a change status");
        return Err(ApiError::Validation(vec![FieldError::new(
            "status", message,
        )]));
    }
    let changes = read_model::list_changes(&state.db, id, status).await?;
    Ok(Json(json!({ "changes": changes })))
}

#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}/changes/{change_id}",
    tag = "changes",
    params(("id" = Uuid, Path, description = "The order's id."), ("change_id" = Uuid, Path, description = "The change's id.")),
    responses(
        (status = 200, description = "The change.", body = ChangeView),
        (status = 404, description = "`order_not_found`, or `change_not_found`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /orders/{id}/changes/{change_id}`.
async fn get_change(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    Path((_, change_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    existing(&state, &caller, id).await?;
    let change_id: Uuid = change_id.parse().map_err(|_| Refusal::ChangeNotFound)?;
    let change = read_model::get_change(&state.db, id, change_id).await?;
    Ok(Json(change.ok_or(Refusal::ChangeNotFound)?))
}

/// The change `change_id` of order `id`, as the read model holds it.
pub(super) async fn change_of(
    state: &ApiState,
    id: Uuid,
    change_id: &str,
) -> Result<Value, ApiError> {
    let change_id: Uuid = change_id.parse().map_err(|_| Refusal::ChangeNotFound)?;
    let change = read_model::get_change(&state.db, id, change_id).await?;
    change.ok_or_else(|| Refusal::ChangeNotFound.into())
}

#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/changes/{change_id}/payments",
    tag = "changes",
    params(("id" = Uuid, Path, description = "The order's id."), ("change_id" = Uuid, Path, description = "The change's id."), IdempotencyKey),
    request_body = NewPayment,
    responses(
        (status = 200, description = "Paid: a waiting change charged `amount_due` and went on (`applied`, or `rolled_back` when its lapsed hold could not be taken again); on an `applied` change, the lesser of its `outstanding` and the order's `outstanding_amount` was charged.", body = ChangeView),
        (status = 202, description = "The change has not rested within a few seconds and goes on: the change as it stands.", body = ChangeView),
        (status = 402, description = "`payment_declined`: the change keeps waiting; pay again with a new `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`, or `change_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_transition`: the change owes nothing.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, `amount_mismatch` (`amount`, when given, is not what is due; with `delta`) or `idempotency_key_reused`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the order engine did not accept the request; retry with the same `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /orders/{id}/changes/{change_id}/payments`: pays what a change owes.
#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn pay_change(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    Path((_, change_id)): Path<(String, String)>,
    key: IdemKey,
    Valid {
        body: payment,
        json,
    }: Valid<NewPayment>,
) -> Result<Reply, ApiError> {
    existing(&state, &caller, id).await?;
    let change = change_of(&state, id, &change_id).await?;
    let change_id = uuid_of(&change);
    let key = key.checked()?;
    let payload = |bound: Uuid| PayChangeRequest {
        change_id,
        method: payment.method.trim().to_owned(),
        amount: payment.amount,
        payment_key: bound.to_string(),
    };
    let answer = Answer::Change(change_id);
    command(&state, id, "pay_change", key, &json, payload, answer).await
}

#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/changes/{change_id}/cancel",
    tag = "changes",
    params(("id" = Uuid, Path, description = "The order's id."), ("change_id" = Uuid, Path, description = "The change's id."), IdempotencyKey),
    request_body = ReasonBody,
    responses(
        (status = 200, description = "`cancelled`: an `applying` change stopped at its next step boundary, or an `awaiting_payment` one, and what it did was undone; a `cancelled` change answers the same again.", body = ChangeView),
        (status = 202, description = "The change has not rested within a few seconds: the change as it stands.", body = ChangeView),
        (status = 403, description = "`forbidden`: for staff, services and operators.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`, or `change_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`past_point_of_no_return` (with `change_id` and `status`): the fulfilment update was reached; `invalid_transition`: the change is `rolled_back` or `expired`.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` or `idempotency_key_reused`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the order engine did not accept the request; retry with the same `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /orders/{id}/changes/{change_id}/cancel`: cancels a change before its
/// point of no return. A running change is asked to stop first (its saga looks
/// at each step boundary); the order's object then answers once it rests.
#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn cancel_change(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
    Path((_, change_id)): Path<(String, String)>,
    key: IdemKey,
    Valid { body, json }: Valid<ReasonBody>,
) -> Result<Reply, ApiError> {
    existing(&state, &caller, id).await?;
    staff_only(&caller)?;
    let change = change_of(&state, id, &change_id).await?;
    let change_id = uuid_of(&change);
    let key = key.checked()?;
    read_model::ask_cancel(&state.db, id, change_id, body.reason.as_deref()).await?;
    let payload = |_| ChangeCommand {
        change_id,
        reason: body.reason,
    };
    let answer = Answer::Change(change_id);
    command(&state, id, "cancel_change", key, &json, payload, answer).await
}

fn uuid_of(change: &Value) -> Uuid {
    change["change_id"]
        .as_str()
        .and_then(|c| c.parse().ok())
        .unwrap_or_default()
}

/// Quotes and changes are the shop's to make: a customer is `403`, after the
/// order itself (another customer's order is `404`).
fn staff_only(caller: &Caller) -> Result<(), ApiError> {
    match caller.may_manage() {
        true => Ok(()),
        false => Err(ApiError::Forbidden(
            "changes are made by staff, services and operators; a customer asks with a change request",
        )),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}/ledger",
    tag = "changes",
    params(("id" = Uuid, Path, description = "The order's id.")),
    responses(
        (status = 200, description = "Every charge and refund of the order, each with the order version that counted it; `charged` is `captured_amount` and `refunded` is `refunded_amount`.", body = Ledger),
        (status = 404, description = "`order_not_found`: no such order, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /orders/{id}/ledger`: every charge and refund of the order.
async fn get_ledger(
    caller: Caller,
    State(state): State<ApiState>,
    OrderId(id): OrderId,
) -> Result<Json<Value>, ApiError> {
    existing(&state, &caller, id).await?;
    let kept = read_model::order_state(&state.db, id).await?;
    let order = kept.and_then(|(_, order)| order).ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!(
            "order {id} has no whole document to read its ledger from"
        ))
    })?;
    Ok(Json(json!(order.ledger())))
}
