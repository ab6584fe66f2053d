//! GOST's `redis` and `http` loaders through the real binary: users of an
//! auther from a Redis hash, bypass rules served over HTTP, hosts from a
//! Redis list and a hop's nodes from a Redis string, each read again
//! every `reload` period. A source that goes away, or serves data that is
//! refused, leaves the last good data in place and says so in the log.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use gost_e2e::redis::Redis;
use gost_e2e::*;

/// The status curl gets for `url` through the HTTP proxy on `port`.
fn via_proxy(port: u16, auth: Option<&str>, url: &str) -> u16 {
    let proxy = match auth {
        Some(a) => format!("http://{a}@127.0.0.1:{port}"),
        None => format!("http://127.0.0.1:{port}"),
    };
    let (_, code) = curl_body(&["-o", "/dev/null", "-w", "%{http_code}", "-x", &proxy, url]);
    code.trim().parse().unwrap_or(0)
}

/// Retries `f` until it holds, for at most the test timeout.
fn eventually(what: &str, g: &Gost, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < TIMEOUT,
            "never: {what}; log:\n{}",
            g.log()
        );
        thread::sleep(Duration::from_millis(200));
    }
}

/// An HTTP server answering each GET with the current (status, body).
fn http_source() -> (String, Arc<Mutex<(u16, String)>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/rules", l.local_addr().unwrap());
    let state = Arc::new(Mutex::new((200, String::new())));
    let st = state.clone();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { break };
            let mut head = Vec::new();
            let mut b = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&b[..n]),
                }
            }
            let (status, body) = st.lock().unwrap().clone();
            let _ = c.write_all(
                format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    (url, state)
}

#[test]
fn auther_users_come_from_a_redis_hash_and_stay_when_redis_goes() {
    let redis = Redis::start();
    redis.cli(&["HSET", "gost:users", "alice", "secret"]);
    let origin = http_origin("127.0.0.1:0", "hello");
    let port = free_port();
    let dir = TempDir::new("loader-auth");
    let file = dir.write(
        "gost.yaml",
        &format!(
            "services:
- name: proxy
  addr: 127.0.0.1:{port}
  handler: {{type: http, auther: users}}
  listener: {{type: tcp}}
authers:
- name: users
  reload: 1s
  redis: {{addr: {}, key: gost:users}}
",
            redis.addr()
        ),
    );
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(port);
    let url = format!("http://{origin}/");
    assert_eq!(via_proxy(port, Some("alice:secret"), &url), 200);
    assert_eq!(via_proxy(port, Some("alice:wrong"), &url), 407);
    assert_eq!(via_proxy(port, Some("bob:pw"), &url), 407);
    redis.cli(&["HSET", "gost:users", "bob", "pw"]);
    eventually("bob is let in after a reload", &g, || {
        via_proxy(port, Some("bob:pw"), &url) == 200
    });
    drop(redis);
    thread::sleep(Duration::from_millis(1500));
    for _ in 0..3 {
        assert_eq!(via_proxy(port, Some("alice:secret"), &url), 200);
        thread::sleep(Duration::from_millis(400));
    }
    g.wait_log("loader: cannot read the source; keeping the last good data");
    assert_eq!(
        g.log().matches("loader: cannot read the source").count(),
        1,
        "once per failure streak:\n{}",
        g.log()
    );
}

#[test]
fn bypass_rules_come_over_http_and_bad_or_missing_data_keeps_the_last_good() {
    let (url, source) = http_source();
    source.lock().unwrap().1 = "# nothing yet\nexample.invalid\n".into();
    let origin = http_origin("127.0.0.1:0", "hello");
    let port = free_port();
    let dir = TempDir::new("loader-bypass");
    let file = dir.write(
        "gost.yaml",
        &format!(
            "services:
- name: proxy
  addr: 127.0.0.1:{port}
  handler: {{type: http}}
  listener: {{type: tcp}}
  bypass: bp
bypasses:
- name: bp
  reload: 1s
  http: {{url: \"{url}\", timeout: 2s}}
"
        ),
    );
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(port);
    let target = format!("http://{origin}/");
    assert_eq!(via_proxy(port, None, &target), 200);
    source.lock().unwrap().1 = "127.0.0.1\n".into();
    eventually("the origin is bypassed after a reload", &g, || {
        via_proxy(port, None, &target) == 403
    });
    // The source fails: the rules stay. (Reads are started by lookups.)
    source.lock().unwrap().0 = 500;
    eventually("the failure is logged", &g, || {
        assert_eq!(via_proxy(port, None, &target), 403);
        g.log().contains("loader: cannot read the source")
    });
    // The source serves a rule that does not parse: refused, rules stay.
    *source.lock().unwrap() = (200, "127.0.0.1/99\n".into());
    eventually("the bad rule is refused", &g, || {
        assert_eq!(via_proxy(port, None, &target), 403);
        g.log()
            .contains("loader: data refused; keeping the last good data")
    });
    assert!(
        g.log().contains("loader: the source is back"),
        "{}",
        g.log()
    );
    // Good data again.
    source.lock().unwrap().1 = "example.invalid\n".into();
    eventually("the origin is allowed again", &g, || {
        via_proxy(port, None, &target) == 200
    });
}

#[test]
fn hosts_from_a_redis_list_and_hop_nodes_from_a_redis_string() {
    let redis = Redis::start();
    let echo = tcp_echo_server();
    let origin = http_origin("127.0.0.1:0", "mapped");
    redis.cli(&["RPUSH", "gost:hosts", "127.0.0.1 origin.test"]);
    redis.cli(&[
        "SET",
        "gost:nodes",
        &format!(r#"[{{"name":"echo","addr":"{echo}"}}]"#),
    ]);
    let (proxy, fwd) = (free_port(), free_port());
    let dir = TempDir::new("loader-hosts");
    let file = dir.write(
        "gost.yaml",
        &format!(
            "services:
- name: proxy
  addr: 127.0.0.1:{proxy}
  handler: {{type: http}}
  listener: {{type: tcp}}
  hosts: h
- name: fwd
  addr: 127.0.0.1:{fwd}
  handler: {{type: tcp}}
  listener: {{type: tcp}}
  forwarder: {{hop: from-redis}}
hosts:
- name: h
  reload: 1s
  redis: {{addr: {r}, key: gost:hosts, type: list}}
hops:
- name: from-redis
  reload: 1s
  redis: {{addr: {r}, key: gost:nodes}}
",
            r = redis.addr()
        ),
    );
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(proxy);
    g.wait_tcp(fwd);
    let url = format!("http://origin.test:{}/", origin.port());
    let (ok, body) = curl_body(&["-x", &format!("http://127.0.0.1:{proxy}"), &url]);
    assert!(ok && body == "mapped", "{body}");

    assert_eq!(echo_via(fwd, "ping"), "ping", "{}", g.log());

    // A mapping that is not one: refused with its place, the rest stay.
    redis.cli(&["RPUSH", "gost:hosts", "not-an-ip other.test"]);
    eventually("the bad mapping is refused", &g, || {
        let (ok, body) = curl_body(&["-x", &format!("http://127.0.0.1:{proxy}"), &url]);
        assert!(ok && body == "mapped", "{body}");
        g.log().contains("loader: data refused")
    });
    assert!(g.log().contains("gost:hosts:2"), "{}", g.log());

    // Nodes that are not JSON: refused, the echo node stays.
    redis.cli(&["SET", "gost:nodes", "[{oops"]);
    eventually("the bad nodes are refused", &g, || {
        assert_eq!(echo_via(fwd, "pong"), "pong", "{}", g.log());
        g.log().matches("loader: data refused").count() >= 2
    });
}

fn echo_via(port: u16, msg: &str) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    // A connection the limiter closes at once may refuse the write.
    let _ = c.write_all(msg.as_bytes());
    let _ = c.shutdown(Shutdown::Write);
    let mut back = String::new();
    let _ = c.read_to_string(&mut back);
    back
}

#[test]
fn climiter_limits_come_from_a_redis_set() {
    let redis = Redis::start();
    redis.cli(&["SADD", "gost:climits", "$ 1"]);
    let echo = tcp_echo_server();
    let port = free_port();
    let dir = TempDir::new("loader-climiter");
    let file = dir.write(
        "gost.yaml",
        &format!(
            "services:
- name: fwd
  addr: 127.0.0.1:{port}
  handler: {{type: tcp}}
  listener: {{type: tcp}}
  forwarder: {{nodes: [{{name: echo, addr: {echo}}}]}}
  climiter: one
climiters:
- name: one
  redis: {{addr: {}, key: gost:climits}}
",
            redis.addr()
        ),
    );
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(port);
    // The first connection holds the one place (once the readiness
    // probe's is free); a second is closed at once, without its bytes
    // coming back.
    let start = Instant::now();
    let first = loop {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        c.write_all(b"one").unwrap();
        let mut b = [0u8; 3];
        if c.read_exact(&mut b).is_ok() && &b == b"one" {
            break c;
        }
        assert!(start.elapsed() < TIMEOUT, "{}", g.log());
        thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(echo_via(port, "two"), "", "{}", g.log());
    drop(first);
    eventually("the place is free again", &g, || {
        echo_via(port, "three") == "three"
    });
}
