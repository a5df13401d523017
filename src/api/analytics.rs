//! `GET /orders/analytics`: orders created in a window, by status, and per currency
//! what the placed ones were worth. The static segment wins over `/orders/{id}`.

use super::auth::Staff;
use super::error::Problem;
use super::openapi::shapes::AnalyticsQuery;
use super::params::QueryParams;
use super::{ApiError, ApiState};
use crate::domain::FieldError;
use crate::read_model::{self, Analytics, Window, MAX_WINDOW_DAYS};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use std::collections::HashMap;

/// The window when `from` is not given: the days before `to`.
const DEFAULT_WINDOW_DAYS: i64 = 30;

/// The analytics route.
pub fn router() -> Router<ApiState> {
    Router::new().route("/orders/analytics", get(get_analytics))
}

#[utoipa::path(
    get,
    path = "/api/v1/orders/analytics",
    tag = "orders",
    params(AnalyticsQuery),
    responses(
        (status = 200, description = "Orders created in the window by status now; per currency, what the placed (ever captured) ones were worth and what was refunded of them; the cancellation rate of placed orders.", body = Analytics),
        (status = 403, description = "`forbidden`: for staff, services and operators, not customers.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: `from` or `to` is not RFC 3339, or the window is empty, backwards or longer than 366 days.", body = Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /orders/analytics?from=&to=`: the whole shop's figures, so for staff,
/// services and operators; a customer is `403` before its query is read.
async fn get_analytics(
    State(state): State<ApiState>,
    _: Staff,
    QueryParams(params): QueryParams,
) -> Result<Json<Analytics>, ApiError> {
    // Microseconds, as every time the service keeps.
    let window = window(&params, Utc::now().trunc_subsecs(6))?;
    Ok(Json(read_model::order_analytics(&state.db, window).await?))
}

/// The window of the query: `from` (inclusive) and `to` (exclusive), RFC 3339;
/// without `to` it ends `now`, without `from` it starts 30 days before `to`. A
/// parameter that is empty counts as not given, one the route does not know is
/// ignored, as `GET /orders` does. An empty window, or one longer than
/// [`MAX_WINDOW_DAYS`], is refused naming `to`, or `from` when `to` was not given.
fn window(params: &HashMap<String, String>, now: DateTime<Utc>) -> Result<Window, ApiError> {
    let mut errors = Vec::new();
    let mut time = |name: &str| {
        let value = params
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())?;
        match DateTime::parse_from_rfc3339(value) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => {
                errors.push(FieldError::new(name, "must be an RFC 3339 time"));
                None
            }
        }
    };
    let (from, to) = (time("from"), time("to"));
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let end = to.unwrap_or(now);
    let start = from.unwrap_or_else(|| {
        let default = end.checked_sub_signed(TimeDelta::days(DEFAULT_WINDOW_DAYS));
        default.unwrap_or(DateTime::<Utc>::MIN_UTC)
    });
    let (name, relation) = match to {
        Some(_) => ("to", "after from"),
        None => ("from", "before to (now when not given)"),
    };
    let problem = if start >= end {
        Some(format!("must be {relation}"))
    } else if end - start > TimeDelta::days(MAX_WINDOW_DAYS) {
        Some(format!("must be at most {MAX_WINDOW_DAYS} days {relation}"))
    } else {
        None
    };
    match problem {
        Some(message) => Err(ApiError::Validation(vec![FieldError::new(name, message)])),
        None => Ok(Window {
            from: start,
            to: end,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The field and message of the one error of a refusal.
    fn refusal(result: Result<Window, ApiError>) -> (String, String) {
        match result {
            Err(ApiError::Validation(errors)) if errors.len() == 1 => {
                (errors[0].field.clone(), errors[0].message.clone())
            }
            other => panic!("not one validation error: {other:?}"),
        }
    }

    const NOW: &str = "2026-12-04T12:00:00Z";

    #[test]
    fn defaults_to_the_last_30_days_and_ignores_unknown_parameters() {
        let w = window(&params(&[("limit", "5"), ("from", "")]), at(NOW)).unwrap();
        assert_eq!((w.from, w.to), (at("2026-11-04T12:00:00Z"), at(NOW)));
        let w = window(&params(&[("to", "2026-01-31T00:00:00Z")]), at(NOW)).unwrap();
        assert_eq!(w.from, at("2026-01-01T00:00:00Z"));
        let w = window(&params(&[("from", "2026-12-01T01:00:00+01:00")]), at(NOW)).unwrap();
        assert_eq!((w.from, w.to), (at("2026-12-01T00:00:00Z"), at(NOW)));
    }

    #[test]
    fn a_time_that_is_not_rfc_3339_is_refused_by_name() {
        for (name, value) in [
            ("from", "yesterday"),
            ("from", "2026-11-01"),
            ("to", "2026-11-01T00:00:00"),
        ] {
            let (field, message) = refusal(window(&params(&[(name, value)]), at(NOW)));
            assert_eq!(
                (field.as_str(), message.as_str()),
                (name, "must be an RFC 3339 time")
            );
        }
    }

    #[test]
    fn an_empty_or_backward_window_is_refused() {
        let same = [("from", NOW), ("to", NOW)];
        assert_eq!(
            refusal(window(&params(&same), at(NOW))),
            ("to".into(), "must be after from".into())
        );
        let future = [("from", "2026-12-05T00:00:00Z")];
        assert_eq!(
            refusal(window(&params(&future), at(NOW))),
            (
                "from".into(),
                "must be before to (now when not given)".into()
            )
        );
    }

    #[test]
    fn a_window_longer_than_366_days_is_refused() {
        let year = [("from", "2025-12-03T12:00:00Z"), ("to", NOW)];
        assert!(window(&params(&year), at(NOW)).is_ok(), "366 days");
        let longer = [("from", "2025-12-03T11:59:59Z"), ("to", NOW)];
        assert_eq!(refusal(window(&params(&longer), at(NOW))).0, "to");
        let from_only = [("from", "2020-01-01T00:00:00Z")];
        assert_eq!(refusal(window(&params(&from_only), at(NOW))).0, "from");
    }
}
