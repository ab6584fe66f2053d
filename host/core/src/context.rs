//! What a connection carries besides its bytes. It is handed down
//! explicitly to everything that acts for the connection (handler, router,
//! relay, pacing), never kept in task-locals: a multiplexed transport
//! serves each of its streams in a task of its own, which a task-local
//! of the accepting task would not reach.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::limiter::traffic::ConnTraffic;
use crate::stats::Stats;

#[derive(Debug, Clone)]
pub struct ConnContext {
    pub service: Arc<str>,
    /// The client's address: the `hash` selector keys on its IP.
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// The service's counters, when `enableStats` is on.
    pub stats: Option<Arc<Stats>>,
    /// The traffic limiter's buckets for this connection, when the
    /// service has a limiter.
    pub traffic: Option<Arc<ConnTraffic>>,
}

/// The address that stands for a unix socket's client, which has no IP
/// address and no port: the unspecified IPv4 address with port 0, which
/// no TCP or UDP peer has. Shown as GOST shows an unnamed unix peer, `@`
/// (see [`Client`]); the `hash` selector, admission and per-client
/// limiters see all unix clients as this one address.
pub const UNIX_PEER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    0,
));

/// A client address for logs: `@` for a unix socket's client, as GOST
/// writes it, the address otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Client(pub SocketAddr);

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 == UNIX_PEER {
            f.write_str("@")
        } else {
            self.0.fmt(f)
        }
    }
}
