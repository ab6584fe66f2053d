//! Picks the node with the lowest dial latency, learned from the host's
//! feedback as a moving average. A node not measured yet is tried first;
//! a failed dial counts as a very slow one, so traffic moves away from a
//! node that is down and comes back as other nodes slow down.

use std::cell::RefCell;

use gost_plugin_sdk::forwarder::{Node, RequestInfo, Selection};
use gost_plugin_sdk::Forwarder;

/// What a failed dial counts as, in microseconds.
const FAILED_US: f64 = 10_000_000.0;

thread_local! {
    /// Average dial latency per node index, `None` until measured.
    static LATENCY: RefCell<Vec<Option<f64>>> = const { RefCell::new(Vec::new()) };
}

struct LeastLatency;

impl Forwarder for LeastLatency {
    fn select(_req: RequestInfo, nodes: Vec<Node>) -> Selection {
        if nodes.is_empty() {
            return Selection::Reject("the hop has no nodes".into());
        }
        LATENCY.with_borrow_mut(|lat| {
            lat.resize(nodes.len(), None);
            let pick = lat.iter().position(Option::is_none).unwrap_or_else(|| {
                let mut best = 0;
                for (i, l) in lat.iter().enumerate() {
                    if l < &lat[best] {
                        best = i;
                    }
                }
                best
            });
            Selection::Node(pick as u32)
        })
    }

    fn feedback(node: u32, ok: bool, latency_us: u64) {
        let sample = if ok { latency_us as f64 } else { FAILED_US };
        LATENCY.with_borrow_mut(|lat| {
            if let Some(slot) = lat.get_mut(node as usize) {
                *slot = Some(match *slot {
                    None => sample,
                    Some(avg) => avg * 0.7 + sample * 0.3,
                });
            }
        });
    }
}

gost_plugin_sdk::export_forwarder!(LeastLatency);
