//! Notification: messages to the customer.

use super::{DownstreamError, Http};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

/// Client of the notification service.
#[derive(Clone)]
pub struct NotificationClient {
    pub(crate) http: Http,
}

#[derive(Deserialize)]
struct Accepted {
    notification_id: String,
}

impl NotificationClient {
    pub(crate) fn new(http: Http) -> Self {
        NotificationClient { http }
    }

    /// Sends `template` to the order's customer (`None` for a guest).
    pub async fn notify(
        &self,
        key: &str,
        order_id: Uuid,
        customer_id: Option<Uuid>,
        template: &str,
        data: &Value,
    ) -> Result<String, DownstreamError> {
        let body = serde_json::json!({
            "order_id": order_id, "customer_id": customer_id, "template": template, "data": data,
        });
        let a: Accepted = self
            .http
            .post("/v1/notifications", key, "application/json", &body)
            .await?;
        Ok(a.notification_id)
    }
}
