//! GOST's `sni` connector (go-gost/x connector/sni): nothing is said to
//! the node, which is a GOST `sni` handler that routes by what the client
//! sends. With metadata `host`, the client's first bytes are rewritten as
//! GOST's connector does ([`gost_proto::sni`]): a ClientHello's server
//! name, or an HTTP request's `Host`, becomes `host`, and the original
//! travels encoded beside it. Without `host` the stream is used as it is.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use gost_core::metadata::Metadata;
use gost_core::stream::Stream;
use gost_transport::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::upstream::Upstream;
use super::{ConnectError, Connector, ConnectorBuildError, ConnectorKind, Connectors};

#[derive(Debug)]
pub struct SniConnector {
    /// `host`: the name the node is shown instead of the client's.
    host: Option<String>,
}

impl SniConnector {
    fn build(md: &Metadata) -> Result<Box<dyn Connector>, ConnectorBuildError> {
        let host = md.get_string("host")?.filter(|h| !h.is_empty());
        Ok(Box::new(SniConnector { host }))
    }
}

impl Connector for SniConnector {
    fn name(&self) -> &'static str {
        "sni"
    }

    fn connect<'a>(
        &'a self,
        stream: &'a mut Upstream,
        _addr: &'a str,
    ) -> BoxFuture<'a, Result<(), ConnectError>> {
        if let Some(host) = &self.host {
            stream.wrap(|s| {
                let ends = s.endpoints();
                Stream::boxed(Rewriting::new(s, host.clone()), ends)
            });
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

/// A stream whose first message is rewritten on its way out.
struct Rewriting {
    inner: Stream,
    host: String,
    state: State,
}

enum State {
    /// Gathering a ClientHello record until it is whole.
    Gathering(Vec<u8>),
    /// The rewritten bytes, and how many went out.
    Sending(Vec<u8>, usize),
    Passing,
}

/// A TLS record is at most this long (header and 2^14 + 2048 bytes of
/// ciphertext); a longer announced length is not a ClientHello to wait for.
const MAX_RECORD: usize = 5 + (1 << 14) + 2048;

impl Rewriting {
    fn new(inner: Stream, host: String) -> Self {
        Rewriting {
            inner,
            host,
            state: State::Gathering(Vec::new()),
        }
    }

    /// Takes `buf` into the first message; the rewritten bytes once the
    /// message is known. A ClientHello is waited for whole; anything else
    /// is rewritten from what the first write holds, as GOST does.
    fn gather(&mut self, buf: &[u8]) -> Option<Vec<u8>> {
        let State::Gathering(got) = &mut self.state else {
            return None;
        };
        got.extend_from_slice(buf);
        if got.first() != Some(&gost_proto::tls::HANDSHAKE) {
            return Some(gost_proto::sni::rewrite_http_host(got, &self.host));
        }
        let len = gost_proto::tls::record_len(got)?;
        if len > MAX_RECORD {
            return Some(std::mem::take(got));
        }
        if got.len() < len {
            return None;
        }
        let mut out = gost_proto::sni::rewrite_client_hello(&got[..len], &self.host)
            .unwrap_or_else(|| got[..len].to_vec());
        out.extend_from_slice(&got[len..]);
        Some(out)
    }

    /// Sends what is left of the rewritten bytes.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let State::Sending(out, sent) = &mut self.state {
            if *sent == out.len() {
                self.state = State::Passing;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &out[*sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *sent += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Rewriting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewriting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if matches!(this.state, State::Gathering(_)) {
            if let Some(out) = this.gather(buf) {
                this.state = State::Sending(out, 0);
                // Accepted; what does not go out now goes on the next
                // write or flush.
                let _ = this.poll_send(cx)?;
            }
            return Poll::Ready(Ok(buf.len()));
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let State::Gathering(got) = &mut self.state {
            // The client stopped mid-record: what it sent goes as it is.
            let got = std::mem::take(got);
            self.state = State::Sending(got, 0);
        }
        ready!(self.poll_send(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

pub fn register(r: &mut Connectors) {
    r.add(ConnectorKind {
        names: &["sni"],
        udp: false,
        build: |md, _| SniConnector::build(md),
        summary: "none: the `sni` node routes by the client's SNI or Host; `host` rewrites them as GOST does",
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn through(host: &str, parts: &[&[u8]]) -> Vec<u8> {
        let (a, mut b) = gost_core::test_util::tcp_pair().await;
        let mut w = Rewriting::new(Stream::from(a), host.into());
        for p in parts {
            w.write_all(p).await.unwrap();
        }
        w.flush().await.unwrap();
        w.shutdown().await.unwrap();
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        got
    }

    #[tokio::test]
    async fn a_client_hello_split_over_writes_is_rewritten_whole() {
        let mut ext = vec![0, 0];
        let sni = gost_proto::tls::server_name_extension("real.test").unwrap();
        ext.extend((sni.len() as u16).to_be_bytes());
        ext.extend(sni);
        let mut fixed = vec![3, 3];
        fixed.extend([1u8; 32]);
        fixed.extend([0, 0, 2, 0x13, 1, 1, 0]);
        let rec = gost_proto::tls::encode_client_hello([3, 1], &fixed, &ext).unwrap();
        let got = through(
            "front.test",
            &[&rec[..3], &rec[3..20], &rec[20..], b"after"],
        )
        .await;
        let want = gost_proto::sni::rewrite_client_hello(&rec, "front.test").unwrap();
        assert_eq!(&got[..want.len()], &want[..]);
        assert_eq!(&got[want.len()..], b"after");
    }

    #[tokio::test]
    async fn other_bytes_pass_and_http_gets_the_host() {
        assert_eq!(
            through("f", &[b"SSH-2.0-x\r\n", b"more"]).await,
            b"SSH-2.0-x\r\nmore"
        );
        let got = through("f.test", &[b"GET / HTTP/1.1\r\nHost: r.test\r\n\r\n"]).await;
        let text = String::from_utf8(got).unwrap();
        assert!(
            text.starts_with("GET / HTTP/1.1\r\nHost: f.test\r\nGost-Target: "),
            "{text}"
        );
    }
}
