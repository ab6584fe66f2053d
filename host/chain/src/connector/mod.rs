//! Connectors: the client side of a proxy protocol, spoken over a stream a
//! dialer opened to a chain node (GOST's `connector` packages). A connector
//! asks its node to connect on to the next node or to the target; once it
//! returns, the stream carries the tunnelled bytes and nothing else, because
//! each connector reads exactly its protocol's reply and not one byte more.

pub mod bind;
pub mod http;
#[cfg(feature = "h2")]
pub mod http2;
pub mod relay;
pub mod sni;
pub mod socks4;
pub mod socks5;
#[cfg(feature = "ss")]
pub mod ss;
#[cfg(feature = "ssh")]
pub mod sshd;
pub mod tunnel;
pub mod udp_tun;
pub mod upstream;

use std::io;
use std::time::Duration;

use gost_core::config::ConnectorConfig;
use gost_core::metadata::{Metadata, MetadataError};
use gost_transport::BoxFuture;
use upstream::Upstream;

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
    /// GOST's connector of this type has no BIND either.
    #[error(
        "{connector} connector: BIND is not supported (reverse forwarding needs a socks5 or relay node as the last hop)"
    )]
    NoBind { connector: &'static str },
    /// Only GOST's relay connector can ask its node for a unix socket.
    #[error(
        "{connector} connector: unix sockets are not supported (use a relay or unix node as the last hop)"
    )]
    NoUnix { connector: &'static str },
    /// A plugin connector failed: it trapped, ran out of its limits or
    /// reported an error.
    #[error("{connector} connector: {msg}")]
    Plugin {
        connector: &'static str,
        msg: String,
    },
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
    /// Settings the connector cannot work with (a cipher it lacks).
    #[error("{0}")]
    Invalid(String),
}

/// Username and password a connector presents to its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// The client side of a proxy protocol (go-gost/core's `Connector`),
/// spoken over whatever stream the node's dialer made.
pub trait Connector: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &'static str;

    /// Asks the node at the other end of `stream` to connect to `addr`
    /// (`host:port`) over TCP. A lazy relay connector leaves its response
    /// owing on `stream`.
    fn connect<'a>(
        &'a self,
        stream: &'a mut Upstream,
        addr: &'a str,
    ) -> BoxFuture<'a, Result<(), ConnectError>>;

    /// Asks the node at the other end of `stream` to connect to the unix
    /// socket at `path` (GOST's `Connect` with network `unix`): the relay
    /// connector can, and the `unix` connector, whose node is the socket.
    fn connect_unix<'a>(
        &'a self,
        stream: &'a mut Upstream,
        path: &'a str,
    ) -> BoxFuture<'a, Result<(), ConnectError>> {
        let _ = (stream, path);
        Box::pin(std::future::ready(Err(ConnectError::NoUnix {
            connector: self.name(),
        })))
    }

    /// Asks the node for a UDP tunnel, to `target` alone when given, else
    /// to any target. `node` is the address of the node `stream` reaches.
    /// As in GOST, only socks5 and relay connectors can.
    fn udp_tunnel<'a>(
        &'a self,
        stream: Upstream,
        target: Option<&'a str>,
        node: &'a str,
    ) -> BoxFuture<'a, Result<udp_tun::UdpTunnel, ConnectError>> {
        let _ = (stream, target, node);
        Box::pin(std::future::ready(Err(ConnectError::NoUdp {
            connector: self.name(),
        })))
    }

    /// Asks the node to listen at `addr` for reverse forwarding (GOST's
    /// `Binder`): a TCP BIND multiplexed over `stream`, or a UDP BIND whose
    /// datagrams come back framed on it. Only socks5 and relay can.
    fn bind<'a>(
        &'a self,
        stream: Upstream,
        network: bind::BindNetwork,
        addr: &'a str,
    ) -> BoxFuture<'a, Result<bind::Bound, ConnectError>> {
        let _ = (stream, network, addr);
        Box::pin(std::future::ready(Err(ConnectError::NoBind {
            connector: self.name(),
        })))
    }
}

/// What every connector's config gives besides its own metadata.
#[derive(Debug, Clone, Default)]
pub struct Common {
    pub auth: Option<Credentials>,
    /// (gost-rs) The component of a `wasm` connector.
    pub plugin: Option<gost_core::config::PluginConfig>,
}

/// A chain node's connector, with its `timeout` (metadata) bounding each
/// handshake.
#[derive(Debug)]
pub struct NodeConnector {
    inner: Box<dyn Connector>,
    timeout: Option<Duration>,
}

impl NodeConnector {
    /// The connector named by a node's `connector` block; GOST's default
    /// is `http`.
    /// `build` is the connector type's constructor (from the registry).
    pub fn from_config(
        cfg: &ConnectorConfig,
        build: impl FnOnce(&Metadata, Common) -> Result<Box<dyn Connector>, ConnectorBuildError>,
    ) -> Result<Self, ConnectorBuildError> {
        let common = Common {
            auth: cfg
                .auth
                .as_ref()
                .filter(|a| !a.username.is_empty() || !a.password.is_empty())
                .map(|a| Credentials {
                    username: a.username.clone(),
                    password: a.password.clone(),
                }),
            plugin: cfg.plugin.as_deref().cloned(),
        };
        let timeout = cfg
            .metadata
            .get_duration("timeout")?
            .filter(|t| !t.is_zero());
        Ok(NodeConnector {
            inner: build(&cfg.metadata, common)?,
            timeout,
        })
    }

    pub fn name(&self) -> &'static str {
        self.inner.name()
    }

    /// Runs one handshake within the connector's `timeout`, if it has one.
    async fn timed<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, ConnectError>>,
    ) -> Result<T, ConnectError> {
        match self.timeout {
            Some(t) => tokio::time::timeout(t, work)
                .await
                .map_err(|_| ConnectError::Timeout {
                    connector: self.name(),
                    timeout: t,
                })?,
            None => work.await,
        }
    }

    pub async fn connect(&self, stream: &mut Upstream, addr: &str) -> Result<(), ConnectError> {
        self.timed(self.inner.connect(stream, addr)).await
    }

    pub async fn connect_unix(
        &self,
        stream: &mut Upstream,
        path: &str,
    ) -> Result<(), ConnectError> {
        self.timed(self.inner.connect_unix(stream, path)).await
    }

    pub async fn udp_tunnel(
        &self,
        stream: Upstream,
        target: Option<&str>,
        node: &str,
    ) -> Result<udp_tun::UdpTunnel, ConnectError> {
        self.timed(self.inner.udp_tunnel(stream, target, node))
            .await
    }

    pub async fn bind(
        &self,
        stream: Upstream,
        network: bind::BindNetwork,
        addr: &str,
    ) -> Result<bind::Bound, ConnectError> {
        self.timed(self.inner.bind(stream, network, addr)).await
    }
}

/// GOST's `forward`: the node is itself the destination, so nothing is
/// said; the stream is used as it is.
#[derive(Debug)]
pub struct ForwardConnector;

impl Connector for ForwardConnector {
    fn name(&self) -> &'static str {
        "forward"
    }

    fn connect<'a>(
        &'a self,
        _stream: &'a mut Upstream,
        _addr: &'a str,
    ) -> BoxFuture<'a, Result<(), ConnectError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// GOST's `serial` connector: the node is the serial port its `serial`
/// dialer opened, so nothing is said, whatever the target.
#[cfg(feature = "serial")]
#[derive(Debug)]
pub struct SerialConnector;

#[cfg(feature = "serial")]
impl Connector for SerialConnector {
    fn name(&self) -> &'static str {
        "serial"
    }

    fn connect<'a>(
        &'a self,
        _stream: &'a mut Upstream,
        _addr: &'a str,
    ) -> BoxFuture<'a, Result<(), ConnectError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// GOST's `unix` connector: the node is the unix socket its `unix`
/// dialer reached, so nothing is said, whatever the target.
#[derive(Debug)]
pub struct UnixConnector;

impl Connector for UnixConnector {
    fn name(&self) -> &'static str {
        "unix"
    }

    fn connect<'a>(
        &'a self,
        _stream: &'a mut Upstream,
        _addr: &'a str,
    ) -> BoxFuture<'a, Result<(), ConnectError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn connect_unix<'a>(
        &'a self,
        _stream: &'a mut Upstream,
        _path: &'a str,
    ) -> BoxFuture<'a, Result<(), ConnectError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// A socks5 node's `relay` mode: `udp` (GOST's only value) asks for a UDP
/// ASSOCIATE, with GOST's `udp.bufferSize` (default 4096) and
/// `udp.timeout`; absent or empty keeps the UDP-over-TCP tunnel. GOST
/// takes any other value as absent; it is refused here, as a typo there
/// would silently change how datagrams travel.
pub fn associate_options(
    md: &gost_core::metadata::Metadata,
) -> Result<Option<udp_tun::AssociateOptions>, MetadataError> {
    match md.get_string("relay")?.as_deref() {
        None | Some("") => return Ok(None),
        Some("udp") => {}
        Some(other) => {
            return Err(MetadataError {
                key: "relay".into(),
                value: serde_json::Value::from(other).to_string(),
                expected: "\"udp\" (UDP through the node's UDP ASSOCIATE)",
            })
        }
    }
    let size = match md.get_int("udp.bufferSize")? {
        Some(n) => Some(n),
        None => md.get_int("udpBufferSize")?,
    };
    Ok(Some(udp_tun::AssociateOptions {
        buffer_size: size
            .filter(|n| *n > 0)
            .map_or(DEFAULT_UDP_BUFFER, |n| n.min(MAX_UDP_BUFFER) as usize),
        timeout: md.get_duration("udp.timeout")?.filter(|t| !t.is_zero()),
    }))
}

/// GOST's default read buffer for a socks5 association's datagrams.
const DEFAULT_UDP_BUFFER: usize = 4096;
/// No datagram is longer: a larger buffer would only waste memory.
const MAX_UDP_BUFFER: i64 = 65535 + 262;

/// Splits `host:port` (IPv6 hosts in brackets) into host and port.
pub(crate) fn split_addr(
    connector: &'static str,
    addr: &str,
) -> Result<(String, u16), ConnectError> {
    gost_core::addr::host_and_port(addr)
        .map(|(h, p)| (h.to_string(), p))
        .map_err(|msg| ConnectError::Address {
            connector,
            addr: addr.to_string(),
            msg,
        })
}

/// Reads exactly `buf.len()` bytes, naming the connector on failure.
pub(crate) async fn read_exact(
    connector: &'static str,
    stream: &mut gost_core::stream::Stream,
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
    stream: &mut gost_core::stream::Stream,
    buf: &[u8],
) -> Result<(), ConnectError> {
    stream
        .write_all_now(buf)
        .await
        .map_err(|source| ConnectError::Io { connector, source })
}

pub type BuildConnector = fn(&Metadata, Common) -> Result<Box<dyn Connector>, ConnectorBuildError>;

pub struct ConnectorKind {
    pub names: &'static [&'static str],
    /// Whether it can carry UDP (GOST's socks5 and relay can).
    pub udp: bool,
    pub build: BuildConnector,
    pub summary: &'static str,
}

/// The connector kinds by GOST type name.
#[derive(Default)]
pub struct Connectors(Vec<ConnectorKind>);

impl Connectors {
    pub fn add(&mut self, kind: ConnectorKind) {
        self.0.push(kind);
    }

    /// The connector a config names; an empty type is GOST's `http`.
    pub fn get(&self, name: &str) -> Option<&ConnectorKind> {
        let name = if name.is_empty() { "http" } else { name };
        self.0.iter().find(|k| k.names.contains(&name))
    }

    pub fn all(&self) -> &[ConnectorKind] {
        &self.0
    }
}

/// Every connector this build has.
pub fn register(r: &mut Connectors) {
    r.add(ConnectorKind {
        names: &["http"],
        udp: false,
        build: |md, c| Ok(Box::new(http::HttpConnector::new(c.auth, md)?)),
        summary: "HTTP CONNECT, with `auth` and extra `header`s",
    });
    r.add(ConnectorKind {
        names: &["socks4", "socks4a"],
        udp: false,
        build: |md, c| {
            Ok(Box::new(socks4::Socks4Connector {
                user_id: c.auth.map(|a| a.username).unwrap_or_default(),
                disable_4a: md.get_bool("disable4a")?.unwrap_or(false),
            }))
        },
        summary: "SOCKS4, and SOCKS4a names unless `disable4a`",
    });
    r.add(ConnectorKind {
        names: &["socks5", "socks"],
        udp: true,
        build: |md, c| {
            Ok(Box::new(socks5::Socks5Connector {
                auth: c.auth,
                associate: associate_options(md)?,
            }))
        },
        summary: "SOCKS5 CONNECT; UDP over GOST's UDP-over-TCP or (`relay: udp`) UDP ASSOCIATE",
    });
    r.add(ConnectorKind {
        names: &["relay"],
        udp: true,
        build: |md, c| {
            Ok(Box::new(relay::RelayConnector {
                auth: c.auth,
                nodelay: md.get_bool("nodelay")?.unwrap_or(false),
            }))
        },
        summary: "GOST's relay protocol, TCP and UDP; lazy unless `nodelay`",
    });
    r.add(ConnectorKind {
        names: &["forward", "tcp"],
        udp: false,
        build: |_, _| Ok(Box::new(ForwardConnector)),
        summary: "none: the node is the destination (GOST's `tcp` connector is the same)",
    });
    #[cfg(feature = "serial")]
    r.add(ConnectorKind {
        names: &["serial"],
        udp: false,
        build: |_, _| Ok(Box::new(SerialConnector)),
        summary: "none: the node is a serial port (with the `serial` dialer), the destination",
    });
    r.add(ConnectorKind {
        names: &["unix"],
        udp: false,
        build: |_, _| Ok(Box::new(UnixConnector)),
        summary: "none: the node is a unix socket (with the `unix` dialer), the destination",
    });
    #[cfg(feature = "h2")]
    r.add(ConnectorKind {
        names: &["http2"],
        udp: false,
        build: |md, c| Ok(Box::new(http2::Http2Connector::new(c.auth, md)?)),
        summary: "HTTP/2 CONNECT over the `http2` dialer, with `auth` and extra `header`s",
    });
    sni::register(r);
    tunnel::register(r);
    #[cfg(feature = "ss")]
    ss::register(r);
    #[cfg(feature = "ssh")]
    sshd::register(r);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(json: &str) -> Result<NodeConnector, ConnectorBuildError> {
        let cfg: ConnectorConfig = serde_json::from_str(json).unwrap();
        let mut kinds = Connectors::default();
        register(&mut kinds);
        let kind = kinds
            .get(&cfg.r#type)
            .ok_or_else(|| ConnectorBuildError::Unsupported(cfg.r#type.clone()))?;
        NodeConnector::from_config(&cfg, kind.build)
    }

    /// Well-formed node replies of every connector; the test mutates them.
    const REPLIES: [&[u8]; 12] = [
        b"HTTP/1.1 200 Connection established\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nProxy-Agent: x\r\nContent-Length: 0\r\n\r\ndata",
        b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 3\r\n\r\nabc",
        &[0, 0x5A, 0, 80, 127, 0, 0, 1],
        &[0, 0x5B, 0, 0, 0, 0, 0, 0],
        &[5, 0, 5, 0, 0, 1, 127, 0, 0, 1, 0, 80],
        &[5, 2, 1, 0, 5, 0, 0, 3, 1, b'x', 0, 1],
        &[
            5, 0, 5, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80,
        ],
        &[5, 0xFF],
        &[1, 0, 0, 0],
        &[1, 0, 0, 10, 2, 0, 7, 1, 127, 0, 0, 1, 0, 80],
        &[1, 2, 0, 0],
    ];

    /// Mutated replies from a node must end each connector's handshake
    /// (TCP connect, and the UDP tunnel of socks5 and relay) in a result,
    /// never a panic or a hang.
    #[tokio::test]
    async fn connectors_survive_random_replies() {
        let connectors = [
            r#"{"type":"http"}"#,
            r#"{"type":"http","auth":{"username":"u","password":"p"}}"#,
            r#"{"type":"socks4"}"#,
            r#"{"type":"socks4a"}"#,
            r#"{"type":"socks5"}"#,
            r#"{"type":"socks5","auth":{"username":"u","password":"p"}}"#,
            r#"{"type":"relay"}"#,
            r#"{"type":"relay","metadata":{"nodelay":true},"auth":{"username":"u","password":"p"}}"#,
        ]
        .map(|json| (json, build(json).unwrap()));
        for (seed, reply) in gost_core::test_util::mutations(&REPLIES, 300) {
            for (json, conn) in &connectors {
                let udp = seed % 4 == 0 && matches!(conn.name(), "socks5" | "relay");
                let reply = reply.clone();
                let (c, mut s) = gost_core::test_util::tcp_pair().await;
                let node = async move {
                    use tokio::io::AsyncWriteExt;
                    let _ = s.write_all(&reply).await;
                    let _ = s.shutdown().await;
                    // Held open (and drained) until the connector is done.
                    let _ = tokio::io::copy(&mut s, &mut tokio::io::sink()).await;
                };
                let client = async move {
                    let mut up = Upstream::direct(c);
                    if udp {
                        let _ = conn
                            .udp_tunnel(up, Some("127.0.0.1:9"), "127.0.0.1:1")
                            .await;
                    } else if conn.connect(&mut up, "127.0.0.1:9").await.is_ok() {
                        let _ = up.settle().await;
                    }
                };
                let done = tokio::time::timeout(Duration::from_secs(10), async {
                    tokio::join!(client, node)
                })
                .await;
                // Errors are expected; a panic fails the test, a hang here.
                assert!(done.is_ok(), "{json}: seed {seed} did not finish");
            }
        }
    }

    #[test]
    fn socks5_relay_modes_and_relay_is_lazy_by_default() {
        let assoc = |json| {
            let cfg: ConnectorConfig = serde_json::from_str(json).unwrap();
            associate_options(&cfg.metadata).unwrap()
        };
        assert_eq!(assoc(r#"{"type": "socks"}"#), None);
        assert_eq!(
            assoc(r#"{"type": "socks5", "metadata": {"relay": ""}}"#),
            None
        );
        let o = assoc(r#"{"type": "socks5", "metadata": {"relay": "udp"}}"#).unwrap();
        assert_eq!((o.buffer_size, o.timeout), (4096, None));
        let o = assoc(
            r#"{"type": "socks5", "metadata": {"relay": "udp", "udpBufferSize": 512, "udp.timeout": "3s"}}"#,
        )
        .unwrap();
        assert_eq!(
            (o.buffer_size, o.timeout),
            (512, Some(Duration::from_secs(3)))
        );
        let err = build(r#"{"type": "socks5", "metadata": {"relay": "tcp"}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"connector metadata: metadata "relay": invalid value "tcp": expected "udp" (UDP through the node's UDP ASSOCIATE)"#
        );
        let lazy = format!("{:?}", build(r#"{"type": "relay"}"#).unwrap());
        assert!(lazy.contains("nodelay: false"), "{lazy}");
        let nodelay = build(r#"{"type": "relay", "metadata": {"nodelay": true}}"#).unwrap();
        assert!(format!("{nodelay:?}").contains("nodelay: true"));
    }

    #[tokio::test]
    async fn a_connector_without_udp_says_so() {
        let (c, _peer) = gost_core::test_util::tcp_pair().await;
        let s = Upstream::direct(c);
        let err = build(r#"{"type": "http"}"#)
            .unwrap()
            .udp_tunnel(s, Some("127.0.0.1:53"), "127.0.0.1:1")
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "http connector: UDP is not supported (use a socks5 or relay node as the last hop)"
        );
    }
}
