//! Reverse forwarding (`rtcp`, `rudp`) through the real binary: a server
//! gost with BIND enabled (socks5, relay; plain, tls, mtls), a client gost
//! whose reverse service binds a port on it, and a local echo target. The
//! wire format of GOST's multiplexed BIND is checked byte by byte on both
//! sides with a hand-made peer; bad input (a port in use, missing
//! credentials, broken frames) is refused and logged.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use gost_e2e::homed::{logs, start};
use gost_e2e::*;

/// Round trips on `n` connections to the reverse port, all open at once.
fn echo_through(port: u16, n: usize, gs: &[&Gost]) {
    let mut conns: Vec<TcpStream> = (0..n)
        .map(|_| {
            let c = TcpStream::connect(("127.0.0.1", port))
                .unwrap_or_else(|e| panic!("connect :{port}: {e}\n{}", logs(gs)));
            c.set_read_timeout(Some(TIMEOUT)).unwrap();
            c
        })
        .collect();
    for (i, c) in conns.iter_mut().enumerate() {
        let msg = random_bytes(1000 + i * 100, i as u64 + 1);
        c.write_all(&msg).unwrap();
        let mut back = vec![0u8; msg.len()];
        c.read_exact(&mut back)
            .unwrap_or_else(|e| panic!("echo on conn {i}: {e}\n{}", logs(gs)));
        assert_eq!(back, msg);
    }
}

/// Waits until the reverse port accepts and echoes a line: the client's
/// BIND took effect on the server.
fn wait_reverse_tcp(port: u16, gs: &[&Gost]) {
    let start = Instant::now();
    loop {
        if let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) {
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut b = [0u8; 5];
            if c.write_all(b"ready").is_ok() && c.read_exact(&mut b).is_ok() && &b == b"ready" {
                return;
            }
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "reverse port {port} never echoed\n{}",
            logs(gs)
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Sends datagrams to the reverse UDP port until one comes back.
fn wait_reverse_udp(port: u16, gs: &[&Gost]) -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 64];
    loop {
        let _ = s.send_to(b"ping", ("127.0.0.1", port));
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            assert_eq!(&buf[..n], b"ping");
            return s;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "reverse udp port {port} never echoed\n{}",
            logs(gs)
        );
    }
}

#[test]
fn rtcp_through_socks5_and_relay_reaches_the_local_target() {
    let echo = tcp_echo_server();
    let (s5, rl) = (free_port(), free_port());
    let server = start(
        &[
            "-L",
            &format!("socks5://127.0.0.1:{s5}?bind=true"),
            "-L",
            &format!("relay://127.0.0.1:{rl}?bind=true"),
        ],
        &[s5, rl],
    );
    for node in [
        format!("socks5://127.0.0.1:{s5}"),
        format!("relay://127.0.0.1:{rl}"),
    ] {
        let port = free_port();
        let client = start(
            &[
                "-L",
                &format!("rtcp://127.0.0.1:{port}/{echo}"),
                "-F",
                &node,
            ],
            &[],
        );
        wait_reverse_tcp(port, &[&client, &server]);
        echo_through(port, 8, &[&client, &server]);
        assert!(
            client.log().contains("bound on the chain's last node"),
            "{}",
            logs(&[&client])
        );
    }
}

#[test]
fn rtcp_over_tls_and_mtls_transports() {
    let echo = tcp_echo_server();
    let (a, b) = (free_port(), free_port());
    let server = start(
        &[
            "-L",
            &format!("socks5+tls://127.0.0.1:{a}?bind=true"),
            "-L",
            &format!("relay+mtls://127.0.0.1:{b}?bind=true"),
        ],
        &[a, b],
    );
    for node in [
        format!("socks5+tls://127.0.0.1:{a}"),
        format!("relay+mtls://127.0.0.1:{b}"),
    ] {
        let port = free_port();
        let client = start(
            &[
                "-L",
                &format!("rtcp://127.0.0.1:{port}/{echo}"),
                "-F",
                &node,
            ],
            &[],
        );
        wait_reverse_tcp(port, &[&client, &server]);
        echo_through(port, 4, &[&client, &server]);
    }
}

#[test]
fn rudp_through_relay_and_socks5_reaches_the_local_target() {
    let echo = udp_echo_server();
    let (s5, rl) = (free_port(), free_port());
    let server = start(
        &[
            "-L",
            &format!("socks5://127.0.0.1:{s5}?bind=true"),
            "-L",
            &format!("relay://127.0.0.1:{rl}?bind=true"),
        ],
        &[s5, rl],
    );
    for node in [
        format!("relay://127.0.0.1:{rl}"),
        format!("socks5://127.0.0.1:{s5}"),
    ] {
        let port = free_udp_port();
        let client = start(
            &[
                "-L",
                &format!("rudp://127.0.0.1:{port}/{echo}"),
                "-F",
                &node,
            ],
            &[],
        );
        let s = wait_reverse_udp(port, &[&client, &server]);
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        for i in 0..20u64 {
            let msg = random_bytes(100 + i as usize * 50, i + 7);
            s.send_to(&msg, ("127.0.0.1", port)).unwrap();
            let mut buf = [0u8; 4096];
            let (n, from) = s
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("datagram {i}: {e}\n{}", logs(&[&client, &server])));
            assert_eq!(&buf[..n], &msg[..]);
            assert_eq!(from.port(), port);
        }
    }
}

#[test]
fn rtcp_binds_again_after_the_server_restarts() {
    let echo = tcp_echo_server();
    let (s5, api) = (free_port(), free_port());
    let server_args = [
        "-L".to_string(),
        format!("socks5://127.0.0.1:{s5}?bind=true"),
    ];
    let server_args: Vec<&str> = server_args.iter().map(String::as_str).collect();
    let server = start(&server_args, &[s5]);
    let port = free_port();
    let client = start(
        &[
            "-L",
            &format!("rtcp://127.0.0.1:{port}/{echo}"),
            "-F",
            &format!("socks5://127.0.0.1:{s5}"),
            "-api",
            &format!("127.0.0.1:{api}"),
        ],
        &[api],
    );
    wait_reverse_tcp(port, &[&client, &server]);
    // Killed, as a crash or a dropped network would end it.
    drop(server);
    client.wait_log("binding again");
    let server = start(&server_args, &[s5]);
    wait_reverse_tcp(port, &[&client, &server]);
    echo_through(port, 3, &[&client, &server]);
    let svc = wait_service(api, "service-0", |s| s["status"]["state"] == "ready");
    let events = svc["status"]["events"].to_string();
    assert!(events.contains("binding again"), "{events}");
    assert!(events.contains("is failed"), "{events}");
}

#[test]
fn a_bind_to_a_port_in_use_or_without_credentials_is_refused_and_logged() {
    let echo = tcp_echo_server();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let (open, authed) = (free_port(), free_port());
    let server = start(
        &[
            "-L",
            &format!("relay://127.0.0.1:{open}?bind=true"),
            "-L",
            &format!("socks5://user:pass@127.0.0.1:{authed}?bind=true"),
        ],
        &[open, authed],
    );
    let busy = start(
        &[
            "-L",
            &format!("rtcp://127.0.0.1:{taken_port}/{echo}"),
            "-F",
            &format!("relay://127.0.0.1:{open}"),
        ],
        &[],
    );
    busy.wait_log("accept failed");
    server.wait_log("relay: BIND on 127.0.0.1");
    assert!(
        busy.log().contains("service unavailable"),
        "{}",
        logs(&[&busy])
    );
    // The server still serves other binds.
    let port = free_port();
    let fine = start(
        &[
            "-L",
            &format!("rtcp://127.0.0.1:{port}/{echo}"),
            "-F",
            &format!("relay://127.0.0.1:{open}"),
        ],
        &[],
    );
    wait_reverse_tcp(port, &[&fine, &server]);

    let port = free_port();
    let anon = start(
        &[
            "-L",
            &format!("rtcp://127.0.0.1:{port}/{echo}"),
            "-F",
            &format!("socks5://127.0.0.1:{authed}"),
        ],
        &[],
    );
    anon.wait_log("accept failed");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "an unauthenticated BIND opened its port\n{}",
        logs(&[&anon, &server])
    );
    drop(anon);
    let with_auth = start(
        &[
            "-L",
            &format!("rtcp://127.0.0.1:{port}/{echo}"),
            "-F",
            &format!("socks5://user:pass@127.0.0.1:{authed}"),
        ],
        &[],
    );
    wait_reverse_tcp(port, &[&with_auth, &server]);
    drop(taken);
}

/// smux frame header: VER CMD LEN(2, LE) SID(4, LE).
fn frame(cmd: u8, sid: u32, data: &[u8]) -> Vec<u8> {
    let mut f = vec![1, cmd];
    f.extend_from_slice(&(data.len() as u16).to_le_bytes());
    f.extend_from_slice(&sid.to_le_bytes());
    f.extend_from_slice(data);
    f
}

/// Reads smux frames until one that is not a keep-alive NOP.
fn read_frame(c: &mut TcpStream) -> (u8, u32, Vec<u8>) {
    loop {
        let mut h = [0u8; 8];
        c.read_exact(&mut h).unwrap();
        assert_eq!(h[0], 1, "smux version");
        let len = u16::from_le_bytes([h[2], h[3]]) as usize;
        let sid = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let mut data = vec![0u8; len];
        c.read_exact(&mut data).unwrap();
        if h[1] != 3 {
            return (h[1], sid, data);
        }
    }
}

/// A GOST client's multiplexed BIND by hand: the request (0xF2), the
/// reply with the bound port, then for a peer the server opens stream 3
/// (SYN), sends the SOCKS5 reply naming the peer (PSH), then the peer's
/// bytes; bytes pushed back reach the peer. A broken frame afterwards
/// closes the connection and the port.
#[test]
fn the_server_speaks_gosts_multiplexed_bind_byte_for_byte() {
    let s5 = free_port();
    let server = start(
        &["-L", &format!("socks5://127.0.0.1:{s5}?bind=true")],
        &[s5],
    );
    let port = free_port();
    let mut c = TcpStream::connect(("127.0.0.1", s5)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(&[5, 1, 0]).unwrap();
    let mut sel = [0u8; 2];
    c.read_exact(&mut sel).unwrap();
    assert_eq!(sel, [5, 0]);
    let mut req = vec![5, 0xF2, 0, 1, 127, 0, 0, 1];
    req.extend_from_slice(&port.to_be_bytes());
    c.write_all(&req).unwrap();
    let mut reply = [0u8; 10];
    c.read_exact(&mut reply).unwrap();
    let mut want = vec![5, 0, 0, 1, 127, 0, 0, 1];
    want.extend_from_slice(&port.to_be_bytes());
    assert_eq!(reply.to_vec(), want);

    let mut peer = TcpStream::connect(("127.0.0.1", port)).unwrap();
    peer.set_read_timeout(Some(TIMEOUT)).unwrap();
    let peer_port = peer.local_addr().unwrap().port();
    assert_eq!(read_frame(&mut c), (0, 3, vec![]), "SYN of stream 3");
    let (cmd, sid, head) = read_frame(&mut c);
    let mut announce = vec![5, 0, 0, 1, 127, 0, 0, 1];
    announce.extend_from_slice(&peer_port.to_be_bytes());
    assert_eq!((cmd, sid, head), (2, 3, announce), "the peer's reply");
    peer.write_all(b"from the peer").unwrap();
    let (cmd, sid, data) = read_frame(&mut c);
    assert_eq!((cmd, sid, data.as_slice()), (2, 3, &b"from the peer"[..]));
    c.write_all(&frame(2, 3, b"to the peer")).unwrap();
    let mut back = [0u8; 11];
    peer.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"to the peer");

    // A frame of an unknown version breaks the session: the connection
    // and the bound port close, and the server says why once.
    c.write_all(&[9, 9, 9, 9, 9, 9, 9, 9]).unwrap();
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            start.elapsed() < TIMEOUT,
            "bound port stayed open\n{}",
            server.log()
        );
        thread::sleep(Duration::from_millis(20));
    }
    server.wait_log("mux session");
    assert_eq!(
        server.log().matches("mux session").count(),
        1,
        "{}",
        server.log()
    );
}

/// The client side against a hand-made GOST relay server: the BIND
/// request carries the network and address features GOST's connector
/// sends; the server's stream 3 announces a peer with a relay response,
/// and its bytes reach the local target and back.
#[test]
fn the_client_speaks_gosts_relay_bind_byte_for_byte() {
    let echo = tcp_echo_server();
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_port = fake.local_addr().unwrap().port();
    let client = start(
        &[
            "-L",
            &format!("rtcp://:2222/{echo}"),
            "-F",
            &format!("relay://127.0.0.1:{fake_port}"),
        ],
        &[],
    );
    let (mut c, _) = fake.accept().unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    // VER CMD(BIND) FLEN | NETWORK(tcp) | ADDR 0.0.0.0:2222
    let want = [
        1, 2, 0, 15, 4, 0, 2, 0, 0, 2, 0, 7, 1, 0, 0, 0, 0, 0x08, 0xae,
    ];
    let mut req = [0u8; 19];
    c.read_exact(&mut req).unwrap();
    assert_eq!(req, want, "{}", client.log());
    // OK with the bound address 0.0.0.0:2222.
    c.write_all(&[1, 0, 0, 10, 2, 0, 7, 1, 0, 0, 0, 0, 0x08, 0xae])
        .unwrap();
    // Stream 3: SYN, the peer's announcement, then its bytes.
    c.write_all(&frame(0, 3, &[])).unwrap();
    let peer: SocketAddr = "10.1.2.3:4567".parse().unwrap();
    let SocketAddr::V4(p4) = peer else {
        unreachable!()
    };
    let mut announce = vec![1, 0, 0, 10, 2, 0, 7, 1];
    announce.extend_from_slice(&p4.ip().octets());
    announce.extend_from_slice(&p4.port().to_be_bytes());
    c.write_all(&frame(2, 3, &announce)).unwrap();
    c.write_all(&frame(2, 3, b"hello target")).unwrap();
    let (cmd, sid, data) = read_frame(&mut c);
    assert_eq!(
        (cmd, sid, data.as_slice()),
        (2, 3, &b"hello target"[..]),
        "{}",
        client.log()
    );
}
