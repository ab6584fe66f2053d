//! Transports: how a proxy protocol's bytes travel between gost peers
//! (GOST's listener and dialer packages beyond plain `tcp`). Each one is a
//! file here with its server side ([`Upgrade`], run over an accepted TCP
//! connection) and its client side ([`Dialer`]), both producing the
//! [`Stream`] every handler and connector works with, and a line in
//! [`register`]. Each transport beyond plain TCP is a cargo feature
//! (`ws` brings `tls` along, for `wss`; `mux` brings `ws`; `grpc` and `obfs`
//! bring `tls`).

/// The [`Dialer`] of a pooling dialer (its [`Multiplex`] does the work):
/// a handshake over a stream made elsewhere (a later node of a chain)
/// opens a stream as the pool does, the stream carrying a new session
/// unless one to the node is alive, which is used instead.
#[allow(unused_macros)]
macro_rules! pooled_dialer {
    ($t:ty) => {
        impl $crate::Dialer for $t {
            fn handshake<'a>(
                &'a self,
                stream: gost_core::stream::Stream,
                node_addr: &'a str,
            ) -> $crate::BoxFuture<'a, std::io::Result<gost_core::stream::Stream>> {
                $crate::Multiplex::open(self, node_addr, Box::pin(async move { Ok(stream) }))
            }

            fn multiplex(&self) -> Option<&dyn $crate::Multiplex> {
                Some(self)
            }
        }
    };
}

#[cfg(feature = "grpc")]
pub mod grpc;
#[cfg(feature = "h2")]
pub mod h2;
#[cfg(feature = "h2")]
pub mod http2;
pub mod kinds;
pub mod listener;
#[cfg(feature = "mux")]
pub mod mux;
#[cfg(feature = "obfs")]
pub mod obfs;
#[cfg(feature = "pht")]
pub mod pht;
#[cfg(feature = "serial")]
pub mod serial;
#[cfg(feature = "ssh")]
pub mod ssh;
pub mod stdio;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "tun")]
pub mod tun;
pub mod unix;
#[cfg(feature = "ws")]
pub mod ws;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use gost_core::stream::Stream;

/// Adds the listeners and dialers of every transport compiled in.
pub fn register(t: &mut kinds::Transports) {
    listener::register(t);
    unix::register(t);
    stdio::register(t);
    #[cfg(feature = "serial")]
    serial::register(t);
    #[cfg(feature = "tls")]
    tls::register(t);
    #[cfg(feature = "ws")]
    ws::register(t);
    #[cfg(feature = "mux")]
    mux::register(t);
    #[cfg(feature = "h2")]
    h2::register(t);
    #[cfg(feature = "h2")]
    http2::register(t);
    #[cfg(feature = "grpc")]
    grpc::register(t);
    #[cfg(feature = "obfs")]
    obfs::register(t);
    #[cfg(feature = "ssh")]
    ssh::register(t);
    #[cfg(feature = "pht")]
    pht::register(t);
    #[cfg(feature = "tun")]
    tun::register(t);
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The server side of a transport over an accepted connection: a TLS
/// handshake, a WebSocket upgrade. It runs in the connection's own task,
/// so a slow or silent client never holds up accepting the next one.
pub trait Upgrade: Send + Sync {
    fn upgrade(&self, stream: Stream) -> BoxFuture<'_, io::Result<Stream>>;

    /// A multiplexing transport's server side, whose upgraded connection
    /// is a session of streams, each a connection of its own.
    fn multiplex(&self) -> Option<&dyn MultiplexUpgrade> {
        None
    }
}

/// The server side of a multiplexing transport (`mtls`, `mws`, ...).
pub trait MultiplexUpgrade: Send + Sync {
    /// The session over an accepted connection, after the transport
    /// under it ([`Upgrade::upgrade`]: TLS, WebSocket).
    fn session(&self, stream: Stream) -> BoxFuture<'_, io::Result<Box<dyn Streams>>>;
}

/// A stream a peer opened over a session, with the local hops behind it
/// when this gost opened it ([`gost_core::dialer::loops`]), so a loop
/// through a pooled session is cut like one through new sockets.
pub struct Opened {
    pub stream: Stream,
    pub hops: u8,
}

impl Opened {
    /// Stream `id` of a session over a connection with `ends`.
    pub fn new(stream: Stream, ends: gost_core::stream::Endpoints, id: u32) -> Opened {
        Opened {
            stream,
            hops: gost_core::dialer::loops::stream_hops(ends, id),
        }
    }
}

/// The streams a client opens over one accepted connection.
pub trait Streams: Send {
    /// The next stream the peer opened; `None` once the session ended.
    /// An error is one stream refused by the transport (a gRPC call to
    /// an unknown method, an HTTP/2 request for the wrong path), the
    /// session going on; the service counts it and logs it once.
    fn accept(&mut self) -> BoxFuture<'_, Option<io::Result<Opened>>>;

    /// Why the session ended, once it has, and whether that was the
    /// peer's fault or a broken connection rather than an orderly close.
    fn end(&self) -> Option<(String, bool)>;
}

/// Transports stacked in order, each over the previous one's stream
/// (`wss` is TLS, then WebSocket).
pub struct Stacked(pub Vec<Arc<dyn Upgrade>>);

impl Upgrade for Stacked {
    fn upgrade(&self, stream: Stream) -> BoxFuture<'_, io::Result<Stream>> {
        Box::pin(async move {
            let mut stream = stream;
            for layer in &self.0 {
                stream = layer.upgrade(stream).await?;
            }
            Ok(stream)
        })
    }
}

/// The client side of a transport, as go-gost/core has it: `dial` opens
/// the connection to a chain's first node; `handshake` runs the
/// transport's own handshake over a stream to the node, which for later
/// nodes of a chain is the tunnel the previous node's connector opened.
/// A chain node keeps its dialer for its life, so a dialer may pool what
/// it likes across connections. Plain TCP nodes have none.
pub trait Dialer: Send + Sync + std::fmt::Debug {
    /// Opens a connection to `addr` (`host:port`, resolved already).
    fn dial<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Stream>> {
        Box::pin(async move { gost_core::dialer::dial_tcp(addr).await.map(Stream::from) })
    }

    /// The transport's handshake with the node at `node_addr` (as the
    /// config names it: its host is the TLS server name and the WebSocket
    /// `Host` unless options say otherwise).
    fn handshake<'a>(
        &'a self,
        stream: Stream,
        node_addr: &'a str,
    ) -> BoxFuture<'a, io::Result<Stream>>;

    /// A multiplexing transport's client side: the route then asks it for
    /// a stream instead of dialing and handshaking per connection.
    fn multiplex(&self) -> Option<&dyn Multiplex> {
        None
    }
}

/// The client side of a multiplexing transport: sessions kept per node.
pub trait Multiplex: Send + Sync {
    /// A new stream to the node at `node_addr` over a live session; when
    /// there is none, `connect` makes the connection (to the node, or a
    /// tunnel to it through earlier nodes) that a new session runs over.
    fn open<'a>(
        &'a self,
        node_addr: &'a str,
        connect: BoxFuture<'a, io::Result<Stream>>,
    ) -> BoxFuture<'a, io::Result<Stream>>;
}

/// A handshake that failed, named with the transport. The kind stays, so
/// a client that closed before saying anything is told apart from one
/// that sent garbage.
#[cfg(feature = "tls")]
pub(crate) fn handshake_error(transport: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{transport} handshake: {e}"))
}

/// Runs `work` within `timeout`, when one is set.
#[cfg(feature = "tls")]
pub(crate) async fn within<T>(
    transport: &str,
    timeout: Option<std::time::Duration>,
    work: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    match timeout {
        Some(t) => tokio::time::timeout(t, work).await.map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{transport} handshake: not done within {t:?}"),
            )
        })?,
        None => work.await,
    }
}
