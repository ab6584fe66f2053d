//! HTTP/1.x message framing, as the HTTP handler relays bodies and as
//! sniffing and the HTTP observer read them: one decoder for
//! `Content-Length`, chunked and until-close bodies.

/// Longest chunk-size or trailer line in a chunked body.
const MAX_CHUNK_LINE: usize = 4096;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
    /// A response without length: it ends when the origin closes.
    UntilClose,
}

/// Follows a body's framing over raw bytes without changing them: it only
/// tells how many of the bytes at hand belong to the body.
#[derive(Debug)]
pub struct Decoder {
    state: DecState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecState {
    /// Bytes left of a Content-Length body or of a chunk's data.
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    Trailers,
    UntilClose,
    Done,
}

impl Decoder {
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Length(0) => DecState::Done,
            Framing::Length(n) => DecState::Length(n),
            Framing::Chunked => DecState::ChunkSize,
            Framing::UntilClose => DecState::UntilClose,
        };
        Decoder { state }
    }

    pub fn done(&self) -> bool {
        self.state == DecState::Done
    }

    pub fn ends_at_eof(&self) -> bool {
        self.state == DecState::UntilClose
    }

    /// How many leading bytes of `data` belong to the body; fewer than
    /// `data.len()` when the body ends inside it or a chunk line is still
    /// incomplete.
    pub fn advance(&mut self, data: &[u8]) -> Result<usize, String> {
        self.step(data, None)
    }

    /// [`Self::advance`], appending the body's payload (without chunk
    /// framing) to `out`.
    pub fn decode(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
        self.step(data, Some(out))
    }

    /// Whether every byte of the payload has gone by (trailers may be
    /// left).
    pub fn payload_done(&self) -> bool {
        matches!(self.state, DecState::Trailers | DecState::Done)
    }

    fn step(&mut self, data: &[u8], mut out: Option<&mut Vec<u8>>) -> Result<usize, String> {
        let mut used = 0;
        loop {
            let rest = &data[used..];
            match self.state {
                DecState::Done => return Ok(used),
                DecState::UntilClose => {
                    if let Some(out) = out.as_mut() {
                        out.extend_from_slice(rest);
                    }
                    return Ok(data.len());
                }
                DecState::Length(n) | DecState::ChunkData(n) => {
                    if rest.is_empty() {
                        return Ok(used);
                    }
                    let take = n.min(rest.len() as u64);
                    if let Some(out) = out.as_mut() {
                        out.extend_from_slice(&rest[..take as usize]);
                    }
                    used += take as usize;
                    let left = n - take;
                    self.state = match self.state {
                        DecState::Length(_) if left == 0 => DecState::Done,
                        DecState::Length(_) => DecState::Length(left),
                        _ if left == 0 => DecState::ChunkEnd,
                        _ => DecState::ChunkData(left),
                    };
                }
                DecState::ChunkSize => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((len, size))) => {
                        used += len;
                        self.state = if size == 0 {
                            DecState::Trailers
                        } else {
                            DecState::ChunkData(size)
                        };
                    }
                    Ok(httparse::Status::Partial) if rest.len() < MAX_CHUNK_LINE => {
                        return Ok(used)
                    }
                    _ => return Err("invalid chunk size line".into()),
                },
                DecState::ChunkEnd => {
                    if rest.len() < 2 {
                        return Ok(used);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err("chunk data not followed by CRLF".into());
                    }
                    used += 2;
                    self.state = DecState::ChunkSize;
                }
                DecState::Trailers => match rest.windows(2).position(|w| w == b"\r\n") {
                    Some(0) => {
                        used += 2;
                        self.state = DecState::Done;
                    }
                    Some(i) if i < MAX_CHUNK_LINE => used += i + 2,
                    None if rest.len() < MAX_CHUNK_LINE => return Ok(used),
                    _ => return Err("trailer line too long".into()),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fed a byte at a time, the decoder takes exactly the message's body
    /// and yields its payload without the chunk framing.
    #[test]
    fn decodes_chunked_payload_fed_in_pieces() {
        let msg = b"5;x=y\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: t\r\n\r\nNEXT";
        let mut dec = Decoder::new(Framing::Chunked);
        let mut out = Vec::new();
        let mut used = 0;
        let mut fed = 0;
        while !dec.done() {
            fed += 1;
            used += dec.decode(&msg[used..fed], &mut out).unwrap();
        }
        assert_eq!(out, b"hello0123456789abcdef");
        assert_eq!(&msg[used..], b"NEXT");
        let mut dec = Decoder::new(Framing::Length(3));
        let mut out = Vec::new();
        assert_eq!(dec.decode(b"abcdef", &mut out), Ok(3));
        assert!(dec.done() && out == b"abc");
        assert!(Decoder::new(Framing::Chunked)
            .decode(b"zz\r\n", &mut Vec::new())
            .is_err());
    }
}
