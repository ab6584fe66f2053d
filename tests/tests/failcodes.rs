//! Node `http.failCodes` on a sniffing forwarder (GOST's failcodes e2e
//! suite): an upstream status in a node's list marks the node failed, so
//! the selector's fail filter sends the next requests elsewhere.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use gost_e2e::*;

/// An HTTP/1.1 backend answering every request of a keep-alive
/// connection with `status` and the body `status-<status>`.
fn status_backend(status: u16) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { break };
            thread::spawn(move || {
                let mut buf = Vec::new();
                let mut b = [0u8; 1024];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let body = format!("status-{status}");
                        let resp = format!(
                            "HTTP/1.1 {status} Status\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if c.write_all(resp.as_bytes()).is_err() {
                            return;
                        }
                    }
                    match c.read(&mut b) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&b[..n]),
                    }
                }
            });
        }
    });
    addr
}

/// GOST's failcodes.yaml: a fifo forwarder whose first node answers 429.
/// `keepalive` sets `http.keepalive`, without which GOST's sniffer
/// closes every connection after its first response.
fn start(dir: &TempDir, bad: SocketAddr, good: SocketAddr, keepalive: bool) -> (Gost, u16) {
    let port = free_port();
    let cfg = dir.write(
        "gost.yaml",
        &format!(
            r#"services:
- name: reverse-proxy
  addr: 127.0.0.1:{port}
  handler:
    type: tcp
    metadata:
      sniffing: true
      sniffing.timeout: 2s
      http.keepalive: {keepalive}
  listener:
    type: tcp
  forwarder:
    selector:
      strategy: fifo
      maxFails: 1
    nodes:
    - name: node-429
      addr: {bad}
      protocol: http
      http:
        failCodes: "429"
    - name: node-good
      addr: {good}
      protocol: http
"#
        ),
    );
    let g = Gost::start(&["-C", &cfg]);
    g.wait_tcp(port);
    (g, port)
}

/// Sends raw bytes and reads until the proxy closes (10 s at most).
fn exchange(port: u16, req: &str) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// GOST's TestFailCodesConvergence: 20 requests, each on its own
/// connection; after the first 429 the node is excluded (GOST allows up
/// to 2 failures; fifo makes it exactly the first here).
#[test]
fn a_429_excludes_the_node_for_the_following_requests() {
    let bad = status_backend(429);
    let good = http_origin("127.0.0.1:0", "hello-gost");
    let dir = TempDir::new("failcodes");
    let (g, port) = start(&dir, bad, good, false);
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..20 {
        let body = exchange(
            port,
            "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        );
        if body.contains("hello-gost") {
            ok += 1;
        } else if body.contains("status-429") {
            failed += 1;
        } else {
            panic!("unexpected answer {body:?}; log:\n{}", g.log());
        }
    }
    assert!(failed <= 2, "{failed} answers of 20 from node-429");
    assert_eq!((ok, failed), (19, 1), "log:\n{}", g.log());
    assert!(g.log().contains("failCodes matched"), "log:\n{}", g.log());
}

/// The matching response still reaches the client, whole; then the
/// connection ends (as GOST closes it), so a keep-alive client's next
/// request goes out on a new connection, which the selector routes to
/// the other node.
#[test]
fn a_keep_alive_connection_ends_after_the_matching_response() {
    let bad = status_backend(429);
    let good = http_origin("127.0.0.1:0", "hello-gost");
    let dir = TempDir::new("failcodes-ka");
    let (g, port) = start(&dir, bad, good, true);
    let two = "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n";
    let got = exchange(port, two);
    assert_eq!(
        got,
        "HTTP/1.1 429 Status\r\nContent-Length: 10\r\nConnection: close\r\n\r\nstatus-429",
        "log:\n{}",
        g.log()
    );
    let next = exchange(
        port,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(next.contains("hello-gost"), "{next:?}");
}

/// A status outside the list (or a node without failCodes) changes
/// nothing: keep-alive requests all reach the same node.
#[test]
fn other_statuses_pass_on_a_kept_connection() {
    let bad = status_backend(503);
    let good = http_origin("127.0.0.1:0", "hello-gost");
    let dir = TempDir::new("failcodes-other");
    let (g, port) = start(&dir, bad, good, true);
    let two =
        "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(two.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 1024];
    while got.windows(10).filter(|w| w == b"status-503").count() < 2 {
        match c.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&b[..n]),
        }
    }
    let got = String::from_utf8_lossy(&got);
    assert_eq!(got.matches("status-503").count(), 2, "{got:?}");
    assert!(!g.log().contains("failCodes matched"), "log:\n{}", g.log());
}

#[test]
fn what_failcodes_cannot_do_is_refused() {
    let dir = TempDir::new("failcodes-bad");
    let refused = |handler: &str, http: &str| {
        let cfg = dir.write(
            "gost.yaml",
            &format!(
                "services:\n- name: s\n  addr: 127.0.0.1:0\n  handler: {handler}\n  listener: {{type: tcp}}\n  forwarder:\n    nodes:\n    - {{name: n, addr: \"127.0.0.1:1\", http: {http}}}\n"
            ),
        );
        let (status, _, err) = run_gost(&["-C", &cfg]);
        assert!(!status.success(), "{handler} {http} started");
        err
    };
    let sniffing = "{type: tcp, metadata: {sniffing: true}}";
    let err = refused(sniffing, "{failCodes: \"429,6x\"}");
    assert!(
        err.contains("node \"n\"") && err.contains("\"6x\""),
        "{err}"
    );
    let err = refused("{type: tcp}", "{failCodes: \"429\"}");
    assert!(
        err.contains("failCodes, host, requestHeader, responseHeader, rewriteURL) needs"),
        "{err}"
    );
    let err = refused(
        sniffing,
        "{failCodes: \"429\", rewriteBody: [{match: a, replacement: b}]}",
    );
    assert!(err.contains("http body rewrites and auth"), "{err}");
    let err = refused(sniffing, "{rewriteURL: [{match: \"(\", replacement: b}]}");
    assert!(
        err.contains("rewriteURL") && err.contains("not a regular expression"),
        "{err}"
    );
}
