//! gost processes with a HOME of their own, for the transport tests:
//! GOST's default certificate (`$HOME/.gost/auto-ca-*.pem`) is then
//! neither taken from nor left in the user's home, nor shared by
//! processes starting at once.

use std::net::SocketAddr;
use std::process::Command;

use crate::{curl_body, free_port, gost_bin, Gost, TempDir};

/// A gost process and its HOME, removed with it.
pub struct Proc {
    g: Gost,
    _home: TempDir,
}

impl std::ops::Deref for Proc {
    type Target = Gost;
    fn deref(&self) -> &Gost {
        &self.g
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Gost {
        &mut self.g
    }
}

/// Starts gost with `args`.
pub fn spawn(args: &[&str]) -> Proc {
    let home = TempDir::new("gost-home");
    let g = Gost::start_with(Command::new(gost_bin()).args(args).env("HOME", &home.0));
    Proc { g, _home: home }
}

/// Starts gost and waits for each of `ports`.
pub fn start(args: &[&str], ports: &[u16]) -> Proc {
    let g = spawn(args);
    for &p in ports {
        g.wait_tcp(p);
    }
    g
}

/// A gost client: a socks5 service on a fresh port with the `-F` nodes
/// of `chain`; returns it and its port.
pub fn client(chain: &[&str]) -> (Proc, u16) {
    let port = free_port();
    let listen = format!("socks5://127.0.0.1:{port}");
    let mut args = vec!["-L", &listen];
    for node in chain {
        args.extend(["-F", node]);
    }
    (start(&args, &[port]), port)
}

/// The logs of `gs`, for failure messages.
pub fn logs(gs: &[&Gost]) -> String {
    gs.iter()
        .enumerate()
        .map(|(i, g)| format!("--- gost #{i} log:\n{}", g.log()))
        .collect()
}

/// curl through the socks5 proxy on `port` to `origin`.
pub fn via_socks5(port: u16, origin: SocketAddr) -> (bool, String) {
    curl_body(&[
        "--socks5",
        &format!("127.0.0.1:{port}"),
        &format!("http://{origin}/"),
    ])
}

/// A service that is its own `node` (`-L node -F node`) loops through
/// the node's pooled session: a client's request through it must fail
/// within seconds, the service logging the cut loop, and the next
/// request must be cut as quickly, not left hanging.
pub fn assert_a_loop_is_cut(node: &str) {
    use std::time::{Duration, Instant};
    let origin = crate::http_origin("127.0.0.1:0", "looped");
    let port: u16 = node
        .rsplit(':')
        .next()
        .and_then(|p| p.split(['?', '/']).next())
        .and_then(|p| p.parse().ok())
        .expect("the node's port");
    let server = start(&["-L", node, "-F", node], &[port]);
    let (c, p) = client(&[node]);
    let started = Instant::now();
    let (ok, _) = via_socks5(p, origin);
    assert!(
        !ok,
        "{node}: a looping request succeeded\n{}",
        logs(&[&c, &server])
    );
    assert!(started.elapsed() < Duration::from_secs(20), "{node}");
    server.wait_log("loop:");
    let started = Instant::now();
    assert!(!via_socks5(p, origin).0, "{node}");
    assert!(started.elapsed() < Duration::from_secs(8), "{node}");
}
