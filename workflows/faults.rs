//! The one fault the tests inject into the sagas themselves. The service never
//! sets it: only `order-stack serve` (the service with the tests' hooks) makes it
//! from `ORDER_FAULT_PAUSE_AFTER_PROJECTION=<saga name prefix>`, so the binary a
//! deployment runs has no way to turn it on. It holds the first commit of such a
//! saga for [`PAUSE`] between its read-model write and its state write, the window
//! that a kill through Restate's admin API must hit to leave the read model ahead
//! of the object.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long the fault holds the commit.
pub const PAUSE: Duration = Duration::from_secs(5);

/// The faults set for this process; none by default.
#[derive(Clone, Default)]
pub struct Faults {
    pause_after_projection: Option<(String, Arc<AtomicBool>)>,
}

impl Faults {
    /// Holds the first commit of the first saga whose name starts with `prefix`.
    pub fn pause_after_projection(prefix: String) -> Faults {
        Faults {
            pause_after_projection: Some((prefix, Arc::new(AtomicBool::new(false)))),
        }
    }

    /// Holds the first commit of a saga named with the configured prefix.
    pub async fn after_projection(&self, saga: &str) {
        if let Some((prefix, used)) = &self.pause_after_projection {
            if saga.starts_with(prefix.as_str()) && !used.swap(true, Ordering::SeqCst) {
                tokio::time::sleep(PAUSE).await;
            }
        }
    }
}
