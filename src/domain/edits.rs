//! The edit history: which quantities, amounts, addresses and returns a change
//! moved, with the old and the new value. Found by comparing the order before and after the
//! change, so no saga can forget to record one.

use super::{Order, OrderView};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

/// One field a change moved: of the order, or of its item `item_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub item_id: Option<i32>,
    pub return_id: Option<Uuid>,
    pub old: Value,
    pub new: Value,
}

impl Order {
    /// The quantities, amounts, addresses and returns that differ from `before`.
    pub fn changes_since(&self, before: &Order) -> Vec<FieldChange> {
        let mut changes = self.resource.changes_since(&before.resource);
        for r in &self.returns {
            let old = before.find_return(r.return_id).map(|b| json!(b.status));
            if old.as_ref() != Some(&json!(r.status)) {
                changes.push(FieldChange {
                    field: "return_status".into(),
                    item_id: None,
                    return_id: Some(r.return_id),
                    old: old.unwrap_or(Value::Null),
                    new: json!(r.status),
                });
            }
        }
        changes
    }
}

impl OrderView {
    /// The quantities, amounts and addresses that differ from `before`.
    fn changes_since(&self, before: &OrderView) -> Vec<FieldChange> {
        let mut changes = Vec::new();
        let mut compare = |field: &str, item_id: Option<i32>, old: Value, new: Value| {
            if old != new {
                changes.push(FieldChange {
                    field: field.to_owned(),
                    item_id,
                    return_id: None,
                    old,
                    new,
                });
            }
        };
        let order_fields = |o: &OrderView| {
            [
                ("subtotal", json!(o.subtotal)),
                ("discount_amount", json!(o.discount_amount)),
                ("tax_amount", json!(o.tax_amount)),
                ("shipping_amount", json!(o.shipping_amount)),
                ("total_amount", json!(o.total_amount)),
                ("captured_amount", json!(o.captured_amount)),
                ("refunded_amount", json!(o.refunded_amount)),
                ("shipping_address", o.shipping_address.clone()),
                ("billing_address", o.billing_address.clone()),
                ("attention", json!(o.attention)),
            ]
        };
        for ((field, old), (_, new)) in order_fields(before).into_iter().zip(order_fields(self)) {
            compare(field, None, old, new);
        }
        for item in &self.items {
            let Some(old) = before.items.iter().find(|i| i.id == item.id) else {
                continue;
            };
            let item_fields = |i: &super::OrderItem| {
                [
                    ("quantity", json!(i.quantity)),
                    ("unit_price", json!(i.unit_price)),
                    ("discount_amount", json!(i.discount_amount)),
                    ("tax_amount", json!(i.tax_amount)),
                    ("total_price", json!(i.total_price)),
                    ("cancelled_quantity", json!(i.cancelled_quantity)),
                    ("returned_quantity", json!(i.returned_quantity)),
                    ("refunded_quantity", json!(i.refunded_quantity)),
                ]
            };
            for ((field, a), (_, b)) in item_fields(old).into_iter().zip(item_fields(item)) {
                compare(field, Some(item.id), a, b);
            }
        }
        changes
    }
}
