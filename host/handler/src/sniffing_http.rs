//! GOST's HTTP sniffer for the forward handlers (go-gost/x
//! `internal/util/forwarder` `HandleHTTP`): a sniffed HTTP connection is
//! served request by request. Each request is read; when its `Host`
//! differs from the one the upstream connection was opened for (or there
//! is none yet) it is routed again (the service's bypass, then the hop's
//! node matchers and selector) and a new upstream connection is opened;
//! the node's `http` rewrites are applied and the response relayed back,
//! through the response cache when the service has one. A node's
//! `failCodes` status ends the client connection after that response, as
//! does every response unless `http.keepalive` is on (GOST's default).
//!
//! The forward handler takes this path only when something needs each
//! request (see [`crate::forward`]); otherwise a sniffed connection is
//! routed by its first request and relayed as raw bytes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue, CONNECTION, HOST};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::httpcache::HttpCache;
use crate::sniffing::{self, Sniffed};
use crate::stream::ClientStream;
use crate::{ConnContext, HandlerError};
use gost_chain::chain::Node;
use gost_core::escape::esc;
use gost_core::limiter::traffic::ConnTraffic;
use gost_core::stream::Stream;

type Body = BoxBody<Bytes, hyper::Error>;

/// GOST's forward handler `readTimeout` default: how long the upstream
/// may take to send a response head.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Options {
    /// `readTimeout`: the wait for each response head.
    pub read_timeout: Duration,
    /// `sniffing.timeout`: the wait for a body prefix node matchers read.
    pub sniff_timeout: Duration,
    /// `http.keepalive`: keep the client connection after a response.
    pub keepalive: bool,
    /// Requests for the Host of the previous one go over its upstream
    /// connection (else each is routed and dialed anew).
    pub reuse_upstream: bool,
    /// The largest body prefix a node's matcher reads (0: none does).
    pub body_limit: usize,
    pub cache: Option<Arc<HttpCache>>,
    /// Whether a request that was not routed ends the connection (the
    /// forward handlers' sniffer) or the next request is read (the
    /// tunnel entry point).
    pub close_on_refusal: bool,
    /// Run on each request's fields before anything else; an error
    /// status answers the request instead.
    pub prepare: Option<Prepare>,
}

pub type Prepare = Box<dyn Fn(&mut hyper::HeaderMap) -> Result<(), u16> + Send + Sync>;

/// Where a request was routed: the upstream stream, and the forwarder's
/// node (whose `http` settings and `failCodes` apply) when there is one.
pub struct Routed {
    pub stream: Stream,
    pub node: Option<Arc<Node>>,
}

/// Why a request was not routed: the status the client gets before the
/// connection closes, and the error logged.
pub struct Refused {
    pub status: u16,
    pub error: HandlerError,
}

/// The upstream connection of the current `Host`.
struct Current {
    host: String,
    node: Option<Arc<Node>>,
    sender: hyper::client::conn::http1::SendRequest<Body>,
}

/// Serves `client` request by request; `route` picks and dials a node
/// for a request's facts.
pub async fn serve<R, F>(
    client: Stream,
    ctx: &ConnContext,
    opts: &Options,
    route: R,
) -> Result<(), HandlerError>
where
    R: Fn(Sniffed) -> F + Sync,
    F: Future<Output = Result<Routed, Refused>> + Send,
{
    let current = tokio::sync::Mutex::new(None::<Current>);
    let written = Written::default();
    let io = Paced::new(
        ClientStream::new(client, ctx.stats.clone()),
        ctx.traffic.clone(),
    );
    let service = hyper::service::service_fn(|req| {
        let exchange = exchange(req, &current, &written, ctx, opts, &route);
        async move { Ok::<_, std::convert::Infallible>(exchange.await) }
    });
    // Fields keep the case they arrived in; the ones the sniffer adds are
    // written as Go writes them, and no `Date` is added that the upstream
    // did not send.
    let served = hyper::server::conn::http1::Builder::new()
        .preserve_header_case(true)
        .title_case_headers(true)
        .auto_date_header(false)
        .keep_alive(opts.keepalive)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await;
    flush(&written);
    served.map_err(|e| HandlerError::Io(io::Error::other(e)))
}

/// A request whose response body hyper took to the end, recorded once
/// its bytes are written: at the next request, or when the connection
/// ends.
type Written = Arc<std::sync::Mutex<Option<Exchange>>>;

fn flush(written: &Written) {
    let done = written.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(x) = done {
        x.emit(None);
    }
}

/// One request and its response.
async fn exchange<R, F>(
    mut req: Request<Incoming>,
    current: &tokio::sync::Mutex<Option<Current>>,
    written: &Written,
    ctx: &ConnContext,
    opts: &Options,
    route: &R,
) -> Response<Body>
where
    R: Fn(Sniffed) -> F + Sync,
    F: Future<Output = Result<Routed, Refused>> + Send,
{
    if let Some(prepare) = &opts.prepare {
        if let Err(code) = prepare(req.headers_mut()) {
            return status(code, opts.close_on_refusal);
        }
    }
    flush(written);
    let mut record = Exchange::start(&req);
    let raw_host = request_host(&req);
    let host = if raw_host.is_empty() {
        String::new()
    } else {
        sniffing::with_port(&raw_host, 80)
    };
    let key = cache_key(&req, &raw_host);
    let mut stale = None;
    if let Some(cache) = opts.cache.as_ref().filter(|c| c.cacheable_request(&req)) {
        match cache.lookup(&key).await {
            Some((resp, false)) => {
                tracing::debug!(service = %ctx.service, client = %ctx.peer, key = %esc(&key), "cache hit");
                if let Some(r) = record {
                    r.cached(&resp);
                }
                return cached(resp, opts);
            }
            Some((resp, true)) => stale = Some(resp),
            None => {}
        }
    }
    let mut slot = current.lock().await;
    let reuse = opts.reuse_upstream
        && slot
            .as_ref()
            .is_some_and(|c| c.host == host && !c.sender.is_closed());
    let mut req = if reuse {
        req.map(BodyExt::boxed)
    } else {
        *slot = None;
        let (facts, req) = match facts(req, &raw_host, opts).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(service = %ctx.service, client = %ctx.peer, error = %e, "request body");
                return status(400, true);
            }
        };
        let Routed { stream, node } = match route(facts).await {
            Ok(x) => x,
            Err(r) => {
                tracing::warn!(service = %ctx.service, client = %ctx.peer, host = %esc(&host), error = %r.error, "http request refused");
                return status(r.status, opts.close_on_refusal);
            }
        };
        let io = TokioIo::new(stream);
        let (sender, conn) = match hyper::client::conn::http1::Builder::new()
            .preserve_header_case(true)
            .handshake::<_, Body>(io)
            .await
        {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(service = %ctx.service, host = %esc(&host), error = %e, "upstream handshake");
                return status(503, opts.close_on_refusal);
            }
        };
        tokio::spawn(conn.with_upgrades());
        *slot = Some(Current { host, node, sender });
        req
    };
    let Some(cur) = slot.as_mut() else {
        return status(503, true);
    };
    let node = cur.node.clone();
    let node_name = node.as_ref().map_or("", |n| n.name.as_str()).to_string();
    if let Some(http) = node.as_ref().and_then(|n| n.http.as_ref()) {
        rewrite_request(&mut req, http);
    }
    if let Some(r) = record.as_mut() {
        req = r.tap_request(req);
    }
    let method = req.method().clone();
    let client_upgrade = hyper::upgrade::on(&mut req);
    let sent = async {
        cur.sender.ready().await?;
        cur.sender.send_request(req).await
    };
    let mut resp = match tokio::time::timeout(opts.read_timeout, sent).await {
        Ok(Ok(resp)) => resp,
        failed => {
            *slot = None;
            let why = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => format!("no response within {:?}", opts.read_timeout),
            };
            if let Some(resp) =
                stale.filter(|_| opts.cache.as_ref().is_some_and(|c| c.serve_stale()))
            {
                tracing::debug!(service = %ctx.service, client = %ctx.peer, node = %node_name, key = %esc(&key), error = %esc(&why), "cache serve-stale");
                if let Some(mut r) = record {
                    r.http.status_code = resp.status().as_u16();
                    r.emit(None);
                }
                return cached(resp, opts);
            }
            if let Some(r) = record {
                r.emit(Some(format!("read response: {why}")));
            }
            tracing::warn!(service = %ctx.service, client = %ctx.peer, node = %node_name, error = %esc(&why), "upstream request failed");
            return status(503, opts.close_on_refusal);
        }
    };
    let code = resp.status().as_u16();
    let mut close = false;
    if let Some(node) = node.as_ref().filter(|n| n.fail_codes.matches(code)) {
        node.marker.mark();
        tracing::warn!(service = %ctx.service, node = %node.name, status = code, "failCodes matched: node marked failed");
        close = true;
        *slot = None;
    }
    drop(slot);
    if code == 101 {
        if let Some(mut r) = record {
            r.response_head(&resp);
            r.emit(None);
        }
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        let service = Arc::clone(&ctx.service);
        tokio::spawn(async move {
            let (a, b) = match tokio::try_join!(client_upgrade, upstream_upgrade) {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(service = %service, error = %e, "upgrade failed");
                    return;
                }
            };
            let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(a), &mut TokioIo::new(b)).await;
        });
        return resp.map(BodyExt::boxed);
    }
    if let Some(http) = node.as_ref().and_then(|n| n.http.as_ref()) {
        for (k, v) in &http.response_header {
            set_header(resp.headers_mut(), k, v);
        }
    }
    if close {
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    let resp = match record {
        Some(mut r) => {
            r.response_head(&resp);
            resp.map(|b| r.tap_response(b.boxed(), written.clone()))
        }
        None => resp.map(BodyExt::boxed),
    };
    match opts.cache.as_ref() {
        Some(cache) if cache.cacheable(&method, code) => cache.tee(resp, key),
        _ => resp,
    }
}

/// What the connection's handler record keeps of one request (GOST's
/// sniffer writes one record per request, with its `http` sub-record):
/// the request line and fields, the response's status and fields, and
/// with the recorder's `http.body` each body's first bytes. The record
/// is written once the response is (see [`Written`]), so its bytes count
/// the response.
struct Exchange {
    notes: Arc<gost_core::recorder::Notes>,
    started: (std::time::SystemTime, std::time::Instant),
    http: gost_core::recorder::HttpRecord,
    request_body: Option<Arc<std::sync::Mutex<Captured>>>,
}

#[derive(Default)]
struct Captured {
    data: Vec<u8>,
    len: u64,
}

impl Exchange {
    /// `None` when the connection is not recorded. From the first request
    /// on the connection's own record is left out, as GOST leaves it.
    fn start<B>(req: &Request<B>) -> Option<Self> {
        use gost_core::recorder::{self, HttpMessage, HttpRecord};
        let notes = recorder::current()?;
        notes.take();
        let field = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
        if let Some(ip) = recorder::forwarded_client_ip(field) {
            recorder::note(|r| r.client_ip = ip.to_string());
        }
        let http = HttpRecord {
            host: request_host(req),
            method: req.method().to_string(),
            proto: format!("{:?}", req.version()),
            scheme: req.uri().scheme_str().unwrap_or("").to_string(),
            uri: req.uri().to_string(),
            request: HttpMessage {
                content_length: content_length(req.headers(), 0),
                // Go takes `Host` out of a request's fields.
                header: Some({
                    let mut h = header(req.headers());
                    h.remove("Host");
                    h
                }),
                body: None,
            },
            ..Default::default()
        };
        Some(Exchange {
            notes,
            started: (std::time::SystemTime::now(), std::time::Instant::now()),
            http,
            request_body: None,
        })
    }

    /// The request with its body's first bytes kept, when the recorder
    /// keeps bodies.
    fn tap_request(&mut self, req: Request<Body>) -> Request<Body> {
        let limit = self.notes.body_limit();
        if limit == 0 {
            return req;
        }
        let cap = Arc::new(std::sync::Mutex::new(Captured::default()));
        self.request_body = Some(cap.clone());
        req.map(|b| {
            Tap {
                inner: b,
                cap,
                limit,
                on_end: None,
            }
            .boxed()
        })
    }

    fn response_head<B>(&mut self, resp: &Response<B>) {
        self.http.status_code = resp.status().as_u16();
        self.http.response.header = Some(header(resp.headers()));
        self.http.response.content_length = match resp.status().as_u16() {
            204 | 304 => 0,
            _ => content_length(resp.headers(), -1),
        };
    }

    fn cached(mut self, resp: &Response<Bytes>) {
        self.response_head(resp);
        self.http.cached = true;
        self.http.response.content_length = resp.body().len() as i64;
        self.emit(None);
    }

    /// The response body, handing the record to `written` when it is
    /// done.
    fn tap_response(self, body: Body, written: Written) -> Body {
        Tap {
            inner: body,
            cap: Arc::default(),
            limit: self.notes.body_limit(),
            on_end: Some((self, written)),
        }
        .boxed()
    }

    fn emit(mut self, err: Option<String>) {
        if let Some(cap) = &self.request_body {
            let cap = cap.lock().unwrap_or_else(|p| p.into_inner());
            self.http.request.content_length = cap.len as i64;
            self.http.request.body = (!cap.data.is_empty()).then(|| cap.data.clone());
        }
        let http = std::mem::take(&mut self.http);
        self.notes.emit(self.started, |r| {
            r.http = Some(Box::new(http));
            if let Some(e) = err {
                r.err = e;
            }
        });
    }
}

/// Go's `ContentLength` of a message: its `Content-Length`, -1 when
/// chunked, else `none` (0 for a request, -1, read to the end, for a
/// response).
fn content_length(h: &hyper::HeaderMap, none: i64) -> i64 {
    if h.get(hyper::header::TRANSFER_ENCODING).is_some() {
        return -1;
    }
    h.get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(none)
}

fn header(h: &hyper::HeaderMap) -> gost_core::recorder::Header {
    let mut out = gost_core::recorder::Header::new();
    for (k, v) in h {
        gost_core::recorder::add_header(
            &mut out,
            k.as_str(),
            &String::from_utf8_lossy(v.as_bytes()),
        );
    }
    out
}

/// A body passed through whole, its first `limit` bytes kept; a
/// response's writes the request's record when it ends or is dropped.
struct Tap {
    inner: Body,
    cap: Arc<std::sync::Mutex<Captured>>,
    limit: usize,
    on_end: Option<(Exchange, Written)>,
}

impl hyper::body::Body for Tap {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r {
            if let Some(d) = f.data_ref() {
                let mut cap = self.cap.lock().unwrap_or_else(|p| p.into_inner());
                cap.len += d.len() as u64;
                let room = self.limit.saturating_sub(cap.data.len());
                cap.data.extend_from_slice(&d[..room.min(d.len())]);
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        if let Some((mut x, written)) = self.on_end.take() {
            if self.limit > 0 {
                let cap = self.cap.lock().unwrap_or_else(|p| p.into_inner());
                x.http.response.content_length = cap.len as i64;
                x.http.response.body = (!cap.data.is_empty()).then(|| cap.data.clone());
            }
            flush(&written);
            *written.lock().unwrap_or_else(|p| p.into_inner()) = Some(x);
        }
    }
}

/// The request's `Host` field, or the authority of an absolute-form
/// target.
fn request_host<B>(req: &Request<B>) -> String {
    req.uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(HOST)
                .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        })
        .unwrap_or_default()
}

/// GOST's cache key: method, host and request target.
fn cache_key<B>(req: &Request<B>, host: &str) -> String {
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    format!("{} {host} {target}", req.method())
}

/// The request facts node matchers see, with the body prefix they read
/// (when some node's rule reads the body); the request comes back with
/// that prefix put in front of the rest of its body.
async fn facts(
    req: Request<Incoming>,
    host: &str,
    opts: &Options,
) -> Result<(Sniffed, Request<Body>), hyper::Error> {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut s = Sniffed {
        protocol: "http",
        host: host.to_string(),
        method: req.method().as_str().to_string(),
        path: req.uri().path().to_string(),
        query: req.uri().query().unwrap_or("").to_string(),
        headers,
        body: Vec::new(),
    };
    let (parts, mut body) = req.into_parts();
    if opts.body_limit == 0 {
        return Ok((s, Request::from_parts(parts, body.boxed())));
    }
    let mut frames: Vec<Frame<Bytes>> = Vec::new();
    let mut prefix = Vec::new();
    let mut ended = false;
    let deadline = tokio::time::Instant::now() + opts.sniff_timeout;
    while prefix.len() < opts.body_limit {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(frame)) => {
                let frame = frame?;
                if let Some(d) = frame.data_ref() {
                    prefix.extend_from_slice(d);
                }
                frames.push(frame);
            }
            Ok(None) => {
                ended = true;
                break;
            }
            // A client waiting (say for 100 Continue) is routed by what
            // arrived, as the first request's sniff does.
            Err(_) => break,
        }
    }
    prefix.truncate(opts.body_limit);
    s.body = sniffing::decode(&s.headers, prefix);
    let head = futures_util::stream::iter(frames.into_iter().map(Ok));
    let body = if ended {
        http_body_util::StreamBody::new(head).boxed()
    } else {
        use futures_util::StreamExt;
        let rest = http_body_util::BodyStream::new(body);
        BodyExt::boxed(http_body_util::StreamBody::new(head.chain(rest)))
    };
    Ok((s, Request::from_parts(parts, body)))
}

/// The node's `host`, `requestHeader` and `rewriteURL`.
fn rewrite_request<B>(req: &mut Request<B>, http: &gost_chain::chain::http::NodeHttp) {
    if !http.host.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&http.host) {
            req.headers_mut().insert(HOST, v);
        }
    }
    for (k, v) in &http.request_header {
        set_header(req.headers_mut(), k, v);
    }
    if let Some((path, query)) = http.rewrite(req.uri().path()) {
        let query = query.or_else(|| req.uri().query().map(str::to_string));
        let target = match query {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        let mut parts = req.uri().clone().into_parts();
        if let Ok(pq) = target.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = hyper::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
}

/// GOST's `Header.Set`, and `Del` for an empty value; a name or value
/// that is not valid in a header is left out (the config check names
/// it).
fn set_header(headers: &mut hyper::HeaderMap, k: &str, v: &str) {
    let Ok(name) = HeaderName::from_bytes(k.as_bytes()) else {
        return;
    };
    if v.is_empty() {
        headers.remove(name);
    } else if let Ok(value) = HeaderValue::from_str(v) {
        headers.insert(name, value);
    }
}

/// A response the sniffer writes itself (GOST's 403, 502, 503).
fn status(code: u16, close: bool) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
    if close {
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// A response from the cache.
fn cached(resp: Response<Bytes>, opts: &Options) -> Response<Body> {
    let mut resp = resp.map(|b| Full::new(b).map_err(|never| match never {}).boxed());
    if !opts.keepalive {
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// The client connection under the traffic limiter: each read or write
/// waits out the delay the buckets give for the bytes before it.
struct Paced<S> {
    inner: S,
    traffic: Option<Arc<ConnTraffic>>,
    read_wait: Option<Pin<Box<tokio::time::Sleep>>>,
    write_wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Paced<S> {
    fn new(inner: S, traffic: Option<Arc<ConnTraffic>>) -> Self {
        Paced {
            inner,
            traffic,
            read_wait: None,
            write_wait: None,
        }
    }
}

fn wait(slot: &mut Option<Pin<Box<tokio::time::Sleep>>>, cx: &mut Context<'_>) -> Poll<()> {
    if let Some(s) = slot {
        std::task::ready!(s.as_mut().poll(cx));
        *slot = None;
    }
    Poll::Ready(())
}

fn charge(
    traffic: &Option<Arc<ConnTraffic>>,
    from_client: bool,
    n: usize,
) -> Option<Pin<Box<tokio::time::Sleep>>> {
    let d = traffic.as_ref()?.delay(from_client, n);
    (!d.is_zero()).then(|| Box::pin(tokio::time::sleep(d)))
}

impl<S: AsyncRead + Unpin> AsyncRead for Paced<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        std::task::ready!(wait(&mut self.read_wait, cx));
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let n = buf.filled().len() - before;
        self.read_wait = charge(&self.traffic, true, n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Paced<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(wait(&mut self.write_wait, cx));
        let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, data))?;
        self.write_wait = charge(&self.traffic, false, n);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gost_core::config::{HTTPNodeConfig, HTTPURLRewriteConfig};

    #[test]
    fn node_rewrites_reach_the_request() {
        let cfg = HTTPNodeConfig {
            host: "backend.test".into(),
            request_header: [
                ("X-Add".to_string(), "1".to_string()),
                ("X-Drop".to_string(), String::new()),
            ]
            .into(),
            rewrite_url: vec![HTTPURLRewriteConfig {
                r#match: "^/old/(.*)$".into(),
                replacement: "/new/$1".into(),
            }],
            ..Default::default()
        };
        let http = gost_chain::chain::http::NodeHttp::from_config(&cfg)
            .unwrap()
            .unwrap();
        let mut req = Request::builder()
            .uri("/old/a?k=v")
            .header("Host", "front.test")
            .header("X-Drop", "x")
            .body(())
            .unwrap();
        rewrite_request(&mut req, &http);
        assert_eq!(req.uri(), "/new/a?k=v");
        assert_eq!(req.headers()["host"], "backend.test");
        assert_eq!(req.headers()["x-add"], "1");
        assert!(req.headers().get("x-drop").is_none());
        assert_eq!(cache_key(&req, "front.test"), "GET front.test /new/a?k=v");
    }
}
