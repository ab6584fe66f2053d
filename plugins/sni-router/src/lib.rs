//! Routes each connection by the host name the client asked for (TLS SNI
//! or HTTP `Host`, sniffed by the host) to a node of the hop, by rules
//! from the plugin's config:
//!
//! ```yaml
//! config:
//!   rules:
//!   - {host: a.example, node: a}      # exact name
//!   - {host: "*.b.example", node: b}  # any subdomain
//!   default: a                        # optional; otherwise unmatched are rejected
//! ```

use std::sync::OnceLock;

use gost_plugin_sdk::forwarder::{Node, RequestInfo, Selection};
use gost_plugin_sdk::{log, Forwarder, Level};
use serde_json::Value;

struct Rule {
    host: String,
    node: String,
}

struct Rules {
    rules: Vec<Rule>,
    default: Option<String>,
}

/// Parsed once per instance: the instance lives as long as the hop.
fn rules() -> &'static Result<Rules, String> {
    static RULES: OnceLock<Result<Rules, String>> = OnceLock::new();
    RULES.get_or_init(|| {
        let v: Value = serde_json::from_str(&gost_plugin_sdk::config_json())
            .map_err(|e| format!("config: {e}"))?;
        let mut rules = Vec::new();
        for (i, r) in v["rules"].as_array().into_iter().flatten().enumerate() {
            let (Some(host), Some(node)) = (r["host"].as_str(), r["node"].as_str()) else {
                return Err(format!("config.rules[{i}] needs host and node"));
            };
            rules.push(Rule {
                host: host.to_ascii_lowercase(),
                node: node.to_string(),
            });
        }
        Ok(Rules {
            rules,
            default: v["default"].as_str().map(str::to_string),
        })
    })
}

fn matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .is_some_and(|p| p.ends_with('.') && p.len() > 1),
        None => pattern == host,
    }
}

struct SniRouter;

impl Forwarder for SniRouter {
    fn select(req: RequestInfo, nodes: Vec<Node>) -> Selection {
        let rules = match rules() {
            Ok(r) => r,
            Err(e) => return Selection::Reject(e.clone()),
        };
        let host = req.host.to_ascii_lowercase();
        let wanted = rules
            .rules
            .iter()
            .find(|r| !host.is_empty() && matches(&r.host, &host))
            .map(|r| r.node.as_str())
            .or(rules.default.as_deref());
        let Some(name) = wanted else {
            return Selection::Reject(format!("no rule for host {host:?}"));
        };
        match nodes.iter().position(|n| n.name == name) {
            Some(i) => {
                log(Level::Debug, &format!("{host:?} -> node {name}"));
                Selection::Node(i as u32)
            }
            None => Selection::Reject(format!("rule names node {name:?}, which the hop lacks")),
        }
    }
}

gost_plugin_sdk::export_forwarder!(SniRouter);
