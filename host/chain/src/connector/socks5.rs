//! SOCKS5 connector (GOST's `connector/socks/v5`): CONNECT, and UDP
//! through GOST's UDP-over-TCP tunnel or, with `relay: udp`, a standard
//! UDP ASSOCIATE (see [`super::udp_tun`]), and GOST's BIND for reverse
//! forwarding (multiplexed 0xF2, UDP-over-TCP 0xF3 at a port). GOST also
//! offers its TLS methods (0x80, 0x82) unless `notls` is set; this
//! connector offers only no-auth and, with credentials, username/password.

use std::net::{IpAddr, SocketAddr};

use tokio::net::UdpSocket;

use super::bind::{wire_addr, BindNetwork, Bound, PeerHeader};
use super::udp_tun::{AssociateOptions, UdpTunnel};
use super::upstream::Upstream;
use super::{read_exact, split_addr, write_all, ConnectError, Credentials};
use gost_proto::socks::TargetAddr;
use gost_transport::BoxFuture;

const NAME: &str = "socks5";
const METHOD_NO_AUTH: u8 = 0x00;
const METHOD_USER_PASS: u8 = 0x02;
const CMD_CONNECT: u8 = 1;
const CMD_UDP_ASSOCIATE: u8 = 3;
/// GOST's UDP-over-TCP extension.
const CMD_UDP_TUN: u8 = gost_proto::socks::CMD_UDP_TUN;

#[derive(Debug)]
pub struct Socks5Connector {
    pub auth: Option<Credentials>,
    /// `relay: udp`: UDP by the node's UDP ASSOCIATE rather than GOST's
    /// UDP-over-TCP tunnel.
    pub associate: Option<AssociateOptions>,
}

/// `ATYP DST.ADDR DST.PORT` for `host:port`.
pub(super) fn encode_addr(addr: &str) -> Result<Vec<u8>, ConnectError> {
    let (host, port) = split_addr(NAME, addr)?;
    let mut out = Vec::with_capacity(host.len() + 4);
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            out.push(1);
            out.extend_from_slice(&ip.octets());
        }
        Ok(IpAddr::V6(ip)) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            let len = u8::try_from(host.len())
                .ok()
                .filter(|l| *l > 0)
                .ok_or_else(|| ConnectError::Address {
                    connector: NAME,
                    addr: addr.to_string(),
                    msg: "host name must be 1 to 255 bytes".into(),
                })?;
            out.push(3);
            out.push(len);
            out.extend_from_slice(host.as_bytes());
        }
    }
    out.extend_from_slice(&port.to_be_bytes());
    Ok(out)
}

fn bad(msg: String) -> ConnectError {
    ConnectError::BadReply {
        connector: NAME,
        msg,
    }
}

impl Socks5Connector {
    /// The greeting goes out before any response a relay node before this
    /// one still owes is read: that node answers once this one has.
    async fn negotiate(&self, up: &mut Upstream) -> Result<(), ConnectError> {
        let greeting: &[u8] = if self.auth.is_some() {
            &[5, 2, METHOD_NO_AUTH, METHOD_USER_PASS]
        } else {
            &[5, 1, METHOD_NO_AUTH]
        };
        write_all(NAME, up.writer(), greeting).await?;
        let stream = up.settled().await?;
        let mut sel = [0u8; 2];
        read_exact(NAME, stream, &mut sel).await?;
        if sel[0] != 5 {
            return Err(bad(format!("version {}", sel[0])));
        }
        match (sel[1], &self.auth) {
            (METHOD_NO_AUTH, _) => Ok(()),
            (METHOD_USER_PASS, Some(a)) => {
                let (u, p) = (a.username.as_bytes(), a.password.as_bytes());
                if u.len() > 255 || p.len() > 255 {
                    return Err(ConnectError::Refused {
                        connector: NAME,
                        reply: "username or password longer than 255 bytes".into(),
                    });
                }
                let mut req = vec![1, u.len() as u8];
                req.extend_from_slice(u);
                req.push(p.len() as u8);
                req.extend_from_slice(p);
                write_all(NAME, stream, &req).await?;
                let mut resp = [0u8; 2];
                read_exact(NAME, stream, &mut resp).await?;
                if resp[1] != 0 {
                    return Err(ConnectError::Refused {
                        connector: NAME,
                        reply: "authentication failed".into(),
                    });
                }
                Ok(())
            }
            (0xFF, _) => Err(ConnectError::Refused {
                connector: NAME,
                reply: "no acceptable authentication method".into(),
            }),
            (m, _) => Err(bad(format!("unexpected method {m:#04x}"))),
        }
    }

    pub async fn handshake(&self, up: &mut Upstream, addr: &str) -> Result<(), ConnectError> {
        let dst = encode_addr(addr)?;
        self.request(up, CMD_CONNECT, &dst).await.map(|_| ())
    }

    /// Asks the node for UDP to any target: GOST's UDP-over-TCP tunnel
    /// (command 0xF3 for 0.0.0.0:0, as GOST's connector sends it), or with
    /// `relay: udp` a UDP ASSOCIATE. Either way the node needs `udp=true`.
    /// `node` is the node's address, for a relay port bound on a wildcard.
    pub async fn udp(&self, mut up: Upstream, node: &str) -> Result<UdpTunnel, ConnectError> {
        let Some(opts) = &self.associate else {
            self.request(&mut up, CMD_UDP_TUN, &[1, 0, 0, 0, 0, 0, 0])
                .await?;
            return Ok(UdpTunnel::new(up.into_stream().await?));
        };
        let bound = self
            .request(&mut up, CMD_UDP_ASSOCIATE, &[1, 0, 0, 0, 0, 0, 0])
            .await?;
        let relay = relay_addr(bound, node).await?;
        let io = |source| ConnectError::Io {
            connector: NAME,
            source,
        };
        let any: SocketAddr = if relay.is_ipv4() {
            ([0u8; 4], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let socket = UdpSocket::bind(any).await.map_err(io)?;
        socket.connect(relay).await.map_err(io)?;
        tracing::debug!(node, relay = %relay, local = ?socket.local_addr().ok(), "socks5 connector: udp association bound");
        Ok(UdpTunnel::associated(
            up.into_stream().await?,
            socket,
            opts.clone(),
        ))
    }

    /// GOST's BIND for reverse forwarding (`connector/socks/v5/bind.go`):
    /// the multiplexed BIND (0xF2) for TCP, UDP-over-TCP at a port (0xF3)
    /// for UDP.
    async fn bind(
        &self,
        mut up: Upstream,
        network: BindNetwork,
        addr: &str,
    ) -> Result<Bound, ConnectError> {
        let cmd = match network {
            BindNetwork::Tcp => gost_proto::socks::CMD_MUX_BIND,
            BindNetwork::Udp => CMD_UDP_TUN,
            // GOST's socks5 connector binds TCP and UDP only.
            BindNetwork::Unix => return Err(ConnectError::NoUnix { connector: NAME }),
        };
        let dst = encode_addr(&wire_addr(addr))?;
        let bound = self.request(&mut up, cmd, &dst).await?;
        Ok(Bound {
            addr: bound.to_string(),
            stream: up.into_stream().await?,
            header: PeerHeader::Socks5,
            #[cfg(feature = "mux")]
            mux: None,
            #[cfg(feature = "ssh")]
            forwarded: None,
        })
    }

    /// Negotiates, sends `cmd` for the encoded address and reads the whole
    /// reply, so nothing of it is left on the stream; answers the bound
    /// address the reply reports.
    async fn request(
        &self,
        up: &mut Upstream,
        cmd: u8,
        dst: &[u8],
    ) -> Result<TargetAddr, ConnectError> {
        let mut req = vec![5, cmd, 0];
        req.extend_from_slice(dst);
        self.negotiate(up).await?;
        let stream = up.settled().await?;
        write_all(NAME, stream, &req).await?;
        // VER REP RSV ATYP, then the bound address, whose length ATYP gives.
        let mut head = [0u8; 4];
        read_exact(NAME, stream, &mut head).await?;
        if head[0] != 5 {
            return Err(bad(format!("version {}", head[0])));
        }
        // The bound address as `ATYP ADDR PORT`, the form the parser takes.
        let mut bound = vec![head[3]];
        let rest = match head[3] {
            1 => 4 + 2,
            4 => 16 + 2,
            3 => {
                let mut len = [0u8; 1];
                read_exact(NAME, stream, &mut len).await?;
                bound.push(len[0]);
                len[0] as usize + 2
            }
            t => return Err(bad(format!("address type {t}"))),
        };
        let start = bound.len();
        bound.resize(start + rest, 0);
        read_exact(NAME, stream, &mut bound[start..]).await?;
        if head[1] != 0 {
            return Err(ConnectError::Refused {
                connector: NAME,
                reply: format!("reply code {:#04x}", head[1]),
            });
        }
        gost_proto::socks::parse_addr(&bound, 0)
            .map(|(addr, _)| addr)
            .ok_or_else(|| bad("malformed bound address".into()))
    }
}

/// Where an association's datagrams go: the reply's bound address, with
/// the node's own host when that address is a wildcard (0.0.0.0 or ::, as
/// servers bound on all interfaces report it). gost-rs and GOST servers
/// report the IP this host reached them on, which is used as it is.
async fn relay_addr(bound: TargetAddr, node: &str) -> Result<SocketAddr, ConnectError> {
    let (host, port) = match bound {
        TargetAddr::Ip(a) if a.port() == 0 => {
            return Err(bad(format!("UDP ASSOCIATE bound port 0 ({a})")))
        }
        TargetAddr::Ip(a) if !a.ip().is_unspecified() => return Ok(a),
        TargetAddr::Ip(a) => (split_addr(NAME, node)?.0, a.port()),
        TargetAddr::Domain(h, p) => (h, p),
    };
    let unresolved = |msg: String| ConnectError::Address {
        connector: NAME,
        addr: format!("{host}:{port}"),
        msg,
    };
    let mut found = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| unresolved(e.to_string()))?;
    found.next().ok_or_else(|| unresolved("no address".into()))
}

impl super::Connector for Socks5Connector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn connect<'a>(
        &'a self,
        up: &'a mut Upstream,
        addr: &'a str,
    ) -> BoxFuture<'a, Result<(), ConnectError>> {
        Box::pin(self.handshake(up, addr))
    }

    fn udp_tunnel<'a>(
        &'a self,
        up: Upstream,
        _target: Option<&'a str>,
        node: &'a str,
    ) -> BoxFuture<'a, Result<UdpTunnel, ConnectError>> {
        Box::pin(self.udp(up, node))
    }

    fn bind<'a>(
        &'a self,
        up: Upstream,
        network: BindNetwork,
        addr: &'a str,
    ) -> BoxFuture<'a, Result<Bound, ConnectError>> {
        Box::pin(Socks5Connector::bind(self, up, network, addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn addresses_encode_by_type() {
        assert_eq!(encode_addr("1.2.3.4:80").unwrap(), [1, 1, 2, 3, 4, 0, 80]);
        assert_eq!(encode_addr("[::1]:1").unwrap()[0], 4);
        assert_eq!(
            encode_addr("a.b:2").unwrap(),
            [3, 3, b'a', b'.', b'b', 0, 2]
        );
        assert!(encode_addr(&format!("{}:1", "x".repeat(256))).is_err());
    }

    #[tokio::test]
    async fn user_pass_then_connect_and_leave_tunnel_bytes() {
        let (c, mut s) = gost_core::test_util::tcp_pair().await;
        let mut c = Upstream::direct(c);
        let server = tokio::spawn(async move {
            let mut g = [0u8; 4];
            s.read_exact(&mut g).await.unwrap();
            assert_eq!(g, [5, 2, 0, 2]);
            s.write_all(&[5, 2]).await.unwrap();
            let mut auth = [0u8; 5];
            s.read_exact(&mut auth).await.unwrap();
            assert_eq!(auth, [1, 1, b'u', 1, b'p']);
            s.write_all(&[1, 0]).await.unwrap();
            let mut req = [0u8; 10];
            s.read_exact(&mut req).await.unwrap();
            assert_eq!(req, [5, 1, 0, 1, 127, 0, 0, 1, 0, 9]);
            s.write_all(&[5, 0, 0, 3, 1, b'x', 0, 1, b'd', b'a', b't', b'a'])
                .await
                .unwrap();
        });
        let conn = Socks5Connector {
            auth: Some(Credentials {
                username: "u".into(),
                password: "p".into(),
            }),
            associate: None,
        };
        conn.handshake(&mut c, "127.0.0.1:9").await.unwrap();
        let mut rest = [0u8; 4];
        c.into_parts().0.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"data");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn failure_reply_is_refused() {
        let (c, mut s) = gost_core::test_util::tcp_pair().await;
        let mut c = Upstream::direct(c);
        tokio::spawn(async move {
            let mut g = [0u8; 3];
            s.read_exact(&mut g).await.unwrap();
            s.write_all(&[5, 0]).await.unwrap();
            let mut req = [0u8; 10];
            s.read_exact(&mut req).await.unwrap();
            s.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await.unwrap();
        });
        let conn = Socks5Connector {
            auth: None,
            associate: None,
        };
        let err = conn.handshake(&mut c, "127.0.0.1:9").await.unwrap_err();
        assert!(err.to_string().contains("0x05"), "{err}");
    }

    /// A lazy relay node before this one answers only once the target (the
    /// socks5 node) speaks, so the greeting must not wait for that answer.
    #[tokio::test]
    async fn behind_a_lazy_relay_node_the_greeting_goes_first() {
        let (c, mut s) = gost_core::test_util::tcp_pair().await;
        let mut c = Upstream::direct(c);
        c.owe_response();
        tokio::spawn(async move {
            let mut g = [0u8; 3];
            s.read_exact(&mut g).await.unwrap();
            assert_eq!(g, [5, 1, 0]);
            // The relay response, then the socks5 method selection.
            s.write_all(&[1, 0, 0, 0, 5, 0]).await.unwrap();
            let mut req = [0u8; 10];
            s.read_exact(&mut req).await.unwrap();
            s.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0, b'o', b'k'])
                .await
                .unwrap();
        });
        let conn = Socks5Connector {
            auth: None,
            associate: None,
        };
        conn.handshake(&mut c, "127.0.0.1:9").await.unwrap();
        let (mut c, owed) = c.into_parts();
        assert!(owed.is_none());
        let mut rest = [0u8; 2];
        c.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"ok");
    }

    fn associating(buffer_size: usize) -> Socks5Connector {
        Socks5Connector {
            auth: None,
            associate: Some(AssociateOptions {
                buffer_size,
                timeout: None,
            }),
        }
    }

    /// A scripted socks5 node: it grants UDP ASSOCIATE with the reply
    /// `bound` makes of its relay socket's address, then hands both
    /// sockets over.
    async fn fake_node(
        relay_at: &'static str,
        bound: impl FnOnce(SocketAddr) -> Vec<u8> + Send + 'static,
    ) -> (
        Upstream,
        tokio::task::JoinHandle<(tokio::net::TcpStream, UdpSocket)>,
    ) {
        let (c, mut s) = gost_core::test_util::tcp_pair().await;
        let server = tokio::spawn(async move {
            let mut g = [0u8; 3];
            s.read_exact(&mut g).await.unwrap();
            assert_eq!(g, [5, 1, 0]);
            s.write_all(&[5, 0]).await.unwrap();
            let mut req = [0u8; 10];
            s.read_exact(&mut req).await.unwrap();
            assert_eq!(req, [5, 3, 0, 1, 0, 0, 0, 0, 0, 0]);
            let relay = UdpSocket::bind(relay_at).await.unwrap();
            s.write_all(&bound(relay.local_addr().unwrap()))
                .await
                .unwrap();
            (s, relay)
        });
        (Upstream::direct(c), server)
    }

    fn reply_for(addr: SocketAddr) -> Vec<u8> {
        let mut r = vec![5, 0, 0];
        gost_proto::socks::put_host(&mut r, &addr.ip().to_string(), addr.port());
        r
    }

    #[tokio::test]
    async fn udp_associate_sends_and_parses_socks5_datagrams() {
        let (up, server) = fake_node("127.0.0.1:0", reply_for).await;
        let mut tun = associating(4096).udp(up, "127.0.0.1:1").await.unwrap();
        let (control, relay) = server.await.unwrap();
        tun.send_to(b"hi", "10.0.0.1:53").await.unwrap();
        tun.send_to(b"q", "dns.example:53").await.unwrap();
        let mut got = [0u8; 64];
        let (n, from) = relay.recv_from(&mut got).await.unwrap();
        assert_eq!(&got[..n], [0, 0, 0, 1, 10, 0, 0, 1, 0, 53, b'h', b'i']);
        assert_eq!(Some(from), tun.local_addr());
        let n = relay.recv(&mut got).await.unwrap();
        assert_eq!(&got[..n], b"\0\0\0\x03\x0bdns.example\0\x35q");

        // A fragment, a bad address type, a datagram from a name and one
        // from another socket are dropped; then a good one arrives.
        relay
            .send_to(&[0, 0, 1, 1, 1, 2, 3, 4, 0, 7, b'x'], from)
            .await
            .unwrap();
        relay
            .send_to(&[0, 0, 0, 9, 1, 2, 3, 4, 0, 7, b'x'], from)
            .await
            .unwrap();
        relay
            .send_to(&[0, 0, 0, 3, 1, b'n', 0, 7, b'x'], from)
            .await
            .unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        stranger
            .send_to(&[0, 0, 0, 1, 1, 2, 3, 4, 0, 7, b'x'], from)
            .await
            .unwrap();
        relay
            .send_to(&[0, 0, 0, 1, 1, 2, 3, 4, 0, 7, b'o', b'k'], from)
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let (n, src) = tun.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], src), (&b"ok"[..], "1.2.3.4:7".parse().unwrap()));

        // The node ends the association by closing the stream.
        drop(control);
        let err = tun.recv_from(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
    }

    #[tokio::test]
    async fn a_wildcard_relay_port_is_on_the_node_host() {
        let ip = |a: &str| TargetAddr::Ip(a.parse().unwrap());
        assert_eq!(
            relay_addr(ip("0.0.0.0:5"), "192.0.2.7:1080").await.unwrap(),
            "192.0.2.7:5".parse().unwrap()
        );
        assert_eq!(
            relay_addr(ip("[::]:5"), "[2001:db8::1]:1080")
                .await
                .unwrap(),
            "[2001:db8::1]:5".parse().unwrap()
        );
        assert_eq!(
            relay_addr(ip("198.51.100.1:6"), "192.0.2.7:1080")
                .await
                .unwrap(),
            "198.51.100.1:6".parse().unwrap()
        );
        let name = TargetAddr::Domain("127.0.0.1".into(), 7);
        assert_eq!(
            relay_addr(name, "192.0.2.7:1080").await.unwrap(),
            "127.0.0.1:7".parse().unwrap()
        );
    }

    /// Datagrams longer than `udp.bufferSize` are cut, as GOST's fixed
    /// read buffer cuts them.
    #[tokio::test]
    async fn udp_associate_cuts_datagrams_to_the_buffer_size() {
        let (up, server) = fake_node("127.0.0.1:0", reply_for).await;
        let mut tun = associating(12).udp(up, "127.0.0.1:1").await.unwrap();
        let (_control, relay) = server.await.unwrap();
        let to = tun.local_addr().unwrap();
        relay
            .send_to(&[0, 0, 0, 1, 1, 1, 1, 1, 0, 1, b'a', b'b', b'c'], to)
            .await
            .unwrap();
        let mut got = [0u8; 16];
        assert_eq!(tun.recv(&mut got).await.unwrap(), 2);
        assert_eq!(&got[..2], b"ab");
    }

    #[tokio::test]
    async fn udp_associate_bad_replies_are_errors() {
        let (up, _server) = fake_node("127.0.0.1:0", |_| vec![5, 0, 0, 9, 0, 0]).await;
        let err = associating(4096).udp(up, "127.0.0.1:1").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "socks5 connector: bad reply: address type 9"
        );
        let (up, _server) =
            fake_node("127.0.0.1:0", |_| vec![5, 0, 0, 1, 127, 0, 0, 1, 0, 0]).await;
        let err = associating(4096).udp(up, "127.0.0.1:1").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "socks5 connector: bad reply: UDP ASSOCIATE bound port 0 (127.0.0.1:0)"
        );
        let (up, _server) = fake_node("127.0.0.1:0", |_| vec![5, 7, 0, 1, 0, 0, 0, 0, 0, 0]).await;
        let err = associating(4096).udp(up, "127.0.0.1:1").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "socks5 connector: node refused: reply code 0x07"
        );
    }

    #[tokio::test]
    async fn udp_associate_over_ipv6() {
        if std::net::UdpSocket::bind("[::1]:0").is_err() {
            return; // no IPv6 loopback on this host
        }
        let (up, server) = fake_node("[::1]:0", reply_for).await;
        let mut tun = associating(4096).udp(up, "127.0.0.1:1").await.unwrap();
        let (_control, relay) = server.await.unwrap();
        tun.send_to(b"6", "[::1]:53").await.unwrap();
        let mut got = [0u8; 32];
        let (n, from) = relay.recv_from(&mut got).await.unwrap();
        let header = [&[0, 0, 0, 4][..], &[0; 15], &[1, 0, 53]].concat();
        assert_eq!(&got[..n], [&header[..], b"6"].concat());
        relay
            .send_to(&[&header[..], b"v6"].concat(), from)
            .await
            .unwrap();
        let (n, src) = tun.recv_from(&mut got).await.unwrap();
        assert_eq!((&got[..n], src), (&b"v6"[..], "[::1]:53".parse().unwrap()));
    }
}
