//! Change requests (api-changes.md §5): a change one side of the order asks the
//! other to accept, priced when made and again when accepted. Accepting runs the
//! change as `apply_change` does; nothing is held while a request waits.

use super::actor::Actor;
use super::change::{ChangeLine, ChangePlan, Operation, Settlement, Totals};
use super::telling::Telling;
use super::{OrderEvent, OrderNotification, OrderView};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// State of a change request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Open,
    Accepted,
    Declined,
    Withdrawn,
    Expired,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Open => "open",
            RequestStatus::Accepted => "accepted",
            RequestStatus::Declined => "declined",
            RequestStatus::Withdrawn => "withdrawn",
            RequestStatus::Expired => "expired",
        }
    }
}

/// Which side of the order asked: `customer` or `merchant`.
pub type Side = String;

/// What a request comes to, priced on the order at `order_version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Preview {
    pub lines: Vec<ChangeLine>,
    pub totals: Totals,
    pub settlement: Settlement,
}

impl Preview {
    pub fn of(plan: &ChangePlan) -> Preview {
        Preview {
            lines: plan.lines.clone(),
            totals: plan.totals,
            settlement: plan.settlement.clone(),
        }
    }

    /// True when `other` moves the same lines and the same difference: what the
    /// other side saw is what it accepts.
    pub fn same_terms(&self, other: &Preview) -> bool {
        self.lines == other.lines && self.settlement.delta == other.settlement.delta
    }
}

/// A change request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRequest {
    pub request_id: Uuid,
    pub order_id: Uuid,
    pub status: RequestStatus,
    pub requested_by: Side,
    /// Who asked, for "withdraw: its own".
    pub requester: Actor,
    pub operations: Vec<Operation>,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub order_version: i64,
    pub preview: Preview,
    pub expires_at: DateTime<Utc>,
    /// The latest change that tried it.
    pub change_id: Option<Uuid>,
    pub decided_by: Option<Actor>,
    pub decline_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    /// Bumped on each write, so that the read model only moves forward.
    pub rev: i64,
}

/// A change request as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ChangeRequestView {
    pub request_id: Uuid,
    pub order_id: Uuid,
    pub status: RequestStatus,
    /// `customer` or `merchant`.
    pub requested_by: Side,
    pub operations: Vec<Operation>,
    pub reason: Option<String>,
    pub message: Option<String>,
    /// The order version the preview was priced on.
    pub order_version: i64,
    pub preview: Preview,
    pub expires_at: DateTime<Utc>,
    /// The latest change that tried it (the one that applied it, once `accepted`).
    pub change_id: Option<Uuid>,
    pub decided_by: Option<Actor>,
    pub decline_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

impl ChangeRequest {
    pub fn view(&self) -> ChangeRequestView {
        ChangeRequestView {
            request_id: self.request_id,
            order_id: self.order_id,
            status: self.status,
            requested_by: self.requested_by.clone(),
            operations: self.operations.clone(),
            reason: self.reason.clone(),
            message: self.message.clone(),
            order_version: self.order_version,
            preview: self.preview.clone(),
            expires_at: self.expires_at,
            change_id: self.change_id,
            decided_by: self.decided_by.clone(),
            decline_reason: self.decline_reason.clone(),
            created_at: self.created_at,
            decided_at: self.decided_at,
        }
    }

    /// Ends the request `status`, decided by `by` at `at`.
    pub fn decide(&mut self, status: RequestStatus, by: Option<Actor>, at: DateTime<Utc>) {
        self.status = status;
        self.decided_by = by;
        self.decided_at = Some(at);
    }
}

impl Telling for ChangeRequest {
    /// The event and the notification the request tells on reaching its status:
    /// the customer hears of a merchant's proposal, of a decline of its own
    /// request, and of an expiry.
    fn tells(&self) -> (Option<&'static str>, Option<&'static str>) {
        let customers = self.requested_by == "customer";
        match self.status {
            RequestStatus::Open if !customers => {
                (Some("order.change_requested"), Some("change_proposed"))
            }
            RequestStatus::Open => (Some("order.change_requested"), None),
            RequestStatus::Declined if customers => (
                Some("order.change_request_declined"),
                Some("change_request_declined"),
            ),
            RequestStatus::Declined => (Some("order.change_request_declined"), None),
            RequestStatus::Expired => (
                Some("order.change_request_expired"),
                Some("change_request_expired"),
            ),
            RequestStatus::Accepted | RequestStatus::Withdrawn => (None, None),
        }
    }

    /// The event `topic` about this request, one per request and topic.
    fn event(&self, topic: &str, version: i64, at: DateTime<Utc>) -> OrderEvent {
        let name = format!("{}:{topic}:{}", self.order_id, self.request_id);
        OrderEvent {
            id: Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes()),
            topic: topic.to_owned(),
            order_id: self.order_id,
            version,
            at,
            data: serde_json::to_value(self.view()).unwrap_or_default(),
        }
    }

    /// The notification `template` about this request, sent once per request.
    fn notification(&self, template: &str, order: &OrderView) -> OrderNotification {
        OrderNotification {
            key: format!("{}:notify:{template}:{}", self.order_id, self.request_id),
            order_id: self.order_id,
            customer_id: order.customer_id,
            template: template.to_owned(),
            data: serde_json::json!({
                "order_number": order.order_number,
                "request_id": self.request_id,
                "message": self.message,
                "delta": self.preview.settlement.delta,
                "expires_at": self.expires_at,
                "decline_reason": self.decline_reason,
                "currency": order.currency,
            }),
        }
    }

    fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
}
