//! What must hold for every order once everything settled, whatever crashed or
//! failed on the way, checked against the simulator's ledger (what the downstream
//! services did), the read model (what the API shows) and the order object in
//! Restate (what the sagas hold). The chaos run and the crash tests both use it.

use order_service::engine::ingress::Ingress;
use order_sim::{Ledger, ReservationStatus};
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use uuid::Uuid;

/// Every invariant [`Checker::order`] checks.
pub const INVARIANTS: [&str; 9] = [
    "every_capture_recorded",
    "refunds_within_each_payment",
    "captured_as_the_ledger",
    "refunds_within_capture_and_exact",
    "reservations_settled",
    "read_model_equals_object",
    "events_unique_per_fact",
    "outbox_delivered",
    "events_in_order",
];

/// An invariant that does not hold, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub what: String,
}

/// Where to look.
pub struct Checker<'a> {
    pub http: reqwest::Client,
    /// `http://HOST:PORT/api/v1`
    pub api: &'a str,
    pub ingress: Ingress,
    pub ledger: &'a Ledger,
    pub db: &'a sqlx::PgPool,
}

fn money(v: &Value) -> Decimal {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or_default()
}

impl Checker<'_> {
    /// `GET` of `path` under the API; `null` when it does not answer JSON.
    pub async fn get(&self, path: &str) -> Value {
        match self.http.get(format!("{}{path}", self.api)).send().await {
            Ok(answer) => answer.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    /// Checks order `id`, whose read-model view is `order`.
    pub async fn order(&self, id: Uuid, order: &Value) -> Vec<Violation> {
        let mut found = Vec::new();
        let mut add = |invariant, what: String| found.push(Violation { invariant, what });
        let ids = id.to_string();

        // Money: every capture is a payment the order records (the create's, and
        // one per change that charged a difference), never a second one for the
        // same charge; refunds exact, and within each payment.
        let captures: Vec<_> = self
            .ledger
            .captures
            .iter()
            .filter(|c| c.order_id == ids)
            .collect();
        let recorded: Vec<String> = sqlx::query_scalar(
            "SELECT payment_id FROM payments WHERE order_id = $1 AND status = 'captured'
                AND payment_id IS NOT NULL",
        )
        .bind(id)
        .fetch_all(self.db)
        .await
        .unwrap_or_default();
        let unrecorded: Vec<&str> = captures
            .iter()
            .map(|c| c.payment_id.as_str())
            .filter(|p| !recorded.iter().any(|r| r == p))
            .collect();
        if !unrecorded.is_empty() || recorded.len() != captures.len() {
            add(
                "every_capture_recorded",
                format!(
                    "{} captures, {} recorded by the order; not recorded: {unrecorded:?}",
                    captures.len(),
                    recorded.len()
                ),
            );
        }
        for capture in &captures {
            let back: Decimal = self
                .ledger
                .refunds
                .iter()
                .filter(|r| r.payment_id == capture.payment_id)
                .map(|r| r.amount)
                .sum();
            if back > capture.amount {
                let what = format!(
                    "payment {}: captured {}, refunded {back}",
                    capture.payment_id, capture.amount
                );
                add("refunds_within_each_payment", what);
            }
        }
        let captured: Decimal = captures.iter().map(|c| c.amount).sum();
        if captured != money(&order["captured_amount"]) {
            let shown = &order["captured_amount"];
            add(
                "captured_as_the_ledger",
                format!("ledger {captured}, order {shown}"),
            );
        }
        let refunded: Decimal = self
            .ledger
            .refunds
            .iter()
            .filter(|r| captures.iter().any(|c| c.payment_id == r.payment_id))
            .map(|r| r.amount)
            .sum();
        // Refunds an operator made outside the payment service count too; the
        // order's refunds record keeps them, without a refund id.
        let outside: Option<Decimal> = sqlx::query_scalar(
            "SELECT sum(amount) FROM refunds WHERE order_id = $1 AND refund_id IS NULL",
        )
        .bind(id)
        .fetch_one(self.db)
        .await
        .unwrap_or_default();
        let refunded = refunded + outside.unwrap_or_default().round_dp(2);
        if refunded > captured || refunded != money(&order["refunded_amount"]) {
            let shown = &order["refunded_amount"];
            add(
                "refunds_within_capture_and_exact",
                format!("captured {captured}, refunded {refunded}, order says {shown}"),
            );
        }

        // Stock: every reservation committed or released, or held by a live draft;
        // what is still held is exactly what the order still has.
        let status = order["status"].as_str().unwrap_or_default();
        let mut held = 0u32;
        for r in self
            .ledger
            .reservations
            .iter()
            .filter(|r| r.order_id == ids)
        {
            let settled = match r.status {
                ReservationStatus::Committed | ReservationStatus::Released => true,
                ReservationStatus::Active => status == "draft",
                ReservationStatus::Expired => false,
            };
            if !settled {
                let what = format!(
                    "reservation {} {:?} on a {status} order",
                    r.reservation_id, r.status
                );
                add("reservations_settled", what);
            }
            if matches!(
                r.status,
                ReservationStatus::Committed | ReservationStatus::Active
            ) {
                held += r.items.iter().map(|i| i.remaining).sum::<u32>();
            }
        }
        let left: i64 = match status {
            "cancelled" | "failed" => 0,
            _ => order["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| {
                    i["quantity"].as_i64().unwrap_or(0)
                        - i["cancelled_quantity"].as_i64().unwrap_or(0)
                })
                .sum(),
        };
        if i64::from(held) != left {
            add(
                "reservations_settled",
                format!("{held} units held, {left} left on the order"),
            );
        }

        // The read model is the object's order.
        let object: Result<Value, _> = self
            .ingress
            .read("Order", &ids, "get", Duration::from_secs(10))
            .await;
        match object {
            Ok(object) => {
                for field in [
                    "status",
                    "version",
                    "captured_amount",
                    "refunded_amount",
                    "total_amount",
                ] {
                    if object[field] != order[field] {
                        let (a, b) = (&object[field], &order[field]);
                        add(
                            "read_model_equals_object",
                            format!("{field}: object {a}, read model {b}"),
                        );
                    }
                }
            }
            Err(e) => add(
                "read_model_equals_object",
                format!("the object is unreadable: {e}"),
            ),
        }

        // Events: one id per fact (topic and order version); each event of the
        // outbox delivered.
        let mut ids_per_fact: HashMap<(String, String), HashSet<&str>> = HashMap::new();
        for event in self
            .ledger
            .events
            .iter()
            .filter(|e| e.cloud_event["subject"] == ids.as_str())
        {
            let fact = (event.topic.clone(), event.data["version"].to_string());
            ids_per_fact
                .entry(fact)
                .or_default()
                .insert(event.id.as_str());
        }
        for ((topic, version), event_ids) in &ids_per_fact {
            if event_ids.len() > 1 {
                add(
                    "events_unique_per_fact",
                    format!("{topic} v{version} has ids {event_ids:?}"),
                );
            }
        }
        let published: HashSet<&str> = self.ledger.events.iter().map(|e| e.id.as_str()).collect();
        let outbox: Vec<(String, Option<chrono::DateTime<chrono::Utc>>)> = sqlx::query_as(
            "SELECT message_id, sent_at FROM outbox WHERE order_id = $1 AND kind = 'event'
             ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.db)
        .await
        .unwrap_or_default();
        for (message_id, sent_at) in &outbox {
            if sent_at.is_none() || !published.contains(message_id.as_str()) {
                add(
                    "outbox_delivered",
                    format!("event {message_id} not delivered"),
                );
            }
        }

        // Each event first published after every older event of the order: the
        // ledger's first deliveries come in the outbox's order.
        let mut first_seen: Vec<&str> = Vec::new();
        for event in self
            .ledger
            .events
            .iter()
            .filter(|e| e.cloud_event["subject"] == ids.as_str())
        {
            if !first_seen.contains(&event.id.as_str()) {
                first_seen.push(event.id.as_str());
            }
        }
        let written: Vec<&str> = outbox
            .iter()
            .map(|(id, _)| id.as_str())
            .filter(|id| first_seen.contains(id))
            .collect();
        if first_seen != written {
            add(
                "events_in_order",
                format!("published {first_seen:?}, written {written:?}"),
            );
        }
        found
    }
}
