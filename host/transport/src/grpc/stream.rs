//! One tunnel call as a byte stream: each write is a `Chunk` message on
//! the call's HTTP/2 stream, each message read gives its data.
//!
//! What a call holds, whatever its peer does: received and not yet read,
//! the HTTP/2 stream window ([`super::STREAM_WINDOW`]) plus one message
//! being gathered (at most [`MAX_RECV_MESSAGE`]); to send, one message of
//! at most [`MAX_WRITE`] bytes of data: a write waits until the peer's
//! window takes the previous one, so a peer that never reads holds the
//! writer, not memory.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use h2::{client::ResponseFuture, Reason, RecvStream, SendStream};
use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use gost_proto::grpc::{self, status, MessageError, MAX_RECV_MESSAGE};

/// The most data one write puts in a message.
pub const MAX_WRITE: usize = 32 * 1024;

/// Which end of the call this is: the client ends its half with an empty
/// `END_STREAM` data frame, the server with the status trailers.
pub enum Side {
    Client {
        response: Option<ResponseFuture>,
    },
    /// `report` takes the messages refused, for the service to count.
    Server {
        report: Report,
    },
}

/// Where the server side reports what it refused: the session's queue
/// of streams, which the service counts an error from.
pub type Report = tokio::sync::mpsc::Sender<io::Result<crate::Opened>>;

/// Counts the calls alive on a connection, for the keep-alive and the
/// idle timeout.
#[derive(Debug, Default)]
pub struct Active(AtomicUsize);

impl Active {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

struct ActiveGuard(Arc<Active>);

impl ActiveGuard {
    fn new(a: Arc<Active>) -> Self {
        a.0.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(a)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct CallStream {
    side: Side,
    recv: Option<RecvStream>,
    send: SendStream<Bytes>,
    /// Received bytes, up to the end of the next message.
    inbuf: BytesMut,
    /// Data of the last message, not yet read.
    out: Bytes,
    /// The message being sent, not yet taken by the peer's window.
    pending: Bytes,
    read_done: bool,
    write_done: bool,
    _active: ActiveGuard,
}

fn h2_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        return e
            .into_io()
            .unwrap_or_else(|| io::Error::other("grpc: I/O error"));
    }
    let kind = match e.reason() {
        Some(Reason::CANCEL) | Some(Reason::NO_ERROR) => io::ErrorKind::ConnectionReset,
        _ => io::ErrorKind::ConnectionAborted,
    };
    io::Error::new(kind, format!("grpc: {e}"))
}

fn bad_message(e: MessageError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("grpc: {e}"))
}

/// The status in a response's trailers (or a trailers-only response's
/// headers); a non-zero one is the call's error.
pub fn check_status(headers: &HeaderMap) -> io::Result<()> {
    let Some(code) = headers.get("grpc-status") else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "grpc: call ended without a grpc-status",
        ));
    };
    let code = code.to_str().ok().and_then(|c| c.parse::<u32>().ok());
    match code {
        Some(status::OK) => Ok(()),
        Some(status::CANCELLED) => Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "grpc: call cancelled by the peer",
        )),
        Some(c) => {
            let msg = headers
                .get("grpc-message")
                .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
                .unwrap_or_default();
            Err(io::Error::other(format!(
                "grpc: status {c}: {}",
                gost_core::escape::esc(&msg)
            )))
        }
        None => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "grpc: grpc-status is not a number",
        )),
    }
}

/// The trailers that end a call with `code`.
pub fn status_trailers(code: u32, msg: &str) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", http::HeaderValue::from(code));
    if !msg.is_empty() {
        if let Ok(v) = http::HeaderValue::from_str(&grpc::encode_grpc_message(msg)) {
            t.insert("grpc-message", v);
        }
    }
    t
}

impl CallStream {
    pub fn new(
        side: Side,
        recv: Option<RecvStream>,
        send: SendStream<Bytes>,
        active: Arc<Active>,
    ) -> Self {
        CallStream {
            side,
            recv,
            send,
            inbuf: BytesMut::new(),
            out: Bytes::new(),
            pending: Bytes::new(),
            read_done: false,
            write_done: false,
            _active: ActiveGuard::new(active),
        }
    }

    /// Ends the call after a message we cannot take: the server answers
    /// with the status grpc-go gives, the client cancels.
    fn refuse(&mut self, e: &MessageError) {
        let code = match e {
            MessageError::TooLarge { .. } => status::RESOURCE_EXHAUSTED,
            _ => status::INTERNAL,
        };
        self.read_done = true;
        self.write_done = true;
        match &self.side {
            Side::Server { report } => {
                let _ = report.try_send(Err(bad_message(e.clone())));
                if self
                    .send
                    .send_trailers(status_trailers(code, &e.to_string()))
                    .is_err()
                {
                    self.send.send_reset(Reason::CANCEL);
                }
            }
            Side::Client { .. } => self.send.send_reset(Reason::CANCEL),
        }
    }

    /// The next message's data into `out`; `false` at the end of the call.
    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        loop {
            match grpc::message_len(&self.inbuf, MAX_RECV_MESSAGE) {
                Ok(Some(len)) if self.inbuf.len() >= grpc::PREFIX_LEN + len => {
                    let mut msg = self.inbuf.split_to(grpc::PREFIX_LEN + len).freeze();
                    msg.advance(grpc::PREFIX_LEN);
                    match grpc::decode_chunk(&msg) {
                        Ok(r) => {
                            self.out = msg.slice(r);
                            return Poll::Ready(Ok(true));
                        }
                        Err(e) => {
                            self.refuse(&e);
                            return Poll::Ready(Err(bad_message(e)));
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    self.refuse(&e);
                    return Poll::Ready(Err(bad_message(e)));
                }
            }
            if let Side::Client { response } = &mut self.side {
                if let Some(fut) = response {
                    let resp =
                        ready!(std::future::Future::poll(Pin::new(fut), cx)).map_err(h2_io)?;
                    *response = None;
                    let (parts, body) = resp.into_parts();
                    if parts.status != http::StatusCode::OK {
                        return Poll::Ready(Err(io::Error::other(format!(
                            "grpc: HTTP status {}",
                            parts.status
                        ))));
                    }
                    if parts.headers.contains_key("grpc-status") {
                        // A trailers-only answer: the call ended at once.
                        check_status(&parts.headers)?;
                        return Poll::Ready(Ok(false));
                    }
                    self.recv = Some(body);
                }
            }
            let Some(recv) = self.recv.as_mut() else {
                return Poll::Ready(Ok(false));
            };
            match ready!(recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = recv.flow_control().release_capacity(data.len());
                    self.inbuf.extend_from_slice(&data);
                }
                Some(Err(e)) => return Poll::Ready(Err(h2_io(e))),
                None => {
                    if !self.inbuf.is_empty() {
                        let e = MessageError::Truncated;
                        self.refuse(&e);
                        return Poll::Ready(Err(bad_message(e)));
                    }
                    if let Side::Client { .. } = self.side {
                        match ready!(recv.poll_trailers(cx)).map_err(h2_io)? {
                            Some(t) => check_status(&t)?,
                            None => {
                                return Poll::Ready(Err(io::Error::new(
                                    io::ErrorKind::InvalidData,
                                    "grpc: call ended without trailers",
                                )))
                            }
                        }
                    }
                    return Poll::Ready(Ok(false));
                }
            }
        }
    }

    /// Sends what is pending as the peer's window allows.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            self.send.reserve_capacity(self.pending.len());
            match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(0)) => continue,
                Some(Ok(n)) => {
                    let part = self.pending.split_to(n.min(self.pending.len()));
                    self.send.send_data(part, false).map_err(h2_io)?;
                }
                Some(Err(e)) => return Poll::Ready(Err(h2_io(e))),
                None => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "grpc: call closed",
                    )))
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for CallStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while this.out.is_empty() {
            if this.read_done || !ready!(this.poll_message(cx))? {
                this.read_done = true;
                return Poll::Ready(Ok(()));
            }
        }
        let n = this.out.len().min(buf.remaining());
        buf.put_slice(&this.out.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for CallStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.write_done {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "grpc: call closed for writing",
            )));
        }
        ready!(this.poll_pending(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(MAX_WRITE);
        let mut msg = Vec::with_capacity(grpc::chunk_message_len(n));
        grpc::encode_chunk(&buf[..n], &mut msg);
        this.pending = Bytes::from(msg);
        // Start sending now; what the window does not take yet goes with
        // the next write or flush.
        if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_pending(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.write_done {
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_pending(cx))?;
        this.write_done = true;
        match this.side {
            Side::Client { .. } => this.send.send_data(Bytes::new(), true),
            Side::Server { .. } => this.send.send_trailers(status_trailers(status::OK, "")),
        }
        .map_err(h2_io)?;
        Poll::Ready(Ok(()))
    }
}

impl Drop for CallStream {
    /// A call dropped before its end is cancelled, as GOST's dialer does
    /// on close; the server ends its half with a status first and resets
    /// the client's half with `NO_ERROR`, as grpc-go does.
    fn drop(&mut self) {
        let reason = match self.side {
            Side::Server { .. } => {
                if !self.write_done {
                    let _ = self.send.send_trailers(status_trailers(status::OK, ""));
                }
                Reason::NO_ERROR
            }
            Side::Client { .. } => Reason::CANCEL,
        };
        if !self.read_done {
            self.send.send_reset(reason);
        }
    }
}
