//! The tunnel side of GOST's relay protocol (go-gost/relay, spoken by
//! GOST's `tunnel` handler and connector): the 20-byte tunnel and
//! connector ids of the tunnel feature, whole requests with their
//! features, and responses carrying address and tunnel features.
//!
//! A tunnel id is `ID(16) FLAG(1) RSV(2) WEIGHT(1)`: a UUID, 0x80 in the
//! flag for a private tunnel, and the connector's weight. A connector id
//! has the same layout, 0x01 in the flag for a UDP connector.

use crate::relay::{parse_addr, put_feature, split_feature, VERSION};
use crate::relay::{FEATURE_ADDR, FEATURE_NETWORK, FEATURE_TUNNEL, FEATURE_USER_AUTH};

pub const ID_LEN: usize = 20;
const UUID_LEN: usize = 16;
const FLAG_PRIVATE: u8 = 0x80;
const FLAG_UDP: u8 = 0x01;

/// GOST's `relay.TunnelID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TunnelId(pub [u8; ID_LEN]);

impl TunnelId {
    /// GOST's `ParseTunnelID`: a UUID, `$` in front for a private tunnel;
    /// `None` for anything else (GOST takes it as the zero id, refused
    /// everywhere).
    pub fn parse(s: &str) -> Option<TunnelId> {
        let (private, s) = match s.strip_prefix('$') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let uuid = parse_uuid(s)?;
        let mut id = [0u8; ID_LEN];
        id[..UUID_LEN].copy_from_slice(&uuid);
        if private {
            id[UUID_LEN] |= FLAG_PRIVATE;
        }
        let id = TunnelId(id);
        (!id.is_zero()).then_some(id)
    }

    /// The id's 16 bytes, which alone name the tunnel: flags and weight
    /// do not (GOST's `Equal`).
    pub fn key(&self) -> [u8; UUID_LEN] {
        let mut k = [0u8; UUID_LEN];
        k.copy_from_slice(&self.0[..UUID_LEN]);
        k
    }

    pub fn is_zero(&self) -> bool {
        self.0[..UUID_LEN].iter().all(|b| *b == 0)
    }

    pub fn is_private(&self) -> bool {
        self.0[UUID_LEN] & FLAG_PRIVATE != 0
    }

    pub fn weight(&self) -> u8 {
        self.0[ID_LEN - 1]
    }

    pub fn with_weight(mut self, weight: u8) -> Self {
        self.0[ID_LEN - 1] = weight;
        self
    }
}

impl std::fmt::Display for TunnelId {
    /// The UUID alone, as GOST prints it (no `$`, no weight).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_uuid(f, &self.0[..UUID_LEN])
    }
}

/// GOST's `relay.ConnectorID`: one registered client of a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ConnectorId(pub [u8; ID_LEN]);

impl ConnectorId {
    /// A connector id from 16 random bytes, with the tunnel id's weight,
    /// as GOST's `handleBind` makes it.
    pub fn new(uuid: [u8; UUID_LEN], udp: bool, weight: u8) -> Self {
        let mut id = [0u8; ID_LEN];
        id[..UUID_LEN].copy_from_slice(&uuid);
        if udp {
            id[UUID_LEN] |= FLAG_UDP;
        }
        id[ID_LEN - 1] = weight;
        ConnectorId(id)
    }

    pub fn is_udp(&self) -> bool {
        self.0[UUID_LEN] & FLAG_UDP != 0
    }

    pub fn weight(&self) -> u8 {
        self.0[ID_LEN - 1]
    }
}

impl std::fmt::Display for ConnectorId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_uuid(f, &self.0[..UUID_LEN])
    }
}

fn write_uuid(f: &mut std::fmt::Formatter<'_>, b: &[u8]) -> std::fmt::Result {
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            f.write_str("-")?;
        }
        write!(f, "{byte:02x}")?;
    }
    Ok(())
}

/// The 8-4-4-4-12 hex form, any case (as `uuid.Parse` takes it; its
/// other forms, braces and `urn:uuid:`, are not taken).
pub fn parse_uuid(s: &str) -> Option<[u8; UUID_LEN]> {
    let b = s.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut out = [0u8; UUID_LEN];
    let mut j = 0;
    for (i, c) in b.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if *c != b'-' {
                return None;
            }
            continue;
        }
        let v = (*c as char).to_digit(16)? as u8;
        if j % 2 == 0 {
            out[j / 2] = v << 4;
        } else {
            out[j / 2] |= v;
        }
        j += 1;
    }
    Some(out)
}

/// An address feature's data as GOST's `AddrFeature.ParseFrom` makes it
/// from `host:port`: an IP literal as IPv4 or IPv6, anything else as a
/// name; a missing or bad port is 0, and text without a port is all host.
pub fn addr_data(addr: &str) -> Result<Vec<u8>, String> {
    let (host, port) = match split_host_port(addr) {
        Some((h, p)) => (h, p.parse::<u16>().unwrap_or(0)),
        None => (addr, 0),
    };
    let mut out = Vec::with_capacity(host.len() + 4);
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            out.push(1);
            out.extend_from_slice(&ip.octets());
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            if host.len() > 255 {
                return Err("relay: address longer than 255 bytes".into());
            }
            out.push(3);
            out.push(host.len() as u8);
            out.extend_from_slice(host.as_bytes());
        }
    }
    out.extend_from_slice(&port.to_be_bytes());
    Ok(out)
}

/// `host:port` or `[v6]:port` into its two halves, brackets removed.
fn split_host_port(addr: &str) -> Option<(&str, &str)> {
    if let Some(rest) = addr.strip_prefix('[') {
        let (host, rest) = rest.split_once(']')?;
        return Some((host, rest.strip_prefix(':')?));
    }
    let (host, port) = addr.rsplit_once(':')?;
    if host.contains(':') {
        return None;
    }
    Some((host, port))
}

/// One feature of a request or response, as the tunnel side reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feature {
    UserAuth {
        user: String,
        pass: String,
    },
    /// `host:port`, IPv6 in brackets.
    Addr(String),
    /// The 20 bytes of a tunnel (request) or connector (response) id.
    Tunnel([u8; ID_LEN]),
    Network(u16),
}

impl Feature {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), String> {
        match self {
            Feature::UserAuth { user, pass } => {
                let (u, p) = (user.as_bytes(), pass.as_bytes());
                if u.len() > 255 || p.len() > 255 {
                    return Err("relay: username or password longer than 255 bytes".into());
                }
                let mut data = vec![u.len() as u8];
                data.extend_from_slice(u);
                data.push(p.len() as u8);
                data.extend_from_slice(p);
                put_feature(out, FEATURE_USER_AUTH, &data);
            }
            Feature::Addr(a) => put_feature(out, FEATURE_ADDR, &addr_data(a)?),
            Feature::Tunnel(id) => put_feature(out, FEATURE_TUNNEL, id),
            Feature::Network(n) => put_feature(out, FEATURE_NETWORK, &n.to_be_bytes()),
        }
        Ok(())
    }
}

/// `VER CODE FLEN(2) FEATURES`: a request (code = command) or a
/// response (code = status).
pub fn encode(code: u8, features: &[Feature]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    for f in features {
        f.encode(&mut body)?;
    }
    if body.len() > u16::MAX as usize {
        return Err("relay: features longer than 65535 bytes".into());
    }
    let mut out = vec![VERSION, code];
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// The features after a 4-byte head, in order. Types other than the
/// four above are skipped (newer GOST sends a metadata feature), a
/// malformed one is an error.
pub fn parse_features(mut b: &[u8]) -> Result<Vec<Feature>, String> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (kind, data, rest) =
            split_feature(b).ok_or_else(|| "relay: truncated feature".to_string())?;
        match kind {
            FEATURE_USER_AUTH => {
                let short = || "relay: truncated user/password feature".to_string();
                let ulen = *data.first().ok_or_else(short)? as usize;
                let user = data.get(1..1 + ulen).ok_or_else(short)?;
                let plen = *data.get(1 + ulen).ok_or_else(short)? as usize;
                let pass = data.get(2 + ulen..2 + ulen + plen).ok_or_else(short)?;
                out.push(Feature::UserAuth {
                    user: String::from_utf8_lossy(user).into_owned(),
                    pass: String::from_utf8_lossy(pass).into_owned(),
                });
            }
            FEATURE_ADDR => out.push(Feature::Addr(parse_addr(data)?)),
            FEATURE_TUNNEL => {
                if data.len() < UUID_LEN {
                    return Err("relay: tunnel feature shorter than 16 bytes".into());
                }
                let mut id = [0u8; ID_LEN];
                let n = data.len().min(ID_LEN);
                id[..n].copy_from_slice(&data[..n]);
                out.push(Feature::Tunnel(id));
            }
            FEATURE_NETWORK => {
                let n = data
                    .get(..2)
                    .ok_or_else(|| "relay: truncated network feature".to_string())?;
                out.push(Feature::Network(u16::from_be_bytes([n[0], n[1]])));
            }
            _ => {}
        }
        b = rest;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::{CMD_BIND, CMD_CONNECT, STATUS_OK};

    const ID: &str = "3f8e5b56-6a8b-4a4f-9a35-2a2bbc3f0f01";

    #[test]
    fn tunnel_ids_parse_print_and_carry_flags() {
        let t = TunnelId::parse(ID).unwrap();
        assert_eq!(t.to_string(), ID);
        assert!(!t.is_private());
        assert_eq!(&t.0[..4], &[0x3f, 0x8e, 0x5b, 0x56]);
        assert_eq!(&t.0[16..], &[0, 0, 0, 0]);
        let p = TunnelId::parse(&format!("${ID}")).unwrap();
        assert!(p.is_private());
        assert_eq!(p.0[16], 0x80);
        assert_eq!(p.key(), t.key());
        assert_eq!(t.with_weight(3).0[19], 3);
        assert_eq!(
            TunnelId::parse(&ID.to_uppercase()).unwrap().key(),
            t.key(),
            "uuid.Parse takes upper case"
        );
        for bad in ["", "x", "$", &ID[1..], &ID.replace('-', "_")] {
            assert_eq!(TunnelId::parse(bad), None, "{bad}");
        }
        assert_eq!(
            TunnelId::parse("00000000-0000-0000-0000-000000000000"),
            None
        );
    }

    #[test]
    fn connector_ids_have_the_udp_flag_and_weight() {
        let c = ConnectorId::new([7; 16], true, 9);
        assert!(c.is_udp());
        assert_eq!(c.weight(), 9);
        assert_eq!(&c.0[16..], &[1, 0, 0, 9]);
        assert!(!ConnectorId::new([7; 16], false, 0).is_udp());
    }

    /// GOST's tunnel connector BIND for `rtcp://:8080` with tunnel id
    /// ID, weight 2, from 127.0.0.1:5000: src address, dst address
    /// (`0.0.0.0:8080`), tunnel feature.
    #[test]
    fn a_bind_request_is_gosts_bytes() {
        let tid = TunnelId::parse(ID).unwrap().with_weight(2);
        let req = encode(
            CMD_BIND,
            &[
                Feature::Addr("127.0.0.1:5000".into()),
                Feature::Addr("0.0.0.0:8080".into()),
                Feature::Tunnel(tid.0),
            ],
        )
        .unwrap();
        let mut want = vec![1, 2, 0, 43];
        want.extend_from_slice(&[2, 0, 7, 1, 127, 0, 0, 1, 0x13, 0x88]);
        want.extend_from_slice(&[2, 0, 7, 1, 0, 0, 0, 0, 0x1f, 0x90]);
        want.extend_from_slice(&[3, 0, 20]);
        want.extend_from_slice(&tid.0);
        assert_eq!(req, want);
        let parsed = parse_features(&req[4..]).unwrap();
        assert_eq!(parsed[2], Feature::Tunnel(tid.0));
    }

    /// What GOST's handler writes at the head of each stream it opens to
    /// a client: OK, the visitor's address, then the host it asked for
    /// (a name here, as an HTTP entry point passes `Host`).
    #[test]
    fn a_stream_head_names_source_and_host() {
        let b = encode(
            STATUS_OK,
            &[
                Feature::Addr("10.0.0.2:40000".into()),
                Feature::Addr("example.com:80".into()),
            ],
        )
        .unwrap();
        assert_eq!(
            b,
            [
                1, 0, 0, 28, 2, 0, 7, 1, 10, 0, 0, 2, 0x9c, 0x40, 2, 0, 15, 3, 11, b'e', b'x',
                b'a', b'm', b'p', b'l', b'e', b'.', b'c', b'o', b'm', 0, 80
            ]
        );
        assert_eq!(
            parse_features(&b[4..]).unwrap(),
            [
                Feature::Addr("10.0.0.2:40000".into()),
                Feature::Addr("example.com:80".into())
            ]
        );
    }

    #[test]
    fn addresses_without_a_port_or_host_are_encoded_as_gost_does() {
        assert_eq!(addr_data("example.com").unwrap(), {
            let mut v = vec![3, 11];
            v.extend_from_slice(b"example.com");
            v.extend_from_slice(&[0, 0]);
            v
        });
        assert_eq!(addr_data("").unwrap(), [3, 0, 0, 0]);
        assert_eq!(addr_data("[::1]:1").unwrap()[0], 4);
        assert!(addr_data(&"x".repeat(256)).is_err());
    }

    #[test]
    fn connect_requests_carry_auth_and_network() {
        let req = encode(
            CMD_CONNECT | crate::relay::FLAG_UDP,
            &[
                Feature::Network(1),
                Feature::UserAuth {
                    user: "u".into(),
                    pass: "p".into(),
                },
            ],
        )
        .unwrap();
        assert_eq!(
            req,
            [1, 0x81, 0, 12, 4, 0, 2, 0, 1, 1, 0, 4, 1, b'u', 1, b'p']
        );
        assert_eq!(
            parse_features(&req[4..]).unwrap(),
            [
                Feature::Network(1),
                Feature::UserAuth {
                    user: "u".into(),
                    pass: "p".into()
                }
            ]
        );
    }

    #[test]
    fn malformed_features_are_errors_and_unknown_ones_are_skipped() {
        assert!(parse_features(&[3, 0, 4, 1, 2, 3, 4]).is_err());
        assert!(parse_features(&[1, 0, 2, 5, b'u']).is_err());
        assert!(parse_features(&[4, 0, 1, 0]).is_err());
        assert!(parse_features(&[2, 0, 9]).is_err());
        assert_eq!(parse_features(&[5, 0, 1, 9]).unwrap(), []);
    }
}
