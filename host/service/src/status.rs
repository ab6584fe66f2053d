//! Service status: creation time, state and the bounded event list that
//! GOST shows under `status` in the web API.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use gost_core::config::{ServiceEvent, ServiceStatus};

use gost_core::stats::Stats;

/// GOST keeps the newest 20 events per service.
pub const MAX_EVENTS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running,
    Ready,
    Failed,
    Closed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Ready => "ready",
            State::Failed => "failed",
            State::Closed => "closed",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug)]
struct Inner {
    state: State,
    events: VecDeque<ServiceEvent>,
}

#[derive(Debug)]
pub struct Status {
    name: String,
    create_time: i64,
    inner: Mutex<Inner>,
    stats: Option<Arc<Stats>>,
    /// Where state changes go when an observer watches the service.
    watcher: OnceLock<UnboundedSender<(State, String)>>,
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Status {
    /// A new status starts in `running` with its event, as GOST's
    /// `NewService` does.
    pub fn new(name: &str, enable_stats: bool) -> Self {
        let status = Status {
            name: name.to_string(),
            create_time: unix_now(),
            inner: Mutex::new(Inner {
                state: State::Running,
                events: VecDeque::with_capacity(MAX_EVENTS),
            }),
            stats: enable_stats.then(Arc::default),
            watcher: OnceLock::new(),
        };
        status.add_event(format!("service {name} is running"));
        status
    }

    pub fn stats(&self) -> Option<&Arc<Stats>> {
        self.stats.as_ref()
    }

    pub fn state(&self) -> State {
        self.lock().state
    }

    /// Changes the state and records GOST's `service <name> is <state>` event.
    pub fn set_state(&self, state: State) {
        self.lock().state = state;
        let msg = format!("service {} is {}", self.name, state);
        if let Some(w) = self.watcher.get() {
            let _ = w.send((state, msg.clone()));
        }
        self.add_event(msg);
    }

    /// State changes from now on, for the service's observer. Only the
    /// first caller gets them.
    pub fn watch(&self) -> Option<UnboundedReceiver<(State, String)>> {
        let (tx, rx) = unbounded_channel();
        self.watcher.set(tx).ok().map(|_| rx)
    }

    pub fn add_event(&self, msg: String) {
        let mut inner = self.lock();
        if inner.events.len() == MAX_EVENTS {
            inner.events.pop_front();
        }
        inner.events.push_back(ServiceEvent {
            time: unix_now(),
            msg,
        });
    }

    pub fn snapshot(&self) -> ServiceStatus {
        let inner = self.lock();
        ServiceStatus {
            create_time: self.create_time,
            state: inner.state.as_str().to_string(),
            events: inner.events.iter().cloned().collect(),
            stats: self.stats.as_deref().map(Stats::snapshot),
            ..Default::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the data inconsistent
        // (each update is a single assignment or push), so poisoning is moot.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_running_with_event() {
        let s = Status::new("svc", false);
        let snap = s.snapshot();
        assert_eq!(snap.state, "running");
        assert_eq!(snap.events[0].msg, "service svc is running");
        assert!(snap.stats.is_none());
    }

    #[test]
    fn keeps_newest_events_only() {
        let s = Status::new("svc", true);
        for i in 0..30 {
            s.add_event(format!("e{i}"));
        }
        let snap = s.snapshot();
        assert_eq!(snap.events.len(), MAX_EVENTS);
        assert_eq!(snap.events.last().unwrap().msg, "e29");
        assert_eq!(snap.events[0].msg, "e10");
        assert!(snap.stats.is_some());
    }
}
