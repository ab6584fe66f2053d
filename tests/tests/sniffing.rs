//! Forward handler `sniffing`: nodes picked by matcher rules and filters
//! from the first request's protocol, host and path, through the real
//! binary.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use gost_e2e::*;

const TIMEOUT: Duration = Duration::from_secs(20);

/// A backend that reads the first `want` bytes of each connection (or a
/// whole TLS record when `want` is 0), reports them with its tag, then
/// closes.
fn recorder(
    tag: &'static str,
    want: usize,
    tx: mpsc::Sender<(&'static str, Vec<u8>)>,
) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { break };
            c.set_read_timeout(Some(TIMEOUT)).unwrap();
            let mut got = Vec::new();
            let mut b = [0u8; 4096];
            loop {
                let need = if want > 0 {
                    want
                } else if got.len() >= 5 {
                    5 + u16::from_be_bytes([got[3], got[4]]) as usize
                } else {
                    5
                };
                if got.len() >= need {
                    break;
                }
                match c.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&b[..n]),
                }
            }
            let _ = tx.send((tag, got));
        }
    });
    addr
}

/// A sniffing `tcp` forwarder over `nodes`; `extra` adds top-level
/// sections (bypasses, admissions) the rules name.
fn start(dir: &TempDir, nodes: &str, extra: &str) -> (Gost, u16) {
    let port = free_port();
    let cfg = dir.write(
        "gost.yaml",
        &format!(
            "services:\n- name: fwd\n  addr: 127.0.0.1:{port}\n  handler:\n    type: tcp\n    metadata:\n      sniffing: true\n      sniffing.timeout: 5s\n  listener:\n    type: tcp\n  forwarder:\n    nodes:\n{nodes}{extra}"
        ),
    );
    let g = Gost::start(&["-C", &cfg]);
    g.wait_tcp(port);
    (g, port)
}

#[test]
fn http_requests_go_to_the_node_whose_filter_or_matcher_takes_them() {
    let a = http_origin("127.0.0.1:0", "from-a");
    let b = http_origin("127.0.0.1:0", "from-b");
    let c = http_origin("127.0.0.1:0", "from-c");
    let dir = TempDir::new("sniff-http");
    // c's rule is the longest, so where it matches it outranks a and b.
    let nodes = format!(
        "    - {{name: a, addr: \"{a}\", filter: {{host: a.test}}}}\n    - {{name: b, addr: \"{b}\", matcher: {{rule: 'PathPrefix(`/api`)'}}}}\n    - {{name: c, addr: \"{c}\", matcher: {{rule: 'Host(`a.test`) && PathPrefix(`/api`)'}}}}\n"
    );
    let (_g, port) = start(&dir, &nodes, "");
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    for (host, path, want) in [
        ("a.test", "/", "from-a"),
        ("a.test:8080", "/index.html?q=1", "from-a"),
        ("b.test", "/api/items", "from-b"),
        ("a.test", "/api/items", "from-c"),
    ] {
        let (ok, body) = curl_body(&["-H", &format!("Host: {host}"), &url(path)]);
        assert!(ok, "{host}{path}");
        assert_eq!(body, want, "{host}{path}");
    }
    // curl --resolve sends the name as Host, as a browser would.
    let (ok, body) = curl_body(&[
        "--resolve",
        &format!("a.test:{port}:127.0.0.1"),
        &format!("http://a.test:{port}/"),
    ]);
    assert!(ok);
    assert_eq!(body, "from-a");
    // No node takes z.test: GOST's answer is 502.
    let (_, code) = curl_body(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "Host: z.test",
        &url("/"),
    ]);
    assert_eq!(code, "502");
}

#[test]
fn tls_goes_by_sni_and_raw_bytes_to_an_unfiltered_node_intact() {
    let (tx, rx) = mpsc::channel();
    let payload = random_bytes(3000, 11);
    let sni = recorder("sni", 0, tx.clone());
    let other = recorder("other", 0, tx.clone());
    let raw = recorder("raw", payload.len(), tx);
    let dir = TempDir::new("sniff-tls");
    let nodes = format!(
        "    - {{name: sni, addr: \"{sni}\", filter: {{protocol: tls, host: sni.test}}}}\n    - {{name: other, addr: \"{other}\", matcher: {{rule: 'Proto(`tls`) && Host(`other.test`)'}}}}\n    - {{name: raw, addr: \"{raw}\", matcher: {{rule: '!Proto(`tls`) && !Proto(`http`)'}}}}\n"
    );
    let (_g, port) = start(&dir, &nodes, "");
    // wait_tcp's probe connection carried no bytes: raw, to the raw node.
    let _ = rx.recv_timeout(TIMEOUT);
    for (name, want) in [("sni.test", "sni"), ("other.test", "other")] {
        // openssl fails once the node closes; only the hello matters.
        let _ = Command::new("/usr/bin/openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                "-servername",
                name,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run openssl");
        let (tag, hello) = rx
            .recv_timeout(TIMEOUT)
            .expect("a node got the ClientHello");
        assert_eq!(tag, want);
        assert_eq!(
            hello[0], 0x16,
            "the ClientHello arrives from its first byte"
        );
        assert!(hello.windows(name.len()).any(|w| w == name.as_bytes()));
    }
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(&payload).unwrap();
    let (tag, got) = rx.recv_timeout(TIMEOUT).expect("raw bytes reach a node");
    assert_eq!(tag, "raw");
    assert!(got == payload, "raw bytes arrive intact");
}

#[test]
fn a_bad_rule_is_refused_at_start_up_naming_the_node() {
    let text = refused_rule("sniff-bad", "broken", "Host(`a`) &&");
    assert!(text.contains("node \"broken\""), "{text}");
    assert!(text.contains("at byte 12"), "{text}");
}

#[test]
fn numeric_header_bypass_and_admission_rules_pick_the_node() {
    let big = http_origin("127.0.0.1:0", "from-big");
    let safe = http_origin("127.0.0.1:0", "from-safe");
    let dir = TempDir::new("sniff-named");
    let nodes = format!(
        "    - {{name: big, addr: \"{big}\", matcher: {{rule: 'Header(`X-Tier`, `ge`, `5`)'}}}}\n    - {{name: safe, addr: \"{safe}\", matcher: {{rule: 'Bypass(`no-secret`) && Admission(`local`)'}}}}\n"
    );
    let extra = "bypasses:\n- {name: no-secret, matchers: [secret.test]}\nadmissions:\n- {name: local, whitelist: true, matchers: [127.0.0.0/8]}\n";
    let (_g, port) = start(&dir, &nodes, extra);
    let url = format!("http://127.0.0.1:{port}/");
    let get = |host: &str, tier: Option<&str>| {
        let mut args = vec!["-o", "-", "-w", " %{http_code}", "-H"];
        let host = format!("Host: {host}");
        args.push(&host);
        let tier = tier.map(|t| format!("X-Tier: {t}"));
        if let Some(t) = &tier {
            args.extend(["-H", t]);
        }
        args.push(&url);
        curl_body(&args).1
    };
    assert_eq!(get("secret.test", Some("7")), "from-big 200");
    assert_eq!(get("secret.test", Some("5.0")), "from-big 200");
    assert_eq!(get("a.test", None), "from-safe 200");
    assert_eq!(get("a.test", Some("2")), "from-safe 200");
    assert_eq!(get("a.test", Some("high")), "from-safe 200");
    assert_eq!(get("secret.test", Some("4")), " 502");
}

#[test]
fn a_rule_naming_a_missing_admission_is_refused_naming_the_node() {
    let text = refused_rule("sniff-missing", "lonely", "Admission(`nope`)");
    assert!(text.contains("node \"lonely\""), "{text}");
    assert!(text.contains("nope"), "{text}");
}

/// An HTTP origin that answers each request with its tag, a space and the
/// request body it received (by Content-Length), then closes.
fn body_echo(tag: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { break };
            c.set_read_timeout(Some(TIMEOUT)).unwrap();
            let mut got = Vec::new();
            let mut b = [0u8; 65536];
            let body = loop {
                if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    if got.len() >= end + 4 + len {
                        break got[end + 4..end + 4 + len].to_vec();
                    }
                }
                match c.read(&mut b) {
                    Ok(0) | Err(_) => break Vec::new(),
                    Ok(n) => got.extend_from_slice(&b[..n]),
                }
            };
            let mut out = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{tag} ",
                tag.len() + 1 + body.len()
            )
            .into_bytes();
            out.extend_from_slice(&body);
            let _ = c.write_all(&out);
        }
    });
    addr
}

#[test]
fn body_rules_route_posts_and_the_body_arrives_whole() {
    let vip = body_echo("vip");
    let text = body_echo("text");
    let rest = body_echo("rest");
    let dir = TempDir::new("sniff-body");
    let nodes = format!(
        "    - {{name: vip, addr: \"{vip}\", matcher: {{rule: 'BodyJSON(`user.level`, `ge`, `3`)', bodySize: 4096}}}}\n    - {{name: text, addr: \"{text}\", matcher: {{rule: 'BodyRegexp(`^hello`)'}}}}\n    - {{name: rest, addr: \"{rest}\", matcher: {{rule: 'Method(`POST`)', priority: -1}}}}\n"
    );
    let (_g, port) = start(&dir, &nodes, "");
    let post = |body: &[u8]| {
        let path = dir.write("body.bin", "");
        std::fs::write(&path, body).unwrap();
        let out = Command::new("/usr/bin/curl")
            .args(["-s", "--max-time", "20", "--data-binary"])
            .arg(format!("@{path}"))
            .arg(format!("http://127.0.0.1:{port}/p"))
            .output()
            .unwrap();
        out.stdout
    };
    let vip_body = br#"{"user":{"name":"ann","level":4}}"#;
    assert_eq!(post(vip_body), [&b"vip "[..], vip_body].concat());
    let low = br#"{"user":{"name":"bob","level":1}}"#;
    assert_eq!(post(low), [&b"rest "[..], low].concat());
    // 300 KB: far more than vip's 4 KB prefix and a socket could peek.
    let mut big = b"hello ".to_vec();
    big.extend(random_bytes(300_000, 7));
    let got = post(&big);
    assert!(got.starts_with(b"text "), "{:?}", &got[..got.len().min(20)]);
    assert!(got[5..] == big[..], "the body arrives intact");
}

/// A minimal TLS ClientHello record naming `sni`.
fn client_hello(sni: &str) -> Vec<u8> {
    let mut name = vec![0u8];
    name.extend((sni.len() as u16).to_be_bytes());
    name.extend(sni.as_bytes());
    let mut ext = vec![0, 0];
    ext.extend(((name.len() + 2) as u16).to_be_bytes());
    ext.extend((name.len() as u16).to_be_bytes());
    ext.extend(name);
    let mut body = vec![3, 3];
    body.extend([0u8; 32]);
    body.extend([0, 0, 2, 0x13, 1, 1, 0]);
    body.extend((ext.len() as u16).to_be_bytes());
    body.extend(ext);
    let mut hs = vec![1, 0];
    hs.extend((body.len() as u16).to_be_bytes());
    hs.extend(body);
    let mut rec = vec![0x16, 3, 1];
    rec.extend((hs.len() as u16).to_be_bytes());
    rec.extend(hs);
    rec
}

/// Opens a tunnel to `target` through a proxy of `kind` on `port`.
fn tunnel(kind: &str, port: u16, target: SocketAddr) -> TcpStream {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let SocketAddr::V4(t) = target else {
        panic!("ipv4 target")
    };
    match kind {
        "http" => {
            write!(c, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                c.read_exact(&mut b).unwrap();
                head.push(b[0]);
            }
            assert!(head.starts_with(b"HTTP/1.1 200"));
        }
        "socks5" => {
            c.write_all(&[5, 1, 0]).unwrap();
            let mut b = [0u8; 2];
            c.read_exact(&mut b).unwrap();
            let mut req = vec![5, 1, 0, 1];
            req.extend(t.ip().octets());
            req.extend(t.port().to_be_bytes());
            c.write_all(&req).unwrap();
            let mut rep = [0u8; 10];
            c.read_exact(&mut rep).unwrap();
            assert_eq!(rep[1], 0);
        }
        _ => {
            let mut req = vec![4, 1];
            req.extend(t.port().to_be_bytes());
            req.extend(t.ip().octets());
            req.push(0);
            c.write_all(&req).unwrap();
            let mut rep = [0u8; 8];
            c.read_exact(&mut rep).unwrap();
            assert_eq!(rep[1], 0x5A);
        }
    }
    c
}

/// Whether the echo target answers `data` through the tunnel.
fn echoed(c: &mut TcpStream, data: &[u8]) -> bool {
    if c.write_all(data).is_err() {
        return false;
    }
    let mut got = vec![0u8; data.len()];
    c.read_exact(&mut got).is_ok() && got == data
}

#[test]
fn proxy_tunnels_are_closed_when_the_bypass_matches_their_inner_host() {
    let echo = tcp_echo_server();
    let dir = TempDir::new("sniff-tunnel");
    let (ph, p5, p4) = (free_port(), free_port(), free_port());
    let svc = |name: &str, kind: &str, port: u16| {
        format!("- name: {name}\n  addr: 127.0.0.1:{port}\n  bypass: blocked\n  handler: {{type: {kind}, metadata: {{sniffing: true, sniffing.timeout: 5s}}}}\n  listener: {{type: tcp}}\n")
    };
    let cfg = dir.write(
        "gost.yaml",
        &format!(
            "services:\n{}{}{}bypasses:\n- {{name: blocked, matchers: ['*.blocked.test']}}\n",
            svc("h", "http", ph),
            svc("s5", "socks5", p5),
            svc("s4", "socks4", p4)
        ),
    );
    let g = Gost::start(&["-C", &cfg]);
    for (kind, port) in [("http", ph), ("socks5", p5), ("socks4", p4)] {
        g.wait_tcp(port);
        let ok_http = b"GET / HTTP/1.1\r\nHost: ok.test\r\n\r\n";
        let bad_http = b"GET / HTTP/1.1\r\nHost: www.blocked.test\r\n\r\n";
        assert!(echoed(&mut tunnel(kind, port, echo), ok_http), "{kind}");
        assert!(!echoed(&mut tunnel(kind, port, echo), bad_http), "{kind}");
        assert!(
            echoed(&mut tunnel(kind, port, echo), &client_hello("ok.test")),
            "{kind}"
        );
        assert!(
            !echoed(
                &mut tunnel(kind, port, echo),
                &client_hello("a.blocked.test")
            ),
            "{kind}"
        );
        // Not HTTP or TLS: nothing to check, the bytes pass.
        assert!(
            echoed(&mut tunnel(kind, port, echo), b"\x00raw bytes"),
            "{kind}"
        );
    }
}

/// Starts gost with one sniffing forward node carrying `rule`, expects
/// start-up to fail, and returns what it printed.
fn refused_rule(dir: &str, node: &str, rule: &str) -> String {
    let dir = TempDir::new(dir);
    let cfg = dir.write(
        "gost.yaml",
        &format!("services:\n- name: fwd\n  addr: 127.0.0.1:0\n  handler: {{type: tcp, metadata: {{sniffing: true}}}}\n  listener: {{type: tcp}}\n  forwarder:\n    nodes:\n    - {{name: {node}, addr: \"127.0.0.1:1\", matcher: {{rule: '{rule}'}}}}\n"),
    );
    let (status, out, err) = run_gost(&["-C", &cfg]);
    assert!(!status.success(), "gost started with rule {rule}");
    format!("{out}{err}")
}

/// GOST's TestTCPForwardSniffingBypass (testdata/forward/
/// server_bypass_sniffing.yaml): a sniffed HTTP request whose Host the
/// service's bypass matches gets 403, and the node sees nothing.
#[test]
fn a_sniffed_http_request_the_bypass_matches_gets_403() {
    let (tx, rx) = mpsc::channel();
    let echo = recorder("echo", 1, tx);
    let dir = TempDir::new("sniff-bypass");
    let port = free_port();
    let cfg = dir.write(
        "gost.yaml",
        &format!(
            "services:\n- name: forward-tcp\n  addr: 127.0.0.1:{port}\n  handler:\n    type: tcp\n    metadata:\n      sniffing: true\n      sniffing.timeout: 2s\n  listener:\n    type: tcp\n  bypass: block-all\n  forwarder:\n    nodes:\n    - name: echo\n      addr: {echo}\nbypasses:\n- name: block-all\n  matchers:\n  - 0.0.0.0/0\n"
        ),
    );
    let g = Gost::start(&["-C", &cfg]);
    g.wait_tcp(port);
    let (_, head) = curl_body(&[
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("http://127.0.0.1:{port}/"),
    ]);
    assert!(head.starts_with("HTTP/1.1 403"), "{head}\n{}", g.log());
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
}

/// GOST's TestSOCKS5NoSNI and TestSOCKS5NoSNI_LogsOnlyDebug
/// (testdata/sniffing/no_sni.yaml): curl reaching an HTTPS origin by IP
/// sends no SNI; a sniffing SOCKS5 proxy forwards it, with or without a
/// bypass to check it against, and logs nothing above debug for it.
#[test]
fn socks5_sniffing_forwards_tls_without_sni_quietly() {
    let pki = gost_e2e::pki::Pki::generate("no-sni");
    let site = TempDir::new("no-sni-site");
    site.write("index.html", "hello-gost\n");
    let origin = free_port();
    let o = Gost::start(&[
        "-L",
        &format!(
            "file+tls://127.0.0.1:{origin}?dir={}&certFile={}&keyFile={}",
            site.0.display(),
            pki.server,
            pki.server_key
        ),
    ]);
    o.wait_tcp(origin);
    let dir = TempDir::new("no-sni");
    let (plain, guarded) = (free_port(), free_port());
    let cfg = dir.write(
        "gost.yaml",
        &format!(
            "services:\n- name: service-0\n  addr: 127.0.0.1:{plain}\n  handler:\n    type: socks5\n    metadata:\n      sniffing: true\n  listener:\n    type: tcp\n- name: service-1\n  addr: 127.0.0.1:{guarded}\n  bypass: blocked\n  handler:\n    type: socks5\n    metadata:\n      sniffing: true\n  listener:\n    type: tcp\nbypasses:\n- {{name: blocked, matchers: ['*.blocked.test']}}\nlog:\n  level: debug\n"
        ),
    );
    let g = Gost::start(&["-C", &cfg]);
    for port in [plain, guarded] {
        g.wait_tcp(port);
        for _ in 0..2 {
            let (ok, body) = curl_body(&[
                "-k",
                "-x",
                &format!("socks5://127.0.0.1:{port}"),
                &format!("https://127.0.0.1:{origin}/"),
            ]);
            assert!(ok && body.contains("hello-gost"), "{body}\n{}", g.log());
        }
    }
    let log = g.log();
    for line in log.lines() {
        assert!(
            !line.contains("\"level\":\"warn\"") && !line.contains("\"level\":\"error\""),
            "{line}\n{log}"
        );
    }
}
