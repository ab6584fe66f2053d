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
