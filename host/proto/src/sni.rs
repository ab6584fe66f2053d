//! What GOST's `sni` connector does to a client's first bytes when its
//! `host` is set: the ClientHello's server name, or the HTTP request's
//! `Host`, becomes `host`, and the original name travels encoded beside
//! it (TLS extension 0xFFFE, or a `Gost-Target` header), byte for byte as
//! go-gost/x's connector/sni writes them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::tls::{self, ClientHello};

/// The extension type carrying the encoded original server name.
pub const ORIGINAL_NAME_EXTENSION: u16 = 0xFFFE;

/// GOST's encoding of a name it hides: base64url (no padding) of the
/// name's CRC-32 (IEEE, big endian) followed by the name in base64url.
pub fn encode_server_name(name: &str) -> String {
    let mut b = crc32fast::hash(name.as_bytes()).to_be_bytes().to_vec();
    b.extend(URL_SAFE_NO_PAD.encode(name).as_bytes());
    URL_SAFE_NO_PAD.encode(b)
}

/// The ClientHello record `record` (one whole record, header included)
/// with its server name set to `host` and the original name appended as
/// extension 0xFFFE. A hello without a `server_name` extension comes back
/// as it was; `None` when `record` is not a ClientHello record.
pub fn rewrite_client_hello(record: &[u8], host: &str) -> Option<Vec<u8>> {
    if *record.first()? != tls::HANDSHAKE || tls::record_len(record)? != record.len() {
        return None;
    }
    let hs = &record[5..];
    // One handshake message filling the record, as GOST's dissector reads.
    let hs_len = u32::from_be_bytes([0, *hs.get(1)?, *hs.get(2)?, *hs.get(3)?]) as usize;
    if hs_len + 4 != hs.len() {
        return None;
    }
    let hello = ClientHello::parse(hs)?;
    let Some(original) = hello.server_name() else {
        return Some(record.to_vec());
    };
    let mut exts = Vec::with_capacity(hello.extensions.len() + host.len() + 64);
    let mut push = |ty: u16, body: &[u8]| -> Option<()> {
        exts.extend(ty.to_be_bytes());
        exts.extend(u16::try_from(body.len()).ok()?.to_be_bytes());
        exts.extend(body);
        Some(())
    };
    for (ty, body) in hello.extensions() {
        if ty == tls::SERVER_NAME {
            push(ty, &tls::server_name_extension(host)?)?;
        } else {
            push(ty, body)?;
        }
    }
    push(
        ORIGINAL_NAME_EXTENSION,
        encode_server_name(&original).as_bytes(),
    )?;
    tls::encode_client_hello([record[1], record[2]], hello.fixed, &exts)
}

/// An HTTP request head (up to and including its blank line, or the
/// first bytes of a request) with its `Host` line replaced by `host` and a
/// `Gost-Target` line carrying the original host encoded. Lines after
/// the first `Host` line, and the body, are left alone.
pub fn rewrite_http_host(head: &[u8], host: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len() + host.len() + 64);
    let mut rest = head;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&c| c == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let (line, tail) = rest.split_at(end);
        rest = tail;
        if line == b"\r\n" {
            out.extend(line);
            break;
        }
        let is_host = line.len() >= 5 && line[..5].eq_ignore_ascii_case(b"host:");
        if is_host && line.ends_with(b"\n") {
            let value = String::from_utf8_lossy(&line[5..]);
            let original = value.trim();
            out.extend(format!("Host: {host}\r\n").as_bytes());
            out.extend(format!("Gost-Target: {}\r\n", encode_server_name(original)).as_bytes());
            break;
        }
        out.extend(line);
    }
    out.extend(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::tests::client_hello;

    #[test]
    fn encodes_names_as_gost() {
        // crc32("example.com") = 0x8a0e9d64 (IEEE); then "ZXhhbXBsZS5jb20".
        let got = URL_SAFE_NO_PAD
            .decode(encode_server_name("example.com"))
            .unwrap();
        assert_eq!(got[..4], crc32fast::hash(b"example.com").to_be_bytes());
        assert_eq!(&got[4..], b"ZXhhbXBsZS5jb20");
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn client_hello_gets_the_new_name_and_carries_the_old() {
        let rec = client_hello("real.test");
        let out = rewrite_client_hello(&rec, "front.example").unwrap();
        assert_eq!(tls::record_len(&out), Some(out.len()));
        let hello = ClientHello::parse(&out[5..]).unwrap();
        assert_eq!(hello.server_name().as_deref(), Some("front.example"));
        let exts: Vec<(u16, &[u8])> = hello.extensions().collect();
        assert_eq!(exts.len(), 3);
        assert_eq!(exts[1].0, 0x10, "other extensions keep their place");
        assert_eq!(exts[2].0, ORIGINAL_NAME_EXTENSION);
        assert_eq!(exts[2].1, encode_server_name("real.test").as_bytes());
        assert_eq!(
            hello.fixed,
            ClientHello::parse(&rec[5..]).unwrap().fixed,
            "version, random, session id and suites are untouched"
        );
        assert_eq!(&out[..3], &rec[..3]);
        assert_eq!(rewrite_client_hello(&rec[..rec.len() - 1], "x"), None);
        assert_eq!(rewrite_client_hello(b"GET / HTTP/1.1\r\n\r\n", "x"), None);
    }

    #[test]
    fn http_host_is_replaced_and_the_original_carried() {
        let req =
            b"GET /p HTTP/1.1\r\nUser-Agent: t\r\nhost: real.test:8080\r\nAccept: */*\r\n\r\nbody";
        let out = rewrite_http_host(req, "front.example");
        let want = format!(
            "GET /p HTTP/1.1\r\nUser-Agent: t\r\nHost: front.example\r\nGost-Target: {}\r\nAccept: */*\r\n\r\nbody",
            encode_server_name("real.test:8080")
        );
        assert_eq!(String::from_utf8(out).unwrap(), want);
        let no_host = b"GET / HTTP/1.0\r\n\r\nHost: in-the-body\r\n";
        assert_eq!(rewrite_http_host(no_host, "f"), no_host);
    }

    #[test]
    fn mutated_hellos_never_panic() {
        let rec = client_hello("a.example");
        for i in 0..rec.len() {
            for v in [0u8, 1, 0x40, 0xff] {
                let mut m = rec.clone();
                m[i] = v;
                let _ = rewrite_client_hello(&m, "h");
                let _ = rewrite_client_hello(&m[..i], "h");
            }
        }
    }
}
