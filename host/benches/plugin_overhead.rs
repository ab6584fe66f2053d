//! Per-connection cost of a wasm handler: instance checkout plus the
//! `handle` call, measured as the difference between serving a one-byte
//! echo through the `faulty` example plugin (read a byte, write it back,
//! done: two host calls) and the same echo done natively, over the same
//! loopback socket pairs. Prints microseconds per connection.
//!
//!     cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml
//!     cargo bench -p gost-host --bench plugin_overhead
//!
//! A plain timing loop rather than criterion, to keep criterion's
//! dependencies out of the workspace build.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use gost::config::PluginConfig;
use gost::handler::{ConnContext, Handler, HandlerDeps};
use gost::listener::Conn;
use gost::plugin::handler::WasmHandler;
use gost::plugin::PluginSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROUNDS: usize = 5;
const PER_ROUND: usize = 4000;

/// One connection's server side, with the client's byte already sent.
fn pair(l: &TcpListener, addr: SocketAddr) -> (TcpStream, tokio::net::TcpStream, SocketAddr) {
    let mut c = TcpStream::connect(addr).unwrap();
    let (s, peer) = l.accept().unwrap();
    c.write_all(b"e").unwrap();
    s.set_nonblocking(true).unwrap();
    (c, tokio::net::TcpStream::from_std(s).unwrap(), peer)
}

async fn run(l: &TcpListener, addr: SocketAddr, wasm: Option<&WasmHandler>) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..PER_ROUND {
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
    total / PER_ROUND as u32
}

fn handler(path: &str, isolation: &str) -> WasmHandler {
    let spec = PluginSpec::from_config(&PluginConfig {
        r#type: "wasm".into(),
        path: path.into(),
        isolation: isolation.into(),
        ..Default::default()
    })
    .unwrap();
    WasmHandler::new(spec, "bench", HandlerDeps::default(), Default::default()).unwrap()
}

fn main() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../plugins/target/wasm32-wasip2/release/faulty.wasm"
    );
    assert!(
        std::path::Path::new(path).exists(),
        "build the plugins first: cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let warm = handler(path, "pooled");
    let fresh = handler(path, "per-connection");
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mut rows = Vec::new();
    rt.block_on(async {
        // Warm-up: compile caches, pool, socket paths.
        run(&l, addr, Some(&warm)).await;
        for _ in 0..ROUNDS {
            let native = run(&l, addr, None).await;
            let pooled = run(&l, addr, Some(&warm)).await;
            let isolated = run(&l, addr, Some(&fresh)).await;
            rows.push((us(native), us(pooled), us(isolated)));
        }
    });
    let median = |f: fn(&(f64, f64, f64)) -> f64| {
        let mut v: Vec<f64> = rows.iter().map(f).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (n, p, i) = (median(|r| r.0), median(|r| r.1), median(|r| r.2));
    println!("per connection, median of {ROUNDS} rounds x {PER_ROUND} connections:");
    println!("  native 1-byte echo:            {n:7.2} us");
    println!(
        "  wasm, warm instance:           {p:7.2} us  (plugin overhead {:5.2} us)",
        p - n
    );
    println!(
        "  wasm, fresh instance each:     {i:7.2} us  (plugin overhead {:5.2} us)",
        i - n
    );
}
