//! The router: how a handler reaches a target (GOST's `chain.Router`). It
//! dials through the service's chain or chain group when it has one, and
//! directly otherwise.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::connector::upstream::Upstream;

use crate::chain::build::ChainBuildError;
use crate::chain::{route, Chain, Chainer, Route};
use crate::connector::bind::{BindNetwork, Bound};
use crate::connector::udp_tun::UdpTunnel;
use gost_core::bypass::{BypassError, BypassGroup};
use gost_core::config::{Config, ServiceConfig};
use gost_core::hosts::{Hosts, HostsError};
use gost_core::metadata::MetadataError;
use gost_core::resolver::{Resolver, ResolverError};

/// GOST's default dial timeout.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Router {
    /// Bounds each attempt: the whole route, handshakes included.
    pub dial_timeout: Duration,
    /// The service's chain or chain group; `None` dials directly.
    pub chain: Option<Arc<Chainer>>,
    /// Extra attempts after a failed one (handler `retries`); each attempt
    /// picks its route afresh, so a node that just failed is passed over.
    pub retries: usize,
    /// The service's bypass: targets it matches are refused.
    pub bypass: Option<Arc<BypassGroup>>,
    /// Static mappings consulted first, then the resolver; with neither,
    /// names go unresolved to the chain or to the system resolver.
    pub hosts: Option<Arc<Hosts>>,
    pub resolver: Option<Arc<Resolver>>,
    /// Handler metadata `hash: host`: the `hash` strategy keys on the
    /// target address instead of the client's IP.
    pub hash_by_target: bool,
    /// The service's name, which a bypass plugin is told.
    pub service: Arc<str>,
    /// The service's recorders: each dial's address is recorded, and
    /// again when the dial fails.
    pub recorders: Option<Arc<gost_core::recorder::ServiceRecorders>>,
}

impl Default for Router {
    fn default() -> Self {
        Router {
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
            chain: None,
            retries: 0,
            bypass: None,
            hosts: None,
            resolver: None,
            hash_by_target: false,
            service: Arc::from(""),
            recorders: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The service's bypass matched the target: a policy refusal, which
    /// GOST answers "forbidden" and does not count as an error.
    #[error("dial {network} {}: refused by the service's bypass", gost_core::escape::esc(.addr))]
    Bypassed { network: &'static str, addr: String },
    #[error("dial {network} {}: {source}", gost_core::escape::esc(.addr))]
    Io {
        network: &'static str,
        addr: String,
        source: io::Error,
    },
    #[error("dial {network} {}: timed out after {timeout:?}", gost_core::escape::esc(.addr))]
    Timeout {
        network: &'static str,
        addr: String,
        timeout: Duration,
    },
}

impl DialError {
    pub fn is_bypass(&self) -> bool {
        matches!(self, DialError::Bypassed { .. })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RouterBuildError {
    #[error("metadata: {0}")]
    Metadata(#[from] MetadataError),
    #[error("{0}")]
    Chain(#[from] ChainBuildError),
    #[error("{0}")]
    Bypass(#[from] BypassError),
    #[error("{0}")]
    Hosts(#[from] HostsError),
    #[error("{0}")]
    Resolver(#[from] ResolverError),
    #[error("{0}")]
    Recorder(#[from] gost_core::recorder::RecorderError),
}

/// GOST's handlers record the target they dial (`host`, `network`), and
/// the route as the router writes it: with no chain, the target alone
/// (after `hosts` and the resolver, see [`note_resolved`]).
fn note_target(network: &str, addr: &str) {
    gost_core::recorder::note(|r| {
        r.network = network.to_string();
        r.host = addr.to_string();
        r.route = addr.to_string();
        r.src_addr.clear();
        r.dst_addr.clear();
    });
}

/// The route's last part: the target as dialed, after `hosts` and the
/// resolver.
fn note_resolved(resolved: &str) {
    gost_core::recorder::note(|r| r.route = resolved.to_string());
}

/// The upstream connection's own addresses (`src`, `dst`): to the target,
/// or to the chain's first node.
fn note_ends(local: Option<SocketAddr>, peer: Option<SocketAddr>) {
    gost_core::recorder::note(|r| {
        r.src_addr = local.map(|a| a.to_string()).unwrap_or_default();
        r.dst_addr = peer.map(|a| a.to_string()).unwrap_or_default();
    });
}

/// The router of one service: its `dialTimeout`, and its handler's chain
/// or chain group and `retries` unless metadata `ignoreChain` is set.
pub fn build(
    root: &Config,
    svc: &ServiceConfig,
    registry: &'static crate::registry::Registry,
) -> Result<Router, RouterBuildError> {
    let md = &svc.metadata;
    let mut router = Router::default();
    if let Some(t) = md.get_duration("dialTimeout")?.filter(|t| !t.is_zero()) {
        router.dial_timeout = t;
    }
    router.service = Arc::from(svc.name.as_str());
    router.bypass = gost_core::bypass::group(root, &svc.bypass, &svc.bypasses)?;
    router.hosts = gost_core::hosts::find(root, &svc.hosts)?;
    router.resolver = gost_core::resolver::find(root, &svc.resolver)?;
    router.recorders = gost_core::recorder::for_service(root, svc)?;
    let ignore_chain = md.get_bool("ignoreChain")?.unwrap_or(false);
    if let Some(h) = &svc.handler {
        router.retries = h.retries.max(0) as usize;
        router.hash_by_target = h.metadata.get_string("hash")?.as_deref() == Some("host");
        if !ignore_chain {
            router.chain = crate::chain::build::chainer(root, h, registry)?.map(Arc::new);
            if let Some(c) = &router.chain {
                crate::chain::health::watch_chainer(
                    &svc.name,
                    crate::chain::health::Use::Handler,
                    c,
                );
            }
        }
    }
    Ok(router)
}

/// The router a reverse listener (`rtcp`, `rudp`) binds through: the
/// service's `dialTimeout` and the listener's chain or chain group.
pub fn build_for_listener(
    root: &Config,
    svc: &ServiceConfig,
    registry: &'static crate::registry::Registry,
) -> Result<Router, RouterBuildError> {
    let mut router = Router::default();
    if let Some(t) = svc
        .metadata
        .get_duration("dialTimeout")?
        .filter(|t| !t.is_zero())
    {
        router.dial_timeout = t;
    }
    if let Some(l) = &svc.listener {
        let through = gost_core::config::HandlerConfig {
            chain: l.chain.clone(),
            chain_group: l.chain_group.clone(),
            ..Default::default()
        };
        router.chain = crate::chain::build::chainer(root, &through, registry)?.map(Arc::new);
        if let Some(c) = &router.chain {
            crate::chain::health::watch_chainer(&svc.name, crate::chain::health::Use::Listener, c);
        }
    }
    Ok(router)
}

impl Router {
    /// A TCP stream to `addr`. Through a chain, the stream is the first
    /// node's connection with every handshake done, so the caller relays
    /// on it as on a direct connection, except that a lazy relay node's
    /// response may still be owed on it (see [`Upstream`]).
    ///
    /// The dial's state (resolver, chain handshakes) lives in its own
    /// allocation, freed once connected: inline, it would size every
    /// handler's future for the whole relay, about 1.7 KiB per idle
    /// connection.
    ///
    /// `client` is the client's IP, which the `hash` selector keys on.
    pub async fn dial_tcp(&self, addr: &str, client: IpAddr) -> Result<Upstream, DialError> {
        Box::pin(self.dial_tcp_unboxed(addr, client)).await
    }

    async fn dial_tcp_unboxed(&self, addr: &str, client: IpAddr) -> Result<Upstream, DialError> {
        gost_core::connections::with_current(|c| c.set_target(addr));
        note_target("tcp", addr);
        self.check_bypass("tcp", addr).await?;
        self.record(gost_core::recorder::ROUTER_DIAL_ADDRESS, addr);
        let r = self.dial_tcp_attempts(addr, client).await;
        match &r {
            Ok(up) => note_ends(up.local_addr().ok(), up.peer_addr().ok()),
            Err(_) => self.record(gost_core::recorder::ROUTER_DIAL_ADDRESS_ERROR, addr),
        }
        r
    }

    /// GOST's `Router.record`: the dialed host, without its port.
    fn record(&self, record: &str, addr: &str) {
        if let Some(r) = &self.recorders {
            r.record(record, || {
                gost_core::recorder::host_of(addr).as_bytes().to_vec()
            });
        }
    }

    async fn dial_tcp_attempts(&self, addr: &str, client: IpAddr) -> Result<Upstream, DialError> {
        let mut last = None;
        for attempt in 0..=self.retries {
            let work = async {
                let resolved = gost_core::resolver::resolve_addr(
                    addr,
                    self.hosts.as_deref(),
                    self.resolver.as_deref(),
                )
                .await?;
                note_resolved(&resolved);
                self.try_dial_tcp(&resolved, gost_core::addr::host_of(addr), client)
                    .await
            };
            match tokio::time::timeout(self.dial_timeout, work).await {
                Ok(Ok(s)) => return Ok(s),
                Ok(Err(source)) => {
                    tracing::debug!(addr = %gost_core::escape::esc(addr), attempt, error = %source, "dial failed");
                    last = Some(DialError::Io {
                        network: "tcp",
                        addr: addr.to_string(),
                        source,
                    });
                }
                Err(_) => {
                    tracing::debug!(addr = %gost_core::escape::esc(addr), attempt, "dial timed out");
                    last = Some(DialError::Timeout {
                        network: "tcp",
                        addr: addr.to_string(),
                        timeout: self.dial_timeout,
                    });
                }
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// A stream to the unix socket at `path`: through the service's chain
    /// the last node's (GOST's `Router.Dial` with network `unix`),
    /// directly otherwise.
    pub async fn dial_unix(&self, path: &str, client: IpAddr) -> Result<Upstream, DialError> {
        note_target("unix", path);
        self.record(gost_core::recorder::ROUTER_DIAL_ADDRESS, path);
        let r = self.dial_unix_once(path, client).await;
        match &r {
            Ok(up) => note_ends(up.local_addr().ok(), up.peer_addr().ok()),
            Err(_) => self.record(gost_core::recorder::ROUTER_DIAL_ADDRESS_ERROR, path),
        }
        r
    }

    async fn dial_unix_once(&self, path: &str, client: IpAddr) -> Result<Upstream, DialError> {
        let io = |source| DialError::Io {
            network: "unix",
            addr: path.to_string(),
            source,
        };
        let work = async {
            match self.route_for("unix", path, path, client) {
                Some((chain, nodes)) => finish_route(
                    &chain,
                    path,
                    route::dial_unix(&chain.name, &nodes, path).await,
                ),
                None => gost_transport::unix::connect(path)
                    .await
                    .map(Upstream::direct),
            }
        };
        match tokio::time::timeout(self.dial_timeout, Box::pin(work)).await {
            Ok(r) => r.map_err(io),
            Err(_) => Err(DialError::Timeout {
                network: "unix",
                addr: path.to_string(),
                timeout: self.dial_timeout,
            }),
        }
    }

    /// Refuses a target the service's bypass matches.
    pub async fn check_bypass(&self, network: &'static str, addr: &str) -> Result<(), DialError> {
        let bypassed = match &self.bypass {
            Some(b) => b.check(&self.service, network, addr).await,
            None => false,
        };
        if bypassed {
            return Err(DialError::Bypassed {
                network,
                addr: addr.to_string(),
            });
        }
        Ok(())
    }

    /// `addr` is the target after hosts and resolver; `host` is the name
    /// the client asked for, which node filters and hashing use.
    async fn try_dial_tcp(&self, addr: &str, host: &str, client: IpAddr) -> io::Result<Upstream> {
        match self.route_for("tcp", addr, host, client) {
            Some((chain, nodes)) => {
                finish_route(&chain, addr, route::dial(&chain.name, &nodes, addr).await)
            }
            None => gost_core::dialer::dial_tcp(addr)
                .await
                .map(Upstream::direct),
        }
    }

    /// The chain and its nodes for a connection to `addr`, or `None` to go
    /// directly (no chain, or every hop bypassed for this target).
    fn route_for(
        &self,
        network: &str,
        addr: &str,
        host: &str,
        client: IpAddr,
    ) -> Option<(Arc<Chain>, Route)> {
        let client = client.to_string();
        let hash_key = if self.hash_by_target {
            Some(addr)
        } else {
            Some(client.as_str())
        };
        let chain = self
            .chain
            .as_ref()
            .and_then(|c| c.pick(network, host, hash_key))?;
        let nodes = chain.route(addr, host, hash_key);
        gost_core::connections::with_current(|c| {
            c.set_route(&chain.name, nodes.nodes.iter().map(|n| &*n.name))
        });
        if gost_core::recorder::noting() {
            let mut route = String::new();
            for n in &nodes.nodes {
                route.push_str(&format!("{}@{} > ", n.name, n.addr));
            }
            route.push_str(addr);
            gost_core::recorder::note(|r| r.route = route);
        }
        if nodes.nodes.is_empty() {
            tracing::debug!(chain = %chain.name, addr = %gost_core::escape::esc(addr), "route: direct");
            return None;
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            let path: Vec<String> = nodes
                .nodes
                .iter()
                .map(|n| format!("{}@{}", n.name, n.addr))
                .collect();
            tracing::debug!(chain = %chain.name, "route {} > {}", path.join(" > "), gost_core::escape::esc(addr));
        }
        Some((chain, nodes))
    }

    /// Datagrams to `addr`: a UDP socket connected to it, so only the
    /// target's replies reach it, or through the service's chain a tunnel
    /// from the chain's last node (GOST's UDP-over-TCP).
    pub async fn dial_udp(&self, addr: &str, client: IpAddr) -> Result<UdpUpstream, DialError> {
        gost_core::connections::with_current(|c| c.set_target(addr));
        note_target("udp", addr);
        self.check_bypass("udp", addr).await?;
        self.record(gost_core::recorder::ROUTER_DIAL_ADDRESS, addr);
        let r = self.dial_udp_once(addr, client).await;
        match &r {
            Ok(UdpUpstream::Direct(s)) => note_ends(s.local_addr().ok(), s.peer_addr().ok()),
            Ok(_) => {}
            Err(_) => self.record(gost_core::recorder::ROUTER_DIAL_ADDRESS_ERROR, addr),
        }
        r
    }

    async fn dial_udp_once(&self, addr: &str, client: IpAddr) -> Result<UdpUpstream, DialError> {
        let work = async {
            let resolved = gost_core::resolver::resolve_addr(
                addr,
                self.hosts.as_deref(),
                self.resolver.as_deref(),
            )
            .await?;
            note_resolved(&resolved);
            if let Some((chain, nodes)) =
                self.route_for("udp", &resolved, gost_core::addr::host_of(addr), client)
            {
                let tunnel = finish_route(
                    &chain,
                    &resolved,
                    route::dial_udp(&chain.name, &nodes, Some(&resolved)).await,
                )?;
                return Ok(UdpUpstream::Tunnel {
                    tunnel,
                    target: resolved,
                });
            }
            let target: SocketAddr = tokio::net::lookup_host(&resolved)
                .await?
                .next()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
            let bind = if target.is_ipv4() {
                SocketAddr::from(([0u8; 4], 0))
            } else {
                SocketAddr::from(([0u16; 8], 0))
            };
            let socket = UdpSocket::bind(bind).await?;
            socket.connect(target).await?;
            Ok(UdpUpstream::Direct(socket))
        };
        self.timed_udp(addr, work).await
    }

    /// A UDP association for datagrams to any target (SOCKS5 UDP): through
    /// the service's chain a tunnel from its last node; `None` when the
    /// datagrams go directly.
    pub async fn dial_udp_association(
        &self,
        client: IpAddr,
    ) -> Result<Option<UdpTunnel>, DialError> {
        let work = async {
            match self.route_for("udp", "", "", client) {
                Some((chain, nodes)) => finish_route(
                    &chain,
                    "udp association",
                    route::dial_udp(&chain.name, &nodes, None).await,
                )
                .map(Some),
                None => Ok(None),
            }
        };
        self.timed_udp("", work).await
    }

    /// A BIND at `addr` on the last node of the service's chain, for
    /// reverse forwarding; there is nothing to bind without a chain.
    pub async fn bind(&self, network: BindNetwork, addr: &str) -> Result<Bound, DialError> {
        let net = match network {
            BindNetwork::Tcp => "tcp",
            BindNetwork::Udp => "udp",
            BindNetwork::Unix => "unix",
        };
        let io = |source| DialError::Io {
            network: net,
            addr: addr.to_string(),
            source,
        };
        let any = std::net::IpAddr::from([0u8; 4]);
        let Some((chain, nodes)) = self.route_for(net, addr, gost_core::addr::host_of(addr), any)
        else {
            return Err(io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "reverse forwarding needs a chain to bind through",
            )));
        };
        let work = route::bind(&chain.name, &nodes, network, addr);
        match tokio::time::timeout(self.dial_timeout, work).await {
            Ok(r) => finish_route(&chain, addr, r).map_err(io),
            Err(_) => Err(DialError::Timeout {
                network: net,
                addr: addr.to_string(),
                timeout: self.dial_timeout,
            }),
        }
    }

    async fn timed_udp<T>(
        &self,
        addr: &str,
        work: impl std::future::Future<Output = io::Result<T>>,
    ) -> Result<T, DialError> {
        match tokio::time::timeout(self.dial_timeout, work).await {
            Ok(r) => r.map_err(|source| DialError::Io {
                network: "udp",
                addr: addr.to_string(),
                source,
            }),
            Err(_) => Err(DialError::Timeout {
                network: "udp",
                addr: addr.to_string(),
                timeout: self.dial_timeout,
            }),
        }
    }
}

/// Marks the chain by the route's outcome and names it in the error.
fn finish_route<T>(chain: &Chain, addr: &str, r: Result<T, route::RouteError>) -> io::Result<T> {
    match r {
        Ok(s) => {
            chain.marker.reset();
            Ok(s)
        }
        Err(e) => {
            chain.marker.mark();
            let e = e.into_io();
            tracing::warn!(chain = %chain.name, addr = %gost_core::escape::esc(addr), error = %e, "route failed");
            Err(io::Error::new(
                e.kind(),
                format!("chain {}: {e}", chain.name),
            ))
        }
    }
}

/// Where a UDP service's datagrams to one target go.
#[derive(Debug)]
pub enum UdpUpstream {
    Direct(UdpSocket),
    Tunnel { tunnel: UdpTunnel, target: String },
}

impl UdpUpstream {
    pub async fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        match self {
            UdpUpstream::Direct(s) => s.send(payload).await.map(|_| ()),
            UdpUpstream::Tunnel { tunnel, target } => tunnel.send_to(payload, target).await,
        }
    }

    /// The next reply. Cancel-safe, so it can wait in a `select!`.
    pub async fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            UdpUpstream::Direct(s) => s.recv(buf).await,
            UdpUpstream::Tunnel { tunnel, .. } => tunnel.recv(buf).await,
        }
    }
}

/// [`unsupported`] for one service, for a change that touches that
/// service only (the config's other objects were checked before).
pub fn unsupported_service(cfg: &Config, svc: &ServiceConfig) -> Vec<String> {
    let mut out = service_unsupported(svc);
    out.extend(forwarder_node_unsupported(cfg, svc));
    out
}

/// What a service's own listener and handler ask for that this build
/// cannot do.
fn service_unsupported(svc: &ServiceConfig) -> Vec<String> {
    let mut out = Vec::new();
    let name = &svc.name;
    let ignore_chain = svc
        .metadata
        .get_bool("ignoreChain")
        .ok()
        .flatten()
        .unwrap_or(false);
    if let Some(l) = &svc.listener {
        let reverse = matches!(l.r#type.as_str(), "rtcp" | "rudp" | "runix");
        if !reverse && !ignore_chain && (!l.chain.is_empty() || l.chain_group.is_some()) {
            out.push(format!(
                "service \"{name}\": listener chains are not supported yet"
            ));
        }
    }
    let Some(h) = &svc.handler else {
        return out;
    };
    let chained = !ignore_chain && (!h.chain.is_empty() || h.chain_group.is_some());
    let md_on = |key: &str| h.metadata.get_bool(key).ok().flatten().unwrap_or(false);
    if md_on("sniffing.websocket") {
        out.push(format!(
            "service \"{name}\": sniffing.websocket is not supported yet (it records WebSocket frames to recorders, which this build's recorders do not write)"
        ));
    }
    let socks_bind = matches!(h.r#type.as_str(), "socks5" | "socks" | "auto")
        && h.metadata.get_bool("bind").ok().flatten().unwrap_or(false);
    // BIND listens (and UDP-over-TCP with a port binds) on this host,
    // where GOST would bind on the chain's last node.
    if chained && socks_bind {
        out.push(format!(
            "service \"{name}\": SOCKS5 BIND through a chain is not supported yet"
        ));
    }
    out
}

/// What the routing side of a config asks for that this build cannot do,
/// each named as the config names it.
pub fn unsupported(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for svc in &cfg.services {
        out.extend(service_unsupported(svc));
    }
    for svc in &cfg.services {
        out.extend(forwarder_node_unsupported(cfg, svc));
    }
    for (owner, hop) in cfg
        .chains
        .iter()
        .flat_map(|c| {
            c.hops
                .iter()
                .map(move |h| (format!("chain \"{}\": ", c.name), h))
        })
        .chain(cfg.hops.iter().map(|h| (String::new(), h)))
    {
        let hop_name = &hop.name;
        // A wasm selector serves forwarders (`forwarder.hop`); a chain does
        // not consult one yet, whether the hop is inline or named.
        let in_chain = !owner.is_empty()
            || cfg
                .chains
                .iter()
                .any(|c| c.hops.iter().any(|h| &h.name == hop_name));
        if hop.plugin.is_some() && in_chain {
            out.push(format!(
                "{owner}hop \"{hop_name}\": plugin in a chain is not supported yet"
            ));
        }
    }
    out
}

/// Forwarder node options this build does not apply yet (node `filter`,
/// `matcher` and most of `http` work, with the handler's `sniffing`).
fn forwarder_node_unsupported(cfg: &Config, svc: &ServiceConfig) -> Vec<String> {
    let Some(fwd) = &svc.forwarder else {
        return Vec::new();
    };
    let from_hop = cfg
        .hops
        .iter()
        .filter(|h| !fwd.hop.is_empty() && h.name == fwd.hop)
        .flat_map(|h| {
            h.nodes
                .iter()
                .map(gost_core::config::ForwardNodeConfig::from)
        });
    let sniffing = svc.handler.as_ref().is_some_and(|h| {
        matches!(h.r#type.as_str(), "tcp" | "forward")
            && h.metadata.get_bool("sniffing").ok().flatten() == Some(true)
    });
    let mut out = Vec::new();
    for n in fwd.nodes.iter().cloned().chain(from_hop) {
        // The body rewrites and `auth` are the `http` options not applied;
        // the others need the HTTP requests and responses, which only a
        // sniffing tcp/forward handler sees.
        let (http_rest, http_used) = match &n.http {
            Some(h) => (
                !h.rewrite_body.is_empty()
                    || !h.rewrite_request_body.is_empty()
                    || !h.rewrite_response_body.is_empty()
                    || h.auth.is_some(),
                **h != gost_core::config::HTTPNodeConfig {
                    rewrite_body: h.rewrite_body.clone(),
                    rewrite_request_body: h.rewrite_request_body.clone(),
                    rewrite_response_body: h.rewrite_response_body.clone(),
                    auth: h.auth.clone(),
                    ..Default::default()
                },
            ),
            None => (false, false),
        };
        if http_used && !sniffing {
            out.push(format!(
                "service \"{}\": forwarder node \"{}\": http (failCodes, host, requestHeader, responseHeader, rewriteURL) needs a tcp or forward handler with sniffing: true",
                svc.name, n.name
            ));
        }
        for (what, set) in [
            ("http body rewrites and auth", http_rest),
            ("tls", n.tls.is_some()),
            ("probe", n.probe.is_some()),
            ("bypass", !n.bypass.is_empty() || !n.bypasses.is_empty()),
        ] {
            if set {
                out.push(format!(
                    "service \"{}\": forwarder node \"{}\": {what} is not supported yet",
                    svc.name, n.name
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_routing_cannot_do_is_named() {
        let cfg: Config = serde_yaml::from_str(
            r#"
services:
- {name: u, addr: ":1", handler: {type: udp, chain: c}, listener: {type: udp}}
- {name: s, addr: ":2", limiter: l, handler: {type: socks5, chain: c, metadata: {udp: true}}}
- {name: i, addr: ":3", handler: {type: udp, chain: c}, metadata: {ignoreChain: true}}
- {name: w, addr: ":4", handler: {type: tcp, metadata: {sniffing: true, sniffing.websocket: true}}}
- {name: h, addr: ":5", handler: {type: relay, metadata: {sniffing: true}}}
- {name: l, addr: ":6", limiter: l, handler: {type: auto, metadata: {udp: true, bind: true}}}
- {name: lu, addr: ":7", limiter: l, handler: {type: udp}, listener: {type: udp}}
chains:
- {name: c, hops: [{name: h, plugin: {type: http, addr: "r:1"}, nodes: [{name: n, addr: "x:1"}]}]}
"#,
        )
        .unwrap();
        assert_eq!(
            unsupported(&cfg),
            [
                "service \"w\": sniffing.websocket is not supported yet (it records WebSocket frames to recorders, which this build's recorders do not write)",
                "chain \"c\": hop \"h\": plugin in a chain is not supported yet",
            ]
        );
    }

    #[test]
    fn forwarder_node_options_not_applied_are_named() {
        let cfg: Config = serde_yaml::from_str(
            r#"
services:
- name: f
  addr: ":1"
  handler: {type: tcp}
  forwarder:
    nodes:
    - {name: a, addr: "x:1", filter: {protocol: http}}
    - {name: b, addr: "x:2", matcher: {rule: "Host(`x`)"}, bypass: by}
    - {name: c, addr: "x:3"}
- {name: g, addr: ":2", handler: {type: tcp}, forwarder: {hop: h}}
hops:
- {name: h, nodes: [{name: d, addr: "x:4", tls: {serverName: x}}]}
"#,
        )
        .unwrap();
        assert_eq!(
            unsupported(&cfg),
            [
                "service \"f\": forwarder node \"b\": bypass is not supported yet",
                "service \"g\": forwarder node \"d\": tls is not supported yet",
            ]
        );
    }
}
