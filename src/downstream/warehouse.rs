//! Warehouse: stock reservations, their release and restocks.

use super::{DownstreamError, Http};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One line to reserve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReservationLine {
    pub product_id: Uuid,
    pub sku: String,
    pub warehouse_id: Uuid,
    pub quantity: i64,
}

/// A quantity of one SKU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkuQuantity {
    pub sku: String,
    pub quantity: i64,
}

/// Client of the warehouse service.
#[derive(Clone)]
pub struct WarehouseClient {
    pub(crate) http: Http,
}

#[derive(Deserialize)]
struct Reserved {
    reservation_id: String,
}

#[derive(Deserialize)]
struct Released {
    #[serde(default)]
    released: Vec<SkuQuantity>,
}

impl WarehouseClient {
    pub(crate) fn new(http: Http) -> Self {
        WarehouseClient { http }
    }

    /// Reserves the lines for an order and returns the reservation id.
    pub async fn reserve(
        &self,
        key: &str,
        order_id: Uuid,
        items: &[ReservationLine],
    ) -> Result<String, DownstreamError> {
        let body = serde_json::json!({ "order_id": order_id, "items": items });
        let r: Reserved = self
            .http
            .post("/v1/reservations", key, "application/json", &body)
            .await?;
        Ok(r.reservation_id)
    }

    /// Releases `items` of a reservation, or all that is left when `items` is empty.
    /// A reservation the warehouse no longer knows counts as released.
    pub async fn release(
        &self,
        key: &str,
        reservation_id: &str,
        items: &[SkuQuantity],
    ) -> Result<Vec<SkuQuantity>, DownstreamError> {
        let body = serde_json::json!({ "items": items });
        let path = format!("/v1/reservations/{reservation_id}/release");
        match self
            .http
            .post::<_, Released>(&path, key, "application/json", &body)
            .await
        {
            Ok(r) => Ok(r.released),
            Err(DownstreamError::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}
