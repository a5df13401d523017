//! Giving back units of an item (cancel, return, refund) by the cumulative rule of
//! the money rules: the share of `q` more units, with `g` already given back of
//! `n`, is `q * unit_price - (D(g+q) - D(g)) + (T(g+q) - T(g))`, where `D(m)` and
//! `T(m)` are `m/n` of the discount and the tax rounded half-even to cents. The
//! shares of an item therefore always sum to its line total exactly, in any order.

use super::{DomainError, Money};
use serde::{Deserialize, Serialize};

/// The places `from..from + quantity` of units of item `item_id` in the order the
/// cumulative rule gives them back: the units at places `g..g+q` return
/// `give_back(g, q)`. A give-back takes places once, so however the places of an
/// item are shared out, their shares sum to its total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub item_id: i32,
    pub from: i64,
    pub quantity: i64,
}

/// Where the cumulative rule of a rebased item starts: `given` units were given
/// back before, and the places `0..quantity` after them share `discount` and `tax`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Basis {
    pub item_id: i32,
    pub given: i64,
    pub quantity: i64,
    pub discount: Money,
    pub tax: Money,
}

/// The money terms of one order line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    pub quantity: i64,
    pub unit_price: Money,
    pub discount: Money,
    pub tax: Money,
}

impl Line {
    /// The share given back by `q` more units when `given` were already given back.
    pub fn give_back(&self, given: i64, q: i64) -> Result<Money, DomainError> {
        let n = self.quantity;
        if q < 0 || given < 0 || given + q > n {
            return Err(DomainError::QuantityExceeded {
                item_id: 0,
                left: n - given,
                asked: q,
            });
        }
        let d = |m: i64| self.discount.prorate(m, n).amount();
        let t = |m: i64| self.tax.prorate(m, n).amount();
        let gross = self.unit_price.amount() * rust_decimal::Decimal::from(q);
        let share = gross - (d(given + q) - d(given)) + (t(given + q) - t(given));
        Money::new(share).map_err(|_| DomainError::AmountOverflow)
    }

    /// The share of the units at the places `runs`.
    /// The discount and tax that the units at `runs` took, by the same rule.
    pub fn parts_runs(&self, runs: &[Run]) -> Result<(Money, Money), DomainError> {
        let n = self.quantity;
        let (mut discount, mut tax) = (rust_decimal::Decimal::ZERO, rust_decimal::Decimal::ZERO);
        for r in runs {
            let d = |m: i64| self.discount.prorate(m, n).amount();
            let t = |m: i64| self.tax.prorate(m, n).amount();
            discount += d(r.from + r.quantity) - d(r.from);
            tax += t(r.from + r.quantity) - t(r.from);
        }
        let money = |m| Money::new(m).map_err(|_| DomainError::AmountOverflow);
        Ok((money(discount)?, money(tax)?))
    }

    pub fn give_back_runs(&self, runs: &[Run]) -> Result<Money, DomainError> {
        let shares = runs
            .iter()
            .map(|r| self.give_back(r.from, r.quantity))
            .collect::<Result<Vec<_>, _>>()?;
        Money::sum(shares).ok_or(DomainError::AmountOverflow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn money(cents: i64) -> Money {
        Money::new(rust_decimal::Decimal::new(cents, 2)).unwrap()
    }

    #[test]
    fn the_example_of_the_money_rules() {
        let line = Line {
            quantity: 3,
            unit_price: money(1000),
            discount: money(100),
            tax: money(83),
        };
        let shares: Vec<String> = (0..3)
            .map(|g| line.give_back(g, 1).unwrap().to_string())
            .collect();
        assert_eq!(shares, ["9.95", "9.93", "9.95"]);
    }

    #[test]
    fn more_units_than_are_left_are_refused() {
        let line = Line {
            quantity: 2,
            unit_price: money(100),
            discount: money(0),
            tax: money(0),
        };
        assert!(line.give_back(1, 2).is_err());
    }

    /// A line whose discount is at most its gross, and a split of its units into
    /// give-backs.
    fn line_and_split() -> impl Strategy<Value = (Line, Vec<i64>)> {
        (1i64..=50, 0i64..=100_000, 0i64..=100_000, 0i64..=1000).prop_flat_map(
            |(n, unit, discount_pct, tax)| {
                let discount = unit * n * discount_pct.min(10_000) / 10_000;
                let line = Line {
                    quantity: n,
                    unit_price: money(unit),
                    discount: money(discount),
                    tax: money(tax * n),
                };
                (
                    Just(line),
                    proptest::collection::vec(1i64..=n, 1..=n as usize),
                )
            },
        )
    }

    proptest! {
        #[test]
        fn shares_never_go_negative_never_exceed_and_sum_to_the_line_total(
            (line, split) in line_and_split()
        ) {
            let total = line.unit_price.checked_mul(line.quantity).unwrap()
                .checked_sub(line.discount).unwrap()
                .checked_add(line.tax).unwrap();
            let mut given = 0;
            let mut sum = Money::ZERO;
            for q in split {
                let q = q.min(line.quantity - given);
                if q == 0 { break; }
                let share = line.give_back(given, q).unwrap();
                sum = sum.checked_add(share).unwrap();
                given += q;
                prop_assert!(sum <= total, "{sum} > {total}");
            }
            if given < line.quantity {
                sum = sum.checked_add(line.give_back(given, line.quantity - given).unwrap()).unwrap();
            }
            prop_assert_eq!(sum, total);
        }
    }
}
