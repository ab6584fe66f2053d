//! xtaci/smux's frame format, GOST's default stream multiplexer (the
//! `mtls`, `mws`, `mwss` and `mtcp` transports), as pure parse and encode
//! code.
//!
//! A frame is an 8-byte header, all integers little-endian:
//!
//! ```text
//! | version u8 | cmd u8 | length u16 | stream id u32 | payload (length bytes) |
//! ```
//!
//! Commands: `SYN` opens a stream, `FIN` ends one direction of it, `PSH`
//! carries data, `NOP` is the keep-alive, and version 2 adds `UPD`, a
//! window update whose 8-byte payload is the bytes consumed so far and the
//! receiver's window. The checks are smux's own (its `recvLoop`): the
//! version must be the session's, `SYN`, `FIN` and `NOP` carry nothing,
//! `UPD` exists only in version 2 with exactly 8 bytes. Anything else ends
//! the session, so every error here is fatal to it.

/// Bytes of a frame header.
pub const HEADER_LEN: usize = 8;

/// Bytes of an `UPD` payload: consumed, then window.
pub const UPD_LEN: usize = 8;

/// smux's first guess of a version-2 peer's window, before its first
/// `UPD` says otherwise.
pub const INITIAL_PEER_WINDOW: u32 = 262_144;

/// The largest payload one frame can carry (its length is 16 bits).
pub const MAX_PAYLOAD: usize = u16::MAX as usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    Syn = 0,
    Fin = 1,
    Psh = 2,
    Nop = 3,
    Upd = 4,
}

impl Cmd {
    fn from_byte(b: u8) -> Option<Cmd> {
        Some(match b {
            0 => Cmd::Syn,
            1 => Cmd::Fin,
            2 => Cmd::Psh,
            3 => Cmd::Nop,
            4 => Cmd::Upd,
            _ => return None,
        })
    }
}

/// A frame header that passed smux's checks; `length` payload bytes
/// follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub cmd: Cmd,
    pub length: u16,
    pub sid: u32,
}

/// Why a frame cannot be part of a session; each ends the session, as in
/// smux (`ErrInvalidProtocol`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("smux frame of version {got} in a version {want} session")]
    Version { got: u8, want: u8 },
    #[error("unknown smux command {0}")]
    Command(u8),
    #[error("smux {cmd:?} frame with a {length}-byte payload")]
    Length { cmd: Cmd, length: u16 },
    #[error("smux window update in a version 1 session")]
    UpdateInV1,
}

/// Parses and checks a header for a session of `version` (1 or 2).
pub fn parse_header(bytes: &[u8; HEADER_LEN], version: u8) -> Result<Header, FrameError> {
    if bytes[0] != version {
        return Err(FrameError::Version {
            got: bytes[0],
            want: version,
        });
    }
    let cmd = Cmd::from_byte(bytes[1]).ok_or(FrameError::Command(bytes[1]))?;
    let length = u16::from_le_bytes([bytes[2], bytes[3]]);
    let sid = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    match cmd {
        Cmd::Syn | Cmd::Fin | Cmd::Nop if length != 0 => {
            return Err(FrameError::Length { cmd, length })
        }
        Cmd::Upd if version != 2 => return Err(FrameError::UpdateInV1),
        Cmd::Upd if usize::from(length) != UPD_LEN => {
            return Err(FrameError::Length { cmd, length })
        }
        _ => {}
    }
    Ok(Header { cmd, length, sid })
}

/// Appends a header to `out`. The caller keeps `length` equal to the
/// payload it appends next.
pub fn encode_header(version: u8, cmd: Cmd, length: u16, sid: u32, out: &mut Vec<u8>) {
    out.push(version);
    out.push(cmd as u8);
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&sid.to_le_bytes());
}

/// A version-2 window update: the receiver has consumed `consumed` bytes
/// of the stream in all (modulo 2^32) and buffers up to `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowUpdate {
    pub consumed: u32,
    pub window: u32,
}

pub fn parse_update(bytes: &[u8; UPD_LEN]) -> WindowUpdate {
    WindowUpdate {
        consumed: u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
        window: u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
    }
}

/// Appends a whole `UPD` frame to `out`.
pub fn encode_update(sid: u32, update: WindowUpdate, out: &mut Vec<u8>) {
    encode_header(2, Cmd::Upd, UPD_LEN as u16, sid, out);
    out.extend_from_slice(&update.consumed.to_le_bytes());
    out.extend_from_slice(&update.window.to_le_bytes());
}

/// Appends a `PSH` frame carrying `data` (at most [`MAX_PAYLOAD`] bytes,
/// which a caller splitting by its frame size never exceeds).
pub fn encode_data(version: u8, sid: u32, data: &[u8], out: &mut Vec<u8>) {
    let length = u16::try_from(data.len()).expect("smux payload over 65535 bytes");
    encode_header(version, Cmd::Psh, length, sid, out);
    out.extend_from_slice(data);
}

/// One whole frame, borrowed from a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    Syn(u32),
    Fin(u32),
    Psh(u32, &'a [u8]),
    Nop(u32),
    Upd(u32, WindowUpdate),
}

/// The first frame of `buf` for a session of `version` and its length in
/// bytes; `None` while `buf` holds only part of it.
pub fn decode(buf: &[u8], version: u8) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let Some(head) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let h = parse_header(head, version)?;
    let end = HEADER_LEN + usize::from(h.length);
    let Some(payload) = buf.get(HEADER_LEN..end) else {
        return Ok(None);
    };
    let frame = match h.cmd {
        Cmd::Syn => Frame::Syn(h.sid),
        Cmd::Fin => Frame::Fin(h.sid),
        Cmd::Nop => Frame::Nop(h.sid),
        Cmd::Psh => Frame::Psh(h.sid, payload),
        Cmd::Upd => match payload.first_chunk::<UPD_LEN>() {
            Some(b) => Frame::Upd(h.sid, parse_update(b)),
            None => {
                return Err(FrameError::Length {
                    cmd: h.cmd,
                    length: h.length,
                })
            }
        },
    };
    Ok(Some((frame, end)))
}

/// Appends `frame` as a session of `version` sends it.
pub fn encode(frame: Frame<'_>, version: u8, out: &mut Vec<u8>) {
    match frame {
        Frame::Syn(sid) => encode_header(version, Cmd::Syn, 0, sid, out),
        Frame::Fin(sid) => encode_header(version, Cmd::Fin, 0, sid, out),
        Frame::Nop(sid) => encode_header(version, Cmd::Nop, 0, sid, out),
        Frame::Psh(sid, data) => encode_data(version, sid, data, out),
        Frame::Upd(sid, upd) => encode_update(sid, upd, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames as smux's `sendLoop` writes them: `buf[0] = ver`,
    /// `buf[1] = cmd`, `PutUint16(buf[2:], len)`, `PutUint32(buf[4:], sid)`.
    #[test]
    fn syn_fin_nop_frames_are_smux_bytes() {
        let cases: [(Frame, u8, &[u8]); 5] = [
            (Frame::Syn(1), 1, &[1, 0, 0, 0, 1, 0, 0, 0]),
            (Frame::Syn(3), 2, &[2, 0, 0, 0, 3, 0, 0, 0]),
            (Frame::Fin(0x0102_0304), 1, &[1, 1, 0, 0, 4, 3, 2, 1]),
            (Frame::Nop(0), 1, &[1, 3, 0, 0, 0, 0, 0, 0]),
            (Frame::Nop(0), 2, &[2, 3, 0, 0, 0, 0, 0, 0]),
        ];
        for (frame, version, bytes) in cases {
            let mut out = Vec::new();
            encode(frame, version, &mut out);
            assert_eq!(out, bytes, "{frame:?}");
            assert_eq!(decode(bytes, version), Ok(Some((frame, bytes.len()))));
        }
    }

    #[test]
    fn psh_frame_carries_its_payload_after_a_little_endian_length() {
        let data = vec![0xab; 300];
        let mut out = Vec::new();
        encode(Frame::Psh(5, &data), 1, &mut out);
        assert_eq!(&out[..8], &[1, 2, 0x2c, 0x01, 5, 0, 0, 0]);
        assert_eq!(&out[8..], &data[..]);
        assert_eq!(decode(&out, 1), Ok(Some((Frame::Psh(5, &data), 308))));
        // A frame followed by the next one's first bytes.
        out.extend_from_slice(&[1, 3]);
        assert_eq!(decode(&out, 1).unwrap().unwrap().1, 308);
    }

    /// `UPD` in version 2: `|4B consumed|4B window|`, smux's `updHeader`.
    #[test]
    fn upd_frame_is_consumed_then_window() {
        let upd = WindowUpdate {
            consumed: 70_000,
            window: 65_536,
        };
        let mut out = Vec::new();
        encode(Frame::Upd(7, upd), 2, &mut out);
        assert_eq!(
            out,
            [2, 4, 8, 0, 7, 0, 0, 0, 0x70, 0x11, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00]
        );
        assert_eq!(decode(&out, 2), Ok(Some((Frame::Upd(7, upd), 16))));
    }

    #[test]
    fn smux_protocol_errors_are_refused() {
        let bad: [(&[u8], u8, FrameError); 6] = [
            (
                &[2, 0, 0, 0, 1, 0, 0, 0],
                1,
                FrameError::Version { got: 2, want: 1 },
            ),
            (&[1, 9, 0, 0, 1, 0, 0, 0], 1, FrameError::Command(9)),
            (
                &[1, 0, 1, 0, 1, 0, 0, 0],
                1,
                FrameError::Length {
                    cmd: Cmd::Syn,
                    length: 1,
                },
            ),
            (
                &[1, 3, 0, 1, 0, 0, 0, 0],
                1,
                FrameError::Length {
                    cmd: Cmd::Nop,
                    length: 256,
                },
            ),
            (&[1, 4, 8, 0, 1, 0, 0, 0], 1, FrameError::UpdateInV1),
            (
                &[2, 4, 4, 0, 1, 0, 0, 0],
                2,
                FrameError::Length {
                    cmd: Cmd::Upd,
                    length: 4,
                },
            ),
        ];
        for (bytes, version, err) in bad {
            assert_eq!(decode(bytes, version), Err(err), "{bytes:?}");
        }
    }

    #[test]
    fn truncated_frames_ask_for_more() {
        let mut whole = Vec::new();
        encode(Frame::Psh(1, b"hello"), 1, &mut whole);
        for end in 0..whole.len() {
            assert_eq!(decode(&whole[..end], 1), Ok(None), "first {end} bytes");
        }
    }

    /// Fuzz-style: every input is a frame, a need for more, or an error;
    /// never a panic, and a frame's length never runs past the input.
    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Half the time a plausible header, to reach the payload paths.
            if len >= 4 && next() % 2 == 0 {
                buf[0] = 1 + (next() % 2) as u8;
                buf[1] = (next() % 6) as u8;
                buf[2] = (next() % 24) as u8;
                buf[3] = 0;
            }
            for version in [1, 2] {
                if let Ok(Some((_, used))) = decode(&buf, version) {
                    assert!(used <= buf.len());
                }
            }
        }
    }
}
