//! The ledger: every side effect and every call the simulated services saw, in arrival order.
//!
//! It is both the simulator's state and the snapshot tests read (`GET /_sim/ledger`
//! serves it as JSON), so every type here round-trips through serde.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A snapshot of everything the simulated downstream services did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    /// Stock reservations, with what is left of each line.
    pub reservations: Vec<Reservation>,
    /// Every successful release call, with what it actually released.
    pub releases: Vec<Release>,
    /// Ids of reservations that were committed.
    pub commits: Vec<String>,
    /// Stock put back after returns.
    pub restocks: Vec<Restock>,
    /// Captured payments.
    pub captures: Vec<Capture>,
    /// Payments refused by the `pm_card_declined` convention.
    pub declines: Vec<Decline>,
    /// Refunds against captures.
    pub refunds: Vec<Refund>,
    /// Fulfillment requests.
    pub fulfillments: Vec<Fulfillment>,
    /// Notifications accepted for delivery.
    pub notifications: Vec<Notification>,
    /// Every published CloudEvent, duplicates included.
    pub events: Vec<Event>,
    /// Every request to a service route, faulted, rejected and replayed ones included.
    pub calls: Vec<Call>,
}

/// A stock reservation made by `POST /v1/reservations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    /// Id handed back to the caller.
    pub reservation_id: String,
    /// Order the reservation was made for.
    pub order_id: String,
    /// `Idempotency-Key` of the creating call.
    pub idempotency_key: String,
    /// Reserved lines.
    pub items: Vec<ReservedItem>,
    /// Where the reservation stands.
    pub status: ReservationStatus,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it gives its stock back unless committed before.
    pub expires_at: DateTime<Utc>,
}

/// One reserved line and how much of it is still held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservedItem {
    /// Product the line belongs to.
    pub product_id: String,
    /// Stock keeping unit.
    pub sku: String,
    /// Warehouse holding the stock.
    pub warehouse_id: String,
    /// Quantity originally reserved.
    pub quantity: u32,
    /// Quantity released so far.
    pub released: u32,
    /// Quantity still held: `quantity - released`, or 0 once the reservation expired.
    pub remaining: u32,
}

/// Lifecycle of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    /// Some stock is still held, until `expires_at`.
    Active,
    /// Everything was released.
    Released,
    /// What was left was committed: it no longer expires, and can still be released.
    Committed,
    /// It was not committed by its `expires_at`: what was left went back on sale.
    Expired,
}

/// One successful release call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// Reservation released from.
    pub reservation_id: String,
    /// `Idempotency-Key` of the call.
    pub idempotency_key: String,
    /// What was actually released (after clamping), per SKU.
    pub released: Vec<SkuQty>,
}

/// A quantity of one SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuQty {
    /// Stock keeping unit.
    pub sku: String,
    /// Number of units.
    pub quantity: u32,
}

/// A line of stock at a warehouse, as restocks and fulfillments carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockItem {
    /// Stock keeping unit.
    pub sku: String,
    /// Warehouse the units come from or go to.
    pub warehouse_id: String,
    /// Number of units.
    pub quantity: u32,
}

/// Stock put back by `POST /v1/restocks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restock {
    /// Id handed back to the caller.
    pub restock_id: String,
    /// Order the returned goods belong to.
    pub order_id: String,
    /// Return that triggered the restock.
    pub return_id: String,
    /// Restocked lines.
    pub items: Vec<StockItem>,
}

/// A captured payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capture {
    /// Id handed back to the caller.
    pub payment_id: String,
    /// Order paid for.
    pub order_id: String,
    /// Captured amount.
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    /// ISO 4217 code.
    pub currency: String,
    /// Payment method token.
    pub method: String,
    /// `Idempotency-Key` of the charge call.
    pub idempotency_key: String,
    /// Sum of the refunds made against this capture.
    #[serde(with = "rust_decimal::serde::str")]
    pub refunded: Decimal,
}

/// A charge refused with `402 card_declined`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decline {
    /// Order the charge was for.
    pub order_id: String,
    /// Amount that was asked for.
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    /// Payment method token.
    pub method: String,
    /// `Idempotency-Key` of the charge call.
    pub idempotency_key: String,
}

/// A refund against a capture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    /// Id handed back to the caller.
    pub refund_id: String,
    /// Capture refunded.
    pub payment_id: String,
    /// Refunded amount.
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    /// Reason given by the caller.
    pub reason: String,
    /// `Idempotency-Key` of the refund call.
    pub idempotency_key: String,
}

/// A fulfillment request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fulfillment {
    /// Id handed back to the caller.
    pub fulfillment_id: String,
    /// Order to ship.
    pub order_id: String,
    /// Lines to ship, as the last update left them.
    pub items: Vec<StockItem>,
    /// Address as the caller last sent it.
    pub shipping_address: Value,
    /// Where the fulfillment stands.
    pub status: FulfillmentStatus,
    /// Cancelled quantities since the items were last set, one entry per SKU.
    pub cancelled: Vec<SkuQty>,
    /// `change_id`s of the updates applied, in order.
    #[serde(default)]
    pub changes: Vec<String>,
}

/// Lifecycle of a fulfillment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FulfillmentStatus {
    /// Accepted and not (entirely) cancelled.
    Created,
    /// Every unit was cancelled.
    Cancelled,
    /// Marked shipped through `POST /_sim/fulfillments/{id}/ship`.
    Shipped,
}

/// A notification accepted for delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Id handed back to the caller.
    pub notification_id: String,
    /// Order the notification is about.
    pub order_id: String,
    /// Recipient; `None` for guest orders.
    pub customer_id: Option<String>,
    /// Template name, e.g. `order_confirmed`.
    pub template: String,
    /// Template data as sent.
    pub data: Value,
}

/// A CloudEvent published through the pub/sub API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Pub/sub component name from the path.
    pub pubsub: String,
    /// Topic from the path.
    pub topic: String,
    /// CloudEvent `id`.
    pub id: String,
    /// CloudEvent `type`.
    #[serde(rename = "type")]
    pub type_: String,
    /// CloudEvent `source`.
    pub source: String,
    /// CloudEvent `data`.
    pub data: Value,
    /// The whole CloudEvent body.
    pub cloud_event: Value,
}

/// One request to a service route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// `warehouse`, `payment`, `fulfillment`, `notification` or `pubsub`.
    pub service: String,
    /// Operation name, as faults name it (`reserve`, `charge`, `publish`, ...).
    pub operation: String,
    /// Request path.
    pub path: String,
    /// `Idempotency-Key` header, if any; for a `lookup`, the key it asked about.
    pub idempotency_key: Option<String>,
    /// W3C `traceparent` header, if any: the trace the call belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Status answered; 0 when the connection was dropped.
    pub status: u16,
    /// Whether the answer was replayed from an earlier call with the same key.
    pub replayed: bool,
    /// When the call was handled.
    pub at: DateTime<Utc>,
}
