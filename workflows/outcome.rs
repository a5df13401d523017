//! How a command on an order ended, as the object answers the API.

use crate::domain::{Order, OrderStatus, Refusal};
use serde::{Deserialize, Serialize};

/// Where a saga left the order; the API reads the order itself from the read model,
/// so the journal does not carry it twice.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Rested {
    pub status: OrderStatus,
    pub version: i64,
}

impl From<&Order> for Rested {
    fn from(order: &Order) -> Self {
        Rested {
            status: order.status,
            version: order.version,
        }
    }
}

/// How a command on an existing order ended: `{"outcome": "done", "status",
/// "version"}` or `{"outcome": "refused", "code", "message", ...}` (see [`Refusal`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CommandOutcome {
    /// Done; where the order now rests.
    Done(Rested),
    /// Refused; the API decides how to answer it.
    Refused(Refusal),
}

impl From<Refusal> for CommandOutcome {
    fn from(refusal: Refusal) -> Self {
        CommandOutcome::Refused(refusal)
    }
}
