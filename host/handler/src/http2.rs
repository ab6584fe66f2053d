//! HTTP/2 proxy handler `http2` (GOST's handler/http2), behind the
//! `http2` listener: each HTTP/2 request is one proxied connection. A
//! `CONNECT` is answered 200 and its stream relayed to the target; a plain
//! request (`:scheme` http, `:authority` the origin) is passed on to the
//! origin as HTTP/1.1 with `Connection: close` and its response passed
//! back. Basic proxy authentication, GOST's probe resistance and `knock`,
//! the `header` fields and the bypass (403) work as in the `http` handler;
//! a failed dial is 503, as GOST answers.
//!
//! Bounds: a response head from the origin is at most [`MAX_HEAD`] bytes
//! and must come within [`HEAD_TIMEOUT`]; bodies pass through in pieces
//! of at most [`READ_CHUNK`] bytes under HTTP/2 flow control.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::http::{dial_status, parse_basic, parse_header_map, parse_probe_resist, ProbeResist};
use super::{ConnContext, HandleFuture, Handler, HandlerError};
use gost_chain::relay::{self, RelayOptions};
use gost_chain::router::Router;
use gost_core::auth::Auther;
use gost_core::escape::esc;
use gost_core::metadata::{Metadata, MetadataError};
use gost_core::stream::Stream;
use gost_proto::http1::{Decoder, Framing};
use gost_transport::http2::Request;
use gost_transport::listener::Conn;
use std::sync::Arc;

/// The largest response head taken from an origin.
const MAX_HEAD: usize = 64 * 1024;
/// How long an origin may take to start its response.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How much is read at once while passing a body on.
const READ_CHUNK: usize = 16 * 1024;
const DEFAULT_REALM: &str = "gost";

/// Request and response fields that belong to one HTTP/1.1 connection or
/// to the proxy, never passed on.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

#[derive(Debug, Clone, Default)]
pub struct Http2Options {
    /// `header` (or `http.header`): fields on every answer once the
    /// client has authenticated.
    pub header: Vec<(String, String)>,
    /// `authBasicRealm`.
    pub realm: String,
    /// `probeResist` (or `probe_resist`).
    pub probe_resist: Option<ProbeResist>,
    /// `knock`: hosts for which a failed authentication gets the real 407.
    pub knock: Vec<String>,
    /// `readTimeout` (or `read.timeout`): a tunnel with no traffic for
    /// this long is closed (GOST's idle timeout of its pipe).
    pub idle_timeout: Option<Duration>,
}

impl Http2Options {
    pub fn from_metadata(md: &Metadata) -> Result<Self, MetadataError> {
        let string = |keys: &[&str]| -> Result<Option<String>, MetadataError> {
            for k in keys {
                if let Some(v) = md.get_string(k)?.filter(|v| !v.is_empty()) {
                    return Ok(Some(v));
                }
            }
            Ok(None)
        };
        let header = match md.get("http.header").or_else(|| md.get("header")) {
            Some(v) if !v.is_null() => parse_header_map(v)?,
            _ => Vec::new(),
        };
        let probe_resist = match string(&["probeResist", "probe_resist"])? {
            Some(v) => Some(parse_probe_resist(&v)?),
            None => None,
        };
        let idle_timeout = match md.get_duration("readTimeout")? {
            Some(t) => Some(t),
            None => md.get_duration("read.timeout")?,
        }
        .filter(|t| !t.is_zero());
        Ok(Http2Options {
            header,
            realm: string(&["authBasicRealm"])?.unwrap_or_else(|| DEFAULT_REALM.into()),
            probe_resist,
            knock: string(&["knock"])?
                .map(|k| {
                    k.split(',')
                        .map(|h| h.trim().to_string())
                        .filter(|h| !h.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            idle_timeout,
        })
    }
}

pub struct Http2Handler {
    router: Router,
    auther: Option<Arc<dyn Auther>>,
    opts: Http2Options,
}

/// The target of a request: `host:port` of its authority, the port by
/// its scheme when it names none.
fn target(req: &Request) -> Option<String> {
    let authority = req.head.uri.authority()?;
    if authority.port_u16().is_some() {
        return Some(authority.as_str().to_string());
    }
    let port = match req.head.uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    Some(format!("{}:{port}", authority.host()))
}

fn response(status: u16) -> Response<()> {
    let mut r = Response::new(());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    r
}

impl Http2Handler {
    pub fn new(router: Router, auther: Option<Arc<dyn Auther>>, opts: Http2Options) -> Self {
        Http2Handler {
            router,
            auther,
            opts,
        }
    }

    /// A response with the `header` fields.
    fn own(&self, status: u16) -> Response<()> {
        let mut r = response(status);
        for (k, v) in &self.opts.header {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                r.headers_mut().insert(k, v);
            }
        }
        r
    }

    async fn serve(&self, mut stream: Stream, ctx: ConnContext) -> Result<(), HandlerError> {
        let Some(req) = stream.take_attached::<Request>() else {
            return Err(HandlerError::Protocol(
                "the http2 handler serves the http2 listener only (use -L http2://)".into(),
            ));
        };
        let req = *req;
        let method = req.head.method.clone();
        tracing::debug!(service = %ctx.service, client = %ctx.peer, method = %esc(&method), uri = %esc(&req.head.uri), "http2 request");
        let Some(addr) = target(&req) else {
            let what = format!("{} {}: no authority", esc(&method), esc(&req.head.uri));
            let _ = req.respond(response(400), true);
            return Err(HandlerError::Protocol(what));
        };
        if let Some(auther) = &self.auther {
            let (user, pass) = req
                .head
                .headers
                .get("proxy-authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_basic)
                .unwrap_or_default();
            let who = gost_core::auth::AuthRequest::new(&user, &pass).from(&ctx.service, ctx.peer);
            match auther.authenticate(who).await {
                Some(id) => {
                    tracing::debug!(service = %ctx.service, client = %ctx.peer, user = %esc(&id), "authenticated")
                }
                None => return self.auth_failed(req, &ctx).await,
            }
        }
        let upstream = match self.router.dial_tcp(&addr, ctx.peer.ip()).await {
            Ok(u) => u,
            Err(e) => {
                let _ = req.respond(self.own(dial_status(&e)), true);
                return Err(e.into());
            }
        };
        if method == http::Method::CONNECT {
            let Some(client) = req.respond(self.own(200), false)? else {
                return Ok(());
            };
            let opts = RelayOptions {
                idle_timeout: self.opts.idle_timeout,
            };
            relay::relay(client, upstream, &ctx, &opts).await?;
            return Ok(());
        }
        let origin = upstream.into_stream().await.map_err(|e| e.into_io())?;
        self.forward(req, origin, &ctx).await
    }

    /// A 407 with the realm, or GOST's probe resistance unless the
    /// request names a knock host.
    async fn auth_failed(&self, req: Request, ctx: &ConnContext) -> Result<(), HandlerError> {
        let failed = || HandlerError::Protocol("proxy authentication failed".into());
        let host = req.head.uri.host().unwrap_or_default().to_string();
        let knocked = self
            .opts
            .knock
            .iter()
            .any(|k| k.eq_ignore_ascii_case(host.trim_matches(['[', ']'])));
        match self.opts.probe_resist.as_ref().filter(|_| !knocked) {
            None => {
                let mut r = response(407);
                let realm = format!("Basic realm=\"{}\"", self.opts.realm);
                if let Ok(v) = HeaderValue::from_str(&realm) {
                    r.headers_mut().insert("proxy-authenticate", v);
                }
                let _ = req.respond(r, true);
            }
            Some(ProbeResist::Code(code)) => {
                let _ = req.respond(response(*code), true);
            }
            Some(ProbeResist::File(path)) => match tokio::fs::read(path).await {
                Ok(body) => {
                    let mut r = response(200);
                    r.headers_mut()
                        .insert("content-type", HeaderValue::from_static("text/html"));
                    r.headers_mut()
                        .insert("content-length", HeaderValue::from(body.len()));
                    if let Ok(Some(mut s)) = req.respond(r, false) {
                        let _ = s.write_all(&body).await;
                        let _ = s.shutdown().await;
                    }
                }
                Err(e) => {
                    tracing::warn!(service = %ctx.service, path = %path.display(), error = %e, "probeResist file");
                    let _ = req.respond(response(503), true);
                }
            },
            Some(ProbeResist::Host(addr)) => {
                // GOST passes the request to the decoy directly, never
                // through a chain: it stands in for this port.
                match self.router.dial_tcp(addr, ctx.peer.ip()).await {
                    Ok(up) => {
                        let origin = up.into_stream().await.map_err(|e| e.into_io())?;
                        self.forward(req, origin, ctx).await?;
                    }
                    Err(e) => {
                        let _ = req.respond(response(503), true);
                        return Err(e.into());
                    }
                }
            }
        }
        Err(failed())
    }

    /// A plain request: passed on as HTTP/1.1 (body included, chunked
    /// when the client gave no length), then the response passed back.
    async fn forward(
        &self,
        mut req: Request,
        origin: Stream,
        ctx: &ConnContext,
    ) -> Result<(), HandlerError> {
        let mut origin = origin;
        let path = req
            .head
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let path = if req.head.method == http::Method::CONNECT {
            req.head.uri.authority().map(|a| a.as_str()).unwrap_or("/")
        } else {
            path
        };
        let host = req
            .head
            .uri
            .authority()
            .map(|a| a.as_str())
            .unwrap_or_default();
        let mut head = format!("{} {path} HTTP/1.1\r\nHost: {host}\r\n", req.head.method);
        for (k, v) in &req.head.headers {
            let name = k.as_str();
            if HOP_BY_HOP.contains(&name) || name == "gost-target" || name == "x-gost-target" {
                continue;
            }
            head.push_str(name);
            head.push_str(": ");
            head.push_str(&String::from_utf8_lossy(v.as_bytes()));
            head.push_str("\r\n");
        }
        let chunked = !req.no_body && !req.head.headers.contains_key("content-length");
        if chunked {
            head.push_str("Transfer-Encoding: chunked\r\n");
        }
        head.push_str("Connection: close\r\n\r\n");
        let head_request = req.head.method == http::Method::HEAD;
        let sent = async {
            origin.write_all(head.as_bytes()).await?;
            if !req.no_body {
                let mut buf = vec![0u8; READ_CHUNK];
                loop {
                    let n = req.body().read(&mut buf).await?;
                    if chunked {
                        origin.write_all(format!("{n:x}\r\n").as_bytes()).await?;
                    }
                    if n == 0 {
                        if chunked {
                            origin.write_all(b"\r\n").await?;
                        }
                        break;
                    }
                    origin.write_all(&buf[..n]).await?;
                    if chunked {
                        origin.write_all(b"\r\n").await?;
                    }
                }
            }
            origin.flush().await
        };
        if let Err(e) = sent.await {
            let _ = req.respond(self.own(503), true);
            return Err(e.into());
        }
        let mut buf = Vec::with_capacity(4096);
        let (resp, framing) =
            match tokio::time::timeout(HEAD_TIMEOUT, read_response(&mut origin, &mut buf)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    let _ = req.respond(self.own(503), true);
                    return Err(e);
                }
                Err(_) => {
                    let _ = req.respond(self.own(503), true);
                    return Err(HandlerError::Protocol(format!(
                        "upstream: no response within {HEAD_TIMEOUT:?}"
                    )));
                }
            };
        let framing = if head_request { None } else { framing };
        let Some(framing) = framing else {
            req.respond(resp, true)?;
            return Ok(());
        };
        let Some(mut client) = req.respond(resp, false)? else {
            return Ok(());
        };
        let mut dec = Decoder::new(framing);
        let mut out = Vec::new();
        loop {
            if !buf.is_empty() {
                let used = dec
                    .decode(&buf, &mut out)
                    .map_err(|e| HandlerError::Protocol(format!("upstream: response body: {e}")))?;
                buf.drain(..used);
                if !out.is_empty() {
                    client.write_all(&out).await?;
                    out.clear();
                }
            }
            if dec.done() {
                break;
            }
            buf.reserve(READ_CHUNK);
            if origin.read_buf(&mut buf).await? == 0 {
                if dec.ends_at_eof() {
                    break;
                }
                return Err(HandlerError::Protocol(format!(
                    "upstream: closed in the middle of a response body to {}",
                    esc(ctx.peer)
                )));
            }
        }
        client.shutdown().await?;
        Ok(())
    }
}

/// Reads the origin's final response head (1xx heads skipped): the
/// HTTP/2 response and the body's framing, none when it has no body.
async fn read_response(
    origin: &mut Stream,
    buf: &mut Vec<u8>,
) -> Result<(Response<()>, Option<Framing>), HandlerError> {
    let bad = |m: String| HandlerError::Protocol(format!("upstream: {m}"));
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 100];
        let mut parsed = httparse::Response::new(&mut headers);
        match parsed.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                let code = parsed.code.unwrap_or(502);
                if (100..200).contains(&code) {
                    if code == 101 {
                        return Err(bad("switched protocols, which HTTP/2 cannot".into()));
                    }
                    buf.drain(..len);
                    continue;
                }
                let mut resp = response(code);
                let mut framing = Framing::UntilClose;
                let mut chunked = false;
                for h in parsed.headers.iter() {
                    let name = h.name.to_ascii_lowercase();
                    if name == "transfer-encoding" {
                        chunked = String::from_utf8_lossy(h.value)
                            .to_ascii_lowercase()
                            .contains("chunked");
                    }
                    if name == "content-length" {
                        if let Some(n) = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse::<u64>().ok())
                        {
                            framing = Framing::Length(n);
                        }
                    }
                    if HOP_BY_HOP.contains(&name.as_str()) {
                        continue;
                    }
                    if let (Ok(k), Ok(v)) = (
                        HeaderName::from_bytes(name.as_bytes()),
                        HeaderValue::from_bytes(h.value),
                    ) {
                        resp.headers_mut().append(k, v);
                    }
                }
                if chunked {
                    framing = Framing::Chunked;
                }
                buf.drain(..len);
                let no_body = code == 204 || code == 304 || framing == Framing::Length(0);
                return Ok((resp, (!no_body).then_some(framing)));
            }
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
                return Err(bad(format!("response head longer than {MAX_HEAD} bytes")))
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(bad(format!("response head: {e}"))),
        }
        buf.reserve(4096);
        if origin.read_buf(buf).await? == 0 {
            return Err(bad("closed before its response".into()));
        }
    }
}

impl Handler for Http2Handler {
    fn handle(&self, conn: Conn, ctx: ConnContext) -> HandleFuture<'_> {
        super::tcp_only("http2", conn, |s| self.serve(s, ctx))
    }
}
