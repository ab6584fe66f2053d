//! Helpers for end-to-end tests: build and spawn the real `gost` binary,
//! talk to it over loopback sockets, read its web API.
//!
//! Everything here uses blocking std sockets and threads: the tests act as
//! ordinary clients would, and a bug in the async host cannot hide behind
//! the test's own runtime.

pub mod homed;
pub mod netns;
pub mod pki;
pub mod plugin_server;
pub mod redis;
pub mod tunnel;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

/// How long any wait in a test may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Path of the `gost` binary, built once per test process with the same
/// profile as the tests, so `cargo test --workspace` alone is enough.
/// `GOST_BIN` names a binary to test instead (built elsewhere).
pub fn gost_bin() -> PathBuf {
    static BUILD: Once = Once::new();
    if let Some(bin) = std::env::var_os("GOST_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .to_path_buf();
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "gost-host", "--bin", "gost"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "building gost failed");
    });
    profile_dir.join("gost")
}

/// Path of an example plugin's component (`plugins/<crate>`), building
/// the plugins workspace for wasm32-wasip2 once per test process with the
/// same cargo, so `cargo test --workspace` on a fresh clone is enough.
pub fn plugin_wasm(crate_name: &str) -> String {
    static BUILD: Once = Once::new();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let target_dir = root.join("plugins").join("target");
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        ensure_wasm_target();
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2"])
            .arg("--manifest-path")
            .arg(root.join("plugins").join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            .status()
            .expect("run cargo build for plugins");
        assert!(status.success(), "building the example plugins failed");
    });
    target_dir
        .join("wasm32-wasip2")
        .join("release")
        .join(format!("{}.wasm", crate_name.replace('-', "_")))
        .to_string_lossy()
        .into_owned()
}

/// Path of the Python example plugin `name` (`plugins/python/<name>/app.py`)
/// built as a component of `world` with componentize-py, which is installed
/// first, at the version `plugins/python/requirements.txt` pins, into a
/// virtual environment under `plugins/target` when it is not there yet.
pub fn python_plugin(name: &str, world: &str) -> String {
    static VENV: Once = Once::new();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let py = root.join("plugins").join("python");
    let venv = root.join("plugins").join("target").join("python-venv");
    let tool = venv.join("bin").join("componentize-py");
    VENV.call_once(|| {
        if tool.exists() {
            return;
        }
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            made,
            "python3 -m venv failed: install python3 and python3-venv"
        );
        let installed = Command::new(venv.join("bin").join("pip"))
            .args(["install", "--quiet", "-r"])
            .arg(py.join("requirements.txt"))
            .status()
            .is_ok_and(|s| s.success());
        assert!(installed, "pip could not install componentize-py");
    });
    let out = root
        .join("plugins")
        .join("target")
        .join("python")
        .join(format!("{name}.wasm"));
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let built = Command::new(&tool)
        .arg("-d")
        .arg(root.join("wit"))
        .args(["-w", world, "componentize", "app", "-o"])
        .arg(&out)
        .current_dir(py.join(name))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        built,
        "componentize-py could not build plugins/python/{name}"
    );
    out.to_string_lossy().into_owned()
}

/// A Python interpreter with the `websockets` package (a WebSocket
/// client that is not ours), `h2` (an HTTP/2 client that is not ours)
/// `paramiko` (an SSH client and server that are not ours) and `grpcio`
/// with `grpcio-tools` (gRPC and protobuf that are not ours),
/// from a virtual environment under `plugins/target` that is made, and
/// the packages installed from PyPI at the versions
/// `tests/requirements.txt` pins, on first use.
pub fn python_with_websockets() -> PathBuf {
    static VENV: Once = Once::new();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let venv = root.join("plugins").join("target").join("test-venv");
    let python = venv.join("bin").join("python");
    VENV.call_once(|| {
        let ready = Command::new(&python)
            .args(["-c", "import websockets, h2, paramiko, grpc, grpc_tools"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return;
        }
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            made,
            "python3 -m venv failed: install python3 and python3-venv"
        );
        let installed = Command::new(venv.join("bin").join("pip"))
            .args(["install", "--quiet", "-r"])
            .arg(root.join("tests").join("requirements.txt"))
            .status()
            .is_ok_and(|s| s.success());
        assert!(installed, "pip could not install tests/requirements.txt");
    });
    python
}

/// rustup does not add a toolchain file's target to an installed
/// toolchain, so add it here when it is missing.
fn ensure_wasm_target() {
    let out = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", "wasm32-wasip2"])
        .output();
    let present = out
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).is_dir())
        .unwrap_or(false);
    if !present {
        let _ = Command::new("rustup")
            .args(["target", "add", "wasm32-wasip2"])
            .status();
    }
}

/// A port that was free a moment ago. The OS may hand it out again before
/// gost binds it, but only to another process binding port 0 at that
/// instant; tests needing a fixed address have no better option.
/// A TCP port free on 127.0.0.1 for a gost service to bind.
///
/// Port 0's answer would come from the ephemeral range, where the
/// outgoing connections of tests running in parallel take their source
/// ports, so a gost started a moment later could find the port taken.
/// Ports are therefore picked below that range, each one once per test
/// process, from a start that differs between processes.
pub fn free_port() -> u16 {
    pick_port(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
}

/// A UDP port free on 127.0.0.1; see [`free_port`].
pub fn free_udp_port() -> u16 {
    pick_port(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok())
}

fn pick_port(free: impl Fn(u16) -> bool) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let high = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768)
        .max(LOW + 2_000);
    let span = high - LOW;
    let seed = std::process::id().wrapping_mul(2_654_435_761) % span;
    let _ = NEXT.compare_exchange(u32::MAX, seed, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..span {
        let port = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if free(port) {
            return port;
        }
    }
    panic!("no free port between {LOW} and {high}");
}

/// A running gost process; killed when dropped.
pub struct Gost {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Gost {
    pub fn start(args: &[&str]) -> Gost {
        Self::start_with(Command::new(gost_bin()).args(args))
    }

    pub fn start_with(cmd: &mut Command) -> Gost {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gost");
        let log = Arc::new(Mutex::new(String::new()));
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        Gost { child, log }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until `needle` appears in the output.
    pub fn wait_log(&self, needle: &str) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                start.elapsed() < TIMEOUT,
                "timed out waiting for {needle:?}; log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until a TCP port accepts connections.
    pub fn wait_tcp(&self, port: u16) {
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < TIMEOUT,
                "port {port} never opened; log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child process.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                // Let the reader threads drain the pipes.
                thread::sleep(Duration::from_millis(50));
                return s;
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "gost did not exit; log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then wait for a graceful exit.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit()
    }
}

impl Drop for Gost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs gost to completion (for -V, -O and start-up errors).
pub fn run_gost(args: &[&str]) -> (ExitStatus, String, String) {
    let out = Command::new(gost_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run gost");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A TCP server on loopback that echoes each connection, half-close aware:
/// after the client's EOF it finishes echoing and then closes.
pub fn tcp_echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { break };
            thread::spawn(move || {
                let mut buf = [0u8; 32 * 1024];
                loop {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if c.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = c.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

/// A TCP server that answers every connection with a fixed greeting, then
/// closes; tells which backend a connection reached.
pub fn tcp_greeter(greeting: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { break };
            let _ = c.write_all(greeting.as_bytes());
        }
    });
    addr
}

/// A UDP server echoing every datagram back to its sender.
pub fn udp_echo_server() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = s.local_addr().unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok((n, peer)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&buf[..n], peer);
        }
    });
    addr
}

/// Deterministic pseudo-random bytes (xorshift), so a failure reproduces.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A plain HTTP/1.1 GET on loopback; returns (status, body).
pub fn http_get(port: u16, path: &str, auth: Option<(&str, &str)>) -> (u16, String) {
    let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    http_exchange(c, path, auth)
}

/// The same GET over a unix socket (the API's `unix://` address).
pub fn http_get_unix(socket: &str, path: &str) -> (u16, String) {
    let c = std::os::unix::net::UnixStream::connect(socket).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    http_exchange(c, path, None)
}

/// Any HTTP/1.1 request with an optional JSON body; returns (status, body).
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    auth: Option<(&str, &str)>,
) -> (u16, String) {
    let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    http_send(c, method, path, body, auth)
}

fn http_exchange(c: impl Read + Write, path: &str, auth: Option<(&str, &str)>) -> (u16, String) {
    http_send(c, "GET", path, None, auth)
}

fn http_send(
    mut c: impl Read + Write,
    method: &str,
    path: &str,
    body: Option<&str>,
    auth: Option<(&str, &str)>,
) -> (u16, String) {
    use base64::Engine;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some((u, p)) = auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        req.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method != "GET" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    // A server may answer (413) and close before reading a large body.
    let _ = c.write_all(req.as_bytes());
    let mut resp = Vec::new();
    let _ = c.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `GET /config` as JSON.
pub fn api_config(port: u16) -> serde_json::Value {
    let (status, body) = http_get(port, "/config", None);
    assert_eq!(status, 200, "GET /config: {body}");
    serde_json::from_str(&body).expect("config JSON")
}

/// A service's entry once it is idle and has counted the probe connection
/// `Gost::wait_tcp` made, so that stats read now are a stable baseline.
pub fn wait_settled(api: u16, name: &str) -> serde_json::Value {
    wait_service(api, name, |s| {
        let st = &s["status"]["stats"];
        st["currentConns"] == 0 && st["totalConns"].as_u64().unwrap_or(0) >= 1
    })
}

/// Polls `GET /config` until `pred` holds for the named service.
pub fn wait_service(
    port: u16,
    name: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let cfg = api_config(port);
        if let Some(svc) = cfg["services"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == name))
        {
            if pred(svc) {
                return svc.clone();
            }
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "service {name} never matched; config: {cfg}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// A directory under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gost-e2e-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn write(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    }

    pub fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An HTTP origin on `bind` answering every request with `body`, then
/// closing.
pub fn http_origin(bind: &str, body: &'static str) -> SocketAddr {
    let l = TcpListener::bind(bind).unwrap();
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
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = c.write_all(resp.as_bytes());
            });
        }
    });
    addr
}

/// curl (silent, 10 s at most) with `args`: whether it succeeded, and the
/// body it printed.
pub fn curl_body(args: &[&str]) -> (bool, String) {
    let out = Command::new("/usr/bin/curl")
        .args(["-s", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl (install it: apt-get install curl)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A fresh Ed25519 key pair made by OpenSSH's ssh-keygen under `dir`,
/// encrypted with `passphrase` unless it is empty: the private key's path
/// and the public key's line.
pub fn ssh_keygen(dir: &TempDir, name: &str, passphrase: &str) -> (String, String) {
    let keygen = "/usr/bin/ssh-keygen";
    assert!(
        std::path::Path::new(keygen).exists(),
        "{keygen} is missing: apt-get install openssh-client"
    );
    let path = dir.path(name);
    let out = Command::new(keygen)
        .args([
            "-q", "-t", "ed25519", "-N", passphrase, "-C", name, "-f", &path,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "ssh-keygen: {out:?}");
    let public = std::fs::read_to_string(format!("{path}.pub")).unwrap();
    (path, public)
}
