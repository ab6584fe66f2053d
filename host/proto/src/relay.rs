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
