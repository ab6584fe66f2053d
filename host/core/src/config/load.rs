//! Reading and writing config documents. This is the only place that
//! touches a YAML library, so replacing `serde_yaml` (deprecated upstream)
//! with a fork of the same API is a one-file change.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{Config, ConfigError};

/// The two document formats GOST reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Yaml => "yaml",
            Format::Json => "json",
        })
    }
}

impl Format {
    /// By extension, as GOST forces the format from it; anything else is
    /// read as YAML, which also accepts JSON.
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// A parsed document and the keys in it that GOST's schema does not have.
/// GOST ignores unknown keys; the caller should warn about each one, since
/// it is usually a typo (`services.0.listner`).
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub config: Config,
    /// Dotted paths, list positions as numbers: `services.0.listner`.
    pub unknown_keys: Vec<String>,
}

/// Where a `-C` argument points, decided as GOST decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `-`: the document is read from standard input.
    Stdin,
    /// A document given on the command line: starts with `{`, ends with `}`.
    Inline(String),
    /// An `http://` or `https://` URL.
    Url(String),
    File(PathBuf),
}

impl Source {
    pub fn classify(arg: &str) -> Source {
        let arg = arg.trim();
        if arg == "-" {
            Source::Stdin
        } else if arg.starts_with('{') && arg.ends_with('}') {
            Source::Inline(arg.to_string())
        } else if is_http_url(arg) {
            Source::Url(arg.to_string())
        } else {
            Source::File(PathBuf::from(arg))
        }
    }
}

fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
}

/// Where GOST looks for `gost.{json,yaml,yml}` when it is given nothing to
/// run, in its (viper's) order: `/etc/gost/`, `$HOME/.gost/`, `.`.
pub fn default_search_paths() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("/etc/gost")];
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".gost"));
    }
    dirs.push(PathBuf::from("."));
    dirs
}

impl Config {
    pub fn from_yaml_str(text: &str) -> Result<Loaded, ConfigError> {
        Config::parse(text, Format::Yaml, "<yaml>")
    }

    pub fn from_json_str(text: &str) -> Result<Loaded, ConfigError> {
        Config::parse(text, Format::Json, "<json>")
    }

    /// `-C '{"services": [...]}'`.
    pub fn parse_inline(text: &str) -> Result<Loaded, ConfigError> {
        Config::parse(text, Format::Json, "inline config")
    }

    /// `origin` names the document in errors (a file path, `<stdin>`).
    pub fn parse(text: &str, format: Format, origin: &str) -> Result<Loaded, ConfigError> {
        super::limits::check(text, origin)?;
        let mut unknown_keys = Vec::new();
        let record = |path: serde_ignored::Path| unknown_keys.push(dotted(&path));
        let config = match format {
            Format::Yaml => {
                // An empty file is an empty config, not an error.
                if text.trim().is_empty() {
                    Config::default()
                } else {
                    let de = serde_yaml::Deserializer::from_str(text);
                    serde_ignored::deserialize(de, record).map_err(|e| yaml_error(origin, &e))?
                }
            }
            Format::Json => {
                let mut de = serde_json::Deserializer::from_str(text);
                let cfg = serde_ignored::deserialize(&mut de, record)
                    .map_err(|e| json_error(origin, &e))?;
                de.end().map_err(|e| json_error(origin, &e))?;
                cfg
            }
        };
        Ok(Loaded {
            config,
            unknown_keys,
        })
    }

    /// A file, its format taken from its extension.
    pub fn load(path: impl AsRef<Path>) -> Result<Loaded, ConfigError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|source| ConfigError::Read {
            origin: origin.clone(),
            source,
        })?;
        let text = super::limits::read_capped(file, &origin)?;
        Config::parse(&text, Format::from_path(path), &origin)
    }

    /// One `-C` argument: a file, `-` for standard input, or inline JSON.
    pub fn load_source(arg: &str) -> Result<Loaded, ConfigError> {
        match Source::classify(arg) {
            Source::Stdin => {
                let text = super::limits::read_capped(std::io::stdin(), "<stdin>")?;
                // GOST peeks at the first byte: `{` means JSON.
                let format = if text.trim_start().starts_with('{') {
                    Format::Json
                } else {
                    Format::Yaml
                };
                Config::parse(&text, format, "<stdin>")
            }
            Source::Inline(text) => Config::parse_inline(&text),
            Source::Url(url) => Err(ConfigError::UrlUnsupported(url)),
            Source::File(path) => Config::load(path),
        }
    }

    /// The first `gost.json`, `gost.yaml` or `gost.yml` in GOST's search
    /// paths, as GOST loads when given no service, API or config.
    pub fn load_default() -> Result<(PathBuf, Loaded), ConfigError> {
        let dirs = default_search_paths();
        for dir in &dirs {
            for ext in ["json", "yaml", "yml"] {
                let path = dir.join(format!("gost.{ext}"));
                if path.is_file() {
                    let loaded = Config::load(&path)?;
                    return Ok((path, loaded));
                }
            }
        }
        let searched = dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Err(ConfigError::NotFound { searched })
    }

    pub fn to_yaml(&self) -> Result<String, ConfigError> {
        serde_yaml::to_string(self).map_err(|e| ConfigError::Encode {
            format: Format::Yaml,
            msg: e.to_string(),
        })
    }

    /// Two-space indented with a final newline, as GOST's `-O json`.
    pub fn to_json(&self) -> Result<String, ConfigError> {
        let mut s = serde_json::to_string_pretty(self).map_err(|e| ConfigError::Encode {
            format: Format::Json,
            msg: e.to_string(),
        })?;
        s.push('\n');
        Ok(s)
    }

    /// GOST's `mergeConfig`: lists of `other` are appended to this one's,
    /// and `tls`, `log`, `api`, `metrics`, `profiling` of `other` replace
    /// this one's when set. Several `-C` merge left to right, and the
    /// `-L`/`-F` config is merged last.
    pub fn merge(mut self, other: Config) -> Config {
        self.services.extend(other.services);
        self.chains.extend(other.chains);
        self.hops.extend(other.hops);
        self.authers.extend(other.authers);
        self.admissions.extend(other.admissions);
        self.bypasses.extend(other.bypasses);
        self.resolvers.extend(other.resolvers);
        self.hosts.extend(other.hosts);
        self.ingresses.extend(other.ingresses);
        self.routers.extend(other.routers);
        self.sds.extend(other.sds);
        self.recorders.extend(other.recorders);
        self.rewriters.extend(other.rewriters);
        self.caches.extend(other.caches);
        self.limiters.extend(other.limiters);
        self.quotas.extend(other.quotas);
        self.climiters.extend(other.climiters);
        self.rlimiters.extend(other.rlimiters);
        self.observers.extend(other.observers);
        self.loggers.extend(other.loggers);
        if other.tls.is_some() {
            self.tls = other.tls;
        }
        if other.log.is_some() {
            self.log = other.log;
        }
        if other.api.is_some() {
            self.api = other.api;
        }
        if other.metrics.is_some() {
            self.metrics = other.metrics;
        }
        if other.profiling.is_some() {
            self.profiling = other.profiling;
        }
        self
    }
}

/// `services.0.listner`: map keys and list indexes, without the `?` that
/// serde_ignored writes for every optional level.
fn dotted(path: &serde_ignored::Path) -> String {
    fn walk(path: &serde_ignored::Path, out: &mut Vec<String>) {
        use serde_ignored::Path as P;
        match path {
            P::Root => {}
            P::Seq { parent, index } => {
                walk(parent, out);
                out.push(index.to_string());
            }
            P::Map { parent, key } => {
                walk(parent, out);
                out.push(key.clone());
            }
            P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
                walk(parent, out)
            }
        }
    }
    let mut parts = Vec::new();
    walk(path, &mut parts);
    parts.join(".")
}

/// Both libraries append " at line L column C" to their messages; we put
/// the position in front, after the document's name, and drop the suffix.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => msg[..i].to_string(),
        _ => msg.to_string(),
    }
}

fn yaml_error(origin: &str, e: &serde_yaml::Error) -> ConfigError {
    let msg = strip_position(&e.to_string());
    match e.location() {
        Some(loc) => ConfigError::Syntax {
            origin: origin.to_string(),
            line: loc.line(),
            column: loc.column(),
            msg,
        },
        None => ConfigError::Parse {
            origin: origin.to_string(),
            msg,
        },
    }
}

fn json_error(origin: &str, e: &serde_json::Error) -> ConfigError {
    let msg = strip_position(&e.to_string());
    if e.line() == 0 {
        ConfigError::Parse {
            origin: origin.to_string(),
            msg,
        }
    } else {
        ConfigError::Syntax {
            origin: origin.to_string(),
            line: e.line(),
            column: e.column(),
            msg,
        }
    }
}
