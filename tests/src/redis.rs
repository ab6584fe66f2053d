//! A real Redis server (Debian's `redis-server`) for the recorder and
//! loader tests: started on a free loopback port with no persistence,
//! stopped when dropped, and `redis-cli` to look at what gost wrote.

use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::thread;
use std::time::{Duration, Instant};

use crate::{free_port, TempDir, TIMEOUT};

const SERVER: &str = "/usr/bin/redis-server";
const CLI: &str = "/usr/bin/redis-cli";

/// Installs Debian's redis-server (with redis-cli) once when it is
/// missing, as root or through sudo, as the CI script does.
fn ensure_installed() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::path::Path::new(SERVER).exists() && std::path::Path::new(CLI).exists() {
            return;
        }
        let install = "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null";
        let ok = Command::new("sh").args(["-c", install]).status().is_ok_and(|s| s.success())
            || Command::new("sudo")
                .args(["sh", "-c", install])
                .status()
                .is_ok_and(|s| s.success());
        assert!(ok, "{SERVER} is missing and could not be installed: apt-get install redis-server");
    });
}

pub struct Redis {
    pub port: u16,
    child: Child,
    _dir: TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        Self::start_on(free_port())
    }

    /// On `port`, to bring a stopped server back where gost expects it.
    pub fn start_on(port: u16) -> Redis {
        ensure_installed();
        let dir = TempDir::new("redis");
        let child = Command::new(SERVER)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(["--dir", &dir.0.to_string_lossy()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let r = Redis {
            port,
            child,
            _dir: dir,
        };
        let start = Instant::now();
        while r.cli(&["PING"]).trim() != "PONG" {
            assert!(start.elapsed() < TIMEOUT, "redis-server never answered");
            thread::sleep(Duration::from_millis(50));
        }
        r
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// One command through redis-cli; its raw output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(CLI)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "--raw"])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The lines of a command's output (members of a set, items of a
    /// list), waiting until there are at least `n`.
    pub fn wait_lines(&self, args: &[&str], n: usize) -> Vec<String> {
        let start = Instant::now();
        loop {
            let lines: Vec<String> = self
                .cli(args)
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
            if lines.len() >= n {
                return lines;
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "redis {args:?}: {} lines, wanted {n}: {lines:?}",
                lines.len()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
