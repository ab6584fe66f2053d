//! Node health for the web API (not in GOST, which keeps it internal):
//! the chains, hops and forwarder nodes the running services hold, with
//! each node's failure count, whether its selector skips it now and until
//! when, and a chain group entry's latest probe.
//!
//! Each service builds its own copy of the chains it names, so failures
//! are counted per service, and the list is per service too. Only weak
//! references are kept: a service removed or rebuilt drops out of the
//! list with its objects, and holding the list costs them nothing.

use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value};

use super::selector::{Selectable, Selector, Strategy};
use super::{Chain, Chainer, Hop, Node};

/// What a service uses a chain or hop for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Use {
    /// The handler's chain or chain group.
    Handler,
    /// A reverse listener's chain or chain group.
    Listener,
    /// The forwarder's nodes.
    Forwarder,
}

impl Use {
    fn name(self) -> &'static str {
        match self {
            Use::Handler => "handler",
            Use::Listener => "listener",
            Use::Forwarder => "forwarder",
        }
    }
}

enum Watched {
    Chainer(Weak<Chainer>),
    Hop(Weak<Hop>),
}

struct Watch {
    service: String,
    used: Use,
    what: Watched,
}

impl Watch {
    fn alive(&self) -> bool {
        match &self.what {
            Watched::Chainer(w) => w.strong_count() > 0,
            Watched::Hop(w) => w.strong_count() > 0,
        }
    }
}

static WATCHED: LazyLock<Mutex<Vec<Watch>>> = LazyLock::new(Mutex::default);

fn add(service: &str, used: Use, what: Watched) {
    let mut list = WATCHED.lock().unwrap_or_else(|p| p.into_inner());
    list.retain(Watch::alive);
    list.push(Watch {
        service: service.to_string(),
        used,
        what,
    });
}

/// Lists `chainer` under `service` for as long as it lives.
pub fn watch_chainer(service: &str, used: Use, chainer: &Arc<Chainer>) {
    add(service, used, Watched::Chainer(Arc::downgrade(chainer)));
}

/// Lists a forwarder's hop under `service` for as long as it lives.
pub fn watch_forwarder(service: &str, hop: &Arc<Hop>) {
    add(service, Use::Forwarder, Watched::Hop(Arc::downgrade(hop)));
}

/// Every live service's chains and forwarder hops with their nodes'
/// health, sorted by service. While a service is being rebuilt its old
/// objects may live on with the connections they serve; only the newest of
/// a service's use is listed.
pub fn snapshot() -> Vec<Value> {
    let now = SystemTime::now();
    let live: Vec<(String, Use, Value)> = {
        let mut list = WATCHED.lock().unwrap_or_else(|p| p.into_inner());
        list.retain(Watch::alive);
        let mut seen = std::collections::HashSet::new();
        list.iter()
            .rev()
            .filter(|w| seen.insert((w.service.clone(), w.used)))
            .filter_map(|w| {
                let v = match &w.what {
                    Watched::Chainer(c) => chainer(c.upgrade()?.as_ref(), now),
                    Watched::Hop(h) => {
                        let h = h.upgrade()?;
                        json!({"hops": [hop(&h, now)]})
                    }
                };
                Some((w.service.clone(), w.used, v))
            })
            .collect()
    };
    let mut live = live;
    live.sort_by(|a, b| (&a.0, a.1.name()).cmp(&(&b.0, b.1.name())));
    live.into_iter()
        .map(|(service, used, mut v)| {
            v["service"] = json!(service);
            v["for"] = json!(used.name());
            v
        })
        .collect()
}

fn chainer(c: &Chainer, now: SystemTime) -> Value {
    match c {
        Chainer::Chain(ch) => json!({"chains": [chain(ch, None, now)]}),
        Chainer::Group { chains, selector } => {
            let list: Vec<Value> = chains
                .iter()
                .map(|e| {
                    let mut v = chain(&e.chain, Some((selector, e.as_ref())), now);
                    if let Some(p) = &e.probe {
                        let last = e
                            .probe_last
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .clone();
                        let mut probe = json!({
                            "type": p.type_name(),
                            "addr": p.addr,
                            "interval": p.interval.as_secs_f64(),
                            "fails": e.probe_marker.count(),
                        });
                        if let Some(o) = last {
                            probe["time"] = json!(unix_ms(o.at));
                            probe["ok"] = json!(o.error.is_none());
                            probe["latencyMs"] = json!(o.latency.as_millis() as u64);
                            if let Some(err) = o.error {
                                probe["error"] = json!(err);
                            }
                        }
                        v["probe"] = probe;
                    }
                    v
                })
                .collect();
            json!({"chains": list, "group": selector_facts(selector)})
        }
    }
}

/// A chain; in a group, whether the group's selector passes over it.
fn chain(c: &Chain, group: Option<(&Selector, &super::GroupEntry)>, now: SystemTime) -> Value {
    let mut v = json!({
        "name": c.name,
        "fails": c.marker.count(),
        "hops": c.hops.iter().map(|h| hop(h, now)).collect::<Vec<_>>(),
    });
    if let Some(ago) = c.marker.last_failure_ago() {
        v["lastFailure"] = json!(unix_ms(now - ago));
    }
    if let Some((sel, entry)) = group {
        let markers = std::iter::once(entry.marker()).chain(entry.probe_marker());
        let until = markers
            .filter(|m| m.is_failed(sel.max_fails, sel.fail_timeout))
            .filter_map(|m| m.last_failure_ago())
            .map(|ago| now - ago + sel.fail_timeout)
            .max();
        failed_until(&mut v, until);
    }
    v
}

fn hop(h: &Hop, now: SystemTime) -> Value {
    let mut v = selector_facts(&h.selector);
    v["name"] = json!(h.name);
    let loaded = h.loaded();
    let nodes: Vec<Value> = h
        .nodes
        .iter()
        .map(|n| node(n, &h.selector, false, now))
        .chain(loaded.iter().map(|n| node(n, &h.selector, true, now)))
        .collect();
    v["nodes"] = json!(nodes);
    v
}

fn node(n: &Node, sel: &Selector, loaded: bool, now: SystemTime) -> Value {
    let (max_fails, fail_timeout) = n.fail_settings();
    let fail_timeout = fail_timeout.unwrap_or(sel.fail_timeout);
    let mut v = json!({
        "name": n.name,
        "addr": n.addr,
        "fails": n.marker.count(),
    });
    let o = v.as_object_mut().expect("an object");
    if n.backup {
        o.insert("backup".into(), json!(true));
    }
    if loaded {
        o.insert("loaded".into(), json!(true));
    }
    if let Some(m) = max_fails {
        o.insert("maxFails".into(), json!(m));
    }
    if let Some(t) = n.fail_timeout {
        o.insert("failTimeout".into(), json!(t.as_secs_f64()));
    }
    let ago = n.marker.last_failure_ago();
    if let Some(ago) = ago {
        o.insert("lastFailure".into(), json!(unix_ms(now - ago)));
    }
    let until = ago
        .filter(|_| sel.is_failed(n))
        .map(|ago| now - ago + fail_timeout);
    failed_until(&mut v, until);
    v
}

/// `failed`, and `deadUntil` (Unix ms) while it is.
fn failed_until(v: &mut Value, until: Option<SystemTime>) {
    v["failed"] = json!(until.is_some());
    if let Some(t) = until {
        v["deadUntil"] = json!(unix_ms(t));
    }
}

fn selector_facts(s: &Selector) -> Value {
    let mut m = Map::new();
    m.insert("strategy".into(), json!(strategy_name(s.strategy)));
    m.insert("maxFails".into(), json!(s.max_fails));
    m.insert("failTimeout".into(), json!(s.fail_timeout.as_secs_f64()));
    Value::Object(m)
}

fn strategy_name(s: Strategy) -> &'static str {
    match s {
        Strategy::Round => "round",
        Strategy::Rand => "rand",
        Strategy::Fifo => "fifo",
        Strategy::Hash => "hash",
        Strategy::Parallel => "parallel",
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Marker;

    fn hop_of(nodes: &[&str]) -> Arc<Hop> {
        Arc::new(Hop {
            name: "h".into(),
            nodes: nodes
                .iter()
                .map(|n| {
                    Arc::new(Node {
                        name: n.to_string(),
                        addr: format!("{n}:1"),
                        ..Default::default()
                    })
                })
                .collect(),
            selector: Selector::new(Strategy::Fifo, 2, Duration::from_secs(30)),
            bypass: None,
            loader: None,
        })
    }

    fn mine(service: &str) -> Vec<Value> {
        snapshot()
            .into_iter()
            .filter(|v| v["service"] == service)
            .collect()
    }

    #[test]
    fn a_node_is_dead_after_max_fails_until_fail_timeout() {
        let hop = hop_of(&["a", "b"]);
        watch_forwarder("health-test-fails", &hop);
        hop.nodes[0].marker.mark();
        let list = mine("health-test-fails");
        assert_eq!(list.len(), 1);
        let a = &list[0]["hops"][0]["nodes"][0];
        assert_eq!(
            (a["fails"].as_u64(), a["failed"].as_bool()),
            (Some(1), Some(false))
        );
        assert!(a["lastFailure"].is_u64() && a.get("deadUntil").is_none());
        hop.nodes[0].marker.mark();
        let list = mine("health-test-fails");
        let a = &list[0]["hops"][0]["nodes"][0];
        assert_eq!(a["failed"].as_bool(), Some(true));
        let until = a["deadUntil"].as_u64().unwrap() - a["lastFailure"].as_u64().unwrap();
        assert_eq!(until, 30_000);
        assert_eq!(list[0]["hops"][0]["maxFails"], 2);
        assert_eq!(list[0]["hops"][0]["nodes"][1]["fails"], 0);
        assert_eq!(list[0]["for"], "forwarder");
    }

    #[test]
    fn a_dropped_object_leaves_the_list_and_the_newest_wins() {
        let old = hop_of(&["old"]);
        watch_forwarder("health-test-drop", &old);
        let new = hop_of(&["new"]);
        watch_forwarder("health-test-drop", &new);
        let list = mine("health-test-drop");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["hops"][0]["nodes"][0]["name"], "new");
        drop(new);
        assert_eq!(
            mine("health-test-drop")[0]["hops"][0]["nodes"][0]["name"],
            "old"
        );
        drop(old);
        assert!(mine("health-test-drop").is_empty());
    }

    #[test]
    fn a_group_entry_shows_its_probe_and_dead_mark() {
        let chain = Arc::new(Chain {
            name: "c".into(),
            hops: vec![hop_of(&["n"])],
            marker: Marker::default(),
            weight: 1,
            backup: false,
        });
        let entry = Arc::new(super::super::GroupEntry::new(chain, None, None));
        entry.probe_marker.mark();
        let group = Arc::new(Chainer::Group {
            chains: vec![entry],
            selector: Selector::new(Strategy::Fifo, 1, Duration::from_secs(5)),
        });
        watch_chainer("health-test-group", Use::Handler, &group);
        let list = mine("health-test-group");
        let c = &list[0]["chains"][0];
        assert_eq!(
            (c["name"].as_str(), c["failed"].as_bool()),
            (Some("c"), Some(true))
        );
        assert!(c["deadUntil"].is_u64());
        assert_eq!(list[0]["group"]["strategy"], "fifo");
        assert_eq!(c["hops"][0]["nodes"][0]["name"], "n");
    }
}
