//! Just enough HTTP/1.1 framing for the benchmark: the target server must
//! find request boundaries (keep-alive, pipelining, `Connection: close`) and
//! the clients must know where a response ends. Both sides are ours, so this
//! is deliberately not a general parser: it works on byte slices without
//! allocating, because it runs once per request on the hot path.

/// Request sent by `keepalive` and `idle`: the connection stays open.
pub const REQUEST_KEEPALIVE: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

/// Request sent by `connrate`: the server closes after answering, so the
/// server side (the passive target, not the client or the proxy) ends up
/// holding the TIME_WAIT state.
pub const REQUEST_CLOSE: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";

/// The fixed answer to a keep-alive request.
pub const RESPONSE_KEEPALIVE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n";

/// The fixed answer when the client asked to close (or spoke HTTP/1.0).
pub const RESPONSE_CLOSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";

/// Framing error: the peer sent something this benchmark never sends.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed HTTP message: {}", self.0)
    }
}

impl std::error::Error for Malformed {}

/// One complete request at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// Bytes taken by the head and the body.
    pub len: usize,
    /// The client wants the connection closed after the answer.
    pub close: bool,
}

/// Position just past the blank line that ends the head, if present.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Iterates the header lines of a head (skipping the start line).
fn header_lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split(|&b| b == b'\n')
        .skip(1)
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
}

/// Splits `Name: value` and trims the value.
fn split_header(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|&b| b == b':')?;
    let value = line[colon + 1..].trim_ascii();
    Some((&line[..colon], value))
}

fn parse_len(value: &[u8]) -> Result<usize, Malformed> {
    if value.is_empty() || value.len() > 12 || !value.iter().all(u8::is_ascii_digit) {
        return Err(Malformed("bad Content-Length"));
    }
    Ok(value
        .iter()
        .fold(0usize, |n, &d| n * 10 + usize::from(d - b'0')))
}

/// Parses the request at the start of `buf`. `Ok(None)` means "need more
/// bytes". A body is honoured through `Content-Length` so that a POST does
/// not desynchronise the stream; chunked requests are refused.
pub fn parse_request(buf: &[u8]) -> Result<Option<Request>, Malformed> {
    let Some(end) = head_end(buf) else {
        return Ok(None);
    };
    let head = &buf[..end];
    let start_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    // HTTP/1.0 closes by default unless it says keep-alive.
    let mut close = start_line.trim_ascii_end().ends_with(b"HTTP/1.0");
    let mut body = 0;
    for line in header_lines(head) {
        let Some((name, value)) = split_header(line) else {
            return Err(Malformed("header line without colon"));
        };
        if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    close = false;
                }
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            body = parse_len(value)?;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err(Malformed("chunked requests are not supported"));
        }
    }
    let len = end + body;
    if buf.len() < len {
        return Ok(None);
    }
    Ok(Some(Request { len, close }))
}

/// Total length (head + body) of the response at the start of `buf`, once
/// its head is complete. The target server always sends `Content-Length`;
/// a response without one is reported rather than guessed at.
pub fn response_len(buf: &[u8]) -> Result<Option<usize>, Malformed> {
    let Some(end) = head_end(buf) else {
        return Ok(None);
    };
    if !buf.starts_with(b"HTTP/1.") {
        return Err(Malformed("response does not start with HTTP/1.x"));
    }
    for line in header_lines(&buf[..end]) {
        if let Some((name, value)) = split_header(line) {
            if name.eq_ignore_ascii_case(b"content-length") {
                return Ok(Some(end + parse_len(value)?));
            }
        }
    }
    Err(Malformed("response without Content-Length"))
}

/// Whether a response head announces that the sender closes the
/// connection after it (`Connection: close`, or HTTP/1.0 without
/// `keep-alive`). Through a forwarding HTTP proxy this tells the client to
/// reconnect instead of counting a broken connection.
pub fn response_closes(head: &[u8]) -> bool {
    let mut close = head.starts_with(b"HTTP/1.0");
    for line in header_lines(head) {
        if let Some((name, value)) = split_header(line) {
            if name.eq_ignore_ascii_case(b"connection")
                || name.eq_ignore_ascii_case(b"proxy-connection")
            {
                for token in value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        close = false;
                    }
                }
            }
        }
    }
    close
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_request_is_complete_and_open() {
        assert_eq!(
            parse_request(REQUEST_KEEPALIVE),
            Ok(Some(Request {
                len: REQUEST_KEEPALIVE.len(),
                close: false
            }))
        );
    }

    #[test]
    fn close_request_is_detected() {
        let r = parse_request(REQUEST_CLOSE).unwrap().unwrap();
        assert!(r.close);
        let r = parse_request(b"GET / HTTP/1.1\r\nconnection: Keep-Alive, CLOSE\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(r.close);
    }

    #[test]
    fn http10_closes_unless_keepalive() {
        assert!(
            parse_request(b"GET / HTTP/1.0\r\n\r\n")
                .unwrap()
                .unwrap()
                .close
        );
        let r = parse_request(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!r.close);
    }

    #[test]
    fn partial_and_pipelined() {
        assert_eq!(parse_request(&REQUEST_KEEPALIVE[..10]), Ok(None));
        let mut two = REQUEST_KEEPALIVE.to_vec();
        two.extend_from_slice(REQUEST_CLOSE);
        let first = parse_request(&two).unwrap().unwrap();
        assert_eq!(first.len, REQUEST_KEEPALIVE.len());
        let second = parse_request(&two[first.len..]).unwrap().unwrap();
        assert!(second.close);
    }

    #[test]
    fn body_is_skipped() {
        let req = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse_request(&req[..req.len() - 1]), Ok(None));
        assert_eq!(parse_request(req).unwrap().unwrap().len, req.len());
        assert!(parse_request(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n").is_err());
    }

    #[test]
    fn response_lengths() {
        assert_eq!(
            response_len(RESPONSE_KEEPALIVE),
            Ok(Some(RESPONSE_KEEPALIVE.len()))
        );
        assert_eq!(response_len(RESPONSE_CLOSE), Ok(Some(RESPONSE_CLOSE.len())));
        assert_eq!(response_len(&RESPONSE_CLOSE[..20]), Ok(None));
        assert!(response_len(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(response_len(b"SSH-2.0\r\n\r\n").is_err());
    }

    #[test]
    fn response_close_detection() {
        assert!(!response_closes(RESPONSE_KEEPALIVE));
        assert!(response_closes(RESPONSE_CLOSE));
        assert!(response_closes(
            b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!response_closes(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n"
        ));
        assert!(response_closes(
            b"HTTP/1.1 200 OK\r\nProxy-Connection: close\r\n\r\n"
        ));
    }
}
