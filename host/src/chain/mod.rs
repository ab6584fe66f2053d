//! Chains, hops and nodes (GOST's `chain`, `hop` and `selector` packages).
//!
//! A hop is a set of nodes plus a selector; a forwarder is a hop whose nodes
//! are the forwarding targets. Only the forwarder's use of hops is wired so
//! far; chains of proxies come with the connectors.

pub mod node;
pub mod selector;

pub use node::{Marker, Node};
pub use selector::{Selector, Strategy};

use std::sync::Arc;

/// What a selector may use to pick a node for one connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct SelectContext<'a> {
    /// Hash source for the `hash` strategy: the client's IP, as GOST uses.
    pub hash_key: Option<&'a str>,
}

/// A set of nodes with a selection strategy.
#[derive(Debug)]
pub struct Hop {
    pub name: String,
    pub nodes: Vec<Arc<Node>>,
    pub selector: Selector,
}

impl Hop {
    /// Picks a node, skipping those that failed recently and any in
    /// `exclude` (nodes this connection already tried).
    pub fn select(&self, ctx: &SelectContext<'_>, exclude: &[Arc<Node>]) -> Option<Arc<Node>> {
        let candidates: Vec<&Arc<Node>> = self
            .nodes
            .iter()
            .filter(|n| !exclude.iter().any(|e| Arc::ptr_eq(e, n)))
            .collect();
        self.selector.select(ctx, &candidates).cloned()
    }
}
