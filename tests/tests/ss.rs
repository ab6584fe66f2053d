//! Shadowsocks (`ss`, `ssu`) through the real binary: gost-rs client to
//! gost-rs server for every cipher, TCP and UDP (GOST's UDP-over-TCP over
//! a chain), GOST's multi-user 2022 configs, shadowsocks-libev's
//! `ss-tunnel`/`ss-server` both ways and shadowsocks-rust's for the 2022
//! ciphers (installed by the tests when missing; they fail when that
//! cannot be done), and what a server does with
//! probes, wrong passwords, replayed and truncated first packets.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use gost_e2e::*;

/// 16 and 32 byte keys, base64, as the 2022 ciphers take them.
const KEY16: &str = "MTIzNDU2Nzg5MDEyMzQ1Ng==";
const KEY32: &str = "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI=";
const USER16: &str = "Vbwi6yqCwvPMPR1bCi32Dg==";
const USER32: &str = "VmJ3aTZ5cUN3dlBNUFIxYkNpMzJEZ2FiY2RlZmdoaWo=";

const AEAD: [&str; 3] = ["aes-128-gcm", "aes-256-gcm", "chacha20-ietf-poly1305"];

fn ciphers() -> Vec<(&'static str, &'static str)> {
    let mut v: Vec<_> = AEAD.iter().map(|m| (*m, "s3cret-pass")).collect();
    v.push(("2022-blake3-aes-128-gcm", KEY16));
    v.push(("2022-blake3-aes-256-gcm", KEY32));
    v.push(("2022-blake3-chacha20-poly1305", KEY32));
    v
}

/// A YAML file with one service per entry.
fn services(dir: &TempDir, name: &str, body: &str) -> String {
    dir.write(name, &format!("services:\n{body}"))
}

fn ss_service(
    name: &str,
    handler: &str,
    listener: &str,
    port: u16,
    method: &str,
    pass: &str,
) -> String {
    format!(
        "- name: {name}\n  addr: 127.0.0.1:{port}\n  handler:\n    type: {handler}\n    auth:\n      username: {method}\n      password: \"{pass}\"\n  listener:\n    type: {listener}\n"
    )
}

/// A client service forwarding `port` to `target` through one ss/ssu
/// node (over a tcp dialer); `cipher` is the method and password.
fn client_service(
    name: &str,
    network: &str,
    port: u16,
    target: SocketAddr,
    connector: &str,
    node: u16,
    (method, pass): (&str, &str),
) -> String {
    format!(
        "- name: {name}\n  addr: 127.0.0.1:{port}\n  handler:\n    type: {network}\n    chain: chain-{name}\n  listener:\n    type: {network}\n  forwarder:\n    nodes:\n    - name: t\n      addr: {target}\nchains:\n- name: chain-{name}\n  hops:\n  - name: h\n    nodes:\n    - name: n\n      addr: 127.0.0.1:{node}\n      connector:\n        type: {connector}\n        auth:\n          username: {method}\n          password: \"{pass}\"\n      dialer:\n        type: tcp\n"
    )
}

/// 200 KB each way through a forwarded port, checked byte for byte. The
/// client reads the echo before it closes: shadowsocks-libev's clients
/// close the whole connection on the first half-close.
fn tcp_round_trip(port: u16) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let data = random_bytes(200_000, port as u64);
    let mut w = c.try_clone().unwrap();
    let sent = data.clone();
    let writer = thread::spawn(move || w.write_all(&sent).unwrap());
    let mut got = vec![0u8; data.len()];
    let read = c.read_exact(&mut got);
    writer.join().unwrap();
    assert!(
        read.is_ok() && got == data,
        "echo differs through port {port}: {read:?}"
    );
}

/// A datagram to a forwarded UDP port comes back echoed; sent again a
/// few times while the tunnel is being set up.
fn udp_round_trip(port: u16) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    for i in 0u32.. {
        let msg = format!("hello-gost-udp {i}");
        s.send_to(msg.as_bytes(), ("127.0.0.1", port)).unwrap();
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            assert_eq!(&buf[..n], msg.as_bytes());
            return;
        }
        assert!(start.elapsed() < TIMEOUT, "no UDP echo through port {port}");
    }
}

#[test]
fn every_cipher_gost_to_gost_tcp_and_udp_over_the_chain() {
    let echo = tcp_echo_server();
    let uecho = udp_echo_server();
    let dir = TempDir::new("ss-ciphers");
    let mut server = String::new();
    let mut client = String::new();
    let mut chains = String::new();
    let mut checks = Vec::new();
    for (i, (method, pass)) in ciphers().into_iter().enumerate() {
        let (ss, ssu) = (free_port(), free_port());
        server += &ss_service(&format!("ss{i}"), "ss", "tcp", ss, method, pass);
        server += &ss_service(&format!("ssu{i}"), "ssu", "tcp", ssu, method, pass);
        let (t, u) = (free_port(), free_udp_port());
        for (name, net, port, target, conn, node) in [
            (format!("t{i}"), "tcp", t, echo, "ss", ss),
            (format!("u{i}"), "udp", u, uecho, "ssu", ssu),
        ] {
            let text = client_service(&name, net, port, target, conn, node, (method, pass));
            let (svc, chain) = text.split_once("chains:\n").unwrap();
            client += svc;
            chains += chain;
        }
        checks.push((method, ss, t, u));
    }
    let server_file = services(&dir, "server.yaml", &server);
    let client_file = dir.write(
        "client.yaml",
        &format!("services:\n{client}chains:\n{chains}"),
    );
    let s = Gost::start(&["-C", &server_file]);
    let c = Gost::start(&["-C", &client_file]);
    for (method, ss, t, u) in checks {
        s.wait_tcp(ss);
        c.wait_tcp(t);
        tcp_round_trip(t);
        udp_round_trip(u);
        eprintln!("{method}: tcp and udp ok");
    }
    assert!(
        !s.log().contains("\"level\":\"error\""),
        "server errors:\n{}",
        s.log()
    );
}

/// GOST's TestShadowsocks2022TCPMultiPSK configs: the server's key and
/// `users`, the client's `iPSK:uPSK`; a client with the server key alone
/// or an unknown user key is not let in.
#[test]
fn multi_user_2022_keys_as_gost_configures_them() {
    let echo = tcp_echo_server();
    let dir = TempDir::new("ss-multipsk");
    for (method, key, user) in [
        ("2022-blake3-aes-128-gcm", KEY16, USER16),
        ("2022-blake3-aes-256-gcm", KEY32, USER32),
    ] {
        let port = free_port();
        let server = services(
            &dir,
            "server.yaml",
            &format!(
                "- name: ss-server\n  addr: 127.0.0.1:{port}\n  handler:\n    type: ss\n    auth:\n      username: {method}\n      password: {key}\n    metadata:\n      users:\n        test: {user}\n  listener:\n    type: tcp\n"
            ),
        );
        let s = Gost::start(&["-C", &server]);
        s.wait_tcp(port);
        let (good, bad) = (free_port(), free_port());
        let mut client = client_service(
            "good",
            "tcp",
            good,
            echo,
            "ss",
            port,
            (method, &format!("{key}:{user}")),
        );
        let bad_text = client_service(
            "bad",
            "tcp",
            bad,
            echo,
            "ss",
            port,
            (method, &format!("{key}:{key}")),
        );
        let (svc, chain) = bad_text.split_once("chains:\n").unwrap();
        let (gsvc, gchain) = client.split_once("chains:\n").unwrap();
        client = format!("services:\n{gsvc}{svc}chains:\n{gchain}{chain}");
        let c = Gost::start(&["-C", &dir.write("client.yaml", &client)]);
        c.wait_tcp(good);
        c.wait_tcp(bad);
        tcp_round_trip(good);
        let mut b = TcpStream::connect(("127.0.0.1", bad)).unwrap();
        b.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        b.write_all(b"ping").unwrap();
        let mut buf = [0u8; 16];
        assert!(
            !matches!(b.read(&mut buf), Ok(n) if n > 0),
            "{method}: an unknown user got an answer"
        );
        s.wait_log("bad first packet");
    }
}

// ---- shadowsocks-libev ----

/// A shadowsocks-libev tool; the Debian package `shadowsocks-libev` is
/// installed (as root, or through sudo) the first time one is missing.
/// Fails the test when it cannot be had.
fn libev(tool: &str) -> Command {
    let found = |tool: &str| {
        Command::new(tool)
            .arg("-h")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    static INSTALL: std::sync::Once = std::sync::Once::new();
    if !found(tool) {
        INSTALL.call_once(|| {
            let apt = "apt-get update -qq && apt-get install -y -qq shadowsocks-libev >/dev/null";
            let ok = Command::new("sh")
                .args(["-c", apt])
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                let _ = Command::new("sudo").args(["sh", "-c", apt]).status();
            }
        });
    }
    assert!(
        found(tool),
        "{tool} not found and the Debian package shadowsocks-libev could not be installed"
    );
    Command::new(tool)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command) -> Killed {
    Killed(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    )
}

fn wait_port(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < TIMEOUT, "port {port} never opened");
        thread::sleep(Duration::from_millis(20));
    }
}

/// ss-tunnel (libev's client, TCP and UDP) to a gost-rs ss + ssu server
/// on one port; gost-rs's ss connector to libev's ss-server; AEAD ciphers.
#[test]
fn shadowsocks_libev_both_ways_aead() {
    let echo = tcp_echo_server();
    let uecho = udp_echo_server();
    for method in AEAD {
        let pass = "libev-pass";
        // libev client -> gost server (tcp and udp on the same port).
        let port = free_port();
        let url = format!("{method}:{pass}@127.0.0.1:{port}");
        let s = Gost::start(&["-L", &format!("ss://{url}"), "-L", &format!("ssu://{url}")]);
        s.wait_tcp(port);
        let local = free_port();
        let _tunnel = spawn(libev("ss-tunnel").args([
            "-s",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-l",
            &local.to_string(),
            "-b",
            "127.0.0.1",
            "-m",
            method,
            "-k",
            pass,
            "-L",
            &echo.to_string(),
        ]));
        let ulocal = free_udp_port();
        let _utunnel = spawn(libev("ss-tunnel").args([
            "-s",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-l",
            &ulocal.to_string(),
            "-b",
            "127.0.0.1",
            "-m",
            method,
            "-k",
            pass,
            "-L",
            &uecho.to_string(),
            "-U",
        ]));
        wait_port(local);
        tcp_round_trip(local);
        udp_round_trip(ulocal);

        // gost client -> libev server.
        let sport = free_port();
        let _server = spawn(libev("ss-server").args([
            "-s",
            "127.0.0.1",
            "-p",
            &sport.to_string(),
            "-m",
            method,
            "-k",
            pass,
        ]));
        wait_port(sport);
        let fwd = free_port();
        let c = Gost::start(&[
            "-L",
            &format!("tcp://127.0.0.1:{fwd}/{echo}"),
            "-F",
            &format!("ss://{method}:{pass}@127.0.0.1:{sport}"),
        ]);
        c.wait_tcp(fwd);
        tcp_round_trip(fwd);
        eprintln!("{method}: libev both ways ok");
    }
}

// ---- bad input ----

/// Records what a client sends to a fake node: the first packet of a
/// gost ss connector, to be replayed and cut.
fn first_packet(method: &str, pass: &str, target: SocketAddr) -> Vec<u8> {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let node = l.local_addr().unwrap().port();
    let fwd = free_port();
    let c = Gost::start(&[
        "-L",
        &format!("tcp://127.0.0.1:{fwd}/{target}"),
        "-F",
        &format!("ss://{method}:{pass}@127.0.0.1:{node}"),
    ]);
    c.wait_tcp(fwd);
    let mut client = TcpStream::connect(("127.0.0.1", fwd)).unwrap();
    client.write_all(b"x").unwrap();
    let (mut s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    drop(client);
    got
}

/// Whether the server answered anything within `wait`, and whether it
/// closed the connection then.
fn answer(port: u16, bytes: &[u8], wait: Duration) -> (usize, bool) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(bytes).unwrap();
    c.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    let mut n = 0;
    loop {
        match c.read(&mut buf) {
            Ok(0) => return (n, true),
            Ok(k) => n += k,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return (n, false)
            }
            Err(_) => return (n, true),
        }
    }
}

/// Probes (random bytes), a wrong password, a replayed first packet and a
/// truncated one: no answer to any; the first three are held open until
/// `readTimeout` (so a prober learns nothing from when it closes), each
/// counted and logged once; a good client meanwhile is served.
#[test]
fn probes_replays_wrong_passwords_and_truncated_chunks_get_no_answer() {
    let greeter = tcp_greeter("hello from the target");
    let echo = tcp_echo_server();
    for (method, pass) in [("aes-256-gcm", "right"), ("2022-blake3-aes-128-gcm", KEY16)] {
        let port = free_port();
        let api = free_port();
        let s = Gost::start(&[
            "-L",
            &format!("ss://{method}:{pass}@127.0.0.1:{port}?readTimeout=2s&enableStats=true"),
            "-api",
            &format!("127.0.0.1:{api}"),
        ]);
        s.wait_tcp(port);
        s.wait_tcp(api);
        let held = Duration::from_millis(1200);

        // A probe: random bytes of several lengths.
        for len in [1usize, 31, 50, 200] {
            let (n, closed) = answer(port, &random_bytes(len, len as u64), held);
            assert_eq!((n, closed), (0, false), "{method}: probe of {len} bytes");
        }

        // A wrong password.
        let wrong_pass = if method.starts_with("2022") {
            KEY32.get(..24).unwrap().to_string()
        } else {
            "wrong".to_string()
        };
        let wrong = if method.starts_with("2022") {
            // A 16-byte key that is not the server's.
            "AAAAAAAAAAAAAAAAAAAAAA==".to_string()
        } else {
            wrong_pass
        };
        let bad = first_packet(method, &wrong, greeter);
        assert!(!bad.is_empty());
        assert_eq!(
            answer(port, &bad, held),
            (0, false),
            "{method}: wrong password"
        );

        // The same first packet twice: served once, then held unanswered.
        let good = first_packet(method, pass, greeter);
        let (n, _) = answer(port, &good, Duration::from_secs(3));
        assert!(n > 0, "{method}: the first use of a first packet is served");
        assert_eq!(answer(port, &good, held), (0, false), "{method}: replay");

        // Cut inside its first chunk, then the client closes: the server
        // closes too, with nothing said.
        let cut = &first_packet(method, pass, greeter)[..20];
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(cut).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(
            matches!(c.read(&mut [0u8; 64]), Ok(0)),
            "{method}: truncated chunk"
        );

        // A held connection closes at readTimeout.
        let mut h = TcpStream::connect(("127.0.0.1", port)).unwrap();
        h.write_all(&random_bytes(64, 9)).unwrap();
        h.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
        let t = Instant::now();
        assert!(matches!(h.read(&mut [0u8; 64]), Ok(0) | Err(_)));
        assert!(
            t.elapsed() >= Duration::from_millis(1500),
            "closed before readTimeout"
        );

        // Meanwhile a good client works, through another gost client.
        let fwd = free_port();
        let c = Gost::start(&[
            "-L",
            &format!("tcp://127.0.0.1:{fwd}/{echo}"),
            "-F",
            &format!("ss://{method}:{pass}@127.0.0.1:{port}"),
        ]);
        c.wait_tcp(fwd);
        tcp_round_trip(fwd);

        // Counted: 4 probes, the wrong password, the replay, the held one.
        let start = Instant::now();
        loop {
            let cfg = api_config(api);
            let errs = cfg["services"][0]["status"]["stats"]["totalErrs"]
                .as_u64()
                .unwrap_or(0);
            if errs >= 7 {
                break;
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "{method}: totalErrs {errs}; log:\n{}",
                s.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
        // Logged (the logger folds an error repeated word for word within
        // 10 s, so the count is totalErrs above, not the log's lines).
        let log = s.log();
        assert!(log.contains("bad first packet"), "{log}");
        assert!(
            !log.contains("hello from the target"),
            "client bytes in the log"
        );
    }
}

#[test]
fn bad_cipher_settings_stop_start_up_with_a_clear_message() {
    for (url, want) in [
        (
            "ss://rc4-md5:x@127.0.0.1:1",
            "cipher method \"rc4-md5\" is not supported",
        ),
        (
            "ss://2022-blake3-aes-256-gcm:notbase64@127.0.0.1:1",
            "base64 key of 32 bytes",
        ),
        (
            "ssu://none:x@127.0.0.1:1",
            "unencrypted framing is not implemented",
        ),
        ("ss://127.0.0.1:1", "auth is required"),
    ] {
        let (status, out, err) = run_gost(&["-L", url]);
        assert!(!status.success(), "{url}");
        assert!(format!("{out}{err}").contains(want), "{url}: {out}{err}");
    }
    let (status, out, err) = run_gost(&[
        "-L",
        "tcp://127.0.0.1:1/127.0.0.1:2",
        "-F",
        "ss://rc4-md5:x@127.0.0.1:3",
    ]);
    assert!(!status.success());
    assert!(
        format!("{out}{err}").contains("\"rc4-md5\" is not supported"),
        "{out}{err}"
    );
}

// ---- shadowsocks-rust ----

/// shadowsocks-rust's `sslocal`/`ssserver`: from `SS_RUST_BIN` (a
/// directory), else the workspace's `.tools/bin`, where the first test
/// that needs them builds them (no distribution packages them; about 170
/// CPU-seconds with these features). Fails the test when missing.
fn ss_rust(tool: &str) -> Command {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::var_os("SS_RUST_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join(".tools/bin"));
    static BUILD: std::sync::Once = std::sync::Once::new();
    if !dir.join(tool).exists() && std::env::var_os("SS_RUST_BIN").is_none() {
        BUILD.call_once(|| {
            let status = Command::new("cargo")
                .current_dir(&root)
                .env("CARGO_TARGET_DIR", root.join("target/shadowsocks-rust"))
                .args([
                    "install",
                    "--quiet",
                    "shadowsocks-rust",
                    "--version",
                    "1.24.0",
                    "--locked",
                    "--no-default-features",
                    "--features",
                    "local,server,local-tunnel,aead-cipher,aead-cipher-2022,multi-threaded",
                    "--root",
                    ".tools",
                ])
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "building shadowsocks-rust into .tools failed"
            );
        });
    }
    let bin = dir.join(tool);
    assert!(
        bin.exists(),
        "{tool} not found in {} (set SS_RUST_BIN to a directory holding it)",
        dir.display()
    );
    Command::new(bin)
}

/// The 2022 ciphers against a second implementation: sslocal (tunnel
/// mode, TCP and UDP) to a gost-rs ss + ssu server, and gost-rs's ss
/// connector to ssserver.
#[test]
fn shadowsocks_rust_both_ways_2022() {
    let echo = tcp_echo_server();
    let uecho = udp_echo_server();
    for (method, key) in ciphers().into_iter().filter(|(m, _)| m.starts_with("2022")) {
        let port = free_port();
        let url = format!("{method}:{key}@127.0.0.1:{port}");
        let s = Gost::start(&["-L", &format!("ss://{url}"), "-L", &format!("ssu://{url}")]);
        s.wait_tcp(port);
        let server = format!("127.0.0.1:{port}");
        let local = free_port();
        let _tunnel = spawn(ss_rust("sslocal").args([
            "--protocol",
            "tunnel",
            "-b",
            &format!("127.0.0.1:{local}"),
            "-f",
            &echo.to_string(),
            "-s",
            &server,
            "-m",
            method,
            "-k",
            key,
        ]));
        let ulocal = free_udp_port();
        let _utunnel = spawn(ss_rust("sslocal").args([
            "--protocol",
            "tunnel",
            "-b",
            &format!("127.0.0.1:{ulocal}"),
            "-f",
            &uecho.to_string(),
            "-s",
            &server,
            "-m",
            method,
            "-k",
            key,
            "-u",
        ]));
        wait_port(local);
        tcp_round_trip(local);
        udp_round_trip(ulocal);

        let sport = free_port();
        let _server = spawn(ss_rust("ssserver").args([
            "-s",
            &format!("127.0.0.1:{sport}"),
            "-m",
            method,
            "-k",
            key,
        ]));
        wait_port(sport);
        let fwd = free_port();
        let c = Gost::start(&[
            "-L",
            &format!("tcp://127.0.0.1:{fwd}/{echo}"),
            "-F",
            &format!("ss://{method}:{key}@127.0.0.1:{sport}"),
        ]);
        c.wait_tcp(fwd);
        tcp_round_trip(fwd);
        eprintln!("{method}: shadowsocks-rust both ways ok");
    }
}
