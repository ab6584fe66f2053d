//! Admission (GOST's `admission`): which client addresses a service
//! accepts, checked as soon as a connection is accepted. Rules are IP,
//! CIDR and IP-range patterns, inline and from a reloaded file; by default
//! they deny, with `whitelist` they are the only addresses let in.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::plugin::{Plugin, PluginError};

use crate::bypass::pattern::PatternSet;
use crate::bypass::rules::{Line, RuleError, Rules};
use crate::config::{AdmissionConfig, Config};

#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("admission \"{0}\" not found")]
    NotFound(String),
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

#[derive(Debug)]
pub struct Admission {
    pub name: String,
    pub whitelist: bool,
    source: Source,
}

/// GOST's admission takes its plugin instead of rules when it has one.
#[derive(Debug)]
enum Source {
    Rules(Rules<PatternSet>),
    Plugin(Plugin),
}

/// Client addresses are IPs, so a rule must be one too; a host name would
/// never match and is refused rather than silently ignored.
fn parse_ip_rules(lines: &[Line]) -> Result<PatternSet, RuleError> {
    for l in lines {
        let t = l.text.as_str();
        let ip_like = t.parse::<IpAddr>().is_ok()
            || t.contains('/')
            || t.split_once('-')
                .is_some_and(|(a, b)| a.parse::<IpAddr>().is_ok() && b.parse::<IpAddr>().is_ok());
        if !ip_like {
            return Err(RuleError {
                at: l.at.clone(),
                msg: format!("{t:?} is not an IP, CIDR or IP range"),
            });
        }
    }
    PatternSet::parse(lines)
}

impl Admission {
    pub fn from_config(cfg: &AdmissionConfig) -> Result<Admission, AdmissionError> {
        if let Some(p) = &cfg.plugin {
            return Ok(Admission {
                name: cfg.name.clone(),
                whitelist: false,
                source: Source::Plugin(Plugin::new("admission", &cfg.name, p)?),
            });
        }
        let owner = format!("admission \"{}\"", cfg.name);
        let file = cfg.file.as_ref().map(|f| f.path.as_str());
        Ok(Admission {
            name: cfg.name.clone(),
            whitelist: cfg.whitelist || cfg.reverse,
            source: Source::Rules(
                Rules::new(
                    &owner,
                    "matchers",
                    &cfg.matchers,
                    file,
                    cfg.reload.0,
                    parse_ip_rules,
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

    /// Whether the client at `ip` may connect by the rules; a refusal is
    /// logged at debug level with the rule that made it. A plugin
    /// admission is asked with [`AdmissionGroup::check`] only.
    pub fn admit(&self, ip: IpAddr) -> bool {
        let Source::Rules(rules) = &self.source else {
            return false;
        };
        let set = rules.current();
        let addr = ip.to_string();
        let hit = set.find(&addr);
        let admitted = hit.is_some() == self.whitelist;
        if !admitted {
            match hit {
                Some(p) => {
                    tracing::debug!(admission = %self.name, client = %ip, rule = %p.line.text, at = %p.line.at, "denied")
                }
                None => {
                    tracing::debug!(admission = %self.name, client = %ip, whitelist = true, "denied (not listed)")
                }
            }
        }
        admitted
    }
}

/// The service's admissions: a client must pass every one (GOST's
/// `AdmissionGroup`).
#[derive(Debug)]
pub struct AdmissionGroup(pub Vec<Admission>);

impl AdmissionGroup {
    pub fn admit(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.0.iter().all(|a| a.admit(ip))
    }

    pub fn has_plugin(&self) -> bool {
        self.0.iter().any(Admission::is_plugin)
    }

    /// Whether the client at `client` may connect to `service` (over TCP,
    /// the only network GOST admits): the rules, then each plugin, which
    /// GOST's `admission/plugin` asks with `{service, network, addr}`; a
    /// failed call denies, as in GOST.
    pub async fn check(&self, service: &str, client: SocketAddr) -> bool {
        let ip = match client.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(client.ip()),
            v4 => v4,
        };
        for a in &self.0 {
            let ok = match &a.source {
                Source::Rules(_) => a.admit(ip),
                Source::Plugin(p) => {
                    let req = gost_proto::plugin::AdmissionRequest {
                        service: service.to_string(),
                        addr: client.to_string(),
                    };
                    p.call(req, "denied").await.is_ok_and(|a| a.ok)
                }
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

/// The group named by a service's `admission` and `admissions`, or `None`.
pub fn group(
    root: &Config,
    one: &str,
    many: &[String],
) -> Result<Option<Arc<AdmissionGroup>>, AdmissionError> {
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
            .admissions
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| AdmissionError::NotFound(name.to_string()))?;
        out.push(Admission::from_config(cfg)?);
    }
    Ok(Some(Arc::new(AdmissionGroup(out))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adm(matchers: &[&str], whitelist: bool) -> Result<Admission, AdmissionError> {
        Admission::from_config(&AdmissionConfig {
            name: "a".into(),
            whitelist,
            matchers: matchers.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
    }

    #[test]
    fn deny_list_and_whitelist() {
        let deny = adm(&["127.0.0.2", "10.0.0.0/8"], false).unwrap();
        assert!(!deny.admit("127.0.0.2".parse().unwrap()));
        assert!(!deny.admit("10.9.9.9".parse().unwrap()));
        assert!(deny.admit("127.0.0.1".parse().unwrap()));
        let allow = adm(&["192.168.0.0/16"], true).unwrap();
        assert!(allow.admit("192.168.3.4".parse().unwrap()));
        assert!(!allow.admit("127.0.0.1".parse().unwrap()));
        let g = AdmissionGroup(vec![deny]);
        assert!(!g.admit("::ffff:127.0.0.2".parse().unwrap()));
    }

    #[test]
    fn host_names_are_refused_with_their_place() {
        let e = adm(&["127.0.0.1", "example.com"], false)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "admission \"a\": matchers[1]: \"example.com\" is not an IP, CIDR or IP range"
        );
    }
}
