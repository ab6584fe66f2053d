//! The tunnel handler's public entry point (GOST's `entrypoint`): a TCP
//! port where visitors need no GOST client. By the first byte: a relay
//! request (0x01) names its tunnel itself; a TLS ClientHello is routed by
//! its SNI, through the ingress, and relayed as bytes; an HTTP
//! connection is served request by request as GOST's entry point (an
//! HTTP reverse proxy) does: each request is routed by its `Host`
//! through the ingress and gets GOST's `Gost-Sid` (the visitor
//! connection's session id, unless the request has one) and
//! `Gost-Forwarded-Node` (this handler's id; a request that already
//! names it has looped through this entry point and gets 503). A host
//! without a route gets 502, one whose tunnel has no client 503, and the
//! connection goes on with its next request.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

use super::{join, read_request, status, stream_head, Dialed, Shared};
use crate::{sniffing, sniffing_http};
use crate::{ConnContext, HandlerError};
use gost_core::escape::esc;
use gost_core::ingress::Ingress;
use gost_core::stream::Stream;
use gost_proto::relay::{STATUS_BAD_REQUEST, STATUS_OK, STATUS_SERVICE_UNAVAILABLE, VERSION};
use gost_proto::tunnel::TunnelId;

/// The visitor's first request (relay request, ClientHello or HTTP head)
/// must arrive within this (GOST waits without limit).
const READ_TIMEOUT: Duration = Duration::from_secs(15);
/// Most visitor connections the entry point serves at once; more wait in
/// the listen backlog.
const MAX_VISITORS: usize = 16_384;

pub(crate) struct Entry {
    pub(crate) addr: String,
    pub(crate) local: SocketAddr,
    /// This entry point's own ingress (`entrypoints`); the handler's
    /// when `None`.
    ingress: Arc<RwLock<Option<Arc<Ingress>>>>,
    task: JoinHandle<()>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Entry {
    /// Binds `addr` and serves it for as long as the service's state
    /// lives.
    pub(crate) fn bind(
        addr: &str,
        ingress: Option<Arc<Ingress>>,
        shared: Weak<Shared>,
    ) -> std::io::Result<Entry> {
        let at = gost_transport::listener::resolve_bind_addr(addr)?;
        let std = std::net::TcpListener::bind(at)?;
        std.set_nonblocking(true)?;
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|e| std::io::Error::other(format!("entry point: no runtime: {e}")))?;
        let listener = {
            let _guard = rt.enter();
            tokio::net::TcpListener::from_std(std)?
        };
        let local = listener.local_addr()?;
        tracing::info!(entrypoint = %local, "tunnel: entry point listening");
        let ingress = Arc::new(RwLock::new(ingress));
        let task = rt.spawn(accept_loop(listener, Arc::clone(&ingress), shared));
        Ok(Entry {
            addr: addr.to_string(),
            local,
            ingress,
            task,
        })
    }

    pub(crate) fn set_ingress(&self, ingress: Option<Arc<Ingress>>) {
        *self.ingress.write().unwrap_or_else(|p| p.into_inner()) = ingress;
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    own_ingress: Arc<RwLock<Option<Arc<Ingress>>>>,
    shared: Weak<Shared>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_VISITORS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "tunnel: entry point accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().unwrap_or(peer);
        let ingress = own_ingress
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .or_else(|| shared.ingress());
        tokio::spawn(async move {
            let ctx = ConnContext {
                service: format!("{}-ep-{local}", shared.service).into(),
                peer: SocketAddr::new(peer.ip().to_canonical(), peer.port()),
                local,
                stats: None,
                traffic: None,
            };
            if let Err(e) = serve(&shared, ingress, Stream::from(tcp), &ctx).await {
                let line = e.to_string();
                if let Some(left_out) = gost_core::repeat::check(("tunnel-entry", &line)) {
                    tracing::warn!(service = %ctx.service, client = %ctx.peer, error = %line, left_out, "tunnel: entry point refused a visitor");
                }
            }
            drop(permit);
        });
    }
}

async fn serve(
    shared: &Shared,
    ingress: Option<Arc<Ingress>>,
    mut stream: Stream,
    ctx: &ConnContext,
) -> Result<(), HandlerError> {
    let proxied;
    let mut ctx = ctx;
    if shared
        .entry_proxy_protocol
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        let header = tokio::time::timeout(PROXY_HEADER_TIMEOUT, proxy_header(&mut stream)).await;
        match header {
            Ok(Ok(Some(src))) => {
                proxied = ConnContext {
                    peer: src,
                    ..ctx.clone()
                };
                ctx = &proxied;
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                shared.count_refused();
                return Err(e);
            }
            Err(_) => return Ok(()),
        }
    }
    // A PROXY header's read may have taken the first bytes already.
    match tokio::time::timeout(READ_TIMEOUT, stream.read_ahead(1)).await {
        _ if !stream.rewound().is_empty() => {}
        Ok(Ok(n)) if n > 0 => {}
        Ok(Err(e)) => return Err(e.into()),
        _ => return Ok(()),
    }
    if stream.rewound().first() == Some(&VERSION) {
        return Box::pin(relay_visitor(shared, stream, ctx)).await;
    }
    let sniffed = sniffing::sniff(&mut stream, READ_TIMEOUT, 0).await;
    if sniffed.protocol == "http" && sniffed.method != "PRI" {
        return serve_http(shared, ingress, stream, ctx).await;
    }
    let (http, port) = match sniffed.protocol {
        "http" => (true, 80),
        "tls" => (false, 443),
        _ => {
            shared.count_refused();
            return Err(HandlerError::Protocol(
                "tunnel entry point: neither a relay request, TLS nor HTTP".into(),
            ));
        }
    };
    if sniffed.host.is_empty() {
        shared.count_refused();
        if http {
            let _ = stream.write_all_now(BAD_GATEWAY).await;
        }
        return Err(HandlerError::Protocol(format!(
            "tunnel entry point: {} without a host name",
            sniffed.protocol
        )));
    }
    let host = sniffing::with_port(&sniffed.host, port);
    let endpoint = match ingress.as_ref() {
        Some(i) => i.endpoint(&shared.service, &host).await,
        None => None,
    };
    let tunnel = endpoint
        .and_then(|e| TunnelId::parse(&e))
        .filter(|t| !t.is_private());
    let Some(tunnel) = tunnel else {
        shared.count_refused();
        if http {
            let _ = stream.write_all_now(BAD_GATEWAY).await;
        }
        return Err(HandlerError::Protocol(format!(
            "tunnel entry point: no route to host {:?}",
            esc(&host)
        )));
    };
    let Some((dialed, stats)) = shared.dial(&tunnel, false).await else {
        shared.count_refused();
        if http {
            let _ = stream.write_all_now(UNAVAILABLE).await;
        }
        return Err(HandlerError::Protocol(format!(
            "tunnel entry point: host {:?}: tunnel {tunnel} has no connected client",
            esc(&host)
        )));
    };
    let up = match dialed {
        Dialed::Local(mut up, _) => {
            up.write_all(&stream_head(&ctx.peer.to_string(), &host)?)
                .await?;
            up.into_stream()
        }
        // The bytes read so far are still in the visitor's stream and go
        // to the other node's entry point first.
        Dialed::Remote(up, _) => Stream::from(up),
    };
    tracing::debug!(service = %ctx.service, client = %ctx.peer, host = %esc(&host), tunnel = %tunnel, "tunnel entry point: visitor joined");
    join(stream, up, ctx, stats, None).await
}

/// GOST's PROXY protocol listener's wait for the header.
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const PROXY_V1: &[u8] = b"PROXY ";
const PROXY_V2: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest header taken: v1's limit, and v2's fixed part with
/// addresses and a bounded amount of TLVs.
const PROXY_MAX: usize = 536;

/// Takes a PROXY protocol header (v1 or v2) off the start of `stream`
/// when there is one, as go-proxyproto's listener does by default (a
/// connection without one is served as it is): the source address it
/// names, or `None` (no header, or one without addresses: `LOCAL`,
/// `UNKNOWN`).
async fn proxy_header(stream: &mut Stream) -> Result<Option<SocketAddr>, HandlerError> {
    use ppp::{HeaderResult, PartialResult};
    use tokio::io::AsyncReadExt;
    let bad = |e: String| HandlerError::Protocol(format!("tunnel entry point: PROXY header: {e}"));
    loop {
        let b = stream.rewound();
        let (n1, n2) = (b.len().min(PROXY_V1.len()), b.len().min(PROXY_V2.len()));
        let v1 = b[..n1] == PROXY_V1[..n1];
        if !v1 && b[..n2] != PROXY_V2[..n2] {
            return Ok(None);
        }
        if (v1 && n1 == PROXY_V1.len()) || n2 == PROXY_V2.len() {
            let parsed = HeaderResult::parse(b);
            if !parsed.is_incomplete() {
                let (len, src) = match parsed {
                    HeaderResult::V1(Ok(h)) => (
                        h.header.len(),
                        match h.addresses {
                            ppp::v1::Addresses::Tcp4(a) => {
                                Some(SocketAddr::from((a.source_address, a.source_port)))
                            }
                            ppp::v1::Addresses::Tcp6(a) => {
                                Some(SocketAddr::from((a.source_address, a.source_port)))
                            }
                            ppp::v1::Addresses::Unknown => None,
                        },
                    ),
                    HeaderResult::V2(Ok(h)) => (
                        h.len(),
                        match h.addresses {
                            ppp::v2::Addresses::IPv4(a) => {
                                Some(SocketAddr::from((a.source_address, a.source_port)))
                            }
                            ppp::v2::Addresses::IPv6(a) => {
                                Some(SocketAddr::from((a.source_address, a.source_port)))
                            }
                            _ => None,
                        },
                    ),
                    HeaderResult::V1(Err(e)) => return Err(bad(e.to_string())),
                    HeaderResult::V2(Err(e)) => return Err(bad(e.to_string())),
                };
                let mut header = vec![0u8; len];
                stream.read_exact(&mut header).await?;
                return Ok(src);
            }
        }
        if b.len() >= PROXY_MAX {
            return Err(bad(format!("longer than {PROXY_MAX} bytes")));
        }
        if stream.read_ahead(PROXY_MAX).await? == 0 {
            return Ok(None);
        }
    }
}

/// GOST's headers on each request through the entry point.
const HEADER_SID: &str = "Gost-Sid";
const HEADER_FORWARDED_NODE: &str = "Gost-Forwarded-Node";

/// An HTTP visitor, request by request.
async fn serve_http(
    shared: &Shared,
    ingress: Option<Arc<Ingress>>,
    stream: Stream,
    ctx: &ConnContext,
) -> Result<(), HandlerError> {
    use hyper::header::{HeaderName, HeaderValue};
    let sid = session_id();
    let node = shared.node.clone();
    let prepare: sniffing_http::Prepare = Box::new(move |h: &mut hyper::HeaderMap| {
        let looped = h
            .get(HEADER_FORWARDED_NODE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|n| n.trim() == node));
        if looped {
            tracing::warn!(node = %node, "tunnel entry point: forwarding loop, request refused");
            return Err(503);
        }
        let has_sid = h.get(HEADER_SID).is_some_and(|v| !v.is_empty());
        if !has_sid {
            if let Ok(v) = HeaderValue::from_str(&sid) {
                h.insert(HeaderName::from_static("gost-sid"), v);
            }
        }
        if let Ok(v) = HeaderValue::from_str(&node) {
            h.insert(HeaderName::from_static("gost-forwarded-node"), v);
        }
        Ok(())
    });
    let opts = sniffing_http::Options {
        read_timeout: *shared
            .entry_read_timeout
            .read()
            .unwrap_or_else(|p| p.into_inner()),
        sniff_timeout: READ_TIMEOUT,
        keepalive: true,
        reuse_upstream: shared
            .entry_keepalive
            .load(std::sync::atomic::Ordering::Relaxed),
        body_limit: 0,
        cache: None,
        close_on_refusal: false,
        prepare: Some(prepare),
    };
    let ingress = ingress.as_deref();
    sniffing_http::serve(stream, ctx, &opts, |facts| {
        route_http(shared, ingress, ctx, facts)
    })
    .await
}

/// One HTTP request's tunnel: by its host, through the ingress.
async fn route_http(
    shared: &Shared,
    ingress: Option<&Ingress>,
    ctx: &ConnContext,
    facts: sniffing::Sniffed,
) -> Result<sniffing_http::Routed, sniffing_http::Refused> {
    let refused = |status: u16, msg: String| {
        shared.count_refused();
        sniffing_http::Refused {
            status,
            error: HandlerError::Protocol(msg),
        }
    };
    let host = sniffing::with_port(&facts.host, 80);
    let endpoint = match ingress {
        Some(i) => i.endpoint(&shared.service, &host).await,
        None => None,
    };
    let tunnel = endpoint
        .and_then(|e| TunnelId::parse(&e))
        .filter(|t| !t.is_private());
    let Some(tunnel) = tunnel else {
        return Err(refused(
            502,
            format!("tunnel entry point: no route to host {:?}", esc(&host)),
        ));
    };
    let Some((dialed, stats)) = shared.dial(&tunnel, false).await else {
        return Err(refused(
            503,
            format!(
                "tunnel entry point: host {:?}: tunnel {tunnel} has no connected client",
                esc(&host)
            ),
        ));
    };
    let up = match dialed {
        Dialed::Local(mut up, _) => {
            let head = stream_head(&ctx.peer.to_string(), &host)
                .map_err(|e| refused(503, e.to_string()))?;
            up.write_all(&head)
                .await
                .map_err(|e| refused(503, e.to_string()))?;
            up.into_stream()
        }
        // The other node's entry point takes the request as HTTP and
        // routes it by its own ingress; `Gost-Forwarded-Node` names this
        // node, so a request sent back here is refused as a loop.
        Dialed::Remote(up, _) => Stream::from(up),
    };
    tracing::debug!(service = %ctx.service, client = %ctx.peer, host = %esc(&host), tunnel = %tunnel, "tunnel entry point: request routed");
    Ok(sniffing_http::Routed {
        stream: Stream::boxed(TunnelCounted::new(up, stats), Default::default()),
        node: None,
    })
}

/// GOST's session id form (an xid): 20 characters of base32hex.
fn session_id() -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuv";
    (0..20)
        .map(|_| DIGITS[rand::random::<u8>() as usize % 32] as char)
        .collect()
}

/// A stream to a tunnel client, counted in the tunnel's counters as
/// the visitor's: bytes written to it came from the visitor (input),
/// bytes read from it go to the visitor (output), and it is one open
/// connection while it lives.
struct TunnelCounted {
    inner: Stream,
    stats: Arc<gost_core::stats::Stats>,
    _open: gost_core::stats::OwnedConnGuard,
}

impl TunnelCounted {
    fn new(inner: Stream, stats: Arc<gost_core::stats::Stats>) -> Self {
        let _open = stats.open_conn_owned();
        TunnelCounted {
            inner,
            stats,
            _open,
        }
    }
}

impl tokio::io::AsyncRead for TunnelCounted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.stats.add_output(n as u64);
        }
        r
    }
}

impl tokio::io::AsyncWrite for TunnelCounted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, data);
        if let std::task::Poll::Ready(Ok(n)) = &r {
            self.stats.add_input(*n as u64);
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What GOST's entry point answers an HTTP visitor whose host has no
/// route.
const BAD_GATEWAY: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n";
/// ... and one whose tunnel has no client.
const UNAVAILABLE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";

/// A relay request at the entry point names its tunnel; no ingress.
async fn relay_visitor(
    shared: &Shared,
    mut stream: Stream,
    ctx: &ConnContext,
) -> Result<(), HandlerError> {
    let req = match tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream)).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(HandlerError::Protocol(
                "tunnel entry point: relay request not complete in time".into(),
            ))
        }
    };
    // GOST takes the id's 16 bytes only, so a private flag does not
    // hide the tunnel from a visitor who knows its id.
    let Some(tunnel) = req
        .tunnel
        .map(|t| TunnelId::parse(&t.to_string()).unwrap_or(t))
    else {
        shared.count_refused();
        let _ = stream.write_all_now(&status(STATUS_BAD_REQUEST)).await;
        return Err(HandlerError::Protocol(
            "tunnel entry point: relay request without a tunnel id".into(),
        ));
    };
    let Some((dialed, stats)) = shared.dial(&tunnel, req.udp).await else {
        shared.count_refused();
        let _ = stream
            .write_all_now(&status(STATUS_SERVICE_UNAVAILABLE))
            .await;
        return Err(HandlerError::Protocol(format!(
            "tunnel entry point: tunnel {tunnel} has no connected client"
        )));
    };
    let up = match dialed {
        Dialed::Local(mut up, _) => {
            stream.write_all_now(&status(STATUS_OK)).await?;
            up.write_all(&stream_head(&req.src, &req.dst)?).await?;
            up.into_stream()
        }
        // The request goes on as it came, and the other node answers it
        // (GOST writes its local stream head there instead, which the
        // other entry point cannot read as a request).
        Dialed::Remote(mut up, _) => {
            up.write_all(&req.raw).await?;
            Stream::from(up)
        }
    };
    join(stream, up, ctx, stats, None).await
}
