//! GOST's HTTP observer plugin protocol: each batch is POSTed as
//! `{"events":[...]}` and the server answers `200` with `{"ok":true}`, so an
//! observer server written for GOST works unchanged.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Event, ObserveFuture, Observer, ObserverError};

/// GOST's plugin clients give up after this long unless `timeout` is set.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// A reply larger than this is not an observer's `{"ok":true}`.
const MAX_REPLY: usize = 64 * 1024;

#[derive(Debug)]
pub struct HttpObserver {
    name: String,
    /// `host:port`
    authority: String,
    path: String,
    timeout: Duration,
}

impl HttpObserver {
    /// `addr` as GOST takes it: `host:port[/path]`, with or without
    /// `http://`. TLS (`https://`) is not supported yet and is refused.
    pub fn new(name: &str, addr: &str, timeout: Duration) -> Result<Self, String> {
        if addr.starts_with("https://") {
            return Err(format!(
                "observer \"{name}\": https plugin addresses are not supported yet"
            ));
        }
        let rest = addr.strip_prefix("http://").unwrap_or(addr);
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || !authority.contains(':') {
            return Err(format!(
                "observer \"{name}\": plugin addr \"{addr}\" is not host:port[/path]"
            ));
        }
        Ok(HttpObserver {
            name: name.into(),
            authority: authority.into(),
            path: path.into(),
            timeout: if timeout.is_zero() {
                DEFAULT_TIMEOUT
            } else {
                timeout
            },
        })
    }

    fn err(&self, msg: impl Into<String>) -> ObserverError {
        ObserverError {
            observer: self.name.clone(),
            msg: msg.into(),
        }
    }

    async fn post(&self, events: &[Event]) -> Result<(), ObserverError> {
        #[derive(serde::Serialize)]
        struct Request<'a> {
            events: &'a [Event],
        }
        let body = serde_json::to_vec(&Request { events }).map_err(|e| self.err(e.to_string()))?;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.path,
            self.authority,
            body.len()
        );
        let mut c = TcpStream::connect(&self.authority)
            .await
            .map_err(|e| self.err(format!("connect {}: {e}", self.authority)))?;
        c.write_all(head.as_bytes())
            .await
            .map_err(|e| self.err(e.to_string()))?;
        c.write_all(&body)
            .await
            .map_err(|e| self.err(e.to_string()))?;
        let mut reply = Vec::new();
        (&mut c)
            .take(MAX_REPLY as u64)
            .read_to_end(&mut reply)
            .await
            .map_err(|e| self.err(e.to_string()))?;
        check_reply(&reply).map_err(|m| self.err(m))
    }
}

/// GOST wants status 200 and a JSON body whose `ok` is true.
fn check_reply(reply: &[u8]) -> Result<(), String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let body_at = match resp.parse(reply) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("truncated HTTP reply".into()),
        Err(e) => return Err(format!("bad HTTP reply: {e}")),
    };
    let code = resp.code.unwrap_or(0);
    if code != 200 {
        return Err(format!("HTTP status {code}"));
    }
    let chunked = resp.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(h.value)
                .to_ascii_lowercase()
                .contains("chunked")
    });
    let raw = &reply[body_at..];
    let body = if chunked { dechunk(raw) } else { raw.to_vec() };
    #[derive(serde::Deserialize)]
    struct Reply {
        #[serde(default)]
        ok: bool,
    }
    let r: Reply =
        serde_json::from_slice(&body).map_err(|e| format!("reply is not observer JSON: {e}"))?;
    if r.ok {
        Ok(())
    } else {
        Err("observe failed (ok is false)".into())
    }
}

/// The payload of a chunked reply; a broken chunk ends it.
fn dechunk(s: &[u8]) -> Vec<u8> {
    use gost_proto::http1::{Decoder, Framing};
    let mut out = Vec::new();
    let _ = Decoder::new(Framing::Chunked).decode(s, &mut out);
    out
}

impl Observer for HttpObserver {
    fn observe<'a>(&'a self, events: &'a [Event]) -> ObserveFuture<'a> {
        Box::pin(async move {
            if events.is_empty() {
                return Ok(());
            }
            tokio::time::timeout(self.timeout, self.post(events))
                .await
                .map_err(|_| self.err(format!("no reply within {:?}", self.timeout)))?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let o = HttpObserver::new("o", "http://127.0.0.1:8000/observe", Duration::ZERO).unwrap();
        assert_eq!(
            (o.authority.as_str(), o.path.as_str()),
            ("127.0.0.1:8000", "/observe")
        );
        assert_eq!(o.timeout, DEFAULT_TIMEOUT);
        let o = HttpObserver::new("o", "localhost:8000", Duration::from_secs(1)).unwrap();
        assert_eq!(o.path, "/");
        assert!(HttpObserver::new("o", "https://x:1", Duration::ZERO).is_err());
        assert!(HttpObserver::new("o", "nohost", Duration::ZERO).is_err());
    }

    #[test]
    fn replies() {
        assert!(check_reply(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}").is_ok());
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n{\"ok\":true}\r\n0\r\n\r\n";
        assert!(check_reply(chunked).is_ok());
        let e = check_reply(b"HTTP/1.1 200 OK\r\n\r\n{\"ok\":false}").unwrap_err();
        assert!(e.contains("ok is false"), "{e}");
        let e = check_reply(b"HTTP/1.1 500 Internal\r\n\r\n").unwrap_err();
        assert!(e.contains("500"), "{e}");
        assert!(check_reply(b"HTTP/1.1 200 OK\r\n\r\nnot json").is_err());
    }
}
