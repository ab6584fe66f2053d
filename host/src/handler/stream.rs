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
