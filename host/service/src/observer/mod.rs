//! Observers (GOST's `observer` module): a service reports its status
//! changes and, with `enableStats`, its traffic counters to a sink.
//!
//! Sinks are GOST's HTTP observer plugin protocol ([`http`]) and wasm
//! components of the `observer` world (`gost_plugin::observer`). The
//! per-service schedule (period, change detection, `resetTraffic`, retries)
//! lives in [`reporter`].

pub mod clients;
pub mod http;
pub mod reporter;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use serde::Serialize;

use gost_core::config::ServiceStats;

/// One observer event, serialized exactly as GOST's HTTP observer plugin
/// sends it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// `service` or `handler`.
    pub kind: String,
    pub service: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client: String,
    /// `status` or `stats`.
    pub r#type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<StatsEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusEvent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsEvent {
    pub total_conns: u64,
    pub current_conns: u64,
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub total_errs: u64,
}

impl From<ServiceStats> for StatsEvent {
    fn from(s: ServiceStats) -> Self {
        StatsEvent {
            total_conns: s.total_conns,
            current_conns: s.current_conns,
            input_bytes: s.input_bytes,
            output_bytes: s.output_bytes,
            total_errs: s.total_errs,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusEvent {
    pub state: String,
    pub msg: String,
}

impl Event {
    pub fn status(service: &str, state: &str, msg: &str) -> Event {
        Event {
            kind: "service".into(),
            service: service.into(),
            client: String::new(),
            r#type: "status",
            stats: None,
            status: Some(StatusEvent {
                state: state.into(),
                msg: msg.into(),
            }),
        }
    }

    pub fn stats(service: &str, stats: StatsEvent) -> Event {
        Event {
            kind: "service".into(),
            service: service.into(),
            client: String::new(),
            r#type: "stats",
            stats: Some(stats),
            status: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("observer {observer}: {msg}")]
pub struct ObserverError {
    pub observer: String,
    pub msg: String,
}

pub type ObserveFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ObserverError>> + Send + 'a>>;

/// A sink for events. An error means the batch was not taken; the
/// reporter sends stats again next period.
pub trait Observer: Send + Sync {
    fn observe<'a>(&'a self, events: &'a [Event]) -> ObserveFuture<'a>;
}

/// The sink a running service reports to, replaceable while it runs: an
/// API update of the `observers` entry swaps it in place, so the service
/// keeps running with its status, events and counters.
pub struct SinkSlot(RwLock<Arc<dyn Observer>>);

impl SinkSlot {
    pub fn new(sink: Arc<dyn Observer>) -> Self {
        SinkSlot(RwLock::new(sink))
    }

    /// Later reports go to `sink`; one already under way finishes on the
    /// old one.
    pub fn set(&self, sink: Arc<dyn Observer>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = sink;
    }
}

impl Observer for SinkSlot {
    fn observe<'a>(&'a self, events: &'a [Event]) -> ObserveFuture<'a> {
        let sink = self.0.read().unwrap_or_else(|p| p.into_inner()).clone();
        Box::pin(async move { sink.observe(events).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_matches_gost() {
        let s = Event::status("svc", "ready", "service svc is ready");
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"kind":"service","service":"svc","type":"status","status":{"state":"ready","msg":"service svc is ready"}}"#
        );
        let st = Event::stats(
            "svc",
            StatsEvent {
                total_conns: 1,
                current_conns: 0,
                input_bytes: 2,
                output_bytes: 3,
                total_errs: 4,
            },
        );
        assert_eq!(
            serde_json::to_string(&st).unwrap(),
            r#"{"kind":"service","service":"svc","type":"stats","stats":{"totalConns":1,"currentConns":0,"inputBytes":2,"outputBytes":3,"totalErrs":4}}"#
        );
    }
}
