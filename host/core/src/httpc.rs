//! The HTTP/1.1 client of GOST's `http` recorder (a POST per record) and
//! `http` loaders (a GET per reload): one request per connection, plain
//! HTTP only, the whole exchange bounded in time and size.

use std::time::Duration;

use gost_proto::http1::{Decoder, Framing};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Larger responses are refused: a loader's list, not a download.
pub const MAX_RESPONSE: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("url \"{}\": {msg}", crate::escape::esc(.url))]
    Url { url: String, msg: String },
    #[error("{}: {source}", crate::escape::esc(.url))]
    Io { url: String, source: std::io::Error },
    #[error("{}: no answer within {timeout:?}", crate::escape::esc(.url))]
    Timeout { url: String, timeout: Duration },
    #[error("{}: {msg}", crate::escape::esc(.url))]
    Response { url: String, msg: String },
}

/// A checked `http://` URL: where to connect and what to ask for.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub url: String,
    authority: String,
    path: String,
}

impl Target {
    /// `raw` as GOST takes it: `http://` is added when no scheme is given.
    pub fn parse(raw: &str) -> Result<Self, HttpError> {
        let full = if raw.starts_with("http://") || raw.starts_with("https://") {
            raw.to_string()
        } else {
            format!("http://{raw}")
        };
        let err = |msg: &str| HttpError::Url {
            url: raw.to_string(),
            msg: msg.to_string(),
        };
        let u = url::Url::parse(&full).map_err(|e| err(&e.to_string()))?;
        if u.scheme() != "http" {
            return Err(err("only http:// is supported (https is not yet)"));
        }
        let host = u.host_str().ok_or_else(|| err("no host"))?;
        let port = u.port_or_known_default().unwrap_or(80);
        let mut path = u.path().to_string();
        if let Some(q) = u.query() {
            path.push('?');
            path.push_str(q);
        }
        Ok(Target {
            url: raw.to_string(),
            authority: format!("{host}:{port}"),
            path,
        })
    }
}

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One request; `headers` are sent as given (names and values checked
/// for line breaks by the caller's config validation).
pub async fn request(
    target: &Target,
    method: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeout: Duration,
) -> Result<Response, HttpError> {
    match tokio::time::timeout(timeout, exchange(target, method, headers, body)).await {
        Ok(r) => r,
        Err(_) => Err(HttpError::Timeout {
            url: target.url.clone(),
            timeout,
        }),
    }
}

async fn exchange(
    target: &Target,
    method: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Response, HttpError> {
    let io = |source| HttpError::Io {
        url: target.url.clone(),
        source,
    };
    let bad = |msg: &str| HttpError::Response {
        url: target.url.clone(),
        msg: msg.to_string(),
    };
    let mut stream = TcpStream::connect(&target.authority).await.map_err(io)?;
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        target.path,
        target.authority,
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    stream.write_all(&out).await.map_err(io)?;

    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let (status, framing, start) = loop {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut hs);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => {
                let status = resp.code.unwrap_or(0);
                let header = |name: &str| {
                    resp.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
                };
                let framing = if header("transfer-encoding").is_some_and(|v| v.contains("chunked"))
                {
                    Framing::Chunked
                } else if let Some(len) = header("content-length") {
                    Framing::Length(len.parse().map_err(|_| bad("bad Content-Length"))?)
                } else {
                    Framing::UntilClose
                };
                break (status, framing, n);
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(bad(&format!("bad response: {e}"))),
        }
        if buf.len() > 64 * 1024 {
            return Err(bad("response header too large"));
        }
        let n = stream.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            return Err(bad("closed before a response"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let mut decoder = Decoder::new(framing);
    let mut body = Vec::new();
    let mut pending = buf.split_off(start);
    loop {
        let used = decoder
            .decode(&pending, &mut body)
            .map_err(|e| bad(&format!("bad body: {e}")))?;
        pending.drain(..used);
        if body.len() > MAX_RESPONSE {
            return Err(bad(&format!("body over {MAX_RESPONSE} bytes")));
        }
        if decoder.done() || decoder.payload_done() {
            break;
        }
        let n = stream.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            if decoder.ends_at_eof() {
                break;
            }
            return Err(bad("closed inside the body"));
        }
        pending.extend_from_slice(&chunk[..n]);
    }
    Ok(Response { status, body })
}
