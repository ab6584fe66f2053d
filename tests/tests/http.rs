//! The `http` proxy handler (and `auto`, which serves HTTP by default)
//! through the real binary, driven by curl and by raw sockets.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use gost_e2e::*;

const CURL: &str = "/usr/bin/curl";

/// A small HTTP/1.1 origin with keep-alive. It answers
/// `<METHOD> <path> len=<body length> sum=<byte sum>` with a
/// Content-Length, except `/chunked` (chunked reply) and `/close` (no
/// length, closes) and `/bye` (a keep-alive reply, then the origin closes
/// the idle connection anyway), and records every request head it receives
/// and how many connections it accepted.
struct Origin {
    addr: std::net::SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl Origin {
    fn start() -> Origin {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (h, n) = (heads.clone(), accepted.clone());
        thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { break };
                n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let h = h.clone();
                thread::spawn(move || serve_origin(c, h));
            }
        });
        Origin {
            addr,
            heads,
            accepted,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

fn serve_origin(mut c: TcpStream, heads: Arc<Mutex<Vec<String>>>) {
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let Some(end) = read_until(&mut c, &mut buf, b"\r\n\r\n") else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let lower = head.to_ascii_lowercase();
        if head.contains(" /reject ") {
            // Refuses the body without reading it, keeping the connection
            // open a while: a proxy that only reads the answer after
            // sending the whole body would stall here.
            let _ = c.write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n");
            thread::sleep(Duration::from_secs(3));
            return;
        }
        let body = if lower.contains("transfer-encoding: chunked") {
            let mut body = Vec::new();
            loop {
                let Some(e) = read_until(&mut c, &mut buf, b"\r\n") else {
                    return;
                };
                let size =
                    usize::from_str_radix(String::from_utf8_lossy(&buf[..e]).trim(), 16).unwrap();
                buf.drain(..e + 2);
                while buf.len() < size + 2 {
                    if !fill(&mut c, &mut buf) {
                        return;
                    }
                }
                body.extend_from_slice(&buf[..size]);
                buf.drain(..size + 2);
                if size == 0 {
                    break;
                }
            }
            body
        } else {
            let len = lower
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse::<usize>().unwrap())
                .unwrap_or(0);
            while buf.len() < len {
                if !fill(&mut c, &mut buf) {
                    return;
                }
            }
            buf.drain(..len).collect()
        };
        heads.lock().unwrap().push(head.clone());
        let mut words = head.split_whitespace();
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let sum: u64 = body.iter().map(|b| *b as u64).sum();
        let text = format!("{method} {path} len={} sum={sum}", body.len());
        let ok = match path {
            "/upgrade" => {
                let _ = c.write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
                );
                let _ = c.write_all(&buf);
                let mut tmp = [0u8; 4096];
                while let Ok(n @ 1..) = c.read(&mut tmp) {
                    if c.write_all(&tmp[..n]).is_err() {
                        break;
                    }
                }
                return;
            }
            "/chunked" => {
                let (a, b) = text.split_at(text.len() / 2);
                c.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                        a.len(),
                        b.len()
                    )
                    .as_bytes(),
                )
            }
            "/close" => {
                let _ = c.write_all(format!("HTTP/1.1 200 OK\r\n\r\n{text}").as_bytes());
                return;
            }
            _ => c.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nKeep-Alive: timeout=5\r\n\r\n{text}",
                    text.len()
                )
                .as_bytes(),
            ),
        };
        if ok.is_err() || lower.contains("connection: close") || path == "/bye" {
            return;
        }
    }
}

/// Reads until `pat` is in `buf`; its index, or `None` at EOF.
fn read_until(c: &mut TcpStream, buf: &mut Vec<u8>, pat: &[u8]) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(pat.len()).position(|w| w == pat) {
            return Some(i);
        }
        if !fill(c, buf) {
            return None;
        }
    }
}

fn fill(c: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut tmp = [0u8; 16 * 1024];
    match c.read(&mut tmp) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&tmp[..n]);
            true
        }
    }
}

/// Runs curl; returns (exit code, stdout, stderr).
fn curl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(CURL)
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn start_proxy(url: &str) -> Gost {
    let g = Gost::start(&["-L", url]);
    g.wait_log("listening");
    g
}

/// A raw request on a fresh connection; the whole answer until close.
fn raw(port: u16, request: &[u8]) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    // The proxy may close before reading everything of a bad request.
    let _ = c.write_all(request);
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn plain_requests_share_one_client_connection_and_lose_hop_by_hop_fields() {
    let (a, b) = (Origin::start(), Origin::start());
    let (port, api) = (free_port(), free_port());
    let g = Gost::start(&[
        "-L",
        &format!("http://127.0.0.1:{port}?enableStats=true"),
        "-api",
        &format!("127.0.0.1:{api}"),
    ]);
    g.wait_tcp(api);
    let before = wait_service(api, "service-0", |s| {
        s["status"]["state"] == "ready" && s["status"]["stats"]["currentConns"] == 0
    });
    let conns_before = before["status"]["stats"]["totalConns"].as_u64().unwrap();

    let proxy = format!("http://127.0.0.1:{port}");
    let (code, out, err) = curl(&[
        "-x",
        &proxy,
        "-H",
        "Connection: X-Drop",
        "-H",
        "X-Drop: secret",
        "-H",
        "X-Keep: yes",
        &a.url("/one?q=1"),
        &b.url("/chunked"),
        &a.url("/two"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "GET /one?q=1 len=0 sum=0GET /chunked len=0 sum=0GET /two len=0 sum=0"
    );
    for head in a.heads().iter().chain(b.heads().iter()) {
        let lower = head.to_ascii_lowercase();
        assert!(lower.starts_with("get /"), "origin form: {head}");
        assert!(lower.contains("x-keep: yes"), "{head}");
        for gone in ["x-drop", "proxy-connection", "keep-alive"] {
            assert!(!lower.contains(gone), "{gone} forwarded: {head}");
        }
    }
    assert!(a.heads()[0].contains(&format!("Host: {}", a.addr)));

    let svc = wait_service(api, "service-0", |s| {
        s["status"]["stats"]["currentConns"] == 0
    });
    let st = &svc["status"]["stats"];
    assert_eq!(
        st["totalConns"].as_u64().unwrap(),
        conns_before + 1,
        "{svc}"
    );
    assert!(st["inputBytes"].as_u64().unwrap() > 100, "{svc}");
    assert!(st["outputBytes"].as_u64().unwrap() > 100, "{svc}");
    assert_eq!(st["totalErrs"], 0, "{svc}");
}

#[test]
fn request_bodies_with_length_and_chunked_and_unframed_responses() {
    let o = Origin::start();
    let port = free_port();
    let _g = start_proxy(&format!("http://127.0.0.1:{port}"));
    let proxy = format!("http://127.0.0.1:{port}");
    let dir = TempDir::new("httpbody");
    let body = random_bytes(300_000, 3);
    let sum: u64 = body.iter().map(|b| *b as u64).sum();
    let file = dir.path("body.bin");
    std::fs::write(&file, &body).unwrap();
    let data = format!("@{file}");

    let (code, out, err) = curl(&["-x", &proxy, "--data-binary", &data, &o.url("/len")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("POST /len len=300000 sum={sum}"));

    let (code, out, err) = curl(&[
        "-x",
        &proxy,
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &data,
        &o.url("/te"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("POST /te len=300000 sum={sum}"));

    // No length in the response: it ends when the origin closes.
    let (code, out, err) = curl(&["-x", &proxy, "--data-binary", "x", &o.url("/close")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "POST /close len=1 sum=120");

    // An origin that answers before taking the body is heard at once.
    let big = dir.path("big.bin");
    std::fs::write(&big, random_bytes(16 * 1024 * 1024, 5)).unwrap();
    let start = Instant::now();
    let (_, out, _) = curl(&[
        "-x",
        &proxy,
        "-H",
        "Expect:",
        "--data-binary",
        &format!("@{big}"),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &o.url("/reject"),
    ]);
    assert_eq!(out, "413");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );

    let (code, out, err) = curl(&["-x", &proxy, "-I", &o.url("/head")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

#[test]
fn connect_tunnel_and_ipv6_listener() {
    let o = Origin::start();
    let port = free_port();
    let _g = start_proxy(&format!("http://[::1]:{port}"));
    let proxy = format!("http://[::1]:{port}");
    let (code, out, err) = curl(&["-p", "-x", &proxy, &o.url("/tunnel")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "GET /tunnel len=0 sum=0");
    let (code, out, err) = curl(&["-x", &proxy, &o.url("/plain")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "GET /plain len=0 sum=0");

    // The reply GOST sends, and bytes pipelined behind the CONNECT head
    // reach the target.
    let mut c = TcpStream::connect(("::1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let req = format!(
        "CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\nGET /piped HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        o.addr
    );
    c.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).unwrap_or_default();
    assert!(
        resp.starts_with("HTTP/1.1 200 Connection established\r\nProxy-Agent: gost/3.0\r\n\r\n"),
        "{resp}"
    );
    assert!(resp.ends_with("GET /piped len=0 sum=0"), "{resp}");
}

#[test]
fn basic_auth_lets_the_right_user_in_and_answers_407_otherwise() {
    let o = Origin::start();
    let port = free_port();
    let _g = start_proxy(&format!("http://u:p%40ss@127.0.0.1:{port}"));
    let proxy = format!("http://127.0.0.1:{port}");
    let (code, out, err) = curl(&["-x", &proxy, "--proxy-user", "u:p@ss", &o.url("/in")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "GET /in len=0 sum=0");
    let (code, out, err) = curl(&["-p", "-x", &proxy, "--proxy-user", "u:p@ss", &o.url("/t")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "GET /t len=0 sum=0");

    for user in [Some("u:wrong"), None] {
        let mut args = vec!["-x", proxy.as_str(), "-D", "-", "-o", "/dev/null"];
        if let Some(u) = user {
            args.extend(["--proxy-user", u]);
        }
        let url = o.url("/denied");
        args.push(&url);
        let (code, out, err) = curl(&args);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.starts_with("HTTP/1.1 407 Proxy Authentication Required"),
            "{out}"
        );
        assert!(
            out.contains("Proxy-Authenticate: Basic realm=\"gost\""),
            "{out}"
        );
    }
    assert_eq!(o.heads().len(), 2, "denied requests never reach the origin");
}

#[test]
fn probe_resistance_hides_the_proxy_unless_knocked() {
    let port = free_port();
    let _g = start_proxy(&format!(
        "http://u:p@127.0.0.1:{port}?probeResist=code:404&knock=secret.example"
    ));
    let resp = raw(
        port,
        b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 404 Not Found\r\n"), "{resp}");
    let resp = raw(
        port,
        b"GET http://secret.example/ HTTP/1.1\r\nHost: secret.example\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 407 "), "{resp}");
}

#[test]
fn errors_dead_origin_malformed_oversized_and_slow_clients() {
    let (port, api) = (free_port(), free_port());
    let g = Gost::start(&[
        "-L",
        &format!("http://127.0.0.1:{port}?readTimeout=1s&enableStats=true"),
        "-api",
        &format!("127.0.0.1:{api}"),
    ]);
    g.wait_tcp(api);
    wait_service(api, "service-0", |s| s["status"]["state"] == "ready");
    let proxy = format!("http://127.0.0.1:{port}");

    // A port nobody listens on: GOST answers 503.
    let dead = free_port();
    let (code, out, err) = curl(&[
        "-x",
        &proxy,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://127.0.0.1:{dead}/"),
    ]);
    assert_eq!((code, out.as_str()), (0, "503"), "{err}");
    let resp = raw(
        port,
        format!("CONNECT 127.0.0.1:{dead} HTTP/1.1\r\n\r\n").as_bytes(),
    );
    assert!(resp.starts_with("HTTP/1.1 503 "), "{resp}");

    let resp = raw(port, b"GARBAGE\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{resp}");
    assert!(!resp.contains("Proxy-Agent"), "{resp}");
    let resp = raw(port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 400 "), "origin form: {resp}");

    let mut big = b"GET http://127.0.0.1/ HTTP/1.1\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 70 * 1024));
    big.extend_from_slice(b"\r\n\r\n");
    let resp = raw(port, &big);
    assert!(resp.starts_with("HTTP/1.1 431 "), "{resp}");

    // A client that never finishes its head is dropped after readTimeout.
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(b"GET http://127.0.0.1/ HTTP/1.1\r\nHost:")
        .unwrap();
    let start = Instant::now();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let waited = start.elapsed();
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    let svc = wait_service(api, "service-0", |s| {
        s["status"]["stats"]["currentConns"] == 0
    });
    // dead origin x2, garbage, origin form, oversized, slow head
    assert_eq!(svc["status"]["stats"]["totalErrs"], 6, "{svc}");
}

#[test]
fn auto_handler_serves_http_and_socks_on_a_scheme_less_listener() {
    let o = Origin::start();
    let port = free_port();
    let g = start_proxy(&format!("127.0.0.1:{port}"));
    assert!(g.log().contains("listening"));
    let proxy = format!("http://127.0.0.1:{port}");
    let (code, out, err) = curl(&["-x", &proxy, &o.url("/auto"), &o.url("/again")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "GET /auto len=0 sum=0GET /again len=0 sum=0");
    let (code, out, err) = curl(&["-p", "-x", &proxy, &o.url("/tunnel")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "GET /tunnel len=0 sum=0");
    // The first byte sends SOCKS clients to the SOCKS handlers.
    let socks = format!("127.0.0.1:{port}");
    for flag in ["--socks5", "--socks4"] {
        let (code, out, err) = curl(&[flag, &socks, &o.url("/socks")]);
        assert_eq!(code, 0, "{flag}: {err}");
        assert_eq!(out, "GET /socks len=0 sum=0", "{flag}");
    }
}

#[test]
fn protocol_upgrade_switches_to_a_raw_relay() {
    let o = Origin::start();
    let port = free_port();
    let _g = start_proxy(&format!("http://127.0.0.1:{port}"));
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nearly",
        o.url("/upgrade")
    );
    c.write_all(req.as_bytes()).unwrap();
    let mut got = Vec::new();
    let want = b"\r\n\r\nearly";
    while !got.ends_with(want) {
        assert!(fill(&mut c, &mut got), "{}", String::from_utf8_lossy(&got));
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 101 "), "{text}");
    assert!(text.contains("Upgrade: echo\r\n"), "{text}");
    c.write_all(b" and late").unwrap();
    let mut more = Vec::new();
    while more.len() < 9 {
        assert!(fill(&mut c, &mut more));
    }
    assert_eq!(more, b" and late");
    assert!(o.heads()[0].contains("Upgrade: echo"), "{:?}", o.heads());
}

#[test]
fn named_authers_with_a_reloaded_file() {
    let o = Origin::start();
    let port = free_port();
    let dir = TempDir::new("authers");
    let users = dir.write("users.txt", "# users\nfile-user old-pw\n");
    let cfg = dir.write(
        "gost.yaml",
        &format!(
            "services:\n- name: proxy\n  addr: 127.0.0.1:{port}\n  handler:\n    type: http\n    authers: [fixed, fromfile]\n    metadata:\n      header: {{X-Test: yes}}\n  listener:\n    type: tcp\nauthers:\n- name: fixed\n  auths:\n  - username: admin\n    password: pw\n- name: fromfile\n  reload: 1s\n  file:\n    path: {users}\n"
        ),
    );
    let g = Gost::start(&["-C", &cfg]);
    g.wait_log("listening");
    let proxy = format!("http://127.0.0.1:{port}");
    let status = |user: &str| {
        let (code, out, err) = curl(&[
            "-x",
            &proxy,
            "--proxy-user",
            user,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &o.url("/a"),
        ]);
        assert_eq!(code, 0, "{err}");
        out
    };
    assert_eq!(status("admin:pw"), "200");
    assert_eq!(status("file-user:old-pw"), "200");
    assert_eq!(status("file-user:new-pw"), "407");
    std::fs::write(&users, "file-user new-pw\n").unwrap();
    let start = Instant::now();
    while status("file-user:new-pw") != "200" {
        assert!(start.elapsed() < TIMEOUT, "file never reloaded");
        thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(status("file-user:old-pw"), "407");
    assert_eq!(status("admin:pw"), "200");

    // Responses the proxy writes itself carry `Proxy-Agent` and `header`.
    let dead = format!("http://127.0.0.1:{}/", free_port());
    let (code, out, err) = curl(&[
        "-x",
        &proxy,
        "--proxy-user",
        "admin:pw",
        "-D",
        "-",
        "-o",
        "/dev/null",
        &dead,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("HTTP/1.1 503 "), "{out}");
    assert!(out.contains("Proxy-Agent: gost/3.0\r\n"), "{out}");
    assert!(out.contains("X-Test: yes\r\n"), "{out}");
}

#[test]
fn pipelined_requests_and_http10_clients() {
    let o = Origin::start();
    let port = free_port();
    let _g = start_proxy(&format!("http://127.0.0.1:{port}"));
    let (a, b) = (o.url("/p1"), o.url("/p2"));
    let resp = raw(
        port,
        format!(
            "POST {a} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET {b} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert!(resp.contains("POST /p1 len=3 sum=294"), "{resp}");
    assert!(resp.ends_with("GET /p2 len=0 sum=0"), "{resp}");
    assert!(resp.contains("Connection: close\r\n"), "{resp}");

    // HTTP/1.0 without keep-alive: one response, then close.
    let resp = raw(port, format!("GET {a} HTTP/1.0\r\n\r\n").as_bytes());
    assert!(resp.starts_with("HTTP/1.0 200 OK\r\n"), "{resp}");
    assert!(resp.ends_with("GET /p1 len=0 sum=0"), "{resp}");
}

#[test]
fn origin_connection_is_reused_by_the_same_client_unless_keepalive_is_off() {
    let proxy_port = free_port();
    let _g = start_proxy(&format!("http://127.0.0.1:{proxy_port}"));
    let proxy = format!("http://127.0.0.1:{proxy_port}");
    let (a, b) = (Origin::start(), Origin::start());
    // Same origin three times (with another origin between): one origin
    // connection each, and no `Connection: close` sent to the origin.
    let (code, out, err) = curl(&[
        "-x",
        &proxy,
        &a.url("/1"),
        &a.url("/2"),
        &b.url("/x"),
        &a.url("/3"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "GET /1 len=0 sum=0GET /2 len=0 sum=0GET /x len=0 sum=0GET /3 len=0 sum=0"
    );
    // a's connection was dropped when the client moved on to b.
    assert_eq!(a.accepted(), 2);
    assert_eq!(b.accepted(), 1);
    assert!(a
        .heads()
        .iter()
        .all(|h| !h.to_ascii_lowercase().contains("connection:")));

    // The origin closes an idle kept connection: the next request goes out
    // again on a new one, unseen by the client.
    let c = Origin::start();
    let (code, out, err) = curl(&["-x", &proxy, &c.url("/bye"), &c.url("/after")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "GET /bye len=0 sum=0GET /after len=0 sum=0");
    assert_eq!(c.accepted(), 2);

    // keepalive=false: one origin connection per request, as GOST's default.
    let off_port = free_port();
    let _off = start_proxy(&format!("http://127.0.0.1:{off_port}?keepalive=false"));
    let d = Origin::start();
    let (code, out, err) = curl(&[
        "-x",
        &format!("http://127.0.0.1:{off_port}"),
        &d.url("/1"),
        &d.url("/2"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "GET /1 len=0 sum=0GET /2 len=0 sum=0");
    assert_eq!(d.accepted(), 2);
    assert!(d
        .heads()
        .iter()
        .all(|h| h.to_ascii_lowercase().contains("connection: close")));
}
