//! Plain TCP listener.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::{AcceptFuture, Accepted, Conn, Listener};

pub struct TcpListen {
    inner: TcpListener,
    addr: SocketAddr,
    upgrade: Option<Arc<dyn crate::Upgrade>>,
    /// Tells the loop check this port is ours while the listener lives.
    _port: gost_core::dialer::loops::Listening,
}

/// Socket options of GOST's `red` listener.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListenOpts {
    /// `IP_TRANSPARENT` (and `IPV6_TRANSPARENT`): accept connections
    /// TPROXY steers here for addresses that are not this host's.
    pub transparent: bool,
    /// `SO_REUSEPORT`.
    pub reuse_port: bool,
}

impl TcpListen {
    pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<Self> {
        Self::bind_with(addr, backlog, ListenOpts::default())
    }

    pub fn bind_with(addr: SocketAddr, backlog: u32, opts: ListenOpts) -> io::Result<Self> {
        let s = super::new_socket(addr, socket2::Type::STREAM)?;
        s.set_reuse_address(true)?;
        if opts.transparent {
            let named = |e: io::Error| io::Error::new(e.kind(), format!("IP_TRANSPARENT: {e}"));
            if addr.is_ipv4() {
                s.set_ip_transparent_v4(true).map_err(named)?;
            } else {
                s.set_ip_transparent_v6(true).map_err(named)?;
                // A dual-stack socket takes IPv4 connections too.
                s.set_ip_transparent_v4(true).map_err(named)?;
            }
        }
        if opts.reuse_port {
            s.set_reuse_port(true)?;
        }
        s.bind(&addr.into())?;
        s.listen(backlog as i32)?;
        let inner = TcpListener::from_std(s.into())?;
        let addr = inner.local_addr()?;
        Ok(TcpListen {
            inner,
            addr,
            upgrade: None,
            _port: gost_core::dialer::loops::listening(addr.port()),
        })
    }

    /// A transport over each accepted connection (`tls`, `ws`, ...).
    pub fn with_upgrade(mut self, upgrade: Option<Arc<dyn crate::Upgrade>>) -> Self {
        self.upgrade = upgrade;
        self
    }
}

impl Listener for TcpListen {
    fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    fn upgrade(&self) -> Option<Arc<dyn crate::Upgrade>> {
        self.upgrade.clone()
    }

    fn accept(&self) -> AcceptFuture<'_> {
        Box::pin(async move {
            let (stream, peer) = self.inner.accept().await?;
            // Forwarded traffic is latency sensitive (request/response);
            // Nagle would add delays on small writes.
            let _ = stream.set_nodelay(true);
            // The listener's address, not getsockname(): one syscall less
            // per connection, and handlers needing the exact local address
            // of a wildcard listener can ask the socket.
            Ok(Accepted {
                conn: Conn::Stream(stream.into()),
                peer,
                local: self.addr,
            })
        })
    }
}
