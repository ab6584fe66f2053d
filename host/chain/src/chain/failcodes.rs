//! GOST's node `http.failCodes`: upstream HTTP statuses that count as a
//! failure of the node, so the selector's fail filter skips it for
//! `failTimeout` (a backend answering 429 or 503 is up but should not get
//! more requests).

use std::fmt;

/// A parsed `failCodes` list: exact statuses (`429`) and hundred-level
/// wildcards (`5xx`, kept as its digit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailCodes(Vec<u16>);

/// A token of a `failCodes` list that is neither a status nor `Nxx`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("http.failCodes: {0:?} is not a status code (100-999) or a class such as 5xx")]
pub struct FailCodesError(pub String);

impl FailCodes {
    /// Parses GOST's comma-separated form, e.g. `429,5xx`. GOST logs and
    /// skips a bad token; here it is a configuration error, so a typo does
    /// not leave a node that never fails over.
    pub fn parse(s: &str) -> Result<FailCodes, FailCodesError> {
        let mut codes = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || FailCodesError(gost_core::escape::esc(part).to_string());
            let code = match part.strip_suffix("xx").or_else(|| part.strip_suffix("XX")) {
                Some(d) if d.len() == 1 => match d.parse::<u16>() {
                    Ok(d @ 1..=9) => d,
                    _ => return Err(bad()),
                },
                Some(_) => return Err(bad()),
                None => match part.parse::<u16>() {
                    Ok(c @ 100..=999) => c,
                    _ => return Err(bad()),
                },
            };
            codes.push(code);
        }
        Ok(FailCodes(codes))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, status: u16) -> bool {
        self.0
            .iter()
            .any(|&c| c == status || (c < 10 && status / 100 == c))
    }
}

impl fmt::Display for FailCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            if *c < 10 {
                write!(f, "{sep}{c}xx")?;
            } else {
                write!(f, "{sep}{c}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_classes() {
        let c = FailCodes::parse(" 429, 5xx ,").unwrap();
        assert!(c.matches(429) && c.matches(500) && c.matches(599));
        assert!(!c.matches(428) && !c.matches(200) && !c.matches(404));
        assert_eq!(c.to_string(), "429,5xx");
        assert!(FailCodes::parse("").unwrap().is_empty());
        for bad in ["42", "1000", "0xx", "5x", "abc", "55xx", "-1"] {
            assert!(FailCodes::parse(bad).is_err(), "{bad}");
        }
    }
}
