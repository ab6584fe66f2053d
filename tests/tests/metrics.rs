//! Prometheus metrics: GOST's names and labels, values matching the
//! traffic sent, path and authentication.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use gost_e2e::*;

/// `name{labels}` -> value, from the text exposition format.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("series and value");
        out.insert(series.to_string(), value.parse().expect("number"));
    }
    out
}

fn scrape(port: u16, path: &str, auth: Option<(&str, &str)>) -> HashMap<String, f64> {
    let (code, body) = http_get(port, path, auth);
    assert_eq!(code, 200, "{body}");
    parse(&body)
}

/// Polls until `pred` holds: counters of a closed connection settle just
/// after the client sees the close.
fn scrape_until(port: u16, pred: impl Fn(&HashMap<String, f64>) -> bool) -> HashMap<String, f64> {
    let start = Instant::now();
    loop {
        let m = scrape(port, "/metrics", None);
        if pred(&m) {
            return m;
        }
        assert!(start.elapsed() < TIMEOUT, "metrics never matched: {m:?}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn echo_through(port: u16, data: &[u8]) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(data).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    assert_eq!(back.len(), data.len());
}

#[test]
fn counters_match_the_traffic_sent() {
    let echo = tcp_echo_server();
    let dead = free_port();
    let (port, bad, metrics) = (free_port(), free_port(), free_port());
    let host = {
        let out = std::process::Command::new("hostname").output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let g = Gost::start(&[
        "-L",
        &format!("tcp://127.0.0.1:{port}/{echo}"),
        "-L",
        &format!("tcp://127.0.0.1:{bad}/127.0.0.1:{dead}"),
        "-metrics",
        &format!("127.0.0.1:{metrics}"),
    ]);
    // The services are bound before the metrics endpoint opens; probing
    // their ports would count as requests.
    g.wait_tcp(metrics);
    echo_through(port, &random_bytes(1000, 1));
    echo_through(port, &random_bytes(2345, 2));
    // A target that refuses: a handler error.
    let mut c = TcpStream::connect(("127.0.0.1", bad)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let _ = c.read(&mut [0u8; 1]);

    let labels = |svc: &str| format!("{{client=\"127.0.0.1\",host=\"{host}\",service=\"{svc}\"}}");
    let s0 = labels("service-0");
    let s1 = labels("service-1");
    let m = scrape_until(metrics, |m| {
        m.get(&format!("gost_service_requests_in_flight{s0}")) == Some(&0.0)
            && m.get(&format!("gost_service_handler_errors_total{s1}")) == Some(&1.0)
            && m.get(&format!("gost_service_request_duration_seconds_count{{host=\"{host}\",service=\"service-0\"}}")) == Some(&2.0)
    });
    assert_eq!(m[&format!("gost_service_requests_total{s0}")], 2.0);
    assert_eq!(
        m[&format!("gost_service_transfer_input_bytes_total{s0}")],
        3345.0
    );
    assert_eq!(
        m[&format!("gost_service_transfer_output_bytes_total{s0}")],
        3345.0
    );
    assert_eq!(m[&format!("gost_service_handler_errors_total{s0}")], 0.0);
    assert_eq!(m[&format!("gost_service_requests_total{s1}")], 1.0);
    assert_eq!(m[&format!("gost_services{{host=\"{host}\"}}")], 2.0);
    assert_eq!(
        m[&format!("gost_service_status{{host=\"{host}\",state=\"ready\"}}")],
        2.0
    );
    let inf = format!("gost_service_request_duration_seconds_bucket{{host=\"{host}\",service=\"service-0\",le=\"+Inf\"}}");
    assert_eq!(m[&inf], 2.0);
}

#[test]
fn path_and_auth_from_the_flag_and_the_config() {
    let echo = tcp_echo_server();
    let port = free_port();
    let g = Gost::start(&[
        "-L",
        &format!("tcp://127.0.0.1:0/{echo}"),
        "-metrics",
        &format!("user:pw@127.0.0.1:{port}?path=/m"),
    ]);
    g.wait_tcp(port);
    assert_eq!(http_get(port, "/m", None).0, 401);
    assert_eq!(http_get(port, "/m", Some(("user", "no"))).0, 401);
    let (code, body) = http_get(port, "/m", Some(("user", "pw")));
    assert_eq!(code, 200);
    assert!(body.contains("# TYPE gost_services gauge"), "{body}");
    assert_eq!(http_get(port, "/metrics", Some(("user", "pw"))).0, 404);
    drop(g);

    let dir = TempDir::new("metrics");
    let port = free_port();
    let file = dir.write(
        "gost.yaml",
        &format!("metrics:\n  addr: 127.0.0.1:{port}\n  auther: ops\nauthers:\n- name: ops\n  auths: [{{username: a, password: b}}]\n"),
    );
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(port);
    assert_eq!(http_get(port, "/metrics", None).0, 401);
    let m = scrape_auth(port, ("a", "b"));
    assert!(m.keys().any(|k| k.starts_with("gost_services{")), "{m:?}");
}

fn scrape_auth(port: u16, auth: (&str, &str)) -> HashMap<String, f64> {
    scrape(port, "/metrics", Some(auth))
}
