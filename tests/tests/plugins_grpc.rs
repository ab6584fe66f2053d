//! GOST's gRPC plugin protocol for decision modules, through the real
//! binary, against a plugin server written with Python's grpcio from
//! GOST's protos (`tests/python/gost_grpc_plugin.py`, `gost_plugin.proto`):
//! each decision allowed and denied end to end, the token as GOST sends
//! it, and a plugin that is down, slow, or answers garbage or too much,
//! each with GOST's fallback, counted and logged.
//!
//! The server is Python's grpcio rather than a tonic server in this crate:
//! it is an implementation of gRPC and protobuf that is not ours (a wrong
//! field number, method path or framing fails here, where a server built
//! from our own message types would agree with our mistakes), and it costs
//! a cached pip install instead of compiling a gRPC server into the tests.

use std::io::Write;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use gost_e2e::plugin_server::PluginServer;
use gost_e2e::*;
use serde_json::Value;

const BODY: &str = "hello from the origin";

/// The Python gRPC plugin server in one mode; killed when dropped.
fn grpc_plugin(mode: &str) -> PluginServer {
    grpc_plugin_with(mode, &[])
}

fn grpc_plugin_with(mode: &str, extra: &[&str]) -> PluginServer {
    let python = python_with_websockets();
    let args: Vec<&str> = [mode].into_iter().chain(extra.iter().copied()).collect();
    PluginServer::spawn(python.as_os_str(), "gost_grpc_plugin.py", &args)
}

fn start_config(yaml: &str, ports: &[u16]) -> (Gost, TempDir) {
    let dir = TempDir::new("plugins-grpc");
    let file = dir.write("gost.yaml", yaml);
    let g = Gost::start(&["-C", &file]);
    for p in ports {
        g.wait_tcp(*p);
    }
    (g, dir)
}

fn through_socks5(port: u16, user: &str, url: &str) -> (bool, String) {
    curl_body(&["-x", &format!("socks5h://{user}@127.0.0.1:{port}"), url])
}

#[test]
fn auther_and_admission_plugins_decide_over_grpc() {
    let plugin = grpc_plugin("normal");
    let http = http_origin("127.0.0.1:0", BODY);
    let (p, ph, pa, pd) = (free_port(), free_port(), free_port(), free_port());
    let (g, _d) = start_config(
        &format!(
            "services:
- name: socks
  addr: 127.0.0.1:{p}
  handler: {{type: socks5, auther: plug}}
  listener: {{type: tcp}}
- name: web
  addr: 127.0.0.1:{ph}
  handler: {{type: http, auther: plug}}
  listener: {{type: tcp}}
- name: admitted
  addr: 127.0.0.1:{pa}
  admission: adm
  handler: {{type: socks5}}
  listener: {{type: tcp}}
- name: deny-me
  addr: 127.0.0.1:{pd}
  admission: adm
  handler: {{type: socks5}}
  listener: {{type: tcp}}
authers:
- name: plug
  plugin: {{type: grpc, addr: \"{a}\", token: s3cret}}
admissions:
- name: adm
  plugin: {{addr: \"{a}\"}}
",
            a = plugin.addr()
        ),
        &[p, ph, pa, pd],
    );
    let url = format!("http://127.0.0.1:{}/", http.port());
    let (ok, body) = through_socks5(p, "alice:secret", &url);
    assert!(ok && body == BODY, "{body:?}\n{}", g.log());
    let (ok, _) = through_socks5(p, "alice:wrong", &url);
    assert!(!ok, "a wrong password got through");
    let (ok, _) = through_socks5(p, "mallory:secret", &url);
    assert!(!ok, "an unknown user got through");
    let (ok, body) = curl_body(&["-x", &format!("http://bob:pw@127.0.0.1:{ph}"), &url]);
    assert!(ok && body == BODY, "{body:?}\n{}", g.log());
    let (_, code) = curl_body(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-x",
        &format!("http://bob:nope@127.0.0.1:{ph}"),
        &url,
    ]);
    assert_eq!(code, "407");

    let auths = plugin.calls_of("/proto.Authenticator/Authenticate");
    assert_eq!(auths.len(), 5, "{auths:?}");
    let first = &auths[0];
    assert_eq!(first["token"], "s3cret");
    assert_eq!(first["body"]["service"], "socks");
    assert_eq!(first["body"]["username"], "alice");
    assert_eq!(first["body"]["password"], "secret");
    assert!(
        first["body"]["client"]
            .as_str()
            .is_some_and(|c| c.starts_with("127.0.0.1:")),
        "{first}"
    );
    assert_eq!(auths[3]["body"]["service"], "web");

    // Admission, with the type left out (GOST's default is gRPC) and no
    // token (no `token` metadata).
    let (ok, body) = through_socks5(pa, "", &url);
    assert!(ok && body == BODY, "{body:?}\n{}", g.log());
    let (ok, _) = through_socks5(pd, "", &url);
    assert!(!ok, "the denying admission let a client in");
    let admits = plugin.calls_of("/proto.Admission/Admit");
    let admitted = admits
        .iter()
        .find(|r| r["body"]["service"] == "admitted")
        .unwrap();
    assert_eq!(admitted["token"], "");
    assert!(admitted["body"]["addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
}

/// Bypass, hosts and resolver plugins over gRPC on socks5 services, and
/// GOST's fallbacks when the plugin is down.
#[test]
fn bypass_hosts_and_resolver_plugins_route_over_grpc() {
    let plugin = grpc_plugin("normal");
    let http = http_origin("127.0.0.1:0", BODY);
    let down = free_port();
    let ports: Vec<u16> = (0..6).map(|_| free_port()).collect();
    let (g, _d) = start_config(
        &format!(
            "services:
- {{name: by, addr: 127.0.0.1:{}, bypass: by, handler: {{type: socks5}}, listener: {{type: tcp}}}}
- {{name: ho, addr: 127.0.0.1:{}, hosts: ho, handler: {{type: socks5}}, listener: {{type: tcp}}}}
- {{name: re, addr: 127.0.0.1:{}, resolver: re, handler: {{type: socks5}}, listener: {{type: tcp}}}}
- {{name: by-down, addr: 127.0.0.1:{}, bypass: by-down, handler: {{type: socks5}}, listener: {{type: tcp}}}}
- {{name: ho-down, addr: 127.0.0.1:{}, hosts: ho-down, handler: {{type: socks5}}, listener: {{type: tcp}}}}
- {{name: re-down, addr: 127.0.0.1:{}, resolver: re-down, handler: {{type: socks5}}, listener: {{type: tcp}}}}
bypasses:
- {{name: by, plugin: {{type: grpc, addr: \"{a}\"}}}}
- {{name: by-down, plugin: {{type: grpc, addr: \"127.0.0.1:{down}\"}}}}
hosts:
- {{name: ho, plugin: {{type: grpc, addr: \"{a}\"}}}}
- {{name: ho-down, plugin: {{type: grpc, addr: \"127.0.0.1:{down}\"}}}}
resolvers:
- {{name: re, plugin: {{type: grpc, addr: \"{a}\"}}}}
- {{name: re-down, plugin: {{type: grpc, addr: \"127.0.0.1:{down}\"}}}}
",
            ports[0],
            ports[1],
            ports[2],
            ports[3],
            ports[4],
            ports[5],
            a = plugin.addr(),
        ),
        &ports,
    );
    let port = http.port();
    let get =
        |svc: usize, host: &str| through_socks5(ports[svc], "", &format!("http://{host}:{port}/"));

    let (ok, body) = get(0, "127.0.0.1");
    assert!(ok && body == BODY, "{body:?}\n{}", g.log());
    let (ok, _) = get(0, "bypassed.test");
    assert!(!ok, "a bypassed target was dialed");
    for svc in [1, 2] {
        let (ok, body) = get(svc, "echo.test");
        assert!(ok && body == BODY, "service {svc}: {body:?}\n{}", g.log());
        let (ok, _) = get(svc, "unknown.test");
        assert!(!ok, "service {svc}: an unknown name was reached");
    }
    let (ok, _) = get(3, "127.0.0.1");
    assert!(!ok, "a down bypass plugin did not bypass");
    for svc in [4, 5] {
        let (ok, _) = get(svc, "echo.test");
        assert!(!ok, "service {svc}: resolved with the plugin down");
    }

    let by = &plugin.calls_of("/proto.Bypass/Bypass")[0];
    assert_eq!(by["body"]["service"], "by");
    assert_eq!(by["body"]["network"], "tcp");
    assert_eq!(by["body"]["addr"], format!("127.0.0.1:{port}"));
    let ho = &plugin.calls_of("/proto.HostMapper/Lookup")[0];
    assert_eq!(ho["body"]["host"], "echo.test");
    let re = &plugin.calls_of("/proto.Resolver/Resolve")[0];
    assert_eq!(re["body"]["host"], "echo.test");
    let log = g.log();
    for (name, fallback) in [
        ("by-down", "bypassed"),
        ("ho-down", "not mapped"),
        ("re-down", "not resolved"),
    ] {
        assert!(
            log.lines().any(|l| l.contains("plugin call failed")
                && l.contains(name)
                && l.contains(fallback)),
            "{name}: no failure line\n{log}"
        );
    }
}

/// GOST's ingress e2e case with the rule from a gRPC ingress plugin, and
/// the `SetRule` calls GOST's tunnel handler makes when a client
/// registers (its endpoint, the hash of the tunnel id).
#[test]
fn ingress_plugin_routes_tunnel_visitors_and_learns_registrations() {
    const TID: &str = "6be39003-f4fa-49e4-a6ef-1997684d160e";
    let plugin = grpc_plugin("normal");
    let origin = http_origin("127.0.0.1:0", BODY);
    let (port, entry) = (free_port(), free_port());
    let (server, _d1) = start_config(
        &format!(
            "services:
- name: public
  addr: 127.0.0.1:{port}
  handler: {{type: tunnel, metadata: {{entrypoint: 127.0.0.1:{entry}, ingress: ing}}}}
  listener: {{type: tcp}}
ingresses:
- name: ing
  plugin: {{type: grpc, addr: \"{}\"}}
",
            plugin.addr()
        ),
        &[port, entry],
    );
    let (_client, _d2) = start_config(
        &format!(
            "services:
- name: private
  addr: :0
  handler: {{type: rtcp}}
  listener: {{type: rtcp, chain: c}}
  forwarder: {{nodes: [{{addr: {origin}}}]}}
chains:
- name: c
  hops:
  - nodes:
    - addr: 127.0.0.1:{port}
      connector: {{type: tunnel, metadata: {{tunnel.id: {TID}}}}}
"
        ),
        &[],
    );
    let get = |host: &str| {
        curl_body(&[
            "-H",
            &format!("Host: {host}"),
            "-w",
            "\n%{http_code}",
            &format!("http://127.0.0.1:{entry}/"),
        ])
        .1
    };
    let start = Instant::now();
    while !get("example.local").contains(BODY) {
        assert!(
            start.elapsed() < TIMEOUT,
            "the mapped host never reached the target\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let other = get("nomapped.local");
    assert!(other.ends_with("502") && !other.contains(BODY), "{other}");
    let asked = plugin.calls_of("/proto.Ingress/GetRule");
    assert!(
        asked
            .iter()
            .any(|r| r["body"]["host"] == "nomapped.local:80" && r["body"]["service"] == "public"),
        "{asked:?}"
    );
    let set = plugin.calls_of("/proto.Ingress/SetRule");
    assert!(
        set.iter().any(|r| r["body"]["endpoint"] == TID
            && r["body"]["service"] == "public"
            && r["body"]["host"].as_str().is_some_and(|h| h.len() == 16)),
        "{set:?}"
    );
}

/// A server that answers every connection with bytes that are not HTTP/2.
fn junk_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { break };
            let _ = c.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\nnot a gRPC server");
        }
    });
    port
}

/// A gRPC plugin that fails in each way: the auther denies, as GOST's
/// client does; the failure is logged once per kind with a count, no call
/// outlasts the timeout, and a service without the plugin is unaffected.
#[test]
fn failing_grpc_plugins_fall_back_and_leave_other_services_alone() {
    let slow = grpc_plugin("slow");
    let garbage = grpc_plugin("garbage");
    let huge = grpc_plugin("huge");
    let http = http_origin("127.0.0.1:0", BODY);
    let kinds = [
        format!("127.0.0.1:{}", free_port()),
        slow.addr(),
        garbage.addr(),
        huge.addr(),
        format!("127.0.0.1:{}", junk_server()),
    ];
    let ports: Vec<u16> = kinds.iter().map(|_| free_port()).collect();
    let mut yaml = String::from("services:\n");
    for (i, p) in ports.iter().enumerate() {
        yaml += &format!(
            "- name: s{i}\n  addr: 127.0.0.1:{p}\n  handler: {{type: socks5, auther: a{i}}}\n  listener: {{type: tcp}}\n"
        );
    }
    let plain = free_port();
    yaml += &format!(
        "- name: plain\n  addr: 127.0.0.1:{plain}\n  handler: {{type: socks5}}\n  listener: {{type: tcp}}\nauthers:\n"
    );
    for (i, k) in kinds.iter().enumerate() {
        yaml += &format!("- name: a{i}\n  plugin: {{type: grpc, addr: \"{k}\", timeout: 1s}}\n");
    }
    let mut all = ports.clone();
    all.push(plain);
    let (g, _d) = start_config(&yaml, &all);
    let url = format!("http://127.0.0.1:{}/", http.port());
    for (i, p) in ports.iter().enumerate() {
        let start = Instant::now();
        for _ in 0..2 {
            let (ok, _) = through_socks5(*p, "alice:secret", &url);
            assert!(!ok, "{}: a failed auther call let the client in", kinds[i]);
        }
        assert!(
            start.elapsed() < Duration::from_secs(6),
            "{}: took {:?}",
            kinds[i],
            start.elapsed()
        );
        let (ok, body) = through_socks5(plain, "", &url);
        assert!(ok && body == BODY, "the service without a plugin failed");
    }
    assert_eq!(slow.calls_of("/proto.Authenticator/Authenticate").len(), 2);
    let log = g.log();
    for (what, name) in [
        ("gRPC", "a0"),
        ("no answer within 1s", "a1"),
        ("gRPC", "a2"),
        ("gRPC", "a3"),
        ("gRPC", "a4"),
    ] {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("plugin call failed") && l.contains(&format!("\"{name}\"")))
            .collect();
        // Two calls failing the same way write one line; the server that
        // is not HTTP/2 may fail the second call another way (the kept
        // connection closed), which is a line of its own.
        let want = if name == "a4" { 1..=2 } else { 1..=1 };
        assert!(
            want.contains(&lines.len()),
            "{name}: want {want:?} lines\n{log}"
        );
        assert!(
            lines[0].contains(what) && lines[0].contains("denied"),
            "{name}: {}",
            lines[0]
        );
    }
}

/// Recorder plugins over both protocols: each client address the service
/// records reaches the plugin as GOST sends it (the bytes, and `null`
/// metadata; base64 in the HTTP JSON, as Go encodes bytes), and a
/// recorder whose plugin is down costs the service nothing.
#[test]
fn recorder_plugins_receive_records_over_grpc_and_http() {
    let grpc = grpc_plugin("normal");
    let http_plugin = PluginServer::start();
    let http = http_origin("127.0.0.1:0", BODY);
    let (p, pdown) = (free_port(), free_port());
    let (g, _d) = start_config(
        &format!(
            "services:
- name: rec
  addr: 127.0.0.1:{p}
  recorders:
  - {{name: by-grpc, record: recorder.service.client.address}}
  - {{name: by-http, record: recorder.service.handler}}
  handler: {{type: socks5}}
  listener: {{type: tcp}}
- name: rec-down
  addr: 127.0.0.1:{pdown}
  recorders: [{{name: down, record: recorder.service.client.address}}]
  handler: {{type: socks5}}
  listener: {{type: tcp}}
recorders:
- name: by-grpc
  plugin: {{type: grpc, addr: \"{}\"}}
- name: by-http
  plugin: {{type: http, addr: \"{}\"}}
- name: down
  plugin: {{type: grpc, addr: \"127.0.0.1:{}\", timeout: 1s}}
",
            grpc.addr(),
            http_plugin.url("/recorder"),
            free_port(),
        ),
        &[p, pdown],
    );
    let url = format!("http://127.0.0.1:{}/", http.port());
    let (ok, body) = through_socks5(p, "", &url);
    assert!(ok && body == BODY, "{body:?}\n{}", g.log());
    for _ in 0..3 {
        let (ok, body) = through_socks5(pdown, "", &url);
        assert!(
            ok && body == BODY,
            "a down recorder plugin broke its service"
        );
    }
    let start = Instant::now();
    loop {
        let recs = grpc.calls_of("/proto.Recorder/Record");
        let http_recs = http_plugin.requests();
        if !recs.is_empty() && !http_recs.is_empty() {
            // "127.0.0.1" and "null", base64 as protobuf's JSON shows bytes.
            assert_eq!(recs[0]["body"]["data"], "MTI3LjAuMC4x", "{recs:?}");
            assert_eq!(recs[0]["body"]["metadata"], "bnVsbA==", "{recs:?}");
            let h = &http_recs[0];
            assert_eq!(h["path"], "/recorder");
            let data = h["body"]["data"].as_str().unwrap();
            let json = base64_decode(data);
            let rec: Value = serde_json::from_slice(&json).unwrap();
            assert_eq!(rec["service"], "rec", "{rec}");
            assert_eq!(h["body"]["metadata"], "bnVsbA==");
            break;
        }
        assert!(start.elapsed() < TIMEOUT, "no records reached the plugins");
        std::thread::sleep(Duration::from_millis(50));
    }
    let start = Instant::now();
    while !g
        .log()
        .lines()
        .any(|l| l.contains("plugin call failed") && l.contains("\"down\""))
    {
        assert!(start.elapsed() < TIMEOUT, "no failure line\n{}", g.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}
