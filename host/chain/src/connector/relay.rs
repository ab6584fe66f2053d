//! GOST's relay connector (`connector/relay`), CONNECT over TCP or UDP.
//! The request (target address and user/password features, plus the
//! network feature for UDP) is written at once. With `nodelay=true` the
//! response is read before the stream is handed on; by default (GOST's
//! lazy mode) it is left owing on the [`Upstream`] and read just before
//! the first byte back, because a GOST relay server without `nodelay`
//! holds its response until the target speaks. A UDP CONNECT names one
//! target; its datagrams then travel as `LEN(2) DATA` frames (see
//! [`super::udp_tun`]). A UDP tunnel to any target (SOCKS5 UDP ASSOCIATE
//! through a relay last node) is GOST's UDP BIND: the node binds a UDP
//! socket and answers at once with its address, and datagrams travel as
//! the socks5 UDP-over-TCP frames that name their target or source.

use super::bind::{wire_addr_for, BindNetwork, Bound, PeerHeader};
use super::socks5::encode_addr;
use super::udp_tun::UdpTunnel;
use super::upstream::Upstream;
use super::{write_all, ConnectError, Credentials};
use gost_proto::relay::{
    parse_addr, put_feature, split_feature, status_text, CMD_BIND, CMD_CONNECT, FEATURE_ADDR,
    FEATURE_NETWORK, FEATURE_USER_AUTH, FLAG_UDP, NETWORK_TCP, NETWORK_UDP, NETWORK_UNIX, VERSION,
};
use gost_transport::BoxFuture;

const NAME: &str = "relay";

#[derive(Debug)]
pub struct RelayConnector {
    pub auth: Option<Credentials>,
    /// Read the response before handing the stream on (GOST's `nodelay`).
    pub nodelay: bool,
}

impl RelayConnector {
    /// `VER CMD FLEN(2) FEATURES`, each feature `TYPE LEN(2) DATA`; for
    /// UDP the command's 0x80 bit and the network feature, as GOST sends.
    fn request(&self, cmd: u8, addr: &str, udp: bool) -> Result<Vec<u8>, ConnectError> {
        let dst = encode_addr(addr).map_err(|e| match e {
            ConnectError::Address { addr, msg, .. } => ConnectError::Address {
                connector: NAME,
                addr,
                msg,
            },
            other => other,
        })?;
        let (cmd, net) = if udp {
            (cmd | FLAG_UDP, Some(NETWORK_UDP))
        } else {
            (cmd, None)
        };
        self.request_to(cmd, net, &dst)
    }

    /// GOST's CONNECT to a unix socket: the network feature, then the
    /// path as a name with port 0.
    fn unix_request(&self, path: &str) -> Result<Vec<u8>, ConnectError> {
        let dst = name_feature(path)?;
        self.request_to(CMD_CONNECT, Some(NETWORK_UNIX), &dst)
    }

    /// `VER CMD FLEN(2) FEATURES`: the network (when given), the user,
    /// then the target's address feature data `dst`.
    fn request_to(
        &self,
        cmd: u8,
        network: Option<u16>,
        dst: &[u8],
    ) -> Result<Vec<u8>, ConnectError> {
        let mut features = Vec::new();
        if let Some(net) = network {
            put_feature(&mut features, FEATURE_NETWORK, &net.to_be_bytes());
        }
        if let Some(a) = &self.auth {
            let (u, p) = (a.username.as_bytes(), a.password.as_bytes());
            if u.len() > 255 || p.len() > 255 {
                return Err(ConnectError::Refused {
                    connector: NAME,
                    reply: "username or password longer than 255 bytes".into(),
                });
            }
            let mut data = vec![u.len() as u8];
            data.extend_from_slice(u);
            data.push(p.len() as u8);
            data.extend_from_slice(p);
            put_feature(&mut features, FEATURE_USER_AUTH, &data);
        }
        put_feature(&mut features, FEATURE_ADDR, dst);
        let mut req = vec![VERSION, cmd];
        req.extend_from_slice(&(features.len() as u16).to_be_bytes());
        req.extend_from_slice(&features);
        Ok(req)
    }

    pub async fn handshake(&self, up: &mut Upstream, addr: &str) -> Result<(), ConnectError> {
        self.send_connect(up, self.request(CMD_CONNECT, addr, false)?)
            .await
    }

    /// Writes a CONNECT request and owes its response, or with `nodelay`
    /// reads it.
    async fn send_connect(&self, up: &mut Upstream, req: Vec<u8>) -> Result<(), ConnectError> {
        write_all(NAME, up.writer(), &req).await?;
        up.owe_response();
        if self.nodelay {
            up.settle().await?;
        }
        Ok(())
    }

    /// A UDP tunnel to `target` alone (a UDP CONNECT), or to any target
    /// (a UDP BIND) when there is none.
    pub async fn udp(
        &self,
        mut up: Upstream,
        target: Option<&str>,
    ) -> Result<UdpTunnel, ConnectError> {
        let Some(target) = target else {
            return self.udp_bind(up).await;
        };
        write_all(NAME, up.writer(), &self.request(CMD_CONNECT, target, true)?).await?;
        up.owe_response();
        if self.nodelay {
            up.settle().await?;
        }
        Ok(UdpTunnel::relay(up))
    }

    /// GOST's UDP BIND for an association: the node binds a UDP socket
    /// where it likes (`0.0.0.0:0` asked, as GOST does) and answers at
    /// once, lazy mode or not, so the answer is read here. The request
    /// goes out before the answers of earlier lazy relay nodes are read:
    /// they come only once this node has answered.
    async fn udp_bind(&self, mut up: Upstream) -> Result<UdpTunnel, ConnectError> {
        write_all(
            NAME,
            up.writer(),
            &self.request(CMD_BIND, "0.0.0.0:0", true)?,
        )
        .await?;
        let stream = up.settled().await?;
        let mut head = [0u8; 4];
        super::read_exact(NAME, stream, &mut head).await?;
        let mut features = vec![0u8; u16::from_be_bytes([head[2], head[3]]) as usize];
        super::read_exact(NAME, stream, &mut features).await?;
        let bound = parse_bind_response(head, &features)?;
        tracing::debug!(
            bound = bound.as_deref().unwrap_or("?"),
            "relay connector: udp association bound"
        );
        Ok(UdpTunnel::new(up.into_parts().0))
    }
}

impl RelayConnector {
    /// GOST's BIND request (`connector/relay/bind.go`): user/password when
    /// set, the network, then the address, in that order.
    fn bind_request(&self, addr: &str, network: BindNetwork) -> Result<Vec<u8>, ConnectError> {
        let mut features = Vec::new();
        if let Some(a) = &self.auth {
            let (u, p) = (a.username.as_bytes(), a.password.as_bytes());
            if u.len() > 255 || p.len() > 255 {
                return Err(ConnectError::Refused {
                    connector: NAME,
                    reply: "username or password longer than 255 bytes".into(),
                });
            }
            let mut data = vec![u.len() as u8];
            data.extend_from_slice(u);
            data.push(p.len() as u8);
            data.extend_from_slice(p);
            put_feature(&mut features, FEATURE_USER_AUTH, &data);
        }
        let (cmd, net) = match network {
            BindNetwork::Tcp => (CMD_BIND, NETWORK_TCP),
            BindNetwork::Udp => (CMD_BIND | FLAG_UDP, NETWORK_UDP),
            BindNetwork::Unix => (CMD_BIND, NETWORK_UNIX),
        };
        put_feature(&mut features, FEATURE_NETWORK, &net.to_be_bytes());
        let dst = match network {
            BindNetwork::Unix => name_feature(addr)?,
            _ => encode_addr(addr).map_err(|e| match e {
                ConnectError::Address { addr, msg, .. } => ConnectError::Address {
                    connector: NAME,
                    addr,
                    msg,
                },
                other => other,
            })?,
        };
        put_feature(&mut features, FEATURE_ADDR, &dst);
        let mut req = vec![VERSION, cmd];
        req.extend_from_slice(&(features.len() as u16).to_be_bytes());
        req.extend_from_slice(&features);
        Ok(req)
    }

    /// A BIND for reverse forwarding: answered at once with the bound
    /// address; a TCP BIND's stream then carries the node's smux session,
    /// a UDP BIND's the datagrams as UDP-over-TCP frames.
    async fn bind(
        &self,
        mut up: Upstream,
        network: BindNetwork,
        addr: &str,
    ) -> Result<Bound, ConnectError> {
        let addr = wire_addr_for(network, addr);
        write_all(NAME, up.writer(), &self.bind_request(&addr, network)?).await?;
        let stream = up.settled().await?;
        let mut head = [0u8; 4];
        super::read_exact(NAME, stream, &mut head).await?;
        let mut features = vec![0u8; u16::from_be_bytes([head[2], head[3]]) as usize];
        super::read_exact(NAME, stream, &mut features).await?;
        let mut bound = parse_bind_response(head, &features)?.unwrap_or_default();
        if network == BindNetwork::Unix {
            bound = gost_proto::relay::host_only(&bound).to_string();
        }
        Ok(Bound {
            addr: bound,
            stream: up.into_parts().0,
            header: PeerHeader::Relay,
            #[cfg(feature = "mux")]
            mux: None,
            #[cfg(feature = "ssh")]
            forwarded: None,
        })
    }
}

/// A unix socket's path as an address feature's data.
fn name_feature(path: &str) -> Result<Vec<u8>, ConnectError> {
    gost_proto::relay::name_addr(path).ok_or_else(|| ConnectError::Address {
        connector: NAME,
        addr: path.to_string(),
        msg: "a unix socket path must be at most 255 bytes".into(),
    })
}

/// A BIND response `VER STATUS FLEN(2) FEATURES`: the bound address from
/// its address feature, when it has one; an error for a refusal.
fn parse_bind_response(head: [u8; 4], features: &[u8]) -> Result<Option<String>, ConnectError> {
    let mut bound = None;
    for (kind, data) in bind_answer(NAME, "BIND", head, features)? {
        if kind == FEATURE_ADDR {
            bound = Some(parse_addr(data).map_err(|msg| bad_reply(NAME, msg))?);
        }
    }
    Ok(bound)
}

fn bad_reply(connector: &'static str, msg: String) -> ConnectError {
    ConnectError::BadReply { connector, msg }
}

/// The features of a relay BIND answer (the relay and tunnel connectors'
/// `VER STATUS FLEN(2) FEATURES`), once its version is known and its
/// status says yes; `what` names the request in a refusal.
pub(super) fn bind_answer<'f>(
    connector: &'static str,
    what: &str,
    head: [u8; 4],
    mut features: &'f [u8],
) -> Result<Vec<(u8, &'f [u8])>, ConnectError> {
    if head[0] != VERSION {
        return Err(bad_reply(connector, format!("version {}", head[0])));
    }
    if head[1] != 0 {
        return Err(ConnectError::Refused {
            connector,
            reply: format!("{what}: status {} ({})", head[1], status_text(head[1])),
        });
    }
    let mut out = Vec::new();
    while !features.is_empty() {
        let (kind, data, rest) = split_feature(features)
            .ok_or_else(|| bad_reply(connector, "truncated feature".into()))?;
        out.push((kind, data));
        features = rest;
    }
    Ok(out)
}

impl super::Connector for RelayConnector {
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

    fn connect_unix<'a>(
        &'a self,
        up: &'a mut Upstream,
        path: &'a str,
    ) -> BoxFuture<'a, Result<(), ConnectError>> {
        Box::pin(async move { self.send_connect(up, self.unix_request(path)?).await })
    }

    fn udp_tunnel<'a>(
        &'a self,
        up: Upstream,
        target: Option<&'a str>,
        _node: &'a str,
    ) -> BoxFuture<'a, Result<UdpTunnel, ConnectError>> {
        Box::pin(self.udp(up, target))
    }

    fn bind<'a>(
        &'a self,
        up: Upstream,
        network: BindNetwork,
        addr: &'a str,
    ) -> BoxFuture<'a, Result<Bound, ConnectError>> {
        Box::pin(RelayConnector::bind(self, up, network, addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::bind::wire_addr;
    use crate::connector::upstream::LazyResponse;

    /// GOST's relay connector for a unix target (`connector/relay`
    /// `Connect` with network `unix`) and a `runix` BIND: the network
    /// feature 0x10, the path as a name with port 0.
    #[test]
    fn unix_requests_are_gosts_bytes() {
        let c = RelayConnector {
            auth: None,
            nodelay: false,
        };
        assert_eq!(
            c.unix_request("/s").unwrap(),
            [1, 1, 0, 14, 4, 0, 2, 0, 0x10, 2, 0, 6, 3, 2, b'/', b's', 0, 0]
        );
        assert_eq!(
            c.bind_request("/s", BindNetwork::Unix).unwrap(),
            [1, 2, 0, 14, 4, 0, 2, 0, 0x10, 2, 0, 6, 3, 2, b'/', b's', 0, 0]
        );
        assert!(c.unix_request(&"a".repeat(256)).is_err());
    }

    /// GOST's `connector/relay/bind.go` for `rtcp://:2222` with a user:
    /// auth, then network, then `0.0.0.0:2222`; UDP sets the 0x80 bit and
    /// network 1.
    #[test]
    fn a_bind_request_is_gosts_bytes() {
        let c = RelayConnector {
            auth: Some(Credentials {
                username: "u".into(),
                password: "p".into(),
            }),
            nodelay: false,
        };
        let tcp = c
            .bind_request(&wire_addr(":2222"), BindNetwork::Tcp)
            .unwrap();
        assert_eq!(
            tcp,
            [
                1, 2, 0, 22, // VER CMD FLEN
                1, 0, 4, 1, b'u', 1, b'p', // user/pass
                4, 0, 2, 0, 0, // network tcp
                2, 0, 7, 1, 0, 0, 0, 0, 0x08, 0xae, // 0.0.0.0:2222
            ]
        );
        let udp = c.bind_request(&wire_addr(":53"), BindNetwork::Udp).unwrap();
        assert_eq!(&udp[..2], &[1, 0x82]);
        assert_eq!(&udp[11..16], &[4, 0, 2, 0, 1]);
    }

    #[tokio::test]
    async fn a_bind_reads_its_answer_and_leaves_the_session_bytes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (a, mut b) = tokio::io::duplex(1024);
        let c = RelayConnector {
            auth: None,
            nodelay: false,
        };
        let node = tokio::spawn(async move {
            let mut req = [0u8; 19];
            b.read_exact(&mut req).await.unwrap();
            // OK, bound 0.0.0.0:2222, then the first smux frame.
            b.write_all(&[
                1, 0, 0, 10, 2, 0, 7, 1, 0, 0, 0, 0, 0x08, 0xae, 1, 0, 0, 0, 3, 0, 0, 0,
            ])
            .await
            .unwrap();
            b
        });
        let up = Upstream::direct(gost_core::stream::Stream::boxed(a, Default::default()));
        let mut bound = RelayConnector::bind(&c, up, BindNetwork::Tcp, ":2222")
            .await
            .unwrap();
        assert_eq!(bound.addr, "0.0.0.0:2222");
        assert_eq!(bound.header, PeerHeader::Relay);
        let mut frame = [0u8; 8];
        bound.stream.read_exact(&mut frame).await.unwrap();
        assert_eq!(frame, [1, 0, 0, 0, 3, 0, 0, 0]);
        drop(node.await.unwrap());
    }

    #[tokio::test]
    async fn a_refused_bind_names_the_status() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (a, mut b) = tokio::io::duplex(1024);
        let c = RelayConnector {
            auth: None,
            nodelay: false,
        };
        tokio::spawn(async move {
            let mut req = [0u8; 19];
            b.read_exact(&mut req).await.unwrap();
            b.write_all(&[1, 5, 0, 0]).await.unwrap();
            b
        });
        let up = Upstream::direct(gost_core::stream::Stream::boxed(a, Default::default()));
        let err = RelayConnector::bind(&c, up, BindNetwork::Tcp, ":2222")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("service unavailable"), "{err}");
    }

    #[test]
    fn request_carries_auth_then_address() {
        let c = RelayConnector {
            auth: Some(Credentials {
                username: "u".into(),
                password: "pw".into(),
            }),
            nodelay: false,
        };
        assert_eq!(
            c.request(CMD_CONNECT, "1.2.3.4:80", false).unwrap(),
            [
                1, 1, 0, 18, // header, 18 bytes of features
                1, 0, 5, 1, b'u', 2, b'p', b'w', // user/password
                2, 0, 7, 1, 1, 2, 3, 4, 0, 80, // address
            ]
        );
        let c = RelayConnector {
            auth: None,
            nodelay: false,
        };
        assert_eq!(
            c.request(CMD_CONNECT, "ab:1", false).unwrap(),
            [1, 1, 0, 9, 2, 0, 6, 3, 2, b'a', b'b', 0, 1]
        );
    }

    #[test]
    fn a_response_is_taken_whole_and_no_further() {
        let mut r = LazyResponse::default();
        assert_eq!(r.feed(&[1]).unwrap(), (1, false));
        assert_eq!(r.feed(&[0, 0, 2, 7]).unwrap(), (4, false));
        assert_eq!(r.feed(&[7, b'x', b'y']).unwrap(), (1, true));
        // Two nodes' responses back to back, then payload.
        let mut r = LazyResponse::default().and_one_more();
        assert_eq!(
            r.feed(&[1, 0, 0, 0, 1, 0, 0, 1, 5, b'p']).unwrap(),
            (9, true)
        );
    }

    #[test]
    fn bad_or_refusing_responses_are_errors() {
        let err = LazyResponse::default().feed(&[5, 0, 0, 0]).unwrap_err();
        assert_eq!(err.to_string(), "relay connector: bad reply: version 5");
        let err = LazyResponse::default().feed(&[1, 2]).map(|_| ());
        assert!(err.is_ok(), "a truncated header is not judged yet");
        let err = LazyResponse::default().feed(&[1, 2, 0, 0]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "relay connector: node refused: status 2 (unauthorized)"
        );
    }

    #[test]
    fn a_udp_bind_asks_for_any_address_with_auth() {
        let c = RelayConnector {
            auth: Some(Credentials {
                username: "u".into(),
                password: "p".into(),
            }),
            nodelay: false,
        };
        assert_eq!(
            c.request(CMD_BIND, "0.0.0.0:0", true).unwrap(),
            [
                1, 0x82, 0, 22, // BIND with the UDP bit, 22 bytes of features
                4, 0, 2, 0, 1, // network UDP
                1, 0, 4, 1, b'u', 1, b'p', // user/password
                2, 0, 7, 1, 0, 0, 0, 0, 0, 0, // address 0.0.0.0:0
            ]
        );
    }

    #[test]
    fn bind_responses() {
        let addr = [2, 0, 7, 1, 127, 0, 0, 1, 0x1f, 0x90];
        assert_eq!(
            parse_bind_response([1, 0, 0, 10], &addr)
                .unwrap()
                .as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(parse_bind_response([1, 0, 0, 0], &[]).unwrap(), None);
        let err = parse_bind_response([1, 3, 0, 0], &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "relay connector: node refused: BIND: status 3 (forbidden)"
        );
        let err = parse_bind_response([2, 0, 0, 0], &[]).unwrap_err();
        assert_eq!(err.to_string(), "relay connector: bad reply: version 2");
        let err = parse_bind_response([1, 0, 0, 5], &addr[..5]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "relay connector: bad reply: truncated feature"
        );
        let err = parse_bind_response([1, 0, 0, 5], &[2, 0, 2, 1, 127]).unwrap_err();
        assert!(err.to_string().contains("truncated address"), "{err}");
    }

    /// The earlier lazy node's owed answer is read before the BIND's own,
    /// and both before the tunnel is handed on; a node that closes
    /// mid-answer is an error.
    #[tokio::test]
    async fn a_udp_bind_reads_owed_answers_first_then_its_own() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let c = RelayConnector {
            auth: None,
            nodelay: false,
        };
        let (a, mut s) = gost_core::test_util::tcp_pair().await;
        let mut up = Upstream::direct(a);
        up.owe_response();
        let node = tokio::spawn(async move {
            s.write_all(&[1, 0, 0, 0]).await.unwrap();
            let mut req = [0u8; 4 + 5 + 10];
            s.read_exact(&mut req).await.unwrap();
            assert_eq!(&req[..2], [1, 0x82]);
            s.write_all(&[1, 0, 0, 10, 2, 0, 7, 1, 127, 0, 0, 1, 0, 9])
                .await
                .unwrap();
            s.write_all(&[0, 1, 0xFF, 1, 127, 0, 0, 1, 0, 7, b'x'])
                .await
                .unwrap();
            s
        });
        let mut tun = c.udp(up, None).await.unwrap();
        let mut buf = [0u8; 4];
        let (n, from) = tun.recv_from(&mut buf).await.unwrap();
        assert_eq!(
            (&buf[..n], from),
            (&b"x"[..], "127.0.0.1:7".parse().unwrap())
        );
        drop(node.await.unwrap());

        let (a, mut s) = gost_core::test_util::tcp_pair().await;
        tokio::spawn(async move {
            let mut req = [0u8; 19];
            s.read_exact(&mut req).await.unwrap();
            s.write_all(&[1, 0, 0]).await.unwrap();
        });
        let err = c.udp(Upstream::direct(a), None).await.unwrap_err();
        assert!(matches!(err, ConnectError::Io { .. }), "{err}");
    }
}
