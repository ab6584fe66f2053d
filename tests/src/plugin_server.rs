//! The Python server of GOST's HTTP plugin protocol
//! (`tests/python/gost_http_plugin.py`), shared by the plugin and sd tests,
//! and the gRPC one (`gost_grpc_plugin.py`) started the same way.

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
        Self::spawn("python3".as_ref(), "gost_http_plugin.py", &[])
    }

    /// Runs `program` on `tests/python/SCRIPT` with the request log's
    /// path and `args`; the script prints its port on its first line.
    pub fn spawn(program: &std::ffi::OsStr, script: &str, args: &[&str]) -> PluginServer {
        let dir = TempDir::new("gost-plugin");
        let log = PathBuf::from(dir.path("requests.jsonl"));
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("python")
            .join(script);
        let mut child = Command::new(program)
            .arg(&script)
            .arg(&log)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run the plugin server");
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

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
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

    /// The requests whose `method` field is `method`, in order.
    pub fn calls_of(&self, method: &str) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["method"] == method)
            .collect()
    }
}

impl Drop for PluginServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
