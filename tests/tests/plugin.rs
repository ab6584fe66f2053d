//! WebAssembly handler plugins through the real binary: curl through the
//! example SOCKS5 plugin, faulty plugins that must not take the service
//! down, and clear start-up errors for bad plugin files.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use gost_e2e::*;

const BODY: &str = "hello through wasm";

fn start_config(dir: &TempDir, yaml: &str) -> Gost {
    let file = dir.write("gost.yaml", yaml);
    Gost::start(&["-C", &file])
}

#[test]
fn curl_through_wasm_socks5_with_auth() {
    let http = http_origin("127.0.0.1:0", BODY);
    let (port, api) = (free_port(), free_port());
    let dir = TempDir::new("wasm-socks");
    let g = start_config(
        &dir,
        &format!(
            "services:
- name: wasm-socks
  addr: 127.0.0.1:{port}
  handler:
    type: wasm
    auther: users
    plugin: {{type: wasm, path: {}}}
  listener: {{type: tcp}}
  metadata: {{enableStats: true}}
authers:
- name: users
  auths: [{{username: alice, password: secret}}]
api: {{addr: 127.0.0.1:{api}}}
",
            plugin_wasm("socks5")
        ),
    );
    g.wait_tcp(port);
    let url = format!("http://127.0.0.1:{}/", http.port());
    let proxy = format!("socks5://alice:secret@127.0.0.1:{port}");
    for _ in 0..3 {
        assert_eq!(
            curl_body(&["-x", &proxy, &url]),
            (true, BODY.to_string()),
            "{}",
            g.log()
        );
    }
    // Host names are resolved by the host's router (socks5h sends them).
    let proxy_h = format!("socks5h://alice:secret@127.0.0.1:{port}");
    let by_name = format!("http://localhost:{}/", http.port());
    assert_eq!(
        curl_body(&["-x", &proxy_h, &by_name]),
        (true, BODY.to_string())
    );
    // Wrong password and no credentials are both refused.
    let bad = format!("socks5://alice:wrong@127.0.0.1:{port}");
    assert!(!curl_body(&["-x", &bad, &url]).0);
    assert!(!curl_body(&["--socks5", &format!("127.0.0.1:{port}"), &url]).0);
    // Six clients and the probe of wait_tcp, which is not an error.
    let svc = wait_service(api, "wasm-socks", |s| {
        s["status"]["stats"]["totalConns"] == 7 && s["status"]["stats"]["currentConns"] == 0
    });
    // The two refused clients count as errors, as the native handler's do.
    assert_eq!(svc["status"]["stats"]["totalErrs"], 2, "{svc}");
    assert!(svc["status"]["stats"]["inputBytes"].as_u64().unwrap() > 0);
}

/// Runs the socks5 plugin in the CLI form (`flags` go before `-L`), fetches
/// one page through it, and returns gost and the log text that marks the
/// plugin's per-connection debug line for that fetch.
fn cli_socks5_fetch(flags: &[&str]) -> (Gost, String) {
    let http = http_origin("127.0.0.1:0", BODY);
    let port = free_port();
    let listen = format!("wasm://127.0.0.1:{port}?plugin={}", plugin_wasm("socks5"));
    let mut args = flags.to_vec();
    args.extend(["-L", &listen]);
    let g = Gost::start(&args);
    g.wait_tcp(port);
    let url = format!("http://127.0.0.1:{}/", http.port());
    let (ok, body) = curl_body(&["--socks5", &format!("127.0.0.1:{port}"), &url]);
    assert!(ok, "{}", g.log());
    assert_eq!(body, BODY);
    (g, format!(" -> 127.0.0.1:{}", http.port()))
}

#[test]
fn cli_form_runs_a_wasm_handler() {
    let (g, dialed) = cli_socks5_fetch(&[]);
    assert!(!g.log().contains(&dialed), "{}", g.log());
}

/// The plugin asks `log-enabled` before formatting its debug line: with
/// `-D` the answer is yes and the line reaches the log.
#[test]
fn plugin_debug_lines_follow_the_log_level() {
    let (g, dialed) = cli_socks5_fetch(&["-D"]);
    g.wait_log(&dialed);
    let log = g.log();
    let line = log.lines().find(|l| l.contains(&dialed)).unwrap();
    assert!(
        line.contains("\"level\":\"debug\"") && line.contains("socks5"),
        "{line}"
    );
}

/// A relay outcome asking the host to write to a client whose write side
/// the plugin already shut down is the plugin's error, named as such, not
/// a client that went away.
#[test]
fn relay_outcome_writing_after_shutdown_is_a_plugin_error() {
    let (g, port) = cli_faulty("");
    assert_eq!(poke(port, b'r'), b"");
    g.wait_log("to-client bytes for a conn whose write side the plugin shut down");
    let log = g.log();
    let line = log
        .lines()
        .find(|l| l.contains("invalid relay outcome"))
        .unwrap();
    assert!(line.contains(&plugin_wasm("faulty")), "{line}");
    // The service goes on.
    assert_eq!(poke(port, b'e'), b"e");
}

/// A client that sends its greeting, request and first payload in one
/// write: the plugin reads past its handshake, and the host hands those
/// bytes (`to-upstream`) to the target together with the success reply
/// (`to-client`) before it relays. A refused target gets its reply from
/// the plugin's buffered connection as the handler returns.
#[test]
fn wasm_socks5_pipelined_client_and_refused_target() {
    let http = http_origin("127.0.0.1:0", BODY);
    let port = free_port();
    let listen = format!("wasm://127.0.0.1:{port}?plugin={}", plugin_wasm("socks5"));
    let g = Gost::start(&["-L", &listen]);
    g.wait_tcp(port);
    let connect = |target: SocketAddr, extra: &[u8]| {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let SocketAddr::V4(v4) = target else {
            unreachable!()
        };
        let mut msg = vec![5, 1, 0, 5, 1, 0, 1];
        msg.extend(v4.ip().octets());
        msg.extend(v4.port().to_be_bytes());
        msg.extend(extra);
        c.write_all(&msg).unwrap();
        let mut head = [0u8; 12];
        c.read_exact(&mut head).unwrap();
        assert_eq!(head[..2], [5, 0], "method reply");
        (c, head[2..].to_vec())
    };
    let (mut c, reply) = connect(http, b"GET / HTTP/1.0\r\nHost: x\r\n\r\n");
    assert_eq!(reply[..2], [5, 0], "CONNECT succeeded");
    let mut resp = String::new();
    c.read_to_string(&mut resp).unwrap();
    assert!(
        resp.starts_with("HTTP/1.") && resp.ends_with(BODY),
        "{resp}"
    );
    let closed: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (mut c, reply) = connect(closed, b"");
    assert_eq!(reply[..2], [5, 5], "connection refused");
    assert_eq!(c.read(&mut [0u8; 1]).unwrap(), 0, "closed after the reply");
}

/// Sends one command byte to the faulty plugin and waits until the server
/// closes the connection; returns what it sent back.
fn poke(port: u16, cmd: u8) -> Vec<u8> {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(&[cmd]).unwrap();
    let mut out = Vec::new();
    let start = Instant::now();
    let mut b = [0u8; 64];
    loop {
        match c.read(&mut b) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&b[..n]),
            // A reset is a close too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("poke {}: {e} after {:?}", cmd as char, start.elapsed()),
        }
    }
    let _ = c.shutdown(Shutdown::Both);
    out
}

#[test]
fn faulty_plugins_end_only_their_connection() {
    let (port, api) = (free_port(), free_port());
    let dir = TempDir::new("wasm-faulty");
    let g = start_config(
        &dir,
        &format!(
            "services:
- name: faulty-svc
  addr: 127.0.0.1:{port}
  handler:
    type: wasm
    plugin:
      type: wasm
      path: {}
      limits: {{memory: 16MiB, deadline: 200ms}}
  metadata: {{enableStats: true}}
api: {{addr: 127.0.0.1:{api}}}
",
            plugin_wasm("faulty")
        ),
    );
    g.wait_tcp(port);
    // A connection left in the middle of a handshake keeps its instance
    // busy; the others must be served meanwhile.
    let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert_eq!(poke(port, b'e'), b"e");
    let start = Instant::now();
    assert_eq!(
        poke(port, b'l'),
        b"",
        "the loop must be cut by the deadline"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(poke(port, b't'), b"");
    assert_eq!(poke(port, b'm'), b"");
    assert_eq!(poke(port, b'w'), b"");
    // Served by an instance that never failed, or by a fresh one.
    for _ in 0..3 {
        assert_eq!(poke(port, b'e'), b"e");
    }
    idle.write_all(b"e").unwrap();
    let mut b = [0u8; 1];
    idle.set_read_timeout(Some(TIMEOUT)).unwrap();
    idle.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"e");
    // Nine clients and the probe of wait_tcp.
    let svc = wait_service(api, "faulty-svc", |s| {
        s["status"]["stats"]["totalConns"] == 10 && s["status"]["stats"]["currentConns"] == 0
    });
    assert_eq!(svc["status"]["stats"]["totalErrs"], 4, "{svc}\n{}", g.log());
    let log = g.log();
    let plugin = plugin_wasm("faulty");
    for what in [
        "deadline exceeded",
        "trapped",
        "out of memory (limit 16777216 bytes)",
        "write after shutdown-write",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains(what) && l.contains(&plugin) && l.contains("faulty-svc")),
            "no log line with {what:?}, plugin and service:\n{log}"
        );
    }
}

/// The faulty plugin as a CLI service, with `query` appended to its URL.
fn cli_faulty(query: &str) -> (Gost, u16) {
    let port = free_port();
    let g = Gost::start(&[
        "-L",
        &format!(
            "wasm://127.0.0.1:{port}?plugin={}{query}",
            plugin_wasm("faulty")
        ),
    ]);
    g.wait_tcp(port);
    (g, port)
}

/// Each `conn-info` field the plugin asks for is the connection's own.
#[test]
fn plugin_reads_its_conn_info() {
    let (g, port) = cli_faulty("");
    for _ in 0..2 {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        c.write_all(b"i").unwrap();
        let mut line = String::new();
        c.read_to_string(&mut line).unwrap();
        let me = c.local_addr().unwrap();
        assert_eq!(
            line,
            format!("service-0 tcp {me} 127.0.0.1:{port}\n"),
            "{}",
            g.log()
        );
    }
}

/// A warm instance serves one connection after another from the same
/// store: anything a call leaves behind there (a lent `conn-info` did)
/// piles up until the store's handle cap of 1,000 refuses the next call.
#[test]
fn warm_instance_serves_past_its_handle_cap() {
    let (g, port) = cli_faulty("");
    for i in 0..1_200 {
        assert_eq!(poke(port, b'e'), b"e", "connection {i}:\n{}", g.log());
    }
}

#[test]
fn per_connection_isolation_serves_each_client_fresh() {
    let (_g, port) = cli_faulty("&isolation=per-connection");
    for _ in 0..3 {
        assert_eq!(poke(port, b'e'), b"e");
        assert_eq!(poke(port, b't'), b"");
    }
}

fn refused(yaml_handler_plugin: &str) -> String {
    let dir = TempDir::new("wasm-bad");
    let file = dir.write(
        "gost.yaml",
        &format!(
            "services:
- name: bad
  addr: 127.0.0.1:{}
  handler: {{type: wasm, plugin: {yaml_handler_plugin}}}
",
            free_port()
        ),
    );
    let (status, out, err) = run_gost(&["-C", &file]);
    assert!(!status.success(), "started with a bad plugin: {out}{err}");
    format!("{out}{err}")
}

#[test]
fn bad_plugin_files_are_refused_with_reasons() {
    let dir = TempDir::new("wasm-files");
    let missing = dir.path("missing.wasm");
    let text = dir.write("text.wasm", "not wasm at all");
    let core = dir.0.join("core.wasm");
    // The smallest valid core module: header only.
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let core = core.to_string_lossy().into_owned();

    let e = refused(&format!("{{type: wasm, path: {missing}}}"));
    assert!(e.contains(&missing) && e.contains("cannot read"), "{e}");
    let e = refused(&format!("{{type: wasm, path: {text}}}"));
    assert!(
        e.contains(&text) && e.contains("not a WebAssembly file"),
        "{e}"
    );
    let e = refused(&format!("{{type: wasm, path: {core}}}"));
    assert!(e.contains(&core) && e.contains("not a component"), "{e}");
    let e = refused(&format!(
        "{{type: wasm, path: {}, limits: {{memory: 10XB}}}}",
        plugin_wasm("socks5")
    ));
    assert!(
        e.contains("limits.memory") && e.contains("unknown unit"),
        "{e}"
    );
    let e = refused("{type: grpc, addr: 127.0.0.1:1}");
    assert!(e.contains("plugin type 'grpc'"), "{e}");
    // A plugin built against another WIT version: the same component with
    // its `gost:plugin/...@0.3.0` names rewritten to 0.9.0.
    let mut bytes = std::fs::read(plugin_wasm("socks5")).unwrap();
    let (from, to) = (b"@0.3.0", b"@0.9.0");
    let mut patched = 0;
    for i in 0..bytes.len().saturating_sub(from.len()) {
        if &bytes[i..i + from.len()] == from
            && bytes[..i].ends_with(b"network")
                | bytes[..i].ends_with(b"runtime")
                | bytes[..i].ends_with(b"types")
        {
            bytes[i..i + to.len()].copy_from_slice(to);
            patched += 1;
        }
    }
    assert!(patched > 0);
    let old = dir.0.join("old.wasm");
    std::fs::write(&old, bytes).unwrap();
    let old = old.to_string_lossy().into_owned();
    let e = refused(&format!("{{type: wasm, path: {old}}}"));
    assert!(
        e.contains(&old) && e.contains("built for gost:plugin@0.9.0"),
        "{e}"
    );
    // A plugin on a native handler would be ignored: refused instead.
    let file = dir.write(
        "native.yaml",
        &format!(
            "services:
- name: native
  addr: 127.0.0.1:{}
  handler: {{type: socks5, plugin: {{type: wasm, path: {}}}}}
",
            free_port(),
            plugin_wasm("socks5")
        ),
    );
    let (status, out, err) = run_gost(&["-C", &file]);
    assert!(!status.success());
    assert!(
        format!("{out}{err}").contains("handler.plugin is only used by handler type wasm"),
        "{out}{err}"
    );
}

/// A minimal TLS ClientHello carrying `name` as SNI.
fn client_hello(name: &str) -> Vec<u8> {
    let n = name.as_bytes();
    let mut sni = vec![];
    sni.extend_from_slice(&((n.len() + 3) as u16).to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&(n.len() as u16).to_be_bytes());
    sni.extend_from_slice(n);
    let mut ext = vec![0, 0];
    ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    ext.extend_from_slice(&sni);
    let mut hello = vec![3, 3];
    hello.extend_from_slice(&[0u8; 32]);
    hello.push(0);
    hello.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    hello.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    hello.extend_from_slice(&ext);
    let mut hs = vec![1];
    hs.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&hello);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// Sends `first` and returns everything the server sends back before it
/// closes (empty when the proxy refused the connection).
fn exchange(port: u16, first: &[u8]) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(first).unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Settings of a plugin hop or its nodes beyond what the plugin path uses
/// would not be applied (the plugin picks the node): refused at start-up,
/// by name.
#[test]
fn plugin_hop_refuses_settings_it_would_ignore() {
    let dir = TempDir::new("wasm-hop-node");
    let refused = |hop_extra: &str, node_extra: &str| {
        let file = dir.write(
            "gost.yaml",
            &format!(
                "services:
- name: fwd
  addr: 127.0.0.1:{}
  handler: {{type: tcp}}
  forwarder: {{hop: picked}}
hops:
- name: picked
  nodes:
  - {{name: a, addr: 127.0.0.1:1}}
  - {{name: b, addr: 127.0.0.1:2{node_extra}}}
  plugin: {{type: wasm, path: {}}}{hop_extra}
",
                free_port(),
                plugin_wasm("sni-router")
            ),
        );
        let (status, out, err) = run_gost(&["-C", &file]);
        assert!(!status.success(), "started: {out}{err}");
        format!("{out}{err}")
    };
    let msg = refused("", ", network: udp, matcher: {rule: Host(`b.example`)}");
    assert!(
        msg.contains("service \"fwd\": hop \"picked\": node \"b\" sets matcher, network;")
            && msg.contains("its nodes only name and addr"),
        "{msg}"
    );
    let msg = refused("\n  selector: {strategy: fifo}", "");
    assert!(
        msg.contains("service \"fwd\": hop \"picked\" sets selector;")
            && msg.contains("takes only name, nodes and plugin"),
        "{msg}"
    );
}

#[test]
fn sni_router_sends_each_name_to_its_backend() {
    let (a, b) = (tcp_greeter("A"), tcp_greeter("B"));
    let (port, api) = (free_port(), free_port());
    let dir = TempDir::new("wasm-sni");
    let g = start_config(
        &dir,
        &format!(
            "services:
- name: sni
  addr: 127.0.0.1:{port}
  handler: {{type: tcp}}
  forwarder: {{hop: by-name}}
  metadata: {{enableStats: true}}
hops:
- name: by-name
  nodes:
  - {{name: a, addr: {a}}}
  - {{name: b, addr: {b}}}
  plugin:
    type: wasm
    path: {}
    config:
      rules:
      - {{host: a.example, node: a}}
      - {{host: '*.b.example', node: b}}
api: {{addr: 127.0.0.1:{api}}}
",
            plugin_wasm("sni-router")
        ),
    );
    g.wait_tcp(port);
    let http = |host: &str| format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes();
    assert_eq!(exchange(port, &http("a.example")), "A", "{}", g.log());
    assert_eq!(exchange(port, &http("x.B.example:8443")), "B");
    assert_eq!(exchange(port, &client_hello("a.example")), "A");
    assert_eq!(exchange(port, &client_hello("www.b.example")), "B");
    // No rule and no default: refused, logged with the plugin's reason.
    assert_eq!(exchange(port, &client_hello("c.example")), "");
    assert_eq!(exchange(port, b"hello"), "");
    g.wait_log("rejected: no rule for host");
    // Six clients and the probe of wait_tcp, which sends nothing.
    let svc = wait_service(api, "sni", |s| {
        s["status"]["stats"]["totalConns"] == 7 && s["status"]["stats"]["currentConns"] == 0
    });
    assert_eq!(svc["status"]["stats"]["totalErrs"], 2, "{svc}");
}

#[test]
fn least_latency_forwarder_learns_from_feedback() {
    let live = tcp_greeter("L");
    let dead = free_port();
    let port = free_port();
    let dir = TempDir::new("wasm-ll");
    let g = start_config(
        &dir,
        &format!(
            "services:
- name: ll
  addr: 127.0.0.1:{port}
  handler: {{type: tcp}}
  forwarder: {{hop: fastest}}
hops:
- name: fastest
  nodes:
  - {{name: dead, addr: 127.0.0.1:{dead}}}
  - {{name: live, addr: {live}}}
  plugin: {{type: wasm, path: {}}}
",
            plugin_wasm("least-latency")
        ),
    );
    g.wait_tcp(port);
    // The first client goes to the unmeasured dead node and fails; the
    // plugin learns and sends every later client to the live one.
    assert_eq!(exchange(port, b"x"), "");
    for _ in 0..5 {
        assert_eq!(exchange(port, b"x"), "L", "{}", g.log());
    }
}

#[test]
fn changed_plugin_file_is_reloaded_and_a_broken_one_ignored() {
    let port = free_port();
    let dir = TempDir::new("wasm-reload");
    let file = dir.path("handler.wasm");
    std::fs::copy(plugin_wasm("faulty"), &file).unwrap();
    let g = Gost::start(&["-L", &format!("wasm://127.0.0.1:{port}?plugin={file}")]);
    g.wait_tcp(port);
    assert_eq!(poke(port, b'e'), b"e");
    // A connection that started on the old module.
    let mut live = TcpStream::connect(("127.0.0.1", port)).unwrap();
    live.set_read_timeout(Some(TIMEOUT)).unwrap();
    thread::sleep(Duration::from_millis(200));

    // Replace the file atomically with the SOCKS5 plugin.
    let tmp = dir.path("next.wasm");
    std::fs::copy(plugin_wasm("socks5"), &tmp).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    g.wait_log("plugin reloaded");
    let socks_greeting = |port: u16| {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        c.write_all(&[5, 1, 0]).unwrap();
        let mut b = [0u8; 2];
        c.read_exact(&mut b).unwrap();
        b
    };
    assert_eq!(socks_greeting(port), [5, 0]);
    // The live connection still talks to the old module.
    live.write_all(b"e").unwrap();
    let mut b = [0u8; 1];
    live.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"e");

    // A broken file keeps the running module.
    std::fs::write(&tmp, b"garbage").unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    g.wait_log("plugin reload failed, keeping the running module");
    assert_eq!(socks_greeting(port), [5, 0]);
    assert!(g.log().contains("not a WebAssembly file"), "{}", g.log());
}

/// The token tunnel's client: one request line, then a byte pipe.
fn tunnel(port: u16, token: &str, target: SocketAddr) -> Result<TcpStream, String> {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(format!("TUNNEL {token} {target}\n").as_bytes())
        .unwrap();
    let mut reply = Vec::new();
    let mut b = [0u8; 1];
    while c.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
        reply.push(b[0]);
    }
    match String::from_utf8_lossy(&reply).as_ref() {
        "OK" => Ok(c),
        other => Err(other.to_string()),
    }
}

#[test]
fn token_tunnel_plugin_with_its_client() {
    let echo = tcp_echo_server();
    let port = free_port();
    let dir = TempDir::new("wasm-tunnel");
    let g = start_config(
        &dir,
        &format!(
            "services:
- name: tunnel
  addr: 127.0.0.1:{port}
  handler:
    type: wasm
    plugin: {{type: wasm, path: {}, config: {{tokens: [s3cret]}}}}
",
            plugin_wasm("token-tunnel")
        ),
    );
    g.wait_tcp(port);
    let mut c = tunnel(port, "s3cret", echo).expect("tunnel open");
    let data = random_bytes(256 * 1024, 7);
    let reader = {
        let mut c = c.try_clone().unwrap();
        let n = data.len();
        thread::spawn(move || {
            let mut back = vec![0u8; n];
            c.read_exact(&mut back).unwrap();
            back
        })
    };
    c.write_all(&data).unwrap();
    assert_eq!(reader.join().unwrap(), data);
    assert_eq!(
        tunnel(port, "wrong", echo).unwrap_err(),
        "ERR bad token",
        "{}",
        g.log()
    );
}

#[test]
fn forwarder_plugin_is_reloaded_when_its_file_changes() {
    let (a, b) = (tcp_greeter("A"), tcp_greeter("B"));
    let port = free_port();
    let dir = TempDir::new("wasm-fwd-reload");
    let file = dir.path("selector.wasm");
    std::fs::copy(plugin_wasm("sni-router"), &file).unwrap();
    let g = start_config(
        &dir,
        &format!(
            "services:
- name: pick
  addr: 127.0.0.1:{port}
  handler: {{type: tcp}}
  forwarder: {{hop: h}}
hops:
- name: h
  nodes: [{{name: a, addr: {a}}}, {{name: b, addr: {b}}}]
  plugin: {{type: wasm, path: {file}, config: {{default: b}}}}
"
        ),
    );
    g.wait_tcp(port);
    assert_eq!(exchange(port, b"x"), "B");
    // least-latency tries the unmeasured first node first.
    let tmp = dir.path("next.wasm");
    std::fs::copy(plugin_wasm("least-latency"), &tmp).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    g.wait_log("plugin reloaded");
    assert_eq!(exchange(port, b"x"), "A", "{}", g.log());
}

/// A web API update of a service or hop that names a plugin loads what the
/// plugin file holds before the request returns, without waiting for the
/// file watcher's next look.
#[test]
fn api_update_loads_the_plugin_file_anew() {
    let (a, b) = (tcp_greeter("A"), tcp_greeter("B"));
    let (port, pick, api) = (free_port(), free_port(), free_port());
    let dir = TempDir::new("wasm-api-reload");
    let handler = dir.path("handler.wasm");
    let selector = dir.path("selector.wasm");
    std::fs::copy(plugin_wasm("faulty"), &handler).unwrap();
    std::fs::copy(plugin_wasm("sni-router"), &selector).unwrap();
    let service = serde_json::json!({"name": "h", "addr": format!("127.0.0.1:{port}"),
        "handler": {"type": "wasm", "plugin": {"type": "wasm", "path": handler}}});
    let hop = serde_json::json!({"name": "h",
        "nodes": [{"name": "a", "addr": a.to_string()}, {"name": "b", "addr": b.to_string()}],
        "plugin": {"type": "wasm", "path": selector, "config": {"default": "b"}}});
    let g = start_config(
        &dir,
        &serde_json::json!({
            "services": [service, {"name": "pick", "addr": format!("127.0.0.1:{pick}"),
                "handler": {"type": "tcp"}, "forwarder": {"hop": "h"}}],
            "hops": [hop],
            "api": {"addr": format!("127.0.0.1:{api}")},
        })
        .to_string(),
    );
    g.wait_tcp(api);
    g.wait_tcp(port);
    g.wait_tcp(pick);
    assert_eq!(poke(port, b'e'), b"e");
    assert_eq!(exchange(pick, b"x"), "B");

    let put = |path: &str, body: &serde_json::Value| {
        let (code, resp) = http_request(api, "PUT", path, Some(&body.to_string()), None);
        assert_eq!(code, 200, "PUT {path}: {resp}");
    };
    let replace = |file: &str, with: &str| {
        let tmp = dir.path("next.wasm");
        std::fs::copy(plugin_wasm(with), &tmp).unwrap();
        std::fs::rename(&tmp, file).unwrap();
    };
    replace(&handler, "socks5");
    put("/config/services/h", &service);
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(&[5, 1, 0]).unwrap();
    let mut greeting = [0u8; 2];
    c.read_exact(&mut greeting).unwrap();
    assert_eq!(greeting, [5, 0], "{}", g.log());

    // least-latency tries the unmeasured first node first.
    replace(&selector, "least-latency");
    put("/config/hops/h", &hop);
    assert_eq!(exchange(pick, b"x"), "A", "{}", g.log());
}

/// A client that connects and sends nothing is closed after the handler's
/// `readTimeout`, and its instance is dropped rather than held: the
/// service keeps serving, with a single warm instance allowed.
#[test]
fn idle_client_is_closed_after_read_timeout() {
    let (port, api) = (free_port(), free_port());
    let dir = TempDir::new("wasm-idle");
    let g = start_config(
        &dir,
        &format!(
            "services:
- name: idle
  addr: 127.0.0.1:{port}
  handler:
    type: wasm
    metadata: {{readTimeout: 1s}}
    plugin: {{type: wasm, path: {}, limits: {{instances: 1}}}}
  metadata: {{enableStats: true}}
api: {{addr: 127.0.0.1:{api}}}
",
            plugin_wasm("faulty")
        ),
    );
    g.wait_tcp(api);
    g.wait_tcp(port);
    let idle: Vec<TcpStream> = (0..3)
        .map(|_| {
            let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            c.set_read_timeout(Some(TIMEOUT)).unwrap();
            c
        })
        .collect();
    let start = Instant::now();
    for mut c in idle {
        let mut b = [0u8; 1];
        match c.read(&mut b) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("idle client not closed: {other:?}"),
        }
    }
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "closed after {waited:?}"
    );
    g.wait_log("handshake not done within readTimeout");
    assert_eq!(poke(port, b'e'), b"e");
    wait_service(api, "idle", |s| s["status"]["stats"]["currentConns"] == 0);
}

/// A UDP server that answers every datagram with `tag`.
fn udp_tagger(tag: &'static [u8]) -> SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = s.local_addr().unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((_, peer)) = s.recv_from(&mut buf) {
            let _ = s.send_to(tag, peer);
        }
    });
    addr
}

/// A hop with a wasm selector serves a UDP port forwarder too.
#[test]
fn forwarder_plugin_routes_udp() {
    let (a, b) = (udp_tagger(b"A"), udp_tagger(b"B"));
    let port = free_udp_port();
    let dir = TempDir::new("wasm-fwd-udp");
    let g = start_config(
        &dir,
        &format!(
            "services:
- name: pick
  addr: 127.0.0.1:{port}
  handler: {{type: udp}}
  listener: {{type: udp}}
  forwarder: {{hop: h}}
hops:
- name: h
  nodes: [{{name: a, addr: {a}}}, {{name: b, addr: {b}}}]
  plugin: {{type: wasm, path: {}, config: {{default: b}}}}
",
            plugin_wasm("sni-router")
        ),
    );
    let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    // The service may still be starting: ask until it answers.
    let n = loop {
        c.send_to(b"hi", ("127.0.0.1", port)).unwrap();
        if let Ok((n, _)) = c.recv_from(&mut buf) {
            break n;
        }
        assert!(start.elapsed() < TIMEOUT, "no UDP reply; {}", g.log());
    };
    assert_eq!(&buf[..n], b"B", "{}", g.log());
}
