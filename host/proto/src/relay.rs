//! GOST's relay protocol wire format, spoken by the relay handler and the
//! relay connector: `VER CMD FLEN(2) FEATURES` requests, `VER STATUS
//! FLEN(2) FEATURES` responses, each feature `TYPE LEN(2) DATA`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const VERSION: u8 = 1;
pub const CMD_CONNECT: u8 = 0x01;
pub const CMD_BIND: u8 = 0x02;
pub const CMD_MASK: u8 = 0x0F;
pub const FLAG_UDP: u8 = 0x80;

pub const FEATURE_USER_AUTH: u8 = 0x01;
pub const FEATURE_ADDR: u8 = 0x02;
pub const FEATURE_TUNNEL: u8 = 0x03;
pub const FEATURE_NETWORK: u8 = 0x04;

pub const NETWORK_TCP: u16 = 0x00;
pub const NETWORK_UDP: u16 = 0x01;
/// A unix socket: the address feature's host is its path, the port 0.
pub const NETWORK_UNIX: u16 = 0x10;

pub const STATUS_OK: u8 = 0x00;
pub const STATUS_BAD_REQUEST: u8 = 0x01;
pub const STATUS_UNAUTHORIZED: u8 = 0x02;
pub const STATUS_FORBIDDEN: u8 = 0x03;
pub const STATUS_SERVICE_UNAVAILABLE: u8 = 0x05;
pub const STATUS_HOST_UNREACHABLE: u8 = 0x06;
pub const STATUS_NETWORK_UNREACHABLE: u8 = 0x07;

/// Appends a `TYPE LEN(2) DATA` feature.
pub fn put_feature(out: &mut Vec<u8>, kind: u8, data: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

/// The first `TYPE LEN(2) DATA` feature: its type, its data and the rest.
pub fn split_feature(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let len = u16::from_be_bytes([*b.get(1)?, *b.get(2)?]) as usize;
    let data = b.get(3..3 + len)?;
    Some((b[0], data, &b[3 + len..]))
}

/// An address feature's data, `ATYP ADDR PORT`, as `host:port`.
pub fn parse_addr(b: &[u8]) -> Result<String, String> {
    let short = || "relay: truncated address feature".to_string();
    let port_at = |at: usize| -> Result<u16, String> {
        b.get(at..at + 2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
            .ok_or_else(short)
    };
    match *b.first().ok_or_else(short)? {
        1 => {
            let o: [u8; 4] = b
                .get(1..5)
                .ok_or_else(short)?
                .try_into()
                .map_err(|_| short())?;
            Ok(std::net::SocketAddr::new(IpAddr::V4(Ipv4Addr::from(o)), port_at(5)?).to_string())
        }
        4 => {
            let o: [u8; 16] = b
                .get(1..17)
                .ok_or_else(short)?
                .try_into()
                .map_err(|_| short())?;
            Ok(std::net::SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), port_at(17)?).to_string())
        }
        3 => {
            let n = *b.get(1).ok_or_else(short)? as usize;
            let host = std::str::from_utf8(b.get(2..2 + n).ok_or_else(short)?)
                .map_err(|_| "relay: host name is not UTF-8".to_string())?;
            Ok(format!("{host}:{}", port_at(2 + n)?))
        }
        other => Err(format!("relay: unknown address type {other}")),
    }
}

/// An address feature's data for a name with no port, as GOST's
/// `AddrFeature.ParseFrom` makes it from a unix socket's path (or from a
/// unix peer's `@`): a domain name and port 0. `None` past 255 bytes.
pub fn name_addr(name: &str) -> Option<Vec<u8>> {
    let len = u8::try_from(name.len()).ok()?;
    let mut data = Vec::with_capacity(name.len() + 4);
    data.extend_from_slice(&[3, len]);
    data.extend_from_slice(name.as_bytes());
    data.extend_from_slice(&[0, 0]);
    Some(data)
}

/// A response with one address feature naming `name` (see [`name_addr`]):
/// how a unix BIND answers with its path and announces each peer.
pub fn response_with_name(status: u8, name: &str) -> Option<Vec<u8>> {
    let data = name_addr(name)?;
    let mut features = Vec::new();
    put_feature(&mut features, FEATURE_ADDR, &data);
    let mut out = vec![VERSION, status];
    out.extend_from_slice(&(features.len() as u16).to_be_bytes());
    out.extend_from_slice(&features);
    Some(out)
}

/// The host of an address as [`parse_addr`] writes it, for the networks
/// whose address is the host alone (unix): `host:port` without `:port`.
pub fn host_only(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(h, _)| h)
}

/// A response with address features, `VER STATUS FLEN(2) FEATURES`: how
/// a BIND answers with the bound address, and how each peer a TCP BIND
/// accepted is announced on its stream (GOST's `tcpHandler`).
pub fn response_with_addrs(status: u8, addrs: &[std::net::SocketAddr]) -> Vec<u8> {
    let mut features = Vec::new();
    for a in addrs {
        let mut data = Vec::with_capacity(19);
        match a.ip().to_canonical() {
            IpAddr::V4(ip) => {
                data.push(1);
                data.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                data.push(4);
                data.extend_from_slice(&ip.octets());
            }
        }
        data.extend_from_slice(&a.port().to_be_bytes());
        put_feature(&mut features, FEATURE_ADDR, &data);
    }
    let mut out = vec![VERSION, status];
    out.extend_from_slice(&(features.len() as u16).to_be_bytes());
    out.extend_from_slice(&features);
    out
}

/// A response's status and the addresses of its address features, in
/// order, from its 4-byte head and its features; an error for a bad
/// version or a malformed feature.
pub fn parse_response(head: [u8; 4], mut features: &[u8]) -> Result<(u8, Vec<String>), String> {
    if head[0] != VERSION {
        return Err(format!("relay: unsupported version {}", head[0]));
    }
    let mut addrs = Vec::new();
    while !features.is_empty() {
        let (kind, data, rest) =
            split_feature(features).ok_or_else(|| "relay: truncated feature".to_string())?;
        if kind == FEATURE_ADDR {
            addrs.push(parse_addr(data)?);
        }
        features = rest;
    }
    Ok((head[1], addrs))
}

/// GOST's relay status texts, for the error a refused request gives.
pub fn status_text(status: u8) -> &'static str {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes GOST's relay `tcpHandler` writes on each BIND stream for
    /// a peer at 127.0.0.1:40000 (relay.Response with one AddrFeature).
    #[test]
    fn a_bind_peer_announcement_is_gosts_bytes() {
        let peer: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let b = response_with_addrs(STATUS_OK, &[peer]);
        assert_eq!(
            b,
            [1, 0, 0, 10, FEATURE_ADDR, 0, 7, 1, 127, 0, 0, 1, 0x9c, 0x40]
        );
        let (status, addrs) = parse_response([b[0], b[1], b[2], b[3]], &b[4..]).unwrap();
        assert_eq!(
            (status, addrs),
            (STATUS_OK, vec!["127.0.0.1:40000".to_string()])
        );
    }

    #[test]
    fn ipv4_mapped_addresses_are_sent_as_ipv4_and_ipv6_as_ipv6() {
        let mapped: std::net::SocketAddr = "[::ffff:10.0.0.1]:1".parse().unwrap();
        assert_eq!(response_with_addrs(0, &[mapped])[7], 1);
        let v6: std::net::SocketAddr = "[::1]:2222".parse().unwrap();
        let b = response_with_addrs(0, &[v6]);
        assert_eq!(&b[2..4], &[0, 22]);
        let (_, addrs) = parse_response([b[0], b[1], b[2], b[3]], &b[4..]).unwrap();
        assert_eq!(addrs, vec!["[::1]:2222".to_string()]);
    }

    /// GOST's relay connector asking for `/tmp/a.sock` over unix: the
    /// path as a domain name with port 0; a unix peer is announced as `@`.
    #[test]
    fn unix_paths_travel_as_names_with_port_zero() {
        assert_eq!(name_addr("/a").unwrap(), [3, 2, b'/', b'a', 0, 0]);
        let b = response_with_name(STATUS_OK, "@").unwrap();
        assert_eq!(b, [1, 0, 0, 8, FEATURE_ADDR, 0, 5, 3, 1, b'@', 0, 0]);
        let (_, addrs) = parse_response([b[0], b[1], b[2], b[3]], &b[4..]).unwrap();
        assert_eq!(addrs, vec!["@:0".to_string()]);
        assert_eq!(host_only(&addrs[0]), "@");
        assert_eq!(host_only("/tmp/a:b.sock:0"), "/tmp/a:b.sock");
        assert!(name_addr(&"x".repeat(256)).is_none());
    }

    #[test]
    fn malformed_responses_are_errors() {
        assert!(parse_response([2, 0, 0, 0], &[]).is_err());
        assert!(parse_response([1, 0, 0, 3], &[FEATURE_ADDR, 0, 9]).is_err());
        assert!(parse_response([1, 0, 0, 5], &[FEATURE_ADDR, 0, 2, 9, 9]).is_err());
        // Features other than addresses are skipped.
        assert_eq!(
            parse_response([1, 3, 0, 5], &[FEATURE_NETWORK, 0, 2, 0, 1]).unwrap(),
            (3, vec![])
        );
    }
}
