//! `climiter`: at most N connections open at once, per service (`$`) and
//! per client IP (`$$`, IP, CIDR).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::Limits;
use crate::bypass::rules::{RuleError, Rules};
use crate::config::LimiterConfig;

#[derive(Debug, Default)]
struct Counts {
    service: u64,
    per_ip: HashMap<IpAddr, u64>,
}

#[derive(Debug)]
pub struct ConnLimiter {
    pub name: String,
    rules: Rules<Limits>,
    counts: Arc<Mutex<Counts>>,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct ConnPermit {
    ip: IpAddr,
    counts: Arc<Mutex<Counts>>,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        if let Ok(mut c) = self.counts.lock() {
            c.service = c.service.saturating_sub(1);
            if let Some(n) = c.per_ip.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.per_ip.remove(&self.ip);
                }
            }
        }
    }
}

impl ConnLimiter {
    pub fn from_config(cfg: &LimiterConfig) -> Result<ConnLimiter, RuleError> {
        let owner = format!("climiter \"{}\"", cfg.name);
        let file = cfg.file.as_ref().map(|f| f.path.as_str());
        Ok(ConnLimiter {
            name: cfg.name.clone(),
            rules: Rules::new(
                &owner,
                "limits",
                &cfg.limits,
                file,
                cfg.reload.0,
                Limits::parse,
            )?
            .with_loaders(
                cfg.redis.as_ref(),
                cfg.http.as_ref(),
                crate::loader::RedisKind::set_or_list(cfg.redis.as_ref()),
                cfg.reload.0,
            )?,
            counts: Arc::default(),
        })
    }

    /// A permit for one more connection from `ip`, or `None` when the
    /// service or that client is at its limit.
    pub fn acquire(&self, ip: IpAddr) -> Option<ConnPermit> {
        let ip = ip.to_canonical();
        let limits = self.rules.current();
        let mut c = self.counts.lock().ok()?;
        if limits.service.is_some_and(|max| c.service as f64 >= max) {
            tracing::debug!(climiter = %self.name, client = %ip, scope = "$", "connection limit reached");
            return None;
        }
        let mine = c.per_ip.get(&ip).copied().unwrap_or(0);
        if limits.for_ip(ip).is_some_and(|max| mine as f64 >= max) {
            tracing::debug!(climiter = %self.name, client = %ip, "connection limit reached for client");
            return None;
        }
        c.service += 1;
        *c.per_ip.entry(ip).or_insert(0) += 1;
        Some(ConnPermit {
            ip,
            counts: self.counts.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim(limits: &[&str]) -> ConnLimiter {
        ConnLimiter::from_config(&LimiterConfig {
            name: "c".into(),
            limits: limits.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn service_and_client_caps_free_on_drop() {
        let l = lim(&["$ 3", "$$ 2"]);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let p1 = l.acquire(a).unwrap();
        let _p2 = l.acquire(a).unwrap();
        assert!(l.acquire(a).is_none(), "per-client cap");
        let _p3 = l.acquire(b).unwrap();
        assert!(l.acquire(b).is_none(), "service cap");
        drop(p1);
        assert!(l.acquire(b).is_some());
    }
}
