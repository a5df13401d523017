//! The order: what a shop asks for (`NewOrder`), what the service keeps (`Order`) and
//! what it shows (`OrderView`).

use super::proration::{Line, Run};
use super::{
    Currency, DomainError, Money, MoneyInput, OrderStatus, PaymentStatus, Return, SkuQuantity,
};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// Largest quantity of one item; guards the money arithmetic against overflow.
pub const MAX_QUANTITY: i64 = 100_000;
/// Most items of one order.
pub const MAX_ITEMS: usize = 200;

/// A validation problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    /// An error naming `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An order as a shop submits it (`POST /orders`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    #[serde(default)]
    pub customer_id: Option<Uuid>,
    pub currency: Currency,
    #[schema(min_items = 1, max_items = 200)]
    pub items: Vec<NewItem>,
    #[serde(default)]
    #[schema(value_type = MoneyInput)]
    pub shipping_amount: Money,
    #[serde(default = "empty_object")]
    #[schema(value_type = super::schema::FreeObject)]
    pub shipping_address: Value,
    #[serde(default = "empty_object")]
    #[schema(value_type = super::schema::FreeObject)]
    pub billing_address: Value,
    #[serde(default)]
    #[schema(
        max_length = 2000,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    pub notes: Option<String>,
    #[serde(default = "empty_object")]
    #[schema(value_type = super::schema::FreeObject)]
    pub metadata: Value,
    #[serde(default)]
    pub payment: Option<NewPayment>,
}

/// One line of a new order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewItem {
    pub product_id: Uuid,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub product_sku: String,
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub product_name: String,
    pub warehouse_id: Uuid,
    #[schema(minimum = 1, maximum = 100_000)]
    pub quantity: i64,
    #[schema(value_type = MoneyInput)]
    pub unit_price: Money,
    #[serde(default)]
    #[schema(value_type = MoneyInput)]
    pub discount_amount: Money,
    #[serde(default)]
    #[schema(value_type = MoneyInput)]
    pub tax_amount: Money,
}

/// A payment for an order: with a create, or later for a draft.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPayment {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub method: String,
    /// When given, it must equal what the order asks.
    #[serde(default)]
    #[schema(value_type = Option<MoneyInput>)]
    pub amount: Option<Money>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

impl NewPayment {
    /// Field errors of a payment, with `prefix` naming where it sits in the request.
    pub fn validate(&self, prefix: &str) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.method.trim().is_empty() || self.method.chars().count() > 100 {
            errors.push(FieldError::new(
                format!("{prefix}method"),
                "must be a non-empty string of at most 100 characters",
            ));
        }
        errors
    }
}

impl NewOrder {
    /// Every rule a new order must meet that its types do not already enforce.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.items.is_empty() {
            errors.push(FieldError::new("items", "must contain at least one item"));
        }
        if self.items.len() > MAX_ITEMS {
            errors.push(FieldError::new(
                "items",
                format!("must contain at most {MAX_ITEMS} items"),
            ));
        }
        for (i, item) in self.items.iter().enumerate() {
            item.validate(&format!("items[{i}]."), &mut errors);
        }
        for (field, value) in [
            ("shipping_address", &self.shipping_address),
            ("billing_address", &self.billing_address),
            ("metadata", &self.metadata),
        ] {
            if !value.is_object() {
                errors.push(FieldError::new(field, "must be a JSON object"));
            }
        }
        if self
            .notes
            .as_ref()
            .is_some_and(|n| n.chars().count() > 2000)
        {
            errors.push(FieldError::new("notes", "must be at most 2000 characters"));
        }
        if let Some(payment) = &self.payment {
            errors.extend(payment.validate("payment."));
            if payment.amount.is_some_and(|a| Some(a) != self.total()) {
                errors.push(FieldError::new(
                    "payment.amount",
                    "must equal the order total when given",
                ));
            }
        }
        if errors.is_empty() {
            let subtotal = Money::sum(self.items.iter().filter_map(NewItem::gross));
            if subtotal.is_none() || self.total().is_none() {
                errors.push(FieldError::new(
                    "items",
                    format!("the order total must be at most {}", Money::MAX),
                ));
            } else if self.total() == Some(Money::ZERO) {
                // The payment service charges no zero amount, so such an order could
                // never be paid.
                errors.push(FieldError::new(
                    "items",
                    "the order total must be more than 0.00",
                ));
            }
        }
        errors
    }

    /// The order total, `None` when the lines do not add up (overflow or a discount
    /// larger than the line).
    pub fn total(&self) -> Option<Money> {
        let lines = self
            .items
            .iter()
            .map(NewItem::total_price)
            .collect::<Option<Vec<_>>>()?;
        Money::sum(lines)?.checked_add(self.shipping_amount)
    }
}

impl NewItem {
    pub fn validate(&self, prefix: &str, errors: &mut Vec<FieldError>) {
        let field = |name: &str| format!("{prefix}{name}");
        if self.product_sku.trim().is_empty() || self.product_sku.chars().count() > 100 {
            errors.push(FieldError::new(
                field("product_sku"),
                "must be a non-empty string of at most 100 characters",
            ));
        }
        if self.product_name.trim().is_empty() || self.product_name.chars().count() > 255 {
            errors.push(FieldError::new(
                field("product_name"),
                "must be a non-empty string of at most 255 characters",
            ));
        }
        if self.quantity <= 0 || self.quantity > MAX_QUANTITY {
            errors.push(FieldError::new(
                field("quantity"),
                format!("must be between 1 and {MAX_QUANTITY}"),
            ));
            return;
        }
        match self.gross() {
            None => errors.push(FieldError::new(
                field("unit_price"),
                format!("times quantity must be at most {}", Money::MAX),
            )),
            Some(gross) if self.discount_amount > gross => errors.push(FieldError::new(
                field("discount_amount"),
                "must not exceed quantity * unit_price",
            )),
            Some(_) if self.total_price().is_none() => errors.push(FieldError::new(
                field("tax_amount"),
                format!("makes the line total exceed {}", Money::MAX),
            )),
            Some(_) => {}
        }
    }

    fn gross(&self) -> Option<Money> {
        self.unit_price.checked_mul(self.quantity)
    }

    /// `quantity * unit_price - discount_amount + tax_amount`.
    pub fn total_price(&self) -> Option<Money> {
        self.gross()?
            .checked_sub(self.discount_amount)?
            .checked_add(self.tax_amount)
    }
}

/// Why the create saga ended in `failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Failure {
    pub code: String,
    pub message: String,
}

/// Why an order needs an operator: a step a downstream service finally refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Attention {
    /// The saga step, e.g. `refund_payment`.
    pub step: String,
    /// `compensation_refused` or `step_refused`.
    pub code: String,
    /// The downstream's answer.
    pub message: String,
    pub since: DateTime<Utc>,
}

/// Something a saga did downstream that must be given back when the saga is
/// undone. The `..Under` forms stand for a step whose outcome is unknown (it was
/// cancelled while the call was under way): undoing it first looks up what the
/// call made under its idempotency key, and undoes only that (never sending the
/// call again, which would make it when it never took effect).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Compensation {
    /// Releases `items` of the reservation, or everything left when empty.
    ReleaseStock {
        reservation_id: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        items: Vec<SkuQuantity>,
    },
    /// Refunds `amount`; for return `return_id`, which is refunded with it.
    RefundPayment {
        payment_id: String,
        amount: Money,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        return_id: Option<Uuid>,
    },
    /// Cancels `items` of the fulfillment, or all of it when empty.
    CancelFulfillment {
        fulfillment_id: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        items: Vec<SkuQuantity>,
    },
    ReleaseStockReservedUnder {
        key: String,
    },
    RefundChargeUnder {
        key: String,
        method: String,
    },
    CancelFulfillmentCreatedUnder {
        key: String,
    },
    /// Not an undo: the restock of received return `return_id` that the
    /// warehouse refused, owed until an operator's retry puts its units back.
    Restock {
        return_id: Uuid,
    },
}

impl Compensation {
    /// The saga step that undoes it.
    pub fn step(&self) -> &'static str {
        match self {
            Compensation::ReleaseStock { .. } | Compensation::ReleaseStockReservedUnder { .. } => {
                "release_stock"
            }
            Compensation::RefundPayment { .. } | Compensation::RefundChargeUnder { .. } => {
                "refund_payment"
            }
            Compensation::CancelFulfillment { .. }
            | Compensation::CancelFulfillmentCreatedUnder { .. } => "cancel_fulfillment",
            Compensation::Restock { .. } => "restock",
        }
    }

    /// The forward step it undoes.
    pub fn undoes(&self) -> &'static str {
        match self {
            Compensation::ReleaseStock { .. } | Compensation::ReleaseStockReservedUnder { .. } => {
                "reserve_stock"
            }
            Compensation::RefundPayment { .. } | Compensation::RefundChargeUnder { .. } => {
                "charge_payment"
            }
            Compensation::CancelFulfillment { .. }
            | Compensation::CancelFulfillmentCreatedUnder { .. } => "create_fulfillment",
            // Owed forward, not undone.
            Compensation::Restock { .. } => "restock",
        }
    }
}

/// One line of an order as the service keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderItem {
    pub id: i32,
    pub product_id: Uuid,
    pub product_sku: String,
    pub product_name: String,
    pub warehouse_id: Uuid,
    pub quantity: i64,
    pub unit_price: Money,
    pub discount_amount: Money,
    pub tax_amount: Money,
    pub total_price: Money,
    pub cancelled_quantity: i64,
    pub returned_quantity: i64,
    pub refunded_quantity: i64,
    /// Units a claim replaced (counted as given back).
    #[serde(default)]
    pub replaced_quantity: i64,
    /// The change, exchange or claim that added the item; null for the create's.
    #[serde(default)]
    pub added_by: Option<AddedBy>,
    /// The item a claim's replacement stands for.
    #[serde(default)]
    pub replaces_item_id: Option<i32>,
}

/// What added an item after checkout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AddedBy {
    /// `change`, `exchange` or `claim`.
    pub kind: String,
    pub id: Uuid,
}

impl OrderItem {
    /// Units not yet cancelled, returned, refunded or replaced.
    pub fn units_left(&self) -> i64 {
        self.quantity
            - self.cancelled_quantity
            - self.returned_quantity
            - self.refunded_quantity
            - self.replaced_quantity
    }

    /// What giving back `quantity` more of the units left returns, by the
    /// cumulative rule (see [`super::proration`]).
    pub fn give_back_amount(&self, quantity: i64) -> Result<Money, DomainError> {
        if quantity > self.units_left() {
            return Err(DomainError::QuantityExceeded {
                item_id: self.id,
                left: self.units_left(),
                asked: quantity,
            });
        }
        self.line()
            .give_back(self.quantity - self.units_left(), quantity)
    }

    /// The money terms of the item, for the cumulative rule.
    pub fn line(&self) -> Line {
        Line {
            quantity: self.quantity,
            unit_price: self.unit_price,
            discount: self.discount_amount,
            tax: self.tax_amount,
        }
    }
}

/// One entry of the status history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusChange {
    pub from: Option<OrderStatus>,
    pub to: OrderStatus,
    pub reason: Option<String>,
    pub actor: String,
    pub at: DateTime<Utc>,
    pub version: i64,
}

/// One attempt to take a payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentAttempt {
    pub attempt: u32,
    pub payment_id: Option<String>,
    pub method: String,
    pub amount: Money,
    pub status: String,
    pub failure_code: Option<String>,
    pub at: DateTime<Utc>,
    /// What was refunded of a captured payment. Kept from the second payment on; an
    /// order with one payment refunded `refunded_amount` of it.
    #[serde(default)]
    pub refunded: Money,
    /// The flow that made it (`create_order`, `apply_change`, ...) and the
    /// idempotency key of the charge, for the ledger.
    #[serde(default)]
    pub flow: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
}

/// An event the order publishes; its id is fixed by order, topic and version so
/// that consumers can drop redeliveries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderEvent {
    pub id: Uuid,
    pub topic: String,
    pub order_id: Uuid,
    pub version: i64,
    pub at: DateTime<Utc>,
    pub data: Value,
}

/// A message to the customer about the order; its key is fixed by order, template
/// and version so that the notification service sends it once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderNotification {
    pub key: String,
    pub order_id: Uuid,
    pub customer_id: Option<Uuid>,
    pub template: String,
    pub data: Value,
}

/// The authoritative order, kept as the state of the order's virtual object: the
/// resource the API shows, plus what only the sagas need. It derefs to the
/// resource, so `order.status` reads and writes the shown status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    #[serde(flatten)]
    pub resource: OrderView,
    /// The payment method given with the create, if any.
    pub payment_method: Option<String>,
    pub reservation_id: Option<String>,
    /// When the warehouse gives the reserved stock back unless it is committed.
    #[serde(default)]
    pub reservation_expires_at: Option<DateTime<Utc>>,
    /// The reservation was made permanent (`commit`).
    #[serde(default)]
    pub reservation_committed: bool,
    pub payment_id: Option<String>,
    pub fulfillment_id: Option<String>,
    pub history: Vec<StatusChange>,
    pub payments: Vec<PaymentAttempt>,
    /// Compensations a downstream finally refused, and a refused restock: what
    /// the order still owes, for an operator to retry or resolve.
    #[serde(default)]
    pub owed: Vec<Compensation>,
    /// Its returns, oldest first.
    #[serde(default)]
    pub returns: Vec<Return>,
    /// Its exchanges, oldest first.
    #[serde(default)]
    pub exchanges: Vec<super::Exchange>,
    /// Its claims, oldest first.
    #[serde(default)]
    pub claims: Vec<super::Claim>,
    /// The places (for the cumulative rule) that each open return holds, fixed
    /// when it was requested.
    #[serde(default)]
    pub held_runs: Vec<HeldRuns>,
    /// Places below the top that a return closed without its units gave back;
    /// the next give-back of the item takes them first.
    #[serde(default)]
    pub free_runs: Vec<Run>,
    /// Refunds an operator made outside the payment service and recorded.
    #[serde(default)]
    pub outside_refunds: Vec<OutsideRefund>,
    /// Where the cumulative rule of each item a change named restarts.
    #[serde(default)]
    pub bases: Vec<super::proration::Basis>,
    /// Reservations changes made, beside the create's, and what each holds.
    #[serde(default)]
    pub holds: Vec<Hold>,
    /// Every charge and refund, for the ledger.
    #[serde(default)]
    pub movements: Vec<super::ledger::Movement>,
}

/// Units a change reserved, per SKU, under its own reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub reservation_id: String,
    pub sku: String,
    pub quantity: i64,
}

/// The places an open return holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldRuns {
    pub return_id: Uuid,
    pub runs: Vec<Run>,
}

/// A refund made by other means than the payment service (an operator's
/// `refunded_outside`), as the order's refunds record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutsideRefund {
    /// Unique within the order: `outside:<version>`.
    pub key: String,
    pub payment_id: String,
    pub amount: Money,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

impl std::ops::Deref for Order {
    type Target = OrderView;
    fn deref(&self) -> &OrderView {
        &self.resource
    }
}

impl std::ops::DerefMut for Order {
    fn deref_mut(&mut self) -> &mut OrderView {
        &mut self.resource
    }
}

/// The order as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    pub id: Uuid,
    pub order_number: String,
    pub customer_id: Option<Uuid>,
    pub status: OrderStatus,
    pub payment_status: PaymentStatus,
    pub currency: Currency,
    pub subtotal: Money,
    pub discount_amount: Money,
    pub tax_amount: Money,
    pub shipping_amount: Money,
    pub total_amount: Money,
    pub captured_amount: Money,
    pub refunded_amount: Money,
    /// A change's difference kept owed, not yet paid.
    #[serde(default)]
    pub outstanding_amount: Money,
    pub items: Vec<OrderItem>,
    #[schema(value_type = Object)]
    pub shipping_address: Value,
    #[schema(value_type = Object)]
    pub billing_address: Value,
    pub notes: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub failure: Option<Failure>,
    /// Set while the order needs an operator.
    #[serde(default)]
    pub attention: Option<Attention>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl Order {
    /// A new order at version 1, `draft` with payment `pending`. `new` must have
    /// passed [`NewOrder::validate`].
    pub fn create(
        id: Uuid,
        order_number: String,
        new: &NewOrder,
        at: DateTime<Utc>,
        draft_ttl: Duration,
    ) -> Order {
        let items: Vec<OrderItem> = new
            .items
            .iter()
            .zip(1..)
            .map(|(item, id)| OrderItem {
                id,
                product_id: item.product_id,
                product_sku: item.product_sku.clone(),
                product_name: item.product_name.clone(),
                warehouse_id: item.warehouse_id,
                quantity: item.quantity,
                unit_price: item.unit_price,
                discount_amount: item.discount_amount,
                tax_amount: item.tax_amount,
                total_price: item.total_price().unwrap_or_default(),
                cancelled_quantity: 0,
                returned_quantity: 0,
                refunded_quantity: 0,
                replaced_quantity: 0,
                added_by: None,
                replaces_item_id: None,
            })
            .collect();
        let sum = |f: fn(&NewItem) -> Option<Money>| {
            Money::sum(new.items.iter().filter_map(f)).unwrap_or_default()
        };
        let resource = OrderView {
            id,
            order_number,
            customer_id: new.customer_id,
            status: OrderStatus::Draft,
            payment_status: PaymentStatus::Pending,
            currency: new.currency.clone(),
            subtotal: sum(|i| i.gross()),
            discount_amount: sum(|i| Some(i.discount_amount)),
            tax_amount: sum(|i| Some(i.tax_amount)),
            shipping_amount: new.shipping_amount,
            total_amount: new.total().unwrap_or_default(),
            captured_amount: Money::ZERO,
            refunded_amount: Money::ZERO,
            outstanding_amount: Money::ZERO,
            items,
            shipping_address: new.shipping_address.clone(),
            billing_address: new.billing_address.clone(),
            notes: new.notes.clone(),
            metadata: new.metadata.clone(),
            failure: None,
            attention: None,
            version: 1,
            created_at: at,
            updated_at: at,
            expires_at: new.payment.is_none().then(|| at + draft_ttl),
            cancelled_at: None,
            completed_at: None,
        };
        let mut order = Order {
            resource,
            payment_method: new.payment.as_ref().map(|p| p.method.clone()),
            reservation_id: None,
            reservation_expires_at: None,
            reservation_committed: false,
            payment_id: None,
            fulfillment_id: None,
            history: Vec::new(),
            payments: Vec::new(),
            owed: Vec::new(),
            returns: Vec::new(),
            exchanges: Vec::new(),
            claims: Vec::new(),
            held_runs: Vec::new(),
            free_runs: Vec::new(),
            outside_refunds: Vec::new(),
            bases: Vec::new(),
            holds: Vec::new(),
            movements: Vec::new(),
        };
        order.record_status(None, OrderStatus::Draft, None, "customer", at);
        order
    }

    /// Moves to `to` if the transition table allows it, recording who and why in
    /// the status history. The caller has already bumped the version for this change.
    pub fn transition(
        &mut self,
        to: OrderStatus,
        reason: Option<String>,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        let from = self.status;
        if !from.can_become(to) {
            return Err(DomainError::InvalidTransition { from, to });
        }
        self.status = to;
        match to {
            OrderStatus::Cancelled => self.cancelled_at = Some(at),
            OrderStatus::Delivered | OrderStatus::Refunded => self.completed_at = Some(at),
            _ => {}
        }
        if to != OrderStatus::Draft {
            self.expires_at = None;
        }
        self.record_status(Some(from), to, reason, actor, at);
        Ok(())
    }

    fn record_status(
        &mut self,
        from: Option<OrderStatus>,
        to: OrderStatus,
        reason: Option<String>,
        actor: &str,
        at: DateTime<Utc>,
    ) {
        self.history.push(StatusChange {
            from,
            to,
            reason,
            actor: actor.to_owned(),
            at,
            version: self.version,
        });
    }

    /// Records a captured payment.
    pub fn record_capture(
        &mut self,
        attempt: u32,
        method: &str,
        payment_id: &str,
        amount: Money,
        at: DateTime<Utc>,
    ) {
        self.payments.push(PaymentAttempt {
            attempt,
            payment_id: Some(payment_id.to_owned()),
            method: method.to_owned(),
            amount,
            status: "captured".into(),
            failure_code: None,
            at,
            refunded: Money::ZERO,
            flow: None,
            key: None,
        });
        self.record_movement("charge", amount, Some(payment_id), at);
        self.payment_method = Some(method.to_owned());
        self.payment_id = Some(payment_id.to_owned());
        // A change's charge adds to the create's.
        self.captured_amount = self
            .captured_amount
            .checked_add(amount)
            .unwrap_or(Money::MAX);
        self.payment_status = if self.refunded_amount.is_zero() {
            PaymentStatus::Captured
        } else {
            PaymentStatus::PartiallyRefunded
        };
    }

    /// Names the flow and key of the newest payment, for the ledger.
    pub fn tag_latest_payment(&mut self, flow: &str, key: &str) {
        if let Some(p) = self.payments.last_mut() {
            p.flow = Some(flow.to_owned());
            p.key = Some(key.to_owned());
        }
        let charge = self.movements.iter_mut().rev().find(|m| m.kind == "charge");
        if let Some(m) = charge {
            m.idempotency_key = Some(key.to_owned());
        }
    }

    /// The captured payments, oldest first, each with what was refunded of it.
    pub fn captured_payments(&self) -> Vec<(&PaymentAttempt, Money)> {
        let captured: Vec<&PaymentAttempt> = self
            .payments
            .iter()
            .filter(|p| p.status == "captured" && p.payment_id.is_some())
            .collect();
        match captured.as_slice() {
            [only] => vec![(*only, self.refunded_amount.min(only.amount))],
            _ => captured.into_iter().map(|p| (p, p.refunded)).collect(),
        }
    }

    /// `amount` refunded across the captured payments, newest first, each at most
    /// what is left of it; what no payment can take is left out.
    pub fn refund_split(&self, amount: Money) -> Vec<(String, Money)> {
        let mut rest = amount;
        let mut split = Vec::new();
        for (p, refunded) in self.captured_payments().into_iter().rev() {
            if rest.is_zero() {
                break;
            }
            let room = p.amount.checked_sub(refunded).unwrap_or(Money::ZERO);
            let take = rest.min(room);
            if !take.is_zero() {
                split.push((p.payment_id.clone().unwrap_or_default(), take));
                rest = rest.checked_sub(take).unwrap_or(Money::ZERO);
            }
        }
        split
    }

    /// The method of the latest successful charge, else the one given at checkout.
    pub fn latest_method(&self) -> Option<String> {
        let captured = self.captured_payments();
        let latest = captured.last().map(|(p, _)| p.method.clone());
        latest.or_else(|| self.payment_method.clone())
    }

    /// Records a declined payment attempt.
    pub fn record_decline(&mut self, attempt: u32, method: &str, code: &str, at: DateTime<Utc>) {
        self.payments.push(PaymentAttempt {
            attempt,
            payment_id: None,
            method: method.to_owned(),
            amount: self.amount_due(),
            status: "declined".into(),
            failure_code: Some(code.to_owned()),
            at,
            refunded: Money::ZERO,
            flow: None,
            key: None,
        });
        self.payment_status = PaymentStatus::Failed;
    }

    /// Records a refund the payment service confirmed on `payment_id` (none: the
    /// newest payments with room take it). A refund above what is left of the
    /// capture is refused: the sum of refunds never exceeds the capture.
    pub fn record_refund_on(
        &mut self,
        payment_id: Option<&str>,
        amount: Money,
    ) -> Result<(), DomainError> {
        let split = match payment_id {
            Some(id) => vec![(id.to_owned(), amount)],
            None => self.refund_split(amount),
        };
        // Kept per payment once there are several; one payment reads the total.
        let balances: Vec<(String, Money)> = self
            .captured_payments()
            .iter()
            .map(|(p, r)| (p.payment_id.clone().unwrap_or_default(), *r))
            .collect();
        for p in self.payments.iter_mut() {
            if let Some((_, r)) = balances
                .iter()
                .find(|(id, _)| p.payment_id.as_deref() == Some(id))
            {
                p.refunded = *r;
            }
            for (id, part) in &split {
                if p.status == "captured" && p.payment_id.as_deref() == Some(id) {
                    p.refunded = p
                        .refunded
                        .checked_add(*part)
                        .ok_or(DomainError::AmountOverflow)?;
                }
            }
        }
        let at = self.updated_at;
        for (id, part) in &split {
            self.record_movement("refund", *part, Some(id), at);
        }
        self.add_refunded(amount)
    }

    /// Records a refund the payment service confirmed on the newest payments with
    /// room (the one payment of an order no change charged).
    pub fn record_refund(&mut self, amount: Money) -> Result<(), DomainError> {
        self.record_refund_on(None, amount)
    }

    /// Adds a refund to the order's totals. A refund above what is left of the
    /// capture is refused: the sum of refunds never exceeds the capture.
    fn add_refunded(&mut self, amount: Money) -> Result<(), DomainError> {
        let left = self.refundable();
        if amount > left {
            return Err(DomainError::RefundExceedsCapture {
                asked: amount.to_string(),
                left: left.to_string(),
            });
        }
        self.refunded_amount = self
            .refunded_amount
            .checked_add(amount)
            .ok_or(DomainError::AmountOverflow)?;
        self.payment_status = if self.refunded_amount == self.captured_amount {
            PaymentStatus::Refunded
        } else {
            PaymentStatus::PartiallyRefunded
        };
        Ok(())
    }

    /// What is captured and not yet refunded.
    pub fn refundable(&self) -> Money {
        self.captured_amount
            .checked_sub(self.refunded_amount)
            .unwrap_or(Money::ZERO)
    }

    /// Records a reservation the warehouse made. A draft is cancelled when its
    /// payment does not come in time, and never after its reservation expires: its
    /// `expires_at` becomes the earlier of the two.
    pub fn record_reservation(&mut self, reservation_id: &str, expires_at: Option<DateTime<Utc>>) {
        self.reservation_id = Some(reservation_id.to_owned());
        self.reservation_expires_at = expires_at;
        if let (Some(draft), Some(stock)) = (self.expires_at, expires_at) {
            self.expires_at = Some(draft.min(stock));
        }
    }

    /// Drops the owed compensations `settled` picks. The attention they caused goes
    /// with them once nothing of its step is owed any more; one about another step
    /// (a refused restock) stays.
    pub fn drop_owed(&mut self, settled: impl Fn(&Compensation) -> bool) {
        let (dropped, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.owed)
            .into_iter()
            .partition(|c| settled(c));
        self.owed = kept;
        let still_owed = |step: &str| self.owed.iter().any(|c| c.step() == step);
        let caused = |step: &str| dropped.iter().any(|c| c.step() == step);
        if self
            .attention
            .as_ref()
            .is_some_and(|a| caused(&a.step) && !still_owed(&a.step))
        {
            self.attention = None;
        }
        self.clear_attended();
    }

    /// Marks the order as needing an operator for `step`.
    pub fn park(&mut self, step: &str, code: &str, message: &str, at: DateTime<Utc>) {
        self.attention = Some(Attention {
            step: step.to_owned(),
            code: code.to_owned(),
            message: message.to_owned(),
            since: at,
        });
    }

    /// Ends the create saga in `failed` with the reason.
    pub fn fail(
        &mut self,
        code: &str,
        message: &str,
        at: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        self.failure = Some(Failure {
            code: code.to_owned(),
            message: message.to_owned(),
        });
        self.transition(OrderStatus::Failed, Some(message.to_owned()), "system", at)
    }

    /// The number of the next payment attempt, which keys its idempotency.
    pub fn next_payment_attempt(&self) -> u32 {
        self.payments.len() as u32 + 1
    }

    /// An event of this order at its current version.
    pub fn event(&self, topic: &str) -> OrderEvent {
        let name = format!("{}:{topic}:{}", self.id, self.version);
        OrderEvent {
            id: Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes()),
            topic: topic.to_owned(),
            order_id: self.id,
            version: self.version,
            at: self.updated_at,
            data: serde_json::to_value(self.view()).unwrap_or(Value::Null),
        }
    }

    /// The notification `template` about this order at its current version.
    pub fn notification(&self, template: &str) -> OrderNotification {
        OrderNotification {
            key: format!("{}:notify:{template}:{}", self.id, self.version),
            order_id: self.id,
            customer_id: self.customer_id,
            template: template.to_owned(),
            data: serde_json::json!({
                "order_number": self.order_number,
                "status": self.status,
                "total_amount": self.total_amount,
                "refunded_amount": self.refunded_amount,
                "currency": self.currency,
                "failure": self.failure,
            }),
        }
    }

    /// The API resource for this order.
    pub fn view(&self) -> OrderView {
        self.resource.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(qty: i64, price: &str, discount: &str, tax: &str) -> NewItem {
        NewItem {
            product_id: Uuid::nil(),
            product_sku: "SKU-1".into(),
            product_name: "Mug".into(),
            warehouse_id: Uuid::nil(),
            quantity: qty,
            unit_price: price.parse().unwrap(),
            discount_amount: discount.parse().unwrap(),
            tax_amount: tax.parse().unwrap(),
        }
    }

    /// The order made of `new`, as the create saga writes it.
    fn created(new: &NewOrder) -> Order {
        Order::create(
            Uuid::nil(),
            "ORD".into(),
            new,
            Utc::now(),
            Duration::hours(1),
        )
    }

    fn order(items: Vec<NewItem>) -> NewOrder {
        NewOrder {
            customer_id: None,
            currency: Currency::parse("USD").unwrap(),
            items,
            shipping_amount: "5.00".parse().unwrap(),
            shipping_address: empty_object(),
            billing_address: empty_object(),
            notes: None,
            metadata: empty_object(),
            payment: None,
        }
    }

    #[test]
    fn totals_follow_the_money_rules() {
        let new = order(vec![item(2, "50.00", "10.00", "8.10")]);
        assert!(new.validate().is_empty());
        let o = created(&new);
        assert_eq!(o.subtotal.to_string(), "100.00");
        assert_eq!(o.items[0].total_price.to_string(), "98.10");
        assert_eq!(o.total_amount.to_string(), "103.10");
        assert_eq!(o.history.len(), 1);
        assert!(o.expires_at.is_some());
    }

    #[test]
    fn validation_names_each_bad_field() {
        let new = order(vec![
            item(0, "1.00", "0", "0"),
            item(1, "1.00", "2.00", "0"),
        ]);
        let fields: Vec<_> = new.validate().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["items[0].quantity", "items[1].discount_amount"]);
        assert_eq!(order(vec![]).validate()[0].field, "items");
    }

    #[test]
    fn bounds_name_the_field_that_breaks_them() {
        let fields = |new: NewOrder| -> Vec<String> {
            new.validate().into_iter().map(|e| e.field).collect()
        };
        assert_eq!(
            fields(order(vec![item(100_000, "9999999999.99", "0", "0")])),
            ["items[0].unit_price"]
        );
        assert_eq!(
            fields(order(vec![item(1, "99999999999.99", "0", "0.01")])),
            ["items[0].tax_amount"]
        );
        assert_eq!(
            fields(order(vec![
                item(1, "99999999999.99", "0", "0"),
                item(1, "1.00", "0", "0")
            ])),
            ["items"]
        );
        assert_eq!(
            fields(order(vec![item(100_001, "1.00", "0", "0")])),
            ["items[0].quantity"]
        );
    }

    #[test]
    fn transitions_follow_the_table() {
        let new = order(vec![item(1, "1.00", "0", "0")]);
        let mut o = created(&new);
        assert!(o
            .transition(OrderStatus::Shipped, None, "api", Utc::now())
            .is_err());
        assert_eq!(o.status, OrderStatus::Draft);
        o.transition(OrderStatus::Confirmed, None, "system", Utc::now())
            .unwrap();
        assert_eq!(o.status, OrderStatus::Confirmed);
    }

    #[test]
    fn refunds_never_exceed_the_capture() {
        let new = order(vec![item(1, "10.00", "0", "0")]);
        let mut o = created(&new);
        o.record_capture(1, "pm", "pay_1", "15.00".parse().unwrap(), Utc::now());
        o.record_refund("10.00".parse().unwrap()).unwrap();
        assert_eq!(o.payment_status, PaymentStatus::PartiallyRefunded);
        assert!(o.record_refund("5.01".parse().unwrap()).is_err());
        assert_eq!(o.refunded_amount.to_string(), "10.00");
        o.record_refund("5.00".parse().unwrap()).unwrap();
        assert_eq!(o.payment_status, PaymentStatus::Refunded);
    }

    #[test]
    fn state_written_before_attention_and_reservation_fields_still_decodes() {
        let stored = include_str!("fixtures/order_state_v1.json");
        let o: Order = serde_json::from_str(stored).unwrap();
        assert_eq!(o.status, OrderStatus::Confirmed);
        assert_eq!(o.total_amount.to_string(), "103.10");
        assert_eq!(o.attention, None);
        assert!(o.owed.is_empty() && !o.reservation_committed);
        assert_eq!(o.items[0].give_back_amount(2).unwrap().to_string(), "98.10");
        let view: OrderView = serde_json::from_str(stored).unwrap();
        assert_eq!(view.version, 2);
    }

    #[test]
    fn event_ids_are_stable() {
        let new = order(vec![item(1, "1.00", "0", "0")]);
        let o = created(&new);
        assert_eq!(
            o.event("order.created").id,
            o.clone().event("order.created").id
        );
        assert_ne!(o.event("order.created").id, o.event("order.failed").id);
    }
}
