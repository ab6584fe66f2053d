//! GOST's ingress (`x/ingress`): rules from a host name to a tunnel id,
//! which the tunnel handler and its entry point use to pick the tunnel a
//! visitor reaches.
//!
//! As in GOST, a rule `*.example.com` (or `.example.com`) matches every
//! name under `example.com` and `example.com` itself; a rule for an exact
//! name wins over a wildcard, and a nearer wildcard over a farther one.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{IngressConfig, IngressRuleConfig};
use crate::plugin::{Plugin, PluginError};

#[derive(Debug, Clone, Default)]
pub struct Ingress {
    name: String,
    /// Keyed by the host name with a leading `*` removed.
    rules: HashMap<String, IngressRuleConfig>,
    /// GOST's ingress asks its plugin instead of rules when it has one.
    plugin: Option<Arc<Plugin>>,
}

#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("ingress \"{name}\": {what} is not supported yet (rules only)")]
    Loader { name: String, what: &'static str },
    #[error("ingress \"{name}\": rule for {host:?}: endpoint {endpoint:?} is not a tunnel id (a UUID, `$` in front for a private tunnel)")]
    Endpoint {
        name: String,
        host: String,
        endpoint: String,
    },
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

impl Ingress {
    /// `endpoint_ok` tells whether an endpoint is a tunnel id, checked by
    /// the caller which knows the id's form.
    pub fn from_config(
        cfg: &IngressConfig,
        endpoint_ok: impl Fn(&str) -> bool,
    ) -> Result<Ingress, IngressError> {
        if let Some(p) = &cfg.plugin {
            return Ok(Ingress {
                name: cfg.name.clone(),
                rules: HashMap::new(),
                plugin: Some(Arc::new(Plugin::new("ingress", &cfg.name, p)?)),
            });
        }
        for (what, set) in [
            ("file", cfg.file.is_some()),
            ("redis", cfg.redis.is_some()),
            ("http", cfg.http.is_some()),
        ] {
            if set {
                return Err(IngressError::Loader {
                    name: cfg.name.clone(),
                    what,
                });
            }
        }
        let mut ing = Ingress {
            name: cfg.name.clone(),
            rules: HashMap::new(),
            plugin: None,
        };
        for r in &cfg.rules {
            // GOST skips rules with either half empty.
            if r.hostname.is_empty() || r.endpoint.is_empty() {
                continue;
            }
            if !endpoint_ok(&r.endpoint) {
                return Err(IngressError::Endpoint {
                    name: cfg.name.clone(),
                    host: r.hostname.clone(),
                    endpoint: r.endpoint.clone(),
                });
            }
            ing.insert(r.clone());
        }
        Ok(ing)
    }

    /// An ingress of inline rules (the tunnel handler's `tunnel` option,
    /// `host:id,host:id`).
    pub fn inline(name: &str, rules: impl IntoIterator<Item = IngressRuleConfig>) -> Ingress {
        let mut ing = Ingress {
            name: name.to_string(),
            rules: HashMap::new(),
            plugin: None,
        };
        for r in rules {
            ing.insert(r);
        }
        ing
    }

    fn insert(&mut self, r: IngressRuleConfig) {
        let key = r.hostname.strip_prefix('*').unwrap_or(&r.hostname);
        self.rules.insert(key.to_ascii_lowercase(), r);
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.plugin.is_none()
    }

    /// GOST's `GetRule`: the rule for `host` (a port is ignored).
    pub fn get(&self, host: &str) -> Option<&IngressRuleConfig> {
        let host = crate::addr::split_host_port(host)
            .map(|(h, _)| h)
            .unwrap_or(host);
        if host.is_empty() {
            return None;
        }
        let host = host.to_ascii_lowercase();
        if let Some(r) = self
            .rules
            .get(&host)
            .or_else(|| self.rules.get(&format!(".{host}")))
        {
            return Some(r);
        }
        let mut s = host.as_str();
        while let Some(i) = s.find('.').filter(|i| *i > 0) {
            if let Some(r) = self.rules.get(&s[i..]) {
                return Some(r);
            }
            s = &s[i + 1..];
        }
        None
    }

    /// The endpoint (tunnel id) for `host` of `service`'s visitor. A
    /// plugin is asked as GOST's `ingress/plugin` asks it (over HTTP a
    /// `GET` with `host` and `service` in the query, `{"endpoint": ...}`
    /// back);
    /// a failed call or an empty endpoint is no rule, as in GOST.
    pub async fn endpoint(&self, service: &str, host: &str) -> Option<String> {
        let Some(p) = &self.plugin else {
            return self.get(host).map(|r| r.endpoint.clone());
        };
        let req = gost_proto::plugin::GetRuleRequest {
            host: host.to_string(),
            service: service.to_string(),
        };
        let a = p.call(req, "no rule").await.ok()?;
        Some(a.endpoint).filter(|e| !e.is_empty())
    }

    /// GOST's `SetRule`: tells the plugin that `host` now reaches the
    /// tunnel `endpoint` (a client of `service` registered it). Rules of
    /// the config are not changed, as GOST's own ingress ignores it; the
    /// plugin's answer is only logged.
    pub async fn set_rule(&self, service: &str, host: &str, endpoint: &str) {
        let Some(p) = &self.plugin else {
            return;
        };
        let req = gost_proto::plugin::SetRuleRequest {
            host: host.to_string(),
            endpoint: endpoint.to_string(),
            service: service.to_string(),
        };
        if let Ok(a) = p.call(req, "rule not set").await {
            tracing::debug!(ingress = %crate::escape::esc(&self.name), host = %crate::escape::esc(host), endpoint, ok = a.ok, "ingress: rule set");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(h: &str, e: &str) -> IngressRuleConfig {
        IngressRuleConfig {
            hostname: h.into(),
            endpoint: e.into(),
        }
    }

    #[tokio::test]
    async fn exact_names_then_the_nearest_wildcard() {
        let ing = Ingress::inline(
            "i",
            [
                rule("example.com", "a"),
                rule("*.example.com", "b"),
                rule(".sub.example.com", "c"),
                rule("other.org", "d"),
            ],
        );
        assert_eq!(
            ing.endpoint("", "example.com:80").await.as_deref(),
            Some("a")
        );
        assert_eq!(
            ing.endpoint("", "www.example.com").await.as_deref(),
            Some("b")
        );
        assert_eq!(
            ing.endpoint("", "x.sub.example.com:443").await.as_deref(),
            Some("c")
        );
        assert_eq!(
            ing.endpoint("", "sub.example.com").await.as_deref(),
            Some("c")
        );
        assert_eq!(ing.endpoint("", "OTHER.org").await.as_deref(), Some("d"));
        assert_eq!(ing.endpoint("", "x.other.org").await.as_deref(), None);
        assert_eq!(ing.endpoint("", "example.net").await.as_deref(), None);
        assert_eq!(ing.endpoint("", "").await.as_deref(), None);
    }

    #[test]
    fn loaders_and_bad_endpoints_are_refused() {
        let cfg = IngressConfig {
            name: "i".into(),
            rules: vec![rule("a.com", "nope"), rule("", "x")],
            ..Default::default()
        };
        let err = Ingress::from_config(&cfg, |e| e != "nope").unwrap_err();
        assert!(err.to_string().contains("\"nope\""), "{err}");
        let cfg = IngressConfig {
            name: "i".into(),
            file: Some(Default::default()),
            ..Default::default()
        };
        let err = Ingress::from_config(&cfg, |_| true).unwrap_err();
        assert!(err.to_string().contains("file"), "{err}");
    }
}
