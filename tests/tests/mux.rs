//! The multiplexing transports (`mtls`, `mws`, `mwss`, `mtcp`) through the
//! real binary: every proxy protocol over each, many connections over one
//! session (counted per connection), chains mixing them with other
//! transports, `auto` over `mtls`, a session replaced after its server
//! went away, and bad frames on the wire. Certificates are made at test
//! time (`pki`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use gost_e2e::homed::{assert_a_loop_is_cut, client, logs, start, via_socks5};
use gost_e2e::pki::Pki;
use gost_e2e::tunnel::*;
use gost_e2e::*;

const BODY: &str = "hello over mux";

fn assert_fetch(what: &str, got: (bool, String), gs: &[&Gost]) {
    assert_eq!(got, (true, BODY.to_string()), "{what}\n{}", logs(gs));
}

fn echo_round(c: &mut TcpStream, msg: &[u8]) {
    c.write_all(msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    c.read_exact(&mut back).unwrap();
    assert_eq!(back, msg);
}

/// Each multiplexing transport carries socks5, relay and http, gost
/// client to gost server.
#[test]
fn gost_to_gost_over_each_mux_transport_for_socks5_relay_and_http() {
    let pki = Pki::generate("mux-pairs");
    let origin = http_origin("127.0.0.1:0", BODY);
    let cert = cert_query(&pki);
    let check = verify(&pki);
    for transport in ["mtls", "mws", "mwss", "mtcp"] {
        let tls = transport == "mtls" || transport == "mwss";
        let ports = [free_port(), free_port(), free_port()];
        let protos = ["socks5", "relay", "http"];
        let mut args = vec![];
        for (proto, port) in protos.iter().zip(ports) {
            let q = if tls { cert.as_str() } else { "" };
            args.push(format!("{proto}+{transport}://127.0.0.1:{port}?{q}"));
        }
        let args: Vec<&str> = args.iter().flat_map(|a| ["-L", a.as_str()]).collect();
        let server = start(&args, &ports);
        for (proto, port) in protos.iter().zip(ports) {
            let q = if tls { check.as_str() } else { "" };
            let node = format!("{proto}+{transport}://127.0.0.1:{port}?{q}");
            let (c, p) = client(&[&node]);
            assert_fetch(&node, via_socks5(p, origin), &[&c, &server]);
            // A second connection rides the same session.
            assert_fetch(&node, via_socks5(p, origin), &[&c, &server]);
        }
    }
}

/// Many concurrent connections through one client ride one TCP session,
/// and the server's stats count each of them, not the session.
#[test]
fn many_connections_share_one_session_and_are_counted_each() {
    let pki = Pki::generate("mux-many");
    let echo = tcp_echo_server();
    let (b, api) = (free_port(), free_port());
    let server = start(
        &[
            "-L",
            &format!(
                "socks5+mtls://127.0.0.1:{b}?{}&enableStats=true",
                cert_query(&pki)
            ),
            "-api",
            &format!("127.0.0.1:{api}"),
        ],
        &[b, api],
    );
    let node = format!("socks5+mtls://127.0.0.1:{b}?{}", verify(&pki));
    let (c, p) = client(&[&node]);
    const CONNS: usize = 40;
    let mut open: Vec<TcpStream> = (0..CONNS).map(|_| socks5_connect(p, echo)).collect();
    assert_eq!(
        established_on(b),
        1,
        "{CONNS} connections should share one session\n{}",
        logs(&[&c, &server])
    );
    let st = wait_stats(api, "service-0", &[&c, &server], |s| {
        n(s, "currentConns") == CONNS as u64
    });
    assert_eq!(n(&st, "totalErrs"), 0, "{st}");
    let workers: Vec<_> = open
        .drain(..)
        .enumerate()
        .map(|(i, mut s)| {
            thread::spawn(move || {
                let msg = random_bytes(100_000, i as u64);
                echo_round(&mut s, &msg);
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let st = wait_stats(api, "service-0", &[&c, &server], |s| {
        n(s, "currentConns") == 0
    });
    assert_eq!(n(&st, "totalConns"), CONNS as u64, "{st}");
    assert_eq!(n(&st, "totalErrs"), 0, "{st}");
}

/// A multiplexed node after a TLS node and before one, and `auto`
/// (`mtls://` alone) serving socks5 and http clients.
#[test]
fn chains_mixing_mux_with_other_transports_and_auto_over_mtls() {
    let pki = Pki::generate("mux-chain");
    let origin = http_origin("127.0.0.1:0", BODY);
    let (a, b, c) = (free_port(), free_port(), free_port());
    let server = start(
        &[
            "-L",
            &format!("socks5+tls://127.0.0.1:{a}?{}", cert_query(&pki)),
            "-L",
            &format!("relay+mwss://127.0.0.1:{b}?{}", cert_query(&pki)),
            "-L",
            &format!("mtls://127.0.0.1:{c}?{}", cert_query(&pki)),
        ],
        &[a, b, c],
    );
    let tls_node = format!("socks5+tls://127.0.0.1:{a}?{}", verify(&pki));
    let mwss_node = format!("relay+mwss://127.0.0.1:{b}?{}", verify(&pki));
    let (c1, p1) = client(&[&tls_node, &mwss_node]);
    for _ in 0..3 {
        assert_fetch(
            "socks5+tls then relay+mwss",
            via_socks5(p1, origin),
            &[&c1, &server],
        );
    }
    let (c2, p2) = client(&[&mwss_node, &tls_node]);
    assert_fetch(
        "relay+mwss then socks5+tls",
        via_socks5(p2, origin),
        &[&c2, &server],
    );
    // GOST's `auto` serves SOCKS4/5 and HTTP (not relay).
    for proto in ["socks5", "http"] {
        let node = format!("{proto}+mtls://127.0.0.1:{c}?{}", verify(&pki));
        let (c3, p3) = client(&[&node]);
        assert_fetch(
            &format!("auto over mtls, {proto}"),
            via_socks5(p3, origin),
            &[&c3, &server],
        );
    }
}

/// The same settings from YAML, with smux version 2 and a small frame
/// size on both sides; a version-1 client to that server is refused.
#[test]
fn yaml_mux_options_and_a_version_mismatch() {
    let pki = Pki::generate("mux-yaml");
    let origin = http_origin("127.0.0.1:0", BODY);
    let (b, p, api) = (free_port(), free_port(), free_port());
    let dir = TempDir::new("mux-yaml");
    let server_cfg = format!(
        "services:\n- name: mux\n  addr: 127.0.0.1:{b}\n  handler: {{type: http}}\n  listener:\n    type: mtls\n    tls: {{certFile: {}, keyFile: {}}}\n    metadata: {{mux.version: 2, mux.maxFrameSize: 1024}}\n  metadata: {{enableStats: true}}\napi:\n  addr: 127.0.0.1:{api}\n",
        pki.server, pki.server_key
    );
    let server = start(&["-C", &dir.write("server.yaml", &server_cfg)], &[b, api]);
    let client_cfg = |port: u16, version: u8| {
        format!(
            "services:\n- name: c\n  addr: 127.0.0.1:{port}\n  handler: {{type: socks5, chain: up}}\n  listener: {{type: tcp}}\nchains:\n- name: up\n  hops:\n  - name: h\n    nodes:\n    - name: n\n      addr: 127.0.0.1:{b}\n      connector: {{type: http}}\n      dialer:\n        type: mtls\n        tls: {{secure: true, caFile: {}, serverName: localhost}}\n        metadata: {{mux.version: {version}, mux.maxFrameSize: 1024}}\n",
            pki.ca
        )
    };
    let c = start(&["-C", &dir.write("client.yaml", &client_cfg(p, 2))], &[p]);
    assert_fetch("mtls v2 from YAML", via_socks5(p, origin), &[&c, &server]);
    let before = n(&wait_settled(api, "mux")["status"]["stats"], "totalErrs");
    let p1 = free_port();
    let c1 = start(
        &["-C", &dir.write("client1.yaml", &client_cfg(p1, 1))],
        &[p1],
    );
    let (ok, _) = via_socks5(p1, origin);
    assert!(
        !ok,
        "a version 1 client got through\n{}",
        logs(&[&c1, &server])
    );
    wait_stats(api, "mux", &[&c1, &server], |s| n(s, "totalErrs") > before);
    // The version 2 client's session was not affected.
    assert_fetch(
        "mtls v2 after the mismatch",
        via_socks5(p, origin),
        &[&c, &server],
    );
}

/// A client's session dies with its server; a new server on the same
/// port gets a new session.
#[test]
fn a_dead_session_is_replaced() {
    let origin = http_origin("127.0.0.1:0", BODY);
    let b = free_port();
    let server = start(&["-L", &format!("relay+mtcp://127.0.0.1:{b}")], &[b]);
    let p = free_port();
    let c = start(
        &[
            "-D",
            "-L",
            &format!("socks5://127.0.0.1:{p}"),
            "-F",
            &format!("relay+mtcp://127.0.0.1:{b}"),
        ],
        &[p],
    );
    assert_fetch("first session", via_socks5(p, origin), &[&c, &server]);
    drop(server);
    let server = start(&["-L", &format!("relay+mtcp://127.0.0.1:{b}")], &[b]);
    // The old session's end reaches the client as the connection closes;
    // give it a moment rather than racing it.
    let start_at = Instant::now();
    let mut got = via_socks5(p, origin);
    while !got.0 && start_at.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(100));
        got = via_socks5(p, origin);
    }
    assert_fetch("new session", got, &[&c, &server]);
    assert!(
        c.log().contains("mux: session"),
        "no session replacement logged\n{}",
        c.log()
    );
}

/// An smux v2 frame header.
fn frame(cmd: u8, sid: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, cmd];
    f.extend_from_slice(&(payload.len() as u16).to_le_bytes());
    f.extend_from_slice(&sid.to_le_bytes());
    f.extend_from_slice(payload);
    f
}

/// Reads smux frames from `c` until one `PSH` for `sid` arrives; returns
/// its payload.
fn read_data(c: &mut TcpStream, sid: u32) -> Vec<u8> {
    loop {
        let mut h = [0u8; 8];
        c.read_exact(&mut h).unwrap();
        let len = u16::from_le_bytes([h[2], h[3]]) as usize;
        let mut body = vec![0u8; len];
        c.read_exact(&mut body).unwrap();
        if h[1] == 2 && u32::from_le_bytes([h[4], h[5], h[6], h[7]]) == sid {
            return body;
        }
    }
}

/// Raw smux on an `mtcp` listener: a SYN for a stream id in use is
/// ignored (the stream goes on), garbage and a truncated frame end only
/// their own session, counted and logged once with the client's address,
/// while a gost client's session keeps working.
#[test]
fn bad_frames_end_only_their_session() {
    let origin = http_origin("127.0.0.1:0", BODY);
    let (b, api) = (free_port(), free_port());
    let server = start(
        &[
            "-L",
            &format!("socks5+mtcp://127.0.0.1:{b}?enableStats=true"),
            "-api",
            &format!("127.0.0.1:{api}"),
        ],
        &[b, api],
    );
    let (c, p) = client(&[&format!("socks5+mtcp://127.0.0.1:{b}")]);
    assert_fetch("before", via_socks5(p, origin), &[&c, &server]);
    let errs = n(
        &wait_settled(api, "service-0")["status"]["stats"],
        "totalErrs",
    );

    // A stream id reused: the second SYN changes nothing.
    let mut raw = TcpStream::connect(("127.0.0.1", b)).unwrap();
    raw.set_read_timeout(Some(TIMEOUT)).unwrap();
    raw.write_all(&frame(0, 3, &[])).unwrap();
    raw.write_all(&frame(0, 3, &[])).unwrap();
    raw.write_all(&frame(2, 3, &[5, 1, 0])).unwrap();
    assert_eq!(read_data(&mut raw, 3), [5, 0], "{}", server.log());

    // Garbage: an unknown command ends the session.
    let mut bad = TcpStream::connect(("127.0.0.1", b)).unwrap();
    let bad_addr = bad.local_addr().unwrap().to_string();
    bad.set_read_timeout(Some(TIMEOUT)).unwrap();
    bad.write_all(&[2, 9, 0, 0, 1, 0, 0, 0]).unwrap();
    let mut rest = Vec::new();
    let _ = bad.read_to_end(&mut rest);
    assert!(rest.is_empty(), "answer to garbage: {rest:?}");
    wait_stats(api, "service-0", &[&server], |s| {
        n(s, "totalErrs") == errs + 1
    });
    server.wait_log(&bad_addr);
    let naming = server
        .log()
        .lines()
        .filter(|l| l.contains(&bad_addr))
        .count();
    assert_eq!(naming, 1, "{}", server.log());

    // A truncated frame: the peer goes away mid-header. Not an error.
    let mut cut = TcpStream::connect(("127.0.0.1", b)).unwrap();
    cut.write_all(&[2, 2, 10]).unwrap();
    drop(cut);

    // The reused-id stream still works, and so does the gost client.
    let SocketAddr::V4(t) = origin else { panic!() };
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&t.ip().octets());
    req.extend_from_slice(&t.port().to_be_bytes());
    raw.write_all(&frame(2, 3, &req)).unwrap();
    assert_eq!(read_data(&mut raw, 3)[1], 0, "{}", server.log());
    assert_fetch("after", via_socks5(p, origin), &[&c, &server]);
    thread::sleep(Duration::from_millis(200));
    assert_eq!(
        n(&stats(api, "service-0"), "totalErrs"),
        errs + 1,
        "{}",
        server.log()
    );
}

/// A service whose chain leads back to itself over a multiplexing
/// transport (mux, h2, gRPC): after the first connection, every turn of
/// the loop is a new stream on the one pooled session, with no new socket
/// to count. The hop limit still ends it: the client's request fails, the
/// log says why, and the service keeps serving.
#[test]
fn a_loop_through_a_pooled_session_ends_at_the_hop_limit() {
    for (transport, query) in [("mtcp", ""), ("h2c", ""), ("grpc", "?grpcInsecure=true")] {
        assert_a_loop_is_cut(&format!(
            "relay+{transport}://127.0.0.1:{}{query}",
            free_port()
        ));
    }
}
