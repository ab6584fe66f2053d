//! GOST's relay connector (`connector/relay`), CONNECT over TCP or UDP in
//! GOST's `nodelay=true` mode: the request (target address and
//! user/password features, plus the network feature for UDP) is written
//! at once and the response read before the stream is handed on. A UDP
//! CONNECT names one target; its datagrams then travel as `LEN(2) DATA`
//! frames (see [`super::udp_tun`]).
//!
//! GOST's default mode instead sends the request with the first bytes of
//! the client and reads the response lazily with the first bytes back,
//! because a GOST relay server without `nodelay` holds its response until
//! the target speaks. That needs a stream wrapper the native relay does
//! not have, so a relay node must set `nodelay=true` (gost-rs relay
//! servers always answer at once; GOST servers need `nodelay=true` too).

use std::time::Duration;

use tokio::net::TcpStream;

use super::socks5::encode_addr;
use super::udp_tun::UdpTunnel;
use super::{read_exact, write_all, ConnectError, Credentials};

const NAME: &str = "relay";
const VERSION: u8 = 1;
const CMD_CONNECT: u8 = 0x01;
const FLAG_UDP: u8 = 0x80;
const FEATURE_USER_AUTH: u8 = 0x01;
const FEATURE_ADDR: u8 = 0x02;
const FEATURE_NETWORK: u8 = 0x04;
const NETWORK_UDP: [u8; 2] = [0x00, 0x01];

#[derive(Debug)]
pub struct RelayConnector {
    pub auth: Option<Credentials>,
    pub timeout: Option<Duration>,
}

/// GOST's relay status texts, for the error a refused request gives.
fn status_text(status: u8) -> &'static str {
    match status {
        1 => "bad request",
        2 => "unauthorized",
        3 => "forbidden",
        4 => "timeout",
        5 => "service unavailable",
        6 => "host unreachable",
        7 => "network unreachable",
        _ => "internal server error",
    }
}

fn feature(out: &mut Vec<u8>, kind: u8, data: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

impl RelayConnector {
    /// `VER CMD FLEN(2) FEATURES`, each feature `TYPE LEN(2) DATA`; for
    /// UDP the command's 0x80 bit and the network feature, as GOST sends.
    fn request(&self, addr: &str, udp: bool) -> Result<Vec<u8>, ConnectError> {
        let mut features = Vec::new();
        if udp {
            feature(&mut features, FEATURE_NETWORK, &NETWORK_UDP);
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
            feature(&mut features, FEATURE_USER_AUTH, &data);
        }
        let dst = encode_addr(addr).map_err(|e| match e {
            ConnectError::Address { addr, msg, .. } => ConnectError::Address {
                connector: NAME,
                addr,
                msg,
            },
            other => other,
        })?;
        feature(&mut features, FEATURE_ADDR, &dst);
        let cmd = if udp {
            CMD_CONNECT | FLAG_UDP
        } else {
            CMD_CONNECT
        };
        let mut req = vec![VERSION, cmd];
        req.extend_from_slice(&(features.len() as u16).to_be_bytes());
        req.extend_from_slice(&features);
        Ok(req)
    }

    pub async fn connect(&self, stream: &mut TcpStream, addr: &str) -> Result<(), ConnectError> {
        write_all(NAME, stream, &self.request(addr, false)?).await?;
        read_response(stream).await
    }

    /// A UDP tunnel to `target` alone: GOST's relay carries no address in
    /// its datagram frames, so a tunnel to any target (SOCKS5 UDP
    /// ASSOCIATE through a relay node) would need GOST's UDP BIND, which
    /// gost-rs does not implement.
    pub async fn udp_tunnel(
        &self,
        mut stream: TcpStream,
        target: Option<&str>,
    ) -> Result<UdpTunnel, ConnectError> {
        let Some(target) = target else {
            return Err(ConnectError::NoUdpAssociation { connector: NAME });
        };
        write_all(NAME, &mut stream, &self.request(target, true)?).await?;
        read_response(&mut stream).await?;
        Ok(UdpTunnel::relay(stream))
    }
}

/// Reads `VER STATUS FLEN(2) FEATURES` with exact reads, so no tunnelled
/// byte is consumed, and turns a non-zero status into an error.
async fn read_response(stream: &mut TcpStream) -> Result<(), ConnectError> {
    let mut head = [0u8; 4];
    read_exact(NAME, stream, &mut head).await?;
    if head[0] != VERSION {
        return Err(ConnectError::BadReply {
            connector: NAME,
            msg: format!("version {}", head[0]),
        });
    }
    // The response's features are read so none is left on the stream.
    let mut features = vec![0u8; u16::from_be_bytes([head[2], head[3]]) as usize];
    read_exact(NAME, stream, &mut features).await?;
    if head[1] != 0 {
        return Err(ConnectError::Refused {
            connector: NAME,
            reply: format!("status {} ({})", head[1], status_text(head[1])),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_carries_auth_then_address() {
        let c = RelayConnector {
            auth: Some(Credentials {
                username: "u".into(),
                password: "pw".into(),
            }),
            timeout: None,
        };
        assert_eq!(
            c.request("1.2.3.4:80", false).unwrap(),
            [
                1, 1, 0, 18, // header, 18 bytes of features
                1, 0, 5, 1, b'u', 2, b'p', b'w', // user/password
                2, 0, 7, 1, 1, 2, 3, 4, 0, 80, // address
            ]
        );
        let c = RelayConnector {
            auth: None,
            timeout: None,
        };
        assert_eq!(
            c.request("ab:1", false).unwrap(),
            [1, 1, 0, 9, 2, 0, 6, 3, 2, b'a', b'b', 0, 1]
        );
    }
}
