//! What each simulated operation does: request validation, the test conventions
//! (`pm_card_declined`, `OOS-` and `SHIPPED-` SKUs) and the side effects on the ledger.

use std::cmp::Reverse;
use std::str::FromStr;

use axum::http::StatusCode;
use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::ledger::{
    Capture, Decline, Event, Fulfillment, FulfillmentStatus, Notification, Refund, Release,
    Reservation, ReservationStatus, ReservedItem, Restock, SkuQty, StockItem,
};
use super::services::{Incoming, OpResult, Reply};
use super::SimState;

/// Payment method that is always declined.
const DECLINED_METHOD: &str = "pm_card_declined";
/// SKU prefix that is always out of stock.
const OUT_OF_STOCK_PREFIX: &str = "OOS-";
/// A SKU with exactly one unit on sale: a reservation of it is refused while
/// another active or committed reservation holds it.
const LAST_UNIT_PREFIX: &str = "LAST-";
/// SKU prefix of goods already on their way: a fulfillment holding one refuses updates.
const SHIPPED_PREFIX: &str = "SHIPPED-";
/// CloudEvents attributes a published event must carry.
const CLOUD_EVENT_ATTRIBUTES: [&str; 7] = [
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "datacontenttype",
    "data",
];

#[derive(Deserialize)]
struct ReserveRequest {
    order_id: String,
    items: Vec<ReserveItem>,
}

#[derive(Deserialize)]
struct ReserveItem {
    product_id: String,
    sku: String,
    warehouse_id: String,
    quantity: u32,
}

/// Body of release and cancel; no or empty `items` means everything.
#[derive(Deserialize)]
struct ItemsRequest {
    #[serde(default)]
    items: Option<Vec<SkuQty>>,
}

#[derive(Deserialize)]
struct RestockRequest {
    order_id: String,
    return_id: String,
    items: Vec<StockItem>,
}

#[derive(Deserialize)]
struct ChargeRequest {
    order_id: String,
    amount: Value,
    currency: String,
    method: String,
}

#[derive(Deserialize)]
struct RefundRequest {
    amount: Value,
    reason: String,
}

#[derive(Deserialize)]
struct FulfilRequest {
    order_id: String,
    items: Vec<StockItem>,
    shipping_address: Value,
}

/// Body of a fulfillment update: the whole parcel after the change.
#[derive(Deserialize)]
struct UpdateFulfillmentRequest {
    /// Required by the contract; the fulfillment already knows its order.
    #[expect(dead_code, reason = "validated by deserialization only")]
    order_id: String,
    change_id: String,
    items: Vec<StockItem>,
    shipping_address: Value,
}

#[derive(Deserialize)]
struct NotifyRequest {
    order_id: String,
    #[serde(default)]
    customer_id: Option<String>,
    template: String,
    data: Value,
}

impl SimState {
    /// Units of `sku` that active or committed reservations hold.
    fn held(&self, sku: &str) -> u32 {
        let holding = self.ledger.reservations.iter().filter(|r| {
            matches!(
                r.status,
                ReservationStatus::Active | ReservationStatus::Committed
            )
        });
        let lines = holding.flat_map(|r| &r.items).filter(|i| i.sku == sku);
        lines.map(|i| i.remaining).sum()
    }

    /// `POST /v1/reservations`: `201`, or `409 insufficient_stock` for an `OOS-` SKU
    /// and for a `LAST-` SKU whose one unit is held already.
    pub(super) fn reserve(&mut self, key: &str, body: &Value) -> OpResult {
        let req: ReserveRequest = parse(body)?;
        require_lines(req.items.iter().map(|item| item.quantity))?;
        if let Some(item) = req.items.iter().find(|item| {
            item.sku.starts_with(OUT_OF_STOCK_PREFIX)
                || (item.sku.starts_with(LAST_UNIT_PREFIX)
                    && self.held(&item.sku) + item.quantity > 1)
        }) {
            let message = format!("no stock left for {}", item.sku);
            let reply = Reply::error(StatusCode::CONFLICT, "insufficient_stock", message);
            return Err(reply.with_field("sku", &item.sku));
        }
        let now = Utc::now();
        let expires_at = chrono::Duration::from_std(self.config.reservation_ttl)
            .ok()
            .and_then(|ttl| now.checked_add_signed(ttl))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let reservation = Reservation {
            reservation_id: new_id(),
            order_id: req.order_id,
            idempotency_key: key.to_owned(),
            items: req.items.into_iter().map(ReservedItem::from).collect(),
            status: ReservationStatus::Active,
            created_at: now,
            expires_at,
        };
        let body = json!({
            "reservation_id": reservation.reservation_id,
            "expires_at": expires_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        });
        self.expiries
            .push(Reverse((expires_at, self.ledger.reservations.len())));
        self.ledger.reservations.push(reservation);
        Ok(Reply::new(StatusCode::CREATED, body))
    }

    /// Expires every reservation that is neither committed nor wholly released by
    /// `now`: what it still held goes back on sale.
    pub(super) fn expire_due(&mut self, now: DateTime<Utc>) {
        while let Some(Reverse((expires_at, index))) = self.expiries.peek().copied() {
            if expires_at > now {
                break;
            }
            self.expiries.pop();
            if let Some(reservation) = self.ledger.reservations.get_mut(index) {
                if reservation.status == ReservationStatus::Active {
                    reservation.expire();
                }
            }
        }
    }

    /// `POST /v1/reservations/{id}/release`: releases what is asked, clamped to what is left.
    pub(super) fn release(&mut self, id: &str, key: &str, body: &Value) -> OpResult {
        let req: ItemsRequest = parse(body)?;
        let released = self
            .reservation(id)?
            .release(&req.items.unwrap_or_default());
        let body = json!({ "reservation_id": id, "released": released });
        self.ledger.releases.push(Release {
            reservation_id: id.to_owned(),
            idempotency_key: key.to_owned(),
            released,
        });
        Ok(Reply::new(StatusCode::OK, body))
    }

    /// `POST /v1/reservations/{id}/commit`: `409 reservation_released` once nothing is
    /// left or the reservation expired.
    pub(super) fn commit(&mut self, id: &str) -> OpResult {
        let reservation = self.reservation(id)?;
        match reservation.status {
            ReservationStatus::Released => Err(Reply::error(
                StatusCode::CONFLICT,
                "reservation_released",
                "nothing is left to commit",
            )),
            ReservationStatus::Expired => Err(Reply::error(
                StatusCode::CONFLICT,
                "reservation_released",
                "the reservation expired before it was committed",
            )),
            ReservationStatus::Committed => Ok(Reply::new(StatusCode::OK, json!({}))),
            ReservationStatus::Active => {
                reservation.status = ReservationStatus::Committed;
                self.ledger.commits.push(id.to_owned());
                Ok(Reply::new(StatusCode::OK, json!({})))
            }
        }
    }

    /// `POST /v1/restocks`.
    pub(super) fn restock(&mut self, body: &Value) -> OpResult {
        let req: RestockRequest = parse(body)?;
        require_lines(req.items.iter().map(|item| item.quantity))?;
        let restock_id = new_id();
        self.ledger.restocks.push(Restock {
            restock_id: restock_id.clone(),
            order_id: req.order_id,
            return_id: req.return_id,
            items: req.items,
        });
        Ok(Reply::new(
            StatusCode::CREATED,
            json!({ "restock_id": restock_id }),
        ))
    }

    /// `POST /v1/payments`: captures, or `402 card_declined` for `pm_card_declined`.
    pub(super) fn charge(&mut self, key: &str, body: &Value) -> OpResult {
        let req: ChargeRequest = parse(body)?;
        let amount = parse_amount(&req.amount, false)?;
        check_currency(&req.currency)?;
        if req.method == DECLINED_METHOD {
            self.ledger.declines.push(Decline {
                order_id: req.order_id,
                amount,
                method: req.method,
                idempotency_key: key.to_owned(),
            });
            return Err(Reply::error(
                StatusCode::PAYMENT_REQUIRED,
                "card_declined",
                "the card was declined",
            ));
        }
        let payment_id = new_id();
        let body =
            json!({ "payment_id": payment_id, "status": "captured", "amount": amount.to_string() });
        self.ledger.captures.push(Capture {
            payment_id,
            order_id: req.order_id,
            amount,
            currency: req.currency,
            method: req.method,
            idempotency_key: key.to_owned(),
            refunded: Decimal::ZERO,
        });
        Ok(Reply::new(StatusCode::CREATED, body))
    }

    /// `POST /v1/payments/{id}/refunds`: refunds up to the captured amount.
    pub(super) fn refund(&mut self, payment_id: &str, key: &str, body: &Value) -> OpResult {
        let req: RefundRequest = parse(body)?;
        let amount = parse_amount(&req.amount, true)?;
        let capture = self
            .ledger
            .captures
            .iter_mut()
            .find(|capture| capture.payment_id == payment_id)
            .ok_or_else(|| not_found("payment_not_found", "payment", payment_id))?;
        let refunded = capture
            .refunded
            .checked_add(amount)
            .filter(|total| *total <= capture.amount)
            .ok_or_else(|| {
                Reply::error(
                    StatusCode::CONFLICT,
                    "refund_exceeds_capture",
                    format!(
                        "only {} is left to refund",
                        capture.amount - capture.refunded
                    ),
                )
            })?;
        capture.refunded = refunded;
        let refund_id = new_id();
        let body = json!({ "refund_id": refund_id, "amount": amount.to_string() });
        self.ledger.refunds.push(Refund {
            refund_id,
            payment_id: payment_id.to_owned(),
            amount,
            reason: req.reason,
            idempotency_key: key.to_owned(),
        });
        Ok(Reply::new(StatusCode::CREATED, body))
    }

    /// `POST /v1/fulfillments`.
    pub(super) fn fulfil(&mut self, body: &Value) -> OpResult {
        let req: FulfilRequest = parse(body)?;
        require_lines(req.items.iter().map(|item| item.quantity))?;
        let fulfillment_id = new_id();
        self.ledger.fulfillments.push(Fulfillment {
            fulfillment_id: fulfillment_id.clone(),
            order_id: req.order_id,
            items: req.items,
            shipping_address: req.shipping_address,
            status: FulfillmentStatus::Created,
            cancelled: Vec::new(),
            changes: Vec::new(),
        });
        Ok(Reply::new(
            StatusCode::CREATED,
            json!({ "fulfillment_id": fulfillment_id }),
        ))
    }

    /// `POST /v1/fulfillments/{id}/cancel`: cancels what is asked, clamped to what is left.
    pub(super) fn cancel_fulfillment(&mut self, id: &str, body: &Value) -> OpResult {
        let req: ItemsRequest = parse(body)?;
        let fulfillment = self.fulfillment(id)?;
        if fulfillment.status == FulfillmentStatus::Shipped {
            return Err(already_shipped());
        }
        let cancelled = fulfillment.cancel(&req.items.unwrap_or_default());
        Ok(Reply::new(
            StatusCode::OK,
            json!({ "fulfillment_id": id, "cancelled": cancelled }),
        ))
    }

    /// `POST /v1/fulfillments/{id}/update`: makes the parcel the given items and
    /// address; an update to the same contents changes nothing and answers `200` too.
    pub(super) fn update_fulfillment(&mut self, id: &str, body: &Value) -> OpResult {
        let req: UpdateFulfillmentRequest = parse(body)?;
        require_lines(req.items.iter().map(|item| item.quantity))?;
        if !req.shipping_address.is_object() {
            return Err(Reply::bad_request("shipping_address must be an object"));
        }
        let fulfillment = self.fulfillment(id)?;
        fulfillment.check_updatable()?;
        fulfillment.replace(req.items, req.shipping_address, req.change_id);
        Ok(Reply::new(
            StatusCode::OK,
            json!({ "fulfillment_id": id, "items": fulfillment.items }),
        ))
    }

    /// `POST /v1/notifications`.
    pub(super) fn notify(&mut self, body: &Value) -> OpResult {
        let req: NotifyRequest = parse(body)?;
        let notification_id = new_id();
        self.ledger.notifications.push(Notification {
            notification_id: notification_id.clone(),
            order_id: req.order_id,
            customer_id: req.customer_id,
            template: req.template,
            data: req.data,
        });
        Ok(Reply::new(
            StatusCode::ACCEPTED,
            json!({ "notification_id": notification_id }),
        ))
    }

    /// `POST /v1.0/publish/{pubsub}/{topic}`: records every valid CloudEvent, duplicates included.
    pub(super) fn publish(&mut self, req: &Incoming, event: Value) -> OpResult {
        check_cloud_event(&event)?;
        let text = |name: &str| event[name].as_str().unwrap_or_default().to_owned();
        let (id, type_, source) = (text("id"), text("type"), text("source"));
        self.ledger.events.push(Event {
            pubsub: req.param(0).to_owned(),
            topic: req.param(1).to_owned(),
            id,
            type_,
            source,
            data: event["data"].clone(),
            cloud_event: event,
        });
        Ok(Reply::new(StatusCode::NO_CONTENT, Value::Null))
    }

    fn reservation(&mut self, id: &str) -> Result<&mut Reservation, Reply> {
        self.ledger
            .reservations
            .iter_mut()
            .find(|reservation| reservation.reservation_id == id)
            .ok_or_else(|| not_found("reservation_not_found", "reservation", id))
    }

    /// Looks a fulfillment up by id, or answers `404 fulfillment_not_found`.
    pub(super) fn fulfillment(&mut self, id: &str) -> Result<&mut Fulfillment, Reply> {
        self.ledger
            .fulfillments
            .iter_mut()
            .find(|fulfillment| fulfillment.fulfillment_id == id)
            .ok_or_else(|| not_found("fulfillment_not_found", "fulfillment", id))
    }
}

impl From<ReserveItem> for ReservedItem {
    fn from(item: ReserveItem) -> Self {
        Self {
            product_id: item.product_id,
            sku: item.sku,
            warehouse_id: item.warehouse_id,
            quantity: item.quantity,
            released: 0,
            remaining: item.quantity,
        }
    }
}

impl Reservation {
    /// Releases up to the wanted quantities (all that is left when `wanted` is empty).
    /// Committed units can still be released (they have not shipped: the warehouse
    /// does not know about shipping); an expired reservation has nothing left.
    fn release(&mut self, wanted: &[SkuQty]) -> Vec<SkuQty> {
        let mut released = Vec::new();
        let wanted = if wanted.is_empty() {
            self.items
                .iter()
                .map(|item| sku_qty(&item.sku, item.remaining))
                .collect()
        } else {
            wanted.to_vec()
        };
        for want in wanted {
            let mut left = want.quantity;
            for item in self.items.iter_mut().filter(|item| item.sku == want.sku) {
                let take = left.min(item.remaining);
                item.remaining -= take;
                item.released += take;
                left -= take;
                add_qty(&mut released, &item.sku, take);
            }
        }
        let nothing_left = self.items.iter().all(|item| item.remaining == 0);
        if nothing_left && self.status != ReservationStatus::Expired {
            self.status = ReservationStatus::Released;
        }
        released
    }

    /// Gives back what is still held, as the warehouse does at `expires_at`.
    fn expire(&mut self) {
        for item in &mut self.items {
            item.remaining = 0;
        }
        self.status = ReservationStatus::Expired;
    }
}

impl Fulfillment {
    /// Cancels up to the wanted quantities (everything left when `wanted` is empty).
    fn cancel(&mut self, wanted: &[SkuQty]) -> Vec<SkuQty> {
        let wanted = if wanted.is_empty() {
            let mut all = Vec::new();
            for item in &self.items {
                add_qty(&mut all, &item.sku, item.quantity);
            }
            all
        } else {
            wanted.to_vec()
        };
        let mut cancelled = Vec::new();
        for want in wanted {
            let take = want.quantity.min(self.cancellable(&want.sku));
            add_qty(&mut self.cancelled, &want.sku, take);
            add_qty(&mut cancelled, &want.sku, take);
        }
        if self
            .items
            .iter()
            .all(|item| self.cancellable(&item.sku) == 0)
        {
            self.status = FulfillmentStatus::Cancelled;
        }
        cancelled
    }

    /// A cancelled parcel answers `409 fulfillment_cancelled`, a code of the simulator's
    /// own (the contract names none); a shipped one, or one holding a `SHIPPED-` SKU,
    /// answers the contract's `409 already_shipped`.
    fn check_updatable(&self) -> Result<(), Reply> {
        let holds_shipped = || {
            self.items
                .iter()
                .any(|item| item.sku.starts_with(SHIPPED_PREFIX))
        };
        match self.status {
            FulfillmentStatus::Cancelled => Err(Reply::error(
                StatusCode::CONFLICT,
                "fulfillment_cancelled",
                "the fulfillment was cancelled",
            )),
            FulfillmentStatus::Shipped => Err(already_shipped()),
            FulfillmentStatus::Created if holds_shipped() => Err(already_shipped()),
            FulfillmentStatus::Created => Ok(()),
        }
    }

    /// Makes the parcel `items` at `address`. The new items are the whole parcel, so
    /// cancellations counted against the old ones no longer apply.
    fn replace(&mut self, items: Vec<StockItem>, address: Value, change_id: String) {
        self.items = items;
        self.shipping_address = address;
        self.cancelled.clear();
        self.changes.push(change_id);
    }

    fn cancellable(&self, sku: &str) -> u32 {
        let ordered: u32 = self
            .items
            .iter()
            .filter(|i| i.sku == sku)
            .map(|i| i.quantity)
            .sum();
        let cancelled: u32 = self
            .cancelled
            .iter()
            .filter(|c| c.sku == sku)
            .map(|c| c.quantity)
            .sum();
        ordered.saturating_sub(cancelled)
    }
}

fn parse<T: DeserializeOwned>(body: &Value) -> Result<T, Reply> {
    T::deserialize(body).map_err(|e| Reply::bad_request(format!("invalid request: {e}")))
}

fn require_lines(quantities: impl Iterator<Item = u32>) -> Result<(), Reply> {
    let mut quantities = quantities.peekable();
    if quantities.peek().is_none() {
        return Err(Reply::bad_request("items must not be empty"));
    }
    if quantities.any(|quantity| quantity == 0) {
        return Err(Reply::bad_request("quantity must be greater than 0"));
    }
    Ok(())
}

/// Money is a JSON string of digits with at most 2 fraction digits; returned with scale 2.
fn parse_amount(value: &Value, allow_zero: bool) -> Result<Decimal, Reply> {
    let invalid = || {
        Reply::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_amount",
            "amount must be a non-negative decimal string with at most 2 fraction digits",
        )
    };
    let text = value
        .as_str()
        .filter(|text| is_money_text(text))
        .ok_or_else(invalid)?;
    let mut amount = Decimal::from_str(text).map_err(|_| invalid())?;
    if amount.is_zero() && !allow_zero {
        return Err(invalid());
    }
    amount.rescale(2);
    Ok(amount)
}

fn is_money_text(text: &str) -> bool {
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match text.split_once('.') {
        None => all_digits(text),
        Some((units, cents)) => all_digits(units) && all_digits(cents) && cents.len() <= 2,
    }
}

fn check_currency(currency: &str) -> Result<(), Reply> {
    if currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Ok(());
    }
    Err(Reply::error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_currency",
        "currency must be an ISO 4217 code such as USD",
    ))
}

fn check_cloud_event(event: &Value) -> Result<(), Reply> {
    if !event.is_object() {
        return Err(Reply::bad_request("a CloudEvent must be a JSON object"));
    }
    if let Some(name) = CLOUD_EVENT_ATTRIBUTES
        .iter()
        .find(|name| event.get(**name).is_none())
    {
        return Err(Reply::bad_request(format!(
            "CloudEvent attribute {name} is missing"
        )));
    }
    if event["specversion"] != "1.0" {
        return Err(Reply::bad_request("CloudEvent specversion must be \"1.0\""));
    }
    let blank = ["id", "source", "type", "datacontenttype"]
        .into_iter()
        .find(|name| event[*name].as_str().is_none_or(str::is_empty));
    if let Some(name) = blank {
        return Err(Reply::bad_request(format!(
            "CloudEvent attribute {name} must be a non-empty string"
        )));
    }
    let time = event["time"].as_str().unwrap_or_default();
    if chrono::DateTime::parse_from_rfc3339(time).is_err() {
        return Err(Reply::bad_request(
            "CloudEvent time must be an RFC 3339 timestamp",
        ));
    }
    Ok(())
}

fn already_shipped() -> Reply {
    Reply::error(
        StatusCode::CONFLICT,
        "already_shipped",
        "the fulfillment has shipped",
    )
}

fn not_found(code: &str, what: &str, id: &str) -> Reply {
    Reply::error(StatusCode::NOT_FOUND, code, format!("no {what} {id}"))
}

fn new_id() -> String {
    Uuid::new_v4().to_string()
}

fn sku_qty(sku: &str, quantity: u32) -> SkuQty {
    SkuQty {
        sku: sku.to_owned(),
        quantity,
    }
}

/// Adds to the SKU's entry (creating it); zero quantities are left out.
fn add_qty(list: &mut Vec<SkuQty>, sku: &str, quantity: u32) {
    if quantity == 0 {
        return;
    }
    match list.iter_mut().find(|entry| entry.sku == sku) {
        Some(entry) => entry.quantity += quantity,
        None => list.push(sku_qty(sku, quantity)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::tests::{call, charge};
    use crate::services::Op;
    use crate::SimConfig;

    fn reserve(state: &mut SimState, items: Value) -> String {
        let body = json!({ "order_id": "o-1", "items": items });
        let key = format!("o-1:reserve:{}", state.ledger.reservations.len());
        let outcome = state.handle(&call(Op::Reserve, &[], Some(&key), body));
        assert_eq!(outcome.reply.status, StatusCode::CREATED);
        outcome.reply.body["reservation_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn line(sku: &str, quantity: u32) -> Value {
        json!({ "product_id": "p-1", "sku": sku, "warehouse_id": "w-1", "quantity": quantity })
    }

    #[test]
    fn charge_declines_when_method_is_pm_card_declined() {
        let mut state = SimState::default();

        let outcome = state.handle(&call(
            Op::Charge,
            &[],
            Some("k"),
            charge("5.00", DECLINED_METHOD),
        ));

        assert_eq!(outcome.reply.status, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(outcome.reply.body["code"], "card_declined");
        assert_eq!(state.ledger.declines.len(), 1);
        assert!(state.ledger.captures.is_empty());
    }

    #[test]
    fn parse_amount_rejects_numbers_negatives_and_three_decimals() {
        for bad in [
            json!(1.5),
            json!("1.005"),
            json!("-1.00"),
            json!("1."),
            json!("1e3"),
            json!("0"),
        ] {
            assert!(
                parse_amount(&bad, false).is_err(),
                "{bad} should be invalid"
            );
        }
        assert_eq!(parse_amount(&json!("0"), true).unwrap().to_string(), "0.00");
        assert_eq!(
            parse_amount(&json!("19.9"), false).unwrap().to_string(),
            "19.90"
        );
    }

    #[test]
    fn reserve_rejects_with_sku_when_out_of_stock() {
        let mut state = SimState::default();
        let body = json!({ "order_id": "o-1", "items": [line("A", 1), line("OOS-B", 2)] });

        let outcome = state.handle(&call(Op::Reserve, &[], Some("k"), body));

        assert_eq!(outcome.reply.status, StatusCode::CONFLICT);
        assert_eq!(outcome.reply.body["code"], "insufficient_stock");
        assert_eq!(outcome.reply.body["sku"], "OOS-B");
        assert!(state.ledger.reservations.is_empty());
    }

    #[test]
    fn the_one_unit_of_a_last_sku_goes_to_the_first_reservation_until_released() {
        let mut state = SimState::default();
        let body = |order: &str| json!({"order_id": order, "items": [line("LAST-VASE", 1)]});
        let first = state.handle(&call(Op::Reserve, &[], Some("k1"), body("o1")));
        assert_eq!(first.reply.status, StatusCode::CREATED);
        let refused = state.handle(&call(Op::Reserve, &[], Some("k2"), body("o2")));
        assert_eq!(refused.reply.status, StatusCode::CONFLICT);
        assert_eq!(refused.reply.body["code"], "insufficient_stock");
        assert_eq!(refused.reply.body["sku"], "LAST-VASE");
        let id = first.reply.body["reservation_id"]
            .as_str()
            .unwrap()
            .to_owned();
        state.handle(&call(Op::Release, &[&id], Some("k3"), json!({})));
        let again = state.handle(&call(Op::Reserve, &[], Some("k4"), body("o2")));
        assert_eq!(
            again.reply.status,
            StatusCode::CREATED,
            "released, it is free again"
        );
    }

    #[test]
    fn release_clamps_when_quantity_exceeds_remaining() {
        let mut state = SimState::default();
        let id = reserve(&mut state, json!([line("A", 2), line("B", 1)]));
        let body = json!({ "items": [{ "sku": "A", "quantity": 5 }] });

        let outcome = state.handle(&call(Op::Release, &[&id], Some("r1"), body));

        assert_eq!(outcome.reply.status, StatusCode::OK);
        assert_eq!(
            outcome.reply.body["released"],
            json!([{ "sku": "A", "quantity": 2 }])
        );
        let items = &state.ledger.reservations[0].items;
        assert_eq!((items[0].remaining, items[0].released), (0, 2));
        assert_eq!(
            state.ledger.reservations[0].status,
            ReservationStatus::Active
        );
    }

    #[test]
    fn commit_rejects_when_everything_was_released() {
        let mut state = SimState::default();
        let id = reserve(&mut state, json!([line("A", 2)]));
        state.handle(&call(Op::Release, &[&id], Some("r1"), json!({})));

        let outcome = state.handle(&call(Op::Commit, &[&id], Some("c1"), json!({})));

        assert_eq!(
            state.ledger.reservations[0].status,
            ReservationStatus::Released
        );
        assert_eq!(outcome.reply.body["code"], "reservation_released");
    }

    #[test]
    fn release_gives_back_committed_units_when_reservation_was_committed() {
        let mut state = SimState::default();
        let id = reserve(&mut state, json!([line("A", 2), line("B", 1)]));
        let commit = state.handle(&call(Op::Commit, &[&id], Some("c1"), json!({})));
        let one = json!({ "items": [{ "sku": "A", "quantity": 1 }] });

        let partial = state.handle(&call(Op::Release, &[&id], Some("r1"), one));
        let status_after_partial = state.ledger.reservations[0].status;
        let rest = state.handle(&call(Op::Release, &[&id], Some("r2"), json!({})));
        let recommit = state.handle(&call(Op::Commit, &[&id], Some("c2"), json!({})));

        assert_eq!(commit.reply.status, StatusCode::OK);
        assert_eq!(
            partial.reply.body["released"],
            json!([{ "sku": "A", "quantity": 1 }])
        );
        assert_eq!(status_after_partial, ReservationStatus::Committed);
        assert_eq!(
            rest.reply.body["released"],
            json!([{ "sku": "A", "quantity": 1 }, { "sku": "B", "quantity": 1 }])
        );
        assert_eq!(
            state.ledger.reservations[0].status,
            ReservationStatus::Released
        );
        assert_eq!(recommit.reply.body["code"], "reservation_released");
    }

    #[test]
    fn reserve_answers_expires_at_one_ttl_ahead_when_ttl_configured() {
        let ttl = std::time::Duration::from_millis(90_500);
        let mut state = SimState::new(SimConfig::default().with_reservation_ttl(ttl));
        let body = json!({ "order_id": "o-1", "items": [line("A", 1)] });

        let before = Utc::now();
        let outcome = state.handle(&call(Op::Reserve, &[], Some("k"), body));
        let after = Utc::now();

        let expires_at = outcome.reply.body["expires_at"].as_str().unwrap();
        let expires_at = DateTime::parse_from_rfc3339(expires_at).unwrap();
        let ttl = chrono::Duration::from_std(ttl).unwrap();
        let slack = chrono::Duration::milliseconds(1);
        assert!(expires_at >= before + ttl - slack, "{expires_at}");
        assert!(expires_at <= after + ttl, "{expires_at}");
        assert_eq!(
            state.ledger.reservations[0].expires_at.timestamp_millis(),
            expires_at.timestamp_millis()
        );
    }

    #[test]
    fn reservation_expires_when_not_committed_by_expires_at() {
        let mut state = SimState::default();
        let id = reserve(&mut state, json!([line("A", 2)]));
        let expires_at = state.ledger.reservations[0].expires_at;

        state.expire_due(expires_at - chrono::Duration::milliseconds(1));
        let before = state.ledger.reservations[0].status;
        state.expire_due(expires_at);
        let commit = state.handle(&call(Op::Commit, &[&id], Some("c1"), json!({})));
        let release = state.handle(&call(Op::Release, &[&id], Some("r1"), json!({})));

        assert_eq!(before, ReservationStatus::Active);
        let reservation = &state.ledger.reservations[0];
        assert_eq!(reservation.status, ReservationStatus::Expired);
        assert_eq!(reservation.items[0].remaining, 0);
        assert_eq!(commit.reply.status, StatusCode::CONFLICT);
        assert_eq!(commit.reply.body["code"], "reservation_released");
        assert_eq!(release.reply.status, StatusCode::OK);
        assert_eq!(release.reply.body["released"], json!([]));
        assert!(state.ledger.commits.is_empty());
    }

    #[test]
    fn reservation_keeps_its_units_past_expires_at_when_committed_or_released() {
        let mut state = SimState::default();
        let committed = reserve(&mut state, json!([line("A", 2)]));
        let released = reserve(&mut state, json!([line("B", 1)]));
        state.handle(&call(Op::Commit, &[&committed], Some("c1"), json!({})));
        state.handle(&call(Op::Release, &[&released], Some("r1"), json!({})));

        state.expire_due(Utc::now() + chrono::Duration::days(1));
        let release = state.handle(&call(Op::Release, &[&committed], Some("r2"), json!({})));

        assert_eq!(
            release.reply.body["released"],
            json!([{ "sku": "A", "quantity": 2 }])
        );
        let statuses: Vec<_> = state.ledger.reservations.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            [ReservationStatus::Released, ReservationStatus::Released]
        );
    }

    #[test]
    fn release_answers_404_when_reservation_unknown() {
        let mut state = SimState::default();

        let outcome = state.handle(&call(Op::Release, &["nope"], Some("r1"), json!({})));

        assert_eq!(outcome.reply.status, StatusCode::NOT_FOUND);
        assert_eq!(outcome.reply.body["code"], "reservation_not_found");
    }

    #[test]
    fn refund_rejects_when_total_exceeds_capture() {
        let mut state = SimState::default();
        let captured = state.handle(&call(
            Op::Charge,
            &[],
            Some("c"),
            charge("10.00", "pm_card_visa"),
        ));
        let payment_id = captured.reply.body["payment_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let refund = |amount: &str| json!({ "amount": amount, "reason": "return" });

        let first = state.handle(&call(Op::Refund, &[&payment_id], Some("r1"), refund("6")));
        let second = state.handle(&call(
            Op::Refund,
            &[&payment_id],
            Some("r2"),
            refund("4.01"),
        ));

        assert_eq!(first.reply.status, StatusCode::CREATED);
        assert_eq!(second.reply.body["code"], "refund_exceeds_capture");
        assert_eq!(state.ledger.captures[0].refunded.to_string(), "6.00");
    }

    #[test]
    fn cancel_fulfillment_marks_cancelled_when_everything_cancelled() {
        let mut state = SimState::default();
        let items = json!([{ "sku": "A", "warehouse_id": "w-1", "quantity": 2 }]);
        let body =
            json!({ "order_id": "o-1", "items": items, "shipping_address": { "city": "X" } });
        let created = state.handle(&call(Op::Fulfil, &[], Some("f"), body));
        let id = created.reply.body["fulfillment_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let cancel_one = json!({ "items": [{ "sku": "A", "quantity": 1 }] });

        state.handle(&call(Op::CancelFulfillment, &[&id], Some("c1"), cancel_one));
        let rest = state.handle(&call(
            Op::CancelFulfillment,
            &[&id],
            Some("c2"),
            json!({ "items": [] }),
        ));

        assert_eq!(
            rest.reply.body["cancelled"],
            json!([{ "sku": "A", "quantity": 1 }])
        );
        let fulfillment = &state.ledger.fulfillments[0];
        assert_eq!(fulfillment.status, FulfillmentStatus::Cancelled);
        assert_eq!(fulfillment.cancelled, vec![sku_qty("A", 2)]);
    }

    /// Creates a fulfillment of `items` and answers its id.
    fn fulfil(state: &mut SimState, items: Value) -> String {
        let body =
            json!({ "order_id": "o-1", "items": items, "shipping_address": { "city": "X" } });
        let key = format!("o-1:ship:{}", state.ledger.fulfillments.len());
        let outcome = state.handle(&call(Op::Fulfil, &[], Some(&key), body));
        assert_eq!(outcome.reply.status, StatusCode::CREATED);
        outcome.reply.body["fulfillment_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn stock_line(sku: &str, quantity: u32) -> Value {
        json!({ "sku": sku, "warehouse_id": "w-1", "quantity": quantity })
    }

    fn update(items: Value, city: &str) -> Value {
        json!({ "order_id": "o-1", "change_id": "ch-1", "items": items, "shipping_address": { "city": city } })
    }

    #[test]
    fn update_fulfillment_replaces_items_and_address() {
        let mut state = SimState::default();
        let id = fulfil(&mut state, json!([stock_line("A", 2), stock_line("B", 1)]));
        let items = json!([stock_line("A", 1), stock_line("C", 3)]);

        let outcome = state.handle(&call(
            Op::UpdateFulfillment,
            &[&id],
            Some("u1"),
            update(items.clone(), "Y"),
        ));

        assert_eq!(outcome.reply.status, StatusCode::OK);
        assert_eq!(
            outcome.reply.body,
            json!({ "fulfillment_id": id, "items": items })
        );
        let fulfillment = &state.ledger.fulfillments[0];
        assert_eq!(serde_json::to_value(&fulfillment.items).unwrap(), items);
        assert_eq!(fulfillment.shipping_address, json!({ "city": "Y" }));
        assert_eq!(fulfillment.status, FulfillmentStatus::Created);
        assert_eq!(fulfillment.changes, ["ch-1"]);
    }

    #[test]
    fn update_fulfillment_rejects_already_shipped_when_holding_shipped_sku() {
        let mut state = SimState::default();
        let id = fulfil(&mut state, json!([stock_line("SHIPPED-A", 1)]));

        let outcome = state.handle(&call(
            Op::UpdateFulfillment,
            &[&id],
            Some("u1"),
            update(json!([stock_line("B", 1)]), "Y"),
        ));

        assert_eq!(outcome.reply.status, StatusCode::CONFLICT);
        assert_eq!(outcome.reply.body["code"], "already_shipped");
        assert_eq!(state.ledger.fulfillments[0].items[0].sku, "SHIPPED-A");
        assert!(state.ledger.fulfillments[0].changes.is_empty());
    }

    #[test]
    fn update_fulfillment_replays_first_answer_when_key_repeats() {
        let mut state = SimState::default();
        let id = fulfil(&mut state, json!([stock_line("A", 2)]));
        let req = call(
            Op::UpdateFulfillment,
            &[&id],
            Some("u1"),
            update(json!([stock_line("A", 1)]), "Y"),
        );

        let first = state.handle(&req);
        state.ledger.fulfillments[0].status = FulfillmentStatus::Shipped;
        let second = state.handle(&req);

        assert_eq!(first.reply.status, StatusCode::OK);
        assert_eq!(second.reply, first.reply);
        assert!(second.replayed);
        assert_eq!(state.ledger.fulfillments[0].changes, ["ch-1"]);
    }

    #[test]
    fn update_fulfillment_rejects_when_cancelled_shipped_unknown_or_invalid() {
        let mut state = SimState::default();
        let cancelled = fulfil(&mut state, json!([stock_line("A", 1)]));
        let shipped = fulfil(&mut state, json!([stock_line("A", 1)]));
        state.handle(&call(
            Op::CancelFulfillment,
            &[&cancelled],
            Some("c1"),
            json!({}),
        ));
        state.ledger.fulfillments[1].status = FulfillmentStatus::Shipped;
        let mut update_of = |id: &str, key: &str, body: Value| {
            state
                .handle(&call(Op::UpdateFulfillment, &[id], Some(key), body))
                .reply
        };
        let body = update(json!([stock_line("A", 1)]), "Y");

        let on_cancelled = update_of(&cancelled, "u1", body.clone());
        let on_shipped = update_of(&shipped, "u2", body.clone());
        let on_unknown = update_of("nope", "u3", body);
        let empty = update_of(&shipped, "u4", update(json!([]), "Y"));
        let no_address = update_of(
            &shipped,
            "u5",
            json!({ "order_id": "o-1", "change_id": "ch-1", "items": [stock_line("A", 1)], "shipping_address": "X" }),
        );

        assert_eq!(on_cancelled.body["code"], "fulfillment_cancelled");
        assert_eq!(on_shipped.body["code"], "already_shipped");
        assert_eq!(on_unknown.status, StatusCode::NOT_FOUND);
        assert_eq!(on_unknown.body["code"], "fulfillment_not_found");
        assert_eq!(empty.status, StatusCode::BAD_REQUEST);
        assert_eq!(no_address.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn publish_rejects_when_cloud_event_attribute_missing() {
        let mut state = SimState::default();
        let mut event = json!({
            "specversion": "1.0", "id": "e-1", "source": "order-service", "type": "order.created",
            "time": "2025-01-01T00:00:00Z", "datacontenttype": "application/json", "data": {}
        });
        let publish = |event: &Value| {
            call(
                Op::Publish,
                &["pubsub", "order.created"],
                None,
                event.clone(),
            )
        };

        let accepted = state.handle(&publish(&event));
        let again = state.handle(&publish(&event));
        event.as_object_mut().unwrap().remove("time");
        let rejected = state.handle(&publish(&event));

        assert_eq!(accepted.reply.status, StatusCode::NO_CONTENT);
        assert_eq!(again.reply.status, StatusCode::NO_CONTENT);
        assert_eq!(rejected.reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(state.ledger.events.len(), 2);
        assert_eq!(state.ledger.events[0].topic, "order.created");
    }
}
