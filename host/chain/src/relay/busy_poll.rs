//! Opt-in busy polling (`GOST_BUSY_POLL=<duration>`), haproxy's
//! `busy-polling` for gost-rs.
//!
//! On a virtual machine whose idle vCPUs halt without polling, every wake
//! of the sleeping proxy is an interrupt sent across cores, and the core
//! that sends it (a client, a target, another process) pays a VM exit.
//! Measured on a 2-core VM with one bulk stream on loopback, the proxy
//! slept about 3,900 times a second, and not sleeping raised the stream
//! by about 10% (docs/benchmarks.md, "Busy polling"). So, when enabled, a task keeps the runtime polling for events instead of
//! sleeping for as long as relayed data keeps arriving within the window;
//! once the relays fall quiet for the window it sleeps until the next
//! relayed data. The price is one busy core while traffic flows, which is
//! why it is off by default.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use gost_core::config::{Duration as GoDuration, DurationError};

/// The environment variable that turns busy polling on.
pub const ENV: &str = "GOST_BUSY_POLL";

static ENABLED: AtomicBool = AtomicBool::new(false);
/// True while the poller spins; relays only wake it when it does not.
static SPINNING: AtomicBool = AtomicBool::new(false);
/// Relay reads so far; the poller spins while this keeps changing.
static ACTIVITY: AtomicU64 = AtomicU64::new(0);
static WAKE: Notify = Notify::const_new();

/// The window `GOST_BUSY_POLL` asks for: `None` when unset, empty or `0`.
pub fn window_from_env() -> Result<Option<Duration>, DurationError> {
    match std::env::var(ENV) {
        Ok(v) => parse_window(&v),
        Err(_) => Ok(None),
    }
}

fn parse_window(v: &str) -> Result<Option<Duration>, DurationError> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let d = GoDuration::parse(v)?.0;
    Ok((!d.is_zero()).then_some(d))
}

/// Called by the relay for every read that moved bytes. With busy polling
/// off it is one relaxed load.
#[inline]
pub fn touch() {
    if ENABLED.load(Ordering::Relaxed) {
        ACTIVITY.fetch_add(1, Ordering::Relaxed);
        if !SPINNING.load(Ordering::Relaxed) {
            WAKE.notify_one();
        }
    }
}

/// Turns busy polling on for this process: the returned future is the
/// poller, to be spawned on the runtime that runs the services.
pub fn poller(window: Duration) -> impl std::future::Future<Output = ()> {
    ENABLED.store(true, Ordering::Relaxed);
    async move {
        loop {
            WAKE.notified().await;
            SPINNING.store(true, Ordering::Relaxed);
            spin(window).await;
            // A read between the last check and this store leaves a permit
            // in WAKE (notify_one stores one when nobody waits), so the
            // next `notified()` returns at once: no activity is missed.
            SPINNING.store(false, Ordering::Relaxed);
        }
    }
}

/// Yields until no relay read has happened for `window`. Each
/// `yield_now` lets the runtime poll its I/O driver with a zero timeout
/// before the poller runs again, so the thread never sleeps meanwhile.
async fn spin(window: Duration) {
    let mut seen = ACTIVITY.load(Ordering::Relaxed);
    let mut last = Instant::now();
    loop {
        tokio::task::yield_now().await;
        let now = Instant::now();
        let count = ACTIVITY.load(Ordering::Relaxed);
        if count != seen {
            seen = count;
            last = now;
        } else if now.duration_since(last) >= window {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_values() {
        assert_eq!(parse_window(""), Ok(None));
        assert_eq!(parse_window("0"), Ok(None));
        assert_eq!(parse_window("2ms"), Ok(Some(Duration::from_millis(2))));
        assert_eq!(
            parse_window(" 500us "),
            Ok(Some(Duration::from_micros(500)))
        );
        let e = parse_window("fast").unwrap_err();
        assert_eq!(e.input, "fast");
        assert!(parse_window("-1ms").is_err());
    }
}
