//! Returns of a delivered order and refunds without a return: which units they may
//! take, and how they move the order. The money they give back follows the same
//! cumulative rule as a cancel (see [`super::give_back`]), without the shipping.

use super::proration::Run;
use super::{
    Compensation, DomainError, ExchangeStatus, GiveBack, HeldRuns, ItemQuantity, Money, Order,
    OrderStatus, OutsideRefund, PaymentStatus,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Where a return stands: `requested` -> `received` -> `refunded`, or `rejected`
/// (from `requested` or `received`), or `expired` (from `requested`) when its parcel
/// does not arrive in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReturnStatus {
    Requested,
    Received,
    Refunded,
    Rejected,
    Expired,
}

impl ReturnStatus {
    /// The return still holds its units: no other return or refund may take them.
    pub fn is_open(self) -> bool {
        matches!(self, ReturnStatus::Requested | ReturnStatus::Received)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ReturnStatus::Requested => "requested",
            ReturnStatus::Received => "received",
            ReturnStatus::Refunded => "refunded",
            ReturnStatus::Rejected => "rejected",
            ReturnStatus::Expired => "expired",
        }
    }
}

/// Units of one item sent back, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnItem {
    #[schema(minimum = 1)]
    pub item_id: i32,
    #[schema(minimum = 1, maximum = 100_000)]
    pub quantity: i64,
    #[serde(default)]
    #[schema(
        max_length = 500,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    pub reason: Option<String>,
}

/// A return, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Return {
    pub return_id: Uuid,
    pub order_id: Uuid,
    pub status: ReturnStatus,
    pub items: Vec<ReturnItem>,
    /// What the payment service refunded for it; `null` until then.
    pub refund_amount: Option<Money>,
    pub reason: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub received_at: Option<DateTime<Utc>>,
    pub refunded_at: Option<DateTime<Utc>>,
    /// When it was refunded, rejected or expired.
    pub closed_at: Option<DateTime<Utc>>,
    /// When it expires unless its parcel arrives.
    pub expires_at: DateTime<Utc>,
    /// The order version that last changed it.
    pub version: i64,
}

impl Return {
    fn asks(&self) -> Vec<ItemQuantity> {
        self.items
            .iter()
            .map(|i| ItemQuantity {
                item_id: i.item_id,
                quantity: i.quantity,
            })
            .collect()
    }

    fn close(&mut self, status: ReturnStatus, version: i64, at: DateTime<Utc>) {
        self.status = status;
        self.closed_at = Some(at);
        self.version = version;
    }
}

impl Order {
    /// When the order was delivered, if it was.
    pub fn delivered_at(&self) -> Option<DateTime<Utc>> {
        let delivered = self.history.iter().rev();
        delivered
            .filter(|h| h.to == OrderStatus::Delivered)
            .map(|h| h.at)
            .next()
    }

    /// The return `id` of this order.
    pub fn find_return(&self, id: Uuid) -> Option<&Return> {
        self.returns.iter().find(|r| r.return_id == id)
    }

    fn return_mut(&mut self, id: Uuid) -> Result<&mut Return, DomainError> {
        let found = self.returns.iter_mut().find(|r| r.return_id == id);
        found.ok_or(DomainError::UnknownReturn(id))
    }

    /// Units of item `item_id` that open returns, requested exchanges and open
    /// claims other than `except` hold.
    pub(super) fn held_by_returns(&self, item_id: i32, except: Option<Uuid>) -> i64 {
        let returns = self
            .returns
            .iter()
            .filter(|r| r.status.is_open() && Some(r.return_id) != except)
            .flat_map(|r| r.asks());
        let exchanges = self
            .exchanges
            .iter()
            .filter(|e| e.status == ExchangeStatus::Requested && Some(e.exchange_id) != except)
            .flat_map(|e| e.asks());
        let claims = self
            .claims
            .iter()
            .filter(|c| c.is_open() && Some(c.claim_id) != except)
            .flat_map(|c| c.asks());
        returns
            .chain(exchanges)
            .chain(claims)
            .filter(|i| i.item_id == item_id)
            .map(|i| i.quantity)
            .sum()
    }

    /// Checks a return of `items` asked for at `at` against the order: delivered,
    /// inside `window` of the delivery, units neither given back nor held by another
    /// open return.
    pub fn check_return(
        &self,
        items: &[ReturnItem],
        at: DateTime<Utc>,
        window: chrono::Duration,
    ) -> Result<(), DomainError> {
        let Some(delivered_at) = self
            .delivered_at()
            .filter(|_| self.status == OrderStatus::Delivered)
        else {
            return Err(DomainError::NotReturnable(self.status));
        };
        if at > delivered_at + window {
            return Err(DomainError::ReturnWindowClosed);
        }
        let asks: Vec<ItemQuantity> = items
            .iter()
            .map(|i| ItemQuantity {
                item_id: i.item_id,
                quantity: i.quantity,
            })
            .collect();
        self.plan_give_back(&asks, None, false).map(|_| ())
    }

    /// Refunding `asks` without a return: units left that no open return holds,
    /// their share without the shipping.
    pub fn plan_refund(&self, asks: &[ItemQuantity]) -> Result<GiveBack, DomainError> {
        self.plan_give_back(asks, None, false)
    }

    /// Holds `runs` for return, exchange or claim `id`.
    pub(super) fn hold_runs(&mut self, id: Uuid, runs: impl IntoIterator<Item = Run>) {
        let runs: Vec<Run> = runs.into_iter().collect();
        self.take_free_runs(&runs);
        self.held_runs.push(HeldRuns {
            return_id: id,
            runs,
        });
    }

    /// Frees the places that `id` held: a later give-back takes them first.
    pub(super) fn free_held_runs(&mut self, id: Uuid) {
        let (freed, held): (Vec<HeldRuns>, Vec<HeldRuns>) = std::mem::take(&mut self.held_runs)
            .into_iter()
            .partition(|h| h.return_id == id);
        self.held_runs = held;
        self.free_runs
            .extend(freed.into_iter().flat_map(|h| h.runs));
    }

    /// The units `asks` that `id` held came back: they count as returned from
    /// now on, and keep the places they took.
    pub(super) fn return_held(
        &mut self,
        id: Uuid,
        asks: Vec<ItemQuantity>,
    ) -> Result<(), DomainError> {
        for unit in asks {
            self.item_mut(unit.item_id)?.returned_quantity += unit.quantity;
        }
        self.held_runs.retain(|h| h.return_id != id);
        Ok(())
    }

    /// Records a new return, `requested` until its parcel arrives or `expires_at`.
    /// Its units take their places under the cumulative rule now, so their share
    /// is fixed from the request on.
    pub fn request_return(&mut self, new: Return) -> Result<(), DomainError> {
        let plan = self.plan_give_back(&new.asks(), None, false)?;
        self.hold_runs(new.return_id, plan.lines.into_iter().flat_map(|l| l.runs));
        self.returns.push(new);
        Ok(())
    }

    /// What receiving return `id` gives back: its units' share from the places
    /// they took when it was requested, no shipping.
    pub fn plan_return(&self, id: Uuid) -> Result<GiveBack, DomainError> {
        let ret = self.find_return(id).ok_or(DomainError::UnknownReturn(id))?;
        self.plan_held(id, &ret.asks())
    }

    /// What giving back `asks`, held by return, exchange or claim `id`, gives
    /// back: their share from the places they took when they were asked for.
    pub(super) fn plan_held(
        &self,
        id: Uuid,
        asks: &[ItemQuantity],
    ) -> Result<GiveBack, DomainError> {
        let mut plan = self.plan_give_back(asks, Some(id), false)?;
        // A return requested before places were kept is priced as it comes.
        let Some(held) = self.held_runs.iter().find(|h| h.return_id == id) else {
            return Ok(plan);
        };
        for line in &mut plan.lines {
            let item = self.items.iter().find(|i| i.id == line.item_id);
            let item = item.ok_or(DomainError::UnknownItem(line.item_id))?;
            line.runs = held
                .runs
                .iter()
                .filter(|r| r.item_id == item.id)
                .copied()
                .collect();
            line.amount = self.line_of(item).0.give_back_runs(&line.runs)?;
        }
        Ok(plan)
    }

    /// The parcel of return `id` arrived and was restocked.
    pub fn record_return_received(
        &mut self,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        let version = self.version;
        let ret = self.return_mut(id)?;
        ret.status = ReturnStatus::Received;
        ret.received_at.get_or_insert(at);
        ret.version = version;
        Ok(())
    }

    /// Return `id` was refunded `amount`: its units count as returned from now on.
    pub fn record_return_refunded(
        &mut self,
        id: Uuid,
        amount: Money,
        at: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        self.record_return_received(id, at)?;
        self.record_refund(amount)?;
        self.settle_return(id, Some(amount), at)?;
        self.settle_refunded(at)
    }

    /// Return `id` ends `refunded` with `refund` or, without, `rejected`: either
    /// way its units came back and were restocked, so they count as returned
    /// from now on and keep their places.
    fn settle_return(
        &mut self,
        id: Uuid,
        refund: Option<Money>,
        at: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        let items = self.find_return(id).map(|r| r.asks()).unwrap_or_default();
        self.return_held(id, items)?;
        let version = self.version;
        let ret = self.return_mut(id)?;
        let status = match refund {
            Some(amount) => {
                ret.refund_amount = Some(amount);
                ret.refunded_at = Some(at);
                ReturnStatus::Refunded
            }
            None => ReturnStatus::Rejected,
        };
        ret.close(status, version, at);
        Ok(())
    }

    /// Closes return `id` as `status` (`rejected` or `expired`), and a refund it
    /// was owed is owed no more. A `requested` return's units go back to the
    /// order, with their places; a `received` one's were restocked, so they stay
    /// returned (api.md, "Endpoints").
    pub fn close_return(
        &mut self,
        id: Uuid,
        status: ReturnStatus,
        at: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        let ret = self.find_return(id).ok_or(DomainError::UnknownReturn(id))?;
        if ret.status == ReturnStatus::Received {
            self.settle_return(id, None, at)?;
        } else {
            let version = self.version;
            self.return_mut(id)?.close(status, version, at);
            self.free_held_runs(id);
        }
        self.drop_owed(
            |c| matches!(c, Compensation::RefundPayment { return_id: Some(r), .. } if *r == id),
        );
        Ok(())
    }

    /// Refunds the order still owes to the payment service.
    pub fn owed_refunds(&self) -> Result<Money, DomainError> {
        let owed = self.owed.iter().filter_map(|c| match c {
            Compensation::RefundPayment { amount, .. } => Some(*amount),
            _ => None,
        });
        Money::sum(owed).ok_or(DomainError::AmountOverflow)
    }

    /// An operator settled by hand what the order owes: `refunded_outside` (at
    /// most the refunds owed) was refunded by other means and counts as refunded,
    /// on the order's refunds record too. Each return whose refund was owed is
    /// closed, `refunded` with its part of that money (oldest first) or
    /// `rejected` without; nothing stays owed and the attention goes.
    pub fn resolve_owed(
        &mut self,
        refunded_outside: Option<Money>,
        reason: Option<String>,
        at: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        let outside = refunded_outside.unwrap_or(Money::ZERO);
        let owed = self.owed_refunds()?;
        if outside > owed {
            return Err(DomainError::RefundExceedsOwed {
                asked: outside.to_string(),
                owed: owed.to_string(),
            });
        }
        let mut left = outside;
        for c in std::mem::take(&mut self.owed) {
            let Compensation::RefundPayment {
                amount,
                return_id: Some(id),
                ..
            } = c
            else {
                continue;
            };
            let part = amount.min(left);
            left = left.checked_sub(part).unwrap_or(Money::ZERO);
            let open = self.find_return(id).is_some_and(|r| r.status.is_open());
            if open {
                self.settle_return(id, (part > Money::ZERO).then_some(part), at)?;
            }
        }
        self.attention = None;
        self.clear_attended();
        if outside > Money::ZERO {
            self.record_refund(outside)?;
            self.outside_refunds.push(OutsideRefund {
                key: format!("outside:{}", self.version),
                payment_id: self.payment_id.clone().unwrap_or_default(),
                amount: outside,
                reason,
                at,
            });
            self.settle_refunded(at)?;
        }
        Ok(())
    }

    /// Units of `plan` refunded `amount` without a return.
    pub fn record_items_refunded(
        &mut self,
        plan: &GiveBack,
        amount: Money,
        at: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        self.record_refund(amount)?;
        for line in &plan.lines {
            self.item_mut(line.item_id)?.refunded_quantity += line.quantity;
        }
        let runs: Vec<Run> = plan.lines.iter().flat_map(|l| l.runs.clone()).collect();
        self.take_free_runs(&runs);
        self.settle_refunded(at)
    }

    /// An order that shipped and has given back everything it captured is
    /// `refunded`.
    fn settle_refunded(&mut self, at: DateTime<Utc>) -> Result<(), DomainError> {
        let shipped = matches!(self.status, OrderStatus::Shipped | OrderStatus::Delivered);
        if shipped && self.payment_status == PaymentStatus::Refunded {
            self.transition(OrderStatus::Refunded, None, "system", at)?;
        }
        Ok(())
    }
}
