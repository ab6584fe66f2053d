//! Each expected document was derived by following go-gost/x
//! `config/cmd/cmd.go` and `config/parsing/parser/parser.go` by hand for the
//! same command line.

use serde_json::{json, Value};

use super::*;

fn args(list: &[&str]) -> Args {
    parse_args(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn built(list: &[&str]) -> Value {
    let cfg = build_config(&args(list)).unwrap_or_else(|e| panic!("{e}"));
    serde_json::to_value(&cfg).unwrap()
}

fn error(list: &[&str]) -> String {
    match build_config(&args(list)) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn split_groups_at_double_dash() {
    let a: Vec<String> = ["-L", ":1", "--", "-L", ":2", "--"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        split_groups(&a),
        vec![
            vec!["-L".to_string(), ":1".into()],
            vec!["-L".into(), ":2".into()],
            vec![]
        ]
    );
    assert_eq!(split_groups(&a[..2]).len(), 1);
}

#[test]
fn lone_handler_gets_tcp_listener() {
    assert_eq!(
        built(&["-L", "http://:8080"]),
        json!({"services": [{"name": "service-0", "addr": ":8080",
            "handler": {"type": "http"}, "listener": {"type": "tcp"}}]})
    );
}

#[test]
fn no_scheme_is_auto() {
    assert_eq!(
        built(&["-L", ":8080", "-L", "127.0.0.1:1080"]),
        json!({"services": [
            {"name": "service-0", "addr": ":8080", "handler": {"type": "auto"}, "listener": {"type": "tcp"}},
            {"name": "service-1", "addr": "127.0.0.1:1080", "handler": {"type": "auto"}, "listener": {"type": "tcp"}}
        ]})
    );
}

#[test]
fn lone_listener_gets_auto_handler_and_https_is_http_tls() {
    assert_eq!(
        built(&[
            "-L",
            "tls://:443",
            "-L",
            "https://:8443?cert=c.pem&key=k.pem"
        ]),
        json!({"services": [
            {"name": "service-0", "addr": ":443", "handler": {"type": "auto"}, "listener": {"type": "tls"}},
            {"name": "service-1", "addr": ":8443", "handler": {"type": "http"},
             "listener": {"type": "tls", "tls": {"certFile": "c.pem", "keyFile": "k.pem"}}}
        ]})
    );
}

#[test]
fn tcp_port_forwarding() {
    assert_eq!(
        built(&["-L", "tcp://:8080/192.168.1.1:80"]),
        json!({"services": [{"name": "service-0", "addr": ":8080",
            "handler": {"type": "tcp"}, "listener": {"type": "tcp"},
            "forwarder": {"nodes": [{"name": "target-0", "addr": "192.168.1.1:80"}]}}]})
    );
}

#[test]
fn forwarding_with_selector_and_udp_metadata() {
    assert_eq!(
        built(&[
            "-L",
            "tcp://:8080/a.com:80,b.com:81?strategy=rand&maxFails=2",
            "-L",
            "udp://:5353/8.8.8.8:53?ttl=30s"
        ]),
        json!({"services": [
            {"name": "service-0", "addr": ":8080",
             "handler": {"type": "tcp"}, "listener": {"type": "tcp"},
             "forwarder": {
                "selector": {"strategy": "rand", "maxFails": 2, "failTimeout": "30s"},
                "nodes": [{"name": "target-0", "addr": "a.com:80"}, {"name": "target-1", "addr": "b.com:81"}]}},
            {"name": "service-1", "addr": ":5353",
             "handler": {"type": "udp", "metadata": {"ttl": "30s"}},
             "listener": {"type": "udp", "metadata": {"ttl": "30s"}},
             "forwarder": {"nodes": [{"name": "target-0", "addr": "8.8.8.8:53"}]},
             "metadata": {"ttl": "30s"}}
        ]})
    );
}

#[test]
fn port_ranges_pair_services_with_targets() {
    let v = built(&["-L", ":8000-8002/10.0.0.1:80-82"]);
    let services = v["services"].as_array().unwrap();
    assert_eq!(services.len(), 3);
    for (i, s) in services.iter().enumerate() {
        assert_eq!(s["name"], format!("service-{i}"));
        assert_eq!(s["addr"], format!(":{}", 8000 + i));
        assert_eq!(s["handler"]["type"], "tcp");
        assert_eq!(
            s["forwarder"]["nodes"],
            json!([{"name": format!("target-{i}"), "addr": format!("10.0.0.1:{}", 80 + i)}])
        );
    }
}

#[test]
fn auth_and_lifted_objects() {
    assert_eq!(
        built(&["-L", "http://user:pass@:8080?bypass=~10.0.0.0/8,*.example.com&retries=3&climiter=100&rlimiter=2.5"]),
        json!({
            "services": [{"name": "service-0", "addr": ":8080",
                "bypass": "bypass-0", "climiter": "climiter-0", "rlimiter": "rlimiter-0",
                "handler": {"type": "http", "retries": 3, "auth": {"username": "user", "password": "pass"}},
                "listener": {"type": "tcp", "metadata":
                    {"bypass": "~10.0.0.0/8,*.example.com", "climiter": "100", "retries": "3", "rlimiter": "2.5"}},
                "metadata": {"bypass": "~10.0.0.0/8,*.example.com", "climiter": "100", "retries": "3", "rlimiter": "2.5"}}],
            "bypasses": [{"name": "bypass-0", "whitelist": true, "matchers": ["10.0.0.0/8", "*.example.com"]}],
            "climiters": [{"name": "climiter-0", "limits": ["$ 100"]}],
            "rlimiters": [{"name": "rlimiter-0", "limits": ["$ 2.5"]}]
        })
    );
}

#[test]
fn resolver_hosts_admission_and_limiter() {
    let v = built(&[
        "-L",
        "socks5://:1080?resolver=udp://8.8.8.8:53&prefer=ipv6&hosts=a.com:1.2.3.4,b.com:::1&admission=127.0.0.1&limiter.in=1MB&limiter.conn.out=2MB",
    ]);
    assert_eq!(v["services"][0]["resolver"], "resolver-0");
    assert_eq!(v["services"][0]["hosts"], "hosts-0");
    assert_eq!(v["services"][0]["admission"], "admission-0");
    assert_eq!(v["services"][0]["limiter"], "limiter-0");
    assert_eq!(
        v["services"][0]["handler"]["metadata"],
        json!({"prefer": "ipv6"})
    );
    assert_eq!(
        v["resolvers"],
        json!([{"name": "resolver-0", "nameservers": [{"addr": "udp://8.8.8.8:53", "prefer": "ipv6"}]}])
    );
    assert_eq!(
        v["hosts"],
        json!([{"name": "hosts-0", "mappings": [
            {"ip": "1.2.3.4", "hostname": "a.com"}, {"ip": "::1", "hostname": "b.com"}]}])
    );
    assert_eq!(
        v["admissions"],
        json!([{"name": "admission-0", "matchers": ["127.0.0.1"]}])
    );
    assert_eq!(
        v["limiters"],
        json!([{"name": "limiter-0", "limits": ["$ 1MB ", "$$  2MB"]}])
    );
}

#[test]
fn service_level_keys_move_to_service_metadata() {
    assert_eq!(
        built(&[
            "-L",
            "http://:8080?interface=eth0&so_mark=100&dns=1.1.1.1,8.8.8.8&handler.x=1&listener.y=2"
        ]),
        json!({"services": [{"name": "service-0", "addr": ":8080",
            "handler": {"type": "http", "metadata": {"dns": ["1.1.1.1", "8.8.8.8"], "x": "1"}},
            "listener": {"type": "tcp", "metadata": {"dns": ["1.1.1.1", "8.8.8.8"], "y": "2"}},
            "metadata": {"dns": ["1.1.1.1", "8.8.8.8"], "interface": "eth0", "so_mark": 100}}]})
    );
}

#[test]
fn chain_from_nodes() {
    assert_eq!(
        built(&["-L", "socks5://:1080", "-F", "http://192.168.1.1:8080"]),
        json!({
            "services": [{"name": "service-0", "addr": ":1080",
                "handler": {"type": "socks5", "chain": "chain-0"}, "listener": {"type": "tcp"}}],
            "chains": [{"name": "chain-0", "hops": [{"name": "hop-0", "nodes": [{
                "name": "node-0", "addr": "192.168.1.1:8080",
                "connector": {"type": "http"},
                "dialer": {"type": "tcp", "tls": {"serverName": "192.168.1.1"}}}]}]}]
        })
    );
}

#[test]
fn multi_node_hops() {
    let v = built(&[
        "-L",
        ":8080",
        "-F",
        "socks5://u:p@h1:1080,h2:1080?strategy=fifo&bypass=a.com&timeout=5s",
        "-F",
        "relay+tls://h3:443?hop.x=1&node.y=2",
    ]);
    let node = |host: &str, name: &str| {
        json!({"name": name, "addr": host,
            "connector": {"type": "socks5", "auth": {"username": "u", "password": "p"}, "metadata": {"timeout": "5s"}},
            // GOST's serverName default is url.Hostname() of the whole list.
            "dialer": {"type": "tcp", "tls": {"serverName": "h1:1080,h2"}, "metadata": {"timeout": "5s"}},
            "metadata": {"timeout": "5s"}})
    };
    assert_eq!(
        v,
        json!({
            "services": [{"name": "service-0", "addr": ":8080",
                "handler": {"type": "auto", "chain": "chain-0"}, "listener": {"type": "tcp"}}],
            "chains": [{"name": "chain-0", "hops": [
                {"name": "hop-0", "selector": {"strategy": "fifo", "maxFails": 1, "failTimeout": "30s"},
                 "bypass": "bypass-0", "nodes": [node("h1:1080", "node-0"), node("h2:1080", "node-1")],
                 "metadata": {"timeout": "5s"}},
                {"name": "hop-1", "nodes": [{"name": "node-0", "addr": "h3:443",
                    "connector": {"type": "relay"}, "dialer": {"type": "tls", "tls": {"serverName": "h3"}},
                    "metadata": {"y": "2"}}],
                 "metadata": {"x": "1"}}
            ]}],
            "bypasses": [{"name": "bypass-0", "matchers": ["a.com"]}]
        })
    );
}

#[test]
fn reverse_tunnel_puts_chain_on_listener() {
    assert_eq!(
        built(&[
            "-L",
            "rtcp://:2222/192.168.1.1:22",
            "-F",
            "relay+ws://server:8443"
        ])["services"],
        json!([{"name": "service-0", "addr": ":2222",
            "handler": {"type": "rtcp"}, "listener": {"type": "rtcp", "chain": "chain-0"},
            "forwarder": {"nodes": [{"name": "target-0", "addr": "192.168.1.1:22"}]}}])
    );
}

#[test]
fn forwarding_with_non_forward_listener_uses_forward_handler() {
    let v = built(&[
        "-L",
        "relay+tls://:8443/10.0.0.1:80",
        "-L",
        "ws://:80/10.0.0.1:80",
    ]);
    assert_eq!(v["services"][0]["handler"]["type"], "relay");
    assert_eq!(v["services"][1]["handler"]["type"], "forward");
    assert_eq!(v["services"][1]["listener"]["type"], "ws");
}

#[test]
fn ss_sip002_and_ssh_auth() {
    let v = built(&[
        "-L",
        "ss://YWVzLTI1Ni1nY206cGFzcw@:8388",
        "-L",
        "sshd://user:pass@:2222",
    ]);
    assert_eq!(
        v["services"][0]["handler"]["auth"],
        json!({"username": "aes-256-gcm", "password": "pass"})
    );
    assert_eq!(v["services"][1]["handler"], json!({"type": "sshd"}));
    assert_eq!(
        v["services"][1]["listener"],
        json!({"type": "sshd", "auth": {"username": "user", "password": "pass"}})
    );
    // `auth=` is base64 of user:pass.
    let v = built(&["-L", "http://:8080?auth=dXNlcjpwYXNz"]);
    assert_eq!(
        v["services"][0]["handler"]["auth"],
        json!({"username": "user", "password": "pass"})
    );
}

#[test]
fn api_metrics_and_debug() {
    let v = built(&[
        "-L",
        ":8080",
        "-api",
        "admin:secret@:18080?pathPrefix=/api&accesslog=true",
        "-metrics",
        ":9000?path=/metrics",
        "-D",
    ]);
    assert_eq!(
        v["api"],
        json!({"addr": ":18080", "pathPrefix": "/api", "accesslog": true, "auth": {"username": "admin", "password": "secret"}})
    );
    assert_eq!(v["metrics"], json!({"addr": ":9000", "path": "/metrics"}));
    assert_eq!(v["log"], json!({"level": "debug"}));
    let v = built(&["-L", ":8080", "-api", "unix:///tmp/gost.sock", "-DD"]);
    assert_eq!(v["api"], json!({"addr": "unix:///tmp/gost.sock"}));
    assert_eq!(v["log"], json!({"level": "trace"}));
}

#[test]
fn yaml_output_shape() {
    let cfg = build_config(&args(&["-L", "http://:8080"])).unwrap();
    assert_eq!(
        cfg.to_yaml().unwrap(),
        "services:\n- name: service-0\n  addr: :8080\n  handler:\n    type: http\n  listener:\n    type: tcp\n"
    );
}

#[test]
fn target_names_carry_the_group_id() {
    let cfg = build::build_cmd_config(&["tcp://:1/h:2".into()], &[], Some("1")).unwrap();
    let fwd = cfg.services[0].forwarder.as_ref().unwrap();
    assert_eq!(fwd.nodes[0].name, "go-1@target-0");
    assert_eq!(cfg.services[0].name, "service-0");
}

#[test]
fn precise_errors() {
    assert_eq!(
        error(&["-L", "foo://:80"]),
        "-L \"foo://:80\": unknown scheme 'foo'"
    );
    assert_eq!(
        error(&["-L", "http+foo://:80"]),
        "-L \"http+foo://:80\": unknown listener 'foo'"
    );
    assert_eq!(
        error(&["-L", "tls+tcp://:80"]),
        "-L \"tls+tcp://:80\": unknown handler 'tls'"
    );
    assert_eq!(
        error(&["-L", ":99999"]),
        "-L \":99999\": invalid port 99999 (0-65535)"
    );
    assert_eq!(
        error(&["-L", "http://localhost"]),
        "-L \"http://localhost\": missing port"
    );
    assert_eq!(
        error(&["-L", "http://"]),
        "-L \"http://\": missing address (e.g. :8080)"
    );
    assert_eq!(
        error(&["-L", "tcp://:1/h:70000"]),
        "-L \"tcp://:1/h:70000\": forward target \"h:70000\": invalid port 70000 (0-65535)"
    );
    assert_eq!(
        error(&["-L", "http://:8080?retries=abc"]),
        "-L \"http://:8080?retries=abc\": metadata \"retries\": invalid value \"abc\": expected an integer"
    );
    assert!(error(&["-L", "http://:8080?auth=!!!"]).contains("not base64"));
    assert_eq!(
        error(&["-F", "http://host:8x"]),
        "-F \"http://host:8x\": invalid port \":8x\" after host"
    );
    assert_eq!(
        error(&["-F", "bogus://h:1"]),
        "-F \"bogus://h:1\": unknown scheme 'bogus'"
    );
    assert_eq!(
        error(&["-F", "http+bogus://h:1"]),
        "-F \"http+bogus://h:1\": unknown dialer 'bogus'"
    );
    assert_eq!(
        error(&["-F", "http://h:99999"]),
        "-F \"http://h:99999\": address \"h:99999\": invalid port 99999 (0-65535)"
    );
    assert_eq!(error(&["-F", " "]), "-F \" \": empty argument");
    assert_eq!(
        error(&["-api", ":99999"]),
        "-api \":99999\": invalid port 99999 (0-65535)"
    );
    assert_eq!(
        error(&["-L", "a+b+c://:1"]),
        "-L \"a+b+c://:1\": invalid scheme 'a+b+c': expected at most two parts joined by '+'"
    );
}

#[test]
fn unix_and_stdio() {
    let v = built(&[
        "-L",
        "unix:///var/run/gost.sock",
        "-L",
        "stdio://example.com:80",
    ]);
    assert_eq!(v["services"][0]["addr"], "/var/run/gost.sock");
    assert_eq!(v["services"][0]["handler"]["type"], "unix");
    assert_eq!(v["services"][1]["addr"], "example.com:80");
    assert_eq!(v["services"][1]["handler"]["type"], "tcp");
    assert_eq!(
        v["services"][1]["forwarder"]["nodes"],
        json!([{"name": "target-0", "addr": "example.com:80"}])
    );
}

#[test]
fn config_files_merge_before_command_line() {
    let a = Args {
        configs: vec![
            r#"{"services":[{"name":"from-file","addr":":1"}],"api":{"addr":":2"},"log":{"level":"info"}}"#.into(),
        ],
        services: vec![":3".into()],
        api: Some(":4".into()),
        ..Default::default()
    };
    let env = |k: &str| match k {
        "GOST_LOGGER_LEVEL" => Some("warn".to_string()),
        "GOST_METRICS" => Some(":5".to_string()),
        _ => None,
    };
    let (cfg, warnings) = load_config_with(&a, env).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let names: Vec<_> = cfg.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["from-file", "service-0"]);
    assert_eq!(cfg.api.unwrap().addr, ":4");
    assert_eq!(cfg.log.unwrap().level, "warn");
    assert_eq!(cfg.metrics.unwrap().addr, ":5");

    let bad = Args {
        configs: vec![r#"{"services": 1}"#.into()],
        ..Default::default()
    };
    let e = load_config_with(&bad, |_| None).unwrap_err().to_string();
    assert!(e.starts_with("inline config: line 1, column"), "{e}");
}

#[test]
fn unknown_keys_become_warnings() {
    let a = Args {
        configs: vec![r#"{"services":[{"name":"a","addr":":1","listner":{}}]}"#.into()],
        ..Default::default()
    };
    let (_, warnings) = load_config_with(&a, |_| None).unwrap();
    assert_eq!(
        warnings,
        ["inline config: unknown key services.0.listner (ignored)"]
    );
}
