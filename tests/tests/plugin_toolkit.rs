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
