//! GOST's plain HTTP tunnel (`pht`, `phts`) through the real binary:
//! relay, socks5 and http over each, gost client to gost server, with
//! and without asking `/authorize` first (GOST's clients before x
//! v0.13.9 do); and the requests byte for byte as GOST's client sends
//! them (base64 lines pushed, pulled lines and heartbeats, an empty push
//! closing), with ended and malformed tokens, wrong methods and paths,
//! and bad base64 refused. Certificates are made at test time (`pki`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use gost_e2e::homed::{assert_a_loop_is_cut, client, logs, start, via_socks5};
use gost_e2e::pki::Pki;
use gost_e2e::tunnel::*;
use gost_e2e::*;

const BODY: &str = "hello over pht";

#[test]
fn gost_to_gost_over_pht_and_phts_for_relay_socks5_and_http() {
    let pki = Pki::generate("pht-pairs");
    let origin = http_origin("127.0.0.1:0", BODY);
    let echo = tcp_echo_server();
    for transport in ["pht", "phts"] {
        let tls = transport == "phts";
        let protos = ["relay", "socks5", "http"];
        let ports = [free_port(), free_port(), free_port()];
        let mut args = vec![];
        for (proto, port) in protos.iter().zip(ports) {
            let q = if tls { cert_query(&pki) } else { String::new() };
            args.push(format!("{proto}+{transport}://127.0.0.1:{port}?{q}"));
        }
        let args: Vec<&str> = args.iter().flat_map(|a| ["-L", a.as_str()]).collect();
        let server = start(&args, &ports);
        for (proto, port) in protos.iter().zip(ports) {
            let q = if tls { verify(&pki) } else { String::new() };
            for extra in ["", "&authorizePath=/authorize"] {
                let node = format!("{proto}+{transport}://127.0.0.1:{port}?{q}{extra}");
                let (c, p) = client(&[&node]);
                let got = via_socks5(p, origin);
                assert_eq!(
                    got,
                    (true, BODY.to_string()),
                    "{node}\n{}",
                    logs(&[&c, &server])
                );
                let mut s = socks5_connect(p, echo);
                let msg = random_bytes(300_000, 7);
                let mut w = s.try_clone().unwrap();
                let sent = msg.clone();
                let writer = std::thread::spawn(move || w.write_all(&sent).unwrap());
                let mut back = vec![0u8; msg.len()];
                s.read_exact(&mut back).unwrap();
                writer.join().unwrap();
                assert!(back == msg, "{node}: bytes differ");
            }
        }
    }
}

/// One HTTP/1.1 request on a connection of its own; the status and the
/// body read until the server closes or `until` is in it.
fn request(port: u16, head: &str, body: &[u8], until: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(u) = until {
            if text.contains(u) {
                break;
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        assert!(start.elapsed() < TIMEOUT, "no end: {text}");
    }
    let text = String::from_utf8_lossy(&got).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

fn post(port: u16, path: &str, body: &[u8]) -> (u16, String) {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    request(port, &head, body, None)
}

#[test]
fn requests_byte_for_byte_and_refusals() {
    let echo = tcp_echo_server();
    let (p, api) = (free_port(), free_port());
    let server = start(
        &[
            "-L",
            &format!("tcp+pht://127.0.0.1:{p}/{echo}?enableStats=true"),
            "-api",
            &format!("127.0.0.1:{api}"),
        ],
        &[p, api],
    );
    let token = "cn0d3k0s2f1b5v0h4o6g";
    // GOST's client: the pull first, then a push of base64("hello\n")+"\n".
    let pull = std::thread::spawn(move || {
        let head = format!(
            "GET /pull?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nUser-Agent: Go-http-client/1.1\r\n\r\n"
        );
        request(p, &head, b"", Some("aGVsbG8K\n"))
    });
    std::thread::sleep(Duration::from_millis(300));
    let (code, _) = post(p, &format!("/push?token={token}"), b"aGVsbG8K\n");
    assert_eq!(code, 200, "{}", logs(&[&server]));
    let (code, text) = pull.join().unwrap();
    assert_eq!(code, 200, "{text}");
    assert!(
        text.to_ascii_lowercase().contains("x-accel-buffering: no"),
        "{text}"
    );
    assert!(text.contains("aGVsbG8K\n"), "{text}");
    // An empty push closes the tunnel; its token is refused after.
    let (code, _) = post(p, &format!("/push?token={token}"), b"\n");
    assert_eq!(code, 200);
    let (code, _) = post(p, &format!("/push?token={token}"), b"aGk=\n");
    assert_eq!(code, 403, "an ended token must be refused");
    // Older clients ask for a token first.
    let (code, text) = request(
        p,
        &format!("GET /authorize HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nConnection: close\r\n\r\n"),
        b"",
        None,
    );
    assert_eq!(code, 200);
    let tok = text.rsplit("token=").next().unwrap().trim().to_string();
    assert_eq!(tok.len(), 20, "{text}");
    // Refusals, each counted.
    let (code, _) = post(p, "/push?token=a%20b", b"aGk=\n");
    assert_eq!(code, 403, "a malformed token");
    let (code, _) = post(p, "/push", b"aGk=\n");
    assert_eq!(code, 403, "no token");
    let (code, _) = post(p, "/pull?token=x1", b"");
    assert_eq!(code, 400, "a POST to the pull path");
    let (code, _) = post(p, "/elsewhere", b"");
    assert_eq!(code, 404);
    let (code, _) = post(p, "/push?token=x2", b"not base64!\n");
    assert_eq!(code, 400);
    let st = wait_stats(api, "service-0", &[&server], |s| n(s, "totalErrs") >= 5);
    assert!(n(&st, "totalErrs") >= 5, "{st}");
    // A push too large for the bound.
    let big = vec![b'A'; 4 * 1024 * 1024 + 8];
    let (code, _) = post(p, "/push?token=x3", &big);
    assert_eq!(code, 413);
}

/// A service that is its own pht node loops through new tunnels whose
/// requests share pooled connections: the hop count each tunnel carries
/// by its token ends it.
#[test]
fn a_loop_through_pht_ends_at_the_hop_limit() {
    assert_a_loop_is_cut(&format!("relay+pht://127.0.0.1:{}", free_port()));
}
