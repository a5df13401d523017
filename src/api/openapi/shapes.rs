//! The shapes of answers that their handlers build as JSON in place, and of the
//! query and header parameters that the handlers read by hand: described here for
//! the document, and checked against the real answers by the end-to-end tests.

use crate::domain::{ChangeRequestView, ChangeView, OrderStatus, OrderView, QuoteView, Return};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// What a create answers with `202` before the order is even in the read model.
#[derive(Serialize, ToSchema)]
pub struct PendingOrder {
    pub id: Uuid,
    pub status: PendingStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PendingStatus {
    Pending,
}

/// The `202` of a create: the order as it stands, or only its id while it is
/// not yet written.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum AcceptedOrder {
    Order(Box<OrderView>),
    Pending(PendingOrder),
}

/// `GET /orders/{id}/returns`.
#[derive(Serialize, ToSchema)]
pub struct ReturnList {
    /// Oldest first.
    pub returns: Vec<Return>,
}

/// `GET /orders/{id}/exchanges`.
#[derive(Serialize, ToSchema)]
pub struct ExchangeList {
    /// Oldest first.
    pub exchanges: Vec<crate::domain::Exchange>,
}

/// `GET /orders/{id}/claims`.
#[derive(Serialize, ToSchema)]
pub struct ClaimList {
    /// Oldest first.
    pub claims: Vec<crate::domain::Claim>,
}

/// What `POST /ops/orders/{id}/retry` did.
#[derive(Serialize, ToSchema)]
pub struct Retried {
    pub order_id: Uuid,
    /// The invocations resumed or started.
    pub retried: Vec<String>,
    /// Messages the receiving service had refused for good, sent again.
    pub requeued_messages: Option<u64>,
}

/// An order of the bulk retry that was not retried, and why.
#[derive(Serialize, ToSchema)]
pub struct Skipped {
    pub order_id: Uuid,
    /// The problem code of the refusal, e.g. `nothing_to_retry`.
    pub code: String,
    pub detail: String,
}

/// What `POST /ops/orders/retry` did.
#[derive(Serialize, ToSchema)]
pub struct BulkRetried {
    pub retried: Vec<Retried>,
    pub skipped: Vec<Skipped>,
}

/// What `POST /ops/orders/{id}/resolve` did.
#[derive(Serialize, ToSchema)]
pub struct Resolved {
    pub order_id: Uuid,
    /// The invocation that recorded the resolution; none when only refused
    /// messages were dropped.
    pub resolved_by: Option<String>,
    /// Messages the receiving service had refused for good, dropped with the reason.
    pub dropped_messages: u64,
    pub order: OrderView,
}

/// `GET /orders/health`.
#[derive(Serialize, ToSchema)]
pub struct Liveness {
    pub status: LiveStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LiveStatus {
    Ok,
}

/// `GET /orders/health/dependencies`.
#[derive(Serialize, ToSchema)]
pub struct DependencyReport {
    /// `ok` when every dependency is up.
    pub status: HealthStatus,
    /// By name: `postgres`, `restate` and each downstream service.
    pub dependencies: BTreeMap<String, Dependency>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
    Degraded,
}

#[derive(Serialize, ToSchema)]
pub struct Dependency {
    pub status: DependencyStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DependencyStatus {
    Up,
    Down,
}

/// The `Idempotency-Key` of a mutating call.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKey {
    /// 1 to 255 visible ASCII characters. The same key with the same body gets the
    /// first answer again (same status, same body); with another body it is
    /// `422 idempotency_key_reused`.
    #[param(
        rename = "Idempotency-Key",
        required = false,
        min_length = 1,
        max_length = 255
    )]
    pub key: String,
}

/// The filters and the page of `GET /orders`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    pub customer_id: Option<Uuid>,
    pub status: Option<OrderStatus>,
    /// Created at or after (RFC 3339).
    pub created_from: Option<DateTime<Utc>>,
    /// Created before (RFC 3339).
    pub created_to: Option<DateTime<Utc>>,
    /// Orders a page; 50 when not given.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(
        max_length = 200,
        pattern = r"^(30|3[1-9](3[0-9]){0,17})7c(3[0-9]|6[1-6]){8}2d(3[0-9]|6[1-6]){4}2d(3[0-9]|6[1-6]){4}2d(3[0-9]|6[1-6]){4}2d(3[0-9]|6[1-6]){12}$"
    )]
    pub cursor: Option<String>,
}

/// The window of `GET /orders/analytics`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AnalyticsQuery {
    /// Orders created at or after (RFC 3339); 30 days before `to` when not given.
    pub from: Option<DateTime<Utc>>,
    /// Orders created before (RFC 3339); now when not given. At most 366 days
    /// after `from`.
    pub to: Option<DateTime<Utc>>,
}

/// The filter of the stuck list and of the bulk retry.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StuckQuery {
    /// Orders resting in a transitional state longer than this: seconds, or a
    /// number with `s`, `m`, `h` or `d`, at most a year; `ORDER_STUCK_AFTER_SECS`
    /// when not given. Invocations backing off or paused are listed whatever
    /// their age.
    // The pattern spells out "at most a year" in each unit: 31622400 s, 527040 m,
    // 8784 h, 366 d.
    #[param(
        pattern = r"^(0*([0-9]{1,7}|[12][0-9]{7}|30[0-9]{6}|31[0-5][0-9]{5}|316[01][0-9]{4}|3162[01][0-9]{3}|31622[0-3][0-9]{2}|31622400)s?|0*([0-9]{1,5}|[1-4][0-9]{5}|5[01][0-9]{4}|52[0-6][0-9]{3}|5270[0-3][0-9]|527040)m|0*([0-9]{1,3}|[1-7][0-9]{3}|8[0-6][0-9]{2}|87[0-7][0-9]|878[0-4])h|0*([0-9]{1,2}|[12][0-9]{2}|3[0-5][0-9]|36[0-6])d)$",
        example = "5m"
    )]
    pub older_than: Option<String>,
    /// Only this saga step, e.g. `charge_payment`.
    #[param(max_length = 200, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub step: Option<String>,
    /// Only orders whose last error contains this, in any case.
    #[param(max_length = 200, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub error: Option<String>,
}

/// `GET /orders/{id}/change-quotes`.
#[derive(Serialize, ToSchema)]
pub struct QuoteList {
    /// Oldest first.
    pub quotes: Vec<QuoteView>,
}

/// `GET /orders/{id}/changes`.
#[derive(Serialize, ToSchema)]
pub struct ChangeList {
    /// Oldest first.
    pub changes: Vec<ChangeView>,
}

/// The `If-Match` header of a change: the order version it applies to.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfMatch {
    /// The order's version as `GET /orders/{id}` answers it in `ETag` (`"7"`; `7`
    /// is accepted too). Without it the change is `428 precondition_required`.
    #[param(
        rename = "If-Match",
        required = true,
        pattern = r#"^([1-9][0-9]{0,17}|"[1-9][0-9]{0,17}")$"#
    )]
    #[allow(dead_code)]
    pub if_match: String,
}

/// `GET /orders/{id}/change-requests`.
#[derive(Serialize, ToSchema)]
pub struct ChangeRequestList {
    /// Oldest first.
    pub change_requests: Vec<ChangeRequestView>,
}

/// The `If-Match` header of an accept: optional, checked as a change's when given.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct OptionalIfMatch {
    /// The order's version as `GET /orders/{id}` answers it in `ETag`.
    #[param(
        rename = "If-Match",
        pattern = r#"^([1-9][0-9]{0,17}|"[1-9][0-9]{0,17}")$"#
    )]
    #[allow(dead_code)]
    pub if_match: Option<String>,
}

/// What `POST /ops/orders/{id}/changes/{change_id}/retry` did.
#[derive(Serialize, ToSchema)]
pub struct RetriedChange {
    pub order_id: Uuid,
    pub change_id: Uuid,
    /// The invocations resumed or started.
    pub retried: Vec<String>,
    /// Messages the receiving service had refused for good, sent again.
    pub requeued_messages: Option<u64>,
}

/// What `POST /ops/orders/{id}/changes/{change_id}/resolve` did.
#[derive(Serialize, ToSchema)]
pub struct ResolvedChange {
    pub order_id: Uuid,
    pub change_id: Uuid,
    /// The invocation that recorded the resolution.
    pub resolved_by: Option<String>,
    pub dropped_messages: u64,
    pub order: OrderView,
    /// The change as it now rests.
    pub change: ChangeView,
}
