//! The order's money ledger (api-changes.md §8): every charge and refund the
//! order made, each written with the order version that counted it.

use super::{Money, Order};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// One movement of the order's money.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Movement {
    pub seq: u32,
    /// `charge`, `refund`, `owed` (outstanding grows) or `owed_cleared` (paid, or
    /// netted by a give-back).
    pub kind: String,
    pub amount: Money,
    pub payment_id: Option<String>,
    pub refund_id: Option<String>,
    pub idempotency_key: Option<String>,
    /// The saga that moved it (`create_order`, `apply_change`, `cancel_order`...).
    pub flow: Option<String>,
    pub change_id: Option<Uuid>,
    #[serde(default)]
    pub exchange_id: Option<Uuid>,
    #[serde(default)]
    pub claim_id: Option<Uuid>,
    pub version: i64,
    pub at: DateTime<Utc>,
}

/// One payment of the order, with what was refunded of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LedgerPayment {
    pub payment_id: String,
    pub method: String,
    pub charged: Money,
    pub refunded: Money,
    pub at: DateTime<Utc>,
}

/// `GET /orders/{id}/ledger`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Ledger {
    pub order_id: Uuid,
    pub currency: super::Currency,
    pub version: i64,
    pub charged: Money,
    pub refunded: Money,
    pub outstanding: Money,
    pub written_off: Money,
    pub payments: Vec<LedgerPayment>,
    pub movements: Vec<Movement>,
}

impl Order {
    /// Records a movement at the order's current version.
    pub(super) fn record_movement(
        &mut self,
        kind: &str,
        amount: Money,
        payment_id: Option<&str>,
        at: DateTime<Utc>,
    ) {
        let seq = self.movements.len() as u32 + 1;
        self.movements.push(Movement {
            seq,
            kind: kind.to_owned(),
            amount,
            payment_id: payment_id.map(str::to_owned),
            refund_id: None,
            idempotency_key: None,
            flow: None,
            change_id: None,
            exchange_id: None,
            claim_id: None,
            version: self.version,
            at,
        });
    }

    /// Keeps `amount` of a change's difference owed: `outstanding_amount` grows.
    pub fn owe(&mut self, amount: Money, at: DateTime<Utc>) {
        if amount.is_zero() {
            return;
        }
        self.resource.outstanding_amount = self
            .outstanding_amount
            .checked_add(amount)
            .unwrap_or(Money::MAX);
        self.record_movement("owed", amount, None, at);
    }

    /// Lowers what is owed by `amount` (paid, or netted by a give-back), at most
    /// what is owed; returns what it lowered.
    pub fn clear_owed(&mut self, amount: Money, at: DateTime<Utc>) -> Money {
        let cleared = amount.min(self.outstanding_amount);
        if cleared.is_zero() {
            return cleared;
        }
        self.resource.outstanding_amount = self
            .outstanding_amount
            .checked_sub(cleared)
            .unwrap_or(Money::ZERO);
        self.record_movement("owed_cleared", cleared, None, at);
        cleared
    }

    /// Names the refund id of the newest refund movement.
    pub fn tag_latest_refund(&mut self, refund_id: &str) {
        let latest = self.movements.iter_mut().rev().find(|m| m.kind == "refund");
        if let Some(m) = latest {
            m.refund_id = Some(refund_id.to_owned());
        }
    }

    /// Names the flow (a saga's name: `apply_change:<id>`, `cancel_order@<inv>`)
    /// of the movements that have none yet, which this version counts (a capture
    /// held before the commit included).
    pub fn tag_movements(&mut self, saga: &str) {
        let flow = saga.split(['@', '#', ':']).next().unwrap_or(saga);
        // Sagas of one change, exchange or claim carry its id after the flow.
        let id = saga
            .split(['@', '#'])
            .next()
            .and_then(|head| head.split(':').nth(1))
            .and_then(|id| id.parse::<Uuid>().ok());
        let of = |kind: &str| id.filter(|_| flow.ends_with(kind));
        let (change_id, exchange_id, claim_id) = (of("change"), of("exchange"), of("claim"));
        let version = self.version;
        for m in self.movements.iter_mut().filter(|m| m.flow.is_none()) {
            m.flow = Some(flow.to_owned());
            m.change_id = change_id;
            m.exchange_id = exchange_id;
            m.claim_id = claim_id;
            m.version = version;
        }
    }

    /// The ledger of the order as it stands. An order kept before movements were
    /// recorded shows its payments, and its refunds as one movement.
    pub fn ledger(&self) -> Ledger {
        let payments: Vec<LedgerPayment> = self
            .captured_payments()
            .into_iter()
            .map(|(p, refunded)| LedgerPayment {
                payment_id: p.payment_id.clone().unwrap_or_default(),
                method: p.method.clone(),
                charged: p.amount,
                refunded,
                at: p.at,
            })
            .collect();
        let mut movements = self.movements.clone();
        if movements.is_empty() {
            let mut earlier = self.clone();
            for p in &payments {
                earlier.record_movement("charge", p.charged, Some(&p.payment_id), p.at);
            }
            if !self.refunded_amount.is_zero() {
                earlier.record_movement("refund", self.refunded_amount, None, self.updated_at);
            }
            movements = earlier.movements;
        }
        Ledger {
            order_id: self.id,
            currency: self.currency.clone(),
            version: self.version,
            charged: self.captured_amount,
            refunded: self.refunded_amount,
            outstanding: self.outstanding_amount,
            written_off: Money::ZERO,
            payments,
            movements,
        }
    }
}
