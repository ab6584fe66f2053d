//! Chains through the real binary: `-F` and `chains:` with http, socks4,
//! socks5, relay and forward connectors, across two and three gost
//! processes; UDP (forwarding and SOCKS5 ASSOCIATE) through socks5 nodes;
//! failover when a chain node is dead; bad references; chain group
//! probes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use gost_e2e::*;

fn connect(port: u16) -> TcpStream {
    let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c
}

/// Sends `data` over `c` and checks it comes back from the echo server.
fn assert_echo(c: &mut TcpStream, data: &[u8]) {
    c.write_all(data).unwrap();
    let mut got = vec![0u8; data.len()];
    c.read_exact(&mut got).unwrap();
    assert_eq!(got, data);
}

/// An HTTP CONNECT through the proxy on `port`; returns the status code and
/// the open stream.
fn http_connect(port: u16, target: SocketAddr) -> (u16, TcpStream) {
    let mut c = connect(port);
    write!(c, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(c.read(&mut b).unwrap(), 1, "proxy closed mid-reply");
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, c)
}

/// A SOCKS5 no-auth CONNECT through the proxy on `port`; returns the reply
/// code and the open stream.
fn socks5_connect(port: u16, target: SocketAddr) -> (u8, TcpStream) {
    let (reply, c) = socks5_request(port, 1, target);
    (reply[1], c)
}

/// A SOCKS5 no-auth request `cmd` for an IPv4 target; returns the whole
/// reply (IPv4 bound address) and the open stream.
fn socks5_request(port: u16, cmd: u8, target: SocketAddr) -> ([u8; 10], TcpStream) {
    let mut c = connect(port);
    c.write_all(&[5, 1, 0]).unwrap();
    let mut sel = [0u8; 2];
    c.read_exact(&mut sel).unwrap();
    assert_eq!(sel, [5, 0]);
    let SocketAddr::V4(t) = target else { panic!() };
    let mut req = vec![5, cmd, 0, 1];
    req.extend_from_slice(&t.ip().octets());
    req.extend_from_slice(&t.port().to_be_bytes());
    c.write_all(&req).unwrap();
    let mut reply = [0u8; 10];
    c.read_exact(&mut reply).unwrap();
    (reply, c)
}

fn start(args: &[&str], port: u16) -> Gost {
    let g = Gost::start(args);
    g.wait_tcp(port);
    g
}

#[test]
fn http_to_socks5_two_processes() {
    let echo = tcp_echo_server();
    let (pa, pb) = (free_port(), free_port());
    let _b = start(&["-L", &format!("socks5://127.0.0.1:{pb}")], pb);
    let _a = start(
        &[
            "-L",
            &format!("http://127.0.0.1:{pa}"),
            "-F",
            &format!("socks5://127.0.0.1:{pb}"),
        ],
        pa,
    );
    let (code, mut c) = http_connect(pa, echo);
    assert_eq!(code, 200);
    assert_echo(&mut c, &random_bytes(256 * 1024, 7));
}

#[test]
fn three_processes_socks5_http_auth_socks4() {
    let echo = tcp_echo_server();
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let _c = start(&["-L", &format!("socks4://127.0.0.1:{pc}")], pc);
    let _b = start(&["-L", &format!("http://user:pass@127.0.0.1:{pb}")], pb);
    // Client -> A (socks5) -> B (http, with auth) -> C (socks4) -> echo:
    // A's chain has two hops, so A speaks to C through B.
    let _a = start(
        &[
            "-L",
            &format!("socks5://127.0.0.1:{pa}"),
            "-F",
            &format!("http://user:pass@127.0.0.1:{pb}"),
            "-F",
            &format!("socks4://127.0.0.1:{pc}"),
        ],
        pa,
    );
    for seed in 1..=3 {
        let (rep, mut c) = socks5_connect(pa, echo);
        assert_eq!(rep, 0);
        assert_echo(&mut c, &random_bytes(64 * 1024, seed));
    }
}

#[test]
fn chain_hop_with_wrong_credentials_gives_503() {
    let echo = tcp_echo_server();
    let (pa, pb) = (free_port(), free_port());
    let _b = start(&["-L", &format!("http://user:pass@127.0.0.1:{pb}")], pb);
    let a = start(
        &[
            "-L",
            &format!("http://127.0.0.1:{pa}"),
            "-F",
            &format!("http://user:wrong@127.0.0.1:{pb}"),
        ],
        pa,
    );
    let (code, _) = http_connect(pa, echo);
    assert_eq!(code, 503);
    a.wait_log("407");
}

#[test]
fn port_forward_through_socks5_and_forward_connector() {
    let echo = tcp_echo_server();
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    // B forwards everything it gets to the echo server; A reaches B through
    // C (socks5) and B's node uses the forward connector: the node itself
    // is the destination.
    let _b = start(&["-L", &format!("tcp://127.0.0.1:{pb}/{echo}")], pb);
    let _c = start(&["-L", &format!("socks5://127.0.0.1:{pc}")], pc);
    let _a = start(
        &[
            "-L",
            &format!("tcp://127.0.0.1:{pa}/192.0.2.1:9"),
            "-F",
            &format!("socks5://127.0.0.1:{pc}"),
            "-F",
            &format!("forward://127.0.0.1:{pb}"),
        ],
        pa,
    );
    let mut c = connect(pa);
    assert_echo(&mut c, b"through a forward node");
}

#[test]
fn dead_node_fails_at_most_one_request_then_is_skipped() {
    let echo = tcp_echo_server();
    let (pa, pb, dead) = (free_port(), free_port(), free_port());
    let _b = start(&["-L", &format!("http://127.0.0.1:{pb}")], pb);
    let a = start(
        &[
            "-L",
            &format!("http://127.0.0.1:{pa}"),
            "-F",
            &format!(
                "http://127.0.0.1:{dead},127.0.0.1:{pb}?strategy=round&maxFails=1&failTimeout=60s"
            ),
        ],
        pa,
    );
    let mut failed = 0;
    for i in 0..10 {
        let (code, mut c) = http_connect(pa, echo);
        if code == 200 {
            assert_echo(&mut c, format!("request {i}").as_bytes());
        } else {
            assert_eq!(code, 503);
            failed += 1;
        }
    }
    assert!(failed <= 1, "{failed} requests failed; log:\n{}", a.log());
}

#[test]
fn unreachable_chain_gives_503_and_socks_connection_refused() {
    let echo = tcp_echo_server();
    let (ph, ps, dead) = (free_port(), free_port(), free_port());
    let node = format!("socks5://127.0.0.1:{dead}");
    let _h = start(&["-L", &format!("http://127.0.0.1:{ph}"), "-F", &node], ph);
    let _s = start(
        &["-L", &format!("socks5://127.0.0.1:{ps}"), "-F", &node],
        ps,
    );
    let (code, _) = http_connect(ph, echo);
    assert_eq!(code, 503);
    let (rep, _) = socks5_connect(ps, echo);
    assert_eq!(rep, 0x05);
}

#[test]
fn config_file_chains_named_hops_and_chain_group() {
    let echo = tcp_echo_server();
    let (pa, pb, pc, dead) = (free_port(), free_port(), free_port(), free_port());
    let _b = start(&["-L", &format!("socks5://u:p@127.0.0.1:{pb}")], pb);
    let _c = start(&["-L", &format!("socks4://127.0.0.1:{pc}")], pc);
    let dir = TempDir::new("chain-cfg");
    let cfg = dir.write(
        "gost.yaml",
        &format!(
            r#"
services:
- name: grouped
  addr: 127.0.0.1:{pa}
  handler:
    type: http
    chainGroup:
      chains: [broken, good]
      selector: {{strategy: fifo, maxFails: 1, failTimeout: 60s}}
  listener: {{type: tcp}}
chains:
- name: broken
  hops:
  - name: dead-hop
    nodes: [{{name: dead, addr: "127.0.0.1:{dead}", connector: {{type: socks5}}}}]
- name: good
  hops:
  - name: via-b
    nodes:
    - name: b
      addr: 127.0.0.1:{pb}
      connector: {{type: socks5, auth: {{username: u, password: p}}}}
  - name: shared
hops:
- name: shared
  nodes: [{{name: c, addr: "127.0.0.1:{pc}", connector: {{type: socks4}}}}]
"#
        ),
    );
    let a = start(&["-C", &cfg], pa);
    // fifo picks the broken chain first; it fails once and is passed over.
    let mut failed = 0;
    for i in 0..5 {
        let (code, mut c) = http_connect(pa, echo);
        if code == 200 {
            assert_echo(&mut c, format!("grouped {i}").as_bytes());
        } else {
            failed += 1;
        }
    }
    assert_eq!(failed, 1, "log:\n{}", a.log());
}

#[test]
fn ignore_chain_dials_directly() {
    let echo = tcp_echo_server();
    let (pa, dead) = (free_port(), free_port());
    let _a = start(
        &[
            "-L",
            &format!("http://127.0.0.1:{pa}?ignoreChain=true"),
            "-F",
            &format!("http://127.0.0.1:{dead}"),
        ],
        pa,
    );
    let (code, mut c) = http_connect(pa, echo);
    assert_eq!(code, 200);
    assert_echo(&mut c, b"direct");
}

/// Sends `payload` in datagrams of `chunk` bytes from a client connected
/// to `port`, one at a time, and checks every one comes back intact. The
/// first datagram is repeated until the service answers, as a UDP service
/// has no port to wait for.
fn assert_udp_echo(port: u16, payload: &[u8], chunk: usize) {
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let first = &payload[..chunk.min(payload.len())];
    // A refused send (nothing listening yet) fails at once; pace retries.
    let answered = (0..60).any(|_| {
        let _ = c.send(first);
        let ok = matches!(c.recv(&mut buf), Ok(n) if &buf[..n] == first);
        if !ok {
            std::thread::sleep(Duration::from_millis(100));
        }
        ok
    });
    assert!(answered, "no echo through the chain");
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    for (i, dgram) in payload.chunks(chunk).enumerate().skip(1) {
        c.send(dgram).unwrap();
        let n = c.recv(&mut buf).expect("datagram echoed");
        assert!(&buf[..n] == dgram, "datagram {i} differs");
    }
}

#[test]
fn udp_forward_through_a_socks5_node() {
    // Each datagram travels as one frame of GOST's UDP-over-TCP and must
    // come out as one datagram.
    let pb = free_port();
    let (b, _a) = udp_forward_via(
        &format!("socks5://127.0.0.1:{pb}?udp=true&udp.bufferSize=65535"),
        pb,
        &format!("socks5://127.0.0.1:{pb}"),
        udp_echo_server(),
        21,
    );
    b.wait_log("socks5 udp-over-tcp");
}

/// A `udp` forwarder to `echo` whose chain is the one node `node`, served
/// by a gost started with `-D -L server` on `pb`; datagrams of 1,000 and
/// 60,000 bytes must come back intact. Returns the node's and the
/// forwarder's processes.
fn udp_forward_via(server: &str, pb: u16, node: &str, echo: SocketAddr, seed: u64) -> (Gost, Gost) {
    let pa = free_udp_port();
    let b = start(&["-D", "-L", server], pb);
    let a = Gost::start(&[
        "-L",
        &format!("udp://127.0.0.1:{pa}/{echo}?keepalive=true&ttl=10s&readBufferSize=65535"),
        "-F",
        node,
    ]);
    let mut payload = random_bytes(64 * 1024, seed);
    assert_udp_echo(pa, &payload, 1000);
    payload.truncate(60_000);
    assert_udp_echo(pa, &payload, 60_000);
    (b, a)
}

#[test]
fn udp_forward_through_three_processes_with_auth() {
    let echo = udp_echo_server();
    let (pa, pb, pc) = (free_udp_port(), free_port(), free_port());
    // b only carries a TCP connection on to c; c relays the datagrams.
    let _b = start(&["-L", &format!("socks5://u:p@127.0.0.1:{pb}")], pb);
    let c = start(
        &["-D", "-L", &format!("socks5://v:q@127.0.0.1:{pc}?udp=true")],
        pc,
    );
    let _a = Gost::start(&[
        "-L",
        &format!("udp://127.0.0.1:{pa}/{echo}?keepalive=true&ttl=10s"),
        "-F",
        &format!("socks5://u:p@127.0.0.1:{pb}"),
        "-F",
        &format!("socks5://v:q@127.0.0.1:{pc}"),
    ]);
    assert_udp_echo(pa, &random_bytes(100 * 1024, 22), 1400);
    c.wait_log("socks5 udp-over-tcp");
}

#[test]
fn udp_through_a_node_that_cannot_carry_it_is_an_error() {
    let echo = udp_echo_server();
    let (pa, pb) = (free_udp_port(), free_port());
    let _b = start(&["-L", &format!("http://127.0.0.1:{pb}")], pb);
    let a = Gost::start(&[
        "-L",
        &format!("udp://127.0.0.1:{pa}/{echo}"),
        "-F",
        &format!("http://127.0.0.1:{pb}"),
    ]);
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.connect(("127.0.0.1", pa)).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 16];
    for _ in 0..50 {
        let _ = c.send(b"x");
        assert!(c.recv(&mut buf).is_err(), "no datagram may come back");
        std::thread::sleep(Duration::from_millis(100));
        if a.log().contains("UDP is not supported") {
            return;
        }
    }
    panic!("no error logged: {}", a.log());
}

/// `RSV FRAG ATYP ADDR PORT` of a SOCKS5 UDP datagram to an IPv4 target.
fn socks5_udp_header(target: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(t) = target else { panic!() };
    let mut d = vec![0, 0, 0, 1];
    d.extend_from_slice(&t.ip().octets());
    d.extend_from_slice(&t.port().to_be_bytes());
    d
}

#[test]
fn socks5_udp_associate_through_a_socks5_chain() {
    let (echo1, echo2) = (udp_echo_server(), udp_echo_server());
    let (pa, pb) = (free_port(), free_port());
    let b = start(
        &["-D", "-L", &format!("socks5://127.0.0.1:{pb}?udp=true")],
        pb,
    );
    let _a = start(
        &[
            "-L",
            &format!("socks5://127.0.0.1:{pa}?udp=true"),
            "-F",
            &format!("socks5://127.0.0.1:{pb}"),
        ],
        pa,
    );
    // Two targets over one association: each reply names its source.
    let control = associate_and_echo(pa, [echo1, echo2, echo1], 1000, 30);
    b.wait_log("socks5 udp-over-tcp");
    drop(control);
}

#[test]
fn socks5_udp_associate_fails_when_the_chain_cannot_carry_udp() {
    let (pa, pb) = (free_port(), free_port());
    // b refuses UDP (no udp=true), so a's chain has no tunnel to offer.
    let _b = start(&["-L", &format!("socks5://127.0.0.1:{pb}")], pb);
    let _a = start(
        &[
            "-L",
            &format!("socks5://127.0.0.1:{pa}?udp=true"),
            "-F",
            &format!("socks5://127.0.0.1:{pb}"),
        ],
        pa,
    );
    let (reply, _c) = socks5_request(pa, 3, SocketAddr::from(([0, 0, 0, 0], 0)));
    assert_eq!(reply[1], 1, "general failure: {reply:?}");
}

#[test]
fn hop_nodes_from_a_reloaded_file() {
    let echo = tcp_echo_server();
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let b = start(&["-D", "-L", &format!("socks5://127.0.0.1:{pb}")], pb);
    let c = start(&["-D", "-L", &format!("http://127.0.0.1:{pc}")], pc);
    let dir = TempDir::new("hop-file");
    let nodes = |port: u16, ty: &str| {
        format!(r#"[{{"name": "n", "addr": "127.0.0.1:{port}", "connector": {{"type": "{ty}"}}}}]"#)
    };
    let file = dir.write("nodes.json", &nodes(pb, "socks5"));
    let cfg = dir.write(
        "gost.yaml",
        &format!(
            r#"
services:
- {{name: front, addr: "127.0.0.1:{pa}", handler: {{type: http, chain: c}}, listener: {{type: tcp}}}}
chains:
- {{name: c, hops: [{{name: from-file}}]}}
hops:
- {{name: from-file, reload: 1s, file: {{path: "{file}"}}}}
"#
        ),
    );
    let a = start(&["-C", &cfg], pa);
    let (code, mut conn) = http_connect(pa, echo);
    assert_eq!(code, 200, "{}", a.log());
    assert_echo(&mut conn, b"via b");
    b.wait_log(&format!("\"dst\":\"{echo}\""));

    dir.write("nodes.json", &nodes(pc, "http"));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, mut conn) = http_connect(pa, echo);
    assert_eq!(code, 200);
    assert_echo(&mut conn, b"via c");
    c.wait_log(&echo.to_string());

    dir.write("nodes.json", "[{\"name\": \"n\", \"addr\": ");
    let (status, _, err) = run_gost(&["-C", &cfg]);
    assert!(!status.success());
    assert!(err.contains("nodes.json"), "{err}");
}

#[test]
fn dangling_chain_and_hop_references_stop_start_up_with_their_names() {
    let dir = TempDir::new("dangling");
    let cfg = dir.write(
        "gost.yaml",
        r#"
services:
- {name: s, addr: "127.0.0.1:0", handler: {type: http, chain: nowhere}, listener: {type: tcp}}
- {name: t, addr: "127.0.0.1:0", handler: {type: http, chainGroup: {chains: [c]}}, listener: {type: tcp}}
chains:
- {name: c, hops: [{name: missing-hop}]}
"#,
    );
    let (status, _, err) = run_gost(&["-C", &cfg]);
    assert!(!status.success());
    assert!(err.contains("handler.chain \"nowhere\" not found"), "{err}");
    assert!(err.contains("hop \"missing-hop\" not found"), "{err}");
}

#[test]
fn relay_connector_with_auth_in_a_three_process_chain() {
    let echo = tcp_echo_server();
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let b = start(&["-D", "-L", &format!("relay://u:p@127.0.0.1:{pb}")], pb);
    let _c = start(&["-L", &format!("socks5://127.0.0.1:{pc}")], pc);
    let _a = start(
        &[
            "-L",
            &format!("http://127.0.0.1:{pa}"),
            "-F",
            &format!("relay://u:p@127.0.0.1:{pb}"),
            "-F",
            &format!("socks5://127.0.0.1:{pc}"),
        ],
        pa,
    );
    let (code, mut c) = http_connect(pa, echo);
    assert_eq!(code, 200);
    assert_echo(&mut c, &random_bytes(128 * 1024, 40));
    b.wait_log("relay request");

    // A wrong password is refused by the relay node at once, so a client
    // in nodelay mode hears it while dialing: the client gets 503.
    let pd = free_port();
    let _d = start(
        &[
            "-L",
            &format!("http://127.0.0.1:{pd}"),
            "-F",
            &format!("relay://u:wrong@127.0.0.1:{pb}?nodelay=true"),
        ],
        pd,
    );
    assert_eq!(http_connect(pd, echo).0, 503);
}

/// Every pairing of a lazy or nodelay relay client (an http proxy chained
/// to the relay node) with a lazy or nodelay relay server. A server-first
/// protocol (a banner) works in all four; client-first protocols (HTTP
/// through the proxy, and a CONNECT tunnel to an echo server) work unless
/// the client waits for a response a lazy server holds back until the
/// target speaks, which dead-locks in GOST as well.
#[test]
fn relay_lazy_and_nodelay_interoperate_both_ways() {
    let echo = tcp_echo_server();
    let banner = tcp_greeter("SSH-2.0-banner\r\n");
    let origin = http_origin("127.0.0.1:0", "through relay");
    let (lazy_srv, nodelay_srv) = (free_port(), free_port());
    let _s1 = start(
        &["-L", &format!("relay://u:p@127.0.0.1:{lazy_srv}")],
        lazy_srv,
    );
    let _s2 = start(
        &[
            "-L",
            &format!("relay://u:p@127.0.0.1:{nodelay_srv}?nodelay=true"),
        ],
        nodelay_srv,
    );
    for (server, server_nodelay) in [(lazy_srv, false), (nodelay_srv, true)] {
        for client_query in ["", "?nodelay=true"] {
            let pa = free_port();
            let _a = start(
                &[
                    "-L",
                    &format!("http://127.0.0.1:{pa}"),
                    "-F",
                    &format!("relay://u:p@127.0.0.1:{server}{client_query}"),
                ],
                pa,
            );
            let combo = format!("server nodelay={server_nodelay}, client {client_query:?}");
            let (code, mut c) = http_connect(pa, banner);
            assert_eq!(code, 200, "{combo}");
            let mut got = String::new();
            c.read_to_string(&mut got).unwrap();
            assert_eq!(got, "SSH-2.0-banner\r\n", "{combo}");
            if !server_nodelay && !client_query.is_empty() {
                continue;
            }
            let (code, mut c) = http_connect(pa, echo);
            assert_eq!(code, 200, "{combo}");
            assert_echo(&mut c, &random_bytes(200 * 1024, 41));
            let (ok, body) = curl_body(&[
                "-x",
                &format!("http://127.0.0.1:{pa}"),
                &format!("http://{origin}/"),
            ]);
            assert!(ok, "{combo}");
            assert_eq!(body, "through relay", "{combo}");
        }
    }
}

/// With a lazy client the relay node's refusal comes after the proxy has
/// said 200: the tunnel then closes with nothing passed on, and the
/// failure counts as an error of the proxy's service.
#[test]
fn a_lazy_relay_refusal_closes_the_tunnel_and_counts_an_error() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (pa, pb, api) = (free_port(), free_port(), free_port());
    let _b = start(&["-L", &format!("relay://u:p@127.0.0.1:{pb}")], pb);
    let a = start(
        &[
            "-L",
            &format!("http://127.0.0.1:{pa}?enableStats=true"),
            "-F",
            &format!("relay://u:p@127.0.0.1:{pb}"),
            "-api",
            &format!("127.0.0.1:{api}"),
        ],
        pa,
    );
    a.wait_tcp(api);
    wait_settled(api, "service-0");
    let (code, mut c) = http_connect(pa, dead);
    assert_eq!(code, 200);
    c.write_all(b"hello").unwrap();
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{rest:?}");
    a.wait_log("status 7 (network unreachable)");
    // A wrong password: the same, with the node's unauthorized status.
    let pc = free_port();
    let c_proc = start(
        &[
            "-L",
            &format!("http://127.0.0.1:{pc}"),
            "-F",
            &format!("relay://u:wrong@127.0.0.1:{pb}"),
        ],
        pc,
    );
    let (code, mut c) = http_connect(pc, dead);
    assert_eq!(code, 200);
    let _ = c.write_all(b"hello");
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{rest:?}");
    c_proc.wait_log("status 2 (unauthorized)");
    wait_service(api, "service-0", |s| {
        s["status"]["stats"]["currentConns"] == 0 && s["status"]["stats"]["totalErrs"] == 1
    });
}

#[test]
fn udp_forward_through_a_relay_node_with_auth() {
    // Each datagram is one `LEN(2) DATA` frame on the relay connection.
    let echo = udp_echo_server();
    let pb = free_port();
    let (b, _a) = udp_forward_via(
        &format!("relay://u:p@127.0.0.1:{pb}?udp.bufferSize=65535"),
        pb,
        &format!("relay://u:p@127.0.0.1:{pb}"),
        echo,
        23,
    );
    b.wait_log("\"network\":\"udp\"");

    // A wrong password: the relay node refuses, nothing comes back.
    let pc = free_udp_port();
    let c = Gost::start(&[
        "-L",
        &format!("udp://127.0.0.1:{pc}/{echo}"),
        "-F",
        &format!("relay://u:wrong@127.0.0.1:{pb}?nodelay=true"),
    ]);
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.connect(("127.0.0.1", pc)).unwrap();
    u.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 16];
    for _ in 0..50 {
        let _ = u.send(b"x");
        assert!(u.recv(&mut buf).is_err(), "no datagram may come back");
        if c.log().contains("status 2 (unauthorized)") {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no refusal logged: {}", c.log());
}

#[test]
fn socks5_udp_associate_through_a_relay_node_is_a_clear_failure() {
    let (pa, pb) = (free_port(), free_port());
    let _b = start(&["-L", &format!("relay://127.0.0.1:{pb}")], pb);
    let a = start(
        &[
            "-L",
            &format!("socks5://127.0.0.1:{pa}?udp=true"),
            "-F",
            &format!("relay://127.0.0.1:{pb}?nodelay=true"),
        ],
        pa,
    );
    let (reply, _c) = socks5_request(pa, 3, SocketAddr::from(([0, 0, 0, 0], 0)));
    assert_eq!(reply[1], 1, "general failure: {reply:?}");
    a.wait_log("BIND: status 3 (forbidden)");
}

/// How many connections to `target` the socks5 gost behind `g` (started
/// with `-D`) was asked for.
fn socks5_requests(g: &Gost, target: SocketAddr) -> usize {
    g.log()
        .lines()
        .filter(|l| l.contains("socks5 request") && l.contains(&format!("\"dst\":\"{target}\"")))
        .count()
}

/// Waits, bounded, until `cond` holds.
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let ok = (0..400).any(|_| {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
        false
    });
    assert!(ok, "timed out waiting for {what}");
}

/// Two socks5 gost processes (each started with `-D`) and their ports.
fn two_socks5_proxies() -> (Gost, u16, Gost, u16) {
    let (pb, pc) = (free_port(), free_port());
    let b = start(&["-D", "-L", &format!("socks5://127.0.0.1:{pb}")], pb);
    let c = start(&["-D", "-L", &format!("socks5://127.0.0.1:{pc}")], pc);
    (b, pb, c, pc)
}

/// A front http proxy on `pa` with a round-robin chain group of `via-b`
/// (socks5 to `pb`) and `via-c` (socks5 to `pc`), each entry written out
/// in `entries` (YAML flow mappings naming those chains).
fn probed_group_config(dir: &TempDir, pa: u16, pb: u16, pc: u16, entries: &str) -> String {
    dir.write(
        "gost.yaml",
        &format!(
            r#"
services:
- name: front
  addr: 127.0.0.1:{pa}
  handler:
    type: http
    chainGroup:
      chains: {entries}
      selector: {{strategy: round, maxFails: 1, failTimeout: 5s}}
  listener: {{type: tcp}}
chains:
- {{name: via-b, hops: [{{name: hb, nodes: [{{name: b, addr: "127.0.0.1:{pb}", connector: {{type: socks5}}}}]}}]}}
- {{name: via-c, hops: [{{name: hc, nodes: [{{name: c, addr: "127.0.0.1:{pc}", connector: {{type: socks5}}}}]}}]}}
"#
        ),
    )
}

fn connect_n_times(pa: u16, echo: SocketAddr, n: usize) {
    for i in 0..n {
        let (code, mut c) = http_connect(pa, echo);
        assert_eq!(code, 200);
        assert_echo(&mut c, format!("probed {i}").as_bytes());
    }
}

#[test]
fn chain_group_cmd_probe_excludes_a_chain_until_it_recovers() {
    let echo = tcp_echo_server();
    let (b, pb, c, pc) = two_socks5_proxies();
    let dir = TempDir::new("probe-cmd");
    let flag = dir.path("b-healthy");
    let pa = free_port();
    let cfg = probed_group_config(
        &dir,
        pa,
        pb,
        pc,
        &format!(
            "[{{chain: via-b, probe: {{type: cmd, command: 'test -f {flag}', interval: 200ms, timeout: 5s}}}}, via-c]"
        ),
    );
    let a = start(&["-C", &cfg], pa);
    a.wait_log("healthy -> failed");
    assert_state_changes_only_for(&a, "via-b");
    connect_n_times(pa, echo, 6);
    wait_until("6 requests at c", || socks5_requests(&c, echo) == 6);
    assert_eq!(socks5_requests(&b, echo), 0, "log of a:\n{}", a.log());

    std::fs::write(&flag, "").unwrap();
    a.wait_log("failed -> healthy");
    connect_n_times(pa, echo, 6);
    wait_until("both chains carrying again", || {
        socks5_requests(&b, echo) + socks5_requests(&c, echo) == 12
    });
    assert!(socks5_requests(&b, echo) >= 2, "log of a:\n{}", a.log());
}

/// Every probe state change `a` logged was of the chain `chain`.
fn assert_state_changes_only_for(a: &Gost, chain: &str) {
    let log = a.log();
    let changes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("probe state changed"))
        .collect();
    assert!(!changes.is_empty(), "{log}");
    let want = format!("\"chain\":\"{chain}\"");
    assert!(changes.iter().all(|l| l.contains(&want)), "{log}");
}

/// An HTTP server on loopback answering every request 503.
fn http_503_server() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { break };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match conn.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let _ =
                conn.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
        }
    });
    addr
}

#[test]
fn chain_group_http_and_tcp_probes_dial_through_their_chain() {
    let echo = tcp_echo_server();
    let down = http_503_server();
    let (b, pb, c, pc) = two_socks5_proxies();
    let dir = TempDir::new("probe-http");
    let pa = free_port();
    let cfg = probed_group_config(
        &dir,
        pa,
        pb,
        pc,
        &format!(
            "[{{chain: via-b, probe: {{type: http, addr: '{down}', httpPath: /health, interval: 200ms, timeout: 5s}}}}, \
              {{chain: via-c, probe: {{type: tcp, addr: '{echo}', interval: 200ms, timeout: 5s}}}}]"
        ),
    );
    let a = start(&["-C", &cfg], pa);
    a.wait_log("healthy -> failed");
    // Each probe went through its own chain's node.
    b.wait_log(&format!("\"dst\":\"{down}\""));
    wait_until("a tcp probe through c", || socks5_requests(&c, echo) >= 1);
    assert!(!c.log().contains(&format!("\"dst\":\"{down}\"")));
    assert_state_changes_only_for(&a, "via-b");
    let before = socks5_requests(&c, echo);
    connect_n_times(pa, echo, 6);
    wait_until("6 more requests at c", || {
        socks5_requests(&c, echo) >= before + 6
    });
    assert_eq!(socks5_requests(&b, echo), 0, "log of a:\n{}", a.log());
}

/// The `front` service of a chain group whose probe appends a line to
/// `ticks` every 100ms, as API JSON.
fn ticking_service(pa: u16, ticks: &str) -> String {
    serde_json::json!({
        "name": "front",
        "addr": format!("127.0.0.1:{pa}"),
        "handler": {"type": "http", "chainGroup": {"chains": [
            {"chain": "c", "probe": {"type": "cmd", "command": format!("echo x >> {ticks}"), "interval": "100ms"}}
        ]}},
        "listener": {"type": "tcp"}
    })
    .to_string()
}

/// Fails if the file at `path` still grows: an in-flight probe may finish
/// first, then it must stay as it is for many probe intervals.
fn assert_stops_growing(path: &str, a: &Gost) {
    let size = || std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    std::thread::sleep(Duration::from_millis(500));
    let stopped = size();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        size(),
        stopped,
        "{path}: probe still running; log:\n{}",
        a.log()
    );
}

#[test]
fn chain_group_probes_stop_when_the_group_is_replaced_or_deleted() {
    let dir = TempDir::new("probe-stop");
    let (old, new) = (dir.path("old"), dir.path("new"));
    let (pa, api) = (free_port(), free_port());
    let service: serde_json::Value = serde_json::from_str(&ticking_service(pa, &old)).unwrap();
    let cfg = dir.write(
        "gost.yaml",
        &format!(
            r#"
services: [{service}]
chains:
- {{name: c, hops: [{{name: h, nodes: [{{name: n, addr: "127.0.0.1:1"}}]}}]}}
api: {{addr: "127.0.0.1:{api}"}}
"#
        ),
    );
    let a = start(&["-C", &cfg], pa);
    a.wait_tcp(api);
    let size = |p: &str| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    wait_until("probe ticks", || size(&old) >= 6);

    let body = ticking_service(pa, &new);
    let (status, resp) = http_request(api, "PUT", "/config/services/front", Some(&body), None);
    assert_eq!(status, 200, "{resp}");
    wait_until("the new group's probe ticks", || size(&new) >= 6);
    assert_stops_growing(&old, &a);

    let (status, resp) = http_request(api, "DELETE", "/config/services/front", None, None);
    assert_eq!(status, 200, "{resp}");
    assert_stops_growing(&new, &a);
}

#[test]
fn bad_chain_group_probes_stop_start_up_naming_the_entry() {
    let dir = TempDir::new("probe-bad");
    for (probe, want) in [
        (
            "{type: ping, addr: 'x:1'}",
            "chainGroup chain \"c\": probe type 'ping' is not supported",
        ),
        (
            "{type: http}",
            "chainGroup chain \"c\": probe type http needs an addr",
        ),
        (
            "{type: cmd}",
            "chainGroup chain \"c\": probe type cmd needs a command",
        ),
        (
            "{type: tcp, addr: 'x:1', timeout: 3 s}",
            "chains[0].probe.timeout: invalid duration",
        ),
    ] {
        let cfg = dir.write(
            "gost.yaml",
            &format!(
                r#"
services:
- {{name: s, addr: "127.0.0.1:0", handler: {{type: http, chainGroup: {{chains: [{{chain: c, probe: {probe}}}]}}}}, listener: {{type: tcp}}}}
chains:
- {{name: c, hops: [{{name: h, nodes: [{{name: n, addr: "127.0.0.1:1"}}]}}]}}
"#
            ),
        );
        let (status, _, err) = run_gost(&["-C", &cfg]);
        assert!(!status.success(), "{probe}");
        assert!(err.contains(want), "{probe}: {err}");
    }
}

/// A `udp` forwarder whose socks5 node has `relay=udp` and checks the node
/// served a standard UDP ASSOCIATE, not GOST's UDP-over-TCP tunnel.
fn udp_forward_by_associate(userinfo: &str, seed: u64) {
    let pb = free_port();
    let (b, a) = udp_forward_via(
        &format!("socks5://{userinfo}127.0.0.1:{pb}?udp=true&udp.bufferSize=65535"),
        pb,
        &format!("socks5://{userinfo}127.0.0.1:{pb}?relay=udp&udp.bufferSize=65535"),
        udp_echo_server(),
        seed,
    );
    b.wait_log("socks5 udp associate");
    assert!(!b.log().contains("udp-over-tcp"), "{}", b.log());
    assert!(!a.log().contains("not supported"), "{}", a.log());
}

#[test]
fn udp_forward_through_a_socks5_node_by_udp_associate() {
    udp_forward_by_associate("", 41);
}

#[test]
fn udp_forward_through_a_socks5_node_by_udp_associate_with_auth() {
    udp_forward_by_associate("u:p@", 42);
}

#[test]
fn socks5_udp_associate_through_a_relay_udp_chain_of_three_processes() {
    let (echo1, echo2) = (udp_echo_server(), udp_echo_server());
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    // b only carries the control stream on to c; the datagrams go from a
    // straight to the relay port c's UDP ASSOCIATE grants.
    let _b = start(&["-L", &format!("socks5://u:p@127.0.0.1:{pb}")], pb);
    let c = start(
        &["-D", "-L", &format!("socks5://v:q@127.0.0.1:{pc}?udp=true")],
        pc,
    );
    let _a = start(
        &[
            "-L",
            &format!("socks5://127.0.0.1:{pa}?udp=true"),
            "-F",
            &format!("socks5://u:p@127.0.0.1:{pb}"),
            "-F",
            &format!("socks5://v:q@127.0.0.1:{pc}?relay=udp"),
        ],
        pa,
    );
    let control = associate_and_echo(pa, [echo2, echo1, echo2], 2000, 50);
    c.wait_log("socks5 udp associate");
    assert!(!c.log().contains("udp-over-tcp"), "{}", c.log());
    drop(control);
}

/// A SOCKS5 UDP ASSOCIATE on the service at `port`, then one datagram to
/// each of `echoes` in turn (payload `i` is `base_len + i` bytes, seeded
/// `seed + i`): each reply must name its echo server and carry the
/// payload back. The control connection, which holds the association.
fn associate_and_echo(port: u16, echoes: [SocketAddr; 3], base_len: usize, seed: u64) -> TcpStream {
    let (reply, control) = socks5_request(port, 3, SocketAddr::from(([0, 0, 0, 0], 0)));
    assert_eq!(reply[1], 0, "associate granted: {reply:?}");
    let relay = SocketAddr::from((
        [reply[4], reply[5], reply[6], reply[7]],
        u16::from_be_bytes([reply[8], reply[9]]),
    ));
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(TIMEOUT)).unwrap();
    for (i, echo) in echoes.into_iter().enumerate() {
        let payload = random_bytes(base_len + i, i as u64 + seed);
        let mut d = socks5_udp_header(echo);
        let header = d.len();
        d.extend_from_slice(&payload);
        u.send_to(&d, relay).unwrap();
        let mut buf = [0u8; 4096];
        let (n, _) = u.recv_from(&mut buf).expect("reply through the chain");
        assert_eq!(&buf[..header], &d[..header], "reply names {echo}");
        assert!(buf[header..n] == payload[..], "payload {i} differs");
    }
    control
}

/// GOST's TestParallelSelector (testdata/selector/parallel.yaml): a hop
/// with the `parallel` strategy dials its nodes at once, so a dead node
/// never fails a request, not even the first, whatever its place; the
/// same for a port forwarder's nodes.
#[test]
fn parallel_strategy_never_fails_on_a_dead_node() {
    let echo = tcp_echo_server();
    let dir = TempDir::new("parallel");
    let (proxy, live, dead, fwd) = (free_port(), free_port(), free_port(), free_port());
    let cfg = dir.write(
        "gost.yaml",
        &format!(
            "services:
- name: proxy
  addr: 127.0.0.1:{proxy}
  handler: {{type: http, chain: my-chain}}
  listener: {{type: tcp}}
- name: dummy-1
  addr: 127.0.0.1:{live}
  handler: {{type: http}}
  listener: {{type: tcp}}
- name: forward
  addr: 127.0.0.1:{fwd}
  handler: {{type: tcp}}
  listener: {{type: tcp}}
  forwarder:
    selector: {{strategy: parallel, maxFails: 1, failTimeout: 60s}}
    nodes:
    - {{name: dead, addr: 127.0.0.1:{dead}}}
    - {{name: echo, addr: {echo}}}
chains:
- name: my-chain
  hops:
  - name: hop-1
    selector: {{strategy: parallel}}
    nodes:
    - {{name: node-2, addr: 127.0.0.1:{dead}, connector: {{type: http}}}}
    - {{name: node-1, addr: 127.0.0.1:{live}, connector: {{type: http}}}}
"
        ),
    );
    let g = Gost::start(&["-C", &cfg]);
    g.wait_tcp(proxy);
    g.wait_tcp(fwd);
    for i in 0..5 {
        let (code, mut c) = http_connect(proxy, echo);
        assert_eq!(code, 200, "request {i}; log:\n{}", g.log());
        assert_echo(&mut c, format!("chain {i}").as_bytes());
        let mut c = connect(fwd);
        assert_echo(&mut c, format!("forward {i}").as_bytes());
    }
    // With fifo the dead node, listed first, fails the first request.
    let (fifo, fifo_live) = (free_port(), free_port());
    let _l = start(&["-L", &format!("http://127.0.0.1:{fifo_live}")], fifo_live);
    let f = start(
        &[
            "-L",
            &format!("http://127.0.0.1:{fifo}"),
            "-F",
            &format!("http://127.0.0.1:{dead},127.0.0.1:{fifo_live}?strategy=fifo"),
        ],
        fifo,
    );
    assert_eq!(http_connect(fifo, echo).0, 503, "log:\n{}", f.log());
}
