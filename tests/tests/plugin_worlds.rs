//! The connector, transport and datagram plugin worlds through the real
//! binary: both ends of the token-tunnel protocol as plugins, the padding
//! transport under socks5, a DNS filter as a UDP handler, and plugins that
//! misbehave without affecting other connections.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use gost_e2e::*;

fn start_config(dir: &TempDir, yaml: &str) -> Gost {
    let file = dir.write("gost.yaml", yaml);
    Gost::start(&["-C", &file])
}

/// A token-tunnel server (the handler plugin) accepting `s3cret`.
fn tunnel_server(dir: &TempDir) -> (Gost, u16) {
    let port = free_port();
    let g = start_config(
        dir,
        &format!(
            "services:
- name: tunnel
  addr: 127.0.0.1:{port}
  handler:
    type: wasm
    plugin: {{type: wasm, path: {}, config: {{tokens: [s3cret]}}}}
",
            plugin_wasm("token-tunnel")
        ),
    );
    g.wait_tcp(port);
    (g, port)
}

/// Sends `data` through a forwarding port and reads back as much.
fn echo_through(port: u16, data: &[u8]) -> Vec<u8> {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let reader = {
        let mut c = c.try_clone().unwrap();
        let n = data.len();
        thread::spawn(move || {
            let mut back = vec![0u8; n];
            c.read_exact(&mut back).map(|_| back)
        })
    };
    c.write_all(data).unwrap();
    reader.join().unwrap().unwrap_or_default()
}

fn read_all(port: u16) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn token_tunnel_both_ends_as_plugins_from_the_command_line() {
    let dir = TempDir::new("wasm-conn-cli");
    let (_server, tport) = tunnel_server(&dir);
    let echo = tcp_echo_server();
    let greeter = tcp_greeter("banner first");
    let (fwd, speaks_first) = (free_port(), free_port());
    let client = Gost::start(&[
        "-L",
        &format!("tcp://127.0.0.1:{fwd}/{echo}"),
        "-L",
        &format!("tcp://127.0.0.1:{speaks_first}/{greeter}"),
        "-F",
        &format!(
            "wasm://t:s3cret@127.0.0.1:{tport}?plugin={}",
            plugin_wasm("token-tunnel-client")
        ),
    ]);
    client.wait_tcp(fwd);
    let data = random_bytes(256 * 1024, 11);
    assert!(echo_through(fwd, &data) == data, "{}", client.log());
    // A target that speaks first: its bytes may come in the same read as
    // the node's OK, and reach the client all the same.
    for _ in 0..5 {
        assert_eq!(read_all(speaks_first), "banner first", "{}", client.log());
    }
}

#[test]
fn wasm_connector_in_yaml_refusals_and_a_node_that_never_answers() {
    let dir = TempDir::new("wasm-conn-yaml");
    let (_server, tport) = tunnel_server(&dir);
    // Accepts and stays silent: the plugin waits for a reply that never
    // comes.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming().flatten() {
            held.push(c);
        }
    });
    let echo = tcp_echo_server();
    let (good, bad, stuck) = (free_port(), free_port(), free_port());
    let client_wasm = plugin_wasm("token-tunnel-client");
    let node = |name: &str, addr: String, token: &str, extra: &str| {
        format!(
            "- name: {name}
  hops:
  - name: {name}-hop
    nodes:
    - name: n
      addr: {addr}
      connector:
        type: wasm
        plugin: {{type: wasm, path: {client_wasm}, config: {{token: {token}}}}}
        {extra}
"
        )
    };
    let svc = |name: &str, port: u16, chain: &str| {
        format!(
            "- name: {name}
  addr: 127.0.0.1:{port}
  handler: {{type: tcp, chain: {chain}}}
  listener: {{type: tcp}}
  forwarder: {{nodes: [{{name: t, addr: {echo}}}]}}
"
        )
    };
    let yaml = format!(
        "services:\n{}{}{}chains:\n{}{}{}",
        svc("good", good, "c-good"),
        svc("bad", bad, "c-bad"),
        svc("stuck", stuck, "c-stuck"),
        node("c-good", format!("127.0.0.1:{tport}"), "s3cret", ""),
        node("c-bad", format!("127.0.0.1:{tport}"), "wrong", ""),
        node(
            "c-stuck",
            silent_addr.to_string(),
            "s3cret",
            "metadata: {timeout: 500ms}"
        ),
    );
    let g = start_config(&dir, &yaml);
    g.wait_tcp(stuck);
    assert_eq!(echo_through(good, b"ping"), b"ping", "{}", g.log());

    assert!(echo_through(bad, b"ping").is_empty());
    g.wait_log("node refused: ERR bad token");

    let started = Instant::now();
    assert!(echo_through(stuck, b"ping").is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "held for {:?}",
        started.elapsed()
    );
    g.wait_log("wasm connector:");
    assert!(
        g.log().contains("within 500ms"),
        "the timeout is named: {}",
        g.log()
    );
    // Nothing else is affected.
    let data = random_bytes(64 * 1024, 3);
    assert!(echo_through(good, &data) == data, "{}", g.log());
}

#[test]
fn wasm_connector_without_a_plugin_is_refused() {
    let (status, _, err) = run_gost(&[
        "-F",
        "wasm://127.0.0.1:1",
        "-L",
        "tcp://127.0.0.1:0/127.0.0.1:1",
    ]);
    assert!(!status.success());
    assert!(err.contains("needs plugin=FILE"), "{err}");
}

/// A TCP hop between client and server that records what the client
/// sends, to look at the bytes on the wire.
fn wiretap(to: u16) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    thread::spawn(move || {
        for c in l.incoming().flatten() {
            let Ok(s) = TcpStream::connect(("127.0.0.1", to)) else {
                continue;
            };
            let (mut c2, mut s2) = (c.try_clone().unwrap(), s.try_clone().unwrap());
            let log = log.clone();
            let (mut c, mut s) = (c, s);
            thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    log.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                let _ = s.shutdown(std::net::Shutdown::Write);
            });
            thread::spawn(move || {
                let _ = std::io::copy(&mut s2, &mut c2);
                let _ = c2.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (port, seen)
}

#[test]
fn socks5_over_the_padding_transport_hides_the_protocol() {
    let padding = plugin_wasm("padding");
    let server_port = free_port();
    let server = Gost::start(&[
        "-L",
        &format!("socks5+wasm://127.0.0.1:{server_port}?transport={padding}"),
    ]);
    server.wait_tcp(server_port);
    let (tap, seen) = wiretap(server_port);
    let echo = tcp_echo_server();
    let fwd = free_port();
    let client = Gost::start(&[
        "-L",
        &format!("tcp://127.0.0.1:{fwd}/{echo}"),
        "-F",
        &format!("socks5+wasm://127.0.0.1:{tap}?transport={padding}"),
    ]);
    client.wait_tcp(fwd);
    let marker = b"plain text marker, readable on a plain wire".repeat(100);
    assert!(
        echo_through(fwd, &marker) == marker,
        "{}\n{}",
        client.log(),
        server.log()
    );
    let data = random_bytes(1 << 20, 5);
    assert!(echo_through(fwd, &data) == data, "{}", server.log());
    let wire = seen.lock().unwrap().clone();
    assert!(wire.len() > marker.len());
    // Neither SOCKS5's greeting nor the payload shows.
    assert_ne!(&wire[..3], &[5, 1, 0]);
    assert!(!wire.windows(24).any(|w| w == &marker[..24]));
    // A plain SOCKS5 client cannot talk to the service.
    let mut c = TcpStream::connect(("127.0.0.1", server_port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(&[5, 1, 0]).unwrap();
    let mut b = [0u8; 2];
    assert!(c.read_exact(&mut b).is_err() || b != [5, 0]);
}

#[test]
fn transport_plugins_in_yaml_and_plugins_that_misbehave() {
    let dir = TempDir::new("wasm-transport");
    let (padding, faulty) = (plugin_wasm("padding"), plugin_wasm("faulty-transport"));
    let (good, grow, withhold) = (free_port(), free_port(), free_port());
    let svc = |name: &str, port: u16, plugin: &str, config: &str| {
        format!(
            "- name: {name}
  addr: 127.0.0.1:{port}
  handler: {{type: socks5}}
  listener:
    type: wasm
    plugin: {{type: wasm, path: {plugin}, config: {config}}}
"
        )
    };
    let server = start_config(
        &dir,
        &format!(
            "services:\n{}{}{}",
            svc("good", good, &padding, "{key: k1}"),
            svc("grow", grow, &faulty, "{fault: grow}"),
            svc("withhold", withhold, &faulty, "{fault: withhold}"),
        ),
    );
    server.wait_tcp(withhold);
    let echo = tcp_echo_server();
    let fwd = free_port();
    let client_dir = TempDir::new("wasm-transport-client");
    let client = start_config(
        &client_dir,
        &format!(
            "services:
- name: fwd
  addr: 127.0.0.1:{fwd}
  handler: {{type: tcp, chain: c}}
  listener: {{type: tcp}}
  forwarder: {{nodes: [{{name: t, addr: {echo}}}]}}
chains:
- name: c
  hops:
  - name: h
    nodes:
    - name: n
      addr: 127.0.0.1:{good}
      connector: {{type: socks5}}
      dialer:
        type: wasm
        plugin: {{type: wasm, path: {padding}, config: {{key: k1}}}}
"
        ),
    );
    client.wait_tcp(fwd);
    let data = random_bytes(256 * 1024, 9);
    assert!(echo_through(fwd, &data) == data, "{}", server.log());

    // Output far beyond the input: closed, and said so.
    let mut c = TcpStream::connect(("127.0.0.1", grow)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(&[5, 1, 0]).unwrap();
    let mut sink = Vec::new();
    let _ = c.read_to_end(&mut sink);
    server.wait_log("decode returned");
    assert!(sink.len() < 1 << 20, "{} bytes came back", sink.len());

    // A decoder that never returns anything: closed once it held 1 MiB.
    let mut c = TcpStream::connect(("127.0.0.1", withhold)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let mut sent = 0;
    while sent < 4 << 20 && c.write_all(&chunk).is_ok() {
        sent += chunk.len();
    }
    server.wait_log("held back");
    assert!(
        server.log().contains("transport plugin failed"),
        "{}",
        server.log()
    );

    // Garbage to the padding listener: a bad frame, closed.
    let mut c = TcpStream::connect(("127.0.0.1", good)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(&[0, 1, 200, 9]).unwrap();
    let mut b = Vec::new();
    let _ = c.read_to_end(&mut b);
    server.wait_log("bad frame");

    // Nothing else was affected.
    assert!(echo_through(fwd, &data) == data, "{}", server.log());
}

/// An upstream resolver answering `test.example.com A` with 10.0.0.1
/// (NXDOMAIN otherwise); counts the queries it gets.
fn dns_upstream() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use hickory_proto::op::{Message, MessageType, ResponseCode};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, Record, RecordType};
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = udp.local_addr().unwrap();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, peer)) = udp.recv_from(&mut buf) {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let Some(question) = q.queries().first().cloned() else {
                continue;
            };
            let mut r = Message::new();
            r.set_id(q.id())
                .set_message_type(MessageType::Response)
                .add_query(question.clone());
            let name = question.name().to_ascii().to_ascii_lowercase();
            if name == "test.example.com." && question.query_type() == RecordType::A {
                r.add_answer(Record::from_rdata(
                    question.name().clone(),
                    300,
                    RData::A(A::new(10, 0, 0, 1)),
                ));
            } else {
                r.set_response_code(ResponseCode::NXDomain);
            }
            let _ = udp.send_to(&r.to_vec().unwrap(), peer);
        }
    });
    (addr, count)
}

fn dig(port: u16, name: &str, short: bool) -> String {
    let mut cmd = std::process::Command::new("dig");
    cmd.args(["@127.0.0.1", "-p", &port.to_string(), name, "A"])
        .args(["+time=2", "+tries=1"]);
    if short {
        cmd.arg("+short");
    }
    let out = cmd.output().expect("run dig (Debian: bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn dns_filter_datagram_plugin_answers_blocked_names_and_relays_the_rest() {
    let (resolver, queries) = dns_upstream();
    let port = free_udp_port();
    let dir = TempDir::new("wasm-dns-filter");
    let g = start_config(
        &dir,
        &format!(
            "services:
- name: dnsf
  addr: 127.0.0.1:{port}
  handler:
    type: wasm
    plugin:
      type: wasm
      path: {}
      config: {{upstream: \"{resolver}\", blocked: [ads.example, tracker.test]}}
  listener: {{type: udp}}
",
            plugin_wasm("dns-filter")
        ),
    );
    g.wait_log("dnsf");
    let started = Instant::now();
    let mut answer = String::new();
    while started.elapsed() < TIMEOUT && answer.trim() != "10.0.0.1" {
        answer = dig(port, "test.example.com", true);
    }
    assert_eq!(answer.trim(), "10.0.0.1", "{}", g.log());
    let relayed = queries.load(std::sync::atomic::Ordering::SeqCst);

    for name in ["ads.example", "x.y.ads.example", "TRACKER.test"] {
        let full = dig(port, name, false);
        assert!(full.contains("status: NXDOMAIN"), "{name}: {full}");
    }
    assert_eq!(
        queries.load(std::sync::atomic::Ordering::SeqCst),
        relayed,
        "blocked names never reach the upstream"
    );
    g.wait_log("blocked x.y.ads.example");

    // Not DNS: dropped; the service goes on.
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(b"not dns", ("127.0.0.1", port)).unwrap();
    // A name just like a blocked one is relayed.
    let full = dig(port, "notads.example", false);
    assert!(full.contains("status: NXDOMAIN"), "{full}");
    assert!(queries.load(std::sync::atomic::Ordering::SeqCst) > relayed);
    assert_eq!(dig(port, "test.example.com", true).trim(), "10.0.0.1");
}
