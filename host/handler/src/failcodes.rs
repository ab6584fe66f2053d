//! The response side of GOST's node `http.failCodes` for a sniffed HTTP
//! connection: the node's responses pass through untouched while their
//! status lines are read; a status in the node's list marks the node
//! failed and, as GOST closes the client connection there, ends the
//! upstream side after that response, so the client's next request
//! starts a new connection that the selector routes to another node.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use gost_chain::chain::Node;
use gost_core::stream::Stream;
use gost_proto::http1::{Decoder, Framing};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A response head longer than this is not looked at: its status passes
/// unchecked and the watch stops.
const MAX_HEAD: usize = 16 * 1024;

enum State {
    /// Gathering a response head.
    Head(Vec<u8>),
    /// Following a response's body; `last` when its status matched.
    Body {
        dec: Decoder,
        last: bool,
        pending: Vec<u8>,
    },
    /// Nothing more is looked at (an until-close body, an unparsable head).
    Passing,
    /// The matched response has gone by: the upstream reads as closed.
    Ended,
}

pub struct FailCodeWatch {
    inner: Stream,
    node: Arc<Node>,
    service: Arc<str>,
    /// The first request was a HEAD: its response has no body. Later
    /// requests on the connection are not parsed, so a later HEAD
    /// response with a length puts the watch off its track, which only
    /// makes it miss statuses, never change bytes before a match.
    head_request: bool,
    state: State,
}

impl FailCodeWatch {
    pub fn new(inner: Stream, node: Arc<Node>, service: Arc<str>, method: &str) -> Self {
        FailCodeWatch {
            inner,
            node,
            service,
            head_request: method.eq_ignore_ascii_case("HEAD"),
            state: State::Head(Vec::new()),
        }
    }

    /// Looks at `new` (bytes just read); returns how many of them go to
    /// the client (fewer when the matched response ends inside them).
    fn observe(&mut self, new: &[u8]) -> usize {
        let mut at = 0;
        while at < new.len() {
            match &mut self.state {
                State::Passing => return new.len(),
                State::Ended => return at,
                State::Body { dec, last, pending } => {
                    // `pending` holds a chunk line's start from earlier
                    // reads (already passed on): the decoder wants it
                    // again with what follows.
                    let earlier = pending.len();
                    pending.extend_from_slice(&new[at..]);
                    let used = match dec.advance(pending) {
                        Ok(n) => n,
                        Err(_) => {
                            self.state = State::Passing;
                            return new.len();
                        }
                    };
                    if !dec.done() {
                        if dec.ends_at_eof() {
                            self.state = State::Passing;
                        } else {
                            pending.drain(..used);
                        }
                        return new.len();
                    }
                    // The body ended inside this read.
                    at += used.saturating_sub(earlier);
                    self.state = if *last {
                        State::Ended
                    } else {
                        State::Head(Vec::new())
                    };
                }
                State::Head(acc) => {
                    let before = acc.len();
                    acc.extend_from_slice(&new[at..]);
                    match self.head(before) {
                        Some(consumed) => at += consumed,
                        None => return new.len(),
                    }
                }
            }
        }
        at
    }

    /// Parses the gathered head whose first `before` bytes came from
    /// earlier reads; returns how many of the newly added bytes the head
    /// took, or `None` when every new byte was taken (head incomplete).
    fn head(&mut self, before: usize) -> Option<usize> {
        let State::Head(acc) = &mut self.state else {
            return None;
        };
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(acc) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if acc.len() <= MAX_HEAD => return None,
            _ => {
                self.state = State::Passing;
                return None;
            }
        };
        let status = resp.code.unwrap_or(0);
        let fields: Vec<(String, Vec<u8>)> = resp
            .headers
            .iter()
            .map(|h| (h.name.to_string(), h.value.to_vec()))
            .collect();
        let taken = len - before;
        if (100..200).contains(&status) {
            self.state = State::Head(Vec::new());
            return Some(taken);
        }
        let matched = self.node.fail_codes.matches(status);
        if matched {
            self.node.marker.mark();
            tracing::warn!(service = %self.service, node = %self.node.name, status, "failCodes matched: node marked failed");
        }
        let no_body = std::mem::take(&mut self.head_request) || status == 204 || status == 304;
        let framing = match super::http::body_framing(&fields) {
            _ if no_body => Framing::Length(0),
            Ok(Some(f)) => f,
            Ok(None) => Framing::UntilClose,
            Err(_) => {
                self.state = State::Passing;
                return Some(taken);
            }
        };
        let dec = Decoder::new(framing);
        self.state = if dec.done() && matched {
            State::Ended
        } else if dec.done() {
            State::Head(Vec::new())
        } else if framing == Framing::UntilClose {
            State::Passing
        } else {
            State::Body {
                dec,
                last: matched,
                pending: Vec::new(),
            }
        };
        Some(taken)
    }
}

impl AsyncRead for FailCodeWatch {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if matches!(self.state, State::Ended) {
            return Poll::Ready(Ok(()));
        }
        let start = buf.filled().len();
        std::task::ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if matches!(self.state, State::Passing) {
            return Poll::Ready(Ok(()));
        }
        let keep = self.observe(&buf.filled()[start..]);
        buf.set_filled(start + keep);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for FailCodeWatch {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn watched(codes: &str, method: &str, from_node: &[u8]) -> (Vec<u8>, u64) {
        let node = Arc::new(Node {
            name: "n".into(),
            fail_codes: gost_chain::chain::failcodes::FailCodes::parse(codes).unwrap(),
            ..Default::default()
        });
        let (a, mut b) = tokio::io::duplex(1 << 16);
        b.write_all(from_node).await.unwrap();
        drop(b);
        let mut w = FailCodeWatch::new(
            Stream::boxed(a, Default::default()),
            Arc::clone(&node),
            "s".into(),
            method,
        );
        let mut got = Vec::new();
        // Small reads: heads and bodies arrive in pieces.
        let mut one = [0u8; 7];
        loop {
            let n = w.read(&mut one).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&one[..n]);
        }
        (got, node.marker.count())
    }

    #[tokio::test]
    async fn a_matched_status_marks_the_node_and_ends_after_its_response() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".as_slice();
        let cont = b"HTTP/1.1 100 Continue\r\n\r\n".as_slice();
        let busy =
            b"HTTP/1.1 429 Too Many\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                .as_slice();
        let after = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".as_slice();
        let all = [ok, cont, busy, after].concat();
        let (got, marks) = watched("429", "GET", &all).await;
        assert_eq!(got, [ok, cont, busy].concat());
        assert_eq!(marks, 1);
        // Nothing listed matched: every byte passes, nothing is marked.
        let (got, marks) = watched("5xx", "GET", &all).await;
        assert_eq!((got, marks), (all.clone(), 0));
        // A HEAD response has no body whatever its length says.
        let head = b"HTTP/1.1 503 Busy\r\nContent-Length: 9\r\n\r\n".as_slice();
        let (got, marks) = watched("5xx", "HEAD", &[head, after].concat()).await;
        assert_eq!((got.as_slice(), marks), (head, 1));
        // A body until close passes whole, and what is not HTTP too.
        let close = b"HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 429 x\r\n\r\n".as_slice();
        assert_eq!(watched("429", "GET", close).await, (close.to_vec(), 0));
        assert_eq!(
            watched("429", "GET", b"\x00\x01").await,
            (b"\x00\x01".to_vec(), 0)
        );
    }
}
