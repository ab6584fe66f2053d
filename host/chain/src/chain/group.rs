//! A chain (GOST's `chain.Chain`) and a chain group (`handler.chainGroup`),
//! which picks one chain per connection with its own selector.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::probe::Probe;
use super::selector::{Selectable, Selector, Strategy};
use super::{Hop, Marker, Node, SelectContext};
use gost_core::routing::{Matcher, Request};

#[derive(Debug)]
pub struct Chain {
    pub name: String,
    pub hops: Vec<Arc<Hop>>,
    /// Marked when a route through this chain fails, so a chain group
    /// passes over it like a hop passes over a failed node.
    pub marker: Marker,
    /// Chain metadata `weight` and `backup`, for a chain group's selector.
    pub weight: u32,
    pub backup: bool,
}

impl Selectable for Chain {
    fn marker(&self) -> &Marker {
        &self.marker
    }
    fn weight(&self) -> u32 {
        self.weight
    }
    fn backup(&self) -> bool {
        self.backup
    }
}

impl Chain {
    /// One node from each hop, in order, for a connection to `addr`
    /// (`host:port`). The route stops at the first hop that has no node for
    /// it (GOST truncates it the same way), so an empty route means "dial
    /// directly". A first hop with the `parallel` strategy puts the nodes
    /// it races in the route.
    pub fn route(&self, addr: &str, host: &str, hash_key: Option<&str>) -> Route {
        let mut route = Route::default();
        for (i, hop) in self.hops.iter().enumerate() {
            if i == 0 && hop.selector.strategy == Strategy::Parallel {
                route.race = hop.race_for(addr, host);
                match route.race.first() {
                    Some(n) => route.nodes.push(Arc::clone(n)),
                    None => break,
                }
                continue;
            }
            match hop.select_for(addr, host, hash_key) {
                Some(n) => route.nodes.push(n),
                None => break,
            }
        }
        if route.race.len() < 2 {
            route.race.clear();
        }
        route
    }
}

/// One connection's way through a chain: a node per hop. When the first
/// hop races its nodes, `race` holds them (two or more) and the one that
/// connects first stands in for `nodes[0]`.
#[derive(Debug, Default)]
pub struct Route {
    pub nodes: Vec<Arc<Node>>,
    pub race: Vec<Arc<Node>>,
}

/// What a service dials through: one chain, or a group of them.
#[derive(Debug)]
pub enum Chainer {
    Chain(Arc<Chain>),
    Group {
        chains: Vec<Arc<GroupEntry>>,
        selector: Selector,
    },
}

/// A chain group entry: the chain and its `matcher`, which sees the
/// dial's network and target host only, as in GOST's chain group, and its
/// health `probe`.
#[derive(Debug)]
pub struct GroupEntry {
    pub chain: Arc<Chain>,
    pub matcher: Option<Matcher>,
    pub probe: Option<Probe>,
    /// Marked by a failed probe, reset by a passed one. Kept apart from
    /// the chain's route marker, as GOST keeps its entry marker apart: a
    /// passed probe must not clear failures real connections saw, nor one
    /// connection that got through clear a failing probe. Shared with the
    /// probe task.
    pub probe_marker: Arc<Marker>,
    /// The latest check's outcome, for the API's node health.
    pub probe_last: Arc<std::sync::Mutex<Option<super::probe::Outcome>>>,
    /// Cancelled when the entry is dropped (its group replaced or gone),
    /// which ends the probe task at once, an in-flight check included.
    pub(super) probe_stop: CancellationToken,
}

impl GroupEntry {
    pub fn new(chain: Arc<Chain>, matcher: Option<Matcher>, probe: Option<Probe>) -> Self {
        GroupEntry {
            chain,
            matcher,
            probe,
            probe_marker: Arc::default(),
            probe_last: Arc::default(),
            probe_stop: CancellationToken::new(),
        }
    }
}

impl Drop for GroupEntry {
    fn drop(&mut self) {
        self.probe_stop.cancel();
    }
}

/// The group's selector sees an entry as failed when either its chain's
/// routes or its probe failed recently (each judged by the selector's
/// `maxFails`/`failTimeout`).
impl Selectable for GroupEntry {
    fn marker(&self) -> &Marker {
        &self.chain.marker
    }
    fn probe_marker(&self) -> Option<&Marker> {
        Some(&self.probe_marker)
    }
    fn weight(&self) -> u32 {
        self.chain.weight
    }
    fn backup(&self) -> bool {
        self.chain.backup
    }
}

impl Chainer {
    /// The chain to use for one connection to `host` over `network`: a
    /// group considers the entries whose matcher takes it (all when none
    /// has one) and skips chains that failed recently, like a hop skips
    /// nodes. `None` when no entry takes the target: it is dialed
    /// directly, as GOST does with an empty route.
    pub fn pick(&self, network: &str, host: &str, hash_key: Option<&str>) -> Option<Arc<Chain>> {
        match self {
            Chainer::Chain(c) => Some(c.clone()),
            Chainer::Group { chains, selector } => {
                let req = Request {
                    network,
                    host,
                    ..Default::default()
                };
                let refs: Vec<&Arc<GroupEntry>> = chains
                    .iter()
                    .filter(|e| e.matcher.as_ref().is_none_or(|m| m.matches(&req)))
                    .collect();
                let ctx = SelectContext {
                    hash_key,
                    ..Default::default()
                };
                selector
                    .select(&ctx, &refs)
                    .or_else(|| refs.first().copied())
                    .map(|e| e.chain.clone())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, rule: &str) -> Arc<GroupEntry> {
        Arc::new(GroupEntry::new(
            Arc::new(Chain {
                name: name.into(),
                hops: Vec::new(),
                marker: Marker::default(),
                weight: 1,
                backup: false,
            }),
            (!rule.is_empty()).then(|| Matcher::new(rule, &Default::default()).unwrap()),
            None,
        ))
    }

    #[test]
    fn group_entries_filter_by_network_and_host() {
        let g = Chainer::Group {
            chains: vec![
                entry("web", "Host(`*.example.com`) && Network(`tcp`)"),
                entry("dns", "Network(`udp`)"),
            ],
            selector: Selector::new(Strategy::Fifo, 0, std::time::Duration::ZERO),
        };
        let pick = |net: &str, host: &str| g.pick(net, host, None).map(|c| c.name.clone());
        assert_eq!(pick("tcp", "a.example.com").as_deref(), Some("web"));
        assert_eq!(pick("udp", "a.example.com").as_deref(), Some("dns"));
        assert_eq!(pick("tcp", "other.test"), None);
        let open = Chainer::Group {
            chains: vec![entry("any", ""), entry("web", "Host(`w`)")],
            selector: Selector::new(Strategy::Fifo, 0, std::time::Duration::ZERO),
        };
        assert_eq!(
            open.pick("tcp", "x", None)
                .map(|c| c.name.clone())
                .as_deref(),
            Some("any")
        );
    }

    #[test]
    fn failed_probe_or_route_skips_the_entry_for_fail_timeout() {
        let g = Chainer::Group {
            chains: vec![entry("a", ""), entry("b", "")],
            selector: Selector::new(Strategy::Fifo, 1, std::time::Duration::from_millis(200)),
        };
        let Chainer::Group { chains, .. } = &g else {
            unreachable!()
        };
        let pick = || g.pick("tcp", "x", None).map(|c| c.name.clone());
        assert_eq!(pick().as_deref(), Some("a"));
        chains[0].probe_marker.mark();
        assert_eq!(pick().as_deref(), Some("b"));
        // A connection through the chain does not clear the probe's mark.
        chains[0].chain.marker.reset();
        assert_eq!(pick().as_deref(), Some("b"));
        chains[0].probe_marker.reset();
        assert_eq!(pick().as_deref(), Some("a"));
        chains[0].chain.marker.mark();
        assert_eq!(pick().as_deref(), Some("b"));
        std::thread::sleep(std::time::Duration::from_millis(250));
        assert_eq!(pick().as_deref(), Some("a"));
    }
}
