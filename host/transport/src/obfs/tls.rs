//! `otls`'s two sides over a stream.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::preamble_error;
use gost_core::stream::Stream;
use gost_proto::obfs::tls::{
    client_hello, data_record, max_hello_payload, parse_client_hello, record_header, server_hello,
    ServerRecords, HANDSHAKE, MAX_DATA, RECORD_HEADER,
};

/// A hello's random: the time in seconds, then 28 random bytes.
fn hello_random() -> [u8; 32] {
    let mut r = [0u8; 32];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32);
    r[..4].copy_from_slice(&now.to_be_bytes());
    r[4..].copy_from_slice(&rand::random::<[u8; 28]>());
    r
}

/// The writing half both sides share: the stream and the record being
/// written to it, which must go out whole before the next.
struct Out {
    inner: Stream,
    pending: Vec<u8>,
    sent: usize,
}

impl Out {
    fn new(inner: Stream) -> Self {
        Out {
            inner,
            pending: Vec::new(),
            sent: 0,
        }
    }

    /// Writes what is pending.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
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

    /// Queues `record`, which carries `n` bytes of the caller's data, and
    /// starts writing it: the caller's write is done once it is queued.
    fn send(&mut self, record: Vec<u8>, n: usize, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.pending = record;
        if let Poll::Ready(Err(e)) = self.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The server side: reads the client's hello; its data is read first,
/// the server's hello goes out before the first data, as GOST sends it.
pub async fn accept(mut stream: Stream) -> io::Result<Stream> {
    let mut head = [0u8; RECORD_HEADER];
    let mut got = 0;
    while got < RECORD_HEADER {
        let n = stream.read(&mut head[got..]).await?;
        if n == 0 {
            let kind = if got == 0 {
                io::ErrorKind::UnexpectedEof
            } else {
                io::ErrorKind::InvalidData
            };
            return Err(io::Error::new(
                kind,
                "otls: connection closed within the hello",
            ));
        }
        got += n;
    }
    let (kind, len) = record_header(&head);
    if kind != HANDSHAKE {
        return Err(preamble_error(
            "otls",
            format!("record type {kind:#04x}, not a handshake"),
        ));
    }
    let mut msg = vec![0u8; len];
    stream
        .read_exact(&mut msg)
        .await
        .map_err(|e| preamble_error("otls", format!("hello truncated: {e}")))?;
    let hello = parse_client_hello(&msg).map_err(|e| preamble_error("otls", e))?;
    let ends = stream.endpoints();
    let mut s = Stream::boxed(
        Server {
            out: Out::new(stream),
            hello: Some(server_hello(&hello_random(), &hello.session_id)),
            first: true,
            head: [0; RECORD_HEADER],
            head_len: 0,
            left: 0,
        },
        ends,
    );
    s.unread(&hello.payload);
    Ok(s)
}

struct Server {
    out: Out,
    /// The ServerHello and ChangeCipherSpec, sent with the first data.
    hello: Option<Vec<u8>>,
    first: bool,
    head: [u8; RECORD_HEADER],
    head_len: usize,
    /// Bytes left of the record being read.
    left: usize,
}

impl AsyncRead for Server {
    /// Each record's body is data, whatever its type, as GOST reads it.
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.left > 0 {
                let want = this.left.min(buf.remaining());
                let dst = buf.initialize_unfilled_to(want);
                let mut rb = ReadBuf::new(dst);
                ready!(Pin::new(&mut this.out.inner).poll_read(cx, &mut rb))?;
                let n = rb.filled().len();
                if n == 0 {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "otls: connection closed within a record",
                    )));
                }
                buf.advance(n);
                this.left -= n;
                return Poll::Ready(Ok(()));
            }
            let mut rb = ReadBuf::new(&mut this.head[this.head_len..]);
            ready!(Pin::new(&mut this.out.inner).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            if n == 0 {
                if this.head_len == 0 {
                    return Poll::Ready(Ok(()));
                }
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "otls: connection closed within a record header",
                )));
            }
            this.head_len += n;
            if this.head_len == RECORD_HEADER {
                this.head_len = 0;
                this.left = record_header(&this.head).1;
            }
        }
    }
}

impl AsyncWrite for Server {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.out.poll_drain(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(MAX_DATA);
        let mut record = this.hello.take().unwrap_or_default();
        record.extend_from_slice(&data_record(this.first, &buf[..n]));
        this.first = false;
        this.out.send(record, n, cx)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.out.poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.out.poll_shutdown(cx)
    }
}

/// The client side: the first write is the hello carrying the data.
pub fn connect(stream: Stream, host: &str) -> Stream {
    let ends = stream.endpoints();
    Stream::boxed(
        Client {
            out: Out::new(stream),
            host: host.to_string(),
            hello_sent: false,
            records: ServerRecords::default(),
            data: Vec::new(),
            data_pos: 0,
        },
        ends,
    )
}

struct Client {
    out: Out,
    host: String,
    hello_sent: bool,
    records: ServerRecords,
    /// Data taken out of the server's records, not yet read.
    data: Vec<u8>,
    data_pos: usize,
}

impl Client {
    fn hello(&mut self, payload: &[u8]) -> Vec<u8> {
        self.hello_sent = true;
        let session_id = rand::random::<[u8; 32]>();
        client_hello(&hello_random(), &session_id, &self.host, payload)
    }
}

impl AsyncWrite for Client {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.out.poll_drain(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let (record, n) = if this.hello_sent {
            let n = buf.len().min(MAX_DATA);
            (data_record(false, &buf[..n]), n)
        } else {
            let n = buf.len().min(max_hello_payload(&this.host));
            (this.hello(&buf[..n]), n)
        };
        this.out.send(record, n, cx)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.out.poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.out.poll_shutdown(cx)
    }
}

impl AsyncRead for Client {
    /// Reading before the first write sends a hello without data (GOST's
    /// client would wait for a write).
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.hello_sent {
            this.out.pending = this.hello(&[]);
        }
        ready!(this.out.poll_drain(cx))?;
        while this.data_pos == this.data.len() {
            this.data.clear();
            this.data_pos = 0;
            let mut chunk = [0u8; 8192];
            let mut rb = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.out.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            this.records
                .feed(rb.filled(), &mut this.data)
                .map_err(|e| preamble_error("otls", e))?;
        }
        let n = buf.remaining().min(this.data.len() - this.data_pos);
        buf.put_slice(&this.data[this.data_pos..this.data_pos + n]);
        this.data_pos += n;
        Poll::Ready(Ok(()))
    }
}
