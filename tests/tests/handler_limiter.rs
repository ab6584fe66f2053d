//! Handler `limiter` (GOST's handler-level traffic limiter). GOST asks it
//! per authenticated client, and its built-in limiter (inline `limits`,
//! a `file`) gives nothing for that scope, so a handler limiter with such
//! limits paces nothing there, while the same limiter as the service's
//! `limiter` does. gost-rs does the same and says so at start-up.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use gost_e2e::*;

/// Seconds to echo `len` bytes through the forwarder on `port`.
fn echo_secs(port: u16, len: usize) -> f64 {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let data = random_bytes(len, 7);
    let mut w = c.try_clone().unwrap();
    let start = Instant::now();
    let writer = std::thread::spawn(move || w.write_all(&data).unwrap());
    let mut got = vec![0u8; len];
    c.read_exact(&mut got).unwrap();
    writer.join().unwrap();
    start.elapsed().as_secs_f64()
}

#[test]
fn a_handler_limiter_with_inline_limits_paces_nothing_as_in_gost() {
    let echo = tcp_echo_server();
    let (ph, ps) = (free_port(), free_port());
    let dir = TempDir::new("handler-limiter");
    let cfg = dir.write(
        "gost.yaml",
        &format!(
            r#"
services:
- {{name: h, addr: "127.0.0.1:{ph}", handler: {{type: tcp, limiter: slow}}, listener: {{type: tcp}}, forwarder: {{nodes: [{{name: e, addr: "{echo}"}}]}}}}
- {{name: s, addr: "127.0.0.1:{ps}", limiter: slow, handler: {{type: tcp}}, listener: {{type: tcp}}, forwarder: {{nodes: [{{name: e, addr: "{echo}"}}]}}}}
limiters:
- {{name: slow, limits: ["$ 256KB 256KB"]}}
"#
        ),
    );
    let g = Gost::start(&["-C", &cfg]);
    g.wait_tcp(ph);
    g.wait_tcp(ps);
    g.wait_log("handler.limiter paces nothing");
    // 1 MiB at 256 KiB/s would take 4 s; unpaced it takes far less.
    let free = echo_secs(ph, 1 << 20);
    assert!(free < 1.5, "handler limiter paced: {free:.2} s");
    let paced = echo_secs(ps, 512 << 10);
    assert!(paced > 1.5, "service limiter did not pace: {paced:.2} s");
}

#[test]
fn a_handler_limiter_that_does_not_exist_or_parse_is_refused() {
    let dir = TempDir::new("handler-limiter-bad");
    for (limiter, limiters, want) in [
        ("missing", "[]", "handler.limiter"),
        (
            "bad",
            "[{name: bad, limits: [\"$ fast\"]}]",
            "invalid size \"fast\"",
        ),
    ] {
        let cfg = dir.write(
            "gost.yaml",
            &format!("services:\n- {{name: h, addr: \"127.0.0.1:0\", handler: {{type: tcp, limiter: {limiter}}}, listener: {{type: tcp}}, forwarder: {{nodes: [{{name: e, addr: \"127.0.0.1:1\"}}]}}}}\nlimiters: {limiters}\n"),
        );
        let (status, _, err) = run_gost(&["-C", &cfg]);
        assert!(!status.success(), "{limiter} started");
        assert!(err.contains(want), "{err}");
    }
}
