//! A node: one address a hop can send a connection to, with its failure
//! marker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::ForwardNodeConfig;
use crate::metadata::{Metadata, MetadataError};

/// Counts consecutive failures of a node and when the last one happened,
/// so a selector can skip it for `failTimeout` after `maxFails` failures.
#[derive(Debug)]
pub struct Marker {
    epoch: Instant,
    count: AtomicU64,
    /// Milliseconds since `epoch` of the last failure, 0 when never failed.
    last_ms: AtomicU64,
}

impl Default for Marker {
    fn default() -> Self {
        Marker {
            epoch: Instant::now(),
            count: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
        }
    }
}

impl Marker {
    pub fn mark(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let ms = self.epoch.elapsed().as_millis().max(1) as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    pub fn reset(&self) {
        self.count.store(0, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn since_last(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }

    /// GOST's `IsFailed`: failed `max_fails` times and the last failure is
    /// younger than `fail_timeout`.
    pub fn is_failed(&self, max_fails: u64, fail_timeout: Duration) -> bool {
        self.count() >= max_fails.max(1) && self.since_last() < fail_timeout
    }
}

#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub addr: String,
    /// Overrides the service's network (`tcp`/`udp`) when set.
    pub network: Option<String>,
    /// Relative weight for the `rand` strategy (metadata `weight`).
    pub weight: u32,
    /// A backup node is used only when no primary node is available.
    pub backup: bool,
    /// Per-node `maxFails`/`failTimeout` from metadata, overriding the hop's.
    pub max_fails: Option<u64>,
    pub fail_timeout: Option<Duration>,
    pub marker: Marker,
}

impl Node {
    pub fn from_forward_config(cfg: &ForwardNodeConfig) -> Result<Self, MetadataError> {
        let md: &Metadata = &cfg.metadata;
        Ok(Node {
            name: cfg.name.clone(),
            addr: cfg.addr.clone(),
            network: (!cfg.network.is_empty()).then(|| cfg.network.clone()),
            weight: md
                .get_int("weight")?
                .map(|w| w.clamp(1, u32::MAX as i64) as u32)
                .unwrap_or(1),
            backup: md.get_bool("backup")?.unwrap_or(false),
            max_fails: md.get_int("maxFails")?.map(|v| v.max(0) as u64),
            fail_timeout: md.get_duration("failTimeout")?,
            marker: Marker::default(),
        })
    }
}
