//! The host side of the WIT `conn` resource: a stream the plugin reads
//! and writes through host calls. The socket never leaves the host, so when
//! a handler hands its streams back the host relays them natively.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use gost_chain::connector::upstream::Upstream;
use gost_handler::stream::ClientStream;

/// Largest chunk one `read` returns, whatever the plugin asks for: bounds
/// the copy into guest memory.
const MAX_READ: usize = 64 * 1024;

/// The host side of the WIT `conn-info` resource, kept unformatted: most
/// handshakes read no field, and every string handed to the guest costs
/// a formatting on the host and a call into the guest to allocate it.
#[derive(Debug)]
pub struct ConnInfoRes {
    pub service: Arc<str>,
    pub client: SocketAddr,
    pub local: SocketAddr,
}

#[derive(Debug)]
enum Inner {
    /// The accepted client: counts into the service's stats.
    Client(ClientStream),
    /// A connection the plugin dialed; a lazy relay node's response may
    /// be owed on it.
    Upstream(Upstream),
}

#[derive(Debug)]
pub struct ConnRes {
    inner: Inner,
    /// The client's address as the listener accepted it (no syscall);
    /// formatted only when the plugin asks: most handshakes never do.
    peer: Option<SocketAddr>,
    write_closed: bool,
    /// Whether the plugin read before. The reactor has no readiness
    /// recorded for a freshly accepted socket until its first wait.
    read_before: bool,
}

impl ConnRes {
    /// `peer` is the address the listener accepted from, so no
    /// getpeername(2) per connection.
    pub fn client(stream: ClientStream, peer: SocketAddr) -> Self {
        ConnRes {
            inner: Inner::Client(stream),
            peer: Some(peer),
            write_closed: false,
            read_before: false,
        }
    }

    /// The peer address is asked of the socket only if the plugin wants
    /// it: a getpeername(2) per dial otherwise.
    pub fn upstream(stream: Upstream) -> Self {
        ConnRes {
            inner: Inner::Upstream(stream),
            peer: None,
            write_closed: false,
            read_before: false,
        }
    }

    /// The stream for the native relay's client side: a dialed stream
    /// passed as the client has any owed relay response read first.
    pub async fn into_stream(self) -> io::Result<gost_core::stream::Stream> {
        match self.inner {
            Inner::Client(c) => Ok(c.into_inner()),
            Inner::Upstream(u) => u.into_stream().await.map_err(|e| e.into_io()),
        }
    }

    /// The socket for the native relay's upstream side.
    pub fn into_upstream(self) -> Upstream {
        match self.inner {
            Inner::Client(c) => Upstream::direct(c.into_inner()),
            Inner::Upstream(u) => u,
        }
    }

    /// Whether the plugin shut down the writing side.
    pub fn write_closed(&self) -> bool {
        self.write_closed
    }

    /// Empty when the socket has no peer address (any more).
    pub fn peer(&self) -> String {
        let peer = match &self.inner {
            Inner::Client(_) => self.peer,
            Inner::Upstream(u) => u.peer_addr().ok(),
        };
        peer.map(|a| a.to_string()).unwrap_or_default()
    }

    pub async fn read(&mut self, max: u32) -> io::Result<Vec<u8>> {
        let n = (max as usize).min(MAX_READ);
        let mut buf = Vec::with_capacity(n);
        if n == 0 {
            return Ok(buf);
        }
        match &mut self.inner {
            // The first read takes data already there without parking the
            // guest (each park is a fiber switch out and back), though the
            // reactor has no readiness recorded for the fresh socket yet.
            // Later reads go to the reactor at once: its readiness is
            // current by then, and a raw recv(2) that finds nothing would
            // be a second failing syscall next to the reactor's own.
            Inner::Client(c) => {
                let first = !std::mem::replace(&mut self.read_before, true);
                if !first || c.try_read_now(&mut buf)?.is_none() {
                    c.read_buf(&mut buf).await?;
                }
            }
            Inner::Upstream(u) => {
                u.read_buf(&mut buf).await?;
            }
        };
        Ok(buf)
    }

    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        if self.write_closed {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after shutdown-write",
            ));
        }
        match &mut self.inner {
            Inner::Client(c) => {
                let sent = c.try_write_now(data)?;
                c.send(&data[sent..]).await
            }
            Inner::Upstream(u) => u.write_all(data).await,
        }
    }

    pub async fn shutdown_write(&mut self) -> io::Result<()> {
        if self.write_closed {
            return Ok(());
        }
        self.write_closed = true;
        match &mut self.inner {
            Inner::Client(c) => c.shutdown().await,
            Inner::Upstream(u) => u.shutdown().await,
        }
    }
}
