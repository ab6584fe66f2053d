//! What a handler and the router learn about a connection for its
//! handler record (GOST's handlers fill their `HandlerRecorderObject` as
//! they go: the target, the node, the route, the upstream's addresses,
//! the client's id, the sniffed protocol). The service runs the handler
//! inside [`scope`] when it records handlers; [`note`] elsewhere is a
//! no-op, so a service that records nothing pays one failed task-local
//! lookup per dial.
//!
//! Like the connection registry's, this is a task-local of the task that
//! runs the handler: a dial made from a task the handler spawns is not
//! noted.

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use super::{HandlerRecord, Recorder};
use crate::stats::Stats;

/// A connection's record while its handler runs.
pub struct Notes {
    rec: Mutex<HandlerRecord>,
    /// Set when the handler wrote records of its own (one per sniffed
    /// HTTP request, as GOST's sniffer does), so the connection's record
    /// is left out.
    taken: std::sync::atomic::AtomicBool,
    recorder: Arc<Recorder>,
    stats: Arc<Stats>,
    body_limit: usize,
}

impl Notes {
    /// `body_limit`: the HTTP body prefix records keep (0: none).
    pub fn new(
        rec: HandlerRecord,
        recorder: Arc<Recorder>,
        stats: Arc<Stats>,
        body_limit: usize,
    ) -> Self {
        Notes {
            rec: Mutex::new(rec),
            taken: Default::default(),
            recorder,
            stats,
            body_limit,
        }
    }

    pub fn body_limit(&self) -> usize {
        self.body_limit
    }

    /// Leaves the connection's own record out: the handler writes
    /// records for its parts, or (as GOST's sniffer when a request is
    /// refused) none.
    pub fn take(&self) {
        self.taken.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn rec(&self) -> std::sync::MutexGuard<'_, HandlerRecord> {
        self.rec.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// See [`emit`].
    pub fn emit(&self, started: (SystemTime, Instant), f: impl FnOnce(&mut HandlerRecord)) {
        self.take();
        let mut rec = self.rec().clone();
        let s = self.stats.snapshot();
        rec.input_bytes = s.input_bytes;
        rec.output_bytes = s.output_bytes;
        rec.time = super::rfc3339_nano(started.0);
        rec.set_duration(started.1.elapsed());
        f(&mut rec);
        self.recorder.record(rec.to_json());
    }

    /// Writes the connection's record: its bytes, how long it took and
    /// the handler's error; nothing when the handler wrote its own.
    pub fn finish(&self, start: Instant, err: Option<String>) {
        if self.taken.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let mut rec = self.rec().clone();
        let s = self.stats.snapshot();
        rec.input_bytes = s.input_bytes;
        rec.output_bytes = s.output_bytes;
        rec.set_duration(start.elapsed());
        if let Some(e) = err {
            rec.err = e;
        }
        self.recorder.record(rec.to_json());
    }
}

tokio::task_local! {
    static NOTES: Arc<Notes>;
}

/// Runs `f` (one poll of a connection's handler) with `notes` as its
/// record; set per poll, as [`crate::connections::enter`].
pub fn enter<R>(notes: Option<&Arc<Notes>>, f: impl FnOnce() -> R) -> R {
    match notes {
        Some(n) => NOTES.sync_scope(n.clone(), f),
        None => f(),
    }
}

/// Changes the current connection's record, if it is recorded.
pub fn note(f: impl FnOnce(&mut HandlerRecord)) {
    let _ = NOTES.try_with(|n| f(&mut n.rec()));
}

/// Whether the current connection is recorded.
pub fn noting() -> bool {
    NOTES.try_with(|_| ()).is_ok()
}

/// Writes a record of its own for part of the current connection (one
/// sniffed HTTP request): the connection's record so far, changed by
/// `f`, with the connection's bytes so far, as GOST writes them. From
/// then on the connection's own record is left out. `started` is when
/// this part began.
pub fn emit(started: (SystemTime, Instant), f: impl FnOnce(&mut HandlerRecord)) {
    let _ = NOTES.try_with(|n| n.emit(started, f));
}

/// A handle on the current connection's notes, for work the handler
/// hands to another task (a response body hyper writes after the
/// handler's future returned it).
pub fn current() -> Option<Arc<Notes>> {
    NOTES.try_with(Arc::clone).ok()
}

/// Wraps a service's auther so that a login gives the connection's
/// record its `clientID`: the id the auther returned, as GOST records it.
pub fn auther(inner: Arc<dyn crate::auth::Auther>) -> Arc<dyn crate::auth::Auther> {
    Arc::new(NotingAuther(inner))
}

struct NotingAuther(Arc<dyn crate::auth::Auther>);

impl crate::auth::Auther for NotingAuther {
    fn authenticate<'a>(
        &'a self,
        req: crate::auth::AuthRequest<'a>,
    ) -> crate::auth::AuthFuture<'a> {
        Box::pin(async move {
            let id = self.0.authenticate(req).await?;
            note(|r| r.client_id = id.clone());
            Some(id)
        })
    }
}
