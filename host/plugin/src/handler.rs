//! The `wasm` handler: a protocol handler implemented by a plugin of the
//! `handler` world.
//!
//! Instances are kept warm: each serves one connection at a time and goes
//! back to an idle list when `handle` returns, because creating one per
//! connection costs more than the handshake itself. An instance that
//! trapped, or kept a connection after returning, is dropped instead.
//! `isolation: per-connection` uses a fresh instance every time.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use wasmtime::component::Resource;
use wasmtime::Store;

use super::bindings::handler::{Handler as HandlerWorld, HandlerPre, Outcome};
use super::conn::{ConnInfoRes, ConnRes};
use super::load::{self, World};
use super::spec::{Isolation, PluginSpec};
use super::state::{Identity, NetCtx, PluginState};
use super::{runtime, PluginError};
use gost_chain::relay::{self, RelayOptions};
use gost_core::metadata::{Metadata, MetadataError};
use gost_handler::stream::ClientStream;
use gost_handler::{ConnContext, HandleFuture, Handler, HandlerDeps, HandlerError};
use gost_transport::listener::Conn;

/// A compiled plugin ready to instantiate, with a generation number so
/// instances of a replaced module are not reused.
struct Module {
    pre: HandlerPre<PluginState>,
    generation: u64,
}

struct Warm {
    store: Store<PluginState>,
    bindings: HandlerWorld,
    generation: u64,
}

/// Handler metadata the host applies around the plugin.
#[derive(Debug, Clone, Copy)]
pub struct WasmHandlerOptions {
    /// `readTimeout` (default 15s, as GOST's handlers): the whole `handle`
    /// call, i.e. the handshake, must end within this, so a client that
    /// connects and stays silent does not hold an instance forever.
    pub read_timeout: Duration,
    /// `idleTimeout`: close a relay with no traffic for this long.
    pub idle_timeout: Option<Duration>,
}

pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(15);

impl Default for WasmHandlerOptions {
    fn default() -> Self {
        WasmHandlerOptions {
            read_timeout: DEFAULT_READ_TIMEOUT,
            idle_timeout: None,
        }
    }
}

impl WasmHandlerOptions {
    pub fn from_metadata(md: &Metadata) -> Result<Self, MetadataError> {
        Ok(WasmHandlerOptions {
            read_timeout: md
                .get_duration("readTimeout")?
                .filter(|t| !t.is_zero())
                .unwrap_or(DEFAULT_READ_TIMEOUT),
            idle_timeout: md.get_duration("idleTimeout")?.filter(|t| !t.is_zero()),
        })
    }
}

pub struct WasmHandler {
    spec: PluginSpec,
    opts: WasmHandlerOptions,
    id: Identity,
    net: NetCtx,
    module: RwLock<Arc<Module>>,
    idle: Mutex<Vec<Warm>>,
}

impl WasmHandler {
    /// Loads the plugin now, so a bad file stops start-up with its reason.
    pub fn new(
        spec: PluginSpec,
        service: &str,
        deps: HandlerDeps,
        opts: WasmHandlerOptions,
    ) -> Result<Self, PluginError> {
        let pre = compile(&spec)?;
        let id = Identity {
            plugin: spec.name.clone(),
            owner: service.into(),
            config: spec.config.clone(),
        };
        Ok(WasmHandler {
            id,
            net: NetCtx {
                router: deps.router,
                auther: deps.auther,
                client: std::net::Ipv4Addr::UNSPECIFIED.into(),
            },
            module: RwLock::new(Arc::new(Module { pre, generation: 0 })),
            idle: Mutex::new(Vec::new()),
            spec,
            opts,
        })
    }

    pub fn spec(&self) -> &PluginSpec {
        &self.spec
    }

    /// Compiles the file again and, if it loads, serves new connections
    /// with it; live ones finish on the module they started with. A file
    /// that does not load leaves the current module in place.
    pub fn reload(&self) -> Result<(), PluginError> {
        let pre = compile(&self.spec)?;
        let mut m = self.module.write().unwrap_or_else(|p| p.into_inner());
        *m = Arc::new(Module {
            pre,
            generation: m.generation + 1,
        });
        drop(m);
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(())
    }

    fn current(&self) -> Arc<Module> {
        self.module
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn acquire(&self) -> Result<Warm, HandlerError> {
        let module = self.current();
        if self.spec.isolation == Isolation::Pooled {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            while let Some(w) = idle.pop() {
                if w.generation == module.generation {
                    return Ok(w);
                }
            }
        }
        let rt = runtime().map_err(|e| HandlerError::Plugin(e.to_string()))?;
        let mut store = load::new_store(
            &rt.engine,
            &self.spec,
            self.id.clone(),
            Some(self.net.clone()),
        )
        .map_err(|e| HandlerError::Plugin(e.to_string()))?;
        let bindings = module
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| self.plugin_error(&store, &e))?;
        Ok(Warm {
            store,
            bindings,
            generation: module.generation,
        })
    }

    fn release(&self, w: Warm) {
        if self.spec.isolation != Isolation::Pooled || w.store.data().live_conns != 0 {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.spec.instances {
            idle.push(w);
        }
    }

    /// An error about this plugin's call, with the plugin named.
    fn named(&self, e: impl std::fmt::Display) -> HandlerError {
        HandlerError::Plugin(format!(
            "plugin {}: {}",
            self.spec.name,
            gost_core::escape::esc(e)
        ))
    }

    fn plugin_error(&self, store: &Store<PluginState>, e: &wasmtime::Error) -> HandlerError {
        let what = store.data().describe_failure(e);
        HandlerError::Plugin(format!(
            "plugin {}: {}",
            self.spec.name,
            gost_core::escape::esc(what)
        ))
    }

    async fn serve(&self, conn: Conn, ctx: ConnContext) -> Result<(), HandlerError> {
        let Conn::Stream(tcp) = conn else {
            return Err(HandlerError::Protocol(
                "the wasm handler serves TCP connections only".into(),
            ));
        };
        let mut w = self.acquire().await?;
        let data = w.store.data_mut();
        if let Some(net) = &mut data.net {
            net.client = ctx.peer.ip();
        }
        let info = data
            .lend_info(ConnInfoRes {
                service: ctx.service.clone(),
                client: ctx.peer,
                local: ctx.local,
            })
            .map_err(|e| self.named(e))?;
        let client = ClientStream::new(tcp, ctx.stats.clone());
        let client = data
            .push_conn(ConnRes::client(client, ctx.peer))
            .map_err(|e| self.named(e))?;
        w.store.data_mut().resumed_at = Instant::now();
        w.store.set_epoch_deadline(1);
        // A borrow made from the rep: lowering the owning handle as a
        // borrow makes wasmtime file it in the store's own resource table,
        // where it stays after the call, one entry per connection until the
        // store's handle limit refuses the next lend.
        let lent = Resource::new_borrow(info.rep());
        let call = w.bindings.call_handle(&mut w.store, lent, client);
        let outcome = match tokio::time::timeout(self.opts.read_timeout, call).await {
            Ok(Ok(o)) => {
                w.store
                    .data_mut()
                    .end_lend(info)
                    .map_err(|e| self.named(e))?;
                o
            }
            // The instance may be in any state after a trap: drop it.
            Ok(Err(e)) => return Err(self.plugin_error(&w.store, &e)),
            // Dropping the call unwinds the guest; the instance, stopped
            // mid-call, is dropped too, which frees its pool slot.
            Err(_) => {
                return Err(HandlerError::Protocol(format!(
                    "plugin {}: handshake not done within readTimeout ({:?}), closed",
                    self.spec.name, self.opts.read_timeout
                )))
            }
        };
        match outcome {
            Outcome::Done => {
                self.release(w);
                Ok(())
            }
            Outcome::Fail(msg) => {
                self.release(w);
                Err(self.named(msg))
            }
            Outcome::Relay(streams) => {
                let data = w.store.data_mut();
                let taken = data
                    .take_conn(streams.client)
                    .and_then(|c| Ok((c, data.take_conn(streams.upstream)?)));
                let (mut client, mut upstream) = match taken {
                    Ok(pair) => pair,
                    Err(e) => {
                        return Err(HandlerError::Plugin(format!(
                            "plugin {}: invalid relay outcome: {}",
                            self.spec.name,
                            gost_core::escape::esc(e)
                        )))
                    }
                };
                for (bytes, conn, field) in [
                    (&streams.to_client, &client, "to-client"),
                    (&streams.to_upstream, &upstream, "to-upstream"),
                ] {
                    if !bytes.is_empty() && conn.write_closed() {
                        return Err(self.named(format!(
                            "invalid relay outcome: {field} bytes for a conn whose \
                             write side the plugin shut down"
                        )));
                    }
                }
                // The handshake is over: the instance can serve the next
                // client while this one relays.
                self.release(w);
                // Client first: its reply is what the client waits for,
                // and the upstream may answer only once the client speaks.
                if !streams.to_client.is_empty() {
                    client.write_all(&streams.to_client).await?;
                }
                if !streams.to_upstream.is_empty() {
                    upstream.write_all(&streams.to_upstream).await?;
                }
                let (client, upstream) = (client.into_stream().await?, upstream.into_upstream());
                let opts = RelayOptions {
                    idle_timeout: self.opts.idle_timeout,
                };
                relay::relay(client, upstream, &ctx, &opts).await?;
                Ok(())
            }
        }
    }
}

fn compile(spec: &PluginSpec) -> Result<HandlerPre<PluginState>, PluginError> {
    load::prepare(spec, World::Handler, HandlerPre::new)
}

impl super::reload::Reload for WasmHandler {
    fn plugin(&self) -> &str {
        &self.spec.name
    }

    fn reload(&self) -> Result<(), PluginError> {
        WasmHandler::reload(self)
    }
}

impl Handler for WasmHandler {
    fn handle(&self, conn: Conn, ctx: ConnContext) -> HandleFuture<'_> {
        Box::pin(self.serve(conn, ctx))
    }
}

/// Builds the handler and watches its file for changes.
pub fn build(
    spec: PluginSpec,
    service: &str,
    deps: HandlerDeps,
    opts: WasmHandlerOptions,
) -> Result<Arc<WasmHandler>, PluginError> {
    let path = spec.path.clone();
    Ok(super::reload::watched(
        WasmHandler::new(spec, service, deps, opts)?,
        path,
    ))
}
