//! The service's Prometheus metrics: the recorder, and the business facts a
//! committed change of an order stands for.
//!
//! Business counters are counted where a change is written to the read model for
//! the first time (a new version): a replayed or retried commit writes nothing new,
//! so each fact counts once. Step attempts are counted as they run, since an
//! attempt is what they measure.

use crate::domain::{
    Change, ChangeRequest, ChangeStatus, ExchangeStatus, Order, OrderStatus, Quote, QuoteStatus,
    RequestStatus,
};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

/// Histogram buckets, in seconds: from a journal round trip to a slow saga.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process's recorder, installed the first time it is asked for.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Should another recorder be installed already, this one still renders.
        if metrics::set_global_recorder(recorder).is_ok() {
            describe();
        }
        handle
    })
}

/// The `# HELP` line of every metric the service exports.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "http_requests_total",
        "API requests answered, by method, route and status."
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an API request, by method, route and status."
    );
    describe_counter!(
        "order_change_quotes_total",
        "Change quotes that ended, by outcome (used, expired, released, refused)."
    );
    describe_counter!(
        "order_changes_total",
        "Changes that came to rest, by outcome (applied, rolled_back, needs_attention...)."
    );
    describe_counter!(
        "order_exchanges_total",
        "Exchanges that ended, by outcome (settled, cancelled, expired)."
    );
    describe_counter!(
        "order_claims_total",
        "Claims that ended, by type of what they claimed and resolution (refund, replacement, refund_and_replacement, rejected, expired)."
    );
    describe_counter!(
        "order_change_requests_total",
        "Change requests that ended, by side (customer, merchant) and outcome."
    );
    describe_counter!(
        "order_change_failures_total",
        "Changes that did not apply, by failure code."
    );
    describe_histogram!(
        "order_change_duration_seconds",
        Unit::Seconds,
        "Time from a change's request to its rest."
    );
    describe_gauge!(
        "order_change_settled_value",
        "Money settled by applied changes, by currency and direction (charge, refund); only grows."
    );
    describe_counter!(
        "order_created_total",
        "Orders created, by the status their create saga rested in."
    );
    describe_histogram!(
        "order_creation_duration_seconds",
        Unit::Seconds,
        "Time from a create request to its answer."
    );
    describe_counter!(
        "order_status_changes_total",
        "Status changes of orders, by the status left and the status reached."
    );
    describe_counter!("order_cancellations_total", "Orders cancelled.");
    describe_gauge!(
        "order_total_value_created",
        "Sum of the totals of the orders placed since the process started, by currency."
    );
    describe_counter!(
        "order_saga_compensations_total",
        "Compensation steps that went through, by saga and step."
    );
    describe_counter!(
        "order_saga_step_attempts_total",
        "Attempts at saga steps, by saga, step and result (succeeded, rejected, failed)."
    );
    describe_histogram!(
        "order_saga_step_duration_seconds",
        Unit::Seconds,
        "Time of one attempt at a saga step, by saga, step and result."
    );
    describe_gauge!(
        "order_outbox_undelivered",
        "Events and notifications not delivered yet, by kind and state (pending, refused)."
    );
    describe_gauge!(
        "order_outbox_oldest_undelivered_seconds",
        Unit::Seconds,
        "Age of the oldest undelivered message, by kind and state."
    );
    describe_gauge!("order_stuck_orders", "Orders in the operators' stuck list.");
    describe_gauge!(
        "order_changes_awaiting_payment",
        "Changes that wait for the customer to pay their difference."
    );
    describe_gauge!(
        "order_outstanding_value",
        "What applied changes left owed and nobody paid yet, by currency."
    );
}

/// The kind of a saga, without what makes its name unique per order
/// (`cancel_order@inv_..`, `set_status#3`): a label of few values.
pub fn saga_kind(name: &str) -> &str {
    name.split(['@', '#', ':']).next().unwrap_or(name)
}

/// Counts what the change from `before` to `after`, committed by saga `saga`,
/// stands for: where a create rested, a status change, a cancellation, the value
/// of an order placed, and the compensation steps `compensated` that went through.
pub fn count_commit(saga: &str, before: &Order, after: &Order, compensated: &[&str]) {
    let saga = saga_kind(saga);
    // The create saga commits once after its first write: where it rests.
    if saga == "create_order" {
        counter!("order_created_total", "status" => after.status.to_string()).increment(1);
    }
    if before.status != after.status {
        counter!(
            "order_status_changes_total",
            "from" => before.status.to_string(),
            "to" => after.status.to_string()
        )
        .increment(1);
        match after.status {
            OrderStatus::Cancelled => counter!("order_cancellations_total").increment(1),
            // Money in a metric is for a dashboard, never for accounts: a float is
            // fine here, and a gauge, since counters count whole numbers.
            OrderStatus::Confirmed => {
                let value = f64::try_from(rust_decimal::Decimal::from(after.total_amount));
                gauge!("order_total_value_created", "currency" => after.currency.to_string())
                    .increment(value.unwrap_or(0.0));
            }
            _ => {}
        }
    }
    for step in compensated {
        let labels = [("saga", saga.to_owned()), ("step", step.to_string())];
        counter!("order_saga_compensations_total", &labels).increment(1);
    }
    count_exchanges_and_claims(before, after);
}

/// Counts each exchange and claim that ended with this commit: exchanges by
/// outcome, claims by type and resolution (`rejected`, `expired` too).
fn count_exchanges_and_claims(before: &Order, after: &Order) {
    for exchange in &after.exchanges {
        let was = before.find_exchange(exchange.exchange_id).map(|e| e.status);
        let ended = matches!(
            exchange.status,
            ExchangeStatus::Settled | ExchangeStatus::Cancelled | ExchangeStatus::Expired
        );
        if ended && was != Some(exchange.status) {
            let outcome = exchange.status.as_str();
            counter!("order_exchanges_total", "outcome" => outcome).increment(1);
        }
    }
    for claim in &after.claims {
        let was = before.find_claim(claim.claim_id).map(|c| c.status);
        if claim.is_open() || was == Some(claim.status) {
            continue;
        }
        let resolution = match claim.resolution {
            Some(r) => r.as_str(),
            None => claim.status.as_str(),
        };
        // Once per claim and type of what it claimed.
        let mut types: Vec<&str> = claim.items.iter().map(|i| i.claim_type.as_str()).collect();
        types.sort_unstable();
        types.dedup();
        for claim_type in types {
            let labels = [("claim_type", claim_type), ("resolution", resolution)];
            counter!("order_claims_total", &labels).increment(1);
        }
    }
}

/// Counts a quote that ended (`used`, `expired`, `released`, `refused`), once:
/// the caller counts only a state it wrote first.
pub fn count_quote(quote: &Quote) {
    if matches!(quote.status, QuoteStatus::Open | QuoteStatus::Holding) {
        return;
    }
    counter!("order_change_quotes_total", "outcome" => quote.status.as_str()).increment(1);
}

/// Counts what a write of `change` tells, given the state it had before
/// (`before`), once: the caller counts only a write it made first. A change that
/// reached its end (or an operator's desk) counts its outcome, its failure and
/// how long it took from request to rest; an applied one, the money it settled
/// since (a charge of what it left owed, later, counts then).
pub fn count_change(change: &Change, before: Option<&Change>) {
    let reached = change.status.is_final() || change.status == ChangeStatus::NeedsAttention;
    if reached && before.map(|b| b.status) != Some(change.status) {
        counter!("order_changes_total", "outcome" => change.status.as_str()).increment(1);
        if let Some(failure) = &change.failure {
            counter!("order_change_failures_total", "code" => failure.code.clone()).increment(1);
        }
        let rested = change
            .closed_at
            .or(change.applied_at)
            .unwrap_or(change.created_at);
        let took = (rested - change.created_at).to_std().unwrap_or_default();
        histogram!("order_change_duration_seconds").record(took.as_secs_f64());
    }
    if change.status == ChangeStatus::Applied {
        let currency = change.currency.to_string();
        let value =
            |m: crate::domain::Money| f64::try_from(rust_decimal::Decimal::from(m)).unwrap_or(0.0);
        let counted = before.filter(|b| b.status == ChangeStatus::Applied);
        let (charges, refunds) =
            counted.map_or((0, 0), |b| (b.moved.charges.len(), b.moved.refunds.len()));
        for charge in change.moved.charges.iter().skip(charges) {
            gauge!("order_change_settled_value", "currency" => currency.clone(), "direction" => "charge")
                .increment(value(charge.amount));
        }
        for refund in change.moved.refunds.iter().skip(refunds) {
            gauge!("order_change_settled_value", "currency" => currency.clone(), "direction" => "refund")
                .increment(value(refund.amount));
        }
    }
}

/// Counts a change request that ended (`accepted`, `declined`, `withdrawn`,
/// `expired`), once: the caller counts only a state it wrote first.
pub fn count_request(request: &ChangeRequest) {
    if request.status == RequestStatus::Open {
        return;
    }
    counter!("order_change_requests_total",
        "requested_by" => request.requested_by.clone(), "outcome" => request.status.as_str())
    .increment(1);
}

/// Sets the gauges of money owed: `order_changes_awaiting_payment`, the changes
/// that wait for their payment, and `order_outstanding_value{currency}`, what
/// changes kept owed and nobody paid yet.
pub fn set_owed(awaiting: i64, outstanding: &[(String, rust_decimal::Decimal)]) {
    // A currency nobody owes any more reads 0, not its last sum.
    static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    gauge!("order_changes_awaiting_payment").set(awaiting as f64);
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    for currency in seen.iter() {
        if !outstanding.iter().any(|(c, _)| c == currency) {
            gauge!("order_outstanding_value", "currency" => currency.clone()).set(0.0);
        }
    }
    for (currency, value) in outstanding {
        let value = f64::try_from(*value).unwrap_or(0.0);
        gauge!("order_outstanding_value", "currency" => currency.clone()).set(value);
        if !seen.contains(currency) {
            seen.push(currency.clone());
        }
    }
}

/// Counts one attempt of a saga step and how long it took.
pub fn count_attempt(saga: &str, step: &str, outcome: &str, took: Duration) {
    let labels = [
        ("saga", saga_kind(saga).to_owned()),
        ("step", step.to_owned()),
        ("outcome", outcome.to_owned()),
    ];
    counter!("order_saga_step_attempts_total", &labels).increment(1);
    histogram!("order_saga_step_duration_seconds", &labels).record(took.as_secs_f64());
}

/// Sets the outbox gauges: `order_outbox_undelivered{kind,state}`, the messages not
/// delivered yet, and `order_outbox_oldest_undelivered_seconds{kind,state}`, the
/// age of the oldest of them (0 when none); `kind` is `event` or `notification`,
/// `state` `pending` (being tried) or `refused` (for good, waiting for an operator).
pub fn set_outbox_backlog(backlog: &[crate::read_model::outbox::Backlog]) {
    for b in backlog {
        let state = if b.refused { "refused" } else { "pending" };
        let labels = [("kind", b.kind.as_str()), ("state", state)];
        gauge!("order_outbox_undelivered", &labels).set(b.count as f64);
        gauge!("order_outbox_oldest_undelivered_seconds", &labels).set(b.oldest_secs);
    }
}
