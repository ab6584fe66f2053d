//! GOST's plain HTTP tunnel, `pht` over HTTP/1.1 and `phts` over TLS
//! (go-gost/x listener/pht, dialer/pht, internal/util/pht). A tunnel is
//! named by a token the client makes up (GOST's client never asks
//! `/authorize` since x v0.13.9; the server still answers it, for older
//! clients); bytes to the server go as `POST <pushPath>?token=T`, each
//! write one request whose body is the bytes in standard base64 and a
//! `\n`; bytes from the server come in the response to
//! `GET <pullPath>?token=T`, one base64 line per read of at most 32 KiB,
//! a bare `\n` every 10 s of silence, the response ending when the
//! tunnel does (the client then asks again; an empty response means the
//! tunnel is gone). An empty push closes the tunnel.
//!
//! As GOST's server, a push or pull for a token not seen before opens a
//! tunnel (that is how its client starts one). Unlike GOST's, a token
//! whose tunnel has ended is refused (403) for a while instead of
//! opening a stray one, and so is a malformed token; a push without any
//! token never opens one.
//!
//! Bounds: a tunnel buffers at most [`PIPE_BUFFER`] bytes each way; a
//! push body may be at most [`MAX_PUSH`] bytes (413 otherwise) and its
//! bytes must be taken by the handler within [`PUSH_TIMEOUT`] (410
//! otherwise); at most `backlog` tunnels wait for the handler; at most
//! [`MAX_ENDED`] ended tokens are remembered; the client takes pulled
//! lines of at most 64 KiB (Go's scanner limit, which GOST's client has).

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::mpsc;

use crate::kinds::{DialerKind, ListenerKind, Socket, Transports};
use crate::tls::{client_settings, handshake_timeout, server_config, TlsDialer, TlsUpgrade};
use crate::{BoxFuture, Dialer, Multiplex, MultiplexUpgrade, Opened, Streams, Upgrade};
use gost_core::escape::esc;
use gost_core::metadata::Metadata;
use gost_core::stream::{Endpoints, Stream};

/// Bytes a tunnel holds each way before the writer waits.
pub const PIPE_BUFFER: usize = 64 * 1024;
/// The largest push body taken.
pub const MAX_PUSH: usize = 4 * 1024 * 1024;
/// How long the handler may take to take a push's bytes (GOST's 30 s).
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(30);
/// A pull's longest read (GOST's `readBufferSize`).
const PULL_CHUNK: usize = 32 * 1024;
/// Silence after which a pull sends a bare `\n` (GOST's `readTimeout`).
const PULL_HEARTBEAT: Duration = Duration::from_secs(10);
/// Ended tokens remembered, to refuse them.
pub const MAX_ENDED: usize = 4096;
/// The longest pulled line the client takes (Go's `bufio.Scanner`).
const MAX_LINE: usize = 64 * 1024;
/// The longest token taken (GOST's are 20 characters).
const MAX_TOKEN: usize = 64;
const DEFAULT_BACKLOG: usize = 128;

/// The listener's paths and queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhtPaths {
    pub authorize: String,
    pub push: String,
    pub pull: String,
}

/// A path key: GOST takes the default when the value does not start
/// with `/`.
fn path(md: &Metadata, key: &str, default: &str) -> Result<String, String> {
    Ok(md
        .get_string(key)
        .map_err(|e| format!("metadata: {e}"))?
        .filter(|p| p.starts_with('/'))
        .unwrap_or_else(|| default.to_string()))
}

impl PhtPaths {
    pub fn from_metadata(md: &Metadata) -> Result<Self, String> {
        Ok(PhtPaths {
            authorize: path(md, "authorizePath", "/authorize")?,
            push: path(md, "pushPath", "/push")?,
            pull: path(md, "pullPath", "/pull")?,
        })
    }
}

/// The line a push carries: `bytes` in standard base64 and a newline.
pub fn encode_line(bytes: &[u8]) -> Vec<u8> {
    let mut line = base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .into_bytes();
    line.push(b'\n');
    line
}

/// A push body's meaning, as GOST's server reads it: the bytes of its
/// first line, `None` when the push closes the tunnel (no newline, or an
/// empty line).
pub fn decode_push(body: &[u8]) -> Result<Option<Vec<u8>>, base64::DecodeError> {
    let Some(end) = body.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    if end == 0 {
        return Ok(None);
    }
    base64::engine::general_purpose::STANDARD
        .decode(&body[..end])
        .map(Some)
}

/// A well-formed token: what GOST's xid tokens are made of, bounded.
fn token_ok(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_TOKEN
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn query_token(req: &Request<Incoming>) -> Option<String> {
    let q = req.uri().query()?;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "token").then(|| v.to_string())
    })
}

/// The server side of one tunnel.
struct Tunnel {
    push: tokio::sync::Mutex<WriteHalf<DuplexStream>>,
    pull: tokio::sync::Mutex<ReadHalf<DuplexStream>>,
}

/// What every connection of a listener shares: the tunnels by token.
struct Shared {
    paths: PhtPaths,
    backlog: usize,
    tunnels: Mutex<HashMap<String, Arc<Tunnel>>>,
    ended: Mutex<(VecDeque<String>, HashSet<String>)>,
    /// Tunnels opened and not yet taken by the handler.
    waiting: Arc<std::sync::atomic::AtomicUsize>,
}

enum Lookup {
    Found(Arc<Tunnel>),
    Opened(Arc<Tunnel>, Stream),
    Refused(StatusCode),
}

impl Shared {
    fn is_ended(&self, token: &str) -> bool {
        self.ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .contains(token)
    }

    /// Ends a tunnel: the handler reads its end (as GOST closes the
    /// pipe), and the token is remembered to be refused.
    fn end(&self, token: &str) {
        let gone = self
            .tunnels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token);
        if let Some(t) = gone {
            tokio::spawn(async move {
                let _ = t.push.lock().await.shutdown().await;
            });
        }
        let mut ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        if ended.1.insert(token.to_string()) {
            ended.0.push_back(token.to_string());
            if ended.0.len() > MAX_ENDED {
                if let Some(old) = ended.0.pop_front() {
                    ended.1.remove(&old);
                }
            }
        }
    }

    /// The tunnel of `token`, opened when new.
    fn lookup(&self, token: &str, ends: Endpoints) -> Lookup {
        use std::sync::atomic::Ordering;
        if !token_ok(token) || self.is_ended(token) {
            return Lookup::Refused(StatusCode::FORBIDDEN);
        }
        let mut tunnels = self.tunnels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = tunnels.get(token) {
            return Lookup::Found(t.clone());
        }
        if self.waiting.load(Ordering::Acquire) >= self.backlog {
            return Lookup::Refused(StatusCode::TOO_MANY_REQUESTS);
        }
        let (handler_side, server_side) = tokio::io::duplex(PIPE_BUFFER);
        let (r, w) = tokio::io::split(server_side);
        let t = Arc::new(Tunnel {
            push: tokio::sync::Mutex::new(w),
            pull: tokio::sync::Mutex::new(r),
        });
        tunnels.insert(token.to_string(), t.clone());
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let s = Stream::boxed(
            Taken {
                io: handler_side,
                waiting: Some(self.waiting.clone()),
            },
            ends,
        );
        Lookup::Opened(t, s)
    }
}

/// The handler's end of a tunnel; counts as waiting until first used.
struct Taken {
    io: DuplexStream,
    waiting: Option<Arc<std::sync::atomic::AtomicUsize>>,
}

impl Taken {
    fn taken(&mut self) {
        if let Some(w) = self.waiting.take() {
            w.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        self.taken();
    }
}

impl tokio::io::AsyncRead for Taken {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        self.taken();
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Taken {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        self.taken();
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn status(code: StatusCode) -> Response<Body> {
    let mut r = Response::new(Empty::new().boxed());
    *r.status_mut() = code;
    r
}

/// One request; a tunnel it opened goes to `tx`.
async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    ends: Endpoints,
    tx: mpsc::UnboundedSender<Item>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let refuse = |what: String, code: StatusCode| {
        let _ = tx.send(Item::Refused(what));
        status(code)
    };
    if path == shared.paths.authorize {
        // GOST's older clients ask for a token first.
        let token = new_token();
        return match shared.lookup(&token, ends) {
            Lookup::Opened(_, s) => {
                let _ = tx.send(Item::Tunnel(s, 0));
                Response::new(Full::new(Bytes::from(format!("token={token}"))).boxed())
            }
            _ => refuse(
                "pht: too many tunnels waiting, authorize refused".into(),
                StatusCode::TOO_MANY_REQUESTS,
            ),
        };
    }
    let push = path == shared.paths.push;
    if !push && path != shared.paths.pull {
        return refuse(
            format!(
                "pht: {} {}: unknown path",
                esc(req.method()),
                esc(req.uri())
            ),
            StatusCode::NOT_FOUND,
        );
    }
    let want = if push { Method::POST } else { Method::GET };
    if req.method() != want {
        return refuse(
            format!(
                "pht: {} {}: wrong method",
                esc(req.method()),
                esc(req.uri())
            ),
            StatusCode::BAD_REQUEST,
        );
    }
    let token = query_token(&req).unwrap_or_default();
    if push {
        let body = match Limited::new(req.into_body(), MAX_PUSH).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                if let Lookup::Found(_) = shared.lookup(&token, ends) {
                    shared.end(&token);
                }
                return refuse(
                    format!("pht: push over {MAX_PUSH} bytes or broken"),
                    StatusCode::PAYLOAD_TOO_LARGE,
                );
            }
        };
        let data = match decode_push(&body) {
            Ok(d) => d,
            Err(_) => {
                shared.end(&token);
                return refuse("pht: push not in base64".into(), StatusCode::BAD_REQUEST);
            }
        };
        let Some(data) = data else {
            // A close: nothing to open for a token not seen.
            if !shared.is_ended(&token)
                && shared
                    .tunnels
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains_key(&token)
            {
                shared.end(&token);
            }
            return status(StatusCode::OK);
        };
        let tunnel = match shared.lookup(&token, ends) {
            Lookup::Found(t) => t,
            Lookup::Opened(t, s) => {
                let _ = tx.send(Item::Tunnel(s, tunnel_hops(ends, &token)));
                t
            }
            Lookup::Refused(code) => {
                return refuse(format!("pht: push for token {} refused", esc(&token)), code)
            }
        };
        let wrote = tokio::time::timeout(PUSH_TIMEOUT, async {
            let mut w = tunnel.push.lock().await;
            w.write_all(&data).await?;
            w.flush().await
        })
        .await;
        return match wrote {
            Ok(Ok(())) => status(StatusCode::OK),
            _ => {
                shared.end(&token);
                status(StatusCode::GONE)
            }
        };
    }
    let tunnel = match shared.lookup(&token, ends) {
        Lookup::Found(t) => t,
        Lookup::Opened(t, s) => {
            let _ = tx.send(Item::Tunnel(s, tunnel_hops(ends, &token)));
            t
        }
        Lookup::Refused(code) => {
            return refuse(format!("pht: pull for token {} refused", esc(&token)), code)
        }
    };
    let (lines, rx) = mpsc::channel::<Bytes>(1);
    tokio::spawn(async move {
        let mut pull = tunnel.pull.lock().await;
        let mut buf = vec![0u8; PULL_CHUNK];
        loop {
            let line = match tokio::time::timeout(PULL_HEARTBEAT, pull.read(&mut buf)).await {
                Err(_) => Bytes::from_static(b"\n"),
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => Bytes::from(encode_line(&buf[..n])),
            };
            if lines.send(line).await.is_err() {
                break;
            }
        }
        drop(pull);
        shared.end(&token);
    });
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(frames).boxed());
    r.headers_mut()
        .insert("x-accel-buffering", http::HeaderValue::from_static("no"));
    r
}

/// A token like GOST's client makes (20 characters of base32hex).
fn new_token() -> String {
    use rand::Rng;
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuv";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| DIGITS[rng.random_range(0..DIGITS.len())] as char)
        .collect()
}

enum Item {
    /// A new tunnel, with the local hops behind it.
    Tunnel(Stream, u8),
    Refused(String),
}

/// A tunnel's pushes and pulls come on connections of their own, so no
/// session names it for the loop detector: the client remembers it by
/// its token, hashed (FNV-1a), as if opened over a connection from the
/// node's address to itself, which the server knows as its own address.
fn loop_key(node: SocketAddr, token: &str) -> (Endpoints, u32) {
    let id = token.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let ends = Endpoints {
        local: Some(node),
        peer: Some(node),
    };
    (ends, id)
}

/// The local hops behind the tunnel of `token`, whose first request came
/// on a connection with `ends`: 0 unless this gost's client opened it.
fn tunnel_hops(ends: Endpoints, token: &str) -> u8 {
    match ends.local {
        Some(local) => {
            let (key, id) = loop_key(local, token);
            gost_core::dialer::loops::stream_hops(key, id)
        }
        None => 0,
    }
}

/// The server side: each accepted connection serves HTTP/1.1 requests
/// of any tunnel; the tunnels a connection's requests open are handed to
/// the service from that connection.
struct PhtUpgrade {
    tls: Option<TlsUpgrade>,
    shared: Arc<Shared>,
}

impl Upgrade for PhtUpgrade {
    fn upgrade(&self, stream: Stream) -> BoxFuture<'_, io::Result<Stream>> {
        Box::pin(crate::tls::upgrade_if(self.tls.as_ref(), stream))
    }

    fn multiplex(&self) -> Option<&dyn MultiplexUpgrade> {
        Some(self)
    }
}

struct Session {
    rx: mpsc::UnboundedReceiver<Item>,
    end: Arc<Mutex<Option<(String, bool)>>>,
}

impl Streams for Session {
    /// A tunnel carries the hops its client remembered by its token
    /// ([`loop_key`]); one opened by `/authorize` (a token the server
    /// made) carries none.
    fn accept(&mut self) -> BoxFuture<'_, Option<io::Result<Opened>>> {
        Box::pin(async move {
            Some(match self.rx.recv().await? {
                Item::Tunnel(stream, hops) => Ok(Opened { stream, hops }),
                Item::Refused(why) => Err(io::Error::new(io::ErrorKind::InvalidData, why)),
            })
        })
    }

    fn end(&self) -> Option<(String, bool)> {
        self.end.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl MultiplexUpgrade for PhtUpgrade {
    fn session(&self, stream: Stream) -> BoxFuture<'_, io::Result<Box<dyn Streams>>> {
        Box::pin(async move {
            let carried = self.upgrade(stream).await?;
            let ends = carried.endpoints();
            let (tx, rx) = mpsc::unbounded_channel();
            let end = Arc::new(Mutex::new(None));
            let slot = end.clone();
            let shared = self.shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let (shared, tx) = (shared.clone(), tx.clone());
                    async move { Ok::<_, Infallible>(handle(shared, req, ends, tx).await) }
                });
                let r = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(30))
                    .serve_connection(TokioIo::new(carried), service)
                    .await;
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(match r {
                    Ok(()) => ("connection closed".into(), false),
                    Err(e) => (format!("pht: {e}"), e.is_parse()),
                });
            });
            Ok(Box::new(Session { rx, end }) as Box<dyn Streams>)
        })
    }
}

/// The dialer's metadata.
#[derive(Debug, Clone)]
struct ClientOptions {
    /// `authorizePath`: when set, a token is asked for first, as GOST's
    /// clients did before x v0.13.9 (servers of that age need it).
    authorize: Option<String>,
    push: String,
    pull: String,
    /// `host`: the `Host` (and TLS server name) instead of the node's.
    host: Option<String>,
    header: Vec<(String, String)>,
}

impl ClientOptions {
    fn from_metadata(md: &Metadata) -> Result<Self, String> {
        let header = match md.get("header") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => (k.clone(), s.clone()),
                    other => (k.clone(), other.to_string()),
                })
                .collect(),
            Some(v) => return Err(format!("metadata: header: {v} is not a map")),
        };
        Ok(ClientOptions {
            authorize: md
                .get_string("authorizePath")
                .map_err(|e| format!("metadata: {e}"))?
                .filter(|p| p.starts_with('/')),
            push: path(md, "pushPath", "/push")?,
            pull: path(md, "pullPath", "/pull")?,
            host: md
                .get_string("host")
                .map_err(|e| format!("metadata: {e}"))?
                .filter(|h| !h.is_empty()),
            header,
        })
    }
}

/// The client side. Each request takes an idle HTTP/1.1 connection to
/// the node or makes one, so the node must be the chain's first.
#[derive(Debug)]
struct PhtDialer {
    tls: Option<Arc<TlsDialer>>,
    opts: ClientOptions,
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

struct Client {
    tls: Option<Arc<TlsDialer>>,
    opts: ClientOptions,
    node: String,
    idle: Mutex<Vec<Sender>>,
}

impl Client {
    fn authority(&self) -> String {
        match &self.opts.host {
            Some(h) => {
                let port = self.node.rsplit_once(':').map(|(_, p)| p).unwrap_or("80");
                format!("{h}:{port}")
            }
            None => self.node.clone(),
        }
    }

    async fn sender(&self) -> io::Result<Sender> {
        loop {
            let s = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match s {
                Some(s) if !s.is_closed() && s.is_ready() => return Ok(s),
                Some(_) => continue,
                None => break,
            }
        }
        let raw = Stream::from(gost_core::dialer::dial_tcp(&self.node).await?);
        let io = match &self.tls {
            Some(tls) => {
                let name = self.opts.host.as_deref().unwrap_or(&self.node);
                tls.connect(raw, name).await?
            }
            None => raw,
        };
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(io::Error::other)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }

    /// One request; the response, its connection kept for the next when
    /// its body has been read (by the caller).
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> io::Result<(Response<Incoming>, Sender)> {
        let mut sender = self.sender().await?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.authority());
        for (k, v) in &self.opts.header {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let resp = sender.send_request(req).await.map_err(io::Error::other)?;
        Ok((resp, sender))
    }

    fn keep(&self, s: Sender) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(s);
    }

    async fn push(&self, token: &str, data: &[u8]) -> io::Result<()> {
        let body = if data.is_empty() {
            Bytes::new()
        } else {
            Bytes::from(encode_line(data))
        };
        let path = format!("{}?token={token}", self.opts.push);
        let (resp, s) = self.send(Method::POST, &path, body).await?;
        let code = resp.status();
        let _ = resp.into_body().collect().await;
        self.keep(s);
        if code != StatusCode::OK {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                format!("pht: push answered {code}"),
            ));
        }
        Ok(())
    }

    async fn authorize(&self, path: &str) -> io::Result<String> {
        let (resp, s) = self.send(Method::GET, path, Bytes::new()).await?;
        let body = Limited::new(resp.into_body(), 1024)
            .collect()
            .await
            .map_err(|e| io::Error::other(e.to_string()))?
            .to_bytes();
        self.keep(s);
        std::str::from_utf8(&body)
            .ok()
            .and_then(|b| b.strip_prefix("token="))
            .filter(|t| token_ok(t))
            .map(str::to_string)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "pht: authorize failed"))
    }

    /// Pulls until the tunnel ends, writing what arrives to `out`.
    async fn pull(&self, token: &str, out: &mut WriteHalf<DuplexStream>) -> io::Result<()> {
        let path = format!("{}?token={token}", self.opts.pull);
        loop {
            let (resp, s) = self.send(Method::GET, &path, Bytes::new()).await?;
            if resp.status() != StatusCode::OK {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    format!("pht: pull answered {}", resp.status()),
                ));
            }
            let mut body = resp.into_body();
            let mut line: Vec<u8> = Vec::new();
            let mut any = false;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(io::Error::other)?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                for &b in data.iter() {
                    if b != b'\n' {
                        if line.len() >= MAX_LINE {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("pht: pulled line over {MAX_LINE} bytes"),
                            ));
                        }
                        line.push(b);
                        continue;
                    }
                    any = true;
                    if line.is_empty() {
                        continue;
                    }
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(&line)
                        .map_err(|e| {
                            io::Error::new(io::ErrorKind::InvalidData, format!("pht: pulled: {e}"))
                        })?;
                    line.clear();
                    out.write_all(&bytes).await?;
                }
            }
            self.keep(s);
            if !any {
                // GOST's server closed the tunnel.
                return Ok(());
            }
        }
    }
}

impl Dialer for PhtDialer {
    fn handshake<'a>(
        &'a self,
        _stream: Stream,
        node_addr: &'a str,
    ) -> BoxFuture<'a, io::Result<Stream>> {
        Box::pin(async move {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "pht node {}: its requests open connections of their own, so it must be the chain's first node",
                    esc(node_addr)
                ),
            ))
        })
    }

    fn multiplex(&self) -> Option<&dyn Multiplex> {
        Some(self)
    }
}

impl Multiplex for PhtDialer {
    /// A new tunnel; `connect` is not used, as each request makes or
    /// reuses a connection of its own.
    fn open<'a>(
        &'a self,
        node_addr: &'a str,
        _connect: BoxFuture<'a, io::Result<Stream>>,
    ) -> BoxFuture<'a, io::Result<Stream>> {
        Box::pin(async move {
            let client = Arc::new(Client {
                tls: self.tls.clone(),
                opts: self.opts.clone(),
                node: node_addr.to_string(),
                idle: Mutex::new(Vec::new()),
            });
            let token = match &self.opts.authorize {
                Some(p) => client.authorize(p).await?,
                None => new_token(),
            };
            // Remembered here, in the task that asked for the tunnel (its
            // requests are made from tasks of their own).
            if let Ok(node) = node_addr.parse::<SocketAddr>() {
                let (key, id) = loop_key(node, &token);
                gost_core::dialer::loops::record_stream(key, id);
            }
            let (app, ours) = tokio::io::duplex(PIPE_BUFFER);
            let (mut from_app, mut to_app) = tokio::io::split(ours);
            let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
            let puller = client.clone();
            let pull_token = token.clone();
            tokio::spawn(async move {
                tokio::select! {
                    r = puller.pull(&pull_token, &mut to_app) => {
                        if let Err(e) = r {
                            tracing::debug!(error = %e, "pht: pull ended");
                        }
                    }
                    _ = &mut stop_rx => {}
                }
                let _ = to_app.shutdown().await;
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; PULL_CHUNK];
                loop {
                    match from_app.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if let Err(e) = client.push(&token, &buf[..n]).await {
                                tracing::debug!(error = %e, "pht: push failed");
                                break;
                            }
                        }
                    }
                }
                // An empty push tells the server the tunnel is closed.
                let _ = client.push(&token, &[]).await;
                let _ = stop_tx.send(());
            });
            Ok(Stream::boxed(app, Endpoints::default()))
        })
    }
}

fn register_kind(r: &mut Transports, tls: bool) {
    r.add_listener(ListenerKind {
        names: if tls { &["phts"] } else { &["pht"] },
        socket: Socket::Tcp,
        upgrade: Some(if tls {
            |cfg, root| build_upgrade(cfg, root, true)
        } else {
            |cfg, root| build_upgrade(cfg, root, false)
        }),
        uses_tls: tls,
        summary: if tls {
            "GOST's plain HTTP tunnel over TLS (push and pull requests); `authorizePath`, `pushPath`, `pullPath`"
        } else {
            "GOST's plain HTTP tunnel (push and pull requests); `authorizePath`, `pushPath`, `pullPath`"
        },
    });
    r.add_dialer(DialerKind {
        names: if tls { &["phts"] } else { &["pht"] },
        build: if tls {
            |cfg, node| build_dialer(cfg, node, true)
        } else {
            |cfg, node| build_dialer(cfg, node, false)
        },
        summary: if tls {
            "GOST's plain HTTP tunnel over TLS, first node only; `pushPath`, `pullPath`, `host`, `header`"
        } else {
            "GOST's plain HTTP tunnel, first node only; `pushPath`, `pullPath`, `host`, `header`"
        },
    });
}

fn build_upgrade(
    cfg: &gost_core::config::ListenerConfig,
    root: &gost_core::config::Config,
    tls: bool,
) -> Result<Arc<dyn Upgrade>, String> {
    let md = &cfg.metadata;
    let backlog = match md
        .get_int("backlog")
        .map_err(|e| format!("metadata: {e}"))?
    {
        Some(n) if n > 0 => n as usize,
        _ => DEFAULT_BACKLOG,
    };
    let tls = if tls {
        Some(TlsUpgrade::new(server_config(cfg.tls.as_deref(), root)?))
    } else {
        None
    };
    Ok(Arc::new(PhtUpgrade {
        tls,
        shared: Arc::new(Shared {
            paths: PhtPaths::from_metadata(md)?,
            backlog,
            tunnels: Mutex::new(HashMap::new()),
            ended: Mutex::new((VecDeque::new(), HashSet::new())),
            waiting: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        }),
    }))
}

fn build_dialer(
    cfg: &gost_core::config::DialerConfig,
    node: Option<&gost_core::config::TLSNodeConfig>,
    tls: bool,
) -> Result<Option<Arc<dyn Dialer>>, String> {
    let tls = if tls {
        let mut settings = client_settings(cfg.tls.as_ref(), node);
        if settings.alpn.is_empty() {
            settings.alpn = vec!["http/1.1".into()];
        }
        Some(Arc::new(
            TlsDialer::new(settings, handshake_timeout(cfg)?).map_err(|e| e.to_string())?,
        ))
    } else {
        None
    };
    Ok(Some(Arc::new(PhtDialer {
        tls,
        opts: ClientOptions::from_metadata(&cfg.metadata)?,
    })))
}

pub fn register(r: &mut Transports) {
    register_kind(r, false);
    register_kind(r, true);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GOST's client writes `base64.StdEncoding(b) + "\n"`; its server
    /// reads the first line, an empty one or none closing the tunnel.
    #[test]
    fn push_lines_are_gosts() {
        assert_eq!(encode_line(b"hello"), b"aGVsbG8=\n");
        assert_eq!(encode_line(&[0xff, 0x00, 0x10]), b"/wAQ\n");
        assert_eq!(decode_push(b"aGVsbG8=\n").unwrap(), Some(b"hello".to_vec()));
        assert_eq!(
            decode_push(b"aGVsbG8=\nignored").unwrap(),
            Some(b"hello".to_vec())
        );
        assert_eq!(decode_push(b"\n").unwrap(), None);
        assert_eq!(decode_push(b"").unwrap(), None);
        assert_eq!(decode_push(b"aGVsbG8=").unwrap(), None);
        assert!(decode_push(b"not base64!\n").is_err());
    }

    #[test]
    fn tokens_are_bounded_and_plain() {
        assert!(token_ok("cn0d3k0s2f1b5v0h4o6g"));
        assert!(token_ok(&new_token()));
        assert_eq!(new_token().len(), 20);
        assert!(!token_ok(""));
        assert!(!token_ok("a b"));
        assert!(!token_ok(&"a".repeat(MAX_TOKEN + 1)));
    }

    #[test]
    fn paths_default_as_gosts() {
        let md: Metadata =
            serde_json::from_str(r#"{"pushPath": "nope", "pullPath": "/p"}"#).unwrap();
        let p = PhtPaths::from_metadata(&md).unwrap();
        assert_eq!(
            p,
            PhtPaths {
                authorize: "/authorize".into(),
                push: "/push".into(),
                pull: "/p".into()
            }
        );
    }
}
