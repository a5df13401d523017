//! `GET /ops`: the operator console, one self-contained page (no CDN, works
//! offline) over the operator API.

use super::ApiState;
use axum::response::Html;
use axum::routing::get;
use axum::Router;

/// The page, built into the binary.
const PAGE: &str = include_str!("console.html");

/// The console route (at the root, beside `/api/v1`).
pub fn router() -> Router<ApiState> {
    Router::new().route("/ops", get(page))
}

#[utoipa::path(
    get,
    path = "/ops",
    tag = "operators",
    responses((status = 200, description = "The operator console, an HTML page over the operator API.", body = String, content_type = "text/html"))
)]
/// `GET /ops`: the page; every call it makes needs an operator's token.
async fn page() -> Html<&'static str> {
    Html(PAGE)
}
