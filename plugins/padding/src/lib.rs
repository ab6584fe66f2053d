//! A padding obfuscator, both ends of a connection: every chunk goes out
//! as frames of
//!
//! ```text
//! len (u16, big-endian) | pad (u8) | data (len bytes) | padding (pad bytes)
//! ```
//!
//! with `data` XORed with a keystream derived from `config.key` (the same
//! on both ends) and `pad` random-looking, so neither the lengths nor the
//! bytes of the protocol inside show on the wire. It hides a protocol's
//! fingerprint from a passive observer; it is not encryption.

use std::cell::RefCell;

use gost_plugin_sdk::transport::Side;
use gost_plugin_sdk::Transport;
use serde_json::Value;

/// The largest frame payload: the length field's range.
const MAX_FRAME: usize = u16::MAX as usize;
const HEADER: usize = 3;

/// xorshift64*: cheap, and enough for a mask that only has to look random.
struct Keystream(u64);

impl Keystream {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn mask(&mut self, data: &mut [u8]) {
        for chunk in data.chunks_mut(8) {
            let k = self.next().to_le_bytes();
            for (b, k) in chunk.iter_mut().zip(k) {
                *b ^= k;
            }
        }
    }
}

struct State {
    /// Masks what this end sends.
    out: Keystream,
    /// Unmasks what the peer sent.
    inp: Keystream,
    /// Chooses padding lengths and bytes.
    pad: Keystream,
    /// Wire bytes of a frame not complete yet.
    partial: Vec<u8>,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

fn seed() -> u64 {
    let config: Value =
        serde_json::from_str(&gost_plugin_sdk::config_json()).unwrap_or(Value::Null);
    let key = config["key"].as_str().unwrap_or("gost-padding");
    // FNV-1a, never zero (xorshift would stay at zero).
    let h = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    h | 1
}

struct Padding;

impl Transport for Padding {
    fn start(side: Side) -> Result<Vec<u8>, String> {
        let seed = seed();
        // Each direction its own keystream, so the two ends agree whatever
        // order their chunks interleave in.
        let (out, inp) = match side {
            Side::Client => (seed, seed.rotate_left(17) | 1),
            Side::Server => (seed.rotate_left(17) | 1, seed),
        };
        STATE.with(|s| {
            *s.borrow_mut() = Some(State {
                out: Keystream(out),
                inp: Keystream(inp),
                pad: Keystream(seed ^ 0x9e37_79b9_7f4a_7c15 | 1),
                partial: Vec::new(),
            })
        });
        Ok(Vec::new())
    }

    fn encode(mut data: Vec<u8>) -> Result<Vec<u8>, String> {
        with_state(|st| {
            let mut wire = Vec::with_capacity(data.len() + 64);
            for chunk in data.chunks_mut(MAX_FRAME) {
                let pad = (st.pad.next() % 64) as usize;
                wire.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
                wire.push(pad as u8);
                st.out.mask(chunk);
                wire.extend_from_slice(chunk);
                let fill = st.pad.next().to_le_bytes();
                wire.extend((0..pad).map(|i| fill[i % 8] ^ i as u8));
            }
            Ok(wire)
        })
    }

    fn decode(data: Vec<u8>) -> Result<Vec<u8>, String> {
        with_state(|st| {
            let mut wire = std::mem::take(&mut st.partial);
            wire.extend_from_slice(&data);
            let mut out = Vec::with_capacity(wire.len());
            let mut at = 0;
            while wire.len() - at >= HEADER {
                let len = u16::from_be_bytes([wire[at], wire[at + 1]]) as usize;
                let pad = wire[at + 2] as usize;
                if pad >= 64 {
                    return Err(format!("bad frame: {pad} bytes of padding"));
                }
                let end = at + HEADER + len + pad;
                if wire.len() < end {
                    break;
                }
                let start = out.len();
                out.extend_from_slice(&wire[at + HEADER..at + HEADER + len]);
                st.inp.mask(&mut out[start..]);
                at = end;
            }
            st.partial = wire.split_off(at);
            Ok(out)
        })
    }
}

fn with_state(f: impl FnOnce(&mut State) -> Result<Vec<u8>, String>) -> Result<Vec<u8>, String> {
    STATE.with(|s| match s.borrow_mut().as_mut() {
        Some(st) => f(st),
        None => Err("start was not called".into()),
    })
}

gost_plugin_sdk::export_transport!(Padding);
