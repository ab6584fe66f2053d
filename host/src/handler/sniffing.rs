//! Protocol sniffing for the forward handlers (GOST's `sniffing: true`):
//! the first bytes of a connection are peeked, not read, so they reach the
//! upstream untouched, and a TLS ClientHello or an HTTP/1.x request head
//! yields what node matchers and filters look at.

use std::time::Duration;

use tokio::net::TcpStream;

/// GOST's default when `sniffing.timeout` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Enough for a ClientHello or a request head; a longer head is routed as
/// raw bytes.
const PEEK_LIMIT: usize = 16 * 1024;

/// Owned request facts for [`crate::routing::Request`].
#[derive(Debug, Default, PartialEq)]
pub struct Sniffed {
    /// `http`, `tls`, or empty when neither was recognised.
    pub protocol: &'static str,
    pub host: String,
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
}

enum Parsed {
    Done(Sniffed),
    NeedMore,
}

/// Peeks until the head is complete, the peer stops sending, or `timeout`
/// passes; anything unrecognised is raw (empty protocol), as in GOST.
pub async fn sniff(stream: &TcpStream, timeout: Duration) -> Sniffed {
    let mut buf = vec![0u8; PEEK_LIMIT];
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = 0;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => return Sniffed::default(),
        };
        if n == 0 {
            return Sniffed::default();
        }
        match parse(&buf[..n]) {
            Parsed::Done(s) => return s,
            Parsed::NeedMore if n < buf.len() => {}
            Parsed::NeedMore => return Sniffed::default(),
        }
        // Peek returns at once while bytes wait; pause until more arrive.
        if n == seen {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if tokio::time::Instant::now() >= deadline {
                return Sniffed::default();
            }
        }
        seen = n;
    }
}

fn parse(b: &[u8]) -> Parsed {
    match b.first() {
        Some(0x16) => tls(b),
        Some(c) if c.is_ascii_uppercase() => http(b),
        _ => Parsed::Done(Sniffed::default()),
    }
}

fn http(b: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(b) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Parsed::NeedMore,
        Err(_) => return Parsed::Done(Sniffed::default()),
    }
    let target = req.path.unwrap_or("/");
    // An absolute-form target (a proxy request) carries its own host.
    let (authority, rest) = match target.split_once("://") {
        Some((_, r)) => r.split_at(r.find('/').unwrap_or(r.len())),
        None => ("", target),
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let host = match authority {
        "" => headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("host"))
            .map(|(_, v)| v.clone())
            .unwrap_or_default(),
        a => a.to_string(),
    };
    Parsed::Done(Sniffed {
        protocol: "http",
        host,
        method: req.method.unwrap_or_default().to_string(),
        path: if path.is_empty() { "/" } else { path }.to_string(),
        query: query.to_string(),
        headers,
    })
}

/// A TLS record carrying a ClientHello; its `server_name` is the host.
fn tls(b: &[u8]) -> Parsed {
    if b.len() < 5 {
        return Parsed::NeedMore;
    }
    if b[1] != 3 {
        return Parsed::Done(Sniffed::default());
    }
    let len = u16::from_be_bytes([b[3], b[4]]) as usize;
    let Some(rec) = b.get(5..5 + len) else {
        return Parsed::NeedMore;
    };
    let raw = || Parsed::Done(Sniffed::default());
    if rec.first() != Some(&1) {
        return raw();
    }
    match server_name(rec) {
        Some(host) => Parsed::Done(Sniffed {
            protocol: "tls",
            host,
            ..Default::default()
        }),
        None => Parsed::Done(Sniffed {
            protocol: "tls",
            ..Default::default()
        }),
    }
}

/// Walks a ClientHello handshake message (from its type byte) to its SNI
/// extension; the forwarder plugins' host hint uses it too.
pub(crate) fn server_name(hs: &[u8]) -> Option<String> {
    let mut r = Reader(hs.get(4..)?);
    r.take(2 + 32)?;
    let sid = r.u8()? as usize;
    r.take(sid)?;
    let suites = r.u16()? as usize;
    r.take(suites)?;
    let comp = r.u8()? as usize;
    r.take(comp)?;
    let ext_len = r.u16()? as usize;
    let mut exts = Reader(r.take(ext_len)?);
    while let (Some(ty), Some(len)) = (exts.u16(), exts.u16()) {
        let body = exts.take(len as usize)?;
        if ty != 0 {
            continue;
        }
        let mut names = Reader(body);
        let list = names.u16()? as usize;
        let mut list = Reader(names.take(list)?);
        while let (Some(kind), Some(n)) = (list.u8(), list.u16()) {
            let name = list.take(n as usize)?;
            if kind == 0 {
                return std::str::from_utf8(name).ok().map(str::to_string);
            }
        }
    }
    None
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(b: &[u8]) -> Sniffed {
        match parse(b) {
            Parsed::Done(s) => s,
            Parsed::NeedMore => panic!("incomplete"),
        }
    }

    #[test]
    fn http_head() {
        let s = done(b"GET /a/b?x=1 HTTP/1.1\r\nHost: h.test:8080\r\nX-K: v\r\n\r\nbody");
        assert_eq!(s.protocol, "http");
        assert_eq!(s.host, "h.test:8080");
        assert_eq!(
            (s.method.as_str(), s.path.as_str(), s.query.as_str()),
            ("GET", "/a/b", "x=1")
        );
        assert!(s.headers.contains(&("X-K".into(), "v".into())));
        let s = done(b"GET http://p.test/z HTTP/1.1\r\nHost: other\r\n\r\n");
        assert_eq!((s.host.as_str(), s.path.as_str()), ("p.test", "/z"));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: h"),
            Parsed::NeedMore
        ));
        assert_eq!(done(b"SSH-2.0-x\r\n").protocol, "");
        assert_eq!(done(b"\x00\x01").protocol, "");
    }

    /// A minimal ClientHello with one SNI entry.
    fn client_hello(name: &str) -> Vec<u8> {
        let mut sni = vec![0u8];
        sni.extend((name.len() as u16).to_be_bytes());
        sni.extend(name.as_bytes());
        let mut ext = vec![0, 0];
        ext.extend(((sni.len() + 2) as u16).to_be_bytes());
        ext.extend((sni.len() as u16).to_be_bytes());
        ext.extend(sni);
        let mut body = vec![3, 3];
        body.extend([0u8; 32]);
        body.extend([0, 0, 2, 0x13, 1, 1, 0]);
        body.extend((ext.len() as u16).to_be_bytes());
        body.extend(ext);
        let mut hs = vec![1, 0];
        hs.extend((body.len() as u16).to_be_bytes());
        hs.extend(body);
        let mut rec = vec![0x16, 3, 1];
        rec.extend((hs.len() as u16).to_be_bytes());
        rec.extend(hs);
        rec
    }

    #[test]
    fn tls_sni() {
        let hello = client_hello("sni.test");
        let s = done(&hello);
        assert_eq!((s.protocol, s.host.as_str()), ("tls", "sni.test"));
        assert!(matches!(parse(&hello[..hello.len() - 1]), Parsed::NeedMore));
        let mut bad = hello.clone();
        bad[5] = 2;
        assert_eq!(done(&bad).protocol, "");
    }
}
