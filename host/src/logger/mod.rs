//! Logging set-up from the `log` section and `-D`/`-DD` (GOST's logger),
//! and the named `loggers` a service can send its log lines to.

mod json;
mod route;
pub mod tail;

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Mutex;

use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use gost_core::config::LogConfig;

pub use gost_core::rotate::{RotatingFile, Rotation};
pub use route::{prepare, ServiceLoggers};

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
    #[error("logger \"{name}\": {source}")]
    Logger {
        name: String,
        #[source]
        source: Box<LogError>,
    },
}

/// GOST's level names, mapped onto tracing's.
fn parse_level(level: &str) -> Result<&'static str, LogError> {
    Ok(match level {
        "" | "info" => "info",
        "trace" => "trace",
        "debug" => "debug",
        "warn" | "warning" => "warn",
        "error" | "fatal" | "panic" => "error",
        other => return Err(LogError::Level(other.to_string())),
    })
}

/// Whether the format is JSON (else text). JSON when none is set, as
/// GOST: a log pipeline built for GOST keeps working.
fn parse_format(format: &str) -> Result<bool, LogError> {
    match format {
        "text" => Ok(false),
        "" | "json" => Ok(true),
        other => Err(LogError::Format(other.to_string())),
    }
}

/// Where `log.output` points, with `log.rotation` applied to files.
fn open_output(cfg: Option<&LogConfig>) -> Result<Box<dyn Write + Send>, LogError> {
    let output = cfg.map(|c| c.output.as_str()).unwrap_or("");
    let rotation = cfg.and_then(|c| c.rotation.as_ref());
    if rotation.is_some() && matches!(output, "" | "stderr" | "stdout" | "none" | "null") {
        return Err(LogError::RotationOutput(output.to_string()));
    }
    let out: Box<dyn Write + Send> = match output {
        "" | "stderr" => Box::new(std::io::stderr()),
        "stdout" => Box::new(std::io::stdout()),
        "none" | "null" => Box::new(std::io::sink()),
        path => {
            let err = |source| LogError::Output {
                path: path.to_string(),
                source,
            };
            match rotation {
                Some(r) => Box::new(
                    RotatingFile::open(path.as_ref(), Rotation::from_config(r)).map_err(err)?,
                ),
                None => {
                    // As GOST: the directory is created when missing.
                    let p = std::path::Path::new(path);
                    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir).map_err(err)?;
                    }
                    Box::new(
                        OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(p)
                            .map_err(err)?,
                    )
                }
            }
        }
    };
    Ok(Box::new(gost_core::escape::LineGuard(out)))
}

/// Installs the global subscriber. `override_level` comes from `-D`/`-DD`
/// and wins over the config, as in GOST. `RUST_LOG`, when set, refines it
/// (e.g. per module), which GOST users do not have but Rust users expect.
/// Lines of services that have their own `loggers` go there instead.
pub fn init(cfg: Option<&LogConfig>, override_level: Option<&str>) -> Result<(), LogError> {
    let level = parse_level(
        override_level
            .or(cfg.map(|c| c.level.as_str()))
            .unwrap_or(""),
    )?;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::new(format!("{level},{v}")),
        _ => EnvFilter::new(level),
    };
    let json = parse_format(cfg.map(|c| c.format.as_str()).unwrap_or(""))?;
    let writer = BoxMakeWriter::new(Mutex::new(open_output(cfg)?));
    let default = route::DefaultFilter::new(filter);
    let fmt = if json {
        tracing_subscriber::fmt::layer()
            .event_format(json::GostJson)
            .with_writer(writer)
            .with_filter(default)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(writer)
            .with_filter(default)
            .boxed()
    };
    // A second init (tests, or a library user) keeps the first subscriber.
    let tail_level: tracing::level_filters::LevelFilter = level
        .parse()
        .unwrap_or(tracing::level_filters::LevelFilter::INFO);
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(route::layer())
        .with(tail::TailLayer.with_filter(tail_level))
        .try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_the_default_format_as_in_gost() {
        assert!(parse_format("").unwrap());
        assert!(parse_format("json").unwrap());
        assert!(!parse_format("text").unwrap());
        let err = parse_format("xml").unwrap_err().to_string();
        assert!(err.contains("'xml'"), "{err}");
    }
}
