//! Routing modules through the real binary: bypass on hops and services
//! (inline, whitelist, file with line-numbered errors), admission, hosts,
//! resolver and limiters.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use gost_e2e::*;

fn connect(port: u16) -> TcpStream {
    let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c
}

fn assert_echo(c: &mut TcpStream, data: &[u8]) {
    c.write_all(data).unwrap();
    let mut got = vec![0u8; data.len()];
    c.read_exact(&mut got).unwrap();
    assert_eq!(got, data);
}

/// HTTP CONNECT to `target` (an address or `host:port`) through `port`.
fn http_connect(port: u16, target: &str) -> (u16, TcpStream) {
    let mut c = connect(port);
    write!(c, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if c.read(&mut b).unwrap_or(0) == 0 {
            return (0, c);
        }
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, c)
}

fn start(args: &[&str], port: u16) -> Gost {
    let g = Gost::start(args);
    g.wait_tcp(port);
    g
}

fn works(port: u16, target: SocketAddr) -> bool {
    let (code, mut c) = http_connect(port, &target.to_string());
    if code != 200 {
        return false;
    }
    assert_echo(&mut c, b"ping");
    true
}

#[test]
fn hop_bypass_sends_matching_targets_direct_and_others_through_the_chain() {
    let (direct, chained) = (tcp_echo_server(), tcp_echo_server());
    let (pa, dead) = (free_port(), free_port());
    // The chain's only node is dead: a target that works went direct.
    let a = start(
        &[
            "-D",
            "-L",
            &format!("http://127.0.0.1:{pa}"),
            "-F",
            &format!("http://127.0.0.1:{dead}?bypass=127.0.0.1:{}", direct.port()),
        ],
        pa,
    );
    assert!(works(pa, direct));
    assert!(!works(pa, chained));
    a.wait_log(&format!("rule=127.0.0.1:{}", direct.port()));
}

#[test]
fn whitelist_bypass_from_file_and_bad_line_refused() {
    let (via_chain, direct) = (tcp_echo_server(), tcp_echo_server());
    let (pa, pb) = (free_port(), free_port());
    let dir = TempDir::new("bypass");
    // Whitelist: only the listed target goes through the chain (node B);
    // everything else bypasses it and is dialed directly.
    let rules = dir.write(
        "rules.txt",
        &format!("# chained targets\n127.0.0.1:{}\n", via_chain.port()),
    );
    let cfg = format!(
        r#"
services:
- name: front
  addr: 127.0.0.1:{pa}
  handler: {{type: http, chain: c}}
  listener: {{type: tcp}}
chains:
- name: c
  hops:
  - name: h
    bypass: wl
    nodes: [{{name: b, addr: "127.0.0.1:{pb}", connector: {{type: socks5}}}}]
bypasses:
- name: wl
  whitelist: true
  file: {{path: "{rules}"}}
"#
    );
    let path = dir.write("gost.yaml", &cfg);
    let b = start(
        &[
            "-D",
            "-L",
            &format!("socks5://127.0.0.1:{pb}?bypass=127.0.0.1:{}", direct.port()),
        ],
        pb,
    );
    let _a = start(&["-C", &path], pa);
    assert!(works(pa, via_chain));
    b.wait_log(&format!("dst={via_chain}"));
    // B refuses `direct` (its service bypass), so reaching it proves the
    // whitelist sent it around the chain.
    assert!(works(pa, direct));

    dir.write("rules.txt", "127.0.0.1\n10.0.0.0/33\n");
    let (status, _, err) = run_gost(&["-C", &path]);
    assert!(!status.success());
    assert!(
        err.contains("rules.txt:2: invalid CIDR \"10.0.0.0/33\""),
        "{err}"
    );
}

#[test]
fn service_bypass_refuses_matching_targets() {
    let (blocked, open) = (tcp_echo_server(), tcp_echo_server());
    let pa = free_port();
    let _a = start(
        &[
            "-L",
            &format!("http://127.0.0.1:{pa}?bypass=127.0.0.1:{}", blocked.port()),
        ],
        pa,
    );
    assert!(!works(pa, blocked));
    assert!(works(pa, open));
}

#[test]
fn admission_refuses_a_denied_client_address() {
    let echo = tcp_echo_server();
    let (denied, allowed, white) = (free_port(), free_port(), free_port());
    let g = start(
        &[
            "-D",
            "-L",
            &format!("tcp://127.0.0.1:{denied}/{echo}?admission=127.0.0.0/8"),
            "-L",
            &format!("tcp://127.0.0.1:{allowed}/{echo}?admission=10.0.0.1"),
            "-L",
            &format!("tcp://127.0.0.1:{white}/{echo}?admission=~127.0.0.1"),
        ],
        allowed,
    );
    let mut c = connect(denied);
    let _ = c.write_all(b"hello");
    let mut b = [0u8; 5];
    assert!(
        matches!(c.read(&mut b), Ok(0) | Err(_)),
        "denied client got data"
    );
    g.wait_log("rule=127.0.0.0/8");
    assert_echo(&mut connect(allowed), b"allowed");
    assert_echo(&mut connect(white), b"whitelisted");
}
