//! Chains, hops and nodes (GOST's `chain`, `hop` and `selector` packages).
//!
//! A hop is a set of nodes plus a selector. A forwarder is a hop whose nodes
//! are the forwarding targets; a chain is a list of hops through which the
//! router reaches a target, one node picked from each hop.

pub mod build;
pub mod failcodes;
pub mod group;
pub mod health;
pub mod http;
pub mod loader;
pub mod node;
pub mod probe;
pub mod route;
pub mod selector;

pub use group::{Chain, Chainer, GroupEntry, Route};
pub use node::{Marker, Node};
pub use selector::{Selector, Strategy};

use std::sync::Arc;

use gost_core::bypass::BypassGroup;

/// What a selector may use to pick a node for one connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct SelectContext<'a> {
    /// Hash source for the `hash` strategy: the client's IP, or with
    /// handler metadata `hash: host` the target address, as in GOST.
    pub hash_key: Option<&'a str>,
    /// What is known of the request, for node matchers and filters.
    pub request: gost_core::routing::Request<'a>,
}

/// A set of nodes with a selection strategy.
#[derive(Debug)]
pub struct Hop {
    pub name: String,
    pub nodes: Vec<Arc<Node>>,
    pub selector: Selector,
    /// Targets this hop (and every later one) leaves alone.
    pub bypass: Option<Arc<BypassGroup>>,
    /// More nodes from the hop's `file`, `redis` or `http` loader, read
    /// again every `reload` period.
    pub loader: Option<loader::NodeLoader>,
}

impl Hop {
    /// The nodes of the hop's loader (none without one).
    pub fn loaded(&self) -> Arc<Vec<Arc<Node>>> {
        self.loader.as_ref().map(|f| f.nodes()).unwrap_or_default()
    }

    /// Picks a node, skipping those that failed recently and any in
    /// `exclude` (nodes this connection already tried).
    pub fn select(&self, ctx: &SelectContext<'_>, exclude: &[Arc<Node>]) -> Option<Arc<Node>> {
        let loaded = self.loaded();
        let candidates: Vec<&Arc<Node>> = self
            .nodes
            .iter()
            .chain(loaded.iter())
            .filter(|n| !exclude.iter().any(|e| Arc::ptr_eq(e, n)))
            .filter(|n| n.matches(&ctx.request))
            .collect();
        self.by_priority(ctx, &candidates)
    }

    /// GOST's priority stage: a node whose priority is the unique highest
    /// among the live candidates (and is positive, and is not a backup)
    /// wins outright; otherwise the selector picks within the highest
    /// priority tier of live nodes that yields one, backup-only tiers
    /// coming after every primary. With no live node the selector sees
    /// them all, as it does without priorities.
    fn by_priority(&self, ctx: &SelectContext<'_>, candidates: &[&Arc<Node>]) -> Option<Arc<Node>> {
        let top = candidates.iter().map(|n| n.priority).max()?;
        if candidates.iter().all(|n| n.priority == top) {
            return self.selector.select(ctx, candidates).cloned();
        }
        let live: Vec<&Arc<Node>> = candidates
            .iter()
            .copied()
            .filter(|n| !self.selector.is_failed(n.as_ref()))
            .collect();
        if live.is_empty() {
            return self.selector.select(ctx, candidates).cloned();
        }
        let live_top = live.iter().map(|n| n.priority).max().unwrap_or(0);
        let mut at_top = live.iter().filter(|n| n.priority == live_top);
        if let (Some(n), None) = (at_top.next(), at_top.next()) {
            if live_top > 0 && !n.backup {
                return Some(Arc::clone(n));
            }
        }
        let mut tiers: Vec<i64> = live.iter().map(|n| n.priority).collect();
        tiers.sort_unstable_by(|a, b| b.cmp(a));
        tiers.dedup();
        let any_primary = live.iter().any(|n| !n.backup);
        let (primary, backup): (Vec<i64>, Vec<i64>) = tiers
            .into_iter()
            .partition(|p| !any_primary || live.iter().any(|n| n.priority == *p && !n.backup));
        primary.into_iter().chain(backup).find_map(|p| {
            let tier: Vec<&Arc<Node>> = live.iter().copied().filter(|n| n.priority == p).collect();
            self.selector.select(ctx, &tier).cloned()
        })
    }

    /// Picks the node of this hop that carries a connection to `addr`
    /// (`host:port`), as GOST's chain hop does: a hop bypass that matches
    /// takes no node; otherwise nodes whose bypass matches or whose
    /// matcher or filter refuses the request are left out; when every
    /// candidate has failed recently the first is still tried as a last
    /// resort, so a hop is never skipped just because its nodes were down a
    /// moment ago. `None` ends the route before this hop.
    pub fn select_for(&self, addr: &str, host: &str, hash_key: Option<&str>) -> Option<Arc<Node>> {
        let ctx = SelectContext {
            hash_key,
            request: tcp_request(host),
        };
        let loaded = self.loader.as_ref().map(|f| f.nodes()).unwrap_or_default();
        let candidates = self.eligible(addr, &ctx.request, &loaded)?;
        self.by_priority(&ctx, &candidates)
            .or_else(|| candidates.first().map(|n| Arc::clone(n)))
    }

    /// The nodes a `parallel` hop races for a connection to `addr`: the
    /// live candidates (all of them when none is live, as a last resort),
    /// empty when the hop's bypass takes the target.
    pub fn race_for(&self, addr: &str, host: &str) -> Vec<Arc<Node>> {
        let request = tcp_request(host);
        let loaded = self.loader.as_ref().map(|f| f.nodes()).unwrap_or_default();
        let Some(candidates) = self.eligible(addr, &request, &loaded) else {
            return Vec::new();
        };
        let pool = self.selector.pool(&candidates);
        let pool = if pool.is_empty() { candidates } else { pool };
        pool.into_iter().cloned().collect()
    }

    /// The hop's nodes (and those from its file) that may carry a
    /// connection to `addr`; `None` when the hop's bypass takes it.
    fn eligible<'a>(
        &'a self,
        addr: &str,
        request: &gost_core::routing::Request<'_>,
        loaded: &'a [Arc<Node>],
    ) -> Option<Vec<&'a Arc<Node>>> {
        if self
            .bypass
            .as_ref()
            .is_some_and(|b| b.contains("tcp", addr))
        {
            return None;
        }
        Some(
            self.nodes
                .iter()
                .chain(loaded.iter())
                .filter(|n| n.matches(request))
                .filter(|n| !n.bypass.as_ref().is_some_and(|b| b.contains("tcp", addr)))
                .collect(),
        )
    }
}

fn tcp_request(host: &str) -> gost_core::routing::Request<'_> {
    gost_core::routing::Request {
        network: "tcp",
        host,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gost_core::routing::{Matcher, Request};

    fn node(name: &str, rule: &str, priority: i64, backup: bool) -> Arc<Node> {
        Arc::new(Node {
            name: name.into(),
            matcher: (!rule.is_empty()).then(|| Matcher::new(rule, &Default::default()).unwrap()),
            priority: gost_core::routing::priority(rule, priority),
            backup,
            ..Default::default()
        })
    }

    fn hop(nodes: Vec<Arc<Node>>) -> Hop {
        Hop {
            name: "h".into(),
            nodes,
            selector: Selector::new(Strategy::Fifo, 0, std::time::Duration::ZERO),
            bypass: None,
            loader: None,
        }
    }

    fn pick(h: &Hop, host: &str, path: &str) -> Option<String> {
        let ctx = SelectContext {
            request: Request {
                host,
                path,
                ..Default::default()
            },
            ..Default::default()
        };
        h.select(&ctx, &[]).map(|n| n.name.clone())
    }

    #[test]
    fn matchers_and_priority_pick_the_node() {
        let h = hop(vec![
            node("any", "", 0, false),
            node("api", "PathPrefix(`/api`)", 0, false),
            node("a-api", "Host(`a`) && PathPrefix(`/api`)", 0, false),
        ]);
        assert_eq!(pick(&h, "a", "/api/x").as_deref(), Some("a-api"));
        assert_eq!(pick(&h, "b", "/api/x").as_deref(), Some("api"));
        assert_eq!(pick(&h, "b", "/").as_deref(), Some("any"));
        let h = hop(vec![
            node("low", "Host(`a`)", -1, false),
            node("x", "Host(`x`)", 0, false),
        ]);
        assert_eq!(pick(&h, "a", "/").as_deref(), Some("low"));
        assert_eq!(pick(&h, "z", "/"), None);
    }

    #[test]
    fn a_backup_on_top_does_not_win_outright() {
        let h = hop(vec![
            node("primary", "Host(`a`)", 5, false),
            node("spare", "Host(`a`)", 50, true),
        ]);
        assert_eq!(pick(&h, "a", "/").as_deref(), Some("primary"));
        h.nodes[0].marker.mark();
        assert_eq!(pick(&h, "a", "/").as_deref(), Some("spare"));
    }
}
