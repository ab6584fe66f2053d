//! The HTTP/2 tunnel transports (`h2`, `h2c`) through the real binary:
//! socks5, relay and http over each, with and without a `path`; many
//! connections over one HTTP/2 connection, counted each; chains mixing
//! them with tls and ws; and requests GOST's listener refuses (curl with
//! prior knowledge as the HTTP/2 client), garbage after the preface, each
//! counted and logged once. Certificates are made at test time (`pki`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use gost_e2e::homed::{client, logs, start, via_socks5};
use gost_e2e::pki::Pki;
use gost_e2e::tunnel::*;
use gost_e2e::*;

const BODY: &str = "hello over h2";

fn assert_fetch(what: &str, got: (bool, String), gs: &[&Gost]) {
    assert_eq!(got, (true, BODY.to_string()), "{what}\n{}", logs(gs));
}

/// Each of h2 and h2c carries socks5, relay and http, gost client to
/// gost server, as a CONNECT and as a GET of a `path`.
#[test]
fn gost_to_gost_over_h2_and_h2c_for_socks5_relay_and_http() {
    let pki = Pki::generate("h2-pairs");
    let origin = http_origin("127.0.0.1:0", BODY);
    let cert = cert_query(&pki);
    let check = verify(&pki);
    for transport in ["h2", "h2c"] {
        for path in ["", "path=/tunnel"] {
            let tls = transport == "h2";
            let ports = [free_port(), free_port(), free_port()];
            let protos = ["socks5", "relay", "http"];
            let mut args = vec![];
            for (proto, port) in protos.iter().zip(ports) {
                let q = if tls { cert.as_str() } else { "" };
                args.push(format!("{proto}+{transport}://127.0.0.1:{port}?{q}&{path}"));
            }
            let args: Vec<&str> = args.iter().flat_map(|a| ["-L", a.as_str()]).collect();
            let server = start(&args, &ports);
            for (proto, port) in protos.iter().zip(ports) {
                let q = if tls { check.as_str() } else { "" };
                let node = format!("{proto}+{transport}://127.0.0.1:{port}?{q}&{path}");
                let (c, p) = client(&[&node]);
                assert_fetch(&node, via_socks5(p, origin), &[&c, &server]);
                // A second connection rides the same HTTP/2 connection.
                assert_fetch(&node, via_socks5(p, origin), &[&c, &server]);
            }
        }
    }
}

/// Past the node's 250 concurrent streams the client opens a second
/// HTTP/2 connection, as GOST's Go client does, instead of holding the
/// 251st connection until another ends.
#[test]
fn past_the_stream_limit_a_second_h2_connection_is_opened() {
    let pki = Pki::generate("h2-limit");
    let echo = tcp_echo_server();
    let b = free_port();
    let server = start(
        &[
            "-L",
            &format!("socks5+h2://127.0.0.1:{b}?{}", cert_query(&pki)),
        ],
        &[b],
    );
    let node = format!("socks5+h2://127.0.0.1:{b}?{}", verify(&pki));
    let (c, p) = client(&[&node]);
    const CONNS: usize = 260;
    let open: Vec<TcpStream> = (0..CONNS).map(|_| socks5_connect(p, echo)).collect();
    assert_eq!(
        established_on(b),
        2,
        "{CONNS} connections should need two HTTP/2 connections\n{}",
        logs(&[&c, &server])
    );
    echo_concurrently(open, 1_000);
}

/// Many concurrent connections through one client ride one TCP
/// connection, and the server's stats count each of them.
#[test]
fn many_connections_share_one_h2_connection_and_are_counted_each() {
    let pki = Pki::generate("h2-many");
    let echo = tcp_echo_server();
    let (b, api) = (free_port(), free_port());
    let server = start(
        &[
            "-L",
            &format!(
                "socks5+h2://127.0.0.1:{b}?{}&enableStats=true",
                cert_query(&pki)
            ),
            "-api",
            &format!("127.0.0.1:{api}"),
        ],
        &[b, api],
    );
    let node = format!("socks5+h2://127.0.0.1:{b}?{}", verify(&pki));
    let (c, p) = client(&[&node]);
    const CONNS: usize = 30;
    let open: Vec<TcpStream> = (0..CONNS).map(|_| socks5_connect(p, echo)).collect();
    assert_eq!(
        established_on(b),
        1,
        "{CONNS} connections should share one HTTP/2 connection\n{}",
        logs(&[&c, &server])
    );
    let st = wait_stats(api, "service-0", &[&c, &server], |s| {
        n(s, "currentConns") == CONNS as u64
    });
    assert_eq!(n(&st, "totalErrs"), 0, "{st}");
    echo_concurrently(open, 300_000);
    let st = wait_stats(api, "service-0", &[&c, &server], |s| {
        n(s, "currentConns") == 0
    });
    assert_eq!(n(&st, "totalConns"), CONNS as u64, "{st}");
    assert_eq!(n(&st, "totalErrs"), 0, "{st}");
}

/// h2c after a TLS node, a WebSocket node after h2, and the same from
/// YAML with `path`, `host` and `header` on the dialer.
#[test]
fn chains_mixing_h2_with_tls_and_ws() {
    let pki = Pki::generate("h2-chain");
    let origin = http_origin("127.0.0.1:0", BODY);
    let (a, b, c, d) = (free_port(), free_port(), free_port(), free_port());
    let server = start(
        &[
            "-L",
            &format!("socks5+tls://127.0.0.1:{a}?{}", cert_query(&pki)),
            "-L",
            &format!("relay+h2c://127.0.0.1:{b}"),
            "-L",
            &format!("http+h2://127.0.0.1:{c}?{}&path=/up", cert_query(&pki)),
            "-L",
            &format!("socks5+ws://127.0.0.1:{d}"),
        ],
        &[a, b, c, d],
    );
    let tls_node = format!("socks5+tls://127.0.0.1:{a}?{}", verify(&pki));
    let h2c_node = format!("relay+h2c://127.0.0.1:{b}");
    let h2_node = format!("http+h2://127.0.0.1:{c}?{}&path=/up", verify(&pki));
    let ws_node = format!("socks5+ws://127.0.0.1:{d}");
    let (c1, p1) = client(&[&tls_node, &h2c_node]);
    for _ in 0..3 {
        assert_fetch("tls then h2c", via_socks5(p1, origin), &[&c1, &server]);
    }
    let (c2, p2) = client(&[&h2_node, &ws_node]);
    for _ in 0..3 {
        assert_fetch("h2 then ws", via_socks5(p2, origin), &[&c2, &server]);
    }

    let dir = TempDir::new("h2-yaml");
    let p3 = free_port();
    let cfg = format!(
        "services:\n- name: c\n  addr: 127.0.0.1:{p3}\n  handler: {{type: socks5, chain: up}}\n  listener: {{type: tcp}}\nchains:\n- name: up\n  hops:\n  - name: h\n    nodes:\n    - name: n\n      addr: 127.0.0.1:{c}\n      connector: {{type: http}}\n      dialer:\n        type: h2\n        tls: {{secure: true, caFile: {}, serverName: localhost}}\n        metadata: {{path: /up, host: localhost, header: {{X-Test: yes}}}}\n",
        pki.ca
    );
    let c3 = start(&["-C", &dir.write("client.yaml", &cfg)], &[p3]);
    assert_fetch("h2 from YAML", via_socks5(p3, origin), &[&c3, &server]);
}

/// curl over HTTP/2 with prior knowledge; its status and local port.
fn curl_h2c(url: &str, method: &str) -> (String, String) {
    let out = Command::new("/usr/bin/curl")
        .args(["-s", "--max-time", "10", "--http2-prior-knowledge", "-o"])
        .arg("/dev/null")
        .args(["-w", "%{http_code} %{local_port}", "-X", method, url])
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut it = text.split(' ');
    (
        it.next().unwrap_or_default().to_string(),
        it.next().unwrap_or_default().to_string(),
    )
}

/// What GOST's listener refuses, from a real HTTP/2 client: a GET where
/// only CONNECT is served (405), another path (400); and garbage after
/// the preface. Each is counted and logged once with the client's
/// address; a gost client's connection goes on working.
#[test]
fn refused_requests_and_garbage_are_counted_and_logged_once() {
    let origin = http_origin("127.0.0.1:0", BODY);
    let (b, bp, api) = (free_port(), free_port(), free_port());
    let server = start(
        &[
            "-L",
            &format!("socks5+h2c://127.0.0.1:{b}?enableStats=true"),
            "-L",
            &format!("socks5+h2c://127.0.0.1:{bp}?enableStats=true&path=/tun"),
            "-api",
            &format!("127.0.0.1:{api}"),
        ],
        &[b, bp, api],
    );
    let (c, p) = client(&[&format!("socks5+h2c://127.0.0.1:{b}")]);
    assert_fetch("before", via_socks5(p, origin), &[&c, &server]);
    let once = |needle: &str| {
        server.wait_log(needle);
        let naming = server.log().lines().filter(|l| l.contains(needle)).count();
        assert_eq!(naming, 1, "{needle}\n{}", server.log());
    };

    let (status, port) = curl_h2c(&format!("http://127.0.0.1:{b}/"), "GET");
    assert_eq!(status, "405");
    wait_stats(api, "service-0", &[&server], |s| n(s, "totalErrs") == 1);
    once(&format!("127.0.0.1:{port}"));

    let (status, port) = curl_h2c(&format!("http://127.0.0.1:{bp}/other"), "GET");
    assert_eq!(status, "400");
    wait_stats(api, "service-1", &[&server], |s| n(s, "totalErrs") == 1);
    once(&format!("127.0.0.1:{port}"));
    let (status, _) = curl_h2c(&format!("http://127.0.0.1:{bp}/tun"), "POST");
    assert_eq!(status, "200", "{}", server.log());

    let mut bad = TcpStream::connect(("127.0.0.1", b)).unwrap();
    let bad_addr = bad.local_addr().unwrap().to_string();
    bad.set_read_timeout(Some(TIMEOUT)).unwrap();
    bad.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    bad.write_all(&[0xff; 64]).unwrap();
    let mut rest = Vec::new();
    let _ = bad.read_to_end(&mut rest);
    wait_stats(api, "service-0", &[&server], |s| n(s, "totalErrs") == 2);
    once(&bad_addr);

    assert_fetch("after", via_socks5(p, origin), &[&c, &server]);
}
