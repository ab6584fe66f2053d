//! GOST's flags with Go `flag` package syntax, parsed by clap.
//!
//! Go accepts `-L x`, `--L x`, `-L=x` and `--L=x` alike, has multi-letter
//! single-dash flags (`-api`, `-DD`) and bool flags that take `=value` but
//! never a separate value. clap cannot express single-dash long flags, so
//! each Go-style flag is first rewritten to clap's `--name` form; clap then
//! does the parsing, help and error messages.

use clap::{Arg, ArgAction, Command};

use super::{Args, CliError, OutputFormat};
use gost_core::config::Duration;
use gost_core::metadata::parse_go_bool;

/// Flags that take a value: the next argument is that value whatever it
/// looks like, as in Go.
const VALUE_FLAGS: &[&str] = &["L", "F", "C", "O", "api", "metrics", "R"];
const BOOL_FLAGS: &[&str] = &["D", "DD", "V"];

/// Rewrites Go-style flags to `--name[=value]`; values are left alone.
fn normalize(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut value_next = false;
    for arg in args {
        if std::mem::take(&mut value_next) {
            out.push(arg.clone());
            continue;
        }
        let body = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .filter(|b| !b.is_empty());
        let Some(body) = body else {
            out.push(arg.clone());
            continue;
        };
        let (name, has_value) = match body.split_once('=') {
            Some((n, _)) => (n, true),
            None => (body, false),
        };
        if VALUE_FLAGS.contains(&name) {
            value_next = !has_value;
            out.push(format!("--{body}"));
        } else if BOOL_FLAGS.contains(&name) {
            out.push(format!("--{body}"));
        } else if name == "h" || name == "help" {
            out.push("--help".into());
        } else {
            out.push(arg.clone());
        }
    }
    out
}

fn command() -> Command {
    let list = |name: &'static str, value: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .value_name(value)
            .action(ArgAction::Append)
            .allow_hyphen_values(true)
            .help(help)
    };
    let single = |name: &'static str, value: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .value_name(value)
            .allow_hyphen_values(true)
            .help(help)
    };
    let boolean = |name: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .num_args(0..=1)
            .require_equals(true)
            .default_missing_value("true")
            .value_parser(|s: &str| {
                parse_go_bool(s).ok_or_else(|| format!("invalid boolean value \"{s}\""))
            })
            .help(help)
    };
    Command::new("gost")
        .no_binary_name(true)
        .disable_version_flag(true)
        .args_override_self(true)
        .about("GO Simple Tunnel: a tunnel and proxy, GOST v3 compatible")
        .after_help(
            "Flags take one or two dashes and `=value` or a separate value, as in GOST: \
             -L :8080, --L=:8080, -api :18080, -DD.\n\
             Separate groups with `--` to run each as its own process.",
        )
        .arg(list("L", "URL", "service list"))
        .arg(list("F", "URL", "chain node list"))
        .arg(list("C", "FILE", "config file(s), URL(s), or inline JSON"))
        .arg(
            single("O", "FORMAT", "output format, one of yaml|json format")
                .value_parser(["yaml", "json"])
                .allow_hyphen_values(false),
        )
        .arg(boolean("D", "debug mode"))
        .arg(boolean("DD", "trace mode"))
        .arg(boolean("V", "print version"))
        .arg(single("api", "ADDR", "api service address"))
        .arg(single("metrics", "ADDR", "metrics service address"))
        .arg(
            single("R", "DURATION", "auto reload period (e.g. 30s, 1m)")
                .value_parser(|s: &str| Duration::parse(s).map(|d| d.0).map_err(|e| e.to_string())),
        )
}

/// Parses one group of arguments (no program name, no `--`).
pub fn parse_args(args: &[String]) -> Result<Args, CliError> {
    let matches = command()
        .try_get_matches_from(normalize(args))
        .map_err(|e| match e.kind() {
            clap::error::ErrorKind::DisplayHelp => {
                let mut text = e.render().to_string();
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                CliError::Help(text)
            }
            _ => {
                let text = e.render().to_string();
                let text = text
                    .trim_end()
                    .strip_prefix("error: ")
                    .unwrap_or(text.trim_end())
                    .to_string();
                CliError::Usage(text)
            }
        })?;
    let strings = |id: &str| {
        matches
            .get_many::<String>(id)
            .map(|v| v.cloned().collect())
            .unwrap_or_default()
    };
    let text = |id: &str| {
        matches
            .get_one::<String>(id)
            .filter(|s| !s.is_empty())
            .cloned()
    };
    let flag = |id: &str| matches.get_one::<bool>(id).copied().unwrap_or(false);
    Ok(Args {
        services: strings("L"),
        nodes: strings("F"),
        configs: strings("C"),
        output: matches.get_one::<String>("O").map(|s| match s.as_str() {
            "json" => OutputFormat::Json,
            _ => OutputFormat::Yaml,
        }),
        debug: flag("D"),
        trace: flag("DD"),
        version: flag("V"),
        api: text("api"),
        metrics: text("metrics"),
        reload: matches
            .get_one::<std::time::Duration>("R")
            .copied()
            .filter(|d| !d.is_zero()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, CliError> {
        parse_args(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn go_flag_spellings() {
        let a = parse(&[
            "-L",
            ":8080",
            "--L=:8081",
            "-L=http://:8082",
            "--L",
            "-weird",
            "-F",
            "socks5://h:1",
            "-C",
            "a.yaml",
            "-api",
            ":18080",
            "--metrics=:9000",
            "-DD",
            "-D=false",
            "-O",
            "json",
            "-R",
            "30s",
        ])
        .unwrap();
        assert_eq!(a.services, [":8080", ":8081", "http://:8082", "-weird"]);
        assert_eq!(a.nodes, ["socks5://h:1"]);
        assert_eq!(a.configs, ["a.yaml"]);
        assert_eq!(a.api.as_deref(), Some(":18080"));
        assert_eq!(a.metrics.as_deref(), Some(":9000"));
        assert!(a.trace);
        assert!(!a.debug);
        assert!(!a.version);
        assert_eq!(a.output, Some(OutputFormat::Json));
        assert_eq!(a.reload, Some(std::time::Duration::from_secs(30)));
    }

    #[test]
    fn bools_and_repeats() {
        let a = parse(&["-D", "-V", "-O", "json", "-O", "yaml", "-D=1"]).unwrap();
        assert!(a.debug && a.version);
        assert_eq!(a.output, Some(OutputFormat::Yaml));
        let a = parse(&[]).unwrap();
        assert_eq!(a, Args::default());
    }

    #[test]
    fn errors_name_the_flag() {
        let e = parse(&["-L"]).unwrap_err().to_string();
        assert!(e.contains("--L"), "{e}");
        let e = parse(&["-x"]).unwrap_err().to_string();
        assert!(e.contains("-x"), "{e}");
        let e = parse(&["-O", "xml"]).unwrap_err().to_string();
        assert!(e.contains("xml") && e.contains("--O"), "{e}");
        let e = parse(&["-R", "5"]).unwrap_err().to_string();
        assert!(e.contains("--R") && e.contains("\"5\""), "{e}");
        let e = parse(&["-D=maybe"]).unwrap_err().to_string();
        assert!(e.contains("maybe"), "{e}");
        let e = parse(&["stray"]).unwrap_err().to_string();
        assert!(e.contains("stray"), "{e}");
    }

    #[test]
    fn help() {
        for h in ["-h", "--help", "-help"] {
            match parse(&[h]) {
                Err(CliError::Help(text)) => assert!(text.contains("--L <URL>"), "{text}"),
                other => panic!("{h}: {other:?}"),
            }
        }
    }
}
