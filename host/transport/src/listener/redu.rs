//! GOST's transparent UDP listener (`redu`; listener/redirect/udp): TPROXY
//! delivers datagrams addressed anywhere to this socket, which is
//! `IP_TRANSPARENT` and asks for each datagram's original destination
//! (`IP_RECVORIGDSTADDR`, `IPV6_RECVORIGDSTADDR`). The first datagram of
//! a client to a destination opens a session with a socket of its own,
//! transparent, bound to that destination and connected to the client:
//! the kernel then delivers the rest of the flow to it, and replies sent
//! on it leave from the destination's address, as the client expects.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::udp::{Sessions, UdpConn, UdpOptions};
use super::{AcceptFuture, Accepted, Conn, Listener};

pub struct RedirectUdpListen {
    addr: SocketAddr,
    accept_rx: tokio::sync::Mutex<mpsc::Receiver<io::Result<Accepted>>>,
    recv_task: JoinHandle<()>,
}

impl Drop for RedirectUdpListen {
    fn drop(&mut self) {
        self.recv_task.abort();
    }
}

fn named(what: &'static str) -> impl Fn(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn set_int(fd: i32, level: i32, opt: i32, what: &'static str) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: fd is an open socket; the value is a c_int of the size given.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(named(what)(io::Error::last_os_error()))
    }
}

/// `IP_TRANSPARENT` for the socket's family; a dual-stack socket takes
/// IPv4 datagrams too.
fn set_transparent(s: &socket2::Socket, addr: SocketAddr) -> io::Result<()> {
    let e = named("IP_TRANSPARENT (needs CAP_NET_ADMIN)");
    if addr.is_ipv6() {
        s.set_ip_transparent_v6(true).map_err(&e)?;
    }
    s.set_ip_transparent_v4(true).map_err(e)
}

impl RedirectUdpListen {
    /// `opts.keepalive` is ignored: a redirected session lives until
    /// it idles for `opts.ttl`, as GOST's.
    pub fn bind(addr: SocketAddr, opts: UdpOptions) -> io::Result<Self> {
        let opts = UdpOptions {
            keepalive: true,
            ..opts
        };
        let s = super::new_socket(addr, socket2::Type::DGRAM)?;
        // The per-session sockets bind destination ports that may equal
        // this one.
        s.set_reuse_address(true)?;
        set_transparent(&s, addr)?;
        let fd = s.as_raw_fd();
        set_int(
            fd,
            libc::SOL_IP,
            libc::IP_RECVORIGDSTADDR,
            "IP_RECVORIGDSTADDR",
        )?;
        if addr.is_ipv6() {
            set_int(
                fd,
                libc::SOL_IPV6,
                libc::IPV6_RECVORIGDSTADDR,
                "IPV6_RECVORIGDSTADDR",
            )?;
        }
        s.bind(&addr.into())?;
        let socket = UdpSocket::from_std(s.into())?;
        let addr = socket.local_addr()?;
        let (accept_tx, accept_rx) = mpsc::channel(opts.backlog.max(1));
        let recv_task = tokio::spawn(recv_loop(socket, opts, accept_tx));
        Ok(RedirectUdpListen {
            addr,
            accept_rx: tokio::sync::Mutex::new(accept_rx),
            recv_task,
        })
    }
}

async fn recv_loop(
    socket: UdpSocket,
    opts: UdpOptions,
    accept_tx: mpsc::Sender<io::Result<Accepted>>,
) {
    let sessions = Sessions::default();
    let local = socket.local_addr().ok();
    let mut buf = vec![0u8; opts.read_buffer_size.max(1)];
    loop {
        let got = socket
            .async_io(Interest::READABLE, || recv_orig_dst(&socket, &mut buf))
            .await;
        let (n, peer, dst) = match got {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                tracing::warn!(error = %e, "redu: datagram dropped");
                continue;
            }
            Err(e) => {
                let _ = accept_tx.send(Err(e)).await;
                return;
            }
        };
        let (peer, dst) = (canonical(peer), canonical(dst));
        if is_self(dst, local) {
            tracing::warn!(client = %peer, "redu: datagram addressed to the listener itself (not steered by TPROXY) dropped");
            continue;
        }
        let data = buf[..n].to_vec();
        let mut map = sessions.lock().unwrap_or_else(|p| p.into_inner());
        // Datagrams that reach this socket before the session's own
        // socket exists still belong to the session.
        if let Some(tx) = map.get(&(peer, dst)) {
            if !tx.is_closed() {
                if tx.try_send(data).is_err() {
                    tracing::warn!(client = %peer, dst = %dst, "redu: receive queue full, datagram dropped");
                }
                continue;
            }
        }
        let own = match session_socket(dst, peer) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::warn!(client = %peer, dst = %dst, error = %e, "redu: no socket for the session");
                continue;
            }
        };
        let (tx, rx) = mpsc::channel(opts.read_queue_size.max(1));
        let _ = tx.try_send(data);
        map.insert((peer, dst), tx.clone());
        drop(map);
        tokio::spawn(feed(own.clone(), tx, opts.read_buffer_size));
        let conn = UdpConn::connected(own, peer, dst, rx, sessions.clone(), &opts);
        let accepted = Accepted {
            conn: Conn::Udp(conn),
            peer,
            local: dst,
        };
        if accept_tx.try_send(Ok(accepted)).is_err() {
            tracing::warn!(client = %peer, "redu: connection queue is full, client discarded");
        }
    }
}

/// Moves what the session's own socket receives into the session, until
/// the session ends.
async fn feed(socket: Arc<UdpSocket>, tx: mpsc::Sender<Vec<u8>>, size: usize) {
    let mut buf = vec![0u8; size.max(1)];
    loop {
        tokio::select! {
            r = socket.recv(&mut buf) => match r {
                Ok(n) => {
                    if tx.try_send(buf[..n].to_vec()).is_err() && !tx.is_closed() {
                        tracing::warn!(dst = ?socket.local_addr().ok(), "redu: receive queue full, datagram dropped");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(_) => return,
            },
            _ = tx.closed() => return,
        }
    }
}

/// A socket bound to the original destination (an address of another
/// host, hence transparent) and connected to the client.
fn session_socket(dst: SocketAddr, peer: SocketAddr) -> io::Result<UdpSocket> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(dst),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if dst.is_ipv6() {
        s.set_ip_transparent_v6(true)
    } else {
        s.set_ip_transparent_v4(true)
    }
    .map_err(named("IP_TRANSPARENT"))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&dst.into()).map_err(named("bind"))?;
    let peer = match (dst, peer.ip()) {
        (SocketAddr::V6(_), IpAddr::V4(ip)) => {
            SocketAddr::new(ip.to_ipv6_mapped().into(), peer.port())
        }
        _ => peer,
    };
    s.connect(&peer.into()).map_err(named("connect"))?;
    UdpSocket::from_std(s.into())
}

/// A datagram sent to the listener's own address: relaying it would
/// send it back here.
fn is_self(dst: SocketAddr, local: Option<SocketAddr>) -> bool {
    local.is_some_and(|l| {
        l.port() == dst.port() && (l.ip().is_unspecified() || l.ip().to_canonical() == dst.ip())
    })
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// One datagram with its sender and its original destination.
fn recv_orig_dst(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, SocketAddr)> {
    // SAFETY: zeroed sockaddr_storage and msghdr are valid values.
    let mut from: libc::sockaddr_storage = unsafe { zeroed() };
    // Room for one IPv4 or IPv6 original destination.
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = (&mut from as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 16]>() as _;
    // SAFETY: every pointer in msg points at live buffers of the lengths
    // given, for the length of the call.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let peer = sockaddr(&from)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no sender address"))?;
    let mut dst = None;
    // SAFETY: the CMSG macros walk the control buffer recvmsg filled, within
    // msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let (level, ty) = ((*c).cmsg_level, (*c).cmsg_type);
            if (level == libc::SOL_IP && ty == libc::IP_ORIGDSTADDR)
                || (level == libc::SOL_IPV6 && ty == libc::IPV6_ORIGDSTADDR)
            {
                let mut ss: libc::sockaddr_storage = zeroed();
                let len = ((*c).cmsg_len as usize)
                    .saturating_sub(libc::CMSG_LEN(0) as usize)
                    .min(size_of::<libc::sockaddr_storage>());
                std::ptr::copy_nonoverlapping(
                    libc::CMSG_DATA(c),
                    (&mut ss as *mut libc::sockaddr_storage).cast::<u8>(),
                    len,
                );
                dst = sockaddr(&ss);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let dst = dst.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "datagram from {peer} has no original destination; was it steered here by TPROXY?"
            ),
        )
    })?;
    Ok((n as usize, peer, dst))
}

fn sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddrV4::new(ip, u16::from_be(a.sin_port)).into())
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(
                SocketAddrV6::new(
                    ip,
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )
                .into(),
            )
        }
        _ => None,
    }
}

impl Listener for RedirectUdpListen {
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
                    "redu listener closed",
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without TPROXY there is no original destination: the datagram is
    /// dropped with a reason, the listener goes on.
    #[tokio::test]
    async fn a_datagram_not_steered_here_has_no_destination() {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.send_to(b"x", s.local_addr().unwrap()).await.unwrap();
        let mut buf = [0u8; 16];
        let err = s
            .async_io(Interest::READABLE, || recv_orig_dst(&s, &mut buf))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("TPROXY"), "{err}");
    }
}
