//! The one stream type that handlers, connectors and the relay see, for
//! every transport: plain TCP keeps its own variant so the relay can use
//! readiness-driven reads and splice(2) on it; every other transport (TLS,
//! WebSocket, later multiplexed and QUIC streams) is boxed.
//!
//! Protocol detection reads ahead into a rewind buffer and hands the bytes
//! back (GOST's `bufio.Reader.Peek`): `MSG_PEEK` only works on a kernel
//! socket, not on decrypted or de-framed bytes. The next reads return the
//! rewound bytes first, whoever reads.

use std::any::Any;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// A transport's stream above TCP: anything that reads and writes.
pub trait Io: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Io for T {}

/// A connection's two socket addresses. A transport layered over a stream
/// (TLS over TCP, WebSocket over TLS) keeps the ones of the socket at the
/// bottom, which SOCKS BIND and UDP associations answer with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Endpoints {
    pub local: Option<SocketAddr>,
    pub peer: Option<SocketAddr>,
}

fn no_address() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "the stream has no socket address (an in-memory stream)",
    )
}

/// A boxed transport with its addresses in the same allocation, so the
/// stream stays as small as a TCP one.
struct Layered<T: ?Sized> {
    ends: Endpoints,
    /// What the transport hands the stream's user besides bytes (see
    /// [`Stream::boxed_with`]).
    attached: Option<Box<dyn Any + Send + Sync>>,
    io: T,
}

enum Transport {
    Tcp(TcpStream),
    Boxed(Box<Layered<dyn Io>>),
}

/// Bytes read ahead and not yet read by the stream's user.
struct Rewind {
    buf: Vec<u8>,
    pos: usize,
}

pub struct Stream {
    io: Transport,
    /// Boxed and absent on the common path, so a relayed connection pays
    /// one pointer for it.
    rewind: Option<Box<Rewind>>,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.io {
            Transport::Tcp(_) => "tcp",
            Transport::Boxed(_) => "boxed",
        };
        f.debug_struct("Stream")
            .field("transport", &kind)
            .field("rewound", &self.rewound().len())
            .finish()
    }
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Self {
        Stream {
            io: Transport::Tcp(s),
            rewind: None,
        }
    }
}

impl Stream {
    /// A transport's stream over the connection whose addresses `ends`
    /// are (see [`Stream::endpoints`]).
    pub fn boxed(io: impl Io, ends: Endpoints) -> Self {
        Stream {
            io: Transport::Boxed(Box::new(Layered {
                ends,
                attached: None,
                io,
            })),
            rewind: None,
        }
    }

    /// A boxed stream carrying a value for its user, as GOST's
    /// connections carry a context: the `http2` listener hands its
    /// handler the HTTP/2 request to answer, the `http2` dialer its
    /// connector the HTTP/2 connection to send a `CONNECT` on, the `sshd`
    /// listener its handler the target of a `direct-tcpip` channel. None
    /// of these is bytes, so they cannot travel in the stream. A handler
    /// or connector written for another transport sees the bytes only.
    pub fn boxed_with(io: impl Io, ends: Endpoints, attached: Box<dyn Any + Send + Sync>) -> Self {
        Stream {
            io: Transport::Boxed(Box::new(Layered {
                ends,
                attached: Some(attached),
                io,
            })),
            rewind: None,
        }
    }

    /// The value [`Stream::boxed_with`] attached, when it is a `T`.
    pub fn attached<T: Any>(&self) -> Option<&T> {
        match &self.io {
            Transport::Boxed(b) => b.attached.as_ref()?.downcast_ref::<T>(),
            Transport::Tcp(_) => None,
        }
    }

    /// Takes the value [`Stream::boxed_with`] attached, when it is a `T`.
    pub fn take_attached<T: Any>(&mut self) -> Option<Box<T>> {
        let Transport::Boxed(b) = &mut self.io else {
            return None;
        };
        match b.attached.take()?.downcast::<T>() {
            Ok(v) => Some(v),
            Err(other) => {
                b.attached = Some(other);
                None
            }
        }
    }

    /// The TCP socket when the stream is plain TCP. Reading from it
    /// directly skips the rewind buffer: check [`Self::rewound`] first.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match &self.io {
            Transport::Tcp(s) => Some(s),
            Transport::Boxed(_) => None,
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.io {
            Transport::Tcp(s) => s.local_addr(),
            Transport::Boxed(b) => b.ends.local.ok_or_else(no_address),
        }
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match &self.io {
            Transport::Tcp(s) => s.peer_addr(),
            Transport::Boxed(b) => b.ends.peer.ok_or_else(no_address),
        }
    }

    /// The addresses a transport layered over this stream keeps.
    pub fn endpoints(&self) -> Endpoints {
        Endpoints {
            local: self.local_addr().ok(),
            peer: self.peer_addr().ok(),
        }
    }

    /// Bytes read ahead that the next reads return first.
    pub fn rewound(&self) -> &[u8] {
        match &self.rewind {
            Some(r) => &r.buf[r.pos..],
            None => &[],
        }
    }

    /// Hands `bytes` back: the next reads return them before anything
    /// already rewound and before the transport's own bytes.
    pub fn unread(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut buf = Vec::with_capacity(bytes.len() + self.rewound().len());
        buf.extend_from_slice(bytes);
        buf.extend_from_slice(self.rewound());
        self.rewind = Some(Box::new(Rewind { buf, pos: 0 }));
    }

    /// Reads more from the transport into the rewind buffer, until it
    /// holds at most `limit` bytes; the bytes stay unread. Returns how many
    /// arrived: 0 at end of stream, or when the buffer is full.
    pub async fn read_ahead(&mut self, limit: usize) -> io::Result<usize> {
        let held = self.rewound().len();
        if held >= limit {
            return Ok(0);
        }
        let r = self.rewind.get_or_insert_with(|| {
            Box::new(Rewind {
                buf: Vec::new(),
                pos: 0,
            })
        });
        if r.pos > 0 {
            r.buf.drain(..r.pos);
            r.pos = 0;
        }
        let mut buf = std::mem::take(&mut r.buf);
        buf.reserve((limit - held).min(16 * 1024));
        let room = limit - held;
        let res = match &mut self.io {
            Transport::Tcp(s) => (s).take(room as u64).read_buf(&mut buf).await,
            Transport::Boxed(b) => (&mut b.io).take(room as u64).read_buf(&mut buf).await,
        };
        if buf.is_empty() {
            self.rewind = None;
        } else if let Some(r) = &mut self.rewind {
            r.buf = buf;
        }
        res
    }

    /// The socket and whatever was read ahead, when the stream is plain
    /// TCP; the stream as it was otherwise.
    pub fn into_tcp(self) -> Result<(TcpStream, Vec<u8>), Stream> {
        match self {
            Stream {
                io: Transport::Tcp(s),
                rewind,
            } => Ok((s, unread_rest(rewind))),
            other => Err(other),
        }
    }

    /// Writes all of `data` and flushes it. On plain TCP the first try is
    /// a send(2) without asking the reactor (see
    /// [`send_now`]); a boxed transport may buffer, and a
    /// handshake message must go out before its answer is awaited.
    pub async fn write_all_now(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.io {
            Transport::Tcp(s) => write_all(s, data).await,
            Transport::Boxed(b) => {
                b.io.write_all(data).await?;
                b.io.flush().await
            }
        }
    }

    /// Reads what is there now into `buf`'s spare capacity, without
    /// waiting; `None` when nothing is. For callers whose every wait is
    /// costly, like a wasm guest parked on a fiber.
    pub fn try_read_now(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        if let Some(r) = &mut self.rewind {
            let n = (r.buf.len() - r.pos).min(buf.capacity() - buf.len());
            buf.extend_from_slice(&r.buf[r.pos..r.pos + n]);
            r.pos += n;
            if r.pos == r.buf.len() {
                self.rewind = None;
            }
            return Ok(Some(n));
        }
        match &mut self.io {
            Transport::Tcp(s) => match socket2::SockRef::from(&*s).recv(buf.spare_capacity_mut()) {
                Ok(n) => {
                    // SAFETY: recv(2) initialised the first `n` spare bytes.
                    unsafe { buf.set_len(buf.len() + n) };
                    Ok(Some(n))
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    Ok(None)
                }
                Err(e) => Err(e),
            },
            Transport::Boxed(b) => {
                // A poll with a waker that does nothing: a later awaited
                // read polls again with the task's own waker.
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let mut rb = ReadBuf::uninit(buf.spare_capacity_mut());
                match Pin::new(&mut b.io).poll_read(&mut cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        // SAFETY: poll_read initialised the first `n` spare bytes.
                        unsafe { buf.set_len(buf.len() + n) };
                        Ok(Some(n))
                    }
                    Poll::Ready(Err(e)) => Err(e),
                    Poll::Pending => Ok(None),
                }
            }
        }
    }

    /// Writes as much of `data` as plain TCP takes now; a boxed transport
    /// takes nothing here (its writes need a flush, which may wait), so
    /// the caller's awaited write does it.
    pub fn try_write_now(&mut self, data: &[u8]) -> io::Result<usize> {
        match &self.io {
            Transport::Tcp(s) => send_now(s, data),
            Transport::Boxed(_) => Ok(0),
        }
    }
}

fn unread_rest(rewind: Option<Box<Rewind>>) -> Vec<u8> {
    match rewind {
        Some(mut r) => {
            r.buf.drain(..r.pos);
            r.buf
        }
        None => Vec::new(),
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(r) = &mut this.rewind {
            let n = (r.buf.len() - r.pos).min(buf.remaining());
            buf.put_slice(&r.buf[r.pos..r.pos + n]);
            r.pos += n;
            if r.pos == r.buf.len() {
                this.rewind = None;
            }
            return Poll::Ready(Ok(()));
        }
        match &mut this.io {
            Transport::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Boxed(b) => Pin::new(&mut b.io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Transport::Tcp(s) => Pin::new(s).poll_write(cx, data),
            Transport::Boxed(b) => Pin::new(&mut b.io).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Transport::Tcp(s) => Pin::new(s).poll_flush(cx),
            Transport::Boxed(b) => Pin::new(&mut b.io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Transport::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Boxed(b) => Pin::new(&mut b.io).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Transport::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Boxed(b) => Pin::new(&mut b.io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Transport::Tcp(s) => s.is_write_vectored(),
            Transport::Boxed(b) => b.io.is_write_vectored(),
        }
    }
}

/// One non-blocking send(2) of `data`, without asking tokio first; 0 when
/// the socket takes nothing now.
///
/// A socket `connect` returned without a reactor turn has no readiness
/// recorded yet, and tokio's own writes answer "would block" without
/// trying until the next turn reports it writable. A handler writing the
/// first bytes to a fresh dial (or a relay forwarding them) would wait out
/// that turn, holding its buffer meanwhile. An accepted socket is in the
/// same state until its first turn.
pub fn send_now(s: &TcpStream, data: &[u8]) -> io::Result<usize> {
    match socket2::SockRef::from(s).send(data) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(0)
        }
        r => r,
    }
}

/// Writes all of `data` to a socket that may be freshly dialed: [`send_now`]
/// first, then tokio's waiting write for whatever is left.
/// Every first write to an upstream goes through here (a handler's early
/// bytes, a chain node's handshake), so none waits out a reactor turn.
pub async fn write_all(s: &mut TcpStream, data: &[u8]) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    if data.is_empty() {
        return Ok(());
    }
    let sent = send_now(s, data)?;
    s.write_all(&data[sent..]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Read-ahead bytes come back first, to the async reader and to the
    /// optimistic one, then the transport's own.
    #[tokio::test]
    async fn read_ahead_hands_bytes_back_in_order() {
        let (mut peer, s) = crate::test_util::tcp_pair().await;
        let mut s = Stream::from(s);
        peer.write_all(b"hello world").await.unwrap();
        let mut got = 0;
        while got < 5 {
            got += s.read_ahead(5).await.unwrap();
        }
        assert_eq!(s.rewound(), b"hello");
        assert_eq!(s.read_ahead(5).await.unwrap(), 0, "limit reached");
        s.unread(b">");
        let mut buf = [0u8; 3];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b">he");
        let mut v = Vec::with_capacity(2);
        assert_eq!(s.try_read_now(&mut v).unwrap(), Some(2));
        assert_eq!(v, b"ll");
        let mut rest = vec![0u8; 7];
        s.read_exact(&mut rest).await.unwrap();
        assert_eq!(rest, b"o world");
        assert!(s.rewound().is_empty());
    }

    #[tokio::test]
    async fn a_boxed_stream_keeps_what_was_not_read() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut s = Stream::boxed(a, Default::default());
        b.write_all(b"abcdef").await.unwrap();
        s.read_ahead(4).await.unwrap();
        let mut one = [0u8; 1];
        s.read_exact(&mut one).await.unwrap();
        assert_eq!(s.rewound(), b"bcd");
        assert!(s.into_tcp().is_err(), "a boxed stream is not TCP");
    }
}
