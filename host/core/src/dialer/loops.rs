//! Run-time loop detection: a connection gost opens to one of its own
//! listeners, however indirectly (service A forwards to B, B to A; a chain
//! node that is a local service forwarding back), would otherwise make one
//! client connection open connections without end until file descriptors
//! run out.
//!
//! A hop limit cuts them: every TCP connection gost dials to an address
//! on this host (a loopback address, or its own source address) is
//! remembered by its 4-tuple for a short while, with the number of local
//! hops behind it; a service that accepts one of them learns that number,
//! carries it (plus one) into the dials its handler makes, and refuses a
//! connection more than [`MAX_HOPS`] deep. A loop thus ends after at most
//! that many connections, while a chain through other services of the
//! same gost keeps working. GOST has no such check; nothing changes on the
//! wire. Connections that leave the host, or go to a port none of this
//! process's TCP listeners uses, are never recorded, so forwarding to
//! local targets costs one atomic load per dial and per accept.
//!
//! A multiplexing transport (mux, h2, gRPC, SSH) opens most of its streams
//! over a session it already has, with no new socket to remember: such a
//! stream is remembered by its session's socket address and its stream
//! id, which both ends of a session share, so a loop through a pooled
//! session is cut the same way. For h2 and gRPC the id is known only once
//! the request is queued; a peer that reads it before it is remembered
//! sees a stream without hops, and the loop takes at most another
//! [`MAX_HOPS`] turns.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::stream::Endpoints;

/// How long a dialed connection is remembered: its other end is accepted
/// within this time, or the connection was not a loop.
const REMEMBER: Duration = Duration::from_secs(10);

const SHARDS: usize = 16;

/// The most local hops a connection may have behind it.
pub const MAX_HOPS: u8 = 8;

tokio::task_local! {
    /// The local hops behind the connection this task serves.
    static HOPS: u8;
}

/// Runs `f` (one poll of a connection's handler) knowing the connection
/// is `hops` local hops deep. Set per poll rather than with an async
/// scope: the scope's future would take room in every connection's task.
pub fn enter<R>(hops: u8, f: impl FnOnce() -> R) -> R {
    HOPS.sync_scope(hops, f)
}

struct Shard {
    /// The outgoing connection's source address, its destination, when it
    /// was dialed and the local hops it makes.
    dialed: HashMap<SocketAddr, (SocketAddr, Instant, u8)>,
    /// A stream opened over a session: the session's source address and
    /// the stream's id, when it was opened and the local hops it makes.
    streams: HashMap<(SocketAddr, u32), (Instant, u8)>,
    pruned: Instant,
}

impl Shard {
    /// Forgets what is older than [`REMEMBER`], at most once per that
    /// time, keeping the table's count right.
    fn prune(&mut self, now: Instant, len: &AtomicUsize) {
        if now.duration_since(self.pruned) < REMEMBER {
            return;
        }
        let before = self.dialed.len() + self.streams.len();
        self.dialed
            .retain(|_, (_, at, _)| now.duration_since(*at) < REMEMBER);
        self.streams
            .retain(|_, (at, _)| now.duration_since(*at) < REMEMBER);
        len.fetch_sub(
            before - self.dialed.len() - self.streams.len(),
            Ordering::Relaxed,
        );
        self.pruned = now;
    }
}

struct Table {
    shards: Vec<Mutex<Shard>>,
    /// Lets every accept skip the lookup while nothing is recorded.
    len: AtomicUsize,
}

fn table() -> &'static Table {
    static TABLE: std::sync::OnceLock<Table> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| Table {
        shards: (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    dialed: HashMap::new(),
                    streams: HashMap::new(),
                    pruned: Instant::now(),
                })
            })
            .collect(),
        len: AtomicUsize::new(0),
    })
}

fn shard(a: &SocketAddr) -> &'static Mutex<Shard> {
    &table().shards[a.port() as usize % SHARDS]
}

fn on_this_host(local: IpAddr, remote: IpAddr) -> bool {
    remote.is_loopback() || remote.is_unspecified() || remote == local
}

/// Whether a connection from `local` to `remote` may reach one of our
/// listeners, and so is worth remembering.
fn maybe_ours(local: SocketAddr, remote: SocketAddr) -> bool {
    LISTENING[remote.port() as usize].load(Ordering::Relaxed) != 0
        && on_this_host(local.ip(), remote.ip())
}

/// The local hops of a connection or stream this task opens now.
fn next_hops() -> u8 {
    HOPS.try_with(|h| *h).unwrap_or(0).saturating_add(1)
}

/// How many of this process's TCP listeners use each port.
static LISTENING: [AtomicU16; 65536] = [const { AtomicU16::new(0) }; 65536];

/// A TCP listener's port, counted as ours while this lives.
#[derive(Debug)]
pub struct Listening(u16);

/// Marks `port` as one of ours until the returned value is dropped.
pub fn listening(port: u16) -> Listening {
    LISTENING[port as usize].fetch_add(1, Ordering::Relaxed);
    Listening(port)
}

impl Drop for Listening {
    fn drop(&mut self) {
        LISTENING[self.0 as usize].fetch_sub(1, Ordering::Relaxed);
    }
}

/// Remembers a connection gost dialed from `local` to `remote`, when
/// `remote` is on this host at a port one of our listeners uses.
pub fn record(local: SocketAddr, remote: SocketAddr) {
    if !maybe_ours(local, remote) {
        return;
    }
    let t = table();
    let now = Instant::now();
    let hops = next_hops();
    let mut s = shard(&local).lock().unwrap_or_else(|p| p.into_inner());
    s.prune(now, &t.len);
    if s.dialed.insert(local, (remote, now, hops)).is_none() {
        t.len.fetch_add(1, Ordering::Relaxed);
    }
}

/// Remembers a stream gost opened, with id `id`, over a session whose
/// connection has `ends`, when that connection may reach one of our
/// listeners.
pub fn record_stream(ends: Endpoints, id: u32) {
    let (Some(local), Some(remote)) = (ends.local, ends.peer) else {
        return;
    };
    if !maybe_ours(local, remote) {
        return;
    }
    let t = table();
    let now = Instant::now();
    let hops = next_hops();
    let mut s = shard(&local).lock().unwrap_or_else(|p| p.into_inner());
    s.prune(now, &t.len);
    if s.streams.insert((local, id), (now, hops)).is_none() {
        t.len.fetch_add(1, Ordering::Relaxed);
    }
}

/// The local hops behind stream `id` that a session accepted over a
/// connection with `ends` (its local address one of our listeners'):
/// 0 unless gost itself opened it. Each stream is looked up once.
pub fn stream_hops(ends: Endpoints, id: u32) -> u8 {
    let t = table();
    if t.len.load(Ordering::Relaxed) == 0 {
        return 0;
    }
    let Some(peer) = ends.peer else {
        return 0;
    };
    let mut s = shard(&peer).lock().unwrap_or_else(|p| p.into_inner());
    match s.streams.remove(&(peer, id)) {
        Some((at, hops)) => {
            t.len.fetch_sub(1, Ordering::Relaxed);
            if at.elapsed() < REMEMBER {
                hops
            } else {
                0
            }
        }
        None => 0,
    }
}

/// The local hops behind a connection a listener bound to `listen`
/// accepted from `peer`: 0 unless gost itself dialed it.
pub fn hops(peer: SocketAddr, listen: SocketAddr) -> u8 {
    let t = table();
    if t.len.load(Ordering::Relaxed) == 0 {
        return 0;
    }
    let s = shard(&peer).lock().unwrap_or_else(|p| p.into_inner());
    match s.dialed.get(&peer) {
        Some((remote, at, hops))
            if at.elapsed() < REMEMBER
                && remote.port() == listen.port()
                && (listen.ip().is_unspecified() || same_ip(remote.ip(), listen.ip())) =>
        {
            *hops
        }
        _ => 0,
    }
}

/// Equal, seeing an IPv4-mapped IPv6 address as the IPv4 one.
fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_to_ourselves_carries_its_hops_and_others_none() {
        let listen: SocketAddr = "127.0.0.1:41000".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:41000".parse().unwrap();
        let from: SocketAddr = "127.0.0.1:52001".parse().unwrap();
        assert_eq!(hops(from, listen), 0);
        // Not recorded while no listener of ours has the port.
        record(from, listen);
        assert_eq!(hops(from, listen), 0);
        let _ours = listening(listen.port());
        record(from, listen);
        assert_eq!(hops(from, listen), 1);
        assert_eq!(hops(from, any), 1);
        // A dial made while serving a connection 3 hops deep is the 4th.
        let deeper: SocketAddr = "127.0.0.1:52004".parse().unwrap();
        enter(3, || record(deeper, listen));
        assert_eq!(hops(deeper, listen), 4);
        // Another listener, another client port: not ours.
        assert_eq!(hops(from, "127.0.0.1:41001".parse().unwrap()), 0);
        assert_eq!(hops("127.0.0.1:52002".parse().unwrap(), listen), 0);
        // Connections leaving the host are never recorded.
        let out: SocketAddr = "10.0.0.1:52003".parse().unwrap();
        record(out, "192.0.2.1:41000".parse().unwrap());
        assert_eq!(hops(out, any), 0);
    }

    #[tokio::test]
    async fn a_stream_over_a_session_to_ourselves_carries_its_hops_once() {
        let listen: SocketAddr = "127.0.0.1:41100".parse().unwrap();
        let from: SocketAddr = "127.0.0.1:52101".parse().unwrap();
        let client = Endpoints {
            local: Some(from),
            peer: Some(listen),
        };
        let server = Endpoints {
            local: Some(listen),
            peer: Some(from),
        };
        record_stream(client, 3);
        assert_eq!(
            stream_hops(server, 3),
            0,
            "no listener of ours has the port"
        );
        let _ours = listening(listen.port());
        enter(5, || record_stream(client, 3));
        record_stream(client, 5);
        assert_eq!(stream_hops(server, 3), 6);
        assert_eq!(stream_hops(server, 3), 0, "looked up once");
        assert_eq!(stream_hops(server, 5), 1);
        assert_eq!(stream_hops(server, 7), 0, "never opened");
        // A session without socket addresses (in memory) is never ours.
        record_stream(Endpoints::default(), 9);
        assert_eq!(stream_hops(Endpoints::default(), 9), 0);
    }
}
