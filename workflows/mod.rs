//! The Restate side: the order virtual object and the sagas its handlers run.

mod admit;
mod cancel_order;
mod change_commands;
mod change_order;
mod change_requests;
mod claims;
mod create_order;
mod exchanges;
mod exchanges_and_claims;
mod expire_draft;
mod faults;
mod killed;
mod operator;
mod order;
mod outcome;
mod pay_order;
mod returns;
mod saga;
mod set_status;
mod steps;
mod undo;

pub use admit::BAD_INPUT;
pub use change_commands::{
    ApplyRequest, ChangeCommand, PayChangeRequest, QuoteCommand, QuoteRequest,
};
pub use change_requests::{AcceptRequest, DecideRequest, NewRequest};
pub use exchanges_and_claims::{ClaimCommand, ClaimRequest, ExchangeCommand, ExchangeRequest};
pub use faults::Faults;
pub use killed::SAGA_KILLED;
pub use order::{
    CommandOutcome, ItemsRequest, OperatorOutcome, OperatorRequest, OrderObject, PayRequest,
    Rested, ReturnCommand, ReturnRequest, StatusRequest, ORDER_OBJECT,
};
pub use saga::{Running, RUNNING_STATE};

use crate::caller::CallerKey;
use crate::downstream::Downstream;
use restate_sdk::prelude::*;
use sqlx::PgPool;
use std::time::Duration;

/// What the sagas need from the outside world.
#[derive(Clone)]
pub struct Deps {
    pub db: PgPool,
    pub downstream: Downstream,
    /// How long a draft waits for its payment before it is cancelled.
    pub draft_ttl: Duration,
    /// How long after delivery a return can be asked for.
    pub return_window: Duration,
    /// How long a return waits for its parcel.
    pub return_parcel_wait: Duration,
    /// Checks the API's caller assertion on every call.
    pub caller_key: CallerKey,
    /// Faults the tests inject (none in production).
    pub faults: Faults,
}

/// The Restate endpoint serving every handler of this service. With
/// `identity_keys`, it answers only requests signed by a Restate server holding one
/// of them (`ORDER_RESTATE_IDENTITY_KEYS`).
pub fn endpoint(deps: Deps, identity_keys: &[String]) -> anyhow::Result<Endpoint> {
    // Transient failures are retried by Restate itself: quickly at first, then every
    // 10 s; after 100 attempts (about a quarter of an hour) the invocation pauses
    // and the order shows up as stuck for an operator to resume.
    let retry = ServiceOptions::new()
        .retry_policy_initial_interval(Duration::from_millis(100))
        .retry_policy_exponentiation_factor(2.0)
        .retry_policy_max_interval(Duration::from_secs(10))
        .retry_policy_max_attempts(100)
        .retry_policy_pause_on_max_attempts()
        .journal_retention(Duration::from_secs(24 * 3600));
    let mut builder = Endpoint::builder().bind(
        OrderObject::new(deps)
            .into_service_definition()
            .options(retry),
    );
    for key in identity_keys {
        builder = builder
            .identity_key(key)
            .map_err(|e| anyhow::anyhow!("invalid ORDER_RESTATE_IDENTITY_KEYS entry: {e:?}"))?;
    }
    Ok(builder.build())
}
