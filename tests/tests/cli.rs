//! The command line as a user meets it: -V, -O, and every kind of bad input
//! giving a clear message and a non-zero exit.

use std::net::TcpListener;

use gost_e2e::*;

#[test]
fn version_prints_gost_and_exits_zero() {
    let (status, out, _) = run_gost(&["-V"]);
    assert!(status.success());
    assert!(out.starts_with("gost "), "{out}");
}

#[test]
fn help_prints_usage() {
    let (status, out, err) = run_gost(&["-h"]);
    assert!(status.success(), "{err}");
    assert!(out.contains("-L") && out.contains("-F"), "{out}");
}

#[test]
fn output_yaml_and_json_round_trip() {
    let args = [
        "-L",
        "tcp://:8080/127.0.0.1:80,127.0.0.1:81?strategy=fifo&maxFails=2&failTimeout=30s",
        "-L",
        "udp://127.0.0.1:5353/127.0.0.1:53?keepalive=true&ttl=10s",
        "-L",
        "http://user:pass@:8081?ignoreChain=true",
        "-F",
        "socks5://u:p@127.0.0.1:1080",
        "-api",
        "admin:pw@127.0.0.1:18080?pathPrefix=/api",
    ];
    let dir = TempDir::new("roundtrip");
    for (fmt, ext) in [("yaml", "yaml"), ("json", "json")] {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["-O", fmt]);
        let (status, first, err) = run_gost(&a);
        assert!(status.success(), "{err}");
        let file = dir.write(&format!("out.{ext}"), &first);
        let (status, second, err) = run_gost(&["-C", &file, "-O", fmt]);
        assert!(status.success(), "{err}");
        assert_eq!(first, second, "-O {fmt} does not round-trip");
    }
    let (_, yaml, _) = run_gost(&[&args[..], &["-O", "yaml"]].concat());
    let doc: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    let svcs = doc["services"].as_sequence().unwrap();
    assert_eq!(svcs.len(), 3);
    assert_eq!(svcs[0]["name"].as_str(), Some("service-0"));
    assert_eq!(svcs[0]["addr"].as_str(), Some(":8080"));
    assert_eq!(svcs[0]["handler"]["type"].as_str(), Some("tcp"));
    assert_eq!(
        svcs[0]["forwarder"]["nodes"].as_sequence().unwrap().len(),
        2
    );
    assert_eq!(svcs[1]["listener"]["type"].as_str(), Some("udp"));
    assert_eq!(
        svcs[2]["handler"]["auth"]["username"].as_str(),
        Some("user")
    );
    assert_eq!(doc["chains"][0]["name"].as_str(), Some("chain-0"));
    assert_eq!(doc["chains"][0]["hops"][0]["name"].as_str(), Some("hop-0"));
    assert_eq!(
        doc["chains"][0]["hops"][0]["nodes"][0]["name"].as_str(),
        Some("node-0")
    );
    assert_eq!(doc["api"]["pathPrefix"].as_str(), Some("/api"));
}

fn fails_with(args: &[&str], needles: &[&str]) {
    let (status, out, err) = run_gost(args);
    assert!(!status.success(), "{args:?} should fail; stdout: {out}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: expected {n:?} in:\n{err}");
    }
}

#[test]
fn bad_urls_are_named() {
    fails_with(&["-L", "foo://:8080"], &["foo://:8080", "foo"]);
    fails_with(
        &["-L", "tcp://:99999/127.0.0.1:80"],
        &["tcp://:99999/127.0.0.1:80", "port"],
    );
    fails_with(&["-L", "tcp://:80a/127.0.0.1:80"], &[":80a"]);
    fails_with(&["-L", "http://[::1"], &["http://[::1"]);
    fails_with(&["-X"], &["-X"]);
    fails_with(&["-O", "xml"], &["xml"]);
}

#[test]
fn malformed_yaml_and_json_report_line_and_column() {
    let dir = TempDir::new("badcfg");
    let yaml = dir.write(
        "bad.yaml",
        "services:\n- name: a\n  addr: :8080\n  handler: [unclosed\n",
    );
    fails_with(&["-C", &yaml], &["bad.yaml", "line"]);
    let json = dir.write("bad.json", "{\"services\": [\n  {\"name\": \"a\",, }\n]}");
    fails_with(&["-C", &json], &["bad.json", "line 2"]);
    let typed = dir.write(
        "typed.yaml",
        "services:\n- name: a\n  addr: 8080\n  metadata: 5\n",
    );
    fails_with(&["-C", &typed], &["typed.yaml", "line 4"]);
    fails_with(&["-C", &dir.path("missing.yaml")], &["missing.yaml"]);
}

#[test]
fn unknown_reference_and_unsupported_types_are_refused() {
    let dir = TempDir::new("refs");
    let p = free_port();
    let cfg = dir.write(
        "gost.yaml",
        &format!("services:\n- name: s\n  addr: 127.0.0.1:{p}\n  handler: {{type: tcp}}\n  forwarder: {{hop: nope}}\n"),
    );
    fails_with(&["-C", &cfg], &["s", "nope"]);
    let cfg = dir.write(
        "kcp.yaml",
        &format!("services:\n- name: k\n  addr: 127.0.0.1:{p}\n  handler: {{type: tcp}}\n  listener: {{type: kcp}}\n  forwarder: {{nodes: [{{name: t, addr: \"127.0.0.1:1\"}}]}}\n"),
    );
    fails_with(&["-C", &cfg], &["listener type 'kcp' is not supported"]);
    fails_with(
        &[
            "-L",
            &format!("tcp://127.0.0.1:{p}/127.0.0.1:1?strategy=weird"),
        ],
        &["weird"],
    );
}

#[test]
fn port_in_use_stops_start_up_naming_the_service() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    fails_with(
        &["-L", &format!("tcp://127.0.0.1:{port}/127.0.0.1:1")],
        &["service-0", &format!("127.0.0.1:{port}"), "in use"],
    );
}

#[test]
fn unknown_keys_are_warned_about_with_their_path() {
    let dir = TempDir::new("unknown");
    let p = free_port();
    let cfg = dir.write(
        "gost.yaml",
        &format!("services:\n- name: s\n  addr: 127.0.0.1:{p}\n  listner: {{type: tcp}}\n  handler: {{type: tcp}}\n  forwarder: {{nodes: [{{name: t, addr: \"127.0.0.1:1\"}}]}}\n"),
    );
    let mut g = Gost::start(&["-C", &cfg]);
    g.wait_log("listening");
    assert!(
        g.log().contains("unknown key services.0.listner"),
        "{}",
        g.log()
    );
    assert!(g.stop().success());
}

#[test]
fn chain_nodes_with_missing_dialers_are_refused() {
    let p = free_port();
    fails_with(
        &[
            "-L",
            &format!("tcp://127.0.0.1:{p}/127.0.0.1:1"),
            "-F",
            "socks5+kcp://127.0.0.1:1080",
        ],
        &["dialer type 'kcp' is not supported"],
    );
}
