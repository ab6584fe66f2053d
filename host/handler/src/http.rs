//! HTTP proxy handler `http` (GOST's handler/http): `CONNECT` tunnels and
//! plain absolute-URI requests (`GET http://host/path HTTP/1.1`), with
//! Basic proxy authentication and GOST's probe resistance.
//!
//! Heads are parsed with `httparse`; bodies are passed through in their
//! original framing (Content-Length or chunked), so the proxy never has to
//! buffer a body or re-encode it. The client connection stays open for the
//! next request whenever the framing allows it, and so does the origin
//! connection: the next request of the same client for the same origin
//! reuses it (GOST opens one per request unless `keepalive` is on; an
//! origin connection is never shared between clients, so reuse cannot mix
//! their traffic). `keepalive: false` restores one connection per request.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gost_core::stream::Stream;
use gost_proto::http1::{Decoder, Framing};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::stream::ClientStream;
use super::{ConnContext, HandleFuture, Handler, HandlerError};
use gost_chain::connector::upstream::Upstream;
use gost_chain::relay::{self, RelayOptions};
use gost_chain::router::Router;
use gost_core::auth::Auther;
use gost_core::limiter::traffic;
use gost_core::metadata::{Metadata, MetadataError};
use gost_transport::listener::Conn;

/// How much is read from a socket at once while passing bodies through.
const READ_CHUNK: usize = 16 * 1024;
/// Largest request or response head accepted; a larger request head gets
/// 431, as a client cannot make a proxy hold unbounded memory per
/// connection.
const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in one head (Go's server has no count limit but a
/// 1 MiB size limit; 100 fields is ample for real clients).
const MAX_HEADERS: usize = 100;
/// GOST's `readTimeout` default.
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(15);
const DEFAULT_PROXY_AGENT: &str = "gost/3.0";
const DEFAULT_REALM: &str = "gost";

/// What a client that fails authentication gets instead of a 407 (GOST's
/// `probeResist`), so that the port does not reveal a proxy to scanners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResist {
    /// `code:404`: an empty response with this status.
    Code(u16),
    /// `file:/path`: the file's content as `text/html` with status 200.
    File(PathBuf),
    /// `host:addr`: the raw request is passed to this server and its
    /// answer relayed back, so the port looks like that server.
    Host(String),
}

/// Typed handler metadata, parsed once at start-up.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// `readTimeout`: how long a client may take to send a request head
    /// (also how long an idle keep-alive connection is kept), and how long
    /// the origin may take to start its response. GOST uses it for the
    /// latter; applying it to the client too closes slow-loris connections.
    pub read_timeout: Duration,
    /// `idleTimeout`: close a CONNECT tunnel with no traffic for this long.
    pub idle_timeout: Option<Duration>,
    /// `header` (or `http.header`): extra fields on every response the
    /// proxy writes itself (CONNECT's 200 and its error responses).
    pub header: Vec<(String, String)>,
    /// `proxyAgent` (or `http.proxyAgent`): the `Proxy-Agent` field.
    pub proxy_agent: String,
    /// `authBasicRealm`: the realm in `Proxy-Authenticate`.
    pub realm: String,
    /// `probeResist` (or `probe_resist`).
    pub probe_resist: Option<ProbeResist>,
    /// `knock`: host names (comma separated) for which a failed
    /// authentication gets the real 407 despite `probeResist`.
    pub knock: Vec<String>,
    /// `keepalive`: keep the origin connection for the client's next
    /// request to the same origin.
    pub keepalive: bool,
    /// `sniffing`: check a CONNECT tunnel's inner host against the
    /// service's bypass; `None` when off.
    pub sniffing: Option<Duration>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            read_timeout: DEFAULT_READ_TIMEOUT,
            idle_timeout: None,
            header: Vec::new(),
            proxy_agent: DEFAULT_PROXY_AGENT.into(),
            realm: DEFAULT_REALM.into(),
            probe_resist: None,
            knock: Vec::new(),
            keepalive: true,
            sniffing: None,
        }
    }
}

impl HttpOptions {
    pub fn from_metadata(md: &Metadata) -> Result<Self, MetadataError> {
        let d = HttpOptions::default();
        let string = |keys: &[&str]| -> Result<Option<String>, MetadataError> {
            for k in keys {
                if let Some(v) = md.get_string(k)?.filter(|v| !v.is_empty()) {
                    return Ok(Some(v));
                }
            }
            Ok(None)
        };
        let probe_resist = match string(&["probeResist", "probe_resist"])? {
            Some(v) => Some(parse_probe_resist(&v)?),
            None => None,
        };
        let header = match md.get("http.header").or_else(|| md.get("header")) {
            Some(v) if !v.is_null() => parse_header_map(v)?,
            _ => Vec::new(),
        };
        Ok(HttpOptions {
            read_timeout: md
                .get_duration("readTimeout")?
                .filter(|t| !t.is_zero())
                .unwrap_or(d.read_timeout),
            idle_timeout: md.get_duration("idleTimeout")?.filter(|t| !t.is_zero()),
            header,
            proxy_agent: string(&["http.proxyAgent", "proxyAgent"])?.unwrap_or(d.proxy_agent),
            realm: string(&["authBasicRealm"])?.unwrap_or(d.realm),
            probe_resist,
            knock: string(&["knock"])?
                .map(|k| {
                    k.split(',')
                        .map(|h| h.trim().to_string())
                        .filter(|h| !h.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            keepalive: md.get_bool("keepalive")?.unwrap_or(d.keepalive),
            sniffing: super::sniffing::from_metadata(md)?,
        })
    }
}

pub(crate) fn parse_probe_resist(v: &str) -> Result<ProbeResist, MetadataError> {
    let bad = || MetadataError {
        key: "probeResist".into(),
        value: serde_json::Value::from(v).to_string(),
        expected: "code:STATUS, file:PATH or host:ADDR",
    };
    let (kind, value) = v.split_once(':').ok_or_else(bad)?;
    match kind {
        "code" => value
            .parse::<u16>()
            .ok()
            .filter(|c| (100..1000).contains(c))
            .map(ProbeResist::Code)
            .ok_or_else(bad),
        "file" if !value.is_empty() => Ok(ProbeResist::File(value.into())),
        "host" if !value.is_empty() => Ok(ProbeResist::Host(value.into())),
        _ => Err(bad()),
    }
}

/// `header: {Name: value}`; values must be plain strings that are valid
/// in a header field, since they are written verbatim into responses.
pub(crate) fn parse_header_map(
    v: &serde_json::Value,
) -> Result<Vec<(String, String)>, MetadataError> {
    let bad = || MetadataError {
        key: "header".into(),
        value: v.to_string(),
        expected: "a map of header names to string values",
    };
    let map = v.as_object().ok_or_else(bad)?;
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        let value = match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            _ => return Err(bad()),
        };
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !name_ok || value.bytes().any(|b| b == b'\r' || b == b'\n') {
            return Err(bad());
        }
        out.push((name.clone(), value));
    }
    Ok(out)
}

pub struct HttpHandler {
    router: Router,
    auther: Option<Arc<dyn Auther>>,
    opts: HttpOptions,
}

impl HttpHandler {
    pub fn new(router: Router, auther: Option<Arc<dyn Auther>>, opts: HttpOptions) -> Self {
        HttpHandler {
            router,
            auther,
            opts,
        }
    }

    /// The `readTimeout`, for the `auto` handler's first-byte wait.
    pub fn read_timeout(&self) -> Duration {
        self.opts.read_timeout
    }

    /// Serves one client connection: requests until the client closes, a
    /// response cannot be delimited, or a CONNECT tunnel takes it over. The
    /// requests run in a box freed before a tunnel's relay starts, so an
    /// idle tunnel keeps only the relay's state (not an `async fn`, which
    /// would keep a second copy of the arguments).
    #[allow(clippy::manual_async_fn)]
    pub fn serve(
        &self,
        stream: Stream,
        ctx: ConnContext,
    ) -> impl std::future::Future<Output = Result<(), HandlerError>> + Send + '_ {
        async move {
            match Box::pin(self.requests(stream, &ctx)).await? {
                Some((client, upstream)) => self.tunnel(client, upstream, &ctx).await,
                None => Ok(()),
            }
        }
    }

    /// The request loop; returns the client and upstream of a granted
    /// CONNECT for [`Self::serve`] to relay.
    async fn requests(
        &self,
        stream: Stream,
        ctx: &ConnContext,
    ) -> Result<Option<(Buffered, Upstream)>, HandlerError> {
        let mut client = Buffered {
            io: ClientStream::new(stream, ctx.stats.clone()),
            buf: Vec::new(),
        };
        let mut origin: Option<Origin> = None;
        loop {
            let head = match self.read_request(&mut client).await? {
                Some(h) => h,
                None => return Ok(None),
            };
            let req = match head {
                Ok(req) => req,
                Err(e) => {
                    self.reply_bare(&mut client, e.status()).await;
                    return Err(HandlerError::Protocol(e.to_string()));
                }
            };
            tracing::debug!(service = %ctx.service, client = %ctx.peer, method = %gost_core::escape::esc(&req.method), target = %gost_core::escape::esc(&req.target), "http request");
            if let Some(ip) = gost_core::recorder::forwarded_client_ip(|n| req.header(n)) {
                gost_core::recorder::note(|r| r.client_ip = ip.to_string());
            }
            match self.authenticate(&req, ctx).await {
                None => {
                    return Box::pin(self.auth_failed(client, &req, ctx))
                        .await
                        .map(|()| None)
                }
                Some(Some(user)) => {
                    tracing::debug!(service = %ctx.service, client = %ctx.peer, user = %gost_core::escape::esc(user), "authenticated")
                }
                Some(None) => {}
            }
            // Each step runs in its own box, freed when it returns: inline,
            // its state would size the future every idle keep-alive or
            // tunnelled connection keeps.
            let step = if req.method == "CONNECT" {
                Box::pin(self.connect(&mut client, &req, ctx)).await?
            } else {
                Box::pin(self.forward(&mut client, req, &mut origin, ctx)).await?
            };
            match step {
                Next::KeepAlive => {
                    // An idle keep-alive connection holds no read buffer.
                    if client.buf.is_empty() {
                        client.buf = Vec::new();
                    }
                    continue;
                }
                Next::Close => return Ok(None),
                Next::Tunnel(upstream) => return Ok(Some((client, upstream))),
            }
        }
    }

    /// Reads the next request head: `None` when the client closed or went
    /// quiet between requests, `Some(Err)` for a head that gets an error
    /// response.
    async fn read_request(
        &self,
        client: &mut Buffered,
    ) -> Result<Option<Result<RequestHead, BadRequest>>, HandlerError> {
        let deadline = Instant::now() + self.opts.read_timeout;
        loop {
            match parse_request(&client.buf) {
                Ok(Some(req)) => return Ok(Some(Ok(req))),
                Ok(None) if client.buf.len() >= MAX_HEAD => {
                    return Ok(Some(Err(BadRequest::HeadTooLarge)))
                }
                Ok(None) => {}
                Err(e) => return Ok(Some(Err(e))),
            }
            let n = match tokio::time::timeout_at(deadline, client.fill()).await {
                Ok(r) => r?,
                Err(_) if client.buf.is_empty() => return Ok(None),
                Err(_) => {
                    return Err(HandlerError::Protocol(format!(
                        "request head not complete within {:?}",
                        self.opts.read_timeout
                    )))
                }
            };
            if n == 0 {
                if client.buf.is_empty() {
                    return Ok(None);
                }
                return Err(HandlerError::Protocol(
                    "client closed in the middle of a request head".into(),
                ));
            }
        }
    }

    /// `None` when authentication fails; otherwise the user name, if any.
    async fn authenticate(&self, req: &RequestHead, ctx: &ConnContext) -> Option<Option<String>> {
        let Some(auther) = &self.auther else {
            return Some(None);
        };
        let (user, pass) = req
            .header("proxy-authorization")
            .and_then(parse_basic)
            .unwrap_or_default();
        auther
            .authenticate(
                gost_core::auth::AuthRequest::new(&user, &pass).from(&ctx.service, ctx.peer),
            )
            .await
            .map(Some)
    }

    /// A 407 (with the realm), or GOST's probe resistance unless the
    /// request names a knock host; the connection is then closed.
    async fn auth_failed(
        &self,
        mut client: Buffered,
        req: &RequestHead,
        ctx: &ConnContext,
    ) -> Result<(), HandlerError> {
        let failed = || HandlerError::Protocol("proxy authentication failed".into());
        let knocked = target_host(req).is_some_and(|h| {
            self.opts
                .knock
                .iter()
                .any(|k| k.eq_ignore_ascii_case(h.trim_matches(['[', ']'])))
        });
        let probe = self.opts.probe_resist.as_ref().filter(|_| !knocked);
        match probe {
            None => {
                let head = format!(
                    "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"{}\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    self.opts.realm
                );
                let _ = client.send(head.as_bytes()).await;
            }
            Some(ProbeResist::Code(code)) => {
                let head = format!(
                    "HTTP/1.1 {code} {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    reason(*code)
                );
                let _ = client.send(head.as_bytes()).await;
            }
            Some(ProbeResist::File(path)) => match tokio::fs::read(path).await {
                Ok(body) => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = client.send(head.as_bytes()).await;
                    let _ = client.send(&body).await;
                }
                Err(e) => {
                    tracing::warn!(service = %ctx.service, path = %path.display(), error = %e, "probeResist file");
                    self.reply_bare(&mut client, 503).await;
                }
            },
            Some(ProbeResist::Host(addr)) => {
                // GOST dials the decoy directly, never through a chain: it
                // stands in for this port, it is not a proxied target. The
                // router dials directly as long as chains do not exist.
                let upstream = match self.router.dial_tcp(addr, ctx.peer.ip()).await {
                    Ok(s) => s,
                    Err(e) => {
                        self.reply_bare(&mut client, 503).await;
                        return Err(e.into());
                    }
                };
                return self.tunnel(client, upstream, ctx).await;
            }
        }
        Err(failed())
    }

    async fn connect(
        &self,
        client: &mut Buffered,
        req: &RequestHead,
        ctx: &ConnContext,
    ) -> Result<Next, HandlerError> {
        let Some(addr) = authority_addr(&req.target) else {
            self.reply_error(client, 400).await;
            return Err(HandlerError::Protocol(format!(
                "CONNECT target {:?} is not host:port",
                req.target
            )));
        };
        let upstream = match self.router.dial_tcp(&addr, ctx.peer.ip()).await {
            Ok(s) => s,
            Err(e) => {
                self.reply_error(client, dial_status(&e)).await;
                return Err(e.into());
            }
        };
        let mut head = String::from("HTTP/1.1 200 Connection established\r\n");
        self.push_own_headers(&mut head);
        head.push_str("\r\n");
        client.send(head.as_bytes()).await?;
        client.buf.drain(..req.len);
        if let Some(timeout) = self.opts.sniffing {
            super::sniffing::guard_tunnel(client.io.get_mut(), &client.buf, timeout, &self.router)
                .await?;
        }
        Ok(Next::Tunnel(upstream))
    }

    /// Relays a tunnel; bytes the client sent past its request head are
    /// passed on first.
    async fn tunnel(
        &self,
        client: Buffered,
        upstream: Upstream,
        ctx: &ConnContext,
    ) -> Result<(), HandlerError> {
        let mut upstream = upstream;
        let Buffered { io, buf } = client;
        if !buf.is_empty() {
            upstream.write_all(&buf).await?;
        }
        // The read buffer would otherwise stay allocated for the tunnel's
        // whole life.
        drop(buf);
        let client = io.into_inner();
        let opts = RelayOptions {
            idle_timeout: self.opts.idle_timeout,
        };
        relay::relay(client, upstream, ctx, &opts).await?;
        Ok(())
    }

    /// One plain request: the head rewritten to origin form, the body
    /// passed through, then the response passed back.
    ///
    /// Writing to the origin, reading from it and reading the client's body
    /// all race in one `select!`, so an origin that answers before taking
    /// the whole body (a 413, or `Expect: 100-continue`) is heard at once
    /// instead of dead-locking against a full socket buffer. The traffic
    /// limiter's waits race there too, each holding back only its own
    /// direction.
    async fn forward(
        &self,
        client: &mut Buffered,
        req: RequestHead,
        origin: &mut Option<Origin>,
        ctx: &ConnContext,
    ) -> Result<Next, HandlerError> {
        let prepared = match prepare_forward(&req, self.opts.keepalive) {
            Ok(p) => p,
            Err(e) => {
                self.reply_error(client, e.status()).await;
                return Err(HandlerError::Protocol(e.to_string()));
            }
        };
        client.buf.drain(..req.len);
        // The head waits out the traffic limiter before it goes anywhere;
        // nothing else is in flight yet.
        traffic::pace(ctx.traffic.as_deref(), true, req.len).await;
        let kept = origin
            .take()
            .filter(|o| o.addr == prepared.addr)
            .and_then(|mut o| o.is_alive().then_some(o));
        if let Some(o) = kept {
            // Only a request without a body can be sent again: its bytes
            // are all still at hand.
            let retryable = prepared.body == Framing::Length(0);
            match self
                .exchange(
                    client,
                    &req,
                    &prepared,
                    Upstream::direct(o.stream),
                    retryable,
                    ctx,
                )
                .await?
            {
                Exchanged::Done { next, keep } => {
                    *origin = keep.map(|stream| Origin {
                        addr: prepared.addr.clone(),
                        stream,
                    });
                    return Ok(next);
                }
                Exchanged::Stale => {
                    tracing::debug!(addr = %gost_core::escape::esc(&prepared.addr), "kept origin connection was closed by the origin; dialing again");
                }
            }
        }
        let upstream = match self.router.dial_tcp(&prepared.addr, ctx.peer.ip()).await {
            Ok(s) => s,
            Err(e) => {
                self.reply_error(client, dial_status(&e)).await;
                return Err(e.into());
            }
        };
        match self
            .exchange(client, &req, &prepared, upstream, false, ctx)
            .await?
        {
            Exchanged::Done { next, keep } => {
                *origin = keep.map(|stream| Origin {
                    addr: prepared.addr.clone(),
                    stream,
                });
                Ok(next)
            }
            Exchanged::Stale => Err(bad_upstream("closed before its response")),
        }
    }

    /// Sends one prepared request over `upstream` and passes the response
    /// back. With `retryable`, an origin that closes before sending a byte
    /// yields `Stale` (nothing was written to the client) so the request
    /// can go out again on a fresh connection.
    async fn exchange(
        &self,
        client: &mut Buffered,
        req: &RequestHead,
        prepared: &Forward,
        upstream: Upstream,
        retryable: bool,
        ctx: &ConnContext,
    ) -> Result<Exchanged, HandlerError> {
        // A lazy relay node's response comes before the origin's bytes; it
        // is taken off what is read, so the request goes out meanwhile.
        let (mut upstream, mut owed) = upstream.into_parts();
        // Bytes for the origin not written yet: the head, then body bytes.
        let mut out: Vec<u8> = prepared.head.as_bytes().to_vec();
        let mut up_buf: Vec<u8> = Vec::new();
        let mut exchange = Exchange {
            req_body: Decoder::new(prepared.body),
            resp: RespState::Head,
            client_keep_alive: prepared.keep_alive,
            http10: req.minor == 0,
            head_request: req.method == "HEAD",
            upgrade: prepared.upgrade.clone(),
            keep_alive: false,
            origin_persistent: prepared.origin_persistent,
            origin_keep_alive: false,
        };
        // Whether the origin has sent anything at all on this connection.
        let mut heard = false;
        // Written to the origin and not flushed yet (a boxed transport
        // may hold writes until flushed).
        let mut unflushed = false;
        let mut deadline = Instant::now() + self.opts.read_timeout;
        // Set when the origin stops taking the request: it may still
        // answer (say 413 before closing), so the response is awaited, but
        // the connection cannot be reused.
        let mut body_refused = false;
        // Traffic limiter: body bytes in `out` go to the origin, and bytes
        // read from the origin are passed on and more read, only while
        // their direction is open.
        let mut pacer = traffic::Pacer::new(ctx.traffic.clone());
        loop {
            let sending_body = !exchange.req_body.done() && !body_refused;
            if out.is_empty() && sending_body && !client.buf.is_empty() {
                match exchange.req_body.advance(&client.buf) {
                    Ok(n) => {
                        out.extend(client.buf.drain(..n));
                        pacer.charge(true, n);
                    }
                    Err(e) => {
                        if matches!(exchange.resp, RespState::Head) {
                            self.reply_error(client, 400).await;
                        }
                        return Err(HandlerError::Protocol(format!("request body: {e}")));
                    }
                }
            }
            let mut progress = false;
            match &mut exchange.resp {
                _ if !pacer.open(false) => {}
                RespState::Head => match parse_response(&up_buf) {
                    Ok(Some(resp)) => {
                        progress = true;
                        match exchange.on_response_head(&resp) {
                            Ok(bytes) => {
                                client.send(&bytes).await?;
                                up_buf.drain(..resp.len);
                            }
                            Err(e) => {
                                self.reply_error(client, 503).await;
                                return Err(e);
                            }
                        }
                    }
                    Ok(None) if up_buf.len() >= MAX_HEAD => {
                        self.reply_error(client, 503).await;
                        return Err(bad_upstream("response head too large"));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        self.reply_error(client, 503).await;
                        return Err(bad_upstream(e));
                    }
                },
                RespState::Body(dec) => {
                    if !up_buf.is_empty() {
                        let n = dec
                            .advance(&up_buf)
                            .map_err(|e| bad_upstream(format!("response body: {e}")))?;
                        if n > 0 {
                            client.send(&up_buf[..n]).await?;
                            up_buf.drain(..n);
                            progress = true;
                        }
                    }
                    if dec.done() {
                        exchange.resp = RespState::Done;
                        progress = true;
                    }
                }
                RespState::Done => break,
                RespState::Upgraded => {
                    // Bytes already read past the 101 head belong to the
                    // new protocol, both ways.
                    if !up_buf.is_empty() {
                        client.send(&up_buf).await?;
                    }
                    if !out.is_empty() {
                        upstream.write_all_now(&out).await?;
                    }
                    return Ok(Exchanged::Done {
                        next: Next::Tunnel(Upstream::direct(upstream)),
                        keep: None,
                    });
                }
            }
            if progress {
                continue;
            }
            let waiting_head = matches!(exchange.resp, RespState::Head);
            up_buf.reserve(READ_CHUNK);
            let origin = OriginIo {
                stream: &mut upstream,
                out: &out,
                write: pacer.open(true),
                unflushed: &mut unflushed,
                buf: &mut up_buf,
                read: pacer.open(false),
            };
            tokio::select! {
                r = origin => match r {
                    OriginStep::Wrote(Ok(n)) => {
                        out.drain(..n);
                        unflushed = true;
                    }
                    OriginStep::Wrote(Err(e)) => {
                        tracing::debug!(error = %e, "origin stopped reading the request");
                        body_refused = true;
                        out.clear();
                    }
                    OriginStep::Read(r) => {
                    let n = match r {
                        Ok(n) => n,
                        Err(_) if retryable && !heard => return Ok(Exchanged::Stale),
                        Err(e) => {
                            if waiting_head {
                                self.reply_error(client, 503).await;
                            }
                            return Err(e.into());
                        }
                    };
                    if let Some(o) = &mut owed {
                        match o.feed(&up_buf) {
                            Ok((used, done)) => {
                                up_buf.drain(..used);
                                if done {
                                    owed = None;
                                }
                            }
                            Err(e) => {
                                self.reply_error(client, 503).await;
                                return Err(e.into_io().into());
                            }
                        }
                    }
                    if n > 0 {
                        heard = true;
                        deadline = Instant::now() + self.opts.read_timeout;
                        pacer.charge(false, n);
                        continue;
                    }
                    match &mut exchange.resp {
                        RespState::Body(dec) if dec.ends_at_eof() => exchange.resp = RespState::Done,
                        RespState::Head if retryable && !heard => return Ok(Exchanged::Stale),
                        RespState::Head => {
                            self.reply_error(client, 503).await;
                            return Err(bad_upstream("closed before its response"));
                        }
                        _ => return Err(bad_upstream("closed in the middle of a response body")),
                    }
                    }
                },
                r = client.fill(), if sending_body && out.is_empty() => {
                    if r? == 0 {
                        return Err(HandlerError::Protocol("client closed in the middle of a request body".into()));
                    }
                    deadline = Instant::now() + self.opts.read_timeout;
                }
                // The read timeout counts the origin's silence, not the
                // limiter's waits.
                _ = pacer.wait(), if pacer.waiting() => {
                    deadline = Instant::now() + self.opts.read_timeout;
                }
                _ = tokio::time::sleep_until(deadline), if waiting_head && pacer.open(false) => {
                    self.reply_error(client, 503).await;
                    return Err(bad_upstream(format!("no response within {:?}", self.opts.read_timeout)));
                }
            }
        }
        // A request body still unread would be taken for the next request.
        let reusable = exchange.keep_alive && exchange.req_body.done() && !body_refused;
        // Bytes past the response would be taken for the next one.
        let keep =
            (reusable && exchange.origin_keep_alive && up_buf.is_empty()).then_some(upstream);
        Ok(Exchanged::Done {
            next: if reusable {
                Next::KeepAlive
            } else {
                Next::Close
            },
            keep,
        })
    }

    /// `Proxy-Agent` and the `header` metadata, on responses the proxy
    /// writes itself.
    fn push_own_headers(&self, head: &mut String) {
        head.push_str("Proxy-Agent: ");
        head.push_str(&self.opts.proxy_agent);
        head.push_str("\r\n");
        for (k, v) in &self.opts.header {
            head.push_str(k);
            head.push_str(": ");
            head.push_str(v);
            head.push_str("\r\n");
        }
    }

    /// An empty error response after which the connection is closed. A
    /// client that has gone already does not matter here.
    async fn reply_error(&self, client: &mut Buffered, status: u16) {
        let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
        self.push_own_headers(&mut head);
        head.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
        let _ = client.send(head.as_bytes()).await;
    }

    /// The same before a client has authenticated: no `Proxy-Agent` or
    /// configured fields, which would tell a prober that this is a proxy
    /// (GOST adds them only once authentication has passed).
    async fn reply_bare(&self, client: &mut Buffered, status: u16) {
        let _ = client.send(bare_response(status).as_bytes()).await;
    }
}

impl Handler for HttpHandler {
    fn handle(&self, conn: Conn, ctx: ConnContext) -> HandleFuture<'_> {
        super::tcp_only("http", conn, |s| self.serve(s, ctx))
    }
}

fn bad_upstream(msg: impl std::fmt::Display) -> HandlerError {
    HandlerError::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("upstream: {msg}"),
    ))
}

/// An origin connection kept for the client's next request.
struct Origin {
    addr: String,
    stream: Stream,
}

impl Origin {
    /// An idle origin connection must have nothing to read: anything there
    /// is a close (or stray bytes) that would break the next exchange. A
    /// byte read to find out is lost with the connection.
    fn is_alive(&mut self) -> bool {
        if !self.stream.rewound().is_empty() {
            return false;
        }
        let mut probe = Vec::with_capacity(1);
        matches!(self.stream.try_read_now(&mut probe), Ok(None))
    }
}

/// One step of an exchange with the origin: writing `out` (then flushing
/// it) and reading into `buf`, whichever is ready first. One future over
/// the one stream, so both directions wait together without splitting it.
struct OriginIo<'a> {
    stream: &'a mut Stream,
    out: &'a [u8],
    write: bool,
    unflushed: &'a mut bool,
    buf: &'a mut Vec<u8>,
    read: bool,
}

enum OriginStep {
    Wrote(std::io::Result<usize>),
    Read(std::io::Result<usize>),
}

impl std::future::Future for OriginIo<'_> {
    type Output = OriginStep;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<OriginStep> {
        use std::task::Poll;
        use tokio::io::{AsyncRead, AsyncWrite};
        let this = self.get_mut();
        let mut stream = std::pin::Pin::new(&mut *this.stream);
        if this.write && !this.out.is_empty() {
            if let Poll::Ready(r) = stream.as_mut().poll_write(cx, this.out) {
                return Poll::Ready(OriginStep::Wrote(r));
            }
        } else if *this.unflushed {
            match stream.as_mut().poll_flush(cx) {
                Poll::Ready(Ok(())) => *this.unflushed = false,
                Poll::Ready(Err(e)) => return Poll::Ready(OriginStep::Wrote(Err(e))),
                Poll::Pending => {}
            }
        }
        if !this.read {
            return Poll::Pending;
        }
        let mut rb = tokio::io::ReadBuf::uninit(this.buf.spare_capacity_mut());
        match stream.poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                // SAFETY: poll_read initialised the first `n` spare bytes.
                unsafe { this.buf.set_len(this.buf.len() + n) };
                Poll::Ready(OriginStep::Read(Ok(n)))
            }
            Poll::Ready(Err(e)) => Poll::Ready(OriginStep::Read(Err(e))),
            Poll::Pending => Poll::Pending,
        }
    }
}

enum Exchanged {
    Done {
        next: Next,
        /// The origin connection, when it may carry the next request.
        keep: Option<Stream>,
    },
    /// A kept connection the origin had closed; nothing reached the client.
    Stale,
}

/// What the connection does after a request.
enum Next {
    KeepAlive,
    Close,
    /// CONNECT or a protocol upgrade: relay raw bytes from now on.
    Tunnel(Upstream),
}

/// The client stream with the bytes read from it but not yet used.
struct Buffered {
    io: ClientStream,
    buf: Vec<u8>,
}

impl Buffered {
    /// Writes `data` to the client and flushes it: a boxed transport may
    /// hold writes until flushed.
    async fn send(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.io.write_all(data).await?;
        self.io.flush().await
    }

    /// Reads more bytes into the buffer; cancel-safe, so it can race the
    /// other side in `select!`.
    async fn fill(&mut self) -> std::io::Result<usize> {
        self.buf.reserve(READ_CHUNK);
        self.io.read_buf(&mut self.buf).await
    }
}

/// A request head that gets an error response instead of being served.
#[derive(Debug, thiserror::Error)]
enum BadRequest {
    #[error("malformed request head: {0}")]
    Malformed(String),
    #[error("request head larger than {MAX_HEAD} bytes or {MAX_HEADERS} fields")]
    HeadTooLarge,
    #[error("{0}")]
    Invalid(String),
}

impl BadRequest {
    fn status(&self) -> u16 {
        match self {
            BadRequest::HeadTooLarge => 431,
            BadRequest::Malformed(_) | BadRequest::Invalid(_) => 400,
        }
    }
}

#[derive(Debug)]
struct RequestHead {
    method: String,
    target: String,
    /// HTTP/1.x minor version.
    minor: u8,
    headers: Vec<(String, Vec<u8>)>,
    /// Bytes of the head in the buffer it was parsed from.
    len: usize,
}

impl RequestHead {
    fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }
}

#[derive(Debug)]
struct ResponseHead {
    status: u16,
    minor: u8,
    reason: String,
    headers: Vec<(String, Vec<u8>)>,
    len: usize,
}

fn header_value<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

fn owned_headers(headers: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|h| (h.name.to_string(), h.value.to_vec()))
        .collect()
}

/// `Ok(None)` while the head is incomplete.
fn parse_request(buf: &[u8]) -> Result<Option<RequestHead>, BadRequest> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => Ok(Some(RequestHead {
            method: req.method.unwrap_or_default().to_string(),
            target: req.path.unwrap_or_default().to_string(),
            minor: req.version.unwrap_or(1),
            headers: owned_headers(req.headers),
            len,
        })),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(BadRequest::HeadTooLarge),
        Err(e) => Err(BadRequest::Malformed(e.to_string())),
    }
}

fn parse_response(buf: &[u8]) -> Result<Option<ResponseHead>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => Ok(Some(ResponseHead {
            status: resp.code.unwrap_or_default(),
            minor: resp.version.unwrap_or(0),
            reason: resp.reason.unwrap_or_default().to_string(),
            headers: owned_headers(resp.headers),
            len,
        })),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(format!("malformed response head: {e}")),
    }
}

/// `Basic base64(user:pass)` from `Proxy-Authorization`.
pub(crate) fn parse_basic(value: &str) -> Option<(String, String)> {
    use base64::Engine;
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// `host:port` for a CONNECT authority; the port defaults to 80 as in
/// GOST.
fn authority_addr(authority: &str) -> Option<String> {
    if authority.is_empty() || authority.contains(['/', '@', '?', '#']) {
        return None;
    }
    let (host, port) = match gost_core::addr::split_host_port(authority) {
        Ok((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, p),
        Ok(_) => return None,
        // No port: a bare name or a bracketed IPv6 address.
        Err(_) if !authority.contains(':') => (authority, "80"),
        Err(_) => match authority
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
        {
            Some(h) => (h, "80"),
            None => return None,
        },
    };
    port.parse::<u16>().ok()?;
    let host = host.trim_matches(['[', ']']);
    // The url crate accepts exactly the host names and addresses a URL may
    // carry, which keeps spaces and control bytes out of the dial.
    if host.contains(':') {
        host.parse::<std::net::Ipv6Addr>().ok()?;
    } else {
        url::Host::parse(host).ok()?;
    }
    Some(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// The host the request is for (knock matching): the CONNECT authority
/// or the absolute URI's host.
fn target_host(req: &RequestHead) -> Option<&str> {
    let authority = if req.method == "CONNECT" {
        req.target.as_str()
    } else {
        split_absolute(&req.target)?.0
    };
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    Some(match gost_core::addr::split_host_port(authority) {
        Ok((h, _)) => h,
        Err(_) => authority,
    })
}

/// `http://authority/path?query` to (authority, path); the path is kept
/// byte for byte, since a proxy must not normalise it.
fn split_absolute(target: &str) -> Option<(&str, &str)> {
    let scheme_len = "http://".len();
    if target.len() < scheme_len || !target[..scheme_len].eq_ignore_ascii_case("http://") {
        return None;
    }
    let rest = &target[scheme_len..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some((&rest[..end], &rest[end..]))
}

/// A plain request rewritten for the origin.
struct Forward {
    addr: String,
    head: String,
    body: Framing,
    keep_alive: bool,
    /// Sent without `Connection: close`, so the origin may keep it open.
    origin_persistent: bool,
    /// The `Upgrade` value when the client asked for a protocol switch.
    upgrade: Option<String>,
}

/// Header fields that only concern one connection (RFC 9110 7.6.1), plus
/// the proxy's own credentials. Content-Length and Transfer-Encoding stay:
/// the body is passed on in its original framing.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Lower-cased tokens of every `Connection` field.
fn connection_tokens(headers: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut out = Vec::new();
    for (_, v) in headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
    {
        for t in String::from_utf8_lossy(v).split(',') {
            let t = t.trim();
            if !t.is_empty() {
                out.push(t.to_ascii_lowercase());
            }
        }
    }
    out
}

/// Whether a field is dropped when forwarding. Fields named in
/// `Connection` go too, except the framing fields, which a hostile
/// `Connection: content-length` must not strip from a body being passed
/// through.
fn is_hop_by_hop(name: &str, conn_tokens: &[String]) -> bool {
    let lower = name.to_ascii_lowercase();
    HOP_BY_HOP.contains(&lower.as_str())
        || (conn_tokens.contains(&lower)
            && !matches!(
                lower.as_str(),
                "content-length" | "transfer-encoding" | "host"
            ))
}

/// The body framing of a message (RFC 9112 6.3), `None` when the message
/// carries no body fields at all.
pub(crate) fn body_framing(headers: &[(String, Vec<u8>)]) -> Result<Option<Framing>, String> {
    let mut codings: Vec<String> = Vec::new();
    let mut length: Option<u64> = None;
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value);
        if name.eq_ignore_ascii_case("transfer-encoding") {
            codings.extend(
                value
                    .split(',')
                    .map(|c| c.trim().to_ascii_lowercase())
                    .filter(|c| !c.is_empty()),
            );
        } else if name.eq_ignore_ascii_case("content-length") {
            for v in value.split(',') {
                let v = v.trim();
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("invalid Content-Length {value:?}"));
                }
                let n: u64 = v
                    .parse()
                    .map_err(|_| format!("invalid Content-Length {value:?}"))?;
                if length.is_some_and(|l| l != n) {
                    return Err("conflicting Content-Length fields".into());
                }
                length = Some(n);
            }
        }
    }
    if !codings.is_empty() {
        if length.is_some() {
            return Err("both Transfer-Encoding and Content-Length".into());
        }
        return Ok(Some(if codings.last().is_some_and(|c| c == "chunked") {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }));
    }
    Ok(length.map(Framing::Length))
}

/// `reuse`: ask the origin to keep the connection open when the client
/// keeps its own (HTTP/1.1 only; 1.0 persistence is too loosely defined to
/// rely on).
fn prepare_forward(req: &RequestHead, reuse: bool) -> Result<Forward, BadRequest> {
    let invalid = |m: String| BadRequest::Invalid(m);
    // GOST refuses non-proxy requests too; it forwards origin-form requests
    // with a Host, but a request for the proxy's own address would then
    // loop through it, so only absolute URIs are taken here.
    let (authority, path) = split_absolute(&req.target).ok_or_else(|| {
        invalid(format!(
            "{} {}: not an absolute http:// URI",
            gost_core::escape::esc(&req.method),
            gost_core::escape::esc(&req.target)
        ))
    })?;
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let addr = authority_addr(authority)
        .ok_or_else(|| invalid(format!("bad host in {:?}", req.target)))?;
    let body = match body_framing(&req.headers).map_err(invalid)? {
        None => Framing::Length(0),
        Some(Framing::UntilClose) => {
            return Err(invalid(
                "request Transfer-Encoding does not end in chunked".into(),
            ))
        }
        Some(f) => f,
    };
    let tokens = connection_tokens(&req.headers);
    let proxy_conn = req
        .header("proxy-connection")
        .map(|v| v.trim().to_ascii_lowercase());
    let keep_alive = if req.minor == 0 {
        tokens.iter().any(|t| t == "keep-alive") || proxy_conn.as_deref() == Some("keep-alive")
    } else {
        !tokens.iter().any(|t| t == "close") && proxy_conn.as_deref() != Some("close")
    };
    let upgrade = req
        .header("upgrade")
        .filter(|_| req.minor > 0 && tokens.iter().any(|t| t == "upgrade"))
        .map(str::to_string);

    let path = match path {
        "" => "/".to_string(),
        p if p.starts_with('/') => p.to_string(),
        p => format!("/{p}"),
    };
    // The fragment never goes on the wire.
    let path = path.split('#').next().unwrap_or("/");
    let mut head = format!("{} {} HTTP/1.{}\r\n", req.method, path, req.minor);
    head.push_str("Host: ");
    head.push_str(authority);
    head.push_str("\r\n");
    for (name, value) in &req.headers {
        if name.eq_ignore_ascii_case("host") || is_hop_by_hop(name, &tokens) {
            continue;
        }
        push_field(&mut head, name, value);
    }
    let origin_persistent = reuse && keep_alive && req.minor == 1 && upgrade.is_none();
    match &upgrade {
        Some(u) => {
            head.push_str("Connection: Upgrade\r\nUpgrade: ");
            head.push_str(u);
            head.push_str("\r\n\r\n");
        }
        None if origin_persistent => head.push_str("\r\n"),
        None => head.push_str("Connection: close\r\n\r\n"),
    }
    Ok(Forward {
        addr,
        head,
        body,
        keep_alive,
        origin_persistent,
        upgrade,
    })
}

/// httparse has checked that names are tokens and values hold no CR/LF,
/// so fields can be copied verbatim; values are bytes, not always UTF-8.
fn push_field(head: &mut String, name: &str, value: &[u8]) {
    head.push_str(name);
    head.push_str(": ");
    head.push_str(&String::from_utf8_lossy(value));
    head.push_str("\r\n");
}

enum RespState {
    Head,
    Body(Decoder),
    Done,
    Upgraded,
}

/// One request/response exchange in progress.
struct Exchange {
    req_body: Decoder,
    resp: RespState,
    client_keep_alive: bool,
    http10: bool,
    head_request: bool,
    upgrade: Option<String>,
    /// Decided when the final response head is written.
    keep_alive: bool,
    origin_persistent: bool,
    /// Whether the origin lets its connection carry another request.
    origin_keep_alive: bool,
}

impl Exchange {
    /// The head to send the client for a response head from the origin,
    /// and the next state.
    fn on_response_head(&mut self, resp: &ResponseHead) -> Result<Vec<u8>, HandlerError> {
        let tokens = connection_tokens(&resp.headers);
        if resp.status == 101 {
            let asked = self.upgrade.as_deref().unwrap_or_default();
            let got = header_value(&resp.headers, "upgrade").unwrap_or_default();
            if asked.is_empty() || !asked.eq_ignore_ascii_case(got) {
                return Err(bad_upstream(format!(
                    "switched protocol to {got:?} when {asked:?} was requested"
                )));
            }
            let mut head = format!("HTTP/1.1 101 {}\r\n", resp.reason);
            for (name, value) in &resp.headers {
                if !is_hop_by_hop(name, &tokens) {
                    push_field(&mut head, name, value);
                }
            }
            head.push_str(&format!("Connection: Upgrade\r\nUpgrade: {got}\r\n\r\n"));
            self.resp = RespState::Upgraded;
            return Ok(head.into_bytes());
        }
        if (100..200).contains(&resp.status) {
            // Interim responses (100 Continue) go to HTTP/1.1 clients only.
            if self.http10 {
                return Ok(Vec::new());
            }
            let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, resp.reason);
            for (name, value) in &resp.headers {
                if !is_hop_by_hop(name, &tokens) {
                    push_field(&mut head, name, value);
                }
            }
            head.push_str("\r\n");
            return Ok(head.into_bytes());
        }
        let no_body = self.head_request || resp.status == 204 || resp.status == 304;
        let framing = body_framing(&resp.headers).map_err(bad_upstream)?;
        let framing = match framing {
            _ if no_body => Framing::Length(0),
            Some(f) => f,
            None => Framing::UntilClose,
        };
        self.keep_alive =
            self.client_keep_alive && framing != Framing::UntilClose && self.req_body.done();
        self.origin_keep_alive = self.origin_persistent
            && resp.minor == 1
            && framing != Framing::UntilClose
            && !tokens.iter().any(|t| t == "close");
        let chunked = body_framing(&resp.headers) == Ok(Some(Framing::Chunked));
        // The proxy speaks its own version to the client (RFC 9110 6.2):
        // an HTTP/1.0 origin must not make a 1.1 client drop keep-alive.
        let minor = if self.http10 { 0 } else { 1 };
        let mut head = format!("HTTP/1.{minor} {} {}\r\n", resp.status, resp.reason);
        for (name, value) in &resp.headers {
            // With chunked coding any Content-Length is wrong (RFC 9112
            // 6.3); the chunked body is what is passed on.
            let stale_length = chunked && name.eq_ignore_ascii_case("content-length");
            if !is_hop_by_hop(name, &tokens) && !stale_length {
                push_field(&mut head, name, value);
            }
        }
        if !self.keep_alive {
            head.push_str("Connection: close\r\n");
        } else if self.http10 {
            head.push_str("Connection: keep-alive\r\n");
        }
        head.push_str("\r\n");
        self.resp = RespState::Body(Decoder::new(framing));
        Ok(head.into_bytes())
    }
}

/// The status for a target the router could not reach: GOST answers a
/// target its bypass refuses with 403, any other failure with 503.
pub(crate) fn dial_status(e: &gost_chain::router::DialError) -> u16 {
    if e.is_bypass() {
        403
    } else {
        503
    }
}

/// An empty response that closes the connection and says nothing about
/// the proxy; also the forward handler's answer to a sniffed request no
/// node takes.
pub(crate) fn bare_response(status: u16) -> String {
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        reason(status)
    )
}

/// Reason phrases for the statuses the proxy writes itself.
fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(framing: Framing, chunks: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut d = Decoder::new(framing);
        let mut pending: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        for c in chunks {
            pending.extend_from_slice(c);
            let n = d.advance(&pending).unwrap();
            out.extend_from_slice(&pending[..n]);
            pending.drain(..n);
        }
        (out, d.done())
    }

    #[test]
    fn chunked_body_split_anywhere_is_passed_through_to_its_end() {
        let body = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-T: 1\r\n\r\n";
        for split in 0..body.len() {
            let mut with_next = body.to_vec();
            with_next.extend_from_slice(b"GET http://x/ HTTP/1.1\r\n");
            let (a, b) = with_next.split_at(split);
            let (out, done) = run(Framing::Chunked, &[a, b]);
            assert!(done, "split at {split}");
            assert_eq!(out, body, "split at {split}");
        }
    }

    #[test]
    fn length_body_stops_at_its_length() {
        let (out, done) = run(Framing::Length(3), &[b"ab", b"cdef"]);
        assert_eq!((out.as_slice(), done), (&b"abc"[..], true));
    }

    #[test]
    fn bad_chunk_size_is_an_error() {
        let mut d = Decoder::new(Framing::Chunked);
        assert!(d.advance(b"zz\r\n").is_err());
        let mut d = Decoder::new(Framing::Chunked);
        assert!(d.advance(b"3\r\nabcXY").is_err());
    }

    #[test]
    fn framing_rules() {
        let h = |pairs: &[(&str, &str)]| -> Vec<(String, Vec<u8>)> {
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect()
        };
        assert_eq!(body_framing(&h(&[])), Ok(None));
        assert_eq!(
            body_framing(&h(&[("Content-Length", "5"), ("content-length", "5")])),
            Ok(Some(Framing::Length(5)))
        );
        assert!(body_framing(&h(&[("Content-Length", "5"), ("Content-Length", "6")])).is_err());
        assert!(body_framing(&h(&[("Content-Length", "-1")])).is_err());
        assert!(body_framing(&h(&[
            ("Transfer-Encoding", "chunked"),
            ("Content-Length", "5")
        ]))
        .is_err());
        assert_eq!(
            body_framing(&h(&[("Transfer-Encoding", "gzip, chunked")])),
            Ok(Some(Framing::Chunked))
        );
        assert_eq!(
            body_framing(&h(&[("Transfer-Encoding", "gzip")])),
            Ok(Some(Framing::UntilClose))
        );
    }

    #[test]
    fn request_is_rewritten_to_origin_form_without_hop_by_hop_fields() {
        let raw = b"GET http://u:p@example.com:8080/a/../b?q=1#frag HTTP/1.1\r\nHost: other\r\nProxy-Authorization: Basic eA==\r\nProxy-Connection: keep-alive\r\nConnection: X-Secret, keep-alive\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nAccept: */*\r\n\r\n";
        let req = parse_request(raw).unwrap().unwrap();
        let f = prepare_forward(&req, false).unwrap();
        assert_eq!(f.addr, "example.com:8080");
        assert_eq!(
            f.head,
            "GET /a/../b?q=1 HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        assert!(f.keep_alive);
    }

    #[test]
    fn targets() {
        assert_eq!(
            authority_addr("example.com:443").as_deref(),
            Some("example.com:443")
        );
        assert_eq!(authority_addr("[::1]:8080").as_deref(), Some("[::1]:8080"));
        assert_eq!(authority_addr("[::1]").as_deref(), Some("[::1]:80"));
        assert_eq!(
            authority_addr("example.com").as_deref(),
            Some("example.com:80")
        );
        assert_eq!(authority_addr("a b:80"), None);
        assert_eq!(authority_addr("host:99999"), None);
        assert_eq!(authority_addr("host:"), None);
        assert_eq!(split_absolute("HTTP://h?x"), Some(("h", "?x")));
        assert_eq!(split_absolute("https://h/"), None);
    }

    #[test]
    fn basic_credentials() {
        assert_eq!(
            parse_basic("Basic dTpwOng="),
            Some(("u".into(), "p:x".into()))
        );
        assert_eq!(parse_basic("Bearer dTpw"), None);
        assert_eq!(parse_basic("Basic !!"), None);
    }

    #[test]
    fn options_from_metadata() {
        let md: Metadata = serde_json::from_str(
            r#"{"readTimeout":"2s","probeResist":"code:404","knock":"a.com, b.com","header":{"X-A":"1"}}"#,
        )
        .unwrap();
        let o = HttpOptions::from_metadata(&md).unwrap();
        assert_eq!(o.read_timeout, Duration::from_secs(2));
        assert_eq!(o.probe_resist, Some(ProbeResist::Code(404)));
        assert_eq!(o.knock, vec!["a.com", "b.com"]);
        assert_eq!(o.header, vec![("X-A".to_string(), "1".to_string())]);
        let md: Metadata = serde_json::from_str(r#"{"probeResist":"web:x.com"}"#).unwrap();
        assert!(HttpOptions::from_metadata(&md).is_err());
        let md: Metadata = serde_json::from_str(r#"{"header":{"X":"a\r\nB: c"}}"#).unwrap();
        assert!(HttpOptions::from_metadata(&md).is_err());
    }
}
