//! A sniffed HTTP connection served request by request (GOST's forwarder
//! sniffer): each request routed by its Host, the node's `http` rewrites,
//! the bypass per request, upgrades; and GOST's HTTP response cache
//! (its http_cache e2e cases with the same configs and assertions).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use gost_e2e::*;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A keep-alive HTTP/1.1 backend: each response's body names the backend,
/// the request's method, target, `Host` and `X-Add`, and carries
/// `X-Backend`; a request with `Upgrade: echo` gets 101 and then an echo.
fn backend(name: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { break };
            let hits = Arc::clone(&counted);
            thread::spawn(move || {
                let mut w = c.try_clone().unwrap();
                let mut r = BufReader::new(c);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let (method, target) = (
                        parts.next().unwrap_or("").to_string(),
                        parts.next().unwrap_or("").to_string(),
                    );
                    let (mut host, mut add, mut upgrade) = (String::new(), String::new(), false);
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        let (k, v) = h.split_once(':').unwrap_or((h, ""));
                        match k.to_ascii_lowercase().as_str() {
                            "host" => host = v.trim().into(),
                            "x-add" => add = v.trim().into(),
                            "upgrade" => upgrade = v.trim() == "echo",
                            _ => {}
                        }
                    }
                    hits.fetch_add(1, Ordering::SeqCst);
                    if upgrade {
                        let _ = w.write_all(
                            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
                        );
                        let mut b = [0u8; 1024];
                        while let Ok(n) = r.read(&mut b) {
                            if n == 0 || w.write_all(&b[..n]).is_err() {
                                return;
                            }
                        }
                        return;
                    }
                    let body = format!("{name} {method} {target} host={host} x-add={add}");
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nX-Backend: {name}\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if w.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, hits)
}

fn start(dir: &TempDir, metadata: &str, nodes: &str, extra: &str) -> (Gost, u16) {
    let port = free_port();
    let cfg = dir.write(
        "gost.yaml",
        &format!(
            "services:\n- name: fwd\n  addr: 127.0.0.1:{port}\n{extra}  handler:\n    type: tcp\n    metadata:\n      sniffing: true\n      sniffing.timeout: 2s\n{metadata}  listener:\n    type: tcp\n  forwarder:\n    nodes:\n{nodes}"
        ),
    );
    let g = Gost::start(&["-C", &cfg]);
    g.wait_tcp(port);
    (g, port)
}

/// Reads one response with a `Content-Length` body: head and body.
fn read_response(r: &mut BufReader<TcpStream>) -> (String, String) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return (head, String::new());
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).unwrap();
    (head, String::from_utf8_lossy(&body).into_owned())
}

fn connect(port: u16) -> (TcpStream, BufReader<TcpStream>) {
    let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let r = BufReader::new(c.try_clone().unwrap());
    (c, r)
}

const KEEPALIVE: &str = "      http.keepalive: true\n";

/// Each request of one kept-alive connection goes where its own Host
/// leads (GOST re-selects when the Host changes).
#[test]
fn each_request_of_a_kept_connection_is_routed_by_its_host() {
    let (a, _) = backend("A");
    let (b, _) = backend("B");
    let dir = TempDir::new("sniff-per-request");
    let nodes = format!(
        "    - {{name: a, addr: \"{a}\", matcher: {{rule: 'Host(`a.test`)'}}}}\n    - {{name: b, addr: \"{b}\", matcher: {{rule: 'Host(`b.test`)'}}}}\n"
    );
    let (g, port) = start(&dir, KEEPALIVE, &nodes, "");
    let (mut c, mut r) = connect(port);
    for (host, want) in [
        ("a.test", "A"),
        ("b.test", "B"),
        ("b.test", "B"),
        ("a.test", "A"),
    ] {
        write!(c, "GET /p HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
        let (head, body) = read_response(&mut r);
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "{head}; log:\n{}",
            g.log()
        );
        assert_eq!(body, format!("{want} GET /p host={host} x-add="), "{head}");
    }
    // curl, two hosts on the same port.
    let url = |h: &str| format!("http://{h}:{port}/c");
    let (ok, out) = curl_body(&[
        "--resolve",
        &format!("a.test:{port}:127.0.0.1"),
        "--resolve",
        &format!("b.test:{port}:127.0.0.1"),
        &url("a.test"),
        &url("b.test"),
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("A GET /c host=a.test:{port}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("B GET /c host=b.test:{port}")),
        "{out}"
    );
}

/// Without `http.keepalive` the connection ends after each response, as
/// in GOST.
#[test]
fn without_keepalive_each_response_closes_the_connection() {
    let (a, _) = backend("A");
    let dir = TempDir::new("sniff-close");
    let nodes = format!("    - {{name: a, addr: \"{a}\", filter: {{protocol: http}}}}\n");
    let (g, port) = start(&dir, "", &nodes, "");
    let (mut c, mut r) = connect(port);
    c.write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (head, body) = read_response(&mut r);
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}; log:\n{}",
        g.log()
    );
    assert_eq!(body, "A GET /1 host=x x-add=");
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}

/// The node's `http` settings: Host, request fields, URL and response
/// fields rewritten, as GOST applies them.
#[test]
fn node_http_settings_rewrite_the_request_and_the_response() {
    let (a, _) = backend("A");
    let dir = TempDir::new("sniff-rewrite");
    let nodes = format!(
        r#"    - name: a
      addr: "{a}"
      filter: {{protocol: http}}
      http:
        host: backend.test
        requestHeader: {{X-Add: added, X-Drop: ""}}
        responseHeader: {{X-Resp: set, X-Backend: replaced}}
        rewriteURL:
        - {{match: "^/old/(.*)$", replacement: "/new/$1"}}
        - {{match: "^/search$", replacement: "/find?q=1"}}
"#
    );
    let (g, port) = start(&dir, KEEPALIVE, &nodes, "");
    let (mut c, mut r) = connect(port);
    c.write_all(b"GET /old/x?k=v HTTP/1.1\r\nHost: front.test\r\nX-Drop: gone\r\n\r\n")
        .unwrap();
    let (head, body) = read_response(&mut r);
    assert_eq!(
        body,
        "A GET /new/x?k=v host=backend.test x-add=added",
        "log:\n{}",
        g.log()
    );
    assert!(head.contains("X-Resp: set\r\n"), "{head}");
    assert!(head.contains("X-Backend: replaced\r\n"), "{head}");
    c.write_all(b"GET /search HTTP/1.1\r\nHost: front.test\r\n\r\n")
        .unwrap();
    let (_, body) = read_response(&mut r);
    assert_eq!(body, "A GET /find?q=1 host=backend.test x-add=added");
    let (ok, out) = curl_body(&["-i", &format!("http://127.0.0.1:{port}/old/curl")]);
    assert!(
        ok && out.contains("A GET /new/curl host=backend.test"),
        "{out}"
    );
    assert!(out.contains("X-Resp: set"), "{out}");
}

/// The service's bypass is checked for each new Host: a later request
/// for a bypassed host gets 403 and never reaches the backend.
#[test]
fn a_later_request_for_a_bypassed_host_gets_403() {
    let (a, hits) = backend("A");
    let dir = TempDir::new("sniff-bypass");
    let nodes = format!("    - {{name: a, addr: \"{a}\"}}\n");
    let extra = "  bypass: deny\n";
    let bypasses = "bypasses:\n- name: deny\n  matchers: [blocked.test]\n";
    let (g, port) = start(&dir, KEEPALIVE, &format!("{nodes}{bypasses}"), extra);
    let (mut c, mut r) = connect(port);
    c.write_all(b"GET / HTTP/1.1\r\nHost: ok.test\r\n\r\n")
        .unwrap();
    let (head, _) = read_response(&mut r);
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "{head}; log:\n{}",
        g.log()
    );
    c.write_all(b"GET / HTTP/1.1\r\nHost: blocked.test\r\n\r\n")
        .unwrap();
    let (head, _) = read_response(&mut r);
    assert!(
        head.starts_with("HTTP/1.1 403"),
        "{head}; log:\n{}",
        g.log()
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

/// A 101 answer turns the connection into a relay both ways.
#[test]
fn an_upgrade_is_relayed_after_the_101() {
    let (a, _) = backend("A");
    let dir = TempDir::new("sniff-upgrade");
    let nodes = format!("    - {{name: a, addr: \"{a}\", filter: {{protocol: http}}}}\n");
    let (g, port) = start(&dir, KEEPALIVE, &nodes, "");
    let (mut c, mut r) = connect(port);
    c.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .unwrap();
    let (head, _) = read_response(&mut r);
    assert!(
        head.starts_with("HTTP/1.1 101"),
        "{head}; log:\n{}",
        g.log()
    );
    c.write_all(b"ping-after-upgrade").unwrap();
    let mut got = [0u8; 18];
    r.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping-after-upgrade");
}

/// Nothing looks at requests (no bypass, matcher, filter, `http` or
/// cache): the connection is relayed as bytes after the first request
/// (the fast path), so a second request follows the first one's node
/// and the response bytes pass untouched.
#[test]
fn without_anything_to_look_at_the_connection_is_relayed_as_bytes() {
    let (a, _) = backend("A");
    let dir = TempDir::new("sniff-plain");
    let nodes = format!("    - {{name: a, addr: \"{a}\"}}\n");
    let (g, port) = start(&dir, "", &nodes, "");
    let (mut c, mut r) = connect(port);
    c.write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: y\r\n\r\n")
        .unwrap();
    for (path, host) in [("/1", "x"), ("/2", "y")] {
        let (head, body) = read_response(&mut r);
        assert_eq!(
            head,
            format!(
                "HTTP/1.1 200 OK\r\nX-Backend: A\r\nContent-Length: {}\r\n\r\n",
                body.len()
            ),
            "log:\n{}",
            g.log()
        );
        assert_eq!(body, format!("A GET {path} host={host} x-add="));
    }
}

/// Reads a request head; false when the connection ends first (the
/// start-up probe's connection, which sends nothing).
fn read_head(c: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut b = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match c.read(&mut b) {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&b[..n]),
        }
    }
    true
}

/// GOST's http_cache backend: a counter of requests in each body.
fn counter_backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        let mut served = 0;
        for c in l.incoming() {
            let Ok(mut c) = c else { break };
            if !read_head(&mut c) {
                continue;
            }
            served += 1;
            let body = format!("cache-test-{served}");
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// GOST's serve-stale backend: one response, then every connection is
/// accepted and closed at once.
fn serve_stale_backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        let mut first = true;
        for c in l.incoming() {
            let Ok(mut c) = c else { break };
            if !first || !read_head(&mut c) {
                continue;
            }
            first = false;
            let _ = c.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\ncache-test-1",
            );
        }
    });
    addr
}

/// GOST's testdata/http_cache configs, with the backend's address.
fn cache_gost(dir: &TempDir, target: SocketAddr, cache: Option<&str>) -> (Gost, u16) {
    let port = free_port();
    let (caches, svc_cache, md) = match cache {
        Some(md) => (
            "caches:\n- name: http-cache\n  memory:\n    ttl: 10m\n    maxSize: 1000\n\n",
            "  cache: http-cache\n",
            md,
        ),
        None => ("", "", ""),
    };
    let cfg = dir.write(
        "gost.yaml",
        &format!(
            "{caches}services:\n- name: cache-proxy\n  addr: 127.0.0.1:{port}\n{svc_cache}  handler:\n    type: tcp\n    metadata:\n      sniffing: true\n      sniffing.timeout: 2s\n{md}  listener:\n    type: tcp\n  forwarder:\n    nodes:\n    - name: target\n      addr: {target}\n"
        ),
    );
    let g = Gost::start(&["-C", &cfg]);
    g.wait_tcp(port);
    (g, port)
}

fn curl_get(port: u16) -> String {
    let (ok, out) = curl_body(&[&format!("http://127.0.0.1:{port}/")]);
    assert!(ok, "curl failed: {out}");
    out
}

/// GOST's TestHTTPCacheHit.
#[test]
fn http_cache_hit() {
    let dir = TempDir::new("cache-hit");
    let (g, port) = cache_gost(&dir, counter_backend(), Some("      cache.ttl: 60s\n"));
    let body1 = curl_get(port);
    assert!(body1.contains("cache-test-1"), "{body1}; log:\n{}", g.log());
    assert_eq!(curl_get(port), body1);
    assert_eq!(curl_get(port), body1);
}

/// GOST's TestHTTPCacheDisabled: the control, each request reaches the
/// backend.
#[test]
fn http_cache_disabled() {
    let dir = TempDir::new("cache-off");
    let (_g, port) = cache_gost(&dir, counter_backend(), None);
    let body1 = curl_get(port);
    assert!(body1.contains("cache-test-"), "{body1}");
    assert_ne!(curl_get(port), body1);
}

/// GOST's TestHTTPCacheServeStale: after the 3 s TTL, the upstream
/// accepts and closes; the expired response is served.
#[test]
fn http_cache_serve_stale() {
    let dir = TempDir::new("cache-stale");
    let (g, port) = cache_gost(
        &dir,
        serve_stale_backend(),
        Some("      cache.ttl: 3s\n      cache.serveStale: true\n"),
    );
    let body1 = curl_get(port);
    assert!(body1.contains("cache-test-1"), "{body1}; log:\n{}", g.log());
    thread::sleep(Duration::from_secs(4));
    assert_eq!(curl_get(port), body1, "log:\n{}", g.log());
}

#[test]
fn what_the_cache_cannot_do_is_refused() {
    let dir = TempDir::new("cache-bad");
    let refused = |cfg: &str| {
        let path = dir.write("gost.yaml", cfg);
        let (status, _, err) = run_gost(&["-C", &path]);
        assert!(!status.success(), "{cfg} started");
        err
    };
    let svc = |cache: &str, handler: &str| {
        format!("services:\n- name: s\n  addr: 127.0.0.1:0\n  cache: {cache}\n  handler: {handler}\n  forwarder:\n    nodes:\n    - {{name: n, addr: \"127.0.0.1:1\"}}\n")
    };
    let mem = "caches:\n- name: c\n  memory: {maxSize: 1}\n";
    let err = refused(&format!("{mem}{}", svc("c", "{type: tcp}")));
    assert!(err.contains("sniffing: true only"), "{err}");
    let err = refused(&format!(
        "caches:\n- name: c\n  redis: {{db: 1}}\n{}",
        svc("c", "{type: tcp, metadata: {sniffing: true}}")
    ));
    assert!(err.contains("needs a memory block or redis.addr"), "{err}");
    let err = refused(&format!(
        "caches:\n- name: c\n  memory: {{eviction: lfu}}\n{}",
        svc("c", "{type: tcp, metadata: {sniffing: true}}")
    ));
    assert!(err.contains("\"lfu\""), "{err}");
}
