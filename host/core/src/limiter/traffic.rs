//! The traffic-rate `limiter`: bytes per second read from the client
//! (`in`) and written to it (`out`). Lines are `SCOPE IN [OUT [BURST]]`
//! with sizes such as `512KB` or `1MiB` (powers of two, as GOST reads
//! them); `$` is shared by the whole service, `$$` applies to each
//! connection, and an IP or CIDR to each of those clients (shared by that
//! client's connections).
//!
//! The service attaches a connection's buckets as a task-local value around
//! its handler, so the relay paces bytes without any handler knowing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::bypass::rules::{Line, RuleError, Rules};
use crate::config::LimiterConfig;

/// In and out rates (bytes/s) and the burst, for one scope.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rate {
    pub input: u64,
    pub output: u64,
    pub burst: u64,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct TrafficLimits {
    pub service: Option<Rate>,
    pub per_conn: Option<Rate>,
    pub ips: Vec<(IpAddr, Rate)>,
    pub cidrs: Vec<(IpNet, Rate)>,
}

/// `512`, `64KB`, `1.5MB`, `2MiB`: KB and KiB are both 1024 bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return None,
    };
    let v = num * mult as f64;
    (v.is_finite() && v >= 1.0).then_some(v as u64)
}

impl TrafficLimits {
    pub fn parse(lines: &[Line]) -> Result<TrafficLimits, RuleError> {
        let mut out = TrafficLimits::default();
        for l in lines {
            let err = |msg: String| RuleError {
                at: l.at.clone(),
                msg,
            };
            let parts: Vec<&str> = l.text.split_whitespace().collect();
            if !(2..=4).contains(&parts.len()) {
                return Err(err(format!(
                    "{:?}: expected \"SCOPE IN [OUT [BURST]]\"",
                    l.text
                )));
            }
            let size = |i: usize| -> Result<u64, RuleError> {
                match parts.get(i) {
                    None => Ok(0),
                    Some(v) => parse_size(v)
                        .ok_or_else(|| err(format!("invalid size {v:?} (e.g. 512KB, 1MB)"))),
                }
            };
            let rate = Rate {
                input: size(1)?,
                output: size(2)?,
                burst: size(3)?,
            };
            match parts[0] {
                "$" => out.service = Some(rate),
                "$$" => out.per_conn = Some(rate),
                k if k.contains('/') => out.cidrs.push((
                    k.parse::<IpNet>()
                        .map_err(|_| err(format!("invalid CIDR {k:?}")))?
                        .trunc(),
                    rate,
                )),
                k => out.ips.push((
                    k.parse().map_err(|_| {
                        err(format!(
                            "invalid scope {k:?}: expected $, $$, an IP or a CIDR"
                        ))
                    })?,
                    rate,
                )),
            }
        }
        out.cidrs
            .sort_by_key(|c| std::cmp::Reverse(c.0.prefix_len()));
        Ok(out)
    }

    fn for_ip(&self, ip: IpAddr) -> Option<Rate> {
        self.ips
            .iter()
            .find(|(i, _)| *i == ip)
            .map(|(_, r)| *r)
            .or_else(|| {
                self.cidrs
                    .iter()
                    .find(|(n, _)| n.contains(&ip))
                    .map(|(_, r)| *r)
            })
    }
}

/// A token bucket that may go into debt: a taker subtracts what it moved
/// and sleeps until the bucket is back to zero, so large relay chunks are
/// paced exactly instead of being split.
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    /// The burst defaults to a tenth of a second of traffic (GOST's is a
    /// whole second), which keeps a short transfer close to the rate.
    fn new(rate: u64, burst: u64) -> Arc<Bucket> {
        let rate = rate as f64;
        let burst = if burst > 0 { burst as f64 } else { rate / 10.0 };
        Arc::new(Bucket {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        })
    }

    fn charge(&self, n: usize) -> Duration {
        let Ok(mut s) = self.state.lock() else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let refilled = s.0 + now.duration_since(s.1).as_secs_f64() * self.rate;
        s.0 = refilled.min(self.burst) - n as f64;
        s.1 = now;
        if s.0 >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.0 / self.rate)
        }
    }
}

/// A scope's `in` and `out` buckets.
type BucketPair = (Arc<Bucket>, Arc<Bucket>);

/// The buckets one connection's bytes pass through.
#[derive(Debug, Default)]
pub struct ConnTraffic {
    input: Vec<Arc<Bucket>>,
    output: Vec<Arc<Bucket>>,
}

impl ConnTraffic {
    /// How long to wait before moving `n` more bytes; `from_client` picks
    /// the `in` buckets, else the `out` ones. The relay does the waiting,
    /// so that a connection that is never limited carries no timer.
    pub fn delay(&self, from_client: bool, n: usize) -> Duration {
        let buckets = if from_client {
            &self.input
        } else {
            &self.output
        };
        buckets
            .iter()
            .map(|b| b.charge(n))
            .max()
            .unwrap_or_default()
    }
}

#[derive(Debug)]
pub struct TrafficLimiter {
    pub name: String,
    rules: Rules<TrafficLimits>,
    /// Shared buckets: `$` and per client IP, by key; rebuilt when the
    /// rules change on reload.
    shared: Mutex<(Arc<TrafficLimits>, HashMap<String, BucketPair>)>,
}

impl TrafficLimiter {
    pub fn from_config(cfg: &LimiterConfig) -> Result<TrafficLimiter, RuleError> {
        let owner = format!("limiter \"{}\"", cfg.name);
        let file = cfg.file.as_ref().map(|f| f.path.as_str());
        let rules = Rules::new(
            &owner,
            "limits",
            &cfg.limits,
            file,
            cfg.reload.0,
            TrafficLimits::parse,
        )?
        .with_loaders(
            cfg.redis.as_ref(),
            cfg.http.as_ref(),
            crate::loader::RedisKind::set_or_list(cfg.redis.as_ref()),
            cfg.reload.0,
        )?;
        let current = rules.current();
        Ok(TrafficLimiter {
            name: cfg.name.clone(),
            rules,
            shared: Mutex::new((current, HashMap::new())),
        })
    }

    /// The buckets for a new connection from `ip`.
    pub fn for_conn(&self, ip: IpAddr) -> ConnTraffic {
        let ip = ip.to_canonical();
        let limits = self.rules.current();
        let mut t = ConnTraffic::default();
        let mut add = |pair: BucketPair, rate: Rate| {
            if rate.input > 0 {
                t.input.push(pair.0);
            }
            if rate.output > 0 {
                t.output.push(pair.1);
            }
        };
        let pair = |r: Rate| {
            (
                Bucket::new(r.input.max(1), r.burst),
                Bucket::new(r.output.max(1), r.burst),
            )
        };
        if let Ok(mut shared) = self.shared.lock() {
            if !Arc::ptr_eq(&shared.0, &limits) {
                *shared = (limits.clone(), HashMap::new());
            }
            if let Some(r) = limits.service {
                let p = shared
                    .1
                    .entry("$".into())
                    .or_insert_with(|| pair(r))
                    .clone();
                add(p, r);
            }
            if let Some(r) = limits.for_ip(ip) {
                let p = shared
                    .1
                    .entry(ip.to_string())
                    .or_insert_with(|| pair(r))
                    .clone();
                add(p, r);
            }
        }
        if let Some(r) = limits.per_conn {
            add(pair(r), r);
        }
        if !t.input.is_empty() || !t.output.is_empty() {
            tracing::debug!(limiter = %self.name, client = %ip, in_buckets = t.input.len(), out_buckets = t.output.len(), "traffic limits");
        }
        t
    }
}

/// Charges `n` bytes to a connection's buckets and waits until they may
/// be sent on; a timer is made only when a wait is due.
pub async fn pace(traffic: Option<&ConnTraffic>, from_client: bool, n: usize) {
    let wait = traffic.map(|t| t.delay(from_client, n)).unwrap_or_default();
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

/// Pacing for a loop that relays both ways at once (the UDP relays): what
/// a direction receives is charged, and that direction receives nothing
/// more until the wait is over, while the other one goes on. Like GOST's
/// packet wrapper it delays and never drops: held-back datagrams wait in
/// the socket or the listener's queue. Without a limiter it never makes a
/// timer.
#[derive(Debug, Default)]
pub struct Pacer {
    traffic: Option<Arc<ConnTraffic>>,
    /// When each direction (index: from the client) may receive again.
    until: [Option<tokio::time::Instant>; 2],
}

impl Pacer {
    /// Pacing by a connection's buckets; none without a limiter.
    pub fn new(traffic: Option<Arc<ConnTraffic>>) -> Self {
        Pacer {
            traffic,
            until: [None; 2],
        }
    }

    pub fn charge(&mut self, from_client: bool, n: usize) {
        let wait = self
            .traffic
            .as_ref()
            .map(|t| t.delay(from_client, n))
            .unwrap_or_default();
        if !wait.is_zero() {
            self.until[usize::from(from_client)] = Some(tokio::time::Instant::now() + wait);
        }
    }

    /// Whether the direction may receive now.
    pub fn open(&self, from_client: bool) -> bool {
        self.until[usize::from(from_client)].is_none()
    }

    pub fn waiting(&self) -> bool {
        self.until.iter().any(Option::is_some)
    }

    /// Ends when the earliest wait is over, and opens its direction; never
    /// ends while nothing waits. Cancel-safe, for a `select!` branch.
    pub async fn wait(&mut self) {
        let Some(at) = self.until.iter().flatten().min().copied() else {
            return std::future::pending().await;
        };
        tokio::time::sleep_until(at).await;
        for u in &mut self.until {
            if u.is_some_and(|t| t <= at) {
                *u = None;
            }
        }
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
    fn sizes_and_lines() {
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("64KB"), Some(65536));
        assert_eq!(parse_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_size("1.5mb"), Some(3 << 19));
        assert_eq!(parse_size("1XB"), None);
        let l = TrafficLimits::parse(&lines(&["$ 1MB 2MB", "$$ 100KB", "10.0.0.0/8 1KB 1KB 4KB"]))
            .unwrap();
        assert_eq!(l.service.unwrap().output, 2 << 20);
        assert_eq!(l.per_conn.unwrap().output, 0);
        assert_eq!(l.for_ip("10.1.1.1".parse().unwrap()).unwrap().burst, 4096);
        let e = TrafficLimits::parse(&lines(&["$ fast"]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("l:1: invalid size"), "{e}");
    }

    #[tokio::test]
    async fn pacing_holds_the_rate() {
        let t = ConnTraffic {
            input: vec![Bucket::new(1_000_000, 0)],
            output: Vec::new(),
        };
        let start = Instant::now();
        for _ in 0..10 {
            tokio::time::sleep(t.delay(true, 50_000)).await;
        }
        assert_eq!(t.delay(false, 10_000_000), Duration::ZERO);
        // 500 kB at 1 MB/s with a 100 kB burst: 0.4 s.
        let secs = start.elapsed().as_secs_f64();
        assert!((0.38..0.5).contains(&secs), "{secs}");
    }

    #[tokio::test]
    async fn pace_waits_only_inside_a_limited_connection() {
        // Without a limiter nothing is charged or awaited.
        let start = Instant::now();
        pace(None, false, 1 << 30).await;
        assert!(start.elapsed() < Duration::from_millis(100));

        let t = ConnTraffic {
            input: vec![Bucket::new(100_000, 0)],
            output: vec![Bucket::new(200_000, 0)],
        };
        let start = Instant::now();
        // 10 kB burst each way; then 30 kB in at 100 kB/s is 0.2 s past
        // the burst, and 40 kB out at 200 kB/s another 0.1 s.
        for _ in 0..3 {
            pace(Some(&t), true, 10_000).await;
        }
        for _ in 0..2 {
            pace(Some(&t), false, 20_000).await;
        }
        assert!(t.delay(true, 1_000_000) > Duration::from_secs(5));
        let secs = start.elapsed().as_secs_f64();
        assert!((0.28..0.45).contains(&secs), "{secs}");
    }

    #[tokio::test]
    async fn pacer_holds_back_only_the_charged_direction() {
        let mut p = Pacer::default();
        p.charge(true, 1 << 30);
        assert!(p.open(true) && !p.waiting(), "no limiter: nothing waits");

        let mut p = Pacer::new(Some(Arc::new(ConnTraffic {
            input: vec![Bucket::new(100_000, 0)],
            output: Vec::new(),
        })));
        p.charge(true, 10_000);
        assert!(p.open(true), "within the burst");
        p.charge(false, 1 << 30);
        assert!(p.open(false), "out is not limited");
        p.charge(true, 20_000);
        assert!(!p.open(true) && p.open(false) && p.waiting());
        let start = Instant::now();
        p.wait().await;
        let secs = start.elapsed().as_secs_f64();
        assert!((0.18..0.35).contains(&secs), "{secs}");
        assert!(p.open(true) && !p.waiting());
    }
}
