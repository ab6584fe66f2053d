//! The `grpc` transport through the real binary: socks5, relay and http
//! over it, with TLS and plain (`grpcInsecure`), a custom `path`, chains
//! mixing it with `tls` and `ws`, each call counted as a connection; a
//! third-party gRPC client (Python grpcio, its code generated from GOST's
//! proto by grpcio-tools, both from PyPI into `.tools/grpc-py` on first
//! use) carrying SOCKS5 through our listener; and bad input: a message
//! over the size limit, an unknown method, garbage instead of HTTP/2, a
//! client that never reads.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Once;
use std::thread;
use std::time::{Duration, Instant};

use gost_e2e::homed::{client, logs, start, via_socks5};
use gost_e2e::pki::Pki;
use gost_e2e::tunnel::*;
use gost_e2e::*;

const BODY: &str = "hello over grpc";

fn assert_fetch(what: &str, got: (bool, String), gs: &[&Gost]) {
    assert_eq!(got, (true, BODY.to_string()), "{what}\n{}", logs(gs));
}

/// socks5, relay and http over grpc, with TLS and without, gost client
/// to gost server; a second connection rides the same HTTP/2 connection.
#[test]
fn gost_to_gost_socks5_relay_http_with_tls_and_insecure() {
    let pki = Pki::generate("grpc-pairs");
    let origin = http_origin("127.0.0.1:0", BODY);
    for tls in [true, false] {
        let protos = ["socks5", "relay", "http"];
        let ports = [free_port(), free_port(), free_port()];
        let server_q = if tls {
            cert_query(&pki)
        } else {
            "grpcInsecure=true".to_string()
        };
        let client_q = if tls {
            verify(&pki)
        } else {
            "grpcInsecure=true".to_string()
        };
        let mut args = vec![];
        for (proto, port) in protos.iter().zip(ports) {
            args.push(format!("{proto}+grpc://127.0.0.1:{port}?{server_q}"));
        }
        let args: Vec<&str> = args.iter().flat_map(|a| ["-L", a.as_str()]).collect();
        let server = start(&args, &ports);
        for (proto, port) in protos.iter().zip(ports) {
            let node = format!("{proto}+grpc://127.0.0.1:{port}?{client_q}");
            let (c, p) = client(&[&node]);
            assert_fetch(&node, via_socks5(p, origin), &[&c, &server]);
            assert_fetch(&node, via_socks5(p, origin), &[&c, &server]);
            assert_eq!(established_on(port), 1, "{node}\n{}", logs(&[&c, &server]));
        }
    }
}

/// A TLS client to a plain listener and the other way round fail; a
/// client naming another path than the server's is refused by it.
#[test]
fn custom_path_and_mismatches() {
    let origin = http_origin("127.0.0.1:0", BODY);
    let (b, api) = (free_port(), free_port());
    let server = start(
        &[
            "-L",
            &format!(
                "socks5+grpc://127.0.0.1:{b}?grpcInsecure=true&path=/my.Svc/a/b&enableStats=true"
            ),
            "-api",
            &format!("127.0.0.1:{api}"),
        ],
        &[b, api],
    );
    let (c, p) = client(&[&format!(
        "socks5+grpc://127.0.0.1:{b}?grpcInsecure=true&path=/my.Svc/a/b"
    )]);
    assert_fetch("custom path", via_socks5(p, origin), &[&c, &server]);
    let errs = n(
        &wait_settled(api, "service-0")["status"]["stats"],
        "totalErrs",
    );

    let (c2, p2) = client(&[&format!("socks5+grpc://127.0.0.1:{b}?grpcInsecure=true")]);
    assert!(!via_socks5(p2, origin).0, "{}", logs(&[&c2, &server]));
    wait_stats(api, "service-0", &[&c2, &server], |s| {
        n(s, "totalErrs") == errs + 1
    });
    server.wait_log("call to /GostTunel/Tunnel");
    assert!(
        c2.log().contains("status 12"),
        "the client was not told UNIMPLEMENTED\n{}",
        c2.log()
    );
    // A TLS client to the plain listener.
    let (c3, p3) = client(&[&format!("socks5+grpc://127.0.0.1:{b}?path=/my.Svc/a/b")]);
    assert!(!via_socks5(p3, origin).0, "{}", logs(&[&c3, &server]));
    // The first client is unaffected.
    assert_fetch("custom path again", via_socks5(p, origin), &[&c, &server]);
}

/// Many connections through one client are calls on one HTTP/2
/// connection, and the server counts each of them.
#[test]
fn many_calls_share_one_connection_and_are_counted_each() {
    let pki = Pki::generate("grpc-many");
    let echo = tcp_echo_server();
    let (b, api) = (free_port(), free_port());
    let server = start(
        &[
            "-L",
            &format!(
                "socks5+grpc://127.0.0.1:{b}?{}&enableStats=true",
                cert_query(&pki)
            ),
            "-api",
            &format!("127.0.0.1:{api}"),
        ],
        &[b, api],
    );
    let (c, p) = client(&[&format!("socks5+grpc://127.0.0.1:{b}?{}", verify(&pki))]);
    const CONNS: usize = 30;
    let mut open: Vec<TcpStream> = (0..CONNS).map(|_| socks5_connect(p, echo)).collect();
    assert_eq!(established_on(b), 1, "{}", logs(&[&c, &server]));
    let st = wait_stats(api, "service-0", &[&c, &server], |s| {
        n(s, "currentConns") == CONNS as u64
    });
    assert_eq!(n(&st, "totalErrs"), 0, "{st}");
    let workers: Vec<_> = open
        .drain(..)
        .enumerate()
        .map(|(i, mut s)| {
            thread::spawn(move || {
                let msg = random_bytes(300_000, i as u64);
                let w = s.try_clone().unwrap();
                let writer = thread::spawn(move || {
                    let mut w = w;
                    w.write_all(&msg).unwrap();
                    msg
                });
                let mut back = vec![0u8; 300_000];
                s.read_exact(&mut back).unwrap();
                assert_eq!(back, writer.join().unwrap());
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

/// grpc after tls and before ws in a chain, from YAML with GOST's
/// dialer and listener keys (keep-alive on both sides).
#[test]
fn chains_mixing_grpc_with_tls_and_ws_from_yaml() {
    let pki = Pki::generate("grpc-chain");
    let origin = http_origin("127.0.0.1:0", BODY);
    let (a, b, w, p) = (free_port(), free_port(), free_port(), free_port());
    let dir = TempDir::new("grpc-chain");
    let server_cfg = format!(
        r#"services:
- name: t
  addr: 127.0.0.1:{a}
  handler: {{type: relay}}
  listener:
    type: tls
    tls: {{certFile: {cert}, keyFile: {key}}}
- name: g
  addr: 127.0.0.1:{b}
  handler: {{type: relay}}
  listener:
    type: grpc
    tls: {{certFile: {cert}, keyFile: {key}}}
    metadata: {{grpc.path: /t.T/x, keepalive: true, keepalive.time: 1s, keepalive.timeout: 5s}}
- name: w
  addr: 127.0.0.1:{w}
  handler: {{type: socks5}}
  listener: {{type: ws}}
"#,
        cert = pki.server,
        key = pki.server_key
    );
    let server = start(&["-C", &dir.write("server.yaml", &server_cfg)], &[a, b, w]);
    let client_cfg = format!(
        r#"services:
- name: c
  addr: 127.0.0.1:{p}
  handler: {{type: socks5, chain: up}}
  listener: {{type: tcp}}
chains:
- name: up
  hops:
  - name: h1
    nodes:
    - name: n1
      addr: 127.0.0.1:{a}
      connector: {{type: relay}}
      dialer:
        type: tls
        tls: {{secure: true, caFile: {ca}, serverName: localhost}}
  - name: h2
    nodes:
    - name: n2
      addr: 127.0.0.1:{b}
      connector: {{type: relay}}
      dialer:
        type: grpc
        tls: {{secure: true, caFile: {ca}, serverName: localhost}}
        metadata: {{path: /t.T/x, keepalive: true, keepalive.time: 1s, keepalive.permitWithoutStream: true}}
  - name: h3
    nodes:
    - name: n3
      addr: 127.0.0.1:{w}
      connector: {{type: socks5}}
      dialer: {{type: ws}}
"#,
        ca = pki.ca
    );
    let c = start(&["-C", &dir.write("client.yaml", &client_cfg)], &[p]);
    for _ in 0..3 {
        assert_fetch("tls, grpc, ws", via_socks5(p, origin), &[&c, &server]);
    }
    // Keep-alive pings both ways for a few rounds; the connection stays.
    thread::sleep(Duration::from_millis(2500));
    assert_fetch("after pings", via_socks5(p, origin), &[&c, &server]);
}

/// Listener options GOST has and this build does not keep are refused.
#[test]
fn ping_policy_options_are_refused() {
    let b = free_port();
    let (status, _out, err) = run_gost(&[
        "-L",
        &format!(
            "socks5+grpc://127.0.0.1:{b}?grpcInsecure=true&keepalive=true&keepalive.minTime=10s"
        ),
    ]);
    assert!(!status.success());
    assert!(err.contains("keepalive.minTime is not supported"), "{err}");
}

// ---- a third-party client: Python grpcio ----

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A Python with grpcio and grpcio-tools (versions in
/// `tests/grpc/requirements.txt`) from a virtual environment in
/// `.tools/grpc-py`, made on first use, and the directory holding the
/// code grpcio-tools generated from GOST's proto.
fn python_grpc() -> (PathBuf, PathBuf) {
    static SETUP: Once = Once::new();
    let venv = root().join(".tools").join("grpc-py");
    let python = venv.join("bin").join("python");
    let gen = root().join(".tools").join("grpc-gen");
    SETUP.call_once(|| {
        let ready = Command::new(&python)
            .args(["-c", "import grpc, grpc_tools"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ready {
            let made = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .is_ok_and(|s| s.success());
            assert!(made, "python3 -m venv failed: install python3-venv");
            let installed = Command::new(venv.join("bin").join("pip"))
                .args(["install", "--quiet", "-r"])
                .arg(root().join("tests/grpc/requirements.txt"))
                .status()
                .is_ok_and(|s| s.success());
            assert!(installed, "pip could not install grpcio and grpcio-tools");
        }
        std::fs::create_dir_all(&gen).unwrap();
        let out = Command::new(&python)
            .args(["-m", "grpc_tools.protoc", "-I"])
            .arg(root().join("tests/grpc"))
            .arg(format!("--python_out={}", gen.display()))
            .arg(format!("--grpc_python_out={}", gen.display()))
            .arg(root().join("tests/grpc/gost.proto"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "protoc: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    (python, gen)
}

/// Runs the Python tunnel client; returns the line it printed.
fn py_client(addr: &str, mode: &str, extra: &[&str]) -> String {
    let (python, gen) = python_grpc();
    let out = Command::new(python)
        .arg(root().join("tests/grpc/tunnel_client.py"))
        .arg(&gen)
        .args([addr, mode])
        .args(extra)
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout).trim(),
        if out.status.success() {
            String::new()
        } else {
            format!(
                " (exit {}: {})",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        }
    )
}

/// A TCP server that writes to each client without end (until it goes).
fn flood_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { return };
            thread::spawn(move || {
                let block = vec![b'z'; 64 * 1024];
                let start = Instant::now();
                while start.elapsed() < TIMEOUT && c.write_all(&block).is_ok() {}
            });
        }
    });
    addr
}

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// grpcio's client, its stub generated from GOST's proto, carries SOCKS5
/// through our listener, plain and over TLS, on the default and a custom
/// path; each call is a connection in the stats.
#[test]
fn python_grpcio_client_tunnels_socks5() {
    let pki = Pki::generate("grpc-py");
    let echo = tcp_echo_server();
    let (plain, tls, custom, api) = (free_port(), free_port(), free_port(), free_port());
    let server = start(
        &[
            "-L",
            &format!("socks5+grpc://127.0.0.1:{plain}?grpcInsecure=true&enableStats=true"),
            "-L",
            &format!("socks5+grpc://127.0.0.1:{tls}?{}", cert_query(&pki)),
            "-L",
            &format!("socks5+grpc://127.0.0.1:{custom}?grpcInsecure=true&path=svc/x/y"),
            "-api",
            &format!("127.0.0.1:{api}"),
        ],
        &[plain, tls, custom, api],
    );
    let target = echo.to_string();
    let got = py_client(
        &format!("127.0.0.1:{plain}"),
        "echo",
        &["--target", &target, "--size", "1000000"],
    );
    assert_eq!(got, "ok 1000000 0", "{}", server.log());
    let got = py_client(
        &format!("127.0.0.1:{tls}"),
        "echo",
        &["--target", &target, "--ca", &pki.ca],
    );
    assert_eq!(got, "ok 100000 0", "{}", server.log());
    let got = py_client(
        &format!("127.0.0.1:{custom}"),
        "echo",
        &["--target", &target, "--path", "/svc/x-y"],
    );
    assert_eq!(got, "ok 100000 0", "{}", server.log());
    let st = wait_stats(api, "service-0", &[&server], |s| {
        n(s, "totalConns") == 1 && n(s, "currentConns") == 0
    });
    assert_eq!(n(&st, "totalErrs"), 0, "{st}\n{}", server.log());
}

/// Bad input on a plain listener: a message over 4 MiB ends its call
/// with RESOURCE_EXHAUSTED, an unknown method gets UNIMPLEMENTED,
/// garbage instead of HTTP/2 closes its connection, and a client that
/// never reads holds no more than the windows; each counted, logged once
/// with the client's address, and the service goes on.
#[test]
fn bad_input_from_a_grpc_client() {
    let echo = tcp_echo_server();
    let flood = flood_server();
    let (b, api) = (free_port(), free_port());
    let server = start(
        &[
            "-L",
            &format!("socks5+grpc://127.0.0.1:{b}?grpcInsecure=true&enableStats=true"),
            "-api",
            &format!("127.0.0.1:{api}"),
        ],
        &[b, api],
    );
    let addr = format!("127.0.0.1:{b}");
    let errs = |e| move |s: &serde_json::Value| n(s, "totalErrs") == e;

    let got = py_client(&addr, "oversize", &[]);
    assert!(
        got.starts_with("rpc error RESOURCE_EXHAUSTED"),
        "{got}\n{}",
        server.log()
    );
    wait_stats(api, "service-0", &[&server], errs(1));

    let got = py_client(&addr, "unknown-path", &["--path", "/Nope/Tunnel"]);
    assert!(
        got.starts_with("rpc error UNIMPLEMENTED"),
        "{got}\n{}",
        server.log()
    );
    wait_stats(api, "service-0", &[&server], errs(2));
    server.wait_log("call to /Nope/Tunnel");

    // Garbage where the HTTP/2 preface belongs.
    let mut g = TcpStream::connect(("127.0.0.1", b)).unwrap();
    let g_addr = g.local_addr().unwrap().to_string();
    g.set_read_timeout(Some(TIMEOUT)).unwrap();
    g.write_all(b"GET / HTTP/1.1\r\nHost: \x1b[31mx\r\n\r\n")
        .unwrap();
    let mut rest = Vec::new();
    let _ = g.read_to_end(&mut rest);
    wait_stats(api, "service-0", &[&server], errs(3));
    server.wait_log(&g_addr);
    let naming = server.log().lines().filter(|l| l.contains(&g_addr)).count();
    assert_eq!(naming, 1, "{}", server.log());
    assert!(!server.log().contains('\x1b'), "{}", server.log());

    // A client that never reads what its target floods: memory stays
    // bounded, and another call is served meanwhile.
    let before = rss_kib(server.pid());
    let staller = {
        let addr = addr.clone();
        let target = flood.to_string();
        thread::spawn(move || py_client(&addr, "stall", &["--target", &target]))
    };
    thread::sleep(Duration::from_millis(1000));
    let got = py_client(&addr, "echo", &["--target", &echo.to_string()]);
    assert_eq!(got, "ok 100000 0", "{}", server.log());
    let during = rss_kib(server.pid());
    assert_eq!(staller.join().unwrap(), "stalled");
    assert!(
        during < before + 32 * 1024,
        "memory grew from {before} KiB to {during} KiB for a stalled call"
    );
    // The oversize message's client, the unknown method, the garbage:
    // three errors, and nothing more after the stalled call ended.
    let st = wait_stats(api, "service-0", &[&server], |s| n(s, "currentConns") == 0);
    assert!(n(&st, "totalErrs") <= 4, "{st}\n{}", server.log());
}
