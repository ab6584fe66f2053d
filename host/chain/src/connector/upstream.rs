//! A dialed upstream whose first bytes may still be a relay node's
//! response. GOST's relay connector in its default (lazy) mode does not
//! wait for the node's answer, because a GOST relay server holds it back
//! until the target sends something: waiting would dead-lock every
//! protocol where the client speaks first. The answer is read instead just
//! before the first byte from upstream is, and [`Upstream`] is the type
//! that makes every reader do so: it hands out its socket only through
//! [`Upstream::into_parts`] (for readers that take the response off
//! themselves, like the native relay) or after the response is read.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

use gost_core::stream::Stream;

use super::ConnectError;

#[derive(Debug)]
pub struct Upstream {
    stream: Stream,
    response: Option<LazyResponse>,
}

impl Upstream {
    /// A stream with nothing owed on it: a direct dial, or every node's
    /// answer already read.
    pub fn direct(stream: impl Into<Stream>) -> Self {
        Upstream {
            stream: stream.into(),
            response: None,
        }
    }

    /// One more relay response owed, after any already owed (a lazy relay
    /// node behind another answers after it).
    pub(crate) fn owe_response(&mut self) {
        self.response = Some(match self.response.take() {
            Some(owed) => owed.and_one_more(),
            None => LazyResponse::default(),
        });
    }

    /// A stream that reads the owed response, if any, before the first
    /// byte it returns, and writes at once: what a transport's handshake
    /// runs over when a lazy relay node tunnels it to the next node (the
    /// client speaks first there, and the node answers only after the
    /// next node has).
    pub fn into_lazy_stream(self) -> Stream {
        match self.response {
            None => self.stream,
            Some(owed) => {
                let ends = self.stream.endpoints();
                let owed = Owed {
                    stream: self.stream,
                    owed: Some(owed),
                };
                Stream::boxed(owed, ends)
            }
        }
    }

    /// Puts a protocol layer over the stream, for a connector whose
    /// protocol transforms bytes after its handshake (ss encrypts, sni
    /// rewrites the first message): the layer gets the lazy stream, so a
    /// response still owed by an earlier node is read before the layer's
    /// first byte.
    pub(crate) fn wrap(&mut self, layer: impl FnOnce(Stream) -> Stream) {
        // Stands in for the stream while it is moved into the layer.
        let gone = Stream::boxed(tokio::io::empty(), Default::default());
        let up = std::mem::replace(self, Upstream::direct(gone));
        *self = Upstream::direct(layer(up.into_lazy_stream()));
    }

    /// Hands back bytes a handshake read past the node's reply (a plugin
    /// connector's): the next reads return them first. Any response still
    /// owed is read before, since it comes first on the wire.
    pub async fn unread(&mut self, bytes: &[u8]) -> Result<(), ConnectError> {
        if !bytes.is_empty() {
            self.settle().await?;
            self.stream.unread(bytes);
        }
        Ok(())
    }

    /// The stream, for a connector that reads what its transport attached
    /// (the sshd connector's SSH session).
    pub(crate) fn stream(&self) -> &Stream {
        &self.stream
    }

    /// The socket and the relay response still to be read off it first.
    pub fn into_parts(self) -> (Stream, Option<LazyResponse>) {
        (self.stream, self.response)
    }

    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.stream.local_addr()
    }

    pub fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.stream.peer_addr()
    }

    /// Reads the owed response, if any; the socket then carries the
    /// target's bytes only.
    pub async fn settle(&mut self) -> Result<(), ConnectError> {
        if let Some(mut r) = self.response.take() {
            std::future::poll_fn(|cx| r.poll_read(cx, &mut self.stream)).await?;
        }
        Ok(())
    }

    /// The bare socket once the owed response is read. Only for callers
    /// that have sent what the target waits for, or whose target speaks
    /// first: a lazy node answers only once the target has spoken.
    pub async fn into_stream(mut self) -> Result<Stream, ConnectError> {
        self.settle().await?;
        Ok(self.stream)
    }

    /// The socket for a connector's handshake on it; the owed response is
    /// read first.
    pub(super) async fn settled(&mut self) -> Result<&mut Stream, ConnectError> {
        self.settle().await?;
        Ok(&mut self.stream)
    }

    /// Writes are never held back by an owed response.
    pub(super) fn writer(&mut self) -> &mut Stream {
        &mut self.stream
    }

    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.stream.write_all_now(buf).await
    }

    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.stream.shutdown().await
    }

    /// Appends what the target sent to `buf`, after the owed response.
    pub async fn read_buf(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        self.settle().await.map_err(ConnectError::into_io)?;
        self.stream.read_buf(buf).await
    }
}

/// Relay responses still owed on a stream, each `VER STATUS FLEN(2)
/// FEATURES`: one per lazy relay node on the route, in route order.
#[derive(Debug)]
pub struct LazyResponse {
    /// Responses not yet read, this one included.
    left: u8,
    head: [u8; 4],
    got: u8,
    /// Feature bytes of this response still to skip.
    skip: u16,
}

impl Default for LazyResponse {
    fn default() -> Self {
        LazyResponse {
            left: 1,
            head: [0; 4],
            got: 0,
            skip: 0,
        }
    }
}

impl LazyResponse {
    /// One more response owed after the ones already counted.
    pub(super) fn and_one_more(mut self) -> Self {
        self.left = self.left.saturating_add(1);
        self
    }

    /// Most bytes the responses may still take: reading no more than this
    /// never consumes a tunnelled byte.
    pub(super) fn want(&self) -> usize {
        if self.got < 4 {
            4 - self.got as usize
        } else {
            self.skip as usize
        }
    }

    /// Takes response bytes from the front of `bytes`: how many it used,
    /// and whether every owed response is now read. A non-zero status is
    /// an error as soon as its header is in.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(usize, bool), ConnectError> {
        let mut used = 0;
        while self.left > 0 && used < bytes.len() {
            let rest = &bytes[used..];
            if self.got < 4 {
                let n = (4 - self.got as usize).min(rest.len());
                let at = self.got as usize;
                self.head[at..at + n].copy_from_slice(&rest[..n]);
                self.got += n as u8;
                used += n;
                if self.got < 4 {
                    break;
                }
                if self.head[0] != gost_proto::relay::VERSION {
                    return Err(ConnectError::BadReply {
                        connector: "relay",
                        msg: format!("version {}", self.head[0]),
                    });
                }
                let status = self.head[1];
                if status != 0 {
                    return Err(ConnectError::Refused {
                        connector: "relay",
                        reply: format!(
                            "status {status} ({})",
                            gost_proto::relay::status_text(status)
                        ),
                    });
                }
                self.skip = u16::from_be_bytes([self.head[2], self.head[3]]);
            } else {
                let n = (self.skip as usize).min(rest.len());
                self.skip -= n as u16;
                used += n;
            }
            if self.got == 4 && self.skip == 0 {
                self.left -= 1;
                self.got = 0;
            }
        }
        Ok((used, self.left == 0))
    }
}

/// [`Upstream::into_lazy_stream`]'s stream.
struct Owed {
    stream: Stream,
    owed: Option<LazyResponse>,
}

impl AsyncRead for Owed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(owed) = &mut this.owed {
            ready!(owed.poll_read(cx, &mut this.stream)).map_err(ConnectError::into_io)?;
            this.owed = None;
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Owed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl LazyResponse {
    /// Reads the response off `stream`, never a byte past it.
    pub fn poll_read<R: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut R,
    ) -> Poll<Result<(), ConnectError>> {
        let mut buf = [0u8; 512];
        loop {
            let want = self.want().min(buf.len());
            let mut rb = ReadBuf::new(&mut buf[..want]);
            ready!(Pin::new(&mut *stream).poll_read(cx, &mut rb)).map_err(|source| {
                ConnectError::Io {
                    connector: "relay",
                    source,
                }
            })?;
            let n = rb.filled().len();
            if n == 0 {
                return Poll::Ready(Err(ConnectError::BadReply {
                    connector: "relay",
                    msg: "connection closed before the response".into(),
                }));
            }
            if self.feed(&buf[..n])?.1 {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_past_the_response_only_after_it() {
        let (c, mut s) = gost_core::test_util::tcp_pair().await;
        let mut up = Upstream::direct(c);
        up.owe_response();
        // The response in pieces, a feature, then payload in one write.
        s.write_all(&[1, 0]).await.unwrap();
        tokio::task::yield_now().await;
        s.write_all(&[0, 3, 9, 9, 9, b'h', b'i']).await.unwrap();
        let mut got = Vec::new();
        while got.len() < 2 {
            assert!(up.read_buf(&mut got).await.unwrap() > 0);
        }
        assert_eq!(got, b"hi");
    }

    #[tokio::test]
    async fn a_refusal_or_early_close_is_an_error() {
        let (c, mut s) = gost_core::test_util::tcp_pair().await;
        let mut up = Upstream::direct(c);
        up.owe_response();
        s.write_all(&[1, 3, 0, 0]).await.unwrap();
        let err = up.into_stream().await.unwrap_err();
        assert!(err.to_string().contains("status 3 (forbidden)"), "{err}");

        let (c, s) = gost_core::test_util::tcp_pair().await;
        let mut up = Upstream::direct(c);
        up.owe_response();
        drop(s);
        let err = up.into_stream().await.unwrap_err();
        assert!(
            err.to_string().contains("closed before the response"),
            "{err}"
        );
    }
}
