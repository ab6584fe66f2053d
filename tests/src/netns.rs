//! Network namespaces for tests that need real routing, nftables rules
//! or devices (the transparent proxies, TUN): each test makes its own,
//! deleted afterwards, pass or fail. They need root; without it (or
//! without `ip netns`) `Netns::create` says why and the test passes
//! without running.

use std::process::{Child, Command, Stdio};

use crate::{gost_bin, Gost};

/// A network namespace, deleted when dropped.
pub struct Netns(pub String);

impl Netns {
    /// A fresh namespace with its loopback up; `None` (with the reason
    /// printed) when this machine does not allow it.
    pub fn create(tag: &str) -> Option<Netns> {
        if !is_root() {
            return None;
        }
        if !nft_available() {
            eprintln!("skipped: nftables (nft) is missing and could not be installed");
            return None;
        }
        Self::create_bare(tag)
    }

    /// A namespace for tests that need no nftables.
    pub fn create_bare(tag: &str) -> Option<Netns> {
        if !is_root() {
            return None;
        }
        let name = format!("gost-{tag}-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: `ip netns add` failed (no permission for network namespaces?)");
            return None;
        }
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"]);
        Some(ns)
    }

    /// Runs `ip -n NS args`, which must succeed.
    pub fn ip(&self, args: &[&str]) {
        let st = Command::new("ip")
            .args(["-n", &self.0])
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "ip {args:?} in {}", self.0);
    }

    /// Loads an nftables ruleset into the namespace.
    pub fn nft(&self, rules: &str) {
        use std::io::Write;
        let mut c = self
            .exec("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(rules.as_bytes()).unwrap();
        assert!(c.wait().unwrap().success(), "nft rules:\n{rules}");
    }

    /// A veth pair between this namespace (`addr`, a CIDR) and `other`
    /// (`other_addr`), both up.
    pub fn veth(&self, other: &Netns, addr: &str, other_addr: &str) {
        // Made in the namespaces directly, so the names need only be
        // unique within each.
        let (a, b) = ("gv0", "gv0");
        let st = Command::new("ip")
            .args([
                "link", "add", a, "netns", &self.0, "type", "veth", "peer", "name", b, "netns",
                &other.0,
            ])
            .status()
            .unwrap();
        assert!(st.success(), "veth {} <-> {}", self.0, other.0);
        self.ip(&["addr", "add", addr, "dev", a]);
        self.ip(&["link", "set", a, "up"]);
        other.ip(&["addr", "add", other_addr, "dev", b]);
        other.ip(&["link", "set", b, "up"]);
    }

    /// `ip -n NS args` output, or `None` when it fails.
    pub fn ip_output(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("ip")
            .args(["-n", &self.0])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn exec(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: creating a network namespace needs root");
    }
    root
}

pub fn nft_available() -> bool {
    let found = || {
        Command::new("nft")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    static INSTALL: std::sync::Once = std::sync::Once::new();
    if !found() {
        INSTALL.call_once(|| {
            let _ = Command::new("sh")
                .args([
                    "-c",
                    "apt-get update -qq && apt-get install -y -qq nftables >/dev/null",
                ])
                .status();
        });
    }
    found()
}

/// A child process killed when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// gost started inside the namespace.
pub fn gost_in(ns: &Netns, args: &[&str]) -> Gost {
    Gost::start_with(ns.exec(gost_bin().to_str().unwrap()).args(args))
}

/// A python3 that `nobody` may run: a per-user install (pyenv's shims
/// under root's home) is not readable by it.
pub fn system_python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}
