//! A node: one address a hop can send a connection to, with its failure
//! marker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::selector::Selectable;
use crate::connector::NodeConnector;
use gost_core::config::{
    Config, ForwardNodeConfig, NodeConfig, NodeFilterConfig, NodeMatcherConfig,
};
use gost_core::metadata::{Metadata, MetadataError};

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

    /// How long ago the last failure was; `None` when it never failed.
    pub fn last_failure_ago(&self) -> Option<Duration> {
        (self.last_ms.load(Ordering::Relaxed) != 0).then(|| self.since_last())
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

#[derive(Debug, Default)]
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
    /// How a chain speaks to this node; forwarder nodes have none.
    pub connector: Option<NodeConnector>,
    /// The node's transport; `None` is plain TCP.
    pub dialer: Option<std::sync::Arc<dyn gost_transport::Dialer>>,
    /// GOST's node `filter.host`: only targets with this host (or, when it
    /// starts with a dot, under this domain) go through the node.
    pub filter_host: String,
    /// `filter.protocol`: only sniffed requests of this protocol.
    pub filter_protocol: String,
    /// `filter.path`: only sniffed HTTP requests under this path.
    pub filter_path: String,
    /// `matcher.rule`; when set it replaces the filters.
    pub matcher: Option<gost_core::routing::Matcher>,
    /// `matcher.priority` as GOST computes it; a unique highest positive
    /// priority among the eligible nodes wins without the selector.
    pub priority: i64,
    /// `matcher.bodySize` when the rule looks at the body, else 0: how much
    /// of an HTTP request body a sniffer reads before selecting.
    pub body_size: usize,
    /// `http.failCodes`: upstream statuses that mark the node failed.
    pub fail_codes: super::failcodes::FailCodes,
    /// `http`'s rewrites of a sniffed request and its response.
    pub http: Option<super::http::NodeHttp>,
    /// Targets this node does not carry.
    pub bypass: Option<std::sync::Arc<gost_core::bypass::BypassGroup>>,
    /// Resolve the node's own address (the node's, else its hop's).
    pub hosts: Option<std::sync::Arc<gost_core::hosts::Hosts>>,
    pub resolver: Option<std::sync::Arc<gost_core::resolver::Resolver>>,
    /// This node's chain metrics, once a route through it was counted.
    pub metrics: std::sync::OnceLock<std::sync::Arc<gost_core::metrics::NodeSeries>>,
}

impl Selectable for Node {
    fn marker(&self) -> &Marker {
        &self.marker
    }
    fn weight(&self) -> u32 {
        self.weight
    }
    fn backup(&self) -> bool {
        self.backup
    }
    fn fail_settings(&self) -> (Option<u64>, Option<Duration>) {
        (self.max_fails, self.fail_timeout)
    }
}

/// Why a chain node cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("node \"{node}\": {source}")]
    Metadata { node: String, source: MetadataError },
    #[error("node \"{node}\": {source}")]
    Connector {
        node: String,
        source: crate::connector::ConnectorBuildError,
    },
    #[error("node \"{node}\": matcher {source}")]
    Rule {
        node: String,
        source: gost_core::routing::RuleError,
    },
    #[error("node \"{node}\": {msg}")]
    Unsupported { node: String, msg: String },
    #[error("node \"{node}\": {source}")]
    FailCodes {
        node: String,
        source: super::failcodes::FailCodesError,
    },
    #[error("node \"{node}\": {source}")]
    Rewrite {
        node: String,
        source: super::http::RewriteError,
    },
}

impl Node {
    /// A forwarder node. Its deprecated `host`/`protocol`/`path` fields
    /// stand for `filter` when that is absent, as in GOST.
    pub fn from_forward_config(cfg: &ForwardNodeConfig, root: &Config) -> Result<Self, NodeError> {
        let mut node = Self::common(&cfg.name, &cfg.addr, &cfg.network, &cfg.metadata)?;
        let filter = cfg
            .filter
            .as_deref()
            .cloned()
            .unwrap_or_else(|| NodeFilterConfig {
                host: cfg.host.clone(),
                protocol: cfg.protocol.clone(),
                path: cfg.path.clone(),
            });
        node.set_routing(filter, cfg.matcher.as_deref(), root)?;
        if let Some(http) = &cfg.http {
            node.fail_codes =
                super::failcodes::FailCodes::parse(&http.fail_codes).map_err(|source| {
                    NodeError::FailCodes {
                        node: cfg.name.clone(),
                        source,
                    }
                })?;
            node.http =
                super::http::NodeHttp::from_config(http).map_err(|source| NodeError::Rewrite {
                    node: cfg.name.clone(),
                    source,
                })?;
        }
        Ok(node)
    }

    fn set_routing(
        &mut self,
        filter: NodeFilterConfig,
        matcher: Option<&NodeMatcherConfig>,
        root: &Config,
    ) -> Result<(), NodeError> {
        self.filter_host = filter.host;
        self.filter_protocol = filter.protocol;
        self.filter_path = filter.path;
        let Some(m) = matcher else { return Ok(()) };
        let rule = m.rule.trim();
        if !rule.is_empty() {
            self.matcher = Some(gost_core::routing::Matcher::new(rule, root).map_err(
                |source| NodeError::Rule {
                    node: self.name.clone(),
                    source,
                },
            )?);
        }
        if self.matcher.as_ref().is_some_and(|m| m.reads_body()) {
            self.body_size = match usize::try_from(m.body_size) {
                Ok(0) | Err(_) => gost_core::routing::DEFAULT_BODY_SIZE,
                Ok(n) => n.min(gost_core::routing::MAX_BODY_SIZE),
            };
        }
        self.priority = gost_core::routing::priority(&m.rule, m.priority);
        Ok(())
    }

    /// GOST's node gates: the matcher when the node has one, else every
    /// filter (host, protocol, path).
    pub fn matches(&self, req: &gost_core::routing::Request<'_>) -> bool {
        match &self.matcher {
            Some(m) => m.matches(req),
            None => {
                self.accepts_host(req.host)
                    && (self.filter_protocol.is_empty() || self.filter_protocol == req.protocol)
                    && req.path.starts_with(self.filter_path.as_str())
            }
        }
    }

    /// A chain node: its connector (GOST's default `http`) over its dialer
    /// (GOST's default `tcp`).
    pub fn from_node_config(
        cfg: &NodeConfig,
        root: &Config,
        registry: &crate::registry::Registry,
    ) -> Result<Self, NodeError> {
        let unsupported = |msg: String| NodeError::Unsupported {
            node: cfg.name.clone(),
            msg,
        };
        if cfg.addr.is_empty() {
            return Err(unsupported("addr is required".into()));
        }
        let default = gost_core::config::DialerConfig::default();
        let dialer_cfg = cfg.dialer.as_ref().unwrap_or(&default);
        let Some(kind) = registry.dialer(dialer_cfg.r#type.trim()) else {
            return Err(unsupported(format!(
                "dialer type '{}' is not supported ({})",
                dialer_cfg.r#type,
                registry.dialer_names().join(", ")
            )));
        };
        let dialer = (kind.build)(dialer_cfg, cfg.tls.as_deref())
            .map_err(|e| unsupported(format!("dialer: {e}")))?;
        let mut node = Self::common(&cfg.name, &cfg.addr, &cfg.network, &cfg.metadata)?;
        node.dialer = dialer;
        let default = gost_core::config::ConnectorConfig::default();
        let connector_cfg = cfg.connector.as_ref().unwrap_or(&default);
        let built = match registry.connector(connector_cfg.r#type.trim()) {
            Some(kind) => NodeConnector::from_config(connector_cfg, kind.build),
            None => Err(crate::connector::ConnectorBuildError::Unsupported(
                connector_cfg.r#type.clone(),
            )),
        };
        node.connector = Some(built.map_err(|source| NodeError::Connector {
            node: cfg.name.clone(),
            source,
        })?);
        node.set_routing(
            cfg.filter.as_deref().cloned().unwrap_or_default(),
            cfg.matcher.as_deref(),
            root,
        )?;
        Ok(node)
    }

    /// GOST's host filter (`checkHost`): a node without one takes every
    /// target.
    pub fn accepts_host(&self, host: &str) -> bool {
        let want = self.filter_host.as_str();
        if want.is_empty() {
            return true;
        }
        let host = gost_core::addr::split_host_port(host).map_or(host, |(h, _)| h);
        match want.strip_prefix('.') {
            Some(domain) => host == want || host.ends_with(domain),
            None => host == want,
        }
    }

    fn common(name: &str, addr: &str, network: &str, md: &Metadata) -> Result<Self, NodeError> {
        Self::from_metadata(name, addr, network, md).map_err(|source| NodeError::Metadata {
            node: name.to_string(),
            source,
        })
    }

    fn from_metadata(
        name: &str,
        addr: &str,
        network: &str,
        md: &Metadata,
    ) -> Result<Self, MetadataError> {
        Ok(Node {
            name: name.to_string(),
            addr: addr.to_string(),
            network: (!network.is_empty()).then(|| network.to_string()),
            weight: md
                .get_int("weight")?
                .map(|w| w.clamp(1, u32::MAX as i64) as u32)
                .unwrap_or(1),
            backup: md.get_bool("backup")?.unwrap_or(false),
            max_fails: md.get_int("maxFails")?.map(|v| v.max(0) as u64),
            fail_timeout: md.get_duration("failTimeout")?,
            ..Default::default()
        })
    }
}
