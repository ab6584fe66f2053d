//! Port forwarding handlers `tcp`, `udp` and `forward` (GOST's
//! handler/forward/local): every connection goes to a node of the
//! forwarder's hop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gost_core::stream::Stream;

use super::{ConnContext, HandleFuture, Handler, HandlerError};
use gost_chain::chain::{Hop, Node, SelectContext, Strategy};
use gost_chain::connector::upstream::Upstream;
use gost_chain::relay::{self, RelayOptions};
use gost_chain::router::{Router, UdpUpstream};
use gost_core::limiter::traffic;
use gost_core::metadata::{Metadata, MetadataError};
use gost_transport::listener::{Conn, UdpConn};

/// Typed handler metadata, parsed once at start-up.
#[derive(Debug, Clone, Default)]
pub struct ForwardOptions {
    /// `idleTimeout`: close a TCP relay with no traffic for this long.
    pub idle_timeout: Option<Duration>,
    /// `retries` (handler field): extra nodes tried when a dial fails.
    /// Forwarding has not sent any byte yet when the dial fails, so trying
    /// the next node is always safe.
    pub retries: usize,
    /// `sniffing`: peek the first request to route by its protocol, host,
    /// path and headers; `None` when off.
    pub sniffing: Option<Duration>,
    /// `readTimeout`: the wait for each response head of a sniffed HTTP
    /// connection served request by request.
    pub read_timeout: Option<Duration>,
    /// `http.keepalive`: such a connection is kept after a response.
    pub http_keepalive: bool,
    /// The service's HTTP response cache (service `cache`, handler
    /// metadata `cache.*`).
    pub cache: Option<Arc<super::httpcache::HttpCache>>,
}

impl ForwardOptions {
    pub fn from_metadata(md: &Metadata, retries: i64) -> Result<Self, MetadataError> {
        Ok(ForwardOptions {
            idle_timeout: md.get_duration("idleTimeout")?.filter(|d| !d.is_zero()),
            retries: retries.max(0) as usize,
            sniffing: super::sniffing::from_metadata(md)?,
            read_timeout: md.get_duration("readTimeout")?.filter(|d| !d.is_zero()),
            http_keepalive: md.get_bool("http.keepalive")?.unwrap_or(false),
            cache: None,
        })
    }
}

pub struct ForwardHandler {
    hop: Arc<Hop>,
    router: Router,
    opts: ForwardOptions,
    /// The largest body prefix a node's matcher looks at (0: none does).
    body_limit: usize,
    /// A sniffed HTTP connection is served request by request (see
    /// [`super::sniffing_http`]): something looks at each request (the
    /// bypass, a node's matcher, filter or `http` settings, the cache).
    /// Otherwise it is routed by its first request and relayed as bytes,
    /// the fast path.
    per_request: bool,
}

/// How a sniffed connection goes on.
enum Opened {
    Relay(Upstream, Arc<Node>),
    PerRequest,
}

impl ForwardHandler {
    pub fn new(hop: Arc<Hop>, router: Router, opts: ForwardOptions) -> Self {
        let body_limit = hop.nodes.iter().map(|n| n.body_size).max().unwrap_or(0);
        let looks = hop.bypass.is_some()
            || hop.nodes.iter().any(|n| {
                n.http.is_some()
                    || !n.fail_codes.is_empty()
                    || n.matcher.is_some()
                    || n.bypass.is_some()
                    || !(n.filter_host.is_empty()
                        && n.filter_path.is_empty()
                        && n.filter_protocol.is_empty())
            });
        // GOST's sniffer writes a handler record per request.
        let records = router
            .recorders
            .as_ref()
            .is_some_and(|r| r.get(gost_core::recorder::HANDLER).is_some());
        let per_request = opts.sniffing.is_some()
            && (looks || router.bypass.is_some() || opts.cache.is_some() || records);
        ForwardHandler {
            hop,
            router,
            opts,
            body_limit,
            per_request,
        }
    }

    /// Picks nodes until one answers. Each failure marks the node so the
    /// selector skips it for `failTimeout`; the connection itself moves on
    /// to another node, up to every node of the hop once.
    pub(super) async fn dial<T, F, Fut>(
        &self,
        ctx: &ConnContext,
        network: &str,
        dial: F,
    ) -> Result<(T, Arc<Node>), HandlerError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, gost_chain::router::DialError>>,
    {
        self.dial_for(ctx, network, Default::default(), dial).await
    }

    /// [`Self::dial`] for a request whose sniffed facts feed node matchers
    /// and filters.
    async fn dial_for<T, F, Fut>(
        &self,
        ctx: &ConnContext,
        network: &str,
        request: gost_core::routing::Request<'_>,
        dial: F,
    ) -> Result<(T, Arc<Node>), HandlerError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, gost_chain::router::DialError>>,
    {
        // Only the hash strategy reads the key; skip the allocation otherwise.
        let ip = (self.hop.selector.strategy == Strategy::Hash).then(|| ctx.peer.ip().to_string());
        let sel = SelectContext {
            hash_key: ip.as_deref(),
            request: gost_core::routing::Request {
                client_ip: Some(ctx.peer.ip()),
                network,
                ..request
            },
        };
        if self.hop.selector.strategy == Strategy::Parallel {
            return self.race(ctx, network, &sel, dial).await;
        }
        let attempts = (self.hop.nodes.len() + self.hop.loaded().len()).max(1 + self.opts.retries);
        let mut tried: Vec<Arc<Node>> = Vec::new();
        let mut last_err = None;
        for _ in 0..attempts {
            let Some(node) = self.hop.select(&sel, &tried) else {
                break;
            };
            if node.network.as_deref().is_some_and(|n| n != network) {
                tried.push(node);
                continue;
            }
            gost_core::recorder::note(|r| r.node = node.name.clone());
            match dial(node_target(network, &node.addr)).await {
                Ok(c) => {
                    node.marker.reset();
                    tracing::debug!(service = %ctx.service, client = %ctx.peer, node = %node.name, dst = %node.addr, network, "forward");
                    return Ok((c, node));
                }
                Err(e) => {
                    node.marker.mark();
                    tracing::warn!(service = %ctx.service, node = %node.name, error = %e, "dial failed");
                    last_err = Some(e);
                    tried.push(node);
                }
            }
        }
        Err(last_err
            .map(HandlerError::from)
            .unwrap_or(HandlerError::NoNode))
    }

    /// The `parallel` strategy: every live node that takes the request is
    /// dialed at once and the first to connect carries the connection; the
    /// other dials are dropped, closing what they opened.
    async fn race<T, F, Fut>(
        &self,
        ctx: &ConnContext,
        network: &str,
        sel: &SelectContext<'_>,
        dial: F,
    ) -> Result<(T, Arc<Node>), HandlerError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, gost_chain::router::DialError>>,
    {
        use futures_util::stream::{FuturesUnordered, StreamExt};
        let loaded = self.hop.loaded();
        let candidates: Vec<&Arc<Node>> = self
            .hop
            .nodes
            .iter()
            .chain(loaded.iter())
            .filter(|n| n.matches(&sel.request))
            .filter(|n| n.network.as_deref().is_none_or(|x| x == network))
            .collect();
        let live = self.hop.selector.pool(&candidates);
        let pool = if live.is_empty() { candidates } else { live };
        let mut dials: FuturesUnordered<_> = pool
            .into_iter()
            .map(|node| {
                let d = dial(node_target(network, &node.addr));
                async move { (d.await, node) }
            })
            .collect();
        let mut last_err = None;
        while let Some((res, node)) = dials.next().await {
            match res {
                Ok(c) => {
                    node.marker.reset();
                    // The dials ran side by side, each noting its
                    // target; the record keeps the winner's.
                    gost_core::recorder::note(|r| {
                        r.node = node.name.clone();
                        r.host = node_target(network, &node.addr);
                    });
                    tracing::debug!(service = %ctx.service, client = %ctx.peer, node = %node.name, dst = %node.addr, network, "forward (parallel)");
                    return Ok((c, Arc::clone(node)));
                }
                Err(e) => {
                    node.marker.mark();
                    tracing::warn!(service = %ctx.service, node = %node.name, error = %e, "dial failed");
                    last_err = Some(e);
                }
            }
        }
        Err(last_err
            .map(HandlerError::from)
            .unwrap_or(HandlerError::NoNode))
    }

    /// The setup (sniffing, node choice, dial) runs in its own short-lived
    /// box, so the future kept for the connection's whole life holds only
    /// the relay's state: idle connections cost the smaller size. Not an
    /// `async fn`: that would copy `client` and `ctx` into a second set of
    /// slots in the future, 120 bytes more per connection.
    #[allow(clippy::manual_async_fn)]
    fn handle_tcp(
        &self,
        mut client: Stream,
        ctx: ConnContext,
    ) -> impl std::future::Future<Output = Result<(), HandlerError>> + Send + '_ {
        async move {
            let (upstream, node) = match Box::pin(self.open_upstream(&mut client, &ctx)).await? {
                Opened::Relay(upstream, node) => (upstream, node),
                Opened::PerRequest => return Box::pin(self.serve_http(client, &ctx)).await,
            };
            let opts = RelayOptions {
                idle_timeout: self.opts.idle_timeout,
            };
            let start = Instant::now();
            let res = relay::relay(client, upstream, &ctx, &opts).await;
            match &res {
                Ok(t) => {
                    tracing::debug!(service = %ctx.service, client = %ctx.peer, node = %node.name,
                    input = t.input, output = t.output, duration = ?start.elapsed(), "relay done")
                }
                Err(e) => {
                    tracing::debug!(service = %ctx.service, client = %ctx.peer, node = %node.name, error = %e, "relay ended")
                }
            }
            res.map(|_| ()).map_err(Into::into)
        }
    }

    /// Sniffs (when on), then picks and dials a node; what sniffing read
    /// stays in the client stream, for the relay to send first. An HTTP
    /// connection that needs each request looked at is left to
    /// [`Self::serve_http`].
    async fn open_upstream(
        &self,
        client: &mut Stream,
        ctx: &ConnContext,
    ) -> Result<Opened, HandlerError> {
        let sniffed = match self.opts.sniffing {
            Some(timeout) => super::sniffing::sniff(client, timeout, self.body_limit).await,
            None => Default::default(),
        };
        if self.opts.sniffing.is_some() {
            gost_core::recorder::note(|r| r.proto = sniffed.protocol.to_string());
        }
        // HTTP/2 with prior knowledge is relayed as bytes, as GOST's
        // HTTP/1 sniffer cannot read it either.
        if self.per_request && sniffed.protocol == "http" && sniffed.method != "PRI" {
            return Ok(Opened::PerRequest);
        }
        let dialed = self
            .dial_for(ctx, "tcp", sniffed.request(), |a| async move {
                self.router.dial_tcp(&a, ctx.peer.ip()).await
            })
            .await;
        if sniffed.protocol == "tls" && gost_core::recorder::noting() {
            note_client_hello(client.rewound(), &sniffed.host);
        }
        match dialed {
            Err(HandlerError::NoNode) if sniffed.protocol == "http" => {
                // GOST answers an HTTP request no node takes with 502.
                client
                    .write_all_now(super::http::bare_response(502).as_bytes())
                    .await?;
                tracing::warn!(service = %ctx.service, client = %ctx.peer, host = %gost_core::escape::esc(&sniffed.host), path = %gost_core::escape::esc(&sniffed.path), "no node for request");
                Err(HandlerError::NoNode)
            }
            r => r.map(|(upstream, node)| Opened::Relay(upstream, node)),
        }
    }

    /// A sniffed HTTP connection, request by request.
    async fn serve_http(&self, client: Stream, ctx: &ConnContext) -> Result<(), HandlerError> {
        let opts = super::sniffing_http::Options {
            read_timeout: self
                .opts
                .read_timeout
                .unwrap_or(super::sniffing_http::DEFAULT_READ_TIMEOUT),
            sniff_timeout: self
                .opts
                .sniffing
                .unwrap_or(super::sniffing::DEFAULT_TIMEOUT),
            keepalive: self.opts.http_keepalive,
            reuse_upstream: true,
            body_limit: self.body_limit,
            cache: self.opts.cache.clone(),
            close_on_refusal: true,
            prepare: None,
        };
        super::sniffing_http::serve(client, ctx, &opts, |facts| self.route_http(ctx, facts)).await
    }

    /// Routes one request of [`Self::serve_http`] as GOST's sniffer does:
    /// a bypassed host gets 403, a request no node takes 502, a node that
    /// cannot be reached 503.
    async fn route_http(
        &self,
        ctx: &ConnContext,
        facts: super::sniffing::Sniffed,
    ) -> Result<super::sniffing_http::Routed, super::sniffing_http::Refused> {
        use super::sniffing_http::{Refused, Routed};
        if !facts.host.is_empty() {
            let host = super::sniffing::with_port(&facts.host, 80);
            if let Err(e) = self.router.check_bypass("tcp", &host).await {
                return Err(Refused {
                    status: 403,
                    error: e.into(),
                });
            }
        }
        self.dial_for(ctx, "tcp", facts.request(), |a| async move {
            self.router.dial_tcp(&a, ctx.peer.ip()).await
        })
        .await
        .map(|(upstream, node)| Routed {
            stream: upstream.into_lazy_stream(),
            node: Some(node),
        })
        .map_err(|error| Refused {
            status: if matches!(error, HandlerError::NoNode) {
                502
            } else {
                503
            },
            error,
        })
    }

    async fn handle_udp(&self, mut client: UdpConn, ctx: ConnContext) -> Result<(), HandlerError> {
        // The dial's state is large (name resolution): boxed, it is freed
        // before the session's long relay.
        let (mut upstream, node) = Box::pin(self.dial(&ctx, "udp", |a| async move {
            self.router.dial_udp(&a, ctx.peer.ip()).await
        }))
        .await?;
        tracing::debug!(service = %ctx.service, client = %ctx.peer, node = %node.name, "udp session");
        relay_udp(&mut client, &mut upstream, &ctx).await
    }
}

/// Relays one client's datagrams to the target and its replies back,
/// until the session idles for its TTL, or, without keepalive, until the
/// first reply has been delivered (GOST's one-shot UDP exchange).
pub async fn relay_udp(
    client: &mut UdpConn,
    upstream: &mut UdpUpstream,
    ctx: &ConnContext,
) -> Result<(), HandlerError> {
    let mut buf = vec![0u8; client.max_datagram.max(1)];
    let ttl = client.ttl;
    let mut deadline = tokio::time::Instant::now() + ttl;
    let mut pacer = traffic::Pacer::new(ctx.traffic.clone());
    loop {
        tokio::select! {
            dgram = client.recv(), if pacer.open(true) => {
                let Some(dgram) = dgram else { return Ok(()) };
                if let Some(s) = &ctx.stats {
                    s.add_input(dgram.len() as u64);
                }
                pacer.charge(true, dgram.len());
                match upstream.send(&dgram).await {
                    Ok(()) => {}
                    // A closed port answers with ICMP; the datagram is lost
                    // as it would be without a proxy.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                    Err(e) => return Err(e.into()),
                }
                deadline = tokio::time::Instant::now() + ttl;
            }
            r = upstream.recv(&mut buf), if pacer.open(false) => {
                let n = match r {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                    Err(e) => return Err(e.into()),
                };
                pacer.charge(false, n);
                client.send(&buf[..n]).await?;
                if let Some(s) = &ctx.stats {
                    s.add_output(n as u64);
                }
                if !client.keepalive {
                    return Ok(());
                }
                deadline = tokio::time::Instant::now() + ttl;
            }
            // Datagrams the limiter holds back are traffic, not idling.
            _ = pacer.wait(), if pacer.waiting() => deadline = tokio::time::Instant::now() + ttl,
            _ = tokio::time::sleep_until(deadline) => return Ok(()),
        }
    }
}

/// GOST forwards to `host` alone as `host:0`; keep the same rule so a
/// missing port fails at dial time with the address shown.
/// GOST's `tls` sub-record of a sniffed ClientHello (the record as
/// hex, its server name and first ALPN protocol), and the server name as
/// the record's `host`. The ServerHello's fields are not read: the relay
/// passes the upstream's bytes on untouched.
fn note_client_hello(rewound: &[u8], sni: &str) {
    let Some(rec) = gost_proto::tls::record_len(rewound).and_then(|n| rewound.get(..n)) else {
        return;
    };
    let Some(hello) = gost_proto::tls::ClientHello::parse(&rec[5..]) else {
        return;
    };
    let tls = gost_core::recorder::TlsRecord {
        server_name: sni.to_string(),
        proto: hello.alpn().into_iter().next().unwrap_or_default(),
        client_hello: rec.iter().map(|b| format!("{b:02x}")).collect(),
        ..Default::default()
    };
    gost_core::recorder::note(|r| {
        if !sni.is_empty() {
            r.host = super::sniffing::with_port(sni, 443);
        }
        r.tls = Some(Box::new(tls));
    });
}

/// What a node's address is dialed as: a unix socket's path or a serial
/// port as it is, a host without a port with port 0.
fn node_target(network: &str, addr: &str) -> String {
    if network == "unix" || network == "serial" {
        addr.to_string()
    } else {
        with_default_port(addr)
    }
}

fn with_default_port(addr: &str) -> String {
    if gost_core::addr::split_host_port(addr).is_ok() {
        addr.to_string()
    } else {
        format!("{addr}:0")
    }
}

impl Handler for ForwardHandler {
    fn handle(&self, conn: Conn, ctx: ConnContext) -> HandleFuture<'_> {
        // One box per kind: a shared one would size every TCP connection
        // for the larger UDP session state.
        match conn {
            Conn::Stream(s) => Box::pin(self.handle_tcp(s, ctx)),
            Conn::Udp(u) => Box::pin(self.handle_udp(u, ctx)),
        }
    }
}
