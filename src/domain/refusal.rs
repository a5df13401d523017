//! Why the order's object refused a command. The object decides the refusal; the
//! API alone turns it into an HTTP status and problem code (`api::error`), and the
//! gRPC server into a gRPC code from that status.

use serde::{Deserialize, Serialize};

/// A command on an order that was refused; nothing changed.
///
/// It crosses Restate's ingress, and is kept in the object's state as the answer to
/// a repeat, as `{"code": "<problem code>", "message", "field"?}`. Outcomes kept
/// by earlier versions also carry the HTTP `status`, which is ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Refusal {
    #[error("no such order")]
    OrderNotFound,
    #[error("the order has no such return")]
    ReturnNotFound,
    /// The order (or the return) is in a status that does not allow the command.
    #[error("{message}")]
    InvalidTransition { message: String },
    /// The order has shipped: too late to cancel.
    #[error("{message}")]
    NotCancellable { message: String },
    /// The fulfillment service refused the cancel: the parcel is on its way.
    #[error("{message}")]
    AlreadyShipped { message: String },
    /// The payment service refused the refund for a business reason.
    #[error("{message}")]
    RefundRefused { message: String },
    /// A downstream service refused a step for another reason than a business one.
    #[error("{message}")]
    StepRefused { message: String },
    /// The card was declined; the draft stays a draft.
    #[error("the payment was declined")]
    PaymentDeclined,
    /// More units than the order has left.
    #[error("{message}")]
    QuantityExceeded { message: String },
    #[error("{message}")]
    ReturnWindowClosed { message: String },
    /// The request breaks the order's rules; `field` names the field at fault.
    #[error("{message}")]
    ValidationFailed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        field: Option<String>,
        message: String,
    },
    /// An operator's retry found nothing to run again.
    #[error("{message}")]
    NothingToRetry { message: String },
    /// An operator's resolve found nothing waiting for an operator.
    #[error("{message}")]
    NothingToResolve { message: String },
    /// The command's saga failed for good: a repeat gets this, never a second run.
    #[error("{message}")]
    SagaFailed { message: String },
    #[error("the order has no such exchange")]
    ExchangeNotFound,
    #[error("the order has no such claim")]
    ClaimNotFound,
    #[error("the order has no such change quote")]
    QuoteNotFound,
    #[error("the order has no such change")]
    ChangeNotFound,
    /// The order cannot change now (its status, or it waits for an operator).
    #[error("{message}")]
    NotEditable { message: String },
    /// Another change of the order is under way.
    #[error("change {change_id} of the order is under way")]
    ChangeInProgress { change_id: uuid::Uuid },
    /// The warehouse has not enough of `sku`.
    #[error("{message}")]
    InsufficientStock {
        sku: Option<String>,
        message: String,
    },
    /// The quote can no longer be applied.
    #[error("{message}")]
    QuoteExpired { message: String },
    /// `If-Match` names another version than the order's.
    #[error("If-Match names version {asked}; the order is at version {current_version}")]
    VersionConflict { asked: i64, current_version: i64 },
    /// The quote was priced on another version than the order's.
    #[error("the quote was priced on version {quote_version}; the order is at version {current_version}")]
    QuoteSuperseded {
        quote_version: i64,
        current_version: i64,
        /// For a change request: what it comes to now.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        preview: Option<serde_json::Value>,
    },
    /// `expected_delta` is not what the change comes to.
    #[error("the change comes to {delta}, not the expected_delta given")]
    AmountMismatch { delta: String },
    /// The change reached its point of no return: it can no longer be cancelled.
    #[error("change {change_id} is {status} and past its point of no return")]
    PastPointOfNoReturn {
        change_id: uuid::Uuid,
        status: String,
    },
    #[error("the order has no such change request")]
    ChangeRequestNotFound,
    /// The change request expired.
    #[error("the change request expired at its expires_at")]
    RequestExpired,
}

impl Refusal {
    /// Fields of the refusal that its problem document carries beside `code` and
    /// `detail` (`change_id`, `current_version`, `sku`, ...).
    pub fn extras(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut wire = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        for kept in ["code", "message", "field", "asked"] {
            wire.remove(kept);
        }
        wire.retain(|_, v| !v.is_null());
        wire
    }
}

impl Refusal {
    /// The request's `field` breaks the order's rules.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Refusal::ValidationFailed {
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_refusal_is_named_by_its_problem_code_on_the_wire() {
        let refused = Refusal::InvalidTransition {
            message: "an order cannot go from draft to shipped".into(),
        };
        assert_eq!(
            serde_json::to_value(&refused).unwrap(),
            json!({"code": "invalid_transition", "message": "an order cannot go from draft to shipped"})
        );
        assert_eq!(
            serde_json::to_value(Refusal::OrderNotFound).unwrap(),
            json!({"code": "order_not_found"})
        );
        let invalid = Refusal::invalid("items[0].item_id", "the order has no item 9");
        let wire = serde_json::to_value(&invalid).unwrap();
        assert_eq!(wire["field"], "items[0].item_id");
        assert_eq!(serde_json::from_value::<Refusal>(wire).unwrap(), invalid);
    }

    #[test]
    fn a_refusal_kept_by_an_earlier_version_reads_the_same() {
        // Earlier versions kept the HTTP status beside the code.
        let kept = |status: u16, code: &str, message: &str| {
            let wire = json!({"status": status, "code": code, "message": message});
            serde_json::from_value::<Refusal>(wire).unwrap()
        };
        assert_eq!(
            kept(404, "order_not_found", "no such order"),
            Refusal::OrderNotFound
        );
        assert_eq!(
            kept(402, "payment_declined", "the payment was declined"),
            Refusal::PaymentDeclined
        );
        assert_eq!(
            kept(502, "step_refused", "payment refused: 403"),
            Refusal::StepRefused {
                message: "payment refused: 403".into()
            }
        );
        assert_eq!(
            kept(
                422,
                "validation_failed",
                "amount must equal the amount due 5.00"
            ),
            Refusal::ValidationFailed {
                field: None,
                message: "amount must equal the amount due 5.00".into()
            }
        );
        assert_eq!(
            kept(500, "saga_failed", "boom").to_string(),
            "boom".to_owned()
        );
    }
}
