//! Helpers shared by the tunnel transport tests (mux, h2, grpc): TLS
//! query strings from the test PKI, service stats from the web API,
//! counting established TCP connections, and a SOCKS5 CONNECT.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::homed::logs;
use crate::pki::Pki;
use crate::{api_config, Gost, TIMEOUT};

/// The listener query naming the server certificate and key.
pub fn cert_query(pki: &Pki) -> String {
    format!("certFile={}&keyFile={}", pki.server, pki.server_key)
}

/// The dialer query that verifies the server against the test CA.
pub fn verify(pki: &Pki) -> String {
    format!("secure=true&caFile={}&serverName=localhost", pki.ca)
}

/// A stats counter, 0 when absent.
pub fn n(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

/// A service's stats from the web API on `api`.
pub fn stats(api: u16, name: &str) -> serde_json::Value {
    api_config(api)["services"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .map(|s| s["status"]["stats"].clone())
        .unwrap_or_default()
}

/// Polls a service's stats until `pred` holds; the logs of `gs` on failure.
pub fn wait_stats(
    api: u16,
    name: &str,
    gs: &[&Gost],
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let st = stats(api, name);
        if pred(&st) {
            return st;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "stats of {name} never matched: {st}\n{}",
            logs(gs)
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Established TCP connections whose local port is `port` (in this
/// network namespace), from the kernel's tables.
pub fn established_on(port: u16) -> usize {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| t.lines().skip(1).map(str::to_string).collect::<Vec<_>>())
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let local_port = cols
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            local_port == Some(port) && cols.get(3) == Some(&"01")
        })
        .count()
}

/// A SOCKS5 CONNECT to `target` through the proxy on `port`, ready to use.
pub fn socks5_connect(port: u16, target: SocketAddr) -> TcpStream {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(&[5, 1, 0]).unwrap();
    let mut greet = [0u8; 2];
    c.read_exact(&mut greet).unwrap();
    assert_eq!(greet, [5, 0]);
    let SocketAddr::V4(t) = target else {
        panic!("IPv4 target expected")
    };
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&t.ip().octets());
    req.extend_from_slice(&t.port().to_be_bytes());
    c.write_all(&req).unwrap();
    let mut reply = [0u8; 10];
    c.read_exact(&mut reply).unwrap();
    assert_eq!(reply[1], 0, "SOCKS5 reply {reply:?}");
    c
}

/// Echoes `size` random bytes through each of `conns` at once (to an
/// echo server), writing and reading each in threads of its own so
/// neither side's buffers fill, and checks every byte came back.
pub fn echo_concurrently(conns: Vec<TcpStream>, size: usize) {
    let workers: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            thread::spawn(move || {
                let msg = crate::random_bytes(size, i as u64);
                let mut w = s.try_clone().unwrap();
                let sent = msg.clone();
                let writer = thread::spawn(move || w.write_all(&sent).unwrap());
                let mut back = vec![0u8; msg.len()];
                s.read_exact(&mut back).unwrap();
                writer.join().unwrap();
                assert!(back == msg, "connection {i}: bytes differ");
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
}
