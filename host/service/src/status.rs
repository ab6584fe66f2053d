//! Service status: creation time, state and the bounded event list that
//! GOST shows under `status` in the web API.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::{channel, error::TrySendError, Receiver, Sender};

use gost_core::config::{ServiceEvent, ServiceStatus};

use gost_core::stats::Stats;

/// GOST keeps the newest 20 events per service.
pub const MAX_EVENTS: usize = 20;

/// State changes queued for an observer that has not taken them yet (a
/// slow or hung observer); later ones are dropped and counted.
pub const OBSERVER_QUEUE: usize = 64;

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
    watcher: OnceLock<Sender<(State, String)>>,
    /// State changes the observer's full queue could not take.
    dropped: AtomicU64,
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
            dropped: AtomicU64::new(0),
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
            if let Err(TrySendError::Full(_)) = w.try_send((state, msg.clone())) {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(n) = gost_core::repeat::check((self.name.as_str(), "observer queue")) {
                    tracing::warn!(service = %self.name, dropped, repeated = n, "observer does not keep up: state change not reported");
                }
            }
        }
        self.add_event(msg);
    }

    /// State changes from now on, for the service's observer. Only the
    /// first caller gets them.
    pub fn watch(&self) -> Option<Receiver<(State, String)>> {
        let (tx, rx) = channel(OBSERVER_QUEUE);
        self.watcher.set(tx).ok().map(|_| rx)
    }

    /// State changes not reported because the observer's queue was full.
    pub fn observer_drops(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
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

    #[test]
    fn an_observer_that_does_not_read_holds_a_bounded_queue() {
        let s = Status::new("svc", false);
        let mut rx = s.watch().unwrap();
        for i in 0..OBSERVER_QUEUE + 10 {
            s.set_state(if i % 2 == 0 {
                State::Failed
            } else {
                State::Ready
            });
        }
        assert_eq!(s.observer_drops(), 10);
        // The first changes are kept, in order; the service's own events
        // are all there regardless.
        assert_eq!(rx.try_recv().unwrap().0, State::Failed);
        assert_eq!(rx.try_recv().unwrap().0, State::Ready);
        assert_eq!(s.snapshot().events.len(), MAX_EVENTS);
    }
}
