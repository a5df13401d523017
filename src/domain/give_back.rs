//! Giving back units of an order (cancelling them now; returning and refunding them
//! later): which units, and the money they return by the cumulative rule of
//! [`super::proration`]. Every refund of an order is planned here, so the rules
//! that keep refunds exact live in one place: an item's give-backs sum to its
//! total exactly, and an order's refunds never exceed its capture.

use super::{DomainError, Money, Order, OrderItem, OrderView};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Units of one item, as a caller names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemQuantity {
    #[schema(minimum = 1)]
    pub item_id: i32,
    #[schema(minimum = 1, maximum = 100_000)]
    pub quantity: i64,
}

/// A quantity of one SKU, as the warehouse and the fulfillment service count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuQuantity {
    pub sku: String,
    pub quantity: i64,
}

/// Units of one item given back and their share of its total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GiveBackLine {
    pub item_id: i32,
    pub sku: String,
    pub quantity: i64,
    pub amount: Money,
}

/// Units given back together, and what they return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GiveBack {
    pub lines: Vec<GiveBackLine>,
    /// The shipping, given back with the last units of an order that never shipped.
    pub shipping: Money,
    /// No unit of the order is left after these.
    pub last: bool,
}

impl GiveBack {
    /// The share of the units plus any shipping.
    pub fn amount(&self) -> Result<Money, DomainError> {
        let shares = self.lines.iter().map(|l| l.amount);
        Money::sum(shares.chain([self.shipping])).ok_or(DomainError::AmountOverflow)
    }

    /// The units per SKU, for the warehouse and the fulfillment service.
    pub fn skus(&self) -> Vec<SkuQuantity> {
        let mut skus: Vec<SkuQuantity> = Vec::new();
        for line in &self.lines {
            match skus.iter_mut().find(|s| s.sku == line.sku) {
                Some(s) => s.quantity += line.quantity,
                None => skus.push(SkuQuantity {
                    sku: line.sku.clone(),
                    quantity: line.quantity,
                }),
            }
        }
        skus
    }
}

impl OrderView {
    /// What a payment of this order takes: its total, less the share of any unit
    /// cancelled before it was paid.
    pub fn amount_due(&self) -> Money {
        let cancelled = self.items.iter().filter_map(|i| {
            let line = super::proration::Line {
                quantity: i.quantity,
                unit_price: i.unit_price,
                discount: i.discount_amount,
                tax: i.tax_amount,
            };
            line.give_back(0, i.cancelled_quantity).ok()
        });
        let given = Money::sum(cancelled).unwrap_or(Money::ZERO);
        self.total_amount.checked_sub(given).unwrap_or(Money::ZERO)
    }
}

impl Order {
    /// Cancelling `asks` before shipment: refuses an item the order does not have,
    /// an item named twice, and more units than are left. The last units take the
    /// shipping with them.
    pub fn plan_cancel(&self, asks: &[ItemQuantity]) -> Result<GiveBack, DomainError> {
        self.plan_give_back(asks, None, true)
    }

    /// Giving back `asks` out of the units left that no open return holds (but
    /// return `except`, which is the one giving them back).
    pub(super) fn plan_give_back(
        &self,
        asks: &[ItemQuantity],
        except: Option<uuid::Uuid>,
        shipping_with_last: bool,
    ) -> Result<GiveBack, DomainError> {
        let free = |item: &OrderItem| item.units_left() - self.held_by_returns(item.id, except);
        let mut lines = Vec::with_capacity(asks.len());
        for ask in asks {
            if lines
                .iter()
                .any(|l: &GiveBackLine| l.item_id == ask.item_id)
            {
                return Err(DomainError::ItemNamedTwice(ask.item_id));
            }
            let item = self
                .items
                .iter()
                .find(|i| i.id == ask.item_id)
                .ok_or(DomainError::UnknownItem(ask.item_id))?;
            if ask.quantity > free(item) {
                return Err(DomainError::QuantityExceeded {
                    item_id: item.id,
                    left: free(item),
                    asked: ask.quantity,
                });
            }
            lines.push(GiveBackLine {
                item_id: item.id,
                sku: item.product_sku.clone(),
                quantity: ask.quantity,
                amount: item.give_back_amount(ask.quantity)?,
            });
        }
        let left: i64 = self.items.iter().map(free).sum();
        let asked: i64 = asks.iter().map(|a| a.quantity).sum();
        let last = asked == left;
        Ok(GiveBack {
            lines,
            shipping: match last && shipping_with_last {
                true => self.shipping_amount,
                false => Money::ZERO,
            },
            last,
        })
    }

    pub(super) fn item_mut(&mut self, item_id: i32) -> Result<&mut OrderItem, DomainError> {
        let item = self.items.iter_mut().find(|i| i.id == item_id);
        item.ok_or(DomainError::UnknownItem(item_id))
    }

    /// Cancelling every unit left, before shipment.
    pub fn plan_cancel_all(&self) -> Result<GiveBack, DomainError> {
        let asks: Vec<ItemQuantity> = self
            .items
            .iter()
            .filter(|i| i.units_left() > 0)
            .map(|i| ItemQuantity {
                item_id: i.id,
                quantity: i.units_left(),
            })
            .collect();
        self.plan_cancel(&asks)
    }

    /// What a give-back refunds: its share of what was charged, never more than is
    /// left of the capture once the refunds an operator still owes are set aside.
    /// Nothing before the order was paid.
    pub fn refund_for(&self, plan: &GiveBack) -> Result<Money, DomainError> {
        if self.captured_amount == Money::ZERO {
            return Ok(Money::ZERO);
        }
        let owed = Money::sum(self.owed.iter().filter_map(|c| match c {
            super::Compensation::RefundPayment { amount, .. } => Some(*amount),
            _ => None,
        }))
        .ok_or(DomainError::AmountOverflow)?;
        let available = self.refundable().checked_sub(owed).unwrap_or(Money::ZERO);
        Ok(plan.amount()?.min(available))
    }

    /// Records the units of `plan` as cancelled.
    pub fn record_cancel(&mut self, plan: &GiveBack) -> Result<(), DomainError> {
        for line in &plan.lines {
            let item = self.item_mut(line.item_id)?;
            if line.quantity > item.units_left() {
                return Err(DomainError::QuantityExceeded {
                    item_id: item.id,
                    left: item.units_left(),
                    asked: line.quantity,
                });
            }
            item.cancelled_quantity += line.quantity;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Currency, NewItem, NewOrder};
    use chrono::{Duration, Utc};
    use proptest::prelude::*;
    use uuid::Uuid;

    fn money(cents: i64) -> Money {
        Money::new(rust_decimal::Decimal::new(cents, 2)).unwrap()
    }

    /// An order of `lines` (quantity, unit price, discount, tax in cents) with
    /// `shipping`, as created.
    fn order(lines: &[(i64, i64, i64, i64)], shipping: i64) -> Order {
        let items = lines
            .iter()
            .enumerate()
            .map(|(n, &(quantity, unit, discount, tax))| NewItem {
                product_id: Uuid::nil(),
                product_sku: format!("SKU-{}", n % 2),
                product_name: "Mug".into(),
                warehouse_id: Uuid::nil(),
                quantity,
                unit_price: money(unit),
                discount_amount: money(discount),
                tax_amount: money(tax),
            })
            .collect();
        let new = NewOrder {
            customer_id: None,
            currency: Currency::parse("USD").unwrap(),
            items,
            shipping_amount: money(shipping),
            shipping_address: serde_json::json!({}),
            billing_address: serde_json::json!({}),
            notes: None,
            metadata: serde_json::json!({}),
            payment: None,
        };
        Order::create(
            Uuid::nil(),
            "ORD".into(),
            &new,
            Utc::now(),
            Duration::hours(1),
        )
    }

    fn capture(o: &mut Order) {
        let due = o.amount_due();
        o.record_capture(1, "pm", "pay_1", due, Utc::now());
    }

    /// Cancels `asks` the way the saga does: the refund confirmed in full.
    fn cancel(o: &mut Order, asks: &[ItemQuantity]) -> Result<GiveBack, DomainError> {
        let plan = o.plan_cancel(asks)?;
        let refund = o.refund_for(&plan)?;
        o.record_refund(refund)?;
        o.record_cancel(&plan)?;
        Ok(plan)
    }

    fn ask(item_id: i32, quantity: i64) -> ItemQuantity {
        ItemQuantity { item_id, quantity }
    }

    #[test]
    fn units_cancelled_one_by_one_refund_the_example_of_the_money_rules() {
        let mut o = order(&[(3, 1000, 100, 83)], 500);
        capture(&mut o);
        let refunds: Vec<String> = (0..3)
            .map(|_| {
                let plan = cancel(&mut o, &[ask(1, 1)]).unwrap();
                plan.amount().unwrap().to_string()
            })
            .collect();
        // The last unit takes the shipping with it.
        assert_eq!(refunds, ["9.95", "9.93", "14.95"]);
        assert_eq!(o.refunded_amount, o.captured_amount);
    }

    #[test]
    fn unknown_items_repeated_items_and_too_many_units_are_refused() {
        let o = order(&[(2, 1000, 0, 0)], 0);
        assert_eq!(
            o.plan_cancel(&[ask(9, 1)]),
            Err(DomainError::UnknownItem(9))
        );
        assert_eq!(
            o.plan_cancel(&[ask(1, 1), ask(1, 1)]),
            Err(DomainError::ItemNamedTwice(1))
        );
        assert!(matches!(
            o.plan_cancel(&[ask(1, 3)]),
            Err(DomainError::QuantityExceeded { left: 2, .. })
        ));
    }

    #[test]
    fn a_draft_cancelled_in_part_is_charged_for_what_is_left() {
        let mut o = order(&[(3, 1000, 100, 83), (1, 500, 0, 0)], 500);
        assert_eq!(o.amount_due().to_string(), "39.83");
        cancel(&mut o, &[ask(1, 1)]).unwrap();
        assert_eq!(o.refunded_amount, Money::ZERO);
        assert_eq!(o.amount_due().to_string(), "29.88");
        capture(&mut o);
        cancel(&mut o, &[ask(1, 2), ask(2, 1)]).unwrap();
        assert_eq!(o.refunded_amount.to_string(), "29.88");
    }

    fn lines() -> impl Strategy<Value = Vec<(i64, i64, i64, i64)>> {
        let line = (1i64..=12, 0i64..=50_000, 0i64..=10_000, 0i64..=5_000).prop_map(
            |(n, unit, discount_pct, tax)| (n, unit, unit * n * discount_pct / 10_000, tax),
        );
        proptest::collection::vec(line, 1..=4)
    }

    proptest! {
        /// For any order and any sequence of cancels, some before the payment and
        /// the rest after: each item's refunds stay within its total and reach it
        /// exactly when all its units were cancelled after the payment; the order's
        /// refunds never exceed the capture and equal it once every unit is gone.
        #[test]
        fn refunds_stay_within_each_item_and_the_capture(
            lines in lines(),
            shipping in 0i64..=2_000,
            asks in proptest::collection::vec((1i32..=4, 1i64..=12), 0..30),
            paid_after in 0usize..30,
        ) {
            let mut o = order(&lines, shipping);
            let mut refunded = vec![Money::ZERO; lines.len()];
            let mut cancelled_unpaid = vec![0; lines.len()];
            let mut cancel_and_count = |o: &mut Order, asks: &[ItemQuantity]| {
                let paid = !o.payments.is_empty();
                let before = o.refunded_amount;
                let plan = cancel(o, asks)?;
                for line in &plan.lines {
                    let i = (line.item_id - 1) as usize;
                    match paid {
                        true => refunded[i] = refunded[i].checked_add(line.amount).unwrap(),
                        false => cancelled_unpaid[i] += line.quantity,
                    }
                }
                let expected = if paid { plan.amount()? } else { Money::ZERO };
                assert_eq!(o.refunded_amount.checked_sub(before).unwrap(), expected);
                Ok::<_, DomainError>(())
            };
            for (step, &(item_id, quantity)) in asks.iter().enumerate() {
                let units_left = o.items.iter().any(|i| i.units_left() > 0);
                if step == paid_after && units_left {
                    capture(&mut o);
                }
                cancel_and_count(&mut o, &[ask(item_id, quantity)]).ok();
                prop_assert!(o.refunded_amount <= o.captured_amount);
            }
            let left: i64 = o.items.iter().map(|i| i.units_left()).sum();
            if left > 0 {
                if o.payments.is_empty() {
                    capture(&mut o);
                }
                let rest = o.plan_cancel_all().unwrap();
                let asks: Vec<_> = rest.lines.iter().map(|l| ask(l.item_id, l.quantity)).collect();
                cancel_and_count(&mut o, &asks).unwrap();
            }
            prop_assert_eq!(o.refunded_amount, o.captured_amount);
            for (i, item) in o.items.iter().enumerate() {
                prop_assert_eq!(item.units_left(), 0);
                prop_assert!(refunded[i] <= item.total_price);
                if cancelled_unpaid[i] == 0 {
                    prop_assert_eq!(refunded[i], item.total_price);
                }
            }
        }
    }
}
