//! The transports through the real binary. `tls`: `+tls` listeners and
//! dialers between gost processes, `tls://` alone as the auto handler for
//! curl's HTTPS proxy, GOST's default certificate, mutual TLS, certificate
//! checks on the dialing side, bad input and bad files, and a wasm handler
//! behind a TLS listener. `ws`/`wss`: every proxy protocol both ways,
//! chains mixing transports, GOST's path option, bad requests and frames,
//! and a Python WebSocket client. Certificates are made at test time
//! (`pki`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use gost_e2e::homed::{client, logs, spawn, start, via_socks5, Proc};
use gost_e2e::pki::Pki;
use gost_e2e::*;

const BODY: &str = "hello over tls";

fn assert_fetch(what: &str, got: (bool, String), gs: &[&Gost]) {
    assert_eq!(got, (true, BODY.to_string()), "{what}\n{}", logs(gs));
}

fn assert_refused(what: &str, got: (bool, String), gs: &[&Gost]) {
    assert!(
        !got.0 && !got.1.contains(BODY),
        "{what} got through: {:?}\n{}",
        got.1,
        logs(gs)
    );
}

/// `-L` query for a listener with the test server certificate.
fn server_cert(pki: &Pki) -> String {
    format!("certFile={}&keyFile={}", pki.server, pki.server_key)
}

/// `-F` query for a dialer verifying the server against the test CA.
fn verify(pki: &Pki) -> String {
    format!("secure=true&caFile={}&serverName=localhost", pki.ca)
}

/// `openssl s_client` to 127.0.0.1:`port` with `extra`, 10 s at most:
/// whether it succeeded, and its stdout and stderr.
fn s_client(port: u16, extra: &[&str]) -> (bool, String) {
    let out = Command::new("timeout")
        .args(["10", "/usr/bin/openssl", "s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl s_client");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The base64 body of the first PEM certificate in `text`.
fn pem_body(text: &str) -> String {
    text.lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END CERTIFICATE-----"))
        .map(str::trim)
        .collect()
}

/// The certificate the TLS listener on `port` presents (base64 of its DER).
fn served_cert(port: u16, g: &Gost) -> String {
    let (ok, out) = s_client(port, &[]);
    let body = pem_body(&out);
    assert!(
        ok && !body.is_empty(),
        "no certificate from :{port}: {out}\n{}",
        g.log()
    );
    body
}

fn file_cert(path: &str) -> String {
    pem_body(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

/// Polls the API until the stats of service `name` satisfy `pred`.
fn wait_stats(
    api: u16,
    name: &str,
    gs: &[&Gost],
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let cfg = api_config(api);
        let st = cfg["services"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == name))
            .map(|s| s["status"]["stats"].clone())
            .unwrap_or_default();
        if pred(&st) {
            return st;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "stats of {name} never matched: {st}\n{}",
            logs(gs)
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn n(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

/// How many log lines of `g` name the client address `addr`.
/// How many log lines name `addr`, once at least one does: the counters
/// may be read before the log line that goes with them has arrived.
fn lines_naming(g: &Gost, addr: &str) -> usize {
    g.wait_log(addr);
    g.log().lines().filter(|l| l.contains(addr)).count()
}

#[test]
fn gost_to_gost_over_tls_for_socks5_relay_and_http() {
    let pki = Pki::generate("tls-pairs");
    let origin = http_origin("127.0.0.1:0", BODY);
    let (b1, b2, b3) = (free_port(), free_port(), free_port());
    let cert = server_cert(&pki);
    let server = start(
        &[
            "-L",
            &format!("socks5+tls://127.0.0.1:{b1}?{cert}"),
            "-L",
            &format!("relay+tls://127.0.0.1:{b2}?{cert}"),
            "-L",
            &format!("http+tls://127.0.0.1:{b3}?{cert}"),
        ],
        &[b1, b2, b3],
    );
    // All three ports speak TLS with the configured certificate.
    for p in [b1, b2, b3] {
        let (ok, out) = s_client(p, &["-CAfile", &pki.ca, "-servername", "localhost"]);
        assert!(
            ok && out.contains("Verify return code: 0 (ok)"),
            ":{p}: {out}\n{}",
            server.log()
        );
    }
    let nodes = [
        // Verified against the CA by name.
        format!("socks5+tls://127.0.0.1:{b1}?{}", verify(&pki)),
        // Not verified: `secure` is off by default.
        format!("relay+tls://127.0.0.1:{b2}"),
        // Verified; the server name defaults to the node's host, an IP SAN.
        format!("http+tls://127.0.0.1:{b3}?secure=true&caFile={}", pki.ca),
    ];
    for node in &nodes {
        let (c, port) = client(&[node]);
        assert_fetch(node, via_socks5(port, origin), &[&c, &server]);
        // Twice: nothing is left half-open by the first.
        assert_fetch(node, via_socks5(port, origin), &[&c, &server]);
    }
    // The TLS ports do not take plain clients.
    let url = format!("http://{origin}/");
    let plain_socks = curl_body(&[
        "--max-time",
        "5",
        "--socks5",
        &format!("127.0.0.1:{b1}"),
        &url,
    ]);
    assert_refused("plain socks5 to a socks5+tls port", plain_socks, &[&server]);
    let plain_http = curl_body(&[
        "--max-time",
        "5",
        "-x",
        &format!("http://127.0.0.1:{b3}"),
        &url,
    ]);
    assert_refused("plain http to an http+tls port", plain_http, &[&server]);
}

/// `-F socks5+tls -F relay` (TLS to the first hop, plain relay behind it)
/// and `-F relay -F socks5+tls` (a TLS handshake through a relay tunnel);
/// the API's connection counts show both hops were used.
#[test]
fn two_hop_chains_mixing_tls_and_plain_relay() {
    let pki = Pki::generate("tls-chain");
    let origin = http_origin("127.0.0.1:0", BODY);
    let (b, c, api) = (free_port(), free_port(), free_port());
    let server = start(
        &[
            "-L",
            &format!(
                "socks5+tls://127.0.0.1:{b}?{}&enableStats=true",
                server_cert(&pki)
            ),
            "-L",
            &format!("relay://127.0.0.1:{c}?enableStats=true"),
            "-api",
            &format!("127.0.0.1:{api}"),
        ],
        &[b, c, api],
    );
    // Both services counted the probe of wait_tcp.
    let base: Vec<u64> = ["service-0", "service-1"]
        .iter()
        .map(|svc| n(&wait_settled(api, svc)["status"]["stats"], "totalErrs"))
        .collect();
    let tls_node = format!("socks5+tls://127.0.0.1:{b}?{}", verify(&pki));
    let relay_node = format!("relay://127.0.0.1:{c}");
    let (c1, p1) = client(&[&tls_node, &relay_node]);
    assert_fetch(
        "socks5+tls then relay",
        via_socks5(p1, origin),
        &[&c1, &server],
    );
    let (c2, p2) = client(&[&relay_node, &tls_node]);
    assert_fetch(
        "relay then socks5+tls",
        via_socks5(p2, origin),
        &[&c2, &server],
    );
    // Probe + one connection per chain, on each hop.
    for (svc, errs) in ["service-0", "service-1"].iter().zip(base) {
        let st = wait_stats(api, svc, &[&server, &c1, &c2], |s| {
            n(s, "totalConns") == 3 && n(s, "currentConns") == 0
        });
        assert_eq!(n(&st, "totalErrs"), errs, "{svc}: {st}\n{}", server.log());
    }
}

/// `tls://` alone is the auto handler on a TLS listener: curl's HTTPS
/// proxy (forwarding and CONNECT) and socks5 through a gost client.
#[test]
fn tls_alone_serves_the_auto_handler() {
    let pki = Pki::generate("tls-auto");
    let origin = http_origin("127.0.0.1:0", BODY);
    let url = format!("http://{origin}/");
    let p = free_port();
    let server = start(
        &["-L", &format!("tls://127.0.0.1:{p}?{}", server_cert(&pki))],
        &[p],
    );
    let insecure = curl_body(&[
        "--proxy",
        &format!("https://127.0.0.1:{p}"),
        "--proxy-insecure",
        &url,
    ]);
    assert_fetch("HTTPS proxy, --proxy-insecure", insecure, &[&server]);
    for tunnel in [false, true] {
        let mut args = vec![];
        if tunnel {
            args.push("--proxytunnel");
        }
        let proxy = format!("https://localhost:{p}");
        args.extend(["--proxy", &proxy, "--proxy-cacert", &pki.ca, &url]);
        let got = curl_body(&args);
        assert_fetch(
            &format!("HTTPS proxy, CA, tunnel={tunnel}"),
            got,
            &[&server],
        );
    }
    let node = format!("socks5+tls://127.0.0.1:{p}?{}", verify(&pki));
    let (c, port) = client(&[&node]);
    assert_fetch(
        "socks5 over tls://",
        via_socks5(port, origin),
        &[&c, &server],
    );
    let node = format!("http+tls://127.0.0.1:{p}?{}", verify(&pki));
    let (c, port) = client(&[&node]);
    assert_fetch("http over tls://", via_socks5(port, origin), &[&c, &server]);
    // Plain socks5 is not served on the TLS port.
    let plain = curl_body(&[
        "--max-time",
        "5",
        "--socks5",
        &format!("127.0.0.1:{p}"),
        &url,
    ]);
    assert_refused("plain socks5 to tls://", plain, &[&server]);
}

/// gost with HOME and the working directory set to empty directories.
fn start_at_home(home: &TempDir, cwd: &TempDir, port: u16) -> Gost {
    let g = Gost::start_with(
        Command::new(gost_bin())
            .args(["-L", &format!("tls://127.0.0.1:{port}")])
            .env("HOME", &home.0)
            .current_dir(&cwd.0),
    );
    g.wait_tcp(port);
    g
}

/// A TLS listener without a certificate uses GOST's default one: made once
/// and saved as `$HOME/.gost/auto-ca-{cert,key}.pem`, loaded on the next
/// start.
#[test]
fn default_certificate_is_generated_saved_and_reused() {
    let origin = http_origin("127.0.0.1:0", BODY);
    let (home, cwd) = (TempDir::new("tls-home"), TempDir::new("tls-cwd"));
    let cert_file = home.path(".gost/auto-ca-cert.pem");
    let key_file = home.path(".gost/auto-ca-key.pem");
    let p = free_port();
    let g = start_at_home(&home, &cwd, p);
    let got = curl_body(&[
        "--proxy",
        &format!("https://127.0.0.1:{p}"),
        "--proxy-insecure",
        &format!("http://{origin}/"),
    ]);
    assert_fetch("default certificate", got, &[&g]);
    let served = served_cert(p, &g);
    assert_eq!(
        served,
        file_cert(&cert_file),
        "the served certificate is not the saved one\n{}",
        g.log()
    );
    let key_text = std::fs::read_to_string(&key_file)
        .unwrap_or_else(|e| panic!("{key_file}: {e}\n{}", g.log()));
    assert!(key_text.contains("PRIVATE KEY"), "{key_text}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "key file mode {mode:o}");
    drop(g);
    let saved = std::fs::read(&cert_file).unwrap();

    let p2 = free_port();
    let g2 = start_at_home(&home, &cwd, p2);
    assert_eq!(
        served_cert(p2, &g2),
        served,
        "a second start made a new certificate\n{}",
        g2.log()
    );
    assert_eq!(std::fs::read(&cert_file).unwrap(), saved, "rewritten");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key_text);
}

/// A saved default certificate that does not load (here truncated, as a
/// start racing another's write may read it) is replaced, as in GOST: a
/// new one is made, saved and served; start-up does not fail.
#[test]
fn unreadable_saved_default_certificate_is_replaced() {
    let origin = http_origin("127.0.0.1:0", BODY);
    let (home, cwd) = (TempDir::new("tls-home"), TempDir::new("tls-cwd"));
    std::fs::create_dir_all(home.0.join(".gost")).unwrap();
    let cert_file = home.write(
        ".gost/auto-ca-cert.pem",
        "-----BEGIN CERTIFICATE-----\nMIIB\n",
    );
    home.write(".gost/auto-ca-key.pem", "");
    let p = free_port();
    let g = start_at_home(&home, &cwd, p);
    let served = served_cert(p, &g);
    assert_eq!(served, file_cert(&cert_file), "not saved\n{}", g.log());
    let got = curl_body(&[
        "--proxy",
        &format!("https://127.0.0.1:{p}"),
        "--proxy-insecure",
        &format!("http://{origin}/"),
    ]);
    assert_fetch("replaced default certificate", got, &[&g]);
}

/// Processes starting at once with the same fresh HOME all come up (each
/// loads the saved default certificate or makes its own). One may read
/// the file while another writes it; whether a run hits that window is
/// chance, `unreadable_saved_default_certificate_is_replaced` is the
/// deterministic check of what must happen then.
#[test]
fn simultaneous_first_starts_share_a_home() {
    // Rounds, each with a fresh HOME: the window is short.
    for _ in 0..10 {
        let (home, cwd) = (TempDir::new("tls-home"), TempDir::new("tls-cwd"));
        let ports: Vec<u16> = (0..8).map(|_| free_port()).collect();
        let procs: Vec<Gost> = ports
            .iter()
            .map(|p| {
                Gost::start_with(
                    Command::new(gost_bin())
                        .args(["-L", &format!("tls://127.0.0.1:{p}")])
                        .env("HOME", &home.0)
                        .current_dir(&cwd.0),
                )
            })
            .collect();
        for (g, &p) in procs.iter().zip(&ports) {
            g.wait_tcp(p);
            served_cert(p, g);
        }
    }
}

/// GOST looks for the default certificate first as `cert.pem`/`key.pem`
/// in the working directory (saving nothing then), then in `$HOME/.gost`.
#[test]
fn default_certificate_comes_from_cert_pem_then_home() {
    let pki = Pki::generate("tls-default-src");
    let origin = http_origin("127.0.0.1:0", BODY);
    let url = format!("http://{origin}/");
    let (home, cwd) = (TempDir::new("tls-home"), TempDir::new("tls-cwd"));
    let ours = file_cert(&pki.server);
    std::fs::copy(&pki.server, cwd.path("cert.pem")).unwrap();
    std::fs::copy(&pki.server_key, cwd.path("key.pem")).unwrap();
    let p = free_port();
    let g = start_at_home(&home, &cwd, p);
    assert_eq!(served_cert(p, &g), ours, "cert.pem not used\n{}", g.log());
    let proxy = format!("https://localhost:{p}");
    let got = curl_body(&["--proxy", &proxy, "--proxy-cacert", &pki.ca, &url]);
    assert_fetch("cert.pem in the working directory", got, &[&g]);
    assert!(
        !home.0.join(".gost/auto-ca-cert.pem").exists(),
        "a certificate was saved although cert.pem was used\n{}",
        g.log()
    );
    drop(g);

    std::fs::remove_file(cwd.path("cert.pem")).unwrap();
    std::fs::create_dir_all(home.0.join(".gost")).unwrap();
    std::fs::copy(&pki.server, home.path(".gost/auto-ca-cert.pem")).unwrap();
    std::fs::copy(&pki.server_key, home.path(".gost/auto-ca-key.pem")).unwrap();
    let p = free_port();
    let g = start_at_home(&home, &cwd, p);
    assert_eq!(
        served_cert(p, &g),
        ours,
        "$HOME/.gost not used\n{}",
        g.log()
    );
    let proxy = format!("https://localhost:{p}");
    let got = curl_body(&["--proxy", &proxy, "--proxy-cacert", &pki.ca, &url]);
    assert_fetch("$HOME/.gost/auto-ca-cert.pem", got, &[&g]);
}

/// `caFile` on a listener requires a client certificate from that CA;
/// each refused handshake is one error of the service and one log line
/// naming the client.
#[test]
fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let pki = Pki::generate("tls-mutual");
    let origin = http_origin("127.0.0.1:0", BODY);
    let url = format!("http://{origin}/");
    let (p, api) = (free_port(), free_port());
    let server = start(
        &[
            "-L",
            &format!(
                "http+tls://127.0.0.1:{p}?{}&caFile={}&enableStats=true",
                server_cert(&pki),
                pki.ca
            ),
            "-api",
            &format!("127.0.0.1:{api}"),
        ],
        &[p, api],
    );
    let base = wait_settled(api, "service-0")["status"]["stats"].clone();
    let proxy = format!("https://127.0.0.1:{p}");
    let with_cert = |cert: Option<(&str, &str)>, local: Option<u16>| {
        let local = local.map(|l| l.to_string());
        let mut args = vec!["--proxy", &proxy, "--proxy-cacert", &pki.ca];
        if let Some((c, k)) = cert {
            args.extend(["--proxy-cert", c, "--proxy-key", k]);
        }
        if let Some(l) = &local {
            args.extend(["--local-port", l]);
        }
        args.push(&url);
        curl_body(&args)
    };
    assert_fetch(
        "curl with the client certificate",
        with_cert(Some((&pki.client, &pki.client_key)), None),
        &[&server],
    );
    let (l1, l2) = (free_port(), free_port());
    assert_refused(
        "curl without a client certificate",
        with_cert(None, Some(l1)),
        &[&server],
    );
    assert_refused(
        "curl with the other CA's client certificate",
        with_cert(Some((&pki.other_client, &pki.other_client_key)), Some(l2)),
        &[&server],
    );
    let node = format!(
        "http+tls://127.0.0.1:{p}?{}&certFile={}&keyFile={}",
        verify(&pki),
        pki.client,
        pki.client_key
    );
    let (c, port) = client(&[&node]);
    assert_fetch(
        "gost client with the client certificate",
        via_socks5(port, origin),
        &[&c, &server],
    );
    let (c2, port2) = client(&[&format!("http+tls://127.0.0.1:{p}?{}", verify(&pki))]);
    assert_refused(
        "gost client without a client certificate",
        via_socks5(port2, origin),
        &[&c2, &server],
    );
    // The three refused handshakes, and nothing else, are errors.
    let want = n(&base, "totalErrs") + 3;
    let st = wait_stats(api, "service-0", &[&server], |s| {
        n(s, "totalErrs") >= want && n(s, "currentConns") == 0
    });
    thread::sleep(Duration::from_millis(200));
    let st2 = wait_stats(api, "service-0", &[&server], |_| true);
    assert_eq!(
        (n(&st, "totalErrs"), n(&st2, "totalErrs")),
        (want, want),
        "{st2}\n{}",
        server.log()
    );
    for l in [l1, l2] {
        let addr = format!("127.0.0.1:{l}");
        assert_eq!(
            lines_naming(&server, &addr),
            1,
            "one log line for the refused client {addr}:\n{}",
            server.log()
        );
    }
}

#[test]
fn openssl_s_client_verifies_the_listener_certificate() {
    let pki = Pki::generate("tls-sclient");
    let p = free_port();
    let server = start(
        &[
            "-L",
            &format!("socks5+tls://127.0.0.1:{p}?{}", server_cert(&pki)),
        ],
        &[p],
    );
    let (ok, out) = s_client(
        p,
        &[
            "-CAfile",
            &pki.ca,
            "-servername",
            "localhost",
            "-verify_hostname",
            "localhost",
        ],
    );
    assert!(
        ok && out.contains("Verify return code: 0 (ok)"),
        "{out}\n{}",
        server.log()
    );
    assert!(out.contains("CN = localhost"), "{out}");
    // The check can fail: another CA does not vouch for it.
    let (_, out) = s_client(p, &["-CAfile", &pki.other_ca, "-servername", "localhost"]);
    assert!(
        out.contains("Verify return code: ") && !out.contains("Verify return code: 0 (ok)"),
        "{out}"
    );
}

/// Plain bytes to a TLS port: the connection is closed (with at most a
/// TLS alert), counted as one error, logged once with the client's
/// address, and the service goes on. A connection closed without a byte
/// is no error.
#[test]
fn junk_on_a_tls_port_is_closed_and_counted() {
    let pki = Pki::generate("tls-junk");
    let (p, api) = (free_port(), free_port());
    let server = start(
        &[
            "-L",
            &format!(
                "socks5+tls://127.0.0.1:{p}?{}&enableStats=true",
                server_cert(&pki)
            ),
            "-api",
            &format!("127.0.0.1:{api}"),
        ],
        &[p, api],
    );
    let base = wait_settled(api, "service-0")["status"]["stats"].clone();
    let mut c = TcpStream::connect(("127.0.0.1", p)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let me = c.local_addr().unwrap().to_string();
    c.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let started = Instant::now();
    match c.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "not closed after {:?}: {e}\n{}",
            started.elapsed(),
            server.log()
        ),
    }
    assert!(
        got.is_empty() || got[0] == 0x15,
        "expected nothing or a TLS alert, got {got:?}"
    );
    let want = n(&base, "totalErrs") + 1;
    wait_stats(api, "service-0", &[&server], |s| {
        n(s, "totalErrs") == want && n(s, "currentConns") == 0
    });
    assert_eq!(lines_naming(&server, &me), 1, "{}", server.log());
    let (ok, out) = s_client(p, &["-CAfile", &pki.ca, "-servername", "localhost"]);
    assert!(
        ok && out.contains("Verify return code: 0 (ok)"),
        "{out}\n{}",
        server.log()
    );
    // A connection closed before any byte (wait_tcp's probe, a TCP health
    // check) ends the handshake with EOF, which GOST does not count.
    assert_eq!(
        n(&base, "totalErrs"),
        0,
        "connect-and-close counted as an error: {base}\n{}",
        server.log()
    );
}

/// curl speaking TLS to plain socks5 and http ports fails, and the
/// services serve plain clients afterwards.
#[test]
fn tls_clients_on_plain_ports_fail_and_the_services_go_on() {
    let origin = http_origin("127.0.0.1:0", BODY);
    let url = format!("http://{origin}/");
    let (p5, ph) = (free_port(), free_port());
    let server = start(
        &[
            "-L",
            &format!("socks5://127.0.0.1:{p5}"),
            "-L",
            &format!("http://127.0.0.1:{ph}"),
        ],
        &[p5, ph],
    );
    let started = Instant::now();
    let got = curl_body(&[
        "--max-time",
        "5",
        "--proxy",
        &format!("https://127.0.0.1:{p5}"),
        "--proxy-insecure",
        &url,
    ]);
    assert_refused("HTTPS proxy to a socks5 port", got, &[&server]);
    // A ClientHello is no SOCKS5 greeting: closed at once.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the socks5 port held the TLS client {:?}\n{}",
        started.elapsed(),
        server.log()
    );
    let got = curl_body(&[
        "--max-time",
        "5",
        "--proxy",
        &format!("https://127.0.0.1:{ph}"),
        "--proxy-insecure",
        &url,
    ]);
    assert_refused("HTTPS proxy to an http port", got, &[&server]);
    assert_fetch("plain socks5 after", via_socks5(p5, origin), &[&server]);
    let got = curl_body(&["-x", &format!("http://127.0.0.1:{ph}"), &url]);
    assert_fetch("plain http after", got, &[&server]);
}

/// A dialer with `secure=true` refuses a certificate from another CA, for
/// another name, or expired; without `secure` (the default) it does not
/// check. The CLI form for the wrong CA, `dialer.tls` in YAML for the
/// rest.
#[test]
fn secure_dialer_refuses_wrong_ca_wrong_name_and_expired_certificates() {
    let pki = Pki::generate("tls-secure");
    let origin = http_origin("127.0.0.1:0", BODY);
    let (good, expired) = (free_port(), free_port());
    let server = start(
        &[
            "-L",
            &format!("socks5+tls://127.0.0.1:{good}?{}", server_cert(&pki)),
            "-L",
            &format!(
                "socks5+tls://127.0.0.1:{expired}?certFile={}&keyFile={}",
                pki.expired, pki.expired_key
            ),
        ],
        &[good, expired],
    );
    // Every case is tried; the mismatches are reported together.
    let mut wrong = Vec::new();
    let mut check = |what: &str, got: (bool, String), through: bool, c: &Gost| {
        if (got == (true, BODY.to_string())) != through || (!through && got.0) {
            let want = if through { "through" } else { "refused" };
            wrong.push(format!("{what}: want {want}, got {got:?}\n{}", logs(&[c])));
        }
    };
    // As GOST: a caFile pins the chain even without `secure` (which adds
    // the name check); with neither, any certificate goes.
    let other_ca = format!("caFile={}&", pki.other_ca);
    let cli = [
        (
            "-F secure=true with the other CA",
            format!("secure=true&{other_ca}"),
            false,
        ),
        ("-F with the other CA, not secure", other_ca.clone(), false),
        ("-F without a CA, not secure", String::new(), true),
    ];
    for (what, query, through) in cli {
        let (c, port) = client(&[&format!(
            "socks5+tls://127.0.0.1:{good}?{query}serverName=localhost"
        )]);
        check(what, via_socks5(port, origin), through, &c);
    }

    // (name, server port, dialer tls, expected to get through)
    let cases = [
        (
            "right-ca",
            good,
            format!(
                "{{secure: true, caFile: {}, serverName: localhost}}",
                pki.ca
            ),
            true,
        ),
        (
            "wrong-name",
            good,
            format!(
                "{{secure: true, caFile: {}, serverName: example.com}}",
                pki.ca
            ),
            false,
        ),
        (
            "expired",
            expired,
            format!(
                "{{secure: true, caFile: {}, serverName: localhost}}",
                pki.ca
            ),
            false,
        ),
        (
            "expired-pinned",
            expired,
            format!("{{caFile: {}, serverName: localhost}}", pki.ca),
            false,
        ),
        (
            "expired-unchecked",
            expired,
            "{serverName: localhost}".to_string(),
            true,
        ),
    ];
    let ports: Vec<u16> = cases.iter().map(|_| free_port()).collect();
    let mut yaml = String::from("services:\n");
    for ((name, ..), port) in cases.iter().zip(&ports) {
        yaml.push_str(&format!(
            "- name: {name}\n  addr: 127.0.0.1:{port}\n  handler: {{type: socks5, chain: {name}}}\n  listener: {{type: tcp}}\n"
        ));
    }
    yaml.push_str("chains:\n");
    for (name, server_port, tls, _) in &cases {
        yaml.push_str(&format!(
            "- name: {name}\n  hops:\n  - name: hop\n    nodes:\n    - name: node\n      addr: 127.0.0.1:{server_port}\n      connector: {{type: socks5}}\n      dialer: {{type: tls, tls: {tls}}}\n"
        ));
    }
    let dir = TempDir::new("tls-secure-yaml");
    let file = dir.write("gost.yaml", &yaml);
    let c = start(&["-C", &file], &ports);
    for ((name, _, _, through), port) in cases.iter().zip(&ports) {
        check(name, via_socks5(*port, origin), *through, &c);
    }
    assert!(
        wrong.is_empty(),
        "{}\n{}",
        wrong.join("\n"),
        logs(&[&server])
    );
}

/// Missing or mismatched certificate files stop gost at start-up with a
/// message naming the file.
#[test]
fn bad_certificate_files_stop_start_up() {
    let pki = Pki::generate("tls-badfiles");
    let missing = pki.dir.path("missing.pem");
    let cert = server_cert(&pki);
    // Each on its own port, so that one binding cannot fail another.
    let listen = |query: &str| {
        let p = free_port();
        vec![
            "-L".to_string(),
            format!("socks5+tls://127.0.0.1:{p}?{query}"),
        ]
    };
    let dial = |query: &str| {
        let p = free_port();
        vec![
            "-L".to_string(),
            format!("socks5://127.0.0.1:{p}"),
            "-F".to_string(),
            format!("socks5+tls://127.0.0.1:{p}?{query}"),
        ]
    };
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            listen(&format!("certFile={missing}&keyFile={}", pki.server_key)),
            vec![&missing],
        ),
        (
            listen(&format!("certFile={}&keyFile={missing}", pki.server)),
            vec![&missing],
        ),
        (listen(&format!("{cert}&caFile={missing}")), vec![&missing]),
        // A key that is not the certificate's: either file may be named.
        (
            listen(&format!(
                "certFile={}&keyFile={}",
                pki.server, pki.client_key
            )),
            vec![&pki.server, &pki.client_key],
        ),
        (
            dial(&format!("secure=true&caFile={missing}")),
            vec![&missing],
        ),
        (
            dial(&format!("certFile={missing}&keyFile={}", pki.client_key)),
            vec![&missing],
        ),
    ];
    // All at once (they are expected not to bind), then each one's exit.
    let mut running: Vec<(Proc, &Vec<String>, &Vec<&str>)> = cases
        .iter()
        .map(|(args, names)| {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            (spawn(&a), args, names)
        })
        .collect();
    for (g, args, names) in &mut running {
        let status = g.wait_exit();
        let log = g.log();
        assert!(!status.success(), "{args:?} started: {log}");
        assert!(
            names.iter().any(|n| log.contains(n)),
            "{args:?}: the message names none of {names:?}:\n{log}"
        );
    }
}

/// A wasm handler (the example socks5 plugin) behind a `tls` listener in
/// YAML, reached by a gost client over `socks5+tls`.
#[test]
fn wasm_handler_behind_a_tls_listener() {
    let pki = Pki::generate("tls-wasm");
    let origin = http_origin("127.0.0.1:0", BODY);
    let p = free_port();
    let dir = TempDir::new("tls-wasm");
    let file = dir.write(
        "gost.yaml",
        &format!(
            "services:
- name: wasm-tls
  addr: 127.0.0.1:{p}
  handler:
    type: wasm
    plugin: {{type: wasm, path: {}}}
  listener:
    type: tls
    tls: {{certFile: {}, keyFile: {}}}
",
            plugin_wasm("socks5"),
            pki.server,
            pki.server_key
        ),
    );
    let server = start(&["-C", &file], &[p]);
    let (c, port) = client(&[&format!("socks5+tls://127.0.0.1:{p}?{}", verify(&pki))]);
    assert_fetch(
        "wasm socks5 over tls",
        via_socks5(port, origin),
        &[&c, &server],
    );
    let plain = curl_body(&[
        "--max-time",
        "5",
        "--socks5",
        &format!("127.0.0.1:{p}"),
        &format!("http://{origin}/"),
    ]);
    assert_refused("plain socks5 to the wasm tls port", plain, &[&server]);
}

/// `ws` and `wss` both ways, for each proxy protocol: a gost client's
/// `-F connector+ws(s)://` to a gost server's `-L handler+ws(s)://`.
#[test]
fn gost_to_gost_over_ws_and_wss() {
    let pki = Pki::generate("ws-pairs");
    let origin = http_origin("127.0.0.1:0", BODY);
    for scheme in [
        "socks5+ws",
        "relay+ws",
        "http+ws",
        "socks5+wss",
        "relay+wss",
        "http+wss",
    ] {
        let p = free_port();
        let cert = if scheme.ends_with("wss") {
            format!("?{}", server_cert(&pki))
        } else {
            String::new()
        };
        let server = start(&["-L", &format!("{scheme}://127.0.0.1:{p}{cert}")], &[p]);
        let (c, port) = client(&[&format!("{scheme}://127.0.0.1:{p}")]);
        assert_fetch(scheme, via_socks5(port, origin), &[&server, &c]);
        // Bulk both ways keeps every byte.
        let payload = random_bytes(3 << 20, 7);
        let echo = tcp_echo_server();
        let mut s = socks5_connect(port, echo);
        let sent = payload.clone();
        let mut w = s.try_clone().unwrap();
        let writer = thread::spawn(move || {
            w.write_all(&sent).unwrap();
            w.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let mut back = Vec::new();
        s.read_to_end(&mut back).unwrap();
        writer.join().unwrap();
        assert!(
            back == payload,
            "{scheme}: {} of {} bytes echoed intact",
            back.len(),
            payload.len()
        );
    }
}

/// A SOCKS5 CONNECT through `port`, answered; the stream then carries the
/// target's bytes.
fn socks5_connect(port: u16, target: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    let mut m = [0u8; 2];
    s.read_exact(&mut m).unwrap();
    assert_eq!(m, [5, 0]);
    let SocketAddr::V4(v4) = target else {
        panic!("an IPv4 target")
    };
    let mut req = vec![5, 1, 0, 1];
    req.extend(v4.ip().octets());
    req.extend(v4.port().to_be_bytes());
    s.write_all(&req).unwrap();
    let mut rep = [0u8; 10];
    s.read_exact(&mut rep).unwrap();
    assert_eq!(rep[1], 0, "socks5 reply {rep:?}");
    s
}

/// Chains of mixed transports, as the issue names them: TLS then
/// WebSocket, and WebSocket over TLS then TLS inside it.
#[test]
fn chains_mixing_tls_and_websocket() {
    let pki = Pki::generate("ws-chains");
    let origin = http_origin("127.0.0.1:0", BODY);
    let (a, b) = (free_port(), free_port());
    let sa = start(
        &[
            "-L",
            &format!("socks5+tls://127.0.0.1:{a}?{}", server_cert(&pki)),
        ],
        &[a],
    );
    let sb = start(&["-L", &format!("relay+ws://127.0.0.1:{b}")], &[b]);
    let (c, port) = client(&[
        &format!("socks5+tls://127.0.0.1:{a}"),
        &format!("relay+ws://127.0.0.1:{b}"),
    ]);
    assert_fetch("tls then ws", via_socks5(port, origin), &[&sa, &sb, &c]);
    let (w, t) = (free_port(), free_port());
    let sw = start(
        &[
            "-L",
            &format!("relay+wss://127.0.0.1:{w}?{}", server_cert(&pki)),
        ],
        &[w],
    );
    let st = start(&["-L", &format!("socks5+tls://127.0.0.1:{t}")], &[t]);
    let (c, port) = client(&[
        &format!("relay+wss://127.0.0.1:{w}"),
        &format!("socks5+tls://127.0.0.1:{t}"),
    ]);
    assert_fetch("wss then tls", via_socks5(port, origin), &[&sw, &st, &c]);
}

/// GOST's `path` option on both sides; a client on another path gets
/// Go's 404, which is counted and logged, and the service goes on.
#[test]
fn ws_path_option_and_wrong_path() {
    let origin = http_origin("127.0.0.1:0", BODY);
    let (p, api) = (free_port(), free_port());
    let server = start(
        &[
            "-L",
            &format!("socks5+ws://127.0.0.1:{p}?path=/tunnel&enableStats=true"),
            "-api",
            &format!("127.0.0.1:{api}"),
        ],
        &[p, api],
    );
    let (c, good) = client(&[&format!("socks5+ws://127.0.0.1:{p}?path=/tunnel")]);
    assert_fetch("same path", via_socks5(good, origin), &[&server, &c]);
    let (wrong, port) = client(&[&format!("socks5+ws://127.0.0.1:{p}")]);
    assert_refused(
        "default path /ws",
        via_socks5(port, origin),
        &[&server, &wrong],
    );

    let base = wait_settled(api, "service-0")["status"]["stats"].clone();
    let mut raw = TcpStream::connect(("127.0.0.1", p)).unwrap();
    raw.set_read_timeout(Some(TIMEOUT)).unwrap();
    let me = raw.local_addr().unwrap().to_string();
    raw.write_all(
        b"GET /other\r\n\x1b[31m HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    )
    .unwrap();
    let mut got = Vec::new();
    let _ = raw.read_to_end(&mut got);
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.starts_with("HTTP/1.1 400") || got.starts_with("HTTP/1.1 404"),
        "{got}"
    );
    let mut raw = TcpStream::connect(("127.0.0.1", p)).unwrap();
    raw.set_read_timeout(Some(TIMEOUT)).unwrap();
    let me2 = raw.local_addr().unwrap().to_string();
    raw.write_all(
        b"GET /other HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .unwrap();
    let mut got = Vec::new();
    let _ = raw.read_to_end(&mut got);
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 404 Not Found"), "{got}");
    let want = n(&base, "totalErrs") + 2;
    wait_stats(api, "service-0", &[&server], |s| n(s, "totalErrs") == want);
    assert_eq!(lines_naming(&server, &me), 1, "{}", server.log());
    assert_eq!(lines_naming(&server, &me2), 1, "{}", server.log());
    // Client-controlled bytes never reach the log raw.
    assert!(!server.log().contains('\x1b'), "{}", server.log());
    assert_fetch(
        "after the bad requests",
        via_socks5(good, origin),
        &[&server],
    );
}

/// Malformed and oversized frames after a good upgrade close that
/// connection only.
#[test]
fn bad_frames_close_only_their_connection() {
    let origin = http_origin("127.0.0.1:0", BODY);
    let p = free_port();
    let server = start(&["-L", &format!("socks5+ws://127.0.0.1:{p}")], &[p]);
    let (c, port) = client(&[&format!("socks5+ws://127.0.0.1:{p}")]);
    let upgrade = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let frames: [&[u8]; 4] = [
        // A binary frame claiming 2^63 bytes.
        &[
            0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4,
        ],
        // Reserved opcode 3.
        &[0x83, 0x80, 1, 2, 3, 4],
        // A client frame without a mask.
        &[0x82, 0x03, 5, 1, 0],
        // RSV bits set without an extension.
        &[0xF2, 0x80, 1, 2, 3, 4],
    ];
    for f in frames {
        let mut s = TcpStream::connect(("127.0.0.1", p)).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.write_all(upgrade).unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 101");
        s.write_all(f).unwrap();
        let mut rest = Vec::new();
        let started = Instant::now();
        let r = s.read_to_end(&mut rest);
        assert!(
            r.is_ok() || started.elapsed() < TIMEOUT,
            "frame {f:?}: not closed: {r:?}\n{}",
            server.log()
        );
    }
    assert_fetch("after bad frames", via_socks5(port, origin), &[&server, &c]);
}

/// A WebSocket client that is not ours (Python's `websockets`) carries
/// SOCKS5 to a gost-rs `socks5+ws` server in binary messages.
#[test]
fn python_websockets_client_speaks_socks5_over_ws() {
    let python = python_with_websockets();
    let origin = http_origin("127.0.0.1:0", BODY);
    let p = free_port();
    let server = start(&["-L", &format!("socks5+ws://127.0.0.1:{p}")], &[p]);
    let SocketAddr::V4(o) = origin else {
        panic!("an IPv4 origin")
    };
    let script = format!(
        r#"
import asyncio, websockets
async def main():
    async with websockets.connect("ws://127.0.0.1:{p}/ws", compression=None) as ws:
        await ws.send(bytes([5, 1, 0]))
        got = b""
        while len(got) < 2:
            got += await ws.recv()
        assert got[:2] == bytes([5, 0]), got
        await ws.send(bytes([5, 1, 0, 1, {a}, {b}, {c}, {d}]) + ({port}).to_bytes(2, "big"))
        got = got[2:]
        while len(got) < 10:
            got += await ws.recv()
        assert got[1] == 0, got
        await ws.send(b"GET / HTTP/1.0\r\n\r\n")
        body = got[10:]
        try:
            while True:
                body += await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed:
            pass
        print(body.decode(errors="replace"))
asyncio.run(main())
"#,
        a = o.ip().octets()[0],
        b = o.ip().octets()[1],
        c = o.ip().octets()[2],
        d = o.ip().octets()[3],
        port = o.port()
    );
    let out = Command::new(python)
        .args(["-c", &script])
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(BODY),
        "stdout: {stdout}\nstderr: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
}
