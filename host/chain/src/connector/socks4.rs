//! SOCKS4/4a connector (GOST's `connector/socks/v4`).

use std::net::Ipv4Addr;

use super::upstream::Upstream;
use super::{read_exact, split_addr, write_all, ConnectError};
use gost_transport::BoxFuture;

const NAME: &str = "socks4";
const GRANTED: u8 = 0x5A;

#[derive(Debug)]
pub struct Socks4Connector {
    /// Sent as the USERID field (the connector's `auth` username).
    pub user_id: String,
    /// Metadata `disable4a`: resolve names here and send an IPv4 address.
    pub disable_4a: bool,
}

impl Socks4Connector {
    async fn request(&self, addr: &str) -> Result<Vec<u8>, ConnectError> {
        let (host, port) = split_addr(NAME, addr)?;
        let ip = match host.parse::<Ipv4Addr>() {
            Ok(ip) => Some(ip),
            Err(_) if self.disable_4a => Some(resolve_v4(addr).await?),
            Err(_) => None,
        };
        let mut req = vec![4, 1];
        req.extend_from_slice(&port.to_be_bytes());
        // SOCKS4a marks a name with the invalid address 0.0.0.x (x != 0)
        // and appends the name after the USERID.
        req.extend_from_slice(&ip.unwrap_or(Ipv4Addr::new(0, 0, 0, 1)).octets());
        req.extend_from_slice(self.user_id.as_bytes());
        req.push(0);
        if ip.is_none() {
            req.extend_from_slice(host.as_bytes());
            req.push(0);
        }
        Ok(req)
    }

    pub async fn handshake(&self, up: &mut Upstream, addr: &str) -> Result<(), ConnectError> {
        let req = self.request(addr).await?;
        write_all(NAME, up.writer(), &req).await?;
        let stream = up.settled().await?;
        let mut reply = [0u8; 8];
        read_exact(NAME, stream, &mut reply).await?;
        if reply[0] != 0 {
            return Err(ConnectError::BadReply {
                connector: NAME,
                msg: format!("reply version {}", reply[0]),
            });
        }
        if reply[1] != GRANTED {
            return Err(ConnectError::Refused {
                connector: NAME,
                reply: format!("code {:#04x}", reply[1]),
            });
        }
        Ok(())
    }
}

async fn resolve_v4(addr: &str) -> Result<Ipv4Addr, ConnectError> {
    let err = |msg: String| ConnectError::Address {
        connector: NAME,
        addr: addr.to_string(),
        msg,
    };
    let addrs = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| err(e.to_string()))?;
    addrs
        .filter_map(|a| match a.ip() {
            std::net::IpAddr::V4(v4) => Some(v4),
            std::net::IpAddr::V6(_) => None,
        })
        .next()
        .ok_or_else(|| err("no IPv4 address".into()))
}

impl super::Connector for Socks4Connector {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(disable_4a: bool) -> Socks4Connector {
        Socks4Connector {
            user_id: "me".into(),
            disable_4a,
        }
    }

    #[tokio::test]
    async fn ipv4_target_is_sent_as_address() {
        let req = c(false).request("10.1.2.3:80").await.unwrap();
        assert_eq!(req, [4, 1, 0, 80, 10, 1, 2, 3, b'm', b'e', 0]);
    }

    #[tokio::test]
    async fn name_uses_4a_unless_disabled() {
        let req = c(false).request("example.com:443").await.unwrap();
        let mut want = vec![4, 1, 1, 187, 0, 0, 0, 1, b'm', b'e', 0];
        want.extend_from_slice(b"example.com\0");
        assert_eq!(req, want);
        let req = c(true).request("localhost:443").await.unwrap();
        assert_eq!(&req[4..8], &[127, 0, 0, 1]);
    }

    #[tokio::test]
    async fn ipv6_target_cannot_be_sent_with_4a_disabled() {
        assert!(c(true).request("[::1]:80").await.is_err());
    }
}
