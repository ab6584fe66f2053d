//! Byte relay between a client and an upstream connection.
//!
//! Design goals, from the brief: bulk throughput close to a direct
//! connection, no per-chunk allocation, and no buffer held while a
//! connection is idle (thousands of idle forwarded connections must cost a
//! few KiB each). So each direction waits for readiness *without* a buffer,
//! borrows one from a per-thread pool only while data is moving, and gives
//! it back as soon as the socket would block.

use std::cell::RefCell;
use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::service::stats::Stats;

/// Bulk throughput on loopback measured 0.82x at 64 KiB and 1.0x of
/// haproxy at 256 KiB (fewer syscalls per byte); the buffer is held only
/// while data moves, so idle connections do not pay for its size.
const BUF_SIZE: usize = 256 * 1024;
/// Buffers kept per worker thread once returned (4 MiB); the rest are freed.
const POOL_KEEP: usize = 16;

thread_local! {
    static POOL: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// A pooled buffer, returned to the pool of whichever thread drops it.
struct PooledBuf(Option<Box<[u8]>>);

impl PooledBuf {
    fn take() -> Self {
        let buf = POOL
            .with(|p| p.borrow_mut().pop())
            .unwrap_or_else(|| vec![0u8; BUF_SIZE].into_boxed_slice());
        PooledBuf(Some(buf))
    }

    fn as_mut(&mut self) -> &mut [u8] {
        self.0.as_deref_mut().unwrap_or_default()
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let Some(buf) = self.0.take() {
            POOL.with(|p| {
                let mut p = p.borrow_mut();
                if p.len() < POOL_KEEP {
                    p.push(buf);
                }
            });
        }
    }
}

/// Options a handler passes to the relay.
#[derive(Debug, Clone, Default)]
pub struct RelayOptions {
    /// Close both sides when neither has sent anything for this long.
    pub idle_timeout: Option<Duration>,
}

/// Bytes moved by one relay, from the client's point of view.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Transferred {
    /// Read from the client (GOST's inputBytes).
    pub input: u64,
    /// Written to the client (GOST's outputBytes).
    pub output: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("relay idle for {0:?}")]
    Idle(Duration),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl RelayError {
    /// Peer resets and idle expiry are the client's or network's doing, not
    /// a server error (GOST counts only server-side failures in totalErrs).
    pub fn is_server_error(&self) -> bool {
        match self {
            RelayError::Idle(_) => false,
            RelayError::Io(e) => !is_disconnect(e),
        }
    }
}

pub fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected
    )
}

/// Shared between the two directions so that either one's traffic keeps
/// the whole connection alive.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Which counter of the service a direction feeds.
#[derive(Clone, Copy)]
enum Dir {
    FromClient,
    ToClient,
}

/// Relays until both directions have seen EOF (each EOF is passed on as a
/// write shutdown, so half-closed protocols work), one side fails, or the
/// idle timeout expires.
pub async fn relay_tcp(
    client: &TcpStream,
    upstream: &TcpStream,
    stats: Option<&Arc<Stats>>,
    opts: &RelayOptions,
) -> Result<Transferred, RelayError> {
    let activity = Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
    };
    // The service's traffic limiter, if any, rides along as a task-local
    // value so that no handler has to pass it.
    let traffic = crate::limiter::traffic::current();
    let traffic = traffic.as_deref();
    let up = copy_one_way(
        client,
        upstream,
        stats,
        Dir::FromClient,
        opts,
        &activity,
        traffic,
    );
    let down = copy_one_way(
        upstream,
        client,
        stats,
        Dir::ToClient,
        opts,
        &activity,
        traffic,
    );
    let (input, output) = tokio::try_join!(up, down)?;
    Ok(Transferred { input, output })
}

async fn copy_one_way(
    src: &TcpStream,
    dst: &TcpStream,
    stats: Option<&Arc<Stats>>,
    dir: Dir,
    opts: &RelayOptions,
    activity: &Activity,
    traffic: Option<&crate::limiter::traffic::ConnTraffic>,
) -> Result<u64, RelayError> {
    let mut total = 0u64;
    loop {
        wait_readable(src, opts.idle_timeout, activity).await?;
        let mut buf = PooledBuf::take();
        loop {
            let (n, drained) = match read_some(src, buf.as_mut()) {
                Ok((0, _)) => {
                    // Half-close: pass the EOF on and let the other
                    // direction run to its own end.
                    let _ = socket2::SockRef::from(dst).shutdown(Shutdown::Write);
                    return Ok(total);
                }
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            };
            if let Some(t) = traffic {
                t.pace(matches!(dir, Dir::FromClient), n).await;
            }
            write_all(dst, &buf.as_mut()[..n]).await?;
            total += n as u64;
            if opts.idle_timeout.is_some() {
                activity.touch();
            }
            if let Some(s) = stats {
                match dir {
                    Dir::FromClient => s.add_input(n as u64),
                    Dir::ToClient => s.add_output(n as u64),
                }
            }
            if drained {
                break;
            }
        }
    }
}

/// One read, plus whether the socket is now known to be empty.
///
/// A read that returns less than the buffer has drained the receive queue,
/// so tokio's readiness is cleared right away (by reporting `WouldBlock`
/// from `try_io`) instead of spending a second `recv` to learn it. This
/// halves the syscalls of request/response traffic. It is race-free:
/// tokio only clears readiness not renewed by an event after the read
/// began, and it never clears "read closed", so a FIN queued behind the
/// data still wakes the next `readable()`.
fn read_some(src: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, bool)> {
    use std::io::Read;
    let mut partial = None;
    let r = src.try_io(tokio::io::Interest::READABLE, || {
        let n = (&*socket2::SockRef::from(src)).read(buf)?;
        if n > 0 && n < buf.len() {
            partial = Some(n);
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match (r, partial) {
        (_, Some(n)) => Ok((n, true)),
        (Ok(n), None) => Ok((n, false)),
        (Err(e), None) => Err(e),
    }
}

async fn wait_readable(
    src: &TcpStream,
    idle: Option<Duration>,
    activity: &Activity,
) -> Result<(), RelayError> {
    let Some(idle) = idle else {
        src.readable().await?;
        return Ok(());
    };
    loop {
        let remaining = idle.saturating_sub(activity.idle_for());
        if remaining.is_zero() {
            return Err(RelayError::Idle(idle));
        }
        if let Ok(r) = tokio::time::timeout(remaining, src.readable()).await {
            r?;
            return Ok(());
        }
    }
}

async fn write_all(dst: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match dst.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn relays_both_ways_with_half_close_and_counts() {
        // user <-> client_side [relay] upstream_side <-> server
        let (mut user, client_side) = pair().await;
        let (upstream_side, mut server) = pair().await;
        let stats = Arc::new(Stats::default());
        let st = stats.clone();
        let relay = tokio::spawn(async move {
            relay_tcp(
                &client_side,
                &upstream_side,
                Some(&st),
                &RelayOptions::default(),
            )
            .await
        });
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        user.write_all(&payload).await.unwrap();
        user.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, payload);
        // The server can still answer after the client's half-close.
        server.write_all(b"reply").await.unwrap();
        server.shutdown().await.unwrap();
        let mut back = Vec::new();
        user.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"reply");
        let t = relay.await.unwrap().unwrap();
        assert_eq!(
            t,
            Transferred {
                input: 300_000,
                output: 5
            }
        );
        let s = stats.snapshot();
        assert_eq!((s.input_bytes, s.output_bytes), (300_000, 5));
    }

    #[tokio::test]
    async fn eof_queued_behind_a_short_read_is_not_lost() {
        // Data and FIN are both queued before the relay reads: the short
        // read clears readiness, and the FIN must still be seen.
        let (mut user, client_side) = pair().await;
        let (upstream_side, mut server) = pair().await;
        user.write_all(b"tail").await.unwrap();
        user.shutdown().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let relay = tokio::spawn(async move {
            relay_tcp(&client_side, &upstream_side, None, &RelayOptions::default()).await
        });
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), server.read_to_end(&mut got))
            .await
            .expect("EOF passed on")
            .unwrap();
        assert_eq!(got, b"tail");
        drop(server);
        drop(user);
        let r = tokio::time::timeout(Duration::from_secs(5), relay)
            .await
            .expect("relay ends");
        assert!(r.is_ok());
    }

    #[tokio::test]
    async fn idle_timeout_ends_relay() {
        let (_user, client_side) = pair().await;
        let (upstream_side, _server) = pair().await;
        let opts = RelayOptions {
            idle_timeout: Some(Duration::from_millis(100)),
        };
        let r = relay_tcp(&client_side, &upstream_side, None, &opts).await;
        assert!(matches!(r, Err(RelayError::Idle(_))));
    }
}
