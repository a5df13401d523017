//! Event bus: CloudEvents through a Dapr-style publish API.

use super::{DownstreamError, Http};
use crate::domain::OrderEvent;

/// Client of the pub/sub sidecar.
#[derive(Clone)]
pub struct PubSubClient {
    pub(crate) http: Http,
    pubsub: String,
}

impl PubSubClient {
    pub(crate) fn new(http: Http, pubsub: &str) -> Self {
        PubSubClient {
            http,
            pubsub: pubsub.to_owned(),
        }
    }

    /// Publishes the event on its topic as a CloudEvents 1.0 document whose `id` is
    /// the event's stable id.
    pub async fn publish(&self, event: &OrderEvent) -> Result<(), DownstreamError> {
        let body = serde_json::json!({
            "specversion": "1.0",
            "id": event.id,
            "source": "order-service",
            "type": event.topic,
            "subject": event.order_id,
            "time": event.at,
            "datacontenttype": "application/json",
            "data": event.data,
        });
        let path = format!("/v1.0/publish/{}/{}", self.pubsub, event.topic);
        let key = event.id.to_string();
        self.http
            .post::<_, serde_json::Value>(&path, &key, "application/cloudevents+json", &body)
            .await
            .map(|_| ())
    }
}
