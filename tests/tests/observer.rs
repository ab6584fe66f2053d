//! Service observers through the real binary: the example wasm observer
//! writing JSON lines to its granted directory, and GOST's HTTP observer
//! protocol against a small server written as a GOST user would.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use gost_e2e::*;
use serde_json::{json, Value};

/// Sends `n` bytes through the forwarder and reads the echo back.
fn echo_through(port: u16, n: usize) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let data = random_bytes(n, n as u64);
    c.write_all(&data).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    assert_eq!(back, data);
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn stats_of(ev: &Value) -> Option<(u64, u64, u64, u64, u64)> {
    let s = &ev["stats"];
    Some((
        s["totalConns"].as_u64()?,
        s["currentConns"].as_u64()?,
        s["inputBytes"].as_u64()?,
        s["outputBytes"].as_u64()?,
        s["totalErrs"].as_u64()?,
    ))
}

#[test]
fn wasm_observer_writes_status_and_stats_lines() {
    let echo = tcp_echo_server();
    let port = free_port();
    let dir = TempDir::new("obs-wasm");
    let data = TempDir::new("obs-data");
    let file = dir.write(
        "gost.yaml",
        &format!(
            "services:
- name: fwd
  addr: 127.0.0.1:{port}
  handler: {{type: tcp}}
  listener: {{type: tcp}}
  forwarder: {{nodes: [{{name: echo, addr: {echo}}}]}}
  observer: jsonl
  metadata: {{enableStats: true, observer.period: 1s}}
observers:
- name: jsonl
  plugin:
    type: wasm
    path: {}
    dir: {}
    config: {{file: events.jsonl}}
",
            plugin_wasm("stats-jsonl"),
            data.0.display()
        ),
    );
    let mut g = Gost::start(&["-C", &file]);
    g.wait_tcp(port);
    for _ in 0..3 {
        echo_through(port, 1000);
    }
    let out = data.path("events.jsonl");
    let read = || -> Vec<Value> {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    };
    // Three clients and the probe of wait_tcp.
    wait_for("stats with 4 connections", || {
        read()
            .iter()
            .any(|e| e["type"] == "stats" && stats_of(e) == Some((4, 0, 3000, 3000, 0)))
            .then_some(())
    });
    let lines = read();
    let states: Vec<&str> = lines
        .iter()
        .filter(|e| e["type"] == "status")
        .map(|e| e["status"]["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["running", "ready"], "{lines:?}");
    assert_eq!(
        lines[1],
        json!({"kind": "service", "service": "fwd", "type": "status",
               "status": {"state": "ready", "msg": "service fwd is ready"}})
    );
    // Nothing changed since: no further stats lines.
    let n = read().len();
    thread::sleep(Duration::from_millis(2500));
    assert_eq!(read().len(), n, "unchanged stats were reported again");
    assert!(g.stop().success());
    let last = read();
    assert_eq!(
        last.last().unwrap()["status"]["state"],
        "closed",
        "{last:?}"
    );
}

/// A GOST observer server: collects each POSTed body and answers
/// `{"ok":false}` to the first `fail` requests, `{"ok":true}` afterwards.
fn observer_server(fail: usize) -> (u16, Arc<Mutex<Vec<Value>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    thread::spawn(move || {
        for (served, c) in l.incoming().enumerate() {
            let Ok(c) = c else { break };
            let mut r = BufReader::new(c);
            let mut len = 0usize;
            let mut line = String::new();
            let mut first = true;
            loop {
                line.clear();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if first {
                    assert!(line.starts_with("POST /observe "), "{line}");
                    first = false;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0u8; len];
            r.read_exact(&mut body).unwrap();
            let ok = served >= fail;
            seen.lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap());
            let reply = format!("{{\"ok\":{ok}}}");
            let _ = r.get_mut().write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
                    reply.len()
                )
                .as_bytes(),
            );
        }
    });
    (port, got)
}

#[test]
fn http_observer_gets_gost_json_with_retries_and_deltas() {
    let echo = tcp_echo_server();
    let port = free_port();
    // The first three requests fail: the two status events (not retried,
    // as in GOST) and the first stats report (retried next period).
    let (obs_port, got) = observer_server(3);
    let dir = TempDir::new("obs-http");
    let file = dir.write(
        "gost.yaml",
        &format!(
            "services:
- name: fwd
  addr: 127.0.0.1:{port}
  handler: {{type: tcp}}
  forwarder: {{nodes: [{{name: echo, addr: {echo}}}]}}
  observer: web
  metadata: {{enableStats: true, observer.period: 1s, observer.resetTraffic: true}}
observers:
- name: web
  plugin: {{type: http, addr: 127.0.0.1:{obs_port}/observe}}
",
        ),
    );
    let g = Gost::start(&["-C", &file]);
    // wait_tcp's probe is the first of the connections counted below.
    g.wait_tcp(port);
    echo_through(port, 500);
    let stats_batches = || -> Vec<Value> {
        got.lock()
            .unwrap()
            .iter()
            .filter(|b| b["events"][0]["type"] == "stats")
            .cloned()
            .collect()
    };
    let first = wait_for("the retried stats report", || {
        let b = stats_batches();
        (b.len() >= 2).then_some(b)
    });
    assert_eq!(first[0], first[1], "a retry sends the same batch");
    assert_eq!(
        first[0],
        json!({"events": [{"kind": "service", "service": "fwd", "type": "stats",
            "stats": {"totalConns": 2, "currentConns": 0, "inputBytes": 500,
                      "outputBytes": 500, "totalErrs": 0}}]}),
        "{}",
        g.log()
    );
    // resetTraffic: the next report carries only the new bytes.
    echo_through(port, 200);
    let next = wait_for("the next stats report", || {
        let b = stats_batches();
        (b.len() >= 3).then(|| b[2].clone())
    });
    assert_eq!(
        stats_of(&next["events"][0]),
        Some((3, 0, 200, 200, 0)),
        "{next}"
    );
    let all = got.lock().unwrap().clone();
    assert_eq!(
        all[0],
        json!({"events": [{"kind": "service", "service": "fwd", "type": "status",
            "status": {"state": "running", "msg": "service fwd is running"}}]})
    );
}

#[test]
fn observer_errors_are_named() {
    let dir = TempDir::new("obs-bad");
    let file = dir.write(
        "gost.yaml",
        &format!(
            "services:
- name: s
  addr: 127.0.0.1:{}
  handler: {{type: tcp}}
  forwarder: {{nodes: [{{name: n, addr: 127.0.0.1:1}}]}}
  observer: o
observers:
- name: o
  plugin: {{type: wasm, path: {}}}
",
            free_port(),
            plugin_wasm("socks5")
        ),
    );
    let (status, out, err) = run_gost(&["-C", &file]);
    assert!(!status.success());
    let msg = format!("{out}{err}");
    assert!(
        msg.contains("observer \"o\"") && msg.contains("does not export `observe`"),
        "{msg}"
    );
}

#[test]
fn webhook_plugin_reaches_only_granted_addresses() {
    let echo = tcp_echo_server();
    let (port, denied_port) = (free_port(), free_port());
    let (obs_port, got) = observer_server(0);
    let (other_port, other) = observer_server(0);
    let dir = TempDir::new("obs-webhook");
    let webhook = plugin_wasm("webhook");
    let file = dir.write(
        "gost.yaml",
        &format!(
            "services:
- name: fwd
  addr: 127.0.0.1:{port}
  handler: {{type: tcp}}
  forwarder: {{nodes: [{{name: echo, addr: {echo}}}]}}
  observer: hook
  metadata: {{enableStats: true, observer.period: 1s}}
- name: denied
  addr: 127.0.0.1:{denied_port}
  handler: {{type: tcp}}
  forwarder: {{nodes: [{{name: echo, addr: {echo}}}]}}
  observer: hook-denied
observers:
- name: hook
  plugin:
    type: wasm
    path: {webhook}
    connect: [127.0.0.1:{obs_port}]
    config: {{url: http://127.0.0.1:{obs_port}/observe}}
- name: hook-denied
  plugin:
    type: wasm
    path: {webhook}
    connect: [127.0.0.1:{obs_port}]
    config: {{url: http://127.0.0.1:{other_port}/observe}}
",
        ),
    );
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(port);
    echo_through(port, 300);
    wait_for("stats through the webhook", || {
        got.lock()
            .unwrap()
            .iter()
            .any(|b| stats_of(&b["events"][0]) == Some((2, 0, 300, 300, 0)))
            .then_some(())
    });
    assert_eq!(
        got.lock().unwrap()[0]["events"][0]["status"]["state"],
        "running"
    );
    // The second observer's URL is not in its `connect` list.
    g.wait_log("observer hook-denied: plugin");
    assert!(other.lock().unwrap().is_empty());
}

/// A web API update of the observer a service names replaces the sink
/// while the service runs: no restart, so no new status events, and the
/// counters go on from where they were.
#[test]
fn api_update_of_an_observer_swaps_the_sink_live() {
    let echo = tcp_echo_server();
    let (port, api) = (free_port(), free_port());
    let (a_port, a) = observer_server(0);
    let (b_port, b) = observer_server(0);
    let dir = TempDir::new("obs-swap");
    let file = dir.write(
        "gost.yaml",
        &format!(
            "services:
- name: fwd
  addr: 127.0.0.1:{port}
  handler: {{type: tcp}}
  forwarder: {{nodes: [{{name: echo, addr: {echo}}}]}}
  observer: web
  metadata: {{enableStats: true, observer.period: 1s}}
observers:
- name: web
  plugin: {{type: http, addr: 127.0.0.1:{a_port}/observe}}
api:
  addr: 127.0.0.1:{api}
",
        ),
    );
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(api);
    g.wait_tcp(port);
    echo_through(port, 100);
    let has_stats = |got: &Arc<Mutex<Vec<Value>>>, conns: u64| {
        got.lock()
            .unwrap()
            .iter()
            .any(|b| stats_of(&b["events"][0]).is_some_and(|s| s.0 == conns && s.1 == 0))
    };
    wait_for("stats at the first sink", || has_stats(&a, 2).then_some(()));

    let body = json!({"name": "web",
        "plugin": {"type": "http", "addr": format!("127.0.0.1:{b_port}/observe")}});
    let (code, resp) = http_request(
        api,
        "PUT",
        "/config/observers/web",
        Some(&body.to_string()),
        None,
    );
    assert_eq!(code, 200, "{resp}");
    echo_through(port, 100);
    wait_for("stats at the new sink", || has_stats(&b, 3).then_some(()));
    let at_b = b.lock().unwrap().clone();
    assert!(
        at_b.iter().all(|b| b["events"][0]["type"] == "stats"),
        "the service was restarted: {at_b:?}"
    );
    assert!(!has_stats(&a, 3), "the old sink still gets reports");
    let svc = wait_service(api, "fwd", |_| true);
    assert_eq!(svc["status"]["state"], "ready", "{svc}");
    let listening = svc["status"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["msg"].as_str().unwrap_or("").contains("listening"))
        .count();
    assert_eq!(listening, 1, "{svc}");
}

/// The latest `handler` stats event for each client, from all batches.
fn client_stats(got: &Arc<Mutex<Vec<Value>>>, service: &str) -> Vec<(String, Value)> {
    let mut latest: Vec<(String, Value)> = Vec::new();
    for batch in got.lock().unwrap().iter() {
        for ev in batch["events"].as_array().into_iter().flatten() {
            if ev["kind"] != "handler" || ev["service"] != service {
                continue;
            }
            let client = ev["client"].as_str().unwrap_or("").to_string();
            latest.retain(|(c, _)| *c != client);
            latest.push((client, ev["stats"].clone()));
        }
    }
    latest.sort_by(|a, b| a.0.cmp(&b.0));
    latest
}

fn conns(stats: &[(String, Value)]) -> Vec<(String, u64, u64, u64)> {
    stats
        .iter()
        .map(|(c, s)| {
            let n = |k: &str| s[k].as_u64().unwrap();
            (
                c.clone(),
                n("totalConns"),
                n("currentConns"),
                n("totalErrs"),
            )
        })
        .collect()
}

/// GOST's handler-level observer: each authenticated client's connections
/// and bytes as `handler` events; without an auther, the anonymous client.
#[test]
fn handler_observer_reports_per_client() {
    let body = "per-client body";
    let origin = http_origin("127.0.0.1:0", "per-client body");
    let (socks, http) = (free_port(), free_port());
    let (obs_port, got) = observer_server(0);
    let dir = TempDir::new("obs-handler");
    let file = dir.write(
        "gost.yaml",
        &format!(
            "services:
- name: s5
  addr: 127.0.0.1:{socks}
  handler:
    type: socks5
    auther: users
    observer: web
    metadata: {{observer.period: 1s}}
- name: h
  addr: 127.0.0.1:{http}
  handler:
    type: http
    observer: web
    metadata: {{observePeriod: 1s}}
authers:
- name: users
  auths: [{{username: alice, password: a}}, {{username: bob, password: b}}]
observers:
- name: web
  plugin: {{type: http, addr: 127.0.0.1:{obs_port}/observe}}
",
        ),
    );
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(socks);
    g.wait_tcp(http);
    let url = format!("http://{origin}/");
    for user in ["alice:a", "alice:a", "bob:b"] {
        let proxy = format!("socks5://{user}@127.0.0.1:{socks}");
        assert_eq!(curl_body(&["-x", &proxy, &url]), (true, body.into()));
    }
    let bad = format!("socks5://alice:wrong@127.0.0.1:{socks}");
    assert!(!curl_body(&["-x", &bad, &url]).0);
    for _ in 0..2 {
        let proxy = format!("http://127.0.0.1:{http}");
        assert_eq!(curl_body(&["-x", &proxy, &url]), (true, body.into()));
    }
    let socks_clients = wait_for("per-client stats of s5", || {
        let s = client_stats(&got, "s5");
        (conns(&s) == [("alice".to_string(), 2, 0, 0), ("bob".to_string(), 1, 0, 0)]).then_some(s)
    });
    for (client, s) in &socks_clients {
        let per_conn = if client == "alice" { 2 } else { 1 };
        assert!(
            s["outputBytes"].as_u64().unwrap() > (per_conn * body.len()) as u64,
            "{client}: {s}"
        );
        assert!(s["inputBytes"].as_u64().unwrap() > 0, "{client}: {s}");
    }
    // Without an auther every client is the anonymous one; the probes of
    // wait_tcp count too, as they reach the handler.
    wait_for("anonymous stats of h", || {
        let s = conns(&client_stats(&got, "h"));
        (s.len() == 1 && s[0].0.is_empty() && s[0].1 == 3 && s[0].2 == 0).then_some(())
    });
    let raw = got.lock().unwrap().clone();
    let anon = raw
        .iter()
        .flat_map(|b| b["events"].as_array().cloned().unwrap_or_default())
        .find(|e| e["service"] == "h")
        .unwrap();
    assert!(anon.get("client").is_none(), "empty client omitted: {anon}");
    assert_eq!(anon["type"], "stats");
}

/// The same through wasm on both ends: the example SOCKS5 plugin
/// authenticates through the host's auther, and the stats-jsonl plugin
/// receives the per-client events.
#[test]
fn wasm_handler_clients_reach_a_wasm_observer() {
    let origin = http_origin("127.0.0.1:0", "wasm clients");
    let port = free_port();
    let dir = TempDir::new("obs-wasm-handler");
    let data = TempDir::new("obs-wasm-handler-data");
    let file = dir.write(
        "gost.yaml",
        &format!(
            "services:
- name: ws
  addr: 127.0.0.1:{port}
  handler:
    type: wasm
    auther: users
    observer: jsonl
    metadata: {{observer.period: 1s, observer.resetTraffic: true}}
    plugin: {{type: wasm, path: {}}}
authers:
- name: users
  auths: [{{username: carol, password: c}}]
observers:
- name: jsonl
  plugin: {{type: wasm, path: {}, dir: {}, config: {{file: events.jsonl}}}}
",
            plugin_wasm("socks5"),
            plugin_wasm("stats-jsonl"),
            data.0.display()
        ),
    );
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(port);
    let proxy = format!("socks5://carol:c@127.0.0.1:{port}");
    let url = format!("http://{origin}/");
    assert_eq!(
        curl_body(&["-x", &proxy, &url]),
        (true, "wasm clients".into()),
        "{}",
        g.log()
    );
    let out = data.path("events.jsonl");
    let carol = || -> Vec<Value> {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
            .filter(|e| e["kind"] == "handler" && e["client"] == "carol")
            .collect()
    };
    let events = wait_for("carol's connection reported closed", || {
        let ev = carol();
        ev.iter()
            .any(|e| e["stats"]["currentConns"] == 0)
            .then_some(ev)
    });
    let last = events.last().unwrap();
    assert_eq!(last["service"], "ws");
    let s = stats_of(last).unwrap();
    assert_eq!((s.0, s.1, s.4), (1, 0, 0), "{last}");
    // With resetTraffic each event carries the bytes since the last one.
    let sum = |k: &str| -> u64 { events.iter().map(|e| e["stats"][k].as_u64().unwrap()).sum() };
    assert!(
        sum("inputBytes") > 0 && sum("outputBytes") > 0,
        "{events:?}"
    );
}

/// The Python example observer (componentize-py), as a user would run it:
/// status events and a running tally of stats reports in its file.
#[test]
fn python_observer_tallies_events() {
    let plugin = python_plugin("tally", "observer");
    let echo = tcp_echo_server();
    let port = free_port();
    let dir = TempDir::new("obs-python");
    let data = TempDir::new("obs-python-data");
    let file = dir.write(
        "gost.yaml",
        &format!(
            "services:
- name: fwd
  addr: 127.0.0.1:{port}
  handler: {{type: tcp}}
  forwarder: {{nodes: [{{name: echo, addr: {echo}}}]}}
  observer: py
  metadata: {{enableStats: true, observer.period: 1s}}
observers:
- name: py
  plugin: {{type: wasm, path: {plugin}, dir: {}, config: {{file: tally.jsonl}}}}
",
            data.0.display()
        ),
    );
    let g = Gost::start(&["-C", &file]);
    // The interpreter inside the component is large: compiling it on the
    // first run takes much longer than a Rust plugin.
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "never listened: {}",
            g.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
    echo_through(port, 700);
    let out = data.path("tally.jsonl");
    let read = || -> Vec<Value> {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    };
    let line = wait_for("a stats line with both connections", || {
        read()
            .into_iter()
            .find(|e| e["totalConns"] == 2 && e["currentConns"] == 0)
    });
    assert_eq!(line["inputBytes"], 700, "{line}");
    assert_eq!(line["outputBytes"], 700, "{line}");
    assert_eq!(line["kind"], "service");
    let states: Vec<Value> = read()
        .iter()
        .filter_map(|e| e.get("state").cloned())
        .collect();
    assert_eq!(states, [json!("running"), json!("ready")]);
    echo_through(port, 10);
    wait_for("the tally to count a second report", || {
        read().iter().any(|e| e["reports"] == 2).then_some(())
    });
}
