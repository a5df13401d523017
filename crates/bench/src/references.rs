//! The two references the create saga is measured against: the same downstream calls
//! made straight from an HTTP handler with no journal, and a bare Restate handler
//! making five journaled calls (the engine's floor on this machine).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use order_service::domain::{Currency, Money, OrderEvent};
use order_service::downstream::{Downstream, FulfillmentLine, ReservationLine};
use restate_sdk::prelude::*;
use uuid::Uuid;

/// A Restate service whose one handler makes five journaled HTTP calls.
pub struct BenchFloor {
    pub http: reqwest::Client,
    pub url: String,
}

#[restate_sdk::service]
impl BenchFloor {
    /// Five `ctx.run` steps, each one POST to the simulator.
    #[handler]
    async fn run(&self, ctx: Context<'_>) -> HandlerResult<()> {
        for step in 0..5 {
            let (http, url) = (self.http.clone(), self.url.clone());
            let key = format!("{}:{step}", ctx.invocation_id());
            ctx.run(move || async move {
                let body = serde_json::json!({"order_id": Uuid::nil(), "customer_id": null, "template": "bench", "data": {}});
                http.post(url).header("Idempotency-Key", key).json(&body).send().await?.error_for_status()?;
                Ok(())
            })
            .name("bench_step")
            .await?;
        }
        Ok(())
    }
}

/// An HTTP handler making the create saga's downstream calls directly.
pub fn direct_router(downstream: Downstream) -> Router {
    Router::new()
        .route("/direct", post(direct))
        .with_state(downstream)
}

async fn direct(State(d): State<Downstream>) -> StatusCode {
    match direct_calls(&d).await {
        Ok(()) => StatusCode::CREATED,
        Err(e) => {
            tracing::warn!(error = %e, "direct reference call failed");
            StatusCode::BAD_GATEWAY
        }
    }
}

async fn direct_calls(d: &Downstream) -> anyhow::Result<()> {
    let id = Uuid::new_v4();
    let sku = "SKU-BENCH".to_owned();
    let warehouse_id = Uuid::nil();
    let lines = [ReservationLine {
        product_id: Uuid::nil(),
        sku: sku.clone(),
        warehouse_id,
        quantity: 1,
    }];
    d.warehouse
        .reserve(&format!("{id}:reserve"), id, &lines)
        .await?;
    let usd = Currency::parse("USD").expect("USD");
    let amount: Money = "10.00".parse().expect("amount");
    d.payment
        .charge(&format!("{id}:charge:1"), id, amount, &usd, "pm_card_visa")
        .await?;
    let ship = [FulfillmentLine {
        sku,
        warehouse_id,
        quantity: 1,
    }];
    d.fulfillment
        .create(
            &format!("{id}:fulfillment"),
            id,
            &ship,
            &serde_json::json!({}),
        )
        .await?;
    for (version, topic) in [(1, "order.created"), (2, "order.confirmed")] {
        let event = OrderEvent {
            id: Uuid::new_v4(),
            topic: topic.into(),
            order_id: id,
            version,
            at: chrono::Utc::now(),
            data: serde_json::json!({}),
        };
        d.pubsub.publish(&event).await?;
    }
    d.notification
        .notify(
            &format!("{id}:notify"),
            id,
            None,
            "order_confirmed",
            &serde_json::json!({}),
        )
        .await?;
    Ok(())
}
