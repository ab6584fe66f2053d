//! The dashboard in a real browser: Debian's `chromium`, driven by
//! playwright-core (pinned in tests/browser/package.json, installed by
//! this test into tests/browser/node_modules, which is ignored), against a
//! gost with API auth, a forwarding service with stats and a service
//! whose name is markup. The browser script (tests/browser/dashboard.mjs)
//! checks: auth is required; the overview shows the services and their
//! counters move with traffic; a chain node that fails is shown dead
//! until its failTimeout ends; names stay text; a connection closed from
//! the page closes; an invalid edit shows the API's error next to the
//! object and changes nothing; a valid edit starts a new service; the
//! form editor shows a bad address's error next to the address field and
//! moves the service to a new address; the
//! logs page tails the log; the page fits a phone and starts with the
//! navigation under the keyboard. Screenshots of each page go under the
//! test's temp folder.
//!
//! Chromium and node are installed with apt-get when missing (as root, or
//! through sudo); when they cannot be, the test fails saying so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gost_e2e::*;

fn found(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

fn apt_install(packages: &str) {
    let apt = format!("apt-get update -qq && apt-get install -y -qq {packages} >/dev/null");
    let ok = Command::new("sh")
        .args(["-c", &apt])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let _ = Command::new("sudo").args(["sh", "-c", &apt]).status();
    }
}

/// The browser and the driver, installed once.
fn browser_tools() -> PathBuf {
    if !found("chromium") {
        apt_install("chromium");
    }
    if !found("node") || !found("npm") {
        apt_install("nodejs npm");
    }
    assert!(
        found("chromium") && found("node") && found("npm"),
        "the dashboard test needs chromium, node and npm: apt-get install chromium nodejs npm"
    );
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser");
    if !dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        // playwright-core has no dependencies of its own; its exact
        // version is pinned in package.json.
        let ok = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "npm install in {} failed", dir.display());
    }
    dir
}

fn chromium_path() -> String {
    let out = Command::new("sh")
        .args(["-c", "command -v chromium"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_dashboard_works_in_a_browser() {
    let dir = browser_tools();
    let echo = tcp_echo_server();
    let (api, fwd, odd, new) = (free_port(), free_port(), free_port(), free_port());
    let (chained, dead, moved) = (free_port(), free_port(), free_port());
    let tmp = TempDir::new("dashboard");
    let cfg = tmp.write(
        "gost.yaml",
        &format!(
            r#"
api:
  addr: 127.0.0.1:{api}
  auth: {{username: admin, password: s3cret}}
services:
  - name: fwd
    addr: 127.0.0.1:{fwd}
    metadata: {{enableStats: true}}
    handler: {{type: tcp}}
    listener: {{type: tcp}}
    forwarder: {{nodes: [{{name: echo, addr: "{echo}"}}]}}
  - name: "<img src=x onerror=window.pwned=1>"
    addr: 127.0.0.1:{odd}
    handler: {{type: tcp}}
    listener: {{type: tcp}}
    forwarder: {{nodes: [{{name: echo, addr: "{echo}"}}]}}
  - name: chained
    addr: 127.0.0.1:{chained}
    handler: {{type: tcp, chain: c}}
    listener: {{type: tcp}}
    forwarder: {{nodes: [{{name: echo, addr: "{echo}"}}]}}
chains:
  - name: c
    hops:
      - name: h
        selector: {{strategy: fifo, maxFails: 1, failTimeout: 60s}}
        nodes: [{{name: gone, addr: "127.0.0.1:{dead}", connector: {{type: socks5}}}}]
"#
        ),
    );
    let mut g = Gost::start(&["-C", &cfg]);
    for p in [api, fwd, odd] {
        g.wait_tcp(p);
    }
    // Not probed: its first connection must be the page test's, which
    // marks the chain's node failed.
    g.wait_log(&format!("127.0.0.1:{chained}"));
    let shots = Path::new(&tmp.0).join("screenshots");
    let out = Command::new("timeout")
        .arg("120")
        .arg("node")
        .arg(dir.join("dashboard.mjs"))
        .env("UI", format!("http://127.0.0.1:{api}/ui/"))
        .env("API_USER", "admin")
        .env("API_PASS", "s3cret")
        .env("FWD_PORT", fwd.to_string())
        .env("NEW_PORT", new.to_string())
        .env("CHAINED_PORT", chained.to_string())
        .env("MOVED_PORT", moved.to_string())
        .env("ECHO", echo.to_string())
        .env("SHOTS", &shots)
        .env("CHROMIUM", chromium_path())
        .output()
        .expect("run node");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(
        out.status.success(),
        "browser tests failed:\n{text}\ngost log:\n{}",
        g.log()
    );
    for page in [
        "overview",
        "connections",
        "config-error",
        "config-form-error",
        "logs",
        "phone",
    ] {
        assert!(shots.join(format!("{page}.png")).exists(), "{page}.png");
    }
    if let Some(keep) = std::env::var_os("DASHBOARD_SHOTS") {
        for page in ["overview", "connections", "config-form-error"] {
            std::fs::copy(
                shots.join(format!("{page}.png")),
                Path::new(&keep).join(format!("dashboard-{page}.png")),
            )
            .unwrap();
        }
    }
    std::thread::sleep(Duration::from_millis(10));
    g.stop();
}
