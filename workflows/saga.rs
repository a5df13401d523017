//! The saga machinery: journaled steps with an idempotency key per occurrence, the
//! compensation stack, and commits of the order to the object and the read model.
//! The undo path is in [`super::undo`].

use super::Deps;
use crate::domain::{Compensation, DomainError, NewOrder, Order};
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

/// State key of the mark of a saga under way, which outlives a saga killed through
/// Restate ([`super::killed`]).
pub const RUNNING_STATE: &str = "saga";

/// The mark of a saga under way on its order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    pub saga: String,
    pub invocation_id: String,
}

/// What a step gives: its outcome, or the downstream's final refusal; the error
/// ends the saga (or, when not terminal, the attempt, which Restate retries).
pub type Step<T> = Result<Result<T, Rejection>, TerminalError>;

/// The error Restate delivers when an invocation is cancelled through it.
const CANCELLED: (u16, &str) = (409, "cancelled");

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
    /// The order carries this saga's mark ([`RUNNING_STATE`]) until it finishes.
    marked: bool,
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
    (e.code(), e.message()) == CANCELLED
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
            marked: false,
        }
    }

    /// Marks the order with this saga before its first side effect, so that a kill
    /// through Restate, which skips everything after it, is found by the next call
    /// ([`super::killed`]).
    fn mark(&mut self) {
        if !self.marked {
            let running = Running {
                saga: self.name.clone(),
                invocation_id: self.ctx.invocation_id().to_owned(),
            };
            self.ctx.set(RUNNING_STATE, Json(running));
            self.marked = true;
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
    ) -> Step<T>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce(String) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<T, DownstreamError>> + Send + 'static,
    {
        let key = self.next_key(step);
        self.forward_under(step, key, in_doubt, undo, action).await
    }

    /// Like [`Saga::forward`], under `key` rather than a key of this saga: for a
    /// call whose key must outlive the saga that first made it.
    pub async fn forward_under<T, F, Fut>(
        &mut self,
        step: &'static str,
        key: String,
        in_doubt: impl FnOnce(String) -> Option<Compensation>,
        undo: impl FnOnce(&T) -> Option<Compensation>,
        action: F,
    ) -> Step<T>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce(String) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<T, DownstreamError>> + Send + 'static,
    {
        if self.cancelled {
            let (code, message) = CANCELLED;
            return Err(TerminalError::new_with_code(code, message));
        }
        let pending = in_doubt(key.clone());
        let registered = pending.is_some();
        self.compensations.extend(pending);
        let outcome = self.run(step, key, None, false, action).await?;
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
        key: String,
        compensates: Option<&'static str>,
        must_finish: bool,
        action: F,
    ) -> Step<T>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce(String) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<T, DownstreamError>> + Send + 'static,
    {
        self.mark();
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
        let outcome = if done.outcome.is_ok() {
            "succeeded"
        } else {
            "rejected"
        };
        self.done.push(StepRecord {
            outcome,
            error: done.outcome.as_ref().err().map(|r| r.to_string()),
            compensates,
            ..self.this_step(step, done.started_at, done.ended_at)
        });
        Ok(done.outcome)
    }

    /// Runs `step`, which must finish once started (a cancellation through Restate
    /// does not interrupt it), like a compensation.
    pub async fn step<T, F, Fut>(&mut self, step: &'static str, action: F) -> Step<T>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce(String) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<T, DownstreamError>> + Send + 'static,
    {
        let key = self.next_key(step);
        self.run(step, key, None, true, action).await
    }

    /// Now, journaled: the same instant on every replay. Like a commit, it is not
    /// interrupted by a cancellation.
    pub async fn now(&mut self) -> Result<DateTime<Utc>, TerminalError> {
        let at = self.journal_clock(now).await?;
        self.clock = at;
        Ok(at)
    }

    /// Now and `value` (configuration that shapes what the saga commits), journaled
    /// together: a replay gets the instant and the value the first run read, even
    /// when the configuration has changed since. Not interrupted by a cancellation.
    pub async fn now_with<T>(&mut self, value: T) -> Result<(DateTime<Utc>, T), TerminalError>
    where
        T: Serialize + DeserializeOwned + Clone + Send + 'static,
    {
        let (at, value) = self.journal_clock(move || (now(), value.clone())).await?;
        self.clock = at;
        Ok((at, value))
    }

    /// Journals what `read` gives as the step `clock`, asked again when a
    /// cancellation interrupts it (the saga then runs no further forward step).
    async fn journal_clock<R>(
        &mut self,
        read: impl Fn() -> R + Clone + Send + 'static,
    ) -> Result<R, TerminalError>
    where
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        loop {
            let read = read.clone();
            match self
                .ctx
                .run(|| async move { Ok(Json(read())) })
                .name("clock")
                .await
            {
                Ok(Json(value)) => return Ok(value),
                Err(e) if is_cancellation(&e) => self.cancelled = true,
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs a compensation `step`, which undoes the step `compensates`. It must
    /// finish, so a cancellation does not interrupt it.
    pub async fn compensation_step<T, F, Fut>(
        &mut self,
        step: &'static str,
        compensates: &'static str,
        action: F,
    ) -> Step<T>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce(String) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<T, DownstreamError>> + Send + 'static,
    {
        let key = self.next_key(step);
        self.run(step, key, Some(compensates), true, action).await
    }

    /// Clears the saga's mark and writes the record of the steps not yet written
    /// with a commit. The record runs outside the journal, so a replay writes the
    /// same rows again, which changes nothing.
    pub async fn finish(&mut self) {
        if std::mem::take(&mut self.marked) {
            self.ctx.clear(RUNNING_STATE);
        }
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

    /// Forgets every compensation registered so far: past a saga's point of no
    /// return, what it did is never undone.
    pub fn drop_compensations(&mut self) {
        self.compensations.clear();
    }

    /// Writes a document of the read model that lives apart from the order's
    /// version (a quote, a change) with `write`, which must be idempotent, until
    /// it is done, like a commit: true when it wrote (false: a replay found it
    /// written).
    pub async fn save<W, Fut>(&self, mut write: W) -> Result<bool, TerminalError>
    where
        W: FnMut() -> Fut,
        Fut: Future<Output = sqlx::Result<bool>>,
    {
        self.write_until_done(&[], || {
            let fut = write();
            async move { fut.await.map(|written| (written, ())) }
        })
        .await
        .map(|(written, ())| written)
    }

    /// The newest compensation not yet run, taken off the stack.
    pub fn pop_compensation(&mut self) -> Option<Compensation> {
        self.compensations.pop()
    }

    /// The order as last committed or held.
    pub fn latest(&self) -> Option<&Order> {
        self.latest.as_ref()
    }

    /// Applies `change` to a copy of `order` at the next version, writes it to the
    /// read model with the events of `topics` and the notification `notify` (into
    /// the outbox, in the same statement) and the steps that led to it, and keeps
    /// it as the object's state.
    ///
    /// Nothing of it is journaled: the new order is derived from what is (the
    /// order, the journaled outcomes of the steps before it and their clock), so a
    /// replay derives it again, and the write carries the version, so a replay
    /// writes nothing. A write that fails for now is tried again in place.
    pub async fn commit<F>(
        &mut self,
        order: &Order,
        topics: &'static [&'static str],
        notify: impl IntoIterator<Item = &'static str>,
        change: F,
    ) -> Result<Order, TerminalError>
    where
        F: FnOnce(&mut Order, DateTime<Utc>) -> Result<(), DomainError>,
    {
        // The instant the last step ended; a saga that ran none yet asks the journal.
        let at = match self.clock == DateTime::<Utc>::MIN_UTC {
            true => self.now().await?,
            false => self.clock,
        };
        self.mark();
        let mut next = order.clone();
        next.version += 1;
        next.updated_at = at;
        let steps = self.commit_steps(at);
        if let Err(e) = change(&mut next, at) {
            return Err(self.park_refused(order, &steps, at, e.to_string()).await);
        }
        next.tag_movements(&self.name);
        let changes = next.changes_since(order);
        let author = Author {
            actor: &self.actor,
            reason: self.reason.as_deref(),
        };
        let events: Vec<_> = topics.iter().map(|t| next.event(t)).collect();
        let notifications: Vec<_> = notify.into_iter().map(|t| next.notification(t)).collect();
        let db = &self.deps.db;
        let written = self
            .write_until_done(&steps, || async {
                let edits = (author, changes.as_slice());
                let written =
                    read_model::project(db, &next, &events, &notifications, edits, &steps).await?;
                Ok((written, ()))
            })
            .await;
        let written = match written {
            Ok((written, ())) => written,
            Err(e) => {
                let reason = e.message().to_owned();
                return Err(self.park_refused(order, &steps, at, reason).await);
            }
        };
        if written {
            self.deps.faults.after_projection(&self.name).await;
            let compensated: Vec<&str> = steps
                .iter()
                .filter(|s| s.compensates.is_some() && s.outcome == "succeeded")
                .map(|s| s.step)
                .collect();
            metrics::count_commit(&self.name, order, &next, &compensated);
        }
        self.hold(&next);
        Ok(next)
    }

    /// A commit that the order's rules or the read model refused, after steps that
    /// may have moved money or stock: the order as it was is parked for an operator
    /// (`attention` on `update_read_model`, code `commit_refused`, with the reason),
    /// written with the steps that led there and kept as the object's state, so that
    /// it is in the stuck list; the error ends the saga.
    async fn park_refused(
        &mut self,
        order: &Order,
        steps: &[StepRecord],
        at: DateTime<Utc>,
        reason: String,
    ) -> TerminalError {
        tracing::error!(order.id = %self.order_id, %reason, "commit refused; the order is parked for an operator");
        let mut parked = order.clone();
        parked.version += 1;
        parked.updated_at = at;
        parked.park("update_read_model", "commit_refused", &reason, at);
        let mut steps = steps.to_vec();
        if let Some(commit) = steps.last_mut() {
            (commit.outcome, commit.error) = ("rejected", Some(reason.clone()));
        }
        let author = Author {
            actor: "system",
            reason: Some(&reason),
        };
        let db = &self.deps.db;
        let written = self
            .write_until_done(&steps, || async {
                let written =
                    read_model::project(db, &parked, &[], &[], (author, &[]), &steps).await?;
                Ok((written, ()))
            })
            .await;
        if let Err(e) = written {
            tracing::error!(order.id = %self.order_id, error = %e.message(), "the read model refused the parked order too");
        }
        self.hold(&parked);
        TerminalError::new(format!(
            "the order could not record the outcome of its saga ({reason}); it is parked for an operator"
        ))
    }

    /// Writes a new order at version 1 with its number, the first step of the create
    /// saga. Nothing of it is journaled: a replay finds the number, the time and the
    /// draft's payment window already written and derives the same order, whatever
    /// the configured window has become since.
    pub async fn commit_new(&mut self, new: &NewOrder) -> Result<Order, TerminalError> {
        let (id, ttl) = (self.order_id, self.deps.draft_ttl);
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(1));
        self.mark();
        let steps = self.commit_steps(DateTime::<Utc>::MIN_UTC);
        let db = &self.deps.db;
        let (_, order) = self
            .write_until_done(&steps, || async {
                // The time of the first attempt, found again by a replay.
                let numbered = read_model::order_number(db, id, now()).await?;
                let at = numbered.created_at;
                let mut steps = steps.clone();
                for s in &mut steps {
                    (s.started_at, s.ended_at) = (at, at);
                }
                let mut order = Order::create(id, numbered.number, new, at, ttl);
                // A later version of this saga may have shortened it to the
                // reservation's expiry or cleared it; the replay does the same again.
                if let Some(expires_at) = numbered.written_expiry {
                    order.expires_at = expires_at;
                }
                let event = order.event("order.created");
                let author = Author {
                    actor: "customer",
                    reason: None,
                };
                let written =
                    read_model::project(db, &order, &[event], &[], (author, &[]), &steps).await?;
                Ok((written, order))
            })
            .await?;
        self.clock = order.created_at;
        // Not kept in the object's state yet: the reservation, the saga's next step,
        // is kept with it at once (a crash in between replays to the same order).
        self.latest = Some(order.clone());
        Ok(order)
    }

    /// The steps not yet written and the record of the commit itself at `at`.
    fn commit_steps(&mut self, at: DateTime<Utc>) -> Vec<StepRecord> {
        self.seq += 1;
        let mut steps = std::mem::take(&mut self.done);
        steps.push(self.this_step("update_read_model", at, at));
        steps
    }

    /// The record of the current step (`seq`), succeeded and compensating nothing.
    fn this_step(
        &self,
        step: &'static str,
        started_at: DateTime<Utc>,
        ended_at: DateTime<Utc>,
    ) -> StepRecord {
        StepRecord {
            order_id: self.order_id,
            saga: self.name.clone(),
            invocation_id: self.ctx.invocation_id().to_owned(),
            seq: self.seq,
            step,
            outcome: "succeeded",
            error: None,
            compensates: None,
            started_at,
            ended_at,
        }
    }

    /// Runs the read-model write `write` until it is done: true when it wrote
    /// (false: a replay found it written). A failure that may pass is recorded for
    /// operators and tried again after a pause; one no retry can pass (bad data, a
    /// broken constraint) is final.
    async fn write_until_done<T, W, Fut>(
        &self,
        steps: &[StepRecord],
        mut write: W,
    ) -> Result<(bool, T), TerminalError>
    where
        W: FnMut() -> Fut,
        Fut: Future<Output = sqlx::Result<(bool, T)>>,
    {
        let mut pause = std::time::Duration::from_millis(100);
        loop {
            let started = std::time::Instant::now();
            let span = crate::telemetry::span("step", "update_read_model", None);
            let error = match write().instrument(span).await {
                Ok((written, value)) => {
                    if written {
                        let took = started.elapsed();
                        metrics::count_attempt(&self.name, "update_read_model", "succeeded", took);
                    }
                    return Ok((written, value));
                }
                Err(e) if read_model::is_permanent(&e) => {
                    return Err(TerminalError::new(format!(
                        "the read model refused the order: {e}"
                    )))
                }
                Err(e) => e,
            };
            metrics::count_attempt(&self.name, "update_read_model", "failed", started.elapsed());
            tracing::warn!(order.id = %self.order_id, error = %error, ?pause, "read model write failed, will retry");
            let mut records = steps.to_vec();
            if let Some(last) = records.last_mut() {
                (last.outcome, last.error, last.ended_at) =
                    ("failed", Some(error.to_string()), now());
                // A new order has no time of its own before its first write.
                if last.started_at == DateTime::<Utc>::MIN_UTC {
                    last.started_at = last.ended_at;
                }
            }
            read_model::record_steps(&self.deps.db, &records).await.ok();
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_secs(10));
        }
    }
}
