//! `rlimiter`: new connections per second, per service (`$`) and per
//! client IP (`$$`, IP, CIDR), as token buckets whose burst is one
//! second's worth. GOST's handlers count requests; checked at accept here,
//! one connection is one request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use super::Limits;
use crate::bypass::rules::{RuleError, Rules};
use crate::config::LimiterConfig;

/// Client buckets idle this long are full again and can be dropped.
const PRUNE_AFTER_SECS: f64 = 60.0;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, rate: f64, now: Instant) {
        let dt = now.duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(rate.max(1.0));
        self.at = now;
    }
}

#[derive(Debug, Default)]
struct Buckets {
    service: Option<Bucket>,
    per_ip: HashMap<IpAddr, Bucket>,
}

#[derive(Debug)]
pub struct RateLimiter {
    pub name: String,
    rules: Rules<Limits>,
    buckets: Mutex<Buckets>,
}

impl RateLimiter {
    pub fn from_config(cfg: &LimiterConfig) -> Result<RateLimiter, RuleError> {
        let owner = format!("rlimiter \"{}\"", cfg.name);
        let file = cfg.file.as_ref().map(|f| f.path.as_str());
        Ok(RateLimiter {
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
            buckets: Mutex::default(),
        })
    }

    /// Whether a new connection from `ip` may go ahead now; takes a token
    /// from the service's and the client's bucket only when both have one.
    pub fn allow(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let limits = self.rules.current();
        let now = Instant::now();
        let Ok(mut b) = self.buckets.lock() else {
            return true;
        };
        let full = |rate: f64| Bucket {
            tokens: rate.max(1.0),
            at: now,
        };
        let service = limits.service.map(|rate| {
            let mut s = b.service.unwrap_or_else(|| full(rate));
            s.refill(rate, now);
            s
        });
        let client = limits.for_ip(ip).map(|rate| {
            let mut c = b.per_ip.get(&ip).copied().unwrap_or_else(|| full(rate));
            c.refill(rate, now);
            c
        });
        let ok = service.is_none_or(|s| s.tokens >= 1.0) && client.is_none_or(|c| c.tokens >= 1.0);
        let take = |mut x: Bucket| {
            if ok {
                x.tokens -= 1.0;
            }
            x
        };
        b.service = service.map(take);
        if let Some(c) = client {
            if b.per_ip.len() > 4096 {
                b.per_ip
                    .retain(|_, v| now.duration_since(v.at).as_secs_f64() < PRUNE_AFTER_SECS);
            }
            b.per_ip.insert(ip, take(c));
        }
        if !ok {
            tracing::debug!(rlimiter = %self.name, client = %ip, "request rate limit reached");
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let l = RateLimiter::from_config(&LimiterConfig {
            name: "r".into(),
            limits: vec!["$$ 20".into()],
            ..Default::default()
        })
        .unwrap();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let allowed = (0..30).filter(|_| l.allow(a)).count();
        assert!((20..=21).contains(&allowed), "{allowed}");
        assert!(l.allow(b), "another client has its own bucket");
        std::thread::sleep(std::time::Duration::from_millis(120));
        assert!(l.allow(a), "refilled at 20/s");
    }
}
