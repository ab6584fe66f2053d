//! What a forwarder plugin is told about the requested host: the TLS SNI
//! of a ClientHello, or the `Host` header of an HTTP request, read from
//! the client's first bytes without consuming them.

/// The host name the client's first bytes ask for, if any.
pub fn host(first: &[u8]) -> Option<String> {
    if first.first() == Some(&0x16) {
        return tls_sni(first);
    }
    http_host(first)
}

/// Whether these first bytes may still grow into a ClientHello or an HTTP
/// request head: a TLS handshake record, or a method token and a space.
pub fn may_name_host(first: &[u8]) -> bool {
    if first.first() == Some(&0x16) {
        return true;
    }
    let method = first.iter().take_while(|b| b.is_ascii_uppercase()).count();
    method > 0 && (method == first.len() || first[method] == b' ')
}

/// SNI of a TLS ClientHello (RFC 8446 4.1.2, RFC 6066 3), lower-cased.
fn tls_sni(b: &[u8]) -> Option<String> {
    // After the 5-byte record header: a handshake message of type 1.
    let hs = b.get(5..).filter(|hs| hs.first() == Some(&1))?;
    gost_handler::sniffing::server_name(hs).map(|n| n.to_ascii_lowercase())
}

/// `Host` of an HTTP/1 request, without the port.
fn http_host(b: &[u8]) -> Option<String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    // A partial request still has its headers parsed so far.
    let _ = req.parse(b);
    let h = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))?;
    let v = std::str::from_utf8(h.value).ok()?.trim();
    let host = gost_core::addr::host_of(v);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ClientHello carrying `name` as SNI.
    pub fn client_hello(name: &str) -> Vec<u8> {
        let n = name.as_bytes();
        let mut sni = vec![];
        sni.extend_from_slice(&((n.len() + 3) as u16).to_be_bytes());
        sni.push(0);
        sni.extend_from_slice(&(n.len() as u16).to_be_bytes());
        sni.extend_from_slice(n);
        let mut ext = vec![0, 0];
        ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
        ext.extend_from_slice(&sni);
        let mut hello = vec![3, 3];
        hello.extend_from_slice(&[0u8; 32]);
        hello.push(0); // session id
        hello.extend_from_slice(&[0, 2, 0x13, 0x01]); // one suite
        hello.extend_from_slice(&[1, 0]); // null compression
        hello.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        hello.extend_from_slice(&ext);
        let mut hs = vec![1];
        hs.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&hello);
        let mut rec = vec![0x16, 3, 1];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn sni_and_host() {
        assert_eq!(
            host(&client_hello("A.Example")).as_deref(),
            Some("a.example")
        );
        assert_eq!(host(&client_hello("a.example")[..20]), None);
        assert_eq!(
            host(b"GET / HTTP/1.1\r\nHost: b.example:8080\r\n\r\n").as_deref(),
            Some("b.example")
        );
        assert_eq!(
            host(b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n").as_deref(),
            Some("::1")
        );
        assert_eq!(host(b"\x05\x01\x00"), None);
        assert!(may_name_host(b"GET / HT"));
        assert!(may_name_host(b"POS"));
        assert!(!may_name_host(b"hello"));
        assert!(!may_name_host(b"\x05\x01"));
    }
}
