//! The web API's live configuration: create, read, update and delete of
//! each object kind while an unrelated connection keeps flowing, errors in
//! GOST's shape, saving and reloading, authentication.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use gost_e2e::*;

fn call(api: u16, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let text = body.map(|b| b.to_string());
    let (code, body) = http_request(api, method, path, text.as_deref(), None);
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (code, v)
}

fn ok(api: u16, method: &str, path: &str, body: Option<Value>) {
    let (code, v) = call(api, method, path, body);
    assert_eq!((code, &v), (200, &json!({"msg": "OK"})), "{method} {path}");
}

fn refused(api: u16, method: &str, path: &str, body: Option<Value>, code: u64) -> String {
    let (status, v) = call(api, method, path, body);
    assert_eq!(status, 400, "{method} {path}: {v}");
    assert_eq!(v["code"], code, "{method} {path}: {v}");
    v["msg"].as_str().unwrap().to_string()
}

/// A client connection that must survive everything the test does.
struct Live(TcpStream);

impl Live {
    fn open(port: u16) -> Live {
        let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut l = Live(c);
        l.check(b"hello");
        l
    }

    fn check(&mut self, msg: &[u8]) {
        self.0.write_all(msg).unwrap();
        let mut buf = vec![0; msg.len()];
        self.0.read_exact(&mut buf).unwrap();
        assert_eq!(buf, msg);
    }
}

fn greeting(port: u16) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut s = String::new();
    c.read_to_string(&mut s).unwrap();
    s
}

fn wait_closed(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(start.elapsed() < TIMEOUT, "port {port} still open");
        thread::sleep(Duration::from_millis(20));
    }
}

fn forward(name: &str, port: u16, target: &str) -> Value {
    json!({
        "name": name,
        "addr": format!("127.0.0.1:{port}"),
        "handler": {"type": "tcp"},
        "listener": {"type": "tcp"},
        "forwarder": {"nodes": [{"name": "t", "addr": target}]},
    })
}

/// gost with one service `keep` forwarding to an echo server, and the API.
fn start() -> (Gost, u16, u16) {
    let echo = tcp_echo_server();
    let (keep, api) = (free_port(), free_port());
    let g = Gost::start(&[
        "-L",
        &format!("tcp://127.0.0.1:{keep}/{echo}?enableStats=true"),
        "-api",
        &format!("127.0.0.1:{api}"),
    ]);
    g.wait_tcp(api);
    g.wait_tcp(keep);
    (g, keep, api)
}

fn service(api: u16, name: &str) -> Value {
    let (code, v) = call(api, "GET", &format!("/config/services/{name}"), None);
    assert_eq!(code, 200);
    v["data"].clone()
}

#[test]
fn services_are_created_updated_and_deleted_live() {
    let (g, keep, api) = start();
    let mut live = Live::open(keep);
    let created = service(api, "service-0")["status"]["createTime"].clone();

    let (a, b) = (tcp_greeter("A"), tcp_greeter("B"));
    let port = free_port();
    ok(
        api,
        "POST",
        "/config/services",
        Some(forward("web", port, &a.to_string())),
    );
    g.wait_tcp(port);
    assert_eq!(greeting(port), "A");
    let web = service(api, "web");
    assert_eq!(web["addr"], format!("127.0.0.1:{port}"));
    assert_eq!(web["status"]["state"], "ready", "{web}");
    let (_, list) = call(api, "GET", "/config/services", None);
    assert_eq!(list["data"]["count"], 2, "{list}");

    // Same address, new target: the handler is swapped, the listener and
    // the status stay, and a connection already open keeps working.
    let echo = tcp_echo_server();
    ok(
        api,
        "PUT",
        "/config/services/web",
        Some(forward("web", port, &echo.to_string())),
    );
    let mut on_web = Live::open(port);
    ok(
        api,
        "PUT",
        "/config/services/web",
        Some(forward("ignored", port, &b.to_string())),
    );
    assert_eq!(greeting(port), "B");
    on_web.check(b"still here");
    assert_eq!(
        service(api, "web")["forwarder"]["nodes"][0]["addr"],
        b.to_string()
    );
    assert_eq!(service(api, "web")["name"], "web");

    // A new address restarts the service there.
    let port2 = free_port();
    ok(
        api,
        "PUT",
        "/config/services/web",
        Some(forward("web", port2, &a.to_string())),
    );
    wait_closed(port);
    assert_eq!(greeting(port2), "A");

    ok(api, "DELETE", "/config/services/web", None);
    wait_closed(port2);
    let (code, v) = call(api, "GET", "/config/services/web", None);
    assert_eq!((code, v), (200, json!({})));
    refused(api, "DELETE", "/config/services/web", None, 40004);

    live.check(b"after all that");
    let keep_svc = service(api, "service-0");
    assert_eq!(keep_svc["status"]["createTime"], created);
    assert_eq!(keep_svc["status"]["stats"]["currentConns"], 1, "{keep_svc}");
    assert_eq!(keep_svc["status"]["state"], "ready");
}

#[test]
fn hops_and_authers_change_live_without_restarting_services() {
    let (g, keep, api) = start();
    let mut live = Live::open(keep);
    let (a, b) = (tcp_greeter("A"), tcp_greeter("B"));
    let hop = |target: &str| json!({"name": "h1", "nodes": [{"name": "n", "addr": target}]});
    ok(api, "POST", "/config/hops", Some(hop(&a.to_string())));
    let (_, v) = call(api, "GET", "/config/hops/h1", None);
    assert_eq!(v["data"]["nodes"][0]["addr"], a.to_string());
    let port = free_port();
    ok(
        api,
        "POST",
        "/config/services",
        Some(json!({"name": "fw", "addr": format!("127.0.0.1:{port}"),
            "handler": {"type": "tcp"}, "forwarder": {"hop": "h1"}})),
    );
    g.wait_tcp(port);
    assert_eq!(greeting(port), "A");
    let created = service(api, "fw")["status"]["createTime"].clone();
    ok(api, "PUT", "/config/hops/h1", Some(hop(&b.to_string())));
    assert_eq!(greeting(port), "B");
    let events = service(api, "fw")["status"]["events"].to_string();
    assert_eq!(service(api, "fw")["status"]["createTime"], created);
    assert!(!events.contains("closed"), "{events}");
    // A hop in use cannot go; one not in use can.
    let msg = refused(api, "DELETE", "/config/hops/h1", None, 40001);
    assert!(msg.contains("h1"), "{msg}");
    ok(
        api,
        "POST",
        "/config/hops",
        Some(json!({"name": "spare", "nodes": [{"name": "n", "addr": a.to_string()}]})),
    );
    ok(api, "DELETE", "/config/hops/spare", None);

    // Authers: a proxy's password changes for new connections.
    ok(
        api,
        "POST",
        "/config/authers",
        Some(json!({"name": "users", "auths": [{"username": "u", "password": "one"}]})),
    );
    let proxy = free_port();
    ok(
        api,
        "POST",
        "/config/services",
        Some(
            json!({"name": "proxy", "addr": format!("127.0.0.1:{proxy}"),
            "handler": {"type": "http", "auther": "users"}}),
        ),
    );
    g.wait_tcp(proxy);
    let target = tcp_echo_server();
    let connect = |pass: &str| -> String {
        use base64::Engine;
        let mut c = TcpStream::connect(("127.0.0.1", proxy)).unwrap();
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("u:{pass}"));
        write!(c, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {token}\r\n\r\n").unwrap();
        let mut buf = [0u8; 12];
        c.read_exact(&mut buf).unwrap();
        String::from_utf8_lossy(&buf).into_owned()
    };
    assert_eq!(connect("one"), "HTTP/1.1 200");
    ok(
        api,
        "PUT",
        "/config/authers/users",
        Some(json!({"auths": [{"username": "u", "password": "two"}]})),
    );
    assert_eq!(connect("one"), "HTTP/1.1 407");
    assert_eq!(connect("two"), "HTTP/1.1 200");
    refused(api, "DELETE", "/config/authers/users", None, 40001);
    ok(api, "DELETE", "/config/services/proxy", None);
    ok(api, "DELETE", "/config/authers/users", None);

    // Admissions: refusing and then admitting the client again, for new
    // connections only, with no restart.
    ok(
        api,
        "POST",
        "/config/admissions",
        Some(json!({"name": "adm", "matchers": ["127.0.0.1"]})),
    );
    ok(
        api,
        "PUT",
        "/config/services/fw",
        Some(json!({"name": "fw", "addr": format!("127.0.0.1:{port}"),
            "handler": {"type": "tcp"}, "forwarder": {"hop": "h1"}, "admission": "adm"})),
    );
    assert_eq!(greeting(port), "", "denied by the admission");
    ok(
        api,
        "PUT",
        "/config/admissions/adm",
        Some(json!({"matchers": ["10.0.0.0/8"]})),
    );
    assert_eq!(greeting(port), "B");
    assert_eq!(service(api, "fw")["status"]["createTime"], created);

    // Chains: stored and listed.
    ok(
        api,
        "POST",
        "/config/chains",
        Some(json!({"name": "c1", "hops": [{"name": "h1"}]})),
    );
    let (_, v) = call(api, "GET", "/config/chains", None);
    assert_eq!(v["data"]["count"], 1, "{v}");
    ok(api, "PUT", "/config/chains/c1", Some(json!({"hops": []})));
    ok(api, "DELETE", "/config/chains/c1", None);
    live.check(b"still flowing");
}

#[test]
fn kinds_this_build_cannot_run_are_refused_and_change_nothing() {
    let (_g, keep, api) = start();
    let mut live = Live::open(keep);
    let before = api_config(api);
    {
        let kind = "quotas";
        let msg = refused(
            api,
            "POST",
            &format!("/config/{kind}"),
            Some(json!({"name": "x"})),
            40001,
        );
        assert!(msg.contains(kind), "{kind}: {msg}");
        let (code, v) = call(api, "GET", &format!("/config/{kind}"), None);
        assert_eq!((code, &v["data"]["count"]), (200, &json!(0)), "{kind}");
        refused(
            api,
            "PUT",
            &format!("/config/{kind}/x"),
            Some(json!({})),
            40004,
        );
        refused(api, "DELETE", &format!("/config/{kind}/x"), None, 40004);
    }
    let mut after = api_config(api);
    after["services"][0]["status"] = before["services"][0]["status"].clone();
    assert_eq!(after, before);
    live.check(b"ok");
}

#[test]
fn bad_requests_get_gost_errors_and_change_nothing() {
    let (_g, keep, api) = start();
    let mut live = Live::open(keep);
    let echo = tcp_echo_server().to_string();
    let port = free_port();

    let (code, body) = http_request(api, "POST", "/config/services", Some("{\"name\":"), None);
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("40001") && body.contains("invalid JSON"),
        "{body}"
    );
    refused(api, "POST", "/config/services", Some(json!([1, 2])), 40001);
    let msg = refused(
        api,
        "POST",
        "/config/services",
        Some(json!({"addr": ":1"})),
        40001,
    );
    assert_eq!(msg, "service name is required");
    let msg = refused(
        api,
        "POST",
        "/config/services",
        Some(json!({"name": "x", "addr": 5})),
        40001,
    );
    assert!(msg.contains("invalid service"), "{msg}");
    let msg = refused(
        api,
        "POST",
        "/config/services",
        Some(forward("a/b", port, &echo)),
        40001,
    );
    assert!(msg.contains("must not contain"), "{msg}");
    // An escaped slash in the path is a slash in the name.
    let msg = refused(
        api,
        "PUT",
        "/config/hops/a%2Fb",
        Some(json!({"nodes": [{"name": "n", "addr": echo}]})),
        40001,
    );
    assert!(msg.contains("must not contain"), "{msg}");
    refused(api, "DELETE", "/config/hops/..%2Fx", None, 40004);
    let msg = refused(
        api,
        "POST",
        "/config/services",
        Some(forward("service-0", port, &echo)),
        40002,
    );
    assert_eq!(msg, "service service-0 already exists");
    let msg = refused(
        api,
        "PUT",
        "/config/services/nope",
        Some(forward("nope", port, &echo)),
        40004,
    );
    assert_eq!(msg, "service nope not found");
    let mut svc = forward("x", port, &echo);
    svc["forwarder"] = json!({"hop": "missing"});
    let msg = refused(api, "POST", "/config/services", Some(svc), 40001);
    assert!(msg.contains("missing"), "{msg}");
    let mut svc = forward("x", port, &echo);
    svc["handler"] = json!({"type": "router"});
    let msg = refused(api, "POST", "/config/services", Some(svc), 40001);
    assert!(msg.contains("'router'"), "{msg}");
    // Unknown fields are ignored, as GOST's decoder does.
    let mut svc = forward("extra", port, &echo);
    svc["whatever"] = json!(1);
    ok(api, "POST", "/config/services", Some(svc));

    // A port in use: creation fails, and nothing is half-created.
    let msg = {
        let (code, v) = call(
            api,
            "POST",
            "/config/services",
            Some(forward("clash", keep, &echo)),
        );
        assert_eq!((code, &v["code"]), (500, &json!(40003)), "{v}");
        v["msg"].as_str().unwrap().to_string()
    };
    assert!(msg.contains("clash"), "{msg}");
    assert_eq!(service(api, "clash"), Value::Null);

    let huge = format!("{{\"name\":\"big\",\"x\":\"{}\"}}", "a".repeat(2 << 20));
    let (code, _) = http_request(api, "POST", "/config/services", Some(&huge), None);
    assert_eq!(code, 413);
    assert_eq!(call(api, "GET", "/config/nothing", None).0, 404);

    // Concurrent creations of one name: exactly one wins.
    let results: Vec<u16> = (0..6)
        .map(|_| {
            let body = forward("race", free_port(), &echo).to_string();
            thread::spawn(move || {
                http_request(api, "POST", "/config/services", Some(&body), None).0
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert_eq!(
        results.iter().filter(|c| **c == 200).count(),
        1,
        "{results:?}"
    );
    assert_eq!(
        results.iter().filter(|c| **c == 400).count(),
        5,
        "{results:?}"
    );
    live.check(b"ok");
}

#[test]
fn save_writes_the_running_config_and_it_loads_back() {
    let dir = TempDir::new("save");
    let echo = tcp_echo_server();
    let (keep, api) = (free_port(), free_port());
    let file = dir.write(
        "gost.yaml",
        &format!("services:\n- name: keep\n  addr: 127.0.0.1:{keep}\n  handler: {{type: tcp}}\n  forwarder: {{nodes: [{{name: t, addr: \"{echo}\"}}]}}\napi: {{addr: \"127.0.0.1:{api}\"}}\n"),
    );
    let mut g = Gost::start(&["-C", &file]);
    g.wait_tcp(api);
    let port = free_port();
    ok(
        api,
        "POST",
        "/config/services",
        Some(forward("added", port, &echo.to_string())),
    );
    // The file holds every password: a save keeps its mode.
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    ok(api, "POST", "/config", None);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the save kept the mode");
    let saved: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(saved["services"][1]["name"].as_str(), Some("added"));
    assert!(
        saved["services"][0].get("status").is_none(),
        "status is not saved"
    );
    let json_path = dir.path("copy.json");
    ok(api, "POST", &format!("/config?path={json_path}"), None);
    let copy: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(copy["services"][1]["addr"], format!("127.0.0.1:{port}"));
    let names: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "no temporary files left: {names:?}");
    let missing = dir.path("missing/x.yaml");
    let (code, v) = call(api, "POST", &format!("/config?path={missing}"), None);
    assert_eq!((code, &v["code"]), (500, &json!(40005)), "{v}");
    // Outside the config's directory: refused unless api.savePathAnywhere.
    let (code, v) = call(api, "POST", "/config?path=/nonexistent-dir/x.yaml", None);
    assert_eq!((code, &v["code"]), (403, &json!(40005)), "{v}");
    assert!(
        v["msg"].as_str().unwrap().contains("savePathAnywhere"),
        "{v}"
    );
    assert!(g.stop().success());

    // The saved file starts the same services.
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(api);
    g.wait_tcp(port);
    let mut c = Live::open(port);
    c.check(b"round trip");

    // Reload: the file changes, POST /config/reload applies the difference.
    let port3 = free_port();
    let text = std::fs::read_to_string(&file).unwrap();
    let text = text.replace(&format!("127.0.0.1:{port}"), &format!("127.0.0.1:{port3}"));
    std::fs::write(&file, text).unwrap();
    ok(api, "POST", "/config/reload", None);
    g.wait_tcp(port3);
    wait_closed(port);
    std::fs::write(&file, "services: [{name: bad, addr: 'nope'}]\n").unwrap();
    refused(api, "POST", "/config/reload", None, 40001);
    g.wait_tcp(port3);
}

#[test]
fn api_auther_protects_every_route_and_follows_changes() {
    let dir = TempDir::new("apiauth");
    let api = free_port();
    let file = dir.write(
        "gost.yaml",
        &format!("authers:\n- name: admins\n  auths: [{{username: root, password: pw}}]\napi:\n  addr: 127.0.0.1:{api}\n  auther: admins\n"),
    );
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(api);
    for (method, path) in [
        ("GET", "/config"),
        ("POST", "/config"),
        ("GET", "/config/services"),
        ("DELETE", "/config/authers/admins"),
    ] {
        let (code, body) = http_request(api, method, path, None, None);
        assert_eq!(code, 401, "{method} {path}: {body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"code": 401, "msg": "Unauthorized"})
        );
    }
    let root = Some(("root", "pw"));
    assert_eq!(http_request(api, "GET", "/config", None, root).0, 200);
    let body = json!({"auths": [{"username": "root", "password": "new"}]}).to_string();
    assert_eq!(
        http_request(api, "PUT", "/config/authers/admins", Some(&body), root).0,
        200
    );
    assert_eq!(http_request(api, "GET", "/config", None, root).0, 401);
    assert_eq!(
        http_request(api, "GET", "/config", None, Some(("root", "new"))).0,
        200
    );
}

#[test]
fn sighup_and_periodic_reload_apply_the_file() {
    let dir = TempDir::new("sighup");
    let echo = tcp_echo_server();
    let (a, b, c) = (free_port(), free_port(), free_port());
    let svc = |name: &str, port: u16| {
        format!("- name: {name}\n  addr: 127.0.0.1:{port}\n  handler: {{type: tcp}}\n  forwarder: {{nodes: [{{name: t, addr: \"{echo}\"}}]}}\n")
    };
    let file = dir.write("gost.yaml", &format!("services:\n{}", svc("a", a)));
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(a);
    let mut live = Live::open(a);
    std::fs::write(&file, format!("services:\n{}{}", svc("a", a), svc("b", b))).unwrap();
    g.signal(libc::SIGHUP);
    g.wait_tcp(b);
    live.check(b"unchanged service kept its connection");
    // Renamed on the same address: the old one goes, the new one binds.
    std::fs::write(&file, format!("services:\n{}{}", svc("a", a), svc("b2", b))).unwrap();
    g.signal(libc::SIGHUP);
    g.wait_log("\"service\":\"b2\"");
    Live::open(b).check(b"renamed");
    // A broken file is logged and the running config kept.
    std::fs::write(&file, "services: [{name: x, addr: 'bad'}]\n").unwrap();
    g.signal(libc::SIGHUP);
    g.wait_log("config reload failed");
    live.check(b"still");
    drop(g);

    std::fs::write(&file, format!("services:\n{}", svc("a", a))).unwrap();
    let g = Gost::start(&["-C", &file, "-R", "200ms"]);
    g.wait_tcp(a);
    std::fs::write(&file, format!("services:\n{}", svc("c", c))).unwrap();
    g.wait_tcp(c);
    wait_closed(a);
}

/// A config file with two forwarding services, `s1` and `s2`.
fn two_services(s1: (&str, &str), s2: (&str, &str), api: u16) -> String {
    let svc = |name: &str, (addr, target): (&str, &str)| {
        format!("- name: {name}\n  addr: \"{addr}\"\n  handler: {{type: tcp}}\n  forwarder: {{nodes: [{{name: t, addr: \"{target}\"}}]}}\n")
    };
    format!(
        "services:\n{}{}api: {{addr: \"127.0.0.1:{api}\"}}\n",
        svc("s1", s1),
        svc("s2", s2)
    )
}

#[test]
fn a_reload_whose_second_service_cannot_bind_changes_nothing() {
    let dir = TempDir::new("reload-bind");
    let (a, b) = (tcp_greeter("A"), tcp_greeter("B"));
    let (a, b) = (a.to_string(), b.to_string());
    let (p1, p2, api) = (free_port(), free_port(), free_port());
    let addr1 = format!("127.0.0.1:{p1}");
    let addr2 = format!("127.0.0.1:{p2}");
    let file = dir.write("gost.yaml", &two_services((&addr1, &a), (&addr2, &a), api));
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(api);
    g.wait_tcp(p1);
    g.wait_tcp(p2);
    let created = service(api, "s1")["status"]["createTime"].clone();
    let before = api_config(api);

    // s1 gets a new target, s2 moves to a port someone else holds: s2
    // cannot be bound, so s1 keeps its old target too.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    std::fs::write(&file, two_services((&addr1, &b), (&taken_addr, &a), api)).unwrap();
    let (code, v) = call(api, "POST", "/config/reload", None);
    assert_eq!((code, &v["code"]), (400, &json!(40001)), "{v}");
    let msg = v["msg"].as_str().unwrap();
    assert!(msg.contains("s2") && msg.contains(&taken_addr), "{msg}");
    assert_eq!(greeting(p1), "A");
    assert_eq!(greeting(p2), "A");
    let mut after = api_config(api);
    for i in 0..2 {
        after["services"][i]["status"] = before["services"][i]["status"].clone();
    }
    assert_eq!(after, before);
    assert_eq!(service(api, "s1")["status"]["createTime"], created);
    // The same by SIGHUP: logged, and the running config kept.
    g.signal(libc::SIGHUP);
    g.wait_log("config reload failed");
    assert_eq!(greeting(p1), "A");

    // Now s1 restarts on its own address (new metadata) and s2 moves to
    // all interfaces on its port, where [::1] is held by someone else.
    // Both must stop before their ports can be bound again; s2's bind
    // fails, and both come back on their previous config.
    let v6 = std::net::TcpListener::bind(("::1", p2)).unwrap();
    let text = two_services((&addr1, &b), (&format!(":{p2}"), &b), api).replacen(
        "  handler:",
        "  metadata: {enableStats: true}\n  handler:",
        1,
    );
    std::fs::write(&file, text).unwrap();
    let (code, v) = call(api, "POST", "/config/reload", None);
    assert_eq!((code, &v["code"]), (400, &json!(40001)), "{v}");
    assert!(v["msg"].as_str().unwrap().contains("s2"), "{v}");
    g.wait_tcp(p1);
    g.wait_tcp(p2);
    assert_eq!(greeting(p1), "A");
    assert_eq!(greeting(p2), "A");
    let mut after = api_config(api);
    for i in 0..2 {
        assert_eq!(after["services"][i]["status"]["state"], "ready", "{after}");
        after["services"][i]["status"] = before["services"][i]["status"].clone();
    }
    assert_eq!(after, before);
    g.wait_log("restarted on its previous config");

    // Once the port is free the same file applies.
    drop(v6);
    ok(api, "POST", "/config/reload", None);
    assert_eq!(greeting(p1), "B");
    assert_eq!(greeting(p2), "B");
    assert!(service(api, "s1")["status"]["stats"].is_object());
    drop(taken);
}

/// Every key of `want` is in `got` with the same value, recursively.
fn assert_has(got: &Value, want: &Value, at: &str) {
    match want {
        Value::Object(m) => {
            for (k, v) in m {
                assert_has(&got[k], v, &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(got, want, "{at}"),
    }
}

#[test]
fn every_kind_is_created_read_updated_and_deleted_while_traffic_flows() {
    let (_g, keep, api) = start();
    let mut live = Live::open(keep);
    let mut sent = b"hello".len() as u64;
    // The probe that waited for the port, and the live connection.
    let before = wait_service(api, "service-0", |s| {
        s["status"]["stats"]["totalConns"] == 2 && s["status"]["stats"]["currentConns"] == 1
    })["status"]
        .clone();
    let node = |addr: &str| json!([{"name": "n", "addr": addr}]);
    // kind, created, updated, a body with a field of the wrong type.
    let kinds = [
        (
            "bypasses",
            json!({"matchers": ["10.0.0.0/8"]}),
            json!({"matchers": ["example.com"], "whitelist": true}),
            json!({"matchers": 5}),
        ),
        (
            "admissions",
            json!({"matchers": ["10.0.0.0/8"]}),
            json!({"matchers": ["192.168.0.0/16"]}),
            json!({"whitelist": "yes"}),
        ),
        (
            "resolvers",
            json!({"nameservers": [{"addr": "127.0.0.1:5353"}]}),
            json!({"nameservers": [{"addr": "udp://127.0.0.1:5354", "prefer": "ipv6"}]}),
            json!({"nameservers": "127.0.0.1:53"}),
        ),
        (
            "hosts",
            json!({"mappings": [{"ip": "127.0.0.1", "hostname": "a.test"}]}),
            json!({"mappings": [{"ip": "127.0.0.2", "hostname": "b.test", "aliases": ["c.test"]}]}),
            json!({"mappings": {"ip": "127.0.0.1"}}),
        ),
        (
            "limiters",
            json!({"limits": ["$ 1MB 1MB"]}),
            json!({"limits": ["$$ 10KB 10KB"]}),
            json!({"limits": "$ 1MB"}),
        ),
        (
            "climiters",
            json!({"limits": ["$ 100"]}),
            json!({"limits": ["$$ 5"]}),
            json!({"limits": [1]}),
        ),
        (
            "rlimiters",
            json!({"limits": ["$ 10"]}),
            json!({"limits": ["$ 20"]}),
            json!({"limits": true}),
        ),
        (
            "authers",
            json!({"auths": [{"username": "u", "password": "p"}]}),
            json!({"auths": [{"username": "u", "password": "q"}]}),
            json!({"auths": [{"username": 1}]}),
        ),
        (
            "hops",
            json!({"nodes": node("127.0.0.1:1")}),
            json!({"nodes": node("127.0.0.1:2"), "selector": {"strategy": "fifo"}}),
            json!({"nodes": "127.0.0.1:1"}),
        ),
        (
            "chains",
            json!({"hops": [{"name": "h", "nodes": node("127.0.0.1:1")}]}),
            json!({"hops": [{"name": "h", "nodes": node("127.0.0.1:3")}]}),
            json!({"hops": {}}),
        ),
        (
            "observers",
            json!({"plugin": {"type": "http", "addr": "http://127.0.0.1:9/observe"}}),
            json!({"plugin": {"type": "http", "addr": "http://127.0.0.1:10/observe"}}),
            json!({"plugin": []}),
        ),
        (
            "routers",
            json!({"routes": [{"dst": "10.0.0.0/8", "gateway": "192.168.123.2"}]}),
            json!({"plugin": {"type": "http", "addr": "http://127.0.0.1:9/router"}}),
            json!({"routes": {"dst": "10.0.0.0/8"}}),
        ),
        (
            "sds",
            json!({"plugin": {"type": "http", "addr": "http://127.0.0.1:9/sd"}}),
            json!({}),
            json!({"plugin": "http"}),
        ),
        (
            "loggers",
            json!({"log": {"output": "none"}}),
            json!({"log": {"output": "none", "level": "debug", "format": "json"}}),
            json!({"log": "stderr"}),
        ),
    ];
    for (kind, created, updated, wrong) in kinds {
        let path = format!("/config/{kind}");
        let one = format!("{path}/x");
        let named = |v: &Value| {
            let mut v = v.clone();
            v["name"] = json!("x");
            v
        };
        let msg = refused(api, "POST", &path, Some(named(&wrong)), 40001);
        let field = wrong.as_object().unwrap().keys().next().unwrap();
        assert!(msg.contains(field.as_str()), "{kind}: {msg}");
        ok(api, "POST", &path, Some(named(&created)));
        let (_, v) = call(api, "GET", &one, None);
        assert_has(&v["data"], &named(&created), kind);
        let (_, list) = call(api, "GET", &path, None);
        assert_eq!(list["data"]["count"], 1, "{kind}: {list}");
        refused(api, "POST", &path, Some(named(&created)), 40002);
        refused(api, "PUT", &one, Some(wrong.clone()), 40001);
        ok(api, "PUT", &one, Some(updated.clone()));
        let (_, v) = call(api, "GET", &one, None);
        assert_has(&v["data"], &named(&updated), kind);
        ok(api, "DELETE", &one, None);
        assert_eq!(call(api, "GET", &one, None), (200, json!({})), "{kind}");
        refused(api, "DELETE", &one, None, 40004);
        live.check(kind.as_bytes());
        sent += kind.len() as u64;
    }
    // Objects no service uses yet are checked all the same: features this
    // build refuses and values that cannot work are refused at once.
    for (kind, body) in [
        (
            "resolvers",
            json!({"name": "r", "nameservers": [{"addr": "tls://127.0.0.1:853"}]}),
        ),
        (
            "bypasses",
            json!({"name": "b", "plugin": {"type": "grpc", "addr": "http://127.0.0.1:1"}}),
        ),
        (
            "hops",
            json!({"name": "h", "plugin": {"type": "grpc", "addr": "127.0.0.1:1"}}),
        ),
        ("limiters", json!({"name": "l", "limits": ["$ lots"]})),
        ("climiters", json!({"name": "l", "limits": ["$ -1"]})),
        (
            "hosts",
            json!({"name": "h", "mappings": [{"ip": "not-an-ip", "hostname": "a"}]}),
        ),
        (
            "admissions",
            json!({"name": "a", "plugin": {"type": "soap", "addr": "127.0.0.1:1"}}),
        ),
        (
            "authers",
            json!({"name": "a", "http": {"url": "https://127.0.0.1:1"}}),
        ),
        (
            "observers",
            json!({"name": "o", "plugin": {"type": "grpc", "addr": "127.0.0.1:1"}}),
        ),
        ("loggers", json!({"name": "l", "log": {"level": "loud"}})),
        (
            "sds",
            json!({"name": "s", "plugin": {"type": "http", "addr": "ftp://127.0.0.1:1"}}),
        ),
        (
            "routers",
            json!({"name": "r", "routes": [{"dst": "not-a-net", "gateway": "10.0.0.1"}]}),
        ),
        (
            "routers",
            json!({"name": "r", "file": {"path": "/nonexistent"}}),
        ),
    ] {
        let name = format!("\"{}\"", body["name"].as_str().unwrap());
        let msg = refused(api, "POST", &format!("/config/{kind}"), Some(body), 40001);
        assert!(msg.contains(&name), "{kind}: {msg}");
        let (_, list) = call(api, "GET", &format!("/config/{kind}"), None);
        assert_eq!(list["data"]["count"], 0, "{kind}: {list}");
    }

    // The unrelated service's status went on untouched: same createTime
    // and events, its one connection still open, every byte counted.
    let after = service(api, "service-0")["status"].clone();
    assert_eq!(after["createTime"], before["createTime"]);
    assert_eq!(after["events"], before["events"]);
    let stats = &after["stats"];
    assert_eq!(stats["totalConns"], 2, "{after}");
    assert_eq!(stats["currentConns"], 1, "{after}");
    assert_eq!(stats["inputBytes"], sent, "{after}");
    assert_eq!(stats["outputBytes"], sent, "{after}");
    assert_eq!(stats["totalErrs"], 0, "{after}");
}

#[test]
fn bypass_and_hosts_changes_apply_to_a_proxy_without_a_restart() {
    let (g, keep, api) = start();
    let mut live = Live::open(keep);
    let origin = http_origin("127.0.0.1:0", "hi");
    let port = free_port();
    ok(
        api,
        "POST",
        "/config/hosts",
        Some(
            json!({"name": "names", "mappings": [{"ip": "127.0.0.1", "hostname": "origin.test"}]}),
        ),
    );
    ok(
        api,
        "POST",
        "/config/bypasses",
        Some(json!({"name": "deny", "matchers": ["origin.test"]})),
    );
    ok(
        api,
        "POST",
        "/config/services",
        Some(json!({"name": "proxy", "addr": format!("127.0.0.1:{port}"),
            "hosts": "names", "bypass": "deny", "handler": {"type": "http"}})),
    );
    g.wait_tcp(port);
    let created = service(api, "proxy")["status"]["createTime"].clone();
    let url = format!("http://origin.test:{}/", origin.port());
    let get = || curl_body(&["-f", "-x", &format!("http://127.0.0.1:{port}"), &url]);
    assert!(!get().0, "refused by the bypass");
    ok(
        api,
        "PUT",
        "/config/bypasses/deny",
        Some(json!({"matchers": ["other.test"]})),
    );
    assert_eq!(get(), (true, "hi".to_string()));
    // The name now maps to an address nothing listens on.
    ok(
        api,
        "PUT",
        "/config/hosts/names",
        Some(json!({"mappings": [{"ip": "127.0.0.9", "hostname": "origin.test"}]})),
    );
    assert!(!get().0, "mapped elsewhere");
    ok(
        api,
        "PUT",
        "/config/hosts/names",
        Some(json!({"mappings": [{"ip": "127.0.0.1", "hostname": "origin.test"}]})),
    );
    assert_eq!(get(), (true, "hi".to_string()));
    let status = service(api, "proxy")["status"].clone();
    assert_eq!(status["createTime"], created);
    assert!(!status["events"].to_string().contains("closed"), "{status}");
    live.check(b"unrelated");
}

#[test]
fn concurrent_updates_of_one_service_leave_it_consistent() {
    let (g, keep, api) = start();
    let mut live = Live::open(keep);
    let greeters = [
        tcp_greeter("0"),
        tcp_greeter("1"),
        tcp_greeter("2"),
        tcp_greeter("3"),
    ];
    let port = free_port();
    ok(
        api,
        "POST",
        "/config/services",
        Some(forward("web", port, &greeters[0].to_string())),
    );
    g.wait_tcp(port);
    let threads: Vec<_> = greeters
        .iter()
        .flat_map(|t| [t, t])
        .map(|target| {
            let body = forward("web", port, &target.to_string()).to_string();
            thread::spawn(move || {
                http_request(api, "PUT", "/config/services/web", Some(&body), None).0
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 200);
    }
    // Whichever came last is both configured and running.
    let target = service(api, "web")["forwarder"]["nodes"][0]["addr"]
        .as_str()
        .unwrap()
        .to_string();
    let i = greeters
        .iter()
        .position(|g| g.to_string() == target)
        .unwrap();
    assert_eq!(greeting(port), i.to_string());
    let (_, list) = call(api, "GET", "/config/services", None);
    assert_eq!(list["data"]["count"], 2, "{list}");
    live.check(b"ok");
}

#[test]
fn a_reload_that_changes_the_api_or_log_section_is_refused() {
    let dir = TempDir::new("reload-fixed");
    let (a, b) = (tcp_greeter("A"), tcp_greeter("B"));
    let (port, api) = (free_port(), free_port());
    let addr = format!("127.0.0.1:{port}");
    let text = |target: &str, extra: &str| {
        format!(
            "services:\n- {{name: s, addr: \"{addr}\", handler: {{type: tcp}}, forwarder: {{nodes: [{{name: t, addr: \"{target}\"}}]}}}}\napi: {{addr: \"127.0.0.1:{api}\"{extra}}}\n"
        )
    };
    let file = dir.write("gost.yaml", &text(&a.to_string(), ""));
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(api);
    g.wait_tcp(port);
    std::fs::write(&file, text(&b.to_string(), ", accesslog: true")).unwrap();
    let msg = refused(api, "POST", "/config/reload", None, 40001);
    assert!(
        msg.contains("api section") && msg.contains("restart"),
        "{msg}"
    );
    assert_eq!(greeting(port), "A");
    std::fs::write(&file, text(&b.to_string(), "") + "log: {level: debug}\n").unwrap();
    let msg = refused(api, "POST", "/config/reload", None, 40001);
    assert!(msg.contains("log section"), "{msg}");
    assert_eq!(greeting(port), "A");
    std::fs::write(&file, text(&b.to_string(), "")).unwrap();
    ok(api, "POST", "/config/reload", None);
    assert_eq!(greeting(port), "B");
}

#[test]
fn a_chain_update_routes_new_connections_without_a_restart() {
    let (g, keep, api) = start();
    let mut unrelated = Live::open(keep);
    let echo = tcp_echo_server();
    let (up1, up2, fw) = (free_port(), free_port(), free_port());
    for (name, port) in [("up1", up1), ("up2", up2)] {
        ok(
            api,
            "POST",
            "/config/services",
            Some(json!({"name": name, "addr": format!("127.0.0.1:{port}"),
                "handler": {"type": "http"}, "metadata": {"enableStats": true}})),
        );
        g.wait_tcp(port);
    }
    let chain = |port: u16| {
        json!({"name": "c1", "hops": [{"name": "h", "nodes": [{"name": "n",
            "addr": format!("127.0.0.1:{port}"), "connector": {"type": "http"}}]}]})
    };
    ok(api, "POST", "/config/chains", Some(chain(up1)));
    ok(
        api,
        "POST",
        "/config/services",
        Some(json!({"name": "fw", "addr": format!("127.0.0.1:{fw}"),
            "handler": {"type": "tcp", "chain": "c1"},
            "forwarder": {"nodes": [{"name": "t", "addr": echo.to_string()}]}})),
    );
    g.wait_tcp(fw);
    let created = service(api, "fw")["status"]["createTime"].clone();
    let base = wait_settled(api, "up2")["status"]["stats"]["totalConns"]
        .as_u64()
        .unwrap();
    let mut via_up1 = Live::open(fw);
    wait_service(api, "up1", |s| s["status"]["stats"]["currentConns"] == 1);

    ok(api, "PUT", "/config/chains/c1", Some(chain(up2)));
    let mut via_up2 = Live::open(fw);
    let up2 = wait_service(api, "up2", |s| s["status"]["stats"]["currentConns"] == 1);
    assert_eq!(up2["status"]["stats"]["totalConns"], base + 1, "{up2}");
    via_up1.check(b"old route still open");
    via_up2.check(b"new route");
    let status = service(api, "fw")["status"].clone();
    assert_eq!(status["createTime"], created);
    assert!(!status["events"].to_string().contains("closed"), "{status}");
    let msg = refused(api, "DELETE", "/config/chains/c1", None, 40001);
    assert!(msg.contains("c1"), "{msg}");
    unrelated.check(b"unrelated");
}

/// Sends `head` (request line and headers, no blank line) and `body` as
/// they are; the status and the whole answer.
fn raw(api: u16, head: &str, body: &str) -> (u16, String) {
    let mut c = TcpStream::connect(("127.0.0.1", api)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let req = format!(
        "{head}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.write_all(req.as_bytes()).unwrap();
    let mut resp = Vec::new();
    let _ = c.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let code = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, resp)
}

#[test]
fn a_web_page_cannot_read_or_change_an_unauthenticated_api() {
    let (_g, keep, api) = start();
    let port = free_port();
    let body = forward("page", port, "127.0.0.1:1").to_string();
    // A "simple" cross-origin POST (text/plain, no preflight) is refused.
    let (code, resp) = raw(
        api,
        "POST /config/services HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.test\r\nContent-Type: text/plain",
        &body,
    );
    assert_eq!(code, 403, "{resp}");
    assert!(
        resp.contains("40003") && resp.contains("api.cors"),
        "{resp}"
    );
    // So is a body that is not JSON, from anywhere.
    let (code, resp) = raw(
        api,
        "POST /config/services HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain",
        &body,
    );
    assert_eq!(code, 415, "{resp}");
    assert_eq!(
        call(api, "GET", "/config/services/page", None),
        (200, json!({}))
    );
    // A read answers no CORS header, so the page cannot see it.
    let (code, resp) = raw(
        api,
        "GET /config HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.test",
        "",
    );
    assert_eq!(code, 200);
    assert!(
        !resp
            .to_ascii_lowercase()
            .contains("access-control-allow-origin"),
        "{resp}"
    );
    // A name the page points at 127.0.0.1 (DNS rebinding) is refused.
    let (code, resp) = raw(api, "GET /config HTTP/1.1\r\nHost: rebind.evil.test", "");
    assert_eq!(code, 403, "{resp}");
    assert!(resp.contains("api.hosts"), "{resp}");
    // A path that is not UTF-8 gets GOST's JSON error, not plain text.
    let (code, resp) = raw(
        api,
        "GET /config/services/%FF%FE HTTP/1.1\r\nHost: 127.0.0.1",
        "",
    );
    assert_eq!(code, 400, "{resp}");
    let json_body = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
    let v: Value = serde_json::from_str(json_body).unwrap_or_else(|e| panic!("{e}: {resp}"));
    assert_eq!(v["code"], 40001, "{v}");
    Live::open(keep);
}

#[test]
fn gosts_open_api_is_reachable_by_config() {
    let dir = TempDir::new("openapi");
    let api = free_port();
    let file = dir.write(
        "gost.yaml",
        &format!("api:\n  addr: \"127.0.0.1:{api}\"\n  cors: [\"*\"]\n  hosts: [\"*\"]\n  anyContentType: true\n"),
    );
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(api);
    let port = free_port();
    let body = forward("page", port, "127.0.0.1:1").to_string();
    let (code, resp) = raw(
        api,
        "POST /config/services HTTP/1.1\r\nHost: rebind.evil.test\r\nOrigin: http://evil.test\r\nContent-Type: text/plain",
        &body,
    );
    assert_eq!(code, 200, "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("access-control-allow-origin: *"),
        "{resp}"
    );
    g.wait_tcp(port);
}

#[test]
fn a_forwarder_to_the_services_own_address_is_refused() {
    let (_g, keep, api) = start();
    let port = free_port();
    let msg = refused(
        api,
        "POST",
        "/config/services",
        Some(forward("self", port, &format!("localhost:{port}"))),
        40001,
    );
    assert!(msg.contains("own address"), "{msg}");
    Live::open(keep);
}

/// `api.maskSecrets`: reads show `******` for every password and token;
/// an object read, changed and written back keeps its secrets; a mask
/// with no secret behind it is refused; a save writes the real values.
#[test]
fn masked_secrets_are_hidden_in_reads_and_kept_by_writes() {
    let dir = TempDir::new("mask");
    let origin = http_origin("127.0.0.1:0", "masked");
    let (port, api) = (free_port(), free_port());
    let file = dir.write(
        "gost.yaml",
        &format!(
            "api: {{addr: \"127.0.0.1:{api}\", maskSecrets: true}}\n\
             authers:\n- name: users\n  auths: [{{username: u1, password: s3cret-one}}]\n\
             services:\n- name: proxy\n  addr: 127.0.0.1:{port}\n  handler: {{type: socks5, auther: users}}\n  listener: {{type: tcp}}\n"
        ),
    );
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(api);
    g.wait_tcp(port);
    let fetch = |user: &str| {
        curl_body(&[
            "--proxy",
            &format!("socks5://{user}@127.0.0.1:{port}"),
            &format!("http://{origin}/"),
        ])
    };
    assert_eq!(fetch("u1:s3cret-one"), (true, "masked".into()));
    for format in ["json", "yaml"] {
        let (code, text) =
            http_request(api, "GET", &format!("/config?format={format}"), None, None);
        assert_eq!(code, 200);
        assert!(!text.contains("s3cret-one"), "{text}");
        assert!(text.contains("******"), "{text}");
    }
    let (code, v) = call(api, "GET", "/config/authers/users", None);
    assert_eq!(code, 200);
    let mut users = v["data"].clone();
    assert_eq!(users["auths"][0]["password"], "******", "{users}");
    let (_, list) = call(api, "GET", "/config/authers", None);
    assert_eq!(list["data"]["list"][0]["auths"][0]["password"], "******");
    // Written back with a user added: the first keeps its password.
    users["auths"]
        .as_array_mut()
        .unwrap()
        .push(json!({"username": "u2", "password": "s3cret-two"}));
    ok(api, "PUT", "/config/authers/users", Some(users.clone()));
    assert_eq!(fetch("u1:s3cret-one"), (true, "masked".into()));
    assert_eq!(fetch("u2:s3cret-two"), (true, "masked".into()));
    assert!(!fetch("u1:******").0, "the mask is not the password");
    // A mask where there is no secret to keep.
    users["auths"][1]["password"] = json!("******");
    users["auths"]
        .as_array_mut()
        .unwrap()
        .push(json!({"username": "u3", "password": "******"}));
    let msg = refused(
        api,
        "PUT",
        "/config/authers/users",
        Some(users.clone()),
        40001,
    );
    assert!(msg.contains("auths[2].password"), "{msg}");
    users["name"] = json!("copy");
    let msg = refused(api, "POST", "/config/authers", Some(users), 40001);
    assert!(msg.contains("auths[0].password"), "{msg}");
    // The file a save writes keeps the real values.
    ok(api, "POST", "/config", None);
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(
        saved.contains("s3cret-one") && saved.contains("s3cret-two"),
        "{saved}"
    );
    assert!(!saved.contains("******"), "{saved}");
}
