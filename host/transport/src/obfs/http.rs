//! `ohttp`'s two sides over a stream.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use base64::Engine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::preamble_error;
use gost_core::stream::Stream;
use gost_proto::obfs::http::{parse_request, request, response, response_end};

/// The date as Go's `time.RFC1123` writes it for a clock in UTC.
fn go_date() -> String {
    let d = httpdate::fmt_http_date(std::time::SystemTime::now());
    match d.strip_suffix("GMT") {
        Some(head) => format!("{head}UTC"),
        None => d,
    }
}

/// The server side: reads the client's head, answers it, and hands on
/// the stream with the data that came after the head.
pub async fn accept(mut stream: Stream, header: &[(String, String)]) -> io::Result<Stream> {
    let mut buf = Vec::new();
    let req = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            let kind = if buf.is_empty() {
                io::ErrorKind::UnexpectedEof
            } else {
                io::ErrorKind::InvalidData
            };
            return Err(io::Error::new(
                kind,
                "ohttp: connection closed within the preamble",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse_request(&buf) {
            Ok(Some(r)) => break r,
            Ok(None) => {}
            Err(e) => return Err(preamble_error("ohttp", e)),
        }
    };
    if !req.upgrade {
        let _ = stream.write_all(&response(None, &go_date(), header)).await;
        return Err(preamble_error("ohttp", "not a WebSocket upgrade request"));
    }
    let accept = derive_accept_key(req.key.as_bytes());
    stream
        .write_all(&response(Some(&accept), &go_date(), header))
        .await?;
    stream.unread(&buf[req.head_len..]);
    Ok(stream)
}

/// The client side: the head goes out with the first write (or alone,
/// when the client reads first, where GOST's would wait for ever).
pub fn connect(stream: Stream, host: &str, header: &[(String, String)]) -> Stream {
    let ends = stream.endpoints();
    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
    Stream::boxed(
        Client {
            inner: stream,
            head: Some(request(host, &key, header)),
            pending: Vec::new(),
            sent: 0,
            answer: Some(Vec::new()),
            rest: Vec::new(),
            rest_pos: 0,
        },
        ends,
    )
}

/// What one client write may add to the head.
const FIRST_WRITE: usize = 16 * 1024;

struct Client {
    inner: Stream,
    head: Option<Vec<u8>>,
    /// Bytes accepted from the caller, not yet written.
    pending: Vec<u8>,
    sent: usize,
    /// The server's head as it arrives; `None` once it has ended.
    answer: Option<Vec<u8>>,
    /// Data that came after the server's head.
    rest: Vec<u8>,
    rest_pos: usize,
}

impl Client {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.pending.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Client {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        let Some(mut head) = this.head.take() else {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        };
        let n = buf.len().min(FIRST_WRITE);
        head.extend_from_slice(&buf[..n]);
        this.pending = head;
        if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl AsyncRead for Client {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(head) = this.head.take() {
            this.pending = head;
        }
        ready!(this.poll_pending(cx))?;
        while let Some(answer) = this.answer.as_mut() {
            let mut chunk = [0u8; 4096];
            let mut rb = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "ohttp: server closed within its answer",
                )));
            }
            answer.extend_from_slice(rb.filled());
            if let Some(end) = response_end(answer).map_err(|e| preamble_error("ohttp", e))? {
                this.rest = answer.split_off(end);
                this.answer = None;
            }
        }
        if this.rest_pos < this.rest.len() {
            let n = buf.remaining().min(this.rest.len() - this.rest_pos);
            buf.put_slice(&this.rest[this.rest_pos..this.rest_pos + n]);
            this.rest_pos += n;
            if this.rest_pos == this.rest.len() {
                this.rest = Vec::new();
                this.rest_pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}
