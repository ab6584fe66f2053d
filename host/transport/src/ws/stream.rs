//! WebSocket transport (`ws`, and `wss` when the caller hands in a TLS stream), wire-compatible
//! with GOST v3 (go-gost/x `listener/ws`, `dialer/ws`, `internal/util/ws`, gorilla/websocket 1.5.3).
//!
//! The HTTP upgrade is written and parsed here rather than by tungstenite so that requests,
//! answers and refusals carry the same bytes as Go's `net/http` + gorilla (probes see a Go
//! server); tungstenite only does the framing.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{interval_at, timeout, Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::error::{Error as TError, ProtocolError};
use tokio_tungstenite::tungstenite::handshake::{client::generate_key, derive_accept_key};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data as OpData, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::{Message, Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use gost_core::metadata::{Metadata, MetadataError};

/// Go's `http.Server` reads at most `DefaultMaxHeaderBytes + 4096` bytes of request head.
const MAX_HEAD: usize = (1 << 20) + 4096;
/// GOST relays through 64 KiB buffers, so no GOST peer ever sees bigger messages from us.
const MAX_OUT_MESSAGE: usize = 64 * 1024;

/// Errors from option parsing and from the upgrade handshake.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error("ws: invalid option {key}: {value}")]
    InvalidOption { key: &'static str, value: String },
    #[error("ws: handshake timed out")]
    Timeout,
    #[error("ws: {0}")]
    Io(#[from] io::Error),
    /// The request path (decoded, escaped, truncated) did not match; a 404 was answered.
    #[error("ws: no handler for path {0}")]
    NotFound(String),
    /// The request was refused with `status`; the answer was Go's for that case.
    #[error("ws: request refused with {status}: {reason}")]
    Rejected { status: u16, reason: &'static str },
    /// The server's answer to our upgrade request was not a valid 101.
    #[error("ws: bad handshake: {0}")]
    BadHandshake(String),
}

/// Listener and dialer options, named and defaulted as GOST's metadata.
#[derive(Debug, Clone)]
pub struct WsOptions {
    /// `ws.path`/`path`, default `/ws`; a trailing `/` matches the subtree, as Go's ServeMux.
    pub path: String,
    /// Dialer `ws.host`/`host`: Host header instead of the node address.
    pub host: Option<String>,
    /// `ws.header`/`header`: dialer request headers, or listener extra 101 response headers.
    pub header: Vec<(String, String)>,
    /// `ws.handshakeTimeout`: dialer whole handshake; listener writing the answer.
    pub handshake_timeout: Duration,
    /// `ws.readHeaderTimeout`: listener reading the request head.
    pub read_header_timeout: Duration,
    /// `ws.readBufferSize`: tungstenite's read buffer, allocated up front and the cap on each
    /// read call. Unset gives 16 KiB, not gorilla's 4096 (a bufio size that large reads
    /// bypass): on loopback 4096 cost ~25% of bulk throughput, 16 KiB ~17 KiB per idle stream.
    pub read_buffer_size: usize,
    /// `ws.writeBufferSize`: dialer frame payload size; gorilla splits client messages there.
    pub write_buffer_size: usize,
    /// Dialer `ws.keepalive` + `ttl`/`keepalive.interval`: ping period (GOST default 15 s).
    pub keepalive: Option<Duration>,
    /// `ws.maxMessageSize` (ours; gorilla has no limit): largest frame or message accepted.
    pub max_message_size: usize,
}

impl Default for WsOptions {
    /// GOST leaves both timeouts unlimited; 30 s bounds slow or silent peers here.
    fn default() -> Self {
        Self {
            path: "/ws".into(),
            host: None,
            header: Vec::new(),
            handshake_timeout: Duration::from_secs(30),
            read_header_timeout: Duration::from_secs(30),
            read_buffer_size: 16 * 1024,
            write_buffer_size: 4096,
            keepalive: None,
            max_message_size: 4 << 20,
        }
    }
}

impl WsOptions {
    /// GOST's listener and dialer metadata (`ws.`-prefixed or bare keys,
    /// the prefixed one first). Zero or empty values keep the default.
    /// `header` is a map of names to values (names canonicalised as Go's
    /// `Header.Add`). `ws.enableCompression` is not read:
    /// permessage-deflate is never negotiated, which RFC 7692 allows and
    /// gorilla peers accept. The listener's `keepalive` (TCP keep-alive in
    /// GOST) only matters to `connect`, which is where it means pings, as
    /// in GOST.
    pub fn from_metadata(md: &Metadata) -> Result<Self, MetadataError> {
        let key = |keys: &[&'static str]| keys.iter().copied().find(|k| md.contains_key(k));
        let dur = |keys: &[&'static str]| -> Result<Option<Duration>, MetadataError> {
            match key(keys) {
                Some(k) => Ok(md.get_duration(k)?.filter(|d| !d.is_zero())),
                None => Ok(None),
            }
        };
        let size = |keys: &[&'static str]| -> Result<Option<usize>, MetadataError> {
            match key(keys) {
                Some(k) => Ok(md
                    .get_int(k)?
                    .filter(|n| *n > 0)
                    .map(|n| usize::try_from(n).unwrap_or(usize::MAX))),
                None => Ok(None),
            }
        };
        let mut o = Self::default();
        if let Some(k) = key(&["ws.path", "path"]) {
            if let Some(p) = md.get_string(k)?.filter(|p| !p.is_empty()) {
                o.path = p;
            }
        }
        if let Some(k) = key(&["ws.host", "host"]) {
            o.host = md.get_string(k)?.filter(|h| !h.is_empty());
        }
        o.handshake_timeout =
            dur(&["ws.handshakeTimeout", "handshakeTimeout"])?.unwrap_or(o.handshake_timeout);
        o.read_header_timeout =
            dur(&["ws.readHeaderTimeout", "readHeaderTimeout"])?.unwrap_or(o.read_header_timeout);
        o.read_buffer_size =
            size(&["ws.readBufferSize", "readBufferSize"])?.unwrap_or(o.read_buffer_size);
        o.write_buffer_size =
            size(&["ws.writeBufferSize", "writeBufferSize"])?.unwrap_or(o.write_buffer_size);
        o.max_message_size = size(&["ws.maxMessageSize"])?.unwrap_or(o.max_message_size);
        if let Some(k) = key(&["ws.header", "header"]) {
            let bad = |v: &serde_json::Value| MetadataError {
                key: k.into(),
                value: v.to_string(),
                expected: "a map of header names (HTTP tokens) to values",
            };
            match md.get(k) {
                Some(serde_json::Value::Object(map)) => {
                    for (name, v) in map {
                        let name = canonical_header(name).ok_or_else(|| bad(v))?;
                        let value = match v {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        o.header.push((name, value));
                    }
                }
                Some(serde_json::Value::Null) | None => {}
                Some(v) => return Err(bad(v)),
            }
        }
        if let Some(k) = key(&["ws.keepalive", "keepalive"]) {
            if md.get_bool(k)?.unwrap_or(false) {
                o.keepalive =
                    Some(dur(&["ttl", "keepalive.interval"])?.unwrap_or(Duration::from_secs(15)));
            }
        }
        Ok(o)
    }
}

/// Server side: answers one upgrade request on `io` (plain TCP for `ws`, TLS for `wss`).
pub async fn accept<S>(mut io: S, opts: &WsOptions) -> Result<WsStream<S>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut buf = Vec::new();
    let head = timeout(opts.read_header_timeout, read_head(&mut io, &mut buf))
        .await
        .map_err(|_| WsError::Timeout)?;
    let (reply, verdict) = match head {
        Ok(end) => check_request(&buf[..end], opts),
        Err(e @ WsError::Rejected { status, .. }) => (conn_error(status), Err(e)),
        Err(e) => return Err(e),
    };
    let send = async { io.write_all(&reply).await.and(io.flush().await) };
    let sent = timeout(opts.handshake_timeout, send).await;
    let end = verdict?;
    sent.map_err(|_| WsError::Timeout)??;
    Ok(WsStream::new(io, buf.split_off(end), Role::Server, opts).await)
}

/// Client side: upgrades `io` with Host `opts.host`, else the `Host` header, else `host`
/// (GOST passes the node address, port included).
pub async fn connect<S>(mut io: S, host: &str, opts: &WsOptions) -> Result<WsStream<S>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let rest = timeout(
        opts.handshake_timeout,
        client_handshake(&mut io, host, opts),
    )
    .await
    .map_err(|_| WsError::Timeout)??;
    Ok(WsStream::new(io, rest, Role::Client, opts).await)
}

async fn client_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    host: &str,
    opts: &WsOptions,
) -> Result<Vec<u8>, WsError> {
    let key = generate_key();
    io.write_all(build_request(host, &key, opts)?.as_bytes())
        .await?;
    io.flush().await?;
    let mut buf = Vec::new();
    let end = read_head(io, &mut buf).await.map_err(|e| match e {
        WsError::Rejected { reason, .. } => WsError::BadHandshake(reason.into()),
        e => e,
    })?;
    let mut headers = vec![httparse::EMPTY_HEADER; line_count(&buf[..end])];
    let mut resp = httparse::Response::new(&mut headers);
    if !matches!(resp.parse(&buf[..end]), Ok(httparse::Status::Complete(_))) {
        return Err(WsError::BadHandshake("malformed HTTP response".into()));
    }
    let hs = &*resp.headers;
    if resp.code != Some(101) {
        let why = format!(
            "{} {}",
            resp.code.unwrap_or(0),
            resp.reason.unwrap_or_default()
        );
        return Err(WsError::BadHandshake(esc(why.as_bytes())));
    }
    if !has_token(hs, "Upgrade", "websocket")
        || !has_token(hs, "Connection", "upgrade")
        || header(hs, "Sec-WebSocket-Accept") != Some(derive_accept_key(key.as_bytes()).as_bytes())
    {
        return Err(WsError::BadHandshake(
            "missing or wrong upgrade headers".into(),
        ));
    }
    if header(hs, "Sec-WebSocket-Extensions").is_some() {
        return Err(WsError::BadHandshake(
            "extension accepted that was not offered".into(),
        ));
    }
    Ok(buf.split_off(end))
}

/// Go's `Request.Write` for gorilla's dialer: Host, User-Agent, then the rest sorted by name.
fn build_request(host: &str, key: &str, opts: &WsOptions) -> Result<String, WsError> {
    let mut host = opts.host.as_deref().unwrap_or(host);
    let mut ua = "Go-http-client/1.1";
    let mut hdrs = vec![
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", "13"),
        ("Upgrade", "websocket"),
    ];
    for (k, v) in &opts.header {
        match k.as_str() {
            "Host" => host = v,
            "User-Agent" => ua = v,
            "Upgrade"
            | "Connection"
            | "Sec-Websocket-Key"
            | "Sec-Websocket-Version"
            | "Sec-Websocket-Extensions" => {
                return Err(WsError::InvalidOption {
                    key: "header",
                    value: format!("duplicate header not allowed: {k}"),
                });
            }
            "Sec-Websocket-Protocol" => hdrs.push(("Sec-WebSocket-Protocol", v)),
            _ => hdrs.push((k, v)),
        }
    }
    if host.is_empty() || host.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(WsError::InvalidOption {
            key: "host",
            value: esc(host.as_bytes()),
        });
    }
    hdrs.sort_by(|a, b| a.0.cmp(b.0));
    let clean = |v: &str| {
        v.replace(['\r', '\n'], " ")
            .trim_matches([' ', '\t'])
            .to_owned()
    };
    let mut r = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\n",
        escape_path(&opts.path)
    );
    if !clean(ua).is_empty() {
        r += &format!("User-Agent: {}\r\n", clean(ua));
    }
    for (k, v) in hdrs {
        r += &format!("{k}: {}\r\n", clean(v));
    }
    r += "\r\n";
    Ok(r)
}

/// Reads up to the end of an HTTP head; returns its length (what follows is already frames).
async fn read_head<S: AsyncRead + Unpin>(io: &mut S, buf: &mut Vec<u8>) -> Result<usize, WsError> {
    loop {
        let scanned = buf.len();
        if buf.len() >= MAX_HEAD {
            return Err(WsError::Rejected {
                status: 431,
                reason: "request header too large",
            });
        }
        buf.reserve(4096);
        if io.read_buf(buf).await? == 0 {
            return Err(
                io::Error::new(io::ErrorKind::UnexpectedEof, "ws: eof in HTTP head").into(),
            );
        }
        // Rescan only the tail so trickled bytes cost linear time; Go accepts bare-LF heads too.
        let from = scanned.saturating_sub(3);
        let end = (from..buf.len()).find_map(|i| match &buf[i..] {
            [b'\n', b'\n', ..] => Some(i + 2),
            [b'\n', b'\r', b'\n', ..] => Some(i + 3),
            _ => None,
        });
        if let Some(end) = end {
            return Ok(end);
        }
    }
}

/// ServeMux routing, then gorilla's `Upgrade` checks in its order; returns the answer to send.
fn check_request(head: &[u8], opts: &WsOptions) -> (Vec<u8>, Result<usize, WsError>) {
    let malformed = || {
        (
            conn_error(400),
            Err(WsError::Rejected {
                status: 400,
                reason: "malformed HTTP request",
            }),
        )
    };
    let mut headers = vec![httparse::EMPTY_HEADER; line_count(head)];
    let mut req = httparse::Request::new(&mut headers);
    let (Ok(httparse::Status::Complete(_)), Some(target)) = (req.parse(head), req.path) else {
        return malformed();
    };
    let Some(path) = request_path(target) else {
        return malformed();
    };
    let want = escape_path(&opts.path);
    let want = percent_decode(&want).unwrap_or_default();
    let routed = if want.ends_with(b"/") {
        path.starts_with(&want)
    } else {
        path == want
    };
    if !routed {
        return (go_error(404, false), Err(WsError::NotFound(esc(&path))));
    }
    let hs = &*req.headers;
    let refuse = |status, reason| {
        (
            go_error(status, true),
            Err(WsError::Rejected { status, reason }),
        )
    };
    if !has_token(hs, "Connection", "upgrade") {
        return refuse(400, "'upgrade' token not found in 'Connection' header");
    }
    if !has_token(hs, "Upgrade", "websocket") {
        return refuse(400, "'websocket' token not found in 'Upgrade' header");
    }
    if req.method != Some("GET") {
        return refuse(405, "request method is not GET");
    }
    if !has_token(hs, "Sec-Websocket-Version", "13") {
        return refuse(
            400,
            "unsupported version: 13 not found in 'Sec-Websocket-Version' header",
        );
    }
    // Go's base64 decoder (non-strict) accepts exactly this shape for a 16-byte value.
    let key = header(hs, "Sec-Websocket-Key").unwrap_or_default();
    let b64 = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    if !(key.len() == 24 && key.ends_with(b"==") && key[..22].iter().all(b64)) {
        return refuse(
            400,
            "'Sec-WebSocket-Key' header must be Base64 encoded value of 16-byte in length",
        );
    }
    let mut r = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n", derive_accept_key(key));
    for (k, v) in opts
        .header
        .iter()
        .filter(|(k, _)| k != "Sec-Websocket-Protocol")
    {
        let v: String = v
            .chars()
            .map(|c| if c <= '\x1f' { ' ' } else { c })
            .collect();
        r += &format!("{k}: {v}\r\n");
    }
    r += "\r\n";
    (r.into_bytes(), Ok(head.len()))
}

/// `net/http`'s answer to unparseable or oversized heads (it then closes).
fn conn_error(status: u16) -> Vec<u8> {
    let text = if status == 431 {
        "431 Request Header Fields Too Large"
    } else {
        "400 Bad Request"
    };
    format!("HTTP/1.1 {text}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n{text}").into_bytes()
}

/// `http.Error`/`http.NotFound` as written by Go's server; gorilla adds Sec-Websocket-Version.
fn go_error(status: u16, gorilla: bool) -> Vec<u8> {
    let (text, body) = match status {
        404 => ("Not Found", "404 page not found\n"),
        405 => ("Method Not Allowed", "Method Not Allowed\n"),
        _ => ("Bad Request", "Bad Request\n"),
    };
    let version = if gorilla {
        "Sec-Websocket-Version: 13\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 {status} {text}\r\nContent-Type: text/plain; charset=utf-8\r\n{version}X-Content-Type-Options: nosniff\r\nDate: {}\r\nContent-Length: {}\r\n\r\n{body}",
        http_date(SystemTime::now()),
        body.len()
    )
    .into_bytes()
}

/// IMF-fixdate, as Go's server stamps every answer.
fn http_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    let z = days + 719_468; // days-to-civil, H. Hinnant
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let (d, m) = (
        doy - (153 * mp + 2) / 5 + 1,
        if mp < 10 { mp + 3 } else { mp - 9 },
    );
    let y = yoe + z.div_euclid(146_097) * 400 + i64::from(m <= 2);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (wd, mon) = (WD[days.rem_euclid(7) as usize], MON[(m - 1) as usize]);
    format!(
        "{wd}, {d:02} {mon} {y} {:02}:{:02}:{:02} GMT",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Decoded path of an origin- or absolute-form target, as Go's `URL.Path`.
fn request_path(target: &str) -> Option<Vec<u8>> {
    let target = match target.split_once("://") {
        Some((_, rest)) if !target.starts_with('/') => rest.find('/').map_or("/", |i| &rest[i..]),
        _ => target,
    };
    percent_decode(target.split('?').next()?)
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let (mut out, b) = (Vec::with_capacity(s.len()), s.as_bytes());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Go's `url.EscapedPath` (encodePath mode) with the leading `/` its URL printer adds.
fn escape_path(p: &str) -> String {
    let mut out = String::from(if p.starts_with('/') { "" } else { "/" });
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~$&+,/:;=@".contains(&b) {
            out.push(b as char);
        } else {
            out += &format!("%{b:02X}");
        }
    }
    out
}

/// Go's `CanonicalMIMEHeaderKey`; `None` for names that are not HTTP tokens.
fn canonical_header(name: &str) -> Option<String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return None;
    }
    let mut up = true;
    Some(
        name.chars()
            .map(|c| {
                let r = if up {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                };
                up = c == '-';
                r
            })
            .collect(),
    )
}

fn line_count(head: &[u8]) -> usize {
    head.iter().filter(|&&b| b == b'\n').count()
}

fn header<'a>(hs: &[httparse::Header<'a>], name: &str) -> Option<&'a [u8]> {
    hs.iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.trim_ascii())
}

/// gorilla's `tokenListContainsValue`: comma lists over all lines of that header.
fn has_token(hs: &[httparse::Header], name: &str, token: &str) -> bool {
    hs.iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Peer-controlled text for error messages: escaped and cut short.
fn esc(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(128)])
        .escape_debug()
        .to_string();
    if b.len() > 128 {
        s + "…"
    } else {
        s
    }
}

fn io_err(e: TError) -> io::Error {
    match e {
        TError::Io(e) => e,
        TError::ConnectionClosed
        | TError::AlreadyClosed
        | TError::Protocol(ProtocolError::SendAfterClosing) => {
            io::Error::new(io::ErrorKind::BrokenPipe, "ws: connection closed")
        }
        e => io::Error::new(io::ErrorKind::InvalidData, format!("ws: {e}")),
    }
}

/// Dialer pings, as GOST's `keepalive` goroutine; only exists when the option is on.
/// GOST fails reads 2 x ttl after the last pong. Pings here are sent from `poll_read`, so the
/// deadline counts ticks instead: a read that would block fails once two ticks have passed
/// without any frame (data counts too, so a pong queued behind bulk data cannot fail a busy
/// connection), which is at least one full period after a ping went out.
#[derive(Debug)]
struct Keepalive {
    ticker: Interval,
    /// Ticks since the last frame from the peer.
    strikes: u8,
}

/// The transport under the WebSocket, hiding its end of stream from
/// tungstenite: a GOST peer half-closes without a close frame, and a
/// tungstenite that saw the end would refuse every later write, so the
/// answer to a half-closed request would be lost. The end is kept here
/// and [`WsStream`] reads it from here.
#[derive(Debug)]
struct HalfClose<S> {
    io: S,
    eof: bool,
}

impl<S: AsyncRead + Unpin> AsyncRead for HalfClose<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.eof {
            return Poll::Pending;
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        if buf.filled().len() == before && buf.remaining() > 0 {
            // Not woken again: the WsStream reading looks at `eof` right
            // after this poll.
            this.eof = true;
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HalfClose<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Byte stream over a WebSocket: each write is one binary message (GOST's `Write`, capped at
/// 64 KiB), reads run across message boundaries (GOST's `Read` over `NextReader`). Writes go
/// out at once when the transport takes them; what it refuses waits, as in any buffered
/// `AsyncWrite`, for the next write, flush, shutdown or read.
#[derive(Debug)]
pub struct WsStream<S> {
    ws: WebSocketStream<HalfClose<S>>,
    /// Unread rest of the current incoming message (shares tungstenite's read buffer).
    rbuf: Bytes,
    /// Unsent rest of the outgoing message while it is cut into `fragment`-sized frames.
    wpending: Bytes,
    continuation: bool,
    fragment: usize,
    /// Output accepted by poll_write that may not have reached `S` yet.
    unflushed: bool,
    eof: bool,
    /// Read-side flushes (pongs, pings, close replies) re-register the write waker slot of
    /// tokio-tungstenite with the reader's waker; a parked writer is woken so it re-registers.
    writer: Option<Waker>,
    keepalive: Option<Keepalive>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    async fn new(io: S, rest: Vec<u8>, role: Role, opts: &WsOptions) -> Self {
        // write_buffer_size lets the frames of one message leave in one write; poll_write flushes.
        let cfg = WebSocketConfig::default()
            .read_buffer_size(opts.read_buffer_size)
            .write_buffer_size(MAX_OUT_MESSAGE)
            .max_message_size(Some(opts.max_message_size))
            .max_frame_size(Some(opts.max_message_size));
        let client = matches!(role, Role::Client);
        let keepalive = opts
            .keepalive
            .filter(|p| client && !p.is_zero())
            .map(|period| {
                let mut ticker = interval_at(Instant::now() + period, period);
                ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
                Keepalive { ticker, strikes: 0 }
            });
        Self {
            ws: WebSocketStream::from_partially_read(
                HalfClose { io, eof: false },
                rest,
                role,
                Some(cfg),
            )
            .await,
            rbuf: Bytes::new(),
            wpending: Bytes::new(),
            continuation: false,
            // gorilla's server writes one frame per message; its client cuts at writeBufferSize.
            fragment: if client {
                opts.write_buffer_size.max(1)
            } else {
                usize::MAX
            },
            unflushed: false,
            eof: false,
            writer: None,
            keepalive,
        }
    }

    /// The transport underneath (for addresses or TLS state).
    pub fn get_ref(&self) -> &S {
        &self.ws.get_ref().io
    }

    /// Sends queued fragments and flushes; clears `unflushed` once everything is out.
    fn poll_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_pending(cx))?;
        ready!(Pin::new(&mut self.ws).poll_flush(cx)).map_err(io_err)?;
        self.unflushed = false;
        Poll::Ready(Ok(()))
    }

    /// Moves queued output along from the read side (and wakes a parked writer), so that a
    /// caller that writes and then awaits a reply without flushing cannot stall, as on TCP.
    fn flush_from_reader(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let r = self.poll_out(cx);
        if let Some(w) = self.writer.take() {
            w.wake();
        }
        match r {
            Poll::Ready(Err(e)) => Err(e),
            _ => Ok(()),
        }
    }

    fn poll_ping(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(ka) = &mut self.keepalive else {
            return Ok(());
        };
        let mut due = false;
        while ka.ticker.poll_tick(cx).is_ready() {
            due = true;
        }
        if !due {
            return Ok(());
        }
        ka.strikes = ka.strikes.saturating_add(1);
        match Pin::new(&mut self.ws).poll_ready(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.ws)
                .start_send(Message::Ping(Bytes::new()))
                .map_err(io_err)?,
            Poll::Ready(Err(e)) => return Err(io_err(e)),
            Poll::Pending => {}
        }
        self.flush_from_reader(cx)
    }

    fn poll_send_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.wpending.is_empty() {
            ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(io_err)?;
            let chunk = self
                .wpending
                .split_to(self.fragment.min(self.wpending.len()));
            let op = if self.continuation {
                OpData::Continue
            } else {
                OpData::Binary
            };
            self.continuation = !self.wpending.is_empty();
            let frame = Frame::message(chunk, OpCode::Data(op), !self.continuation);
            Pin::new(&mut self.ws)
                .start_send(Message::Frame(frame))
                .map_err(io_err)?;
        }
        Poll::Ready(Ok(()))
    }

    fn write_inner(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_send_pending(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(MAX_OUT_MESSAGE);
        self.wpending = Bytes::copy_from_slice(&buf[..n]);
        self.unflushed = true;
        // Send now, as GOST does; the data is ours, so Pending only means it is still queued.
        if let Poll::Ready(Err(e)) = self.poll_out(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn park<T>(&mut self, cx: &Context<'_>, r: Poll<T>) -> Poll<T> {
        if r.is_pending()
            && !self
                .writer
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
        {
            self.writer = Some(cx.waker().clone());
        }
        r
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.unflushed {
            this.flush_from_reader(cx)?;
        }
        this.poll_ping(cx)?;
        while this.rbuf.is_empty() && !this.eof && buf.remaining() > 0 {
            let Poll::Ready(next) = Pin::new(&mut this.ws).poll_next(cx) else {
                if this.ws.get_ref().eof {
                    this.eof = true;
                    break;
                }
                if this.keepalive.as_ref().is_some_and(|ka| ka.strikes >= 2) {
                    let msg = "ws: keepalive: peer silent for two ping periods";
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, msg)));
                }
                return Poll::Pending;
            };
            if let (Some(ka), Some(Ok(_))) = (&mut this.keepalive, &next) {
                ka.strikes = 0;
            }
            match next {
                Some(Ok(Message::Binary(b))) => this.rbuf = b,
                // gorilla's NextReader hands text payloads to GOST as data too.
                Some(Ok(Message::Text(t))) => this.rbuf = t.into(),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) => {
                    this.eof = true;
                    let _ = this.flush_from_reader(cx); // best effort: the queued close reply
                }
                // GOST never sends close frames: it closes TCP, so that is EOF too.
                None | Some(Err(TError::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => {
                    this.eof = true
                }
                Some(Err(e)) => return Poll::Ready(Err(io_err(e))),
            }
        }
        let n = this.rbuf.len().min(buf.remaining());
        buf.put_slice(&this.rbuf[..n]);
        this.rbuf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = this.write_inner(cx, buf);
        this.park(cx, r)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = this.poll_out(cx);
        this.park(cx, r)
    }

    /// Half-closes the stream underneath, as GOST does.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // As GOST: no close frame, the stream underneath is half-closed,
        // so the peer reads EOF and may still answer (a close frame would
        // make tungstenite close both ways).
        let r = match this.poll_send_pending(cx) {
            Poll::Ready(Ok(())) => match Pin::new(&mut this.ws).poll_flush(cx) {
                Poll::Ready(Ok(())) | Poll::Ready(Err(TError::AlreadyClosed)) => {
                    Pin::new(&mut this.ws.get_mut().io).poll_shutdown(cx)
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(io_err(e))),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        };
        if matches!(r, Poll::Ready(Ok(()))) {
            this.unflushed = false;
        }
        this.park(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, DuplexStream};
    use tokio::net::{TcpListener, TcpStream};

    const T: Duration = Duration::from_secs(20);
    const REQ: &str = "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                       Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (c, s) = tokio::join!(TcpStream::connect(l.local_addr().unwrap()), l.accept());
        (c.unwrap(), s.unwrap().0)
    }

    async fn ws_pair(o: &WsOptions) -> (WsStream<TcpStream>, WsStream<TcpStream>) {
        let (c, s) = tcp_pair().await;
        let (c, s) = tokio::join!(connect(c, "node:443", o), accept(s, o));
        (c.unwrap(), s.unwrap())
    }

    /// Raw request against `accept`: the answer bytes and accept's result.
    async fn raw(req: &[u8], o: &WsOptions) -> (String, Result<WsStream<DuplexStream>, WsError>) {
        let (mut c, s) = duplex(1 << 16);
        let o = o.clone();
        let srv = tokio::spawn(async move { accept(s, &o).await });
        c.write_all(req).await.unwrap();
        let res = timeout(T, srv).await.unwrap().unwrap();
        let mut out = Vec::new();
        if res.is_err() {
            timeout(T, c.read_to_end(&mut out)).await.unwrap().unwrap();
        }
        (String::from_utf8_lossy(&out).into_owned(), res)
    }

    fn masked(fin_op: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![fin_op];
        match payload.len() {
            n @ 0..=125 => f.push(0x80 | n as u8),
            n @ 126..=0xffff => f.extend([0xfe, (n >> 8) as u8, n as u8]),
            n => f.extend([0xff].into_iter().chain((n as u64).to_be_bytes())),
        }
        f.extend([1, 2, 3, 4]);
        f.extend(
            payload
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]),
        );
        f
    }

    #[tokio::test]
    async fn echo_and_half_close() {
        let (mut c, mut s) = ws_pair(&WsOptions::default()).await;
        c.write_all(b"hello").await.unwrap();
        let mut b = [0u8; 5];
        s.read_exact(&mut b).await.unwrap();
        s.write_all(&b).await.unwrap();
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"hello");
        // A half-close, as GOST's: the server reads EOF and can still
        // answer, and the client reads the answer, then EOF.
        c.shutdown().await.unwrap();
        let mut rest = Vec::new();
        timeout(T, s.read_to_end(&mut rest)).await.unwrap().unwrap();
        assert!(rest.is_empty());
        s.write_all(b"late").await.unwrap();
        s.shutdown().await.unwrap();
        timeout(T, c.read_to_end(&mut rest)).await.unwrap().unwrap();
        assert_eq!(rest, b"late");
    }

    #[tokio::test]
    async fn unflushed_write_then_read_does_not_stall() {
        let (c, s) = duplex(1024);
        let o = WsOptions::default();
        let (c, s) = tokio::join!(connect(c, "h", &o), accept(s, &o));
        let (mut c, mut s) = (c.unwrap(), s.unwrap());
        let srv = tokio::spawn(async move {
            s.read_exact(&mut vec![0; 65536]).await?;
            s.write_all(b"done").await.and(s.flush().await)
        });
        c.write_all(&[1; 65536]).await.unwrap(); // queued behind a full pipe, never flushed
        let mut b = [0; 4];
        timeout(T, c.read_exact(&mut b)).await.unwrap().unwrap();
        srv.await.unwrap().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bulk_both_ways() {
        let (c, s) = ws_pair(&WsOptions::default()).await;
        let data: Vec<u8> = (0..8u32 << 20)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let pump = |io: WsStream<TcpStream>, data: Vec<u8>| async move {
            let (mut r, mut w) = tokio::io::split(io);
            let expect = data.clone();
            let tx =
                tokio::spawn(
                    async move { w.write_all(&data).await.and(w.flush().await).map(|_| w) },
                );
            let mut got = vec![0; expect.len()];
            r.read_exact(&mut got).await.unwrap();
            assert!(got == expect);
            (r, tx.await.unwrap().unwrap()) // dropped only once both sides are done
        };
        timeout(T, async {
            tokio::join!(pump(c, data.clone()), pump(s, data))
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn gost_wire_format() {
        let mut md = Metadata::new();
        md.insert("host", "cdn.example");
        md.insert(
            "header",
            serde_json::json!({"x-b": "2", "X-a": " 1", "User-Agent": "ua"}),
        );
        let o = WsOptions::from_metadata(&md).unwrap();
        let (c, mut s) = duplex(1 << 20);
        let cli = tokio::spawn(async move {
            let mut c = connect(
                c,
                "node:443",
                &WsOptions {
                    path: "/a b".into(),
                    ..o
                },
            )
            .await?;
            c.write_all(&[7u8; 10000]).await?;
            Ok::<_, WsError>(c)
        });
        let mut head = Vec::new();
        let end = read_head(&mut s, &mut head).await.unwrap();
        let text = String::from_utf8(head[..end].to_vec()).unwrap();
        let key = text
            .split("Sec-WebSocket-Key: ")
            .nth(1)
            .unwrap()
            .split("\r\n")
            .next()
            .unwrap();
        assert_eq!(
            text,
            format!("GET /a%20b HTTP/1.1\r\nHost: cdn.example\r\nUser-Agent: ua\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nUpgrade: websocket\r\nX-A: 1\r\nX-B: 2\r\n\r\n")
        );
        let ok = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n", derive_accept_key(key.as_bytes()));
        s.write_all(ok.as_bytes()).await.unwrap();
        let _c = cli.await.unwrap().unwrap();
        // gorilla's client: 4096-byte fragments, masked; binary then continuations.
        for (op, len) in [(0x02, 4096usize), (0x00, 4096), (0x80, 1808)] {
            let mut h = [0u8; 8];
            s.read_exact(&mut h).await.unwrap();
            assert_eq!(h[..4], [op, 0x80 | 126, (len >> 8) as u8, len as u8]);
            let mut p = vec![0; len];
            s.read_exact(&mut p).await.unwrap();
            assert!(p.iter().enumerate().all(|(i, b)| b ^ h[4 + i % 4] == 7));
        }
        // gorilla's server: one unmasked frame per write; the extra header follows the 101.
        let o = WsOptions {
            header: vec![("X-Srv".into(), "a\rb".into())],
            ..Default::default()
        };
        let (mut c, s) = duplex(1 << 20);
        let srv =
            tokio::spawn(
                async move { accept(s, &o).await.unwrap().write_all(&[9u8; 70000]).await },
            );
        c.write_all(REQ.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let end = read_head(&mut c, &mut head).await.unwrap();
        assert!(head[..end].ends_with(b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nX-Srv: a b\r\n\r\n"));
        srv.await.unwrap().unwrap();
        assert_eq!(head[end..end + 10], [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[tokio::test]
    async fn refusals_match_go() {
        let o = WsOptions::default();
        let (out, res) = raw(b"GET /nope%1b?q HTTP/1.1\r\nHost: x\r\n\r\n", &o).await;
        assert!(out.starts_with("HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nDate: "));
        assert!(out.ends_with("\r\nContent-Length: 19\r\n\r\n404 page not found\n"));
        assert_eq!(
            res.err().unwrap().to_string(),
            "ws: no handler for path /nope\\u{1b}"
        );
        let (out, res) = raw(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", &o).await;
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nSec-Websocket-Version: 13\r\n"));
        assert!(out.ends_with("Content-Length: 12\r\n\r\nBad Request\n"));
        assert!(matches!(res, Err(WsError::Rejected { status: 400, .. })));
        let post = REQ.replace("GET", "POST");
        assert!(matches!(
            raw(post.as_bytes(), &o).await.1,
            Err(WsError::Rejected { status: 405, .. })
        ));
        let (out, _) = raw(b"\x16\x03\x01garbage\r\n\r\n", &o).await;
        assert_eq!(out, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request");
        let mut big = b"GET /ws HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD + 10, b'a');
        let (out, res) = raw(&big, &o).await;
        assert!(out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(matches!(res, Err(WsError::Rejected { status: 431, .. })));
        let (c, s) = duplex(64);
        let slow = WsOptions {
            read_header_timeout: Duration::from_millis(50),
            ..o
        };
        assert!(matches!(accept(s, &slow).await, Err(WsError::Timeout)));
        drop(c);
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            "Tue, 14 Nov 2023 22:13:20 GMT"
        );
    }

    #[tokio::test]
    async fn oversized_frames_fail() {
        let o = WsOptions {
            max_message_size: 1000,
            ..Default::default()
        };
        for frames in [
            masked(0x82, &[0; 1001]),
            [0x82, 0xff]
                .into_iter()
                .chain(u64::MAX.to_be_bytes())
                .chain([1, 2, 3, 4])
                .collect(),
            [masked(0x02, &[0; 600]), masked(0x80, &[0; 600])].concat(),
        ] {
            let (out, res) = raw(&[REQ.as_bytes(), &frames].concat(), &o).await;
            assert!(out.is_empty());
            let err = timeout(T, res.unwrap().read_to_end(&mut Vec::new()))
                .await
                .unwrap()
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        }
    }

    #[tokio::test]
    async fn fuzzed_input_ends() {
        let frames = [
            masked(0x82, b"data"),
            masked(0x89, b"p"),
            masked(0x01, b"te"),
            masked(0x80, b"xt"),
            masked(0x81, &[0xff]),
            masked(0x88, &[3, 232, b'b']),
            masked(0x82, &[5; 300]),
        ]
        .concat();
        let base = [REQ.as_bytes(), &frames].concat();
        let mut seed = 0x9e3779b97f4a7c15u64;
        let mut rnd = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for i in 0..3000 {
            let mut input = base.clone();
            let lo = if i % 4 == 0 { 0 } else { REQ.len() };
            for _ in 0..1 + rnd(4) {
                let at = lo + rnd(input.len() - lo);
                match rnd(3) {
                    0 => input[at] = rnd(256) as u8,
                    1 => input[at] ^= 1 << rnd(8),
                    _ => input.truncate(at.max(lo + 1)),
                }
            }
            let (mut c, s) = duplex(1 << 16);
            c.write_all(&input).await.unwrap();
            drop(c);
            let run = async {
                if let Ok(mut ws) = accept(s, &WsOptions::default()).await {
                    let _ = ws.read_to_end(&mut Vec::new()).await;
                }
            };
            timeout(T, run).await.expect("fuzzed input must end");
        }
    }

    #[tokio::test]
    async fn keepalive_pings_and_times_out() {
        let o = WsOptions {
            keepalive: Some(Duration::from_millis(100)),
            ..Default::default()
        };
        let (mut c, mut s) = ws_pair(&o).await;
        // A reading peer answers pings: the client outlives several two-tick deadlines.
        let echo = tokio::spawn(async move { s.read_to_end(&mut Vec::new()).await.map(|_| s) });
        assert!(timeout(Duration::from_millis(450), c.read(&mut [0; 8]))
            .await
            .is_err());
        c.shutdown().await.unwrap();
        let _s = echo.await.unwrap().unwrap();
        // A peer that never reads never pongs.
        let (mut c, _s) = ws_pair(&o).await;
        let err = timeout(T, c.read(&mut [0; 8])).await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn options_from_gost_keys() {
        let md: Metadata = [
            ("path", "/x"),
            ("ws.handshakeTimeout", "1m30.5s"),
            ("readHeaderTimeout", "7s"),
            ("ws.readBufferSize", "65536"),
            ("keepalive", "true"),
            ("ttl", "250ms"),
        ]
        .into_iter()
        .collect();
        let o = WsOptions::from_metadata(&md).unwrap();
        assert_eq!(
            (o.path.as_str(), o.handshake_timeout, o.read_header_timeout),
            ("/x", Duration::from_millis(90_500), Duration::from_secs(7))
        );
        assert_eq!(
            (o.read_buffer_size, o.write_buffer_size, o.keepalive),
            (65536, 4096, Some(Duration::from_millis(250)))
        );
        let md: Metadata = [("ws.keepalive", "1")].into_iter().collect();
        let o = WsOptions::from_metadata(&md).unwrap();
        assert_eq!(o.keepalive, Some(Duration::from_secs(15)));
        let md: Metadata = [("ttl", "x"), ("keepalive", "true")].into_iter().collect();
        assert!(WsOptions::from_metadata(&md).is_err());
        let mut md = Metadata::new();
        md.insert("header", serde_json::json!({"bad name": "v"}));
        assert!(WsOptions::from_metadata(&md).is_err());
    }
}
