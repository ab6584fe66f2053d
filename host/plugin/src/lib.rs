//! WebAssembly plugins: handlers, forwarders and observers as components
//! that speak the `gost:plugin` WIT contract in `wit/`.
//!
//! One wasmtime [`Engine`] serves every plugin. Each module is compiled once
//! (and cached on disk, see [`load`]); instances are created from an
//! `InstancePre` and run with async calls, so a plugin waiting on a socket
//! parks only its connection's task. Every call runs under a deadline
//! (epoch interruption) and a memory limit, and a trap ends that call only:
//! the instance is thrown away and the service goes on.

pub mod bindings;
pub mod conn;
pub mod connector;
pub mod datagram;
pub mod forwarder;
pub mod handler;
pub mod load;
pub mod observer;
pub mod output;
pub mod pool;
pub mod reload;
pub mod sniff;
pub mod spec;
pub mod state;
pub mod transport;

use std::sync::OnceLock;
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use spec::{Isolation, PluginSpec};
use state::PluginState;

/// The WIT package version this host implements; plugins built against
/// another version are refused with both versions named.
pub const WIT_VERSION: &str = "0.3.0";

/// How often the engine's epoch advances: the granularity of deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Instances the pooling allocator can hold at once, across all plugins.
/// Each connection in a wasm handshake holds one.
const POOL_INSTANCES: u32 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin {path}: {msg}")]
    Load { path: String, msg: String },
    #[error("plugin {path}: {msg}")]
    Config { path: String, msg: String },
    #[error("wasm engine: {0}")]
    Engine(String),
}

/// The engine and one linker per world, shared by every plugin.
pub struct Runtime {
    pub engine: Engine,
    pub handler_linker: Linker<PluginState>,
    pub forwarder_linker: Linker<PluginState>,
    pub observer_linker: Linker<PluginState>,
    pub connector_linker: Linker<PluginState>,
    pub transport_linker: Linker<PluginState>,
    pub datagram_linker: Linker<PluginState>,
}

/// The process-wide runtime, created on first use so a config without
/// plugins never starts an engine.
pub fn runtime() -> Result<&'static Runtime, PluginError> {
    static RT: OnceLock<Result<Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| Runtime::new().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| PluginError::Engine(e.clone()))
}

impl Runtime {
    fn new() -> wasmtime::Result<Runtime> {
        let engine = match Engine::new(&engine_config(true)) {
            Ok(e) => e,
            Err(e) => {
                // Some sandboxes refuse the pool's address-space reservation;
                // plugins still work with on-demand allocation, only slower
                // to instantiate.
                tracing::warn!(error = %e, "wasm pooling allocator unavailable, using on-demand allocation");
                Engine::new(&engine_config(false))?
            }
        };
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || loop {
                std::thread::sleep(EPOCH_TICK);
                match ticker.upgrade() {
                    Some(e) => e.increment_epoch(),
                    None => return,
                }
            })
            .map_err(|e| wasmtime::Error::msg(format!("epoch thread: {e}")))?;

        let mut handler_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut handler_linker)?;
        bindings::handler::Handler::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut handler_linker,
            |s| s,
        )?;
        let mut forwarder_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut forwarder_linker)?;
        bindings::forwarder::Forwarder::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut forwarder_linker,
            |s| s,
        )?;
        let mut observer_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut observer_linker)?;
        bindings::observer::Observer::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut observer_linker,
            |s| s,
        )?;
        macro_rules! linker {
            ($world:ident, $ty:ident) => {{
                let mut l = Linker::new(&engine);
                wasmtime_wasi::p2::add_to_linker_async(&mut l)?;
                bindings::$world::$ty::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
                    &mut l,
                    |s| s,
                )?;
                l
            }};
        }
        Ok(Runtime {
            connector_linker: linker!(connector, Connector),
            transport_linker: linker!(transport, Transport),
            datagram_linker: linker!(datagram, Datagram),
            engine,
            handler_linker,
            forwarder_linker,
            observer_linker,
        })
    }
}

fn engine_config(pooling: bool) -> Config {
    let mut c = Config::new();
    c.wasm_component_model(true);
    c.epoch_interruption(true);
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES)
            .total_core_instances(POOL_INSTANCES * 4)
            .total_memories(POOL_INSTANCES)
            .total_tables(POOL_INSTANCES * 4)
            .total_stacks(POOL_INSTANCES)
            .max_memory_size(spec::MAX_MEMORY);
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    c
}

/// The registry's plugin kinds: the `wasm` connector, listener and dialer.
pub fn register(
    transports: &mut gost_transport::kinds::Transports,
    connectors: &mut gost_chain::connector::Connectors,
) {
    use gost_transport::kinds::{DialerKind, ListenerKind, Socket};
    transports.add_listener(ListenerKind {
        names: &["wasm"],
        socket: Socket::Tcp,
        upgrade: Some(|cfg, _| {
            let pool = transport::pool(cfg.plugin.as_deref(), "listener")?;
            Ok(std::sync::Arc::new(transport::WasmUpgrade(pool)))
        }),
        uses_tls: false,
        summary: "(gost-rs) a plugin of the transport world wraps each connection's bytes",
    });
    transports.add_dialer(DialerKind {
        names: &["wasm"],
        build: |cfg, _| {
            let pool = transport::pool(cfg.plugin.as_deref(), "dialer")?;
            Ok(Some(std::sync::Arc::new(transport::WasmDialer(pool))))
        },
        summary: "(gost-rs) a plugin of the transport world wraps the node connection's bytes",
    });
    connectors.add(gost_chain::connector::ConnectorKind {
        names: &["wasm"],
        udp: false,
        build: connector::build,
        summary: "(gost-rs) a plugin of the connector world: its handshake, then the native relay",
    });
}

/// A plugin failure in words for the log: traps, deadlines and memory
/// exhaustion each say so.
pub fn describe_error(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => "deadline exceeded".to_string(),
        Some(t) => format!("trapped: {t}"),
        None => format!("{e:#}"),
    }
}
