//! The `socks4`/`socks4a` and `socks5`/`socks` handlers through the real
//! binary: curl for the common client paths, a hand-written SOCKS5 client
//! for UDP ASSOCIATE, BIND and UDP-over-TCP, malformed input, timeouts and
//! exact stats.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use gost_e2e::*;

const BODY: &str = "hello from origin";

#[test]
fn curl_through_socks4_socks4a_and_socks5() {
    let http = http_origin("127.0.0.1:0", BODY);
    let (p4, p4a, p5, ps) = (free_port(), free_port(), free_port(), free_port());
    let g = Gost::start(&[
        "-L",
        &format!("socks4://127.0.0.1:{p4}"),
        "-L",
        &format!("socks4a://127.0.0.1:{p4a}"),
        "-L",
        &format!("socks5://127.0.0.1:{p5}"),
        "-L",
        &format!("socks://127.0.0.1:{ps}"),
    ]);
    for p in [p4, p4a, p5, ps] {
        g.wait_tcp(p);
    }
    let by_ip = format!("http://127.0.0.1:{}/", http.port());
    let by_name = format!("http://localhost:{}/", http.port());
    let cases = [
        ("--socks4", p4, &by_ip),
        ("--socks4a", p4a, &by_name),
        // Both SOCKS4 types serve 4 and 4a, as in GOST.
        ("--socks4a", p4, &by_name),
        ("--socks5", p5, &by_ip),
        ("--socks5-hostname", p5, &by_name),
        ("--socks5-hostname", ps, &by_name),
    ];
    for (flag, port, url) in cases {
        let (ok, body) = curl_body(&[flag, &format!("127.0.0.1:{port}"), url]);
        assert!(
            ok && body == BODY,
            "{flag} :{port} {url}: {body:?}\n{}",
            g.log()
        );
    }
}

#[test]
fn socks5_user_password_is_required_and_checked() {
    let http = http_origin("127.0.0.1:0", BODY);
    let (p, p4) = (free_port(), free_port());
    let g = Gost::start(&[
        "-L",
        &format!("socks5://user:pass@127.0.0.1:{p}"),
        "-L",
        &format!("socks4://user@127.0.0.1:{p4}"),
    ]);
    g.wait_tcp(p);
    g.wait_tcp(p4);
    let url = format!("http://127.0.0.1:{}/", http.port());
    let (ok, body) = curl_body(&["-x", &format!("socks5://user:pass@127.0.0.1:{p}"), &url]);
    assert!(ok && body == BODY, "{body:?}\n{}", g.log());
    let (ok, body) = curl_body(&[
        "--socks5",
        &format!("127.0.0.1:{p}"),
        "--proxy-user",
        "user:pass",
        &url,
    ]);
    assert!(ok && body == BODY, "{body:?}");
    for proxy in [
        format!("socks5://user:wrong@127.0.0.1:{p}"),
        format!("socks5h://127.0.0.1:{p}"),
    ] {
        let (ok, body) = curl_body(&["-x", &proxy, &url]);
        assert!(!ok && body.is_empty(), "{proxy} got through: {body:?}");
    }
    // SOCKS4 checks the user id alone (with an empty password, as GOST).
    let (ok, _) = curl_body(&["-x", &format!("socks4://user@127.0.0.1:{p4}"), &url]);
    assert!(ok);
    let (ok, _) = curl_body(&["-x", &format!("socks4://nobody@127.0.0.1:{p4}"), &url]);
    assert!(!ok);

    // By hand: the wrong password gets RFC 1929's failure, then EOF.
    let mut c = connect(p);
    c.write_all(&[5, 1, 2]).unwrap();
    assert_eq!(read_n(&mut c, 2), [5, 2]);
    c.write_all(&[1, 4, b'u', b's', b'e', b'r', 1, b'x'])
        .unwrap();
    assert_eq!(read_n(&mut c, 2), [1, 1]);
    assert_closed(&mut c);
    // Offering only "no auth" to a service with users: no acceptable method.
    let mut c = connect(p);
    c.write_all(&[5, 1, 0]).unwrap();
    assert_eq!(read_n(&mut c, 2), [5, 0xFF]);
    assert_closed(&mut c);
}

#[test]
fn ipv6_loopback() {
    let Ok(probe) = TcpListener::bind("[::1]:0") else {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    };
    let p = probe.local_addr().unwrap().port();
    drop(probe);
    let http = http_origin("[::1]:0", BODY);
    let g = Gost::start(&["-L", &format!("socks5://[::1]:{p}")]);
    let start = Instant::now();
    while TcpStream::connect(("::1", p)).is_err() {
        assert!(start.elapsed() < TIMEOUT, "{}", g.log());
        thread::sleep(Duration::from_millis(20));
    }
    let (ok, body) = curl_body(&[
        "--socks5",
        &format!("[::1]:{p}"),
        &format!("http://[::1]:{}/", http.port()),
    ]);
    assert!(ok && body == BODY, "{body:?}\n{}", g.log());
}

fn connect(port: u16) -> TcpStream {
    let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c
}

fn read_n(c: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    c.read_exact(&mut b).unwrap();
    b
}

/// The server closes: EOF (or a reset) with nothing more sent.
fn assert_closed(c: &mut TcpStream) {
    let mut b = [0u8; 64];
    match c.read(&mut b) {
        Ok(0) => {}
        Ok(n) => panic!("expected close, got {:?}", &b[..n]),
        Err(e) => assert!(
            matches!(e.kind(), std::io::ErrorKind::ConnectionReset),
            "expected close, got {e}"
        ),
    }
}

/// Greeting and a request with an IPv4 target; returns the reply.
fn socks5_request(c: &mut TcpStream, cmd: u8, target: SocketAddr) -> Vec<u8> {
    c.write_all(&[5, 1, 0]).unwrap();
    assert_eq!(read_n(c, 2), [5, 0]);
    let mut req = vec![5, cmd, 0];
    push_addr(&mut req, target);
    c.write_all(&req).unwrap();
    read_n(c, 10)
}

fn push_addr(out: &mut Vec<u8>, a: SocketAddr) {
    let SocketAddr::V4(a) = a else {
        panic!("IPv4 only")
    };
    out.push(1);
    out.extend_from_slice(&a.ip().octets());
    out.extend_from_slice(&a.port().to_be_bytes());
}

/// A socks5 service on 127.0.0.1 with `query` (ending in `&` when not
/// empty) and stats on, and the API: the process, the service port, the
/// API port and the stats before any traffic.
fn socks5_with_stats(query: &str) -> (Gost, u16, u16, serde_json::Value) {
    let (p, api) = (free_port(), free_port());
    let g = Gost::start(&[
        "-L",
        &format!("socks5://127.0.0.1:{p}?{query}enableStats=true"),
        "-api",
        &format!("127.0.0.1:{api}"),
    ]);
    g.wait_tcp(p);
    g.wait_tcp(api);
    let base = stats(api, "service-0");
    (g, p, api, base)
}

fn stats(api: u16, svc: &str) -> serde_json::Value {
    let s = wait_settled(api, svc);
    s["status"]["stats"].clone()
}

#[test]
fn udp_associate_relays_datagrams_until_the_control_connection_closes() {
    let echo = udp_echo_server();
    let (_g, p, api, base) = socks5_with_stats("udp=true&");

    let mut c = connect(p);
    let reply = socks5_request(&mut c, 3, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    assert_eq!(&reply[..4], &[5, 0, 0, 1], "{reply:?}");
    let relay = SocketAddr::from((
        Ipv4Addr::new(reply[4], reply[5], reply[6], reply[7]),
        u16::from_be_bytes([reply[8], reply[9]]),
    ));
    assert_eq!(
        relay.ip(),
        Ipv4Addr::LOCALHOST,
        "bound on the listener's IP"
    );

    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut sent = 0u64;
    let mut received = 0u64;
    for (i, len) in [1usize, 1000, 4000].into_iter().enumerate() {
        let payload = random_bytes(len, i as u64 + 1);
        let mut d = vec![0, 0, 0];
        push_addr(&mut d, echo);
        let header = d.len();
        d.extend_from_slice(&payload);
        u.send_to(&d, relay).unwrap();
        sent += d.len() as u64;
        let mut b = [0u8; 8192];
        let (n, from) = u.recv_from(&mut b).unwrap();
        assert_eq!(from, relay);
        assert_eq!(&b[..header], &d[..header], "reply names the echo server");
        assert!(
            b[header..n] == payload[..],
            "payload of {len} bytes differs"
        );
        received += n as u64;
    }
    // A fragment is dropped, and the association goes on.
    let mut frag = vec![0, 0, 1];
    push_addr(&mut frag, echo);
    frag.extend_from_slice(b"fragment");
    u.send_to(&frag, relay).unwrap();
    sent += frag.len() as u64;
    u.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(u.recv_from(&mut [0u8; 64]).is_err(), "fragment relayed");

    // Closing the control connection ends the association.
    drop(c);
    let st = stats(api, "service-0");
    let mut d = vec![0, 0, 0];
    push_addr(&mut d, echo);
    d.extend_from_slice(b"late");
    let _ = u.send_to(&d, relay);
    assert!(
        u.recv_from(&mut [0u8; 64]).is_err(),
        "relay outlived its TCP"
    );

    // Handshake (3 + 10 in, 2 + 10 out) plus every datagram as sent.
    let delta = |k: &str| st[k].as_u64().unwrap() - base[k].as_u64().unwrap();
    assert_eq!(delta("inputBytes"), 13 + sent, "{st}");
    assert_eq!(delta("outputBytes"), 12 + received, "{st}");
    assert_eq!(st["totalErrs"], 0, "{st}");
}

#[test]
fn udp_associate_is_not_allowed_unless_enabled() {
    let p = free_port();
    let g = Gost::start(&["-L", &format!("socks5://127.0.0.1:{p}")]);
    g.wait_tcp(p);
    let mut c = connect(p);
    let reply = socks5_request(&mut c, 3, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    assert_eq!(reply[1], 2, "not allowed: {reply:?}");
    assert_closed(&mut c);
}

#[test]
fn connect_counts_handshake_and_payload_and_maps_dial_errors() {
    let echo = tcp_echo_server();
    let (_g, p, api, base) = socks5_with_stats("");

    let mut c = connect(p);
    let reply = socks5_request(&mut c, 1, echo);
    assert_eq!(&reply[..4], &[5, 0, 0, 1], "{reply:?}");
    let payload = random_bytes(100_000, 3);
    let mut w = c.try_clone().unwrap();
    let data = payload.clone();
    let t = thread::spawn(move || {
        w.write_all(&data).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    t.join().unwrap();
    assert!(back == payload, "echo differs");
    drop(c);

    // A closed port: "connection refused".
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut c = connect(p);
    let reply = socks5_request(&mut c, 1, closed);
    assert_eq!(reply[1], 5, "{reply:?}");
    assert_closed(&mut c);

    let st = stats(api, "service-0");
    let delta = |k: &str| st[k].as_u64().unwrap() - base[k].as_u64().unwrap();
    let n = payload.len() as u64;
    assert_eq!(delta("inputBytes"), 2 * 13 + n, "{st}");
    assert_eq!(delta("outputBytes"), 2 * 12 + n, "{st}");
    assert_eq!(delta("totalErrs"), 1, "the failed dial: {st}");
}

#[test]
fn malformed_and_slow_handshakes_are_answered_closed_and_counted() {
    let echo = tcp_echo_server();
    let (p, p4, api) = (free_port(), free_port(), free_port());
    let g = Gost::start(&[
        "-L",
        &format!("socks5://127.0.0.1:{p}?enableStats=true&readTimeout=1s"),
        "-L",
        &format!("socks4://127.0.0.1:{p4}?enableStats=true&readTimeout=1s"),
        "-api",
        &format!("127.0.0.1:{api}"),
    ]);
    g.wait_tcp(p);
    g.wait_tcp(p4);
    g.wait_tcp(api);
    let base = stats(api, "service-0");
    let base4 = stats(api, "service-1");

    // Unknown command: 0x07.
    let mut c = connect(p);
    assert_eq!(socks5_request(&mut c, 9, echo)[1], 7);
    assert_closed(&mut c);
    // Unknown address type: 0x08.
    let mut c = connect(p);
    c.write_all(&[5, 1, 0, 5, 1, 0, 9, 1, 2, 3, 4, 0, 80])
        .unwrap();
    assert_eq!(read_n(&mut c, 2), [5, 0]);
    assert_eq!(read_n(&mut c, 10)[1], 8);
    assert_closed(&mut c);
    // Wrong version: closed without a word.
    let mut c = connect(p);
    c.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert_closed(&mut c);
    // Truncated greeting: the client gives up half-way.
    let mut c = connect(p);
    c.write_all(&[5, 3, 0]).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_closed(&mut c);
    // Too slow: part of a request, then silence past readTimeout.
    let mut c = connect(p);
    let start = Instant::now();
    c.write_all(&[5, 1, 0, 5]).unwrap();
    assert_eq!(read_n(&mut c, 2), [5, 0]);
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert_eq!(rest[1], 1, "general failure before close: {rest:?}");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    let st = stats(api, "service-0");
    let errs = st["totalErrs"].as_u64().unwrap() - base["totalErrs"].as_u64().unwrap();
    assert_eq!(errs, 5, "{st}");

    // SOCKS4: an over-long user id is rejected (0x5B), BIND too.
    let mut c = connect(p4);
    let mut req = vec![4, 1, 0, 80, 127, 0, 0, 1];
    req.extend(std::iter::repeat_n(b'u', 300));
    c.write_all(&req).unwrap();
    assert_eq!(read_n(&mut c, 8)[..2], [0, 0x5B]);
    assert_closed(&mut c);
    let mut c = connect(p4);
    c.write_all(&[4, 2, 0, 80, 127, 0, 0, 1, 0]).unwrap();
    assert_eq!(read_n(&mut c, 8)[..2], [0, 0x5B]);
    assert_closed(&mut c);
    // A granted SOCKS4 CONNECT with data pipelined after the request.
    let mut c = connect(p4);
    let mut req = vec![4, 1];
    req.extend_from_slice(&echo.port().to_be_bytes());
    req.extend_from_slice(&[127, 0, 0, 1, b'i', b'd', 0]);
    req.extend_from_slice(b"early");
    c.write_all(&req).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_n(&mut c, 8)[..2], [0, 0x5A]);
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"early");
    let st4 = stats(api, "service-1");
    let errs = st4["totalErrs"].as_u64().unwrap() - base4["totalErrs"].as_u64().unwrap();
    assert_eq!(errs, 2, "{st4}");
    assert!(!g.log().contains("panicked"), "{}", g.log());
}

#[test]
fn bind_accepts_one_peer_and_relays_both_ways() {
    let p = free_port();
    let g = Gost::start(&["-L", &format!("socks5://127.0.0.1:{p}?bind=true")]);
    g.wait_tcp(p);
    let mut c = connect(p);
    let first = socks5_request(&mut c, 2, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    assert_eq!(&first[..8], &[5, 0, 0, 1, 127, 0, 0, 1], "{first:?}");
    let port = u16::from_be_bytes([first[8], first[9]]);
    assert_ne!(port, 0);

    let mut peer = TcpStream::connect(("127.0.0.1", port)).unwrap();
    peer.set_read_timeout(Some(TIMEOUT)).unwrap();
    let second = read_n(&mut c, 10);
    let peer_addr = peer.local_addr().unwrap();
    let mut want = vec![5, 0, 0];
    push_addr(&mut want, peer_addr);
    assert_eq!(second, want, "second reply names the peer");
    // The listener served its one peer and is gone.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());

    let data = random_bytes(100_000, 7);
    c.write_all(&data).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    peer.read_to_end(&mut got).unwrap();
    assert!(got == data, "client to peer");
    peer.write_all(b"from the peer").unwrap();
    drop(peer);
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"from the peer");

    // A client that leaves before any peer connects frees the port.
    let mut c = connect(p);
    let first = socks5_request(&mut c, 2, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    let port = u16::from_be_bytes([first[8], first[9]]);
    drop(c);
    let deadline = Instant::now() + TIMEOUT;
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "bind listener outlived its client"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bind_and_udp_over_tcp_are_not_allowed_unless_enabled() {
    let p = free_port();
    let g = Gost::start(&["-L", &format!("socks5://127.0.0.1:{p}")]);
    g.wait_tcp(p);
    for (cmd, port) in [(2u8, 0u16), (0xF3, 0), (0xF3, 5000)] {
        let mut c = connect(p);
        let reply = socks5_request(&mut c, cmd, SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        assert_eq!(reply[1], 2, "cmd {cmd} port {port}: {reply:?}");
        assert_closed(&mut c);
    }
    // udp=true allows the relay form only; bind=true the bound form.
    let q = free_port();
    let g2 = Gost::start(&["-L", &format!("socks5://127.0.0.1:{q}?udp=true")]);
    g2.wait_tcp(q);
    let mut c = connect(q);
    let port = free_udp_port();
    let reply = socks5_request(&mut c, 0xF3, SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    assert_eq!(reply[1], 2, "{reply:?}");
}

/// One UDP-over-TCP frame: length, FRAG, address, payload.
fn tun_frame(frag: u8, to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u16).to_be_bytes().to_vec();
    f.push(frag);
    push_addr(&mut f, to);
    f.extend_from_slice(payload);
    f
}

#[test]
fn udp_over_tcp_carries_datagrams_as_frames() {
    let echo = udp_echo_server();
    let (_g, p, api, base) = socks5_with_stats("udp=true&bind=true&");

    let mut c = connect(p);
    let reply = socks5_request(&mut c, 0xF3, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    assert_eq!(&reply[..2], &[5, 0], "{reply:?}");
    let mut sent = 0u64;
    let mut received = 0u64;
    // Frames written in one go (and one split across writes) each become
    // one datagram; GOST clients send FRAG 0xFF.
    let payloads: Vec<Vec<u8>> = [1usize, 1400, 4000]
        .iter()
        .enumerate()
        .map(|(i, n)| random_bytes(*n, 40 + i as u64))
        .collect();
    let mut all = Vec::new();
    for pl in &payloads {
        all.extend(tun_frame(0xFF, echo, pl));
    }
    c.write_all(&all[..7]).unwrap();
    thread::sleep(Duration::from_millis(50));
    c.write_all(&all[7..]).unwrap();
    sent += all.len() as u64;
    for pl in &payloads {
        let head = read_n(&mut c, 10);
        let want = tun_frame(0xFF, echo, pl);
        assert_eq!(head, want[..10], "frame header names the echo server");
        assert!(read_n(&mut c, pl.len()) == *pl);
        received += want.len() as u64;
    }
    drop(c);
    let st = stats(api, "service-0");
    let delta = |k: &str| st[k].as_u64().unwrap() - base[k].as_u64().unwrap();
    assert_eq!(delta("inputBytes"), 13 + sent, "{st}");
    assert_eq!(delta("outputBytes"), 12 + received, "{st}");
    assert_eq!(st["totalErrs"], 0, "{st}");

    // The bound form: a socket at the asked port, reachable from outside.
    let mut c = connect(p);
    let port = free_udp_port();
    let reply = socks5_request(&mut c, 0xF3, SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    assert_eq!(reply[1], 0, "{reply:?}");
    assert_eq!(u16::from_be_bytes([reply[8], reply[9]]), port);
    let outside = UdpSocket::bind("127.0.0.1:0").unwrap();
    outside.send_to(b"knock", ("127.0.0.1", port)).unwrap();
    let head = read_n(&mut c, 10);
    let want = tun_frame(0xFF, outside.local_addr().unwrap(), b"knock");
    assert_eq!(head, want[..10]);
    assert_eq!(read_n(&mut c, 5), b"knock");

    // A frame with an unknown address type ends the tunnel.
    c.write_all(&[0, 1, 0, 9, 0]).unwrap();
    assert_closed(&mut c);
}

#[test]
fn a_forwarder_on_a_socks5_service_is_ignored_with_a_warning() {
    let http = http_origin("127.0.0.1:0", BODY);
    let decoy = tcp_greeter("decoy");
    let p = free_port();
    let dir = TempDir::new("socks-fwd");
    let cfg = dir.write(
        "gost.yaml",
        &format!(
            "services:\n- name: s5\n  addr: 127.0.0.1:{p}\n  handler: {{type: socks5}}\n  listener: {{type: tcp}}\n  forwarder:\n    nodes: [{{name: n0, addr: \"{decoy}\"}}]\n"
        ),
    );
    let g = Gost::start(&["-C", &cfg]);
    g.wait_tcp(p);
    let (ok, body) = curl_body(&[
        "--socks5",
        &format!("127.0.0.1:{p}"),
        &format!("http://127.0.0.1:{}/", http.port()),
    ]);
    assert!(ok && body == BODY, "{body:?}\n{}", g.log());
    g.wait_log("forwarder ignored");
    assert!(g.log().contains("s5"), "{}", g.log());
}

#[test]
fn udp_to_a_domain_target_uses_the_service_hosts() {
    let echo = udp_echo_server();
    let p = free_port();
    let dir = TempDir::new("socks-udp-hosts");
    let cfg = dir.write(
        "gost.yaml",
        &format!(
            "services:\n- name: s\n  addr: \"127.0.0.1:{p}\"\n  hosts: h\n  handler: {{type: socks5, metadata: {{udp: true}}}}\n  listener: {{type: tcp}}\nhosts:\n- name: h\n  mappings: [{{ip: 127.0.0.1, hostname: udp-only.test}}]\n"
        ),
    );
    let g = Gost::start(&["-C", &cfg]);
    g.wait_tcp(p);
    let mut c = connect(p);
    let reply = socks5_request(&mut c, 0xF3, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    assert_eq!(&reply[..2], &[5, 0], "{reply:?}");
    // A frame to udp-only.test (ATYP 3): only the service's hosts know it.
    let name = b"udp-only.test";
    let mut f = 4u16.to_be_bytes().to_vec();
    f.extend([0xFF, 3, name.len() as u8]);
    f.extend_from_slice(name);
    f.extend(echo.port().to_be_bytes());
    f.extend_from_slice(b"ping");
    c.write_all(&f).unwrap();
    let head = read_n(&mut c, 10);
    assert_eq!(
        head,
        tun_frame(0xFF, echo, b"ping")[..10],
        "reply from the echo server"
    );
    assert_eq!(read_n(&mut c, 4), b"ping");
}
