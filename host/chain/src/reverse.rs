//! Reverse forwarding listeners (GOST's `listener/rtcp`, `listener/rudp`):
//! the port is bound on the last node of the listener's chain by a BIND,
//! and the connections (or datagrams) it receives there come back through
//! the chain to this service, whose handler forwards them to the target.
//!
//! As in GOST, the BIND is made when the service first asks for a client,
//! and made again whenever the previous one ended: the listener's accept
//! then fails, so the service logs it, records the event, marks itself
//! failed and retries with back-off until the chain lets it bind again.

pub mod kinds;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;

use crate::connector::bind::{BindNetwork, Bound, PeerHeader};
use crate::connector::udp_tun::UdpTunnel;
use crate::router::Router;
use gost_transport::listener::udp::{Demux, UdpOptions};
use gost_transport::listener::{AcceptFuture, Accepted, Listener};

/// How long a stream of the BIND session may take to announce its peer.
const PEER_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The address to report before anything is bound: the requested one,
/// or all interfaces when it cannot be read as a socket address.
fn requested_local(addr: &str) -> SocketAddr {
    gost_transport::listener::resolve_bind_addr(addr)
        .unwrap_or_else(|_| SocketAddr::from(([0u16; 8], 0)))
}

/// What the node reported it bound, when it is an address.
fn bound_local(bound: &Bound, requested: SocketAddr) -> SocketAddr {
    bound.addr.parse().unwrap_or(requested)
}

fn bind_failed(kind: &str, addr: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!(
        "{kind}: bind {} through the chain: {e}",
        gost_core::escape::esc(addr)
    ))
}

/// `rtcp`: a TCP port on the chain's last node; each connection to it is a
/// stream of the smux session the BIND's connection carries. `runix` is
/// the same with a unix socket on the node (a relay node's unix BIND).
#[cfg(feature = "mux")]
pub struct RtcpListener {
    router: Router,
    network: BindNetwork,
    addr: String,
    local: SocketAddr,
    mux: gost_transport::mux::MuxConfig,
    active: Mutex<Option<Active>>,
}

#[cfg(feature = "mux")]
struct Active {
    source: Source,
    local: SocketAddr,
}

/// Where a bind's connections come from: streams of an smux session
/// that each start with a header naming the peer (socks5, relay, tunnel
/// nodes), or SSH channels with the peer beside them (an sshd node).
#[cfg(feature = "mux")]
enum Source {
    Mux(gost_transport::mux::Session, PeerHeader),
    #[cfg(feature = "ssh")]
    Ssh(gost_transport::ssh::Forwarded),
}

#[cfg(feature = "mux")]
impl RtcpListener {
    /// `addr` is the service's address, bound on the far side.
    pub fn new(router: Router, addr: &str, mux: gost_transport::mux::MuxConfig) -> Self {
        RtcpListener {
            router,
            network: BindNetwork::Tcp,
            addr: addr.to_string(),
            local: requested_local(addr),
            mux,
            active: Mutex::new(None),
        }
    }

    /// `runix`: `path` is the unix socket bound on the far side; its
    /// clients are unix clients (`@`).
    pub fn unix(router: Router, path: &str, mux: gost_transport::mux::MuxConfig) -> Self {
        RtcpListener {
            router,
            network: BindNetwork::Unix,
            addr: path.to_string(),
            local: gost_core::context::UNIX_PEER,
            mux,
            active: Mutex::new(None),
        }
    }

    fn kind(&self) -> &'static str {
        match self.network {
            BindNetwork::Unix => "runix",
            _ => "rtcp",
        }
    }

    fn ended(&self, why: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            format!(
                "{}: the bind of {} ended ({why}); binding again",
                self.kind(),
                gost_core::escape::esc(&self.addr)
            ),
        )
    }

    async fn next(&self) -> io::Result<Accepted> {
        let mut active = self.active.lock().await;
        loop {
            let a = match active.as_mut() {
                Some(a) => a,
                None => {
                    let kind = self.kind();
                    let bound = self
                        .router
                        .bind(self.network, &self.addr)
                        .await
                        .map_err(|e| bind_failed(kind, &self.addr, e))?;
                    tracing::info!(addr = %gost_core::escape::esc(&self.addr), bound = %gost_core::escape::esc(&bound.addr), "{kind}: bound on the chain's last node");
                    let local = match self.network {
                        BindNetwork::Unix => self.local,
                        _ => bound_local(&bound, self.local),
                    };
                    #[cfg(feature = "ssh")]
                    let bound = match bound.forwarded {
                        Some(rx) => {
                            *active = Some(Active {
                                source: Source::Ssh(rx),
                                local,
                            });
                            continue;
                        }
                        None => bound,
                    };
                    active.insert(Active {
                        local,
                        source: Source::Mux(
                            gost_transport::mux::Session::server(
                                bound.stream,
                                bound.mux.as_ref().unwrap_or(&self.mux),
                            ),
                            bound.header,
                        ),
                    })
                }
            };
            let (session, header) = match &mut a.source {
                Source::Mux(session, header) => (session, *header),
                #[cfg(feature = "ssh")]
                Source::Ssh(rx) => match rx.recv().await {
                    Some((stream, peer)) => {
                        return Ok(Accepted {
                            conn: gost_transport::listener::Conn::Stream(stream),
                            peer,
                            local: a.local,
                        })
                    }
                    None => {
                        *active = None;
                        return Err(self.ended("the SSH session ended"));
                    }
                },
            };
            let Some(stream) = session.accept().await else {
                let end = session.end().unwrap_or_else(|| "closed".into());
                *active = None;
                return Err(self.ended(&end));
            };
            let mut stream = stream.into_stream();
            let unix = self.network == BindNetwork::Unix;
            match tokio::time::timeout(PEER_HEADER_TIMEOUT, read_peer(&mut stream, header, unix))
                .await
            {
                Ok(Ok(peer)) => {
                    return Ok(Accepted {
                        conn: gost_transport::listener::Conn::Stream(stream),
                        peer,
                        local: a.local,
                    })
                }
                Ok(Err(e)) => {
                    tracing::warn!(addr = %gost_core::escape::esc(&self.addr), error = %e, "{}: a stream with a bad peer header, dropped", self.kind())
                }
                Err(_) => {
                    tracing::warn!(addr = %gost_core::escape::esc(&self.addr), "{}: a stream without its peer header, dropped", self.kind())
                }
            }
        }
    }
}

#[cfg(feature = "mux")]
impl Listener for RtcpListener {
    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn addr_text(&self) -> String {
        match self.network {
            BindNetwork::Unix => self.addr.clone(),
            _ => self.local.to_string(),
        }
    }

    fn accept(&self) -> AcceptFuture<'_> {
        Box::pin(self.next())
    }
}

/// The peer a stream of a multiplexed BIND announces before its bytes;
/// on a unix BIND the peer is a unix client, whatever name it has.
async fn read_peer(
    stream: &mut gost_core::stream::Stream,
    header: PeerHeader,
    unix: bool,
) -> io::Result<SocketAddr> {
    let bad = |msg: String| io::Error::new(io::ErrorKind::InvalidData, msg);
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).await?;
    let addr = match header {
        PeerHeader::Socks5 => {
            if head[0] != gost_proto::socks::VERSION {
                return Err(bad(format!("socks5 peer reply: version {}", head[0])));
            }
            if head[1] != gost_proto::socks::REP_SUCCEEDED {
                return Err(bad(format!("socks5 peer reply: code {:#04x}", head[1])));
            }
            let rest = match head[3] {
                gost_proto::socks::ATYP_IPV4 => 4 + 2,
                gost_proto::socks::ATYP_IPV6 => 16 + 2,
                t => return Err(bad(format!("socks5 peer reply: address type {t}"))),
            };
            let mut b = vec![0u8; 1 + rest];
            b[0] = head[3];
            stream.read_exact(&mut b[1..]).await?;
            match gost_proto::socks::parse_addr(&b, 0) {
                Some((gost_proto::socks::TargetAddr::Ip(a), _)) => a.to_string(),
                _ => return Err(bad("socks5 peer reply: malformed address".into())),
            }
        }
        PeerHeader::Relay => {
            let mut features = vec![0u8; u16::from_be_bytes([head[2], head[3]]) as usize];
            stream.read_exact(&mut features).await?;
            let (status, addrs) =
                gost_proto::relay::parse_response(head, &features).map_err(bad)?;
            if status != gost_proto::relay::STATUS_OK {
                return Err(bad(format!("relay peer response: status {status}")));
            }
            addrs
                .into_iter()
                .next()
                .ok_or_else(|| bad("relay peer response: no address".into()))?
        }
    };
    if unix {
        return Ok(gost_core::context::UNIX_PEER);
    }
    addr.parse()
        .map_err(|_| bad(format!("peer address {}", gost_core::escape::esc(&addr))))
}

/// `rudp`: a UDP port on the chain's last node; its datagrams come back
/// as UDP-over-TCP frames naming their source, sorted into per-client
/// sessions as a `udp` listener does.
pub struct RudpListener {
    router: Router,
    addr: String,
    local: SocketAddr,
    opts: UdpOptions,
    active: Mutex<Option<Tunnelled>>,
}

struct Tunnelled {
    accept_rx: mpsc::Receiver<io::Result<Accepted>>,
    task: JoinHandle<()>,
}

impl Drop for Tunnelled {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RudpListener {
    pub fn new(router: Router, addr: &str, opts: UdpOptions) -> Self {
        RudpListener {
            router,
            addr: addr.to_string(),
            local: requested_local(addr),
            opts,
            active: Mutex::new(None),
        }
    }

    async fn next(&self) -> io::Result<Accepted> {
        let mut active = self.active.lock().await;
        let t = match active.as_mut() {
            Some(t) => t,
            None => {
                let bound = self
                    .router
                    .bind(BindNetwork::Udp, &self.addr)
                    .await
                    .map_err(|e| bind_failed("rudp", &self.addr, e))?;
                tracing::info!(addr = %gost_core::escape::esc(&self.addr), bound = %gost_core::escape::esc(&bound.addr), "rudp: bound on the chain's last node");
                let local = bound_local(&bound, self.local);
                let (accept_tx, accept_rx) = mpsc::channel(self.opts.backlog.max(1));
                let (reply_tx, reply_rx) = mpsc::channel(self.opts.read_queue_size.max(1));
                let demux = Demux::tunnelled(local, self.opts.clone(), reply_tx, accept_tx);
                #[cfg(feature = "mux")]
                let task = match &bound.mux {
                    // A tunnel connector's UDP BIND: a stream per visitor.
                    Some(mux) => tokio::spawn(carry_streams(
                        gost_transport::mux::Session::server(bound.stream, mux),
                        bound.header,
                        demux,
                        reply_rx,
                    )),
                    None => {
                        let tunnel = UdpTunnel::new(bound.stream);
                        tokio::spawn(carry(tunnel, demux, reply_rx, self.opts.read_buffer_size))
                    }
                };
                #[cfg(not(feature = "mux"))]
                let task = {
                    let tunnel = UdpTunnel::new(bound.stream);
                    tokio::spawn(carry(tunnel, demux, reply_rx, self.opts.read_buffer_size))
                };
                active.insert(Tunnelled { accept_rx, task })
            }
        };
        match t.accept_rx.recv().await {
            Some(Ok(a)) => Ok(a),
            Some(Err(e)) => {
                *active = None;
                Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    format!(
                        "rudp: the bind of {} ended ({e}); binding again",
                        gost_core::escape::esc(&self.addr)
                    ),
                ))
            }
            None => {
                *active = None;
                Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "rudp: the bind ended; binding again",
                ))
            }
        }
    }
}

impl Listener for RudpListener {
    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn accept(&self) -> AcceptFuture<'_> {
        Box::pin(self.next())
    }
}

/// Moves datagrams between the tunnel and the sessions until the tunnel
/// ends, then says why on the accept queue.
async fn carry(
    mut tunnel: UdpTunnel,
    demux: Demux,
    mut replies: mpsc::Receiver<(Vec<u8>, SocketAddr)>,
    buffer_size: usize,
) {
    let mut buf = vec![0u8; buffer_size.max(1)];
    let end = loop {
        tokio::select! {
            r = tunnel.recv_from(&mut buf) => match r {
                Ok((n, from)) => demux.dispatch(buf[..n].to_vec(), from),
                Err(e) => break e,
            },
            Some((data, to)) = replies.recv() => {
                if let Err(e) = tunnel.send_to(&data, &to.to_string()).await {
                    break e;
                }
            }
        }
    };
    let _ = demux.accept_tx.send(Err(end)).await;
}

/// The datagrams of a tunnel connector's UDP BIND: each visitor is a
/// stream of the session, starting with the header naming it, then
/// `LEN(2) DATA` frames both ways (GOST's `bindUDPConn`). Ends, saying why
/// on the accept queue, when the session does.
#[cfg(feature = "mux")]
async fn carry_streams(
    mut session: gost_transport::mux::Session,
    header: PeerHeader,
    demux: Demux,
    mut replies: mpsc::Receiver<(Vec<u8>, SocketAddr)>,
) {
    use std::collections::HashMap;
    use std::sync::Arc;
    type Writers = Arc<std::sync::Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>>;
    let writers: Writers = Default::default();
    let demux = Arc::new(demux);
    let mut visitors = tokio::task::JoinSet::new();
    let end = loop {
        tokio::select! {
            s = session.accept() => {
                let Some(s) = s else {
                    break io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        session.end().unwrap_or_else(|| "closed".into()),
                    );
                };
                let (demux, writers) = (demux.clone(), writers.clone());
                visitors.spawn(async move {
                    let mut stream = s.into_stream();
                    let peer = match tokio::time::timeout(PEER_HEADER_TIMEOUT, read_peer(&mut stream, header, false)).await {
                        Ok(Ok(p)) => p,
                        _ => {
                            tracing::warn!("rudp: a tunnel stream without a good peer header, dropped");
                            return;
                        }
                    };
                    let (mut rd, mut wr) = tokio::io::split(stream);
                    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
                    writers.lock().unwrap_or_else(|p| p.into_inner()).insert(peer, tx);
                    let write = async move {
                        use tokio::io::AsyncWriteExt;
                        while let Some(d) = rx.recv().await {
                            let mut frame = Vec::with_capacity(d.len() + 2);
                            frame.extend_from_slice(&(d.len() as u16).to_be_bytes());
                            frame.extend_from_slice(&d);
                            if wr.write_all(&frame).await.is_err() {
                                return;
                            }
                        }
                    };
                    let read = async {
                        let mut len = [0u8; 2];
                        while rd.read_exact(&mut len).await.is_ok() {
                            let mut d = vec![0u8; u16::from_be_bytes(len) as usize];
                            if rd.read_exact(&mut d).await.is_err() {
                                return;
                            }
                            demux.dispatch(d, peer);
                        }
                    };
                    tokio::select! {
                        _ = write => {}
                        _ = read => {}
                    }
                    writers.lock().unwrap_or_else(|p| p.into_inner()).remove(&peer);
                });
            }
            Some(_) = visitors.join_next(), if !visitors.is_empty() => {}
            Some((data, to)) = replies.recv() => {
                if data.len() > u16::MAX as usize {
                    continue;
                }
                let w = writers.lock().unwrap_or_else(|p| p.into_inner()).get(&to).cloned();
                if let Some(w) = w {
                    if w.try_send(data).is_err() {
                        tracing::debug!(client = %to, "rudp: visitor's queue full, datagram dropped");
                    }
                }
            }
        }
    };
    let _ = demux.accept_tx.send(Err(end)).await;
}
