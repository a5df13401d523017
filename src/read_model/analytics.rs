//! The figures behind `GET /orders/analytics`: the orders created in a window, by
//! their status now, and per currency what the placed ones were worth.
//!
//! Whole UTC days of the window are read from `order_daily_stats`, which triggers
//! keep in step with `orders`; its partial first and last days from `orders`
//! through a covering index (see `migrations/20261204000001_analytics.sql`).

use crate::domain::OrderStatus;
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use sqlx::PgPool;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The longest window: a longer one would read more rows of the daily counts than
/// an answer within 50 ms allows.
pub const MAX_WINDOW_DAYS: i64 = 366;

/// Orders created from `from` (inclusive) to `to` (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// The answer of `GET /orders/analytics`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Analytics {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Every order created in the window, whatever became of it.
    pub order_count: i64,
    /// Every status, with the orders of the window in it now (`0` when none).
    #[schema(value_type = BTreeMap<String, i64>)]
    pub by_status: StatusCounts,
    /// One entry per currency with a placed order, by code: money is never summed
    /// across currencies.
    pub currencies: Vec<CurrencyFigures>,
    /// Cancelled placed orders / placed orders, half-even to 4 fraction digits.
    #[serde(serialize_with = "four_places")]
    #[schema(value_type = String, pattern = r"^\d\.\d{4}$", example = "0.0250")]
    pub cancellation_rate: Decimal,
}

/// The placed orders of one currency. An order is placed once it was captured
/// (`captured_amount > 0`), whatever happened after: a cancelled or refunded order
/// still counts, a draft or a declined one does not.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CurrencyFigures {
    pub currency: String,
    pub order_count: i64,
    /// The sum of the placed orders' `total_amount`: what they were placed for,
    /// refunds not deducted (those are `refunded_total`).
    #[serde(serialize_with = "two_places")]
    #[schema(value_type = String, pattern = r"^\d+\.\d{2}$")]
    pub total_value: Decimal,
    /// `total_value / order_count`, half-even to cents.
    #[serde(serialize_with = "two_places")]
    #[schema(value_type = String, pattern = r"^\d+\.\d{2}$")]
    pub average_value: Decimal,
    /// The sum of the placed orders' `refunded_amount`.
    #[serde(serialize_with = "two_places")]
    #[schema(value_type = String, pattern = r"^\d+\.\d{2}$")]
    pub refunded_total: Decimal,
}

/// Orders per status, every status named (`0` when none), in life order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts([i64; OrderStatus::ALL.len()]);

impl StatusCounts {
    /// The count of `status`.
    pub fn get(&self, status: OrderStatus) -> i64 {
        self.0[Self::index(status)]
    }

    fn add(&mut self, status: OrderStatus, n: i64) {
        self.0[Self::index(status)] += n;
    }

    fn index(status: OrderStatus) -> usize {
        OrderStatus::ALL
            .iter()
            .position(|s| *s == status)
            .expect("ALL holds every status")
    }
}

impl Serialize for StatusCounts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for status in OrderStatus::ALL {
            map.serialize_entry(status.as_str(), &self.get(status))?;
        }
        map.end()
    }
}

/// The orders of one status and currency created in a window.
#[derive(Debug, Clone, PartialEq)]
struct Group {
    status: OrderStatus,
    currency: String,
    orders: i64,
    /// Those ever captured, their `total_amount` and what was refunded of all.
    placed: i64,
    placed_total: Decimal,
    refunded_total: Decimal,
}

#[derive(sqlx::FromRow)]
struct GroupRow {
    status: String,
    currency: String,
    orders: i64,
    placed: i64,
    placed_total: Decimal,
    refunded_total: Decimal,
}

/// The figures of `window`.
pub async fn order_analytics(pool: &PgPool, window: Window) -> sqlx::Result<Analytics> {
    Ok(summarize(window, &groups(pool, window).await?))
}

/// The orders of `window` per status and currency: the whole days from the daily
/// counts, the partial ones from the covering index of `orders`.
async fn groups(pool: &PgPool, window: Window) -> sqlx::Result<Vec<Group>> {
    let split = Split::of(window);
    // Each range its own branch: one range per index scan keeps them index-only.
    let rows: Vec<GroupRow> = sqlx::query_as(
        "SELECT status, currency, sum(orders)::bigint AS orders, sum(placed)::bigint AS placed,
                sum(placed_total) AS placed_total, sum(refunded_total) AS refunded_total
         FROM (
             SELECT status, currency, orders, placed, placed_total, refunded_total
             FROM order_daily_stats WHERE day >= $1 AND day < $2
             UNION ALL
             SELECT status, currency, 1, (captured_amount > 0)::int,
                    CASE WHEN captured_amount > 0 THEN total_amount ELSE 0 END, refunded_amount
             FROM orders WHERE created_at >= $3 AND created_at < $4
             UNION ALL
             SELECT status, currency, 1, (captured_amount > 0)::int,
                    CASE WHEN captured_amount > 0 THEN total_amount ELSE 0 END, refunded_amount
             FROM orders WHERE created_at >= $5 AND created_at < $6
         ) AS window_orders
         GROUP BY status, currency
         -- Daily counts whose every order moved on to another status.
         HAVING sum(orders) <> 0",
    )
    .bind(split.days.0)
    .bind(split.days.1)
    .bind(split.head.0)
    .bind(split.head.1)
    .bind(split.tail.0)
    .bind(split.tail.1)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(Group {
                status: r
                    .status
                    .parse()
                    .map_err(|e: String| sqlx::Error::Decode(e.into()))?,
                currency: r.currency,
                orders: r.orders,
                placed: r.placed,
                placed_total: r.placed_total,
                refunded_total: r.refunded_total,
            })
        })
        .collect()
}

/// Where the orders of a window are counted: the whole UTC days `[days.0, days.1)`
/// in the daily counts, the partial days before (`head`) and after (`tail`) them in
/// `orders`. An empty range has its start at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Split {
    days: (NaiveDate, NaiveDate),
    head: (DateTime<Utc>, DateTime<Utc>),
    tail: (DateTime<Utc>, DateTime<Utc>),
}

impl Split {
    fn of(Window { from, to }: Window) -> Split {
        let midnight = |day: NaiveDate| day.and_time(NaiveTime::MIN).and_utc();
        let first = match midnight(from.date_naive()) == from {
            true => Some(from.date_naive()),
            false => from.date_naive().succ_opt(),
        };
        let last = to.date_naive();
        match first {
            Some(first) if first < last => Split {
                days: (first, last),
                head: (from, midnight(first)),
                tail: (midnight(last), to),
            },
            // No whole day: everything from `orders`.
            _ => Split {
                days: (last, last),
                head: (from, to),
                tail: (to, to),
            },
        }
    }
}

/// The answer from the groups of `window`.
fn summarize(window: Window, groups: &[Group]) -> Analytics {
    let mut by_status = StatusCounts::default();
    let mut currencies: BTreeMap<&str, CurrencyFigures> = BTreeMap::new();
    let (mut placed, mut cancelled) = (0, 0);
    for g in groups {
        by_status.add(g.status, g.orders);
        placed += g.placed;
        if g.status == OrderStatus::Cancelled {
            cancelled += g.placed;
        }
        if g.placed > 0 {
            let c = currencies
                .entry(&g.currency)
                .or_insert_with(|| CurrencyFigures {
                    currency: g.currency.clone(),
                    order_count: 0,
                    total_value: Decimal::ZERO,
                    average_value: Decimal::ZERO,
                    refunded_total: Decimal::ZERO,
                });
            c.order_count += g.placed;
            c.total_value += g.placed_total;
            c.refunded_total += g.refunded_total;
        }
    }
    let currencies = currencies
        .into_values()
        .map(|c| CurrencyFigures {
            average_value: ratio(c.total_value, c.order_count, 2),
            ..c
        })
        .collect();
    Analytics {
        from: window.from,
        to: window.to,
        order_count: groups.iter().map(|g| g.orders).sum(),
        by_status,
        currencies,
        cancellation_rate: ratio(Decimal::from(cancelled), placed, 4),
    }
}

/// `numerator / denominator` half-even to `places` fraction digits; zero when the
/// denominator is.
fn ratio(numerator: Decimal, denominator: i64, places: u32) -> Decimal {
    match denominator {
        0 => Decimal::ZERO,
        d => (numerator / Decimal::from(d))
            .round_dp_with_strategy(places, RoundingStrategy::MidpointNearestEven),
    }
}

fn fixed(value: Decimal, places: u32) -> String {
    let mut d = value.round_dp_with_strategy(places, RoundingStrategy::MidpointNearestEven);
    d.rescale(places);
    d.to_string()
}

/// Money as the API writes it: a string with two fraction digits.
fn two_places<S: Serializer>(value: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&fixed(*value, 2))
}

fn four_places<S: Serializer>(value: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&fixed(*value, 4))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn window(from: &str, to: &str) -> Window {
        Window {
            from: at(from),
            to: at(to),
        }
    }

    fn group(status: OrderStatus, currency: &str, orders: i64, placed: (i64, &str)) -> Group {
        Group {
            status,
            currency: currency.into(),
            orders,
            placed: placed.0,
            placed_total: placed.1.parse().unwrap(),
            refunded_total: Decimal::ZERO,
        }
    }

    #[test]
    fn a_window_reads_whole_days_from_the_counts_and_the_rest_from_orders() {
        let split = Split::of(window("2026-11-03T10:00:00Z", "2026-11-06T08:30:00Z"));
        assert_eq!(split.days, (day("2026-11-04"), day("2026-11-06")));
        assert_eq!(
            split.head,
            (at("2026-11-03T10:00:00Z"), at("2026-11-04T00:00:00Z"))
        );
        assert_eq!(
            split.tail,
            (at("2026-11-06T00:00:00Z"), at("2026-11-06T08:30:00Z"))
        );
    }

    #[test]
    fn a_window_on_midnights_is_whole_days_only() {
        let split = Split::of(window("2026-11-03T00:00:00Z", "2026-11-05T00:00:00Z"));
        assert_eq!(split.days, (day("2026-11-03"), day("2026-11-05")));
        assert_eq!(split.head.0, split.head.1);
        assert_eq!(split.tail.0, split.tail.1);
    }

    #[test]
    fn a_window_without_a_whole_day_is_read_from_orders() {
        for (from, to) in [
            ("2026-11-03T10:00:00Z", "2026-11-03T11:00:00Z"),
            ("2026-11-03T10:00:00Z", "2026-11-04T11:00:00Z"),
            ("2026-11-03T00:00:00Z", "2026-11-03T23:59:59Z"),
        ] {
            let split = Split::of(window(from, to));
            assert_eq!(split.days.0, split.days.1, "{from} {to}");
            assert_eq!(split.head, (at(from), at(to)));
            assert_eq!(split.tail.0, split.tail.1);
        }
    }

    #[test]
    fn nothing_placed_gives_zero_figures() {
        let w = window("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z");
        let a = summarize(w, &[group(OrderStatus::Draft, "USD", 2, (0, "0"))]);
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["order_count"], 2);
        assert_eq!(json["by_status"]["draft"], 2);
        assert_eq!(json["by_status"]["failed"], 0);
        assert_eq!(json["currencies"], json!([]));
        assert_eq!(json["cancellation_rate"], "0.0000");
        assert_eq!(json["from"], "2026-11-01T00:00:00Z");
    }

    #[test]
    fn every_status_is_named_in_life_order() {
        let a = summarize(window("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"), &[]);
        let text = serde_json::to_string(&a.by_status).unwrap();
        assert_eq!(
            text,
            r#"{"draft":0,"confirmed":0,"processing":0,"shipped":0,"delivered":0,"cancelled":0,"refunded":0,"failed":0}"#
        );
    }

    #[test]
    fn money_stays_per_currency_and_the_average_rounds_half_even() {
        let w = window("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z");
        let mut refunded = group(OrderStatus::Cancelled, "USD", 1, (1, "103.10"));
        refunded.refunded_total = "103.10".parse().unwrap();
        let groups = [
            group(OrderStatus::Confirmed, "USD", 3, (3, "216.20")),
            refunded,
            group(OrderStatus::Draft, "USD", 1, (0, "0")),
            group(OrderStatus::Confirmed, "EUR", 2, (2, "113.09")),
            group(OrderStatus::Failed, "GBP", 1, (0, "0")),
        ];
        let json = serde_json::to_value(summarize(w, &groups)).unwrap();
        assert_eq!(json["order_count"], 8);
        assert_eq!(
            json["currencies"],
            json!([
                // 113.09 / 2 = 56.545: half-even gives 56.54 (half-up would say 56.55).
                {"currency": "EUR", "order_count": 2, "total_value": "113.09",
                 "average_value": "56.54", "refunded_total": "0.00"},
                // 319.30 / 4 = 79.825: 79.82.
                {"currency": "USD", "order_count": 4, "total_value": "319.30",
                 "average_value": "79.82", "refunded_total": "103.10"},
            ])
        );
        // 1 cancelled of 6 placed: 0.16666...
        assert_eq!(json["cancellation_rate"], "0.1667");
    }

    #[test]
    fn the_rate_rounds_half_even_to_four_places() {
        // 1 / 32 = 0.03125 and 3 / 32 = 0.09375.
        assert_eq!(fixed(ratio(Decimal::ONE, 32, 4), 4), "0.0312");
        assert_eq!(fixed(ratio(Decimal::from(3), 32, 4), 4), "0.0938");
        assert_eq!(fixed(ratio(Decimal::ONE, 1, 4), 4), "1.0000");
        assert_eq!(fixed(ratio(Decimal::ONE, 0, 4), 4), "0.0000");
    }
}
