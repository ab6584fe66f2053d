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
use gost::config::PluginConfig;
use gost::handler::socks::{Socks5Handler, Socks5Options};
use gost::handler::{ConnContext, Handler, HandlerDeps};
use gost::listener::Conn;
use gost::plugin::handler::WasmHandler;
use gost::plugin::PluginSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PLUGIN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../plugins/target/wasm32-wasip2/release/faulty.wasm"
);
const SOCKS5_PLUGIN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../plugins/target/wasm32-wasip2/release/socks5.wasm"
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
                };
                h.handle(Conn::Tcp(s), ctx).await.unwrap();
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

/// Serves `iters` SOCKS5 CONNECTs to `target` and returns the time from
/// handing the connection to the handler until the client read the reply.
async fn socks5(
    l: &TcpListener,
    addr: SocketAddr,
    target: SocketAddr,
    h: &dyn Handler,
    iters: u64,
) -> Duration {
    let std::net::IpAddr::V4(ip) = target.ip() else {
        unreachable!("the target listens on 127.0.0.1")
    };
    let mut hello = vec![5, 1, 0, 5, 1, 0, 1];
    hello.extend_from_slice(&ip.octets());
    hello.extend_from_slice(&target.port().to_be_bytes());
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let mut c = TcpStream::connect(addr).unwrap();
        let (s, peer) = l.accept().unwrap();
        c.write_all(&hello).unwrap();
        c.set_nonblocking(true).unwrap();
        s.set_nonblocking(true).unwrap();
        let mut c = tokio::net::TcpStream::from_std(c).unwrap();
        let s = tokio::net::TcpStream::from_std(s).unwrap();
        let ctx = ConnContext {
            service: "bench".into(),
            peer,
            local: addr,
            stats: None,
        };
        let start = Instant::now();
        let served = h.handle(Conn::Tcp(s), ctx);
        tokio::pin!(served);
        let mut reply = [0u8; 12];
        tokio::select! {
            biased;
            r = &mut served => panic!("handler ended before replying: {r:?}"),
            r = c.read_exact(&mut reply) => r.unwrap(),
        };
        total += start.elapsed();
        assert_eq!(
            &reply[..4],
            &[5, 0, 5, 0],
            "method choice and CONNECT reply"
        );
        drop(c);
        served.await.unwrap();
    }
    total
}

fn wasm_handler(path: &str, isolation: &str) -> WasmHandler {
    let spec = PluginSpec::from_config(&PluginConfig {
        r#type: "wasm".into(),
        path: path.into(),
        isolation: isolation.into(),
        ..Default::default()
    })
    .unwrap();
    WasmHandler::new(spec, "bench", HandlerDeps::default(), Default::default()).unwrap()
}

/// A runtime and the proxy-side listener, once `plugin` is built.
fn setup(plugin: &str) -> (tokio::runtime::Runtime, TcpListener, SocketAddr) {
    assert!(
        std::path::Path::new(plugin).exists(),
        "build the plugins first: cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    (rt, l, addr)
}

fn per_connection(c: &mut Criterion) {
    let (rt, l, addr) = setup(PLUGIN);
    let warm = wasm_handler(PLUGIN, "pooled");
    let fresh = wasm_handler(PLUGIN, "per-connection");
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
    // The target takes each connection and closes it, which ends the
    // relay after the timed part.
    let t = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = t.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in t.incoming() {
            drop(s);
        }
    });
    let native = Socks5Handler::new(Default::default(), None, Socks5Options::default());
    let wasm = wasm_handler(SOCKS5_PLUGIN, "pooled");
    let mut g = c.benchmark_group("socks5 handshake");
    for (name, h) in [
        ("native", &native as &dyn Handler),
        ("wasm warm instance", &wasm),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| rt.block_on(socks5(&l, addr, target, h, iters)))
        });
    }
    g.finish();
}

criterion_group!(benches, per_connection, socks5_handshake);
criterion_main!(benches);
