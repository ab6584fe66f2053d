//! Routing modules through the real binary: bypass on hops and services
//! (inline, whitelist, file with line-numbered errors), admission, hosts,
//! resolver and limiters.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use gost_e2e::*;

fn connect(port: u16) -> TcpStream {
    let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c
}

fn assert_echo(c: &mut TcpStream, data: &[u8]) {
    c.write_all(data).unwrap();
    let mut got = vec![0u8; data.len()];
    c.read_exact(&mut got).unwrap();
    assert_eq!(got, data);
}

/// HTTP CONNECT to `target` (an address or `host:port`) through `port`.
fn http_connect(port: u16, target: &str) -> (u16, TcpStream) {
    let mut c = connect(port);
    write!(c, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if c.read(&mut b).unwrap_or(0) == 0 {
            return (0, c);
        }
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, c)
}

fn start(args: &[&str], port: u16) -> Gost {
    let g = Gost::start(args);
    g.wait_tcp(port);
    g
}

fn works(port: u16, target: SocketAddr) -> bool {
    let (code, mut c) = http_connect(port, &target.to_string());
    if code != 200 {
        return false;
    }
    assert_echo(&mut c, b"ping");
    true
}

#[test]
fn hop_bypass_sends_matching_targets_direct_and_others_through_the_chain() {
    let (direct, chained) = (tcp_echo_server(), tcp_echo_server());
    let (pa, dead) = (free_port(), free_port());
    // The chain's only node is dead: a target that works went direct.
    let a = start(
        &[
            "-D",
            "-L",
            &format!("http://127.0.0.1:{pa}"),
            "-F",
            &format!("http://127.0.0.1:{dead}?bypass=127.0.0.1:{}", direct.port()),
        ],
        pa,
    );
    assert!(works(pa, direct));
    assert!(!works(pa, chained));
    a.wait_log(&format!("\"rule\":\"127.0.0.1:{}\"", direct.port()));
}

#[test]
fn whitelist_bypass_from_file_and_bad_line_refused() {
    let (via_chain, direct) = (tcp_echo_server(), tcp_echo_server());
    let (pa, pb) = (free_port(), free_port());
    let dir = TempDir::new("bypass");
    // Whitelist: only the listed target goes through the chain (node B);
    // everything else bypasses it and is dialed directly.
    let rules = dir.write(
        "rules.txt",
        &format!("# chained targets\n127.0.0.1:{}\n", via_chain.port()),
    );
    let cfg = format!(
        r#"
services:
- name: front
  addr: 127.0.0.1:{pa}
  handler: {{type: http, chain: c}}
  listener: {{type: tcp}}
chains:
- name: c
  hops:
  - name: h
    bypass: wl
    nodes: [{{name: b, addr: "127.0.0.1:{pb}", connector: {{type: socks5}}}}]
bypasses:
- name: wl
  whitelist: true
  file: {{path: "{rules}"}}
"#
    );
    let path = dir.write("gost.yaml", &cfg);
    let b = start(
        &[
            "-D",
            "-L",
            &format!("socks5://127.0.0.1:{pb}?bypass=127.0.0.1:{}", direct.port()),
        ],
        pb,
    );
    let _a = start(&["-C", &path], pa);
    assert!(works(pa, via_chain));
    b.wait_log(&format!("\"dst\":\"{via_chain}\""));
    // B refuses `direct` (its service bypass), so reaching it proves the
    // whitelist sent it around the chain.
    assert!(works(pa, direct));

    dir.write("rules.txt", "127.0.0.1\n10.0.0.0/33\n");
    let (status, _, err) = run_gost(&["-C", &path]);
    assert!(!status.success());
    assert!(
        err.contains("rules.txt:2: invalid CIDR \"10.0.0.0/33\""),
        "{err}"
    );
}

#[test]
fn service_bypass_refuses_matching_targets_as_gost_answers() {
    let (blocked, open) = (tcp_echo_server(), tcp_echo_server());
    let (pa, ps, api) = (free_port(), free_port(), free_port());
    let bypass = format!("bypass=127.0.0.1:{}&enableStats=true", blocked.port());
    let g = start(
        &[
            "-L",
            &format!("http://127.0.0.1:{pa}?{bypass}"),
            "-L",
            &format!("socks5://127.0.0.1:{ps}?{bypass}"),
            "-api",
            &format!("127.0.0.1:{api}"),
        ],
        pa,
    );
    g.wait_tcp(ps);
    g.wait_tcp(api);
    // HTTP: 403 Forbidden; SOCKS5: 0x02 "not allowed by ruleset".
    assert_eq!(http_connect(pa, &blocked.to_string()).0, 403);
    assert!(works(pa, open));
    let mut c = connect(ps);
    c.write_all(&[5, 1, 0]).unwrap();
    let mut sel = [0u8; 2];
    c.read_exact(&mut sel).unwrap();
    let SocketAddr::V4(t) = blocked else { panic!() };
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&t.ip().octets());
    req.extend_from_slice(&t.port().to_be_bytes());
    c.write_all(&req).unwrap();
    let mut reply = [0u8; 10];
    c.read_exact(&mut reply).unwrap();
    assert_eq!(reply[1], 0x02, "{reply:?}");
    drop(c);
    // A policy refusal is not a server error.
    for svc in ["service-0", "service-1"] {
        let s = wait_service(api, svc, |s| {
            let st = &s["status"]["stats"];
            st["totalConns"] != 0 && st["currentConns"] == 0
        });
        assert_eq!(s["status"]["stats"]["totalErrs"], 0, "{s}");
    }
}

#[test]
fn service_bypass_drops_udp_to_matching_targets() {
    let (blocked, open) = (udp_echo_server(), udp_echo_server());
    let (pb, po) = (free_udp_port(), free_udp_port());
    let rule = format!("bypass=127.0.0.1:{}", blocked.port());
    let g = Gost::start(&[
        "-D",
        "-L",
        &format!("udp://127.0.0.1:{pb}/{blocked}?{rule}"),
        "-L",
        &format!("udp://127.0.0.1:{po}/{open}?{rule}"),
    ]);
    let echoed = |port: u16| {
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        c.connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .unwrap();
        (0..25).any(|_| {
            let _ = c.send(b"ping");
            let ok = c.recv(&mut [0u8; 8]).is_ok();
            if !ok {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            ok
        })
    };
    assert!(echoed(po), "the other target is reached");
    assert!(!echoed(pb), "a bypassed target got a datagram through");
    g.wait_log("refused by the service's bypass");
}

#[test]
fn socks5_udp_drops_datagrams_to_bypassed_targets() {
    let (blocked, open) = (udp_echo_server(), udp_echo_server());
    let p = free_port();
    let _g = start(
        &[
            "-L",
            &format!(
                "socks5://127.0.0.1:{p}?udp=true&bypass=127.0.0.1:{}",
                blocked.port()
            ),
        ],
        p,
    );
    let mut c = connect(p);
    c.write_all(&[5, 1, 0]).unwrap();
    c.read_exact(&mut [0u8; 2]).unwrap();
    c.write_all(&[5, 3, 0, 1, 0, 0, 0, 0, 0, 0]).unwrap();
    let mut r = [0u8; 10];
    c.read_exact(&mut r).unwrap();
    assert_eq!(r[1], 0, "associate granted");
    let relay = SocketAddr::from(([r[4], r[5], r[6], r[7]], u16::from_be_bytes([r[8], r[9]])));
    let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    let dgram = |t: SocketAddr| {
        let SocketAddr::V4(t) = t else { panic!() };
        let mut d = vec![0, 0, 0, 1];
        d.extend_from_slice(&t.ip().octets());
        d.extend_from_slice(&t.port().to_be_bytes());
        d.extend_from_slice(b"ping");
        d
    };
    // The bypassed target first: if it were relayed, its echo would
    // arrive before the open target's.
    u.send_to(&dgram(blocked), relay).unwrap();
    u.send_to(&dgram(open), relay).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = u.recv_from(&mut buf).expect("the open target echoes");
    assert_eq!(&buf[..n], &dgram(open)[..], "reply from the open target");
    assert!(u.recv_from(&mut buf).is_err(), "bypassed target reached");
}

#[test]
fn admission_refuses_a_denied_client_address() {
    let echo = tcp_echo_server();
    let (denied, allowed, white) = (free_port(), free_port(), free_port());
    let g = start(
        &[
            "-D",
            "-L",
            &format!("tcp://127.0.0.1:{denied}/{echo}?admission=127.0.0.0/8"),
            "-L",
            &format!("tcp://127.0.0.1:{allowed}/{echo}?admission=10.0.0.1"),
            "-L",
            &format!("tcp://127.0.0.1:{white}/{echo}?admission=~127.0.0.1"),
        ],
        allowed,
    );
    let mut c = connect(denied);
    let _ = c.write_all(b"hello");
    let mut b = [0u8; 5];
    assert!(
        matches!(c.read(&mut b), Ok(0) | Err(_)),
        "denied client got data"
    );
    g.wait_log("\"rule\":\"127.0.0.0/8\"");
    assert_echo(&mut connect(allowed), b"allowed");
    assert_echo(&mut connect(white), b"whitelisted");
}

/// A minimal DNS server on loopback (UDP and TCP on the same port) that
/// answers A queries for names ending in `.test` with 127.0.0.1 and
/// everything else with NXDOMAIN.
fn dns_server() -> SocketAddr {
    use std::net::{TcpListener, UdpSocket};
    fn answer(q: &[u8]) -> Option<Vec<u8>> {
        let mut i = 12;
        let mut name = Vec::new();
        while *q.get(i)? != 0 {
            let len = q[i] as usize;
            name.push(String::from_utf8_lossy(q.get(i + 1..i + 1 + len)?).to_string());
            i += 1 + len;
        }
        let qend = i + 5;
        let qtype = u16::from_be_bytes([q[i + 1], q[i + 2]]);
        let known = name.last().is_some_and(|l| l == "test");
        let mut r = q[..2].to_vec();
        r.extend_from_slice(if known { &[0x81, 0x80] } else { &[0x81, 0x83] });
        let an = u16::from(known && qtype == 1);
        r.extend_from_slice(&[0, 1, 0, an as u8, 0, 0, 0, 0]);
        r.extend_from_slice(&q[12..qend]);
        if an == 1 {
            r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
        }
        Some(r)
    }
    // The server answers on one port over UDP and TCP; the UDP port the
    // system picks may be taken for TCP, so pick again until both bind.
    let (udp, tcp) = (0..50)
        .find_map(|_| {
            let udp = UdpSocket::bind("127.0.0.1:0").ok()?;
            let tcp = TcpListener::bind(udp.local_addr().ok()?).ok()?;
            Some((udp, tcp))
        })
        .expect("a port free for both UDP and TCP");
    let addr = udp.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = udp.recv_from(&mut buf) {
            if let Some(r) = answer(&buf[..n]) {
                let _ = udp.send_to(&r, peer);
            }
        }
    });
    std::thread::spawn(move || {
        for c in tcp.incoming() {
            let Ok(mut c) = c else { break };
            let mut len = [0u8; 2];
            if c.read_exact(&mut len).is_err() {
                continue;
            }
            let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
            if c.read_exact(&mut q).is_err() {
                continue;
            }
            if let Some(r) = answer(&q) {
                let mut out = (r.len() as u16).to_be_bytes().to_vec();
                out.extend_from_slice(&r);
                let _ = c.write_all(&out);
            }
        }
    });
    addr
}

#[test]
fn hosts_map_names_for_direct_and_chained_dials() {
    let echo = tcp_echo_server();
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let _b = start(&["-L", &format!("socks5://127.0.0.1:{pb}")], pb);
    // The name exists only in A's hosts: through the chain, A must send the
    // mapped IP, since B cannot resolve it.
    let _a = start(
        &[
            "-L",
            &format!("http://127.0.0.1:{pa}?hosts=echo.internal:127.0.0.1"),
            "-L",
            &format!("http://127.0.0.1:{pc}?hosts=echo.internal:127.0.0.1&ignoreChain=true"),
            "-F",
            &format!("socks5://127.0.0.1:{pb}"),
        ],
        pa,
    );
    for port in [pa, pc] {
        let (code, mut c) = http_connect(port, &format!("echo.internal:{}", echo.port()));
        assert_eq!(code, 200);
        assert_echo(&mut c, b"mapped");
    }
}

#[test]
fn resolver_falls_back_from_a_silent_server_and_uses_tcp() {
    let echo = tcp_echo_server();
    let dns = dns_server();
    // A UDP socket that never answers: the first nameserver times out.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let pa = free_port();
    let dir = TempDir::new("resolver");
    let cfg = dir.write(
        "gost.yaml",
        &format!(
            r#"
services:
- name: front
  addr: 127.0.0.1:{pa}
  resolver: r
  handler: {{type: http}}
  listener: {{type: tcp}}
resolvers:
- name: r
  nameservers:
  - {{addr: "udp://{silent}", timeout: 300ms}}
  - {{addr: "tcp://{dns}", timeout: 2s}}
"#,
            silent = silent.local_addr().unwrap()
        ),
    );
    let a = start(&["-D", "-C", &cfg], pa);
    let (code, mut c) = http_connect(pa, &format!("echo.test:{}", echo.port()));
    assert_eq!(code, 200, "log:\n{}", a.log());
    assert_echo(&mut c, b"resolved");
    a.wait_log("nameserver failed, trying the next");
    let (code, _) = http_connect(pa, &format!("nothing.invalid:{}", echo.port()));
    assert_eq!(code, 503);
}

/// Whether the service on `port` relays for a new connection (a refused
/// one is closed before any byte comes back).
fn relays(port: u16) -> Option<TcpStream> {
    let mut c = connect(port);
    c.write_all(b"x").ok()?;
    let mut b = [0u8; 1];
    match c.read(&mut b) {
        Ok(1) => Some(c),
        _ => None,
    }
}

#[test]
fn climiter_caps_open_connections_and_frees_places() {
    let echo = tcp_echo_server();
    let p = free_port();
    let _g = start(
        &["-L", &format!("tcp://127.0.0.1:{p}/{echo}?climiter=2")],
        p,
    );
    // wait_tcp's probe holds a place until its relay has wound down, so
    // a place may take a moment to come free.
    let eventually = || {
        let start = std::time::Instant::now();
        loop {
            if let Some(c) = relays(p) {
                return c;
            }
            assert!(start.elapsed() < TIMEOUT, "place never freed");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let first = eventually();
    let _second = eventually();
    for _ in 0..3 {
        assert!(relays(p).is_none(), "connection over climiter 2");
    }
    drop(first);
    eventually();
}

#[test]
fn rlimiter_caps_new_connections_per_second_per_client() {
    let echo = tcp_echo_server();
    let p = free_port();
    let dir = TempDir::new("rlimiter");
    let cfg = dir.write(
        "gost.yaml",
        &format!(
            r#"
services:
- name: fwd
  addr: 127.0.0.1:{p}
  rlimiter: r
  handler: {{type: tcp}}
  listener: {{type: tcp}}
  forwarder: {{nodes: [{{name: echo, addr: "{echo}"}}]}}
rlimiters:
- name: r
  limits: ["$$ 3"]
"#
        ),
    );
    let _g = start(&["-C", &cfg], p);
    // wait_tcp's probe connection took one token already.
    let ok = (0..6).filter(|_| relays(p).is_some()).count();
    assert!((2..=3).contains(&ok), "{ok} of 6 got through at 3/s");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert!(relays(p).is_some(), "bucket refilled after a second");
}

/// Sends `len` bytes through the echo service on `port` and returns the
/// rate (bytes/s) at which they came back.
fn echo_rate(port: u16, len: usize) -> f64 {
    let mut c = connect(port);
    let data = random_bytes(len, 3);
    let mut w = c.try_clone().unwrap();
    let start = std::time::Instant::now();
    let writer = std::thread::spawn(move || w.write_all(&data).unwrap());
    let mut got = vec![0u8; len];
    c.read_exact(&mut got).unwrap();
    let secs = start.elapsed().as_secs_f64();
    writer.join().unwrap();
    len as f64 / secs
}

#[test]
fn traffic_limiter_holds_the_rate_in_each_direction() {
    let echo = tcp_echo_server();
    let (pin, pout, pfree) = (free_port(), free_port(), free_port());
    let dir = TempDir::new("limiter");
    let cfg = dir.write(
        "gost.yaml",
        &format!(
            r#"
services:
- {{name: in, addr: "127.0.0.1:{pin}", limiter: in-1m, handler: {{type: tcp}}, listener: {{type: tcp}}, forwarder: {{nodes: [{{name: e, addr: "{echo}"}}]}}}}
- {{name: out, addr: "127.0.0.1:{pout}", limiter: out-1m, handler: {{type: tcp}}, listener: {{type: tcp}}, forwarder: {{nodes: [{{name: e, addr: "{echo}"}}]}}}}
- {{name: free, addr: "127.0.0.1:{pfree}", handler: {{type: tcp}}, listener: {{type: tcp}}, forwarder: {{nodes: [{{name: e, addr: "{echo}"}}]}}}}
limiters:
- {{name: in-1m, limits: ["$$ 1MB"]}}
- {{name: out-1m, limits: ["$$ 64MB 1MB"]}}
"#
        ),
    );
    let _g = start(&["-C", &cfg], pin);
    let mib = (1u64 << 20) as f64;
    for port in [pin, pout] {
        let rate = echo_rate(port, 2 << 20) / mib;
        assert!(
            (0.9..=1.1).contains(&rate),
            "port {port}: {rate:.3} MiB/s, limit 1 MiB/s"
        );
    }
    let free = echo_rate(pfree, 2 << 20) / mib;
    assert!(free > 2.0, "unlimited service moved only {free:.3} MiB/s");
}

#[test]
fn chain_group_entries_take_the_targets_their_matcher_takes() {
    let echo = tcp_echo_server();
    let (pa, pb, pc, pf) = (free_port(), free_port(), free_port(), free_port());
    let a = start(&["-D", "-L", &format!("socks5://127.0.0.1:{pa}")], pa);
    let b = start(&["-D", "-L", &format!("socks5://127.0.0.1:{pb}")], pb);
    let c = start(&["-D", "-L", &format!("socks5://127.0.0.1:{pc}")], pc);
    let dir = TempDir::new("chain-group-matcher");
    let chain = |name: &str, port: u16| {
        format!("- name: {name}\n  hops:\n  - name: h{name}\n    nodes: [{{name: n{name}, addr: \"127.0.0.1:{port}\", connector: {{type: socks5}}}}]\n")
    };
    let cfg = format!(
        r#"services:
- name: front
  addr: 127.0.0.1:{pf}
  handler:
    type: http
    chainGroup:
      chains:
      - {{chain: ca, matcher: {{rule: 'Host(`localhost`)'}}}}
      - {{chain: cb, matcher: {{rule: 'Host(`127.0.0.1`) && Network(`tcp`)'}}}}
      - {{chain: cc, matcher: {{rule: 'Host(`nowhere.test`)'}}}}
  listener: {{type: tcp}}
chains:
{}{}{}"#,
        chain("ca", pa),
        chain("cb", pb),
        chain("cc", pc)
    );
    let path = dir.write("gost.yaml", &cfg);
    let _f = start(&["-C", &path], pf);
    let by_name = format!("localhost:{}", echo.port());
    let (code, mut s) = http_connect(pf, &by_name);
    assert_eq!(code, 200);
    assert_echo(&mut s, b"via a");
    a.wait_log(&format!("\"dst\":\"{by_name}\""));
    assert!(works(pf, echo));
    b.wait_log(&format!("\"dst\":\"{echo}\""));
    // A target no entry takes is dialed directly.
    let v6 = std::net::TcpListener::bind("[::1]:0").unwrap();
    let v6_addr = v6.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut c, _)) = v6.accept() {
            let _ = c.write_all(b"direct");
        }
    });
    let (code, mut s) = http_connect(pf, &v6_addr.to_string());
    assert_eq!(code, 200);
    let mut got = [0u8; 6];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"direct");
    for g in [&a, &b, &c] {
        assert!(!g.log().contains("::1"), "{}", g.log());
    }
}

#[test]
fn a_chain_group_matcher_naming_a_missing_bypass_is_refused() {
    let dir = TempDir::new("chain-group-bad");
    let cfg = dir.write(
        "gost.yaml",
        "services:\n- name: front\n  addr: 127.0.0.1:0\n  handler:\n    type: http\n    chainGroup:\n      chains:\n      - {chain: ca, matcher: {rule: 'Bypass(`gone`)'}}\n  listener: {type: tcp}\nchains:\n- name: ca\n  hops:\n  - name: h\n    nodes: [{name: n, addr: \"127.0.0.1:1\"}]\n",
    );
    let (status, out, err) = run_gost(&["-C", &cfg]);
    assert!(!status.success());
    let text = format!("{out}{err}");
    assert!(text.contains("chainGroup chain \"ca\""), "{text}");
    assert!(text.contains("gone"), "{text}");
}

/// `secs` for `bytes` at `rate` bytes/s past a bucket's default burst (a
/// tenth of a second's worth) is on time: never faster, and at most a
/// little slower on a busy machine.
fn assert_paced(what: &str, bytes: usize, rate: f64, secs: f64) {
    let expected = (bytes as f64 - rate / 10.0) / rate;
    assert!(
        (0.9 * expected..=1.2 * expected).contains(&secs),
        "{what}: {bytes} bytes took {secs:.2} s, {expected:.2} s expected at {rate} B/s"
    );
}

/// Sends `count` datagrams of `header` and `size` payload bytes to `to` in
/// one burst and waits for all their echoes, which must come back
/// unchanged: the seconds that took.
fn udp_burst_secs(
    u: &std::net::UdpSocket,
    to: SocketAddr,
    header: &[u8],
    count: u16,
    size: usize,
) -> f64 {
    u.set_read_timeout(Some(TIMEOUT)).unwrap();
    let dgram = |i: u16| {
        let mut d = header.to_vec();
        d.extend_from_slice(&i.to_be_bytes());
        d.resize(header.len() + size, i as u8);
        d
    };
    let start = std::time::Instant::now();
    for i in 0..count {
        u.send_to(&dgram(i), to).unwrap();
    }
    let mut seen = vec![false; count as usize];
    let mut buf = vec![0u8; header.len() + size + 1];
    for _ in 0..count {
        let (n, _) = u.recv_from(&mut buf).expect("every datagram is echoed");
        let i = u16::from_be_bytes([buf[header.len()], buf[header.len() + 1]]);
        assert!(i < count && !seen[i as usize], "unexpected echo {i}");
        assert_eq!(&buf[..n], &dgram(i)[..], "echo {i} changed");
        seen[i as usize] = true;
    }
    start.elapsed().as_secs_f64()
}

/// Waits until a UDP forwarder on `port` echoes, from a socket of its own
/// (so its session's buckets are not the ones measured).
fn wait_udp_echo(port: u16) {
    let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    c.connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let up = (0..100).any(|_| {
        let _ = c.send(b"ping");
        let ok = c.recv(&mut [0u8; 8]).is_ok();
        if !ok {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        ok
    });
    assert!(up, "udp service on {port} never echoed");
}

#[test]
fn traffic_limiter_paces_udp_sessions_each_way_without_losing_datagrams() {
    let echo = udp_echo_server();
    let (pin, pout) = (free_udp_port(), free_udp_port());
    let dir = TempDir::new("limiter-udp");
    let svc = |name: &str, port: u16| {
        format!("- {{name: {name}, addr: \"127.0.0.1:{port}\", limiter: {name}, handler: {{type: udp}}, listener: {{type: udp, metadata: {{keepalive: true}}}}, forwarder: {{nodes: [{{name: e, addr: \"{echo}\"}}]}}}}\n")
    };
    let cfg = dir.write(
        "gost.yaml",
        &format!(
            "services:\n{}{}limiters:\n- {{name: in, limits: [\"$$ 20KB 64MB\"]}}\n- {{name: out, limits: [\"$$ 64MB 20KB\"]}}\n",
            svc("in", pin),
            svc("out", pout)
        ),
    );
    let _g = Gost::start(&["-C", &cfg]);
    wait_udp_echo(pin);
    wait_udp_echo(pout);
    let rate = 20.0 * 1024.0;
    // `$$` is per session (per client address, as GOST's per packet
    // connection): two clients at once each get the whole rate.
    let burst = |port: u16| {
        std::thread::spawn(move || {
            let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            udp_burst_secs(&u, SocketAddr::from(([127, 0, 0, 1], port)), &[], 40, 1000)
        })
    };
    let (a, b) = (burst(pin), burst(pin));
    for secs in [a.join().unwrap(), b.join().unwrap()] {
        assert_paced("udp in", 40_000, rate, secs);
    }
    assert_paced("udp out", 40_000, rate, burst(pout).join().unwrap());
}

#[test]
fn traffic_limiter_paces_socks5_udp_associate() {
    let echo = udp_echo_server();
    let (_dir, _g, mut c) = limited_socks5("limiter-socks-udp", "udp: true");
    c.write_all(&[5, 3, 0, 1, 0, 0, 0, 0, 0, 0]).unwrap();
    let mut r = [0u8; 10];
    c.read_exact(&mut r).unwrap();
    assert_eq!(r[1], 0, "associate granted");
    let relay = SocketAddr::from(([r[4], r[5], r[6], r[7]], u16::from_be_bytes([r[8], r[9]])));
    let SocketAddr::V4(t) = echo else { panic!() };
    let mut header = vec![0, 0, 0, 1];
    header.extend_from_slice(&t.ip().octets());
    header.extend_from_slice(&t.port().to_be_bytes());
    let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let secs = udp_burst_secs(&u, relay, &header, 40, 1000);
    // The whole datagram, header included, counts.
    assert_paced("socks5 udp", 40 * 1010, 20.0 * 1024.0, secs);
}

#[test]
fn traffic_limiter_paces_plain_http_proxy_requests_each_way() {
    static BODY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let body = BODY.get_or_init(|| "x".repeat(200 * 1024));
    let download = http_origin("127.0.0.1:0", body);
    // An origin that takes a request body of any length and answers with
    // its length.
    let upload = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { break };
                std::thread::spawn(move || {
                    let (head, early) = read_head(&mut c);
                    let (len, mut got) = (content_length(&head), early.len());
                    let mut buf = [0u8; 16384];
                    while got < len {
                        match c.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got += n,
                        }
                    }
                    let _ = write!(
                        c,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{got}",
                        got.to_string().len()
                    );
                });
            }
        });
        addr
    };
    let p = free_port();
    let dir = TempDir::new("limiter-http");
    let cfg = dir.write(
        "gost.yaml",
        &format!(
            "services:\n- {{name: h, addr: \"127.0.0.1:{p}\", limiter: l, handler: {{type: http}}, listener: {{type: tcp}}}}\nlimiters:\n- {{name: l, limits: [\"$ 100KB 100KB\"]}}\n"
        ),
    );
    let _g = start(&["-C", &cfg], p);
    let rate = 100.0 * 1024.0;

    let mut c = connect(p);
    let start = std::time::Instant::now();
    write!(
        c,
        "GET http://{download}/ HTTP/1.1\r\nHost: {download}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let (head, mut got) = read_head(&mut c);
    let mut rest = vec![0u8; content_length(&head) - got.len()];
    c.read_exact(&mut rest).unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    got.extend_from_slice(&rest);
    assert!(got == body.as_bytes(), "the body came through changed");
    assert_paced("http response", body.len(), rate, secs);

    let sent = 200 * 1024;
    let mut c = connect(p);
    let start = std::time::Instant::now();
    write!(
        c,
        "POST http://{upload}/ HTTP/1.1\r\nHost: {upload}\r\nContent-Length: {sent}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    c.write_all(&vec![b'y'; sent]).unwrap();
    let (head, mut answer) = read_head(&mut c);
    let secs = start.elapsed().as_secs_f64();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    c.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, sent.to_string().as_bytes());
    assert_paced("http request body", sent, rate, secs);
}

/// Reads an HTTP head off `c`: the head, and the body bytes read past it.
fn read_head(c: &mut TcpStream) -> (String, Vec<u8>) {
    let mut data = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..at + 4]).into_owned();
            return (head, data.split_off(at + 4));
        }
        let n = c.read(&mut b).unwrap();
        assert!(n > 0, "closed before a whole head");
        data.extend_from_slice(&b[..n]);
    }
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
}

#[test]
fn traffic_limiter_paces_socks5_udp_over_tcp_frames() {
    let echo = udp_echo_server();
    let (_dir, _g, mut c) = limited_socks5("limiter-socks-uot", "udp: true, bind: true");
    c.write_all(&[5, 0xF3, 0, 1, 0, 0, 0, 0, 0, 0]).unwrap();
    let mut r = [0u8; 10];
    c.read_exact(&mut r).unwrap();
    assert_eq!(r[1], 0, "udp-over-tcp granted");
    // `LEN(2) FRAG ATYP ADDR PORT DATA`, back the same with the echo
    // server as the address.
    let SocketAddr::V4(t) = echo else { panic!() };
    let frame = |i: u16| {
        let mut f = 1000u16.to_be_bytes().to_vec();
        f.extend_from_slice(&[0xFF, 1]);
        f.extend_from_slice(&t.ip().octets());
        f.extend_from_slice(&t.port().to_be_bytes());
        f.extend_from_slice(&i.to_be_bytes());
        f.resize(10 + 1000, i as u8);
        f
    };
    let secs = frames_burst_secs(&mut c, frame, 40, 10);
    assert_paced("socks5 udp-over-tcp", 40 * 1010, 20.0 * 1024.0, secs);
}

/// A socks5 service with handler `metadata` and a `$$ 20KB 20KB`
/// limiter, and a client connection past its no-auth greeting.
fn limited_socks5(tag: &str, metadata: &str) -> (TempDir, Gost, TcpStream) {
    let p = free_port();
    let dir = TempDir::new(tag);
    let cfg = dir.write(
        "gost.yaml",
        &format!(
            "services:\n- {{name: s, addr: \"127.0.0.1:{p}\", limiter: l, handler: {{type: socks5, metadata: {{{metadata}}}}}, listener: {{type: tcp}}}}\nlimiters:\n- {{name: l, limits: [\"$$ 20KB 20KB\"]}}\n"
        ),
    );
    let g = start(&["-C", &cfg], p);
    let mut c = connect(p);
    c.write_all(&[5, 1, 0]).unwrap();
    c.read_exact(&mut [0u8; 2]).unwrap();
    (dir, g, c)
}

/// Writes `count` datagram frames (`frame(i)` carries `i` at `at`) in one
/// go on `c` and reads back their echoes, framed alike: each must come
/// back unchanged. The seconds that took.
fn frames_burst_secs(
    c: &mut TcpStream,
    frame: impl Fn(u16) -> Vec<u8>,
    count: u16,
    at: usize,
) -> f64 {
    let all: Vec<u8> = (0..count).flat_map(&frame).collect();
    let start = std::time::Instant::now();
    c.write_all(&all).unwrap();
    let mut seen = vec![false; count as usize];
    for _ in 0..count {
        let mut f = vec![0u8; all.len() / count as usize];
        c.read_exact(&mut f).unwrap();
        let i = u16::from_be_bytes([f[at], f[at + 1]]);
        assert!(i < count && !seen[i as usize], "unexpected frame {i}");
        assert!(f == frame(i), "frame {i} changed");
        seen[i as usize] = true;
    }
    start.elapsed().as_secs_f64()
}

#[test]
fn traffic_limiter_paces_relay_udp_frames() {
    let echo = udp_echo_server();
    let p = free_port();
    let dir = TempDir::new("limiter-relay-udp");
    let cfg = dir.write(
        "gost.yaml",
        &format!(
            "services:\n- {{name: r, addr: \"127.0.0.1:{p}\", limiter: l, handler: {{type: relay, metadata: {{nodelay: true}}}}, listener: {{type: tcp}}}}\nlimiters:\n- {{name: l, limits: [\"$$ 20KB 20KB\"]}}\n"
        ),
    );
    let _g = start(&["-C", &cfg], p);
    // Relay UDP CONNECT: `VER 0x81 LEN(2)` and an address feature, then
    // `LEN(2) DATA` frames both ways.
    let SocketAddr::V4(t) = echo else { panic!() };
    let mut req = vec![1, 0x81, 0, 10, 2, 0, 7, 1];
    req.extend_from_slice(&t.ip().octets());
    req.extend_from_slice(&t.port().to_be_bytes());
    let mut c = connect(p);
    c.write_all(&req).unwrap();
    let mut resp = [0u8; 4];
    c.read_exact(&mut resp).unwrap();
    assert_eq!(resp, [1, 0, 0, 0], "udp connect granted");
    let frame = |i: u16| {
        let mut f = 1000u16.to_be_bytes().to_vec();
        f.extend_from_slice(&i.to_be_bytes());
        f.resize(2 + 1000, i as u8);
        f
    };
    let secs = frames_burst_secs(&mut c, frame, 40, 2);
    assert_paced("relay udp", 40 * 1002, 20.0 * 1024.0, secs);
}
