//! Prometheus metrics with GOST's names and labels (go-gost/x `metrics`).
//!
//! Like GOST, collection is global and off until `-metrics` or a `metrics`
//! section turns it on, so a proxy without metrics pays nothing per
//! connection. Series are kept per service and client IP, as GOST labels
//! them, and rendered in the Prometheus text format on each scrape.

mod histogram;
mod render;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::stats::Stats;

pub use histogram::Histogram;
pub use render::render;

/// GOST's metric names (go-gost/x `metrics/metrics.go`).
pub const SERVICES: &str = "gost_services";
pub const SERVICE_STATUS: &str = "gost_service_status";
pub const REQUESTS: &str = "gost_service_requests_total";
pub const IN_FLIGHT: &str = "gost_service_requests_in_flight";
pub const DURATION: &str = "gost_service_request_duration_seconds";
pub const INPUT_BYTES: &str = "gost_service_transfer_input_bytes_total";
pub const OUTPUT_BYTES: &str = "gost_service_transfer_output_bytes_total";
pub const HANDLER_ERRORS: &str = "gost_service_handler_errors_total";
pub const CHAIN_ERRORS: &str = "gost_chain_errors_total";
pub const NODE_CONNECT_DURATION: &str = "gost_chain_node_connect_duration_seconds";

/// GOST's buckets for request durations, in seconds.
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0,
];

/// GOST's buckets for chain node connect durations, in seconds.
const NODE_CONNECT_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0,
];

type ClientKey = (Arc<str>, IpAddr);

/// All series. A client's requests, in-flight requests, errors and bytes
/// are one [`Stats`], so the relay's counting path feeds them directly.
pub struct Metrics {
    host: String,
    clients: Mutex<HashMap<ClientKey, Arc<Stats>>>,
    durations: Mutex<HashMap<Arc<str>, Arc<Histogram>>>,
    chain_nodes: Mutex<HashMap<(String, String), Arc<NodeSeries>>>,
}

/// The series of one node of one chain, labelled as GOST labels them: by
/// chain and by the route's first node.
#[derive(Debug)]
pub struct NodeSeries {
    errors: AtomicU64,
    connect: Histogram,
}

impl NodeSeries {
    /// A route through this node failed before the last node was reached
    /// (GOST's chain error; a target the last node cannot reach is not one).
    pub fn add_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// How long dialing and handshaking with the node took.
    pub fn observe_connect(&self, d: Duration) {
        self.connect.observe(d);
    }
}

/// The series of a chain's node when metrics are on. A node belongs to one
/// chain, so it keeps the series in `cell` after the first lookup and
/// later connections count without a lock.
pub fn chain_node<'a>(
    cell: &'a OnceLock<Arc<NodeSeries>>,
    chain: &str,
    node: &str,
) -> Option<&'a NodeSeries> {
    let m = global()?;
    Some(cell.get_or_init(|| m.chain_node(chain, node)))
}

static GLOBAL: OnceLock<Metrics> = OnceLock::new();

/// Turns collection on (idempotent) and returns the registry.
pub fn enable() -> &'static Metrics {
    GLOBAL.get_or_init(|| Metrics::new(hostname()))
}

/// The registry when metrics are on.
pub fn global() -> Option<&'static Metrics> {
    GLOBAL.get()
}

impl Metrics {
    pub fn new(host: String) -> Self {
        Metrics {
            host,
            clients: Mutex::default(),
            durations: Mutex::default(),
            chain_nodes: Mutex::default(),
        }
    }

    /// The series of one client of one service. IPv4 clients of a
    /// dual-stack listener are labelled with their IPv4 address, as Go
    /// reports them.
    pub fn client(&self, service: &Arc<str>, ip: IpAddr) -> Arc<Stats> {
        let key = (service.clone(), ip.to_canonical());
        lock(&self.clients).entry(key).or_default().clone()
    }

    pub fn request_duration(&self, service: &Arc<str>) -> Arc<Histogram> {
        lock(&self.durations)
            .entry(service.clone())
            .or_insert_with(|| Arc::new(Histogram::new(DURATION_BUCKETS)))
            .clone()
    }

    pub fn chain_node(&self, chain: &str, node: &str) -> Arc<NodeSeries> {
        lock(&self.chain_nodes)
            .entry((chain.to_string(), node.to_string()))
            .or_insert_with(|| {
                Arc::new(NodeSeries {
                    errors: AtomicU64::new(0),
                    connect: Histogram::new(NODE_CONNECT_BUCKETS),
                })
            })
            .clone()
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    fn client_series(&self) -> Vec<(ClientKey, Arc<Stats>)> {
        sorted(&self.clients)
    }

    fn duration_series(&self) -> Vec<(Arc<str>, Arc<Histogram>)> {
        sorted(&self.durations)
    }

    fn chain_node_series(&self) -> Vec<((String, String), Arc<NodeSeries>)> {
        sorted(&self.chain_nodes)
    }
}

/// A map's entries in label order, copied out so a scrape holds the lock
/// only for the copy.
fn sorted<K: Clone + Ord, V: Clone>(m: &Mutex<HashMap<K, V>>) -> Vec<(K, V)> {
    let mut v: Vec<_> = lock(m)
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Each update under these locks is a single map insert, so a poisoned
/// lock still holds consistent data.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// GOST labels every series with `os.Hostname()`.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
