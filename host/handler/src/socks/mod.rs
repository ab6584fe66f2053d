//! SOCKS proxy handlers: `socks4`/`socks4a` (GOST's handler/socks/v4) and
//! `socks5`/`socks` (GOST's handler/socks/v5), plus the SOCKS5 UDP relay.
//!
//! Both handshakes are read through a small bounded buffer ([`Handshake`])
//! instead of byte-at-a-time reads: every length a client sends is capped
//! before anything is allocated, and bytes a client pipelines after its
//! request (optimistic clients send data before the reply) are kept and
//! passed to the target ahead of the relay instead of being lost.

mod bind;
pub mod udp;
pub(crate) mod udptun;
pub mod v4;
pub mod v5;

pub use v4::{Socks4Handler, Socks4Options};
pub use v5::{Socks5Handler, Socks5Options};

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::stream::ClientStream;
use super::{ConnContext, HandlerError};
use gost_chain::connector::upstream::Upstream;
use gost_chain::relay::{self, RelayOptions};
use gost_core::metadata::{Metadata, MetadataError};
use gost_core::stream::Stream;
pub use gost_proto::socks::TargetAddr;

/// GOST's `readTimeout` default for both SOCKS versions.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(15);

/// Most handshake bytes buffered at once. The largest SOCKS5 message (a
/// user/password request) is 513 bytes and a SOCKS4a request with capped
/// fields about 520, so a client can never make a handshake hold more.
const MAX_BUFFERED: usize = 1024;
/// Longest SOCKS4 user id or SOCKS4a host name accepted; both are
/// NUL-terminated, so without a cap a client could stream forever.
const MAX_SOCKS4_FIELD: usize = 255;

/// `readTimeout` from handler metadata, as both versions read it: zero or
/// missing means GOST's 15 s.
fn read_timeout(md: &Metadata) -> Result<Duration, MetadataError> {
    Ok(md
        .get_duration("readTimeout")?
        .filter(|t| !t.is_zero())
        .unwrap_or(DEFAULT_READ_TIMEOUT))
}

/// `idleTimeout`, as the other proxy handlers take it.
fn idle_timeout(md: &Metadata) -> Result<Option<Duration>, MetadataError> {
    Ok(md.get_duration("idleTimeout")?.filter(|t| !t.is_zero()))
}

/// Why a handshake stopped before a request was complete.
#[derive(Debug)]
enum ReadError {
    /// The client closed or went quiet before sending a single byte: a
    /// port probe, not a protocol error (as for the http handler).
    Silent,
    /// Closed, timed out or failed part-way.
    Failed(HandlerError),
}

impl From<HandlerError> for ReadError {
    fn from(e: HandlerError) -> Self {
        ReadError::Failed(e)
    }
}

fn protocol(msg: impl Into<String>) -> HandlerError {
    HandlerError::Protocol(msg.into())
}

/// The client connection during a handshake: bytes read but not used yet,
/// and the deadline the whole handshake must meet.
struct Handshake {
    io: ClientStream,
    buf: Vec<u8>,
    pos: usize,
    deadline: tokio::time::Instant,
    timeout: Duration,
    /// Whether any byte has arrived, to tell a probe from a broken client.
    started: bool,
}

impl Handshake {
    fn new(stream: Stream, ctx: &ConnContext, timeout: Duration) -> Self {
        Handshake {
            io: ClientStream::new(stream, ctx.stats.clone()),
            buf: Vec::with_capacity(512),
            pos: 0,
            deadline: tokio::time::Instant::now() + timeout,
            timeout,
            started: false,
        }
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads until `n` unused bytes are buffered.
    async fn fill(&mut self, n: usize) -> Result<(), ReadError> {
        debug_assert!(n <= MAX_BUFFERED);
        while self.available().len() < n {
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            let room = MAX_BUFFERED - self.buf.len();
            let mut chunk = (&mut self.io).take(room as u64);
            let read = tokio::time::timeout_at(self.deadline, chunk.read_buf(&mut self.buf)).await;
            let got = match read {
                Ok(Ok(got)) => got,
                Ok(Err(e)) if !self.started => {
                    tracing::trace!(error = %e, "socks client gone before its first byte");
                    return Err(ReadError::Silent);
                }
                Ok(Err(e)) => return Err(HandlerError::Io(e).into()),
                Err(_) if !self.started => return Err(ReadError::Silent),
                Err(_) => {
                    return Err(protocol(format!(
                        "handshake not complete within {:?}",
                        self.timeout
                    ))
                    .into())
                }
            };
            if got == 0 {
                if !self.started {
                    return Err(ReadError::Silent);
                }
                return Err(protocol("client closed in the middle of the handshake").into());
            }
            self.started = true;
        }
        Ok(())
    }

    async fn u8(&mut self) -> Result<u8, ReadError> {
        Ok(self.bytes(1).await?[0])
    }

    async fn u16(&mut self) -> Result<u16, ReadError> {
        let b = self.bytes(2).await?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// The next `n` bytes (at most 255 + a few in every caller).
    async fn bytes(&mut self, n: usize) -> Result<&[u8], ReadError> {
        self.fill(n).await?;
        let start = self.pos;
        self.pos += n;
        Ok(&self.buf[start..start + n])
    }

    /// A NUL-terminated field of at most `MAX_SOCKS4_FIELD` bytes, without
    /// its NUL.
    async fn until_nul(&mut self, what: &str) -> Result<Vec<u8>, ReadError> {
        let mut scanned = 0;
        loop {
            if let Some(i) = self.available()[scanned..].iter().position(|&b| b == 0) {
                let field = self.available()[..scanned + i].to_vec();
                self.pos += scanned + i + 1;
                return Ok(field);
            }
            scanned = self.available().len();
            if scanned > MAX_SOCKS4_FIELD {
                return Err(protocol(format!(
                    "socks4: {what} longer than {MAX_SOCKS4_FIELD} bytes"
                ))
                .into());
            }
            self.fill(scanned + 1).await?;
        }
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), HandlerError> {
        self.io.write_all(data).await?;
        // A transport above TCP may hold the reply until flushed.
        self.io.flush().await?;
        Ok(())
    }

    /// With `sniffing` on, refuses a granted CONNECT whose inner host the
    /// service's bypass matches ([`super::sniffing::guard_tunnel`]).
    async fn guard_tunnel(
        &mut self,
        sniffing: Option<Duration>,
        router: &gost_chain::router::Router,
    ) -> Result<(), HandlerError> {
        if let Some(timeout) = sniffing {
            let early = &self.buf[self.pos..];
            super::sniffing::guard_tunnel(self.io.get_mut(), early, timeout, router).await?;
        }
        Ok(())
    }

    /// The stream for the relay and the bytes the client sent past its
    /// request, which belong to the target.
    fn finish(mut self) -> (Stream, Vec<u8>) {
        let rest = self.buf.split_off(self.pos);
        (self.io.into_inner(), rest)
    }
}

/// What the SOCKS4 and SOCKS5 handlers plug into [`serve`].
pub(super) trait Exchange: Sync {
    /// The handshake up to a granted CONNECT, which comes back to relay;
    /// any other command is served to its end and gives `None`.
    fn exchange<'a>(
        &'a self,
        stream: Stream,
        ctx: &'a ConnContext,
    ) -> impl std::future::Future<Output = Result<Option<Granted>, HandlerError>> + Send + 'a;

    fn idle_timeout(&self) -> Option<Duration>;
}

/// Serves one client connection. The handshake runs in a box freed before
/// the relay starts, so an idle relayed connection keeps only the relay's
/// state (not an `async fn`, which would keep a second copy of the
/// arguments).
#[allow(clippy::manual_async_fn)]
pub(super) fn serve<H: Exchange>(
    handler: &H,
    stream: Stream,
    ctx: ConnContext,
) -> impl std::future::Future<Output = Result<(), HandlerError>> + Send + '_ {
    async move {
        // Taken apart by value, not in a `match` on the call, whose
        // temporaries would stay in the future beside the relay.
        let granted = Box::pin(handler.exchange(stream, &ctx)).await;
        let granted = match granted {
            Ok(Some(g)) => g,
            Ok(None) => return Ok(()),
            Err(e) => return Err(e),
        };
        granted.relay(&ctx, handler.idle_timeout()).await
    }
}

/// A granted CONNECT (or accepted BIND peer), ready to relay. Handlers
/// return it from their boxed handshake, so the future kept for the
/// connection's life holds the relay's state only.
pub(super) struct Granted {
    client: Stream,
    /// What the client pipelined after its request: the target's.
    early: Vec<u8>,
    upstream: Upstream,
    target: TargetAddr,
}

impl Granted {
    fn new(hs: Handshake, upstream: Upstream, target: TargetAddr) -> Self {
        let (client, early) = hs.finish();
        Granted {
            client,
            early,
            upstream,
            target,
        }
    }

    /// Relays: first whatever the client pipelined after its request, then
    /// both directions until they end. Not an `async fn`, which would keep
    /// a second copy of `self` in the future.
    #[allow(clippy::manual_async_fn)]
    fn relay(
        mut self,
        ctx: &ConnContext,
        idle_timeout: Option<Duration>,
    ) -> impl std::future::Future<Output = Result<(), HandlerError>> + Send + '_ {
        async move {
            // A block, so the buffer is freed before the relay starts.
            let early = {
                let early = std::mem::take(&mut self.early);
                if !early.is_empty() {
                    // Counted as input when the handshake read it.
                    self.upstream.write_all(&early).await?;
                }
                early.len() as u64
            };
            let start = Instant::now();
            let opts = RelayOptions { idle_timeout };
            let res = relay::relay(self.client, self.upstream, ctx, &opts).await;
            let target = &self.target;
            match &res {
                Ok(t) => {
                    tracing::debug!(service = %ctx.service, client = %ctx.peer, dst = %gost_core::escape::esc(&target),
                    input = t.input + early, output = t.output, duration = ?start.elapsed(), "socks relay done")
                }
                Err(e) => {
                    tracing::debug!(service = %ctx.service, client = %ctx.peer, dst = %gost_core::escape::esc(&target), error = %e, "socks relay ended")
                }
            }
            res.map(|_| ()).map_err(Into::into)
        }
    }
}

/// The IP a SOCKS4 request or reply carries for a socket address; SOCKS4
/// has no IPv6, so those become 0.0.0.0.
fn ipv4_or_zero(ip: IpAddr) -> [u8; 4] {
    match ip {
        IpAddr::V4(v4) => v4.octets(),
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(|v| v.octets()).unwrap_or([0; 4]),
    }
}

/// Turns a handshake outcome into the handler's result: a silent client
/// is simply closed.
fn finish_silent(r: Result<(), ReadError>) -> Result<(), HandlerError> {
    match r {
        Ok(()) | Err(ReadError::Silent) => Ok(()),
        Err(ReadError::Failed(e)) => Err(e),
    }
}
