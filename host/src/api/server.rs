//! Serving the web API and the metrics endpoint with the limits a proxy's
//! own HTTP handler has: connections that send nothing, or stall
//! mid-request, are closed, and only so many are served at once, so idle
//! or slow clients without credentials cannot hold file descriptors the
//! proxied services need.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};

/// A request head (the first one, or the next on a kept-alive connection)
/// must arrive within this, as the HTTP proxy's head deadline.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(15);

/// A connection on which no byte moves for this long, while a request
/// body is read or a response written, is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Connections served at once per endpoint; more wait in the kernel's
/// accept queue.
pub const MAX_CONNS: usize = 64;

/// Serves `router` on `listener` until `stop` resolves; connections being
/// served then finish their request.
pub async fn serve<L>(
    what: &'static str,
    mut listener: L,
    router: axum::Router,
    stop: impl Future<Output = ()> + Send + 'static,
) where
    L: axum::serve::Listener,
{
    let slots = Arc::new(Semaphore::new(MAX_CONNS));
    let mut stop = std::pin::pin!(stop);
    loop {
        let permit = tokio::select! {
            _ = &mut stop => return,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (io, _) = tokio::select! {
            _ = &mut stop => return,
            a = listener.accept() => a,
        };
        let router = router.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| {
                let mut router = router.clone();
                tower_service::Service::call(&mut router, req)
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(TokioIo::new(Idle::new(io, IDLE_TIMEOUT)), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(endpoint = what, error = %e, "connection closed");
            }
        });
    }
}

/// A stream that fails a read or write which has waited `limit` since
/// the last byte moved either way.
struct Idle<T> {
    inner: T,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
}

impl<T> Idle<T> {
    fn new(inner: T, limit: Duration) -> Self {
        Idle {
            inner,
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
        }
    }

    fn moved(&mut self) {
        let at = Instant::now() + self.limit;
        self.timer.as_mut().reset(at);
    }

    fn check<R>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match r {
            Poll::Ready(r) => {
                self.moved();
                Poll::Ready(r)
            }
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no data for {:?}", self.limit),
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Idle<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.check(cx, r)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Idle<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start() -> (std::net::SocketAddr, tokio_util::sync::CancellationToken) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let router = axum::Router::new().route("/", axum::routing::post(|b: String| async { b }));
        let stop = tokio_util::sync::CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(serve("test", l, router, async move { s.cancelled().await }));
        (addr, stop)
    }

    /// Reads until the server closes; how long that took.
    async fn closed_after(mut c: tokio::net::TcpStream) -> Duration {
        let start = Instant::now();
        let mut b = [0u8; 256];
        while matches!(c.read(&mut b).await, Ok(n) if n > 0) {}
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed_at_the_head_deadline() {
        let (addr, _stop) = start().await;
        let c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let took = closed_after(c).await;
        assert!(took >= HEAD_TIMEOUT && took < HEAD_TIMEOUT * 2, "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_is_closed_when_idle() {
        let (addr, _stop) = start().await;
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
            .await
            .unwrap();
        let took = closed_after(c).await;
        assert!(took >= IDLE_TIMEOUT && took < IDLE_TIMEOUT * 2, "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn connections_beyond_the_cap_wait_for_a_free_slot() {
        let (addr, _stop) = start().await;
        let mut held = Vec::new();
        for _ in 0..MAX_CONNS {
            held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
        extra
            .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
            .await
            .unwrap();
        let mut b = [0u8; 256];
        // Not served while every slot is taken...
        assert!(
            tokio::time::timeout(Duration::from_secs(5), extra.read(&mut b))
                .await
                .is_err()
        );
        // ...and served once the held ones hit the head deadline.
        let n = tokio::time::timeout(HEAD_TIMEOUT * 2, extra.read(&mut b))
            .await
            .expect("served after the deadline freed slots")
            .unwrap();
        assert!(b[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &b[..n]);
        drop(held);
    }
}
