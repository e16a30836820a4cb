//! Exact decimal sums of the `usage.cost` figures the server reports.
//!
//! Costs arrive as JSON numbers such as `0.0031` or `1.5e-7`; adding them as `f64` would drift,
//! so the agent keeps the literal text (see `serde_json`'s `raw_value`) and adds it as an integer
//! count of 10^-scale units. Anything it cannot represent exactly is refused, never rounded.

use std::fmt;

/// The largest scale kept: far below any price OpenRouter quotes, and within `i128`.
const MAX_SCALE: u32 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decimal {
    units: i128,
    scale: u32,
}

impl Decimal {
    pub const ZERO: Decimal = Decimal { units: 0, scale: 0 };

    /// Parse a JSON-style number: `-12.5`, `0.0031`, `3e-4`, `1E+2`.
    pub fn parse(text: &str) -> Option<Decimal> {
        let text = text.trim();
        let (negative, text) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let (mantissa, exponent) = match text.find(['e', 'E']) {
            Some(i) => (&text[..i], text[i + 1..].parse::<i32>().ok()?),
            None => (text, 0),
        };
        let (whole, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if whole.is_empty() && frac.is_empty() {
            return None;
        }
        if !whole.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }

        let mut units: i128 = 0;
        for digit in whole.bytes().chain(frac.bytes()) {
            units = units.checked_mul(10)?.checked_add(i128::from(digit - b'0'))?;
        }
        let mut scale = i64::try_from(frac.len()).ok()? - i64::from(exponent);
        while scale < 0 {
            units = units.checked_mul(10)?;
            scale += 1;
        }
        let mut value = Decimal { units, scale: u32::try_from(scale).ok()? }.normalised();
        if value.scale > MAX_SCALE {
            return None;
        }
        if negative {
            value.units = -value.units;
        }
        Some(value)
    }

    pub fn checked_add(self, other: Decimal) -> Option<Decimal> {
        let scale = self.scale.max(other.scale);
        let a = self.units.checked_mul(10i128.checked_pow(scale - self.scale)?)?;
        let b = other.units.checked_mul(10i128.checked_pow(scale - other.scale)?)?;
        Some(Decimal { units: a.checked_add(b)?, scale }.normalised())
    }

    fn normalised(mut self) -> Decimal {
        while self.scale > 0 && self.units % 10 == 0 {
            self.units /= 10;
            self.scale -= 1;
        }
        self
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.units < 0 { "-" } else { "" };
        let digits = self.units.unsigned_abs().to_string();
        let scale = self.scale as usize;
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (whole, frac) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{whole}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(text: &str) -> Decimal {
        Decimal::parse(text).unwrap_or_else(|| panic!("{text} should parse"))
    }

    #[test]
    fn parses_and_prints_canonically() {
        for (text, shown) in [
            ("0.0031", "0.0031"),
            ("0", "0"),
            ("0.000", "0"),
            ("12", "12"),
            ("1.50", "1.5"),
            ("-0.25", "-0.25"),
            ("3e-4", "0.0003"),
            ("1.5E-7", "0.00000015"),
            ("2.5e+2", "250"),
            (".5", "0.5"),
            ("7.", "7"),
        ] {
            assert_eq!(dec(text).to_string(), shown, "{text}");
        }
    }

    #[test]
    fn sums_exactly_where_floats_drift() {
        let mut total = Decimal::ZERO;
        for _ in 0..10 {
            total = total.checked_add(dec("0.1")).unwrap();
        }
        assert_eq!(total.to_string(), "1");

        let sum = dec("0.0031").checked_add(dec("0.000000123")).unwrap();
        assert_eq!(sum.to_string(), "0.003100123");
        assert_eq!(dec("0.5").checked_add(dec("-0.75")).unwrap().to_string(), "-0.25");
    }

    #[test]
    fn refuses_what_it_cannot_hold_exactly() {
        for bad in ["", "-", "abc", "1.2.3", "1e", "0x10", "1e-40", "1e400", "NaN", "1 2"] {
            assert_eq!(Decimal::parse(bad), None, "{bad}");
        }
    }
}
