//! Builds a service's chain or chain group from the config (GOST's
//! `config/parsing/chain` and `hop`).

use crate::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

use super::loader::NodeLoader;
use super::node::NodeError;
use super::probe::Probe;
use super::{Chain, Chainer, GroupEntry, Hop, Node, Selector, Strategy};
use gost_core::config::{
    ChainConfig, Config, HandlerConfig, HopConfig, NodeConfig, SelectorConfig,
};

#[derive(Debug, thiserror::Error)]
pub enum ChainBuildError {
    #[error("{what} \"{name}\" not found")]
    NotFound { what: &'static str, name: String },
    #[error("{owner}: {source}")]
    Node { owner: String, source: NodeError },
    #[error("{owner}: selector strategy '{strategy}' is not supported (round, rand, fifo, hash, parallel)")]
    Strategy { owner: String, strategy: String },
    #[error("{owner}: {msg}")]
    Invalid { owner: String, msg: String },
    #[error("{owner}: {source}")]
    Bypass {
        owner: String,
        source: gost_core::bypass::BypassError,
    },
    #[error("{owner}: {msg}")]
    Lookup { owner: String, msg: String },
    /// A hop or node picks its nodes synchronously; a plugin bypass is
    /// asked per dial only at the service.
    #[error(
        "{owner}: a bypass with a plugin is supported on services only, not on hops and nodes yet"
    )]
    PluginBypass { owner: String },
}

/// The selector a `selector:` block describes; GOST's default is round
/// robin with one failure allowed per 10 s.
pub fn selector(owner: &str, cfg: Option<&SelectorConfig>) -> Result<Selector, ChainBuildError> {
    let Some(cfg) = cfg else {
        return Ok(Selector::new(Strategy::Round, 0, Duration::ZERO));
    };
    let strategy = Strategy::parse(&cfg.strategy).ok_or_else(|| ChainBuildError::Strategy {
        owner: owner.to_string(),
        strategy: cfg.strategy.clone(),
    })?;
    Ok(Selector::new(
        strategy,
        cfg.max_fails.max(0) as u64,
        cfg.fail_timeout.0,
    ))
}

/// What the handler dials through, or `None` to dial directly. A named
/// `chain` wins over a `chainGroup`, as in GOST.
pub fn chainer(
    root: &Config,
    h: &HandlerConfig,
    reg: &'static Registry,
) -> Result<Option<Chainer>, ChainBuildError> {
    if !h.chain.is_empty() {
        return Ok(Some(Chainer::Chain(Arc::new(chain(root, &h.chain, reg)?))));
    }
    let Some(group) = h.chain_group.as_ref().filter(|g| !g.chains.is_empty()) else {
        return Ok(None);
    };
    let mut chains = Vec::with_capacity(group.chains.len());
    for entry in &group.chains {
        let owner = || format!("chainGroup chain \"{}\"", entry.chain);
        let probe = entry
            .probe
            .as_ref()
            .map(Probe::from_config)
            .transpose()
            .map_err(|msg| ChainBuildError::Invalid {
                owner: owner(),
                msg,
            })?;
        let rule = entry.matcher.as_ref().map_or("", |m| m.rule.trim());
        let matcher = if rule.is_empty() {
            None
        } else {
            Some(gost_core::routing::Matcher::new(rule, root).map_err(|e| {
                ChainBuildError::Invalid {
                    owner: owner(),
                    msg: format!("matcher {e}"),
                }
            })?)
        };
        chains.push(Arc::new(GroupEntry::new(
            Arc::new(chain(root, &entry.chain, reg)?),
            matcher,
            probe,
        )));
    }
    // Only once the whole group is built: a group refused half-way
    // leaves no probe running.
    chains.iter().for_each(|e| super::probe::start(e));
    Ok(Some(Chainer::Group {
        chains,
        selector: selector("chainGroup", group.selector.as_ref())?,
    }))
}

fn chain(root: &Config, name: &str, reg: &'static Registry) -> Result<Chain, ChainBuildError> {
    let cfg: &ChainConfig =
        root.chains
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| ChainBuildError::NotFound {
                what: "chain",
                name: name.to_string(),
            })?;
    let owner = format!("chain \"{name}\"");
    let md_err = |e| ChainBuildError::Invalid {
        owner: owner.clone(),
        msg: format!("{e}"),
    };
    let mut hops = Vec::with_capacity(cfg.hops.len());
    for hop_cfg in &cfg.hops {
        // A bare hop names a top-level hop.
        let hop_cfg = if hop_cfg.nodes.is_empty() && hop_cfg.plugin.is_none() {
            root.hops
                .iter()
                .find(|h| h.name == hop_cfg.name)
                .ok_or_else(|| ChainBuildError::NotFound {
                    what: "hop",
                    name: hop_cfg.name.clone(),
                })?
        } else {
            hop_cfg
        };
        hops.push(Arc::new(hop(root, &owner, hop_cfg, reg)?));
    }
    if hops.is_empty() {
        return Err(ChainBuildError::Invalid {
            owner,
            msg: "no hops".into(),
        });
    }
    Ok(Chain {
        name: name.to_string(),
        hops,
        marker: Default::default(),
        weight: cfg
            .metadata
            .get_int("weight")
            .map_err(md_err)?
            .map(|w| w.clamp(1, u32::MAX as i64) as u32)
            .unwrap_or(1),
        backup: cfg
            .metadata
            .get_bool("backup")
            .map_err(md_err)?
            .unwrap_or(false),
    })
}

fn bypass(
    root: &Config,
    owner: &str,
    one: &str,
    many: &[String],
) -> Result<Option<Arc<gost_core::bypass::BypassGroup>>, ChainBuildError> {
    let group =
        gost_core::bypass::group(root, one, many).map_err(|source| ChainBuildError::Bypass {
            owner: owner.to_string(),
            source,
        })?;
    if group.as_ref().is_some_and(|g| g.has_plugin()) {
        return Err(ChainBuildError::PluginBypass {
            owner: owner.to_string(),
        });
    }
    Ok(group)
}

fn hop(
    root: &Config,
    chain_owner: &str,
    cfg: &HopConfig,
    reg: &'static Registry,
) -> Result<Hop, ChainBuildError> {
    let owner = format!("{chain_owner}: hop \"{}\"", cfg.name);
    let path = cfg
        .file
        .as_ref()
        .map(|f| f.path.as_str())
        .filter(|p| !p.is_empty());
    let invalid = |msg: String| ChainBuildError::Invalid {
        owner: owner.clone(),
        msg,
    };
    let remote = gost_core::loader::Source::from_config(
        cfg.redis.as_ref(),
        cfg.http.as_ref(),
        gost_core::loader::RedisKind::String,
    )
    .map_err(invalid)?;
    let loader = if path.is_some() || remote.is_some() {
        Some(
            NodeLoader::new(&owner, path, remote, cfg.reload.0, {
                let (root, hop, owner) = (Arc::new(root.clone()), cfg.clone(), owner.clone());
                Box::new(move |n| node(&root, &hop, &owner, n, reg).map_err(|e| e.to_string()))
            })
            .map_err(invalid)?,
        )
    } else {
        None
    };
    if cfg.nodes.is_empty() && loader.is_none() {
        return Err(ChainBuildError::Invalid {
            owner,
            msg: "no nodes".into(),
        });
    }
    let mut nodes = Vec::with_capacity(cfg.nodes.len());
    for n in &cfg.nodes {
        nodes.push(Arc::new(node(root, cfg, &owner, n, reg)?));
    }
    Ok(Hop {
        name: cfg.name.clone(),
        nodes,
        selector: selector(&owner, cfg.selector.as_ref())?,
        bypass: bypass(root, &owner, &cfg.bypass, &cfg.bypasses)?,
        loader,
    })
}

/// One chain node with its bypass, and its hosts and resolver (the
/// node's own, else the hop's).
fn node(
    root: &Config,
    cfg: &HopConfig,
    owner: &str,
    n: &NodeConfig,
    reg: &'static Registry,
) -> Result<Node, ChainBuildError> {
    let mut node =
        Node::from_node_config(n, root, reg).map_err(|source| ChainBuildError::Node {
            owner: owner.to_string(),
            source,
        })?;
    let node_owner = format!("{owner}: node \"{}\"", n.name);
    node.bypass = bypass(root, &node_owner, &n.bypass, &n.bypasses)?;
    let lookup = |msg: String| ChainBuildError::Lookup {
        owner: node_owner.clone(),
        msg,
    };
    let hosts_name = if n.hosts.is_empty() {
        &cfg.hosts
    } else {
        &n.hosts
    };
    node.hosts = gost_core::hosts::find(root, hosts_name).map_err(|e| lookup(e.to_string()))?;
    let resolver_name = if n.resolver.is_empty() {
        &cfg.resolver
    } else {
        &n.resolver
    };
    node.resolver =
        gost_core::resolver::find(root, resolver_name).map_err(|e| lookup(e.to_string()))?;
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Config {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn chain_with_inline_and_named_hops() {
        let cfg = load(
            r#"
services: [{name: s, addr: ":0", handler: {type: http, chain: c}}]
chains:
- name: c
  hops:
  - name: h0
    nodes: [{name: a, addr: "127.0.0.1:1", connector: {type: socks5}}]
  - name: top
hops:
- name: top
  selector: {strategy: fifo}
  nodes:
  - {name: b, addr: "127.0.0.1:2", filter: {host: .example.com}}
  - {name: c, addr: "127.0.0.1:3"}
"#,
        );
        let ch = chainer(
            &cfg,
            cfg.services[0].handler.as_ref().unwrap(),
            crate::registry::Registry::builtin(),
        )
        .unwrap()
        .unwrap();
        let Chainer::Chain(c) = ch else { panic!() };
        let names = |host: &str| -> Vec<String> {
            c.route(&format!("{host}:80"), host, None)
                .nodes
                .iter()
                .map(|n| n.name.clone())
                .collect()
        };
        assert_eq!(names("www.example.com"), ["a", "b"]);
        assert_eq!(names("other.org"), ["a", "c"]);
        assert_eq!(
            c.hops[0].nodes[0].connector.as_ref().unwrap().name(),
            "socks5"
        );
        assert_eq!(
            c.hops[1].nodes[1].connector.as_ref().unwrap().name(),
            "http"
        );
    }

    #[test]
    fn bad_inputs_are_named() {
        let cfg = load(
            r#"
chains:
- {name: c, hops: [{name: h, nodes: [{name: n, addr: "x:1", dialer: {type: kcp}}]}]}
- {name: d, hops: [{name: h, selector: {strategy: best}, nodes: [{name: n, addr: "x:1"}]}]}
- {name: e, hops: [{name: missing}]}
"#,
        );
        let h = |c: &str| HandlerConfig {
            chain: c.into(),
            ..Default::default()
        };
        let err = chainer(&cfg, &h("c"), crate::registry::Registry::builtin())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("node \"n\"") && err.contains("dialer type 'kcp'"),
            "{err}"
        );
        let err = chainer(&cfg, &h("d"), crate::registry::Registry::builtin())
            .unwrap_err()
            .to_string();
        assert!(err.contains("strategy 'best'"), "{err}");
        let err = chainer(&cfg, &h("e"), crate::registry::Registry::builtin())
            .unwrap_err()
            .to_string();
        assert_eq!(err, "hop \"missing\" not found");
        let err = chainer(&cfg, &h("nope"), crate::registry::Registry::builtin())
            .unwrap_err()
            .to_string();
        assert_eq!(err, "chain \"nope\" not found");
    }

    #[test]
    fn hash_strategy_keeps_a_key_on_one_node() {
        let cfg = load(
            r#"
chains:
- name: c
  hops:
  - name: h
    selector: {strategy: hash}
    nodes: [{name: a, addr: "127.0.0.1:1"}, {name: b, addr: "127.0.0.1:2"}, {name: c, addr: "127.0.0.1:3"}]
"#,
        );
        let h = HandlerConfig {
            chain: "c".into(),
            ..Default::default()
        };
        let Some(Chainer::Chain(c)) =
            chainer(&cfg, &h, crate::registry::Registry::builtin()).unwrap()
        else {
            panic!()
        };
        let pick = |key: &str| c.route("t:1", "t", Some(key)).nodes[0].name.clone();
        for key in ["10.0.0.1", "10.0.0.2", "example.com:443"] {
            let first = pick(key);
            assert!((0..5).all(|_| pick(key) == first), "{key}");
        }
    }

    #[test]
    fn dead_node_is_skipped_until_fail_timeout() {
        let cfg = load(
            r#"
chains:
- name: c
  hops:
  - name: h
    selector: {strategy: round, maxFails: 1, failTimeout: 60s}
    nodes: [{name: a, addr: "127.0.0.1:1"}, {name: b, addr: "127.0.0.1:2"}]
"#,
        );
        let h = HandlerConfig {
            chain: "c".into(),
            ..Default::default()
        };
        let Some(Chainer::Chain(c)) =
            chainer(&cfg, &h, crate::registry::Registry::builtin()).unwrap()
        else {
            panic!()
        };
        c.hops[0].nodes[0].marker.mark();
        for _ in 0..4 {
            assert_eq!(c.route("t:1", "t", None).nodes[0].name, "b");
        }
        // Every node failed: the hop still yields one (last resort).
        c.hops[0].nodes[1].marker.mark();
        assert_eq!(c.route("t:1", "t", None).nodes.len(), 1);
    }

    #[test]
    fn bad_probe_is_refused_naming_the_entry() {
        let cfg = load(
            r#"
chains:
- {name: a, hops: [{name: h, nodes: [{name: n, addr: "127.0.0.1:1"}]}]}
- {name: b, hops: [{name: h, nodes: [{name: n, addr: "127.0.0.1:2"}]}]}
"#,
        );
        let group = |yaml: &str| HandlerConfig {
            chain_group: Some(serde_yaml::from_str(yaml).unwrap()),
            ..Default::default()
        };
        let err = chainer(
            &cfg,
            &group("{chains: [a, {chain: b, probe: {type: ping, addr: 'x:1'}}]}"),
            crate::registry::Registry::builtin(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "chainGroup chain \"b\": probe type 'ping' is not supported (tcp, http, cmd)"
        );
        let err = chainer(
            &cfg,
            &group("{chains: [{chain: a, probe: {type: cmd}}]}"),
            crate::registry::Registry::builtin(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "chainGroup chain \"a\": probe type cmd needs a command"
        );
        let ok = chainer(
            &cfg,
            &group("{chains: [{chain: a, probe: {type: http, addr: 'x:80'}}, b]}"),
            crate::registry::Registry::builtin(),
        )
        .unwrap()
        .unwrap();
        let Chainer::Group { chains, .. } = ok else {
            panic!()
        };
        assert!(chains[0].probe.is_some() && chains[1].probe.is_none());
    }
}
