//! What a saga killed through Restate's admin API leaves behind, found by the next
//! call on its order.
//!
//! A kill ends an invocation at once: no compensation runs and no later write is
//! made. So every saga marks its order (the state key [`RUNNING_STATE`]) before its
//! first side effect and clears the mark when it finishes. An order whose mark
//! outlives its invocation was left mid-saga. The next exclusive call on it:
//! 1. adopts the version the read model holds when it is newer than the object's:
//!    a kill between the two writes of a commit leaves the read model one version
//!    ahead, and a commit derived from the older state would be skipped as a replay,
//!    its events and changes lost;
//! 2. parks the order (`attention` with code `saga_killed`, at the last step the
//!    saga recorded), so it is listed as stuck until an operator has checked what
//!    the saga moved and resolves it;
//! 3. then goes on with its own command.
//!
//! Until such a call comes, the stuck list shows the mark itself (see
//! `operators::Operators::stuck`).

use super::admit::order_id;
use super::saga::{Running, Saga, ORDER_STATE, RUNNING_STATE};
use super::Deps;
use crate::domain::Order;
use crate::read_model;
use restate_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// The code of the attention of an order whose saga was killed.
pub const SAGA_KILLED: &str = "saga_killed";

/// What the read model holds of an order, for the adoption.
#[derive(Serialize, Deserialize)]
struct Written {
    version: i64,
    order: Option<Order>,
    last_step: Option<String>,
}

/// The order as its object holds it, after parking it when a saga was killed on it
/// (the order's mark outlived its invocation); `parked` says whether this call did.
pub async fn current(
    ctx: &ObjectContext<'_>,
    deps: &Deps,
) -> Result<(Option<Order>, bool), TerminalError> {
    let order = ctx.get::<Json<Order>>(ORDER_STATE).await?.map(|Json(o)| o);
    // Read once per call and journaled, so a replay decides the same.
    let Some(Json(killed)) = ctx.get::<Json<Running>>(RUNNING_STATE).await? else {
        return Ok((order, false));
    };
    let parked = park_killed(ctx, deps, order, killed).await?;
    Ok((parked, true))
}

/// Parks the order that the saga `killed` left mid-way, from the newer of the
/// object's state and the read model's version.
async fn park_killed(
    ctx: &ObjectContext<'_>,
    deps: &Deps,
    order: Option<Order>,
    killed: Running,
) -> Result<Option<Order>, TerminalError> {
    let id = order_id(ctx.key())?;
    let (db, invocation) = (deps.db.clone(), killed.invocation_id.clone());
    let Json(written) = ctx
        .run(|| async move {
            let (version, order) = match read_model::order_state(&db, id).await? {
                Some((version, order)) => (version, order),
                None => (0, None),
            };
            let last = read_model::last_step_of_invocation(&db, &invocation).await?;
            Ok(Json(Written {
                version,
                order,
                last_step: last.map(|s| s.step),
            }))
        })
        .name("adopt_read_model")
        .await?;
    let held = order.as_ref().map_or(0, |o| o.version);
    let mut base = match written.order {
        Some(adopted) if written.version > held => adopted,
        _ => match order {
            Some(order) => order,
            // Killed before the order was first written: nothing to park.
            None => {
                ctx.clear(RUNNING_STATE);
                return Ok(None);
            }
        },
    };
    // A row this code cannot read back (written before the document held the whole
    // order) still has its version: the park is written above it.
    base.version = base.version.max(written.version);
    let saga_name = killed.saga.split(['@', '#']).next().unwrap_or("saga");
    let step = written.last_step.unwrap_or_else(|| saga_name.to_owned());
    let message = format!(
        "the saga {} (invocation {}) was killed through Restate before it finished, after {step}: \
         what it moved after its last commit is not on the order; check the downstream \
         services, then resolve",
        killed.saga, killed.invocation_id
    );
    tracing::error!(order.id = %id, saga = %killed.saga, invocation = %killed.invocation_id, "a saga of the order was killed; the order is parked");
    let name = format!("park_killed@{}", ctx.invocation_id());
    let mut saga = Saga::new(ctx, deps, id, name).asked_by("system", Some(message.clone()));
    let parked = saga
        .commit(&base, &[], None, move |o, at| {
            o.park(&step, SAGA_KILLED, &message, at);
            Ok(())
        })
        .await;
    // Clears the mark: the commit above made it this call's own.
    saga.finish().await;
    parked.map(Some)
}
