//! `ohttp`: the client's first write is an HTTP/1.1 `GET` asking for a
//! WebSocket upgrade, its data right after the head; the server answers
//! `101 Switching Protocols` (or `400 Bad Request`, then closes) and both
//! sides then send raw bytes. The heads are what Go's `Request.Write` and
//! `Response.Write` produce: fixed first lines, then the headers sorted
//! by name in Go's canonical spelling.

/// The most bytes a head may take before it is refused (GOST reads
/// without bound; one is set here so a client cannot hold memory).
pub const MAX_HEAD: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("malformed HTTP request head: {0}")]
    Malformed(String),
    #[error("head longer than {MAX_HEAD} bytes")]
    TooLong,
}

/// Go's `CanonicalMIMEHeaderKey`: each dash-separated word capitalised,
/// the rest lower case (`sec-websocket-key` is `Sec-Websocket-Key`).
/// A key with a byte Go does not accept in a token is left as it is.
pub fn canonical_key(key: &str) -> String {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !key.bytes().all(token) {
        return key.to_string();
    }
    let mut out = String::with_capacity(key.len());
    let mut upper = true;
    for c in key.chars() {
        out.push(if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
        upper = c == '-';
    }
    out
}

/// The headers in the order Go writes them: by canonical name, values of
/// one name in the order given.
fn sorted(headers: &[(String, String)]) -> Vec<(String, &str)> {
    let mut h: Vec<(String, &str)> = headers
        .iter()
        .map(|(k, v)| (canonical_key(k), v.as_str()))
        .collect();
    h.sort_by(|a, b| a.0.cmp(&b.0));
    h
}

fn put_headers(out: &mut Vec<u8>, headers: &[(String, &str)]) {
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.trim().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// The client's head: `host` is the `Host` (the `host` option or the
/// node's address, port included, as GOST sends it), `key` the
/// base64 of 16 random bytes, `extra` the `header` option. GOST always
/// asks for `/`; its `path` option is read and not sent.
pub fn request(host: &str, key: &str, extra: &[(String, String)]) -> Vec<u8> {
    let mut headers: Vec<(String, String)> = extra
        .iter()
        .filter(|(k, _)| {
            let k = canonical_key(k);
            k != "Host" && k != "Content-Length" && k != "Transfer-Encoding" && k != "Trailer"
        })
        .cloned()
        .collect();
    let agent = headers
        .iter()
        .position(|(k, _)| canonical_key(k) == "User-Agent")
        .map(|i| headers.remove(i).1)
        .unwrap_or_else(|| "Go-http-client/1.1".to_string());
    headers.retain(|(k, _)| canonical_key(k) != "User-Agent");
    for (k, v) in [
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-Websocket-Key", key),
    ] {
        headers.retain(|(hk, _)| canonical_key(hk) != k);
        headers.push((k.to_string(), v.to_string()));
    }
    let mut out = format!("GET / HTTP/1.1\r\nHost: {host}\r\n").into_bytes();
    if !agent.is_empty() {
        out.extend_from_slice(format!("User-Agent: {agent}\r\n").as_bytes());
    }
    put_headers(&mut out, &sorted(&headers));
    out.extend_from_slice(b"\r\n");
    out
}

/// What the server needs of a client's head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Bytes of the head; what follows is the tunnel's data.
    pub head_len: usize,
    /// `GET` with `Upgrade: websocket`, as GOST requires.
    pub upgrade: bool,
    pub key: String,
}

/// The client's head at the start of `buf`, once it is all there.
pub fn parse_request(buf: &[u8]) -> Result<Option<Request>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(head_len)) => {
            let get = |name: &str| {
                req.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
            };
            Ok(Some(Request {
                head_len,
                upgrade: req.method == Some("GET")
                    && get("Upgrade").as_deref() == Some("websocket"),
                key: get("Sec-WebSocket-Key").unwrap_or_default(),
            }))
        }
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => Err(HeadError::TooLong),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(HeadError::Malformed(e.to_string())),
    }
}

/// The server's answer: `101` with the upgrade headers and the
/// `Sec-WebSocket-Accept` for the client's key, or `400` to a client
/// that did not ask for an upgrade. `date` is Go's RFC 1123 form,
/// `extra` the listener's `header` option.
pub fn response(accept: Option<&str>, date: &str, extra: &[(String, String)]) -> Vec<u8> {
    let mut headers: Vec<(String, String)> = extra
        .iter()
        .filter(|(k, _)| {
            let k = canonical_key(k);
            k != "Content-Length" && k != "Transfer-Encoding" && k != "Trailer"
        })
        .cloned()
        .collect();
    let mut set = |k: &str, v: &str| {
        headers.retain(|(hk, _)| canonical_key(hk) != k);
        headers.push((k.to_string(), v.to_string()));
    };
    set("Date", date);
    let status = match accept {
        Some(a) => {
            set("Connection", "Upgrade");
            set("Upgrade", "websocket");
            set("Sec-Websocket-Accept", a);
            "101 Switching Protocols"
        }
        None => "400 Bad Request",
    };
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n").into_bytes();
    put_headers(&mut out, &sorted(&headers));
    out.extend_from_slice(b"\r\n");
    out
}

/// Where the server's head ends, as GOST's client finds it: after the
/// first line that is exactly `\r\n`. It reads nothing else of it.
pub fn response_end(buf: &[u8]) -> Result<Option<usize>, HeadError> {
    let mut start = 0;
    while let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') {
        let end = start + nl + 1;
        if &buf[start..end] == b"\r\n" {
            return Ok(Some(end));
        }
        start = end;
    }
    if buf.len() >= MAX_HEAD {
        return Err(HeadError::TooLong);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn canonical_keys_as_go_spells_them() {
        assert_eq!(canonical_key("sec-websocket-key"), "Sec-Websocket-Key");
        assert_eq!(canonical_key("X-FORWARDED-FOR"), "X-Forwarded-For");
        assert_eq!(canonical_key("content-type"), "Content-Type");
        assert_eq!(canonical_key("bad key"), "bad key");
    }

    /// The bytes Go's `Request.Write` gives for GOST's request.
    #[test]
    fn request_as_go_writes_it() {
        let r = request("example.com:8080", "dGhlIHNhbXBsZSBub25jZQ==", &[]);
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "GET / HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: Go-http-client/1.1\r\n\
Connection: Upgrade\r\nSec-Websocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nUpgrade: websocket\r\n\r\n"
        );
        let r = request(
            "h",
            "k",
            &h(&[
                ("user-agent", "curl/8"),
                ("x-b", "2"),
                ("accept", "*/*"),
                ("host", "no"),
            ]),
        );
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\
Connection: Upgrade\r\nSec-Websocket-Key: k\r\nUpgrade: websocket\r\nX-B: 2\r\n\r\n"
        );
    }

    /// The bytes Go's `Response.Write` gives for GOST's answers (a
    /// response without a request has no method, so `Content-Length: 0`
    /// comes first).
    #[test]
    fn responses_as_go_writes_them() {
        let date = "Mon, 07 Dec 2026 14:52:23 UTC";
        let r = response(
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            date,
            &h(&[("server", "nginx")]),
        );
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nContent-Length: 0\r\nConnection: Upgrade\r\n\
Date: Mon, 07 Dec 2026 14:52:23 UTC\r\nSec-Websocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
Server: nginx\r\nUpgrade: websocket\r\n\r\n"
        );
        let r = response(None, date, &[]);
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nDate: Mon, 07 Dec 2026 14:52:23 UTC\r\n\r\n"
        );
    }

    #[test]
    fn requests_parsed_as_gost_checks_them() {
        let head = request("h:1", "abc", &[]);
        let mut buf = head.clone();
        buf.extend_from_slice(b"\x05\x01\x00");
        let r = parse_request(&buf).unwrap().unwrap();
        assert_eq!(r.head_len, head.len());
        assert!(r.upgrade);
        assert_eq!(r.key, "abc");
        assert_eq!(parse_request(&head[..10]), Ok(None));
        let r = parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!r.upgrade);
        let r = parse_request(b"POST / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!r.upgrade);
        // Go compares the value as it is: `WebSocket` is not `websocket`.
        let r = parse_request(b"GET / HTTP/1.1\r\nupgrade: WebSocket\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!r.upgrade);
        assert!(matches!(
            parse_request(b"\x16\x03\x01\x00"),
            Err(HeadError::Malformed(_))
        ));
        let long = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; MAX_HEAD]].concat();
        assert_eq!(parse_request(&long), Err(HeadError::TooLong));
    }

    #[test]
    fn response_end_is_the_first_empty_line() {
        let r = response(Some("a"), "d", &[]);
        let mut buf = r.clone();
        buf.extend_from_slice(b"data\r\n\r\n");
        assert_eq!(response_end(&buf), Ok(Some(r.len())));
        assert_eq!(response_end(b"HTTP/1.1 101 x\r\nA: b\r\n"), Ok(None));
        assert_eq!(response_end(b"\r\nrest"), Ok(Some(2)));
        // A bare `\n` line is not the end for GOST's client.
        assert_eq!(response_end(b"X\n\n\r\n"), Ok(Some(5)));
        assert_eq!(response_end(&[b'a'; MAX_HEAD]), Err(HeadError::TooLong));
    }
}
