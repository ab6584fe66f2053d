//! Buffering around the Shadowsocks server stream, for bulk throughput.
//!
//! The shadowsocks crate reads each AEAD chunk with two exact reads (the
//! 18-byte length, then up to 16 KiB of payload and tag) and returns one
//! chunk per read, so relaying a bulk upload cost two `recvfrom` and one
//! `sendto` per 16 KiB (`strace -c`; see docs/benchmarks.md). Here the
//! encrypted side is read ahead in [`READ_AHEAD`] blocks ([`ReadAhead`])
//! and the decrypted side hands the relay every chunk that is already
//! there in one read ([`Gather`]), so the relay writes them with one call.
//! Neither holds a buffer while the connection waits for bytes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How much of the encrypted stream one read asks for: four chunks.
pub const READ_AHEAD: usize = 64 * 1024;

/// Reads the inner stream in [`READ_AHEAD`] blocks and serves smaller
/// reads from the block. The block is freed whenever the inner stream
/// has nothing to read, so an idle connection holds none.
pub struct ReadAhead<S> {
    inner: S,
    block: Option<Box<[u8]>>,
    pos: usize,
    end: usize,
}

impl<S> ReadAhead<S> {
    pub fn new(inner: S) -> Self {
        ReadAhead {
            inner,
            block: None,
            pos: 0,
            end: 0,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner stream; bytes read ahead and not yet served are lost
    /// (only a connection being dropped is unwrapped).
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos == this.end {
            if buf.remaining() >= READ_AHEAD {
                this.block = None;
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let block = this
                .block
                .get_or_insert_with(|| vec![0u8; READ_AHEAD].into_boxed_slice());
            let mut rb = ReadBuf::new(block);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    this.pos = 0;
                    this.end = rb.filled().len();
                    if this.end == 0 {
                        this.block = None;
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Ready(Err(e)) => {
                    this.block = None;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => {
                    this.block = None;
                    return Poll::Pending;
                }
            }
        }
        let block = this.block.as_ref().expect("a block holds unread bytes");
        let n = (this.end - this.pos).min(buf.remaining());
        buf.put_slice(&block[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Fills a read with everything the inner stream has ready (several
/// decrypted chunks), not one chunk. An error met after some bytes is
/// kept for the next read, so those bytes are relayed first.
pub struct Gather<S> {
    inner: S,
    failed: Option<io::Error>,
}

impl<S> Gather<S> {
    pub fn new(inner: S) -> Self {
        Gather {
            inner,
            failed: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Gather<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(e) = this.failed.take() {
            return Poll::Ready(Err(e));
        }
        let start = buf.filled().len();
        loop {
            let before = buf.filled().len();
            match Pin::new(&mut this.inner).poll_read(cx, buf) {
                Poll::Ready(Ok(())) => {
                    // The end of the stream, or a full buffer.
                    if buf.filled().len() == before || buf.remaining() == 0 {
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Ready(Err(e)) => {
                    if buf.filled().len() == start {
                        return Poll::Ready(Err(e));
                    }
                    this.failed = Some(e);
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending => {
                    if buf.filled().len() == start {
                        return Poll::Pending;
                    }
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Gather<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
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

    #[tokio::test]
    async fn small_reads_come_from_one_block_and_the_block_goes_when_idle() {
        let (mut a, b) = tokio::io::duplex(256 * 1024);
        let mut r = ReadAhead::new(b);
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        a.write_all(&data).await.unwrap();
        let mut got = Vec::new();
        let mut small = [0u8; 18];
        while got.len() < data.len() {
            let n = r.read(&mut small).await.unwrap();
            got.extend_from_slice(&small[..n]);
        }
        assert_eq!(got, data);
        // Nothing more to read: the next read waits, holding no block.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut rb = ReadBuf::new(&mut small);
        assert!(Pin::new(&mut r).poll_read(&mut cx, &mut rb).is_pending());
        assert!(r.block.is_none());
        drop(a);
        assert_eq!(r.read(&mut small).await.unwrap(), 0);
    }

    /// A reader that gives its parts one read at a time, then an error.
    struct Parts(Vec<&'static [u8]>, bool);

    impl AsyncRead for Parts {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if self.0.is_empty() {
                return if self.1 {
                    Poll::Ready(Err(io::Error::other("bad chunk")))
                } else {
                    Poll::Ready(Ok(()))
                };
            }
            let p = self.0.remove(0);
            let n = p.len().min(buf.remaining());
            buf.put_slice(&p[..n]);
            if n < p.len() {
                self.0.insert(0, &p[n..]);
            }
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn one_read_gathers_every_ready_chunk_and_an_error_waits_its_turn() {
        let mut g = Gather::new(Parts(vec![b"abc", b"def", b"gh"], true));
        let mut buf = [0u8; 64];
        assert_eq!(g.read(&mut buf).await.unwrap(), 8);
        assert_eq!(&buf[..8], b"abcdefgh");
        assert!(g.read(&mut buf).await.is_err());

        let mut g = Gather::new(Parts(vec![b"abc", b"def"], false));
        let mut two = [0u8; 4];
        assert_eq!(g.read(&mut two).await.unwrap(), 4);
        assert_eq!(&two, b"abcd");
        let mut rest = [0u8; 16];
        assert_eq!(g.read(&mut rest).await.unwrap(), 2);
        assert_eq!(g.read(&mut rest).await.unwrap(), 0);
    }
}
