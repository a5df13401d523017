//! The invariants, order by order, against the simulator's ledger (what the
//! downstream services did), the read model (what the API shows) and the order
//! object in Restate (what the sagas hold).

use crate::flows::Expected;
use order_service::engine::ingress::Ingress;
use order_sim::{Ledger, ReservationStatus};
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// Violations per invariant, and an example of each.
#[derive(Debug, Default)]
pub struct Violations {
    pub counts: BTreeMap<&'static str, u64>,
    pub examples: Vec<String>,
}

/// Every invariant, so that a clean run prints each with 0.
pub const INVARIANTS: [&str; 8] = [
    "at_most_one_capture",
    "captured_as_the_ledger",
    "refunds_within_capture_and_exact",
    "reservations_settled",
    "read_model_equals_object",
    "accepted_requests_applied_once",
    "events_unique_per_fact",
    "outbox_delivered",
];

impl Violations {
    fn add(&mut self, invariant: &'static str, what: String) {
        *self.counts.entry(invariant).or_default() += 1;
        if self.examples.len() < 20 {
            self.examples.push(format!("{invariant}: {what}"));
        }
    }
}

pub struct Checker<'a> {
    pub http: reqwest::Client,
    pub api: &'a str,
    pub ingress: Ingress,
    pub ledger: &'a Ledger,
    pub db: &'a sqlx::PgPool,
}

fn money(v: &Value) -> Decimal {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or_default()
}

impl Checker<'_> {
    async fn get(&self, path: &str) -> Value {
        let answer = self.http.get(format!("{}{path}", self.api)).send().await;
        match answer {
            Ok(a) => a.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    /// Checks one order; `v` collects what is wrong.
    pub async fn order(&self, expect: &Expected, v: &mut Violations) {
        let Some(id) = expect.order_id else { return };
        let ids = id.to_string();
        let order = self.get(&format!("/orders/{id}")).await;
        let label = format!("order {id} ({})", expect.life);

        // Money: one capture at most, as the read model says; refunds exact.
        let captures: Vec<_> = self
            .ledger
            .captures
            .iter()
            .filter(|c| c.order_id == ids)
            .collect();
        if captures.len() > 1 {
            v.add(
                "at_most_one_capture",
                format!("{label}: {} captures", captures.len()),
            );
        }
        let captured: Decimal = captures.iter().map(|c| c.amount).sum();
        if captured != money(&order["captured_amount"]) {
            let shown = &order["captured_amount"];
            v.add(
                "captured_as_the_ledger",
                format!("{label}: ledger {captured}, order {shown}"),
            );
        }
        let refunded: Decimal = self
            .ledger
            .refunds
            .iter()
            .filter(|r| captures.iter().any(|c| c.payment_id == r.payment_id))
            .map(|r| r.amount)
            .sum();
        if refunded > captured || refunded != money(&order["refunded_amount"]) {
            let shown = &order["refunded_amount"];
            v.add(
                "refunds_within_capture_and_exact",
                format!("{label}: captured {captured}, refunded {refunded}, order says {shown}"),
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
                v.add(
                    "reservations_settled",
                    format!("{label}: reservation {} {:?}", r.reservation_id, r.status),
                );
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
            v.add(
                "reservations_settled",
                format!("{label}: {held} units held, {left} left on the order"),
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
                        v.add(
                            "read_model_equals_object",
                            format!("{label}: {field} object {a}, read model {b}"),
                        );
                    }
                }
            }
            Err(e) => v.add(
                "read_model_equals_object",
                format!("{label}: object unreadable: {e}"),
            ),
        }

        // Each accepted request once: the status, the units, each return's end and
        // each status change once.
        let mut applied = status == expect.status;
        for (n, item) in order["items"]
            .as_array()
            .into_iter()
            .flatten()
            .take(2)
            .enumerate()
        {
            let cancelled = match expect.cancelled_whole {
                true => item["quantity"].as_i64(),
                false => Some(expect.cancelled[n]),
            };
            applied &= item["cancelled_quantity"].as_i64() == cancelled;
            applied &= item["refunded_quantity"].as_i64() == Some(expect.refunded[n]);
        }
        let returns = self.get(&format!("/orders/{id}/returns")).await;
        let ended: HashMap<String, String> = returns["returns"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                (
                    r["return_id"].as_str().unwrap_or_default().to_owned(),
                    r["status"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        applied &= ended.len() == expect.returns.len();
        for (return_id, end) in &expect.returns {
            applied &= ended.get(&return_id.to_string()).map(String::as_str) == Some(*end);
        }
        let history = self.get(&format!("/orders/{id}/status-history")).await;
        let moves: Vec<(Value, Value)> = history
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| (e["from"].clone(), e["to"].clone()))
            .collect();
        applied &= moves.iter().collect::<HashSet<_>>().len() == moves.len();
        if !applied {
            v.add(
                "accepted_requests_applied_once",
                format!("{label}: expected {expect:?}; order {order}; returns {ended:?}; moves {moves:?}"),
            );
        }

        // Events: one id per fact, each fact the outbox holds delivered.
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
                v.add(
                    "events_unique_per_fact",
                    format!("{label}: {topic} v{version} has ids {event_ids:?}"),
                );
            }
        }
        let published: HashSet<&str> = self.ledger.events.iter().map(|e| e.id.as_str()).collect();
        let outbox: Vec<(String, Option<chrono::DateTime<chrono::Utc>>)> = sqlx::query_as(
            "SELECT message_id, sent_at FROM outbox WHERE order_id = $1 AND kind = 'event'",
        )
        .bind(id)
        .fetch_all(self.db)
        .await
        .unwrap_or_default();
        for (message_id, sent_at) in outbox {
            if sent_at.is_none() || !published.contains(message_id.as_str()) {
                v.add(
                    "outbox_delivered",
                    format!("{label}: event {message_id} not delivered"),
                );
            }
        }
    }
}
