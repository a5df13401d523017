//! The saga machinery: journaled steps with an idempotency key per occurrence, the
//! compensation stack, and commits of the order to the object and the read model.
//! The undo path is in [`super::undo`].

use super::Deps;
use crate::domain::{Compensation, DomainError, FieldChange, NewOrder, Order};
use crate::downstream::{DownstreamError, Rejection};
use crate::metrics;
use crate::read_model::{self, Author, StepRecord};
use chrono::{DateTime, SubsecRound, Utc};
use restate_sdk::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::future::Future;
use tracing::Instrument;
use uuid::Uuid;

/// State key of the order in its virtual object.
pub const ORDER_STATE: &str = "order";

/// One run of a saga over one order.
pub struct Saga<'a, 'ctx> {
    pub ctx: &'a ObjectContext<'ctx>,
    pub deps: &'a Deps,
    pub order_id: Uuid,
    name: String,
    seq: i32,
    compensations: Vec<Compensation>,
    /// Steps that went through and are not in the read model yet.
    done: Vec<StepRecord>,
    /// The order as last committed or held, for the undo path.
    latest: Option<Order>,
    /// When the last step ended, as journaled: the saga's deterministic clock.
    clock: DateTime<Utc>,
    /// A cancellation arrived inside a step that had to finish: no further forward
    /// step runs.
    cancelled: bool,
    /// Who asked for the saga and why, for the histories.
    actor: String,
    reason: Option<String>,
}

/// What a journaled step returns: its outcome and when it ran.
#[derive(Serialize, Deserialize)]
struct StepDone<T> {
    outcome: Result<T, Rejection>,
    started_at: DateTime<Utc>,
    ended_at: DateTime<Utc>,
}

/// Now, at the precision PostgreSQL keeps, so that state and read model agree.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// True for the error Restate delivers when the invocation is cancelled.
pub fn is_cancellation(e: &TerminalError) -> bool {
    e.code() == 409 && e.message() == "cancelled"
}

impl<'a, 'ctx> Saga<'a, 'ctx> {
    /// Starts the saga `name` (unique per order, e.g. `pay_order#2`).
    pub fn new(ctx: &'a ObjectContext<'ctx>, deps: &'a Deps, order_id: Uuid, name: String) -> Self {
        Saga {
            ctx,
            deps,
            order_id,
            name,
            seq: 0,
            compensations: Vec::new(),
            done: Vec::new(),
            latest: None,
            clock: DateTime::<Utc>::MIN_UTC,
            cancelled: false,
            actor: "system".into(),
            reason: None,
        }
    }

    /// Names who asked for the saga (`api`, `system`) and why.
    pub fn asked_by(mut self, actor: &str, reason: Option<String>) -> Self {
        self.actor = actor.to_owned();
        self.reason = reason;
        self
    }

    /// Who asked for the saga.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// Why the saga runs, as given; otherwise its name.
    pub fn reason(&self) -> &str {
        self.reason.as_deref().unwrap_or(&self.name)
    }

    /// Why the saga runs, as given.
    pub fn given_reason(&self) -> Option<String> {
        self.reason.clone()
    }

    /// When the last step ended (journaled, so the same on every replay).
    pub fn clock(&self) -> DateTime<Utc> {
        self.clock
    }

    /// The idempotency key of the next step: unique per saga run and step
    /// occurrence, stable across retries and replays.
    fn next_key(&self, step: &str) -> String {
        format!("{}:{}:{}:{step}", self.order_id, self.name, self.seq + 1)
    }

    /// Runs a forward step. Should the saga be cancelled while the call is under way,
    /// `in_doubt(key)` undoes whatever it may have done; once its outcome is known,
    /// `undo` says what undoes it. A transient error fails the attempt and Restate
    /// retries it; a final answer comes back as `Err(Rejection)`.
    pub async fn forward<T, F, Fut>(
        &mut self,
        step: &'static str,
        in_doubt: impl FnOnce(String) -> Option<Compensation>,
        undo: impl FnOnce(&T) -> Option<Compensation>,
        action: F,
    ) -> Result<Result<T, Rejection>, TerminalError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce(String) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<T, DownstreamError>> + Send + 'static,
    {
        if self.cancelled {
            return Err(TerminalError::new_with_code(409, "cancelled"));
        }
        let pending = in_doubt(self.next_key(step));
        let registered = pending.is_some();
        self.compensations.extend(pending);
        let outcome = self.run(step, None, false, action).await?;
        if registered {
            self.compensations.pop();
        }
        if let Ok(value) = &outcome {
            self.compensations.extend(undo(value));
        }
        Ok(outcome)
    }

    /// Runs `action` as the journaled step `step`, recording every attempt for
    /// operators. A step that must finish (a commit, a compensation) is run again
    /// under the same key when a cancellation interrupts it, so that it is never
    /// left half known.
    async fn run<T, F, Fut>(
        &mut self,
        step: &'static str,
        compensates: Option<&'static str>,
        must_finish: bool,
        action: F,
    ) -> Result<Result<T, Rejection>, TerminalError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce(String) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<T, DownstreamError>> + Send + 'static,
    {
        let key = self.next_key(step);
        self.seq += 1;
        let done = loop {
            let (db, order_id, saga, seq) = (
                self.deps.db.clone(),
                self.order_id,
                self.name.clone(),
                self.seq,
            );
            let invocation_id = self.ctx.invocation_id().to_owned();
            // What went through before is written with the next commit; a failing
            // step writes it at once, so that an operator sees the saga whole.
            let before = self.done.clone();
            let (action, key) = (action.clone(), key.clone());
            let attempt = self
                .ctx
                .run(move || async move {
                    let started_at = now();
                    let clock = std::time::Instant::now();
                    let span = crate::telemetry::span("step", step, None);
                    let outcome = match action(key).instrument(span).await {
                        Ok(v) => Ok(v),
                        Err(DownstreamError::Rejected(r)) => Err(r),
                        Err(e) => {
                            metrics::count_attempt(&saga, step, "failed", clock.elapsed());
                            // A failed attempt is not journaled, so it is recorded now.
                            tracing::warn!(order.id = %order_id, step, error = %e, "step failed, will retry");
                            let record = StepRecord {
                                order_id,
                                saga,
                                invocation_id,
                                seq,
                                step,
                                outcome: "failed",
                                error: Some(e.to_string()),
                                compensates,
                                started_at,
                                ended_at: now(),
                            };
                            let records: Vec<StepRecord> = before.into_iter().chain([record]).collect();
                            read_model::record_steps(&db, &records).await.ok();
                            return Err(HandlerError::from(e));
                        }
                    };
                    let result = if outcome.is_ok() { "succeeded" } else { "rejected" };
                    metrics::count_attempt(&saga, step, result, clock.elapsed());
                    Ok(Json(StepDone {
                        outcome,
                        started_at,
                        ended_at: now(),
                    }))
                })
                .name(step)
                .await;
            match attempt {
                Ok(Json(done)) => break done,
                Err(e) if must_finish && is_cancellation(&e) => {
                    tracing::info!(order.id = %self.order_id, step, "cancelled inside a step that must finish; finishing it");
                    self.cancelled = true;
                }
                Err(e) => return Err(e),
            }
        };
        self.clock = done.ended_at;
        self.done.push(StepRecord {
            order_id: self.order_id,
            saga: self.name.clone(),
            invocation_id: self.ctx.invocation_id().to_owned(),
            seq: self.seq,
            step,
            outcome: if done.outcome.is_ok() {
                "succeeded"
            } else {
                "rejected"
            },
            error: done.outcome.as_ref().err().map(|r| r.to_string()),
            compensates,
            started_at: done.started_at,
            ended_at: done.ended_at,
        });
        Ok(done.outcome)
    }

    /// Runs `step`, which must finish once started (a cancellation through Restate
    /// does not interrupt it), like a compensation.
    pub async fn step<T, F, Fut>(
        &mut self,
        step: &'static str,
        action: F,
    ) -> Result<Result<T, Rejection>, TerminalError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce(String) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<T, DownstreamError>> + Send + 'static,
    {
        self.run(step, None, true, action).await
    }

    /// Now, journaled: the same instant on every replay.
    pub async fn now(&mut self) -> Result<DateTime<Utc>, TerminalError> {
        let Json(at) = self
            .ctx
            .run(|| async { Ok(Json(now())) })
            .name("clock")
            .await?;
        self.clock = at;
        Ok(at)
    }

    /// Runs a compensation `step`, which undoes the step `compensates`. It must
    /// finish, so a cancellation does not interrupt it.
    pub async fn compensation_step<T, F, Fut>(
        &mut self,
        step: &'static str,
        compensates: &'static str,
        action: F,
    ) -> Result<Result<T, Rejection>, TerminalError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce(String) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<T, DownstreamError>> + Send + 'static,
    {
        self.run(step, Some(compensates), true, action).await
    }

    /// Writes the record of the steps not yet written with a commit. It runs outside
    /// the journal, so a replay writes the same rows again, which changes nothing.
    pub async fn finish(&mut self) {
        let steps = std::mem::take(&mut self.done);
        if let Err(e) = read_model::record_steps(&self.deps.db, &steps).await {
            // The record is for people; losing it must not fail the saga.
            tracing::warn!(order.id = %self.order_id, error = %e, "could not record saga steps");
        }
    }

    /// Remembers what to undo should a later step be refused.
    pub fn on_rejection(&mut self, compensation: Compensation) {
        self.compensations.push(compensation);
    }

    /// Starts from `order` as the object holds it, for the undo path.
    pub fn begin_with(&mut self, order: &Order) {
        self.latest = Some(order.clone());
    }

    /// Keeps `order` as the object's state at once, before the next commit: what a
    /// step took (a reservation, a capture) is never known only to the journal.
    pub fn hold(&mut self, order: &Order) {
        self.ctx.set(ORDER_STATE, Json(order.clone()));
        self.latest = Some(order.clone());
    }

    /// The newest compensation not yet run, taken off the stack.
    pub fn pop_compensation(&mut self) -> Option<Compensation> {
        self.compensations.pop()
    }

    /// The order as last committed or held.
    pub fn latest(&self) -> Option<&Order> {
        self.latest.as_ref()
    }

    /// Applies `change` to a copy of `order` at the next version and a fresh instant,
    /// writes it to the read model with the events of `topics` and the notification
    /// `notify` (into the outbox, in the same transaction), and keeps it as the
    /// object's state. The new order comes back from the journal on replay, so the
    /// change is made exactly once.
    pub async fn commit<F>(
        &mut self,
        order: &Order,
        topics: &'static [&'static str],
        notify: Option<&'static str>,
        change: F,
    ) -> Result<Order, TerminalError>
    where
        F: FnOnce(&mut Order, DateTime<Utc>) -> Result<(), DomainError> + Clone + Send + 'static,
    {
        let db = self.deps.db.clone();
        let before = order.clone();
        let steps = std::mem::take(&mut self.done);
        let (actor, reason) = (self.actor.clone(), self.reason.clone());
        let saga = self.name.clone();
        let outcome = self
            .run("update_read_model", None, true, move |_key| async move {
                let mut next = before.clone();
                let at = now();
                next.version += 1;
                next.updated_at = at;
                change(&mut next, at).map_err(domain_error)?;
                let author = Author {
                    actor: &actor,
                    reason: reason.as_deref(),
                };
                let changes = next.changes_since(&before);
                if write(&db, &next, topics, notify, (author, &changes), &steps).await? {
                    let compensated: Vec<&str> = steps
                        .iter()
                        .filter(|s| s.compensates.is_some() && s.outcome == "succeeded")
                        .map(|s| s.step)
                        .collect();
                    metrics::count_commit(&saga, &before, &next, &compensated);
                }
                Ok(next)
            })
            .await?;
        self.keep(outcome)
    }

    /// Writes a new order at version 1 with its number, the first step of the create
    /// saga. A retry after a crash finds the number and time already written.
    pub async fn commit_new(&mut self, new: &NewOrder) -> Result<Order, TerminalError> {
        let (db, id, ttl) = (self.deps.db.clone(), self.order_id, self.deps.draft_ttl);
        let new = new.clone();
        let outcome = self
            .run("update_read_model", None, true, move |_key| async move {
                let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(1));
                let existing = read_model::existing_order_number(&db, id)
                    .await
                    .map_err(db_error)?;
                let (number, at) = match existing {
                    Some(existing) => existing,
                    None => {
                        let at = now();
                        let number = read_model::allocate_order_number(&db, at.date_naive())
                            .await
                            .map_err(db_error)?;
                        (number, at)
                    }
                };
                let order = Order::create(id, number, &new, at, ttl);
                let author = Author {
                    actor: "customer",
                    reason: None,
                };
                write(&db, &order, &["order.created"], None, (author, &[]), &[]).await?;
                Ok(order)
            })
            .await?;
        self.keep(outcome)
    }

    /// Stores a committed order as the object's state.
    fn keep(&mut self, committed: Result<Order, Rejection>) -> Result<Order, TerminalError> {
        // A commit is refused only for a reason no retry can pass.
        let order = committed.map_err(|r| TerminalError::new(r.to_string()))?;
        self.hold(&order);
        Ok(order)
    }
}

/// Writes `order` to the read model; true when this version is new there.
async fn write(
    db: &sqlx::PgPool,
    order: &Order,
    topics: &[&str],
    notify: Option<&str>,
    edits: (Author<'_>, &[FieldChange]),
    steps: &[StepRecord],
) -> Result<bool, DownstreamError> {
    let events: Vec<_> = topics.iter().map(|t| order.event(t)).collect();
    let notification = notify.map(|t| order.notification(t));
    read_model::project(db, order, &events, notification.as_ref(), edits, steps)
        .await
        .map_err(db_error)
}

/// A read-model error: retried, unless no retry can pass it (bad data, a broken
/// constraint), which is final.
fn db_error(e: sqlx::Error) -> DownstreamError {
    if read_model::is_permanent(&e) {
        return DownstreamError::Rejected(Rejection {
            service: "read_model".into(),
            status: 500,
            code: "read_model_refused".into(),
            message: e.to_string(),
        });
    }
    DownstreamError::Transient {
        service: "read_model",
        detail: e.to_string(),
    }
}

/// A change the order's rules refuse: a bug in the saga, never retried.
fn domain_error(e: DomainError) -> DownstreamError {
    DownstreamError::Rejected(Rejection {
        service: "order".into(),
        status: 500,
        code: "domain_rule".into(),
        message: e.to_string(),
    })
}
