//! Payment: captures and refunds.

use super::{DownstreamError, Http};
use crate::domain::{Currency, Money};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A captured payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capture {
    pub payment_id: String,
    pub amount: Money,
}

/// A refund the payment service issued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefundReceipt {
    pub refund_id: String,
    pub amount: Money,
}

/// Client of the payment service.
#[derive(Clone)]
pub struct PaymentClient {
    pub(crate) http: Http,
}

impl PaymentClient {
    pub(crate) fn new(http: Http) -> Self {
        PaymentClient { http }
    }

    /// Captures `amount` with `method`.
    pub async fn charge(
        &self,
        key: &str,
        order_id: Uuid,
        amount: Money,
        currency: &Currency,
        method: &str,
    ) -> Result<Capture, DownstreamError> {
        let body = serde_json::json!({
            "order_id": order_id, "amount": amount, "currency": currency, "method": method,
        });
        self.http
            .post("/v1/payments", key, "application/json", &body)
            .await
    }

    /// The captures a charge under idempotency key `key` made: none when it never
    /// took effect. Reads only, so it resolves a charge in doubt without making one.
    pub async fn captures_under(&self, key: &str) -> Result<Vec<Capture>, DownstreamError> {
        #[derive(Deserialize)]
        struct Found {
            payments: Vec<Capture>,
        }
        let found: Found = self.http.look_up("/v1/payments", key).await?;
        Ok(found.payments)
    }

    /// Refunds `amount` of a capture.
    pub async fn refund(
        &self,
        key: &str,
        payment_id: &str,
        amount: Money,
        reason: &str,
    ) -> Result<RefundReceipt, DownstreamError> {
        let body = serde_json::json!({ "amount": amount, "reason": reason });
        let path = format!("/v1/payments/{payment_id}/refunds");
        self.http.post(&path, key, "application/json", &body).await
    }
}
