//! A fault the tests inject into the sagas themselves, compiled only with the
//! `faults` feature (the production build has none):
//! `ORDER_FAULT_PAUSE_AFTER_PROJECTION=<saga name prefix>` holds the first commit
//! of such a saga for [`PAUSE`] between its read-model write and its state write,
//! the window that a kill through Restate's admin API must hit to leave the read
//! model ahead of the object.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long the fault holds the commit.
pub const PAUSE: Duration = Duration::from_secs(5);

/// The faults configured for this process; none by default.
#[derive(Clone, Default)]
pub struct Faults {
    pause_after_projection: Option<(String, Arc<AtomicBool>)>,
}

impl Faults {
    /// The faults the environment asks for (none without the `faults` feature).
    pub fn from_env() -> Faults {
        #[cfg(feature = "faults")]
        if let Ok(prefix) = std::env::var("ORDER_FAULT_PAUSE_AFTER_PROJECTION") {
            tracing::warn!(%prefix, "fault injection: a commit will be held after its read-model write");
            return Faults {
                pause_after_projection: Some((prefix, Arc::new(AtomicBool::new(false)))),
            };
        }
        Faults::default()
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
