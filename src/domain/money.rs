//! Money as an exact decimal that travels as a string with two fraction digits.

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// A non-negative amount of money with at most two fraction digits, at most
/// [`Money::MAX`].
///
/// On the wire it is always a JSON string (`"19.90"`); a JSON number is refused so
/// that no amount ever passes through a float.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(Decimal);

/// Why a string is not a valid amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("must be a decimal string such as \"19.90\"")]
    NotDecimal,
    #[error("must not be negative")]
    Negative,
    #[error("must have at most 2 fraction digits")]
    TooPrecise,
    #[error("is too large")]
    Overflow,
}

impl Money {
    /// Zero.
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// The largest amount (`99999999999.99`): every money field, line total and order
    /// total stays within it, so the read model's `NUMERIC(19,4)` always holds it.
    pub const MAX: Money = Money(Decimal::from_parts(1_316_134_911, 2328, 0, false, 2));

    /// Builds an amount from a decimal, refusing negatives and sub-cent precision.
    pub fn new(value: Decimal) -> Result<Self, MoneyError> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(MoneyError::Negative);
        }
        if value.scale() > 2 {
            return Err(MoneyError::TooPrecise);
        }
        Money::bounded(value).ok_or(MoneyError::Overflow)
    }

    /// The amount as a decimal.
    pub fn amount(self) -> Decimal {
        self.0
    }

    fn bounded(value: Decimal) -> Option<Money> {
        (value <= Money::MAX.0).then_some(Money(value))
    }

    /// True for `0.00`.
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// Sum of two amounts; `None` above [`Money::MAX`].
    pub fn checked_add(self, other: Money) -> Option<Money> {
        Money::bounded(self.0.checked_add(other.0)?)
    }

    /// Difference of two amounts; `None` when it would go below zero.
    pub fn checked_sub(self, other: Money) -> Option<Money> {
        let d = self.0.checked_sub(other.0)?;
        (!d.is_sign_negative() || d.is_zero()).then_some(Money(d))
    }

    /// The amount times a quantity; `None` above [`Money::MAX`].
    pub fn checked_mul(self, quantity: i64) -> Option<Money> {
        Money::bounded(self.0.checked_mul(Decimal::from(quantity))?)
    }

    /// `self * numerator / denominator`, rounded half-even to cents (zero for no
    /// denominator). With
    /// `0 <= numerator <= denominator` it never exceeds `self`.
    pub fn prorate(self, numerator: i64, denominator: i64) -> Money {
        // No units (an item a change took to none): nothing to share.
        if denominator == 0 {
            return Money::ZERO;
        }
        let value = self.0 * Decimal::from(numerator) / Decimal::from(denominator);
        Money(value.round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven))
    }

    /// Sum of many amounts; `None` on overflow.
    pub fn sum<I: IntoIterator<Item = Money>>(items: I) -> Option<Money> {
        items
            .into_iter()
            .try_fold(Money::ZERO, |acc, m| acc.checked_add(m))
    }
}

impl FromStr for Money {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let ok_chars = !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
            && !s.starts_with('.')
            && !s.ends_with('.');
        if !ok_chars {
            return Err(MoneyError::NotDecimal);
        }
        let value = Decimal::from_str(s).map_err(|_| MoneyError::NotDecimal)?;
        Money::new(value)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = self.0;
        d.rescale(2);
        write!(f, "{d}")
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Money;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a decimal string with at most 2 fraction digits, such as \"19.90\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Money, E> {
                Money::from_str(v).map_err(|e| E::custom(format!("amount {e}")))
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// What an answer's amount looks like: always two fraction digits.
pub const ANSWER_PATTERN: &str = r"^[0-9]{1,11}\.[0-9]{2}$";
/// What a request's amount may look like: none, one or two fraction digits.
pub const REQUEST_PATTERN: &str = r"^[0-9]{1,11}(\.[0-9]{1,2})?$";

/// The schema of an amount in an answer (`"19.90"`).
impl PartialSchema for Money {
    fn schema() -> RefOr<Schema> {
        money_schema(ANSWER_PATTERN, "19.90", "two fraction digits")
    }
}

impl ToSchema for Money {
    fn name() -> Cow<'static, str> {
        "Money".into()
    }
}

/// The schema of an amount in a request, which is more lenient than an answer's:
/// `"19.9"` and `"5"` are read as `19.90` and `5.00`. Only the document uses it.
pub struct MoneyInput;

impl PartialSchema for MoneyInput {
    fn schema() -> RefOr<Schema> {
        money_schema(REQUEST_PATTERN, "19.9", "at most two fraction digits")
    }
}

impl ToSchema for MoneyInput {
    fn name() -> Cow<'static, str> {
        "MoneyInput".into()
    }
}

fn money_schema(pattern: &str, example: &str, digits: &str) -> RefOr<Schema> {
    let description = format!(
        "A non-negative decimal amount as a JSON string (never a number), with {digits}, at most {}.",
        Money::MAX
    );
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .description(Some(description))
        .examples([example])
        .into()
}

impl From<Money> for Decimal {
    fn from(m: Money) -> Decimal {
        m.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_two_decimals() {
        assert_eq!("19.9".parse::<Money>().unwrap().to_string(), "19.90");
        assert_eq!("5".parse::<Money>().unwrap().to_string(), "5.00");
    }

    #[test]
    fn refuses_negative_precise_and_garbage() {
        assert_eq!("-1.00".parse::<Money>(), Err(MoneyError::Negative));
        assert_eq!("1.005".parse::<Money>(), Err(MoneyError::TooPrecise));
        assert_eq!("1e3".parse::<Money>(), Err(MoneyError::NotDecimal));
        assert_eq!("".parse::<Money>(), Err(MoneyError::NotDecimal));
    }

    #[test]
    fn json_number_is_refused() {
        assert!(serde_json::from_str::<Money>("19.9").is_err());
        assert_eq!(
            serde_json::from_str::<Money>("\"19.90\"").unwrap(),
            "19.90".parse().unwrap()
        );
    }

    #[test]
    fn max_is_the_bound_of_every_amount() {
        assert_eq!(Money::MAX.to_string(), "99999999999.99");
        assert_eq!("99999999999.99".parse::<Money>(), Ok(Money::MAX));
        assert_eq!(
            "100000000000.00".parse::<Money>(),
            Err(MoneyError::Overflow)
        );
        let cent: Money = "0.01".parse().unwrap();
        assert_eq!(Money::MAX.checked_add(cent), None);
        assert_eq!(
            "9999999999.99"
                .parse::<Money>()
                .unwrap()
                .checked_mul(100_000),
            None
        );
    }

    /// Whether `schema` accepts `value`.
    fn accepts(schema: RefOr<Schema>, value: serde_json::Value) -> bool {
        let schema = serde_json::to_value(schema).unwrap();
        jsonschema::validator_for(&schema).unwrap().is_valid(&value)
    }

    #[test]
    fn answer_schema_is_two_fraction_digits() {
        for good in ["0.00", "103.10", "99999999999.99"] {
            assert!(accepts(Money::schema(), good.into()), "{good}");
        }
        for bad in [
            "1.5",
            "5",
            "-1.00",
            "1.005",
            "100000000000.00",
            "1e3",
            " 1.00",
        ] {
            assert!(!accepts(Money::schema(), bad.into()), "{bad}");
        }
        assert!(!accepts(Money::schema(), serde_json::json!(1.5)));
        for money in [
            Money::ZERO,
            Money::MAX,
            "19.9".parse().unwrap(),
            "5".parse().unwrap(),
        ] {
            assert!(
                accepts(Money::schema(), serde_json::json!(money)),
                "{money}"
            );
        }
    }

    #[test]
    fn request_schema_allows_up_to_two_fraction_digits() {
        for good in ["0.00", "103.10", "1.5", "5", "99999999999.99"] {
            assert!(accepts(MoneyInput::schema(), good.into()), "{good}");
            assert!(good.parse::<Money>().is_ok(), "{good}");
        }
        for bad in ["-1.00", "1.005", "1.", ".5", "1e3", "100000000000"] {
            assert!(!accepts(MoneyInput::schema(), bad.into()), "{bad}");
            assert!(bad.parse::<Money>().is_err(), "{bad}");
        }
        assert!(!accepts(MoneyInput::schema(), serde_json::json!(1.5)));
    }

    #[test]
    fn prorate_rounds_half_even() {
        let m: Money = "10.00".parse().unwrap();
        assert_eq!(m.prorate(1, 3).to_string(), "3.33");
        let m: Money = "0.05".parse().unwrap();
        assert_eq!(m.prorate(1, 2).to_string(), "0.02");
    }
}
