//! Exact money. Every amount apf adds, compares or shows is a [`Usd`] backed by a decimal, so a
//! budget of $0.25 split over a thousand requests still sums to exactly what OpenRouter billed.
//!
//! OpenRouter sends prices as per-token decimal strings (with `"-1"` meaning "variable") and
//! spend as JSON numbers; [`Price`] and the `serde` helpers here turn both into decimals at the
//! edge, so no float ever takes part in arithmetic.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Mul, Sub};
use std::str::FromStr;

use rust_decimal::Decimal;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An amount of US dollars, exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(pub Decimal);

impl Usd {
    pub const ZERO: Usd = Usd(Decimal::ZERO);

    pub fn new(d: Decimal) -> Usd {
        Usd(d)
    }

    /// Dollars from a JSON number. The float is read back through its shortest decimal form, so
    /// `0.1` becomes exactly `0.1`, which is what the server wrote.
    pub fn from_f64(v: f64) -> Option<Usd> {
        if !v.is_finite() {
            return None;
        }
        Decimal::from_str(&v.to_string()).ok().or_else(|| Decimal::from_f64(v)).map(Usd)
    }

    /// The value to put in a JSON request body, where OpenRouter expects a number.
    pub fn to_f64(self) -> f64 {
        self.0.to_f64().unwrap_or(0.0)
    }

    pub fn is_negative(self) -> bool {
        self.0.is_sign_negative() && !self.0.is_zero()
    }

    pub fn max(self, other: Usd) -> Usd {
        if self >= other { self } else { other }
    }

    pub fn min(self, other: Usd) -> Usd {
        if self <= other { self } else { other }
    }

    /// How many whole tokens this amount buys at `price` per token; `None` when the price is
    /// zero (any number), and 0 when the amount is not positive.
    pub fn tokens_at(self, price: Usd) -> Option<u64> {
        if price.0.is_zero() {
            return None;
        }
        if self.0 <= Decimal::ZERO {
            return Some(0);
        }
        let n = self.0.checked_div(price.0).map(|n| n.floor());
        Some(n.and_then(|n| u64::try_from(n).ok()).unwrap_or(u64::MAX))
    }

    /// `self / whole` as a fraction, or `None` when `whole` is zero.
    pub fn fraction_of(self, whole: Usd) -> Option<Decimal> {
        if whole.0.is_zero() { None } else { self.0.checked_div(whole.0) }
    }
}

impl fmt::Display for Usd {
    /// Dollars with cents, and with as many more digits as it takes for a small nonzero amount
    /// to stay nonzero: `$0.25`, `$5.17`, `$0.0004`, `$0.000003`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.is_negative() { "-" } else { "" };
        let abs = self.0.abs();
        // Cents, or for amounts under a dollar one digit past the first significant one.
        let mut first = 1;
        while first < 12
            && !abs.is_zero()
            && abs < Decimal::ONE
            && abs.round_dp_with_strategy(first, rust_decimal::RoundingStrategy::ToZero).is_zero()
        {
            first += 1;
        }
        let scale = if abs < Decimal::ONE && !abs.is_zero() { (first + 1).max(2) } else { 2 };
        let mut text = format!("{:.*}", scale as usize, abs.round_dp(scale));
        let min_len = text.find('.').map_or(text.len(), |p| p + 3);
        while text.len() > min_len && text.ends_with('0') {
            text.pop();
        }
        write!(f, "{sign}${text}")
    }
}

impl FromStr for Usd {
    type Err = rust_decimal::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Decimal::from_str(s.trim().trim_start_matches('$')).map(Usd)
    }
}

impl Add for Usd {
    type Output = Usd;
    fn add(self, rhs: Usd) -> Usd {
        Usd(self.0 + rhs.0)
    }
}

impl AddAssign for Usd {
    fn add_assign(&mut self, rhs: Usd) {
        self.0 += rhs.0;
    }
}

impl Sub for Usd {
    type Output = Usd;
    fn sub(self, rhs: Usd) -> Usd {
        Usd(self.0 - rhs.0)
    }
}

impl Mul<Decimal> for Usd {
    type Output = Usd;
    fn mul(self, rhs: Decimal) -> Usd {
        Usd(self.0 * rhs)
    }
}

impl Sum for Usd {
    fn sum<I: Iterator<Item = Usd>>(iter: I) -> Usd {
        iter.fold(Usd::ZERO, Add::add)
    }
}

/// Serialised as a decimal string in apf's own files (state, plans, results), so nothing is lost.
impl Serialize for Usd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.normalize().to_string())
    }
}

/// Read from a decimal string or a JSON/TOML number.
impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            I(i64),
            F(f64),
        }
        match Raw::deserialize(d)? {
            Raw::S(s) => Usd::from_str(&s).map_err(serde::de::Error::custom),
            Raw::I(i) => Ok(Usd(Decimal::from(i))),
            Raw::F(f) => {
                Usd::from_f64(f).ok_or_else(|| serde::de::Error::custom("not a finite number"))
            }
        }
    }
}

/// `serde` helpers for OpenRouter's wire format, where money is a JSON number.
pub mod wire {
    use super::Usd;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Usd, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(v.to_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Usd, D::Error> {
        let v = f64::deserialize(d)?;
        Usd::from_f64(v).ok_or_else(|| serde::de::Error::custom("not a finite number"))
    }

    pub mod option {
        use super::Usd;
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(v: &Option<Usd>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => s.serialize_f64(v.to_f64()),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Usd>, D::Error> {
            match Option::<f64>::deserialize(d)? {
                Some(v) => Usd::from_f64(v)
                    .map(Some)
                    .ok_or_else(|| serde::de::Error::custom("not a finite number")),
                None => Ok(None),
            }
        }
    }
}

/// A per-token price as OpenRouter publishes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "usd_per_token", rename_all = "snake_case")]
pub enum Price {
    /// A fixed price in dollars per token (zero for free models).
    PerToken(Usd),
    /// The sentinel `"-1"`: the price depends on where a router sends the request.
    Variable,
}

/// Why a published price string could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    #[error("{0:?} is not a decimal number")]
    NotANumber(String),
    #[error("{0:?} is negative, and only \"-1\" has a meaning (variable price)")]
    Negative(String),
}

impl Price {
    /// Parse OpenRouter's per-token price string: `"0.000003"`, `"0"`, or `"-1"`.
    pub fn parse(raw: &str) -> Result<Price, PriceError> {
        let d = Decimal::from_str(raw.trim())
            .or_else(|_| Decimal::from_scientific(raw.trim()))
            .map_err(|_| PriceError::NotANumber(raw.to_string()))?;
        if d == Decimal::NEGATIVE_ONE {
            Ok(Price::Variable)
        } else if d.is_sign_negative() && !d.is_zero() {
            Err(PriceError::Negative(raw.to_string()))
        } else {
            Ok(Price::PerToken(Usd(d)))
        }
    }

    pub fn per_token(self) -> Option<Usd> {
        match self {
            Price::PerToken(p) => Some(p),
            Price::Variable => None,
        }
    }

    /// The cost of `tokens` tokens, or `None` for a variable price.
    pub fn cost(self, tokens: u64) -> Option<Usd> {
        self.per_token().map(|p| p * Decimal::from(tokens))
    }

    pub fn is_free(self) -> bool {
        matches!(self, Price::PerToken(p) if p.0.is_zero())
    }
}

impl fmt::Display for Price {
    /// Shown per million tokens, the way people compare models: `$3.00 / 1M`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Price::PerToken(p) if p.0.is_zero() => f.write_str("free"),
            Price::PerToken(p) => write!(f, "{} / 1M", *p * Decimal::from(1_000_000)),
            Price::Variable => f.write_str("variable price"),
        }
    }
}

impl schemars::JsonSchema for Usd {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Usd".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "An amount in US dollars, such as 0.25 or 5 (integers are read as dollars).",
            "type": "number"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(s: &str) -> Usd {
        s.parse().unwrap()
    }

    #[test]
    fn display_keeps_small_amounts_nonzero() {
        assert_eq!(usd("0.25").to_string(), "$0.25");
        assert_eq!(usd("5.17").to_string(), "$5.17");
        assert_eq!(usd("0").to_string(), "$0.00");
        assert_eq!(usd("0.0004").to_string(), "$0.0004");
        assert_eq!(usd("0.00042").to_string(), "$0.00042");
        assert_eq!(usd("0.000003").to_string(), "$0.000003");
        assert_eq!(usd("0.086").to_string(), "$0.086");
        assert_eq!(usd("-0.17").to_string(), "-$0.17");
        assert_eq!(usd("12.5").to_string(), "$12.50");
        assert_eq!(usd("0.0066").to_string(), "$0.0066");
        assert_eq!(usd("0.00034").to_string(), "$0.00034");
        assert_eq!(usd("0.08").to_string(), "$0.08");
        assert_eq!(usd("0.0999").to_string(), "$0.10");
        assert_eq!(usd("0.00723").to_string(), "$0.0072");
    }

    #[test]
    fn floats_from_the_wire_become_their_shortest_decimal() {
        assert_eq!(Usd::from_f64(0.1).unwrap(), usd("0.1"));
        assert_eq!(Usd::from_f64(29.9999982).unwrap(), usd("29.9999982"));
        let sum: Usd = (0..1000).map(|_| Usd::from_f64(0.00025).unwrap()).sum();
        assert_eq!(sum, usd("0.25"));
    }

    #[test]
    fn prices_are_per_token_with_a_variable_sentinel() {
        assert_eq!(Price::parse("0.000003").unwrap().to_string(), "$3.00 / 1M");
        assert_eq!(Price::parse("0.000015").unwrap().to_string(), "$15.00 / 1M");
        assert_eq!(Price::parse("-1").unwrap(), Price::Variable);
        assert!(Price::parse("0").unwrap().is_free());
        assert_eq!(Price::parse("abc"), Err(PriceError::NotANumber("abc".into())));
        assert!(matches!(Price::parse("-0.5"), Err(PriceError::Negative(_))));
        assert_eq!(Price::Variable.cost(1000), None);
    }
}
