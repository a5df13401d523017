//! Exchanges (api-changes.md §6): units of a delivered order sent back for other
//! items, settled as one net amount once the parcel arrives. The returned units
//! are held from the request on, like a return's, so their share (`return_value`)
//! is fixed then; the new items are priced as a change's added items are.

use super::{
    AddedBy, Attention, Delta, DomainError, Failure, MadeCharge, MadeRefund, Money, NewItem, Order,
    OrderItem, ReturnItem,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Where an exchange stands: `requested` -> `received` -> `settled`, or
/// `cancelled` (from `requested` or `received`), or `expired` (from `requested`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExchangeStatus {
    Requested,
    Received,
    Settled,
    Cancelled,
    Expired,
}

impl ExchangeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeStatus::Requested => "requested",
            ExchangeStatus::Received => "received",
            ExchangeStatus::Settled => "settled",
            ExchangeStatus::Cancelled => "cancelled",
            ExchangeStatus::Expired => "expired",
        }
    }
}

/// An item an exchange or a claim ships: `item_id` once it joined the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewLine {
    pub item_id: Option<i32>,
    pub product_id: Uuid,
    pub product_sku: String,
    pub product_name: String,
    pub warehouse_id: Uuid,
    pub quantity: i64,
    pub unit_price: Money,
    pub discount_amount: Money,
    pub tax_amount: Money,
    pub total_price: Money,
}

impl NewLine {
    /// The line of `new`, which passed [`NewItem::validate`].
    pub fn of(new: &NewItem) -> Result<NewLine, DomainError> {
        Ok(NewLine {
            item_id: None,
            product_id: new.product_id,
            product_sku: new.product_sku.clone(),
            product_name: new.product_name.clone(),
            warehouse_id: new.warehouse_id,
            quantity: new.quantity,
            unit_price: new.unit_price,
            discount_amount: new.discount_amount,
            tax_amount: new.tax_amount,
            total_price: new.total_price().ok_or(DomainError::AmountOverflow)?,
        })
    }
}

/// The one net money movement of an exchange.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct ExchangeSettlement {
    pub charge: Option<MadeCharge>,
    pub refunds: Vec<MadeRefund>,
    /// A positive difference the customer still has to pay (after a decline).
    pub amount_due: Money,
}

/// An exchange, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Exchange {
    pub exchange_id: Uuid,
    pub order_id: Uuid,
    pub status: ExchangeStatus,
    pub return_items: Vec<ReturnItem>,
    pub new_items: Vec<NewLine>,
    /// The returned units' share by the cumulative rule, fixed at the request.
    pub return_value: Money,
    pub new_value: Money,
    /// `new_value - return_value`: charged when positive, refunded when negative.
    pub difference: Delta,
    pub settlement: ExchangeSettlement,
    pub fulfillment_id: Option<String>,
    /// Why the settlement was refused (`insufficient_stock`, `payment_declined`).
    pub failure: Option<Failure>,
    /// Set while a refund it owes waits for an operator (the order is parked).
    #[serde(default)]
    pub attention: Option<Attention>,
    pub reason: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub received_at: Option<DateTime<Utc>>,
    pub settled_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub version: i64,
    /// The method a positive difference is charged with; the order's latest when
    /// none was given. Kept for the saga, not shown.
    #[serde(default)]
    #[schema(ignore)]
    pub payment_method: Option<String>,
    /// Settlements tried so far; each charge takes a key of its own. Not shown.
    #[serde(default)]
    #[schema(ignore)]
    pub tries: u32,
}

/// What the API shows of an exchange: all but the fields kept for its saga.
impl Exchange {
    pub fn view(&self) -> serde_json::Value {
        let mut shown = serde_json::to_value(self).unwrap_or_default();
        if let Some(fields) = shown.as_object_mut() {
            fields.remove("payment_method");
            fields.remove("tries");
        }
        shown
    }
}

impl Exchange {
    /// The returned units.
    pub fn asks(&self) -> Vec<super::ItemQuantity> {
        units(&self.return_items)
    }

    pub fn is_open(&self) -> bool {
        matches!(
            self.status,
            ExchangeStatus::Requested | ExchangeStatus::Received
        )
    }
}

fn units(items: &[ReturnItem]) -> Vec<super::ItemQuantity> {
    let units = items.iter().map(|i| super::ItemQuantity {
        item_id: i.item_id,
        quantity: i.quantity,
    });
    units.collect()
}

impl Order {
    /// The exchange `id` of this order.
    pub fn find_exchange(&self, id: Uuid) -> Option<&Exchange> {
        self.exchanges.iter().find(|e| e.exchange_id == id)
    }

    fn exchange_mut(&mut self, id: Uuid) -> Result<&mut Exchange, DomainError> {
        let found = self.exchanges.iter_mut().find(|e| e.exchange_id == id);
        found.ok_or(DomainError::UnknownReturn(id))
    }

    /// Prices an exchange of `return_items` for `new_items` asked for at `at`: a
    /// return's checks, then the returned units' share and the new lines.
    pub fn plan_exchange(
        &self,
        return_items: &[ReturnItem],
        new_items: &[NewItem],
        at: DateTime<Utc>,
        window: chrono::Duration,
    ) -> Result<(Money, Vec<NewLine>), DomainError> {
        self.check_return(return_items, at, window)?;
        let plan = self.plan_give_back(&units(return_items), None, false)?;
        let lines = new_items
            .iter()
            .map(NewLine::of)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((plan.amount()?, lines))
    }

    /// Records a new exchange, `requested`: its returned units take their places
    /// under the cumulative rule now, as a return's do.
    pub fn request_exchange(&mut self, mut new: Exchange) -> Result<(), DomainError> {
        new.version = self.version;
        let plan = self.plan_give_back(&new.asks(), None, false)?;
        self.hold_runs(new.exchange_id, plan.lines.into_iter().flat_map(|l| l.runs));
        self.exchanges.push(new);
        Ok(())
    }

    /// The parcel of exchange `id` arrived and was restocked: its units count as
    /// returned, for good.
    pub fn record_exchange_received(
        &mut self,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        let Some(exchange) = self.find_exchange(id) else {
            return Err(DomainError::UnknownReturn(id));
        };
        if exchange.status == ExchangeStatus::Requested {
            self.return_held(id, exchange.asks())?;
        }
        let version = self.version;
        let exchange = self.exchange_mut(id)?;
        exchange.status = ExchangeStatus::Received;
        exchange.received_at.get_or_insert(at);
        exchange.version = version;
        Ok(())
    }

    /// A settlement of exchange `id` was refused: it stays `received`, with why
    /// and (after a decline) what is due.
    pub fn record_exchange_refused(
        &mut self,
        id: Uuid,
        failure: Failure,
        amount_due: Money,
    ) -> Result<(), DomainError> {
        let version = self.version;
        let exchange = self.exchange_mut(id)?;
        exchange.failure = Some(failure);
        exchange.settlement.amount_due = amount_due;
        exchange.tries += 1;
        exchange.version = version;
        Ok(())
    }

    /// Exchange `id` settled: its new items join the order (shipped on
    /// `fulfillment_id`), with the one money movement the saga made.
    pub fn record_exchange_settled(
        &mut self,
        id: Uuid,
        fulfillment_id: Option<String>,
        settlement: ExchangeSettlement,
        at: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        let lines = self.find_exchange(id).map(|e| e.new_items.clone());
        let lines = lines.ok_or(DomainError::UnknownReturn(id))?;
        let by = AddedBy {
            kind: "exchange".into(),
            id,
        };
        let lines = self.add_lines(&lines, &by, None)?;
        let version = self.version;
        let exchange = self.exchange_mut(id)?;
        exchange.new_items = lines;
        exchange.fulfillment_id = fulfillment_id;
        exchange.settlement = settlement;
        exchange.failure = None;
        exchange.tries += 1;
        exchange.status = ExchangeStatus::Settled;
        exchange.settled_at = Some(at);
        exchange.closed_at = Some(at);
        exchange.version = version;
        Ok(())
    }

    /// Closes exchange `id` as `status` (`cancelled` or `expired`). A `requested`
    /// one frees its units; a `received` one stays a plain return, refunded
    /// `refunded` by the saga.
    pub fn close_exchange(
        &mut self,
        id: Uuid,
        status: ExchangeStatus,
        refunds: Vec<MadeRefund>,
        at: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        let Some(exchange) = self.find_exchange(id) else {
            return Err(DomainError::UnknownReturn(id));
        };
        if exchange.status == ExchangeStatus::Requested {
            self.free_held_runs(id);
        }
        let version = self.version;
        let exchange = self.exchange_mut(id)?;
        exchange.status = status;
        exchange.settlement.refunds = refunds;
        exchange.settlement.amount_due = Money::ZERO;
        exchange.closed_at = Some(at);
        exchange.version = version;
        Ok(())
    }

    /// Exchange or claim `id` made what parks the order: it shows the order's
    /// attention until an operator's retry or resolve clears it.
    pub fn attend(&mut self, id: Uuid) {
        let (attention, version) = (self.attention.clone(), self.version);
        if let Some(e) = self.exchanges.iter_mut().find(|e| e.exchange_id == id) {
            (e.attention, e.version) = (attention.clone(), version);
        }
        if let Some(c) = self.claims.iter_mut().find(|c| c.claim_id == id) {
            (c.attention, c.version) = (attention, version);
        }
    }

    /// Once the order waits for nobody, neither do its exchanges and claims.
    pub(super) fn clear_attended(&mut self) {
        if self.attention.is_some() {
            return;
        }
        let version = self.version;
        let exchanges = self
            .exchanges
            .iter_mut()
            .map(|e| (&mut e.attention, &mut e.version));
        let claims = self
            .claims
            .iter_mut()
            .map(|c| (&mut c.attention, &mut c.version));
        for (attention, at) in exchanges.chain(claims) {
            if attention.take().is_some() {
                *at = version;
            }
        }
    }

    /// Adds `lines` to the order as new items added by `by` (a claim's
    /// replacement names the item it `replaces`), with the totals; returns the
    /// lines with their new item ids.
    pub(super) fn add_lines(
        &mut self,
        lines: &[NewLine],
        by: &AddedBy,
        replaces: Option<i32>,
    ) -> Result<Vec<NewLine>, DomainError> {
        let mut added = Vec::with_capacity(lines.len());
        for line in lines {
            let id = self.items.iter().map(|i| i.id).max().unwrap_or(0) + 1;
            self.resource.items.push(OrderItem {
                id,
                product_id: line.product_id,
                product_sku: line.product_sku.clone(),
                product_name: line.product_name.clone(),
                warehouse_id: line.warehouse_id,
                quantity: line.quantity,
                unit_price: line.unit_price,
                discount_amount: line.discount_amount,
                tax_amount: line.tax_amount,
                total_price: line.total_price,
                cancelled_quantity: 0,
                returned_quantity: 0,
                refunded_quantity: 0,
                replaced_quantity: 0,
                added_by: Some(by.clone()),
                replaces_item_id: replaces,
            });
            let gross = line.unit_price.checked_mul(line.quantity);
            let add = |a: Money, b: Option<Money>| {
                b.and_then(|b| a.checked_add(b))
                    .ok_or(DomainError::AmountOverflow)
            };
            let view = &mut self.resource;
            view.subtotal = add(view.subtotal, gross)?;
            view.discount_amount = add(view.discount_amount, Some(line.discount_amount))?;
            view.tax_amount = add(view.tax_amount, Some(line.tax_amount))?;
            view.total_amount = add(view.total_amount, Some(line.total_price))?;
            added.push(NewLine {
                item_id: Some(id),
                ..line.clone()
            });
        }
        Ok(added)
    }

    /// The units that return or exchange `id` puts back on sale.
    pub fn restocked_units(&self, id: Uuid) -> Vec<super::ItemQuantity> {
        let of_return = self.find_return(id).map(|r| units(&r.items));
        let of_exchange = || self.find_exchange(id).map(Exchange::asks);
        of_return.or_else(of_exchange).unwrap_or_default()
    }
}
