//! GOST's free-form `metadata` map and its typed getters.
//!
//! Every GOST object carries a `metadata: {..}` map whose keys each
//! component interprets itself (go-gost/x `metadata` and `metadata/util`).
//! Keys are case-insensitive there, so `enableStats` and `enablestats` are
//! the same key; we keep the keys as written so that the config is printed
//! back the way the user wrote it, and compare case-insensitively on lookup.
//!
//! GOST's getters silently return a zero value when a value has the wrong
//! type (`ttl: abc` becomes "no ttl"). Ours return an error naming the key and
//! the value instead, so a typo is reported rather than ignored; the
//! conversions GOST does make (strings to numbers, integers to booleans,
//! integer seconds to durations) are kept.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A metadata value that exists but cannot be read as the requested type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("metadata \"{key}\": invalid value {value}: expected {expected}")]
pub struct MetadataError {
    /// The key as the caller asked for it.
    pub key: String,
    /// The offending value, rendered as JSON so strings show their quotes.
    pub value: String,
    /// What the getter accepts, in words.
    pub expected: &'static str,
}

/// GOST's metadata map: string keys (case-insensitive on lookup) to any
/// JSON/YAML value. Serialized as a plain map with sorted keys, as Go's
/// encoders sort map keys.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Metadata(BTreeMap<String, Value>);

impl Metadata {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Sets `key`, replacing any entry whose key differs only in case, so
    /// that a lookup never sees two candidates.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        let key = key.into();
        if let Some(existing) = self.find_key(&key).map(str::to_owned) {
            self.0.remove(&existing);
        }
        self.0.insert(key, value.into());
    }

    /// Removes `key` (case-insensitively) and returns its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let existing = self.find_key(key)?.to_owned();
        self.0.remove(&existing)
    }

    /// The raw value of `key`, case-insensitively; an exact match wins.
    pub fn get(&self, key: &str) -> Option<&Value> {
        let k = self.find_key(key)?;
        self.0.get(k)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.find_key(key).is_some()
    }

    /// Entries in key order, keys as written.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter()
    }

    fn find_key(&self, key: &str) -> Option<&str> {
        if let Some((k, _)) = self.0.get_key_value(key) {
            return Some(k);
        }
        let lower = key.to_lowercase();
        self.0
            .keys()
            .find(|k| k.to_lowercase() == lower)
            .map(String::as_str)
    }

    /// The value to convert: absent keys and YAML nulls (`key:` with nothing
    /// after it) both mean "not set", as they do in GOST.
    fn present(&self, key: &str) -> Option<&Value> {
        self.get(key).filter(|v| !v.is_null())
    }

    /// `true`/`false`, a string Go's `strconv.ParseBool` accepts, or an
    /// integer (non-zero is true).
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, MetadataError> {
        let Some(v) = self.present(key) else {
            return Ok(None);
        };
        let expected = "a boolean (true/false, 1/0)";
        match v {
            Value::Bool(b) => Ok(Some(*b)),
            Value::Number(_) => match number_as_i64(v) {
                Some(n) => Ok(Some(n != 0)),
                None => Err(invalid(key, v, expected)),
            },
            Value::String(s) if s.is_empty() => Ok(None),
            Value::String(s) => parse_go_bool(s)
                .map(Some)
                .ok_or_else(|| invalid(key, v, expected)),
            _ => Err(invalid(key, v, expected)),
        }
    }

    /// An integer, a string holding one, or a boolean (1/0).
    pub fn get_int(&self, key: &str) -> Result<Option<i64>, MetadataError> {
        let Some(v) = self.present(key) else {
            return Ok(None);
        };
        let expected = "an integer";
        match v {
            Value::Bool(b) => Ok(Some(i64::from(*b))),
            Value::Number(_) => number_as_i64(v)
                .map(Some)
                .ok_or_else(|| invalid(key, v, expected)),
            Value::String(s) if s.is_empty() => Ok(None),
            Value::String(s) => s
                .parse::<i64>()
                .map(Some)
                .map_err(|_| invalid(key, v, expected)),
            _ => Err(invalid(key, v, expected)),
        }
    }

    /// A number or a string holding one.
    pub fn get_float(&self, key: &str) -> Result<Option<f64>, MetadataError> {
        let Some(v) = self.present(key) else {
            return Ok(None);
        };
        let expected = "a number";
        match v {
            Value::Number(n) => n
                .as_f64()
                .map(Some)
                .ok_or_else(|| invalid(key, v, expected)),
            Value::String(s) if s.is_empty() => Ok(None),
            Value::String(s) => s
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Some)
                .ok_or_else(|| invalid(key, v, expected)),
            _ => Err(invalid(key, v, expected)),
        }
    }

    /// A string; numbers and booleans are formatted as GOST formats them.
    pub fn get_string(&self, key: &str) -> Result<Option<String>, MetadataError> {
        let Some(v) = self.present(key) else {
            return Ok(None);
        };
        match v {
            Value::String(s) => Ok(Some(s.clone())),
            Value::Bool(b) => Ok(Some(b.to_string())),
            Value::Number(n) => Ok(Some(n.to_string())),
            _ => Err(invalid(key, v, "a string")),
        }
    }

    /// GOST durations: an integer is seconds, a string is a Go duration
    /// (`5s`, `1m30s`) or, failing that, a number of seconds (`"30"`).
    /// Negative durations are refused.
    pub fn get_duration(&self, key: &str) -> Result<Option<std::time::Duration>, MetadataError> {
        let Some(v) = self.present(key) else {
            return Ok(None);
        };
        let expected = "a duration (e.g. 5s, 1m30s) or a number of seconds";
        let secs = |f: f64| {
            if f.is_finite() && f >= 0.0 {
                std::time::Duration::try_from_secs_f64(f).ok()
            } else {
                None
            }
        };
        match v {
            Value::Number(n) => match (n.as_u64(), n.as_f64()) {
                (Some(u), _) => Ok(Some(std::time::Duration::from_secs(u))),
                (None, Some(f)) => secs(f).map(Some).ok_or_else(|| invalid(key, v, expected)),
                _ => Err(invalid(key, v, expected)),
            },
            Value::String(s) if s.is_empty() => Ok(None),
            Value::String(s) => match crate::config::Duration::parse(s) {
                Ok(d) => Ok(Some(d.0)),
                Err(_) => s
                    .parse::<u64>()
                    .map(|n| Some(std::time::Duration::from_secs(n)))
                    .map_err(|_| invalid(key, v, expected)),
            },
            _ => Err(invalid(key, v, expected)),
        }
    }

    /// A list of strings. A lone string counts as a one-element list: GOST
    /// ignores it, which silently drops e.g. a `preUp` hook written without
    /// brackets, so we take what the user evidently meant.
    pub fn get_strings(&self, key: &str) -> Result<Option<Vec<String>>, MetadataError> {
        let Some(v) = self.present(key) else {
            return Ok(None);
        };
        let expected = "a list of strings";
        match v {
            Value::String(s) => Ok(Some(vec![s.clone()])),
            Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(invalid(key, v, expected)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            _ => Err(invalid(key, v, expected)),
        }
    }
}

fn invalid(key: &str, value: &Value, expected: &'static str) -> MetadataError {
    MetadataError {
        key: key.to_string(),
        value: value.to_string(),
        expected,
    }
}

/// Integral numbers only: JSON parsers may hand `3` over as `3.0`, which is
/// still an integer, while `2.5` is not.
fn number_as_i64(v: &Value) -> Option<i64> {
    let n = v.as_number()?;
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    if f.fract() == 0.0 && f >= i64::MIN as f64 && f <= i64::MAX as f64 {
        Some(f as i64)
    } else {
        None
    }
}

/// The spellings Go's `strconv.ParseBool` accepts.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

impl fmt::Display for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = serde_json::to_string(&self.0).map_err(|_| fmt::Error)?;
        f.write_str(&v)
    }
}

impl From<BTreeMap<String, Value>> for Metadata {
    fn from(m: BTreeMap<String, Value>) -> Self {
        Self(m)
    }
}

impl<K: Into<String>, V: Into<Value>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut md = Metadata::new();
        for (k, v) in iter {
            md.insert(k, v);
        }
        md
    }
}

impl<'a> IntoIterator for &'a Metadata {
    type Item = (&'a String, &'a Value);
    type IntoIter = std::collections::btree_map::Iter<'a, String, Value>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for Metadata {
    type Item = (String, Value);
    type IntoIter = std::collections::btree_map::IntoIter<String, Value>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn md(v: Value) -> Metadata {
        serde_json::from_value(v).expect("metadata")
    }

    #[test]
    fn lookup_is_case_insensitive_and_keeps_keys() {
        let m = md(json!({"enableStats": true, "B": 1}));
        assert_eq!(m.get_bool("enablestats"), Ok(Some(true)));
        assert_eq!(m.get_bool("ENABLESTATS"), Ok(Some(true)));
        assert!(m.contains_key("b"));
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"B":1,"enableStats":true}"#
        );
    }

    #[test]
    fn insert_replaces_other_case() {
        let mut m = Metadata::new();
        m.insert("Key", 1);
        m.insert("key", 2);
        assert_eq!(m.len(), 1);
        assert_eq!(m.get_int("KEY"), Ok(Some(2)));
        assert_eq!(m.remove("KEY"), Some(json!(2)));
        assert!(m.is_empty());
    }

    #[test]
    fn bools() {
        let m =
            md(json!({"a": "true", "b": "0", "c": 1, "d": "yes", "e": 2.5, "f": null, "g": "T"}));
        assert_eq!(m.get_bool("a"), Ok(Some(true)));
        assert_eq!(m.get_bool("b"), Ok(Some(false)));
        assert_eq!(m.get_bool("c"), Ok(Some(true)));
        assert_eq!(m.get_bool("g"), Ok(Some(true)));
        assert_eq!(m.get_bool("f"), Ok(None));
        assert_eq!(m.get_bool("missing"), Ok(None));
        let e = m.get_bool("d").unwrap_err();
        assert_eq!(
            e.to_string(),
            "metadata \"d\": invalid value \"yes\": expected a boolean (true/false, 1/0)"
        );
        assert!(m.get_bool("e").is_err());
    }

    #[test]
    fn ints_and_floats() {
        let m = md(
            json!({"a": "42", "b": 7, "c": true, "d": "x", "e": 3.0, "f": 2.5, "g": "1.5", "h": [1]}),
        );
        assert_eq!(m.get_int("a"), Ok(Some(42)));
        assert_eq!(m.get_int("b"), Ok(Some(7)));
        assert_eq!(m.get_int("c"), Ok(Some(1)));
        assert_eq!(m.get_int("e"), Ok(Some(3)));
        assert!(m.get_int("d").unwrap_err().to_string().contains("\"x\""));
        assert!(m.get_int("f").is_err());
        assert_eq!(m.get_float("g"), Ok(Some(1.5)));
        assert_eq!(m.get_float("b"), Ok(Some(7.0)));
        assert!(m.get_float("h").is_err());
    }

    #[test]
    fn strings() {
        let m = md(json!({"a": "x", "b": 10, "c": false, "d": 1.5, "e": {"k": 1}}));
        assert_eq!(m.get_string("a"), Ok(Some("x".into())));
        assert_eq!(m.get_string("b"), Ok(Some("10".into())));
        assert_eq!(m.get_string("c"), Ok(Some("false".into())));
        assert_eq!(m.get_string("d"), Ok(Some("1.5".into())));
        assert!(m.get_string("e").is_err());
    }

    #[test]
    fn durations() {
        let m = md(json!({
            "a": 5, "b": "1m30s", "c": "30", "d": "abc", "e": -1, "f": "300ms", "g": "", "h": 1.5
        }));
        assert_eq!(m.get_duration("a"), Ok(Some(Duration::from_secs(5))));
        assert_eq!(m.get_duration("b"), Ok(Some(Duration::from_secs(90))));
        assert_eq!(m.get_duration("c"), Ok(Some(Duration::from_secs(30))));
        assert_eq!(m.get_duration("f"), Ok(Some(Duration::from_millis(300))));
        assert_eq!(m.get_duration("g"), Ok(None));
        assert_eq!(m.get_duration("h"), Ok(Some(Duration::from_millis(1500))));
        let e = m.get_duration("d").unwrap_err();
        assert!(e.to_string().contains("metadata \"d\""), "{e}");
        assert!(m.get_duration("e").is_err());
    }

    #[test]
    fn string_lists() {
        let m = md(json!({"a": ["x", "y"], "b": "one", "c": ["x", 1], "d": 3}));
        assert_eq!(m.get_strings("a"), Ok(Some(vec!["x".into(), "y".into()])));
        assert_eq!(m.get_strings("b"), Ok(Some(vec!["one".into()])));
        assert!(m.get_strings("c").is_err());
        assert!(m.get_strings("d").is_err());
    }

    #[test]
    fn yaml_round_trip() {
        let m: Metadata = serde_yaml::from_str("b: 1\na: [x]\nc: {d: true}\n").unwrap();
        let out = serde_yaml::to_string(&m).unwrap();
        assert_eq!(out, "a:\n- x\nb: 1\nc:\n  d: true\n");
        assert_eq!(serde_yaml::from_str::<Metadata>(&out).unwrap(), m);
    }
}
