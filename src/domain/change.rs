//! Changing a placed order (api-changes.md, "Money of a change"): the operations
//! a change is made of, and their pricing against the order as it stands, which a
//! quote pins and a change applies exactly.
//!
//! An item a change names is rebased: its cumulative rule restarts from its units
//! left just after the change ([`Basis`]), so that its later give-backs, with the
//! earlier ones, still sum to its `total_price` exactly.

use super::order::FieldError;
use super::proration::{Basis, Line};
use super::{Money, NewItem, Order, OrderItem, SkuQuantity, MAX_ITEMS, MAX_QUANTITY};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// The most operations one change holds.
pub const MAX_OPERATIONS: usize = 50;

/// One operation of a change, named by its `op` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Operation {
    /// A new item.
    AddItem(NewItem),
    /// The item's new `quantity`, given-back units included.
    SetQuantity {
        #[schema(minimum = 1)]
        item_id: i32,
        #[schema(minimum = 0, maximum = 100_000)]
        quantity: i64,
        #[serde(default)]
        #[schema(value_type = Option<super::MoneyInput>)]
        discount_amount: Option<Money>,
        #[serde(default)]
        #[schema(value_type = Option<super::MoneyInput>)]
        tax_amount: Option<Money>,
    },
    /// Every unit left of the item goes.
    RemoveItem {
        #[schema(minimum = 1)]
        item_id: i32,
    },
    /// `quantity` units left of the item (all by default) give way to `new_item`.
    ReplaceItem {
        #[schema(minimum = 1)]
        item_id: i32,
        #[serde(default)]
        #[schema(minimum = 1, maximum = 100_000)]
        quantity: Option<i64>,
        new_item: NewItem,
    },
    /// The discount (and tax) of the item's units left.
    SetItemDiscount {
        #[schema(minimum = 1)]
        item_id: i32,
        #[schema(value_type = super::MoneyInput)]
        discount_amount: Money,
        #[serde(default)]
        #[schema(value_type = Option<super::MoneyInput>)]
        tax_amount: Option<Money>,
    },
    /// The order's and the parcel's address.
    SetShippingAddress {
        #[schema(value_type = super::schema::FreeObject)]
        address: Value,
    },
    /// The order's shipping amount.
    SetShippingAmount {
        #[schema(value_type = super::MoneyInput)]
        amount: Money,
    },
}

impl Operation {
    fn item_id(&self) -> Option<i32> {
        match self {
            Operation::SetQuantity { item_id, .. }
            | Operation::RemoveItem { item_id }
            | Operation::ReplaceItem { item_id, .. }
            | Operation::SetItemDiscount { item_id, .. } => Some(*item_id),
            _ => None,
        }
    }
}

/// A signed amount of money (a change's `delta`), written like [`Money`] with a
/// leading `-` when negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Delta(Decimal);

impl Delta {
    pub const ZERO: Delta = Delta(Decimal::ZERO);

    /// `after - before`.
    pub fn between(before: Money, after: Money) -> Delta {
        Delta(after.amount() - before.amount())
    }

    pub fn amount(self) -> Decimal {
        self.0
    }

    /// The amount charged: the delta when it is above zero.
    pub fn charge(self) -> Option<Money> {
        (self.0 > Decimal::ZERO)
            .then(|| Money::new(self.0).ok())
            .flatten()
    }

    /// The amount given back: minus the delta when it is below zero.
    pub fn give_back(self) -> Option<Money> {
        (self.0 < Decimal::ZERO)
            .then(|| Money::new(-self.0).ok())
            .flatten()
    }
}

impl std::fmt::Display for Delta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = self.0;
        d.rescale(2);
        write!(f, "{d}")
    }
}

impl Serialize for Delta {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Delta {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let (sign, digits) = match text.strip_prefix('-') {
            Some(rest) => (Decimal::NEGATIVE_ONE, rest),
            None => (Decimal::ONE, text.as_str()),
        };
        let money: Money = digits.parse().map_err(serde::de::Error::custom)?;
        Ok(Delta(sign * money.amount()))
    }
}

impl ToSchema for Delta {}
impl utoipa::PartialSchema for Delta {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^-?[0-9]{1,11}\.[0-9]{2}$"))
            .into()
    }
}

/// An item's money terms, before or after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LineTerms {
    pub quantity: i64,
    pub unit_price: Money,
    pub discount_amount: Money,
    pub tax_amount: Money,
    pub total_price: Money,
}

impl From<&OrderItem> for LineTerms {
    fn from(i: &OrderItem) -> Self {
        LineTerms {
            quantity: i.quantity,
            unit_price: i.unit_price,
            discount_amount: i.discount_amount,
            tax_amount: i.tax_amount,
            total_price: i.total_price,
        }
    }
}

/// What an operation does to one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChangeLine {
    pub op_index: usize,
    /// Null for a new item until the change applies.
    pub item_id: Option<i32>,
    pub product_sku: String,
    pub before: Option<LineTerms>,
    pub after: LineTerms,
    pub delta: Delta,
}

/// An order's totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TotalsOf {
    pub subtotal: Money,
    pub discount_amount: Money,
    pub tax_amount: Money,
    pub shipping_amount: Money,
    pub total_amount: Money,
}

/// The totals before and after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Totals {
    pub before: TotalsOf,
    pub after: TotalsOf,
    pub delta: Delta,
}

/// The address before and after a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AddressChange {
    #[schema(value_type = super::schema::FreeObject)]
    pub before: Value,
    #[schema(value_type = super::schema::FreeObject)]
    pub after: Value,
}

/// Units of one SKU in one warehouse, reserved or released by a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StockLine {
    pub product_id: Uuid,
    pub sku: String,
    pub warehouse_id: Uuid,
    pub quantity: i64,
}

impl StockLine {
    /// The units per SKU, as the warehouse releases them.
    pub fn skus(lines: &[StockLine]) -> Vec<SkuQuantity> {
        lines
            .iter()
            .map(|l| SkuQuantity {
                sku: l.sku.clone(),
                quantity: l.quantity,
            })
            .collect()
    }
}

/// The stock a change reserves and releases.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StockMoves {
    pub reserve: Vec<StockLine>,
    pub release: Vec<StockLine>,
}

/// The charge a change makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlannedCharge {
    pub method: String,
    pub amount: Money,
}

/// A refund a change makes on one of the order's payments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlannedRefund {
    pub payment_id: String,
    pub amount: Money,
}

/// The money a change moves, pinned by its quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Settlement {
    pub delta: Delta,
    pub charge: Option<PlannedCharge>,
    pub refunds: Vec<PlannedRefund>,
    pub clears_outstanding: Money,
}

/// The order's items, shipping and address once the change applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangedOrder {
    pub items: Vec<OrderItem>,
    pub bases: Vec<Basis>,
    pub shipping_amount: Money,
    pub shipping_address: Value,
}

/// A change priced on the order at one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangePlan {
    pub order_version: i64,
    pub lines: Vec<ChangeLine>,
    pub totals: Totals,
    pub shipping_address: Option<AddressChange>,
    pub stock: StockMoves,
    pub settlement: Settlement,
    pub result: ChangedOrder,
}

/// Why a change cannot be priced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeError {
    /// `422 validation_failed` naming `field`.
    Invalid(FieldError),
    /// `422 quantity_exceeded`.
    QuantityExceeded(String),
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ChangeError {
    ChangeError::Invalid(FieldError::new(field, message))
}

/// The rule an item follows now: its basis (or the whole item) and the units given
/// back before that basis.
fn basis_of(order_bases: &[Basis], item: &OrderItem) -> (Line, i64) {
    match order_bases.iter().find(|b| b.item_id == item.id) {
        Some(b) => (
            Line {
                quantity: b.quantity,
                unit_price: item.unit_price,
                discount: b.discount,
                tax: b.tax,
            },
            b.given,
        ),
        None => (item.line(), 0),
    }
}

impl Order {
    /// The money terms an item's give-backs follow, and the units given back
    /// before them (0 for an item no change named).
    pub fn line_of(&self, item: &OrderItem) -> (Line, i64) {
        basis_of(&self.bases, item)
    }

    /// Units of the item given back, held ones included.
    fn given_back(&self, item: &OrderItem) -> i64 {
        item.quantity - item.units_left() + self.held_by_returns(item.id, None)
    }

    /// The order's totals as they stand.
    pub fn totals(&self) -> TotalsOf {
        TotalsOf {
            subtotal: self.subtotal,
            discount_amount: self.discount_amount,
            tax_amount: self.tax_amount,
            shipping_amount: self.shipping_amount,
            total_amount: self.total_amount,
        }
    }

    /// Prices `ops` on the order as it stands; `method`, if given, pays a
    /// positive difference instead of the order's latest payment method.
    pub fn plan_change(
        &self,
        ops: &[Operation],
        method: Option<&str>,
    ) -> Result<ChangePlan, ChangeError> {
        if ops.is_empty() || ops.len() > MAX_OPERATIONS {
            return Err(invalid(
                "operations",
                format!("must hold 1 to {MAX_OPERATIONS} operations"),
            ));
        }
        let mut draft = Draft {
            items: self.items.clone(),
            bases: self.bases.clone(),
            stock: StockMoves::default(),
            lines: Vec::new(),
            next_id: self.items.iter().map(|i| i.id).max().unwrap_or(0) + 1,
        };
        let mut shipping_amount = self.shipping_amount;
        let mut address = self.shipping_address.clone();
        let mut named: Vec<i32> = Vec::new();
        let (mut address_set, mut amount_set) = (false, false);

        for (at, op) in ops.iter().enumerate() {
            let field = |name: &str| format!("operations[{at}].{name}");
            if let Some(id) = op.item_id() {
                if named.contains(&id) {
                    return Err(invalid(
                        field("item_id"),
                        "names an item another operation names",
                    ));
                }
                if !draft.items.iter().any(|i| i.id == id) {
                    return Err(invalid(
                        field("item_id"),
                        format!("the order has no item {id}"),
                    ));
                }
                named.push(id);
            }
            match op {
                Operation::AddItem(new) => {
                    self.add_item(&mut draft, new, at, &field)?;
                }
                Operation::SetQuantity {
                    item_id,
                    quantity,
                    discount_amount,
                    tax_amount,
                } => {
                    let item = self.item(*item_id);
                    if *quantity == item.quantity {
                        return Err(invalid(field("quantity"), "is the item's quantity already"));
                    }
                    let left = quantity - self.given_back(item);
                    if left < 0 {
                        return Err(ChangeError::QuantityExceeded(format!(
                            "item {item_id} has {} units given back; its quantity cannot go below them",
                            self.given_back(item)
                        )));
                    }
                    let target = Target {
                        left,
                        discount: *discount_amount,
                        tax: *tax_amount,
                    };
                    self.rework(&mut draft, item, target, at)?;
                }
                Operation::RemoveItem { item_id } => {
                    let item = self.item(*item_id);
                    let target = Target {
                        left: 0,
                        discount: None,
                        tax: None,
                    };
                    self.rework(&mut draft, item, target, at)?;
                }
                Operation::ReplaceItem {
                    item_id,
                    quantity,
                    new_item,
                } => {
                    let item = self.item(*item_id);
                    let left = item.units_left() - self.held_by_returns(item.id, None);
                    let give_up = quantity.unwrap_or(left);
                    if give_up < 1 || give_up > left {
                        return Err(ChangeError::QuantityExceeded(format!(
                            "item {item_id} has {left} units left, not {give_up}"
                        )));
                    }
                    let target = Target {
                        left: left - give_up,
                        discount: None,
                        tax: None,
                    };
                    self.rework(&mut draft, item, target, at)?;
                    let field = |name: &str| format!("operations[{at}].new_item.{name}");
                    self.add_item(&mut draft, new_item, at, &field)?;
                }
                Operation::SetItemDiscount {
                    item_id,
                    discount_amount,
                    tax_amount,
                } => {
                    let item = self.item(*item_id);
                    let target = Target {
                        left: item.units_left() - self.held_by_returns(item.id, None),
                        discount: Some(*discount_amount),
                        tax: *tax_amount,
                    };
                    self.rework(&mut draft, item, target, at)?;
                }
                Operation::SetShippingAddress { address: a } => {
                    if std::mem::replace(&mut address_set, true) {
                        return Err(invalid("operations", "set_shipping_address appears twice"));
                    }
                    if !a.is_object() {
                        return Err(invalid(field("address"), "must be an object"));
                    }
                    address = a.clone();
                }
                Operation::SetShippingAmount { amount } => {
                    if std::mem::replace(&mut amount_set, true) {
                        return Err(invalid("operations", "set_shipping_amount appears twice"));
                    }
                    shipping_amount = *amount;
                }
            }
        }

        let Draft {
            items,
            bases,
            stock,
            lines,
            ..
        } = draft;
        if items.len() > MAX_ITEMS {
            return Err(invalid(
                "operations",
                format!("the order would hold more than {MAX_ITEMS} items"),
            ));
        }
        let left: i64 = items
            .iter()
            .map(|i| i.units_left() - self.held_by_returns(i.id, None))
            .sum();
        if left < 1 {
            return Err(invalid(
                "operations",
                "at least one unit must stay left; to drop everything, cancel the order",
            ));
        }
        let after = totals_of(&items, shipping_amount).ok_or_else(|| {
            invalid(
                "operations",
                format!("the order total would exceed {}", Money::MAX),
            )
        })?;
        let before = self.totals();
        let changes_address = address != self.shipping_address;
        if lines.iter().all(|l| l.before.as_ref() == Some(&l.after))
            && !changes_address
            && after == before
        {
            return Err(invalid("operations", "the operations change nothing"));
        }
        let delta = Delta::between(before.total_amount, after.total_amount);
        let settlement = self.settle(delta, method)?;
        Ok(ChangePlan {
            order_version: self.version,
            lines,
            totals: Totals {
                before,
                after,
                delta,
            },
            shipping_address: changes_address.then(|| AddressChange {
                before: self.shipping_address.clone(),
                after: address.clone(),
            }),
            stock,
            settlement,
            result: ChangedOrder {
                items,
                bases,
                shipping_amount,
                shipping_address: address,
            },
        })
    }

    fn item(&self, id: i32) -> &OrderItem {
        // Checked by the caller.
        self.items
            .iter()
            .find(|i| i.id == id)
            .expect("a known item")
    }

    /// A new item `id` from `new`, with its line.
    fn add_item(
        &self,
        draft: &mut Draft,
        new: &NewItem,
        at: usize,
        field: &dyn Fn(&str) -> String,
    ) -> Result<(), ChangeError> {
        let id = draft.next_id;
        let mut errors = Vec::new();
        new.validate(&field(""), &mut errors);
        if let Some(e) = errors.into_iter().next() {
            return Err(ChangeError::Invalid(e));
        }
        let total = new
            .total_price()
            .ok_or_else(|| invalid(field("unit_price"), "is too large"))?;
        let item = OrderItem {
            id,
            product_id: new.product_id,
            product_sku: new.product_sku.clone(),
            product_name: new.product_name.clone(),
            warehouse_id: new.warehouse_id,
            quantity: new.quantity,
            unit_price: new.unit_price,
            discount_amount: new.discount_amount,
            tax_amount: new.tax_amount,
            total_price: total,
            cancelled_quantity: 0,
            returned_quantity: 0,
            refunded_quantity: 0,
            replaced_quantity: 0,
            added_by: None,
            replaces_item_id: None,
        };
        let line = ChangeLine {
            op_index: at,
            item_id: None,
            product_sku: item.product_sku.clone(),
            before: None,
            after: LineTerms::from(&item),
            delta: Delta::between(Money::ZERO, total),
        };
        draft.stock.reserve.push(stock_line(&item, item.quantity));
        draft.lines.push(line);
        draft.items.push(item);
        draft.next_id += 1;
        Ok(())
    }

    /// Sets `item` to `target`, rebasing it, and records its line and stock.
    fn rework(
        &self,
        draft: &mut Draft,
        item: &OrderItem,
        target: Target,
        at: usize,
    ) -> Result<(), ChangeError> {
        let field = |name: &str| format!("operations[{at}].{name}");
        let overflow = || invalid(field("quantity"), "makes an amount too large");
        let (line, offset) = self.line_of(item);
        let given = self.given_back(item);
        let left = item.quantity - given;
        // Places of the current rule taken so far: a prefix, since an editable
        // order never had a return closed without its units.
        let taken = given - offset;
        let d = |m: i64| line.discount.prorate(m, line.quantity);
        let t = |m: i64| line.tax.prorate(m, line.quantity);
        let sub = |a: Money, b: Money| a.checked_sub(b).ok_or_else(overflow);
        let discount_left = sub(line.discount, d(taken))?;
        let tax_left = sub(line.tax, t(taken))?;
        let (mut discount, mut tax) = (discount_left, tax_left);
        if target.left < left {
            // Removed units take their share as a cancel of them would.
            let r = left - target.left;
            discount = sub(discount, sub(d(taken + r), d(taken))?)?;
            tax = sub(tax, sub(t(taken + r), t(taken))?)?;
        } else if target.left > left {
            // Added units take the item's whole discount and tax per unit.
            let a = target.left - left;
            let per = |m: Money| match item.quantity {
                0 => Money::ZERO,
                n => m.prorate(a, n),
            };
            discount = discount
                .checked_add(per(item.discount_amount))
                .ok_or_else(overflow)?;
            tax = tax.checked_add(per(item.tax_amount)).ok_or_else(overflow)?;
        }
        discount = target.discount.unwrap_or(discount);
        tax = target.tax.unwrap_or(tax);
        if target.left > MAX_QUANTITY {
            return Err(invalid(
                field("quantity"),
                format!("must be at most {MAX_QUANTITY}"),
            ));
        }
        let gross_left = item
            .unit_price
            .checked_mul(target.left)
            .ok_or_else(overflow)?;
        if discount > gross_left {
            return Err(invalid(
                field("discount_amount"),
                "must not exceed the units left times unit_price",
            ));
        }
        let before_given_discount = sub(item.discount_amount, discount_left)?;
        let before_given_tax = sub(item.tax_amount, tax_left)?;
        let changed = draft
            .items
            .iter_mut()
            .find(|i| i.id == item.id)
            .expect("a known item");
        changed.quantity = given + target.left;
        changed.discount_amount = before_given_discount
            .checked_add(discount)
            .ok_or_else(overflow)?;
        changed.tax_amount = before_given_tax.checked_add(tax).ok_or_else(overflow)?;
        changed.total_price = changed
            .unit_price
            .checked_mul(changed.quantity)
            .and_then(|g| g.checked_sub(changed.discount_amount))
            .and_then(|g| g.checked_add(changed.tax_amount))
            .ok_or_else(overflow)?;
        draft.bases.retain(|b| b.item_id != item.id);
        draft.bases.push(Basis {
            item_id: item.id,
            given,
            quantity: target.left,
            discount,
            tax,
        });
        match target.left.cmp(&left) {
            std::cmp::Ordering::Greater => draft
                .stock
                .reserve
                .push(stock_line(item, target.left - left)),
            std::cmp::Ordering::Less => draft
                .stock
                .release
                .push(stock_line(item, left - target.left)),
            std::cmp::Ordering::Equal => {}
        }
        draft.lines.push(ChangeLine {
            op_index: at,
            item_id: Some(item.id),
            product_sku: item.product_sku.clone(),
            before: Some(LineTerms::from(item)),
            after: LineTerms::from(&*changed),
            delta: Delta::between(item.total_price, changed.total_price),
        });
        Ok(())
    }

    /// The money a change of `delta` moves: one charge of a positive delta; a
    /// negative one first lowers what is owed, then is refunded across the order's
    /// payments, newest first.
    fn settle(&self, delta: Delta, method: Option<&str>) -> Result<Settlement, ChangeError> {
        let mut settlement = Settlement {
            delta,
            charge: None,
            refunds: Vec::new(),
            clears_outstanding: Money::ZERO,
        };
        if let Some(amount) = delta.charge() {
            let method = method
                .map(str::to_owned)
                .or_else(|| self.latest_method())
                .ok_or_else(|| {
                    invalid(
                        "payment.method",
                        "the order has no payment method to charge",
                    )
                })?;
            settlement.charge = Some(PlannedCharge { method, amount });
        }
        if let Some(back) = delta.give_back() {
            let clears = back.min(self.outstanding_amount);
            settlement.clears_outstanding = clears;
            let rest = back.checked_sub(clears).unwrap_or(Money::ZERO);
            settlement.refunds = self
                .refund_split(rest)
                .into_iter()
                .map(|(payment_id, amount)| PlannedRefund { payment_id, amount })
                .collect();
        }
        Ok(settlement)
    }

    /// Applies a priced change at the next version (the caller moved it).
    pub fn apply_change(&mut self, plan: &ChangePlan) {
        let result = &plan.result;
        self.resource.items = result.items.clone();
        self.bases = result.bases.clone();
        self.resource.shipping_amount = result.shipping_amount;
        self.resource.shipping_address = result.shipping_address.clone();
        let t = plan.totals.after;
        self.resource.subtotal = t.subtotal;
        self.resource.discount_amount = t.discount_amount;
        self.resource.tax_amount = t.tax_amount;
        self.resource.total_amount = t.total_amount;
        let moved: Vec<i32> = plan.lines.iter().filter_map(|l| l.item_id).collect();
        self.free_runs.retain(|r| !moved.contains(&r.item_id));
    }
}

impl Order {
    /// The reservations that hold `lines`, and what to release of each: a change's
    /// holds first, newest first, then the create's reservation.
    pub fn release_plan(&self, lines: &[SkuQuantity]) -> Vec<(String, Vec<SkuQuantity>)> {
        let mut plan: Vec<(String, Vec<SkuQuantity>)> = Vec::new();
        let mut add = |reservation_id: &str, sku: &str, quantity: i64| {
            let entry = match plan.iter_mut().find(|(r, _)| r == reservation_id) {
                Some(entry) => entry,
                None => {
                    plan.push((reservation_id.to_owned(), Vec::new()));
                    plan.last_mut().expect("just pushed")
                }
            };
            entry.1.push(SkuQuantity {
                sku: sku.to_owned(),
                quantity,
            });
        };
        for line in lines {
            let mut rest = line.quantity;
            for hold in self.holds.iter().rev().filter(|h| h.sku == line.sku) {
                let take = rest.min(hold.quantity);
                if take > 0 {
                    add(&hold.reservation_id, &line.sku, take);
                    rest -= take;
                }
            }
            if let (Some(reservation_id), true) = (&self.reservation_id, rest > 0) {
                add(reservation_id, &line.sku, rest);
            }
        }
        plan
    }

    /// Takes released `lines` out of the changes' holds, as [`Order::release_plan`]
    /// released them.
    pub fn take_holds(&mut self, lines: &[SkuQuantity]) {
        for line in lines {
            let mut rest = line.quantity;
            for hold in self.holds.iter_mut().rev().filter(|h| h.sku == line.sku) {
                let take = rest.min(hold.quantity);
                hold.quantity -= take;
                rest -= take;
            }
        }
        self.holds.retain(|h| h.quantity > 0);
    }
}

/// A change being priced: the items, bases, stock and lines so far.
struct Draft {
    items: Vec<OrderItem>,
    bases: Vec<Basis>,
    stock: StockMoves,
    lines: Vec<ChangeLine>,
    /// The id the next new item takes.
    next_id: i32,
}

/// Units left an item is set to, and the discount and tax given for them.
struct Target {
    left: i64,
    discount: Option<Money>,
    tax: Option<Money>,
}

fn stock_line(item: &OrderItem, quantity: i64) -> StockLine {
    StockLine {
        product_id: item.product_id,
        sku: item.product_sku.clone(),
        warehouse_id: item.warehouse_id,
        quantity,
    }
}

fn totals_of(items: &[OrderItem], shipping: Money) -> Option<TotalsOf> {
    let subtotal = Money::sum(
        items
            .iter()
            .map(|i| i.unit_price.checked_mul(i.quantity))
            .collect::<Option<Vec<_>>>()?,
    )?;
    let discount = Money::sum(items.iter().map(|i| i.discount_amount))?;
    let tax = Money::sum(items.iter().map(|i| i.tax_amount))?;
    let total = subtotal
        .checked_sub(discount)?
        .checked_add(tax)?
        .checked_add(shipping)?;
    Some(TotalsOf {
        subtotal,
        discount_amount: discount,
        tax_amount: tax,
        shipping_amount: shipping,
        total_amount: total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::give_back::tests::{ask, cancel, capture, money, order};
    use crate::domain::OrderStatus;
    use proptest::prelude::*;

    /// A paid order of `lines`, confirmed, as a change finds it.
    fn paid(lines: &[(i64, i64, i64, i64)], shipping: i64) -> Order {
        let mut o = order(lines, shipping);
        capture(&mut o);
        o.status = OrderStatus::Confirmed;
        o
    }

    fn set_quantity(item_id: i32, quantity: i64) -> Operation {
        Operation::SetQuantity {
            item_id,
            quantity,
            discount_amount: None,
            tax_amount: None,
        }
    }

    /// Applies `plan` as the saga does once every step went through.
    fn apply(o: &mut Order, plan: &ChangePlan) {
        o.version += 1;
        o.apply_change(plan);
        if let Some(c) = &plan.settlement.charge {
            let attempt = o.next_payment_attempt();
            o.record_capture(
                attempt,
                &c.method,
                &format!("pay_{attempt}"),
                c.amount,
                chrono::Utc::now(),
            );
        }
        for r in &plan.settlement.refunds {
            o.record_refund_on(Some(&r.payment_id), r.amount).unwrap();
        }
    }

    #[test]
    fn the_example_of_the_money_of_a_change() {
        let mut o = paid(&[(3, 1000, 100, 83)], 0);
        cancel(&mut o, &[ask(1, 1)]).unwrap();

        let plan = o.plan_change(&[set_quantity(1, 4)], None).unwrap();

        let after = plan.lines[0].after;
        assert_eq!(after.quantity, 4);
        assert_eq!(after.discount_amount.to_string(), "1.33");
        assert_eq!(after.tax_amount.to_string(), "1.11");
        assert_eq!(after.total_price.to_string(), "39.78");
        assert_eq!(plan.settlement.delta.to_string(), "9.95");
        let charge = plan.settlement.charge.clone().unwrap();
        assert_eq!((charge.method.as_str(), charge.amount), ("pm", money(995)));
        assert_eq!(plan.stock.reserve[0].quantity, 1);
        apply(&mut o, &plan);

        // The new basis gives back 9.95, 9.93, 9.95 one by one, and the item's
        // give-backs (9.95 before) sum to its total.
        let shares: Vec<String> = (0..3)
            .map(|_| {
                let plan = cancel(&mut o, &[ask(1, 1)]).unwrap();
                plan.amount().unwrap().to_string()
            })
            .collect();
        assert_eq!(shares, ["9.95", "9.93", "9.95"]);
        assert_eq!(o.refunded_amount, o.captured_amount);
    }

    #[test]
    fn a_lower_quantity_gives_back_what_cancelling_those_units_would() {
        let mut o = paid(&[(5, 1999, 333, 171)], 500);
        cancel(&mut o, &[ask(1, 1)]).unwrap();
        let cancelled_two = o.plan_cancel(&[ask(1, 2)]).unwrap().amount().unwrap();

        let plan = o.plan_change(&[set_quantity(1, 3)], None).unwrap();

        assert_eq!(plan.settlement.delta.give_back(), Some(cancelled_two));
        let refunds: Vec<_> = plan
            .settlement
            .refunds
            .iter()
            .map(|r| (r.payment_id.as_str(), r.amount))
            .collect();
        assert_eq!(refunds, [("pay_1", cancelled_two)]);
        assert_eq!(plan.stock.release[0].quantity, 2);
        assert!(plan.settlement.charge.is_none());
    }

    #[test]
    fn operations_are_checked_naming_the_field() {
        let o = paid(&[(2, 1000, 0, 0)], 0);
        let field = |ops: &[Operation]| match o.plan_change(ops, None) {
            Err(ChangeError::Invalid(e)) => e.field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(&[set_quantity(9, 1)]), "operations[0].item_id");
        assert_eq!(field(&[set_quantity(1, 2)]), "operations[0].quantity");
        assert_eq!(
            field(&[set_quantity(1, 3), set_quantity(1, 4)]),
            "operations[1].item_id"
        );
        assert_eq!(field(&[Operation::RemoveItem { item_id: 1 }]), "operations");
        assert_eq!(field(&[]), "operations");
        let same = Operation::SetShippingAmount {
            amount: Money::ZERO,
        };
        assert_eq!(field(&[same]), "operations");
        let too_much = Operation::SetItemDiscount {
            item_id: 1,
            discount_amount: money(2001),
            tax_amount: None,
        };
        assert_eq!(field(&[too_much]), "operations[0].discount_amount");
        let mut cancelled = o.clone();
        cancel(&mut cancelled, &[ask(1, 1)]).unwrap();
        assert!(matches!(
            cancelled.plan_change(&[set_quantity(1, 0)], None),
            Err(ChangeError::QuantityExceeded(_))
        ));
    }

    #[test]
    fn a_cheaper_replacement_refunds_the_newest_payment_first() {
        let mut o = paid(&[(1, 1000, 0, 0)], 0);
        let add = Operation::AddItem(NewItem {
            product_id: uuid::Uuid::nil(),
            product_sku: "SKU-NEW".into(),
            product_name: "Cup".into(),
            warehouse_id: uuid::Uuid::nil(),
            quantity: 1,
            unit_price: money(500),
            discount_amount: Money::ZERO,
            tax_amount: Money::ZERO,
        });
        let plan = o.plan_change(&[add], None).unwrap();
        apply(&mut o, &plan);
        assert_eq!(o.captured_amount, money(1500));
        assert_eq!(o.items[1].id, 2);

        let plan = o
            .plan_change(&[Operation::RemoveItem { item_id: 1 }], None)
            .unwrap();

        let refunds: Vec<_> = plan
            .settlement
            .refunds
            .iter()
            .map(|r| (r.payment_id.as_str(), r.amount))
            .collect();
        assert_eq!(refunds, [("pay_2", money(500)), ("pay_1", money(500))]);
        apply(&mut o, &plan);
        assert_eq!(o.refunded_amount, money(1000));
        let per_payment: Vec<_> = o
            .captured_payments()
            .iter()
            .map(|(p, r)| (p.amount, *r))
            .collect();
        assert_eq!(
            per_payment,
            [(money(1000), money(500)), (money(500), money(500))]
        );
    }

    fn ops() -> impl Strategy<Value = Vec<(u8, i32, i64)>> {
        proptest::collection::vec((0u8..4, 1i32..=3, 0i64..=6), 1..8)
    }

    proptest! {
        /// Any mix of changes and cancels: each item's give-backs stay within its
        /// total, the refunds within the capture, and a whole cancel then refunds
        /// exactly what was captured.
        #[test]
        fn changes_and_give_backs_add_up(steps in ops()) {
            let mut o = paid(&[(3, 1000, 100, 83), (2, 1999, 0, 160), (4, 250, 99, 20)], 500);
            for (kind, item, n) in steps {
                match kind {
                    0 | 1 => {
                        let current = o.items.iter().find(|i| i.id == item).unwrap();
                        let given = current.quantity - current.units_left();
                        let op = set_quantity(item, given + n);
                        if let Ok(plan) = o.plan_change(&[op], None) {
                            apply(&mut o, &plan);
                        }
                    }
                    2 => {
                        let op = Operation::SetItemDiscount { item_id: item, discount_amount: money(n * 7), tax_amount: Some(money(n * 3)) };
                        if let Ok(plan) = o.plan_change(&[op], None) {
                            apply(&mut o, &plan);
                        }
                    }
                    _ => {
                        let _ = cancel(&mut o, &[ask(item, n.min(1))]);
                    }
                }
                prop_assert!(o.refunded_amount <= o.captured_amount);
                for (p, refunded) in o.captured_payments() {
                    prop_assert!(refunded <= p.amount);
                }
                // Balance: what is kept equals the kept value (total less give-backs).
                let kept = o.captured_amount.checked_sub(o.refunded_amount).unwrap();
                let left: i64 = o.items.iter().map(|i| i.units_left()).sum();
                if left > 0 {
                    let all = o.plan_cancel_all().unwrap().amount().unwrap();
                    prop_assert_eq!(kept, all);
                }
            }
            if o.items.iter().any(|i| i.units_left() > 0) {
                let plan = o.plan_cancel_all().unwrap();
                let refund = o.refund_for(&plan).unwrap();
                o.record_refund(refund).unwrap();
                o.record_cancel(&plan).unwrap();
            }
            prop_assert_eq!(o.refunded_amount, o.captured_amount);
        }
    }
}
