//! The registry of live connections through the web API: listed with
//! their service, client, user, target, chain nodes and bytes, filtered
//! by service, closed one by one; gone once they end.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use gost_e2e::*;

fn list(api: u16, query: &str) -> Vec<Value> {
    let (code, body) = http_get(api, &format!("/connections{query}"), None);
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["data"]["count"],
        v["data"]["list"].as_array().unwrap().len()
    );
    v["data"]["list"].as_array().unwrap().clone()
}

fn wait_list(api: u16, query: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let l = list(api, query);
        if pred(&l) {
            return l;
        }
        assert!(start.elapsed() < TIMEOUT, "never matched: {l:?}");
        thread::sleep(Duration::from_millis(30));
    }
}

fn echo(c: &mut TcpStream, msg: &[u8]) {
    c.write_all(msg).unwrap();
    let mut b = vec![0; msg.len()];
    c.read_exact(&mut b).unwrap();
    assert_eq!(b, msg);
}

#[test]
fn live_connections_are_listed_filtered_and_closed() {
    let echo_addr = tcp_echo_server();
    let (api, fwd, socks) = (free_port(), free_port(), free_port());
    let mut g = Gost::start(&[
        "-L",
        &format!("tcp://127.0.0.1:{fwd}/{echo_addr}"),
        "-L",
        &format!("socks5://alice:secret@127.0.0.1:{socks}"),
        "-api",
        &format!("127.0.0.1:{api}"),
    ]);
    for p in [fwd, socks, api] {
        g.wait_tcp(p);
    }
    wait_list(api, "", |l| l.is_empty());

    let mut a = TcpStream::connect(("127.0.0.1", fwd)).unwrap();
    a.set_read_timeout(Some(TIMEOUT)).unwrap();
    echo(&mut a, b"hello");
    let l = wait_list(api, "", |l| l.len() == 1 && l[0]["inputBytes"] == 5);
    let fwd_conn = &l[0];
    assert_eq!(fwd_conn["service"], "service-0");
    assert_eq!(fwd_conn["client"], a.local_addr().unwrap().to_string());
    assert_eq!(fwd_conn["target"], echo_addr.to_string());
    assert_eq!(fwd_conn["outputBytes"], 5);
    assert!(fwd_conn["age"].as_f64().unwrap() >= 0.0);

    // A SOCKS5 client with a user name, its target an address the echo
    // server has.
    let mut b = TcpStream::connect(("127.0.0.1", socks)).unwrap();
    b.set_read_timeout(Some(TIMEOUT)).unwrap();
    b.write_all(&[5, 1, 2]).unwrap();
    let mut r = [0u8; 2];
    b.read_exact(&mut r).unwrap();
    assert_eq!(r, [5, 2]);
    let mut auth = vec![1, 5];
    auth.extend_from_slice(b"alice");
    auth.push(6);
    auth.extend_from_slice(b"secret");
    b.write_all(&auth).unwrap();
    b.read_exact(&mut r).unwrap();
    assert_eq!(r, [1, 0]);
    let std::net::SocketAddr::V4(t) = echo_addr else {
        unreachable!()
    };
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&t.ip().octets());
    req.extend_from_slice(&t.port().to_be_bytes());
    b.write_all(&req).unwrap();
    let mut reply = [0u8; 10];
    b.read_exact(&mut reply).unwrap();
    assert_eq!(reply[1], 0);
    echo(&mut b, b"ping");

    let l = wait_list(api, "?service=service-1", |l| l.len() == 1);
    assert_eq!(l[0]["user"], "alice");
    assert_eq!(l[0]["target"], echo_addr.to_string());
    assert_eq!(list(api, "?service=service-0").len(), 1);
    assert_eq!(list(api, "").len(), 2);

    // Closing one leaves the other.
    let id = l[0]["id"].as_u64().unwrap();
    let (code, body) = http_request(api, "DELETE", &format!("/connections/{id}"), None, None);
    assert_eq!(code, 200, "{body}");
    let mut buf = [0u8; 1];
    assert!(matches!(b.read(&mut buf), Ok(0) | Err(_)), "closed");
    wait_list(api, "", |l| l.len() == 1);
    echo(&mut a, b"still");

    // Unknown and malformed ids, in GOST's error shape.
    let (code, body) = http_request(api, "DELETE", &format!("/connections/{id}"), None, None);
    assert_eq!(code, 400);
    assert!(body.contains("40004"), "{body}");
    let (code, body) = http_request(api, "DELETE", "/connections/x", None, None);
    assert_eq!(code, 400);
    assert!(body.contains("40001"), "{body}");

    drop(a);
    wait_list(api, "", |l| l.is_empty());
    g.stop();
}

#[test]
fn chain_nodes_are_listed() {
    let echo_addr = tcp_echo_server();
    let (api, entry, hop) = (free_port(), free_port(), free_port());
    let mut upstream = Gost::start(&["-L", &format!("relay://127.0.0.1:{hop}")]);
    upstream.wait_tcp(hop);
    let mut g = Gost::start(&[
        "-L",
        &format!("tcp://127.0.0.1:{entry}/{echo_addr}"),
        "-F",
        &format!("relay://127.0.0.1:{hop}"),
        "-api",
        &format!("127.0.0.1:{api}"),
    ]);
    g.wait_tcp(entry);
    g.wait_tcp(api);
    wait_list(api, "", |l| l.is_empty());
    let mut a = TcpStream::connect(("127.0.0.1", entry)).unwrap();
    a.set_read_timeout(Some(TIMEOUT)).unwrap();
    echo(&mut a, b"via chain");
    let l = wait_list(api, "", |l| l.len() == 1 && l[0]["nodes"].is_array());
    assert_eq!(l[0]["nodes"].as_array().unwrap().len(), 1, "{l:?}");
    assert!(l[0]["chain"].is_string(), "{l:?}");
    g.stop();
    upstream.stop();
}
