//! A chain (GOST's `chain.Chain`) and a chain group (`handler.chainGroup`),
//! which picks one chain per connection with its own selector.

use std::sync::Arc;

use super::selector::{Selectable, Selector};
use super::{Hop, Marker, Node, SelectContext};

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
    /// directly".
    pub fn route(&self, addr: &str, host: &str, hash_key: Option<&str>) -> Vec<Arc<Node>> {
        let mut nodes = Vec::with_capacity(self.hops.len());
        for hop in &self.hops {
            match hop.select_for(addr, host, hash_key) {
                Some(n) => nodes.push(n),
                None => break,
            }
        }
        nodes
    }
}

/// What a service dials through: one chain, or a group of them.
#[derive(Debug)]
pub enum Chainer {
    Chain(Arc<Chain>),
    Group {
        chains: Vec<Arc<Chain>>,
        selector: Selector,
    },
}

impl Chainer {
    /// The chain to use for one connection; a group skips chains that
    /// failed recently, like a hop skips nodes.
    pub fn pick(&self, hash_key: Option<&str>) -> Option<Arc<Chain>> {
        match self {
            Chainer::Chain(c) => Some(c.clone()),
            Chainer::Group { chains, selector } => {
                let refs: Vec<&Arc<Chain>> = chains.iter().collect();
                let ctx = SelectContext {
                    hash_key,
                    ..Default::default()
                };
                selector
                    .select(&ctx, &refs)
                    .or_else(|| chains.first())
                    .cloned()
            }
        }
    }
}
