//! The client connection as a handler sees it during a protocol handshake:
//! a TCP stream whose reads and writes count into the service's stats, so
//! `inputBytes`/`outputBytes` include handshake bytes exactly as GOST's
//! stats wrapper counts every byte on the client connection.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::service::stats::Stats;

#[derive(Debug)]
pub struct ClientStream {
    inner: TcpStream,
    stats: Option<Arc<Stats>>,
}

impl ClientStream {
    pub fn new(inner: TcpStream, stats: Option<Arc<Stats>>) -> Self {
        ClientStream { inner, stats }
    }

    pub fn get_ref(&self) -> &TcpStream {
        &self.inner
    }

    /// Reads what the socket already holds into `buf`'s spare capacity
    /// with one non-blocking recv(2), without waiting for the reactor to
    /// report readiness (a freshly accepted socket has none recorded yet).
    /// `None` when nothing is there yet. For callers whose every wait is
    /// costly, like a wasm guest parked on a fiber.
    pub fn try_read_now(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        match socket2::SockRef::from(&self.inner).recv(buf.spare_capacity_mut()) {
            Ok(n) => {
                // SAFETY: recv(2) initialised the first `n` spare bytes.
                unsafe { buf.set_len(buf.len() + n) };
                if let Some(s) = &self.stats {
                    s.add_input(n as u64);
                }
                Ok(Some(n))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes as much of `data` as the socket takes now, with one
    /// non-blocking send(2); [`Self::try_read_now`]'s counterpart.
    pub fn try_write_now(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = crate::dialer::send_now(&self.inner, data)?;
        if let Some(s) = &self.stats {
            s.add_output(n as u64);
        }
        Ok(n)
    }

    /// The raw stream for the relay phase; the relay counts from there on.
    pub fn into_inner(self) -> TcpStream {
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
        let (mut peer, accepted) = crate::test_util::tcp_pair().await;
        let stats = Arc::new(Stats::default());
        let mut c = ClientStream::new(accepted, Some(stats.clone()));
        let mut buf = Vec::with_capacity(16);
        assert_eq!(c.try_read_now(&mut buf).unwrap(), None);
        peer.write_all(b"abc").await.unwrap();
        // Loopback delivers within the peer's send; the wait only guards a
        // slow machine, it is not what the read relies on.
        c.get_ref().readable().await.unwrap();
        assert_eq!(c.try_read_now(&mut buf).unwrap(), Some(3));
        assert_eq!(buf, b"abc");
        assert_eq!(c.try_write_now(b"xy").unwrap(), 2);
        let mut back = [0u8; 2];
        peer.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"xy");
        drop(peer);
        c.get_ref().readable().await.unwrap();
        buf.clear();
        assert_eq!(c.try_read_now(&mut buf).unwrap(), Some(0));
        let s = stats.snapshot();
        assert_eq!((s.input_bytes, s.output_bytes), (3, 2));
    }
}
