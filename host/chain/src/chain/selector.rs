//! Node selection strategies: round, rand, fifo, hash and parallel, with
//! GOST's fail and backup filters applied first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use super::{Marker, SelectContext};

/// What a selector needs to know about a candidate: nodes of a hop, and
/// chains of a chain group.
pub trait Selectable {
    fn marker(&self) -> &Marker;
    /// Relative weight for the `rand` strategy.
    fn weight(&self) -> u32;
    /// Used only when no primary candidate is left.
    fn backup(&self) -> bool;
    /// A second failure record judged like `marker`: a chain group
    /// entry's health probe.
    fn probe_marker(&self) -> Option<&Marker> {
        None
    }
    /// Per-candidate `maxFails`/`failTimeout` overriding the selector's.
    fn fail_settings(&self) -> (Option<u64>, Option<Duration>) {
        (None, None)
    }
}

pub const DEFAULT_MAX_FAILS: u64 = 1;
pub const DEFAULT_FAIL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Round,
    Rand,
    Fifo,
    Hash,
    /// Dial every candidate at once and keep the first that connects
    /// (the first hop of a chain, and forwarder nodes); where only one node
    /// can be used it picks like `fifo`.
    Parallel,
}

impl Strategy {
    /// GOST's names; an empty name is round robin, its default.
    pub fn parse(name: &str) -> Option<Strategy> {
        match name {
            "" | "round" | "rr" => Some(Strategy::Round),
            "rand" | "random" => Some(Strategy::Rand),
            "fifo" | "ha" => Some(Strategy::Fifo),
            "hash" => Some(Strategy::Hash),
            "parallel" => Some(Strategy::Parallel),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct Selector {
    pub strategy: Strategy,
    pub max_fails: u64,
    pub fail_timeout: Duration,
    counter: AtomicU64,
}

impl Selector {
    pub fn new(strategy: Strategy, max_fails: u64, fail_timeout: Duration) -> Self {
        Selector {
            strategy,
            max_fails: if max_fails == 0 {
                DEFAULT_MAX_FAILS
            } else {
                max_fails
            },
            fail_timeout: if fail_timeout.is_zero() {
                DEFAULT_FAIL_TIMEOUT
            } else {
                fail_timeout
            },
            counter: AtomicU64::new(0),
        }
    }

    pub fn is_failed<T: Selectable + ?Sized>(&self, n: &T) -> bool {
        let (max_fails, fail_timeout) = n.fail_settings();
        let max_fails = max_fails.unwrap_or(self.max_fails);
        let fail_timeout = fail_timeout.unwrap_or(self.fail_timeout);
        std::iter::once(n.marker())
            .chain(n.probe_marker())
            .any(|m| m.is_failed(max_fails, fail_timeout))
    }

    pub fn select<'a, T: Selectable>(
        &self,
        ctx: &SelectContext<'_>,
        nodes: &[&'a Arc<T>],
    ) -> Option<&'a Arc<T>> {
        let pool = self.pool(nodes);
        if pool.is_empty() {
            return None;
        }
        let idx = match self.strategy {
            Strategy::Round => {
                (self.counter.fetch_add(1, Ordering::Relaxed) % pool.len() as u64) as usize
            }
            Strategy::Fifo | Strategy::Parallel => 0,
            Strategy::Rand => weighted_random(&pool),
            Strategy::Hash => match ctx.hash_key {
                Some(key) => (crc32(key.as_bytes()) as u64 % pool.len() as u64) as usize,
                None => rand::rng().random_range(0..pool.len()),
            },
        };
        Some(pool[idx])
    }

    /// The candidates a strategy chooses among: the live ones, and backups
    /// only when no primary is left. `parallel` races all of them.
    pub fn pool<'a, T: Selectable>(&self, nodes: &[&'a Arc<T>]) -> Vec<&'a Arc<T>> {
        // Fail filter: like GOST, a single candidate is never filtered, so a
        // one-node forwarder keeps trying its only target.
        let healthy: Vec<&'a Arc<T>> = if nodes.len() <= 1 {
            nodes.to_vec()
        } else {
            nodes
                .iter()
                .copied()
                .filter(|n| !self.is_failed(n.as_ref()))
                .collect()
        };
        // Backup filter: backups only when no primary is left.
        let primaries: Vec<&'a Arc<T>> = healthy.iter().copied().filter(|n| !n.backup()).collect();
        if primaries.is_empty() {
            healthy
        } else {
            primaries
        }
    }
}

fn weighted_random<T: Selectable>(pool: &[&Arc<T>]) -> usize {
    let total: u64 = pool.iter().map(|n| n.weight().max(1) as u64).sum();
    let mut pick = rand::rng().random_range(0..total);
    for (i, n) in pool.iter().enumerate() {
        let w = n.weight().max(1) as u64;
        if pick < w {
            return i;
        }
        pick -= w;
    }
    pool.len() - 1
}

/// IEEE CRC-32, the hash GOST's `hash` strategy uses, so the same client
/// lands on the same node index as it would with GOST.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Node;

    fn node(name: &str) -> Arc<Node> {
        Arc::new(Node {
            name: name.into(),
            addr: format!("{name}:1"),
            weight: 1,
            ..Default::default()
        })
    }

    fn names(sel: &Selector, nodes: &[Arc<Node>], n: usize, key: Option<&str>) -> Vec<String> {
        let refs: Vec<&Arc<Node>> = nodes.iter().collect();
        let ctx = SelectContext {
            hash_key: key,
            ..Default::default()
        };
        (0..n)
            .map(|_| {
                sel.select(&ctx, &refs)
                    .map(|n| n.name.clone())
                    .unwrap_or_default()
            })
            .collect()
    }

    #[test]
    fn round_robin_cycles() {
        let nodes = vec![node("a"), node("b"), node("c")];
        let sel = Selector::new(Strategy::Round, 0, Duration::ZERO);
        assert_eq!(names(&sel, &nodes, 4, None), ["a", "b", "c", "a"]);
    }

    #[test]
    fn fifo_prefers_first_healthy() {
        let nodes = vec![node("a"), node("b")];
        let sel = Selector::new(Strategy::Fifo, 1, Duration::from_secs(60));
        assert_eq!(names(&sel, &nodes, 2, None), ["a", "a"]);
        nodes[0].marker.mark();
        assert_eq!(names(&sel, &nodes, 2, None), ["b", "b"]);
        nodes[0].marker.reset();
        assert_eq!(names(&sel, &nodes, 1, None), ["a"]);
    }

    #[test]
    fn failed_node_returns_after_fail_timeout() {
        let nodes = vec![node("a"), node("b")];
        let sel = Selector::new(Strategy::Fifo, 1, Duration::from_millis(30));
        nodes[0].marker.mark();
        assert_eq!(names(&sel, &nodes, 1, None), ["b"]);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(names(&sel, &nodes, 1, None), ["a"]);
    }

    #[test]
    fn max_fails_tolerates_some_failures() {
        let nodes = vec![node("a"), node("b")];
        let sel = Selector::new(Strategy::Fifo, 3, Duration::from_secs(60));
        nodes[0].marker.mark();
        nodes[0].marker.mark();
        assert_eq!(names(&sel, &nodes, 1, None), ["a"]);
        nodes[0].marker.mark();
        assert_eq!(names(&sel, &nodes, 1, None), ["b"]);
    }

    #[test]
    fn all_failed_gives_none_but_single_node_is_kept() {
        let nodes = vec![node("a"), node("b")];
        let sel = Selector::new(Strategy::Round, 1, Duration::from_secs(60));
        nodes[0].marker.mark();
        nodes[1].marker.mark();
        assert_eq!(names(&sel, &nodes, 1, None), [""]);
        let one = vec![node("x")];
        one[0].marker.mark();
        assert_eq!(names(&sel, &one, 1, None), ["x"]);
    }

    #[test]
    fn hash_is_stable_per_key_and_matches_crc32() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        let nodes = vec![node("a"), node("b"), node("c")];
        let sel = Selector::new(Strategy::Hash, 0, Duration::ZERO);
        let first = names(&sel, &nodes, 1, Some("10.0.0.1"));
        assert_eq!(
            names(&sel, &nodes, 5, Some("10.0.0.1")),
            vec![first[0].clone(); 5]
        );
        let idx = (crc32(b"10.0.0.1") % 3) as usize;
        assert_eq!(first[0], ["a", "b", "c"][idx]);
    }

    #[test]
    fn rand_uses_all_nodes_and_backup_only_as_fallback() {
        let mut b = node("b");
        Arc::get_mut(&mut b).unwrap().backup = true;
        let nodes = vec![node("a"), b];
        let sel = Selector::new(Strategy::Rand, 1, Duration::from_secs(60));
        assert!(names(&sel, &nodes, 20, None).iter().all(|n| n == "a"));
        nodes[0].marker.mark();
        assert_eq!(names(&sel, &nodes, 1, None), ["b"]);
    }
}
