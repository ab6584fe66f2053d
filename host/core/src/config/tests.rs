use super::*;

const RICH: &str = r#"
services:
- name: svc-http
  addr: ":8080"
  admission: adm-0
  bypasses: [byp-0]
  resolver: res-0
  hosts: hosts-0
  limiter: lim-0
  climiter: clim-0
  rlimiter: rlim-0
  observer: obs-0
  recorders:
  - name: rec-0
    record: recorder.service.handler
  handler:
    type: http
    retries: 2
    chain: chain-0
    auth: {username: user, password: pass}
    metadata: {enableStats: true}
  listener:
    type: tls
    tls: {certFile: cert.pem, keyFile: key.pem, validity: 720h}
  metadata: {observer.period: 5s, preUp: [echo up]}
- name: svc-fwd
  addr: "[::1]:9000-9002"
  handler: {type: tcp}
  listener: {type: tcp}
  forwarder:
    selector: {strategy: fifo, maxFails: 3, failTimeout: 30s}
    nodes:
    - name: target-0
      addr: 192.168.1.1:80
      matcher: {rule: "Host(`a.com`)", bodySize: 1024}
      http:
        host: example.com
        requestHeader: {X-A: "1"}
        rewriteURL: [{match: /old, replacement: /new}]
      probe: {type: http, interval: 10s, timeout: 1s, httpPath: /health}
chains:
- name: chain-0
  hops:
  - name: hop-0
    selector: {strategy: round, maxFails: 1, failTimeout: 10s}
    nodes:
    - name: node-0
      addr: 10.0.0.1:1080
      connector: {type: socks5, auth: {username: u}}
      dialer: {type: tls, tls: {serverName: example.com, secure: true}}
  - name: hop-shared
hops:
- name: hop-shared
  plugin: {type: grpc, addr: 127.0.0.1:8000, timeout: 3s}
authers:
- name: auth-0
  auths: [{username: a, password: b}]
admissions:
- name: adm-0
  whitelist: true
  matchers: [127.0.0.1]
bypasses:
- name: byp-0
  matchers: ["*.example.com"]
  reload: 1m
  file: {path: /tmp/bypass.txt}
resolvers:
- name: res-0
  nameservers: [{addr: "udp://8.8.8.8:53", ttl: 60s, prefer: ipv4}]
hosts:
- name: hosts-0
  mappings: [{ip: 127.0.0.1, hostname: example.org, aliases: [a.example.org]}]
limiters:
- name: lim-0
  limits: ["$ 100MB 100MB"]
climiters:
- name: clim-0
  limits: ["$ 1000"]
rlimiters:
- name: rlim-0
  limits: ["$ 10"]
observers:
- name: obs-0
  plugin: {type: http, addr: "http://127.0.0.1:8000/observer"}
recorders:
- name: rec-0
  file: {path: /tmp/rec.txt, sep: "\n"}
quotas:
- name: q-0
  limit: 10GB
  store: {type: file, file: /tmp/q.json}
caches:
- name: cache-0
  memory: {ttl: 1m30s, maxSize: 100}
loggers:
- name: logger-0
  log: {output: stderr, level: info, rotation: {maxSize: 10}}
log: {level: debug, format: json}
api:
  addr: ":18080"
  pathPrefix: /api
  accesslog: true
  auth: {username: admin, password: secret}
metrics: {addr: ":9090", path: /metrics}
profiling: {addr: ":6060"}
tls: {certFile: a.pem, keyFile: b.pem, options: {minVersion: VersionTLS12, alpn: [h2]}}
"#;

fn rich() -> Config {
    let loaded = Config::from_yaml_str(RICH).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.unknown_keys, Vec::<String>::new());
    loaded.config
}

#[test]
fn rich_config_reads_every_section() {
    let c = rich();
    assert_eq!(c.services.len(), 2);
    let s = &c.services[0];
    assert_eq!(s.handler.as_ref().unwrap().r#type, "http");
    assert_eq!(s.handler.as_ref().unwrap().retries, 2);
    assert_eq!(s.metadata.get_bool("enablestats"), Ok(None));
    assert_eq!(
        s.handler.as_ref().unwrap().metadata.get_bool("enablestats"),
        Ok(Some(true))
    );
    let tls = s.listener.as_ref().unwrap().tls.as_ref().unwrap();
    assert_eq!(tls.validity, Duration::from_secs(720 * 3600));
    let fwd = c.services[1].forwarder.as_ref().unwrap();
    let sel = fwd.selector.as_ref().unwrap();
    assert_eq!(
        (sel.strategy.as_str(), sel.max_fails, sel.fail_timeout),
        ("fifo", 3, Duration::from_secs(30))
    );
    assert_eq!(fwd.nodes[0].matcher.as_ref().unwrap().body_size, 1024);
    assert_eq!(
        fwd.nodes[0].http.as_ref().unwrap().rewrite_url[0].r#match,
        "/old"
    );
    assert_eq!(
        c.chains[0].hops[0].nodes[0].dialer.as_ref().unwrap().r#type,
        "tls"
    );
    assert_eq!(c.api.as_ref().unwrap().path_prefix, "/api");
    assert!(c.api.as_ref().unwrap().accesslog);
    assert_eq!(
        c.caches[0].memory.as_ref().unwrap().ttl,
        Duration::from_secs(90)
    );
    assert!(c.validate().is_ok(), "{:?}", c.validate());
}

#[test]
fn yaml_and_json_round_trip() {
    let c = rich();
    let yaml = c.to_yaml().unwrap();
    assert_eq!(Config::from_yaml_str(&yaml).unwrap().config, c, "{yaml}");
    let json = c.to_json().unwrap();
    assert!(json.ends_with("}\n"));
    assert!(json.contains("\n  \"services\": [\n"), "{json}");
    let back = Config::from_json_str(&json).unwrap();
    assert_eq!(back.config, c);
    assert!(back.unknown_keys.is_empty());
}

#[test]
fn output_keeps_go_field_names_and_omits_empty() {
    let c = rich();
    let json = c.to_json().unwrap();
    for key in [
        "\"pathPrefix\"",
        "\"accesslog\"",
        "\"failTimeout\": \"30s\"",
        "\"maxFails\": 3",
        "\"bodySize\"",
        "\"rewriteURL\"",
        "\"requestHeader\"",
        "\"certFile\"",
        "\"httpPath\"",
        "\"validity\": \"720h0m0s\"",
    ] {
        assert!(json.contains(key), "missing {key} in {json}");
    }
    // Empty strings, zero numbers and absent objects are left out.
    assert!(!json.contains("\"interface\""));
    assert!(!json.contains("\"status\""));
    assert!(!json.contains("\"retries\": 0"));
    // Fields Go always writes.
    let empty = Config {
        services: vec![ServiceConfig {
            name: "s".into(),
            forwarder: Some(ForwarderConfig::default()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let yaml = empty.to_yaml().unwrap();
    assert_eq!(yaml, "services:\n- name: s\n  forwarder:\n    nodes: []\n");
    assert_eq!(
        Config::default().to_json().unwrap(),
        "{\n  \"services\": []\n}\n"
    );
}

#[test]
fn unknown_keys_are_reported_with_their_path() {
    let text = "services:\n- name: a\n  addr: :1\n  listner: {type: tcp}\n  handler: {type: http, foo: 1}\nextra: 1\n";
    let loaded = Config::from_yaml_str(text).unwrap();
    assert_eq!(
        loaded.unknown_keys,
        vec!["services.0.listner", "services.0.handler.foo", "extra"]
    );
}

#[test]
fn lowercase_keys_are_accepted_like_gost() {
    let c = Config::from_yaml_str(
        "api: {addr: ':1', pathprefix: /x}\nhops: [{name: h, selector: {maxfails: 2}}]\n",
    )
    .unwrap();
    assert!(c.unknown_keys.is_empty(), "{:?}", c.unknown_keys);
    assert_eq!(c.config.api.unwrap().path_prefix, "/x");
    assert_eq!(c.config.hops[0].selector.as_ref().unwrap().max_fails, 2);
}

#[test]
fn chain_group_accepts_plain_names() {
    let c = Config::from_yaml_str(
        "services:\n- name: s\n  addr: :1\n  handler:\n    type: http\n    chainGroup:\n      chains: [a, {chain: b, matcher: {rule: x}}]\n",
    )
    .unwrap()
    .config;
    let group = c.services[0]
        .handler
        .as_ref()
        .unwrap()
        .chain_group
        .as_ref()
        .unwrap();
    assert_eq!(group.chains[0].chain, "a");
    assert_eq!(group.chains[1].chain, "b");
    assert_eq!(group.chains[1].matcher.as_ref().unwrap().rule, "x");
}

#[test]
fn durations_as_nanoseconds() {
    let c = Config::from_json_str(
        r#"{"hops":[{"name":"h","selector":{"strategy":"round","failTimeout":10000000000}}]}"#,
    )
    .unwrap()
    .config;
    assert_eq!(
        c.hops[0].selector.as_ref().unwrap().fail_timeout,
        Duration::from_secs(10)
    );
}

#[test]
fn errors_name_origin_line_and_column() {
    let e = Config::from_yaml_str("services:\n- name: a\n  addr: [1, 2]\n").unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ConfigError::Syntax { line: 3, .. }), "{msg}");
    assert!(msg.starts_with("<yaml>: line 3, column "), "{msg}");
    assert!(msg.contains("addr"), "{msg}");

    let e = Config::parse_inline(r#"{"services": [{"name": 1}]}"#).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("inline config: line 1, column "), "{msg}");

    let e = Config::from_yaml_str("services:\n- name: a\n  handler: {retries: x}\n").unwrap_err();
    assert!(e.to_string().contains("line 3"), "{e}");

    let e = Config::from_yaml_str("hops:\n- name: h\n  reload: 5 minutes\n").unwrap_err();
    assert!(
        e.to_string().contains("invalid duration \"5 minutes\""),
        "{e}"
    );

    let e = Config::from_json_str("{\"services\": [] } x").unwrap_err();
    assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");
}

#[test]
fn load_picks_format_from_extension() {
    let dir = std::env::temp_dir().join(format!("gost-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("a.json");
    std::fs::write(&json, r#"{"services":[{"name":"s","addr":":1"}]}"#).unwrap();
    let yml = dir.join("b.yml");
    std::fs::write(&yml, "services:\n- name: t\n  addr: :2\n").unwrap();
    let bad = dir.join("c.json");
    std::fs::write(&bad, "{\n  \"services\": 3\n}").unwrap();

    assert_eq!(Config::load(&json).unwrap().config.services[0].name, "s");
    assert_eq!(
        Config::load_source(yml.to_str().unwrap())
            .unwrap()
            .config
            .services[0]
            .name,
        "t"
    );
    let e = Config::load(&bad).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}: line 2, column", bad.display())),
        "{e}"
    );
    let e = Config::load(dir.join("missing.yaml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.yaml"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sources_are_classified_like_gost() {
    assert_eq!(Source::classify("-"), Source::Stdin);
    assert_eq!(
        Source::classify(" {\"a\":1} "),
        Source::Inline("{\"a\":1}".into())
    );
    assert_eq!(
        Source::classify("https://x/c.yaml"),
        Source::Url("https://x/c.yaml".into())
    );
    assert_eq!(
        Source::classify("gost.yaml"),
        Source::File("gost.yaml".into())
    );
    assert!(matches!(
        Config::load_source("http://h/c.json"),
        Err(ConfigError::UrlUnsupported(_))
    ));
}

#[test]
fn merge_appends_lists_and_replaces_singletons() {
    let a = Config::from_yaml_str(
        "services: [{name: a, addr: ':1'}]\nlog: {level: info}\napi: {addr: ':2'}\n",
    )
    .unwrap()
    .config;
    let b = Config::from_yaml_str("services: [{name: b, addr: ':3'}]\nlog: {level: debug}\n")
        .unwrap()
        .config;
    let m = a.merge(b);
    let names: Vec<_> = m.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(m.log.unwrap().level, "debug");
    assert_eq!(m.api.unwrap().addr, ":2");
}

#[test]
fn validation_reports_every_problem() {
    let text = r#"
services:
- name: s
  addr: ":99999"
  bypass: nope
  handler: {type: http, chain: chain-x, auther: au}
  forwarder: {hop: hop-x}
- name: s
  addr: "localhost"
- name: ""
  addr: ":1"
- name: t
- name: u
  addr: "::1:80"
- name: v
  addr: ":http"
- name: w
  addr: /tmp/sock
  listener: {type: unix}
chains:
- name: c
  hops: [{name: missing-hop}, {name: h, nodes: [{name: n, bypass: b2}]}]
"#;
    let c = Config::from_yaml_str(text).unwrap().config;
    let errs: Vec<String> = c
        .validate()
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    let expected = [
        "services: duplicate name \"s\"",
        "services[2]: name is required",
        "service \"s\": addr \":99999\": invalid port 99999 (0-65535)",
        "service \"s\": bypass \"nope\" not found",
        "service \"s\": handler.chain \"chain-x\" not found",
        "service \"s\": handler.auther \"au\" not found",
        "service \"s\": forwarder.hop \"hop-x\" not found",
        "service \"s\": addr \"localhost\": missing port",
        "service \"t\": addr is required",
        "service \"u\": addr \"::1:80\": too many colons (put an IPv6 address in brackets)",
        "service \"v\": addr \":http\": invalid port \"http\"",
        "chain \"c\": hop \"missing-hop\" not found",
        "chain \"c\": hop \"h\": node \"n\": bypass \"b2\" not found",
    ];
    assert_eq!(errs, expected);
}

#[test]
fn unsupported_types_are_named() {
    let c = rich();
    let msgs = c.unsupported(|kind, ty| match kind {
        Kind::Listener => ty == "tcp",
        Kind::Handler => ty == "tcp" || ty == "http",
        Kind::Connector => ty == "http",
        Kind::Dialer => ty == "tcp",
        Kind::Plugin => ty == "http",
    });
    assert_eq!(
        msgs,
        [
            "service \"svc-http\": listener type 'tls' is not supported",
            "chain \"chain-0\": hop \"hop-0\": node \"node-0\": connector type 'socks5' is not supported",
            "chain \"chain-0\": hop \"hop-0\": node \"node-0\": dialer type 'tls' is not supported",
            "hop \"hop-shared\": plugin type 'grpc' is not supported",
        ]
    );
    let defaults = Config::from_yaml_str("services: [{name: s, addr: ':1'}]")
        .unwrap()
        .config;
    assert_eq!(
        defaults.unsupported(|_, _| false),
        [
            "service \"s\": listener type 'tcp' is not supported",
            "service \"s\": handler type 'auto' is not supported"
        ]
    );
}

#[test]
fn sections_in_use() {
    let c = Config::from_yaml_str(
        "services: [{name: s, addr: ':1'}]\napi: {addr: ':2'}\nlimiters: [{name: l}]\n",
    )
    .unwrap()
    .config;
    assert_eq!(c.non_empty_sections(), ["services", "limiters", "api"]);
}

#[test]
fn status_serializes_like_gost() {
    let s = ServiceConfig {
        name: "s".into(),
        status: Some(ServiceStatus {
            create_time: 1,
            state: "ready".into(),
            events: vec![ServiceEvent {
                time: 2,
                msg: "service s is ready".into(),
            }],
            stats: Some(ServiceStats::default()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"name": "s", "status": {"createTime": 1, "state": "ready",
            "events": [{"time": 2, "msg": "service s is ready"}],
            "stats": {"totalConns": 0, "currentConns": 0, "totalErrs": 0, "inputBytes": 0, "outputBytes": 0}}})
    );
}
