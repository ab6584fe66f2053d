//! The `h2` and `h2c` transports (GOST's listener/http2/h2 and
//! dialer/http2/h2): HTTP/2 over TLS (`h2`, ALPN `h2`) or in cleartext
//! with prior knowledge (`h2c`), each proxied connection one HTTP/2
//! stream of a connection the dialer keeps per node. Without a `path`
//! the stream is a `CONNECT` to the node (`:authority` the node address or
//! the `host` option); with one it is a `GET` of that path whose request
//! body and response body carry the bytes. The listener answers 200 and
//! streams; a non-`CONNECT` request when it has no `path` gets 405, a
//! request for another path 400, as GOST's do.
//!
//! Built on the `h2` crate (hyper's HTTP/2): the tunnel is the raw stream
//! in both of GOST's forms, with its flow control in our hands
//! ([`stream`]). Bounds: a stream's unread bytes stay within its window
//! ([`STREAM_WINDOW`]), a connection's within [`CONNECTION_WINDOW`];
//! writes wait for the peer's window; a listener connection has at most
//! [`MAX_STREAMS`] streams open and queues at most `backlog` not yet
//! taken by the handler.

mod stream;

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use tokio::sync::mpsc;

pub use stream::{h2_io, H2Stream};

use crate::kinds::{DialerKind, ListenerKind, Socket, Transports};
use crate::tls::{client_settings, handshake_timeout, server_config, TlsDialer, TlsUpgrade};
use crate::{within, BoxFuture, Dialer, Multiplex, MultiplexUpgrade, Opened, Streams, Upgrade};
use gost_core::escape::esc;
use gost_core::metadata::{Metadata, MetadataError};
use gost_core::stream::{Endpoints, Stream};

/// The window each stream announces: what a peer may send on a stream
/// before our reader takes it.
pub const STREAM_WINDOW: u32 = 1 << 20;
/// The window of a whole connection, across its streams.
pub const CONNECTION_WINDOW: u32 = 4 << 20;
/// Streams open at once on a listener's connection (Go's HTTP/2 server
/// default, which GOST's listener has).
pub const MAX_STREAMS: u32 = 250;
/// The largest request or response head accepted.
const MAX_HEADER_LIST: u32 = 64 * 1024;
/// How long a client may take to send the connection preface.
const PREFACE_TIMEOUT: Duration = Duration::from_secs(30);
/// GOST's listener `backlog` default.
const DEFAULT_BACKLOG: usize = 128;

/// The listener's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H2ListenerOptions {
    /// `path`: the one request path served; none means `CONNECT` only.
    pub path: Option<String>,
    /// `backlog`: streams queued for the handler per connection.
    pub backlog: usize,
}

impl H2ListenerOptions {
    pub fn from_metadata(md: &Metadata) -> Result<Self, MetadataError> {
        let backlog = match md.get_int("backlog")? {
            Some(n) if n > 0 => n as usize,
            _ => DEFAULT_BACKLOG,
        };
        Ok(H2ListenerOptions {
            path: md.get_string("path")?.filter(|p| !p.is_empty()),
            backlog,
        })
    }

    /// GOST's check of a request: `Err` is the status it answers.
    pub fn admit<B>(&self, req: &Request<B>) -> Result<(), StatusCode> {
        match &self.path {
            None if req.method() != Method::CONNECT => Err(StatusCode::METHOD_NOT_ALLOWED),
            None => Ok(()),
            Some(p) => {
                // Go's RequestURI of an HTTP/2 request: `:path` as sent,
                // the authority for a CONNECT (which never matches).
                let uri = req.uri().path_and_query().map(|p| p.as_str());
                if uri == Some(p.as_str()) && req.method() != Method::CONNECT {
                    Ok(())
                } else {
                    Err(StatusCode::BAD_REQUEST)
                }
            }
        }
    }
}

/// The dialer's metadata.
#[derive(Debug, Clone, Default)]
pub struct H2DialerOptions {
    /// `host`: the `:authority` (and TLS server name) instead of the
    /// node's address.
    pub host: Option<String>,
    /// `path`: a `GET` of this path instead of a `CONNECT`.
    pub path: Option<String>,
    /// `header`: request headers.
    pub header: HeaderMap,
}

impl H2DialerOptions {
    pub fn from_metadata(md: &Metadata) -> Result<Self, MetadataError> {
        let mut header = HeaderMap::new();
        match md.get("header") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Object(map)) => {
                for (name, v) in map {
                    let bad = || MetadataError {
                        key: "header".into(),
                        value: v.to_string(),
                        expected: "a map of header names (HTTP tokens) to values",
                    };
                    let value = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
                    let value = HeaderValue::from_str(&value).map_err(|_| bad())?;
                    header.append(name, value);
                }
            }
            Some(v) => {
                return Err(MetadataError {
                    key: "header".into(),
                    value: v.to_string(),
                    expected: "a map of header names (HTTP tokens) to values",
                })
            }
        }
        let path = md.get_string("path")?.filter(|p| !p.is_empty());
        if let Some(p) = &path {
            if !p.starts_with('/') {
                return Err(MetadataError {
                    key: "path".into(),
                    value: format!("{p:?}"),
                    expected: "a path starting with /",
                });
            }
        }
        Ok(H2DialerOptions {
            host: md.get_string("host")?.filter(|h| !h.is_empty()),
            path,
            header,
        })
    }

    /// The request that opens a tunnel to the node at `node_addr`.
    pub fn request(&self, node_addr: &str, tls: bool) -> io::Result<Request<()>> {
        let authority = self.host.as_deref().unwrap_or(node_addr);
        let bad = |e: http::Error| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("h2: request to {}: {e}", esc(authority)),
            )
        };
        let mut req = match &self.path {
            None => Request::builder()
                .method(Method::CONNECT)
                .uri(authority)
                .body(())
                .map_err(bad)?,
            Some(p) => {
                let scheme = if tls { "https" } else { "http" };
                Request::builder()
                    .method(Method::GET)
                    .uri(format!("{scheme}://{authority}{p}"))
                    .body(())
                    .map_err(bad)?
            }
        };
        req.headers_mut().extend(self.header.clone());
        Ok(req)
    }
}

/// The server side.
pub struct H2Upgrade {
    tls: Option<TlsUpgrade>,
    opts: H2ListenerOptions,
}

impl Upgrade for H2Upgrade {
    /// The connection the HTTP/2 session runs over.
    fn upgrade(&self, stream: Stream) -> BoxFuture<'_, io::Result<Stream>> {
        Box::pin(crate::tls::upgrade_if(self.tls.as_ref(), stream))
    }

    fn multiplex(&self) -> Option<&dyn MultiplexUpgrade> {
        Some(self)
    }
}

impl MultiplexUpgrade for H2Upgrade {
    fn session(&self, stream: Stream) -> BoxFuture<'_, io::Result<Box<dyn Streams>>> {
        Box::pin(async move {
            let carried = self.upgrade(stream).await?;
            let ends = carried.endpoints();
            let conn = within("h2", Some(PREFACE_TIMEOUT), async {
                h2::server::Builder::new()
                    .initial_window_size(STREAM_WINDOW)
                    .initial_connection_window_size(CONNECTION_WINDOW)
                    .max_concurrent_streams(MAX_STREAMS)
                    .max_header_list_size(MAX_HEADER_LIST)
                    .handshake::<_, Bytes>(carried)
                    .await
                    .map_err(|e| crate::handshake_error("h2", h2_io(e)))
            })
            .await?;
            Ok(Box::new(ServerSession::spawn(conn, self.opts.clone(), ends)) as Box<dyn Streams>)
        })
    }
}

/// What the connection's task hands the service.
enum Item {
    Stream(Opened),
    Refused(String),
}

/// A listener's HTTP/2 connection: a task drives it and queues each
/// admitted request's stream.
struct ServerSession {
    rx: mpsc::Receiver<Item>,
    end: Arc<Mutex<Option<(String, bool)>>>,
}

impl ServerSession {
    fn spawn(
        conn: h2::server::Connection<Stream, Bytes>,
        opts: H2ListenerOptions,
        ends: Endpoints,
    ) -> Self {
        let (tx, rx) = mpsc::channel(opts.backlog);
        let end = Arc::new(Mutex::new(None));
        let slot = end.clone();
        tokio::spawn(async move {
            let r = serve(conn, &opts, ends, &tx).await;
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
        });
        ServerSession { rx, end }
    }
}

/// Accepts requests until the connection ends (or the service dropped
/// the session); the end's reason and whether it was a fault.
async fn serve(
    mut conn: h2::server::Connection<Stream, Bytes>,
    opts: &H2ListenerOptions,
    ends: Endpoints,
    tx: &mpsc::Sender<Item>,
) -> (String, bool) {
    loop {
        let next = tokio::select! {
            r = conn.accept() => r,
            _ = tx.closed() => return ("closed by the service".into(), false),
        };
        let (req, mut respond) = match next {
            None => return ("connection closed".into(), false),
            Some(Err(e)) => {
                let e = h2_io(e);
                let fault = !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::ConnectionAborted
                );
                return (e.to_string(), fault);
            }
            Some(Ok(r)) => r,
        };
        if let Err(status) = opts.admit(&req) {
            let mut answer = Response::new(());
            *answer.status_mut() = status;
            let _ = respond.send_response(answer, true);
            let what = format!(
                "h2: {} {} answered {}",
                esc(req.method()),
                esc(req.uri()),
                status.as_u16()
            );
            let _ = tx.try_send(Item::Refused(what));
            continue;
        }
        let send = match respond.send_response(Response::new(()), false) {
            Ok(s) => s,
            // The client reset it already.
            Err(_) => continue,
        };
        let id = respond.stream_id().as_u32();
        let s = Stream::boxed(H2Stream::new(send, req.into_body()), ends);
        match tx.try_send(Item::Stream(Opened::new(s, ends, id))) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                // Dropping the stream resets it, as GOST drops a
                // connection its full queue has no room for.
                let what = format!("h2: {} streams queued, stream refused", opts.backlog);
                let _ = tx.try_send(Item::Refused(what));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return ("closed by the service".into(), false)
            }
        }
    }
}

impl Streams for ServerSession {
    fn accept(&mut self) -> BoxFuture<'_, Option<io::Result<Opened>>> {
        Box::pin(async move {
            Some(match self.rx.recv().await? {
                Item::Stream(s) => Ok(s),
                Item::Refused(why) => Err(io::Error::new(io::ErrorKind::InvalidData, why)),
            })
        })
    }

    fn end(&self) -> Option<(String, bool)> {
        self.end.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A client connection to a node, whether its task saw it end, and how
/// many of its streams are open (or about to be).
pub(crate) struct ClientConn {
    pub(crate) send: SendRequest<Bytes>,
    pub(crate) ends: Endpoints,
    pub(crate) closed: Arc<AtomicBool>,
    open: Arc<AtomicUsize>,
}

impl ClientConn {
    /// Whether the node lets one more stream open now: past its
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`, h2 would hold the new stream
    /// until another ends, so the pool opens another connection instead,
    /// as Go's client (GOST's) does.
    fn has_room(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
            && self.open.load(Ordering::Acquire) < self.send.current_max_send_streams()
    }

    /// A handle for one stream, counted open until its slot drops.
    fn handle(&self) -> Pooled {
        self.open.fetch_add(1, Ordering::AcqRel);
        Pooled {
            send: self.send.clone(),
            ends: self.ends,
            slot: StreamSlot(self.open.clone()),
        }
    }
}

/// One stream's place in its connection's count: held by the stream
/// (attached to it), given back when the stream, or a failed open, drops.
pub(crate) struct StreamSlot(Arc<AtomicUsize>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A pooled connection's handle for one stream.
pub(crate) struct Pooled {
    pub(crate) send: SendRequest<Bytes>,
    pub(crate) ends: Endpoints,
    pub(crate) slot: StreamSlot,
}

/// The client side: an HTTP/2 connection per node (another when the
/// node's stream limit is reached), a stream per proxied connection.
pub struct H2Dialer {
    tls: Option<TlsDialer>,
    opts: H2DialerOptions,
    /// Held across making a connection, so that connections starting at
    /// once share the one new HTTP/2 connection.
    conns: tokio::sync::Mutex<HashMap<String, Vec<ClientConn>>>,
}

impl std::fmt::Debug for H2Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Dialer")
            .field("tls", &self.tls)
            .field("opts", &self.opts)
            .finish()
    }
}

impl H2Dialer {
    pub(crate) fn new(tls: Option<TlsDialer>, opts: H2DialerOptions) -> Self {
        H2Dialer {
            tls,
            opts,
            conns: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// A stream's handle on a live connection to `node_addr` with room
    /// for it, or on a new one over the stream `connect` makes.
    pub(crate) async fn pooled(
        &self,
        node_addr: &str,
        connect: BoxFuture<'_, io::Result<Stream>>,
    ) -> io::Result<Pooled> {
        let mut conns = self.conns.lock().await;
        let list = conns.entry(node_addr.to_string()).or_default();
        list.retain(|c| !c.closed.load(Ordering::Acquire));
        if let Some(c) = list.iter().find(|c| c.has_room()) {
            return Ok(c.handle());
        }
        let c = self.connect(connect.await?, node_addr).await?;
        let handle = c.handle();
        list.push(c);
        Ok(handle)
    }

    /// A new HTTP/2 connection over `raw` (after TLS for `h2`), its
    /// task spawned.
    async fn connect(&self, raw: Stream, node_addr: &str) -> io::Result<ClientConn> {
        let carried = match &self.tls {
            // The `host` option names the server as it names the
            // authority, as GOST's request URL does.
            Some(tls) => {
                tls.connect(raw, self.opts.host.as_deref().unwrap_or(node_addr))
                    .await?
            }
            None => raw,
        };
        let ends = carried.endpoints();
        let (send, conn) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_header_list_size(MAX_HEADER_LIST)
            .enable_push(false)
            .handshake::<_, Bytes>(carried)
            .await
            .map_err(|e| crate::handshake_error("h2", h2_io(e)))?;
        let closed = Arc::new(AtomicBool::new(false));
        let flag = closed.clone();
        let node = esc(node_addr).to_string();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(node, error = %e, "h2: connection ended");
            }
            flag.store(true, Ordering::Release);
        });
        Ok(ClientConn {
            send,
            ends,
            closed,
            open: Arc::default(),
        })
    }

    /// A stream over `conn`: the request, then the node's answer.
    async fn stream(&self, conn: Pooled, node_addr: &str) -> io::Result<Stream> {
        let req = self.opts.request(node_addr, self.tls.is_some())?;
        let mut send = conn.send.clone().ready().await.map_err(h2_io)?;
        let (resp, body) = send.send_request(req, false).map_err(h2_io)?;
        gost_core::dialer::loops::record_stream(conn.ends, resp.stream_id().as_u32());
        let resp = resp.await.map_err(h2_io)?;
        if resp.status() != StatusCode::OK {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("h2: the node answered {}", resp.status()),
            ));
        }
        Ok(Stream::boxed_with(
            H2Stream::new(body, resp.into_body()),
            conn.ends,
            Box::new(conn.slot),
        ))
    }
}

pooled_dialer!(H2Dialer);

impl Multiplex for H2Dialer {
    fn open<'a>(
        &'a self,
        node_addr: &'a str,
        connect: BoxFuture<'a, io::Result<Stream>>,
    ) -> BoxFuture<'a, io::Result<Stream>> {
        Box::pin(async move {
            // A live connection with room is tried once: a stream that
            // fails on it (not the node's refusal) drops it from the pool,
            // and the stream goes on another connection, new if need be.
            let first = {
                let mut conns = self.conns.lock().await;
                let list = conns.entry(node_addr.to_string()).or_default();
                list.retain(|c| !c.closed.load(Ordering::Acquire));
                list.iter()
                    .find(|c| c.has_room())
                    .map(|c| (c.handle(), c.closed.clone()))
            };
            if let Some((handle, closed)) = first {
                match self.stream(handle, node_addr).await {
                    Ok(s) => return Ok(s),
                    // A refusal by a live node is its answer.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Err(e),
                    Err(e) => {
                        tracing::debug!(node = %esc(node_addr), error = %e, "h2: connection lost, opening a new one");
                        if let Some(list) = self.conns.lock().await.get_mut(node_addr) {
                            list.retain(|c| !Arc::ptr_eq(&c.closed, &closed));
                        }
                    }
                }
            }
            let handle = self.pooled(node_addr, connect).await?;
            self.stream(handle, node_addr).await
        })
    }
}

/// The listener's TLS config with ALPN `h2` unless the `tls` block names
/// protocols itself.
pub(crate) fn h2_server_tls(
    cfg: &gost_core::config::ListenerConfig,
    root: &gost_core::config::Config,
) -> Result<TlsUpgrade, String> {
    let mut c = (*server_config(cfg.tls.as_deref(), root)?).clone();
    if c.alpn_protocols.is_empty() {
        c.alpn_protocols = vec![b"h2".to_vec()];
    }
    Ok(TlsUpgrade::new(Arc::new(c)))
}

fn listener_opts(md: &Metadata) -> Result<H2ListenerOptions, String> {
    H2ListenerOptions::from_metadata(md).map_err(|e| format!("listener metadata: {e}"))
}

fn dialer(tls: Option<TlsDialer>, md: &Metadata) -> Result<Arc<dyn Dialer>, String> {
    let opts = H2DialerOptions::from_metadata(md).map_err(|e| format!("dialer metadata: {e}"))?;
    Ok(Arc::new(H2Dialer::new(tls, opts)))
}

pub fn register(r: &mut Transports) {
    r.add_listener(ListenerKind {
        names: &["h2"],
        socket: Socket::Tcp,
        upgrade: Some(|cfg, root| {
            Ok(Arc::new(H2Upgrade {
                tls: Some(h2_server_tls(cfg, root)?),
                opts: listener_opts(&cfg.metadata)?,
            }))
        }),
        uses_tls: true,
        summary: "HTTP/2 over TLS, a stream per connection (`CONNECT`, or `GET` of `path`)",
    });
    r.add_listener(ListenerKind {
        names: &["h2c"],
        socket: Socket::Tcp,
        upgrade: Some(|cfg, _| {
            Ok(Arc::new(H2Upgrade {
                tls: None,
                opts: listener_opts(&cfg.metadata)?,
            }))
        }),
        uses_tls: false,
        summary: "HTTP/2 in cleartext (prior knowledge), a stream per connection",
    });
    r.add_dialer(DialerKind {
        names: &["h2"],
        build: |cfg, node| {
            let mut settings = client_settings(cfg.tls.as_ref(), node);
            if settings.alpn.is_empty() {
                settings.alpn = vec!["h2".into()];
            }
            let tls =
                TlsDialer::new(settings, handshake_timeout(cfg)?).map_err(|e| e.to_string())?;
            Ok(Some(dialer(Some(tls), &cfg.metadata)?))
        },
        summary: "HTTP/2 over TLS, one connection per node; `path`, `host`, `header`",
    });
    r.add_dialer(DialerKind {
        names: &["h2c"],
        build: |cfg, _| Ok(Some(dialer(None, &cfg.metadata)?)),
        summary: "HTTP/2 in cleartext, one connection per node; `path`, `host`, `header`",
    });
}

#[cfg(test)]
mod tests;
