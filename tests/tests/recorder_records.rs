//! What GOST's handlers put in their `recorder.service.handler` records,
//! through the real binary: the target (`host`), the upstream
//! connection's addresses (`src`, `dst`), the route, the forwarder's
//! node, the client's id and the sniffed protocol, for the forward,
//! socks5, http, relay and ss handlers; and the sub-records of sniffed
//! traffic.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use gost_e2e::*;
use serde_json::Value;

/// The records in a file recorder's file (one JSON object a line),
/// once `want` of them satisfy `done`.
fn wait_records(path: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let recs: Vec<Value> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        if done(&recs) {
            return recs;
        }
        assert!(start.elapsed() < TIMEOUT, "records so far: {recs:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The record of `service`'s connection that carried bytes.
fn of<'a>(recs: &'a [Value], service: &str) -> Option<&'a Value> {
    recs.iter()
        .find(|r| r["service"] == service && r["inputBytes"].as_u64() > Some(0))
}

fn echo(mut c: TcpStream, n: usize) {
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let data = random_bytes(n, 7);
    c.write_all(&data).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    assert_eq!(back, data);
}

fn read_head(c: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(c.read(&mut b).unwrap(), 1, "{head:?}");
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}

fn socks5_connect(port: u16, user: &str, pass: &str, target: std::net::SocketAddr) -> TcpStream {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(&[5, 1, 2]).unwrap();
    let mut r = [0u8; 2];
    c.read_exact(&mut r).unwrap();
    assert_eq!(r, [5, 2]);
    let mut auth = vec![1, user.len() as u8];
    auth.extend(user.as_bytes());
    auth.push(pass.len() as u8);
    auth.extend(pass.as_bytes());
    c.write_all(&auth).unwrap();
    c.read_exact(&mut r).unwrap();
    assert_eq!(r, [1, 0]);
    let std::net::SocketAddr::V4(t) = target else {
        panic!()
    };
    let mut req = vec![5, 1, 0, 1];
    req.extend(t.ip().octets());
    req.extend(t.port().to_be_bytes());
    c.write_all(&req).unwrap();
    let mut rep = [0u8; 10];
    c.read_exact(&mut rep).unwrap();
    assert_eq!(rep[1], 0);
    c
}

#[test]
fn handler_records_name_the_target_route_node_and_client_as_gost_does() {
    let echo_addr = tcp_echo_server();
    let dir = TempDir::new("recorder-records");
    let recs = dir.path("records.txt");
    let [fwd, s5, hp, relay, via_relay, ss, via_ss, gone] = [(); 8].map(|_| free_port());
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let rec = "recorders: [{name: recs, record: recorder.service.handler}]";
    let file = dir.write(
        "gost.yaml",
        &format!(
            "services:
- name: fwd
  addr: 127.0.0.1:{fwd}
  handler: {{type: tcp}}
  listener: {{type: tcp}}
  forwarder: {{nodes: [{{name: echo, addr: {echo_addr}}}]}}
  {rec}
- name: s5
  addr: 127.0.0.1:{s5}
  handler: {{type: socks5, auth: {{username: alice, password: pw}}}}
  listener: {{type: tcp}}
  {rec}
- name: hp
  addr: 127.0.0.1:{hp}
  handler: {{type: http, auth: {{username: bob, password: pw}}}}
  listener: {{type: tcp}}
  {rec}
- name: relay
  addr: 127.0.0.1:{relay}
  handler: {{type: relay}}
  listener: {{type: tcp}}
  {rec}
- name: via-relay
  addr: 127.0.0.1:{via_relay}
  handler: {{type: tcp, chain: to-relay}}
  listener: {{type: tcp}}
  forwarder: {{nodes: [{{name: echo, addr: {echo_addr}}}]}}
  {rec}
- name: ss
  addr: 127.0.0.1:{ss}
  handler: {{type: ss, auth: {{username: aes-256-gcm, password: secret}}}}
  listener: {{type: tcp}}
  {rec}
- name: via-ss
  addr: 127.0.0.1:{via_ss}
  handler: {{type: tcp, chain: to-ss}}
  listener: {{type: tcp}}
  forwarder: {{nodes: [{{name: echo, addr: {echo_addr}}}]}}
- name: gone
  addr: 127.0.0.1:{gone}
  handler: {{type: tcp}}
  listener: {{type: tcp}}
  forwarder: {{nodes: [{{name: nobody, addr: {closed}}}]}}
  {rec}
chains:
- name: to-relay
  hops: [{{name: h, nodes: [{{name: r1, addr: 127.0.0.1:{relay}, connector: {{type: relay}}, dialer: {{type: tcp}}}}]}}]
- name: to-ss
  hops: [{{name: h, nodes: [{{name: s1, addr: 127.0.0.1:{ss}, connector: {{type: ss, auth: {{username: aes-256-gcm, password: secret}}}}, dialer: {{type: tcp}}}}]}}]
recorders:
- name: recs
  file: {{path: {recs}, sep: \"\\n\"}}
"
        ),
    );
    let g = Gost::start(&["-C", &file]);
    for p in [fwd, s5, hp, relay, via_relay, ss, via_ss, gone] {
        g.wait_tcp(p);
    }
    echo(TcpStream::connect(("127.0.0.1", fwd)).unwrap(), 100);
    echo(socks5_connect(s5, "alice", "pw", echo_addr), 100);
    let mut c = TcpStream::connect(("127.0.0.1", hp)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    // "bob:pw"
    write!(
        c,
        "CONNECT {echo_addr} HTTP/1.1\r\nHost: {echo_addr}\r\nProxy-Authorization: Basic Ym9iOnB3\r\nX-Forwarded-For: 192.0.2.9, 10.0.0.1\r\n\r\n"
    )
    .unwrap();
    assert!(read_head(&mut c).starts_with("HTTP/1.1 200"));
    echo(c, 100);
    echo(TcpStream::connect(("127.0.0.1", via_relay)).unwrap(), 100);
    echo(TcpStream::connect(("127.0.0.1", via_ss)).unwrap(), 100);
    let mut c = TcpStream::connect(("127.0.0.1", gone)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let _ = c.read(&mut [0u8; 8]);

    let e = echo_addr.to_string();
    let recs = wait_records(&recs, |r| {
        ["fwd", "s5", "hp", "relay", "via-relay", "ss"]
            .iter()
            .all(|s| of(r, s).is_some())
            && r.iter()
                .any(|x| x["service"] == "gone" && x["err"].is_string())
    });
    let src_ok = |r: &Value| {
        let s = r["src"].as_str().unwrap();
        assert!(s.starts_with("127.0.0.1:") && s != "127.0.0.1:0", "{r}");
    };

    // forward: the node, its address as the target and the route.
    let r = of(&recs, "fwd").unwrap();
    assert_eq!(r["node"], "echo", "{r}");
    assert_eq!(r["network"], "tcp");
    assert_eq!(r["host"], e.as_str());
    assert_eq!(r["dst"], e.as_str());
    assert_eq!(r["route"], e.as_str());
    assert_eq!(r["clientIP"], "");
    assert!(
        r.get("clientID").is_none() && r.get("proto").is_none(),
        "{r}"
    );
    assert_eq!(
        (r["inputBytes"].as_u64(), r["outputBytes"].as_u64()),
        (Some(100), Some(100))
    );
    src_ok(r);

    // socks5: the requested address and the user.
    let r = of(&recs, "s5").unwrap();
    assert_eq!(r["host"], e.as_str(), "{r}");
    assert_eq!(r["dst"], e.as_str());
    assert_eq!(r["route"], e.as_str());
    assert_eq!(r["clientID"], "alice");
    assert!(r.get("node").is_none(), "{r}");
    src_ok(r);

    // http CONNECT: the same, and the client IP its headers name.
    let r = of(&recs, "hp").unwrap();
    assert_eq!(r["host"], e.as_str(), "{r}");
    assert_eq!(r["dst"], e.as_str());
    assert_eq!(r["clientID"], "bob");
    assert_eq!(r["clientIP"], "192.0.2.9");
    src_ok(r);

    // relay: the target its client asked for; the client side names
    // the chain's node in its route, and its upstream is that node.
    let r = of(&recs, "relay").unwrap();
    assert_eq!(r["host"], e.as_str(), "{r}");
    assert_eq!(r["dst"], e.as_str());
    let r = of(&recs, "via-relay").unwrap();
    assert_eq!(r["host"], e.as_str(), "{r}");
    assert_eq!(r["route"], format!("r1@127.0.0.1:{relay} > {e}"));
    assert_eq!(r["dst"], format!("127.0.0.1:{relay}"));
    src_ok(r);

    // ss: the target in the client's first packet.
    let r = of(&recs, "ss").unwrap();
    assert_eq!(r["host"], e.as_str(), "{r}");
    assert_eq!(r["dst"], e.as_str());

    // A failed dial: the node and target, no upstream, the error.
    let r = recs
        .iter()
        .find(|x| x["service"] == "gone" && x["err"].is_string())
        .unwrap();
    assert_eq!(r["node"], "nobody", "{r}");
    assert_eq!(r["host"], closed.to_string());
    assert_eq!((r["src"].as_str(), r["dst"].as_str()), (Some(""), Some("")));
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// One request on its own connection; the response's body.
fn request(port: u16, req: &str) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    let _ = c.read_to_string(&mut resp);
    resp
}

#[test]
fn sniffed_http_is_recorded_request_by_request_with_gosts_http_sub_record() {
    let origin = http_origin("127.0.0.1:0", "from the origin");
    let dir = TempDir::new("recorder-http");
    let recs = dir.path("records.txt");
    let (sniff, cached) = (free_port(), free_port());
    let file = dir.write(
        "gost.yaml",
        &format!(
            "services:
- name: sniff
  addr: 127.0.0.1:{sniff}
  handler: {{type: tcp, metadata: {{sniffing: true}}}}
  listener: {{type: tcp}}
  forwarder: {{nodes: [{{name: web, addr: {origin}}}]}}
  recorders:
  - name: recs
    record: recorder.service.handler
    metadata: {{http.body: true, http.maxBodySize: 4}}
- name: cached
  addr: 127.0.0.1:{cached}
  cache: c
  handler: {{type: tcp, metadata: {{sniffing: true, cache.ttl: 60s}}}}
  listener: {{type: tcp}}
  forwarder: {{nodes: [{{name: web, addr: {origin}}}]}}
  recorders: [{{name: recs, record: recorder.service.handler}}]
caches: [{{name: c, memory: {{ttl: 60s}}}}]
recorders:
- name: recs
  file: {{path: {recs}, sep: \"\\n\"}}
"
        ),
    );
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(sniff);
    g.wait_tcp(cached);
    let resp = request(
        sniff,
        "POST /submit?x=1 HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: 198.51.100.7\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert!(resp.ends_with("from the origin"), "{resp}");
    for _ in 0..2 {
        let resp = request(
            cached,
            "GET /page HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        );
        assert!(resp.ends_with("from the origin"), "{resp}");
    }

    let with_http = |r: &[Value], s: &str| -> Vec<Value> {
        r.iter()
            .filter(|x| x["service"] == s && x["http"].is_object())
            .cloned()
            .collect()
    };
    let recs = wait_records(&recs, |r| {
        with_http(r, "sniff").len() == 1 && with_http(r, "cached").len() == 2
    });
    let r = &with_http(&recs, "sniff")[0];
    let o = origin.to_string();
    assert_eq!(r["proto"], "http", "{r}");
    assert_eq!(r["node"], "web");
    assert_eq!(r["host"], o.as_str());
    assert_eq!(r["dst"], o.as_str());
    assert_eq!(r["clientIP"], "198.51.100.7");
    let h = &r["http"];
    assert_eq!(h["host"], "app.test", "{h}");
    assert_eq!(h["method"], "POST");
    assert_eq!(h["proto"], "HTTP/1.1");
    assert_eq!(h["scheme"], "");
    assert_eq!(h["uri"], "/submit?x=1");
    assert_eq!(h["cached"], false);
    assert_eq!(h["statusCode"], 200);
    // Bodies: the first `http.maxBodySize` bytes, base64; the length is
    // the whole body's.
    assert_eq!(h["request"]["body"], b64("hell"));
    assert_eq!(h["request"]["contentLength"], 5);
    assert_eq!(h["request"]["header"]["X-Forwarded-For"][0], "198.51.100.7");
    assert!(h["request"]["header"].get("Host").is_none(), "{h}");
    assert_eq!(h["response"]["body"], b64("from"));
    assert_eq!(h["response"]["contentLength"], 15);
    assert_eq!(h["response"]["header"]["Content-Length"][0], "15");
    assert!(r["inputBytes"].as_u64().unwrap() > 0 && r["outputBytes"].as_u64().unwrap() > 15);
    // No record of the whole connection beside the request's.
    assert_eq!(
        recs.iter()
            .filter(|x| x["service"] == "sniff" && x["inputBytes"].as_u64() > Some(0))
            .count(),
        1,
        "{recs:#?}"
    );

    // Without `http.body` no body is kept; the second GET came from the
    // cache.
    let c = with_http(&recs, "cached");
    assert_eq!(c[0]["http"]["request"]["body"], Value::Null);
    assert_eq!(c[0]["http"]["response"]["body"], Value::Null);
    assert_eq!(c[0]["http"]["cached"], false);
    assert_eq!(c[1]["http"]["cached"], true, "{:#}", c[1]);
    assert_eq!(c[1]["http"]["statusCode"], 200);
    assert_eq!(c[1]["http"]["uri"], "/page");
}

/// A ClientHello record naming `sni` and offering ALPN `h2`, `http/1.1`.
fn client_hello(sni: &str) -> Vec<u8> {
    let mut name = vec![0u8];
    name.extend((sni.len() as u16).to_be_bytes());
    name.extend(sni.as_bytes());
    let mut ext = vec![0, 0];
    ext.extend(((name.len() + 2) as u16).to_be_bytes());
    ext.extend((name.len() as u16).to_be_bytes());
    ext.extend(name);
    let alpn: &[u8] = b"\x02h2\x08http/1.1";
    ext.extend([0, 16]);
    ext.extend(((alpn.len() + 2) as u16).to_be_bytes());
    ext.extend((alpn.len() as u16).to_be_bytes());
    ext.extend(alpn);
    let mut body = vec![3, 3];
    body.extend([9u8; 32]);
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

#[test]
fn sniffed_tls_is_recorded_with_gosts_tls_sub_record() {
    let echo_addr = tcp_echo_server();
    let dir = TempDir::new("recorder-tls");
    let recs = dir.path("records.txt");
    let port = free_port();
    let file = dir.write(
        "gost.yaml",
        &format!(
            "services:
- name: tls
  addr: 127.0.0.1:{port}
  handler: {{type: tcp, metadata: {{sniffing: true}}}}
  listener: {{type: tcp}}
  forwarder: {{nodes: [{{name: echo, addr: {echo_addr}}}]}}
  recorders: [{{name: recs, record: recorder.service.handler}}]
recorders:
- name: recs
  file: {{path: {recs}, sep: \"\\n\"}}
"
        ),
    );
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(port);
    let hello = client_hello("secure.test");
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(&hello).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    assert_eq!(back, hello);
    let recs = wait_records(&recs, |r| of(r, "tls").is_some());
    let r = of(&recs, "tls").unwrap();
    assert_eq!(r["proto"], "tls", "{r}");
    assert_eq!(r["host"], "secure.test:443");
    assert_eq!(r["node"], "echo");
    assert_eq!(r["dst"], echo_addr.to_string());
    let t = &r["tls"];
    assert_eq!(t["serverName"], "secure.test", "{t}");
    assert_eq!(t["proto"], "h2");
    let hex: String = hello.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(t["clientHello"], hex);
    for k in ["cipherSuite", "version", "serverHello"] {
        assert_eq!(t[k], "", "{k}");
    }
    assert_eq!(t["compressionMethod"], 0);
}

#[test]
fn a_file_recorder_with_rotation_starts_and_writes() {
    let echo_addr = tcp_echo_server();
    let dir = TempDir::new("recorder-rotation");
    let recs = dir.path("rot/records.log");
    let port = free_port();
    let file = dir.write(
        "gost.yaml",
        &format!(
            "services:
- name: fwd
  addr: 127.0.0.1:{port}
  handler: {{type: tcp}}
  listener: {{type: tcp}}
  forwarder: {{nodes: [{{name: echo, addr: {echo_addr}}}]}}
  recorders: [{{name: recs, record: recorder.service.handler}}]
recorders:
- name: recs
  file:
    path: {recs}
    sep: \"\\n\"
    rotation: {{maxSize: 1, maxAge: 1, maxBackups: 3, localTime: true, compress: true}}
"
        ),
    );
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(port);
    echo(TcpStream::connect(("127.0.0.1", port)).unwrap(), 10);
    let recs = wait_records(&recs, |r| of(r, "fwd").is_some());
    assert_eq!(of(&recs, "fwd").unwrap()["node"], "echo");
}
