//! Rate limit for repeated identical error lines: a client sending
//! malformed requests in a loop would otherwise write one line per
//! request and fill the disk. The first line of a kind is written; the
//! same line again within [`WINDOW`] is only counted, and the next one
//! written after the window says how many were left out. Service stats
//! count every error regardless.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an identical line is held back after one was written.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Kinds of line remembered at once; past this, kinds older than the
/// window are forgotten (and, if all are recent, all of them).
const MAX_KINDS: usize = 4096;

struct Seen {
    written: Instant,
    suppressed: u64,
}

static SEEN: Mutex<Option<HashMap<u64, Seen>>> = Mutex::new(None);

/// Whether to write a line identified by `key` now: `Some(n)` with the
/// number of identical lines left out since the last one written, or
/// `None` to leave this one out.
pub fn check(key: impl Hash) -> Option<u64> {
    check_at(key, Instant::now())
}

fn check_at(key: impl Hash, now: Instant) -> Option<u64> {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    let key = h.finish();
    let mut guard = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let seen = guard.get_or_insert_with(HashMap::new);
    if let Some(s) = seen.get_mut(&key) {
        if now.duration_since(s.written) < WINDOW {
            s.suppressed += 1;
            return None;
        }
        let n = s.suppressed;
        *s = Seen {
            written: now,
            suppressed: 0,
        };
        return Some(n);
    }
    if seen.len() >= MAX_KINDS {
        seen.retain(|_, s| now.duration_since(s.written) < WINDOW);
        if seen.len() >= MAX_KINDS {
            seen.clear();
        }
    }
    seen.insert(
        key,
        Seen {
            written: now,
            suppressed: 0,
        },
    );
    Some(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_lines_within_the_window_are_counted_then_reported() {
        let t0 = Instant::now();
        let key = ("svc-repeat-test", "malformed request head");
        assert_eq!(check_at(key, t0), Some(0));
        for i in 1..=5 {
            assert_eq!(check_at(key, t0 + Duration::from_millis(i)), None);
        }
        // A different line is not held back by the first.
        assert_eq!(check_at(("svc-repeat-test", "other"), t0), Some(0));
        assert_eq!(check_at(key, t0 + WINDOW), Some(5));
        assert_eq!(check_at(key, t0 + WINDOW + Duration::from_millis(1)), None);
    }
}
