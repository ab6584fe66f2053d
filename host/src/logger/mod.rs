//! Logging set-up from the `log` section and `-D`/`-DD` (GOST's logger).

mod rotate;

use std::fs::OpenOptions;
use std::sync::Mutex;
use std::time::Duration;

pub use rotate::{RotatingFile, Rotation};

use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log.level '{0}' is not one of trace, debug, info, warn, error, fatal")]
    Level(String),
    #[error("log.format '{0}' is not one of text, json")]
    Format(String),
    #[error("log.output '{path}': {source}")]
    Output {
        path: String,
        source: std::io::Error,
    },
    #[error("log.rotation needs log.output to be a file path, not '{0}'")]
    RotationOutput(String),
    #[error("log.rotation.compress is not supported yet")]
    Compress,
}

/// Installs the global subscriber. `override_level` comes from `-D`/`-DD`
/// and wins over the config, as in GOST. `RUST_LOG`, when set, refines it
/// (e.g. per module), which GOST users do not have but Rust users expect.
pub fn init(cfg: Option<&LogConfig>, override_level: Option<&str>) -> Result<(), LogError> {
    let level = override_level
        .or(cfg.map(|c| c.level.as_str()).filter(|l| !l.is_empty()))
        .unwrap_or("info");
    let level = match level {
        "trace" | "debug" | "info" | "warn" | "error" => level,
        "fatal" | "panic" => "error",
        "warning" => "warn",
        other => return Err(LogError::Level(other.to_string())),
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::new(format!("{level},{v}")),
        _ => EnvFilter::new(level),
    };
    let output = cfg.map(|c| c.output.as_str()).unwrap_or("");
    let writer = match output {
        "" | "stderr" => BoxMakeWriter::new(std::io::stderr),
        "stdout" => BoxMakeWriter::new(std::io::stdout),
        "none" | "null" => BoxMakeWriter::new(std::io::sink),
        path => {
            let err = |source| LogError::Output {
                path: path.to_string(),
                source,
            };
            match cfg.and_then(|c| c.rotation.as_ref()) {
                Some(r) => {
                    let file = RotatingFile::open(path.as_ref(), rotation(r)?).map_err(err)?;
                    BoxMakeWriter::new(Mutex::new(file))
                }
                None => {
                    // As GOST: the directory is created when missing.
                    let p = std::path::Path::new(path);
                    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir).map_err(err)?;
                    }
                    let file = OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(p)
                        .map_err(err)?;
                    BoxMakeWriter::new(Mutex::new(file))
                }
            }
        }
    };
    if let (Some(_), "" | "stderr" | "stdout" | "none" | "null") =
        (cfg.and_then(|c| c.rotation.as_ref()), output)
    {
        return Err(LogError::RotationOutput(output.to_string()));
    }
    let format = cfg.map(|c| c.format.as_str()).unwrap_or("");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    // A second init (tests, or a library user) keeps the first subscriber.
    match format {
        "" | "text" => {
            let _ = builder.with_ansi(false).try_init();
        }
        "json" => {
            let _ = builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .try_init();
        }
        other => return Err(LogError::Format(other.to_string())),
    }
    Ok(())
}

/// lumberjack's options: sizes in megabytes, ages in days, 0 for "no
/// limit" (size: 100 MB).
fn rotation(r: &crate::config::LogRotationConfig) -> Result<Rotation, LogError> {
    if r.compress {
        return Err(LogError::Compress);
    }
    let mb = u64::try_from(r.max_size)
        .ok()
        .filter(|m| *m > 0)
        .unwrap_or(rotate::DEFAULT_MAX_SIZE_MB);
    Ok(Rotation {
        max_size: mb.saturating_mul(1024 * 1024),
        max_backups: usize::try_from(r.max_backups).unwrap_or(0),
        max_age: u64::try_from(r.max_age)
            .ok()
            .filter(|d| *d > 0)
            .map(|d| Duration::from_secs(d * 24 * 3600)),
        local_time: r.local_time,
    })
}
