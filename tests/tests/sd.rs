//! GOST's service discovery (`sds:`) for the tunnel handler, through the
//! real binary: two public nodes share an sd (GOST's HTTP sd plugin,
//! served by `tests/python/gost_http_plugin.py`, or this process's own),
//! a client registers with one, and visitors entering the other reach it
//! (HTTP by Host at the entry point, TCP by port through the handler and
//! through the entry point). The plugin sees GOST's register, renew and
//! deregister messages; an sd that is down leaves each node serving its
//! own clients.

use std::thread;
use std::time::{Duration, Instant};

use gost_e2e::homed::{logs, start, Proc};
use gost_e2e::plugin_server::PluginServer;
use gost_e2e::*;
use serde_json::Value;

const TID: &str = "6be39003-f4fa-49e4-a6ef-1997684d160e";

/// A public node: the tunnel handler on `port`, its entry point on
/// `entry`, GOST's ingress rule for example.local, and `sd-0`.
fn node_service(name: &str, port: u16, entry: u16) -> String {
    format!(
        "  - name: {name}
    addr: 127.0.0.1:{port}
    handler:
      type: tunnel
      metadata:
        entrypoint: 127.0.0.1:{entry}
        ingress: ingress-0
        sd: sd-0
        tunnel.ttl: 1s
        tunnel.direct: true
    listener:
      type: tcp
"
    )
}

fn node_yaml(services: &str, sd: &str) -> String {
    format!(
        "services:
{services}ingresses:
  - name: ingress-0
    rules:
      - hostname: example.local
        endpoint: {TID}
sds:
  - name: sd-0
{sd}"
    )
}

fn plugin_sd(url: &str) -> String {
    format!("    plugin:\n      type: http\n      addr: {url}\n")
}

fn start_yaml(dir: &TempDir, file: &str, yaml: &str, ports: &[u16]) -> Proc {
    let path = dir.write(file, yaml);
    start(&["-C", &path], ports)
}

/// The private client: an rtcp service registering `TID` with `port`.
fn client(port: u16, target: std::net::SocketAddr) -> Proc {
    start(
        &[
            "-L",
            &format!("rtcp://:0/{target}"),
            "-F",
            &format!("tunnel://127.0.0.1:{port}?tunnel.id={TID}"),
        ],
        &[],
    )
}

/// curl to `port` with `Host: host`: (status, body).
fn get_host(port: u16, host: &str) -> (String, String) {
    let out = std::process::Command::new("/usr/bin/curl")
        .args(["-s", "--max-time", "5", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Host: {host}"))
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_string(), body.to_string())
}

/// A visitor gost: a TCP port forwarded through a `tunnel` node at `at`
/// that names `TID`; returns it and its port.
fn visitor(at: u16) -> (Proc, u16) {
    let vport = free_port();
    let v = start(
        &[
            "-L",
            &format!("tcp://127.0.0.1:{vport}/anything:80"),
            "-F",
            &format!("tunnel://127.0.0.1:{at}?tunnel.id={TID}"),
        ],
        &[vport],
    );
    (v, vport)
}

/// Waits for a request to the sd plugin with `method` for `TID`.
fn wait_sd(plugin: &PluginServer, method: &str, gs: &[&Gost]) -> Value {
    let start = Instant::now();
    loop {
        let found = plugin
            .requests()
            .into_iter()
            .find(|r| r["method"] == method && r["path"] == "/sd" && r["body"]["name"] == TID);
        if let Some(r) = found {
            return r["body"].clone();
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "no {method} /sd for {TID}: {:?}\n{}",
            plugin.requests(),
            logs(gs)
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_client_of_one_node_is_reached_through_another_by_the_sd_plugin() {
    let plugin = PluginServer::start();
    let dir = TempDir::new("sd-plugin");
    let origin = http_origin("127.0.0.1:0", "hello-sd");
    let (pa, ea, pb, eb) = (free_port(), free_port(), free_port(), free_port());
    let sd = plugin_sd(&plugin.url("/sd"));
    let a = start_yaml(
        &dir,
        "a.yaml",
        &node_yaml(&node_service("service-0", pa, ea), &sd),
        &[pa, ea],
    );
    let b = start_yaml(
        &dir,
        "b.yaml",
        &node_yaml(&node_service("service-0", pb, eb), &sd),
        &[pb, eb],
    );
    // Nobody registered yet: B has nowhere to send the visitor.
    assert_eq!(get_host(eb, "example.local").0, "503");
    let mut c = client(pa, origin);
    a.wait_log("tunnel: client registered");
    let reg = wait_sd(&plugin, "POST", &[&a, &b, &c]);
    assert_eq!(reg["network"], "tcp", "{reg}");
    assert_eq!(reg["address"], format!("127.0.0.1:{ea}"), "{reg}");
    assert!(reg["id"].as_str().is_some_and(|s| !s.is_empty()), "{reg}");
    assert!(reg["node"].as_str().is_some_and(|s| !s.is_empty()), "{reg}");

    // HTTP by Host at B's entry point, over A's entry point to the client.
    let (code, body) = get_host(eb, "example.local");
    assert_eq!(
        (code.as_str(), body.as_str()),
        ("200", "hello-sd"),
        "{}",
        logs(&[&a, &b, &c])
    );
    // An unmapped host still gets no route at B and never leaves it.
    assert_eq!(get_host(eb, "nomapped.local").0, "502");
    // TCP by port: a visitor gost through B's handler (tunnel.direct) and
    // through B's entry point; the relay request goes on to A as it came.
    for at in [pb, eb] {
        let (v, vport) = visitor(at);
        let (code, body) = get_host(vport, "anything");
        assert_eq!(
            (code.as_str(), body.as_str()),
            ("200", "hello-sd"),
            "via {at}\n{}",
            logs(&[&a, &b, &c, &v])
        );
    }

    // GOST renews every tunnel.ttl with the connector, tunnel and node.
    let renew = wait_sd(&plugin, "PUT", &[&a, &b, &c]);
    assert_eq!(
        (&renew["id"], &renew["node"]),
        (&reg["id"], &reg["node"]),
        "{renew}"
    );
    // The client leaves: A deregisters it, and B has nowhere to go again.
    c.stop();
    let gone = wait_sd(&plugin, "DELETE", &[&a, &b]);
    assert_eq!(gone["id"], reg["id"], "{gone}");
    let start = Instant::now();
    while get_host(eb, "example.local").0 != "503" {
        assert!(start.elapsed() < TIMEOUT, "{}", logs(&[&a, &b]));
        thread::sleep(Duration::from_millis(100));
    }
    // B asked the plugin for the tunnel with GOST's query.
    assert!(
        plugin
            .requests()
            .iter()
            .any(|r| r["method"] == "GET" && r["path"] == format!("/sd?name={TID}")),
        "{:?}",
        plugin.requests()
    );
}

/// Without a plugin, an sd is kept in the gost process: two tunnel
/// services of one gost share it.
#[test]
fn two_tunnel_services_of_one_gost_share_an_in_process_sd() {
    let dir = TempDir::new("sd-local");
    let origin = http_origin("127.0.0.1:0", "hello-local");
    let (pa, ea, pb, eb) = (free_port(), free_port(), free_port(), free_port());
    let services = node_service("service-a", pa, ea) + &node_service("service-b", pb, eb);
    let g = start_yaml(
        &dir,
        "gost.yaml",
        &node_yaml(&services, ""),
        &[pa, ea, pb, eb],
    );
    let c = client(pa, origin);
    g.wait_log("tunnel: client registered");
    let (code, body) = get_host(eb, "example.local");
    assert_eq!(
        (code.as_str(), body.as_str()),
        ("200", "hello-local"),
        "{}",
        logs(&[&g, &c])
    );
}

/// An sd plugin that is down: registering fails (logged), each node
/// still serves its own clients, and the other node answers 503.
#[test]
fn a_plugin_that_is_down_leaves_each_node_its_own_clients() {
    let dir = TempDir::new("sd-down");
    let origin = http_origin("127.0.0.1:0", "hello-own");
    let (pa, ea, pb, eb) = (free_port(), free_port(), free_port(), free_port());
    let sd = plugin_sd(&format!("http://127.0.0.1:{}/sd", free_port()));
    let a = start_yaml(
        &dir,
        "a.yaml",
        &node_yaml(&node_service("service-0", pa, ea), &sd),
        &[pa, ea],
    );
    let b = start_yaml(
        &dir,
        "b.yaml",
        &node_yaml(&node_service("service-0", pb, eb), &sd),
        &[pb, eb],
    );
    let c = client(pa, origin);
    a.wait_log("tunnel: client registered");
    a.wait_log("plugin call failed");
    assert_eq!(
        get_host(ea, "example.local"),
        ("200".into(), "hello-own".into()),
        "{}",
        logs(&[&a, &c])
    );
    assert_eq!(get_host(eb, "example.local").0, "503", "{}", logs(&[&b]));
}

#[test]
fn an_sd_that_does_not_exist_stops_start_up() {
    let dir = TempDir::new("sd-missing");
    let (p, e) = (free_port(), free_port());
    let yaml =
        node_yaml(&node_service("service-0", p, e), "").replace("sds:\n  - name: sd-0\n", "");
    let path = dir.write("gost.yaml", &yaml);
    let (status, _, err) = run_gost(&["-C", &path]);
    assert!(!status.success());
    assert!(err.contains("sd \"sd-0\" not found"), "{err}");
}
