//! `otls`: TLS 1.2 look-alike records, as GOST writes them with
//! go-gost/tls-dissector. The client's first write is a `ClientHello`
//! whose session-ticket extension carries the data; the server answers
//! with a `ServerHello` and a `ChangeCipherSpec`, and its first data goes
//! in a handshake record; everything after is application-data records
//! of at most 16384 bytes:
//!
//! ```text
//! client: 16 03 01 len | ClientHello (ticket = first data)
//!         17 03 03 len | data ...
//! server: 16 03 01 len | ServerHello (91 bytes)
//!         14 03 03 00 01 | 01
//!         16 03 03 len | first data
//!         17 03 03 len | data ...
//! ```

/// Bytes of a record header: type, version, length.
pub const RECORD_HEADER: usize = 5;

/// The most data one record carries.
pub const MAX_DATA: usize = 16384;

pub const HANDSHAKE: u8 = 0x16;
pub const CHANGE_CIPHER_SPEC: u8 = 0x14;
pub const APP_DATA: u8 = 0x17;

const TLS10: [u8; 2] = [0x03, 0x01];
const TLS12: [u8; 2] = [0x03, 0x03];

const EXT_SERVER_NAME: u16 = 0x00;
const EXT_SUPPORTED_GROUPS: u16 = 0x0a;
const EXT_EC_POINT_FORMATS: u16 = 0x0b;
const EXT_SIGNATURE_ALGORITHMS: u16 = 0x0d;
const EXT_ALPN: u16 = 0x10;
const EXT_ENCRYPT_THEN_MAC: u16 = 0x16;
const EXT_EXTENDED_MASTER_SECRET: u16 = 0x17;
const EXT_SESSION_TICKET: u16 = 0x23;
const EXT_SUPPORTED_VERSIONS: u16 = 0x2b;
const EXT_RENEGOTIATION_INFO: u16 = 0xff01;

const CIPHER_SUITES: [u16; 28] = [
    0xc02c, 0xc030, 0x009f, 0xcca9, 0xcca8, 0xccaa, 0xc02b, 0xc02f, 0x009e, 0xc024, 0xc028, 0x006b,
    0xc023, 0xc027, 0x0067, 0xc00a, 0xc014, 0x0039, 0xc009, 0xc013, 0x0033, 0x009d, 0x009c, 0x003d,
    0x003c, 0x0035, 0x002f, 0x00ff,
];

const SIGNATURE_ALGORITHMS: [u16; 15] = [
    0x0601, 0x0602, 0x0603, 0x0501, 0x0502, 0x0503, 0x0401, 0x0402, 0x0403, 0x0301, 0x0302, 0x0303,
    0x0201, 0x0202, 0x0203,
];

const SUPPORTED_GROUPS: [u16; 4] = [0x001d, 0x0017, 0x0019, 0x0018];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObfsTlsError {
    #[error("record type {0:#04x}, expected {1:#04x}")]
    BadType(u8, u8),
    #[error("record version major {0:#04x}")]
    BadMajorVersion(u8),
    #[error("record version minor {0:#04x}")]
    BadMinorVersion(u8),
    #[error("record of {0} bytes, over {MAX_DATA}")]
    TooLong(usize),
    #[error("not a ClientHello (handshake type {0:#04x})")]
    NotClientHello(u8),
    #[error("ClientHello of {0} bytes, fewer than 34")]
    ShortHello(usize),
    #[error("ClientHello version {0:#06x}")]
    HelloVersion(u16),
    #[error("ClientHello truncated in its {0}")]
    Truncated(&'static str),
    #[error("extension {0:#06x} malformed")]
    Extension(u16),
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// A record around `data` (GOST writes the length as 16 bits; callers
/// keep `data` within that).
pub fn record(kind: u8, version: [u8; 2], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER + data.len());
    out.push(kind);
    out.extend_from_slice(&version);
    put_u16(&mut out, data.len() as u16);
    out.extend_from_slice(data);
    out
}

/// A data record: the server's first is a handshake record, every other
/// one application data, all with version TLS 1.2.
pub fn data_record(first_of_server: bool, data: &[u8]) -> Vec<u8> {
    let kind = if first_of_server { HANDSHAKE } else { APP_DATA };
    record(kind, TLS12, data)
}

fn extension(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
    put_u16(out, kind);
    put_u16(out, body.len() as u16);
    out.extend_from_slice(body);
}

fn u16_list(values: &[u16]) -> Vec<u8> {
    let mut b = Vec::with_capacity(2 + values.len() * 2);
    put_u16(&mut b, (values.len() * 2) as u16);
    for v in values {
        put_u16(&mut b, *v);
    }
    b
}

/// A handshake message: type, 24-bit length, body.
fn handshake(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(body);
    out
}

/// The client's first record: a `ClientHello` carrying `payload` in its
/// session-ticket extension and `host` as its server name (GOST sends
/// the `host` option, else the node's address with its port). `random`
/// is the time (4 bytes, big-endian seconds) and 28 random bytes.
pub fn client_hello(
    random: &[u8; 32],
    session_id: &[u8; 32],
    host: &str,
    payload: &[u8],
) -> Vec<u8> {
    let mut body = TLS12.to_vec();
    body.extend_from_slice(random);
    body.push(32);
    body.extend_from_slice(session_id);
    body.extend_from_slice(&u16_list(&CIPHER_SUITES));
    body.extend_from_slice(&[1, 0]);
    let mut exts = Vec::new();
    extension(&mut exts, EXT_SESSION_TICKET, payload);
    let mut sni = Vec::new();
    put_u16(&mut sni, (1 + 2 + host.len()) as u16);
    sni.push(0);
    put_u16(&mut sni, host.len() as u16);
    sni.extend_from_slice(host.as_bytes());
    extension(&mut exts, EXT_SERVER_NAME, &sni);
    extension(&mut exts, EXT_EC_POINT_FORMATS, &[3, 1, 0, 2]);
    extension(
        &mut exts,
        EXT_SUPPORTED_GROUPS,
        &u16_list(&SUPPORTED_GROUPS),
    );
    extension(
        &mut exts,
        EXT_SIGNATURE_ALGORITHMS,
        &u16_list(&SIGNATURE_ALGORITHMS),
    );
    extension(&mut exts, EXT_ENCRYPT_THEN_MAC, &[]);
    extension(&mut exts, EXT_EXTENDED_MASTER_SECRET, &[]);
    put_u16(&mut body, exts.len() as u16);
    body.extend_from_slice(&exts);
    record(HANDSHAKE, TLS10, &handshake(1, &body))
}

/// The most payload [`client_hello`] carries for `host` so that the
/// record stays within 16 bits of length.
pub fn max_hello_payload(host: &str) -> usize {
    let fixed = client_hello(&[0; 32], &[0; 32], host, &[]).len() - RECORD_HEADER;
    usize::from(u16::MAX).saturating_sub(fixed)
}

/// The server's answer to a hello with `session_id`: the `ServerHello`
/// record and the `ChangeCipherSpec` record.
pub fn server_hello(random: &[u8; 32], session_id: &[u8]) -> Vec<u8> {
    let mut body = TLS12.to_vec();
    body.extend_from_slice(random);
    body.push(session_id.len() as u8);
    body.extend_from_slice(session_id);
    put_u16(&mut body, 0xcca8);
    body.push(0);
    let mut exts = Vec::new();
    extension(&mut exts, EXT_RENEGOTIATION_INFO, &[0]);
    extension(&mut exts, EXT_EXTENDED_MASTER_SECRET, &[]);
    extension(&mut exts, EXT_EC_POINT_FORMATS, &[1, 0]);
    put_u16(&mut body, exts.len() as u16);
    body.extend_from_slice(&exts);
    let mut out = record(HANDSHAKE, TLS10, &handshake(2, &body));
    out.extend_from_slice(&record(CHANGE_CIPHER_SPEC, TLS12, &[1]));
    out
}

/// A record header: type and length (GOST's server checks neither the
/// version nor, after the hello, the type).
pub fn record_header(h: &[u8; RECORD_HEADER]) -> (u8, usize) {
    (h[0], usize::from(u16::from_be_bytes([h[3], h[4]])))
}

/// What the server takes from a client's hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    pub session_id: Vec<u8>,
    /// The session ticket: the client's first data.
    pub payload: Vec<u8>,
}

fn take<'a>(b: &mut &'a [u8], n: usize, what: &'static str) -> Result<&'a [u8], ObfsTlsError> {
    if b.len() < n {
        return Err(ObfsTlsError::Truncated(what));
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Ok(head)
}

fn be16(b: &[u8]) -> usize {
    usize::from(u16::from_be_bytes([b[0], b[1]]))
}

/// An extension's body, checked as tls-dissector decodes the types it
/// knows (it decodes only non-empty ones).
fn check_extension(kind: u16, b: &[u8]) -> Result<(), ObfsTlsError> {
    if b.is_empty() {
        return Ok(());
    }
    let bad = || ObfsTlsError::Extension(kind);
    let fits = |at: usize, n: usize| b.len().checked_sub(at).is_some_and(|rest| rest >= n);
    let ok = match kind {
        EXT_SERVER_NAME => b.len() >= 5 && fits(5, be16(&b[3..])),
        EXT_EC_POINT_FORMATS | EXT_SUPPORTED_VERSIONS | EXT_RENEGOTIATION_INFO => {
            fits(1, usize::from(b[0]))
        }
        EXT_SUPPORTED_GROUPS | EXT_SIGNATURE_ALGORITHMS | EXT_ALPN => {
            b.len() >= 2 && fits(2, be16(b))
        }
        _ => true,
    };
    if !ok {
        return Err(bad());
    }
    Ok(())
}

/// The client's hello from the first record's body (tls-dissector's
/// `ClientHelloMsg.Decode`, with its checks).
pub fn parse_client_hello(msg: &[u8]) -> Result<ClientHello, ObfsTlsError> {
    let mut b = msg;
    let head = take(&mut b, 4, "header")?;
    if head[0] != 1 {
        return Err(ObfsTlsError::NotClientHello(head[0]));
    }
    let len = (usize::from(head[1]) << 16) | (usize::from(head[2]) << 8) | usize::from(head[3]);
    if len < 34 {
        return Err(ObfsTlsError::ShortHello(len));
    }
    let mut b = take(&mut b, len, "body")?;
    let version = u16::from_be_bytes([b[0], b[1]]);
    if !(0x0301..=0x0304).contains(&version) {
        return Err(ObfsTlsError::HelloVersion(version));
    }
    b = &b[34..];
    let n = usize::from(take(&mut b, 1, "session id")?[0]);
    let session_id = take(&mut b, n, "session id")?.to_vec();
    let n = be16(take(&mut b, 2, "cipher suites")?);
    take(&mut b, n, "cipher suites")?;
    let n = usize::from(take(&mut b, 1, "compression methods")?[0]);
    take(&mut b, n, "compression methods")?;
    let n = be16(take(&mut b, 2, "extensions")?);
    let mut exts = take(&mut b, n, "extensions")?;
    let mut payload = None;
    while !exts.is_empty() {
        let h = take(&mut exts, 4, "extensions")?;
        let kind = u16::from_be_bytes([h[0], h[1]]);
        let body = take(&mut exts, be16(&h[2..]), "extensions")?;
        check_extension(kind, body)?;
        if kind == EXT_SESSION_TICKET && payload.is_none() {
            payload = Some(body.to_vec());
        }
    }
    Ok(ClientHello {
        session_id,
        payload: payload.unwrap_or_default(),
    })
}

/// GOST's client-side parser of the server's records (its
/// `obfsTLSParser`): the first record is taken as a 91-byte handshake
/// whatever its header says, the second as a 1-byte `ChangeCipherSpec`,
/// the third must be a handshake record and the rest application data,
/// each of at most 16384 bytes; the data is passed on, the rest dropped.
#[derive(Debug, Default, Clone)]
pub struct ServerRecords {
    step: u8,
    state: State,
    header: [u8; 4],
    left: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Type,
    Major,
    Minor,
    Len0,
    Len1,
    Data,
}

impl ServerRecords {
    /// Feeds bytes from the server; the data they carry is appended to
    /// `out`. An error ends the connection.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), ObfsTlsError> {
        const TYPES: [u8; 4] = [HANDSHAKE, CHANGE_CIPHER_SPEC, HANDSHAKE, APP_DATA];
        const MINORS: [u8; 4] = [0x01, 0x03, 0x03, 0x03];
        while let Some((&ch, rest)) = input.split_first() {
            let step = usize::from(self.step);
            match self.state {
                State::Type => {
                    if ch != TYPES[step] {
                        return Err(ObfsTlsError::BadType(ch, TYPES[step]));
                    }
                    self.state = State::Major;
                }
                State::Major => {
                    if ch != 0x03 {
                        return Err(ObfsTlsError::BadMajorVersion(ch));
                    }
                    self.state = State::Minor;
                }
                State::Minor => {
                    if ch != MINORS[step] {
                        return Err(ObfsTlsError::BadMinorVersion(ch));
                    }
                    self.state = State::Len0;
                }
                State::Len0 => {
                    self.header[0] = ch;
                    self.state = State::Len1;
                }
                State::Len1 => {
                    let len = usize::from(u16::from_be_bytes([self.header[0], ch]));
                    self.left = match self.step {
                        0 => 91,
                        1 => 1,
                        _ if len > MAX_DATA => return Err(ObfsTlsError::TooLong(len)),
                        _ => len,
                    };
                    if self.left > 0 {
                        self.state = State::Data;
                    } else {
                        // GOST steps on without a bound here, and its next
                        // record then indexes past its tables (a panic);
                        // an empty record is taken as any other.
                        self.state = State::Type;
                        self.step = (self.step + 1).min(3);
                    }
                }
                State::Data => {
                    let n = self.left.min(input.len());
                    if self.step >= 2 {
                        out.extend_from_slice(&input[..n]);
                    }
                    self.left -= n;
                    input = &input[n..];
                    if self.left == 0 {
                        if self.step < 3 {
                            self.step += 1;
                        }
                        self.state = State::Type;
                    }
                    continue;
                }
            }
            input = rest;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The ClientHello as tls-dissector encodes GOST's message, byte by
    /// byte: record, handshake header, version, random, session id, 28
    /// suites, one compression method, then the seven extensions in
    /// GOST's order.
    #[test]
    fn client_hello_bytes() {
        let random = [0xaa; 32];
        let sid = [0xbb; 32];
        let got = client_hello(&random, &sid, "a.io", b"hi");
        let mut want = hex("16 0301 00da  01 0000d6  0303");
        want.extend_from_slice(&random);
        want.push(32);
        want.extend_from_slice(&sid);
        want.extend(hex("0038"));
        for s in CIPHER_SUITES {
            want.extend_from_slice(&s.to_be_bytes());
        }
        want.extend(hex("01 00"));
        want.extend(hex("0055"));
        want.extend(hex("0023 0002 6869"));
        want.extend(hex("0000 0009 0007 00 0004 612e696f"));
        want.extend(hex("000b 0004 03 010002"));
        want.extend(hex("000a 000a 0008 001d 0017 0019 0018"));
        want.extend(hex("000d 0020 001e"));
        for a in SIGNATURE_ALGORITHMS {
            want.extend_from_slice(&a.to_be_bytes());
        }
        want.extend(hex("0016 0000 0017 0000"));
        assert_eq!(got, want);
        let hello = parse_client_hello(&got[RECORD_HEADER..]).unwrap();
        assert_eq!(hello.session_id, sid);
        assert_eq!(hello.payload, b"hi");
    }

    /// GOST's ServerHello record is 91 bytes of handshake (what its
    /// client's parser assumes), then the ChangeCipherSpec record.
    #[test]
    fn server_hello_bytes() {
        let random = [0xcc; 32];
        let sid = [0xdd; 32];
        let got = server_hello(&random, &sid);
        let mut want = hex("16 0301 005b  02 000057  0303");
        want.extend_from_slice(&random);
        want.push(32);
        want.extend_from_slice(&sid);
        want.extend(hex(
            "cca8 00  000f  ff01 0001 00  0017 0000  000b 0002 0100",
        ));
        want.extend(hex("14 0303 0001 01"));
        assert_eq!(got, want);
        assert_eq!(got.len(), RECORD_HEADER + 91 + 6);
    }

    #[test]
    fn the_client_parser_takes_the_data_out() {
        let mut stream = server_hello(&[1; 32], &[2; 32]);
        stream.extend(data_record(true, b"hello "));
        stream.extend(data_record(false, b"world"));
        stream.extend(data_record(false, b""));
        stream.extend(data_record(false, b"!"));
        // Fed whole, and byte by byte.
        let mut p = ServerRecords::default();
        let mut out = Vec::new();
        p.feed(&stream, &mut out).unwrap();
        assert_eq!(out, b"hello world!");
        let mut p = ServerRecords::default();
        let mut out = Vec::new();
        for b in &stream {
            p.feed(std::slice::from_ref(b), &mut out).unwrap();
        }
        assert_eq!(out, b"hello world!");
    }

    #[test]
    fn the_client_parser_refuses_what_gost_refuses() {
        let feed = |b: &[u8]| ServerRecords::default().feed(b, &mut Vec::new());
        assert_eq!(
            feed(b"HTTP/1.1"),
            Err(ObfsTlsError::BadType(b'H', HANDSHAKE))
        );
        assert_eq!(feed(&[0x16, 0x02]), Err(ObfsTlsError::BadMajorVersion(2)));
        assert_eq!(
            feed(&[0x16, 0x03, 0x03]),
            Err(ObfsTlsError::BadMinorVersion(3))
        );
        let mut s = server_hello(&[1; 32], &[2; 32]);
        s.extend(data_record(false, b"x"));
        assert_eq!(feed(&s), Err(ObfsTlsError::BadType(APP_DATA, HANDSHAKE)));
        let mut s = server_hello(&[1; 32], &[2; 32]);
        s.extend(hex("16 0303 4001"));
        assert_eq!(feed(&s), Err(ObfsTlsError::TooLong(16385)));
    }

    #[test]
    fn bad_hellos_are_refused() {
        let good = client_hello(&[0; 32], &[0; 32], "h", b"p");
        let body = &good[RECORD_HEADER..];
        assert_eq!(
            parse_client_hello(&[2, 0, 0, 40]),
            Err(ObfsTlsError::NotClientHello(2))
        );
        assert_eq!(
            parse_client_hello(&[1, 0, 0, 20]),
            Err(ObfsTlsError::ShortHello(20))
        );
        assert_eq!(
            parse_client_hello(&body[..body.len() - 1]),
            Err(ObfsTlsError::Truncated("body"))
        );
        let mut v = body.to_vec();
        v[4] = 2;
        assert_eq!(
            parse_client_hello(&v),
            Err(ObfsTlsError::HelloVersion(0x0203))
        );
        // A server-name extension whose name runs past its end.
        let mut v = body.to_vec();
        let at = v.windows(4).position(|w| w == [0, 0, 0, 6]).unwrap();
        v[at + 8] = 9;
        assert_eq!(parse_client_hello(&v), Err(ObfsTlsError::Extension(0)));
        for cut in 0..body.len() {
            let _ = parse_client_hello(&body[..cut]);
        }
    }

    #[test]
    fn hello_payload_bound() {
        let max = max_hello_payload("example.com:443");
        let r = client_hello(&[0; 32], &[0; 32], "example.com:443", &vec![0; max]);
        assert_eq!(r.len(), RECORD_HEADER + usize::from(u16::MAX));
    }
}
