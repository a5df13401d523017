//! Warehouse: stock reservations, their release and restocks.

use super::{DownstreamError, Http};
use crate::domain::SkuQuantity;
use chrono::{DateTime, Utc};
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

/// Client of the warehouse service.
#[derive(Clone)]
pub struct WarehouseClient {
    pub(crate) http: Http,
}

/// Returned units of one SKU to put back on sale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestockLine {
    pub sku: String,
    pub warehouse_id: Uuid,
    pub quantity: i64,
}

/// A reservation the warehouse made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reserved {
    pub reservation_id: String,
    /// When the stock goes back on sale unless the reservation is committed.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
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

    /// Reserves the lines for an order.
    pub async fn reserve(
        &self,
        key: &str,
        order_id: Uuid,
        items: &[ReservationLine],
    ) -> Result<Reserved, DownstreamError> {
        let body = serde_json::json!({ "order_id": order_id, "items": items });
        self.http
            .post("/v1/reservations", key, "application/json", &body)
            .await
    }

    /// The reservations a reserve under idempotency key `key` made: none when it
    /// never took effect. Reads only, so it holds no stock.
    pub async fn reservations_under(&self, key: &str) -> Result<Vec<Reserved>, DownstreamError> {
        #[derive(Deserialize)]
        struct Found {
            reservations: Vec<Reserved>,
        }
        let found: Found = self.http.look_up("/v1/reservations", key).await?;
        Ok(found.reservations)
    }

    /// Makes a reservation permanent, so that it no longer expires.
    pub async fn commit(&self, key: &str, reservation_id: &str) -> Result<(), DownstreamError> {
        let path = format!("/v1/reservations/{reservation_id}/commit");
        self.http
            .post::<_, serde_json::Value>(&path, key, "application/json", &serde_json::json!({}))
            .await
            .map(|_| ())
    }

    /// Puts returned units back on sale.
    pub async fn restock(
        &self,
        key: &str,
        order_id: Uuid,
        return_id: Uuid,
        items: &[RestockLine],
    ) -> Result<String, DownstreamError> {
        #[derive(Deserialize)]
        struct Restocked {
            restock_id: String,
        }
        let body =
            serde_json::json!({ "order_id": order_id, "return_id": return_id, "items": items });
        let r: Restocked = self
            .http
            .post("/v1/restocks", key, "application/json", &body)
            .await?;
        Ok(r.restock_id)
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
            // The contract: `reservation_not_found` counts as already released.
            Err(DownstreamError::Rejected(r)) if r.status == 404 => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}
