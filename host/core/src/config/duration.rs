//! Go's `time.Duration` as GOST's config files spell it.
//!
//! GOST reads durations as Go duration strings (`"5s"`, `"1m30s"`) or as
//! integers of nanoseconds (what a Go `time.Duration` number is), and writes
//! them with Go's `Duration.String()`. Both directions are reproduced here so
//! that `-O yaml` prints what GOST prints and a GOST file loads unchanged.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration with Go's text form. Negative durations have no
/// meaning in GOST's config (timeouts, periods), so they are refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

/// A duration string Go's `time.ParseDuration` would refuse, or a negative one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration \"{input}\": {reason}")]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

impl Duration {
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);

    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    pub fn from_secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }

    /// Parses Go's duration syntax: a sequence of decimal numbers with
    /// optional fraction and a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`),
    /// e.g. `1h30m`, `1.5s`; a bare `0` is allowed.
    pub fn parse(input: &str) -> Result<Duration, DurationError> {
        let err = |reason| DurationError {
            input: input.to_string(),
            reason,
        };
        let mut s = input;
        if let Some(rest) = s.strip_prefix('-') {
            // Go accepts "-0", which is zero; anything else is negative.
            if rest.chars().all(|c| c == '0') && !rest.is_empty() {
                return Ok(Duration::ZERO);
            }
            return Err(err("negative durations are not allowed"));
        }
        if let Some(rest) = s.strip_prefix('+') {
            s = rest;
        }
        if s == "0" {
            return Ok(Duration::ZERO);
        }
        if s.is_empty() {
            return Err(err("empty"));
        }
        let mut total: u128 = 0;
        while !s.is_empty() {
            let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
            let (int_part, rest) = s.split_at(int_len);
            let (frac_part, rest) = match rest.strip_prefix('.') {
                Some(r) => {
                    let n = r.bytes().take_while(u8::is_ascii_digit).count();
                    r.split_at(n)
                }
                None => ("", rest),
            };
            if int_part.is_empty() && frac_part.is_empty() {
                return Err(err("expected a number"));
            }
            let unit_len = rest
                .char_indices()
                .find(|(_, c)| c.is_ascii_digit() || *c == '.')
                .map(|(i, _)| i)
                .unwrap_or(rest.len());
            let (unit, rest) = rest.split_at(unit_len);
            let unit_ns: u128 = match unit {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                "" => return Err(err("missing unit (ns, us, ms, s, m, h)")),
                _ => return Err(err("unknown unit (ns, us, ms, s, m, h)")),
            };
            let int: u128 = if int_part.is_empty() {
                0
            } else {
                int_part.parse().map_err(|_| err("number too large"))?
            };
            let mut value = int
                .checked_mul(unit_ns)
                .ok_or_else(|| err("number too large"))?;
            // The fraction is scaled digit by digit so `1.5h` is exact.
            let mut scale = unit_ns;
            for d in frac_part.bytes().take(30) {
                scale /= 10;
                if scale == 0 {
                    break;
                }
                value = value
                    .checked_add(u128::from(d - b'0') * scale)
                    .ok_or_else(|| err("number too large"))?;
            }
            total = total
                .checked_add(value)
                .ok_or_else(|| err("number too large"))?;
            s = rest;
        }
        // Go's Duration is an int64 of nanoseconds.
        if total > i64::MAX as u128 {
            return Err(err("number too large"));
        }
        let nanos = total as u64;
        Ok(Duration(std::time::Duration::from_nanos(nanos)))
    }
}

impl fmt::Display for Duration {
    /// Go's `time.Duration.String()`: `0s`, `500ms`, `1.5µs`, `1m30s`, `1h0m0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos();
        if ns == 0 {
            return f.write_str("0s");
        }
        if ns < 1_000_000_000 {
            let (unit, scale) = match ns {
                n if n < 1_000 => return write!(f, "{n}ns"),
                n if n < 1_000_000 => ("µs", 1_000),
                _ => ("ms", 1_000_000),
            };
            return write!(f, "{}{}", with_fraction(ns, scale), unit);
        }
        let secs_total = ns / 1_000_000_000;
        let secs = with_fraction(ns % 60_000_000_000, 1_000_000_000);
        let minutes_total = secs_total / 60;
        if minutes_total == 0 {
            return write!(f, "{secs}s");
        }
        let hours = minutes_total / 60;
        let minutes = minutes_total % 60;
        if hours == 0 {
            write!(f, "{minutes}m{secs}s")
        } else {
            write!(f, "{hours}h{minutes}m{secs}s")
        }
    }
}

/// `value / scale` with the remainder as a decimal fraction, trailing zeros
/// dropped, as Go's `fmtFrac` does.
fn with_fraction(value: u128, scale: u128) -> String {
    let int = value / scale;
    let frac = value % scale;
    if frac == 0 {
        return int.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{int}.{}", digits.trim_end_matches('0'))
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration(d)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"5s\" or \"1m30s\", or an integer of nanoseconds")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        Duration::parse(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration(std::time::Duration::from_nanos(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v)
            .map(|n| Duration(std::time::Duration::from_nanos(n)))
            .map_err(|_| {
                E::custom(format!(
                    "invalid duration {v}: negative durations are not allowed"
                ))
            })
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        // JSON decoders in Go hand numbers over as float64; an integral one
        // is still a count of nanoseconds.
        if v.fract() == 0.0 && v >= 0.0 && v <= i64::MAX as f64 {
            Ok(Duration(std::time::Duration::from_nanos(v as u64)))
        } else {
            Err(E::custom(format!(
                "invalid duration {v}: expected whole non-negative nanoseconds"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> std::time::Duration {
        Duration::parse(s).unwrap_or_else(|e| panic!("{e}")).0
    }

    #[test]
    fn mutated_durations_parse_or_fail() {
        let corpus: [&[u8]; 4] = [
            b"1h30m",
            b"1.5s",
            b"300\xc2\xb5s",
            b"99999999999999999999h.5m",
        ];
        for (seed, b) in crate::test_util::mutations(&corpus, 3000) {
            if let Ok(d) = Duration::parse(&String::from_utf8_lossy(&b)) {
                assert!(d.0.as_nanos() <= i64::MAX as u128, "seed {seed}");
            }
        }
    }

    #[test]
    fn a_fraction_cannot_wrap_a_huge_number() {
        // u128::MAX / 1h, plus .9h: the sum passes u128::MAX.
        let e = Duration::parse("94522879700260684295381835.9h").unwrap_err();
        assert_eq!(e.reason, "number too large");
    }

    #[test]
    fn parses_go_syntax() {
        use std::time::Duration as D;
        assert_eq!(d("5s"), D::from_secs(5));
        assert_eq!(d("1m30s"), D::from_secs(90));
        assert_eq!(d("300ms"), D::from_millis(300));
        assert_eq!(d("1h"), D::from_secs(3600));
        assert_eq!(d("1.5h"), D::from_secs(5400));
        assert_eq!(d(".5s"), D::from_millis(500));
        assert_eq!(d("1.s"), D::from_secs(1));
        assert_eq!(d("0"), D::ZERO);
        assert_eq!(d("+2s"), D::from_secs(2));
        assert_eq!(d("2us"), D::from_micros(2));
        assert_eq!(d("2µs"), D::from_micros(2));
        assert_eq!(d("1h2m3s4ms5us6ns"), D::new(3723, 4_005_006));
    }

    #[test]
    fn refuses_bad_input() {
        for bad in [
            "",
            "5",
            "abc",
            "5x",
            "-5s",
            "s",
            ".s",
            "1.5.5s",
            "9999999999h",
        ] {
            let e = Duration::parse(bad).unwrap_err();
            assert!(e.to_string().contains(&format!("\"{bad}\"")), "{e}");
        }
    }

    #[test]
    fn formats_like_go() {
        use std::time::Duration as D;
        let f = |x: D| Duration(x).to_string();
        assert_eq!(f(D::ZERO), "0s");
        assert_eq!(f(D::from_secs(5)), "5s");
        assert_eq!(f(D::from_secs(90)), "1m30s");
        assert_eq!(f(D::from_secs(3600)), "1h0m0s");
        assert_eq!(f(D::from_millis(500)), "500ms");
        assert_eq!(f(D::from_millis(1500)), "1.5s");
        assert_eq!(f(D::from_nanos(1500)), "1.5µs");
        assert_eq!(f(D::from_nanos(999)), "999ns");
        assert_eq!(f(D::from_micros(1250)), "1.25ms");
        assert_eq!(f(D::new(3723, 4_000_000)), "1h2m3.004s");
        assert_eq!(f(D::from_secs(30)), "30s");
    }

    #[test]
    fn serde_forms() {
        let v: Duration = serde_json::from_str("\"10s\"").unwrap();
        assert_eq!(v, Duration::from_secs(10));
        let v: Duration = serde_json::from_str("5000000000").unwrap();
        assert_eq!(v, Duration::from_secs(5));
        assert!(serde_json::from_str::<Duration>("-1").is_err());
        assert!(serde_json::from_str::<Duration>("true").is_err());
        assert_eq!(
            serde_json::to_string(&Duration::from_secs(90)).unwrap(),
            "\"1m30s\""
        );
        let v: Duration = serde_yaml::from_str("1m").unwrap();
        assert_eq!(v, Duration::from_secs(60));
    }
}
