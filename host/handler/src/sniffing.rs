//! Protocol sniffing for the forward handlers (GOST's `sniffing: true`):
//! the first bytes of a connection are read ahead and handed back to the
//! stream, so they reach the upstream untouched, and a TLS ClientHello or
//! an HTTP/1.x request head yields what node matchers and filters look at
//! (with a body prefix, when a node matcher looks at the body). Sniffing
//! works on decrypted bytes: the stream is whatever the listener made.

use std::time::Duration;

use gost_chain::router::{DialError, Router};
use gost_core::metadata::{Metadata, MetadataError};
use gost_core::stream::Stream;

/// GOST's default when `sniffing.timeout` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Enough for a ClientHello or a request head; a longer head is routed as
/// raw bytes.
const PEEK_LIMIT: usize = 16 * 1024;

use gost_core::routing::MAX_BODY_SIZE;

/// Handler metadata `sniffing` (and `sniffing.timeout`): the timeout
/// when sniffing is on, `None` when off.
pub fn from_metadata(md: &Metadata) -> Result<Option<Duration>, MetadataError> {
    if !md.get_bool("sniffing")?.unwrap_or(false) {
        return Ok(None);
    }
    Ok(Some(
        md.get_duration("sniffing.timeout")?
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_TIMEOUT),
    ))
}

/// GOST's `sniffing` on a proxy tunnel (HTTP or SOCKS CONNECT). The
/// upstream is already dialed, so nothing is routed here; what the sniff
/// decides is whether the service's bypass refuses the host the tunnel
/// really carries (an HTTP request's `Host`, a ClientHello's SNI, with
/// port 80 or 443 when it names none), which closes the tunnel as in
/// GOST. `early` holds bytes the handshake already read past the request.
/// Without a bypass there is nothing to decide and nothing is read.
pub async fn guard_tunnel(
    client: &mut Stream,
    early: &[u8],
    timeout: Duration,
    router: &Router,
) -> Result<(), DialError> {
    if router.bypass.is_none() {
        return Ok(());
    }
    let s = peek(client, early, tokio::time::Instant::now() + timeout).await;
    gost_core::recorder::note(|r| r.proto = s.protocol.to_string());
    if s.host.is_empty() {
        return Ok(());
    }
    let port = if s.protocol == "tls" { 443 } else { 80 };
    router.check_bypass("tcp", &with_port(&s.host, port)).await
}

/// A sniffed host as `host:port`, with `port` when it names none (GOST's
/// normalizeHost); a bare IPv6 address gets its brackets.
pub(crate) fn with_port(host: &str, port: u16) -> String {
    if gost_core::addr::split_host_port(host).is_ok() {
        host.to_string()
    } else if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Owned request facts for [`gost_core::routing::Request`].
#[derive(Debug, Default, PartialEq)]
pub struct Sniffed {
    /// `http`, `tls`, or empty when neither was recognised.
    pub protocol: &'static str,
    pub host: String,
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    /// The HTTP body prefix body matchers see (de-chunked).
    pub body: Vec<u8>,
}

impl Sniffed {
    /// The request facts node matchers and filters look at.
    pub fn request(&self) -> gost_core::routing::Request<'_> {
        gost_core::routing::Request {
            host: &self.host,
            protocol: self.protocol,
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &self.headers,
            body: &self.body,
            ..Default::default()
        }
    }
}

enum Parsed {
    /// What was recognised, and the length of an HTTP head (0 otherwise).
    Done(Sniffed, usize),
    NeedMore,
}

/// Sniffs the start of `stream` until the head is complete, the peer stops
/// sending, or `timeout` passes; anything unrecognised is raw (empty
/// protocol), as in GOST. With `body_limit` above 0 an HTTP request's body
/// prefix of up to that many bytes is read too. Every byte read stays in
/// the stream (read ahead), for the upstream.
pub async fn sniff(stream: &mut Stream, timeout: Duration, body_limit: usize) -> Sniffed {
    let deadline = tokio::time::Instant::now() + timeout;
    let head = peek(stream, &[], deadline).await;
    if body_limit == 0 || head.protocol != "http" {
        return head;
    }
    let Parsed::Done(_, len) = parse(stream.rewound()) else {
        return head;
    };
    // Chunk framing may make the raw prefix longer than the body limit.
    let limit = len + 2 * body_limit + 16 * 1024;
    loop {
        if let Some(body) = body_prefix(&head.headers, &stream.rewound()[len..], body_limit) {
            return Sniffed {
                body: decode(&head.headers, body),
                ..head
            };
        }
        let more = tokio::time::timeout_at(deadline, stream.read_ahead(limit)).await;
        if !matches!(more, Ok(Ok(n)) if n > 0) {
            // The peer stopped (or the deadline passed): route by what
            // arrived, as GOST ignores its body prefix read's error.
            let body = body_prefix(&head.headers, &stream.rewound()[len..], 0);
            return Sniffed {
                body: decode(&head.headers, body.unwrap_or_default()),
                ..head
            };
        }
    }
}

/// Reads ahead until the head after the `early` bytes (already taken off
/// the stream) parses.
async fn peek(stream: &mut Stream, early: &[u8], deadline: tokio::time::Instant) -> Sniffed {
    loop {
        let parsed = if early.is_empty() {
            parse(stream.rewound())
        } else {
            parse(&[early, stream.rewound()].concat())
        };
        if let Parsed::Done(s, _) = parsed {
            return s;
        }
        let limit = PEEK_LIMIT.saturating_sub(early.len());
        match tokio::time::timeout_at(deadline, stream.read_ahead(limit)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return Sniffed::default(),
        }
    }
}

fn field<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// What body rules see of a `gzip` or `deflate` body prefix: its decoded
/// start, as GOST shows them (a prefix cut mid-stream decodes as far as it
/// goes; output is capped at [`MAX_BODY_SIZE`]). Other encodings, and a
/// prefix that decodes to nothing, are left as sent.
pub(crate) fn decode(headers: &[(String, String)], body: Vec<u8>) -> Vec<u8> {
    use std::io::Read;
    let enc = field(headers, "content-encoding").unwrap_or("");
    let reader: Box<dyn Read + '_> = if enc.eq_ignore_ascii_case("gzip") {
        Box::new(flate2::read::GzDecoder::new(&body[..]))
    } else if enc.eq_ignore_ascii_case("deflate") {
        Box::new(flate2::read::ZlibDecoder::new(&body[..]))
    } else {
        return body;
    };
    let mut out = Vec::new();
    // An error leaves what decoded before it in `out`.
    let _ = reader.take(MAX_BODY_SIZE as u64).read_to_end(&mut out);
    if out.is_empty() {
        body
    } else {
        out
    }
}

/// The body prefix `rest` (the bytes after the head) holds, by the head's
/// framing, capped at `limit`; `None` while more bytes are needed. A
/// `limit` of 0 takes whatever arrived.
fn body_prefix(headers: &[(String, String)], rest: &[u8], limit: usize) -> Option<Vec<u8>> {
    let field = |name: &str| field(headers, name);
    let all = limit == 0;
    let limit = if all { usize::MAX } else { limit };
    if field("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked")) {
        let (body, complete) = dechunk(rest, limit);
        return (complete || all).then_some(body);
    }
    let want = field("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0)
        .min(limit);
    if rest.len() >= want {
        Some(rest[..want].to_vec())
    } else {
        all.then(|| rest.to_vec())
    }
}

/// De-chunks a chunked body: the data and whether it is complete (the last
/// chunk seen, or `limit` bytes gathered). A framing error ends it with
/// what was gathered, as an unrecognised body would.
fn dechunk(b: &[u8], limit: usize) -> (Vec<u8>, bool) {
    use gost_proto::http1::{Decoder, Framing};
    let mut dec = Decoder::new(Framing::Chunked);
    let mut out = Vec::new();
    let res = dec.decode(b, &mut out);
    let complete = res.is_err() || dec.payload_done() || out.len() >= limit;
    out.truncate(limit);
    (out, complete)
}

fn parse(b: &[u8]) -> Parsed {
    match b.first() {
        Some(0x16) => tls(b),
        Some(c) if c.is_ascii_uppercase() => http(b),
        None => Parsed::NeedMore,
        _ => Parsed::Done(Sniffed::default(), 0),
    }
}

fn http(b: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(b) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::NeedMore,
        Err(_) => return Parsed::Done(Sniffed::default(), 0),
    };
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
    Parsed::Done(
        Sniffed {
            protocol: "http",
            host,
            method: req.method.unwrap_or_default().to_string(),
            path: if path.is_empty() { "/" } else { path }.to_string(),
            query: query.to_string(),
            headers,
            ..Default::default()
        },
        head_len,
    )
}

/// A TLS record carrying a ClientHello; its `server_name` is the host.
fn tls(b: &[u8]) -> Parsed {
    if b.len() < 5 {
        return Parsed::NeedMore;
    }
    if b[1] != 3 {
        return Parsed::Done(Sniffed::default(), 0);
    }
    let len = u16::from_be_bytes([b[3], b[4]]) as usize;
    let Some(rec) = b.get(5..5 + len) else {
        return Parsed::NeedMore;
    };
    let raw = || Parsed::Done(Sniffed::default(), 0);
    if rec.first() != Some(&1) {
        return raw();
    }
    Parsed::Done(
        Sniffed {
            protocol: "tls",
            host: server_name(rec).unwrap_or_default(),
            ..Default::default()
        },
        0,
    )
}

/// The SNI of a ClientHello handshake message; the forwarder plugins'
/// host hint uses it too.
pub use gost_proto::tls::server_name;

#[cfg(test)]
mod tests {
    use super::*;

    fn done(b: &[u8]) -> Sniffed {
        match parse(b) {
            Parsed::Done(s, _) => s,
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

    #[test]
    fn body_prefix_by_framing() {
        let h = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let cl = h("Content-Length", "5");
        assert_eq!(body_prefix(&cl, b"hel", 100), None);
        assert_eq!(body_prefix(&cl, b"hello, next", 100).unwrap(), b"hello");
        assert_eq!(body_prefix(&cl, b"hel", 2).unwrap(), b"he");
        assert_eq!(body_prefix(&cl, b"hel", 0).unwrap(), b"hel");
        assert_eq!(body_prefix(&[], b"", 100).unwrap(), b"");
        let te = h("Transfer-Encoding", "gzip, Chunked");
        let chunked = b"3;x=1\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n";
        assert_eq!(body_prefix(&te, chunked, 100).unwrap(), b"abcdefg");
        assert_eq!(body_prefix(&te, chunked, 5).unwrap(), b"abcde");
        assert_eq!(body_prefix(&te, &chunked[..16], 100), None);
        assert_eq!(body_prefix(&te, &chunked[..16], 0).unwrap(), b"abcd");
        assert_eq!(body_prefix(&te, b"zz\r\n", 100).unwrap(), b"");
    }

    #[test]
    fn compressed_prefixes_are_decoded_for_the_rules() {
        use std::io::Write;
        let text: Vec<u8> = (0..4000u32)
            .flat_map(|i| format!("{},", i.wrapping_mul(2654435761)).into_bytes())
            .collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).unwrap();
        let gz = gz.finish().unwrap();
        let h = |v: &str| vec![("Content-Encoding".to_string(), v.to_string())];
        assert_eq!(decode(&h("gzip"), gz.clone()), text);
        let cut = decode(&h("GZIP"), gz[..gz.len() / 2].to_vec());
        assert!(!cut.is_empty() && text.starts_with(&cut), "{}", cut.len());
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&text).unwrap();
        assert_eq!(decode(&h("deflate"), z.finish().unwrap()), text);
        assert_eq!(decode(&h("br"), b"raw".to_vec()), b"raw");
        assert_eq!(decode(&h("gzip"), b"not gzip".to_vec()), b"not gzip");
    }

    #[tokio::test]
    async fn reading_sniff_hands_back_every_byte_it_took() {
        use tokio::io::AsyncWriteExt;
        let (mut c, s) = gost_core::test_util::tcp_pair().await;
        let req = b"POST /j HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n{\"k\":\"v\"}xx";
        for part in req.chunks(7) {
            c.write_all(part).await.unwrap();
        }
        let mut s = Stream::from(s);
        let got = sniff(&mut s, Duration::from_secs(10), 4).await;
        assert_eq!(got.body, b"{\"k\"");
        assert_eq!(got.path, "/j");
        let held = s.rewound().to_vec();
        assert!(held.len() >= 52 && req.starts_with(&held), "{held:?}");
        // The next sniff sees the same bytes again: they were handed back.
        let again = sniff(&mut s, Duration::from_secs(10), 4).await;
        assert_eq!(again.path, "/j");
        drop(c);
        let (mut c, raw) = gost_core::test_util::tcp_pair().await;
        c.write_all(b"\x00raw").await.unwrap();
        drop(c);
        let mut raw = Stream::from(raw);
        assert_eq!(
            sniff(&mut raw, Duration::from_secs(10), 4).await.protocol,
            ""
        );
        assert_eq!(raw.rewound(), b"\x00raw");
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

    #[test]
    fn huge_chunk_size_is_data_not_a_wrap() {
        let (body, complete) = dechunk(b"ffffffffffffffff\r\nab\r\n1\r\nX\r\n0\r\n\r\n", 100);
        assert_eq!(body, b"ab\r\n1\r\nX\r\n0\r\n\r\n");
        assert!(!complete);
    }

    /// Mutated requests and ClientHellos: parsing the head and taking the
    /// body prefix by its framing, at every body limit, must not panic.
    #[test]
    fn parsers_survive_mutated_input() {
        let hello = client_hello("sni.test");
        let corpus: [&[u8]; 5] = [
            &hello,
            b"POST /a?b=c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n10;x=y\r\n0123456789abcdef\r\n0\r\n\r\n",
            b"PUT http://h:8/p HTTP/1.1\r\nContent-Length: 4\r\nContent-Encoding: gzip\r\n\r\n\x1f\x8b\x08\x00",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nab",
            b"GET / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\nx",
        ];
        for (_, b) in gost_core::test_util::mutations(&corpus, 3000) {
            if let Parsed::Done(s, len) = parse(&b) {
                let rest = b.get(len..).unwrap_or_default();
                for limit in [0, 1, 7, gost_core::routing::DEFAULT_BODY_SIZE] {
                    let body = body_prefix(&s.headers, rest, limit).unwrap_or_default();
                    decode(&s.headers, body);
                }
            }
        }
    }
}
