//! GOST's `stdio` listener through the real binary: standard input and
//! output are the service's one connection, relayed to the forwarder's
//! target (as an SSH `ProxyCommand` uses it), and gost exits with status
//! 0 when that connection ends.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use gost_e2e::*;

/// Runs gost with `args`, writes `input` to its standard input, closes
/// it, and returns (exit success, standard output, standard error).
fn pipe_through(args: &[&str], input: Vec<u8>) -> (bool, Vec<u8>, String) {
    let mut child = Command::new(gost_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gost");
    let mut stdin = child.stdin.take().unwrap();
    let writer = thread::spawn(move || {
        stdin.write_all(&input).unwrap();
    });
    let mut out = Vec::new();
    let mut stdout = child.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        stdout.read_to_end(&mut out).unwrap();
        out
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            panic!("gost did not exit after its stdio connection ended");
        }
        thread::sleep(Duration::from_millis(20));
    };
    writer.join().unwrap();
    let out = reader.join().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.success(), out, err)
}

#[test]
fn stdio_is_relayed_to_the_target_and_gost_exits_when_it_ends() {
    let echo = tcp_echo_server();
    let data = random_bytes(256 * 1024, 7);
    let (ok, out, err) = pipe_through(&["-L", &format!("tcp+stdio://:0/{echo}")], data.clone());
    assert!(ok, "{err}");
    assert_eq!(out.len(), data.len(), "{err}");
    assert!(out == data, "the bytes came back changed");
    assert!(err.contains("stdio: the connection ended"), "{err}");
}

#[test]
fn a_stdio_service_from_a_config_file() {
    let greeter = tcp_greeter("hello from the target\n");
    let dir = TempDir::new("stdio");
    let file = dir.write(
        "gost.yaml",
        &format!(
            "services:
- name: pipe
  addr: stdio
  handler: {{type: tcp}}
  listener: {{type: stdio}}
  forwarder: {{nodes: [{{name: t, addr: {greeter}}}]}}
"
        ),
    );
    let (ok, out, err) = pipe_through(&["-C", &file], Vec::new());
    assert!(ok, "{err}");
    assert_eq!(String::from_utf8_lossy(&out), "hello from the target\n");
    assert!(err.contains("\"addr\":\"stdio\""), "{err}");
}
