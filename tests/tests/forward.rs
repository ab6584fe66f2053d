//! TCP and UDP port forwarding through the real binary.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::thread;
use std::time::Duration;

use gost_e2e::*;

const MIB: usize = 1024 * 1024;

fn config_tcp(port: u16, api: u16, nodes: &[String], extra: &str) -> String {
    let nodes: String = nodes
        .iter()
        .enumerate()
        .map(|(i, a)| format!("    - name: target-{i}\n      addr: {a}\n"))
        .collect();
    format!(
        "services:\n- name: fwd\n  addr: 127.0.0.1:{port}\n  handler:\n    type: tcp\n  listener:\n    type: tcp\n  metadata:\n    enableStats: true\n  forwarder:\n{extra}    nodes:\n{nodes}api:\n  addr: 127.0.0.1:{api}\n"
    )
}

#[test]
fn tcp_forward_carries_a_mebibyte_intact_with_half_close_and_exact_stats() {
    let echo = tcp_echo_server();
    let (port, api) = (free_port(), free_port());
    let dir = TempDir::new("tcpfwd");
    let cfg = dir.write("gost.yaml", &config_tcp(port, api, &[echo.to_string()], ""));
    let g = Gost::start(&["-C", &cfg]);
    g.wait_tcp(port);
    g.wait_tcp(api);
    // wait_tcp itself opened (and closed) one connection.
    let before = wait_settled(api, "fwd");
    let conns_before = before["status"]["stats"]["totalConns"].as_u64().unwrap();

    let payload = random_bytes(MIB + 123, 7);
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut writer = c.try_clone().unwrap();
    let data = payload.clone();
    let w = thread::spawn(move || {
        writer.write_all(&data).unwrap();
        // Half-close: the echo server only finishes after our EOF arrives.
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    w.join().unwrap();
    assert_eq!(back.len(), payload.len());
    assert!(back == payload, "echoed data differs");
    drop(c);

    let svc = wait_service(api, "fwd", |s| s["status"]["stats"]["currentConns"] == 0);
    let st = &svc["status"]["stats"];
    assert_eq!(
        st["totalConns"].as_u64().unwrap(),
        conns_before + 1,
        "{svc}"
    );
    assert_eq!(
        st["inputBytes"].as_u64().unwrap(),
        payload.len() as u64,
        "{svc}"
    );
    assert_eq!(
        st["outputBytes"].as_u64().unwrap(),
        payload.len() as u64,
        "{svc}"
    );
    assert_eq!(st["totalErrs"], 0, "{svc}");
}

#[test]
fn half_close_lets_the_server_answer_after_client_eof() {
    // The server reads to EOF, then replies with the byte count.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = l.local_addr().unwrap();
    thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut all = Vec::new();
        c.read_to_end(&mut all).unwrap();
        c.write_all(format!("got {}", all.len()).as_bytes())
            .unwrap();
    });
    let port = free_port();
    let g = Gost::start(&["-L", &format!("tcp://127.0.0.1:{port}/{server}")]);
    g.wait_log("listening");
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(&[1u8; 5000]).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    c.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "got 5000");
}

#[test]
fn udp_forward_carries_a_mebibyte_intact_and_counts_it() {
    let echo = udp_echo_server();
    let (port, api) = (free_udp_port(), free_port());
    let g = Gost::start(&[
        "-L",
        &format!("udp://127.0.0.1:{port}/{echo}?keepalive=true&ttl=10s&enableStats=true"),
        "-api",
        &format!("127.0.0.1:{api}"),
    ]);
    g.wait_tcp(api);
    wait_service(api, "service-0", |s| s["status"]["state"] == "ready");

    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let payload = random_bytes(MIB, 11);
    let mut back = Vec::with_capacity(MIB);
    let mut buf = [0u8; 2048];
    // Stop-and-wait keeps loopback from dropping datagrams under load, so
    // the comparison checks the proxy, not the kernel's queue sizes.
    for chunk in payload.chunks(1024) {
        c.send(chunk).unwrap();
        let n = c.recv(&mut buf).expect("datagram echoed");
        back.extend_from_slice(&buf[..n]);
    }
    assert!(back == payload, "echoed datagrams differ");

    let svc = wait_service(api, "service-0", |s| {
        s["status"]["stats"]["outputBytes"] == MIB as u64
    });
    let st = &svc["status"]["stats"];
    assert_eq!(st["inputBytes"], MIB as u64, "{svc}");
    assert_eq!(
        st["totalConns"], 1,
        "one client address is one session: {svc}"
    );
}

#[test]
fn udp_session_without_keepalive_ends_after_first_reply() {
    let echo = udp_echo_server();
    let (port, api) = (free_udp_port(), free_port());
    let g = Gost::start(&[
        "-L",
        &format!("udp://127.0.0.1:{port}/{echo}?enableStats=true"),
        "-api",
        &format!("127.0.0.1:{api}"),
    ]);
    g.wait_tcp(api);
    wait_service(api, "service-0", |s| s["status"]["state"] == "ready");
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 64];
    for i in 0..3u8 {
        c.send(&[i; 10]).unwrap();
        let n = c.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[i; 10]);
        // Each exchange is its own session once the previous one answered.
        wait_service(api, "service-0", |s| {
            s["status"]["stats"]["currentConns"] == 0
        });
    }
    let svc = wait_service(api, "service-0", |s| {
        s["status"]["stats"]["totalConns"] == 3
    });
    assert_eq!(svc["status"]["stats"]["outputBytes"], 30);
}

fn read_greeting(port: u16) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut s = String::new();
    let _ = c.read_to_string(&mut s);
    s
}

#[test]
fn failover_skips_a_dead_node_without_failing_the_client() {
    let dead = format!("127.0.0.1:{}", free_port());
    let alive = tcp_greeter("alive");
    let (port, api) = (free_port(), free_port());
    let dir = TempDir::new("failover");
    let extra = "    selector:\n      strategy: fifo\n      maxFails: 1\n      failTimeout: 30s\n";
    let cfg = dir.write(
        "gost.yaml",
        &config_tcp(port, api, &[dead, alive.to_string()], extra),
    );
    let g = Gost::start(&["-C", &cfg]);
    g.wait_tcp(api);
    for _ in 0..5 {
        assert_eq!(read_greeting(port), "alive");
    }
    // Only the first connection met the dead node; it is skipped afterwards.
    // The log is read by a thread: wait for the line before counting.
    g.wait_log("dial failed");
    let fails = g.log().matches("dial failed").count();
    assert_eq!(fails, 1, "log:\n{}", g.log());
    let svc = wait_service(api, "fwd", |s| s["status"]["stats"]["currentConns"] == 0);
    assert_eq!(svc["status"]["stats"]["totalErrs"], 0, "{svc}");
}

#[test]
fn round_robin_alternates_and_hash_sticks_to_one_node() {
    let a = tcp_greeter("A");
    let b = tcp_greeter("B");
    let port = free_port();
    let g = Gost::start(&["-L", &format!("tcp://127.0.0.1:{port}/{a},{b}")]);
    g.wait_log("listening");
    let got: Vec<String> = (0..4).map(|_| read_greeting(port)).collect();
    assert_eq!(got, ["A", "B", "A", "B"]);

    let port2 = free_port();
    let g2 = Gost::start(&[
        "-L",
        &format!("tcp://127.0.0.1:{port2}/{a},{b}?strategy=hash"),
    ]);
    g2.wait_log("listening");
    let first = read_greeting(port2);
    for _ in 0..5 {
        assert_eq!(read_greeting(port2), first);
    }
}

#[test]
fn unreachable_target_closes_the_client_and_counts_an_error() {
    let dead = format!("127.0.0.1:{}", free_port());
    let (port, api) = (free_port(), free_port());
    let g = Gost::start(&[
        "-L",
        &format!("tcp://127.0.0.1:{port}/{dead}?enableStats=true"),
        "-api",
        &format!("127.0.0.1:{api}"),
    ]);
    g.wait_tcp(api);
    wait_service(api, "service-0", |s| s["status"]["state"] == "ready");
    for _ in 0..2 {
        assert_eq!(read_greeting(port), "", "client is closed without data");
    }
    let svc = wait_service(api, "service-0", |s| s["status"]["stats"]["totalErrs"] == 2);
    assert_eq!(svc["status"]["state"], "ready");
    assert!(
        g.log().contains("connection refused") || g.log().contains("Connection refused"),
        "{}",
        g.log()
    );
}

#[test]
fn forwarder_can_name_a_top_level_hop() {
    let a = tcp_greeter("from-hop");
    let port = free_port();
    let dir = TempDir::new("hopref");
    let cfg = dir.write(
        "gost.yaml",
        &format!(
            "services:\n- name: s\n  addr: 127.0.0.1:{port}\n  handler: {{type: tcp}}\n  listener: {{type: tcp}}\n  forwarder: {{hop: targets}}\nhops:\n- name: targets\n  selector: {{strategy: fifo}}\n  nodes:\n  - name: n0\n    addr: \"{a}\"\n"
        ),
    );
    let g = Gost::start(&["-C", &cfg]);
    g.wait_log("listening");
    assert_eq!(read_greeting(port), "from-hop");
}

#[test]
fn ignore_chain_keeps_a_service_off_the_cli_chain() {
    let a = tcp_greeter("direct");
    let port = free_port();
    // The chain's node does not exist: the service must not use it.
    let g = Gost::start(&[
        "-L",
        &format!("tcp://127.0.0.1:{port}/{a}?ignoreChain=true"),
        "-F",
        &format!("socks5://127.0.0.1:{}", free_port()),
    ]);
    g.wait_log("listening");
    assert_eq!(read_greeting(port), "direct");
}

/// Pinned to one CPU (as the benchmarks run it), gost uses a
/// current-thread runtime; everything must work the same there.
#[test]
fn a_process_pinned_to_one_cpu_forwards_tcp_and_udp() {
    if !std::path::Path::new("/usr/bin/taskset").exists() {
        eprintln!("taskset (util-linux) missing; skipped");
        return;
    }
    let (echo, uecho) = (tcp_echo_server(), udp_echo_server());
    let (port, uport) = (free_port(), free_udp_port());
    let g = Gost::start_with(std::process::Command::new("/usr/bin/taskset").args([
        "-c",
        "0",
        gost_bin().to_str().unwrap(),
        "-L",
        &format!("tcp://127.0.0.1:{port}/{echo}"),
        "-L",
        &format!("udp://127.0.0.1:{uport}/{uecho}"),
    ]));
    g.wait_tcp(port);
    for _ in 0..3 {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        let data = random_bytes(200_000, 9);
        let mut w = c.try_clone().unwrap();
        let d = data.clone();
        let t = thread::spawn(move || {
            w.write_all(&d).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        t.join().unwrap();
        assert!(back == data);
    }
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    u.send_to(b"ping", ("127.0.0.1", uport)).unwrap();
    let mut b = [0u8; 16];
    let (n, _) = u.recv_from(&mut b).unwrap();
    assert_eq!(&b[..n], b"ping");
}

/// Two services forwarding to each other: one client connection would
/// open connections without end. The hop limit ends the loop, the client
/// is closed, and gost keeps serving.
#[test]
fn an_indirect_forwarding_loop_ends_at_the_hop_limit() {
    let dir = TempDir::new("fwdloop");
    let log = dir.path("gost.log");
    let (a, b) = (free_port(), free_port());
    let svc = |name: &str, port: u16, to: u16| {
        format!("- name: {name}\n  addr: 127.0.0.1:{port}\n  handler: {{type: tcp}}\n  listener: {{type: tcp}}\n  forwarder: {{nodes: [{{name: n, addr: \"127.0.0.1:{to}\"}}]}}\n")
    };
    let file = dir.write(
        "gost.yaml",
        &format!(
            "log: {{level: warn, output: {log}}}\nservices:\n{}{}",
            svc("a", a, b),
            svc("b", b, a)
        ),
    );
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(a);
    g.wait_tcp(b);
    let mut c = TcpStream::connect(("127.0.0.1", a)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let _ = c.write_all(b"ping");
    let mut buf = [0u8; 64];
    let closed = matches!(c.read(&mut buf), Ok(0)) || matches!(c.read(&mut buf), Ok(0));
    assert!(closed, "the looping connection was closed");
    // Still serving: a new connection is accepted (and cut the same way).
    let _again = TcpStream::connect(("127.0.0.1", b)).unwrap();
    drop(g);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("loop:"), "{text}");
}
