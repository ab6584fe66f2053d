//! The `dns` handler through the real binary, with dig (Debian's
//! bind9-dnsutils, installed when missing) as the client and a fake
//! upstream server on loopback. GOST's DNS suite (tests/e2e/dns_test.go,
//! testdata/dns/*.yaml) is replayed with its configs and assertions; then
//! the cache, DNS over TLS and HTTPS upstreams, and bad input.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::Duration;

use gost_e2e::*;
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};

/// GOST's dns_responder.py records, answered over UDP and TCP on one
/// port; every query is counted, and its EDNS Client Subnet kept.
struct Upstream {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    subnets: Arc<Mutex<Vec<String>>>,
}

fn answer(query: &[u8], subnets: &Mutex<Vec<String>>) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let question = q.queries().first()?.clone();
    if let Some(edns) = q.extensions() {
        for (_, opt) in edns.options().as_ref() {
            subnets.lock().unwrap().push(format!("{opt:?}"));
        }
    }
    let mut r = Message::new();
    r.set_id(q.id())
        .set_message_type(MessageType::Response)
        .add_query(question.clone());
    let name = question.name().to_ascii().to_ascii_lowercase();
    let data = match (name.as_str(), question.query_type()) {
        ("test.example.com.", RecordType::A) => Some(RData::A(A::new(10, 0, 0, 1))),
        ("test2.example.com.", RecordType::A) => Some(RData::A(A::new(10, 0, 0, 2))),
        ("example.com.", RecordType::AAAA) => Some(RData::AAAA(AAAA::new(0, 0, 0, 0, 0, 0, 0, 1))),
        ("slow.example.com.", _) => {
            thread::sleep(Duration::from_secs(3));
            Some(RData::A(A::new(10, 0, 0, 3)))
        }
        _ => None,
    };
    match data {
        Some(d) => {
            r.add_answer(Record::from_rdata(question.name().clone(), 300, d));
        }
        None => {
            r.set_response_code(ResponseCode::NXDomain);
        }
    }
    r.to_vec().ok()
}

fn upstream() -> Upstream {
    // One port for both: a TCP port, then the same UDP port if free.
    let (tcp, udp) = loop {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        if let Ok(udp) = UdpSocket::bind(tcp.local_addr().unwrap()) {
            break (tcp, udp);
        }
    };
    let addr = udp.local_addr().unwrap();
    let queries = Arc::new(AtomicUsize::new(0));
    let subnets = Arc::new(Mutex::new(Vec::new()));
    let (q, s) = (queries.clone(), subnets.clone());
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, peer)) = udp.recv_from(&mut buf) {
            q.fetch_add(1, Ordering::SeqCst);
            let (udp, msg, s) = (udp.try_clone().unwrap(), buf[..n].to_vec(), s.clone());
            thread::spawn(move || {
                if let Some(r) = answer(&msg, &s) {
                    let _ = udp.send_to(&r, peer);
                }
            });
        }
    });
    let (q, s) = (queries.clone(), subnets.clone());
    thread::spawn(move || {
        for c in tcp.incoming() {
            let Ok(mut c) = c else { return };
            let (q, s) = (q.clone(), s.clone());
            thread::spawn(move || loop {
                let mut len = [0u8; 2];
                if c.read_exact(&mut len).is_err() {
                    return;
                }
                let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
                if c.read_exact(&mut msg).is_err() {
                    return;
                }
                q.fetch_add(1, Ordering::SeqCst);
                let Some(r) = answer(&msg, &s) else { return };
                let mut out = (r.len() as u16).to_be_bytes().to_vec();
                out.extend(r);
                if c.write_all(&out).is_err() {
                    return;
                }
            });
        }
    });
    Upstream {
        addr,
        queries,
        subnets,
    }
}

fn dig_path() -> &'static str {
    static INSTALL: Once = Once::new();
    let found = || Command::new("dig").arg("-v").output().is_ok();
    if !found() {
        INSTALL.call_once(|| {
            let apt = "apt-get update -qq && apt-get install -y -qq bind9-dnsutils >/dev/null";
            let ok = Command::new("sh")
                .args(["-c", apt])
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                let _ = Command::new("sudo").args(["sh", "-c", apt]).status();
            }
        });
    }
    assert!(
        found(),
        "dig not found and bind9-dnsutils could not be installed"
    );
    "dig"
}

/// dig's answer section (`+short`) for `name`/`qtype` at the gost on
/// `port`; `None` when no answer came (dig exits with an error).
fn dig(port: u16, name: &str, qtype: &str, extra: &[&str]) -> Option<Vec<String>> {
    let out = Command::new(dig_path())
        .args(["@127.0.0.1", "-p", &port.to_string(), name, qtype])
        .args(["+short", "+time=2", "+tries=1"])
        .args(extra)
        .output()
        .expect("run dig");
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains(";;") {
        // dig reports a failure in comments even with +short.
        return None;
    }
    Some(text.lines().map(str::to_string).collect())
}

/// dig's full output for a query whose header the test reads.
fn dig_full(port: u16, name: &str) -> String {
    let out = Command::new(dig_path())
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            name,
            "A",
            "+time=2",
            "+tries=1",
        ])
        .output()
        .expect("run dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A gost from a GOST testdata/dns config, with the service's address and
/// the upstream's put in.
fn gost_dns(dir: &TempDir, yaml: &str, tcp: bool) -> (Gost, u16) {
    let port = if tcp { free_port() } else { free_udp_port() };
    let cfg = dir.write(
        "gost.yaml",
        &yaml.replace(":1053", &format!("127.0.0.1:{port}")),
    );
    let gost = Gost::start(&["-C", &cfg]);
    if tcp {
        gost.wait_tcp(port);
    } else {
        gost.wait_log("listening");
    }
    (gost, port)
}

const UPSTREAM_YAML: &str = "services:\n- name: dns\n  addr: :1053\n  handler:\n    type: dns\n    metadata:\n      dns: udp://UPSTREAM\n      timeout: 5s\n  listener:\n    type: dns\n";

fn with_upstream(yaml: &str, up: &Upstream) -> String {
    yaml.replace("UPSTREAM", &up.addr.to_string())
}

/// TestDNSUpstream, and the cache: a repeated question does not reach
/// the upstream again.
#[test]
fn upstream_answers_and_repeats_come_from_the_cache() {
    let up = upstream();
    let dir = TempDir::new("dns");
    let (_g, port) = gost_dns(&dir, &with_upstream(UPSTREAM_YAML, &up), false);
    assert_eq!(
        dig(port, "test.example.com", "A", &[]).unwrap(),
        ["10.0.0.1"]
    );
    assert_eq!(dig(port, "example.com", "AAAA", &[]).unwrap(), ["::1"]);
    assert_eq!(
        dig(port, "test2.example.com", "A", &[]).unwrap(),
        ["10.0.0.2"]
    );
    let asked = up.queries.load(Ordering::SeqCst);
    assert_eq!(asked, 3);
    assert_eq!(
        dig(port, "TEST.example.com", "A", &[]).unwrap(),
        ["10.0.0.1"]
    );
    assert_eq!(
        up.queries.load(Ordering::SeqCst),
        asked,
        "served from the cache"
    );
    // The cached answer's TTL counts down from the upstream's 300.
    let full = dig_full(port, "test.example.com");
    assert!(full.contains("status: NOERROR"), "{full}");
}

/// TestDNSTCP: listener mode tcp, upstream over TCP.
#[test]
fn tcp_listener_and_tcp_upstream() {
    let up = upstream();
    let dir = TempDir::new("dns");
    let yaml = "services:\n- name: dns\n  addr: :1053\n  handler:\n    type: dns\n    metadata:\n      dns: tcp://UPSTREAM\n      timeout: 5s\n  listener:\n    type: dns\n    metadata:\n      mode: tcp\n";
    let (_g, port) = gost_dns(&dir, &with_upstream(yaml, &up), true);
    assert_eq!(
        dig(port, "test.example.com", "A", &["+tcp"]).unwrap(),
        ["10.0.0.1"]
    );
    assert_eq!(
        dig(port, "test2.example.com", "A", &["+tcp"]).unwrap(),
        ["10.0.0.2"]
    );
}

/// TestDNSBypass: a bypassed name gets an empty answer, without upstream.
#[test]
fn bypassed_name_gets_an_empty_answer() {
    let up = upstream();
    let dir = TempDir::new("dns");
    let yaml = format!(
        "{}  bypass: block-example\n\nbypasses:\n- name: block-example\n  matchers:\n  - test.example.com\n",
        with_upstream(UPSTREAM_YAML, &up)
    );
    let (_g, port) = gost_dns(&dir, &yaml, false);
    assert_eq!(
        dig(port, "test.example.com", "A", &[]).unwrap(),
        Vec::<String>::new()
    );
    let full = dig_full(port, "test.example.com");
    assert!(
        full.contains("status: NOERROR") && full.contains("ANSWER: 0"),
        "{full}"
    );
    assert_eq!(up.queries.load(Ordering::SeqCst), 0);
    assert_eq!(
        dig(port, "test2.example.com", "A", &[]).unwrap(),
        ["10.0.0.2"]
    );
}

/// TestDNSHostMapper: mapped names are answered from `hosts` with an
/// unreachable upstream; unmapped ones get no answer.
#[test]
fn hosts_are_answered_without_upstream() {
    let dir = TempDir::new("dns");
    let yaml = "services:\n- name: dns\n  addr: :1053\n  handler:\n    type: dns\n    metadata:\n      dns: udp://127.0.0.1:1\n      timeout: 2s\n  listener:\n    type: dns\n  hosts: my-hosts\n\nhosts:\n- name: my-hosts\n  mappings:\n  - ip: 10.0.0.100\n    hostname: mapped.example.com\n  - ip: 192.168.1.200\n    hostname: aaaa.mapped.example.com\n";
    let (_g, port) = gost_dns(&dir, yaml, false);
    assert_eq!(
        dig(port, "mapped.example.com", "A", &[]).unwrap(),
        ["10.0.0.100"]
    );
    assert_eq!(dig(port, "test.example.com", "A", &[]), None);
}

/// TestDNSExchangeFailure and TestDNSInvalidQuery, with oversized and
/// looping messages: no answer, and the service keeps answering.
#[test]
fn failures_and_bad_messages_get_no_answer_and_the_service_goes_on() {
    let dir = TempDir::new("dns");
    let yaml = "services:\n- name: dns\n  addr: :1053\n  handler:\n    type: dns\n    metadata:\n      dns: udp://127.0.0.1:1\n      timeout: 2s\n  listener:\n    type: dns\n  hosts: h\nhosts:\n- name: h\n  mappings:\n  - ip: 10.9.9.9\n    hostname: alive.test\n";
    let (g, port) = gost_dns(&dir, yaml, false);
    assert_eq!(dig(port, "test.example.com", "A", &[]), None);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut looped = vec![0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    looped.extend([0xC0, 12, 0, 1, 0, 1]);
    let mut oversized = looped[..12].to_vec();
    oversized.resize(60_000, 0x3f);
    for bad in [&b"garbage!"[..], &looped, &oversized] {
        sock.send_to(bad, ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 512];
        assert!(sock.recv_from(&mut buf).is_err(), "no answer to bad input");
    }
    assert_eq!(dig(port, "alive.test", "A", &[]).unwrap(), ["10.9.9.9"]);
    // SAFETY: signal 0 only checks that our child process exists.
    assert_eq!(unsafe { libc::kill(g.pid(), 0) }, 0, "{}", g.log());
}

/// TestDNSRateLimiter (a generous limit passes), and a limit of one query
/// a second leaves later queries unanswered.
#[test]
fn rate_limiter_applies_per_query() {
    let up = upstream();
    let dir = TempDir::new("dns");
    let yaml = format!(
        "{}  rlimiter: limiter-0\n\nrlimiters:\n- name: limiter-0\n  limits:\n  - \"$ 1000\"\n",
        with_upstream(UPSTREAM_YAML, &up)
    );
    let (_g, port) = gost_dns(&dir, &yaml, false);
    assert_eq!(
        dig(port, "test.example.com", "A", &[]).unwrap(),
        ["10.0.0.1"]
    );
    assert_eq!(
        dig(port, "test2.example.com", "A", &[]).unwrap(),
        ["10.0.0.2"]
    );
    let dir = TempDir::new("dns");
    let (_g, port) = gost_dns(&dir, &yaml.replace("$ 1000", "$ 1"), false);
    let answered = (0..4)
        .filter(|_| dig(port, "test.example.com", "A", &["+time=1"]).is_some())
        .count();
    assert!((1..4).contains(&answered), "{answered} of 4 answered");
}

/// TestDNSTLS: the listener in mode tls (DNS over TLS), queried with dig.
#[test]
fn dot_listener() {
    let up = upstream();
    let dir = TempDir::new("dns");
    let yaml = format!(
        "{}    metadata:\n      mode: tls\n",
        with_upstream(UPSTREAM_YAML, &up)
    );
    let (_g, port) = gost_dns(&dir, &yaml, true);
    assert_eq!(
        dig(port, "test.example.com", "A", &["+tls"]).unwrap(),
        ["10.0.0.1"]
    );
}

/// Upstreams over DNS over TLS (a second gost in mode tls with a generated
/// certificate) and DNS over HTTPS (a Python server with the same).
#[test]
fn dot_and_doh_upstreams() {
    let up = upstream();
    let pki = pki::Pki::generate("dns-pki");
    let dir = TempDir::new("dns-dot");
    let dot = free_port();
    let dot_yaml = format!(
        "services:\n- name: dot\n  addr: 127.0.0.1:{dot}\n  handler:\n    type: dns\n    metadata:\n      dns: udp://{}\n  listener:\n    type: dns\n    tls:\n      certFile: {}\n      keyFile: {}\n    metadata:\n      mode: tls\n",
        up.addr, pki.server, pki.server_key
    );
    let dot_gost = Gost::start(&["-C", &dir.write("dot.yaml", &dot_yaml)]);
    dot_gost.wait_tcp(dot);
    let script = dir.write("doh.py", DOH_SERVER);
    let doh = free_port();
    let mut doh_server = Command::new("python3")
        .args([
            &script,
            &pki.server,
            &pki.server_key,
            &doh.to_string(),
            &up.addr.to_string(),
        ])
        .spawn()
        .expect("run python3");
    let front = |upstream: String| {
        let port = free_udp_port();
        let url = format!("dns://127.0.0.1:{port}?dns={upstream}");
        let g = Gost::start(&["-L", &url]);
        g.wait_log("listening");
        (g, port)
    };
    let (_a, port) = front(format!("tls://127.0.0.1:{dot}"));
    assert_eq!(
        dig(port, "test.example.com", "A", &[]).unwrap(),
        ["10.0.0.1"]
    );
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", doh)).is_err() {
        assert!(start.elapsed() < TIMEOUT, "DoH server did not start");
        thread::sleep(Duration::from_millis(50));
    }
    let (_b, port) = front(format!("https://127.0.0.1:{doh}/dns-query"));
    assert_eq!(
        dig(port, "test2.example.com", "A", &[]).unwrap(),
        ["10.0.0.2"]
    );
    let _ = doh_server.kill();
    let _ = doh_server.wait();
}

/// A DNS over HTTPS server (RFC 8484 POST) in front of a UDP upstream.
const DOH_SERVER: &str = r#"
import http.server, socket, ssl, sys
cert, key, port, upstream = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
host, uport = upstream.rsplit(":", 1)
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        if self.path != "/dns-query" or self.headers.get("Content-Type") != "application/dns-message":
            self.send_error(400)
            return
        q = self.rfile.read(int(self.headers["Content-Length"]))
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(5)
        s.sendto(q, (host, int(uport)))
        r = s.recv(65535)
        self.send_response(200)
        self.send_header("Content-Type", "application/dns-message")
        self.send_header("Content-Length", str(len(r)))
        self.end_headers()
        self.wfile.write(r)
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", port), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"#;

/// `clientIP` goes upstream as EDNS Client Subnet; a slow upstream past
/// `timeout` gets no answer.
#[test]
fn client_subnet_and_upstream_timeout() {
    let up = upstream();
    let dir = TempDir::new("dns");
    let yaml = with_upstream(UPSTREAM_YAML, &up)
        .replace("timeout: 5s", "timeout: 1s\n      clientIP: 192.0.2.7");
    let (_g, port) = gost_dns(&dir, &yaml, false);
    assert_eq!(
        dig(port, "test.example.com", "A", &[]).unwrap(),
        ["10.0.0.1"]
    );
    let subnets = up.subnets.lock().unwrap().join(" ");
    assert!(
        subnets.contains("192.0.2.7") || subnets.contains("192.0.2.0"),
        "{subnets}"
    );
    assert_eq!(dig(port, "slow.example.com", "A", &["+time=3"]), None);
}
