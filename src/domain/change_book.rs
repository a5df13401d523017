//! An order's change quotes and changes (api-changes.md §1, §2): the resources
//! the API shows, kept by the order's object beside the order. They live apart
//! from the order's version: a quote, or a change that ends without applying,
//! leaves the order as it was.

use super::change::{ChangePlan, Operation, StockLine};
use super::{Attention, Failure, Money};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// State of a quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// The stock a quote holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteHold {
    pub reservation_id: String,
    pub items: Vec<StockLine>,
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

impl Quote {
    /// The quote as the API shows it.
    pub fn view(&self) -> Value {
        let p = &self.plan;
        serde_json::json!({
            "quote_id": self.quote_id,
            "order_id": self.order_id,
            "order_version": p.order_version,
            "status": self.status,
            "operations": self.operations,
            "reason": self.reason,
            "expires_at": self.expires_at,
            "created_at": self.created_at,
            "hold": self.hold.as_ref().map(|h| serde_json::json!({
                "reservation_id": h.reservation_id,
                "items": h.items,
            })),
            "lines": p.lines,
            "totals": p.totals,
            "shipping_address": p.shipping_address,
            "settlement": p.settlement,
            "stock": p.stock,
            "failure": self.failure,
        })
    }
}

/// State of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// Who asked for a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub role: String,
    pub sub: Option<String>,
}

/// A charge a change made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MadeCharge {
    pub payment_id: String,
    pub method: String,
    pub amount: Money,
}

/// A refund a change made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MadeRefund {
    pub payment_id: String,
    pub refund_id: Option<String>,
    pub amount: Money,
}

/// How a step of a change went, for the change's `steps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

impl Change {
    /// The change as the API shows it.
    pub fn view(&self) -> Value {
        let p = &self.plan;
        serde_json::json!({
            "change_id": self.change_id,
            "order_id": self.order_id,
            "status": self.status,
            "quote_id": self.quote_id,
            "request_id": null,
            "operations": self.operations,
            "reason": self.reason,
            "actor": self.actor,
            "version_before": self.version_before,
            "version_after": self.version_after,
            "lines": p.lines,
            "totals": p.totals,
            "shipping_address": p.shipping_address,
            "stock": p.stock,
            "settlement": {
                "delta": p.settlement.delta,
                "charges": self.moved.charges,
                "refunds": self.moved.refunds,
                "clears_outstanding": p.settlement.clears_outstanding,
                "amount_due": "0.00",
                "pay_by": null,
                "outstanding": "0.00",
            },
            "collect": self.collect,
            "on_unpaid": self.on_unpaid,
            "payment_deadline_seconds": self.payment_deadline_seconds,
            "point_of_no_return": self.point_of_no_return,
            "steps": self.steps,
            "failure": self.failure,
            "attention": self.attention,
            "created_at": self.created_at,
            "applied_at": self.applied_at,
            "closed_at": self.closed_at,
        })
    }

    /// Ends the change `status`, at `at`, with `failure` if it did not apply.
    pub fn close(&mut self, status: ChangeStatus, failure: Option<Failure>, at: DateTime<Utc>) {
        self.status = status;
        self.failure = failure;
        if status == ChangeStatus::Applied {
            self.applied_at = Some(at);
        }
        if status != ChangeStatus::NeedsAttention {
            self.closed_at = Some(at);
        }
    }
}

/// An order's quotes and changes, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChangeBook {
    pub quotes: Vec<Quote>,
    pub changes: Vec<Change>,
}

impl ChangeBook {
    pub fn quote(&self, id: Uuid) -> Option<&Quote> {
        self.quotes.iter().find(|q| q.quote_id == id)
    }

    pub fn quote_mut(&mut self, id: Uuid) -> Option<&mut Quote> {
        self.quotes.iter_mut().find(|q| q.quote_id == id)
    }

    pub fn change(&self, id: Uuid) -> Option<&Change> {
        self.changes.iter().find(|c| c.change_id == id)
    }

    /// The change under way, if any.
    pub fn active(&self) -> Option<&Change> {
        self.changes.iter().find(|c| c.status.is_active())
    }

    /// Keeps `quote`, replacing its earlier state, one revision on.
    pub fn put_quote(&mut self, mut quote: Quote) -> Quote {
        let rev = self.quote(quote.quote_id).map_or(0, |q| q.rev);
        quote.rev = rev + 1;
        self.quotes.retain(|q| q.quote_id != quote.quote_id);
        self.quotes.push(quote.clone());
        self.quotes.sort_by_key(|q| q.created_at);
        quote
    }

    /// Keeps `change`, replacing its earlier state, one revision on.
    pub fn put_change(&mut self, mut change: Change) -> Change {
        let rev = self.change(change.change_id).map_or(0, |c| c.rev);
        change.rev = rev + 1;
        match self
            .changes
            .iter_mut()
            .find(|c| c.change_id == change.change_id)
        {
            Some(kept) => *kept = change.clone(),
            None => self.changes.push(change.clone()),
        }
        change
    }
}
