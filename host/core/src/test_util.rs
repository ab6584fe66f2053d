//! Helpers shared by the library's unit tests.

use tokio::net::{TcpListener, TcpStream};

/// A connection's context for tests: a loopback client, no limiter.
pub fn ctx(stats: Option<std::sync::Arc<crate::stats::Stats>>) -> crate::context::ConnContext {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
    crate::context::ConnContext {
        service: "test".into(),
        peer: addr,
        local: addr,
        stats,
        traffic: None,
    }
}

/// A connected loopback TCP pair: (the connecting side, the accepted side).
pub async fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    (c, l.accept().await.unwrap().0)
}

/// `count` inputs for a parser, each with the seed that makes it, for a
/// failure message to name: see [`mutated`].
pub fn mutations<'a>(
    valid: &'a [&'a [u8]],
    count: u64,
) -> impl Iterator<Item = (u64, Vec<u8>)> + 'a {
    (1..=count).map(move |seed| (seed, mutated(valid, seed)))
}

/// One of `valid` (picked by `seed`) with up to four mutations: a byte
/// changed, bytes cut off, random bytes inserted or appended. The same
/// seed gives the same bytes.
pub fn mutated(valid: &[&[u8]], seed: u64) -> Vec<u8> {
    // xorshift64 from a non-zero state.
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = valid[(next() % valid.len() as u64) as usize].to_vec();
    for _ in 0..next() % 5 {
        let at = (next() % (out.len() as u64 + 1)) as usize;
        match next() % 4 {
            0 if at < out.len() => out[at] = next() as u8,
            1 => out.truncate(at),
            2 => out.insert(at, next() as u8),
            _ => {
                let n = next() % 64;
                out.extend((0..n).map(|_| next() as u8));
            }
        }
    }
    out
}
