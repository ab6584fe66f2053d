//! GOST's HTTP plugin protocol for decision modules, through the real
//! binary, against a plugin server written in Python from GOST's
//! definitions (`tests/python/gost_http_plugin.py`): each decision allowed
//! and denied end to end, and a plugin that is down, slow, or answers
//! garbage or too much, each with GOST's fallback, counted and logged.

use std::time::{Duration, Instant};

use gost_e2e::plugin_server::PluginServer;
use gost_e2e::*;

const BODY: &str = "hello from the origin";

fn start_config(yaml: &str, ports: &[u16]) -> (Gost, TempDir) {
    let dir = TempDir::new("plugins-gost");
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
fn auther_plugin_decides_socks5_logins_and_names_the_client() {
    let plugin = PluginServer::start();
    let http = http_origin("127.0.0.1:0", BODY);
    let (p, ph) = (free_port(), free_port());
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
authers:
- name: plug
  plugin: {{type: http, addr: \"{}\", token: s3cret}}
",
            plugin.url("/auth")
        ),
        &[p, ph],
    );
    let url = format!("http://127.0.0.1:{}/", http.port());
    let (ok, body) = through_socks5(p, "alice:secret", &url);
    assert!(ok && body == BODY, "{body:?}\n{}", g.log());
    let (ok, _) = through_socks5(p, "alice:wrong", &url);
    assert!(!ok, "a wrong password got through");
    let (ok, _) = through_socks5(p, "mallory:secret", &url);
    assert!(!ok, "an unknown user got through");

    let reqs = plugin.requests();
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    // The same auther on an HTTP proxy: 200 for bob, 407 for a wrong password.
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
    assert_eq!(plugin.requests()[4]["body"]["service"], "web");
    let first = &reqs[0];
    assert_eq!(first["path"], "/auth");
    assert_eq!(first["auth"], "Bearer s3cret");
    assert_eq!(first["body"]["service"], "socks");
    assert_eq!(first["body"]["username"], "alice");
    assert_eq!(first["body"]["password"], "secret");
    assert!(
        first["body"]["client"]
            .as_str()
            .is_some_and(|c| c.starts_with("127.0.0.1:")),
        "{first}"
    );
}

#[test]
fn admission_plugin_admits_and_denies_clients() {
    let plugin = PluginServer::start();
    let http = http_origin("127.0.0.1:0", BODY);
    let (pa, pd) = (free_port(), free_port());
    let (g, _d) = start_config(
        &format!(
            "services:
- name: admitted
  addr: 127.0.0.1:{pa}
  admission: admit
  handler: {{type: socks5}}
  listener: {{type: tcp}}
- name: denied
  addr: 127.0.0.1:{pd}
  admission: deny
  handler: {{type: socks5}}
  listener: {{type: tcp}}
admissions:
- name: admit
  plugin: {{type: http, addr: \"{}\"}}
- name: deny
  plugin: {{type: http, addr: \"{}\"}}
",
            plugin.url("/admit"),
            plugin.url("/deny"),
        ),
        &[pa, pd],
    );
    let url = format!("http://127.0.0.1:{}/", http.port());
    let (ok, body) = through_socks5(pa, "", &url);
    assert!(ok && body == BODY, "{body:?}\n{}", g.log());
    let (ok, _) = through_socks5(pd, "", &url);
    assert!(!ok, "the denying admission let a client in");
    let reqs = plugin.requests();
    let admitted = reqs.iter().find(|r| r["path"] == "/admit").unwrap();
    assert_eq!(admitted["body"]["service"], "admitted");
    assert_eq!(admitted["body"]["network"], "tcp");
    assert!(admitted["body"]["addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
}

/// A plugin that fails in each way: the decision falls back as GOST's
/// client does (auther and admission deny), the failure is logged once
/// per kind with a count, the call never outlasts the timeout, and a
/// service without the plugin is unaffected.
#[test]
fn failing_plugins_fall_back_as_gost_and_leave_other_services_alone() {
    let plugin = PluginServer::start();
    let http = http_origin("127.0.0.1:0", BODY);
    let down = free_port();
    let ports: Vec<u16> = (0..5).map(|_| free_port()).collect();
    let kinds = [
        format!("http://127.0.0.1:{down}/auth"),
        plugin.url("/slow/auth"),
        plugin.url("/garbage/auth"),
        plugin.url("/huge/auth"),
        plugin.url("/status/auth"),
    ];
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
        yaml += &format!("- name: a{i}\n  plugin: {{type: http, addr: \"{k}\", timeout: 1s}}\n");
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
    let log = g.log();
    for (what, kind) in [
        ("connect", "a0"),
        ("no answer within 1s", "a1"),
        ("not the expected JSON", "a2"),
        ("larger than", "a3"),
        ("HTTP status 500", "a4"),
    ] {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("plugin call failed") && l.contains(&format!("\"{kind}\"")))
            .collect();
        assert_eq!(lines.len(), 1, "{kind}: want one line\n{log}");
        assert!(
            lines[0].contains(what) && lines[0].contains("denied"),
            "{kind}: {}",
            lines[0]
        );
    }
}

/// Bypass, hosts and resolver plugins on a socks5 service: a bypassed
/// target is refused, a name only the plugin knows is reached through its
/// address, and a plugin that is down falls back as GOST's client does
/// (bypass: bypassed; hosts: not mapped; resolver: not resolved).
#[test]
fn bypass_hosts_and_resolver_plugins_route_socks5_targets() {
    let plugin = PluginServer::start();
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
- {{name: by, plugin: {{type: http, addr: \"{}\"}}}}
- {{name: by-down, plugin: {{type: http, addr: \"http://127.0.0.1:{down}/bypass\"}}}}
hosts:
- {{name: ho, plugin: {{type: http, addr: \"{}\"}}}}
- {{name: ho-down, plugin: {{type: http, addr: \"http://127.0.0.1:{down}/hosts\"}}}}
resolvers:
- {{name: re, plugin: {{type: http, addr: \"{}\"}}}}
- {{name: re-down, plugin: {{type: http, addr: \"http://127.0.0.1:{down}/resolver\"}}}}
",
            ports[0],
            ports[1],
            ports[2],
            ports[3],
            ports[4],
            ports[5],
            plugin.url("/bypass"),
            plugin.url("/hosts"),
            plugin.url("/resolver"),
        ),
        &ports,
    );
    let port = http.port();
    let get =
        |svc: usize, host: &str| through_socks5(ports[svc], "", &format!("http://{host}:{port}/"));

    // bypass: the plugin bypasses "bypassed.*" only.
    let (ok, body) = get(0, "127.0.0.1");
    assert!(ok && body == BODY, "{body:?}\n{}", g.log());
    let (ok, _) = get(0, "bypassed.test");
    assert!(!ok, "a bypassed target was dialed");
    // hosts and resolver: "echo.test" is 127.0.0.1; other names are not.
    for svc in [1, 2] {
        let (ok, body) = get(svc, "echo.test");
        assert!(ok && body == BODY, "service {svc}: {body:?}\n{}", g.log());
        let (ok, _) = get(svc, "unknown.test");
        assert!(!ok, "service {svc}: an unknown name was reached");
    }
    // Down: the bypass fails open (everything is bypassed), hosts maps
    // nothing, the resolver resolves nothing.
    let (ok, _) = get(3, "127.0.0.1");
    assert!(!ok, "a down bypass plugin did not bypass");
    for svc in [4, 5] {
        let (ok, _) = get(svc, "echo.test");
        assert!(!ok, "service {svc}: resolved with the plugin down");
    }
    // An IP target needs no hosts or resolver, plugin or not.
    let (ok, body) = get(4, "127.0.0.1");
    assert!(ok && body == BODY, "{body:?}");

    let reqs = plugin.requests();
    let by = reqs.iter().find(|r| r["path"] == "/bypass").unwrap();
    assert_eq!(by["body"]["service"], "by");
    assert_eq!(by["body"]["network"], "tcp");
    assert_eq!(by["body"]["addr"], format!("127.0.0.1:{port}"));
    let ho = reqs.iter().find(|r| r["path"] == "/hosts").unwrap();
    assert_eq!(ho["body"]["host"], "echo.test");
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

/// GOST's ingress e2e case with the rule from an ingress plugin: the
/// mapped Host reaches the private target through the tunnel, an unmapped
/// one gets 502 and never reaches it; the plugin is asked with GET and the
/// host and service in the query, as GOST asks.
#[test]
fn ingress_plugin_routes_tunnel_visitors() {
    const TID: &str = "6be39003-f4fa-49e4-a6ef-1997684d160e";
    let plugin = PluginServer::start();
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
  plugin: {{type: http, addr: \"{}\"}}
",
            plugin.url("/ingress")
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
    let reqs = plugin.requests();
    let asked = reqs
        .iter()
        .filter_map(|r| r["path"].as_str())
        .find(|p| p.contains("nomapped.local"))
        .expect("the plugin was asked for the unmapped host");
    assert!(
        asked.starts_with("/ingress?") && asked.contains("service=public"),
        "{asked}"
    );
    // SetRule: the tunnel handler PUTs the registered tunnel's endpoint.
    let set = reqs
        .iter()
        .find(|r| r["body"]["endpoint"] == TID)
        .expect("the plugin was told the registration");
    assert_eq!(set["path"], "/ingress");
    assert_eq!(set["body"]["service"], "public");
}
