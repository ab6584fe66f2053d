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

#[test]
fn chain_errors_and_node_connect_times_follow_the_routes_taken() {
    let dir = TempDir::new("chain-metrics");
    let origin = http_origin("127.0.0.1:0", "hi");
    let (upstream, via_dead, via_live, dead, metrics) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let chain = |name: &str, node: &str, port: u16| {
        format!("- name: {name}\n  hops:\n  - name: {name}-hop\n    nodes: [{{name: {node}, addr: \"127.0.0.1:{port}\", connector: {{type: http}}}}]\n")
    };
    let file = dir.write(
        "gost.yaml",
        &format!(
            "services:\n\
             - {{name: upstream, addr: \"127.0.0.1:{upstream}\", handler: {{type: http}}}}\n\
             - {{name: via-dead, addr: \"127.0.0.1:{via_dead}\", handler: {{type: http, chain: dead}}}}\n\
             - {{name: via-live, addr: \"127.0.0.1:{via_live}\", handler: {{type: http, chain: live}}}}\n\
             chains:\n{}{}metrics: {{addr: \"127.0.0.1:{metrics}\"}}\n",
            chain("dead", "n-dead", dead),
            chain("live", "n-live", upstream)
        ),
    );
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(metrics);
    let url = format!("http://{origin}/");
    let proxy = |port: u16| format!("http://127.0.0.1:{port}");
    for _ in 0..3 {
        let (ok, _) = curl_body(&["-f", "-x", &proxy(via_dead), &url]);
        assert!(!ok, "the chain's only node is dead");
    }
    for _ in 0..2 {
        assert_eq!(
            curl_body(&["-x", &proxy(via_live), &url]),
            (true, "hi".into())
        );
    }
    // The chain works but the target does not answer: no chain error.
    let gone = format!("http://127.0.0.1:{dead}/");
    assert!(!curl_body(&["-f", "-x", &proxy(via_live), &gone]).0);

    let host = String::from_utf8(
        std::process::Command::new("hostname")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let labels =
        |chain: &str, node: &str| format!("{{chain=\"{chain}\",host=\"{host}\",node=\"{node}\"}}");
    let m = scrape(metrics, "/metrics", None);
    let value = |name: &str, chain: &str, node: &str| {
        m.get(&format!("{name}{}", labels(chain, node))).copied()
    };
    assert_eq!(
        value("gost_chain_errors_total", "dead", "n-dead"),
        Some(3.0)
    );
    assert_eq!(
        value("gost_chain_errors_total", "live", "n-live"),
        Some(0.0)
    );
    let count = "gost_chain_node_connect_duration_seconds_count";
    assert_eq!(value(count, "live", "n-live"), Some(3.0), "{m:?}");
    assert_eq!(value(count, "dead", "n-dead"), Some(0.0));
    let inf = format!(
        "gost_chain_node_connect_duration_seconds_bucket{{chain=\"live\",host=\"{host}\",node=\"n-live\",le=\"+Inf\"}}"
    );
    assert_eq!(m[&inf], 3.0);
}
