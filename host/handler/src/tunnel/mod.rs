//! GOST's `tunnel` handler (`x/handler/tunnel`): the public side of
//! GOST's reverse tunnels. It speaks the relay protocol with a tunnel id
//! feature:
//!
//! - BIND registers the client as a connector of the tunnel: the answer
//!   names the endpoint (the host visitors use) and the connector id, and
//!   the connection then carries an smux session in which this side opens
//!   one stream per visitor, each starting with a relay response naming
//!   the visitor and the host it asked for (see [`pool`]).
//! - CONNECT visits a tunnel: the target host is looked up in the ingress
//!   (or, with `tunnel.direct`, the request's own tunnel id is used) and
//!   the connection is joined to a stream of one of the tunnel's
//!   connectors, picked at random by weight.
//! - The entry point (`entrypoint` address) takes public traffic without
//!   a GOST client: by the first byte, a relay request naming its tunnel,
//!   a TLS ClientHello routed by its SNI, or HTTP routed by its `Host`,
//!   both through the ingress (see [`entry`]).
//!
//! - With an `sd` (service discovery, GOST's `sds:`), each client is
//!   registered there under its tunnel id with this handler's node id and
//!   entry point address, renewed every `tunnel.ttl` and deregistered
//!   when it leaves; a visitor for a tunnel with no client here is sent
//!   on to the entry point of another node that has one, as GOST's
//!   `Dialer` does: the request as it came (a relay request, or the
//!   HTTP or TLS bytes), for that node to route.
//!
//! The state (registered clients, the entry point's listener) belongs to
//! the service, not to one build of the handler: a change of the
//! ingress or of other settings rebuilds the handler, and the clients
//! registered before stay registered.

mod entry;
pub mod pool;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{ConnContext, HandleFuture, Handler, HandlerError};
use gost_chain::connector::upstream::Upstream;
use gost_chain::relay::{self, RelayOptions};
use gost_core::auth::Auther;
use gost_core::escape::esc;
use gost_core::ingress::Ingress;
use gost_core::metadata::{Metadata, MetadataError};
use gost_core::sd::Sd;
use gost_core::stats::Stats;
use gost_core::stream::Stream;
use gost_proto::relay::{
    CMD_BIND, CMD_CONNECT, CMD_MASK, FLAG_UDP, NETWORK_UDP, STATUS_BAD_REQUEST,
    STATUS_HOST_UNREACHABLE, STATUS_NETWORK_UNREACHABLE, STATUS_OK, STATUS_SERVICE_UNAVAILABLE,
    STATUS_UNAUTHORIZED, VERSION,
};
use gost_proto::tunnel::{encode, parse_features, ConnectorId, Feature, TunnelId};
use gost_transport::listener::Conn;
use gost_transport::mux::{MuxConfig, Session};
use pool::{Connector, ConnectorInfo, Pool};

/// GOST has no default `readTimeout` for the tunnel handler; an unbounded
/// wait for a request would let idle connections pile up.
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(15);
/// How many connectors a visitor's stream is tried on (GOST's `Retry`).
const DIAL_TRIES: usize = 3;
/// GOST's `entrypoint.readTimeout` default.
const DEFAULT_ENTRY_READ_TIMEOUT: Duration = Duration::from_secs(15);
/// GOST's `tunnel.ttl` default: how often registrations are renewed.
const DEFAULT_TTL: Duration = Duration::from_secs(15);
/// GOST's wait for another node's entry point.
const REMOTE_DIAL_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct TunnelOptions {
    /// `readTimeout`: the request must arrive within this.
    pub read_timeout: Duration,
    /// `entrypoint`: the public address visitors without a GOST client
    /// use.
    pub entrypoint: Option<String>,
    /// `entrypoint.id`: visitors whose tunnel id is this one are public
    /// visitors, routed by the ingress.
    pub entrypoint_id: Option<TunnelId>,
    /// `tunnel.direct`: a visitor reaches the tunnel its request names,
    /// with no ingress rule needed.
    pub direct: bool,
    /// `ingress`: the name of the ingress object.
    pub ingress: Option<String>,
    /// `tunnel`: inline ingress rules, `host:id,host:id`.
    pub rules: Vec<gost_core::config::IngressRuleConfig>,
    /// `idleTimeout` of relayed visitor connections.
    pub idle_timeout: Option<Duration>,
    /// `mux.*`: the registered clients' sessions (version 2 unless set,
    /// as in GOST).
    pub mux: MuxConfig,
    /// `entrypoint.keepalive`: an HTTP visitor's requests for one host
    /// share the stream to the tunnel client (else each request opens
    /// its own, as GOST's transport without keep-alive does).
    pub entry_keepalive: bool,
    /// `entrypoint.readTimeout`: the entry point's wait for the tunnel
    /// client's response head to an HTTP request (GOST's default 15s).
    pub entry_read_timeout: Duration,
    /// `entrypoint.proxyProtocol` (1 or 2): a visitor connection may
    /// start with a PROXY protocol header (either version, as GOST's
    /// listener takes both), whose source address stands for the
    /// visitor's.
    pub entry_proxy_protocol: bool,
    /// `entrypoints`: more entry points, each with its own ingress (by
    /// name; the handler's when unset).
    pub entrypoints: Vec<EntrypointConfig>,
    /// `sd`: the name of the sd object clients are registered with.
    pub sd: Option<String>,
    /// `tunnel.ttl`: how often the clients' sd registrations are renewed.
    pub ttl: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EntrypointConfig {
    pub addr: String,
    pub ingress: Option<String>,
}

/// GOST's `entrypoints` metadata: a list of `{addr, ingress}` (keys in
/// any case, as Go's JSON decoding takes them); entries without an
/// address are skipped, as in GOST.
fn entrypoints(md: &Metadata) -> Result<Vec<EntrypointConfig>, TunnelOptionsError> {
    let Some(v) = md.get("entrypoints").filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let bad = || {
        TunnelOptionsError::Invalid(format!(
            "entrypoints: expected a list of {{addr, ingress}}, got {}",
            esc(&v.to_string())
        ))
    };
    let list = v.as_array().ok_or_else(bad)?;
    let mut out = Vec::new();
    for item in list {
        let obj = item.as_object().ok_or_else(bad)?;
        let field = |name: &str| -> Result<String, TunnelOptionsError> {
            match obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
                None => Ok(String::new()),
                Some((_, serde_json::Value::String(s))) => Ok(s.trim().to_string()),
                Some(_) => Err(bad()),
            }
        };
        let addr = field("addr")?;
        let ingress = field("ingress")?;
        if !addr.is_empty() {
            out.push(EntrypointConfig {
                addr,
                ingress: (!ingress.is_empty()).then_some(ingress),
            });
        }
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum TunnelOptionsError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("{0}")]
    Invalid(String),
}

impl TunnelOptions {
    pub fn from_metadata(md: &Metadata) -> Result<Self, TunnelOptionsError> {
        let invalid = |s: String| TunnelOptionsError::Invalid(format!("tunnel handler: {s}"));
        for (key, why) in [
            (
                "sniffing.websocket",
                "sniffing.websocket (recording WebSocket frames) is not supported",
            ),
            (
                "entrypoint.compression",
                "entrypoint.compression (gzip between the entry point and the tunnel client) is not supported yet",
            ),
        ] {
            if md
                .get(key)
                .is_some_and(|v| !v.is_null() && v != "" && v != false)
            {
                return Err(invalid(why.into()));
            }
        }
        let proxy_protocol = md.get_int("entrypoint.proxyProtocol")?.unwrap_or(0);
        if !(0..=2).contains(&proxy_protocol) {
            return Err(invalid(format!(
                "entrypoint.proxyProtocol {proxy_protocol}: expected 0 (off), 1 or 2"
            )));
        }
        let entrypoints = entrypoints(md)?;
        let entrypoint_id = match md.get_string("entrypoint.id")? {
            Some(s) if !s.is_empty() => Some(TunnelId::parse(&s).ok_or_else(|| {
                invalid(format!(
                    "entrypoint.id {:?} is not a tunnel id (a UUID)",
                    esc(&s)
                ))
            })?),
            _ => None,
        };
        let mut rules = Vec::new();
        for pair in md
            .get_string("tunnel")?
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.trim().is_empty())
        {
            let Some((host, id)) = pair.split_once(':') else {
                return Err(invalid(format!(
                    "tunnel rule {:?}: expected host:tunnel-id",
                    esc(pair)
                )));
            };
            if TunnelId::parse(id.trim()).is_none() {
                return Err(invalid(format!(
                    "tunnel rule {:?}: {:?} is not a tunnel id",
                    esc(pair),
                    esc(id)
                )));
            }
            rules.push(gost_core::config::IngressRuleConfig {
                hostname: host.trim().to_string(),
                endpoint: id.trim().to_string(),
            });
        }
        Ok(TunnelOptions {
            read_timeout: md
                .get_duration("readTimeout")?
                .filter(|t| !t.is_zero())
                .unwrap_or(DEFAULT_READ_TIMEOUT),
            entrypoint: md.get_string("entrypoint")?.filter(|s| !s.is_empty()),
            entrypoint_id,
            direct: md.get_bool("tunnel.direct")?.unwrap_or(false),
            ingress: md.get_string("ingress")?.filter(|s| !s.is_empty()),
            rules,
            idle_timeout: md.get_duration("idleTimeout")?.filter(|t| !t.is_zero()),
            mux: MuxConfig::from_metadata(md, 2).map_err(|e| invalid(e.to_string()))?,
            entry_keepalive: md.get_bool("entrypoint.keepalive")?.unwrap_or(false),
            entry_read_timeout: md
                .get_duration("entrypoint.readTimeout")?
                .filter(|t| !t.is_zero())
                .unwrap_or(DEFAULT_ENTRY_READ_TIMEOUT),
            entry_proxy_protocol: proxy_protocol > 0,
            entrypoints,
            sd: md.get_string("sd")?.filter(|s| !s.is_empty()),
            ttl: md
                .get_duration("tunnel.ttl")?
                .filter(|t| !t.is_zero())
                .unwrap_or(DEFAULT_TTL),
        })
    }
}

/// One service's tunnels: kept across rebuilds of its handler.
pub(crate) struct Shared {
    service: Arc<str>,
    pool: Pool,
    ingress: RwLock<Option<Arc<Ingress>>>,
    /// The entry points: `entrypoint` first, then `entrypoints`.
    entry: Mutex<Vec<entry::Entry>>,
    /// GOST's tunnel handler id (a random UUID): the entry point names
    /// itself with it in `Gost-Forwarded-Node`.
    node: String,
    entry_keepalive: std::sync::atomic::AtomicBool,
    entry_read_timeout: RwLock<Duration>,
    entry_proxy_protocol: std::sync::atomic::AtomicBool,
    /// Failures counted for the API and metrics: requests refused (bad
    /// request, credentials, no route, no client), registrations refused
    /// (full), clients lost while streams were open.
    refused: std::sync::atomic::AtomicU64,
    sd: RwLock<Option<Arc<dyn Sd>>>,
    /// GOST's `entrypoint` as written: the address registered in the sd.
    entry_addr: RwLock<String>,
}

/// Where a visitor's connection goes.
pub(crate) enum Dialed {
    /// A stream of one of this node's clients, which the visitor's
    /// stream head goes first on.
    Local(gost_transport::mux::MuxStream, Arc<Connector>),
    /// Another node's entry point (from the sd), which takes the
    /// visitor's request as it came.
    Remote(tokio::net::TcpStream, String),
}

impl Shared {
    fn ingress(&self) -> Option<Arc<Ingress>> {
        self.ingress
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn count_refused(&self) {
        self.refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn sd(&self) -> Option<Arc<dyn Sd>> {
        self.sd.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A stream to one of `tunnel`'s connectors for a visitor, or failing
    /// that another node's entry point the sd names, and the tunnel's
    /// counters.
    async fn dial(&self, tunnel: &TunnelId, udp: bool) -> Option<(Dialed, Arc<Stats>)> {
        for _ in 0..DIAL_TRIES {
            let Some((c, stats)) = self.pool.get(tunnel, udp, rand::random()) else {
                break;
            };
            match c.session.open().await {
                Ok(s) => return Some((Dialed::Local(s, c), stats)),
                Err(e) => {
                    tracing::debug!(service = %self.service, tunnel = %tunnel, connector = %c.id, error = %e, "tunnel: connector's session gone");
                    self.pool.remove(&c.tunnel, &c.id);
                }
            }
        }
        let sd = self.sd()?;
        let name = tunnel.to_string();
        let network = if udp { "udp" } else { "tcp" };
        let services = match sd.get(&name).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(service = %self.service, tunnel = %tunnel, error = %e, "tunnel: sd lookup failed");
                return None;
            }
        };
        let other = services
            .into_iter()
            .find(|s| s.node != self.node && s.network == network && !s.address.is_empty())?;
        let addr = remote_addr(&other.address);
        let tcp = match tokio::time::timeout(
            REMOTE_DIAL_TIMEOUT,
            gost_core::dialer::dial_tcp(&addr),
        )
        .await
        {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                tracing::warn!(service = %self.service, tunnel = %tunnel, node = %esc(&other.node), address = %esc(&addr), error = %e, "tunnel: other node's entry point unreachable");
                return None;
            }
            Err(_) => {
                tracing::warn!(service = %self.service, tunnel = %tunnel, node = %esc(&other.node), address = %esc(&addr), "tunnel: other node's entry point did not answer in time");
                return None;
            }
        };
        tracing::debug!(service = %self.service, tunnel = %tunnel, node = %esc(&other.node), address = %esc(&addr), "tunnel: visitor sent to another node");
        Some((Dialed::Remote(tcp, other.node), self.pool.stats(tunnel)))
    }
}

/// An entry point address as GOST's dialer takes it: no host, or an
/// unspecified one, is this machine.
fn remote_addr(addr: &str) -> String {
    match gost_core::addr::split_host_port(addr) {
        Ok(("" | "0.0.0.0", port)) => format!("127.0.0.1:{port}"),
        Ok(("::", port)) => format!("[::1]:{port}"),
        _ => addr.to_string(),
    }
}

fn registry() -> &'static Mutex<HashMap<String, Weak<Shared>>> {
    static SHARED: std::sync::OnceLock<Mutex<HashMap<String, Weak<Shared>>>> =
        std::sync::OnceLock::new();
    SHARED.get_or_init(Default::default)
}

/// The clients registered with each tunnel service, by service name.
pub fn connected() -> Vec<(String, Vec<ConnectorInfo>)> {
    let map = registry().lock().unwrap_or_else(|p| p.into_inner());
    let mut out: Vec<(String, Vec<ConnectorInfo>)> = map
        .iter()
        .filter_map(|(name, w)| Some((name.clone(), w.upgrade()?.pool.connectors())))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Per tunnel of each service: connected clients and visitor counters,
/// and the service's refused requests; for the metrics.
#[allow(clippy::type_complexity)]
pub fn tunnel_counts() -> Vec<(String, u64, Vec<(String, usize, Arc<Stats>)>)> {
    let map = registry().lock().unwrap_or_else(|p| p.into_inner());
    map.iter()
        .filter_map(|(name, w)| {
            let s = w.upgrade()?;
            let refused = s.refused.load(std::sync::atomic::Ordering::Relaxed);
            Some((name.clone(), refused, s.pool.counts()))
        })
        .collect()
}

pub struct TunnelHandler {
    shared: Arc<Shared>,
    auther: Option<Arc<dyn Auther>>,
    opts: TunnelOptions,
}

/// A request's parts the handler uses.
#[derive(Debug, Default)]
struct Request {
    cmd: u8,
    udp: bool,
    user: Option<(String, String)>,
    src: String,
    dst: String,
    tunnel: Option<TunnelId>,
    /// The request as read, which goes on as it is to another node.
    raw: Vec<u8>,
}

impl Request {
    fn from_features(cmd: u8, features: Vec<Feature>) -> Request {
        let mut r = Request {
            cmd,
            udp: cmd & FLAG_UDP != 0,
            ..Default::default()
        };
        let mut addrs = 0;
        for f in features {
            match f {
                Feature::UserAuth { user, pass } => r.user = Some((user, pass)),
                Feature::Addr(a) => {
                    if addrs == 0 {
                        r.src = a;
                    } else {
                        r.dst = a;
                    }
                    addrs += 1;
                }
                Feature::Tunnel(id) => {
                    r.tunnel = Some(TunnelId(id)).filter(|t| !t.is_zero());
                }
                Feature::Network(n) => r.udp = n == NETWORK_UDP,
            }
        }
        r
    }
}

/// Reads `VER CMD FLEN(2) FEATURES`; an error for a wrong version or a
/// malformed feature (closed without an answer, as GOST does).
async fn read_request(stream: &mut Stream) -> Result<Request, HandlerError> {
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).await?;
    if head[0] != VERSION {
        return Err(HandlerError::Protocol(format!(
            "tunnel: unsupported version {}",
            head[0]
        )));
    }
    let mut features = vec![0u8; u16::from_be_bytes([head[2], head[3]]) as usize];
    stream.read_exact(&mut features).await?;
    let parsed = parse_features(&features).map_err(HandlerError::Protocol)?;
    let mut req = Request::from_features(head[1], parsed);
    req.raw = head.to_vec();
    req.raw.extend_from_slice(&features);
    Ok(req)
}

fn status(code: u8) -> [u8; 4] {
    [VERSION, code, 0, 0]
}

/// The head of a visitor's stream: OK, the visitor, the host it asked
/// for.
fn stream_head(src: &str, dst: &str) -> Result<Vec<u8>, HandlerError> {
    encode(
        STATUS_OK,
        &[
            Feature::Addr(src.to_string()),
            Feature::Addr(dst.to_string()),
        ],
    )
    .map_err(HandlerError::Protocol)
}

/// A random (version 4) UUID in its text form.
fn random_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// GOST's endpoint of a tunnel: the first 8 bytes of the MD5 of its id,
/// in hex.
fn endpoint_of(tunnel: &TunnelId) -> String {
    use md5::Digest;
    let sum = md5::Md5::digest(tunnel.to_string().as_bytes());
    sum[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl TunnelHandler {
    /// Takes over the state of the service's previous handler, if one is
    /// still alive, and binds the entry point if it is new or moved.
    pub fn new(
        service: &str,
        opts: TunnelOptions,
        ingress: Option<Arc<Ingress>>,
        entry_ingresses: Vec<Option<Arc<Ingress>>>,
        auther: Option<Arc<dyn Auther>>,
        sd: Option<Arc<dyn Sd>>,
    ) -> Result<Self, std::io::Error> {
        let ingress = match ingress {
            Some(i) => Some(i),
            None if !opts.rules.is_empty() => Some(Arc::new(Ingress::inline(
                "@internal",
                opts.rules.iter().cloned(),
            ))),
            None => None,
        };
        let shared = {
            let mut map = registry().lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|_, w| w.strong_count() > 0);
            match map.get(service).and_then(Weak::upgrade) {
                Some(s) => s,
                None => {
                    let s = Arc::new(Shared {
                        service: service.into(),
                        pool: Pool::default(),
                        ingress: RwLock::new(None),
                        entry: Mutex::new(Vec::new()),
                        node: random_uuid(),
                        entry_keepalive: Default::default(),
                        entry_read_timeout: RwLock::new(DEFAULT_ENTRY_READ_TIMEOUT),
                        entry_proxy_protocol: Default::default(),
                        refused: Default::default(),
                        sd: RwLock::new(None),
                        entry_addr: RwLock::new(String::new()),
                    });
                    map.insert(service.to_string(), Arc::downgrade(&s));
                    s
                }
            }
        };
        *shared.ingress.write().unwrap_or_else(|p| p.into_inner()) = ingress;
        *shared.sd.write().unwrap_or_else(|p| p.into_inner()) = sd;
        *shared.entry_addr.write().unwrap_or_else(|p| p.into_inner()) =
            opts.entrypoint.clone().unwrap_or_default();
        shared
            .entry_keepalive
            .store(opts.entry_keepalive, std::sync::atomic::Ordering::Relaxed);
        *shared
            .entry_read_timeout
            .write()
            .unwrap_or_else(|p| p.into_inner()) = opts.entry_read_timeout;
        shared.entry_proxy_protocol.store(
            opts.entry_proxy_protocol,
            std::sync::atomic::Ordering::Relaxed,
        );
        {
            // Entry points at the same address are kept (their visitors
            // stay), with the ingress they are given now.
            let mut entries = shared.entry.lock().unwrap_or_else(|p| p.into_inner());
            let mut old: Vec<entry::Entry> = std::mem::take(&mut *entries);
            let wanted = opts.entrypoint.iter().map(|a| (a.clone(), None)).chain(
                opts.entrypoints
                    .iter()
                    .map(|e| e.addr.clone())
                    .zip(entry_ingresses),
            );
            for (addr, ingress) in wanted {
                match old.iter().position(|e| e.addr == addr) {
                    Some(i) => {
                        let e = old.swap_remove(i);
                        e.set_ingress(ingress);
                        entries.push(e);
                    }
                    None => {
                        entries.push(entry::Entry::bind(&addr, ingress, Arc::downgrade(&shared))?)
                    }
                }
            }
        }
        Ok(TunnelHandler {
            shared,
            auther,
            opts,
        })
    }

    /// The entry points' bound addresses, `entrypoint` first.
    pub fn entrypoint_addrs(&self) -> Vec<SocketAddr> {
        self.shared
            .entry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|e| e.local)
            .collect()
    }

    async fn serve(&self, mut stream: Stream, ctx: ConnContext) -> Result<(), HandlerError> {
        let req = match Box::pin(tokio::time::timeout(
            self.opts.read_timeout,
            read_request(&mut stream),
        ))
        .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                self.shared.count_refused();
                return Err(e);
            }
            Err(_) => {
                self.shared.count_refused();
                return Err(HandlerError::Protocol(format!(
                    "tunnel: request not complete within {:?}",
                    self.opts.read_timeout
                )));
            }
        };
        let Some(tunnel) = req.tunnel else {
            return self
                .refuse(
                    stream,
                    STATUS_BAD_REQUEST,
                    "tunnel: request without a tunnel id".into(),
                )
                .await;
        };
        if let Some(auther) = &self.auther {
            let (user, pass) = req.user.clone().unwrap_or_default();
            let who = gost_core::auth::AuthRequest::new(&user, &pass).from(&ctx.service, ctx.peer);
            if auther.authenticate(who).await.is_none() {
                return self
                    .refuse(
                        stream,
                        STATUS_UNAUTHORIZED,
                        format!(
                            "tunnel: authentication failed for user {:?} (tunnel {tunnel})",
                            esc(&user)
                        ),
                    )
                    .await;
            }
        }
        match req.cmd & CMD_MASK {
            CMD_CONNECT => Box::pin(self.connect(stream, &ctx, &req, tunnel)).await,
            CMD_BIND => Box::pin(self.bind(stream, &ctx, &req, tunnel)).await,
            other => {
                self.refuse(
                    stream,
                    STATUS_BAD_REQUEST,
                    format!("tunnel: unknown command {other}"),
                )
                .await
            }
        }
    }

    /// Answers a refusal and counts it; the error is logged once by the
    /// service, with the client's address.
    async fn refuse(&self, mut stream: Stream, code: u8, msg: String) -> Result<(), HandlerError> {
        self.shared.count_refused();
        let _ = stream.write_all_now(&status(code)).await;
        Err(HandlerError::Protocol(msg))
    }

    async fn connect(
        &self,
        mut stream: Stream,
        ctx: &ConnContext,
        req: &Request,
        tunnel: TunnelId,
    ) -> Result<(), HandlerError> {
        let host = gost_core::addr::host_of(&req.dst);
        let endpoint = match self.shared.ingress().filter(|_| !host.is_empty()) {
            Some(i) => i.endpoint(&self.shared.service, host).await,
            None => None,
        };
        let routed = endpoint.and_then(|e| TunnelId::parse(&e));
        let public = self
            .opts
            .entrypoint_id
            .is_some_and(|e| e.key() == tunnel.key());
        let target = if public {
            match routed {
                None => Err((
                    STATUS_NETWORK_UNREACHABLE,
                    format!("tunnel: no route to host {:?}", esc(host)),
                )),
                Some(t) if t.is_private() => Err((
                    STATUS_HOST_UNREACHABLE,
                    format!("tunnel: tunnel {t} is private for host {:?}", esc(host)),
                )),
                Some(t) => Ok(t),
            }
        } else {
            let t = if self.opts.direct {
                Some(tunnel)
            } else {
                routed
            };
            match t {
                Some(t) if t.key() == tunnel.key() => Ok(t),
                _ => Err((
                    STATUS_HOST_UNREACHABLE,
                    format!(
                        "tunnel: no route to host {:?} in tunnel {tunnel} (no ingress rule maps it, and tunnel.direct is off)",
                        esc(host)
                    ),
                )),
            }
        };
        let target = match target {
            Ok(t) => t,
            Err((code, msg)) => {
                self.shared.count_refused();
                let _ = stream.write_all_now(&status(code)).await;
                return Err(HandlerError::Protocol(msg));
            }
        };
        let Some((dialed, stats)) = self.shared.dial(&target, req.udp).await else {
            self.shared.count_refused();
            let _ = stream
                .write_all_now(&status(STATUS_SERVICE_UNAVAILABLE))
                .await;
            return Err(HandlerError::Protocol(format!(
                "tunnel: tunnel {target} has no connected {} client",
                if req.udp { "udp" } else { "tcp" }
            )));
        };
        let up = match dialed {
            Dialed::Local(mut up, c) => {
                stream.write_all_now(&status(STATUS_OK)).await?;
                up.write_all(&stream_head(&req.src, &req.dst)?).await?;
                tracing::debug!(service = %ctx.service, client = %ctx.peer, tunnel = %target, connector = %c.id, dst = %esc(&req.dst), "tunnel: visitor joined");
                up.into_stream()
            }
            // The other node answers the visitor itself.
            Dialed::Remote(mut up, node) => {
                up.write_all(&req.raw).await?;
                tracing::debug!(service = %ctx.service, client = %ctx.peer, tunnel = %target, node = %esc(&node), dst = %esc(&req.dst), "tunnel: visitor sent to another node");
                Stream::from(up)
            }
        };
        join(stream, up, ctx, stats, self.opts.idle_timeout).await
    }

    async fn bind(
        &self,
        mut stream: Stream,
        ctx: &ConnContext,
        req: &Request,
        tunnel: TunnelId,
    ) -> Result<(), HandlerError> {
        let endpoint = endpoint_of(&tunnel);
        let (host, port) = gost_core::addr::split_host_port(&req.dst).unwrap_or(("", "0"));
        let unspecified = host.is_empty() || host == "0.0.0.0" || host == "::";
        let host = match self.shared.ingress() {
            None => endpoint.clone(),
            Some(_) if unspecified => endpoint.clone(),
            Some(ing) => match ing.endpoint(&self.shared.service, host).await {
                // Another tunnel owns the name: the hash, not a hijack.
                Some(owner) if owner.trim_start_matches('$') != tunnel.to_string() => {
                    endpoint.clone()
                }
                _ => host.to_string(),
            },
        };
        let id = ConnectorId::new(rand::random(), req.udp, tunnel.weight());
        let answer = encode(
            STATUS_OK,
            &[
                Feature::Addr(format!("{host}:{port}")),
                Feature::Tunnel(id.0),
            ],
        )
        .map_err(HandlerError::Protocol)?;
        if let Err(full) = self.shared.pool.reserve(&tunnel) {
            self.shared.count_refused();
            let _ = stream
                .write_all_now(&status(STATUS_SERVICE_UNAVAILABLE))
                .await;
            return Err(HandlerError::Protocol(format!(
                "tunnel: registration for tunnel {tunnel} refused: {}",
                match full {
                    pool::Full::Tunnel =>
                        format!("it has {} clients already", pool::MAX_PER_TUNNEL),
                    pool::Full::Service =>
                        format!("the service has {} clients already", pool::MAX_CONNECTORS),
                }
            )));
        }
        if let Err(e) = stream.write_all_now(&answer).await {
            self.shared.pool.unreserve(&tunnel);
            return Err(e.into());
        }
        let c = Arc::new(Connector {
            id,
            tunnel,
            session: Session::client(stream, &self.opts.mux),
            peer: ctx.peer,
            since: SystemTime::now(),
        });
        self.shared.pool.add(c.clone());
        if let Some(ing) = self.shared.ingress() {
            // As GOST: the plugin learns both names of the tunnel.
            let id = tunnel.to_string();
            ing.set_rule(&self.shared.service, &endpoint, &id).await;
            if host != endpoint {
                ing.set_rule(&self.shared.service, &host, &id).await;
            }
        }
        let network = if req.udp { "udp" } else { "tcp" };
        tracing::info!(service = %ctx.service, client = %ctx.peer, tunnel = %tunnel, connector = %id, weight = id.weight(), network, endpoint = %esc(&host), "tunnel: client registered");
        match self.shared.sd() {
            Some(sd) => self.registered(&*sd, &c, network).await,
            None => c.session.closed().await,
        }
        self.shared.pool.remove(&tunnel, &id);
        let end = c.session.end().unwrap_or_else(|| "closed".into());
        tracing::info!(service = %ctx.service, client = %ctx.peer, tunnel = %tunnel, connector = %id, end = %end, "tunnel: client left");
        if c.session.ended_in_error() {
            return Err(HandlerError::Protocol(format!(
                "tunnel {tunnel}: client {}: mux session: {end}",
                ctx.peer
            )));
        }
        Ok(())
    }
}

impl TunnelHandler {
    /// Keeps `c` registered in `sd` while its session lasts, as GOST's
    /// handler does: registered with the node and the entry point,
    /// renewed every `tunnel.ttl`, deregistered at the end (the last two
    /// naming only the connector, tunnel and node). A failed call is
    /// logged (by the plugin client) and the client stays served here.
    async fn registered(&self, sd: &dyn Sd, c: &Connector, network: &str) {
        let mut service = gost_core::sd::Service {
            id: c.id.to_string(),
            name: c.tunnel.to_string(),
            node: self.shared.node.clone(),
            network: network.to_string(),
            address: self
                .shared
                .entry_addr
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        };
        if let Err(e) = sd.register(&service).await {
            tracing::debug!(service = %self.shared.service, tunnel = %c.tunnel, connector = %c.id, error = %e, "tunnel: sd register failed");
        }
        service.network.clear();
        service.address.clear();
        let mut tick = tokio::time::interval(self.opts.ttl);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = c.session.closed() => break,
                _ = tick.tick() => {
                    if let Err(e) = sd.renew(&service).await {
                        tracing::debug!(service = %self.shared.service, tunnel = %c.tunnel, connector = %c.id, error = %e, "tunnel: sd renew failed");
                    }
                }
            }
        }
        if let Err(e) = sd.deregister(&service).await {
            tracing::debug!(service = %self.shared.service, tunnel = %c.tunnel, connector = %c.id, error = %e, "tunnel: sd deregister failed");
        }
    }
}

/// Relays a visitor and a client's stream, counting the connection and
/// its bytes for the tunnel as well as for the service.
async fn join(
    visitor: Stream,
    stream: Stream,
    ctx: &ConnContext,
    tunnel_stats: Arc<Stats>,
    idle_timeout: Option<Duration>,
) -> Result<(), HandlerError> {
    let _open = tunnel_stats.open_conn();
    let mut links = vec![tunnel_stats.clone()];
    links.extend(ctx.stats.clone());
    let ctx = ConnContext {
        stats: Some(Arc::new(Stats::linked(links))),
        ..ctx.clone()
    };
    let opts = RelayOptions { idle_timeout };
    relay::relay(visitor, Upstream::direct(stream), &ctx, &opts).await?;
    Ok(())
}

impl Handler for TunnelHandler {
    fn handle(&self, conn: Conn, ctx: ConnContext) -> HandleFuture<'_> {
        super::tcp_only("tunnel", conn, move |s| self.serve(s, ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_gosts_md5_prefix() {
        // hex(md5("3f8e5b56-6a8b-4a4f-9a35-2a2bbc3f0f01")[:8])
        let t = TunnelId::parse("3f8e5b56-6a8b-4a4f-9a35-2a2bbc3f0f01").unwrap();
        let e = endpoint_of(&t);
        assert_eq!(e.len(), 16);
        use md5::Digest;
        let full = md5::Md5::digest(b"3f8e5b56-6a8b-4a4f-9a35-2a2bbc3f0f01");
        assert_eq!(e, format!("{:x}", full)[..16]);
    }

    #[test]
    fn options_refuse_what_is_not_there_and_bad_ids() {
        let md = |k: &str, v: serde_json::Value| {
            let mut m = Metadata::new();
            m.insert(k, v);
            m
        };
        for (k, v) in [
            ("entrypoint.compression", serde_json::json!(true)),
            ("entrypoint.readTimeout", serde_json::json!("soon")),
            ("entrypoints", serde_json::json!({"addr": ":80"})),
            ("entrypoints", serde_json::json!([{"addr": 80}])),
            ("entrypoint.proxyProtocol", serde_json::json!(3)),
            ("entrypoint.id", serde_json::json!("x")),
            ("tunnel", serde_json::json!("a.com")),
            ("tunnel", serde_json::json!("a.com:nope")),
        ] {
            assert!(
                TunnelOptions::from_metadata(&md(k, v.clone())).is_err(),
                "{k}={v}"
            );
        }
        let o = TunnelOptions::from_metadata(&md(
            "tunnel",
            serde_json::json!("a.com:3f8e5b56-6a8b-4a4f-9a35-2a2bbc3f0f01,*.b.org:$3f8e5b56-6a8b-4a4f-9a35-2a2bbc3f0f02"),
        ))
        .unwrap();
        assert_eq!(o.rules.len(), 2);
        assert_eq!(o.mux.version, 2);
        assert_eq!(o.read_timeout, DEFAULT_READ_TIMEOUT);
        assert_eq!(o.entry_read_timeout, DEFAULT_ENTRY_READ_TIMEOUT);
        let o = TunnelOptions::from_metadata(&md(
            "entrypoints",
            serde_json::json!([{"Addr": ":8001", "Ingress": "i"}, {"addr": ""}, {"addr": ":8002"}]),
        ))
        .unwrap();
        assert_eq!(
            o.entrypoints,
            vec![
                EntrypointConfig {
                    addr: ":8001".into(),
                    ingress: Some("i".into())
                },
                EntrypointConfig {
                    addr: ":8002".into(),
                    ingress: None
                },
            ]
        );
    }

    #[test]
    fn a_request_takes_source_then_target_and_the_network() {
        let r = Request::from_features(
            CMD_CONNECT,
            vec![
                Feature::Addr("1.2.3.4:5".into()),
                Feature::Addr("example.com:80".into()),
                Feature::Network(1),
                Feature::Tunnel([0; 20]),
            ],
        );
        assert_eq!(
            (r.src.as_str(), r.dst.as_str(), r.udp),
            ("1.2.3.4:5", "example.com:80", true)
        );
        assert!(r.tunnel.is_none(), "a zero id is no id");
    }
}
