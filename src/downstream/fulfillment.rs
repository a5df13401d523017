//! Fulfillment: shipping requests.

use super::{DownstreamError, Http};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// One line to ship.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FulfillmentLine {
    pub sku: String,
    pub warehouse_id: Uuid,
    pub quantity: i64,
}

/// Client of the fulfillment service.
#[derive(Clone)]
pub struct FulfillmentClient {
    pub(crate) http: Http,
}

#[derive(Deserialize)]
struct Created {
    fulfillment_id: String,
}

impl FulfillmentClient {
    pub(crate) fn new(http: Http) -> Self {
        FulfillmentClient { http }
    }

    /// Asks for the lines to be shipped to `shipping_address`.
    pub async fn create(
        &self,
        key: &str,
        order_id: Uuid,
        items: &[FulfillmentLine],
        shipping_address: &Value,
    ) -> Result<String, DownstreamError> {
        let body = serde_json::json!({
            "order_id": order_id, "items": items, "shipping_address": shipping_address,
        });
        let c: Created = self
            .http
            .post("/v1/fulfillments", key, "application/json", &body)
            .await?;
        Ok(c.fulfillment_id)
    }

    /// The ids of the fulfillments a create under idempotency key `key` made: none
    /// when it never took effect. Reads only, so it asks for no shipment.
    pub async fn fulfillments_under(&self, key: &str) -> Result<Vec<String>, DownstreamError> {
        #[derive(Deserialize)]
        struct Found {
            fulfillments: Vec<Created>,
        }
        let found: Found = self.http.look_up("/v1/fulfillments", key).await?;
        Ok(found
            .fulfillments
            .into_iter()
            .map(|f| f.fulfillment_id)
            .collect())
    }

    /// Cancels `items` of a fulfillment, or all of it when `items` is empty.
    pub async fn cancel(
        &self,
        key: &str,
        fulfillment_id: &str,
        items: &[super::SkuQuantity],
    ) -> Result<(), DownstreamError> {
        let body = serde_json::json!({ "items": items });
        let path = format!("/v1/fulfillments/{fulfillment_id}/cancel");
        self.http
            .post::<_, Value>(&path, key, "application/json", &body)
            .await
            .map(|_| ())
    }

    /// Makes a fulfillment the whole parcel after change `change_id`: `items` shipped
    /// to `address`, replacing what it held. A `409 already_shipped` comes back as a
    /// final [`DownstreamError::Rejected`].
    pub async fn update(
        &self,
        key: &str,
        fulfillment_id: &str,
        order_id: Uuid,
        change_id: Uuid,
        items: &[FulfillmentLine],
        address: &Value,
    ) -> Result<(), DownstreamError> {
        let body = serde_json::json!({
            "order_id": order_id, "change_id": change_id, "items": items,
            "shipping_address": address,
        });
        let path = format!("/v1/fulfillments/{fulfillment_id}/update");
        self.http
            .post::<_, Value>(&path, key, "application/json", &body)
            .await
            .map(|_| ())
    }
}
