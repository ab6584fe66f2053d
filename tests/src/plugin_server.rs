//! The Python server of GOST's HTTP plugin protocol
//! (`tests/python/gost_http_plugin.py`), shared by the plugin and sd tests.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::TempDir;

/// The Python plugin server; killed when dropped.
pub struct PluginServer {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: TempDir,
}

impl PluginServer {
    pub fn start() -> PluginServer {
        let dir = TempDir::new("gost-plugin");
        let log = PathBuf::from(dir.path("requests.jsonl"));
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("python")
            .join("gost_http_plugin.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(&log)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("plugin server port");
        PluginServer {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The requests the server got, in order.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for PluginServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
