//! Set-up shared by the plugin benches: the example plugins' paths, a
//! plugin handler, and a SOCKS5 CONNECT client timed against any handler.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use gost_core::config::PluginConfig;
use gost_handler::{ConnContext, Handler, HandlerDeps};
use gost_plugin::handler::WasmHandler;
use gost_plugin::PluginSpec;
use gost_transport::listener::Conn;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const SOCKS5_PLUGIN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../plugins/target/wasm32-wasip2/release/socks5.wasm"
);

/// Serves `iters` SOCKS5 CONNECTs to `target` and returns the time from
/// handing the connection to the handler until the client read the reply.
/// The client sends greeting and request in one write before the handler
/// starts, so it never waits; with `two_step` it sends the request only
/// after the method reply, as curl and the load generator do, and the
/// handler waits once per handshake.
pub async fn socks5(
    l: &TcpListener,
    addr: SocketAddr,
    target: SocketAddr,
    h: &dyn Handler,
    iters: u64,
    two_step: bool,
) -> Duration {
    let std::net::IpAddr::V4(ip) = target.ip() else {
        unreachable!("the target listens on 127.0.0.1")
    };
    let mut hello = vec![5, 1, 0, 5, 1, 0, 1];
    hello.extend_from_slice(&ip.octets());
    hello.extend_from_slice(&target.port().to_be_bytes());
    let (first, later) = hello.split_at(if two_step { 3 } else { hello.len() });
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let mut c = TcpStream::connect(addr).unwrap();
        let (s, peer) = l.accept().unwrap();
        c.write_all(first).unwrap();
        c.set_nonblocking(true).unwrap();
        s.set_nonblocking(true).unwrap();
        let mut c = tokio::net::TcpStream::from_std(c).unwrap();
        let s = tokio::net::TcpStream::from_std(s).unwrap();
        let ctx = ConnContext {
            service: "bench".into(),
            peer,
            local: addr,
            stats: None,
            traffic: None,
        };
        let start = Instant::now();
        let served = h.handle(Conn::Stream(s.into()), ctx);
        tokio::pin!(served);
        let mut reply = [0u8; 12];
        let talk = async {
            if !later.is_empty() {
                c.read_exact(&mut reply[..2]).await?;
                c.write_all(later).await?;
                return c.read_exact(&mut reply[2..]).await;
            }
            c.read_exact(&mut reply).await
        };
        tokio::select! {
            biased;
            r = &mut served => panic!("handler ended before replying: {r:?}"),
            r = talk => r.unwrap(),
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

pub fn wasm_handler(path: &str, isolation: &str) -> WasmHandler {
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
pub fn setup(plugin: &str) -> (tokio::runtime::Runtime, TcpListener, SocketAddr) {
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

/// A target that takes each connection and closes it, which ends the
/// relay after the timed part of a handshake.
pub fn closing_target() -> SocketAddr {
    let t = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = t.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in t.incoming() {
            drop(s);
        }
    });
    target
}
