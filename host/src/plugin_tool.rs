//! `gost plugin new` and `gost plugin check`: the plugin author's side of
//! the binary. Not part of GOST's CLI; the word `plugin` is not a GOST
//! flag, so it cannot be mistaken for one.
//!
//! `new` writes a crate that builds to a component this binary loads: the
//! SDK and its WIT are copied into the crate from the ones this binary was
//! built with, so the two always speak the same `gost:plugin` version.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use gost_plugin::load::{self, World};

/// The SDK's files, as `(path in the SDK, content)`.
const SDK: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../plugin-sdk/Cargo.toml")),
    ("src/lib.rs", include_str!("../../plugin-sdk/src/lib.rs")),
    (
        "src/testing.rs",
        include_str!("../../plugin-sdk/src/testing.rs"),
    ),
    (
        "src/handler/buf_conn.rs",
        include_str!("../../plugin-sdk/src/handler/buf_conn.rs"),
    ),
    (
        "wit/plugin.wit",
        include_str!("../../plugin-sdk/wit/plugin.wit"),
    ),
];

/// Where `new` puts the SDK inside the crate.
const SDK_DIR: &str = "gost-plugin-sdk";

const USAGE: &str = "usage:
  gost plugin new --world handler|forwarder|observer [--sdk PATH] NAME
      writes the crate NAME (a directory) for a plugin of that world;
      --sdk uses the SDK at PATH instead of a copy inside the crate
  gost plugin check FILE
      tells the world, WIT version, imports and grants of a component
      and whether it would load (exit code 0 if it would)";

/// Runs `gost plugin ARGS...` (the arguments after `plugin`).
pub fn run(args: &[String]) -> ExitCode {
    let result = match args.first().map(String::as_str) {
        Some("new") => new(&args[1..]),
        Some("check") => match &args[1..] {
            [file] => return check(Path::new(file)),
            _ => Err("check takes one FILE".to_string()),
        },
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!(
            "unknown plugin command '{}'",
            gost_core::escape::esc(other)
        )),
        None => Err("a plugin command is needed".to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gost plugin: {e}\n{USAGE}");
            ExitCode::FAILURE
        }
    }
}

fn new(args: &[String]) -> Result<(), String> {
    let (mut world, mut sdk, mut name) = (None, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--world" => {
                let w = it.next().ok_or("--world needs a value")?;
                world = Some(
                    TEMPLATED
                        .into_iter()
                        .find(|x| x.name() == w)
                        .ok_or_else(|| {
                            format!(
                                "--world '{}' is not one of: {}",
                                gost_core::escape::esc(w),
                                TEMPLATED.map(|w| w.name()).join(", ")
                            )
                        })?,
                );
            }
            "--sdk" => sdk = Some(PathBuf::from(it.next().ok_or("--sdk needs a path")?)),
            flag if flag.starts_with('-') => {
                return Err(format!("unknown flag '{}'", gost_core::escape::esc(flag)))
            }
            n if name.is_none() => name = Some(PathBuf::from(n)),
            extra => {
                return Err(format!(
                    "one NAME only ('{}' is a second)",
                    gost_core::escape::esc(extra)
                ))
            }
        }
    }
    let world = world.ok_or("--world is needed")?;
    let dir = name.ok_or("NAME is needed")?;
    let crate_name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| valid_crate_name(n))
        .ok_or_else(|| {
            format!(
                "'{}' does not end in a crate name (letters, digits, - and _, \
                 not starting with a digit)",
                dir.display()
            )
        })?
        .to_string();
    if dir.exists() {
        return Err(format!("{} exists already", dir.display()));
    }
    let sdk_path = match &sdk {
        Some(p) => {
            if !p.join("Cargo.toml").is_file() {
                return Err(format!("--sdk {}: no Cargo.toml there", p.display()));
            }
            std::fs::canonicalize(p).map_err(|e| format!("--sdk {}: {e}", p.display()))?
        }
        None => PathBuf::from(SDK_DIR),
    };
    let write = |rel: &str, text: &str| -> Result<(), String> {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write(
        "Cargo.toml",
        &cargo_toml(&crate_name, world, &sdk_path.to_string_lossy()),
    )?;
    let Some(code) = template(world) else {
        return Err(format!("no template for the {} world yet", world.name()));
    };
    write("src/lib.rs", code)?;
    write(".gitignore", "/target\n")?;
    if sdk.is_none() {
        for (rel, text) in SDK {
            write(&format!("{SDK_DIR}/{rel}"), text)?;
        }
    }
    let wasm = crate_name.replace('-', "_");
    println!(
        "created {dir} ({world} plugin)
  test:  cd {dir} && cargo test
  build: cd {dir} && cargo build --release --target wasm32-wasip2
  file:  {dir}/target/wasm32-wasip2/release/{wasm}.wasm
  check: gost plugin check {dir}/target/wasm32-wasip2/release/{wasm}.wasm",
        dir = dir.display(),
        world = world.name(),
    );
    Ok(())
}

fn valid_crate_name(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with(|c: char| c.is_ascii_digit())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn cargo_toml(name: &str, world: World, sdk: &str) -> String {
    let extra = match world {
        World::Observer => "serde_json = \"1\"\n",
        _ => "",
    };
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
gost-plugin-sdk = {{ path = "{sdk}", default-features = false, features = ["{world}"] }}
{extra}
# Speed, not size; a panic aborts (its message still reaches gost's log).
[profile.release]
opt-level = 3
lto = true
codegen-units = 1
panic = "abort"
strip = true

# A crate of its own, even when created inside another workspace.
[workspace]
"#,
        sdk = sdk.replace('\\', "/").replace('"', "\\\""),
        world = world.name(),
    )
}

/// The worlds `plugin new` has a template for.
const TEMPLATED: [World; 3] = [World::Handler, World::Forwarder, World::Observer];

fn template(world: World) -> Option<&'static str> {
    match world {
        World::Handler => Some(HANDLER),
        World::Forwarder => Some(FORWARDER),
        World::Observer => Some(OBSERVER),
        World::Connector | World::Transport | World::Datagram => None,
    }
}

const HANDLER: &str = r#"//! A handler plugin: the client sends `host:port` and a newline, the
//! plugin connects there and the host relays the bytes both ways.

use std::io::{BufRead, BufReader, Write};

use gost_plugin_sdk::handler::{dial, ConnInfo, Outcome, RelayStreams};
use gost_plugin_sdk::{log, log_enabled, Conn, Handler, Level};

struct Plugin;

impl Handler for Plugin {
    fn handle(info: &ConnInfo, mut client: Conn) -> Outcome {
        let mut line = String::new();
        let mut r = BufReader::with_capacity(256, &mut client);
        if std::io::Read::take(&mut r, 256).read_line(&mut line).is_err() {
            return Outcome::Done;
        }
        // What the client sent past its line goes to the target first.
        let early = r.buffer().to_vec();
        drop(r);
        let target = line.trim();
        if log_enabled(Level::Debug) {
            log(Level::Debug, &format!("{} asks for {target}", info.client_addr()));
        }
        match dial("tcp", target) {
            Ok(upstream) => Outcome::Relay(RelayStreams {
                client,
                upstream,
                to_client: Vec::new(),
                to_upstream: early,
            }),
            Err(e) => {
                let _ = client.write_all(b"ERR\n");
                Outcome::Fail(e)
            }
        }
    }
}

gost_plugin_sdk::export_handler!(Plugin);

/// `cargo test` runs these natively, against the SDK's mock host.
#[cfg(test)]
mod tests {
    use super::*;
    use gost_plugin_sdk::testing::MockHost;

    #[test]
    fn relays_to_the_target_named() {
        let run = MockHost::new()
            .upstream("10.0.0.1:80", &[])
            .handle::<Plugin>(&[b"10.0.0.1:80\nhello"]);
        assert!(matches!(&run.outcome, Outcome::Relay(r) if r.to_upstream == b"hello"));
        assert_eq!(run.dialed[0].0, "10.0.0.1:80");
    }

    #[test]
    fn an_unreachable_target_fails() {
        let run = MockHost::new().handle::<Plugin>(&[b"10.0.0.2:80\n"]);
        assert!(matches!(run.outcome, Outcome::Fail(_)));
        assert_eq!(run.client.written(), b"ERR\n");
    }
}
"#;

const FORWARDER: &str = r#"//! A forwarder plugin: sends each connection to the hop's nodes in turn.

use std::sync::atomic::{AtomicU32, Ordering};

use gost_plugin_sdk::forwarder::{Node, RequestInfo, Selection};
use gost_plugin_sdk::Forwarder;

static NEXT: AtomicU32 = AtomicU32::new(0);

struct Plugin;

impl Forwarder for Plugin {
    fn select(_req: RequestInfo, nodes: Vec<Node>) -> Selection {
        if nodes.is_empty() {
            return Selection::Reject("the hop has no nodes".into());
        }
        Selection::Node(NEXT.fetch_add(1, Ordering::Relaxed) % nodes.len() as u32)
    }
}

gost_plugin_sdk::export_forwarder!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_nodes_in_turn() {
        let nodes = || {
            vec![
                Node { name: "a".into(), addr: "10.0.0.1:80".into() },
                Node { name: "b".into(), addr: "10.0.0.2:80".into() },
            ]
        };
        let req = || RequestInfo {
            service: "s".into(),
            network: "tcp".into(),
            client_addr: "127.0.0.1:1".into(),
            host: String::new(),
        };
        let a = Plugin::select(req(), nodes());
        let b = Plugin::select(req(), nodes());
        assert!(matches!((a, b), (Selection::Node(x), Selection::Node(y)) if x != y));
    }
}
"#;

const OBSERVER: &str = r#"//! An observer plugin: writes each event to the log as GOST's JSON.

use gost_plugin_sdk::observer::Event;
use gost_plugin_sdk::{log, Level, Observer};

struct Plugin;

impl Observer for Plugin {
    fn observe(events: Vec<Event>) -> Result<(), String> {
        for e in &events {
            log(Level::Info, &e.to_json().to_string());
        }
        Ok(())
    }
}

gost_plugin_sdk::export_observer!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use gost_plugin_sdk::observer::{EventData, Status};
    use gost_plugin_sdk::testing::{logs, MockHost};

    #[test]
    fn logs_each_event() {
        MockHost::new().install();
        let ev = Event {
            kind: "service".into(),
            service: "s".into(),
            client: String::new(),
            data: EventData::Status(Status { state: "ready".into(), msg: String::new() }),
        };
        Plugin::observe(vec![ev]).unwrap();
        assert!(logs()[0].1.contains("\"ready\""));
    }
}
"#;

/// Prints what the file is and whether it would load; the exit code
/// says the latter.
fn check(path: &Path) -> ExitCode {
    let (text, code) = match load::inspect(path) {
        Ok(report) => describe(path, report),
        Err(e) => (
            format!("{}: would not load: {e}\n", path.display()),
            ExitCode::FAILURE,
        ),
    };
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::stdout().write_all(text.as_bytes());
    code
}

fn describe(path: &Path, report: load::Inspection) -> (String, ExitCode) {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "file: {}", path.display());
    let _ = writeln!(
        o,
        "world: {}",
        report.world.map(|w| w.name()).unwrap_or("(none)")
    );
    let _ = match &report.wit_version {
        Some(v) => writeln!(
            o,
            "wit: gost:plugin@{v} (this host: {})",
            gost_plugin::WIT_VERSION
        ),
        None => writeln!(
            o,
            "wit: no gost:plugin interface imported, so no version to match (this host: {})",
            gost_plugin::WIT_VERSION
        ),
    };
    let _ = writeln!(o, "imports:");
    for i in &report.imports {
        let _ = writeln!(o, "  {i}");
    }
    let _ = writeln!(o, "exports:");
    for e in &report.exports {
        let _ = writeln!(o, "  {e}");
    }
    let _ = writeln!(o, "grants it may need:");
    if report.grants.is_empty() {
        let _ = writeln!(o, "  none");
    }
    for (grant, import) in &report.grants {
        let why = match *grant {
            "connect" => "opens sockets of its own: list the addresses in `connect`",
            _ => "may open files: grant a directory with `dir` (seen as /data)",
        };
        let _ = writeln!(o, "  {grant}: {why} (imports {import})");
    }
    match report.verdict {
        Ok(()) => {
            let _ = writeln!(o, "loads: yes");
            (o, ExitCode::SUCCESS)
        }
        Err(e) => {
            let _ = writeln!(o, "loads: no: {e}");
            (o, ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file added to the WIT directory must travel with the SDK copy too.
    #[test]
    fn every_wit_file_is_in_the_sdk_copy() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk/wit");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                SDK.iter().any(|(rel, _)| *rel == format!("wit/{name}")),
                "wit/{name} is not in plugin_tool::SDK"
            );
        }
        for name in ["Cargo.toml", "src/lib.rs"] {
            assert!(SDK.iter().any(|(rel, _)| *rel == name));
        }
    }

    #[test]
    fn crate_names() {
        assert!(valid_crate_name("my-plugin_2"));
        assert!(!valid_crate_name("2fast"));
        assert!(!valid_crate_name("a b"));
        assert!(!valid_crate_name(""));
    }
}
