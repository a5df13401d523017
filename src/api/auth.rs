//! Authorization on the API's side: the layer that authenticates every `/api/v1`
//! call but health and the OpenAPI document, the [`Caller`] and [`Staff`]
//! extractors, the operator API's guard, and the one place where an order the
//! caller may not see becomes `404`.

use super::{ApiError, ApiState};
use crate::auth::{bearer_token, Caller, Claims, Unauthenticated, Verifier};
use crate::domain::OrderView;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The calls under `/api/v1` that need no token.
const OPEN: [&str; 3] = [
    "/api/v1/orders/health",
    "/api/v1/orders/health/dependencies",
    "/api/v1/openapi.json",
];

/// Whether a call to `path` needs a token when authorization is on: every
/// `/api/v1` path but the open ones, unknown paths included. The console page and
/// `/metrics` at the root stay open.
pub(super) fn needs_token(path: &str) -> bool {
    (path == "/api/v1" || path.starts_with("/api/v1/")) && !OPEN.contains(&path)
}

/// Refuses a call that needs a token and has no valid one (`401`), and gives the
/// handlers its [`Caller`]: the verified claims, or anyone when authorization is
/// off.
pub(super) async fn authenticate(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
    if needs_token(request.uri().path()) {
        let caller = match &state.settings.auth {
            None => Caller::Anyone,
            Some(verifier) => match verified(verifier, request.headers()) {
                Ok(claims) => Caller::Token(claims),
                Err(why) => {
                    tracing::debug!(reason = %why, path = request.uri().path(), "unauthenticated call");
                    return ApiError::from(why).into_response();
                }
            },
        };
        request.extensions_mut().insert(caller);
    }
    next.run(request).await
}

/// The claims of the request's one `Authorization: Bearer` token.
fn verified(verifier: &Verifier, headers: &HeaderMap) -> Result<Claims, Unauthenticated> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(Unauthenticated::Missing)?;
    if values.next().is_some() {
        return Err(Unauthenticated::MalformedHeader);
    }
    let value = value
        .to_str()
        .map_err(|_| Unauthenticated::MalformedHeader)?;
    verifier.verify(bearer_token(value)?)
}

/// The caller, as [`authenticate`] found it. A route outside that layer has none,
/// and then fails rather than allows.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            anyhow::anyhow!(
                "{} has no caller: it is not behind the authentication layer",
                parts.uri.path()
            )
            .into()
        })
    }
}

/// The refusal of a staff call to a customer.
pub(super) const FOR_STAFF: &str = "this call is for staff, services and operators";

/// A caller who may manage orders (staff, a service, an operator); a customer is
/// `403` before anything else is looked at.
pub(super) struct Staff(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Staff {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        match caller.may_manage() {
            true => Ok(Staff(caller)),
            false => Err(ApiError::Forbidden(FOR_STAFF)),
        }
    }
}

/// Lets only operators through to the operator API (`403` for anyone else).
pub(super) async fn operators_only(caller: Caller, request: Request, next: Next) -> Response {
    match caller.may_operate() {
        true => next.run(request).await,
        false => ApiError::Forbidden("the operator API is for operators").into_response(),
    }
}

/// The order, if there is one and the caller may see it: another customer's
/// order is answered exactly as an unknown one.
pub(super) fn visible(caller: &Caller, order: Option<OrderView>) -> Result<OrderView, ApiError> {
    order
        .filter(|order| caller.may_access(order.customer_id))
        .ok_or(ApiError::OrderNotFound)
}

#[cfg(test)]
mod tests {
    use super::needs_token;

    #[test]
    fn every_api_call_needs_a_token_but_health_and_the_openapi_document() {
        for open in [
            "/api/v1/orders/health",
            "/api/v1/orders/health/dependencies",
            "/api/v1/openapi.json",
            "/ops",
            "/metrics",
            "/",
            "/api/v10/orders",
        ] {
            assert!(!needs_token(open), "{open}");
        }
        for closed in [
            "/api/v1",
            "/api/v1/",
            "/api/v1/orders",
            "/api/v1/orders/health/",
            "/api/v1/orders/%68ealth",
            "/api/v1/ops/orders/stuck",
            "/api/v1/orders/analytics",
        ] {
            assert!(needs_token(closed), "{closed}");
        }
    }
}
