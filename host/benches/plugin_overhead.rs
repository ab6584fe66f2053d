//! Per-connection cost of a wasm handler, with criterion: instance checkout
//! plus the `handle` call, measured by serving a one-byte echo through the
//! `faulty` example plugin (read a byte, write it back, done: two host
//! calls), beside the same echo done natively over the same kind of
//! loopback socket pair. The plugin's overhead is the difference.
//!
//!     cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml
//!     cargo bench -p gost-host --bench plugin_overhead
//!
//! Only the server side of each connection is timed; connecting and the
//! client's read happen outside the measured span.
//!
//! A second group runs a whole SOCKS5 CONNECT handshake through the native
//! `socks5` handler and through the example `socks5` plugin: the client
//! sends its greeting and request in one write, the handler dials a local
//! target, and the time runs until the client holds the reply. This is
//! the per-connection work the connection-rate benchmark repeats.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use gost_handler::socks::{Socks5Handler, Socks5Options};
use gost_handler::{ConnContext, Handler};
use gost_plugin::handler::WasmHandler;
use gost_transport::listener::Conn;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;

use common::{closing_target, setup, socks5, wasm_handler, SOCKS5_PLUGIN};

const FAULTY_PLUGIN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../plugins/target/wasm32-wasip2/release/faulty.wasm"
);

/// One connection's server side, with the client's byte already sent.
fn pair(l: &TcpListener, addr: SocketAddr) -> (TcpStream, tokio::net::TcpStream, SocketAddr) {
    let mut c = TcpStream::connect(addr).unwrap();
    let (s, peer) = l.accept().unwrap();
    c.write_all(b"e").unwrap();
    s.set_nonblocking(true).unwrap();
    (c, tokio::net::TcpStream::from_std(s).unwrap(), peer)
}

/// Serves `iters` connections and returns the time spent serving them.
async fn serve(
    l: &TcpListener,
    addr: SocketAddr,
    wasm: Option<&WasmHandler>,
    iters: u64,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let (mut c, s, peer) = pair(l, addr);
        let start = Instant::now();
        match wasm {
            Some(h) => {
                let ctx = ConnContext {
                    service: "bench".into(),
                    peer,
                    local: addr,
                    stats: None,
                    traffic: None,
                };
                h.handle(Conn::Stream(s.into()), ctx).await.unwrap();
            }
            None => {
                let mut s = s;
                let mut b = [0u8; 1];
                s.read_exact(&mut b).await.unwrap();
                s.write_all(&b).await.unwrap();
            }
        }
        total += start.elapsed();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).unwrap();
    }
    total
}

fn per_connection(c: &mut Criterion) {
    let (rt, l, addr) = setup(FAULTY_PLUGIN);
    let warm = wasm_handler(FAULTY_PLUGIN, "pooled");
    let fresh = wasm_handler(FAULTY_PLUGIN, "per-connection");
    let mut g = c.benchmark_group("connection");
    for (name, wasm) in [
        ("native echo", None),
        ("wasm warm instance", Some(&warm)),
        ("wasm fresh instance", Some(&fresh)),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| rt.block_on(serve(&l, addr, wasm, iters)))
        });
    }
    g.finish();
}

fn socks5_handshake(c: &mut Criterion) {
    let (rt, l, addr) = setup(SOCKS5_PLUGIN);
    let target = closing_target();
    let native = Socks5Handler::new(Default::default(), None, Socks5Options::default());
    let wasm = wasm_handler(SOCKS5_PLUGIN, "pooled");
    let mut g = c.benchmark_group("socks5 handshake");
    for (name, h) in [
        ("native", &native as &dyn Handler),
        ("wasm warm instance", &wasm),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| rt.block_on(socks5(&l, addr, target, h, iters, false)))
        });
    }
    g.finish();
}

criterion_group!(benches, per_connection, socks5_handshake);
criterion_main!(benches);
