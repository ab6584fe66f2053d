//! The `relay` handler (GOST's relay protocol) through the real binary,
//! driven by a hand-written relay client: CONNECT over TCP and UDP, user
//! authentication, forwarder mode, bad requests, and the OK held back
//! until the target speaks unless `nodelay` is set.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};

use gost_e2e::*;

fn feature(kind: u8, data: &[u8]) -> Vec<u8> {
    let mut f = vec![kind];
    f.extend_from_slice(&(data.len() as u16).to_be_bytes());
    f.extend_from_slice(data);
    f
}

fn addr_feature(a: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(a) = a else {
        panic!("IPv4 only")
    };
    let mut d = vec![1];
    d.extend_from_slice(&a.ip().octets());
    d.extend_from_slice(&a.port().to_be_bytes());
    feature(2, &d)
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
    (c, resp[1])
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

#[test]
fn bind_is_refused_at_start_up() {
    let (status, _, err) = run_gost(&["-L", "relay://127.0.0.1:0?bind=true"]);
    assert!(!status.success());
    assert!(err.contains("bind"), "{err}");
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
