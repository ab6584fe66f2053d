//! The HTTP response cache over GOST's `redis` store, against a real
//! Redis server: a response is kept under GOST's key with the TTL as
//! Redis's expiry, later requests are answered from it without the
//! origin, a response GOST wrote there (chunked) is served too, and a
//! Redis that is down only costs the cache.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use gost_e2e::redis::Redis;
use gost_e2e::*;

/// An origin counting its requests, answering each with `body`.
fn counting_origin(body: &'static str) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { break };
            let mut head = Vec::new();
            let mut b = [0u8; 1024];
            let mut whole = false;
            while !whole {
                match c.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&b[..n]),
                }
                whole = head.windows(4).any(|w| w == b"\r\n\r\n");
            }
            // A readiness probe's empty connection is not a request.
            if !whole {
                continue;
            }
            h.fetch_add(1, Ordering::SeqCst);
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nX-Origin: yes\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (addr, hits)
}

fn get(port: u16, path: &str) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    let _ = c.read_to_string(&mut resp);
    resp
}

fn config(dir: &TempDir, port: u16, origin: std::net::SocketAddr, redis: &str) -> String {
    dir.write(
        "gost.yaml",
        &format!(
            "services:
- name: web
  addr: 127.0.0.1:{port}
  cache: shared
  handler: {{type: tcp, metadata: {{sniffing: true, cache.status.200: 90s}}}}
  listener: {{type: tcp}}
  forwarder: {{nodes: [{{name: app, addr: {origin}}}]}}
caches:
- name: shared
  redis: {{addr: {redis}, ttl: 30s, key: \"gost:test:\"}}
"
        ),
    )
}

#[test]
fn responses_are_kept_in_redis_and_served_from_it() {
    let redis = Redis::start();
    let (origin, hits) = counting_origin("hello");
    let dir = TempDir::new("cache-redis");
    let port = free_port();
    let g = Gost::start(&["-C", &config(&dir, port, origin, &redis.addr())]);
    g.wait_tcp(port);

    let first = get(port, "/page?a=1");
    assert!(
        first.starts_with("HTTP/1.1 200") && first.ends_with("hello"),
        "{first}"
    );
    // Kept under GOST's key (prefix, method, host, target), with the
    // status's TTL as the key's expiry.
    let keys = redis.wait_lines(&["KEYS", "gost:test:*"], 1);
    assert_eq!(keys, vec!["gost:test:GET app.test /page?a=1"]);
    let pttl: i64 = redis
        .cli(&["PTTL", "gost:test:GET app.test /page?a=1"])
        .trim()
        .parse()
        .unwrap();
    assert!((60_000..=90_000).contains(&pttl), "{pttl}");
    let stored = redis.cli(&["GET", "gost:test:GET app.test /page?a=1"]);
    assert!(stored.starts_with("HTTP/1.1 200 OK"), "{stored}");

    let second = get(port, "/page?a=1");
    assert!(
        second.ends_with("hello") && second.to_ascii_lowercase().contains("x-origin: yes"),
        "{second}"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the second GET came from Redis"
    );

    // A response GOST put there (chunked, as it wrote it to its client).
    redis.cli(&[
        "SET",
        "gost:test:GET app.test /from-gost",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-By: gost\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ]);
    let r = get(port, "/from-gost");
    assert!(
        r.ends_with("abc") && r.to_ascii_lowercase().contains("x-by: gost"),
        "{r}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[test]
fn a_redis_that_is_down_only_costs_the_cache() {
    let (origin, hits) = counting_origin("hello");
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let dir = TempDir::new("cache-redis-down");
    let port = free_port();
    let g = Gost::start(&["-C", &config(&dir, port, origin, &dead)]);
    g.wait_tcp(port);
    for _ in 0..3 {
        let r = get(port, "/x");
        assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("hello"), "{r}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    g.wait_log("cache: redis cannot be used");
    assert_eq!(
        g.log().matches("cache: redis cannot be used").count(),
        1,
        "{}",
        g.log()
    );
}
