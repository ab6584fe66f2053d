//! The `relay` handler (GOST's relay protocol) through the real binary,
//! driven by a hand-written relay client: CONNECT over TCP and UDP, user
//! authentication, forwarder mode, bad requests, the OK held back until
//! the target speaks unless `nodelay` is set, and UDP BIND (SOCKS5 UDP
//! through a relay last node).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use gost_e2e::*;

fn feature(kind: u8, data: &[u8]) -> Vec<u8> {
    let mut f = vec![kind];
    f.extend_from_slice(&(data.len() as u16).to_be_bytes());
    f.extend_from_slice(data);
    f
}

fn addr_feature(a: SocketAddr) -> Vec<u8> {
    feature(2, &ipv4_addr(a))
}

fn user_feature(user: &str, pass: &str) -> Vec<u8> {
    let mut d = vec![user.len() as u8];
    d.extend_from_slice(user.as_bytes());
    d.push(pass.len() as u8);
    d.extend_from_slice(pass.as_bytes());
    feature(1, &d)
}

/// Sends a request and returns the connection and the response status.
fn request(port: u16, cmd: u8, features: &[Vec<u8>]) -> (TcpStream, u8) {
    let (c, resp) = request_head(port, cmd, features);
    (c, resp[1])
}

/// Sends a request and returns the connection and the response header
/// `VER STATUS FLEN(2)`.
fn request_head(port: u16, cmd: u8, features: &[Vec<u8>]) -> (TcpStream, [u8; 4]) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let body: Vec<u8> = features.concat();
    let mut req = vec![1, cmd];
    req.extend_from_slice(&(body.len() as u16).to_be_bytes());
    req.extend_from_slice(&body);
    c.write_all(&req).unwrap();
    let mut resp = [0u8; 4];
    c.read_exact(&mut resp).unwrap();
    assert_eq!(resp[0], 1, "version");
    (c, resp)
}

fn closed(c: &mut TcpStream) -> bool {
    matches!(c.read(&mut [0u8; 16]), Ok(0) | Err(_))
}

fn echo_round_trip(mut c: TcpStream) {
    let data = random_bytes(300_000, 3);
    let mut w = c.try_clone().unwrap();
    let d2 = data.clone();
    let t = std::thread::spawn(move || {
        w.write_all(&d2).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    t.join().unwrap();
    assert!(got == data, "echo differs");
}

#[test]
fn connect_with_authentication_tcp_and_udp() {
    let echo = tcp_echo_server();
    let uecho = udp_echo_server();
    let p = free_port();
    let g = Gost::start(&[
        "-L",
        &format!("relay://user:pass@127.0.0.1:{p}?nodelay=true"),
    ]);
    g.wait_tcp(p);

    let (c, status) = request(p, 1, &[user_feature("user", "pass"), addr_feature(echo)]);
    assert_eq!(status, 0);
    echo_round_trip(c);

    let (mut c, status) = request(p, 1, &[user_feature("user", "nope"), addr_feature(echo)]);
    assert_eq!(status, 2, "unauthorized");
    assert!(closed(&mut c));
    let (mut c, status) = request(p, 1, &[addr_feature(echo)]);
    assert_eq!(status, 2, "no credentials");
    assert!(closed(&mut c));

    // UDP: the 0x80 command bit, then LEN(2) DATA frames both ways.
    let (mut c, status) = request(
        p,
        0x81,
        &[user_feature("user", "pass"), addr_feature(uecho)],
    );
    assert_eq!(status, 0);
    for (i, len) in [1usize, 1200, 4000].into_iter().enumerate() {
        let payload = random_bytes(len, 10 + i as u64);
        let mut f = (len as u16).to_be_bytes().to_vec();
        f.extend_from_slice(&payload);
        c.write_all(&f).unwrap();
        let mut head = [0u8; 2];
        c.read_exact(&mut head).unwrap();
        assert_eq!(u16::from_be_bytes(head) as usize, len);
        let mut back = vec![0u8; len];
        c.read_exact(&mut back).unwrap();
        assert!(back == payload);
    }
}

#[test]
fn forwarder_mode_ignores_the_requested_target() {
    let echo = tcp_echo_server();
    let decoy = tcp_greeter("decoy");
    let p = free_port();
    let g = Gost::start(&["-L", &format!("relay://127.0.0.1:{p}/{echo}?nodelay=true")]);
    g.wait_tcp(p);
    // No address at all, and an address that is not the node: both go to
    // the forwarder's node.
    let (c, status) = request(p, 1, &[]);
    assert_eq!(status, 0);
    echo_round_trip(c);
    let (c, status) = request(p, 1, &[addr_feature(decoy)]);
    assert_eq!(status, 0);
    echo_round_trip(c);
}

#[test]
fn bad_requests_get_their_status_or_a_close() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (p, api) = (free_port(), free_port());
    let g = Gost::start(&[
        "-L",
        &format!("relay://127.0.0.1:{p}?enableStats=true&readTimeout=1s"),
        "-api",
        &format!("127.0.0.1:{api}"),
    ]);
    g.wait_tcp(p);
    g.wait_tcp(api);
    let base = wait_settled(api, "service-0");
    let base_conns = base["status"]["stats"]["totalConns"].as_u64().unwrap();

    let (mut c, status) = request(p, 1, &[addr_feature(dead)]);
    assert_eq!(status, 7, "network unreachable for a refused dial");
    assert!(closed(&mut c));
    let (mut c, status) = request(p, 1, &[]);
    assert_eq!(status, 1, "no target");
    assert!(closed(&mut c));
    let (mut c, status) = request(p, 2, &[addr_feature(dead)]);
    assert_eq!(status, 3, "BIND forbidden");
    assert!(closed(&mut c));
    let (mut c, status) = request(p, 9, &[addr_feature(dead)]);
    assert_eq!(status, 1, "unknown command");
    assert!(closed(&mut c));

    // Wrong version, unknown feature, a truncated request: closed without
    // a response.
    for raw in [
        vec![2u8, 1, 0, 0],
        [vec![1, 1, 0, 3], feature(0x77, &[])].concat(),
        vec![1, 1, 0, 10, 2, 0],
    ] {
        let mut c = TcpStream::connect(("127.0.0.1", p)).unwrap();
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        c.write_all(&raw).unwrap();
        assert!(closed(&mut c), "{raw:?}");
    }
    let svc = wait_service(api, "service-0", |s| {
        s["status"]["stats"]["currentConns"] == 0 && s["status"]["stats"]["totalErrs"] == 6
    });
    assert_eq!(
        svc["status"]["stats"]["totalConns"].as_u64().unwrap(),
        base_conns + 7,
        "{svc}"
    );
    assert!(!g.log().contains("panicked"));
}

/// `ATYP ADDR PORT` of an IPv4 address, as relay address features and
/// SOCKS5 UDP headers carry it.
fn ipv4_addr(a: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(a) = a else {
        panic!("IPv4 only")
    };
    let mut d = vec![1];
    d.extend_from_slice(&a.ip().octets());
    d.extend_from_slice(&a.port().to_be_bytes());
    d
}

/// With `bind=true` a UDP BIND is answered at once with the bound address,
/// then carries socks5 UDP-over-TCP frames to and from any target, every
/// byte counted in the service's stats; a TCP BIND to a port in use is
/// refused "service unavailable" with an error naming it.
#[test]
fn udp_bind_relays_frames_to_any_target_and_tcp_bind_to_a_port_in_use_is_refused() {
    let (echo1, echo2) = (udp_echo_server(), udp_echo_server());
    let (p, api) = (free_port(), free_port());
    let g = Gost::start(&[
        "-L",
        &format!("relay://127.0.0.1:{p}?bind=true&enableStats=true"),
        "-api",
        &format!("127.0.0.1:{api}"),
    ]);
    g.wait_tcp(p);
    g.wait_tcp(api);
    let base = wait_settled(api, "service-0")["status"]["stats"].clone();

    let (mut c, resp) = request_head(p, 0x82, &[feature(4, &[0, 1])]);
    assert_eq!(resp[1], 0, "UDP BIND granted");
    let mut features = vec![0u8; u16::from_be_bytes([resp[2], resp[3]]) as usize];
    c.read_exact(&mut features).unwrap();
    assert_eq!(&features[..4], [2, 0, 7, 1], "an IPv4 address feature");
    assert_ne!(&features[8..10], [0, 0], "a bound port");
    let mut framed = 0;
    for (i, echo) in [echo1, echo2, echo1].into_iter().enumerate() {
        let payload = random_bytes(500 + i, 40 + i as u64);
        let mut frame = (payload.len() as u16).to_be_bytes().to_vec();
        frame.push(0xFF);
        frame.extend_from_slice(&ipv4_addr(echo));
        frame.extend_from_slice(&payload);
        c.write_all(&frame).unwrap();
        let mut back = vec![0u8; frame.len()];
        c.read_exact(&mut back).unwrap();
        assert!(back == frame, "frame {i} back from {echo} differs");
        framed += frame.len() as u64;
    }
    drop(c);
    let st = wait_service(api, "service-0", |s| {
        s["status"]["stats"]["currentConns"] == 0
            && s["status"]["stats"]["totalConns"] != base["totalConns"]
    })["status"]["stats"]
        .clone();
    let delta = |k: &str| st[k].as_u64().unwrap() - base[k].as_u64().unwrap();
    // The 9-byte request and the 14-byte answer, then the frames.
    assert_eq!(delta("inputBytes"), 9 + framed, "{st}");
    assert_eq!(delta("outputBytes"), 14 + framed, "{st}");
    assert_eq!(delta("totalErrs"), 0, "{st}");

    // A TCP BIND to a port in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (mut c, status) = request(p, 2, &[addr_feature(taken.local_addr().unwrap())]);
    assert_eq!(status, 5, "TCP BIND refused");
    assert!(closed(&mut c));
    g.wait_log("relay: BIND on 127.0.0.1");
    let errs = base["totalErrs"].as_u64().unwrap() + 1;
    wait_service(api, "service-0", |s| {
        s["status"]["stats"]["totalErrs"] == errs
    });
    assert!(!g.log().contains("panicked"));
}

/// A SOCKS5 UDP ASSOCIATE whose datagrams leave through a SOCKS5 proxy
/// on `pa`; returns the control connection and the relay address.
fn socks5_associate(pa: u16) -> (TcpStream, SocketAddr) {
    let mut c = TcpStream::connect(("127.0.0.1", pa)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(&[5, 1, 0]).unwrap();
    let mut sel = [0u8; 2];
    c.read_exact(&mut sel).unwrap();
    assert_eq!(sel, [5, 0]);
    c.write_all(&[5, 3, 0, 1, 0, 0, 0, 0, 0, 0]).unwrap();
    let mut reply = [0u8; 10];
    c.read_exact(&mut reply).unwrap();
    assert_eq!(&reply[..4], [5, 0, 0, 1], "associate granted: {reply:?}");
    let relay = SocketAddr::from((
        [reply[4], reply[5], reply[6], reply[7]],
        u16::from_be_bytes([reply[8], reply[9]]),
    ));
    (c, relay)
}

/// Sends `payload` to `target` through the association's relay; the reply,
/// if one comes within the socket's read timeout, must name `target` and
/// echo the payload.
fn udp_exchange(u: &UdpSocket, relay: SocketAddr, target: SocketAddr, payload: &[u8]) -> bool {
    let mut d = vec![0, 0, 0];
    d.extend_from_slice(&ipv4_addr(target));
    let header = d.len();
    d.extend_from_slice(payload);
    u.send_to(&d, relay).unwrap();
    let mut buf = [0u8; 8192];
    let Ok((n, _)) = u.recv_from(&mut buf) else {
        return false;
    };
    assert_eq!(&buf[..header], &d[..header], "reply names {target}");
    assert!(buf[header..n] == *payload, "payload from {target} differs");
    true
}

/// SOCKS5 UDP through relay last nodes: a client-side socks5 service with
/// a chain ending at a relay node with `bind=true`, directly and with
/// user auth behind a lazy relay node (whose owed answer comes first).
#[test]
fn socks5_udp_associate_through_a_relay_node_uses_udp_bind() {
    let (echo1, echo2) = (udp_echo_server(), udp_echo_server());
    let (pa, pb, pc, pd) = (free_port(), free_port(), free_port(), free_port());
    let b = Gost::start(&[
        "-D",
        "-L",
        &format!("relay://user:pass@127.0.0.1:{pb}?bind=true"),
    ]);
    let c = Gost::start(&["-L", &format!("relay://127.0.0.1:{pc}")]);
    let direct = Gost::start(&[
        "-L",
        &format!("socks5://127.0.0.1:{pa}?udp=true"),
        "-F",
        &format!("relay://user:pass@127.0.0.1:{pb}"),
    ]);
    let two_hops = Gost::start(&[
        "-L",
        &format!("socks5://127.0.0.1:{pd}?udp=true"),
        "-F",
        &format!("relay://127.0.0.1:{pc}"),
        "-F",
        &format!("relay://user:pass@127.0.0.1:{pb}"),
    ]);
    for (g, port) in [(&b, pb), (&c, pc), (&direct, pa), (&two_hops, pd)] {
        g.wait_tcp(port);
    }
    for (seed, port) in [(50, pa), (60, pd)] {
        let (control, relay) = socks5_associate(port);
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        u.set_read_timeout(Some(TIMEOUT)).unwrap();
        // Two targets over one association.
        for (i, echo) in [echo1, echo2, echo1].into_iter().enumerate() {
            let payload = random_bytes(1000 + i, seed + i as u64);
            assert!(
                udp_exchange(&u, relay, echo, &payload),
                "no reply from {echo} through the relay node (port {port})"
            );
        }
        drop(control);
    }
    b.wait_log("relay: udp bind");
    for g in [&b, &c, &direct, &two_hops] {
        assert!(!g.log().contains("panicked"), "{}", g.log());
    }
}

/// A relay node whose bypass refuses a target drops datagrams to it, and
/// the association goes on for others.
#[test]
fn udp_bind_drops_datagrams_to_targets_in_the_bypass() {
    let (echo, refused) = (udp_echo_server(), udp_echo_server());
    let (pa, pb) = (free_port(), free_port());
    let b = Gost::start(&[
        "-L",
        &format!(
            "relay://127.0.0.1:{pb}?bind=true&bypass=127.0.0.1:{}",
            refused.port()
        ),
    ]);
    let a = Gost::start(&[
        "-L",
        &format!("socks5://127.0.0.1:{pa}?udp=true"),
        "-F",
        &format!("relay://127.0.0.1:{pb}"),
    ]);
    b.wait_tcp(pb);
    a.wait_tcp(pa);
    let (_control, relay) = socks5_associate(pa);
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(TIMEOUT)).unwrap();
    assert!(udp_exchange(&u, relay, echo, b"first"));
    u.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(
        !udp_exchange(&u, relay, refused, b"refused"),
        "a bypassed target answered"
    );
    u.set_read_timeout(Some(TIMEOUT)).unwrap();
    assert!(udp_exchange(&u, relay, echo, b"again"));
}

#[test]
fn targets_refused_by_the_bypass_are_forbidden_for_tcp_and_udp() {
    let echo = tcp_echo_server();
    let uecho = udp_echo_server();
    let p = free_port();
    let g = Gost::start(&[
        "-L",
        &format!(
            "relay://127.0.0.1:{p}?bypass=127.0.0.1:{},127.0.0.1:{}",
            echo.port(),
            uecho.port()
        ),
    ]);
    g.wait_tcp(p);
    let (mut c, status) = request(p, 1, &[addr_feature(echo)]);
    assert_eq!(status, 3, "TCP target in the bypass");
    assert!(closed(&mut c));
    let (mut c, status) = request(p, 0x81, &[addr_feature(uecho)]);
    assert_eq!(status, 3, "UDP target in the bypass");
    assert!(closed(&mut c));
    assert!(!g.log().contains("panicked"));
}

/// Without `nodelay` the OK comes right before the target's first bytes,
/// for TCP and UDP: a client speaking first gets it with the echo.
#[test]
fn without_nodelay_the_ok_waits_for_the_target() {
    let echo = tcp_echo_server();
    let uecho = udp_echo_server();
    let p = free_port();
    let g = Gost::start(&["-L", &format!("relay://127.0.0.1:{p}")]);
    g.wait_tcp(p);
    let send = |cmd: u8, target: SocketAddr, first: &[u8]| {
        let mut c = TcpStream::connect(("127.0.0.1", p)).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_millis(300)))
            .unwrap();
        let body = addr_feature(target);
        let mut req = vec![1, cmd, 0, body.len() as u8];
        req.extend_from_slice(&body);
        c.write_all(&req).unwrap();
        // Nothing comes back before the target has spoken.
        assert!(c.read(&mut [0u8; 4]).is_err(), "an OK before any data");
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        c.write_all(first).unwrap();
        let mut got = vec![0u8; 4 + first.len()];
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got[..4], [1, 0, 0, 0]);
        assert_eq!(&got[4..], first);
    };
    send(1, echo, b"ping");
    send(0x81, uecho, &[0, 4, b'p', b'o', b'n', b'g']);
    assert!(!g.log().contains("panicked"));
}
