//! GOST's command line (go-gost/gost `cmd/gost/main.go`, go-gost/x
//! `config/parsing/parser` and `config/cmd`): flags, the `--` split into
//! groups, and turning `-L`/`-F`/`-C`/`-api`/`-metrics` into one config.

mod args;
mod build;
pub mod registry;
mod url;

pub use args::parse_args;

use gost_core::config::{
    APIConfig, AuthConfig, Config, ConfigError, LogConfig, MetricsConfig, Source,
};
use gost_core::metadata::Metadata;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Yaml,
    Json,
}

/// The flags of one group, as GOST defines them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Args {
    /// `-L`, in order.
    pub services: Vec<String>,
    /// `-F`, in order; each is one hop of `chain-0`.
    pub nodes: Vec<String>,
    /// `-C`: files, `-`, URLs or inline JSON, merged left to right.
    pub configs: Vec<String>,
    /// `-O`: print the config and exit.
    pub output: Option<OutputFormat>,
    /// `-D`.
    pub debug: bool,
    /// `-DD`.
    pub trace: bool,
    /// `-V`.
    pub version: bool,
    pub api: Option<String>,
    pub metrics: Option<String>,
    /// `-R`: periodic reload; `None` when absent or zero.
    pub reload: Option<std::time::Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// `-h`: the usage text to print; not a failure.
    #[error("{0}")]
    Help(String),
    /// A flag error from the parser, already naming the flag.
    #[error("{0}")]
    Usage(String),
    /// A bad `-L`/`-F`/`-api`/`-metrics` value, quoted as given.
    #[error("{flag} \"{arg}\": {msg}")]
    Arg {
        flag: &'static str,
        arg: String,
        msg: String,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Splits the arguments (program name excluded) at each `--`. GOST runs
/// every group as a child process of the same binary; one group means no
/// `--` at all.
pub fn split_groups(args: &[String]) -> Vec<Vec<String>> {
    args.split(|a| a == "--").map(<[String]>::to_vec).collect()
}

/// The config of `-L`, `-F`, `-api`, `-metrics`, `-D`/`-DD` alone, without
/// any `-C` file.
pub fn build_config(args: &Args) -> Result<Config, CliError> {
    let cfg = build::build_cmd_config(&args.services, &args.nodes, gost_id().as_deref())?;
    apply_flags(cfg, args)
}

/// What GOST runs (`parser.Parse`): `-C` sources merged left to right, then
/// the `-L`/`-F` config; with none of services, API or `-C`, the default
/// `gost.{json,yaml,yml}`; then the `GOST_*` environment variables; then
/// `-D`/`-DD`, `-api` and `-metrics`, which win over everything.
/// Warnings (unknown keys: `<file>: unknown key services.0.listner
/// (ignored)`) are returned, not logged, because logging is set up from
/// the config this returns.
pub fn load_config_and_warnings(args: &Args) -> Result<(Config, Vec<String>), CliError> {
    load_config_with(args, |k| std::env::var(k).ok())
}

fn gost_id() -> Option<String> {
    std::env::var("_GOST_ID").ok()
}

fn unknown_keys(warnings: &mut Vec<String>, origin: &str, keys: &[String]) {
    warnings.extend(
        keys.iter()
            .map(|key| format!("{origin}: unknown key {key} (ignored)")),
    );
}

fn load_config_with(
    args: &Args,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(Config, Vec<String>), CliError> {
    let mut warnings = Vec::new();
    let mut cfg = Config::default();
    let sources: Vec<&String> = args
        .configs
        .iter()
        .filter(|c| !c.trim().is_empty())
        .collect();
    for src in &sources {
        let loaded = Config::load_source(src)?;
        let origin = match Source::classify(src) {
            Source::Inline(_) => "inline config".to_string(),
            _ => src.trim().to_string(),
        };
        unknown_keys(&mut warnings, &origin, &loaded.unknown_keys);
        cfg = cfg.merge(loaded.config);
    }
    let cmd = build::build_cmd_config(&args.services, &args.nodes, env("_GOST_ID").as_deref())?;
    cfg = cfg.merge(cmd);

    if cfg.services.is_empty() && args.api.is_none() && cfg.api.is_none() && args.configs.is_empty()
    {
        let (path, loaded) = Config::load_default()?;
        unknown_keys(
            &mut warnings,
            &path.display().to_string(),
            &loaded.unknown_keys,
        );
        cfg = cfg.merge(loaded.config);
    }

    if let Some(level) = env("GOST_LOGGER_LEVEL").filter(|v| !v.is_empty()) {
        cfg.log.get_or_insert_with(LogConfig::default).level = level;
    }
    if let Some(addr) = env("GOST_API").filter(|v| !v.is_empty()) {
        cfg.api.get_or_insert_with(APIConfig::default).addr = addr;
    }
    if let Some(addr) = env("GOST_METRICS").filter(|v| !v.is_empty()) {
        cfg.metrics.get_or_insert_with(MetricsConfig::default).addr = addr;
    }
    if let Some(addr) = env("GOST_PROFILING").filter(|v| !v.is_empty()) {
        cfg.profiling.get_or_insert_with(Default::default).addr = addr;
    }
    Ok((apply_flags(cfg, args)?, warnings))
}

/// `-D`/`-DD` set `log.level`; `-api`/`-metrics` replace those sections.
fn apply_flags(mut cfg: Config, args: &Args) -> Result<Config, CliError> {
    if args.debug || args.trace {
        cfg.log.get_or_insert_with(LogConfig::default).level =
            if args.trace { "trace" } else { "debug" }.into();
    }
    if let Some(addr) = &args.api {
        let svc = service_addr("-api", addr)?;
        let path_prefix = svc.query.get_string("pathPrefix").map_err(|e| svc.err(e))?;
        let accesslog = svc.query.get_bool("accesslog").map_err(|e| svc.err(e))?;
        cfg.api = Some(APIConfig {
            addr: svc.addr,
            auth: svc.auth,
            path_prefix: path_prefix.unwrap_or_default(),
            accesslog: accesslog.unwrap_or(false),
            ..APIConfig::default()
        });
    }
    if let Some(addr) = &args.metrics {
        let svc = service_addr("-metrics", addr)?;
        let path = svc.query.get_string("path").map_err(|e| svc.err(e))?;
        cfg.metrics = Some(MetricsConfig {
            addr: svc.addr,
            auth: svc.auth,
            path: path.unwrap_or_default(),
            auther: String::new(),
        });
    }
    Ok(cfg)
}

/// `[user:pass@]host:port[?k=v]` of `-api`/`-metrics`.
struct ServiceAddr {
    flag: &'static str,
    arg: String,
    addr: String,
    auth: Option<AuthConfig>,
    query: Metadata,
}

impl ServiceAddr {
    fn err(&self, e: impl ToString) -> CliError {
        CliError::Arg {
            flag: self.flag,
            arg: self.arg.clone(),
            msg: e.to_string(),
        }
    }
}

fn service_addr(flag: &'static str, arg: &str) -> Result<ServiceAddr, CliError> {
    let err = |msg: String| CliError::Arg {
        flag,
        arg: arg.to_string(),
        msg,
    };
    let url = build::norm(arg).map_err(err)?;
    // GOST serves `unix:///path` on a unix socket; keep the scheme so the
    // server knows (GOST's own flag parsing loses it).
    let addr = if url.scheme == "unix" {
        format!("unix://{}", url.path)
    } else {
        gost_core::config::check_host_port(&url.host).map_err(err)?;
        url.host.clone()
    };
    let auth = url.user.as_ref().map(|u| AuthConfig {
        username: u.username.clone(),
        password: u.password.clone().unwrap_or_default(),
        file: String::new(),
    });
    let query = url
        .query()
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    Ok(ServiceAddr {
        flag,
        arg: arg.to_string(),
        addr,
        auth,
        query,
    })
}

#[cfg(test)]
mod tests;
