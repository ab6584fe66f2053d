//! GOST's JSON log line (logrus's JSON formatter as GOST sets it up):
//! `time` (RFC 3339 with milliseconds), a lower-case `level`, `msg`, then
//! the event's fields, so log shippers configured for GOST parse gost-rs
//! lines unchanged.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// An event's message and fields, numbers and booleans kept as such.
#[derive(Default)]
pub(super) struct Fields {
    pub message: String,
    pub rest: Vec<(&'static str, serde_json::Value)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.add(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.add(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.add(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.add(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.add(field, value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.add(field, format!("{value:?}").into());
    }
}

impl Fields {
    fn add(&mut self, field: &Field, value: serde_json::Value) {
        if field.name() == "message" {
            self.message = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
        } else {
            self.rest.push((field.name(), value));
        }
    }

    /// The line, with `extra` keys after the event's own (a named
    /// logger's name).
    pub fn json(&self, level: &Level, extra: &[(&str, &str)]) -> String {
        let q = |s: &str| serde_json::Value::from(s).to_string();
        let mut line = format!(
            "{{\"time\":{},\"level\":{},\"msg\":{}",
            q(&time_now()),
            q(&level.as_str().to_ascii_lowercase()),
            q(&self.message)
        );
        let fields = self.rest.iter().map(|(k, v)| (*k, v.to_string()));
        let extra = extra.iter().map(|(k, v)| (*k, q(v)));
        for (k, v) in fields.chain(extra) {
            line.push(',');
            line.push_str(&q(k));
            line.push(':');
            line.push_str(&v);
        }
        line.push('}');
        line
    }
}

/// `2006-01-02T15:04:05.000Z`, GOST's timestamp format in UTC.
fn time_now() -> String {
    let micros = gost_core::rotate::rfc3339(std::time::SystemTime::now());
    // `...:SS.uuuuuuZ` to `...:SS.mmmZ`.
    format!("{}Z", &micros[..micros.len() - 4])
}

/// The main log's JSON format.
pub(super) struct GostJson;

impl<S, N> FormatEvent<S, N> for GostJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        writeln!(writer, "{}", fields.json(event.metadata().level(), &[]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_gosts_keys_and_typed_fields() {
        let f = Fields {
            message: "listening \"x\"".into(),
            rest: vec![
                ("service", "svc".into()),
                ("port", 8080u64.into()),
                ("ok", true.into()),
            ],
        };
        let line = f.json(&Level::WARN, &[("logger", "l1")]);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "warn");
        assert_eq!(v["msg"], "listening \"x\"");
        assert_eq!(v["service"], "svc");
        assert_eq!(v["port"], 8080);
        assert_eq!(v["ok"], true);
        assert_eq!(v["logger"], "l1");
        let t = v["time"].as_str().unwrap();
        // 2026-12-07T13:25:00.123Z
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[19] == b'.', "{t}");
        assert!(line.starts_with("{\"time\":"), "{line}");
    }
}
