//! Hostile names (newlines that forge a log line, ESC, NUL, C1 controls,
//! bidirectional overrides) sent to each handler never reach the log raw,
//! in the text and the JSON format.

use std::io::{Read, Write};
use std::net::TcpStream;

use gost_e2e::*;

/// A forged line: were the newline written raw, the log would show a line
/// starting with this timestamp.
const FORGED: &str = "2001-02-03T00:00:00.000000Z  INFO gost::service: FAKE";

fn connect(port: u16) -> TcpStream {
    let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c
}

/// Reads until the peer closes or a read fails: the handler is done.
fn drain(mut c: TcpStream) {
    let mut b = [0u8; 512];
    while matches!(c.read(&mut b), Ok(n) if n > 0) {}
}

fn socks5(port: u16, host: &[u8]) {
    let mut c = connect(port);
    c.write_all(&[5, 1, 0]).unwrap();
    let mut r = [0u8; 2];
    c.read_exact(&mut r).unwrap();
    let mut req = vec![5, 1, 0, 3, host.len() as u8];
    req.extend_from_slice(host);
    req.extend_from_slice(&80u16.to_be_bytes());
    c.write_all(&req).unwrap();
    drain(c);
}

/// SOCKS4a: the user id and the domain each end at a NUL, so neither can
/// carry one.
fn socks4a(port: u16, user: &[u8], host: &[u8]) {
    let mut c = connect(port);
    let mut req = vec![4, 1, 0, 80, 0, 0, 0, 1];
    req.extend_from_slice(user);
    req.push(0);
    req.extend_from_slice(host);
    req.push(0);
    c.write_all(&req).unwrap();
    drain(c);
}

/// URIs may carry bytes 0x80-0xff, so C1 controls and bidi marks in UTF-8.
fn http(port: u16, target: &str) {
    let mut c = connect(port);
    c.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .unwrap();
    drain(c);
}

fn relay(port: u16, host: &[u8]) {
    let mut c = connect(port);
    let mut addr = vec![3, host.len() as u8];
    addr.extend_from_slice(host);
    addr.extend_from_slice(&80u16.to_be_bytes());
    let mut feature = vec![2];
    feature.extend_from_slice(&(addr.len() as u16).to_be_bytes());
    feature.extend_from_slice(&addr);
    let mut req = vec![1, 1];
    req.extend_from_slice(&(feature.len() as u16).to_be_bytes());
    req.extend_from_slice(&feature);
    c.write_all(&req).unwrap();
    drain(c);
}

/// A sniffed Host no node takes is logged. A header value may carry bytes
/// 0x80-0xff (a request target may not), so C1 controls and bidi marks.
fn sniffed(port: u16, host: &str) {
    let mut c = connect(port);
    c.write_all(format!("GET /p HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .unwrap();
    drain(c);
}

fn run(format: &str) -> String {
    let dir = TempDir::new(&format!("loginj-{format}"));
    let out = dir.path("gost.log");
    let ports: Vec<u16> = (0..5).map(|_| free_port()).collect();
    let svc = |name: &str, port: u16, handler: &str| {
        format!("- name: {name}\n  addr: 127.0.0.1:{port}\n  handler: {handler}\n  listener: {{type: tcp}}\n")
    };
    let cfg = format!(
        "log:\n  level: debug\n  format: {format}\n  output: {out}\nservices:\n{}{}{}{}{}  forwarder:\n    nodes:\n    - {{name: only, addr: \"127.0.0.1:1\", filter: {{host: only.test}}}}\n",
        svc("s5", ports[0], "{type: socks5}"),
        svc("s4", ports[1], "{type: socks4}"),
        svc("web", ports[2], "{type: http}"),
        svc("rl", ports[3], "{type: relay}"),
        svc("fwd", ports[4], "{type: tcp, metadata: {sniffing: true, sniffing.timeout: 5s}}"),
    );
    let file = dir.write("gost.yaml", &cfg);
    let g = Gost::start(&["-C", &file]);
    for p in &ports {
        g.wait_tcp(*p);
    }
    let hostile = format!("x\n{FORGED}\x1b[31m\0\u{202e}\u{9b}");
    socks5(ports[0], hostile.as_bytes());
    let no_nul = hostile.replace('\0', "");
    socks4a(ports[1], no_nul.as_bytes(), no_nul.as_bytes());
    http(ports[2], "x\u{9b}31m\u{85}FAKE\u{202e}\u{2028}y:80");
    relay(ports[3], hostile.as_bytes());
    sniffed(ports[4], "h\u{85}\u{202e}\u{2028}\u{9b}2J");
    drop(g);
    std::fs::read_to_string(&out).expect("the log file is UTF-8 text")
}

/// Nothing but printable text and the line ends: no control, C1, bidi or
/// separator character, and no line a client wrote.
fn assert_clean(log: &str) {
    for c in log.chars() {
        let bad = (c.is_control() && c != '\n')
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        assert!(!bad, "raw {c:?} in the log:\n{log}");
    }
    for line in log.lines() {
        assert!(!line.starts_with("2001-02-03"), "forged line {line:?}");
    }
}

#[test]
fn hostile_names_are_escaped_in_the_text_log() {
    let log = run("text");
    assert_clean(&log);
    // Every handler saw its name: each shows, escaped, in some line.
    for (svc, needle) in [
        ("s5", "x\\n2001-02-03"),
        ("s4", "x\\n2001-02-03"),
        ("web", "FAKE"),
        ("rl", "x\\n2001-02-03"),
        ("fwd", "h\\u{85}"),
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("service={svc}")) && l.contains(needle)),
            "no escaped name from {svc} in:\n{log}"
        );
    }
}

#[test]
fn hostile_names_are_escaped_in_the_json_log() {
    let log = run("json");
    assert_clean(&log);
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    for svc in ["s5", "s4", "web", "rl", "fwd"] {
        assert!(
            lines.iter().any(|l| l["service"] == svc
                && (l.to_string().contains("2001-02-03")
                    || l.to_string().contains("FAKE")
                    || l.to_string().contains("u{85}"))),
            "no line with the name from {svc} in:\n{log}"
        );
    }
}
