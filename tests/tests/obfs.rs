//! GOST's obfuscation transports (`ohttp`, `otls`) through the real
//! binary: gost client to gost server for socks5, relay and http, bulk
//! data across many records, the bytes GOST's client writes answered as
//! GOST's server answers them, and preambles that are not one.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use gost_e2e::homed::{client, logs, start, via_socks5};
use gost_e2e::*;

const BODY: &str = "hello over obfs";

fn n(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

fn wait_errs(api: u16, want: u64, g: &Gost) {
    let start = Instant::now();
    loop {
        let st = &wait_settled(api, "service-0")["status"]["stats"];
        if n(st, "totalErrs") == want {
            return;
        }
        assert!(start.elapsed() < TIMEOUT, "totalErrs {st}\n{}", g.log());
        thread::sleep(Duration::from_millis(50));
    }
}

fn socks5_connect_request(target: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(t) = target else {
        panic!("IPv4 target expected")
    };
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&t.ip().octets());
    req.extend_from_slice(&t.port().to_be_bytes());
    req
}

#[test]
fn gost_to_gost_over_ohttp_and_otls() {
    let origin = http_origin("127.0.0.1:0", BODY);
    for transport in ["ohttp", "otls"] {
        let protos = ["socks5", "relay", "http"];
        let ports = [free_port(), free_port(), free_port()];
        let args: Vec<String> = protos
            .iter()
            .zip(ports)
            .map(|(p, port)| format!("{p}+{transport}://127.0.0.1:{port}"))
            .collect();
        let args: Vec<&str> = args.iter().flat_map(|a| ["-L", a.as_str()]).collect();
        let server = start(&args, &ports);
        for (proto, port) in protos.iter().zip(ports) {
            let node = format!("{proto}+{transport}://127.0.0.1:{port}?host=www.example.com");
            let (c, p) = client(&[&node]);
            let got = via_socks5(p, origin);
            assert_eq!(
                got,
                (true, BODY.to_string()),
                "{node}\n{}",
                logs(&[&c, &server])
            );
        }
    }
}

/// A megabyte each way through an echo server: many records, and the
/// `ohttps` dialer name (GOST's plain ohttp dialer).
#[test]
fn bulk_through_otls_and_ohttps() {
    let echo = tcp_echo_server();
    for (listen, dial) in [("otls", "otls"), ("ohttp", "ohttps")] {
        let b = free_port();
        let server = start(&["-L", &format!("relay+{listen}://127.0.0.1:{b}")], &[b]);
        let (c, p) = client(&[&format!("relay+{dial}://127.0.0.1:{b}")]);
        let mut s = TcpStream::connect(("127.0.0.1", p)).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.write_all(&[5, 1, 0]).unwrap();
        let mut r = [0u8; 2];
        s.read_exact(&mut r).unwrap();
        s.write_all(&socks5_connect_request(echo)).unwrap();
        let mut r = [0u8; 10];
        s.read_exact(&mut r).unwrap();
        assert_eq!(r[1], 0, "{}", logs(&[&c, &server]));
        let msg = random_bytes(1_000_000, 7);
        let w = s.try_clone().unwrap();
        let m2 = msg.clone();
        let writer = thread::spawn(move || {
            let mut w = w;
            w.write_all(&m2).unwrap();
        });
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).unwrap();
        writer.join().unwrap();
        assert!(back == msg, "{listen}/{dial}: echo differs");
    }
}

/// GOST's client request, byte for byte as Go's `Request.Write` makes
/// it, with data after the head: the answer is GOST's `101`, then the
/// SOCKS5 reply.
#[test]
fn ohttp_listener_answers_gost_bytes() {
    let b = free_port();
    let server = start(&["-L", &format!("socks5+ohttp://127.0.0.1:{b}")], &[b]);
    let mut c = TcpStream::connect(("127.0.0.1", b)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: Go-http-client/1.1\r\n\
Connection: Upgrade\r\nSec-Websocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nUpgrade: websocket\r\n\r\n"
        .to_vec();
    req.extend_from_slice(&[5, 1, 0]);
    c.write_all(&req).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(&[5, 0]) {
        let k = c.read(&mut buf).unwrap();
        assert!(
            k > 0,
            "closed: {}\n{}",
            String::from_utf8_lossy(&got),
            server.log()
        );
        got.extend_from_slice(&buf[..k]);
    }
    let text = String::from_utf8_lossy(&got);
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines[0], "HTTP/1.1 101 Switching Protocols", "{text}");
    assert_eq!(lines[1], "Content-Length: 0", "{text}");
    assert_eq!(lines[2], "Connection: Upgrade", "{text}");
    assert!(
        lines[3].starts_with("Date: ") && lines[3].ends_with(" UTC"),
        "{text}"
    );
    assert_eq!(
        lines[4], "Sec-Websocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        "{text}"
    );
    assert_eq!(lines[5], "Upgrade: websocket", "{text}");
    assert_eq!(lines[6], "", "{text}");
    assert!(got.ends_with(b"\r\n\r\n\x05\x00"), "{text}");
}

/// GOST's client hello as tls-dissector encodes it (payload: a SOCKS5
/// greeting): the answer is GOST's ServerHello (91 bytes), its
/// ChangeCipherSpec, then the SOCKS5 reply in a handshake record.
#[test]
fn otls_listener_answers_gost_bytes() {
    let b = free_port();
    let server = start(&["-L", &format!("socks5+otls://127.0.0.1:{b}")], &[b]);
    let mut c = TcpStream::connect(("127.0.0.1", b)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    // version 0303, random, 32-byte session id, 2 suites, 1 compression
    // method, extensions: session ticket [5 1 0], server name "h".
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x11; 32]);
    body.push(32);
    body.extend_from_slice(&[0x22; 32]);
    body.extend_from_slice(&[0, 4, 0xc0, 0x2c, 0xcc, 0xa8, 1, 0]);
    let exts = [
        &[0x00, 0x23, 0, 3, 5, 1, 0][..],
        &[0, 0, 0, 6, 0, 4, 0, 0, 1, b'h'][..],
    ]
    .concat();
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut hs = vec![1, 0];
    hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    c.write_all(&rec).unwrap();
    let mut got = vec![0u8; 5 + 91 + 6 + 7];
    c.read_exact(&mut got)
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert_eq!(&got[..11], [0x16, 3, 1, 0, 91, 2, 0, 0, 87, 3, 3]);
    // The session id is the client's.
    assert_eq!(got[43], 32);
    assert_eq!(&got[44..76], [0x22; 32]);
    assert_eq!(&got[76..79], [0xcc, 0xa8, 0]);
    assert_eq!(&got[96..102], [0x14, 3, 3, 0, 1, 1]);
    assert_eq!(&got[102..], [0x16, 3, 3, 0, 2, 5, 0]);
    // The next data goes in an application-data record.
    let echo = tcp_echo_server();
    let req = socks5_connect_request(echo);
    let mut r = vec![0x17, 3, 3, 0, req.len() as u8];
    r.extend_from_slice(&req);
    c.write_all(&r).unwrap();
    let mut reply = [0u8; 15];
    c.read_exact(&mut reply).unwrap();
    assert_eq!(&reply[..5], [0x17, 3, 3, 0, 10]);
    assert_eq!(reply[6], 0);
}

/// Preambles that are not one: answered `400` (ohttp) or closed, each
/// counted and logged once with the client's address, while
/// gost clients keep working.
#[test]
fn bad_preambles_are_closed_counted_and_logged_once() {
    let origin = http_origin("127.0.0.1:0", BODY);
    for transport in ["ohttp", "otls"] {
        let (b, api) = (free_port(), free_port());
        let server = start(
            &[
                "-L",
                &format!("socks5+{transport}://127.0.0.1:{b}?enableStats=true"),
                "-api",
                &format!("127.0.0.1:{api}"),
            ],
            &[b, api],
        );
        let (c, p) = client(&[&format!("socks5+{transport}://127.0.0.1:{b}")]);
        assert_eq!(
            via_socks5(p, origin),
            (true, BODY.to_string()),
            "{}",
            logs(&[&c, &server])
        );
        let garbage: [&[u8]; 2] = [
            b"POST /x HTTP/1.1\r\nHost: a\r\n\r\n",
            b"\x17\x03\x03\x00\x05hello",
        ];
        for (i, g) in garbage.iter().enumerate() {
            let mut s = TcpStream::connect(("127.0.0.1", b)).unwrap();
            let addr = s.local_addr().unwrap().to_string();
            s.set_read_timeout(Some(TIMEOUT)).unwrap();
            s.write_all(g).unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            if transport == "ohttp" && i == 0 {
                assert!(
                    rest.starts_with(b"HTTP/1.1 400 Bad Request\r\n"),
                    "{}",
                    String::from_utf8_lossy(&rest)
                );
            } else {
                assert!(rest.is_empty(), "{transport}: answer {rest:?}");
            }
            wait_errs(api, i as u64 + 1, &server);
            server.wait_log(&addr);
            let naming = server.log().lines().filter(|l| l.contains(&addr)).count();
            assert_eq!(naming, 1, "{}", server.log());
        }
        // A client that closes at once is no error.
        drop(TcpStream::connect(("127.0.0.1", b)).unwrap());
        assert_eq!(
            via_socks5(p, origin),
            (true, BODY.to_string()),
            "{}",
            logs(&[&c, &server])
        );
        wait_errs(api, 2, &server);
    }
}
