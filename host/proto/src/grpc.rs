//! GOST's gRPC tunnel (go-gost/x `internal/util/grpc/proto`, the `grpc`
//! transport) as pure parse and encode code: the method path, gRPC's
//! length-prefixed messages and the one message type, GOST's `Chunk`.
//!
//! GOST's proto file has no package, so the service is `GostTunel` (sic)
//! and its one method, a bidirectional stream, is `/GostTunel/Tunnel`:
//!
//! ```text
//! message Chunk { bytes data = 1; }
//! service GostTunel { rpc Tunnel (stream Chunk) returns (stream Chunk); }
//! ```
//!
//! Each message on an HTTP/2 stream is a 5-byte prefix (a compressed
//! flag, then the length as a big-endian u32) and the protobuf bytes: a
//! `Chunk` is the key `0x0a` (field 1, length-delimited), the data's
//! length as a varint, the data.

use std::ops::Range;

/// The service and method of GOST's proto: `/GostTunel/Tunnel`.
pub const SERVICE: &str = "GostTunel";
pub const METHOD: &str = "Tunnel";

/// The largest message grpc-go receives by default (its
/// `defaultServerMaxReceiveMessageSize` and the client's
/// `defaultClientMaxReceiveMessageSize`), which GOST does not change.
pub const MAX_RECV_MESSAGE: usize = 4 * 1024 * 1024;

/// Bytes of a message's prefix: compressed flag, length.
pub const PREFIX_LEN: usize = 5;

/// The `content-type` of a gRPC request and response.
pub const CONTENT_TYPE: &str = "application/grpc";

/// The protobuf key of `Chunk.data`: field 1, wire type 2.
const DATA_KEY: u8 = 0x0a;

/// The HTTP/2 path of the tunnel method for GOST's `path` option (its
/// `parsingMethod`): empty is `/GostTunel/Tunnel`; one segment names the
/// service; with two, the first is the service and the rest the method,
/// its slashes turned to dashes.
pub fn method_path(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    let (service, method) = match trimmed.split_once('/') {
        None if trimmed.is_empty() => (SERVICE.to_string(), METHOD.to_string()),
        None => (trimmed.to_string(), METHOD.to_string()),
        Some((service, method)) => (service.to_string(), method.replace('/', "-")),
    };
    format!("/{service}/{method}")
}

/// gRPC status codes this transport sends or reads.
pub mod status {
    pub const OK: u32 = 0;
    pub const CANCELLED: u32 = 1;
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    pub const UNIMPLEMENTED: u32 = 12;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("message of {len} bytes is over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    /// GOST sets no compressor, so grpc-go refuses a compressed message
    /// as the stream has no `grpc-encoding`.
    #[error("compressed message without a grpc-encoding")]
    Compressed,
    #[error("bad message flag {0:#04x}")]
    BadFlag(u8),
    #[error("truncated protobuf field")]
    Truncated,
    #[error("varint longer than 10 bytes")]
    LongVarint,
    #[error("protobuf field number 0")]
    FieldZero,
    #[error("protobuf group end without its start")]
    GroupEnd,
    #[error("unknown protobuf wire type {0}")]
    WireType(u8),
}

/// The length of the message whose prefix starts `buf`, once the prefix
/// is there (`None` before), checked against `max`.
pub fn message_len(buf: &[u8], max: usize) -> Result<Option<usize>, MessageError> {
    let Some(prefix) = buf.get(..PREFIX_LEN) else {
        return Ok(None);
    };
    match prefix[0] {
        0 => {}
        1 => return Err(MessageError::Compressed),
        f => return Err(MessageError::BadFlag(f)),
    }
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if len > max {
        return Err(MessageError::TooLarge { len, max });
    }
    Ok(Some(len))
}

/// The bytes [`encode_chunk`] writes for `data_len` bytes of data.
pub fn chunk_message_len(data_len: usize) -> usize {
    let body = if data_len == 0 {
        0
    } else {
        1 + varint_len(data_len as u64) + data_len
    };
    PREFIX_LEN + body
}

/// Appends one gRPC message carrying a `Chunk` of `data`. Empty data is
/// the empty message, as protobuf leaves out a field at its default.
pub fn encode_chunk(data: &[u8], out: &mut Vec<u8>) {
    let body = chunk_message_len(data.len()) - PREFIX_LEN;
    out.reserve(PREFIX_LEN + body);
    out.push(0);
    out.extend_from_slice(&(body as u32).to_be_bytes());
    if !data.is_empty() {
        out.push(DATA_KEY);
        put_varint(data.len() as u64, out);
        out.extend_from_slice(data);
    }
}

/// Where `Chunk.data` lies in a message's protobuf bytes (after the
/// prefix). As protobuf-go has it, fields it does not know (and field 1
/// with another wire type) are skipped, groups included, and the last
/// `data` wins; a message without one is empty data.
pub fn decode_chunk(msg: &[u8]) -> Result<Range<usize>, MessageError> {
    let mut at = 0;
    let mut data = 0..0;
    while at < msg.len() {
        let (field, wire) = key(msg, &mut at)?;
        if field == 1 && wire == 2 {
            let len = length(msg, &mut at)?;
            let end = skip(msg, at, len)?;
            data = at..end;
            at = end;
        } else {
            at = skip_value(msg, at, field, wire, 0)?;
        }
    }
    Ok(data)
}

/// How deep groups may nest (protobuf-go's default recursion limit).
const MAX_GROUP_DEPTH: usize = 10_000;

fn key(msg: &[u8], at: &mut usize) -> Result<(u64, u8), MessageError> {
    let key = varint(msg, at)?;
    let field = key >> 3;
    if field == 0 {
        return Err(MessageError::FieldZero);
    }
    Ok((field, (key & 7) as u8))
}

fn length(msg: &[u8], at: &mut usize) -> Result<usize, MessageError> {
    usize::try_from(varint(msg, at)?).map_err(|_| MessageError::Truncated)
}

/// Past the value of a field with `wire` type that starts at `at`.
fn skip_value(
    msg: &[u8],
    mut at: usize,
    field: u64,
    wire: u8,
    depth: usize,
) -> Result<usize, MessageError> {
    match wire {
        0 => {
            varint(msg, &mut at)?;
            Ok(at)
        }
        1 => skip(msg, at, 8),
        2 => {
            let len = length(msg, &mut at)?;
            skip(msg, at, len)
        }
        3 => {
            if depth >= MAX_GROUP_DEPTH {
                return Err(MessageError::Truncated);
            }
            loop {
                let (f, w) = key(msg, &mut at)?;
                if w == 4 {
                    return if f == field {
                        Ok(at)
                    } else {
                        Err(MessageError::GroupEnd)
                    };
                }
                at = skip_value(msg, at, f, w, depth + 1)?;
            }
        }
        5 => skip(msg, at, 4),
        4 => Err(MessageError::GroupEnd),
        w => Err(MessageError::WireType(w)),
    }
}

fn skip(msg: &[u8], at: usize, n: usize) -> Result<usize, MessageError> {
    at.checked_add(n)
        .filter(|end| *end <= msg.len())
        .ok_or(MessageError::Truncated)
}

fn varint(msg: &[u8], at: &mut usize) -> Result<u64, MessageError> {
    let mut v = 0u64;
    for i in 0..10 {
        let b = *msg.get(*at).ok_or(MessageError::Truncated)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(MessageError::LongVarint)
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A `grpc-message` value, percent-encoded as gRPC's HTTP/2 mapping asks
/// (bytes outside printable ASCII, and `%`).
pub fn encode_grpc_message(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    for b in msg.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_paths_as_gost_parses_them() {
        assert_eq!(method_path(""), "/GostTunel/Tunnel");
        assert_eq!(method_path("/"), "/GostTunel/Tunnel");
        assert_eq!(method_path("svc"), "/svc/Tunnel");
        assert_eq!(method_path("/svc/"), "/svc/Tunnel");
        assert_eq!(method_path("/a/b"), "/a/b");
        assert_eq!(method_path("/a/b/c/d"), "/a/b-c-d");
    }

    #[test]
    fn chunk_bytes_as_protoc_go_writes_them() {
        let mut out = Vec::new();
        encode_chunk(b"abc", &mut out);
        assert_eq!(out, [0, 0, 0, 0, 5, 0x0a, 3, b'a', b'b', b'c']);
        // 300 bytes: a two-byte varint (0xac 0x02).
        let data = vec![7u8; 300];
        let mut out = Vec::new();
        encode_chunk(&data, &mut out);
        assert_eq!(&out[..8], [0, 0, 0, 1, 47, 0x0a, 0xac, 0x02]);
        assert_eq!(out.len(), chunk_message_len(300));
        let mut out = Vec::new();
        encode_chunk(b"", &mut out);
        assert_eq!(out, [0, 0, 0, 0, 0]);
    }

    #[test]
    fn round_trip_through_prefix_and_decode() {
        for n in [0usize, 1, 127, 128, 16383, 16384, 70000] {
            let data: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let mut out = Vec::new();
            encode_chunk(&data, &mut out);
            let len = message_len(&out, MAX_RECV_MESSAGE).unwrap().unwrap();
            assert_eq!(PREFIX_LEN + len, out.len());
            let msg = &out[PREFIX_LEN..];
            assert_eq!(&msg[decode_chunk(msg).unwrap()], &data[..]);
        }
    }

    #[test]
    fn prefix_checks() {
        assert_eq!(message_len(&[0, 0, 0], 10), Ok(None));
        assert_eq!(message_len(&[0, 0, 0, 0, 10], 10), Ok(Some(10)));
        assert_eq!(
            message_len(&[0, 0, 0x40, 0, 1], MAX_RECV_MESSAGE),
            Err(MessageError::TooLarge {
                len: MAX_RECV_MESSAGE + 1,
                max: MAX_RECV_MESSAGE
            })
        );
        assert_eq!(
            message_len(&[1, 0, 0, 0, 1], 10),
            Err(MessageError::Compressed)
        );
        assert_eq!(
            message_len(&[0x47, 0x45, 0x54, 0x20, 0x2f], 10),
            Err(MessageError::BadFlag(0x47))
        );
    }

    #[test]
    fn unknown_fields_skipped_last_data_wins() {
        // field 2 varint 150, field 1 "x", field 3 fixed64, field 4
        // fixed32, field 5 bytes "zz", field 1 "yy".
        let msg = [
            0x10, 0x96, 0x01, 0x0a, 1, b'x', 0x19, 1, 2, 3, 4, 5, 6, 7, 8, 0x25, 1, 2, 3, 4, 0x2a,
            2, b'z', b'z', 0x0a, 2, b'y', b'y',
        ];
        let r = decode_chunk(&msg).unwrap();
        assert_eq!(&msg[r], b"yy");
        assert_eq!(decode_chunk(&[]), Ok(0..0));
        // Field 1 as a varint, then a group (field 2, holding field 1 as
        // bytes): both skipped, as protobuf-go does.
        let msg = [0x08, 1, 0x13, 0x0a, 1, b'q', 0x14, 0x0a, 1, b'k'];
        let r = decode_chunk(&msg).unwrap();
        assert_eq!(&msg[r], b"k");
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(decode_chunk(&[0x0a, 5, 1]), Err(MessageError::Truncated));
        assert_eq!(decode_chunk(&[0x0a]), Err(MessageError::Truncated));
        assert_eq!(decode_chunk(&[0x0c]), Err(MessageError::GroupEnd));
        assert_eq!(decode_chunk(&[0x0b, 0x14]), Err(MessageError::GroupEnd));
        assert_eq!(decode_chunk(&[0x0b, 0x08]), Err(MessageError::Truncated));
        assert_eq!(decode_chunk(&[0x02, 0]), Err(MessageError::FieldZero));
        assert_eq!(decode_chunk(&[0x0e]), Err(MessageError::WireType(6)));
        assert_eq!(decode_chunk(&[0x80; 11]), Err(MessageError::LongVarint));
        // A length that overflows usize arithmetic.
        let mut huge = vec![0x12];
        huge.extend([0xff; 9]);
        huge.push(0x01);
        assert_eq!(decode_chunk(&huge), Err(MessageError::Truncated));
    }

    #[test]
    fn grpc_message_escaping() {
        assert_eq!(encode_grpc_message("a b"), "a b");
        assert_eq!(encode_grpc_message("100%\n"), "100%25%0A");
        assert_eq!(encode_grpc_message("é"), "%C3%A9");
    }
}
