//! Bypass (GOST's `bypass`): decides per target address whether a chain
//! (for a hop or node bypass) or the service itself (for a service bypass)
//! leaves it alone. Rules are IP, CIDR, IP range, host, `.domain` and
//! wildcard patterns, inline and from a reloaded file; `whitelist` turns
//! the list into the set of targets that are *not* bypassed.

pub mod pattern;
pub mod rules;

use std::sync::Arc;

use crate::config::{BypassConfig, Config};
use crate::plugin::{Plugin, PluginError};
use pattern::PatternSet;
use rules::{RuleError, Rules};

#[derive(Debug, thiserror::Error)]
pub enum BypassError {
    #[error("bypass \"{0}\" not found")]
    NotFound(String),
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

#[derive(Debug)]
pub struct Bypass {
    pub name: String,
    pub whitelist: bool,
    /// Applies only to this network (`tcp`, `udp`) when set.
    pub network: String,
    source: Source,
}

/// GOST's bypass takes its plugin instead of rules when it has one.
#[derive(Debug)]
enum Source {
    Rules(Rules<PatternSet>),
    Plugin(Plugin),
}

impl Bypass {
    pub fn from_config(cfg: &BypassConfig) -> Result<Bypass, BypassError> {
        if let Some(p) = &cfg.plugin {
            // GOST's plugin bypass is never a whitelist and applies to
            // every network.
            return Ok(Bypass {
                name: cfg.name.clone(),
                whitelist: false,
                network: String::new(),
                source: Source::Plugin(Plugin::new("bypass", &cfg.name, p)?),
            });
        }
        let owner = format!("bypass \"{}\"", cfg.name);
        let file = cfg.file.as_ref().map(|f| f.path.as_str());
        Ok(Bypass {
            name: cfg.name.clone(),
            whitelist: cfg.whitelist || cfg.reverse,
            network: cfg.network.clone(),
            source: Source::Rules(
                Rules::new(
                    &owner,
                    "matchers",
                    &cfg.matchers,
                    file,
                    cfg.reload.0,
                    PatternSet::parse,
                )?
                .with_loaders(
                    cfg.redis.as_ref(),
                    cfg.http.as_ref(),
                    crate::loader::RedisKind::Set,
                    cfg.reload.0,
                )?,
            ),
        })
    }

    pub fn is_plugin(&self) -> bool {
        matches!(self.source, Source::Plugin(_))
    }

    /// Whether `addr` (`host:port`) over `network` is bypassed by the
    /// rules. The decision and the rule that made it are logged at debug
    /// level. A plugin bypass is asked with [`BypassGroup::check`] only,
    /// and where a sync answer is needed it is refused when the config is
    /// built.
    pub fn contains(&self, network: &str, addr: &str) -> bool {
        if !self.network.is_empty() && self.network != network {
            return false;
        }
        let Source::Rules(rules) = &self.source else {
            return false;
        };
        let set = rules.current();
        if set.0.is_empty() {
            // GOST: a network-only bypass takes all of that network.
            return !self.network.is_empty() && !self.whitelist;
        }
        let hit = set.find(addr);
        let bypassed = hit.is_some() != self.whitelist;
        match hit {
            Some(p) => tracing::debug!(
                bypass = %self.name, addr, rule = %p.line.text, at = %p.line.at,
                whitelist = self.whitelist,
                "{}", if bypassed { "bypass" } else { "proxy" }
            ),
            None => tracing::debug!(
                bypass = %self.name, addr, whitelist = self.whitelist,
                "{} (no rule matched)", if bypassed { "bypass" } else { "proxy" }
            ),
        }
        bypassed
    }
}

/// Several bypasses as one (GOST's `BypassGroup`): bypassed when every
/// whitelist bypasses the target, or any blacklist does.
#[derive(Debug)]
pub struct BypassGroup(pub Vec<Arc<Bypass>>);

impl BypassGroup {
    pub fn contains(&self, network: &str, addr: &str) -> bool {
        let mut whitelists = self.0.iter().filter(|b| b.whitelist).peekable();
        if whitelists.peek().is_some() && whitelists.all(|b| b.contains(network, addr)) {
            return true;
        }
        self.0
            .iter()
            .filter(|b| !b.whitelist)
            .any(|b| b.contains(network, addr))
    }

    pub fn has_plugin(&self) -> bool {
        self.0.iter().any(|b| b.is_plugin())
    }

    /// [`BypassGroup::contains`], with each plugin asked as GOST's
    /// `bypass/plugin` asks it (`{service, network, addr, client,
    /// host, path}`, `ok` true bypasses). A failed call bypasses, as in
    /// GOST (its client fails open).
    pub async fn check(&self, service: &str, network: &str, addr: &str) -> bool {
        if self.contains(network, addr) {
            return true;
        }
        for b in &self.0 {
            let Source::Plugin(p) = &b.source else {
                continue;
            };
            let req = gost_proto::plugin::BypassRequest {
                service: service.to_string(),
                network: network.to_string(),
                addr: addr.to_string(),
                ..Default::default()
            };
            let bypassed = p.call(req, "bypassed").await.map_or(true, |a| a.ok);
            tracing::debug!(bypass = %b.name, addr = %crate::escape::esc(addr), bypassed, "plugin");
            if bypassed {
                return true;
            }
        }
        false
    }
}

/// The group named by a `bypass` field and a `bypasses` list, or `None`
/// when both are empty.
pub fn group(
    root: &Config,
    one: &str,
    many: &[String],
) -> Result<Option<Arc<BypassGroup>>, BypassError> {
    let names: Vec<&str> = std::iter::once(one)
        .chain(many.iter().map(String::as_str))
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let cfg = root
            .bypasses
            .iter()
            .find(|b| b.name == name)
            .ok_or_else(|| BypassError::NotFound(name.to_string()))?;
        out.push(Arc::new(Bypass::from_config(cfg)?));
    }
    Ok(Some(Arc::new(BypassGroup(out))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bypass(matchers: &[&str], whitelist: bool) -> Arc<Bypass> {
        Arc::new(
            Bypass::from_config(&BypassConfig {
                name: "b".into(),
                whitelist,
                matchers: matchers.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            })
            .unwrap(),
        )
    }

    #[test]
    fn blacklist_and_whitelist() {
        let black = bypass(&["10.0.0.0/8", "*.lan"], false);
        assert!(black.contains("tcp", "10.1.1.1:80"));
        assert!(black.contains("tcp", "nas.lan:443"));
        assert!(!black.contains("tcp", "8.8.8.8:53"));
        let white = bypass(&["example.com"], true);
        assert!(!white.contains("tcp", "example.com:80"));
        assert!(white.contains("tcp", "other.org:80"));
    }

    #[test]
    fn group_needs_every_whitelist_or_any_blacklist() {
        let g = BypassGroup(vec![
            bypass(&["a.com", "b.com"], true),
            bypass(&["a.com"], true),
            bypass(&["10.0.0.1"], false),
        ]);
        assert!(!g.contains("tcp", "a.com:1"));
        assert!(g.contains("tcp", "c.com:1"));
        // b.com is proxied by the first whitelist: not all of them bypass.
        assert!(!g.contains("tcp", "b.com:1"));
        assert!(g.contains("tcp", "10.0.0.1:1"));
    }

    #[test]
    fn file_rules_reload_and_name_bad_lines() {
        let dir = std::env::temp_dir().join(format!("gost-bypass-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rules.txt");
        std::fs::write(&path, "# comment\n10.0.0.0/8\n\n192.168.0.0/33 # typo\n").unwrap();
        let cfg = BypassConfig {
            name: "f".into(),
            file: Some(crate::config::FileLoader {
                path: path.display().to_string(),
            }),
            reload: crate::config::Duration(std::time::Duration::from_secs(1)),
            ..Default::default()
        };
        let err = Bypass::from_config(&cfg).unwrap_err().to_string();
        assert!(
            err.ends_with("rules.txt:4: invalid CIDR \"192.168.0.0/33\""),
            "{err}"
        );

        std::fs::write(&path, "10.0.0.0/8\n").unwrap();
        let b = Bypass::from_config(&cfg).unwrap();
        assert!(b.contains("tcp", "10.0.0.1:1"));
        assert!(!b.contains("tcp", "172.16.0.1:1"));
        std::fs::write(&path, "172.16.0.0/12\n").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(b.contains("tcp", "172.16.0.1:1"));
        // A broken file on reload keeps the rules that worked.
        std::fs::write(&path, "not/a/cidr\n").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(b.contains("tcp", "172.16.0.1:1"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
