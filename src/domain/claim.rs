//! Claims (api-changes.md §7): units that came damaged, went missing or were the
//! wrong item, resolved by a refund of their share, a replacement of the same
//! product, or both. The claimed units are held from the claim on, like a
//! return's; claimed goods are never restocked.

use super::{AddedBy, DomainError, Failure, GiveBack, ItemQuantity, Money, NewLine, Order};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Where a claim stands: `open` -> `resolved` or `rejected`; with a required
/// return `open` -> `received` -> `resolved` or `rejected`, or `expired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClaimStatus {
    Open,
    Received,
    Resolved,
    Rejected,
    Expired,
}

impl ClaimStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimStatus::Open => "open",
            ClaimStatus::Received => "received",
            ClaimStatus::Resolved => "resolved",
            ClaimStatus::Rejected => "rejected",
            ClaimStatus::Expired => "expired",
        }
    }
}

/// What went wrong with the units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClaimType {
    Damaged,
    Missing,
    WrongItem,
}

impl ClaimType {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimType::Damaged => "damaged",
            ClaimType::Missing => "missing",
            ClaimType::WrongItem => "wrong_item",
        }
    }
}

/// How a claim is made good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    Refund,
    Replacement,
    RefundAndReplacement,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Refund => "refund",
            Resolution::Replacement => "replacement",
            Resolution::RefundAndReplacement => "refund_and_replacement",
        }
    }

    pub fn refunds(self) -> bool {
        matches!(self, Resolution::Refund | Resolution::RefundAndReplacement)
    }

    pub fn replaces(self) -> bool {
        matches!(
            self,
            Resolution::Replacement | Resolution::RefundAndReplacement
        )
    }
}

/// Units of one item a claim covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimItem {
    #[schema(minimum = 1)]
    pub item_id: i32,
    #[schema(minimum = 1, maximum = 100_000)]
    pub quantity: i64,
    pub claim_type: ClaimType,
    #[serde(default)]
    #[schema(
        max_length = 500,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    pub note: Option<String>,
}

/// A claim, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Claim {
    pub claim_id: Uuid,
    pub order_id: Uuid,
    pub status: ClaimStatus,
    pub items: Vec<ClaimItem>,
    pub require_return: bool,
    pub resolution: Option<Resolution>,
    /// What the payment service refunded for it; `null` without a refund.
    pub refund_amount: Option<Money>,
    pub replacement_items: Vec<NewLine>,
    pub fulfillment_id: Option<String>,
    pub failure: Option<Failure>,
    /// Set while a refund it owes waits for an operator (the order is parked).
    #[serde(default)]
    pub attention: Option<super::Attention>,
    pub reason: Option<String>,
    pub opened_at: DateTime<Utc>,
    pub received_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    /// When a claim that waits for its parcel expires; `null` without one.
    pub expires_at: Option<DateTime<Utc>>,
    pub version: i64,
}

impl Claim {
    pub fn asks(&self) -> Vec<ItemQuantity> {
        let units = self.items.iter().map(|i| ItemQuantity {
            item_id: i.item_id,
            quantity: i.quantity,
        });
        units.collect()
    }

    /// It still holds its units.
    pub fn is_open(&self) -> bool {
        matches!(self.status, ClaimStatus::Open | ClaimStatus::Received)
    }
}

impl Order {
    /// The claim `id` of this order.
    pub fn find_claim(&self, id: Uuid) -> Option<&Claim> {
        self.claims.iter().find(|c| c.claim_id == id)
    }

    fn claim_mut(&mut self, id: Uuid) -> Result<&mut Claim, DomainError> {
        let found = self.claims.iter_mut().find(|c| c.claim_id == id);
        found.ok_or(DomainError::UnknownReturn(id))
    }

    /// Checks a claim of `items` made at `at`: a shipped order, or a delivered
    /// one inside `window`; units left that nothing else holds.
    pub fn check_claim(
        &self,
        items: &[ClaimItem],
        at: DateTime<Utc>,
        window: chrono::Duration,
    ) -> Result<(), DomainError> {
        use super::OrderStatus;
        match (self.status, self.delivered_at()) {
            (OrderStatus::Shipped, _) => {}
            (OrderStatus::Delivered, Some(delivered)) if at <= delivered + window => {}
            (OrderStatus::Delivered, _) => return Err(DomainError::ReturnWindowClosed),
            (status, _) => return Err(DomainError::NotReturnable(status)),
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

    /// Records a new claim, `open`, holding its units.
    pub fn open_claim(&mut self, mut new: Claim) -> Result<(), DomainError> {
        new.version = self.version;
        let plan = self.plan_give_back(&new.asks(), None, false)?;
        self.hold_runs(new.claim_id, plan.lines.into_iter().flat_map(|l| l.runs));
        self.claims.push(new);
        Ok(())
    }

    /// What refunding claim `id` gives back: its units' share from the places
    /// they took at the claim.
    pub fn plan_claim(&self, id: Uuid) -> Result<GiveBack, DomainError> {
        let claim = self.find_claim(id).ok_or(DomainError::UnknownReturn(id))?;
        self.plan_held(id, &claim.asks())
    }

    /// The replacement of claim `id` under `resolution`: per claimed item, the
    /// same product at its `unit_price`, with the claimed units' discount and tax
    /// (their paid value), or free alongside a refund; from `warehouse`, if given.
    pub fn replacement_of(
        &self,
        id: Uuid,
        resolution: Resolution,
        warehouse: Option<Uuid>,
    ) -> Result<Vec<(i32, NewLine)>, DomainError> {
        if !resolution.replaces() {
            return Ok(Vec::new());
        }
        let plan = self.plan_claim(id)?;
        let mut lines = Vec::with_capacity(plan.lines.len());
        for line in &plan.lines {
            let item = self.items.iter().find(|i| i.id == line.item_id);
            let item = item.ok_or(DomainError::UnknownItem(line.item_id))?;
            let gross = item.unit_price.checked_mul(line.quantity);
            let gross = gross.ok_or(DomainError::AmountOverflow)?;
            let (discount, tax) = match resolution {
                Resolution::Replacement => self.line_of(item).0.parts_runs(&line.runs)?,
                _ => (gross, Money::ZERO),
            };
            let total = gross
                .checked_sub(discount)
                .and_then(|m| m.checked_add(tax))
                .ok_or(DomainError::AmountOverflow)?;
            lines.push((
                item.id,
                NewLine {
                    item_id: None,
                    product_id: item.product_id,
                    product_sku: item.product_sku.clone(),
                    product_name: item.product_name.clone(),
                    warehouse_id: warehouse.unwrap_or(item.warehouse_id),
                    quantity: line.quantity,
                    unit_price: item.unit_price,
                    discount_amount: discount,
                    tax_amount: tax,
                    total_price: total,
                },
            ));
        }
        Ok(lines)
    }

    /// The parcel of claim `id` arrived; nothing is restocked.
    pub fn record_claim_received(
        &mut self,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        let version = self.version;
        let claim = self.claim_mut(id)?;
        claim.status = ClaimStatus::Received;
        claim.received_at.get_or_insert(at);
        claim.version = version;
        Ok(())
    }

    /// Claim `id` resolved as `resolution`: its units count as refunded (returned
    /// when its parcel came) or replaced, the replacement joins the order. The
    /// refund itself is recorded with the saga's compensations.
    pub fn record_claim_resolved(
        &mut self,
        id: Uuid,
        resolution: Resolution,
        refunded: Option<Money>,
        replacement: &[(i32, NewLine)],
        fulfillment_id: Option<String>,
        at: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        let claim = self.find_claim(id).ok_or(DomainError::UnknownReturn(id))?;
        let received = claim.status == ClaimStatus::Received;
        for unit in claim.asks() {
            let item = self.item_mut(unit.item_id)?;
            match (resolution, received) {
                (Resolution::Replacement, _) => item.replaced_quantity += unit.quantity,
                (_, true) => item.returned_quantity += unit.quantity,
                (_, false) => item.refunded_quantity += unit.quantity,
            }
        }
        self.held_runs.retain(|h| h.return_id != id);
        let by = AddedBy {
            kind: "claim".into(),
            id,
        };
        let mut added = Vec::with_capacity(replacement.len());
        for (replaces, line) in replacement {
            added.extend(self.add_lines(std::slice::from_ref(line), &by, Some(*replaces))?);
        }
        let version = self.version;
        let claim = self.claim_mut(id)?;
        claim.status = ClaimStatus::Resolved;
        claim.resolution = Some(resolution);
        claim.refund_amount = refunded;
        claim.replacement_items = added;
        claim.fulfillment_id = fulfillment_id;
        claim.failure = None;
        claim.resolved_at = Some(at);
        claim.closed_at = Some(at);
        claim.version = version;
        Ok(())
    }

    /// Closes claim `id` as `status` (`rejected` or `expired`): an open claim's
    /// units are free again; a received one's count as returned, with no refund.
    pub fn close_claim(
        &mut self,
        id: Uuid,
        status: ClaimStatus,
        at: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        let claim = self.find_claim(id).ok_or(DomainError::UnknownReturn(id))?;
        if claim.status == ClaimStatus::Received {
            self.return_held(id, claim.asks())?;
        } else {
            self.free_held_runs(id);
        }
        let version = self.version;
        let claim = self.claim_mut(id)?;
        claim.status = status;
        claim.closed_at = Some(at);
        claim.version = version;
        Ok(())
    }
}
