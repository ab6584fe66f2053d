//! The router: how a handler reaches a target. GOST's router combines the
//! chain, hosts, resolver and bypass; so far it dials directly, resolving
//! names with the system resolver.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpStream, UdpSocket};

/// GOST's default dial timeout.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Router {
    pub dial_timeout: Duration,
}

impl Default for Router {
    fn default() -> Self {
        Router {
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("dial {network} {addr}: {source}")]
    Io {
        network: &'static str,
        addr: String,
        source: io::Error,
    },
    #[error("dial {network} {addr}: timed out after {timeout:?}")]
    Timeout {
        network: &'static str,
        addr: String,
        timeout: Duration,
    },
}

impl Router {
    pub async fn dial_tcp(&self, addr: &str) -> Result<TcpStream, DialError> {
        let io_err = |source| DialError::Io {
            network: "tcp",
            addr: addr.to_string(),
            source,
        };
        let stream = tokio::time::timeout(self.dial_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| DialError::Timeout {
                network: "tcp",
                addr: addr.to_string(),
                timeout: self.dial_timeout,
            })?
            .map_err(io_err)?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// A UDP socket connected to `addr`, so only the target's replies reach it.
    pub async fn dial_udp(&self, addr: &str) -> Result<UdpSocket, DialError> {
        let io_err = |source| DialError::Io {
            network: "udp",
            addr: addr.to_string(),
            source,
        };
        let target: SocketAddr = tokio::net::lookup_host(addr)
            .await
            .map_err(io_err)?
            .next()
            .ok_or_else(|| io_err(io::Error::new(io::ErrorKind::NotFound, "no address")))?;
        let bind = if target.is_ipv4() {
            SocketAddr::from(([0u8; 4], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let socket = UdpSocket::bind(bind).await.map_err(io_err)?;
        socket.connect(target).await.map_err(io_err)?;
        Ok(socket)
    }
}
