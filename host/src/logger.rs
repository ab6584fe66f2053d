//! Logging set-up from the `log` section and `-D`/`-DD` (GOST's logger).

use std::fs::OpenOptions;
use std::sync::Mutex;

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
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| LogError::Output {
                    path: path.to_string(),
                    source,
                })?;
            BoxMakeWriter::new(Mutex::new(file))
        }
    };
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
            let _ = builder.json().try_init();
        }
        other => return Err(LogError::Format(other.to_string())),
    }
    Ok(())
}
