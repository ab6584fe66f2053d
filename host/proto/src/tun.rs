//! GOST's TUN tunnel keep-alive (handler/tun): a TUN client's UDP
//! datagrams are bare IP packets, except its keep-alive, which both
//! registers it with the server and authenticates it:
//!
//! ```text
//! client -> server: "GOST" | passphrase (16 bytes, NUL padded, cut at 16) | IP (16 bytes) ...
//! server -> client: "GOST" | the client's UDP source address (16 bytes)
//! ```
//!
//! IPs are 16 bytes, an IPv4 address in its IPv4-mapped IPv6 form.
//! Neither begins like an IP packet (version 4 or 6 in the first nibble:
//! `G` is 0x47, version 4, but a packet this short cannot be one).

use std::net::{IpAddr, Ipv6Addr};

pub const MAGIC: &[u8; 4] = b"GOST";
/// Magic and passphrase (client) or magic and address (server reply).
pub const HEADER_LEN: usize = 20;
/// The passphrase bytes carried; a longer one is cut, as GOST does.
pub const PASSPHRASE_LEN: usize = 16;

fn ip16(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The client's keep-alive for its device addresses `ips`.
pub fn encode_keepalive(passphrase: &str, ips: &[IpAddr]) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_LEN + 16 * ips.len());
    b.extend_from_slice(MAGIC);
    let key = passphrase.as_bytes();
    let key = &key[..key.len().min(PASSPHRASE_LEN)];
    b.extend_from_slice(key);
    b.resize(HEADER_LEN, 0);
    for ip in ips {
        b.extend_from_slice(&ip16(*ip));
    }
    b
}

/// A client's keep-alive as the server reads it.
#[derive(Debug, PartialEq, Eq)]
pub struct Keepalive<'a> {
    /// The passphrase, trailing NULs removed.
    pub passphrase: &'a [u8],
    /// The client's device addresses (IPv4 ones as IPv4).
    pub ips: Vec<IpAddr>,
}

/// `Some` for a datagram that is a client's keep-alive with at least one
/// address; a keep-alive whose address list is not a whole number of
/// addresses is `Some` with none (GOST ignores it).
pub fn parse_keepalive(b: &[u8]) -> Option<Keepalive<'_>> {
    if b.len() <= HEADER_LEN || &b[..4] != MAGIC {
        return None;
    }
    let key = &b[4..HEADER_LEN];
    let end = key.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
    let data = &b[HEADER_LEN..];
    let ips = if data.len() % 16 == 0 {
        data.chunks_exact(16)
            .map(|c| {
                let a: [u8; 16] = c.try_into().expect("16 bytes");
                IpAddr::V6(Ipv6Addr::from(a)).to_canonical()
            })
            .collect()
    } else {
        Vec::new()
    };
    Some(Keepalive {
        passphrase: &key[..end],
        ips,
    })
}

/// The server's answer to a keep-alive from `from`.
pub fn encode_reply(from: IpAddr) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    b[..4].copy_from_slice(MAGIC);
    b[4..].copy_from_slice(&ip16(from));
    b
}

/// Whether a datagram the client got is the server's keep-alive answer.
pub fn is_reply(b: &[u8]) -> bool {
    b.len() == HEADER_LEN && &b[..4] == MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes as GOST's client.go builds them: magic, the passphrase
    /// copied into 16 bytes, each IP's 16-byte form.
    #[test]
    fn keepalive_bytes_are_gosts() {
        let ip: IpAddr = "192.168.123.2".parse().unwrap();
        let b = encode_keepalive("userpass1", &[ip]);
        let mut want = b"GOSTuserpass1\0\0\0\0\0\0\0".to_vec();
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168, 123, 2]);
        assert_eq!(b, want);
        let k = parse_keepalive(&b).unwrap();
        assert_eq!(k.passphrase, b"userpass1");
        assert_eq!(k.ips, vec![ip]);
    }

    #[test]
    fn a_long_passphrase_is_cut_at_16() {
        let b = encode_keepalive("0123456789abcdefXYZ", &["fd::2".parse().unwrap()]);
        assert_eq!(b.len(), 36);
        assert_eq!(parse_keepalive(&b).unwrap().passphrase, b"0123456789abcdef");
    }

    #[test]
    fn replies_and_packets_are_not_keepalives() {
        let r = encode_reply("10.0.0.1".parse().unwrap());
        assert!(is_reply(&r));
        assert_eq!(parse_keepalive(&r), None);
        // An IPv4 header.
        assert_eq!(parse_keepalive(&[0x45; 40]), None);
        assert!(!is_reply(&[0x45; 20]));
        // A ragged address list carries no address.
        let mut b = encode_keepalive("", &["10.0.0.2".parse().unwrap()]);
        b.push(1);
        assert!(parse_keepalive(&b).unwrap().ips.is_empty());
    }
}
