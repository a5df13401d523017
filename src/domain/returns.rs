//! Returns of a delivered order and refunds without a return: which units they may
//! take, and how they move the order. The money they give back follows the same
//! cumulative rule as a cancel (see [`super::give_back`]), without the shipping.

use super::{DomainError, GiveBack, ItemQuantity, Money, Order, OrderStatus, PaymentStatus};
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

    /// Units of item `item_id` that open returns other than `except` hold.
    pub(super) fn held_by_returns(&self, item_id: i32, except: Option<Uuid>) -> i64 {
        let open = self
            .returns
            .iter()
            .filter(|r| r.status.is_open() && Some(r.return_id) != except);
        open.flat_map(|r| &r.items)
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

    /// Records a new return, `requested` until its parcel arrives or `expires_at`.
    pub fn request_return(&mut self, new: Return) {
        self.returns.push(new);
    }

    /// What receiving return `id` gives back: its units' share, no shipping.
    pub fn plan_return(&self, id: Uuid) -> Result<GiveBack, DomainError> {
        let ret = self.find_return(id).ok_or(DomainError::UnknownReturn(id))?;
        self.plan_give_back(&ret.asks(), Some(id), false)
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

    /// Return `id` was refunded `amount` for the units of `plan`: they count as
    /// returned from now on.
    pub fn record_return_refunded(
        &mut self,
        id: Uuid,
        plan: &GiveBack,
        amount: Money,
        at: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        self.record_return_received(id, at)?;
        self.record_refund(amount)?;
        for line in &plan.lines {
            self.item_mut(line.item_id)?.returned_quantity += line.quantity;
        }
        let version = self.version;
        let ret = self.return_mut(id)?;
        ret.refund_amount = Some(amount);
        ret.refunded_at = Some(at);
        ret.close(ReturnStatus::Refunded, version, at);
        self.settle_refunded(at)
    }

    /// Closes return `id` as `status` (`rejected` or `expired`): its units are
    /// free again, and a refund it was owed is owed no more.
    pub fn close_return(
        &mut self,
        id: Uuid,
        status: ReturnStatus,
        at: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        let version = self.version;
        self.return_mut(id)?.close(status, version, at);
        self.drop_owed(|c| {
            matches!(c, super::Compensation::RefundPayment { return_id: Some(r), .. } if *r == id)
        });
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
