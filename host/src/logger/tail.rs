//! The log as a live feed for the web API's stream: each line the main
//! log's level lets through goes, as a small record, to a broadcast ring
//! of [`CAPACITY`] lines. A subscriber that falls further behind loses
//! the oldest and is told how many; with no subscriber a line costs one
//! atomic load and is not formatted at all.

use std::sync::{Arc, OnceLock};

use serde::Serialize;
use tokio::sync::broadcast;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use super::json::Fields;

/// Lines held for subscribers that lag.
pub const CAPACITY: usize = 512;

/// One log line.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    pub time: String,
    pub level: &'static str,
    pub msg: String,
    /// The `service` field, when the line has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The other fields, as the JSON log writes them.
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl LogLine {
    /// Severity rank: error 0 ... trace 4.
    pub fn rank(&self) -> u8 {
        rank_of(self.level)
    }
}

/// Rank of a level name (`warning` as `warn`); unknown names rank as info.
pub fn rank_of(level: &str) -> u8 {
    match level {
        "error" | "fatal" | "panic" => 0,
        "warn" | "warning" => 1,
        "debug" => 3,
        "trace" => 4,
        _ => 2,
    }
}

fn sender() -> &'static broadcast::Sender<Arc<LogLine>> {
    static TX: OnceLock<broadcast::Sender<Arc<LogLine>>> = OnceLock::new();
    TX.get_or_init(|| broadcast::channel(CAPACITY).0)
}

/// A feed of the lines logged from now on.
pub fn subscribe() -> broadcast::Receiver<Arc<LogLine>> {
    sender().subscribe()
}

pub(super) struct TailLayer;

impl<S: Subscriber> Layer<S> for TailLayer {
    fn on_event(&self, event: &Event<'_>, _cx: Context<'_, S>) {
        let tx = sender();
        if tx.receiver_count() == 0 {
            return;
        }
        let level: &Level = event.metadata().level();
        let mut f = Fields::default();
        event.record(&mut f);
        let mut fields = serde_json::Map::new();
        let mut service = None;
        for (k, v) in f.rest {
            if k == "service" {
                service = Some(match &v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
            }
            fields.insert(k.to_string(), v);
        }
        let line = LogLine {
            time: gost_core::rotate::rfc3339(std::time::SystemTime::now()),
            level: match *level {
                Level::ERROR => "error",
                Level::WARN => "warn",
                Level::INFO => "info",
                Level::DEBUG => "debug",
                Level::TRACE => "trace",
            },
            msg: f.message,
            service,
            fields,
        };
        // No receiver left since the check: nothing to do.
        let _ = tx.send(Arc::new(line));
    }
}
