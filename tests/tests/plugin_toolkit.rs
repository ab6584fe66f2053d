//! The plugin author's toolkit: a plugin's stdout, stderr and panic
//! message in the host log, repeated faults logged once and counted every
//! time.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::Duration;

use gost_e2e::*;

/// Sends `cmd` to the faulty plugin's service and reads until it closes.
fn poke(port: u16, cmd: u8) -> Vec<u8> {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(&[cmd]).unwrap();
    let mut out = Vec::new();
    let mut b = [0u8; 64];
    loop {
        match c.read(&mut b) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("poke {}: {e}", cmd as char),
        }
    }
    let _ = c.shutdown(Shutdown::Both);
    out
}

fn faulty_service(dir: &TempDir) -> (Gost, u16, u16) {
    let (port, api) = (free_port(), free_port());
    let file = dir.write(
        "gost.yaml",
        &format!(
            "services:
- name: faulty-svc
  addr: 127.0.0.1:{port}
  handler:
    type: wasm
    plugin: {{type: wasm, path: {}}}
  metadata: {{enableStats: true}}
api: {{addr: 127.0.0.1:{api}}}
",
            plugin_wasm("faulty")
        ),
    );
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(port);
    (g, port, api)
}

/// `println!` and `eprintln!` lines reach the log tagged with the plugin,
/// the service and the stream; a 5,000-byte line is cut to 1,024 bytes and
/// a flood of 1,000 lines is held to the burst, the lines left out counted
/// in the next line written.
#[test]
fn plugin_output_reaches_the_log_bounded() {
    let dir = TempDir::new("plugin-output");
    let (g, port, _) = faulty_service(&dir);
    assert_eq!(poke(port, b'o'), b"o");
    g.wait_log("to stderr");
    let plugin = plugin_wasm("faulty");
    let log = g.log();
    let out = log
        .lines()
        .find(|l| l.contains("to stdout from faulty-svc"))
        .unwrap_or_else(|| panic!("no stdout line:\n{log}"));
    for tag in [
        plugin.as_str(),
        "\"service\":\"faulty-svc\"",
        "\"stream\":\"stdout\"",
        "\"level\":\"info\"",
    ] {
        assert!(out.contains(tag), "{tag} missing: {out}");
    }
    let err = log.lines().find(|l| l.contains("to stderr")).unwrap();
    assert!(
        err.contains("\"stream\":\"stderr\"") && err.contains("\"level\":\"warn\""),
        "{err}"
    );
    let long = log
        .lines()
        .find(|l| l.contains("xxxxxxxx"))
        .unwrap_or_else(|| panic!("no long line:\n{log}"));
    assert!(long.contains("\"cut\":true"), "{long}");
    assert_eq!(long.matches('x').count(), 1024, "{long}");
    let floods = log.lines().filter(|l| l.contains("flood ")).count();
    assert!(
        (150..300).contains(&floods),
        "{floods} flood lines written of 1,000"
    );
    // The budget refills at 50 lines a second; the next line says how many
    // were left out.
    thread::sleep(Duration::from_millis(100));
    assert_eq!(poke(port, b'o'), b"o");
    let start = std::time::Instant::now();
    let second = loop {
        let log = g.log();
        if let Some(l) = log
            .lines()
            .filter(|l| l.contains("to stdout from faulty-svc"))
            .nth(1)
        {
            break l.to_string();
        }
        assert!(start.elapsed() < TIMEOUT, "no second stdout line:\n{log}");
        thread::sleep(Duration::from_millis(20));
    };
    assert!(second.contains("\"left_out\":"), "{second}");
}

/// A panic's message is in the trap's error line (not only "unreachable
/// instruction executed"); five identical faults are one error line while
/// the service counts all five.
#[test]
fn panic_message_is_logged_once_and_every_fault_counted() {
    let dir = TempDir::new("plugin-panic");
    let (g, port, api) = faulty_service(&dir);
    for _ in 0..5 {
        assert_eq!(poke(port, b't'), b"");
    }
    // Five clients and the probe of wait_tcp.
    let svc = wait_service(api, "faulty-svc", |s| {
        s["status"]["stats"]["totalConns"] == 6 && s["status"]["stats"]["currentConns"] == 0
    });
    assert_eq!(svc["status"]["stats"]["totalErrs"], 5, "{svc}");
    let log = g.log();
    let faults: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"error\"") && l.contains("trapped"))
        .collect();
    assert_eq!(faults.len(), 1, "{log}");
    let line = faults[0];
    for what in [
        "unreachable",
        "panicked at faulty/src/lib.rs:",
        "asked to trap",
        &plugin_wasm("faulty"),
        "faulty-svc",
    ] {
        assert!(line.contains(what), "{what} missing: {line}");
    }
    // The stderr lines of the panic are in the log too, tagged.
    assert!(
        log.lines()
            .any(|l| l.contains("\"stream\":\"stderr\"") && l.contains("asked to trap")),
        "{log}"
    );
}

/// `gost plugin new` for each world, in a directory outside this
/// repository with the SDK copied in (so nothing reaches `../wit`); each
/// crate builds, `gost plugin check` says it loads as its world, and the
/// handler proxies in a service. A file that is not a component is
/// refused with exit code 1.
#[test]
fn plugin_new_builds_checks_and_loads() {
    let faulty = plugin_wasm("faulty");
    // plugins/target/wasm32-wasip2/release/faulty.wasm -> plugins/target:
    // sharing the examples' target directory reuses their built crates.
    let target_dir = std::path::Path::new(&faulty)
        .ancestors()
        .nth(3)
        .unwrap()
        .to_path_buf();
    let lock = target_dir.parent().unwrap().join("Cargo.lock");
    let dir = TempDir::new("plugin-new");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut handler_wasm = String::new();
    for world in ["handler", "forwarder", "observer"] {
        let name = format!("new-{world}");
        let krate = dir.0.join(&name);
        let (st, out, err) =
            run_gost(&["plugin", "new", "--world", world, krate.to_str().unwrap()]);
        assert!(st.success(), "{out}{err}");
        assert!(krate.join("gost-plugin-sdk/wit/plugin.wit").is_file());
        // The examples' lock file pins the same crate versions.
        std::fs::copy(&lock, krate.join("Cargo.lock")).unwrap();
        let built = std::process::Command::new(&cargo)
            .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2"])
            .arg("--target-dir")
            .arg(&target_dir)
            .current_dir(&krate)
            .status()
            .unwrap();
        assert!(built.success(), "the new {world} crate does not build");
        let wasm = target_dir
            .join("wasm32-wasip2/release")
            .join(format!("{}.wasm", name.replace('-', "_")));
        let (st, out, err) = run_gost(&["plugin", "check", wasm.to_str().unwrap()]);
        assert!(st.success(), "{out}{err}");
        for line in [&format!("world: {world}"), "loads: yes"] {
            assert!(out.contains(line), "{line:?} missing:\n{out}");
        }
        // The forwarder template calls no host function, so it imports
        // no gost:plugin interface to take a version from.
        if world != "forwarder" {
            for line in [
                "wit: gost:plugin@0.3.0 (this host: 0.3.0)",
                "  gost:plugin/runtime@0.3.0",
            ] {
                assert!(out.contains(line), "{line:?} missing:\n{out}");
            }
        }
        if world == "handler" {
            assert!(out.contains("  gost:plugin/network@0.3.0"), "{out}");
            handler_wasm = wasm.to_string_lossy().into_owned();
        }
    }
    let text = dir.write("not.wasm", "hello");
    let (st, out, _) = run_gost(&["plugin", "check", &text]);
    assert_eq!(st.code(), Some(1), "{out}");
    assert!(out.contains("not a WebAssembly file"), "{out}");
    let (st, _, err) = run_gost(&["plugin", "new", "--world", "router", "x"]);
    assert_eq!(st.code(), Some(1));
    assert!(err.contains("--world 'router' is not one of"), "{err}");

    // The new handler: `host:port` and a newline, then a relay.
    let echo = tcp_echo_server();
    let port = free_port();
    let g = Gost::start(&[
        "-L",
        &format!("wasm://127.0.0.1:{port}?plugin={handler_wasm}"),
    ]);
    g.wait_tcp(port);
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(format!("{echo}\nping").as_bytes()).unwrap();
    let mut b = [0u8; 4];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ping", "{}", g.log());
}

/// A handler written in Python (plugins/python/tunnel, built with
/// componentize-py): the token-tunnel protocol, proxying to an echo
/// server; a bad token gets the protocol's refusal, and the service
/// counts it as an error.
#[test]
fn python_handler_tunnels_to_its_target() {
    let wasm = python_plugin("tunnel", "handler");
    let echo = tcp_echo_server();
    let (port, api) = (free_port(), free_port());
    let dir = TempDir::new("python-handler");
    let file = dir.write(
        "gost.yaml",
        &format!(
            "services:
- name: py-tunnel
  addr: 127.0.0.1:{port}
  handler:
    type: wasm
    plugin:
      type: wasm
      path: {wasm}
      config: {{tokens: [s3cret]}}
  metadata: {{enableStats: true}}
api: {{addr: 127.0.0.1:{api}}}
"
        ),
    );
    let g = Gost::start(&["-C", &file]);
    // The interpreter inside the component is large: compiling it on the
    // first run takes much longer than a Rust plugin.
    let start = std::time::Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "never listened: {}",
            g.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
    for i in 0..3 {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        // The request line and the first payload in one write.
        c.write_all(format!("TUNNEL s3cret {echo}\nhello {i}").as_bytes())
            .unwrap();
        let want = format!("OK\nhello {i}");
        let mut got = vec![0u8; want.len()];
        c.read_exact(&mut got)
            .unwrap_or_else(|e| panic!("{e}: {}", g.log()));
        assert_eq!(String::from_utf8_lossy(&got), want);
        c.write_all(b" more").unwrap();
        let mut more = [0u8; 5];
        c.read_exact(&mut more).unwrap();
        assert_eq!(&more, b" more");
    }
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(format!("TUNNEL wrong {echo}\n").as_bytes())
        .unwrap();
    let mut reply = String::new();
    let _ = c.read_to_string(&mut reply);
    assert_eq!(reply, "ERR bad token\n");
    let svc = wait_service(api, "py-tunnel", |s| {
        s["status"]["stats"]["totalErrs"] == 1 && s["status"]["stats"]["currentConns"] == 0
    });
    assert_eq!(svc["status"]["stats"]["totalConns"], 5, "{svc}");
}
