//! SOCKS5 wire formats that the socks handlers and the socks5 connector
//! both speak: addresses (`ATYP ADDR PORT`), the UDP datagram header and
//! GOST's UDP-over-TCP frames. Pure parse/encode, no I/O.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

pub const ATYP_IPV4: u8 = 1;
pub const ATYP_DOMAIN: u8 = 3;
pub const ATYP_IPV6: u8 = 4;
/// SOCKS5: the version byte and the reply codes (RFC 1928).
pub const VERSION: u8 = 5;
pub const REP_SUCCEEDED: u8 = 0x00;
pub const REP_GENERAL_FAILURE: u8 = 0x01;
pub const REP_NOT_ALLOWED: u8 = 0x02;
pub const REP_NET_UNREACHABLE: u8 = 0x03;
pub const REP_HOST_UNREACHABLE: u8 = 0x04;
pub const REP_CONN_REFUSED: u8 = 0x05;
pub const REP_CMD_NOT_SUPPORTED: u8 = 0x07;
pub const REP_ATYP_NOT_SUPPORTED: u8 = 0x08;
/// GOST marks tunnelled UDP-over-TCP frames with this FRAG value.
pub const FRAG_TUN: u8 = 0xFF;
/// GOST's extension commands (go-gost/x `internal/util/socks`): a BIND
/// whose connection then carries an smux session, each accepted peer a
/// stream of it opened by the server and starting with a reply naming the
/// peer; and UDP-over-TCP, a relay for port 0, a socket bound there for
/// any other port.
pub const CMD_MUX_BIND: u8 = 0xF2;
pub const CMD_UDP_TUN: u8 = 0xF3;

/// A target as a SOCKS request names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetAddr {
    Ip(SocketAddr),
    /// SOCKS4a and SOCKS5 ATYP 3: resolved by the router at dial time.
    Domain(String, u16),
}

impl fmt::Display for TargetAddr {
    /// `host:port`, with IPv6 in brackets: the form the router dials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetAddr::Ip(a) => write!(f, "{a}"),
            TargetAddr::Domain(h, p) => write!(f, "{h}:{p}"),
        }
    }
}

/// Appends `ATYP ADDR PORT` for a socket address.
pub fn put_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr.ip().to_canonical() {
        IpAddr::V4(ip) => {
            out.push(ATYP_IPV4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(ATYP_IPV6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// Appends `ATYP ADDR PORT` for a host given as text: an IP when it is
/// one, else a domain name (cut to the 255 bytes SOCKS allows).
pub fn put_host(out: &mut Vec<u8>, host: &str, port: u16) {
    match host.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(ip) => put_addr(out, SocketAddr::new(ip, port)),
        Err(_) => {
            let name = &host.as_bytes()[..host.len().min(255)];
            out.push(ATYP_DOMAIN);
            out.push(name.len() as u8);
            out.extend_from_slice(name);
            out.extend_from_slice(&port.to_be_bytes());
        }
    }
}

/// `RSV(2) FRAG ATYP DST.ADDR DST.PORT`: the target and the header length,
/// or `None` for a malformed or fragmented datagram.
pub fn parse_header(d: &[u8]) -> Option<(TargetAddr, usize)> {
    if d.len() < 4 || d[2] != 0 {
        return None;
    }
    parse_addr(d, 3)
}

/// `ATYP ADDR PORT` starting at `d[at]`: the address and where it ends;
/// `None` when incomplete or malformed.
pub fn parse_addr(d: &[u8], at: usize) -> Option<(TargetAddr, usize)> {
    let a = at + 1;
    match *d.get(at)? {
        ATYP_IPV4 => {
            let b: [u8; 4] = d.get(a..a + 4)?.try_into().ok()?;
            let port = u16::from_be_bytes(d.get(a + 4..a + 6)?.try_into().ok()?);
            Some((TargetAddr::Ip(SocketAddr::from((b, port))), a + 6))
        }
        ATYP_IPV6 => {
            let b: [u8; 16] = d.get(a..a + 16)?.try_into().ok()?;
            let port = u16::from_be_bytes(d.get(a + 16..a + 18)?.try_into().ok()?);
            Some((TargetAddr::Ip(SocketAddr::from((b, port))), a + 18))
        }
        ATYP_DOMAIN => {
            let n = *d.get(a)? as usize;
            let name = std::str::from_utf8(d.get(a + 1..a + 1 + n)?).ok()?;
            if name.is_empty() {
                return None;
            }
            let port = u16::from_be_bytes(d.get(a + 1 + n..a + 3 + n)?.try_into().ok()?);
            Some((TargetAddr::Domain(name.to_string(), port), a + 3 + n))
        }
        _ => None,
    }
}

/// The first complete frame in `buf`: its target and the payload's range.
/// `Ok(None)` while incomplete; an error for a frame that cannot be read.
pub fn next_frame(buf: &[u8]) -> Result<Option<(TargetAddr, usize, usize)>, String> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u16::from_be_bytes([buf[0], buf[1]]) as usize;
    let header = match buf[3] {
        ATYP_IPV4 => 3 + 1 + 4 + 2,
        ATYP_IPV6 => 3 + 1 + 16 + 2,
        ATYP_DOMAIN => match buf.get(4) {
            Some(n) => 3 + 2 + *n as usize + 2,
            None => return Ok(None),
        },
        other => return Err(format!("socks5 udp-over-tcp: unknown address type {other}")),
    };
    if buf.len() < header + len {
        return Ok(None);
    }
    let (dst, end) =
        parse_addr(buf, 3).ok_or("socks5 udp-over-tcp: malformed address in a frame")?;
    debug_assert_eq!(end, header);
    Ok(Some((dst, header, header + len)))
}

/// `VER REP RSV ATYP BND.ADDR BND.PORT`; 0.0.0.0:0 when there is no
/// bound address to report.
pub fn reply(code: u8, bound: Option<SocketAddr>) -> Vec<u8> {
    let mut out = Vec::with_capacity(22);
    out.extend_from_slice(&[VERSION, code, 0]);
    put_addr(
        &mut out,
        bound.unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))),
    );
    out
}
