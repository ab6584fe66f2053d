//! A plugin's configuration (`plugin: {type: wasm, ...}`) checked and
//! turned into typed settings with defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::PluginError;
use gost_core::config::PluginConfig;

/// Linear memory of one instance unless `limits.memory` says otherwise.
pub const DEFAULT_MEMORY: usize = 64 << 20;
/// The most `limits.memory` may ask for (also the pool's slot size).
pub const MAX_MEMORY: usize = 256 << 20;
/// Compute time per call between two waits, unless `limits.deadline` says
/// otherwise.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(1);
/// Warm handler instances kept idle per service.
pub const DEFAULT_INSTANCES: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// An instance serves one connection at a time and is reused.
    Pooled,
    /// Every connection gets a fresh instance.
    PerConnection,
}

#[derive(Debug, Clone)]
pub struct PluginSpec {
    pub path: PathBuf,
    /// The path as written, for messages.
    pub name: Arc<str>,
    /// `config` as JSON text (`{}` when absent).
    pub config: Arc<str>,
    pub memory: usize,
    pub deadline: Duration,
    pub instances: usize,
    pub isolation: Isolation,
    /// Host directory preopened as `/data`.
    pub dir: Option<PathBuf>,
    /// Addresses the plugin may connect to.
    pub connect: Vec<SocketAddr>,
}

impl PluginSpec {
    pub fn from_config(p: &PluginConfig) -> Result<PluginSpec, PluginError> {
        let err = |msg: String| PluginError::Config {
            path: p.path.clone(),
            msg,
        };
        if p.r#type != "wasm" {
            return Err(PluginError::Config {
                path: p.addr.clone(),
                msg: format!("plugin type '{}' is not wasm", p.r#type),
            });
        }
        if p.path.is_empty() {
            return Err(PluginError::Config {
                path: "(no path)".into(),
                msg: "a wasm plugin needs `path`, the component file".into(),
            });
        }
        let limits = p.limits.clone().unwrap_or_default();
        let memory = match &limits.memory {
            None => DEFAULT_MEMORY,
            Some(v) => parse_size(v).map_err(|m| err(format!("limits.memory: {m}")))?,
        };
        if memory > MAX_MEMORY {
            return Err(err(format!(
                "limits.memory: {memory} bytes is more than the {} MiB maximum",
                MAX_MEMORY >> 20
            )));
        }
        let deadline = Some(limits.deadline.0)
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_DEADLINE);
        let instances = match limits.instances {
            0 => DEFAULT_INSTANCES,
            n if n < 0 => return Err(err(format!("limits.instances: {n} is negative"))),
            n => n as usize,
        };
        let isolation = match p.isolation.as_str() {
            "" | "pooled" => Isolation::Pooled,
            "per-connection" => Isolation::PerConnection,
            other => {
                return Err(err(format!(
                    "isolation '{other}' is not one of: pooled, per-connection"
                )))
            }
        };
        let config = match &p.config {
            None => "{}".to_string(),
            Some(v) => v.to_string(),
        };
        let dir = Some(&p.dir).filter(|d| !d.is_empty()).map(PathBuf::from);
        let connect = p
            .connect
            .iter()
            .map(|a| {
                a.parse::<SocketAddr>()
                    .map_err(|_| err(format!("connect: \"{a}\" is not ip:port")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PluginSpec {
            path: PathBuf::from(&p.path),
            name: p.path.as_str().into(),
            config: config.into(),
            memory,
            deadline,
            instances,
            isolation,
            dir,
            connect,
        })
    }
}

/// Bytes as a number, or a number with a unit: `K`/`KiB`, `M`/`MiB`,
/// `G`/`GiB` (powers of 1024) or `KB`/`MB`/`GB` (powers of 1000).
pub fn parse_size(v: &Value) -> Result<usize, String> {
    let text = match v {
        Value::Number(n) => {
            return n
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| format!("{n} is not a byte count"))
        }
        Value::String(s) => s.trim(),
        other => return Err(format!("{other} is not a size")),
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("\"{text}\" is not a size such as 64MiB"))?;
    let mult: usize = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        u => return Err(format!("unknown unit \"{u}\" in \"{text}\"")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("\"{text}\" is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gost_core::config::PluginLimits;
    use serde_json::json;

    fn wasm(path: &str) -> PluginConfig {
        PluginConfig {
            r#type: "wasm".into(),
            path: path.into(),
            ..Default::default()
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size(&json!(4096)), Ok(4096));
        assert_eq!(parse_size(&json!("16MiB")), Ok(16 << 20));
        assert_eq!(parse_size(&json!("2 K")), Ok(2048));
        assert_eq!(parse_size(&json!("3MB")), Ok(3_000_000));
        assert!(parse_size(&json!("12XB"))
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_size(&json!("MiB")).is_err());
        assert!(parse_size(&json!(-1)).is_err());
    }

    #[test]
    fn defaults() {
        let s = PluginSpec::from_config(&wasm("p.wasm")).unwrap();
        assert_eq!(s.memory, DEFAULT_MEMORY);
        assert_eq!(s.deadline, DEFAULT_DEADLINE);
        assert_eq!(s.isolation, Isolation::Pooled);
        assert_eq!(&*s.config, "{}");
        assert!(s.dir.is_none());
    }

    #[test]
    fn limits_and_errors_name_the_file() {
        let mut p = wasm("p.wasm");
        p.limits = Some(PluginLimits {
            memory: Some(json!("1GiB")),
            ..Default::default()
        });
        let e = PluginSpec::from_config(&p).unwrap_err().to_string();
        assert!(e.contains("p.wasm") && e.contains("limits.memory"), "{e}");
        let mut p = wasm("p.wasm");
        p.isolation = "shared".into();
        let e = PluginSpec::from_config(&p).unwrap_err().to_string();
        assert!(e.contains("isolation 'shared'"), "{e}");
        let e = PluginSpec::from_config(&wasm("")).unwrap_err().to_string();
        assert!(e.contains("needs `path`"), "{e}");
        let mut p = wasm("p.wasm");
        p.connect = vec!["example.com:80".into()];
        let e = PluginSpec::from_config(&p).unwrap_err().to_string();
        assert!(e.contains("not ip:port"), "{e}");
    }
}
