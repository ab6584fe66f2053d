//! Dialing along a route: the first node is dialed, every later node and
//! finally the target are reached through the previous node's connector
//! (GOST's `chainRoute.connect` and `Dial`).

use std::io;
use std::sync::Arc;
use std::time::Instant;

use super::{Node, Route};
use crate::connector::bind::{BindNetwork, Bound};
use crate::connector::udp_tun::UdpTunnel;
use crate::connector::upstream::Upstream;
use crate::connector::ConnectError;
use gost_core::stream::Stream;
use gost_transport::BoxFuture;

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("node {node} ({addr}): {source}")]
    Dial {
        node: String,
        addr: String,
        source: io::Error,
    },
    #[error("node {node} ({addr}) -> {next}: {source}")]
    Connect {
        node: String,
        addr: String,
        next: String,
        source: ConnectError,
    },
}

impl RouteError {
    /// The error as an `io::Error` for the router's callers: a node that
    /// refused the TCP connection stays "connection refused", anything a
    /// proxy on the way refused is "host unreachable" (SOCKS 0x04), which is
    /// what GOST's handlers tell their clients.
    pub fn into_io(self) -> io::Error {
        let kind = match &self {
            RouteError::Dial { source, .. } => source.kind(),
            RouteError::Connect {
                source: ConnectError::Io { source, .. },
                ..
            } if source.kind() == io::ErrorKind::ConnectionRefused => {
                io::ErrorKind::ConnectionRefused
            }
            RouteError::Connect { .. } => io::ErrorKind::HostUnreachable,
        };
        io::Error::new(kind, self.to_string())
    }
}

/// Dials `target` through a route (at least one node) of the chain named
/// `chain`. A node that cannot be reached, or whose predecessor could not
/// reach it, is marked failed; a node that worked is reset. A failure of
/// the last connector to reach the target itself marks nothing: the target
/// may be down, not the node. A lazy relay node's response may still be
/// owed on the stream.
pub async fn dial(chain: &str, route: &Route, target: &str) -> Result<Upstream, RouteError> {
    let (mut stream, last) = reach_last_counted(chain, route).await?;
    connect(&last, &mut stream, target)
        .await
        .map_err(|source| RouteError::Connect {
            node: last.name.clone(),
            addr: last.addr.clone(),
            next: target.to_string(),
            source,
        })?;
    Ok(stream)
}

/// A stream through a route to the unix socket at `path` on the last
/// node (GOST's route `Dial` with network `unix`), which its connector
/// asks for: a relay node connects to the socket, a `unix` node is it.
pub async fn dial_unix(chain: &str, route: &Route, path: &str) -> Result<Upstream, RouteError> {
    let (mut stream, last) = reach_last_counted(chain, route).await?;
    let connected = match &last.connector {
        Some(c) => c.connect_unix(&mut stream, path).await,
        None => Err(ConnectError::NoUnix {
            connector: "forward",
        }),
    };
    connected.map_err(|source| RouteError::Connect {
        node: last.name.clone(),
        addr: last.addr.clone(),
        next: path.to_string(),
        source,
    })?;
    Ok(stream)
}

/// A UDP tunnel through a route (at least one node) of the chain named
/// `chain` from the last node to `target`, or to any target when `None`
/// (GOST's route `Dial` with network `udp`): the nodes are reached as for
/// TCP, then the last node's connector asks for the tunnel.
pub async fn dial_udp(
    chain: &str,
    route: &Route,
    target: Option<&str>,
) -> Result<UdpTunnel, RouteError> {
    let (stream, last) = reach_last_counted(chain, route).await?;
    let tunnel = match &last.connector {
        Some(c) => c.udp_tunnel(stream, target, &last.addr).await,
        // Forwarder nodes have no connector; they are never in a route.
        None => Err(ConnectError::NoUdp {
            connector: "forward",
        }),
    };
    tunnel.map_err(|source| RouteError::Connect {
        node: last.name.clone(),
        addr: last.addr.clone(),
        next: "udp tunnel".into(),
        source,
    })
}

/// A BIND at `addr` on the last node of a route (GOST's route `Bind`):
/// the nodes are reached as for a dial, then the last node's connector
/// asks its node to listen.
pub async fn bind(
    chain: &str,
    route: &Route,
    network: BindNetwork,
    addr: &str,
) -> Result<Bound, RouteError> {
    let (stream, last) = reach_last_counted(chain, route).await?;
    let bound = match &last.connector {
        Some(c) => c.bind(stream, network, addr).await,
        None => Err(ConnectError::NoBind {
            connector: "forward",
        }),
    };
    bound.map_err(|source| RouteError::Connect {
        node: last.name.clone(),
        addr: last.addr.clone(),
        next: format!("bind {addr}"),
        source,
    })
}

/// [`reach_last`] with metrics on: a route that fails before its last
/// node counts a chain error, labelled as GOST does with the first node.
async fn reach_last_counted(
    chain: &str,
    route: &Route,
) -> Result<(Upstream, Arc<Node>), RouteError> {
    let reached = reach_last(chain, route).await;
    if reached.is_err() {
        let first = &route.nodes[0];
        if let Some(s) = gost_core::metrics::chain_node(&first.metrics, chain, &first.name) {
            s.add_error();
        }
    }
    reached
}

/// A stream to the last node, every node before it having connected to
/// the next (GOST's `chainRoute.connect`), and that last node.
async fn reach_last(chain: &str, route: &Route) -> Result<(Upstream, Arc<Node>), RouteError> {
    reach(chain, &route.nodes, &route.race).await
}

/// [`reach_last`] over `nodes`, the first of them raced among `race` when
/// that is not empty.
async fn reach(
    chain: &str,
    nodes: &[Arc<Node>],
    race: &[Arc<Node>],
) -> Result<(Upstream, Arc<Node>), RouteError> {
    // A node whose transport multiplexes starts the route: the nodes
    // before it only make its session's connection, once per session
    // (GOST splits the route there).
    let begin = nodes
        .iter()
        .rposition(|n| n.dialer.as_ref().is_some_and(|d| d.multiplex().is_some()))
        .unwrap_or(0);
    let (mut stream, mut prev) = if begin > 0 {
        let first = &nodes[begin];
        let before = Before {
            nodes: &nodes[..begin],
            race,
        };
        (
            dial_first(chain, first, Some(before)).await?,
            Arc::clone(first),
        )
    } else if !race.is_empty() {
        race_first(chain, race).await?
    } else {
        let first = &nodes[0];
        (dial_first(chain, first, None).await?, Arc::clone(first))
    };
    for next in &nodes[begin + 1..] {
        let next_addr = match node_addr(next).await {
            Ok(a) => a,
            Err(source) => {
                next.marker.mark();
                return Err(RouteError::Dial {
                    node: next.name.clone(),
                    addr: next.addr.clone(),
                    source,
                });
            }
        };
        if let Err(source) = connect(&prev, &mut stream, &next_addr).await {
            next.marker.mark();
            return Err(RouteError::Connect {
                node: prev.name.clone(),
                addr: prev.addr.clone(),
                next: format!("node {} ({})", next.name, next.addr),
                source,
            });
        }
        if let Some(d) = &next.dialer {
            match d.handshake(stream.into_lazy_stream(), &next.addr).await {
                Ok(s) => stream = Upstream::direct(s),
                Err(source) => {
                    next.marker.mark();
                    return Err(RouteError::Dial {
                        node: next.name.clone(),
                        addr: next.addr.clone(),
                        source,
                    });
                }
            }
        }
        next.marker.reset();
        prev = Arc::clone(next);
    }
    Ok((stream, prev))
}

/// The nodes a multiplexing node's session connection runs through.
#[derive(Clone, Copy)]
struct Before<'a> {
    nodes: &'a [Arc<Node>],
    race: &'a [Arc<Node>],
}

/// The first node's connection: its dialer (or plain TCP) and its
/// transport's handshake, or a stream of its multiplexed session (whose
/// connection runs through `before` when the route has nodes before it),
/// marking the node by the outcome.
async fn dial_first(
    chain: &str,
    first: &Node,
    before: Option<Before<'_>>,
) -> Result<Upstream, RouteError> {
    let dialed = async {
        let addr = node_addr(first).await?;
        let start = Instant::now();
        let s = match &first.dialer {
            None => Stream::from(gost_core::dialer::dial_tcp(&addr).await?),
            Some(d) => match (d.multiplex(), before) {
                (Some(m), None) => m.open(&first.addr, d.dial(&addr)).await?,
                (Some(m), Some(b)) => m.open(&first.addr, tunnel(chain, b, &addr)).await?,
                (None, _) => {
                    let s = d.dial(&addr).await?;
                    d.handshake(s, &first.addr).await?
                }
            },
        };
        if let Some(m) = gost_core::metrics::chain_node(&first.metrics, chain, &first.name) {
            m.observe_connect(start.elapsed());
        }
        Ok::<_, io::Error>(s)
    };
    match dialed.await {
        Ok(s) => {
            first.marker.reset();
            Ok(Upstream::direct(s))
        }
        Err(source) => {
            first.marker.mark();
            Err(RouteError::Dial {
                node: first.name.clone(),
                addr: first.addr.clone(),
                source,
            })
        }
    }
}

/// The `parallel` strategy: every node dialed at once, the first to
/// connect kept; the others' dials are dropped (closing what they opened).
/// All failing gives the last failure.
async fn race_first(chain: &str, nodes: &[Arc<Node>]) -> Result<(Upstream, Arc<Node>), RouteError> {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    let mut dials: FuturesUnordered<_> = nodes
        .iter()
        .map(|n| async move { (dial_first(chain, n, None).await, n) })
        .collect();
    let mut last_err = None;
    while let Some((res, node)) = dials.next().await {
        match res {
            Ok(s) => return Ok((s, Arc::clone(node))),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.expect("a race has two or more nodes"))
}

/// A connection to `addr` through the nodes before a multiplexing node,
/// for its session to run over. Boxed as `Send` by its signature: it and
/// [`reach`] call each other.
fn tunnel<'a>(
    chain: &'a str,
    before: Before<'a>,
    addr: &'a str,
) -> BoxFuture<'a, io::Result<Stream>> {
    Box::pin(async move {
        let (mut up, last) = reach(chain, before.nodes, before.race)
            .await
            .map_err(RouteError::into_io)?;
        if let Err(source) = connect(&last, &mut up, addr).await {
            let e = RouteError::Connect {
                node: last.name.clone(),
                addr: last.addr.clone(),
                next: addr.to_string(),
                source,
            };
            return Err(e.into_io());
        }
        Ok(up.into_lazy_stream())
    })
}

/// The node's address after its hosts and resolver.
async fn node_addr(node: &Node) -> io::Result<String> {
    gost_core::resolver::resolve_addr(&node.addr, node.hosts.as_deref(), node.resolver.as_deref())
        .await
}

async fn connect(node: &Node, stream: &mut Upstream, addr: &str) -> Result<(), ConnectError> {
    match &node.connector {
        Some(c) => c.connect(stream, addr).await,
        None => Ok(()),
    }
}
