//! GOST's relay connector (`connector/relay`), CONNECT over TCP or UDP.
//! The request (target address and user/password features, plus the
//! network feature for UDP) is written at once. With `nodelay=true` the
//! response is read before the stream is handed on; by default (GOST's
//! lazy mode) it is left owing on the [`Upstream`] and read just before
//! the first byte back, because a GOST relay server without `nodelay`
//! holds its response until the target speaks. A UDP CONNECT names one
//! target; its datagrams then travel as `LEN(2) DATA` frames (see
//! [`super::udp_tun`]).

use std::time::Duration;

use super::socks5::encode_addr;
use super::udp_tun::UdpTunnel;
use super::upstream::Upstream;
use super::{write_all, ConnectError, Credentials};

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
    /// Read the response before handing the stream on (GOST's `nodelay`).
    pub nodelay: bool,
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

    pub async fn connect(&self, up: &mut Upstream, addr: &str) -> Result<(), ConnectError> {
        write_all(NAME, up.writer(), &self.request(addr, false)?).await?;
        up.owe_response();
        if self.nodelay {
            up.settle().await?;
        }
        Ok(())
    }

    /// A UDP tunnel to `target` alone: GOST's relay carries no address in
    /// its datagram frames, so a tunnel to any target (SOCKS5 UDP
    /// ASSOCIATE through a relay node) would need GOST's UDP BIND, which
    /// gost-rs does not implement.
    pub async fn udp_tunnel(
        &self,
        mut up: Upstream,
        target: Option<&str>,
    ) -> Result<UdpTunnel, ConnectError> {
        let Some(target) = target else {
            return Err(ConnectError::NoUdpAssociation { connector: NAME });
        };
        write_all(NAME, up.writer(), &self.request(target, true)?).await?;
        up.owe_response();
        if self.nodelay {
            up.settle().await?;
        }
        Ok(UdpTunnel::relay(up))
    }
}

/// Relay responses still owed on a stream, each `VER STATUS FLEN(2)
/// FEATURES`: one per lazy relay node on the route, in route order.
#[derive(Debug)]
pub struct LazyResponse {
    /// Responses not yet read, this one included.
    left: u8,
    head: [u8; 4],
    got: u8,
    /// Feature bytes of this response still to skip.
    skip: u16,
}

impl Default for LazyResponse {
    fn default() -> Self {
        LazyResponse {
            left: 1,
            head: [0; 4],
            got: 0,
            skip: 0,
        }
    }
}

impl LazyResponse {
    /// One more response owed after the ones already counted.
    pub(super) fn and_one_more(mut self) -> Self {
        self.left = self.left.saturating_add(1);
        self
    }

    /// Most bytes the responses may still take: reading no more than this
    /// never consumes a tunnelled byte.
    pub(super) fn want(&self) -> usize {
        if self.got < 4 {
            4 - self.got as usize
        } else {
            self.skip as usize
        }
    }

    /// Takes response bytes from the front of `bytes`: how many it used,
    /// and whether every owed response is now read. A non-zero status is
    /// an error as soon as its header is in.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(usize, bool), ConnectError> {
        let mut used = 0;
        while self.left > 0 && used < bytes.len() {
            let rest = &bytes[used..];
            if self.got < 4 {
                let n = (4 - self.got as usize).min(rest.len());
                let at = self.got as usize;
                self.head[at..at + n].copy_from_slice(&rest[..n]);
                self.got += n as u8;
                used += n;
                if self.got < 4 {
                    break;
                }
                if self.head[0] != VERSION {
                    return Err(ConnectError::BadReply {
                        connector: NAME,
                        msg: format!("version {}", self.head[0]),
                    });
                }
                let status = self.head[1];
                if status != 0 {
                    return Err(ConnectError::Refused {
                        connector: NAME,
                        reply: format!("status {status} ({})", status_text(status)),
                    });
                }
                self.skip = u16::from_be_bytes([self.head[2], self.head[3]]);
            } else {
                let n = (self.skip as usize).min(rest.len());
                self.skip -= n as u16;
                used += n;
            }
            if self.got == 4 && self.skip == 0 {
                self.left -= 1;
                self.got = 0;
            }
        }
        Ok((used, self.left == 0))
    }
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
            nodelay: false,
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
            nodelay: false,
        };
        assert_eq!(
            c.request("ab:1", false).unwrap(),
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
}
