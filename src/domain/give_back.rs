//! Giving back units of an order (cancelling them now; returning and refunding them
//! later): which units, and the money they return by the cumulative rule of
//! [`super::proration`]. Every refund of an order is planned here, so the rules
//! that keep refunds exact live in one place: an item's give-backs sum to its
//! total exactly, and an order's refunds never exceed its capture.

use super::proration::Run;
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
    /// The places of the units under the cumulative rule.
    #[serde(default)]
    pub runs: Vec<Run>,
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
        let cancelled = self
            .items
            .iter()
            .filter_map(|i| i.line().give_back(0, i.cancelled_quantity).ok());
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
            let runs = self.next_runs(item, ask.quantity, except);
            lines.push(GiveBackLine {
                item_id: item.id,
                sku: item.product_sku.clone(),
                quantity: ask.quantity,
                amount: self.line_of(item).0.give_back_runs(&runs)?,
                runs,
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

    /// The places the next `q` units of `item` take: places given back below the
    /// top first (a return closed without its units), then places from the top.
    /// Units an open return (but `except`) holds count as taken from its request
    /// on (api.md, "Money rules"), so later give-backs take the next units' share.
    fn next_runs(&self, item: &OrderItem, q: i64, except: Option<uuid::Uuid>) -> Vec<Run> {
        let mut holes: Vec<Run> = self
            .free_runs
            .iter()
            .filter(|r| r.item_id == item.id)
            .copied()
            .collect();
        holes.sort_by_key(|r| r.from);
        let in_holes: i64 = holes.iter().map(|r| r.quantity).sum();
        // Places count from the item's basis when a change rebased it.
        let given_before = self.line_of(item).1;
        let taken = item.quantity - item.units_left() - given_before
            + self.held_by_returns(item.id, except);
        let mut runs = Vec::new();
        let mut left = q;
        for hole in holes {
            if left == 0 {
                break;
            }
            let quantity = hole.quantity.min(left);
            runs.push(Run { quantity, ..hole });
            left -= quantity;
        }
        if left > 0 {
            let from = taken + in_holes;
            runs.push(Run {
                item_id: item.id,
                from,
                quantity: left,
            });
        }
        runs
    }

    /// Takes the places `runs` out of those given back below the top.
    pub(super) fn take_free_runs(&mut self, runs: &[Run]) {
        for taken in runs {
            let (c, d) = (taken.from, taken.from + taken.quantity);
            let mut kept = Vec::with_capacity(self.free_runs.len() + 1);
            for free in self.free_runs.drain(..) {
                let (a, b) = (free.from, free.from + free.quantity);
                if free.item_id != taken.item_id || d <= a || b <= c {
                    kept.push(free);
                    continue;
                }
                let piece = |from: i64, to: i64| Run {
                    from,
                    quantity: to - from,
                    ..free
                };
                if a < c {
                    kept.push(piece(a, c));
                }
                if d < b {
                    kept.push(piece(d, b));
                }
            }
            self.free_runs = kept;
        }
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
    /// What a change's difference kept owed takes first ([`Order::clears_for`]) is
    /// not refunded.
    pub fn refund_for(&self, plan: &GiveBack) -> Result<Money, DomainError> {
        if self.captured_amount == Money::ZERO {
            return Ok(Money::ZERO);
        }
        let owed = self.owed_refunds()?;
        let available = self.refundable().checked_sub(owed).unwrap_or(Money::ZERO);
        let back = plan.amount()?;
        let refunded = back.checked_sub(self.clears_for(plan)?);
        Ok(refunded.unwrap_or(Money::ZERO).min(available))
    }

    /// What a give-back nets against `outstanding_amount` before anything is
    /// refunded (api-changes.md §10).
    pub fn clears_for(&self, plan: &GiveBack) -> Result<Money, DomainError> {
        Ok(plan.amount()?.min(self.outstanding_amount))
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
        let runs: Vec<Run> = plan.lines.iter().flat_map(|l| l.runs.clone()).collect();
        self.take_free_runs(&runs);
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::domain::{Currency, NewItem, NewOrder};
    use chrono::{Duration, Utc};
    use proptest::prelude::*;
    use uuid::Uuid;

    pub(in crate::domain) fn money(cents: i64) -> Money {
        Money::new(rust_decimal::Decimal::new(cents, 2)).unwrap()
    }

    /// An order of `lines` (quantity, unit price, discount, tax in cents) with
    /// `shipping`, as created.
    pub(in crate::domain) fn order(lines: &[(i64, i64, i64, i64)], shipping: i64) -> Order {
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

    pub(in crate::domain) fn capture(o: &mut Order) {
        let due = o.amount_due();
        o.record_capture(1, "pm", "pay_1", due, Utc::now());
    }

    /// Cancels `asks` the way the saga does: the refund confirmed in full.
    pub(in crate::domain) fn cancel(
        o: &mut Order,
        asks: &[ItemQuantity],
    ) -> Result<GiveBack, DomainError> {
        let plan = o.plan_cancel(asks)?;
        let refund = o.refund_for(&plan)?;
        o.record_refund(refund)?;
        o.record_cancel(&plan)?;
        Ok(plan)
    }

    pub(in crate::domain) fn ask(item_id: i32, quantity: i64) -> ItemQuantity {
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

    /// `lines` captured and delivered, without shipping.
    fn delivered(lines: &[(i64, i64, i64, i64)]) -> Order {
        use crate::domain::OrderStatus::*;
        let mut o = order(lines, 0);
        capture(&mut o);
        for to in [Confirmed, Processing, Shipped, Delivered] {
            o.transition(to, None, "system", Utc::now()).unwrap();
        }
        o
    }

    /// Asks for return `n` of `asks`.
    fn request(o: &mut Order, n: u128, asks: &[ItemQuantity]) -> Result<Uuid, DomainError> {
        use crate::domain::{Return, ReturnItem, ReturnStatus};
        let items: Vec<ReturnItem> = asks
            .iter()
            .map(|a| ReturnItem {
                item_id: a.item_id,
                quantity: a.quantity,
                reason: None,
            })
            .collect();
        o.check_return(&items, Utc::now(), Duration::days(30))?;
        let return_id = Uuid::from_u128(n);
        o.request_return(Return {
            return_id,
            order_id: o.id,
            status: ReturnStatus::Requested,
            items,
            refund_amount: None,
            reason: None,
            requested_at: Utc::now(),
            received_at: None,
            refunded_at: None,
            closed_at: None,
            expires_at: Utc::now(),
            version: o.version,
        })?;
        Ok(return_id)
    }

    /// Refunds `asks` without a return, as the saga does; returns the refund.
    fn refund_items(o: &mut Order, asks: &[ItemQuantity]) -> Result<GiveBack, DomainError> {
        let plan = o.plan_refund(asks)?;
        let refund = o.refund_for(&plan)?;
        assert_eq!(refund, plan.amount()?, "never capped");
        o.record_items_refunded(&plan, refund, Utc::now())?;
        Ok(plan)
    }

    #[test]
    fn a_held_return_keeps_its_share_and_a_refund_meanwhile_takes_the_next() {
        // 2 x 10.00 with 0.01 tax: the first place returns 10.00, the second 10.01.
        let mut o = delivered(&[(2, 1000, 0, 1)]);
        let held = request(&mut o, 1, &[ask(1, 1)]).unwrap();
        let plan = o.plan_return(held).unwrap();
        o.record_return_received(held, Utc::now()).unwrap();
        o.owed.push(crate::domain::Compensation::RefundPayment {
            payment_id: "pay_1".into(),
            amount: plan.amount().unwrap(),
            return_id: Some(held),
        });
        assert_eq!(
            refund_items(&mut o, &[ask(1, 1)])
                .unwrap()
                .amount()
                .unwrap(),
            money(1001)
        );
        assert_eq!(o.plan_return(held).unwrap().amount().unwrap(), money(1000));
        o.record_return_refunded(held, money(1000), Utc::now())
            .unwrap();
        assert_eq!(o.refunded_amount, o.captured_amount);
        assert_eq!(o.status, crate::domain::OrderStatus::Refunded);
    }

    #[test]
    fn a_rejected_received_return_keeps_its_units_and_a_requested_one_gives_its_place_back() {
        use crate::domain::ReturnStatus::{Received, Rejected};
        // 9.95, 9.93, 9.95 by place.
        let mut o = delivered(&[(3, 1000, 100, 83)]);
        let first = request(&mut o, 1, &[ask(1, 1)]).unwrap();
        let second = request(&mut o, 2, &[ask(1, 1)]).unwrap();
        o.close_return(first, Rejected, Utc::now()).unwrap();
        assert_eq!(o.items[0].returned_quantity, 0);
        assert_eq!(
            refund_items(&mut o, &[ask(1, 1)])
                .unwrap()
                .amount()
                .unwrap(),
            money(995)
        );
        assert_eq!(o.plan_return(second).unwrap().amount().unwrap(), money(993));

        o.record_return_received(second, Utc::now()).unwrap();
        assert_eq!(o.find_return(second).unwrap().status, Received);
        o.close_return(second, Rejected, Utc::now()).unwrap();
        assert_eq!(
            o.items[0].returned_quantity, 1,
            "restocked units stay returned"
        );
        assert!(request(&mut o, 3, &[ask(1, 2)]).is_err());
        assert_eq!(
            refund_items(&mut o, &[ask(1, 1)])
                .unwrap()
                .amount()
                .unwrap(),
            money(995)
        );
        assert_eq!(o.items[0].units_left(), 0);
    }

    #[test]
    fn resolving_counts_the_refund_made_outside_and_closes_the_return() {
        use crate::domain::{Compensation, ReturnStatus};
        let mut o = delivered(&[(2, 1000, 0, 1)]);
        refund_items(&mut o, &[ask(1, 1)]).unwrap();
        let owed = request(&mut o, 1, &[ask(1, 1)]).unwrap();
        o.record_return_received(owed, Utc::now()).unwrap();
        o.owed.push(Compensation::RefundPayment {
            payment_id: "pay_1".into(),
            amount: money(1001),
            return_id: Some(owed),
        });
        o.park("refund_payment", "step_refused", "no", Utc::now());
        assert!(matches!(
            o.resolve_owed(Some(money(1002)), None, Utc::now()),
            Err(DomainError::RefundExceedsOwed { .. })
        ));
        o.resolve_owed(Some(money(1001)), Some("by hand".into()), Utc::now())
            .unwrap();
        assert_eq!(o.refunded_amount, o.captured_amount);
        assert_eq!(o.status, crate::domain::OrderStatus::Refunded);
        assert!(o.owed.is_empty() && o.attention.is_none());
        let closed = o.find_return(owed).unwrap();
        assert_eq!(closed.status, ReturnStatus::Refunded);
        assert_eq!(closed.refund_amount, Some(money(1001)));
        assert_eq!(o.items[0].returned_quantity, 1);
        assert_eq!(o.outside_refunds.len(), 1);
    }

    proptest! {
        /// For any delivered order and any mix of returns (refunded, refused and
        /// paid later, rejected before or after their parcel came) and refunds
        /// without a return, once every unit left is refunded: each item's
        /// give-backs sum to its total, less only what rejected received returns
        /// held, and no refund is ever capped.
        #[test]
        fn returns_and_refunds_add_up_to_each_item_total(
            lines in lines(),
            ops in proptest::collection::vec((0u8..6, 1i32..=4, 1i64..=6, 0usize..8), 0..30),
        ) {
            use crate::domain::{Compensation, ReturnStatus};
            let mut o = delivered(&lines);
            let mut given = vec![Money::ZERO; lines.len()];
            let mut dropped = vec![false; lines.len()];
            let mut shares: Vec<(Uuid, GiveBack)> = Vec::new();
            let add = |given: &mut Vec<Money>, plan: &GiveBack| {
                for l in &plan.lines {
                    let i = (l.item_id - 1) as usize;
                    given[i] = given[i].checked_add(l.amount).unwrap();
                }
            };
            let open = |o: &Order, status: ReturnStatus| -> Vec<Uuid> {
                o.returns.iter().filter(|r| r.status == status).map(|r| r.return_id).collect()
            };
            for (n, &(op, item_id, quantity, pick)) in ops.iter().enumerate() {
                let requested = open(&o, ReturnStatus::Requested);
                let received = open(&o, ReturnStatus::Received);
                let chosen = |ids: &[Uuid]| (!ids.is_empty()).then(|| ids[pick % ids.len()]);
                match op {
                    0 => {
                        request(&mut o, n as u128 + 1, &[ask(item_id, quantity)]).ok();
                    }
                    1 | 2 => if let Some(id) = chosen(&requested) {
                        let plan = o.plan_return(id).unwrap();
                        let refund = o.refund_for(&plan).unwrap();
                        prop_assert_eq!(refund, plan.amount().unwrap());
                        o.record_return_received(id, Utc::now()).unwrap();
                        if op == 1 {
                            o.record_return_refunded(id, refund, Utc::now()).unwrap();
                            add(&mut given, &plan);
                        } else {
                            o.owed.push(Compensation::RefundPayment {
                                payment_id: "pay_1".into(),
                                amount: refund,
                                return_id: Some(id),
                            });
                            shares.push((id, plan));
                        }
                    },
                    3 => if let Some(id) = chosen(&[requested, received].concat()) {
                        if let Some((_, plan)) = shares.iter().find(|(r, _)| *r == id) {
                            for l in &plan.lines {
                                dropped[(l.item_id - 1) as usize] = true;
                            }
                        }
                        o.close_return(id, ReturnStatus::Rejected, Utc::now()).unwrap();
                    },
                    4 => {
                        if let Ok(plan) = refund_items(&mut o, &[ask(item_id, quantity)]) {
                            add(&mut given, &plan);
                        }
                    }
                    _ => {
                        for (id, plan) in std::mem::take(&mut shares) {
                            if o.find_return(id).unwrap().status == ReturnStatus::Received {
                                o.record_return_refunded(id, plan.amount().unwrap(), Utc::now()).unwrap();
                                add(&mut given, &plan);
                            }
                        }
                        o.owed.clear();
                    }
                }
                prop_assert!(o.refunded_amount <= o.captured_amount);
            }
            // Everything left: owed refunds paid, open returns received, the rest refunded.
            for (id, plan) in std::mem::take(&mut shares) {
                if o.find_return(id).unwrap().status == ReturnStatus::Received {
                    o.record_return_refunded(id, plan.amount().unwrap(), Utc::now()).unwrap();
                    add(&mut given, &plan);
                }
            }
            o.owed.clear();
            for id in open(&o, ReturnStatus::Requested) {
                let plan = o.plan_return(id).unwrap();
                o.record_return_refunded(id, plan.amount().unwrap(), Utc::now()).unwrap();
                add(&mut given, &plan);
            }
            let rest: Vec<ItemQuantity> = o
                .items
                .iter()
                .filter(|i| i.units_left() > 0)
                .map(|i| ask(i.id, i.units_left()))
                .collect();
            if !rest.is_empty() {
                let plan = refund_items(&mut o, &rest).unwrap();
                add(&mut given, &plan);
            }
            for (i, item) in o.items.iter().enumerate() {
                prop_assert_eq!(item.units_left(), 0);
                match dropped[i] {
                    true => prop_assert!(given[i] <= item.total_price),
                    false => prop_assert_eq!(given[i], item.total_price),
                }
            }
            if !dropped.contains(&true) {
                prop_assert_eq!(o.refunded_amount, o.captured_amount);
                prop_assert_eq!(o.status, crate::domain::OrderStatus::Refunded);
            }
        }
    }
}
