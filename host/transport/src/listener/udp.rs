//! UDP listener: turns datagrams into per-client "connections", as GOST
//! does, so a handler serves one client address at a time like a stream.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{AcceptFuture, Accepted, Conn, Listener};

/// Options from the listener's metadata, with GOST's defaults.
#[derive(Debug, Clone)]
pub struct UdpOptions {
    /// Largest datagram accepted (`readBufferSize`). GOST defaults to 4096
    /// and silently truncates larger datagrams; we default to the largest
    /// UDP payload so nothing is cut.
    pub read_buffer_size: usize,
    /// Datagrams queued per client before new ones are dropped.
    pub read_queue_size: usize,
    /// New clients waiting to be served before new ones are dropped.
    pub backlog: usize,
    /// Keep a session after the first reply (`keepalive`); without it GOST
    /// closes a session once it has answered, like a DNS exchange.
    pub keepalive: bool,
    /// A session with no traffic for this long is closed (`ttl`).
    pub ttl: Duration,
}

impl Default for UdpOptions {
    fn default() -> Self {
        UdpOptions {
            read_buffer_size: 65535,
            read_queue_size: 128,
            backlog: 128,
            keepalive: false,
            ttl: Duration::from_secs(5),
        }
    }
}

/// Sessions by client address and the address it sent to: one local
/// address for a `udp` listener, each original destination for `redu`.
pub(super) type Sessions = Arc<Mutex<HashMap<(SocketAddr, SocketAddr), mpsc::Sender<Vec<u8>>>>>;

pub struct UdpListen {
    addr: SocketAddr,
    accept_rx: tokio::sync::Mutex<mpsc::Receiver<io::Result<Accepted>>>,
    recv_task: JoinHandle<()>,
}

impl Drop for UdpListen {
    fn drop(&mut self) {
        self.recv_task.abort();
    }
}

/// The datagrams of one client address.
#[derive(Debug)]
pub struct UdpConn {
    reply: ReplyTo,
    peer: SocketAddr,
    local: SocketAddr,
    rx: mpsc::Receiver<Vec<u8>>,
    sessions: Sessions,
    pub keepalive: bool,
    pub ttl: Duration,
    pub max_datagram: usize,
}

impl UdpConn {
    /// Next datagram from the client; `None` once the listener is gone.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        self.rx.recv().await
    }

    /// Sends a datagram to the client from the service's own socket, so the
    /// client sees replies from the address it sent to.
    pub async fn send(&self, data: &[u8]) -> io::Result<usize> {
        match &self.reply {
            ReplyTo::Socket(s) => s.send_to(data, self.peer).await,
            ReplyTo::Connected(s) => s.send(data).await,
            ReplyTo::Tunnel(tx) => tx
                .send((data.to_vec(), self.peer))
                .await
                .map(|()| data.len())
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "udp tunnel closed")),
        }
    }
}

impl Drop for UdpConn {
    fn drop(&mut self) {
        self.rx.close();
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        // Only remove our own entry: a new session for the same client may
        // already have replaced it.
        let key = (self.peer, self.local);
        if map.get(&key).is_some_and(|tx| tx.is_closed()) {
            map.remove(&key);
        }
    }
}

impl UdpListen {
    pub fn bind(addr: SocketAddr, opts: UdpOptions) -> io::Result<Self> {
        let s = super::new_socket(addr, socket2::Type::DGRAM)?;
        s.bind(&addr.into())?;
        let socket = Arc::new(UdpSocket::from_std(s.into())?);
        let addr = socket.local_addr()?;
        let (accept_tx, accept_rx) = mpsc::channel(opts.backlog.max(1));
        let sessions: Sessions = Arc::default();
        let recv_task = tokio::spawn(recv_loop(socket, addr, opts, sessions, accept_tx));
        Ok(UdpListen {
            addr,
            accept_rx: tokio::sync::Mutex::new(accept_rx),
            recv_task,
        })
    }
}

async fn recv_loop(
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    opts: UdpOptions,
    sessions: Sessions,
    accept_tx: mpsc::Sender<io::Result<Accepted>>,
) {
    let mut buf = vec![0u8; opts.read_buffer_size.max(1)];
    let demux = Demux {
        reply: ReplyTo::Socket(socket.clone()),
        local,
        opts,
        sessions,
        accept_tx,
    };
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            // ICMP port-unreachable from an earlier send surfaces here on
            // Linux; it concerns one client, not the listener.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
            Err(e) => {
                let _ = demux.accept_tx.send(Err(e)).await;
                return;
            }
        };
        demux.dispatch(buf[..n].to_vec(), peer);
    }
}

/// Where a session's replies go.
#[derive(Debug, Clone)]
enum ReplyTo {
    /// Out of the listener's own socket.
    Socket(Arc<UdpSocket>),
    /// Out of a socket of the session's own, connected to the client
    /// (`redu`: bound to the original destination, so replies come from
    /// the address the client sent to).
    Connected(Arc<UdpSocket>),
    /// Handed to whoever carries the datagrams (a reverse `rudp`
    /// listener's tunnel), with the client's address.
    Tunnel(mpsc::Sender<(Vec<u8>, SocketAddr)>),
}

/// Sorts datagrams into per-client sessions, a new client becoming a new
/// accepted connection: the `udp` listener's, and a reverse `rudp`
/// listener's whose datagrams come framed through a chain.
pub struct Demux {
    reply: ReplyTo,
    local: SocketAddr,
    opts: UdpOptions,
    sessions: Sessions,
    pub accept_tx: mpsc::Sender<io::Result<Accepted>>,
}

impl Demux {
    /// For datagrams that do not arrive on a socket of ours: replies go
    /// to `reply` with the client's address; `local` is the address the
    /// clients sent to.
    pub fn tunnelled(
        local: SocketAddr,
        opts: UdpOptions,
        reply: mpsc::Sender<(Vec<u8>, SocketAddr)>,
        accept_tx: mpsc::Sender<io::Result<Accepted>>,
    ) -> Self {
        Demux {
            reply: ReplyTo::Tunnel(reply),
            local,
            opts,
            sessions: Sessions::default(),
            accept_tx,
        }
    }

    /// One datagram from `peer`: to its session, or to a new one.
    pub fn dispatch(&self, data: Vec<u8>, peer: SocketAddr) {
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = map.get(&(peer, self.local)) {
            if !tx.is_closed() {
                if tx.try_send(data).is_err() {
                    tracing::warn!(client = %peer, "udp: receive queue full, datagram dropped");
                }
                return;
            }
        }
        let (tx, rx) = mpsc::channel(self.opts.read_queue_size.max(1));
        let _ = tx.try_send(data);
        let conn = UdpConn {
            reply: self.reply.clone(),
            peer,
            local: self.local,
            rx,
            sessions: self.sessions.clone(),
            keepalive: self.opts.keepalive,
            ttl: self.opts.ttl,
            max_datagram: self.opts.read_buffer_size,
        };
        let accepted = Accepted {
            conn: Conn::Udp(conn),
            peer,
            local: self.local,
        };
        map.insert((peer, self.local), tx);
        drop(map);
        if let Err(e) = self.accept_tx.try_send(Ok(accepted)) {
            tracing::warn!(client = %peer, "udp: connection queue is full, client discarded");
            // Dropping the rejected conn removes its session entry.
            drop(e);
        }
    }
}

impl UdpConn {
    /// The session of a `redu` listener: datagrams arrive on `rx`, replies
    /// leave through `socket`; dropped, it leaves `sessions`.
    pub(super) fn connected(
        socket: Arc<UdpSocket>,
        peer: SocketAddr,
        local: SocketAddr,
        rx: mpsc::Receiver<Vec<u8>>,
        sessions: Sessions,
        opts: &UdpOptions,
    ) -> UdpConn {
        UdpConn {
            reply: ReplyTo::Connected(socket),
            peer,
            local,
            rx,
            sessions,
            keepalive: opts.keepalive,
            ttl: opts.ttl,
            max_datagram: opts.read_buffer_size,
        }
    }
}

impl Listener for UdpListen {
    fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    fn accept(&self) -> AcceptFuture<'_> {
        Box::pin(async move {
            let mut rx = self.accept_rx.lock().await;
            match rx.recv().await {
                Some(r) => r,
                None => Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "udp listener closed",
                )),
            }
        })
    }
}
