//! Limiters (GOST's `limiter`): `climiter` caps concurrent connections and
//! `rlimiter` caps the rate of new ones, both checked at accept. Each limit
//! line is `SCOPE VALUE`: `$` is the whole service, `$$` each client IP,
//! and an IP or CIDR gives those clients their own value (per IP), which
//! replaces `$$` for them. The traffic-rate `limiter` is not built yet and
//! is refused at start-up.

pub mod conn;
pub mod rate;
pub mod traffic;

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::bypass::rules::{Line, RuleError};
use crate::config::{Config, LimiterConfig, ServiceConfig};
use conn::ConnLimiter;
use rate::RateLimiter;
use traffic::TrafficLimiter;

#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error("{kind} \"{0}\" not found", kind = .1)]
    NotFound(String, &'static str),
    #[error("{kind} \"{name}\": {what} is not supported yet")]
    Unsupported {
        kind: &'static str,
        name: String,
        what: &'static str,
    },
    #[error(transparent)]
    Rule(#[from] RuleError),
}

fn find<'a>(
    list: &'a [LimiterConfig],
    kind: &'static str,
    name: &str,
) -> Result<Option<&'a LimiterConfig>, LimiterError> {
    if name.is_empty() {
        return Ok(None);
    }
    let cfg = list
        .iter()
        .find(|l| l.name == name)
        .ok_or_else(|| LimiterError::NotFound(name.to_string(), kind))?;
    if let Some(what) = crate::config::remote_source(cfg.plugin.is_some()) {
        return Err(LimiterError::Unsupported {
            kind,
            name: name.to_string(),
            what,
        });
    }
    Ok(Some(cfg))
}

/// A service's `climiter` and `rlimiter`, checked at accept, and its
/// traffic `limiter`, attached to each connection.
#[derive(Debug, Default, Clone)]
pub struct ServiceLimiters {
    pub conn: Option<Arc<ConnLimiter>>,
    pub rate: Option<Arc<RateLimiter>>,
    pub traffic: Option<Arc<TrafficLimiter>>,
}

pub fn service_limiters(
    root: &Config,
    svc: &ServiceConfig,
) -> Result<ServiceLimiters, LimiterError> {
    let conn = match find(&root.climiters, "climiter", &svc.climiter)? {
        Some(cfg) => Some(Arc::new(ConnLimiter::from_config(cfg)?)),
        None => None,
    };
    let rate = match find(&root.rlimiters, "rlimiter", &svc.rlimiter)? {
        Some(cfg) => Some(Arc::new(RateLimiter::from_config(cfg)?)),
        None => None,
    };
    let traffic = match find(&root.limiters, "limiter", &svc.limiter)? {
        Some(cfg) => Some(Arc::new(TrafficLimiter::from_config(cfg)?)),
        None => None,
    };
    Ok(ServiceLimiters {
        conn,
        rate,
        traffic,
    })
}

/// Checks a handler's `limiter` (GOST's handler-level traffic limiter).
/// GOST asks it per authenticated client (scope `client`, keyed by the
/// client's id), and its built-in limiter, inline `limits` or a `file`,
/// answers no limit for that scope: only a limiter plugin can. So the
/// named limiter must exist and parse, and it paces nothing (the caller
/// says so in the log).
pub fn handler_limiter(root: &Config, name: &str) -> Result<(), LimiterError> {
    if let Some(cfg) = find(&root.limiters, "limiter", name)? {
        TrafficLimiter::from_config(cfg)?;
    }
    Ok(())
}

/// Parsed limit lines.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Limits {
    /// `$`: one limit shared by every client.
    pub service: Option<f64>,
    /// `$$`: the limit of each client IP not listed below.
    pub per_ip: Option<f64>,
    pub ips: Vec<(IpAddr, f64)>,
    pub cidrs: Vec<(IpNet, f64)>,
}

impl Limits {
    pub fn parse(lines: &[Line]) -> Result<Limits, RuleError> {
        let mut out = Limits::default();
        for l in lines {
            let err = |msg: String| RuleError {
                at: l.at.clone(),
                msg,
            };
            let mut parts = l.text.split_whitespace();
            let (Some(key), Some(value), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(err(format!("{:?}: expected \"SCOPE VALUE\"", l.text)));
            };
            let value: f64 = value
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v > 0.0)
                .ok_or_else(|| {
                    err(format!(
                        "invalid limit {value:?}: expected a positive number"
                    ))
                })?;
            match key {
                "$" => out.service = Some(value),
                "$$" => out.per_ip = Some(value),
                k if k.contains('/') => out.cidrs.push((
                    k.parse::<IpNet>()
                        .map_err(|_| err(format!("invalid CIDR {k:?}")))?
                        .trunc(),
                    value,
                )),
                k => out.ips.push((
                    k.parse().map_err(|_| {
                        err(format!(
                            "invalid scope {k:?}: expected $, $$, an IP or a CIDR"
                        ))
                    })?,
                    value,
                )),
            }
        }
        // The narrowest network wins, as GOST's ranger returns it first.
        out.cidrs
            .sort_by_key(|c| std::cmp::Reverse(c.0.prefix_len()));
        Ok(out)
    }

    /// The limit of one client IP: its own line, else the narrowest CIDR
    /// containing it, else `$$`.
    pub fn for_ip(&self, ip: IpAddr) -> Option<f64> {
        self.ips
            .iter()
            .find(|(i, _)| *i == ip)
            .map(|(_, v)| *v)
            .or_else(|| {
                self.cidrs
                    .iter()
                    .find(|(n, _)| n.contains(&ip))
                    .map(|(_, v)| *v)
            })
            .or(self.per_ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(ls: &[&str]) -> Vec<Line> {
        ls.iter()
            .enumerate()
            .map(|(i, t)| Line {
                at: format!("l:{}", i + 1),
                text: t.to_string(),
            })
            .collect()
    }

    #[test]
    fn scopes_and_precedence() {
        let l = Limits::parse(&lines(&[
            "$ 100",
            "$$ 10",
            "10.0.0.0/8 5",
            "10.1.0.0/16 3",
            "10.1.2.3 1",
        ]))
        .unwrap();
        assert_eq!(l.service, Some(100.0));
        assert_eq!(l.for_ip("10.1.2.3".parse().unwrap()), Some(1.0));
        assert_eq!(l.for_ip("10.1.9.9".parse().unwrap()), Some(3.0));
        assert_eq!(l.for_ip("10.9.9.9".parse().unwrap()), Some(5.0));
        assert_eq!(l.for_ip("192.0.2.1".parse().unwrap()), Some(10.0));
    }

    #[test]
    fn bad_lines_are_named() {
        for (t, want) in [
            ("$ x", "invalid limit"),
            ("$", "expected \"SCOPE VALUE\""),
            ("host 3", "invalid scope"),
            ("10.0.0.0/40 1", "invalid CIDR"),
            ("$$ -1", "invalid limit"),
        ] {
            let e = Limits::parse(&lines(&[t])).unwrap_err().to_string();
            assert!(e.starts_with("l:1: ") && e.contains(want), "{t}: {e}");
        }
    }
}
