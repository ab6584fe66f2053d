//! GOST v3's configuration: the schema (`types`), Go durations
//! (`duration`), reading and writing YAML/JSON (`load`), and checks with
//! precise errors (`validate`).
//!
//! GOST does not fill in missing names: an object without a name is simply
//! never registered. We keep the document as written and report such
//! objects from [`Config::validate`] instead.

mod duration;
pub mod limits;
mod load;
mod ports;
pub mod save;
mod self_loop;
mod types;
mod validate;

pub use duration::{Duration, DurationError};
pub use load::{default_search_paths, Format, Loaded, Source};
pub use types::*;
pub use validate::{Kind, DEFAULT_CONNECTOR, DEFAULT_DIALER, DEFAULT_HANDLER, DEFAULT_LISTENER};

pub use ports::{check_host_port, parse_port_range, split_host_port};

/// The rule source of a bypass, admission, hosts or limiter config that
/// gost-rs does not read (a `plugin`; `redis` and `http` loaders are
/// read, see [`crate::loader`]), refused by name.
pub fn remote_source(plugin: bool) -> Option<&'static str> {
    plugin.then_some("plugin")
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{origin}: {source}")]
    Read {
        origin: String,
        source: std::io::Error,
    },
    /// Syntax and type errors, where the parser knows the position.
    #[error("{origin}: line {line}, column {column}: {msg}")]
    Syntax {
        origin: String,
        line: usize,
        column: usize,
        msg: String,
    },
    #[error("{origin}: {msg}")]
    Parse { origin: String, msg: String },
    #[error("cannot write the config as {format}: {msg}")]
    Encode { format: Format, msg: String },
    #[error("{0}: loading a config from a URL is not supported yet")]
    UrlUnsupported(String),
    #[error("no config file gost.json, gost.yaml or gost.yml found in {searched}")]
    NotFound { searched: String },
    /// A problem found by [`Config::validate`].
    #[error("{0}")]
    Invalid(String),
}

#[cfg(test)]
mod tests;
