//! GOST's DNS answer cache (go-gost/x internal/util/resolver): one reply
//! per question (name, class, type), kept for the handler's `ttl` or else
//! the smallest answer TTL (60 s when the reply has no answer). A hit's
//! answer TTLs count down with its age. An entry past its time is still
//! returned, as stale, for `async` to answer with while it refreshes.
//!
//! GOST's cache grows without bound; this one holds at most [`MAX_ENTRIES`]
//! and drops the oldest entry beyond that, so random names cannot fill
//! memory.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};

/// GOST's TTL for a reply without answers.
const DEFAULT_TTL: Duration = Duration::from_secs(60);
pub const MAX_ENTRIES: usize = 65_536;

/// Name (lower case), class and type of a question.
pub type Key = (String, u16, u16);

pub fn key(q: &Query) -> Key {
    (
        q.name().to_ascii().to_ascii_lowercase(),
        u16::from(q.query_class()),
        u16::from(q.query_type()),
    )
}

struct Entry {
    msg: Message,
    stored: Instant,
    ttl: Duration,
    /// Which store this is, so the age queue can tell it from older ones.
    generation: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    /// Keys in the order they were stored, with their generation.
    order: VecDeque<(Key, u64)>,
    next: u64,
}

#[derive(Default)]
pub struct Cache {
    inner: Mutex<Inner>,
}

/// A cached reply: fresh, or past its time.
pub struct Hit {
    pub msg: Message,
    pub fresh: bool,
}

impl Cache {
    pub fn load(&self, key: &Key) -> Option<Hit> {
        let (mut msg, age, ttl) = {
            let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let e = inner.entries.get(key)?;
            (e.msg.clone(), e.stored.elapsed(), e.ttl)
        };
        let elapsed = age.as_secs() as u32;
        for r in msg.answers_mut() {
            let ttl = r.ttl();
            r.set_ttl(if ttl > elapsed { ttl - elapsed } else { 1 });
        }
        // GOST counts whole seconds left: under one is not fresh.
        let fresh = ttl.saturating_sub(age).as_secs() > 0;
        Some(Hit { msg, fresh })
    }

    /// Stores `msg` for `ttl` (the handler's), or by its answers when zero.
    pub fn store(&self, key: Key, msg: &Message, ttl: Duration) {
        let ttl = if ttl.is_zero() {
            msg.answers()
                .iter()
                .map(|r| Duration::from_secs(r.ttl().into()))
                .min()
                .filter(|t| !t.is_zero())
                .unwrap_or(DEFAULT_TTL)
        } else {
            ttl
        };
        let mut msg = msg.clone();
        let secs = u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX);
        for r in msg.answers_mut() {
            r.set_ttl(secs);
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let generation = inner.next;
        inner.next += 1;
        while inner.entries.len() >= MAX_ENTRIES && !inner.entries.contains_key(&key) {
            let Some((old, g)) = inner.order.pop_front() else {
                break;
            };
            if inner.entries.get(&old).is_some_and(|e| e.generation == g) {
                inner.entries.remove(&old);
            }
        }
        inner.order.push_back((key.clone(), generation));
        if inner.order.len() > 2 * MAX_ENTRIES {
            let Inner { entries, order, .. } = &mut *inner;
            order.retain(|(k, g)| entries.get(k).is_some_and(|e| e.generation == *g));
        }
        inner.entries.insert(
            key,
            Entry {
                msg,
                stored: Instant::now(),
                ttl,
                generation,
            },
        );
    }

    /// Starts an entry's time again (GOST's RefreshTTL), so concurrent
    /// `async` queries do not all refresh it.
    pub fn touch(&self, key: &Key) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = inner.entries.get_mut(key) {
            e.stored = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    fn reply(ttl: u32) -> (Key, Message) {
        let name = Name::from_ascii("A.Example.").unwrap();
        let q = Query::query(name.clone(), RecordType::A);
        let mut m = Message::new();
        m.add_query(q.clone());
        m.add_answer(Record::from_rdata(name, ttl, RData::A(A::new(1, 2, 3, 4))));
        (key(&q), m)
    }

    #[test]
    fn stores_by_answer_ttl_or_the_handlers() {
        let c = Cache::default();
        let (k, m) = reply(300);
        assert_eq!(k.0, "a.example.");
        c.store(k.clone(), &m, Duration::ZERO);
        let hit = c.load(&k).unwrap();
        assert!(hit.fresh);
        assert_eq!(hit.msg.answers()[0].ttl(), 300);
        c.store(k.clone(), &m, Duration::from_secs(7));
        assert_eq!(c.load(&k).unwrap().msg.answers()[0].ttl(), 7);
        let (k0, m0) = reply(0);
        c.store(k0.clone(), &m0, Duration::ZERO);
        assert_eq!(c.load(&k0).unwrap().msg.answers()[0].ttl(), 60);
    }

    #[test]
    fn under_a_second_left_is_stale() {
        let c = Cache::default();
        let (k, m) = reply(1);
        c.store(k.clone(), &m, Duration::from_millis(500));
        let hit = c.load(&k).unwrap();
        assert!(!hit.fresh);
        c.touch(&k);
        assert!(c.load(&k).is_some());
    }

    #[test]
    fn holds_at_most_max_entries() {
        let c = Cache::default();
        let (_, m) = reply(60);
        for i in 0..MAX_ENTRIES + 10 {
            c.store((format!("n{i}."), 1, 1), &m, Duration::ZERO);
        }
        let inner = c.inner.lock().unwrap();
        assert_eq!(inner.entries.len(), MAX_ENTRIES);
        assert!(!inner.entries.contains_key(&("n0.".into(), 1, 1)));
        assert!(inner.order.len() <= 2 * MAX_ENTRIES);
    }
}
