//! One HTTP/2 stream as a byte stream: the bytes of its DATA frames in
//! each direction, as GOST's h2 tunnel and its http2 proxy carry a
//! proxied connection (the request body one way, the response body the
//! other).
//!
//! Flow control bounds the buffering: what the peer sent and we have not
//! read stays within the stream's window (capacity goes back to the peer
//! only as the reader takes the bytes), and a write is sent only as far
//! as the peer has granted capacity, so a peer that never reads stops our
//! writer instead of filling memory.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use h2::{Reason, RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub struct H2Stream {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// Received and not yet read.
    pending: Bytes,
    /// The peer ended its side (END_STREAM), or reset the stream.
    read_done: bool,
    /// We ended our side.
    write_done: bool,
}

impl H2Stream {
    pub fn new(send: SendStream<Bytes>, recv: RecvStream) -> Self {
        H2Stream {
            send,
            recv,
            pending: Bytes::new(),
            read_done: false,
            write_done: false,
        }
    }
}

/// An HTTP/2 error as an I/O error; a reset from the peer or a closed
/// connection reads as a disconnect, not as a fault.
pub fn h2_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        return e.into_io().unwrap_or_else(|| io::Error::other("h2: i/o"));
    }
    // The peer's reset or GOAWAY, whatever its reason, is the peer going
    // away; an error we detected in what the peer sent is its fault.
    let kind = match e.reason() {
        Some(Reason::NO_ERROR) | Some(Reason::CANCEL) => io::ErrorKind::ConnectionReset,
        Some(_) if e.is_remote() => io::ErrorKind::ConnectionReset,
        _ => io::ErrorKind::InvalidData,
    };
    io::Error::new(kind, format!("h2: {e}"))
}

impl AsyncRead for H2Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.pending.is_empty() {
            if this.read_done {
                return Poll::Ready(Ok(()));
            }
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Release as the bytes are taken, below; an empty
                    // frame carries nothing to release.
                    this.pending = data;
                }
                Some(Err(e)) => {
                    this.read_done = true;
                    // The peer ending its side with a reset after our side
                    // ended is an ordinary close.
                    if e.reason() == Some(Reason::NO_ERROR) {
                        return Poll::Ready(Ok(()));
                    }
                    return Poll::Ready(Err(h2_io(e)));
                }
                None => this.read_done = true,
            }
        }
        let n = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending[..n]);
        this.pending.advance(n);
        let _ = this.recv.flow_control().release_capacity(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.write_done {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "h2: write after shutdown",
            )));
        }
        this.send.reserve_capacity(data.len());
        loop {
            match ready!(this.send.poll_capacity(cx)) {
                Some(Ok(0)) => continue,
                Some(Ok(n)) => {
                    let n = n.min(data.len());
                    this.send
                        .send_data(Bytes::copy_from_slice(&data[..n]), false)
                        .map_err(h2_io)?;
                    return Poll::Ready(Ok(n));
                }
                Some(Err(e)) => return Poll::Ready(Err(h2_io(e))),
                None => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "h2: stream closed",
                    )))
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Data goes to the connection's task as soon as it is sent.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.write_done {
            this.write_done = true;
            // The stream may already be gone (reset by the peer): then
            // there is nothing left to end.
            let _ = this.send.send_data(Bytes::new(), true);
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for H2Stream {
    /// A stream dropped while the peer is still sending is reset, so the
    /// peer learns the connection is gone instead of waiting on it. One
    /// whose peer already ended its side is ended gracefully instead: a
    /// reset would also discard what is still queued for it (a handler
    /// that fails on an empty request would lose the 200 sent before).
    fn drop(&mut self) {
        // A peer that ended its side before we read anything (a request
        // without a body) is done too.
        let read_done = self.read_done || self.recv.is_end_stream();
        if self.write_done {
            if !read_done {
                self.send.send_reset(Reason::CANCEL);
            }
        } else if read_done {
            let _ = self.send.send_data(Bytes::new(), true);
        } else {
            self.send.send_reset(Reason::CANCEL);
        }
    }
}
