//! Loading a component file: clear errors for what users get wrong, a
//! compiled-code cache on disk, and fresh stores with the plugin's limits.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, InstancePre};
use wasmtime::{Engine, Store};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::output::{LastWords, PluginOutput, Which};
use super::spec::PluginSpec;
use super::state::{Identity, MemoryLimit, NetCtx, PluginState};
use super::{PluginError, Runtime, WIT_VERSION};

/// The WIT world a plugin is loaded as, and the function it must export.
#[derive(Debug, Clone, Copy)]
pub enum World {
    Handler,
    Forwarder,
    Observer,
    Connector,
    Transport,
    Datagram,
}

impl World {
    /// Every world, in the order `gost plugin check` tries them.
    pub const ALL: [World; 6] = [
        World::Handler,
        World::Forwarder,
        World::Observer,
        World::Connector,
        World::Transport,
        World::Datagram,
    ];

    pub fn name(self) -> &'static str {
        match self {
            World::Handler => "handler",
            World::Forwarder => "forwarder",
            World::Observer => "observer",
            World::Connector => "connector",
            World::Transport => "transport",
            World::Datagram => "datagram",
        }
    }

    fn export(self) -> &'static str {
        match self {
            World::Handler => "handle",
            World::Forwarder => "select",
            World::Observer => "observe",
            World::Connector => "connect",
            World::Transport => "encode",
            World::Datagram => "on-datagram",
        }
    }
}

/// Reads, checks and compiles the component at `spec.path` for `world`.
pub fn load(rt: &Runtime, spec: &PluginSpec, world: World) -> Result<Component, PluginError> {
    let err = |msg: String| PluginError::Load {
        path: spec.name.to_string(),
        msg,
    };
    let bytes = std::fs::read(&spec.path).map_err(|e| err(format!("cannot read: {e}")))?;
    check_header(&bytes).map_err(err)?;
    let component = compile(&rt.engine, &bytes).map_err(|e| err(format!("{e:#}")))?;
    check_world(&rt.engine, &component, world).map_err(err)?;
    Ok(component)
}

/// Loads the component at `spec.path` and links it against `world`'s
/// imports; `typed` turns the result into that world's bindings.
pub fn prepare<T>(
    spec: &PluginSpec,
    world: World,
    typed: impl FnOnce(InstancePre<PluginState>) -> wasmtime::Result<T>,
) -> Result<T, PluginError> {
    let rt = super::runtime()?;
    let component = load(rt, spec, world)?;
    let linker = match world {
        World::Handler => &rt.handler_linker,
        World::Forwarder => &rt.forwarder_linker,
        World::Observer => &rt.observer_linker,
        World::Connector => &rt.connector_linker,
        World::Transport => &rt.transport_linker,
        World::Datagram => &rt.datagram_linker,
    };
    linker
        .instantiate_pre(&component)
        .and_then(typed)
        .map_err(|e| PluginError::Load {
            path: spec.name.to_string(),
            msg: format!("{e:#}"),
        })
}

/// What `gost plugin check` tells about a file.
#[derive(Debug)]
pub struct Inspection {
    /// The world whose export the file has, if any.
    pub world: Option<World>,
    /// The `gost:plugin` version its imports name.
    pub wit_version: Option<String>,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// Config settings the plugin needs to do all it may try, each with
    /// the import that says so.
    pub grants: Vec<(&'static str, String)>,
    /// `Ok` when the file would load as `world`, else why not.
    pub verdict: Result<(), String>,
}

/// Reads the component at `path` and tells what it is and whether it
/// would load, without running any of its code. An unreadable file or one
/// that is not a component is an error.
pub fn inspect(path: &Path) -> Result<Inspection, PluginError> {
    let err = |msg: String| PluginError::Load {
        path: path.display().to_string(),
        msg,
    };
    let rt = super::runtime()?;
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
    check_header(&bytes).map_err(err)?;
    let component = compile(&rt.engine, &bytes).map_err(|e| err(format!("{e:#}")))?;
    let ty = component.component_type();
    let imports: Vec<String> = ty.imports(&rt.engine).map(|(n, _)| n.to_string()).collect();
    let exports: Vec<String> = ty.exports(&rt.engine).map(|(n, _)| n.to_string()).collect();
    let wit_version = imports
        .iter()
        .find_map(|n| n.strip_prefix("gost:plugin/")?.split_once('@'))
        .map(|(_, v)| v.to_string());
    let world = World::ALL
        .into_iter()
        .find(|w| exports.iter().any(|e| e == w.export()));
    let mut grants = Vec::new();
    for (prefix, grant) in [("wasi:sockets/", "connect"), ("wasi:filesystem/", "dir")] {
        if let Some(i) = imports.iter().find(|i| i.starts_with(prefix)) {
            grants.push((grant, i.clone()));
        }
    }
    let verdict = match world {
        None => Err(format!(
            "exports none of {}, so it is no gost:plugin world",
            World::ALL
                .map(|w| format!("`{}` ({})", w.export(), w.name()))
                .join(", ")
        )),
        Some(w) => check_world(&rt.engine, &component, w).and_then(|()| {
            let linker = match w {
                World::Handler => &rt.handler_linker,
                World::Forwarder => &rt.forwarder_linker,
                World::Observer => &rt.observer_linker,
                World::Connector => &rt.connector_linker,
                World::Transport => &rt.transport_linker,
                World::Datagram => &rt.datagram_linker,
            };
            linker
                .instantiate_pre(&component)
                .map(|_| ())
                .map_err(|e| format!("{e:#}"))
        }),
    };
    Ok(Inspection {
        world,
        wit_version,
        imports,
        exports,
        grants,
        verdict,
    })
}

/// The file must be a component, not a core module or something else.
fn check_header(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err("not a WebAssembly file (no \\0asm header)".into());
    }
    match &bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => Err(
            "is a core WebAssembly module, not a component: build it for the \
             wasm32-wasip2 target (or wrap it with `wasm-tools component new`)"
                .into(),
        ),
        v => Err(format!("unknown WebAssembly version/layer {v:02x?}")),
    }
}

/// Imports of another `gost:plugin` version, or a missing export, each get
/// their own message instead of a linker error.
fn check_world(engine: &Engine, c: &Component, world: World) -> Result<(), String> {
    let ty = c.component_type();
    for (name, _) in ty.imports(engine) {
        if let Some(rest) = name.strip_prefix("gost:plugin/") {
            let version = rest.split_once('@').map(|(_, v)| v).unwrap_or("(none)");
            if compat_key(version) != compat_key(WIT_VERSION) {
                return Err(format!(
                    "built for gost:plugin@{version} (imports {name}); this host \
                     implements gost:plugin@{WIT_VERSION}: rebuild it with a matching SDK"
                ));
            }
        }
    }
    let exports: Vec<String> = ty
        .exports(engine)
        .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentFunc(_)))
        .map(|(n, _)| n.to_string())
        .collect();
    let want = world.export();
    if !exports.iter().any(|e| e == want) {
        let has = if exports.is_empty() {
            "no functions".to_string()
        } else {
            exports.join(", ")
        };
        return Err(format!(
            "does not export `{want}`, so it is not a gost:plugin {} plugin (it exports {has})",
            world.name()
        ));
    }
    Ok(())
}

/// Versions that link with each other, as wasmtime matches them: the same
/// major version, or for 0.x the same minor version.
fn compat_key(version: &str) -> String {
    let mut parts = version.split('.');
    match (parts.next(), parts.next()) {
        (Some("0"), Some(minor)) => format!("0.{minor}"),
        (Some(major), _) => major.to_string(),
        _ => version.to_string(),
    }
}

/// Compiles, or loads the compiled code cached by an earlier run. The key
/// covers the file's content and everything about the engine that affects
/// code (wasmtime version, settings, CPU features), so a stale entry is
/// never used.
fn compile(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
    let Some(dir) = cache_dir() else {
        return Component::new(engine, bytes);
    };
    let mut h = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let key = format!("{:x}-{:016x}", Sha256::digest(bytes), h.finish());
    let file = dir.join(format!("{key}.cwasm"));
    if file.is_file() {
        // SAFETY: the file was written by `Component::serialize` of this
        // engine configuration (the key says so) into the user's own cache
        // directory; wasmtime still checks its header and version.
        match unsafe { Component::deserialize_file(engine, &file) } {
            Ok(c) => return Ok(c),
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "ignoring bad cache entry")
            }
        }
    }
    let start = Instant::now();
    let c = Component::new(engine, bytes)?;
    tracing::debug!(took = ?start.elapsed(), "compiled wasm component");
    if let Err(e) = store_cache(&dir, &file, &c) {
        tracing::debug!(dir = %dir.display(), error = %e, "wasm cache not written");
    }
    Ok(c)
}

fn store_cache(dir: &Path, file: &Path, c: &Component) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let data = c.serialize().map_err(std::io::Error::other)?;
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, data)?;
    std::fs::rename(tmp, file)
}

/// `GOST_WASM_CACHE` (empty disables), else the user's cache directory.
fn cache_dir() -> Option<PathBuf> {
    match std::env::var_os("GOST_WASM_CACHE") {
        Some(v) if v.is_empty() => None,
        Some(v) => Some(PathBuf::from(v)),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("gost").join("wasm")),
    }
}

/// Component handles (conns, conn-infos, WASI streams and the like) one
/// instance may hold at once. A handshake needs a handful and an observer
/// a few streams, so this stays far above real use while bounding what a
/// plugin that leaks handles, or a host bug that leaks them per call, can
/// take: wasmtime's default would allow 100,000.
const MAX_HANDLES: usize = 1_000;

/// A store with the plugin's limits and capabilities: no files, env,
/// sockets or arguments, except the directory and the addresses the config
/// grants.
pub fn new_store(
    engine: &Engine,
    spec: &PluginSpec,
    id: Identity,
    net: Option<NetCtx>,
) -> Result<Store<PluginState>, PluginError> {
    let mut wasi = WasiCtxBuilder::new();
    wasi.allow_tcp(!spec.connect.is_empty())
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    if !spec.connect.is_empty() {
        let allowed = spec.connect.clone();
        wasi.socket_addr_check(move |addr, usage| {
            // Connecting binds implicitly to the wildcard address first.
            let ok = match usage {
                SocketAddrUse::TcpConnect => allowed.contains(&addr),
                SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
                _ => false,
            };
            Box::pin(async move { ok })
        });
    }
    if let Some(dir) = &spec.dir {
        wasi.preopened_dir(dir, "/data", FsPerms::ReadWrite)
            .map_err(|e| PluginError::Config {
                path: spec.name.to_string(),
                msg: format!("dir {}: {e}", dir.display()),
            })?;
    }
    let last_words = LastWords::default();
    wasi.stdout(PluginOutput::new(&id, Which::Stdout, last_words.clone()))
        .stderr(PluginOutput::new(&id, Which::Stderr, last_words.clone()));
    let limit = MemoryLimit {
        max: spec.memory,
        hit: false,
    };
    let mut store = Store::new(engine, PluginState::new(id, wasi.build(), limit, net));
    store.data_mut().last_words = last_words;
    store.limiter(|s| &mut s.limits);
    store.set_max_component_handles(MAX_HANDLES);
    let deadline = spec.deadline;
    // Checked every epoch tick while the guest runs; waiting in a host call
    // resets the clock (see `PluginState::resumed_at`).
    store.epoch_deadline_callback(move |ctx| {
        if ctx.data().resumed_at.elapsed() > deadline {
            Ok(wasmtime::UpdateDeadline::Interrupt)
        } else {
            Ok(wasmtime::UpdateDeadline::Yield(1))
        }
    });
    store.set_epoch_deadline(1);
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        assert!(check_header(b"hello world")
            .unwrap_err()
            .contains("not a WebAssembly"));
        let core = b"\0asm\x01\0\0\0";
        assert!(check_header(core)
            .unwrap_err()
            .contains("core WebAssembly module"));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
    }

    #[test]
    fn versions() {
        assert_eq!(compat_key("0.1.0"), compat_key("0.1.7"));
        assert_ne!(compat_key("0.1.0"), compat_key("0.2.0"));
        assert_eq!(compat_key("1.2.0"), compat_key("1.0.0"));
    }
}
