//! What a resource of an order tells as it is written.

use super::{OrderEvent, OrderNotification, OrderView};
use chrono::{DateTime, Utc};

/// A resource of an order that tells what happened to it as it is written: the
/// event and the notification of the state it reached (none for some states).
pub trait Telling {
    fn tells(&self) -> (Option<&'static str>, Option<&'static str>);
    /// The event `topic`, told at order version `version`.
    fn event(&self, topic: &str, version: i64, at: DateTime<Utc>) -> OrderEvent;
    /// The notification `template` to the order's customer.
    fn notification(&self, template: &str, order: &OrderView) -> OrderNotification;
    fn created_at(&self) -> DateTime<Utc>;
}
