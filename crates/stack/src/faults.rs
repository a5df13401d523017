//! The fault hook of the tests, set from the environment of `order-stack serve`,
//! `dev` and `cluster` (never by `order-service`):
//! `ORDER_FAULT_PAUSE_AFTER_PROJECTION=<saga name prefix>` holds that saga's first
//! commit between its read-model write and its state write.

use order_service::workflows::Faults;

/// The faults the environment asks for; none without the variable.
pub fn from_env() -> Faults {
    match std::env::var("ORDER_FAULT_PAUSE_AFTER_PROJECTION") {
        Ok(prefix) if !prefix.is_empty() => {
            tracing::warn!(%prefix, "fault injection: a commit will be held after its read-model write");
            Faults::pause_after_projection(prefix)
        }
        _ => Faults::default(),
    }
}
