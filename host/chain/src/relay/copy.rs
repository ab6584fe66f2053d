//! The relay for streams that are not both plain TCP: each direction reads
//! into a buffer borrowed from the relay's pool and writes it out through
//! `AsyncWrite`. A read that is not ready gives its buffer back at once,
//! so an idle connection holds no relay buffer (a TLS or WebSocket stream
//! keeps its own, small, record buffers). Writes are flushed whenever the
//! source has nothing more for now, since a boxed transport may hold them.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::{busy_poll, conclude, Answer, Env, IdleTimer, PooledBuf, RelayError, Transferred};
use crate::connector::upstream::LazyResponse;
use gost_core::limiter::traffic::ConnTraffic;
use gost_core::stats::Stats;
use gost_core::stream::Stream;

pub struct CopyRelay<'a> {
    client: Stream,
    upstream: Stream,
    /// A lazy relay node's response, read off before anything goes back.
    owed: Option<LazyResponse>,
    stats: Option<&'a Arc<Stats>>,
    traffic: Option<Arc<ConnTraffic>>,
    up: Half,
    down: Half,
    idle: Option<IdleTimer>,
}

impl<'a> CopyRelay<'a> {
    pub(super) fn new(
        client: Stream,
        upstream: Stream,
        owed: Option<LazyResponse>,
        answer: Option<Answer>,
        stats: Option<&'a Arc<Stats>>,
        traffic: Option<Arc<ConnTraffic>>,
        idle: Option<IdleTimer>,
    ) -> Self {
        let mut down = Half::new(false);
        down.preface = answer;
        CopyRelay {
            client,
            upstream,
            owed,
            stats,
            traffic,
            up: Half::new(true),
            down,
            idle,
        }
    }
}

impl Future for CopyRelay<'_> {
    type Output = Result<Transferred, RelayError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let env = Env {
            stats: this.stats,
            traffic: this.traffic.as_deref(),
        };
        let up = this
            .up
            .poll(cx, &mut this.client, &mut this.upstream, &env)?;
        let settled = match &mut this.owed {
            Some(owed) => {
                let r = owed.poll_read(cx, &mut this.upstream)?;
                if r.is_ready() {
                    this.owed = None;
                }
                r
            }
            None => Poll::Ready(()),
        };
        let down = match settled {
            Poll::Ready(()) => this
                .down
                .poll(cx, &mut this.upstream, &mut this.client, &env)?,
            Poll::Pending => Poll::Pending,
        };
        let moved = std::mem::take(&mut this.up.moved) | std::mem::take(&mut this.down.moved);
        let totals = (this.up.total, this.down.total);
        conclude(
            cx,
            up.is_ready() && down.is_ready(),
            totals,
            moved,
            &mut this.idle,
        )
    }
}

/// One direction of the copy.
struct Half {
    /// Client to upstream: counts input, and paces by the `in` buckets.
    from_client: bool,
    /// Read and not yet all written: the buffer and its unwritten range.
    pending: Option<(PooledBuf, usize, usize)>,
    /// Bytes to write before the first bytes read (or the EOF): GOST's
    /// relay handler answers only once the target has spoken.
    preface: Option<Answer>,
    /// Waiting for the traffic limiter before writing `pending`.
    pace: Option<Pin<Box<Sleep>>>,
    unflushed: bool,
    read_eof: bool,
    done: bool,
    /// Bytes read since the idle timer last looked.
    moved: bool,
    total: u64,
}

impl Half {
    fn new(from_client: bool) -> Self {
        Half {
            from_client,
            pending: None,
            preface: None,
            pace: None,
            unflushed: false,
            read_eof: false,
            done: false,
            moved: false,
            total: 0,
        }
    }

    /// Ready once the source's EOF has been passed on as a shutdown.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut Stream,
        dst: &mut Stream,
        env: &Env,
    ) -> Poll<io::Result<()>> {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        loop {
            if let Some(sleep) = &mut self.pace {
                ready!(sleep.as_mut().poll(cx));
                self.pace = None;
            }
            if self.pending.is_some() || self.read_eof {
                if let Some(a) = &mut self.preface {
                    while a.sent < a.bytes.len() {
                        a.sent += ready!(Pin::new(&mut *dst).poll_write(cx, &a.bytes[a.sent..]))?;
                    }
                    self.preface = None;
                    self.unflushed = true;
                }
            }
            if let Some((buf, start, end)) = &mut self.pending {
                while start < end {
                    let n =
                        ready!(Pin::new(&mut *dst).poll_write(cx, &buf.as_mut()[*start..*end]))?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    *start += n;
                    self.unflushed = true;
                    if !self.from_client {
                        self.total += n as u64;
                        if let Some(s) = env.stats {
                            s.add_output(n as u64);
                        }
                    }
                }
                self.pending = None;
            }
            if self.read_eof {
                // A shutdown flushes first (a TLS close_notify, a
                // WebSocket close frame, a TCP FIN).
                ready!(Pin::new(&mut *dst).poll_shutdown(cx))?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            let mut buf = PooledBuf::take();
            let mut rb = ReadBuf::new(buf.as_mut());
            match Pin::new(&mut *src).poll_read(cx, &mut rb) {
                Poll::Pending => {
                    drop(buf);
                    if self.unflushed {
                        ready!(Pin::new(&mut *dst).poll_flush(cx))?;
                        self.unflushed = false;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        self.read_eof = true;
                        continue;
                    }
                    self.moved = true;
                    busy_poll::touch();
                    if self.from_client {
                        self.total += n as u64;
                        if let Some(s) = env.stats {
                            s.add_input(n as u64);
                        }
                    }
                    if let Some(t) = env.traffic {
                        let wait = t.delay(self.from_client, n);
                        if !wait.is_zero() {
                            self.pace = Some(Box::pin(tokio::time::sleep(wait)));
                        }
                    }
                    self.pending = Some((buf, 0, n));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{relay, relay_answering, RelayOptions};
    use super::*;
    use crate::connector::upstream::Upstream;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A boxed client (an in-memory pipe standing in for TLS) relayed to
    /// plain TCP: both ways, half-close passed on, every byte counted,
    /// and bytes read ahead on the client go first.
    #[tokio::test]
    async fn copies_both_ways_between_a_boxed_stream_and_tcp() {
        let (mut user, boxed) = tokio::io::duplex(64 * 1024);
        let (upstream_side, mut server) = gost_core::test_util::tcp_pair().await;
        let mut client = Stream::boxed(boxed, Default::default());
        user.write_all(b"GET").await.unwrap();
        client.read_ahead(3).await.unwrap();
        let stats = Arc::new(Stats::default());
        let st = stats.clone();
        let relay = tokio::spawn(async move {
            let ctx = gost_core::test_util::ctx(Some(st));
            relay(
                client,
                Upstream::direct(upstream_side),
                &ctx,
                &RelayOptions::default(),
            )
            .await
        });
        let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
        let sent = payload.clone();
        let writer = tokio::spawn(async move {
            user.write_all(&sent).await.unwrap();
            user.shutdown().await.unwrap();
            user
        });
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(&got[..3], b"GET");
        assert!(got[3..] == payload[..], "payload mangled");
        server.write_all(b"reply").await.unwrap();
        server.shutdown().await.unwrap();
        let mut user = writer.await.unwrap();
        let mut back = Vec::new();
        user.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"reply");
        let t = relay.await.unwrap().unwrap();
        assert_eq!((t.input, t.output), (1_000_003, 5));
        let s = stats.snapshot();
        assert_eq!((s.input_bytes, s.output_bytes), (1_000_003, 5));
    }

    /// The lazy relay response is read off a boxed upstream, and the held
    /// answer reaches the client right before the target's first bytes.
    #[tokio::test]
    async fn owed_response_and_held_answer_over_a_boxed_upstream() {
        let (mut user, client_side) = gost_core::test_util::tcp_pair().await;
        let (boxed, mut server) = tokio::io::duplex(4096);
        let mut up = Upstream::direct(Stream::boxed(boxed, Default::default()));
        up.owe_response();
        let relay = tokio::spawn(async move {
            relay_answering(
                client_side.into(),
                up,
                [1, 0, 0, 0],
                &gost_core::test_util::ctx(None),
                &RelayOptions::default(),
            )
            .await
        });
        user.write_all(b"hello").await.unwrap();
        let mut req = [0u8; 5];
        server.read_exact(&mut req).await.unwrap();
        assert_eq!(&req, b"hello");
        server
            .write_all(&[1, 0, 0, 1, 9, b'w', b'o', b'r', b'l', b'd'])
            .await
            .unwrap();
        let mut back = [0u8; 9];
        user.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"\x01\x00\x00\x00world");
        drop((user, server));
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), relay).await;
    }

    /// An idle boxed relay holds no pooled buffer.
    #[tokio::test]
    async fn idle_copy_holds_no_buffer() {
        let (_user, boxed) = tokio::io::duplex(1024);
        let (upstream_side, _server) = gost_core::test_util::tcp_pair().await;
        let opts = RelayOptions::default();
        let ctx = gost_core::test_util::ctx(None);
        let mut r = std::pin::pin!(relay(
            Stream::boxed(boxed, Default::default()),
            Upstream::direct(upstream_side),
            &ctx,
            &opts
        ));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(r.as_mut().poll(&mut cx).is_pending());
        let super::super::RelayFuture::Copy(c) = &*r else {
            panic!("a boxed client must take the generic copy");
        };
        assert!(c.up.pending.is_none() && c.down.pending.is_none());
    }
}
