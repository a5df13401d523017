//! Fault injection: which calls fail, how, and for how long.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::services::Op;

/// A fault to inject into matching calls (`POST /_sim/faults` takes the same JSON).
///
/// With neither `times` nor `rate` the fault applies to every matching call until the
/// faults are cleared.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// `warehouse`, `payment`, `fulfillment`, `notification` or `pubsub`.
    pub service: String,
    /// One operation of that service; `None` matches all of them. Warehouse: `reserve`,
    /// `release`, `commit`, `restock`; payment: `charge`, `refund`; fulfillment: `create`,
    /// `cancel`, `update`; notification: `notify`; pubsub: `publish`. Warehouse, payment and
    /// fulfillment also have `lookup`, their read by idempotency key.
    pub operation: Option<String>,
    /// Answer this status with `{"code":"injected_fault"}` and skip the side effect.
    /// On `pubsub` `publish`, `404` plays a Dapr sidecar whose component is still
    /// loading and `403` one whose scopes forbid the topic.
    pub status: Option<u16>,
    /// Sleep this long before handling the call.
    pub delay_ms: Option<u64>,
    /// Break the connection before or after applying the side effect.
    pub drop: Option<DropMode>,
    /// Apply to the next `times` matching calls only.
    pub times: Option<u32>,
    /// Apply to each matching call with this probability (0..=1).
    pub rate: Option<f64>,
}

/// When a dropped call loses its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropMode {
    /// Before the side effect: nothing happened.
    Before,
    /// After the side effect and its idempotency record: it happened, the answer is lost.
    After,
}

/// What a fault that applies does to the call, after its delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Effect {
    /// Handle the call normally.
    Pass,
    /// Answer this status without handling the call.
    Status(u16),
    /// Break the connection.
    Drop(DropMode),
}

impl Fault {
    /// A fault on every operation of `service` that does nothing until configured.
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            ..Self::default()
        }
    }

    /// Restricts the fault to one operation.
    pub fn on(mut self, operation: impl Into<String>) -> Self {
        self.operation = Some(operation.into());
        self
    }

    /// Answers `status` instead of handling the call.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Delays the call by `delay_ms` milliseconds.
    pub fn with_delay_ms(mut self, delay_ms: u64) -> Self {
        self.delay_ms = Some(delay_ms);
        self
    }

    /// Drops the connection.
    pub fn with_drop(mut self, mode: DropMode) -> Self {
        self.drop = Some(mode);
        self
    }

    /// Applies to the next `times` matching calls only.
    pub fn with_times(mut self, times: u32) -> Self {
        self.times = Some(times);
        self
    }

    /// Applies to each matching call with probability `rate`.
    pub fn with_rate(mut self, rate: f64) -> Self {
        self.rate = Some(rate);
        self
    }

    /// Checks that the fault names a known service and operation and is consistent.
    pub fn validate(&self) -> Result<(), String> {
        let operations: Vec<&str> = Op::ALL
            .iter()
            .filter(|op| op.service() == self.service)
            .map(|op| op.name())
            .collect();
        if operations.is_empty() {
            return Err(format!("unknown service {:?}", self.service));
        }
        if let Some(op) = self
            .operation
            .as_deref()
            .filter(|op| !operations.contains(op))
        {
            return Err(format!(
                "service {:?} has no operation {op:?}",
                self.service
            ));
        }
        if self.status.is_some_and(|s| !(100..=599).contains(&s)) {
            return Err("status must be within 100..=599".into());
        }
        if self.status.is_some() && self.drop.is_some() {
            return Err("set at most one of status and drop".into());
        }
        if self.times == Some(0) {
            return Err("times must be at least 1".into());
        }
        if self.rate.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
            return Err("rate must be within 0..=1".into());
        }
        Ok(())
    }

    pub(super) fn effect(&self) -> Effect {
        match (self.status, self.drop) {
            (Some(status), _) => Effect::Status(status),
            (None, Some(mode)) => Effect::Drop(mode),
            (None, None) => Effect::Pass,
        }
    }

    fn matches(&self, op: Op) -> bool {
        self.service == op.service()
            && self
                .operation
                .as_deref()
                .is_none_or(|name| name == op.name())
    }
}

/// Picks the first fault that matches and applies to this call, using up one of its `times`.
pub(super) fn take_fault(
    faults: &mut Vec<Fault>,
    op: Op,
    mut roll: impl FnMut() -> f64,
) -> Option<Fault> {
    let index = faults
        .iter()
        .position(|fault| fault.matches(op) && fault.rate.is_none_or(|rate| roll() < rate))?;
    let fault = faults[index].clone();
    match &mut faults[index].times {
        Some(1) => {
            faults.remove(index);
        }
        Some(times) => *times -= 1,
        None => {}
    }
    Some(fault)
}

/// A uniform sample from `[0, 1)`, drawn from a v4 UUID's random bits.
pub(super) fn random_unit() -> f64 {
    const BITS: u32 = 53;
    // The low 53 bits of a v4 UUID are all random; the variant bits sit above them.
    let (_, low) = Uuid::new_v4().as_u64_pair();
    (low & ((1 << BITS) - 1)) as f64 / (1u64 << BITS) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge_fault() -> Fault {
        Fault::new("payment").on("charge").with_status(503)
    }

    #[test]
    fn take_fault_uses_up_fault_when_times_reached() {
        let mut faults = vec![charge_fault().with_times(2)];

        assert!(take_fault(&mut faults, Op::Charge, random_unit).is_some());
        assert!(take_fault(&mut faults, Op::Charge, random_unit).is_some());
        assert!(take_fault(&mut faults, Op::Charge, random_unit).is_none());
        assert!(faults.is_empty());
    }

    #[test]
    fn take_fault_matches_every_operation_when_operation_unset() {
        let mut faults = vec![Fault::new("warehouse").with_status(500)];

        assert!(take_fault(&mut faults, Op::Release, random_unit).is_some());
        assert!(take_fault(&mut faults, Op::Commit, random_unit).is_some());
        assert!(take_fault(&mut faults, Op::Charge, random_unit).is_none());
    }

    #[test]
    fn take_fault_falls_through_when_rate_roll_misses() {
        let mut faults = vec![
            charge_fault().with_rate(0.5),
            Fault::new("payment").with_status(429),
        ];

        let picked = take_fault(&mut faults, Op::Charge, || 0.9);

        assert_eq!(picked.map(|f| f.status), Some(Some(429)));
    }

    #[test]
    fn random_unit_stays_in_unit_interval() {
        assert!((0..1000)
            .map(|_| random_unit())
            .all(|x| (0.0..1.0).contains(&x)));
    }

    #[test]
    fn validate_rejects_unknown_operation_and_conflicting_effects() {
        assert!(charge_fault().validate().is_ok());
        assert!(Fault::new("payment").on("reserve").validate().is_err());
        assert!(Fault::new("bank").validate().is_err());
        let both = charge_fault().with_drop(DropMode::After);
        assert!(both.validate().is_err());
    }

    #[test]
    fn fault_deserializes_from_control_api_json() {
        let json = r#"{"service":"pubsub","drop":"after","rate":0.25}"#;

        let fault: Fault = serde_json::from_str(json).unwrap();

        assert_eq!(fault.drop, Some(DropMode::After));
        assert_eq!(fault.effect(), Effect::Drop(DropMode::After));
        assert!(serde_json::from_str::<Fault>(r#"{"service":"x","op":"y"}"#).is_err());
    }
}
