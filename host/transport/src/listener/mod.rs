//! Listeners: the data channel of a service. A listener accepts client
//! connections and hands them to the service, which passes them on to the
//! handler.

pub mod redu;
pub mod tcp;
pub mod udp;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

pub use udp::UdpConn;

use gost_core::stream::Stream;

/// One accepted client connection.
#[derive(Debug)]
pub enum Conn {
    /// A byte stream: plain TCP, or any transport over it.
    Stream(Stream),
    /// A UDP "connection": the datagrams of one client address.
    Udp(UdpConn),
}

impl Conn {
    /// The network name GOST uses for this kind of connection.
    pub fn network(&self) -> &'static str {
        match self {
            Conn::Stream(_) => "tcp",
            Conn::Udp(_) => "udp",
        }
    }
}

/// An accepted connection with its addresses.
#[derive(Debug)]
pub struct Accepted {
    pub conn: Conn,
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

pub type AcceptFuture<'a> = Pin<Box<dyn Future<Output = io::Result<Accepted>> + Send + 'a>>;

pub trait Listener: Send + Sync {
    /// The address as the OS reports it, e.g. `[::]:8080`.
    fn local_addr(&self) -> SocketAddr;

    /// The address for the service's status and logs: the socket address,
    /// or a unix listener's path.
    fn addr_text(&self) -> String {
        self.local_addr().to_string()
    }

    /// Waits for the next client. An error is either temporary (the service
    /// marks itself failed and retries with back-off) or final.
    fn accept(&self) -> AcceptFuture<'_>;

    /// The transport's server side, run on each accepted connection in
    /// its own task before the handler sees it (TLS, WebSocket).
    fn upgrade(&self) -> Option<std::sync::Arc<dyn crate::Upgrade>> {
        None
    }
}

/// Plain `tcp` and `udp`, and the `tcp` dialer: no transport of their own.
pub fn register(r: &mut crate::kinds::Transports) {
    use crate::kinds::{DialerKind, ListenerKind, Socket};
    r.add_listener(ListenerKind {
        names: &["tcp"],
        socket: Socket::Tcp,
        upgrade: None,
        uses_tls: false,
        summary: "plain TCP",
    });
    r.add_listener(ListenerKind {
        names: &["udp"],
        socket: Socket::Udp,
        upgrade: None,
        uses_tls: false,
        summary: "UDP, a session per client address",
    });
    r.add_listener(ListenerKind {
        names: &["dns"],
        socket: Socket::Dns,
        upgrade: None,
        uses_tls: true,
        summary: "DNS messages for the `dns` handler: UDP, or `mode: tcp`, or `mode: tls` (DNS over TLS)",
    });
    r.add_listener(ListenerKind {
        names: &["red", "redir", "redirect"],
        socket: Socket::Redirect,
        upgrade: None,
        uses_tls: false,
        summary: "transparent TCP proxy: connections iptables/nftables REDIRECT (or with `tproxy` TPROXY) here",
    });
    r.add_listener(ListenerKind {
        names: &["redu"],
        socket: Socket::RedirectUdp,
        upgrade: None,
        uses_tls: false,
        summary: "transparent UDP proxy: datagrams TPROXY steers here, a session per client and original destination",
    });
    r.add_dialer(DialerKind {
        names: &["tcp"],
        build: |_, _| Ok(None),
        summary: "plain TCP",
    });
}

/// GOST binds `:port` on all interfaces, IPv6 and IPv4 (dual stack).
pub fn resolve_bind_addr(addr: &str) -> io::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    let (host, port) = gost_core::addr::split_host_port(addr).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("address '{addr}': {e}"),
        )
    })?;
    let host = if host.is_empty() { "::" } else { host };
    let port: u16 = port.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid port in address '{addr}'"),
        )
    })?;
    (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no address for '{addr}'")))
}

/// A socket bound to `::` accepts IPv4 too only with IPV6_V6ONLY off, which
/// is Linux's default but not guaranteed; set it explicitly like Go does.
pub(crate) fn new_socket(addr: SocketAddr, ty: socket2::Type) -> io::Result<socket2::Socket> {
    let domain = socket2::Domain::for_address(addr);
    let proto = if ty == socket2::Type::STREAM {
        socket2::Protocol::TCP
    } else {
        socket2::Protocol::UDP
    };
    let s = socket2::Socket::new(domain, ty, Some(proto))?;
    if addr.is_ipv6() {
        s.set_only_v6(false)?;
    }
    s.set_nonblocking(true)?;
    Ok(s)
}
