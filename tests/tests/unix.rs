//! Unix sockets through the real binary: the `unix` listener, dialer,
//! connector and handler (`-L unix:///path`, `-F unix:///path`), a unix
//! socket into the HTTP proxy and TCP into a unix socket, GOST's relay
//! protocol asking for a unix socket (CONNECT with network `unix`), the
//! `runix` reverse listener over a relay BIND, and the socket file's life:
//! a stale file refuses the start, a clean stop removes the socket, `mode`
//! sets its permissions. Socket files live in a temporary directory.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::thread;
use std::time::{Duration, Instant};

use gost_e2e::*;

/// A unix socket server at `path` echoing each connection.
fn unix_echo_server(path: &str) {
    let l = UnixListener::bind(path).unwrap();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { break };
            thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                loop {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if c.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
}

/// Waits until the socket at `path` accepts a connection.
fn connect_unix(path: &str, g: &[&Gost]) -> UnixStream {
    let start = Instant::now();
    loop {
        if let Ok(c) = UnixStream::connect(path) {
            c.set_read_timeout(Some(TIMEOUT)).unwrap();
            return c;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "{path} never accepted; log:\n{}",
            g.iter().map(|g| g.log()).collect::<String>()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Writes `size` bytes and reads them back; sizes stay within what the
/// socket buffers and the relay hold, so writing first cannot stall.
fn echo_round_trip(mut c: impl Read + Write, size: usize, seed: u64, g: &[&Gost]) {
    let msg = random_bytes(size, seed);
    c.write_all(&msg).unwrap();
    let mut back = vec![0u8; size];
    c.read_exact(&mut back).unwrap_or_else(|e| {
        panic!(
            "echo: {e}; log:\n{}",
            g.iter().map(|g| g.log()).collect::<String>()
        )
    });
    assert_eq!(back, msg);
}

/// `-L unix:///a.sock -F unix:///b.sock` (GOST's unix handler without a
/// forwarder: through the chain to its unix node), and a TCP forward into
/// the same unix node; the unix client shows as `@` in the log.
#[test]
fn cli_unix_listener_through_a_unix_node() {
    let dir = TempDir::new("unix-cli");
    let (a, b) = (dir.path("a.sock"), dir.path("b.sock"));
    unix_echo_server(&b);
    let port = free_port();
    let g = Gost::start(&[
        "-D",
        "-L",
        &format!("unix://{a}"),
        "-L",
        &format!("tcp://127.0.0.1:{port}/ignored:1"),
        "-F",
        &format!("unix://{b}"),
    ]);
    echo_round_trip(connect_unix(&a, &[&g]), 30_000, 1, &[&g]);
    g.wait_tcp(port);
    let c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    echo_round_trip(c, 5000, 2, &[&g]);
    g.wait_log(r#""client":"@""#);
    assert!(
        g.log().contains(&format!(r#""addr":"{a}""#)),
        "the service reports its socket path:\n{}",
        g.log()
    );
}

/// A YAML unix service: `mode` sets the socket's permissions, the unix
/// handler's forwarder node is a socket path; an HTTP proxy on a unix
/// socket reaches a TCP target; a clean stop removes both socket files.
#[test]
fn yaml_unix_handler_forwarder_mode_and_http_over_unix() {
    let dir = TempDir::new("unix-yaml");
    let (a, b, p) = (dir.path("a.sock"), dir.path("b.sock"), dir.path("p.sock"));
    unix_echo_server(&b);
    let cfg = dir.write(
        "gost.yaml",
        &format!(
            r#"
services:
- name: to-unix
  addr: {a}
  listener: {{type: unix, metadata: {{mode: "0600"}}}}
  handler: {{type: unix}}
  forwarder: {{nodes: [{{name: b, addr: {b}}}]}}
- name: proxy
  addr: {p}
  listener: {{type: unix}}
  handler: {{type: http}}
"#
        ),
    );
    let mut g = Gost::start(&["-C", &cfg]);
    echo_round_trip(connect_unix(&a, &[&g]), 30_000, 3, &[&g]);
    let mode = std::fs::metadata(&a).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode: \"0600\"");

    let origin = tcp_echo_server();
    let mut c = connect_unix(&p, &[&g]);
    write!(c, "CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    echo_round_trip(c, 3000, 4, &[&g]);

    assert!(g.stop().success());
    assert!(!std::path::Path::new(&a).exists(), "a.sock left behind");
    assert!(!std::path::Path::new(&p).exists(), "p.sock left behind");
}

/// GOST's relay protocol with network `unix`: a unix service whose chain
/// ends at a relay server asks it for a socket on the server's host
/// (CONNECT), and a `runix` service binds a socket there (BIND), whose
/// clients come back to this side's unix target.
#[test]
fn relay_connect_and_runix_bind_to_unix_sockets() {
    let dir = TempDir::new("unix-relay");
    let (a, b, remote) = (
        dir.path("a.sock"),
        dir.path("b.sock"),
        dir.path("remote.sock"),
    );
    unix_echo_server(&b);
    let relay = free_port();
    let server = Gost::start(&["-L", &format!("relay://127.0.0.1:{relay}?bind=true")]);
    server.wait_tcp(relay);
    let cfg = dir.write(
        "client.yaml",
        &format!(
            r#"
services:
- name: connect
  addr: {a}
  listener: {{type: unix}}
  handler: {{type: unix, chain: c}}
  forwarder: {{nodes: [{{name: b, addr: {b}}}]}}
- name: reverse
  addr: {remote}
  listener: {{type: runix, chain: c}}
  handler: {{type: unix}}
  forwarder: {{nodes: [{{name: b, addr: {b}}}]}}
chains:
- name: c
  hops:
  - name: h
    nodes:
    - name: relay
      addr: 127.0.0.1:{relay}
      connector: {{type: relay}}
"#
        ),
    );
    let client = Gost::start(&["-C", &cfg]);
    let gs = [&server, &client];
    echo_round_trip(connect_unix(&a, &gs), 30_000, 5, &gs);
    // The server made remote.sock for the reverse service.
    for i in 0..3 {
        echo_round_trip(connect_unix(&remote, &gs), 20_000, 6 + i, &gs);
    }
    client.wait_log("runix: bound on the chain's last node");
    drop(client);
    // The BIND's session ended with the client: the server closed and
    // removed the socket.
    let start = Instant::now();
    while std::path::Path::new(&remote).exists() {
        assert!(
            start.elapsed() < TIMEOUT,
            "remote.sock outlived its BIND:\n{}",
            server.log()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// As Go's `net.Listen("unix")`: an existing file at the path (a socket a
/// crashed process left) refuses the start, naming the path; nothing is
/// removed. A unix service without forwarder or chain refuses each
/// connection with a logged error.
#[test]
fn a_stale_socket_file_refuses_the_start() {
    let dir = TempDir::new("unix-stale");
    let a = dir.path("a.sock");
    // std's listener does not remove its file when dropped.
    drop(UnixListener::bind(&a).unwrap());
    let (status, out, err) = run_gost(&["-L", &format!("unix://{a}")]);
    assert!(!status.success());
    let text = format!("{out}{err}");
    assert!(
        text.contains(&a) && text.to_lowercase().contains("in use"),
        "{text}"
    );
    assert!(std::path::Path::new(&a).exists(), "the file was left alone");

    std::fs::remove_file(&a).unwrap();
    let g = Gost::start(&["-L", &format!("unix://{a}")]);
    let mut c = connect_unix(&a, &[&g]);
    let mut b = [0u8; 1];
    assert_eq!(c.read(&mut b).unwrap_or(0), 0, "closed without an answer");
    g.wait_log("no forwarder and no chain");
}
