//! The client connection as a handler sees it during a protocol handshake:
//! a stream whose reads and writes count into the service's stats, so
//! `inputBytes`/`outputBytes` include handshake bytes exactly as GOST's
//! stats wrapper counts every byte on the client connection.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use gost_core::stats::Stats;
use gost_core::stream::Stream;

#[derive(Debug)]
pub struct ClientStream {
    inner: Stream,
    stats: Option<Arc<Stats>>,
}

impl ClientStream {
    pub fn new(inner: Stream, stats: Option<Arc<Stats>>) -> Self {
        ClientStream { inner, stats }
    }

    pub fn get_ref(&self) -> &Stream {
        &self.inner
    }

    /// The stream itself, for reading ahead without counting: bytes read
    /// ahead are counted when they are read for real.
    pub fn get_mut(&mut self) -> &mut Stream {
        &mut self.inner
    }

    /// Reads what is there now (see [`Stream::try_read_now`]), counted.
    pub fn try_read_now(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        let r = self.inner.try_read_now(buf)?;
        if let (Some(n), Some(s)) = (r, &self.stats) {
            s.add_input(n as u64);
        }
        Ok(r)
    }

    /// Writes what the stream takes now (see [`Stream::try_write_now`]),
    /// counted.
    pub fn try_write_now(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.try_write_now(data)?;
        if let Some(s) = &self.stats {
            s.add_output(n as u64);
        }
        Ok(n)
    }

    /// Writes all of `data` and flushes it, counted: a boxed transport
    /// may hold a handshake reply until flushed.
    pub async fn send(&mut self, data: &[u8]) -> io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.write_all(data).await?;
        self.flush().await
    }

    /// The raw stream for the relay phase; the relay counts from there on.
    pub fn into_inner(self) -> Stream {
        self.inner
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            if let Some(s) = &self.stats {
                s.add_input(n as u64);
            }
        }
        r
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &r {
            if let Some(s) = &self.stats {
                s.add_output(*n as u64);
            }
        }
        r
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

    /// The optimistic calls take what the socket holds at once, count it
    /// like the async ones, and say "nothing yet" instead of waiting.
    #[tokio::test]
    async fn try_now_reads_and_writes_without_waiting_and_counts() {
        let (mut peer, accepted) = gost_core::test_util::tcp_pair().await;
        let stats = Arc::new(Stats::default());
        let mut c = ClientStream::new(accepted.into(), Some(stats.clone()));
        let mut buf = Vec::with_capacity(16);
        assert_eq!(c.try_read_now(&mut buf).unwrap(), None);
        peer.write_all(b"abc").await.unwrap();
        // Loopback delivers within the peer's send; the wait only guards a
        // slow machine, it is not what the read relies on.
        c.get_ref().tcp().unwrap().readable().await.unwrap();
        assert_eq!(c.try_read_now(&mut buf).unwrap(), Some(3));
        assert_eq!(buf, b"abc");
        assert_eq!(c.try_write_now(b"xy").unwrap(), 2);
        let mut back = [0u8; 2];
        peer.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"xy");
        drop(peer);
        c.get_ref().tcp().unwrap().readable().await.unwrap();
        buf.clear();
        assert_eq!(c.try_read_now(&mut buf).unwrap(), Some(0));
        let s = stats.snapshot();
        assert_eq!((s.input_bytes, s.output_bytes), (3, 2));
    }
}
