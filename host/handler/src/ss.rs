//! GOST's `ss` handler: a Shadowsocks server (AEAD and 2022 ciphers) that
//! connects each client to the target its first packet names.
//!
//! A first packet that does not decrypt (a probe, a wrong password, a
//! truncated chunk) or that repeats a salt already seen (a replay) gets
//! no answer: the connection is held, its bytes read and discarded, until
//! the client closes it or `readTimeout` passes, so a prober learns
//! neither how many bytes were read nor that the key was wrong. That is
//! the contract go-shadowsocks2 (GOST's library) states for its callers,
//! and shadowsocks-rust's server does the same.

use std::time::Duration;

use shadowsocks::relay::tcprelay::proxy_stream::ProxyServerStream;
use tokio::io::AsyncReadExt;

use gost_chain::relay::{self, RelayOptions};
use gost_chain::router::Router;
use gost_chain::ss::{server_context, Cipher};
use gost_core::metadata::{Metadata, MetadataError};
use gost_core::stream::Stream;
use gost_transport::listener::Conn;

use crate::ss_buf::{Gather, ReadAhead};
use crate::{ConnContext, HandleFuture, Handler, HandlerError};

/// GOST's default for `readTimeout`: the first packet must be in by then.
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct SsOptions {
    /// `readTimeout`: how long the first packet may take, and how long a
    /// connection whose first packet was bad is held.
    pub read_timeout: Duration,
    /// `idleTimeout`, as the other proxy handlers take it.
    pub idle_timeout: Option<Duration>,
}

impl SsOptions {
    pub fn from_metadata(md: &Metadata) -> Result<Self, MetadataError> {
        Ok(SsOptions {
            read_timeout: md
                .get_duration("readTimeout")?
                .filter(|t| !t.is_zero())
                .unwrap_or(DEFAULT_READ_TIMEOUT),
            idle_timeout: md.get_duration("idleTimeout")?.filter(|t| !t.is_zero()),
        })
    }
}

pub struct SsHandler {
    router: Router,
    cipher: Cipher,
    opts: SsOptions,
}

impl SsHandler {
    pub fn new(router: Router, cipher: Cipher, opts: SsOptions) -> Self {
        SsHandler {
            router,
            cipher,
            opts,
        }
    }
}

impl Handler for SsHandler {
    fn handle(&self, conn: Conn, ctx: ConnContext) -> HandleFuture<'_> {
        crate::tcp_only("ss", conn, move |s| async move {
            let (client, target) =
                Box::pin(accept(&self.cipher, s, self.opts.read_timeout)).await?;
            tracing::debug!(service = %ctx.service, client = %ctx.peer, dst = %target.escape_debug(), "ss");
            let upstream = self.router.dial_tcp(&target, ctx.peer.ip()).await?;
            let opts = RelayOptions {
                idle_timeout: self.opts.idle_timeout,
            };
            relay::relay(client, upstream, &ctx, &opts).await?;
            Ok(())
        })
    }
}

/// Reads the client's first packet: the decrypting stream and the target
/// it names (`host:port`). A bad first packet is held (see the module's
/// note) and reported once the hold ends; so is one cut short, by the
/// client closing or by `readTimeout`. A client that closes before its
/// first byte (a port check) is no error of the service.
pub(crate) async fn accept(
    cipher: &Cipher,
    mut s: Stream,
    read_timeout: Duration,
) -> Result<(Stream, String), HandlerError> {
    let deadline = tokio::time::Instant::now() + read_timeout;
    let mut first = [0u8; 512];
    let n = match tokio::time::timeout_at(deadline, s.read(&mut first)).await {
        Err(_) => return Err(no_first_packet(read_timeout)),
        Ok(Ok(0)) => {
            return Err(HandlerError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "ss: the client closed before its first packet",
            )))
        }
        Ok(Ok(n)) => n,
        Ok(Err(e)) => return Err(HandlerError::Io(e)),
    };
    s.unread(&first[..n]);
    let mut ss = ProxyServerStream::from_stream_with_user_manager(
        server_context(),
        ReadAhead::new(s),
        cipher.method(),
        cipher.key(),
        cipher.users.clone(),
    );
    let err = match tokio::time::timeout_at(deadline, ss.handshake()).await {
        Ok(Ok(target)) => {
            let ends = ss.get_ref().get_ref().endpoints();
            return Ok((Stream::boxed(Gather::new(ss), ends), target.to_string()));
        }
        Err(_) => {
            return Err(HandlerError::Protocol(format!(
                "ss: bad first packet (incomplete after {read_timeout:?}, readTimeout), no answer"
            )))
        }
        Ok(Err(e)) if relay::is_disconnect(&e) => {
            return Err(HandlerError::Protocol(format!(
                "ss: bad first packet (cut short: {e}), no answer"
            )))
        }
        Ok(Err(e)) => e,
    };
    let mut raw = ss.into_inner().into_inner();
    let held = hold(&mut raw, read_timeout).await;
    Err(HandlerError::Protocol(format!(
        "ss: bad first packet ({err}); {held} more bytes read and dropped, no answer"
    )))
}

fn no_first_packet(read_timeout: Duration) -> HandlerError {
    HandlerError::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("ss: no first packet within {read_timeout:?} (readTimeout)"),
    ))
}

/// Reads and drops what the client sends until it closes or `limit`
/// passes; returns how many bytes that was.
async fn hold(s: &mut Stream, limit: Duration) -> u64 {
    let mut buf = [0u8; 4096];
    let mut total = 0u64;
    let _ = tokio::time::timeout(limit, async {
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    })
    .await;
    total
}
