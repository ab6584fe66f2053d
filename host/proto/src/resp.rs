//! RESP2, the Redis protocol, as far as GOST's recorders and loaders use
//! it: commands are arrays of bulk strings, and replies are parsed from a
//! buffer that may hold only part of one (the caller reads more and tries
//! again).

/// One command as Redis reads it: `*N` then each argument as a bulk string.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    /// `None` is Redis's null bulk string (a missing key).
    Bulk(Option<Vec<u8>>),
    /// `None` is the null array.
    Array(Option<Vec<Reply>>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    #[error("redis reply: unknown type byte 0x{0:02x}")]
    Type(u8),
    #[error("redis reply: bad length or integer")]
    Number,
    #[error("redis reply: nested deeper than {MAX_DEPTH}")]
    Depth,
    #[error("redis reply: a bulk string or array over {MAX_LEN} bytes or items")]
    TooLarge,
}

/// Arrays nest no deeper than this in what GOST reads.
const MAX_DEPTH: usize = 8;
/// Larger bulk strings or arrays are refused rather than buffered.
pub const MAX_LEN: usize = 64 << 20;

/// Parses one reply from the front of `buf`: the reply and the bytes it
/// took, or `Ok(None)` when `buf` ends before the reply does.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, RespError> {
    parse_at(buf, 0)
}

fn line(buf: &[u8]) -> Option<(&[u8], usize)> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    Some((&buf[..end], end + 2))
}

fn number(b: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(RespError::Number)
}

fn length(b: &[u8]) -> Result<Option<usize>, RespError> {
    match number(b)? {
        -1 => Ok(None),
        n if n < 0 => Err(RespError::Number),
        n if n as u64 > MAX_LEN as u64 => Err(RespError::TooLarge),
        n => Ok(Some(n as usize)),
    }
}

fn parse_at(buf: &[u8], depth: usize) -> Result<Option<(Reply, usize)>, RespError> {
    if depth > MAX_DEPTH {
        return Err(RespError::Depth);
    }
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    let Some((head, used)) = line(&buf[1..]) else {
        return Ok(None);
    };
    let used = used + 1;
    let text = || String::from_utf8_lossy(head).into_owned();
    match kind {
        b'+' => Ok(Some((Reply::Simple(text()), used))),
        b'-' => Ok(Some((Reply::Error(text()), used))),
        b':' => Ok(Some((Reply::Integer(number(head)?), used))),
        b'$' => match length(head)? {
            None => Ok(Some((Reply::Bulk(None), used))),
            Some(n) => {
                if buf.len() < used + n + 2 {
                    return Ok(None);
                }
                if &buf[used + n..used + n + 2] != b"\r\n" {
                    return Err(RespError::Number);
                }
                Ok(Some((
                    Reply::Bulk(Some(buf[used..used + n].to_vec())),
                    used + n + 2,
                )))
            }
        },
        b'*' => match length(head)? {
            None => Ok(Some((Reply::Array(None), used))),
            Some(n) => {
                let mut items = Vec::with_capacity(n.min(1024));
                let mut at = used;
                for _ in 0..n {
                    match parse_at(&buf[at..], depth + 1)? {
                        Some((r, k)) => {
                            items.push(r);
                            at += k;
                        }
                        None => return Ok(None),
                    }
                }
                Ok(Some((Reply::Array(Some(items)), at)))
            }
        },
        other => Err(RespError::Type(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            encode(&[b"SADD", b"k", b"v1"]),
            b"*3\r\n$4\r\nSADD\r\n$1\r\nk\r\n$2\r\nv1\r\n"
        );
    }

    #[test]
    fn replies_parse_whole_or_wait_for_more() {
        assert_eq!(
            parse(b"+OK\r\n").unwrap(),
            Some((Reply::Simple("OK".into()), 5))
        );
        assert_eq!(
            parse(b":12\r\nrest").unwrap(),
            Some((Reply::Integer(12), 5))
        );
        assert_eq!(
            parse(b"-ERR wrong\r\n").unwrap(),
            Some((Reply::Error("ERR wrong".into()), 12))
        );
        assert_eq!(parse(b"$-1\r\n").unwrap(), Some((Reply::Bulk(None), 5)));
        assert_eq!(parse(b"$3\r\nab").unwrap(), None);
        let arr = b"*2\r\n$1\r\na\r\n$2\r\nbc\r\n";
        assert_eq!(
            parse(arr).unwrap(),
            Some((
                Reply::Array(Some(vec![
                    Reply::Bulk(Some(b"a".to_vec())),
                    Reply::Bulk(Some(b"bc".to_vec()))
                ])),
                arr.len()
            ))
        );
        assert_eq!(parse(&arr[..arr.len() - 1]).unwrap(), None);
    }

    #[test]
    fn bad_replies_are_errors() {
        assert_eq!(parse(b"?x\r\n"), Err(RespError::Type(b'?')));
        assert_eq!(parse(b"$x\r\n"), Err(RespError::Number));
        assert_eq!(parse(b"$99999999999\r\n"), Err(RespError::TooLarge));
        assert_eq!(parse(b"$1\r\nabc"), Err(RespError::Number));
        let deep = "*1\r\n".repeat(20);
        assert_eq!(parse(deep.as_bytes()), Err(RespError::Depth));
    }
}
