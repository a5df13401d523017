//! The saga machinery: named journaled steps, the compensation stack, and commits of
//! the order state to the object and the read model.

use super::{steps, Deps};
use crate::domain::{NewOrder, Order, OrderEvent};
use crate::downstream::{DownstreamError, Rejection};
use crate::read_model::{self, StepRecord};
use chrono::{DateTime, SubsecRound, Utc};
use restate_sdk::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::future::Future;
use uuid::Uuid;

/// State key of the order in its virtual object.
pub const ORDER_STATE: &str = "order";

/// Something to undo when a later step is finally refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Compensation {
    /// Give back all that is left of a stock reservation.
    ReleaseStock { reservation_id: String },
    /// Refund a capture in full.
    RefundPayment {
        payment_id: String,
        amount: crate::domain::Money,
    },
}

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
        }
    }

    /// Runs `action` as the journaled step `step`. A transient error fails the attempt
    /// and Restate retries it with backoff; a business rejection is journaled and
    /// returned as `Err`, for the saga to compensate. Every attempt is recorded for
    /// operators: failures at once, the final outcome with the next commit.
    pub async fn step<T, F, Fut>(
        &mut self,
        step: &'static str,
        action: F,
    ) -> Result<Result<T, Rejection>, TerminalError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, DownstreamError>> + Send + 'static,
    {
        self.step_compensating(step, None, action).await
    }

    /// The saga's name, unique per order.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// [`Saga::step`] for a step that undoes `compensates`.
    pub async fn step_compensating<T, F, Fut>(
        &mut self,
        step: &'static str,
        compensates: Option<&'static str>,
        action: F,
    ) -> Result<Result<T, Rejection>, TerminalError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, DownstreamError>> + Send + 'static,
    {
        self.seq += 1;
        let (db, order_id, saga, seq) = (
            self.deps.db.clone(),
            self.order_id,
            self.name.clone(),
            self.seq,
        );
        let Json(done) = self
            .ctx
            .run(move || async move {
                let started_at = now();
                let outcome = match action().await {
                    Ok(v) => Ok(v),
                    Err(DownstreamError::Rejected(r)) => Err(r),
                    Err(e) => {
                        // A failed attempt is not journaled, so it is recorded now.
                        tracing::warn!(order.id = %order_id, step, error = %e, "step failed, will retry");
                        let record = StepRecord {
                            order_id,
                            saga,
                            seq,
                            step,
                            outcome: "failed",
                            error: Some(e.to_string()),
                            compensates,
                            started_at,
                            ended_at: now(),
                        };
                        read_model::record_steps(&db, &[record]).await.ok();
                        return Err(HandlerError::from(e));
                    }
                };
                Ok(Json(StepDone {
                    outcome,
                    started_at,
                    ended_at: now(),
                }))
            })
            .name(step)
            .await?;
        self.done.push(StepRecord {
            order_id: self.order_id,
            saga: self.name.clone(),
            seq,
            step,
            outcome: if done.outcome.is_ok() {
                "succeeded"
            } else {
                "rejected"
            },
            error: done
                .outcome
                .as_ref()
                .err()
                .map(|r| format!("{}: {}", r.code, r.message)),
            compensates,
            started_at: done.started_at,
            ended_at: done.ended_at,
        });
        Ok(done.outcome)
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

    /// Undoes, newest first, everything registered so far. Compensations are retried
    /// until they go through; one that is refused is recorded and passed over.
    pub async fn compensate(&mut self) -> Result<(), TerminalError> {
        while let Some(c) = self.compensations.pop() {
            let outcome = match c {
                Compensation::ReleaseStock { reservation_id } => {
                    steps::release_stock(self, &reservation_id, Some("reserve_stock")).await?
                }
                Compensation::RefundPayment { payment_id, amount } => {
                    steps::refund_payment(
                        self,
                        &payment_id,
                        amount,
                        "order failed",
                        Some("charge_payment"),
                    )
                    .await?
                }
            };
            if let Err(rejection) = outcome {
                tracing::error!(order.id = %self.order_id, ?rejection, "compensation refused");
            }
        }
        Ok(())
    }

    /// Applies `change` to a copy of `order` at the next version and a fresh instant,
    /// writes it to the read model with the events named by `topics`, and keeps it as
    /// the object's state. The new order comes back from the journal on replay, so the
    /// change is made exactly once; its events are derived from it, not journaled.
    pub async fn commit<F>(
        &mut self,
        order: &Order,
        topics: &[&str],
        change: F,
    ) -> Result<(Order, Vec<OrderEvent>), TerminalError>
    where
        F: FnOnce(&mut Order, DateTime<Utc>) + Send + 'static,
    {
        let db = self.deps.db.clone();
        let mut next = order.clone();
        let steps = std::mem::take(&mut self.done);
        let names: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let outcome = self
            .step("update_read_model", move || async move {
                let at = now();
                next.version += 1;
                next.updated_at = at;
                change(&mut next, at);
                let events: Vec<OrderEvent> = names.iter().map(|t| next.event(t)).collect();
                read_model::project(&db, &next, &events, &steps)
                    .await
                    .map_err(db_error)?;
                Ok(next)
            })
            .await?;
        self.keep(outcome, topics)
    }

    /// Writes a new order at version 1 with its number, the first step of the create
    /// saga. A retry after a crash finds the number and time already written.
    pub async fn commit_new(
        &mut self,
        new: &NewOrder,
    ) -> Result<(Order, Vec<OrderEvent>), TerminalError> {
        let (db, id, ttl) = (self.deps.db.clone(), self.order_id, self.deps.draft_ttl);
        let steps = std::mem::take(&mut self.done);
        let new = new.clone();
        let outcome = self
            .step("update_read_model", move || async move {
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
                let events = [order.event(CREATED)];
                read_model::project(&db, &order, &events, &steps)
                    .await
                    .map_err(db_error)?;
                Ok(order)
            })
            .await?;
        self.keep(outcome, &[CREATED])
    }

    /// Stores a committed order as the object's state, with the events of `topics`.
    fn keep(
        &self,
        committed: Result<Order, Rejection>,
        topics: &[&str],
    ) -> Result<(Order, Vec<OrderEvent>), TerminalError> {
        // A read-model write is never rejected, only retried.
        let order = committed.map_err(|r| TerminalError::new(r.message))?;
        self.ctx.set(ORDER_STATE, Json(order.clone()));
        let events = topics.iter().map(|t| order.event(t)).collect();
        Ok((order, events))
    }
}

const CREATED: &str = "order.created";

fn db_error(e: sqlx::Error) -> DownstreamError {
    DownstreamError::Transient {
        service: "read_model",
        detail: e.to_string(),
    }
}
