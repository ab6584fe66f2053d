//! The tunnel entry point's `entrypoint.readTimeout` (GOST's wait for the
//! tunnel client's response head to an HTTP request, 15 s by default):
//! a response slower than it gets 503, one within it passes; and
//! `entrypoint.compression`, which is not done, is refused at start-up.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::{Duration, Instant};

use gost_e2e::homed::{logs, start};
use gost_e2e::*;

const TID: &str = "6be39003-f4fa-49e4-a6ef-1997684d160e";

/// An HTTP origin that answers each request after `delay`.
fn slow_origin(delay: Duration) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { break };
            thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut b) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                thread::sleep(delay);
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nslow",
                );
            });
        }
    });
    addr
}

fn get_host(port: u16) -> String {
    let out = std::process::Command::new("/usr/bin/curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["-H", "Host: example.local"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_entry_point_waits_read_timeout_for_a_response() {
    let origin = slow_origin(Duration::from_millis(1500));
    let mut ports = Vec::new();
    let mut gs = Vec::new();
    for timeout in ["1s", "4s"] {
        let (port, entry) = (free_port(), free_port());
        let server = start(
            &[
                "-L",
                &format!("tunnel://127.0.0.1:{port}?entrypoint=127.0.0.1:{entry}&tunnel=example.local:{TID}&entrypoint.readTimeout={timeout}"),
            ],
            &[port, entry],
        );
        let client = start(
            &[
                "-L",
                &format!("rtcp://:0/{origin}"),
                "-F",
                &format!("tunnel://127.0.0.1:{port}?tunnel.id={TID}"),
            ],
            &[],
        );
        server.wait_log("tunnel: client registered");
        ports.push(entry);
        gs.push((server, client));
    }
    let started = Instant::now();
    assert_eq!(get_host(ports[0]), "503", "{}", logs(&[&gs[0].0]));
    assert!(started.elapsed() < Duration::from_millis(1400));
    gs[0].0.wait_log("no response within 1s");
    assert_eq!(get_host(ports[1]), "200", "{}", logs(&[&gs[1].0]));
}

#[test]
fn entry_point_compression_is_refused() {
    let port = free_port();
    let (status, _, err) = run_gost(&[
        "-L",
        &format!("tunnel://127.0.0.1:{port}?entrypoint=127.0.0.1:0&entrypoint.compression=true"),
    ]);
    assert!(!status.success());
    assert!(err.contains("entrypoint.compression"), "{err}");
}
