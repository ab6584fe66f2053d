//! Connectors: the client side of a proxy protocol, spoken over a stream a
//! dialer opened to a chain node (GOST's `connector` packages). A connector
//! asks its node to connect on to the next node or to the target; once it
//! returns, the stream carries the tunnelled bytes and nothing else, because
//! each connector reads exactly its protocol's reply and not one byte more.

pub mod http;
pub mod relay;
pub mod socks4;
pub mod socks5;
pub mod udp_tun;
pub mod upstream;

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::config::ConnectorConfig;
use crate::metadata::MetadataError;
use upstream::Upstream;

/// Connector types this build implements, as GOST names them.
pub const CONNECTORS: &[&str] = &[
    "http", "socks4", "socks4a", "socks5", "socks", "forward", "relay",
];

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{connector} connector: {source}")]
    Io {
        connector: &'static str,
        source: io::Error,
    },
    /// The node answered but refused the request.
    #[error("{connector} connector: node refused: {reply}")]
    Refused {
        connector: &'static str,
        reply: String,
    },
    /// The node's reply broke the protocol.
    #[error("{connector} connector: bad reply: {msg}")]
    BadReply {
        connector: &'static str,
        msg: String,
    },
    #[error("{connector} connector: cannot address {addr:?}: {msg}")]
    Address {
        connector: &'static str,
        addr: String,
        msg: String,
    },
    /// GOST's connector of this type cannot carry UDP either.
    #[error(
        "{connector} connector: UDP is not supported (use a socks5 or relay node as the last hop)"
    )]
    NoUdp { connector: &'static str },
    #[error("{connector} connector: no reply within {timeout:?}")]
    Timeout {
        connector: &'static str,
        timeout: Duration,
    },
}

impl ConnectError {
    /// The error as an `io::Error`, for readers of a stream whose relay
    /// response turned out bad: an I/O failure stays itself.
    pub fn into_io(self) -> io::Error {
        match self {
            ConnectError::Io { source, .. } => source,
            other => io::Error::other(other.to_string()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectorBuildError {
    #[error("connector type '{0}' is not supported")]
    Unsupported(String),
    #[error("connector metadata: {0}")]
    Metadata(#[from] MetadataError),
    #[error("{connector} connector: {what} is not supported yet")]
    Option {
        connector: &'static str,
        what: String,
    },
}

/// Username and password a connector presents to its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

#[derive(Debug)]
pub enum Connector {
    Http(http::HttpConnector),
    Socks4(socks4::Socks4Connector),
    Socks5(socks5::Socks5Connector),
    Relay(relay::RelayConnector),
    /// GOST's `forward`: the node is itself the destination, so nothing is
    /// said; the stream is used as it is.
    Forward,
}

impl Connector {
    /// The connector named by a node's `connector` block; GOST's default
    /// is `http`.
    pub fn from_config(cfg: Option<&ConnectorConfig>) -> Result<Self, ConnectorBuildError> {
        let default = ConnectorConfig::default();
        let cfg = cfg.unwrap_or(&default);
        let auth = cfg
            .auth
            .as_ref()
            .filter(|a| !a.username.is_empty() || !a.password.is_empty())
            .map(|a| Credentials {
                username: a.username.clone(),
                password: a.password.clone(),
            });
        let md = &cfg.metadata;
        let timeout = md.get_duration("timeout")?.filter(|t| !t.is_zero());
        Ok(match cfg.r#type.trim() {
            "" | "http" => Connector::Http(http::HttpConnector::new(auth, md, timeout)?),
            "socks4" | "socks4a" => Connector::Socks4(socks4::Socks4Connector {
                user_id: auth.map(|a| a.username).unwrap_or_default(),
                disable_4a: md.get_bool("disable4a")?.unwrap_or(false),
                timeout,
            }),
            "socks5" | "socks" => {
                // GOST's `relay: udp` carries UDP by ASSOCIATE to the node
                // instead of the UDP-over-TCP tunnel.
                if let Some(mode) = md.get_string("relay")?.filter(|m| !m.is_empty()) {
                    return Err(ConnectorBuildError::Option {
                        connector: "socks5",
                        what: format!("metadata relay={mode} (UDP over the node's UDP ASSOCIATE)"),
                    });
                }
                Connector::Socks5(socks5::Socks5Connector { auth, timeout })
            }
            "relay" => Connector::Relay(relay::RelayConnector {
                auth,
                timeout,
                nodelay: md.get_bool("nodelay")?.unwrap_or(false),
            }),
            "forward" => Connector::Forward,
            other => return Err(ConnectorBuildError::Unsupported(other.to_string())),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Connector::Http(_) => "http",
            Connector::Socks4(_) => "socks4",
            Connector::Socks5(_) => "socks5",
            Connector::Relay(_) => "relay",
            Connector::Forward => "forward",
        }
    }

    fn timeout(&self) -> Option<Duration> {
        match self {
            Connector::Http(c) => c.timeout,
            Connector::Socks4(c) => c.timeout,
            Connector::Socks5(c) => c.timeout,
            Connector::Relay(c) => c.timeout,
            Connector::Forward => None,
        }
    }

    /// Runs one handshake within the connector's `timeout`, if it has one.
    async fn timed<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, ConnectError>>,
    ) -> Result<T, ConnectError> {
        match self.timeout() {
            Some(t) => tokio::time::timeout(t, work)
                .await
                .map_err(|_| ConnectError::Timeout {
                    connector: self.name(),
                    timeout: t,
                })?,
            None => work.await,
        }
    }

    /// Asks the node at the other end of `stream` to connect to `addr`
    /// (`host:port`) over TCP. A lazy relay connector leaves its response
    /// owing on `stream`.
    pub async fn connect(&self, stream: &mut Upstream, addr: &str) -> Result<(), ConnectError> {
        self.timed(async {
            match self {
                Connector::Http(c) => c.connect(stream, addr).await,
                Connector::Socks4(c) => c.connect(stream, addr).await,
                Connector::Socks5(c) => c.connect(stream, addr).await,
                Connector::Relay(c) => c.connect(stream, addr).await,
                Connector::Forward => Ok(()),
            }
        })
        .await
    }

    /// Asks the node for a UDP tunnel, to `target` alone when given, else
    /// to any target. As in GOST, only socks5 and relay connectors can.
    pub async fn udp_tunnel(
        &self,
        stream: Upstream,
        target: Option<&str>,
    ) -> Result<udp_tun::UdpTunnel, ConnectError> {
        match self {
            Connector::Socks5(c) => self.timed(c.udp_tunnel(stream)).await,
            Connector::Relay(c) => self.timed(c.udp_tunnel(stream, target)).await,
            other => Err(ConnectError::NoUdp {
                connector: other.name(),
            }),
        }
    }
}

/// Splits `host:port` (IPv6 hosts in brackets) into host and port.
pub(crate) fn split_addr(
    connector: &'static str,
    addr: &str,
) -> Result<(String, u16), ConnectError> {
    let bad = |msg: &str| ConnectError::Address {
        connector,
        addr: addr.to_string(),
        msg: msg.to_string(),
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("missing port"))?;
    let port: u16 = port.parse().map_err(|_| bad("invalid port"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Ok((host.to_string(), port))
}

/// Reads exactly `buf.len()` bytes, naming the connector on failure.
pub(crate) async fn read_exact(
    connector: &'static str,
    stream: &mut TcpStream,
    buf: &mut [u8],
) -> Result<(), ConnectError> {
    use tokio::io::AsyncReadExt;
    stream
        .read_exact(buf)
        .await
        .map(|_| ())
        .map_err(|source| ConnectError::Io { connector, source })
}

pub(crate) async fn write_all(
    connector: &'static str,
    stream: &mut TcpStream,
    buf: &[u8],
) -> Result<(), ConnectError> {
    use tokio::io::AsyncWriteExt;
    stream
        .write_all(buf)
        .await
        .map_err(|source| ConnectError::Io { connector, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(json: &str) -> Result<Connector, ConnectorBuildError> {
        let cfg: ConnectorConfig = serde_json::from_str(json).unwrap();
        Connector::from_config(Some(&cfg))
    }

    #[test]
    fn socks5_associate_mode_is_refused_and_relay_is_lazy_by_default() {
        assert_eq!(build(r#"{"type": "socks"}"#).unwrap().name(), "socks5");
        let err = build(r#"{"type": "socks5", "metadata": {"relay": "udp"}}"#).unwrap_err();
        assert!(err.to_string().contains("relay=udp"), "{err}");
        let lazy = build(r#"{"type": "relay"}"#).unwrap();
        assert!(matches!(lazy, Connector::Relay(ref r) if !r.nodelay));
        let nodelay = build(r#"{"type": "relay", "metadata": {"nodelay": true}}"#).unwrap();
        assert!(matches!(nodelay, Connector::Relay(ref r) if r.nodelay));
    }

    #[tokio::test]
    async fn a_connector_without_udp_says_so() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s = Upstream::direct(TcpStream::connect(l.local_addr().unwrap()).await.unwrap());
        let err = build(r#"{"type": "http"}"#)
            .unwrap()
            .udp_tunnel(s, Some("127.0.0.1:53"))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "http connector: UDP is not supported (use a socks5 or relay node as the last hop)"
        );
    }
}
