//! An order's change quotes and changes (api-changes.md §1, §2): the resources
//! the API shows, kept by the order's object beside the order. They live apart
//! from the order's version: a quote, or a change that ends without applying,
//! leaves the order as it was.

use super::actor::Actor;
use super::change::{
    AddressChange, ChangeLine, ChangePlan, Delta, Operation, Settlement, StockLine, StockMoves,
    Totals,
};
use super::change_request::ChangeRequest;
use super::telling::Telling;
use super::{Attention, Failure, Money, OrderEvent, OrderNotification, OrderView};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// State of a quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuoteStatus {
    /// Its hold is being made.
    Holding,
    Open,
    /// Taken by a change, whatever its outcome.
    Used,
    Released,
    Expired,
    /// Its hold was refused.
    Refused,
}

impl QuoteStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            QuoteStatus::Holding => "holding",
            QuoteStatus::Open => "open",
            QuoteStatus::Used => "used",
            QuoteStatus::Released => "released",
            QuoteStatus::Expired => "expired",
            QuoteStatus::Refused => "refused",
        }
    }
}

/// The stock a quote holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuoteHold {
    pub reservation_id: String,
    pub items: Vec<StockLine>,
    /// When the warehouse lets the reservation lapse, if it does.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

impl QuoteHold {
    /// True once the reservation has lapsed at `now`.
    pub fn lapsed(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// A binding change quote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quote {
    pub quote_id: Uuid,
    pub order_id: Uuid,
    pub status: QuoteStatus,
    pub operations: Vec<Operation>,
    pub reason: Option<String>,
    /// The method given to pay a positive difference.
    pub method: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub hold: Option<QuoteHold>,
    pub failure: Option<Failure>,
    pub plan: ChangePlan,
    /// Bumped on each write, so that the read model only moves forward.
    pub rev: i64,
}

/// A quote as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct QuoteView {
    pub quote_id: Uuid,
    pub order_id: Uuid,
    /// The order version the quote was priced on.
    pub order_version: i64,
    pub status: QuoteStatus,
    pub operations: Vec<Operation>,
    pub reason: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// Null without `hold_stock` or without added units.
    pub hold: Option<QuoteHold>,
    pub lines: Vec<ChangeLine>,
    pub totals: Totals,
    pub shipping_address: Option<AddressChange>,
    pub settlement: Settlement,
    pub stock: StockMoves,
    /// Why the hold was refused.
    pub failure: Option<Failure>,
}

impl Quote {
    /// The quote as the API shows it.
    pub fn view(&self) -> QuoteView {
        let p = &self.plan;
        QuoteView {
            quote_id: self.quote_id,
            order_id: self.order_id,
            order_version: p.order_version,
            status: self.status,
            operations: self.operations.clone(),
            reason: self.reason.clone(),
            expires_at: self.expires_at,
            created_at: self.created_at,
            hold: self.hold.clone(),
            lines: p.lines.clone(),
            totals: p.totals,
            shipping_address: p.shipping_address.clone(),
            settlement: p.settlement.clone(),
            stock: p.stock.clone(),
            failure: self.failure.clone(),
        }
    }
}

/// State of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeStatus {
    Applying,
    AwaitingPayment,
    Applied,
    RolledBack,
    Expired,
    Cancelled,
    NeedsAttention,
}

impl ChangeStatus {
    /// While a change is under way, no other may start.
    pub fn is_active(self) -> bool {
        matches!(self, ChangeStatus::Applying | ChangeStatus::AwaitingPayment)
    }

    /// A final state: nothing moves the change any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ChangeStatus::Applied
                | ChangeStatus::RolledBack
                | ChangeStatus::Expired
                | ChangeStatus::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeStatus::Applying => "applying",
            ChangeStatus::AwaitingPayment => "awaiting_payment",
            ChangeStatus::Applied => "applied",
            ChangeStatus::RolledBack => "rolled_back",
            ChangeStatus::Expired => "expired",
            ChangeStatus::Cancelled => "cancelled",
            ChangeStatus::NeedsAttention => "needs_attention",
        }
    }
}

/// A charge a change made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MadeCharge {
    pub payment_id: String,
    pub method: String,
    pub amount: Money,
}

/// A refund a change made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MadeRefund {
    pub payment_id: String,
    pub refund_id: Option<String>,
    pub amount: Money,
}

/// How a step of a change went, for the change's `steps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StepOutcome {
    pub step: String,
    /// `succeeded`, `rejected` or `skipped`.
    pub outcome: String,
    pub attempts: u32,
    pub compensates: Option<String>,
}

/// What a change moved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    pub charges: Vec<MadeCharge>,
    pub refunds: Vec<MadeRefund>,
}

/// A change of an order, from its request to its end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub change_id: Uuid,
    pub order_id: Uuid,
    /// The order's currency, for the settled-value metric.
    pub currency: super::Currency,
    pub status: ChangeStatus,
    pub quote_id: Option<Uuid>,
    pub operations: Vec<Operation>,
    pub reason: Option<String>,
    pub actor: Actor,
    pub version_before: i64,
    pub version_after: Option<i64>,
    pub plan: ChangePlan,
    pub moved: Moved,
    pub collect: String,
    pub on_unpaid: String,
    pub payment_deadline_seconds: u32,
    pub notify_customer: bool,
    pub point_of_no_return: bool,
    pub steps: Vec<StepOutcome>,
    pub failure: Option<Failure>,
    pub attention: Option<Attention>,
    pub created_at: DateTime<Utc>,
    pub applied_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub rev: i64,
    /// The new stock the change holds while it waits for its payment.
    #[serde(default)]
    pub hold: Option<QuoteHold>,
    /// What the customer owes while the change is `awaiting_payment`, by `pay_by`.
    #[serde(default)]
    pub amount_due: Money,
    #[serde(default)]
    pub pay_by: Option<DateTime<Utc>>,
    /// The difference kept owed when it applied unpaid (`keep_owed`).
    #[serde(default)]
    pub outstanding: Money,
    /// The change request it accepts.
    #[serde(default)]
    pub request_id: Option<Uuid>,
    /// While `needs_attention`: the state its saga was heading for, which an
    /// operator's retry or resolve gives it.
    #[serde(default)]
    pub heads_for: Option<ChangeStatus>,
}

/// The money a change moved, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ChangeSettlement {
    pub delta: Delta,
    pub charges: Vec<MadeCharge>,
    pub refunds: Vec<MadeRefund>,
    pub clears_outstanding: Money,
    pub amount_due: Money,
    pub pay_by: Option<DateTime<Utc>>,
    pub outstanding: Money,
}

/// A change as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ChangeView {
    pub change_id: Uuid,
    pub order_id: Uuid,
    pub status: ChangeStatus,
    pub quote_id: Option<Uuid>,
    pub request_id: Option<Uuid>,
    pub operations: Vec<Operation>,
    pub reason: Option<String>,
    pub actor: Actor,
    pub version_before: i64,
    /// Null unless the order's version moved.
    pub version_after: Option<i64>,
    pub lines: Vec<ChangeLine>,
    pub totals: Totals,
    pub shipping_address: Option<AddressChange>,
    pub stock: StockMoves,
    pub settlement: ChangeSettlement,
    pub collect: String,
    pub on_unpaid: String,
    pub payment_deadline_seconds: u32,
    pub point_of_no_return: bool,
    pub steps: Vec<StepOutcome>,
    pub failure: Option<Failure>,
    pub attention: Option<Attention>,
    pub created_at: DateTime<Utc>,
    pub applied_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
}

impl Change {
    /// The change as the API shows it.
    pub fn view(&self) -> ChangeView {
        let p = &self.plan;
        ChangeView {
            change_id: self.change_id,
            order_id: self.order_id,
            status: self.status,
            quote_id: self.quote_id,
            request_id: self.request_id,
            operations: self.operations.clone(),
            reason: self.reason.clone(),
            actor: self.actor.clone(),
            version_before: self.version_before,
            version_after: self.version_after,
            lines: p.lines.clone(),
            totals: p.totals,
            shipping_address: p.shipping_address.clone(),
            stock: p.stock.clone(),
            settlement: ChangeSettlement {
                delta: p.settlement.delta,
                charges: self.moved.charges.clone(),
                refunds: self.moved.refunds.clone(),
                clears_outstanding: p.settlement.clears_outstanding,
                amount_due: self.amount_due,
                pay_by: self.pay_by,
                outstanding: self.outstanding,
            },
            collect: self.collect.clone(),
            on_unpaid: self.on_unpaid.clone(),
            payment_deadline_seconds: self.payment_deadline_seconds,
            point_of_no_return: self.point_of_no_return,
            steps: self.steps.clone(),
            failure: self.failure.clone(),
            attention: self.attention.clone(),
            created_at: self.created_at,
            applied_at: self.applied_at,
            closed_at: self.closed_at,
        }
    }

    /// Ends the change `status`, at `at`, with `failure` if it did not apply.
    pub fn close(&mut self, status: ChangeStatus, failure: Option<Failure>, at: DateTime<Utc>) {
        self.status = status;
        self.failure = failure;
        if status == ChangeStatus::Applied {
            self.applied_at = Some(at);
        }
        if status.is_final() {
            self.closed_at = Some(at);
        }
    }
}

impl Telling for Change {
    /// The event and the notification the change tells on reaching its status.
    fn tells(&self) -> (Option<&'static str>, Option<&'static str>) {
        match self.status {
            ChangeStatus::Applied => (Some("order.changed"), None),
            ChangeStatus::AwaitingPayment => (
                Some("order.change_awaiting_payment"),
                Some("change_payment_required"),
            ),
            ChangeStatus::RolledBack => (Some("order.change_rolled_back"), None),
            ChangeStatus::Expired => (Some("order.change_expired"), Some("change_reverted")),
            ChangeStatus::Cancelled => (Some("order.change_cancelled"), None),
            ChangeStatus::Applying | ChangeStatus::NeedsAttention => (None, None),
        }
    }

    /// The event `topic` about this change, one per change and topic, told at
    /// order version `version`: the change's lines, totals, settlement and address.
    fn event(&self, topic: &str, version: i64, at: DateTime<Utc>) -> OrderEvent {
        let name = format!("{}:{topic}:{}", self.order_id, self.change_id);
        let v = self.view();
        OrderEvent {
            id: Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes()),
            topic: topic.to_owned(),
            order_id: self.order_id,
            version,
            at,
            data: serde_json::json!({
                "change_id": v.change_id,
                "status": v.status,
                "version_before": v.version_before,
                "version_after": v.version_after,
                "lines": v.lines,
                "totals": v.totals,
                "settlement": v.settlement,
                "shipping_address": v.shipping_address,
                "failure": v.failure,
            }),
        }
    }

    /// The notification `template` about this change, sent once per change.
    fn notification(&self, template: &str, order: &OrderView) -> OrderNotification {
        OrderNotification {
            key: format!("{}:notify:{template}:{}", self.order_id, self.change_id),
            order_id: self.order_id,
            customer_id: order.customer_id,
            template: template.to_owned(),
            data: serde_json::json!({
                "order_number": order.order_number,
                "change_id": self.change_id,
                "amount_due": self.amount_due,
                "pay_by": self.pay_by,
                "delta": self.plan.settlement.delta,
                "currency": order.currency,
            }),
        }
    }

    fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
}

/// An order's quotes and changes, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChangeBook {
    pub quotes: Vec<Quote>,
    pub changes: Vec<Change>,
    #[serde(default)]
    pub requests: Vec<ChangeRequest>,
}

impl ChangeBook {
    pub fn quote(&self, id: Uuid) -> Option<&Quote> {
        self.quotes.iter().find(|q| q.quote_id == id)
    }

    pub fn change(&self, id: Uuid) -> Option<&Change> {
        self.changes.iter().find(|c| c.change_id == id)
    }

    /// The change under way, if any.
    pub fn active(&self) -> Option<&Change> {
        self.changes.iter().find(|c| c.status.is_active())
    }

    /// Keeps `quote`, replacing its earlier state, one revision on.
    pub fn put_quote(&mut self, quote: Quote) -> Quote {
        let id = quote.quote_id;
        put(
            &mut self.quotes,
            quote,
            |q| q.quote_id == id,
            |q| &mut q.rev,
        )
    }

    pub fn request(&self, id: Uuid) -> Option<&ChangeRequest> {
        self.requests.iter().find(|r| r.request_id == id)
    }

    /// Keeps `request`, replacing its earlier state, one revision on.
    pub fn put_request(&mut self, request: ChangeRequest) -> ChangeRequest {
        let id = request.request_id;
        put(
            &mut self.requests,
            request,
            |r| r.request_id == id,
            |r| &mut r.rev,
        )
    }

    /// Keeps `change`, replacing its earlier state, one revision on.
    pub fn put_change(&mut self, change: Change) -> Change {
        let id = change.change_id;
        put(
            &mut self.changes,
            change,
            |c| c.change_id == id,
            |c| &mut c.rev,
        )
    }
}

/// Keeps `item` in `list` in place of the one `same` finds (or last), one revision
/// on, so that the read model only ever moves forward.
fn put<T: Clone>(
    list: &mut Vec<T>,
    mut item: T,
    same: impl Fn(&T) -> bool,
    rev: fn(&mut T) -> &mut i64,
) -> T {
    match list.iter_mut().find(|x| same(x)) {
        Some(kept) => {
            *rev(&mut item) = *rev(kept) + 1;
            *kept = item.clone();
        }
        None => {
            *rev(&mut item) = 1;
            list.push(item.clone());
        }
    }
    item
}
