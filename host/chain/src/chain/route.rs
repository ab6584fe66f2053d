//! Dialing along a route: the first node is dialed, every later node and
//! finally the target are reached through the previous node's connector
//! (GOST's `chainRoute.connect` and `Dial`).

use std::io;
use std::sync::Arc;
use std::time::Instant;

use super::Node;
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

/// Dials `target` through `nodes` (at least one) of the chain named
/// `chain`. A node that cannot be reached, or whose predecessor could not
/// reach it, is marked failed; a node that worked is reset. A failure of
/// the last connector to reach the target itself marks nothing: the target
/// may be down, not the node. A lazy relay node's response may still be
/// owed on the stream.
pub async fn dial(chain: &str, nodes: &[Arc<Node>], target: &str) -> Result<Upstream, RouteError> {
    let mut stream = reach_last_counted(chain, nodes).await?;
    let last = &nodes[nodes.len() - 1];
    connect(last, &mut stream, target)
        .await
        .map_err(|source| RouteError::Connect {
            node: last.name.clone(),
            addr: last.addr.clone(),
            next: target.to_string(),
            source,
        })?;
    Ok(stream)
}

/// A UDP tunnel through `nodes` (at least one) of the chain named `chain`
/// from the last node to `target`, or to any target when `None` (GOST's
/// route `Dial` with network `udp`): the nodes are reached as for TCP,
/// then the last node's connector asks for the tunnel.
pub async fn dial_udp(
    chain: &str,
    nodes: &[Arc<Node>],
    target: Option<&str>,
) -> Result<UdpTunnel, RouteError> {
    let stream = reach_last_counted(chain, nodes).await?;
    let last = &nodes[nodes.len() - 1];
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

/// [`reach_last`] with metrics on: a route that fails before its last
/// node counts a chain error, labelled as GOST does with the first node.
async fn reach_last_counted(chain: &str, nodes: &[Arc<Node>]) -> Result<Upstream, RouteError> {
    let first = &nodes[0];
    let series = gost_core::metrics::chain_node(&first.metrics, chain, &first.name);
    let reached = reach_last(nodes, series).await;
    if let (Err(_), Some(s)) = (&reached, series) {
        s.add_error();
    }
    reached
}

/// A stream to the last node, every node before it having connected to
/// the next (GOST's `chainRoute.connect`).
async fn reach_last(
    nodes: &[Arc<Node>],
    series: Option<&gost_core::metrics::NodeSeries>,
) -> Result<Upstream, RouteError> {
    // A node whose transport multiplexes starts the route: the nodes
    // before it only make its session's connection, once per session
    // (GOST splits the route there).
    let begin = nodes
        .iter()
        .rposition(|n| n.dialer.as_ref().is_some_and(|d| d.multiplex().is_some()))
        .unwrap_or(0);
    let first = &nodes[begin];
    let dialed = async {
        let addr = node_addr(first).await?;
        let start = Instant::now();
        let s = match &first.dialer {
            None => Stream::from(gost_core::dialer::dial_tcp(&addr).await?),
            Some(d) => match d.multiplex() {
                Some(m) if begin == 0 => m.open(&first.addr, d.dial(&addr)).await?,
                Some(m) => m.open(&first.addr, tunnel(&nodes[..begin], &addr)).await?,
                None => {
                    let s = d.dial(&addr).await?;
                    d.handshake(s, &first.addr).await?
                }
            },
        };
        if let Some(m) = series {
            m.observe_connect(start.elapsed());
        }
        Ok::<_, io::Error>(s)
    };
    let mut stream = match dialed.await {
        Ok(s) => Upstream::direct(s),
        Err(source) => {
            first.marker.mark();
            return Err(RouteError::Dial {
                node: first.name.clone(),
                addr: first.addr.clone(),
                source,
            });
        }
    };
    first.marker.reset();
    for pair in nodes[begin..].windows(2) {
        let (prev, next) = (&pair[0], &pair[1]);
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
        if let Err(source) = connect(prev, &mut stream, &next_addr).await {
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
    }
    Ok(stream)
}

/// A connection to `addr` through `nodes`, for a multiplexing node's
/// session to run over. Boxed as `Send` by its signature: it and
/// [`reach_last`] call each other.
fn tunnel<'a>(nodes: &'a [Arc<Node>], addr: &'a str) -> BoxFuture<'a, io::Result<Stream>> {
    Box::pin(async move {
        let mut up = reach_last(nodes, None).await.map_err(RouteError::into_io)?;
        let last = &nodes[nodes.len() - 1];
        if let Err(source) = connect(last, &mut up, addr).await {
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
