//! What operators see of the orders and what they can do: the stuck list, an
//! order's timeline and retries. The record of every saga step is in the read
//! model (`saga_steps`); the live state of the invocations behind the sagas comes
//! from Restate's SQL introspection.

use crate::domain::{Attention, OrderStatus};
use crate::engine::admin::Admin;
use crate::read_model::{self, outbox, SagaStepRow};
use crate::workflows;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use utoipa::ToSchema;
use uuid::Uuid;

/// The operators' view over the read model and the engine.
#[derive(Clone)]
pub struct Operators {
    pub db: PgPool,
    pub admin: Admin,
    /// How long an order may rest in a transitional state before it counts as
    /// stuck (`ORDER_STUCK_AFTER_SECS`).
    pub stuck_after: Duration,
}

/// Why an order is in the stuck list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StuckReason {
    /// Its saga's invocation is backing off or paused.
    Invocation,
    /// A step was finally refused: it waits for an operator to retry or resolve it.
    Parked,
    /// A message of the order (an event or a notification) is refused for good, or
    /// its delivery has been failing for [`UNDELIVERED_AFTER`].
    Undelivered,
    /// It rests in a transitional state longer than it should.
    Resting,
}

/// One entry of `GET /ops/orders/stuck`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StuckOrder {
    pub order_id: Uuid,
    pub order_number: Option<String>,
    #[schema(value_type = Option<OrderStatus>)]
    pub status: Option<String>,
    pub saga: Option<String>,
    pub step: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub since: DateTime<Utc>,
    pub invocation_id: Option<String>,
    pub invocation_status: Option<String>,
    pub reason: StuckReason,
    /// Set when the entry is a change of the order rather than the order itself.
    pub change_id: Option<Uuid>,
    /// Exchanges and claims are not offered yet: always null.
    pub exchange_id: Option<Uuid>,
    pub claim_id: Option<Uuid>,
}

/// Which stuck orders to show.
#[derive(Debug, Clone, Default)]
pub struct StuckFilter {
    /// Orders resting longer than this; `None`: `ORDER_STUCK_AFTER_SECS`.
    pub older_than: Option<Duration>,
    pub step: Option<String>,
    /// A piece of the last error, any case.
    pub error: Option<String>,
}

/// The stuck list with its counts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StuckList {
    pub orders: Vec<StuckOrder>,
    pub counts: StuckCounts,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct StuckCounts {
    pub by_step: BTreeMap<String, usize>,
    pub by_error: BTreeMap<String, usize>,
}

/// `GET /ops/orders/{id}/timeline`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Timeline {
    pub order_id: Uuid,
    pub order_number: String,
    #[schema(value_type = OrderStatus)]
    pub status: String,
    #[schema(value_type = Option<Attention>)]
    pub attention: Value,
    pub sagas: Vec<SagaTimeline>,
    pub timers: Vec<Timer>,
    pub invocations: Vec<Invocation>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SagaTimeline {
    pub saga: String,
    pub invocation_id: Option<String>,
    pub invocation_status: Option<String>,
    pub steps: Vec<SagaStepRow>,
}

/// A durable timer of the order: a delayed call to its object.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Timer {
    pub name: String,
    pub invocation_id: String,
    pub fires_at: Option<String>,
}

/// A Restate invocation on the order's object.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Invocation {
    pub invocation_id: String,
    pub handler: String,
    pub status: String,
    pub created_at: Option<String>,
    pub retry_count: Option<i64>,
    pub last_failure: Option<String>,
}

/// How long delivery of a message may fail before its order is listed as stuck.
/// A bus that refuses (a `404` while its component loads, a `403` from its scopes)
/// needs an operator and shows within seconds; a single `503` retried 100 ms later
/// does not make the list (and the `order_stuck_orders` gauge) flicker. A message
/// refused for good is listed at once: no retry will deliver it.
pub const UNDELIVERED_AFTER: Duration = Duration::from_secs(10);

/// Invocation states of a saga that cannot go on by itself.
const STALLED: &str = "'backing-off', 'paused'";
/// Invocation states of a saga still under way (or queued behind one).
const UNDER_WAY: &str = "'pending', 'ready', 'running', 'suspended'";

impl Operators {
    /// Orders whose invocation is backing off or paused (whatever their age), orders
    /// parked after a refused step, orders with a message that cannot be delivered,
    /// and orders resting in a transitional state longer than the filter says;
    /// oldest first.
    pub async fn stuck(&self, filter: &StuckFilter) -> anyhow::Result<StuckList> {
        let older_than = filter.older_than.unwrap_or(self.stuck_after);
        let cutoff = Utc::now() - chrono::Duration::from_std(older_than)?;
        // One entry per order, and one per change, exchange or claim of it that
        // is stuck.
        let mut found: HashMap<(Uuid, Option<Uuid>), StuckOrder> = HashMap::new();
        let mut add = |entry: StuckOrder| {
            let of = entry.change_id.or(entry.exchange_id).or(entry.claim_id);
            let key = (entry.order_id, of);
            let keep = found.get(&key).is_none_or(|old| entry.reason < old.reason);
            if keep {
                found.insert(key, entry);
            }
        };

        for inv in self.invocations(&format!("status IN ({STALLED})")).await? {
            add(self.entry_of(&inv, StuckReason::Invocation).await?);
        }
        for inv in self
            .invocations(&format!("status IN ({UNDER_WAY})"))
            .await?
        {
            if inv.created_at.is_some_and(|at| at < cutoff) {
                add(self.entry_of(&inv, StuckReason::Resting).await?);
            }
        }
        for killed in self.killed_sagas().await? {
            add(killed);
        }
        for parked in read_model::parked_orders(&self.db).await? {
            add(StuckOrder {
                order_id: parked.order_id,
                order_number: Some(parked.order_number),
                status: Some(parked.status),
                saga: None,
                step: Some(parked.step),
                attempts: 0,
                last_error: Some(parked.message),
                since: parked.since,
                invocation_id: None,
                invocation_status: None,
                reason: StuckReason::Parked,
                change_id: None,
                exchange_id: None,
                claim_id: None,
            });
        }
        let failing_before = Utc::now() - chrono::Duration::from_std(UNDELIVERED_AFTER)?;
        for message in outbox::undelivered(&self.db, failing_before).await? {
            let step = match message.kind.as_str() {
                "event" => "publish_event",
                _ => "notify_customer",
            };
            add(StuckOrder {
                order_id: message.order_id,
                order_number: None,
                status: None,
                saga: None,
                step: Some(step.into()),
                attempts: message.attempts,
                last_error: Some(message.last_error),
                since: message.since,
                invocation_id: None,
                invocation_status: None,
                reason: StuckReason::Undelivered,
                change_id: None,
                exchange_id: None,
                claim_id: None,
            });
        }
        for change in read_model::stuck_changes(&self.db, cutoff).await? {
            let reason = match change.status.as_str() {
                "needs_attention" => StuckReason::Parked,
                _ => StuckReason::Resting,
            };
            add(StuckOrder {
                order_id: change.order_id,
                order_number: None,
                status: None,
                saga: Some("apply_change".into()),
                step: change.step,
                attempts: 0,
                last_error: change.message,
                since: change.since,
                invocation_id: None,
                invocation_status: None,
                reason,
                change_id: Some(change.change_id),
                exchange_id: None,
                claim_id: None,
            });
        }
        for stuck in read_model::stuck_resources(&self.db, cutoff).await? {
            let exchange = stuck.kind == "exchange";
            add(StuckOrder {
                order_id: stuck.order_id,
                order_number: None,
                status: None,
                saga: Some(
                    if exchange {
                        "receive_exchange"
                    } else {
                        "resolve_claim"
                    }
                    .into(),
                ),
                step: stuck.step,
                attempts: 0,
                last_error: stuck.message,
                since: stuck.since,
                invocation_id: None,
                invocation_status: None,
                reason: match stuck.parked {
                    true => StuckReason::Parked,
                    false => StuckReason::Resting,
                },
                change_id: None,
                exchange_id: exchange.then_some(stuck.id),
                claim_id: (!exchange).then_some(stuck.id),
            });
        }
        for draft in read_model::overdue_drafts(&self.db, cutoff).await? {
            add(StuckOrder {
                order_id: draft.order_id,
                order_number: Some(draft.order_number),
                status: Some(draft.status),
                saga: Some("expire_draft".into()),
                step: Some("expire_draft".into()),
                attempts: 0,
                last_error: Some("the draft's auto-cancel has not run".into()),
                since: draft.since,
                invocation_id: None,
                invocation_status: None,
                reason: StuckReason::Resting,
                change_id: None,
                exchange_id: None,
                claim_id: None,
            });
        }

        let mut orders: Vec<StuckOrder> = found
            .into_values()
            .filter(|o| {
                filter
                    .step
                    .as_ref()
                    .is_none_or(|s| o.step.as_ref() == Some(s))
            })
            .filter(|o| {
                filter.error.as_ref().is_none_or(|e| {
                    let error = o.last_error.as_deref().unwrap_or("").to_lowercase();
                    error.contains(&e.to_lowercase())
                })
            })
            .collect();
        self.fill_orders(&mut orders).await?;
        orders.sort_by_key(|o| (o.since, o.order_id));
        let mut counts = StuckCounts::default();
        for o in &orders {
            let step = o.step.clone().unwrap_or_else(|| "unknown".into());
            *counts.by_step.entry(step).or_default() += 1;
            let error = o.last_error.clone().unwrap_or_else(|| "none".into());
            *counts.by_error.entry(error).or_default() += 1;
        }
        Ok(StuckList { orders, counts })
    }

    /// Every saga of the order with its steps, its pending timers and the
    /// invocations behind it; `None` for an unknown order.
    pub async fn timeline(&self, order_id: Uuid) -> anyhow::Result<Option<Timeline>> {
        let Some(order) = read_model::get_order(&self.db, order_id).await? else {
            return Ok(None);
        };
        let invocations = self
            .invocations(&format!("target_service_key = '{order_id}'"))
            .await?;
        let steps = read_model::saga_steps_of(&self.db, order_id).await?;
        let mut sagas: Vec<SagaTimeline> = Vec::new();
        for step in steps {
            let same = sagas.last().is_some_and(|s| s.saga == step.saga);
            if !same {
                let invocation_id = step.invocation_id.clone();
                let invocation_status = invocation_id.as_ref().and_then(|id| {
                    let found = invocations.iter().find(|i| &i.id == id);
                    found.map(|i| i.status.clone())
                });
                sagas.push(SagaTimeline {
                    saga: step.saga.clone(),
                    invocation_id,
                    invocation_status,
                    steps: Vec::new(),
                });
            }
            if let Some(saga) = sagas.last_mut() {
                saga.steps.push(step);
            }
        }
        let timers = invocations
            .iter()
            .filter(|i| i.status == "scheduled")
            .map(|i| Timer {
                name: timer_name(&i.handler),
                invocation_id: i.id.clone(),
                fires_at: i.scheduled_start_at.clone(),
            })
            .collect();
        Ok(Some(Timeline {
            order_id,
            order_number: order.order_number.clone(),
            status: order.status.to_string(),
            attention: serde_json::to_value(&order.attention)?,
            sagas,
            timers,
            invocations: invocations.into_iter().map(Invocation::from).collect(),
        }))
    }

    /// Resumes now every invocation of the order that is backing off or paused;
    /// their journals keep what already succeeded, so no step runs twice. Returns
    /// the invocations resumed.
    pub async fn resume_stalled(&self, order_id: Uuid) -> anyhow::Result<Vec<String>> {
        let stalled = self
            .invocations(&format!(
                "target_service_key = '{order_id}' AND status IN ({STALLED})"
            ))
            .await?;
        let mut resumed = Vec::new();
        for inv in stalled {
            self.admin.resume(&inv.id).await?;
            resumed.push(inv.id);
        }
        Ok(resumed)
    }

    /// Orders marked by a saga whose invocation has ended (killed through Restate's
    /// admin API), not yet parked by a later call on the order.
    async fn killed_sagas(&self) -> anyhow::Result<Vec<StuckOrder>> {
        let marks = self.saga_marks(None).await?;
        if marks.is_empty() {
            return Ok(Vec::new());
        }
        let ids = sql_list(marks.values().map(|m| m.invocation_id.as_str()));
        let rows = self
            .admin
            .query(&format!(
                "SELECT id, status, completion_failure, completed_at FROM sys_invocation
                 WHERE id IN ({ids})"
            ))
            .await?;
        let ended = |key: &Uuid| {
            let id = &marks[key].invocation_id;
            let row = rows.iter().find(|r| r["id"].as_str() == Some(id));
            // Gone from Restate (purged) or completed: either way not running.
            row.is_none_or(|r| r["status"].as_str() == Some("completed"))
        };
        let candidates: Vec<Uuid> = marks.keys().copied().filter(ended).collect();
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        // Read again: a saga that finished since the first read has cleared its mark.
        let still = self.saga_marks(Some(&candidates)).await?;
        let mut killed = Vec::new();
        for (order_id, mark) in still {
            if marks.get(&order_id) != Some(&mark) {
                continue;
            }
            let row = rows
                .iter()
                .find(|r| r["id"].as_str() == Some(&mark.invocation_id));
            let text = |name: &str| row.and_then(|r| r[name].as_str()).map(str::to_owned);
            let last = read_model::last_step_of_invocation(&self.db, &mark.invocation_id).await?;
            let failure = text("completion_failure").unwrap_or_else(|| "ended".into());
            killed.push(StuckOrder {
                order_id,
                order_number: None,
                status: None,
                saga: Some(mark.saga.clone()),
                step: last.as_ref().map(|s| s.step.clone()),
                attempts: 0,
                last_error: Some(format!(
                    "the saga {} ended before it finished ({failure}); the next call on the order parks it",
                    mark.saga
                )),
                since: text("completed_at")
                    .and_then(|t| parse_time(&t))
                    .unwrap_or_else(Utc::now),
                invocation_id: Some(mark.invocation_id),
                invocation_status: text("status"),
                reason: StuckReason::Invocation,
                change_id: None,
                exchange_id: None,
                claim_id: None,
            });
        }
        Ok(killed)
    }

    /// The marks of sagas under way (or killed) on orders, by order; only of
    /// `orders` when given.
    async fn saga_marks(
        &self,
        orders: Option<&[Uuid]>,
    ) -> anyhow::Result<HashMap<Uuid, workflows::Running>> {
        let only = match orders {
            Some(ids) => {
                let keys = ids.iter().map(Uuid::to_string).collect::<Vec<_>>();
                format!(
                    " AND service_key IN ({})",
                    sql_list(keys.iter().map(String::as_str))
                )
            }
            None => String::new(),
        };
        let rows = self
            .admin
            .query(&format!(
                "SELECT service_key, value_utf8 FROM state
                 WHERE service_name = '{}' AND key = '{}'{only}",
                workflows::ORDER_OBJECT,
                workflows::RUNNING_STATE
            ))
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let key = r["service_key"].as_str()?.parse().ok()?;
                let mark = serde_json::from_str(r["value_utf8"].as_str()?).ok()?;
                Some((key, mark))
            })
            .collect())
    }

    /// The order object's invocations matching `condition` (SQL over
    /// `sys_invocation`; callers only pass UUIDs and constants).
    async fn invocations(&self, condition: &str) -> anyhow::Result<Vec<RawInvocation>> {
        let rows = self
            .admin
            .query(&format!(
                // Every column: naming them leaves `scheduled_start_at` out (1.7).
                "SELECT *
                 FROM sys_invocation
                 WHERE target_service_name = '{}' AND {condition}
                 ORDER BY created_at",
                crate::workflows::ORDER_OBJECT
            ))
            .await?;
        let mut invocations: Vec<RawInvocation> = rows.iter().map(RawInvocation::from).collect();
        // A paused invocation keeps its last failure in its journal events only.
        let paused: Vec<&str> = invocations
            .iter()
            .filter(|i| i.status == "paused")
            .map(|i| i.id.as_str())
            .collect();
        if !paused.is_empty() {
            let ids = paused
                .iter()
                .map(|id| format!("'{}'", id.replace('\'', "")))
                .collect::<Vec<_>>()
                .join(",");
            let events = self
                .admin
                .query(&format!(
                    "SELECT id, event_json FROM sys_journal_events
                     WHERE event_type = 'Paused' AND id IN ({ids})"
                ))
                .await?;
            for event in events {
                let json: Value = event["event_json"]
                    .as_str()
                    .and_then(|s| serde_json::from_str(s).ok())
                    .unwrap_or_else(|| event["event_json"].clone());
                let failure = &json["last_failure"];
                if let Some(inv) = invocations
                    .iter_mut()
                    .find(|i| Some(i.id.as_str()) == event["id"].as_str())
                {
                    inv.last_failure = failure["error_message"].as_str().map(str::to_owned);
                    inv.failed_step = failure["related_command_name"].as_str().map(str::to_owned);
                }
            }
        }
        Ok(invocations)
    }

    /// A stuck entry for `inv`, with the failing step from the saga's own record
    /// when it has one (attempts, first failure, the downstream's answer).
    async fn entry_of(
        &self,
        inv: &RawInvocation,
        reason: StuckReason,
    ) -> anyhow::Result<StuckOrder> {
        let order_id = inv.key.parse().unwrap_or_default();
        let last = read_model::last_step_of_invocation(&self.db, &inv.id).await?;
        let (saga, step, attempts, last_error, since) = match last {
            Some(s) => (
                Some(s.saga),
                Some(s.step),
                s.attempts,
                s.last_error.or_else(|| inv.last_failure.clone()),
                s.started_at,
            ),
            None => (
                None,
                inv.failed_step.clone(),
                inv.retry_count.unwrap_or(0) as i32,
                inv.last_failure.clone(),
                inv.created_at.unwrap_or_else(Utc::now),
            ),
        };
        let of = |kind: &str| saga.as_deref().and_then(|s| resource_of_saga(s, kind));
        let (change_id, exchange_id, claim_id) = (of("change"), of("exchange"), of("claim"));
        Ok(StuckOrder {
            order_id,
            order_number: None,
            status: None,
            saga,
            step: step.or_else(|| inv.failed_step.clone()),
            attempts,
            last_error,
            since,
            invocation_id: Some(inv.id.clone()),
            invocation_status: Some(inv.status.clone()),
            reason,
            change_id,
            exchange_id,
            claim_id,
        })
    }

    /// Adds each order's number and status from the read model.
    async fn fill_orders(&self, orders: &mut [StuckOrder]) -> anyhow::Result<()> {
        let ids: Vec<Uuid> = orders.iter().map(|o| o.order_id).collect();
        let known = read_model::numbers_and_statuses(&self.db, &ids).await?;
        for o in orders {
            if let Some((number, status)) = known.get(&o.order_id) {
                o.order_number = Some(number.clone());
                o.status = Some(status.clone());
            }
        }
        Ok(())
    }
}

/// The change, exchange or claim (`kind`) a saga runs for: its name is the flow,
/// then `:<id>` (`apply_change:<change_id>`, `receive_exchange:<exchange_id>@..`).
fn resource_of_saga(saga: &str, kind: &str) -> Option<Uuid> {
    let head = saga.split(['@', '#']).next()?;
    let (flow, id) = head.split_once(':')?;
    match flow.ends_with(kind) || (kind == "change" && flow == "change_payment_deadline") {
        true => id.parse().ok(),
        false => None,
    }
}

/// The operator's name of the timer a delayed call to `handler` stands for.
fn timer_name(handler: &str) -> String {
    match handler {
        "expire_draft" => "draft_auto_cancel".into(),
        "expire_return" => "return_parcel_expiry".into(),
        "expire_quote" => "quote_expiry".into(),
        "expire_change_request" => "change_request_expiry".into(),
        "expire_exchange" => "exchange_parcel_expiry".into(),
        "expire_claim" => "claim_parcel_expiry".into(),
        other => other.into(),
    }
}

/// A row of `sys_invocation`.
#[derive(Debug, Clone)]
struct RawInvocation {
    id: String,
    key: String,
    handler: String,
    status: String,
    retry_count: Option<i64>,
    last_failure: Option<String>,
    failed_step: Option<String>,
    created_at: Option<DateTime<Utc>>,
    created_at_text: Option<String>,
    scheduled_start_at: Option<String>,
}

impl From<&Value> for RawInvocation {
    fn from(row: &Value) -> Self {
        let text = |name: &str| row[name].as_str().map(str::to_owned);
        RawInvocation {
            id: text("id").unwrap_or_default(),
            key: text("target_service_key").unwrap_or_default(),
            handler: text("target_handler_name").unwrap_or_default(),
            status: text("status").unwrap_or_default(),
            retry_count: row["retry_count"].as_i64(),
            last_failure: text("last_failure"),
            failed_step: text("last_failure_related_command_name"),
            created_at: text("created_at").and_then(|t| parse_time(&t)),
            created_at_text: text("created_at"),
            scheduled_start_at: text("scheduled_start_at"),
        }
    }
}

impl From<RawInvocation> for Invocation {
    fn from(raw: RawInvocation) -> Self {
        Invocation {
            invocation_id: raw.id,
            handler: raw.handler,
            status: raw.status,
            created_at: raw.created_at_text,
            retry_count: raw.retry_count,
            last_failure: raw.last_failure,
        }
    }
}

/// `values` as a list of SQL string literals.
fn sql_list<'a>(values: impl Iterator<Item = &'a str>) -> String {
    values
        .map(|v| format!("'{}'", v.replace('\'', "")))
        .collect::<Vec<_>>()
        .join(",")
}

/// Restate writes times as RFC 3339, sometimes without the zone (then UTC).
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    text.parse::<DateTime<Utc>>().ok().or_else(|| {
        chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()
            .map(|t| t.and_utc())
    })
}
