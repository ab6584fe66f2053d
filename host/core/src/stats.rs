//! Per-service traffic counters (GOST's `observer/stats`).
//!
//! Counters are plain atomics so the relay can add to them on its hot path
//! without locks, and the API, metrics and observers read them at any time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::config::ServiceStats;

/// Live counters of one service; enabled by `metadata.enableStats`.
#[derive(Debug, Default)]
pub struct Stats {
    total_conns: AtomicU64,
    current_conns: AtomicU64,
    total_errs: AtomicU64,
    input_bytes: AtomicU64,
    output_bytes: AtomicU64,
    /// Set on every change, cleared when an observer takes a report, so that
    /// unchanged stats are not reported again (GOST's `IsUpdated`).
    updated: AtomicBool,
    /// Counters that see every change made here too: one connection counts
    /// into its service's stats and its client's metrics series at once,
    /// while handlers keep a single `Stats` to add to.
    links: Vec<std::sync::Arc<Stats>>,
    /// The counters of the client the connection authenticated as, for a
    /// handler-level observer; set once the client is known, and its bytes
    /// counted into from then on (as GOST counts per client from the
    /// request on). Its connection and error counts are kept by
    /// [`Stats::attach_client`] and [`Stats::end_client`] alone.
    client: std::sync::OnceLock<std::sync::Arc<Stats>>,
}

impl Stats {
    /// Counters of one connection that add into each of `links`.
    pub fn linked(links: Vec<std::sync::Arc<Stats>>) -> Self {
        Stats {
            links,
            ..Default::default()
        }
    }

    /// Counts this connection for `client` from now on; the first client
    /// named wins. The connection is counted closed for the client by
    /// [`Stats::end_client`].
    pub fn attach_client(&self, client: std::sync::Arc<Stats>) {
        if self.client.set(client.clone()).is_ok() {
            client.open();
        }
    }

    /// The connection ended: counts it closed, and failed if `failed`, for
    /// the client it was attached to.
    pub fn end_client(&self, failed: bool) {
        if let Some(c) = self.client.get() {
            if failed {
                c.add_error();
            }
            c.close_conn();
        }
    }

    /// Counts a new connection and returns a guard that counts it closed
    /// when dropped, so no exit path of a handler can leak `currentConns`.
    pub fn open_conn(&self) -> ConnGuard<'_> {
        self.open();
        ConnGuard { stats: self }
    }

    /// [`Self::open_conn`] for a holder that keeps the counters by `Arc`.
    pub fn open_conn_owned(self: &std::sync::Arc<Self>) -> OwnedConnGuard {
        self.open();
        OwnedConnGuard(std::sync::Arc::clone(self))
    }

    fn open(&self) {
        self.total_conns.fetch_add(1, Ordering::Relaxed);
        self.current_conns.fetch_add(1, Ordering::Relaxed);
        self.updated.store(true, Ordering::Relaxed);
        self.links.iter().for_each(|l| l.open());
    }

    pub fn add_error(&self) {
        self.total_errs.fetch_add(1, Ordering::Relaxed);
        self.updated.store(true, Ordering::Relaxed);
        self.links.iter().for_each(|l| l.add_error());
    }

    /// Bytes read from the client.
    pub fn add_input(&self, n: u64) {
        self.input_bytes.fetch_add(n, Ordering::Relaxed);
        self.updated.store(true, Ordering::Relaxed);
        self.links.iter().for_each(|l| l.add_input(n));
        if let Some(l) = self.client.get() {
            l.add_input(n);
        }
    }

    /// Bytes written to the client.
    pub fn add_output(&self, n: u64) {
        self.output_bytes.fetch_add(n, Ordering::Relaxed);
        self.updated.store(true, Ordering::Relaxed);
        self.links.iter().for_each(|l| l.add_output(n));
        if let Some(l) = self.client.get() {
            l.add_output(n);
        }
    }

    /// The other half of [`Stats::open`], run by the guard.
    fn close_conn(&self) {
        self.current_conns.fetch_sub(1, Ordering::Relaxed);
        self.updated.store(true, Ordering::Relaxed);
        self.links.iter().for_each(|l| l.close_conn());
    }

    /// Whether anything changed since the last call (GOST's `IsUpdated`).
    pub fn take_updated(&self) -> bool {
        self.updated.swap(false, Ordering::Relaxed)
    }

    /// Bytes in and out since the last call, resetting both (GOST's
    /// `observer.resetTraffic`).
    pub fn take_traffic(&self) -> (u64, u64) {
        (
            self.input_bytes.swap(0, Ordering::Relaxed),
            self.output_bytes.swap(0, Ordering::Relaxed),
        )
    }

    pub fn snapshot(&self) -> ServiceStats {
        ServiceStats {
            total_conns: self.total_conns.load(Ordering::Relaxed),
            current_conns: self.current_conns.load(Ordering::Relaxed),
            total_errs: self.total_errs.load(Ordering::Relaxed),
            input_bytes: self.input_bytes.load(Ordering::Relaxed),
            output_bytes: self.output_bytes.load(Ordering::Relaxed),
        }
    }
}

/// Decrements `currentConns` when the connection it stands for ends.
#[derive(Debug)]
pub struct ConnGuard<'a> {
    stats: &'a Stats,
}

/// [`ConnGuard`] holding its counters by `Arc`.
#[derive(Debug)]
pub struct OwnedConnGuard(std::sync::Arc<Stats>);

impl OwnedConnGuard {
    pub fn stats(&self) -> &Stats {
        &self.0
    }
}

impl Drop for OwnedConnGuard {
    fn drop(&mut self) {
        self.0.close_conn();
    }
}

impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        self.stats.close_conn();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_tracks_current_connections() {
        let stats = Stats::default();
        {
            let _a = stats.open_conn();
            let _b = stats.open_conn();
            assert_eq!(stats.snapshot().current_conns, 2);
        }
        let s = stats.snapshot();
        assert_eq!((s.total_conns, s.current_conns), (2, 0));
    }

    #[test]
    fn linked_counters_see_every_change() {
        let service = std::sync::Arc::new(Stats::default());
        let client = std::sync::Arc::new(Stats::default());
        let conn = Stats::linked(vec![service.clone(), client.clone()]);
        {
            let _g = conn.open_conn();
            conn.add_input(3);
            conn.add_output(4);
            conn.add_error();
            assert_eq!(service.snapshot().current_conns, 1);
        }
        for s in [&service, &client] {
            let s = s.snapshot();
            assert_eq!(
                (
                    s.total_conns,
                    s.current_conns,
                    s.input_bytes,
                    s.output_bytes,
                    s.total_errs
                ),
                (1, 0, 3, 4, 1)
            );
        }
    }

    #[test]
    fn a_client_counts_from_when_it_is_attached() {
        let service = std::sync::Arc::new(Stats::default());
        let client = std::sync::Arc::new(Stats::default());
        let conn = Stats::linked(vec![service.clone()]);
        conn.add_input(5);
        conn.attach_client(client.clone());
        conn.attach_client(std::sync::Arc::new(Stats::default()));
        conn.add_input(2);
        conn.add_output(3);
        assert_eq!(client.snapshot().current_conns, 1);
        conn.end_client(true);
        let c = client.snapshot();
        assert_eq!(
            (
                c.total_conns,
                c.current_conns,
                c.input_bytes,
                c.output_bytes,
                c.total_errs
            ),
            (1, 0, 2, 3, 1)
        );
        assert_eq!(service.snapshot().input_bytes, 7);
    }

    #[test]
    fn byte_counters_add_up() {
        let stats = Stats::default();
        stats.add_input(10);
        stats.add_input(5);
        stats.add_output(7);
        stats.add_error();
        let s = stats.snapshot();
        assert_eq!((s.input_bytes, s.output_bytes, s.total_errs), (15, 7, 1));
    }
}
