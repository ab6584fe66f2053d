//! The web API's live stream (`GET /stream`, Server-Sent Events): service
//! changes, connections opened and closed, the process, and log lines
//! with level and service filters; behind the API's auth. (A subscriber
//! that lags losing log lines and being told so is a unit test of the
//! stream: how much a socket buffers is the kernel's to decide.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use serde_json::Value;

use gost_e2e::*;

/// An open stream: events as (name, data).
struct Sse(BufReader<TcpStream>);

impl Sse {
    fn open(api: u16, query: &str, auth: Option<&str>) -> Sse {
        let c = TcpStream::connect(("127.0.0.1", api)).unwrap();
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        Sse::request(c, query, auth)
    }

    fn request(mut c: TcpStream, query: &str, auth: Option<&str>) -> Sse {
        let auth = auth
            .map(|a| format!("Authorization: Basic {a}\r\n"))
            .unwrap_or_default();
        write!(
            c,
            "GET /stream{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Accept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        let mut r = BufReader::new(c);
        let mut status = String::new();
        r.read_line(&mut status).unwrap();
        assert!(status.contains(" 200 "), "{status}");
        loop {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            if l == "\r\n" {
                break;
            }
        }
        Sse(r)
    }

    /// The next event; chunk-size lines of the chunked body and
    /// keep-alive comments are skipped.
    fn next(&mut self) -> (String, Value) {
        let (mut name, mut data) = (String::new(), String::new());
        let start = Instant::now();
        loop {
            assert!(start.elapsed() < TIMEOUT, "no event");
            let mut l = String::new();
            assert!(self.0.read_line(&mut l).unwrap() > 0, "stream ended");
            let l = l.trim_end_matches(['\r', '\n']);
            if let Some(n) = l.strip_prefix("event: ").or(l.strip_prefix("event:")) {
                name = n.to_string();
            } else if let Some(d) = l.strip_prefix("data: ").or(l.strip_prefix("data:")) {
                data.push_str(d);
            } else if l.is_empty() && !name.is_empty() {
                return (name, serde_json::from_str(&data).unwrap());
            }
        }
    }

    /// Reads events until `pred` accepts one.
    fn until(&mut self, what: &str, pred: impl Fn(&str, &Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            assert!(start.elapsed() < TIMEOUT, "no {what}");
            let (n, d) = self.next();
            if pred(&n, &d) {
                return d;
            }
        }
    }
}

#[test]
fn the_stream_carries_services_connections_process_and_logs() {
    let echo = tcp_echo_server();
    let (api, a, b) = (free_port(), free_port(), free_port());
    let mut g = Gost::start(&[
        "-L",
        &format!("tcp://127.0.0.1:{a}/{echo}?enableStats=true"),
        "-L",
        &format!("tcp://127.0.0.1:{b}/127.0.0.1:1"),
        "-api",
        &format!("127.0.0.1:{api}"),
    ]);
    for p in [a, api] {
        g.wait_tcp(p);
    }
    // Not probed: its first connection must be the one below, whose
    // error line is logged (a repeated one would be held back).
    g.wait_log(&format!("127.0.0.1:{b}"));
    let mut s = Sse::open(api, "", None);
    assert_eq!(s.next().0, "hello");
    let svc = s.until("services", |n, _| n == "services");
    let names: Vec<&str> = svc["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["service-0", "service-1"]);
    let p = s.until("process", |n, _| n == "process");
    assert!(p["version"].is_string() && p["uptime"].is_number(), "{p}");

    // A connection appears with its bytes, and the service's stats move.
    let mut c = TcpStream::connect(("127.0.0.1", a)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(b"abc").unwrap();
    let mut buf = [0u8; 3];
    c.read_exact(&mut buf).unwrap();
    // The connection and the service's stats show in the same second or
    // in the next ones.
    let (mut id, mut counted) = (None, false);
    let start = Instant::now();
    while id.is_none() || !counted {
        assert!(start.elapsed() < TIMEOUT, "no connection or no stats");
        let (n, d) = s.next();
        if n == "connections" {
            if let Some(c) = d["opened"].as_array().and_then(|o| o.first()) {
                id = c["id"].as_u64();
            }
        }
        if n == "services" {
            counted |= d["changed"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["name"] == "service-0" && v["status"]["stats"]["inputBytes"] == 3);
        }
    }
    let id = id.unwrap();
    drop(c);
    s.until("closed", |n, d| {
        n == "connections" && d["closed"].as_array().unwrap().contains(&id.into())
    });

    // Log lines, filtered by service and level: the failing dial of
    // service-1 is an error line of that service.
    let mut only_1 = Sse::open(api, "?topics=logs&service=service-1&level=error", None);
    assert_eq!(only_1.next().0, "hello");
    let _ = TcpStream::connect(("127.0.0.1", b)).map(|mut c| c.read(&mut [0u8; 1]));
    let line = only_1.until("log", |n, _| n == "log");
    assert_eq!(line["service"], "service-1", "{line}");
    assert_eq!(line["level"], "error", "{line}");

    // Bad parameters are refused in GOST's shape.
    let (code, body) = http_get(api, "/stream?topics=nope", None);
    assert_eq!(code, 400, "{body}");
    let (code, body) = http_get(api, "/stream?level=loud", None);
    assert_eq!(code, 400, "{body}");
    g.stop();
}

/// A chain node that cannot be reached is marked: `GET /health` and the
/// stream's `health` event show its failure and how long it is skipped.
#[test]
fn a_failed_node_shows_in_the_health_route_and_the_stream() {
    let echo = tcp_echo_server();
    let (api, a, dead) = (free_port(), free_port(), free_port());
    let mut g = Gost::start(&[
        "-L",
        &format!("tcp://127.0.0.1:{a}/{echo}"),
        "-F",
        &format!("socks5://127.0.0.1:{dead}?failTimeout=30s"),
        "-api",
        &format!("127.0.0.1:{api}"),
    ]);
    // Not `wait_tcp(a)`: a connection there would dial the dead node.
    g.wait_tcp(api);
    wait_service(api, "service-0", |s| s["status"]["state"] == "ready");
    let node = |list: &Value| -> Value {
        let item = list
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["service"] == "service-0" && v["for"] == "handler")
            .unwrap_or_else(|| panic!("no chain of service-0 in {list}"))
            .clone();
        assert_eq!(item["chains"][0]["name"], "chain-0", "{item}");
        let hop = &item["chains"][0]["hops"][0];
        assert_eq!(
            (hop["name"].as_str(), hop["maxFails"].as_u64()),
            (Some("hop-0"), Some(1))
        );
        hop["nodes"][0].clone()
    };
    let mut s = Sse::open(api, "?topics=health", None);
    assert_eq!(s.next().0, "hello");
    let first = s.until("health", |n, _| n == "health");
    let n = node(&first["list"]);
    assert_eq!(
        (n["fails"].as_u64(), n["failed"].as_bool()),
        (Some(0), Some(false)),
        "{n}"
    );

    let mut c = TcpStream::connect(("127.0.0.1", a)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let _ = c.read(&mut [0u8; 1]);
    let marked = s.until("health", |n, d| {
        n == "health" && node(&d["list"])["failed"] == true
    });
    let n = node(&marked["list"]);
    assert_eq!(n["addr"], format!("127.0.0.1:{dead}"));
    assert!(n["fails"].as_u64() >= Some(1), "{n}");
    let (code, body) = http_get(api, "/health?service=service-0", None);
    assert_eq!(code, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let n = node(&body["data"]["list"]);
    let dead_for = n["deadUntil"].as_u64().unwrap() - n["lastFailure"].as_u64().unwrap();
    assert_eq!(dead_for, 30_000, "{n}");
    let (_, body) = http_get(api, "/health?service=other", None);
    assert!(body.contains(r#""count":0"#), "{body}");
    g.stop();
}

#[test]
fn the_stream_needs_the_apis_auth() {
    let api = free_port();
    let mut g = Gost::start(&["-api", &format!("admin:pw@127.0.0.1:{api}")]);
    g.wait_tcp(api);
    let (code, _) = http_get(api, "/stream", None);
    assert_eq!(code, 401);
    let (code, _) = http_get(api, "/connections", None);
    assert_eq!(code, 401);
    // admin:pw
    let mut s = Sse::open(api, "?topics=process", Some("YWRtaW46cHc="));
    assert_eq!(s.next().0, "hello");
    g.stop();
}

/// A raw GET: the response head and body.
fn raw_get(port: u16, path: &str) -> (String, String) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_ascii_lowercase(), body.to_string())
}

#[test]
fn the_dashboard_is_served_under_the_path_prefix() {
    let api = free_port();
    let mut g = Gost::start(&["-api", &format!("127.0.0.1:{api}?pathPrefix=/gost")]);
    g.wait_tcp(api);
    let (head, _) = raw_get(api, "/gost/ui");
    assert!(head.starts_with("http/1.1 308"), "{head}");
    assert!(head.contains("location: ui/"), "{head}");
    let (head, body) = raw_get(api, "/gost/ui/");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(body.contains("<script src=\"app.js\">"), "{body}");
    for asset in ["app.js", "app.css"] {
        let (head, _) = raw_get(api, &format!("/gost/ui/{asset}"));
        assert!(head.starts_with("http/1.1 200"), "{asset}: {head}");
    }
    let (head, _) = raw_get(api, "/gost/ui/nope.js");
    assert!(head.starts_with("http/1.1 404"), "{head}");
    let (head, _) = raw_get(api, "/ui/");
    assert!(head.starts_with("http/1.1 404"), "{head}");
    g.stop();
}
