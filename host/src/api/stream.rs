//! One live feed for dashboards and scripts (not in GOST):
//! `GET /stream`, Server-Sent Events carrying, once a second, what
//! changed in the services (state, events, stats) and in the live
//! connections, the process's figures, and every log line as it is
//! written.
//!
//! Each subscriber's memory is bounded whatever the browser does: the
//! services and connections are compared with the previous second's
//! snapshot (no queue builds up: a subscriber that reads slowly skips
//! ticks), at most [`MAX_TRACKED`] connections are followed one by one,
//! and log lines come from a shared ring of `logger::tail::CAPACITY`
//! lines, a subscriber that lags losing the oldest with a `dropped` event
//! saying how many. A closed browser drops the feed and all of it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::error::ApiError;
use super::ApiState;
use crate::logger::tail::{self, LogLine};

/// Connections followed one by one per subscriber; beyond that only the
/// count is sent.
pub const MAX_TRACKED: usize = 1000;

/// How often services, connections and the process are compared.
pub const TICK: Duration = Duration::from_secs(1);

/// When the API started, for the process's uptime.
pub static STARTED: LazyLock<Instant> = LazyLock::new(Instant::now);

#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    /// Comma-separated: services, connections, health, process, logs
    /// (default all).
    topics: Option<String>,
    service: Option<String>,
    /// The least severe log level sent (default: every line logged).
    level: Option<String>,
}

const TOPICS: &[&str] = &["services", "connections", "health", "process", "logs"];

struct Feed {
    st: ApiState,
    topics: HashSet<&'static str>,
    service: Option<String>,
    level: u8,
    tick: tokio::time::Interval,
    logs: Option<broadcast::Receiver<Arc<LogLine>>>,
    services: HashMap<String, Value>,
    conns: HashMap<u64, (u64, u64)>,
    /// The node health list last sent.
    health: Option<Vec<Value>>,
    pending: VecDeque<Event>,
}

pub async fn get(State(st): State<ApiState>, Query(q): Query<StreamQuery>) -> Response {
    let mut topics = HashSet::new();
    for t in q.topics.as_deref().unwrap_or("").split(',').map(str::trim) {
        if t.is_empty() {
            continue;
        }
        match TOPICS.iter().find(|k| **k == t) {
            Some(k) => topics.insert(*k),
            None => {
                return ApiError::invalid(format!(
                    "unknown topic {:?} (one of: {})",
                    gost_core::escape::esc(t).to_string(),
                    TOPICS.join(", ")
                ))
                .into_response()
            }
        };
    }
    if topics.is_empty() {
        topics.extend(TOPICS.iter().copied());
    }
    let level = match q.level.as_deref().filter(|l| !l.is_empty()) {
        None => 4,
        Some(l @ ("error" | "warn" | "warning" | "info" | "debug" | "trace")) => tail::rank_of(l),
        Some(other) => {
            return ApiError::invalid(format!(
                "unknown level {:?} (error, warn, info, debug, trace)",
                gost_core::escape::esc(other).to_string()
            ))
            .into_response()
        }
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let hello = Event::default()
        .event("hello")
        .retry(Duration::from_secs(2))
        .data(json!({"time": now_ms(), "topics": topics}).to_string());
    let feed = Feed {
        logs: topics.contains("logs").then(tail::subscribe),
        st,
        topics,
        service: q.service.filter(|s| !s.is_empty()),
        level,
        tick,
        services: HashMap::new(),
        conns: HashMap::new(),
        health: None,
        pending: VecDeque::from([hello]),
    };
    let stream = futures_util::stream::unfold(feed, |mut f| async move {
        loop {
            if let Some(e) = f.pending.pop_front() {
                return Some((Ok::<_, Infallible>(e), f));
            }
            tokio::select! {
                _ = f.tick.tick() => f.on_tick(),
                line = next_line(&mut f.logs) => f.on_line(line),
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

async fn next_line(
    rx: &mut Option<broadcast::Receiver<Arc<LogLine>>>,
) -> Result<Arc<LogLine>, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn event(name: &str, data: &Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

impl Feed {
    fn wanted(&self, service: Option<&str>) -> bool {
        match (&self.service, service) {
            (None, _) => true,
            (Some(want), Some(s)) => want == s,
            (Some(_), None) => false,
        }
    }

    fn on_line(&mut self, line: Result<Arc<LogLine>, broadcast::error::RecvError>) {
        if matches!(line, Err(broadcast::error::RecvError::Closed)) {
            self.logs = None;
        }
        if let Some((name, data)) = log_event(line, self.level, self.service.as_deref()) {
            self.pending.push_back(event(name, &data));
        }
    }

    fn on_tick(&mut self) {
        let time = now_ms();
        if self.topics.contains("services") {
            self.services_delta(time);
        }
        if self.topics.contains("connections") {
            self.connections_delta(time);
        }
        if self.topics.contains("health") {
            self.health_delta(time);
        }
        if self.topics.contains("process") {
            self.pending.push_back(event("process", &process(time)));
        }
    }

    fn services_delta(&mut self, time: u64) {
        let cfg = self.st.app.config_with_status();
        let mut changed = Vec::new();
        let mut seen = HashSet::new();
        for svc in &cfg.services {
            if !self.wanted(Some(&svc.name)) {
                continue;
            }
            seen.insert(svc.name.clone());
            let mut v = serde_json::to_value(svc).unwrap_or_default();
            if self.st.mask_secrets {
                super::secrets::mask(&mut v);
            }
            if self.services.get(&svc.name) != Some(&v) {
                self.services.insert(svc.name.clone(), v.clone());
                changed.push(v);
            }
        }
        let removed: Vec<String> = self
            .services
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for k in &removed {
            self.services.remove(k);
        }
        if !changed.is_empty() || !removed.is_empty() {
            self.pending.push_back(event(
                "services",
                &json!({"time": time, "changed": changed, "removed": removed}),
            ));
        }
    }

    /// The whole list, when it differs from the one last sent: it is as
    /// small as the chains configured.
    fn health_delta(&mut self, time: u64) {
        let list = super::health::list(self.service.as_deref());
        if self.health.as_ref() == Some(&list) {
            return;
        }
        self.pending
            .push_back(event("health", &json!({"time": time, "list": list})));
        self.health = Some(list);
    }

    fn connections_delta(&mut self, time: u64) {
        let registry = gost_core::connections::enable();
        let live = registry.list(self.service.as_deref());
        let count = live.len();
        let mut opened = Vec::new();
        let mut updated = Vec::new();
        let mut seen = HashSet::with_capacity(live.len().min(MAX_TRACKED));
        for c in live {
            let known = self.conns.get(&c.id).copied();
            if known.is_none() && self.conns.len() >= MAX_TRACKED {
                continue;
            }
            seen.insert(c.id);
            let bytes = c.bytes();
            match known {
                None => {
                    self.conns.insert(c.id, bytes);
                    opened.push(c.info());
                }
                Some(b) if b != bytes => {
                    self.conns.insert(c.id, bytes);
                    updated
                        .push(json!({"id": c.id, "inputBytes": bytes.0, "outputBytes": bytes.1}));
                }
                Some(_) => {}
            }
        }
        let closed: Vec<u64> = self
            .conns
            .keys()
            .filter(|id| !seen.contains(*id))
            .copied()
            .collect();
        for id in &closed {
            self.conns.remove(id);
        }
        self.pending.push_back(event(
            "connections",
            &json!({
                "time": time, "count": count, "tracked": self.conns.len(),
                "opened": opened, "updated": updated, "closed": closed,
            }),
        ));
    }
}

/// What the stream sends for a log line (or for lines lost): a line of
/// the level or more severe, and of the service when one is asked for.
fn log_event(
    line: Result<Arc<LogLine>, broadcast::error::RecvError>,
    level: u8,
    service: Option<&str>,
) -> Option<(&'static str, Value)> {
    match line {
        Ok(l) => {
            let wanted = match service {
                None => true,
                Some(s) => l.service.as_deref() == Some(s),
            };
            (l.rank() <= level && wanted).then(|| ("log", json!(&*l)))
        }
        Err(broadcast::error::RecvError::Lagged(n)) => {
            Some(("dropped", json!({"topic": "logs", "count": n})))
        }
        Err(broadcast::error::RecvError::Closed) => None,
    }
}

/// The process: version, uptime, memory, live connections.
pub fn process(time: u64) -> Value {
    json!({
        "time": time,
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "uptime": STARTED.elapsed().as_secs_f64(),
        "rssBytes": rss_bytes(),
        "connections": gost_core::connections::enable().len(),
    })
}

/// Resident memory from /proc (absent elsewhere).
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// `GET /process`: the same figures as the stream's `process` event.
pub async fn get_process(State(_): State<ApiState>) -> Response {
    axum::Json(json!({"data": process(now_ms())})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(level: &'static str, service: Option<&str>) -> Arc<LogLine> {
        Arc::new(LogLine {
            time: String::new(),
            level,
            msg: "m".into(),
            service: service.map(String::from),
            fields: Default::default(),
        })
    }

    #[test]
    fn lines_are_filtered_by_level_and_service() {
        let warn = tail::rank_of("warn");
        assert!(log_event(Ok(line("info", None)), warn, None).is_none());
        assert!(log_event(Ok(line("error", None)), warn, None).is_some());
        assert!(log_event(Ok(line("error", Some("a"))), warn, Some("b")).is_none());
        assert!(log_event(Ok(line("error", None)), warn, Some("b")).is_none());
        let (name, _) = log_event(Ok(line("warn", Some("b"))), warn, Some("b")).unwrap();
        assert_eq!(name, "log");
    }

    /// A subscriber that falls behind the ring loses the oldest lines and
    /// hears how many; the ring never grows.
    #[tokio::test]
    async fn a_lagging_subscriber_is_told_what_it_lost() {
        let (tx, mut rx) = broadcast::channel(4);
        for _ in 0..10 {
            tx.send(line("info", None)).unwrap();
        }
        let (name, data) = log_event(rx.recv().await, 4, None).unwrap();
        assert_eq!((name, data["count"].as_u64()), ("dropped", Some(6)));
        assert_eq!(log_event(rx.recv().await, 4, None).unwrap().0, "log");
    }
}
