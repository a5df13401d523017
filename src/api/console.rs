//! `GET /ops`: the operator console, one self-contained page (no CDN, works
//! offline) over the operator API, sent with headers that keep other sites from
//! framing it and browsers from running anything but its own script and style.

use super::ApiState;
use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// The page, built into the binary.
const PAGE: &str = include_str!("console.html");

/// The page's policy: its one inline script and style (by hash), calls to its own
/// origin only, and no framing anywhere.
static POLICY: LazyLock<String> = LazyLock::new(|| {
    let script = inline_hash(PAGE, "script");
    let style = inline_hash(PAGE, "style");
    format!(
        "default-src 'none'; script-src '{script}'; style-src '{style}'; \
         connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; \
         frame-ancestors 'none'"
    )
});

/// The CSP source (`sha256-...`) of the page's one inline `<tag>` block.
fn inline_hash(page: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = page.find(&open).expect("the console has its inline block") + open.len();
    let end = start
        + page[start..]
            .find(&format!("</{tag}>"))
            .expect("a closed block");
    let digest = Sha256::digest(&page.as_bytes()[start..end]);
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The console route (at the root, beside `/api/v1`).
pub fn router() -> Router<ApiState> {
    Router::new().route("/ops", get(page))
}

#[utoipa::path(
    get,
    path = "/ops",
    tag = "operators",
    responses((status = 200, description = "The operator console, an HTML page over the operator API, with a Content-Security-Policy that forbids framing.", body = String, content_type = "text/html"))
)]
/// `GET /ops`: the page; every call it makes needs an operator's token.
async fn page() -> impl IntoResponse {
    let policy = HeaderValue::from_str(&POLICY).expect("the policy is ASCII");
    (
        [
            (header::CONTENT_SECURITY_POLICY, policy),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        Html(PAGE),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_the_hash_of_each_inline_block_and_forbids_framing() {
        let page = "<style>a{}</style><script>x()</script>";
        // `echo -n 'x()' | openssl dgst -sha256 -binary | base64`
        assert_eq!(
            inline_hash(page, "script"),
            "sha256-D6IGS8VMvCoyaR/l0h9tERrBTATY01CoPS7l6xDv0kI="
        );
        assert!(POLICY.contains("frame-ancestors 'none'"), "{}", *POLICY);
        assert_eq!(PAGE.matches("<script").count(), 1);
        assert_eq!(PAGE.matches("<style").count(), 1);
        // Style attributes would need 'unsafe-inline'.
        assert!(!PAGE.contains("style=\""));
    }
}
