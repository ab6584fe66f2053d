//! Hosts (GOST's `hosts`): static name-to-IP mappings, inline and from a
//! reloaded file in /etc/hosts format, consulted before any resolver.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::bypass::rules::{Line, RuleError, Rules};
use crate::config::{Config, HostsConfig};
use crate::plugin::{Plugin, PluginError};

#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("hosts \"{0}\" not found")]
    NotFound(String),
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

/// Lower-case host name (or `.domain`, or `.` for every name) to IPs, and
/// where each entry was written.
#[derive(Debug, Default)]
pub struct Table(HashMap<String, (Vec<IpAddr>, String)>);

impl Table {
    /// `IP name [alias...]` per line; a bad IP or a line with no name is an
    /// error naming the line.
    fn parse(lines: &[Line]) -> Result<Table, RuleError> {
        let mut map: HashMap<String, (Vec<IpAddr>, String)> = HashMap::new();
        for l in lines {
            let mut parts = l.text.split_whitespace();
            let ip = parts.next().unwrap_or_default();
            let ip: IpAddr = ip.parse().map_err(|_| RuleError {
                at: l.at.clone(),
                msg: format!("invalid IP {ip:?}"),
            })?;
            let mut named = false;
            for name in parts {
                named = true;
                let e = map
                    .entry(name.to_ascii_lowercase())
                    .or_insert_with(|| (Vec::new(), l.at.clone()));
                e.0.push(ip);
            }
            if !named {
                return Err(RuleError {
                    at: l.at.clone(),
                    msg: format!("{:?} has no host name", l.text),
                });
            }
        }
        Ok(Table(map))
    }

    /// GOST's lookup order: the name, `.name`, each parent `.domain`, then
    /// `.` (every name).
    fn lookup(&self, host: &str) -> Option<&(Vec<IpAddr>, String)> {
        let host = host.to_ascii_lowercase();
        if let Some(v) = self
            .0
            .get(&host)
            .or_else(|| self.0.get(&format!(".{host}")))
        {
            return Some(v);
        }
        let mut rest = host.as_str();
        while let Some(i) = rest.find('.').filter(|i| *i > 0) {
            if let Some(v) = self.0.get(&rest[i..]) {
                return Some(v);
            }
            rest = &rest[i + 1..];
        }
        self.0.get(".")
    }
}

#[derive(Debug)]
pub struct Hosts {
    pub name: String,
    source: Source,
}

/// GOST's hosts takes its plugin instead of mappings when it has one.
#[derive(Debug)]
enum Source {
    Rules(Rules<Table>),
    Plugin(Plugin),
}

impl Hosts {
    pub fn from_config(cfg: &HostsConfig) -> Result<Hosts, HostsError> {
        if let Some(p) = &cfg.plugin {
            return Ok(Hosts {
                name: cfg.name.clone(),
                source: Source::Plugin(Plugin::new("hosts", &cfg.name, p)?),
            });
        }
        let inline: Vec<String> = cfg
            .mappings
            .iter()
            .map(|m| {
                let mut line = format!("{} {}", m.ip, m.hostname);
                for a in &m.aliases {
                    line.push(' ');
                    line.push_str(a);
                }
                line
            })
            .collect();
        let owner = format!("hosts \"{}\"", cfg.name);
        let file = cfg.file.as_ref().map(|f| f.path.as_str());
        Ok(Hosts {
            name: cfg.name.clone(),
            source: Source::Rules(
                Rules::new(
                    &owner,
                    "mappings",
                    &inline,
                    file,
                    cfg.reload.0,
                    Table::parse,
                )?
                .with_loaders(
                    cfg.redis.as_ref(),
                    cfg.http.as_ref(),
                    crate::loader::RedisKind::set_or_list(cfg.redis.as_ref()),
                    cfg.reload.0,
                )?,
            ),
        })
    }

    /// The IPs mapped to `host`, filtered to one family for `ip4`/`ip6`.
    /// A plugin is asked as GOST's `hosts/plugin/http.go` asks it, with
    /// `{network, host, client}`; a failed call maps nothing (the resolver
    /// is asked next), as in GOST.
    pub async fn lookup(&self, network: &str, host: &str) -> Vec<IpAddr> {
        let rules = match &self.source {
            Source::Rules(rules) => rules,
            Source::Plugin(p) => {
                let req = gost_proto::plugin::LookupRequest {
                    network: network.to_string(),
                    host: host.to_string(),
                    client: String::new(),
                };
                return plugin_ips(p.call(req, "not mapped").await);
            }
        };
        let table = rules.current();
        let Some((ips, at)) = table.lookup(host) else {
            return Vec::new();
        };
        let ips: Vec<IpAddr> = ips
            .iter()
            .copied()
            .filter(|ip| match network {
                "ip4" => ip.is_ipv4(),
                "ip6" => ip.is_ipv6(),
                _ => true,
            })
            .collect();
        if !ips.is_empty() {
            tracing::debug!(hosts = %self.name, host, ?ips, at = %at, "host mapper");
        }
        ips
    }
}

/// The answer of a hosts or resolver plugin, which are the same: `ok`
/// false or a failed call gives no addresses, and entries that are not IPs
/// are skipped.
pub(crate) fn plugin_ips(
    answer: Result<gost_proto::plugin::LookupReply, crate::plugin::CallError>,
) -> Vec<IpAddr> {
    match answer {
        Ok(a) if a.ok => a.ips.iter().filter_map(|s| s.parse().ok()).collect(),
        _ => Vec::new(),
    }
}

pub fn find(root: &Config, name: &str) -> Result<Option<Arc<Hosts>>, HostsError> {
    if name.is_empty() {
        return Ok(None);
    }
    let cfg = root
        .hosts
        .iter()
        .find(|h| h.name == name)
        .ok_or_else(|| HostsError::NotFound(name.to_string()))?;
    Ok(Some(Arc::new(Hosts::from_config(cfg)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HostMappingConfig;

    fn hosts(maps: &[(&str, &str, &[&str])]) -> Result<Hosts, HostsError> {
        Hosts::from_config(&HostsConfig {
            name: "h".into(),
            mappings: maps
                .iter()
                .map(|(ip, h, a)| HostMappingConfig {
                    ip: ip.to_string(),
                    hostname: h.to_string(),
                    aliases: a.iter().map(|s| s.to_string()).collect(),
                })
                .collect(),
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn exact_alias_domain_and_family() {
        let h = hosts(&[
            ("10.0.0.1", "example.com", &["www.example.com"]),
            ("::1", "example.com", &[]),
            ("10.0.0.9", ".lan", &[]),
        ])
        .unwrap();
        assert_eq!(h.lookup("ip", "EXAMPLE.com").await.len(), 2);
        assert_eq!(
            h.lookup("ip4", "example.com").await,
            ["10.0.0.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            h.lookup("ip6", "example.com").await,
            ["::1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(h.lookup("ip", "www.example.com").await.len(), 1);
        assert_eq!(
            h.lookup("ip", "nas.lan").await,
            ["10.0.0.9".parse::<IpAddr>().unwrap()]
        );
        assert!(h.lookup("ip", "other.org").await.is_empty());
    }

    #[test]
    fn bad_ip_is_named() {
        let e = hosts(&[("10.0.0.1", "a", &[]), ("10.0.0", "b", &[])])
            .unwrap_err()
            .to_string();
        assert_eq!(e, "hosts \"h\": mappings[1]: invalid IP \"10.0.0\"");
    }
}
