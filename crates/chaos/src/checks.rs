//! The invariants, order by order: those that hold for any order
//! ([`order_invariants`]), and that each request the run had accepted was applied
//! exactly once.

use crate::flows::Expected;
use order_invariants::Checker;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Every invariant of the run, so that a clean run prints each with 0.
pub fn invariants() -> Vec<&'static str> {
    let mut all = order_invariants::INVARIANTS.to_vec();
    all.push("accepted_requests_applied_once");
    all
}

/// Violations per invariant, and some examples.
#[derive(Debug, Default)]
pub struct Violations {
    pub counts: BTreeMap<&'static str, u64>,
    pub examples: Vec<String>,
}

impl Violations {
    fn add(&mut self, invariant: &'static str, what: String) {
        *self.counts.entry(invariant).or_default() += 1;
        if self.examples.len() < 20 {
            self.examples.push(format!("{invariant}: {what}"));
        }
    }
}

/// Checks one order of the run.
pub async fn order(checker: &Checker<'_>, expect: &Expected, v: &mut Violations) {
    let Some(id) = expect.order_id else { return };
    let order = checker.get(&format!("/orders/{id}")).await;
    let label = format!("order {id} ({})", expect.life);
    for violation in checker.order(id, &order).await {
        v.add(violation.invariant, format!("{label}: {}", violation.what));
    }

    // Each accepted request once: the status, the units, each return's end and
    // each status change once.
    let mut applied = order["status"].as_str() == Some(expect.status);
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
        if let Some(quantity) = expect.quantity[n] {
            applied &= item["quantity"].as_i64() == Some(quantity);
        }
        applied &= item["refunded_quantity"].as_i64() == Some(expect.refunded[n]);
    }
    let returns = checker.get(&format!("/orders/{id}/returns")).await;
    let ended: HashMap<String, String> = returns["returns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let id = r["return_id"].as_str().unwrap_or_default().to_owned();
            (id, r["status"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    applied &= ended.len() == expect.returns.len();
    for (return_id, end) in &expect.returns {
        applied &= ended.get(&return_id.to_string()).map(String::as_str) == Some(*end);
    }
    for (kind, expected) in [("exchanges", &expect.exchanges), ("claims", &expect.claims)] {
        let listed = checker.get(&format!("/orders/{id}/{kind}")).await;
        let field = format!("{}_id", kind.trim_end_matches('s'));
        let ends: HashMap<String, String> = listed[kind]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                let id = r[&field].as_str().unwrap_or_default().to_owned();
                (id, r["status"].as_str().unwrap_or_default().to_owned())
            })
            .collect();
        applied &= ends.len() == expected.len();
        for (of, end) in expected {
            applied &= ends.get(&of.to_string()).map(String::as_str) == Some(*end);
        }
    }
    let history = checker.get(&format!("/orders/{id}/status-history")).await;
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
            format!(
                "{label}: expected {expect:?}; order {order}; returns {ended:?}; moves {moves:?}"
            ),
        );
    }
}
