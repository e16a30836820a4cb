//! Durations as people write them in a manifest: `"90s"`, `"5m"`, `"1h30m"`, `"1.5h"`, or plain
//! seconds (`90`, `"90"`).
//!
//! The grammar is apf's own and deliberately small, so the JSON Schema's pattern ([`PATTERN`])
//! accepts exactly the strings [`Span::parse`] accepts (HAZARDS H16): a number, optionally with a
//! fraction, then a unit, repeated; or a whole number of seconds.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration read from the manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

/// Units and their length in nanoseconds. Longer spellings come first only for readability;
/// the parser reads the whole run of letters and looks it up.
const UNITS: &[(&str, u128)] = &[
    ("ms", 1_000_000),
    ("msec", 1_000_000),
    ("s", 1_000_000_000),
    ("sec", 1_000_000_000),
    ("secs", 1_000_000_000),
    ("second", 1_000_000_000),
    ("seconds", 1_000_000_000),
    ("m", 60_000_000_000),
    ("min", 60_000_000_000),
    ("mins", 60_000_000_000),
    ("minute", 60_000_000_000),
    ("minutes", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("hr", 3_600_000_000_000),
    ("hrs", 3_600_000_000_000),
    ("hour", 3_600_000_000_000),
    ("hours", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
    ("day", 86_400_000_000_000),
    ("days", 86_400_000_000_000),
];

/// The schema's pattern for duration strings; it matches what [`Span::parse`] accepts.
pub const PATTERN: &str = r"^\s*([0-9]+\s*|([0-9]+(\.[0-9]+)?\s*(ms|msec|s|sec|secs|second|seconds|m|min|mins|minute|minutes|h|hr|hrs|hour|hours|d|day|days)\s*)+)$";

impl Span {
    pub fn parse(text: &str) -> Result<Span, String> {
        let trimmed = text.trim();
        if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
            return trimmed
                .parse::<u64>()
                .map(Span::secs)
                .map_err(|_| format!("{trimmed:?} is too many seconds"));
        }
        parse_units(trimmed).map(Span).map_err(|why| {
            format!("{trimmed:?} is not a duration ({why}); write e.g. \"90s\", \"5m\", \"1h30m\"")
        })
    }

    pub fn secs(secs: u64) -> Span {
        Span(Duration::from_secs(secs))
    }
}

/// `1h30m`, `1.5h`, `250ms`, `2 minutes`: one or more number-unit pairs.
fn parse_units(text: &str) -> Result<Duration, String> {
    if text.is_empty() {
        return Err("it is empty".into());
    }
    let mut rest = text;
    let mut nanos: u128 = 0;
    while !rest.is_empty() {
        let whole_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        if whole_len == 0 {
            return Err(format!("expected a number at {rest:?}"));
        }
        let (whole, after) = rest.split_at(whole_len);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(f) => {
                let len = f.bytes().take_while(u8::is_ascii_digit).count();
                if len == 0 {
                    return Err("a decimal point needs digits after it".into());
                }
                (&f[..len], &f[len..])
            }
            None => ("", after),
        };
        let after = after.trim_start();
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(unit_len);
        let Some((_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(if unit.is_empty() {
                format!("{whole}{} needs a unit such as s, m or h", dot(fraction))
            } else {
                format!("unknown unit {unit:?}")
            });
        };
        nanos = nanos
            .checked_add(amount(whole, fraction, *scale).ok_or("it is too long")?)
            .ok_or("it is too long")?;
        rest = after.trim_start();
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| "it is too long".to_string())?;
    let sub = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, sub))
}

fn dot(fraction: &str) -> String {
    if fraction.is_empty() { String::new() } else { format!(".{fraction}") }
}

/// `whole.fraction` units of `scale` nanoseconds, exactly (truncated below a nanosecond).
fn amount(whole: &str, fraction: &str, scale: u128) -> Option<u128> {
    let whole: u128 = whole.parse().ok()?;
    let mut total = whole.checked_mul(scale)?;
    if !fraction.is_empty() {
        let digits = fraction.get(..fraction.len().min(18))?;
        let numerator: u128 = digits.parse().ok()?;
        let denominator = 10u128.checked_pow(u32::try_from(digits.len()).ok()?)?;
        total = total.checked_add(numerator.checked_mul(scale)? / denominator)?;
    }
    Some(total)
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        if self.0.subsec_millis() != 0 || secs == 0 {
            return write!(f, "{}ms", self.0.as_millis());
        }
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        let mut out = String::new();
        if h > 0 {
            out.push_str(&format!("{h}h"));
        }
        if m > 0 {
            out.push_str(&format!("{m}m"));
        }
        if s > 0 {
            out.push_str(&format!("{s}s"));
        }
        f.write_str(&out)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Span;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"90s\", \"5m\" or a number of seconds")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Span, E> {
                Ok(Span::secs(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Span, E> {
                u64::try_from(v)
                    .map(Span::secs)
                    .map_err(|_| E::custom(format!("a duration cannot be negative ({v})")))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Span, E> {
                Duration::try_from_secs_f64(v)
                    .map(Span)
                    .map_err(|_| E::custom(format!("{v} is not a duration in seconds")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Span, E> {
                Span::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl JsonSchema for Span {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: a string such as \"90s\", \"5m\", \"1h30m\" or \"1.5h\" (units ms, s, m, h, d and their long names), or a number of seconds.",
            "anyOf": [
                {
                    "type": "string",
                    "pattern": PATTERN,
                    "description": "A number and a unit, repeated: \"90s\", \"5m\", \"1h30m\", \"250ms\"."
                },
                {
                    "type": "number",
                    "minimum": 0,
                    "description": "A number of seconds."
                }
            ],
            "examples": ["30s", "5m", "1h30m", 90]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_units_and_plain_seconds() {
        assert_eq!(Span::parse("90s").unwrap().0, Duration::from_secs(90));
        assert_eq!(Span::parse("5m").unwrap().0, Duration::from_secs(300));
        assert_eq!(Span::parse("1h30m").unwrap().0, Duration::from_secs(5400));
        assert_eq!(Span::parse("1.5h").unwrap().0, Duration::from_secs(5400));
        assert_eq!(Span::parse("2 minutes").unwrap().0, Duration::from_secs(120));
        assert_eq!(Span::parse("250ms").unwrap().0, Duration::from_millis(250));
        assert_eq!(Span::parse("45").unwrap().0, Duration::from_secs(45));
        assert_eq!(Span::secs(5400).to_string(), "1h30m");
        assert_eq!(Span(Duration::from_millis(250)).to_string(), "250ms");
    }

    #[test]
    fn nonsense_is_refused_with_a_reason() {
        for bad in ["soon", "", "5 parsecs", "1.h", "m5", "5m-", "1.5"] {
            let err = Span::parse(bad).unwrap_err();
            assert!(err.contains("not a duration"), "{bad:?}: {err}");
        }
        assert!(Span::parse("3 parsecs").unwrap_err().contains("unknown unit \"parsecs\""));
    }

    #[test]
    fn the_schema_pattern_accepts_exactly_what_the_parser_accepts() {
        let re = regex_lite(PATTERN);
        let cases = [
            "90s",
            "5m",
            "1h30m",
            "1.5h",
            " 2 minutes ",
            "250ms",
            "45",
            "1d",
            "soon",
            "",
            "5x",
            "1.h",
            "m5",
            "1.5",
            "5 parsecs",
            "10 10s",
            "1h 30m",
            "3days",
            "7 7",
        ];
        for case in cases {
            assert_eq!(re(case), Span::parse(case).is_ok(), "{case:?}");
        }
    }

    /// The schema's pattern, compiled by the validator the schema is checked with.
    fn regex_lite(pattern: &str) -> impl Fn(&str) -> bool {
        let schema = serde_json::json!({ "type": "string", "pattern": pattern });
        let validator = jsonschema::validator_for(&schema).unwrap();
        move |s: &str| validator.is_valid(&serde_json::json!(s))
    }
}
