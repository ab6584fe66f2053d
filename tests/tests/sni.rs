//! The `sni` handler and connector through the real binary, with curl
//! (`--resolve`) and openssl s_client as clients. GOST's e2e suite has no
//! sni case; these follow go-gost/x handler/sni: TLS is routed by the
//! ClientHello's server name (port 443), HTTP by its Host (port 80 unless
//! named), through the service's chain; the backends are reached by chain
//! nodes filtered by host, so which backend answers shows which name the
//! handler routed by.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use gost_e2e::*;

/// Two HTTPS backends (gost `file` handlers on `tls` listeners) answering
/// "backend-a" and "backend-b", an HTTP origin, and a gost `sni` service
/// whose chain reaches backend A for a.test, B for b.test and the origin
/// for web.test; blocked.test is bypassed.
struct Setup {
    _dirs: Vec<TempDir>,
    _backends: Vec<Gost>,
    sni: Gost,
    port: u16,
}

fn https_backend(body: &str) -> (TempDir, Gost, u16) {
    let dir = TempDir::new("sni-backend");
    dir.write("index.html", &format!("{body}\n"));
    let port = free_port();
    let url = format!("file+tls://127.0.0.1:{port}?file.dir={}", dir.path(""));
    let gost = Gost::start(&["-L", &url]);
    gost.wait_tcp(port);
    (dir, gost, port)
}

fn setup() -> Setup {
    let (da, ga, pa) = https_backend("backend-a");
    let (db, gb, pb) = https_backend("backend-b");
    let web = http_origin("127.0.0.1:0", "plain-origin");
    let port = free_port();
    let dir = TempDir::new("sni");
    let node = |name: &str, addr: String, host: &str| {
        format!("    - name: {name}\n      addr: {addr}\n      connector:\n        type: forward\n      filter:\n        host: {host}\n")
    };
    let cfg = format!(
        "services:\n- name: sni\n  addr: 127.0.0.1:{port}\n  bypass: blocked\n  handler:\n    type: sni\n    chain: backends\n    metadata:\n      readTimeout: 2s\n  listener:\n    type: tcp\nchains:\n- name: backends\n  hops:\n  - name: hop-0\n    nodes:\n{}{}{}bypasses:\n- name: blocked\n  matchers:\n  - blocked.test\n",
        node("a", format!("127.0.0.1:{pa}"), "a.test"),
        node("b", format!("127.0.0.1:{pb}"), "b.test"),
        node("web", web.to_string(), "web.test"),
    );
    let path = dir.write("gost.yaml", &cfg);
    let sni = Gost::start(&["-C", &path]);
    sni.wait_tcp(port);
    Setup {
        _dirs: vec![da, db, dir],
        _backends: vec![ga, gb],
        sni,
        port,
    }
}

/// curl for `https://{name}:{port}/` with the name resolved to loopback.
fn curl_https(name: &str, port: u16, extra: &[&str]) -> (bool, String) {
    let resolve = format!("{name}:{port}:127.0.0.1");
    let url = format!("https://{name}:{port}/");
    let mut args = vec!["-k", "--resolve", &resolve, &url];
    args.extend_from_slice(extra);
    curl_body(&args)
}

#[test]
fn tls_is_routed_by_the_server_name() {
    let s = setup();
    assert_eq!(
        curl_https("a.test", s.port, &[]),
        (true, "backend-a\n".into())
    );
    assert_eq!(
        curl_https("b.test", s.port, &[]),
        (true, "backend-b\n".into())
    );
    // A name no node takes is dialed directly at port 443, which does not
    // resolve: the client's connection is closed.
    let (ok, body) = curl_https("unknown.invalid", s.port, &[]);
    assert!(!ok && body.is_empty(), "{body}");
    // A bypassed name is closed without an answer.
    let (ok, _) = curl_https("blocked.test", s.port, &[]);
    assert!(!ok);
    // openssl s_client names b.test and speaks HTTP itself.
    let out = s_client(
        s.port,
        &["-servername", "b.test"],
        b"GET / HTTP/1.0\r\n\r\n",
    );
    assert!(out.contains("backend-b"), "{out}");
    assert!(curl_https("a.test", s.port, &[]).0, "{}", s.sni.log());
}

/// openssl s_client to the sni port, writing `input` once connected.
fn s_client(port: u16, args: &[&str], input: &[u8]) -> String {
    let connect = format!("127.0.0.1:{port}");
    let mut child = Command::new("/usr/bin/openssl")
        .args(["s_client", "-quiet", "-ign_eof", "-connect", &connect])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl s_client");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn a_client_hello_without_a_server_name_is_closed() {
    let s = setup();
    let out = s_client(s.port, &["-noservername"], b"GET / HTTP/1.0\r\n\r\n");
    assert!(!out.contains("backend-"), "{out}");
    // The service goes on.
    assert_eq!(
        curl_https("a.test", s.port, &[]),
        (true, "backend-a\n".into())
    );
}

#[test]
fn http_is_routed_by_the_host_and_a_bypassed_host_gets_403() {
    let s = setup();
    let resolve = format!("web.test:{}:127.0.0.1", s.port);
    let url = format!("http://web.test:{}/", s.port);
    assert_eq!(
        curl_body(&["--resolve", &resolve, &url]),
        (true, "plain-origin".into())
    );
    let resolve = format!("blocked.test:{}:127.0.0.1", s.port);
    let url = format!("http://blocked.test:{}/", s.port);
    let (_, code) = curl_body(&[
        "--resolve",
        &resolve,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &url,
    ]);
    assert_eq!(code, "403");
}

#[test]
fn other_traffic_is_dropped_without_an_answer() {
    let s = setup();
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(b"\x00\x01binary, neither TLS nor HTTP")
        .unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert!(got.is_empty(), "{got:?}");
}

#[test]
fn the_sni_connector_carries_the_client_hello_and_host_rewrites_it() {
    let s = setup();
    // A local HTTP proxy whose chain's node is the sni service: CONNECT
    // a.test:443 reaches the sni handler, which routes by the SNI curl sent.
    let proxy = free_port();
    let node = format!("sni://127.0.0.1:{}", s.port);
    let client = Gost::start(&["-L", &format!("http://127.0.0.1:{proxy}"), "-F", &node]);
    client.wait_tcp(proxy);
    let via = format!("http://127.0.0.1:{proxy}");
    assert_eq!(
        curl_body(&["-k", "-x", &via, "https://a.test/"]),
        (true, "backend-a\n".into())
    );
    // With `host`, a plain HTTP request's Host becomes web.test (the
    // original travels in Gost-Target), so the handler routes it there.
    let proxy = free_port();
    let node = format!("sni://127.0.0.1:{}?host=web.test", s.port);
    let rewriting = Gost::start(&["-L", &format!("http://127.0.0.1:{proxy}"), "-F", &node]);
    rewriting.wait_tcp(proxy);
    let via = format!("http://127.0.0.1:{proxy}");
    assert_eq!(
        curl_body(&["-x", &via, "http://other.test/"]),
        (true, "plain-origin".into())
    );
}

/// What the connector with `host` sends: the ClientHello names `host`,
/// the client's name is gone from it, and extension 0xFFFE carries it
/// encoded (GOST's bytes). A TLS handshake through a rewritten hello fails
/// at its end (the server's transcript differs from the client's), as it
/// does with GOST's connector in front of GOST's v3 `sni` handler.
#[test]
fn the_connector_rewrites_the_server_name() {
    let raw = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let raw_port = raw.local_addr().unwrap().port();
    let captured = std::thread::spawn(move || {
        let (mut c, _) = raw.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = vec![0u8; 4096];
        let n = c.read(&mut got).unwrap_or(0);
        got.truncate(n);
        got
    });
    let proxy = free_port();
    let node = format!("sni://127.0.0.1:{raw_port}?host=front.test");
    let client = Gost::start(&["-L", &format!("http://127.0.0.1:{proxy}"), "-F", &node]);
    client.wait_tcp(proxy);
    let via = format!("http://127.0.0.1:{proxy}");
    let _ = curl_body(&["-k", "--max-time", "3", "-x", &via, "https://real.test/"]);
    let hello = captured.join().unwrap();
    let has = |needle: &[u8]| hello.windows(needle.len()).any(|w| w == needle);
    assert_eq!(hello.first(), Some(&0x16), "{hello:?}");
    assert!(has(b"front.test"));
    assert!(!has(b"real.test"));
    assert!(has(&[0xff, 0xfe]), "extension 0xFFFE");
}
