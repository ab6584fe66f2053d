//! Service status, events, web API, hooks, graceful stop and `--`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gost_e2e::*;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn api_shows_status_events_as_gost_does() {
    let echo = tcp_echo_server();
    let (port, api) = (free_port(), free_port());
    let before = now();
    let g = Gost::start(&[
        "-L",
        &format!("tcp://127.0.0.1:{port}/{echo}"),
        "-api",
        &format!("127.0.0.1:{api}"),
    ]);
    g.wait_tcp(api);
    let svc = wait_service(api, "service-0", |s| s["status"]["state"] == "ready");
    let status = &svc["status"];
    let created = status["createTime"].as_i64().unwrap();
    assert!(created >= before && created <= now(), "{status}");
    let msgs: Vec<&str> = status["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["msg"].as_str().unwrap())
        .collect();
    assert_eq!(
        msgs,
        [
            "service service-0 is running".to_string(),
            "service service-0 is ready".to_string(),
            format!("service service-0 is listening on 127.0.0.1:{port}"),
        ]
    );
    for e in status["events"].as_array().unwrap() {
        assert!(e["time"].as_i64().unwrap() >= before);
    }
    // Without enableStats there are no stats, as in GOST.
    assert!(status.get("stats").is_none(), "{status}");
    assert_eq!(svc["handler"]["type"], "tcp");
    assert_eq!(svc["forwarder"]["nodes"][0]["addr"], echo.to_string());

    let (code, yaml) = http_get(api, "/config?format=yaml", None);
    assert_eq!(code, 200);
    let doc: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(
        doc["services"][0]["status"]["state"].as_str(),
        Some("ready")
    );
}

#[test]
fn api_requires_auth_when_configured_and_honours_path_prefix() {
    let echo = tcp_echo_server();
    let (port, api) = (free_port(), free_port());
    let g = Gost::start(&[
        "-L",
        &format!("tcp://127.0.0.1:{port}/{echo}"),
        "-api",
        &format!("admin:s3cret@127.0.0.1:{api}?pathPrefix=/gost"),
    ]);
    g.wait_tcp(api);
    let (code, body) = http_get(api, "/gost/config", None);
    assert_eq!(code, 401, "{body}");
    let err: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["code"], 401);
    assert_eq!(
        http_get(api, "/gost/config", Some(("admin", "wrong"))).0,
        401
    );
    let (code, body) = http_get(api, "/gost/config", Some(("admin", "s3cret")));
    assert_eq!(code, 200, "{body}");
    let cfg: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(cfg["services"][0]["name"], "service-0");
    assert_eq!(http_get(api, "/config", Some(("admin", "s3cret"))).0, 404);
}

fn hook(file: &str, word: &str) -> String {
    format!("sh -c 'echo {word} >> {file}'")
}

#[test]
fn hooks_run_in_order_around_start_and_graceful_stop() {
    let dir = TempDir::new("hooks");
    let out = dir.path("hooks.txt");
    let echo = tcp_echo_server();
    let port = free_port();
    let cfg = format!(
        "services:\n- name: svc\n  addr: 127.0.0.1:{port}\n  handler: {{type: tcp}}\n  listener: {{type: tcp}}\n  forwarder:\n    nodes: [{{name: t, addr: \"{echo}\"}}]\n  metadata:\n    preUp: [\"{}\", \"{}\"]\n    postUp: [\"{}\"]\n    preDown: [\"{}\"]\n    postDown: [\"{}\"]\n",
        hook(&out, "pre-up-1"),
        hook(&out, "pre-up-2"),
        hook(&out, "post-up"),
        hook(&out, "pre-down"),
        hook(&out, "post-down"),
    );
    let file = dir.write("gost.yaml", &cfg);
    let mut g = Gost::start(&["-C", &file]);
    g.wait_log("listening");
    let up = std::fs::read_to_string(&out).unwrap();
    assert_eq!(up, "pre-up-1\npre-up-2\npost-up\n");
    assert!(g.stop().success(), "{}", g.log());
    let all = std::fs::read_to_string(&out).unwrap();
    assert_eq!(all, "pre-up-1\npre-up-2\npost-up\npre-down\npost-down\n");
}

#[test]
fn failing_pre_up_fails_only_that_service() {
    let echo = tcp_echo_server();
    let (bad, good, api) = (free_port(), free_port(), free_port());
    let cfg = format!(
        "services:\n- name: bad\n  addr: 127.0.0.1:{bad}\n  handler: {{type: tcp}}\n  forwarder: {{nodes: [{{name: t, addr: \"{echo}\"}}]}}\n  metadata: {{preUp: [\"false\"]}}\n- name: good\n  addr: 127.0.0.1:{good}\n  handler: {{type: tcp}}\n  forwarder: {{nodes: [{{name: t, addr: \"{echo}\"}}]}}\napi: {{addr: \"127.0.0.1:{api}\"}}\n"
    );
    let dir = TempDir::new("preup");
    let file = dir.write("gost.yaml", &cfg);
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(api);
    let svc = wait_service(api, "bad", |s| s["status"]["state"] == "failed");
    let events = svc["status"]["events"].to_string();
    assert!(events.contains("preUp command `false`"), "{events}");
    assert!(g.log().contains("preUp"), "{}", g.log());
    wait_service(api, "good", |s| s["status"]["state"] == "ready");
    let mut c = TcpStream::connect(("127.0.0.1", good)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
}

#[test]
fn graceful_stop_drains_live_connections_and_refuses_new_ones() {
    let echo = tcp_echo_server();
    let port = free_port();
    let mut g = Gost::start(&["-L", &format!("tcp://127.0.0.1:{port}/{echo}")]);
    g.wait_log("listening");
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(b"one").unwrap();
    let mut buf = [0u8; 3];
    c.read_exact(&mut buf).unwrap();
    g.signal(libc::SIGTERM);
    g.wait_log("shutting down");
    // The live connection still works during the grace period...
    c.write_all(b"two").unwrap();
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"two");
    // ...while the listener is gone.
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(start.elapsed() < TIMEOUT, "listener still open");
        thread::sleep(Duration::from_millis(20));
    }
    drop(c);
    let status = g.wait_exit();
    assert!(status.success(), "{}", g.log());
}

#[test]
fn sigterm_as_soon_as_the_port_accepts_is_a_graceful_stop() {
    let echo = tcp_echo_server();
    // The signal races gost's start-up: sent the moment the port accepts,
    // with no pause, over a few rounds.
    for _ in 0..5 {
        let port = free_port();
        let mut g = Gost::start(&["-L", &format!("tcp://127.0.0.1:{port}/{echo}")]);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "port {port} never opened"
            );
        }
        let status = g.stop();
        assert!(status.success(), "{status:?}\n{}", g.log());
    }
}

fn child_pids(pid: i32) -> Vec<i32> {
    let text =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    text.split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn double_dash_runs_each_group_in_its_own_process() {
    let echo = tcp_echo_server();
    let (p1, p2) = (free_port(), free_port());
    let mut g = Gost::start(&[
        "-L",
        &format!("tcp://127.0.0.1:{p1}/{echo}"),
        "--",
        "-L",
        &format!("tcp://127.0.0.1:{p2}/{echo}"),
    ]);
    g.wait_tcp(p1);
    g.wait_tcp(p2);
    let children = child_pids(g.pid());
    assert_eq!(children.len(), 2, "children: {children:?}");
    for c in &children {
        let environ = std::fs::read(format!("/proc/{c}/environ")).unwrap();
        let env = String::from_utf8_lossy(&environ);
        assert!(env.contains("_GOST_ID="), "child {c} has no _GOST_ID");
    }
    assert!(g.stop().success(), "{}", g.log());
    for c in children {
        assert!(
            !std::path::Path::new(&format!("/proc/{c}")).exists() || is_zombie(c),
            "child {c} still running"
        );
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.contains(") Z "))
        .unwrap_or(true)
}

#[test]
fn double_dash_exits_non_zero_when_a_child_fails() {
    let echo = tcp_echo_server();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    let p1 = free_port();
    let mut g = Gost::start(&[
        "-L",
        &format!("tcp://127.0.0.1:{p1}/{echo}"),
        "--",
        "-L",
        &format!("tcp://127.0.0.1:{busy}/{echo}"),
    ]);
    let status = g.wait_exit();
    assert!(!status.success(), "{}", g.log());
    assert!(g.log().contains("cannot listen"), "{}", g.log());
}

#[test]
fn api_listens_on_a_unix_socket() {
    let echo = tcp_echo_server();
    let port = free_port();
    let dir = TempDir::new("apiunix");
    let sock = dir.path("api.sock");
    let g = Gost::start(&[
        "-L",
        &format!("tcp://127.0.0.1:{port}/{echo}"),
        "-api",
        &format!("unix://{sock}"),
    ]);
    g.wait_log("api listening");
    let (code, body) = http_get_unix(&sock, "/config");
    assert_eq!(code, 200, "{body}");
    let cfg: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(cfg["api"]["addr"], format!("unix://{sock}"));
}
