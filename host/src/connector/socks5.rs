//! SOCKS5 connector (GOST's `connector/socks/v5`): CONNECT, and UDP
//! through GOST's UDP-over-TCP tunnel (see [`super::udp_tun`]). GOST also
//! offers its TLS methods (0x80, 0x82) unless `notls` is set; this
//! connector offers only no-auth and, with credentials, username/password.

use std::net::IpAddr;
use std::time::Duration;

use super::udp_tun::UdpTunnel;
use super::upstream::Upstream;
use super::{read_exact, split_addr, write_all, ConnectError, Credentials};

const NAME: &str = "socks5";
const METHOD_NO_AUTH: u8 = 0x00;
const METHOD_USER_PASS: u8 = 0x02;
const CMD_CONNECT: u8 = 1;
/// GOST's UDP-over-TCP extension.
const CMD_UDP_TUN: u8 = 0xF3;

#[derive(Debug)]
pub struct Socks5Connector {
    pub auth: Option<Credentials>,
    pub timeout: Option<Duration>,
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

    pub async fn connect(&self, up: &mut Upstream, addr: &str) -> Result<(), ConnectError> {
        let dst = encode_addr(addr)?;
        self.request(up, CMD_CONNECT, &dst).await
    }

    /// Asks the node for GOST's UDP-over-TCP tunnel (command 0xF3 for
    /// 0.0.0.0:0, as GOST's connector sends it); the node needs `udp=true`.
    pub async fn udp_tunnel(&self, mut up: Upstream) -> Result<UdpTunnel, ConnectError> {
        self.request(&mut up, CMD_UDP_TUN, &[1, 0, 0, 0, 0, 0, 0])
            .await?;
        Ok(UdpTunnel::new(up.into_stream().await?))
    }

    /// Negotiates, sends `cmd` for the encoded address and reads the whole
    /// reply, so nothing of it is left on the stream.
    async fn request(&self, up: &mut Upstream, cmd: u8, dst: &[u8]) -> Result<(), ConnectError> {
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
        let rest = match head[3] {
            1 => 4 + 2,
            4 => 16 + 2,
            3 => {
                let mut len = [0u8; 1];
                read_exact(NAME, stream, &mut len).await?;
                len[0] as usize + 2
            }
            t => return Err(bad(format!("address type {t}"))),
        };
        let mut bound = [0u8; 258];
        read_exact(NAME, stream, &mut bound[..rest]).await?;
        if head[1] != 0 {
            return Err(ConnectError::Refused {
                connector: NAME,
                reply: format!("reply code {:#04x}", head[1]),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

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
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut c = Upstream::direct(
            tokio::net::TcpStream::connect(l.local_addr().unwrap())
                .await
                .unwrap(),
        );
        let (mut s, _) = l.accept().await.unwrap();
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
            timeout: None,
        };
        conn.connect(&mut c, "127.0.0.1:9").await.unwrap();
        let mut rest = [0u8; 4];
        c.into_parts().0.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"data");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn failure_reply_is_refused() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut c = Upstream::direct(
            tokio::net::TcpStream::connect(l.local_addr().unwrap())
                .await
                .unwrap(),
        );
        let (mut s, _) = l.accept().await.unwrap();
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
            timeout: None,
        };
        let err = conn.connect(&mut c, "127.0.0.1:9").await.unwrap_err();
        assert!(err.to_string().contains("0x05"), "{err}");
    }

    /// A lazy relay node before this one answers only once the target (the
    /// socks5 node) speaks, so the greeting must not wait for that answer.
    #[tokio::test]
    async fn behind_a_lazy_relay_node_the_greeting_goes_first() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut c = Upstream::direct(
            tokio::net::TcpStream::connect(l.local_addr().unwrap())
                .await
                .unwrap(),
        );
        c.owe_response();
        let (mut s, _) = l.accept().await.unwrap();
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
            timeout: None,
        };
        conn.connect(&mut c, "127.0.0.1:9").await.unwrap();
        let (mut c, owed) = c.into_parts();
        assert!(owed.is_none());
        let mut rest = [0u8; 2];
        c.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"ok");
    }
}
