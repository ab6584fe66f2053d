//! The TLS ClientHello, as far as GOST looks into it: the `server_name`
//! (SNI) extension that sniffing routes by, and the walk over the
//! extensions that the `sni` connector's rewrite ([`crate::sni`]) uses.
//! Only a handshake message carried whole in one record is read; anything
//! else is not a ClientHello to these functions.

/// The record content type of a handshake.
pub const HANDSHAKE: u8 = 0x16;
/// The handshake message type of a ClientHello.
const CLIENT_HELLO: u8 = 1;
/// The extension type of `server_name`.
pub const SERVER_NAME: u16 = 0;

/// The whole length (header included) of the TLS record at the start of
/// `b`, once its 5-byte header is there.
pub fn record_len(b: &[u8]) -> Option<usize> {
    let h = b.get(..5)?;
    Some(5 + u16::from_be_bytes([h[3], h[4]]) as usize)
}

/// A ClientHello handshake message split where its extensions start:
/// `fixed` is the body from the version to the compression methods,
/// `extensions` the extension block without its length.
pub struct ClientHello<'a> {
    pub fixed: &'a [u8],
    pub extensions: &'a [u8],
}

impl<'a> ClientHello<'a> {
    /// Reads a handshake message (from its type byte). A ClientHello with
    /// no extension block has an empty one.
    pub fn parse(hs: &'a [u8]) -> Option<Self> {
        if *hs.first()? != CLIENT_HELLO {
            return None;
        }
        let body = hs.get(4..)?;
        let mut r = Reader(body);
        r.take(2 + 32)?;
        let sid = r.u8()? as usize;
        r.take(sid)?;
        let suites = r.u16()? as usize;
        r.take(suites)?;
        let comp = r.u8()? as usize;
        r.take(comp)?;
        let fixed = &body[..body.len() - r.0.len()];
        if r.0.is_empty() {
            return Some(ClientHello {
                fixed,
                extensions: &[],
            });
        }
        let ext_len = r.u16()? as usize;
        Some(ClientHello {
            fixed,
            extensions: r.take(ext_len)?,
        })
    }

    /// The extensions in order, as (type, body); a truncated one ends
    /// the walk.
    pub fn extensions(&self) -> impl Iterator<Item = (u16, &'a [u8])> {
        let mut r = Reader(self.extensions);
        std::iter::from_fn(move || {
            let ty = r.u16()?;
            let len = r.u16()? as usize;
            Some((ty, r.take(len)?))
        })
    }

    /// The first host name of the `server_name` extension.
    pub fn server_name(&self) -> Option<String> {
        let (_, body) = self.extensions().find(|(ty, _)| *ty == SERVER_NAME)?;
        let mut names = Reader(body);
        let list = names.u16()? as usize;
        let mut list = Reader(names.take(list)?);
        while let (Some(kind), Some(n)) = (list.u8(), list.u16()) {
            let name = list.take(n as usize)?;
            if kind == 0 {
                return std::str::from_utf8(name).ok().map(str::to_string);
            }
        }
        None
    }
}

impl ClientHello<'_> {
    /// The protocols of the `application_layer_protocol_negotiation`
    /// extension, in the client's order.
    pub fn alpn(&self) -> Vec<String> {
        let Some((_, body)) = self.extensions().find(|(ty, _)| *ty == ALPN) else {
            return Vec::new();
        };
        let mut r = Reader(body);
        let Some(list) = r.u16().and_then(|n| r.take(n as usize)) else {
            return Vec::new();
        };
        let mut list = Reader(list);
        std::iter::from_fn(|| {
            let n = list.u8()? as usize;
            Some(String::from_utf8_lossy(list.take(n)?).into_owned())
        })
        .collect()
    }
}

/// The extension type of `application_layer_protocol_negotiation`.
pub const ALPN: u16 = 16;

/// The SNI of a ClientHello handshake message (from its type byte).
pub fn server_name(hs: &[u8]) -> Option<String> {
    ClientHello::parse(hs)?.server_name()
}

/// The body of a `server_name` extension naming `host` alone.
pub fn server_name_extension(host: &str) -> Option<Vec<u8>> {
    let n = u16::try_from(host.len()).ok()?;
    let list = n.checked_add(3)?;
    let mut b = Vec::with_capacity(2 + list as usize);
    b.extend(list.to_be_bytes());
    b.push(0);
    b.extend(n.to_be_bytes());
    b.extend(host.as_bytes());
    Some(b)
}

/// One handshake record carrying `fixed` and `extensions` as a
/// ClientHello, with the record version `version`; `None` when it does
/// not fit a record's length fields.
pub fn encode_client_hello(version: [u8; 2], fixed: &[u8], extensions: &[u8]) -> Option<Vec<u8>> {
    let ext_len = u16::try_from(extensions.len()).ok()?;
    let body_len = fixed.len() + 2 + extensions.len();
    if body_len >= 1 << 24 {
        return None;
    }
    let rec_len = u16::try_from(4 + body_len).ok()?;
    let mut out = Vec::with_capacity(5 + rec_len as usize);
    out.extend([HANDSHAKE, version[0], version[1]]);
    out.extend(rec_len.to_be_bytes());
    out.push(CLIENT_HELLO);
    out.extend(&(body_len as u32).to_be_bytes()[1..]);
    out.extend(fixed);
    out.extend(ext_len.to_be_bytes());
    out.extend(extensions);
    Some(out)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ClientHello record with one SNI entry and one other
    /// extension after it.
    pub(crate) fn client_hello(name: &str) -> Vec<u8> {
        let mut ext = vec![0, 0];
        let sni = server_name_extension(name).unwrap();
        ext.extend((sni.len() as u16).to_be_bytes());
        ext.extend(sni);
        ext.extend([0, 0x10, 0, 5, 0, 3, 2, b'h', b'2']);
        let mut fixed = vec![3, 3];
        fixed.extend([7u8; 32]);
        fixed.extend([0, 0, 2, 0x13, 1, 1, 0]);
        encode_client_hello([3, 1], &fixed, &ext).unwrap()
    }

    #[test]
    fn reads_the_server_name() {
        let rec = client_hello("sni.test");
        assert_eq!(record_len(&rec), Some(rec.len()));
        assert_eq!(server_name(&rec[5..]).as_deref(), Some("sni.test"));
        let hello = ClientHello::parse(&rec[5..]).unwrap();
        let types: Vec<u16> = hello.extensions().map(|(t, _)| t).collect();
        assert_eq!(types, [0, 0x10]);
        assert_eq!(hello.alpn(), ["h2"]);
        assert_eq!(server_name(&rec[5..rec.len() - 1]), None);
        let mut not_hello = rec.clone();
        not_hello[5] = 2;
        assert_eq!(server_name(&not_hello[5..]), None);
    }

    #[test]
    fn survives_every_truncation_and_mutation() {
        let rec = client_hello("a.example");
        for cut in 0..rec.len() {
            let _ = server_name(&rec[5.min(cut)..cut]);
        }
        for i in 5..rec.len() {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut m = rec.clone();
                m[i] = v;
                if let Some(h) = ClientHello::parse(&m[5..]) {
                    let _ = h.server_name();
                    let _ = h.alpn();
                    let _ = h.extensions().count();
                }
            }
        }
    }
}
