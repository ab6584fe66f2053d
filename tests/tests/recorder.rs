//! GOST's recorders through the real binary: a service's client
//! addresses, dialed addresses and per-connection JSON records written to
//! a real Redis server (set, list, sorted set), a file, a TCP and an HTTP
//! server; a sink that is down or slow never holds up a connection, and
//! Redis is written again once it is back; recorders changed through the
//! web API.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use gost_e2e::redis::Redis;
use gost_e2e::*;
use serde_json::{json, Value};

/// One round trip of `n` bytes through the forwarder on `port`, which
/// must finish promptly.
fn echo_through(port: u16, n: usize) {
    let start = Instant::now();
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let data = random_bytes(n, n as u64);
    c.write_all(&data).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    assert_eq!(back, data);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "the connection took {:?}",
        start.elapsed()
    );
}

/// A TCP server handing each connection's bytes (one record, as GOST
/// writes one per connection) to the returned channel.
fn tcp_sink() -> (u16, mpsc::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { break };
            let mut s = String::new();
            let _ = c.read_to_string(&mut s);
            if tx.send(s).is_err() {
                break;
            }
        }
    });
    (port, rx)
}

/// An HTTP server answering 200 to every request, handing (head, body)
/// to the returned channel.
fn http_sink() -> (u16, mpsc::Receiver<(String, String)>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { break };
            let mut buf = Vec::new();
            let mut b = [0u8; 4096];
            let (head, body) = loop {
                let n = c.read(&mut b).unwrap_or(0);
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&b[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some(i) = text.find("\r\n\r\n") {
                    let head = text[..i].to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    if buf.len() >= i + 4 + len {
                        break (head, text[i + 4..i + 4 + len].to_string());
                    }
                }
            };
            let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            if tx.send((head, body)).is_err() {
                break;
            }
        }
    });
    (port, rx)
}

#[test]
fn records_go_to_redis_a_file_tcp_and_http_as_gost_writes_them() {
    let redis = Redis::start();
    let echo = tcp_echo_server();
    let (tcp_port, tcp_rx) = tcp_sink();
    let (http_port, http_rx) = http_sink();
    let dir = TempDir::new("recorder");
    let dials = dir.path("dials/dials.txt");
    let (port, port2) = (free_port(), free_port());
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let file = dir.write(
        "gost.yaml",
        &format!(
            "services:
- name: fwd
  addr: 127.0.0.1:{port}
  handler: {{type: tcp}}
  listener: {{type: tcp}}
  forwarder: {{nodes: [{{name: echo, addr: {echo}}}]}}
  recorders:
  - {{name: clients, record: recorder.service.client.address}}
  - {{name: conns, record: recorder.service.handler}}
  - {{name: dials, record: recorder.service.router.dial.address}}
  - {{name: posts, record: recorder.service.handler}}
- name: broken
  addr: 127.0.0.1:{port2}
  handler: {{type: tcp}}
  listener: {{type: tcp}}
  forwarder: {{nodes: [{{name: gone, addr: {closed}}}]}}
  recorders:
  - {{name: failed, record: recorder.service.router.dial.address.error}}
  - {{name: ranked, record: recorder.service.client.address}}
  - {{name: posts, record: recorder.service.handler}}
recorders:
- name: clients
  redis: {{addr: {redis}, key: gost:clients}}
- name: conns
  redis: {{addr: {redis}, key: gost:conns, type: list}}
- name: ranked
  redis: {{addr: {redis}, key: gost:ranked, type: sset}}
- name: dials
  file: {{path: {dials}, sep: \"\\n\"}}
- name: failed
  tcp: {{addr: 127.0.0.1:{tcp_port}, timeout: 2s}}
- name: posts
  http:
    url: http://127.0.0.1:{http_port}/records
    header: {{X-Token: abc}}
",
            redis = redis.addr(),
        ),
    );
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(port);
    g.wait_tcp(port2);
    echo_through(port, 1000);

    // The client address, once per client IP in the set.
    let clients = redis.wait_lines(&["SMEMBERS", "gost:clients"], 1);
    assert_eq!(clients, vec!["127.0.0.1"]);

    // One JSON record per connection (the readiness probe's too), in
    // GOST's keys.
    let conns = redis.wait_lines(&["LRANGE", "gost:conns", "0", "-1"], 2);
    let recs: Vec<Value> = conns
        .iter()
        .map(|l| serde_json::from_str(l).expect("a JSON record"))
        .collect();
    let rec = recs
        .iter()
        .find(|r| r["inputBytes"] == 1000)
        .unwrap_or_else(|| panic!("no record of the echoed connection: {recs:?}"));
    assert_eq!(rec["service"], "fwd");
    assert_eq!(rec["network"], "tcp");
    assert_eq!(rec["outputBytes"], 1000);
    // GOST fills clientIP only from an HTTP request's forwarding headers.
    assert_eq!(rec["clientIP"], "");
    assert_eq!(rec["host"], echo.to_string());
    assert_eq!(rec["dst"], echo.to_string());
    assert_eq!(rec["local"], format!("127.0.0.1:{port}"));
    assert!(rec["remote"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(rec["sid"].as_str().unwrap().len(), 20);
    assert!(rec["duration"].as_u64().unwrap() > 0);
    assert!(rec["time"].as_str().unwrap().ends_with('Z'));

    // The dialed host, one line each.
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&dials).unwrap_or_default();
        if text.lines().count() >= 2 {
            assert!(text.lines().all(|l| l == "127.0.0.1"), "{text:?}");
            break;
        }
        assert!(start.elapsed() < TIMEOUT, "dials file: {text:?}");
        thread::sleep(Duration::from_millis(50));
    }

    // A failed dial is recorded on its own record.
    let mut c = TcpStream::connect(("127.0.0.1", port2)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let _ = c.read(&mut [0u8; 16]);
    let failed = tcp_rx.recv_timeout(TIMEOUT).expect("a dial error record");
    assert_eq!(failed, "127.0.0.1");

    // Its handler record goes over HTTP, with the configured header and
    // the error. (In `fwd`, `posts` is a second recorder of the same
    // record, which GOST, and so gost-rs, leaves unused: the first wins.)
    let (head, body) = http_rx.recv_timeout(TIMEOUT).expect("an HTTP record");
    assert!(head.starts_with("POST /records HTTP/1.1"), "{head}");
    assert!(head.contains("X-Token: abc"), "{head}");
    assert!(head.contains("Content-Type: application/json"), "{head}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["service"], "broken");
    let mut errs = vec![v];
    while let Ok((_, body)) = http_rx.recv_timeout(Duration::from_secs(2)) {
        errs.push(serde_json::from_str(&body).unwrap());
    }
    assert!(errs.iter().all(|v| v["service"] == "broken"), "{errs:?}");
    assert!(
        errs.iter()
            .any(|v| v["err"].as_str().is_some_and(|e| e.contains("dial"))),
        "{errs:?}"
    );

    // A sorted set counts each client address.
    let ranked = redis.wait_lines(&["ZRANGE", "gost:ranked", "0", "-1", "WITHSCORES"], 2);
    assert_eq!(ranked[0], "127.0.0.1");
    assert!(ranked[1].parse::<u32>().unwrap() >= 2, "{ranked:?}");
}

#[test]
fn a_sink_that_is_down_holds_up_nothing_and_redis_is_written_again_once_back() {
    let redis = Redis::start();
    let redis_port = redis.port;
    let echo = tcp_echo_server();
    // A TCP recorder whose server accepts and never reads: a stuck sink.
    let stuck = TcpListener::bind("127.0.0.1:0").unwrap();
    let stuck_addr = stuck.local_addr().unwrap();
    let port = free_port();
    let dir = TempDir::new("recorder-down");
    let file = dir.write(
        "gost.yaml",
        &format!(
            "services:
- name: fwd
  addr: 127.0.0.1:{port}
  handler: {{type: tcp}}
  listener: {{type: tcp}}
  forwarder: {{nodes: [{{name: echo, addr: {echo}}}]}}
  recorders:
  - {{name: clients, record: recorder.service.client.address}}
  - {{name: stuck, record: recorder.service.handler}}
recorders:
- name: clients
  redis: {{addr: 127.0.0.1:{redis_port}, key: gost:clients, type: list}}
- name: stuck
  tcp: {{addr: {stuck_addr}, timeout: 1s}}
"
        ),
    );
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(port);
    redis.wait_lines(&["LRANGE", "gost:clients", "0", "-1"], 1);
    drop(redis);
    for _ in 0..20 {
        echo_through(port, 100);
    }
    g.wait_log("recorder: cannot write records");
    let back = Redis::start_on(redis_port);
    let start = Instant::now();
    loop {
        echo_through(port, 10);
        if !back
            .cli(&["LRANGE", "gost:clients", "0", "-1"])
            .trim()
            .is_empty()
        {
            break;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "redis never written again; log:\n{}",
            g.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
    g.wait_log("recorder: writing records again");
    drop(stuck);
}

#[test]
fn bad_recorders_are_refused_with_a_message() {
    for (recorder, want) in [
        (
            json!({"name": "r", "redis": {"addr": "127.0.0.1:1"}}),
            "redis.key is required",
        ),
        (
            json!({"name": "r", "redis": {"addr": "127.0.0.1:1", "key": "k", "type": "hash"}}),
            "redis.type 'hash'",
        ),
        (
            json!({"name": "r"}),
            "needs one of file.path, tcp.addr, http.url or redis.addr",
        ),
        (
            json!({"name": "r", "http": {"url": "https://127.0.0.1:1/"}}),
            "only http://",
        ),
    ] {
        let cfg = json!({
            "services": [{"name": "s", "addr": "127.0.0.1:0", "handler": {"type": "http"},
                "recorders": [{"name": "r", "record": "recorder.service.handler"}]}],
            "recorders": [recorder],
        });
        let (status, _out, err) = run_gost(&["-C", &cfg.to_string()]);
        assert!(!status.success());
        assert!(
            err.contains("recorder \"r\"") && err.contains(want),
            "{want}: {err}"
        );
    }
    let cfg = json!({
        "services": [{"name": "s", "addr": "127.0.0.1:0", "handler": {"type": "http"},
            "recorders": [{"name": "r", "record": "recorder.service.handler.serial"}]}],
        "recorders": [{"name": "r", "tcp": {"addr": "127.0.0.1:1"}}],
    });
    let (status, _out, err) = run_gost(&["-C", &cfg.to_string()]);
    assert!(!status.success());
    assert!(err.contains("recorder.service.handler.serial"), "{err}");
}

#[test]
fn recorders_are_created_changed_and_deleted_through_the_api() {
    let redis = Redis::start();
    let echo = tcp_echo_server();
    let (api, port) = (free_port(), free_port());
    let g = Gost::start(&["-api", &format!("127.0.0.1:{api}")]);
    g.wait_tcp(api);
    let call = |method: &str, path: &str, body: Value| {
        let text = body.to_string();
        let (code, out) = http_request(api, method, path, Some(&text), None);
        assert_eq!(code, 200, "{method} {path}: {out}");
    };
    call(
        "POST",
        "/config/recorders",
        json!({"name": "rec", "redis": {"addr": redis.addr(), "key": "first"}}),
    );
    call(
        "POST",
        "/config/services",
        json!({"name": "fwd", "addr": format!("127.0.0.1:{port}"),
            "handler": {"type": "tcp"}, "listener": {"type": "tcp"},
            "forwarder": {"nodes": [{"name": "echo", "addr": echo.to_string()}]},
            "recorders": [{"name": "rec", "record": "recorder.service.client.address"}]}),
    );
    g.wait_tcp(port);
    echo_through(port, 10);
    redis.wait_lines(&["SMEMBERS", "first"], 1);
    call(
        "PUT",
        "/config/recorders/rec",
        json!({"name": "rec", "redis": {"addr": redis.addr(), "key": "second"}}),
    );
    echo_through(port, 10);
    redis.wait_lines(&["SMEMBERS", "second"], 1);
    // A recorder a service uses cannot go; the service first.
    let (code, _) = http_request(api, "DELETE", "/config/recorders/rec", None, None);
    assert_ne!(code, 200);
    call("DELETE", "/config/services/fwd", json!(null));
    call("DELETE", "/config/recorders/rec", json!(null));
}
