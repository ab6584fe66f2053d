//! Warm instances of one plugin, for the worlds that run a call per
//! connection or per datagram (connector, transport, datagram).
//!
//! An instance serves one call (a transport: one connection) at a time and
//! goes back to an idle list afterwards, because instantiating costs more
//! than most calls. One that trapped, ran past its time or kept a
//! connection is dropped instead; `isolation: per-connection` takes a
//! fresh one every time. A reload bumps the generation so instances of the
//! old module are not reused.

use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use wasmtime::component::InstancePre;
use wasmtime::Store;

use super::load::{self, World};
use super::spec::{Isolation, PluginSpec};
use super::state::{Identity, PluginState};
use super::{describe_error, runtime, PluginError};

/// A world's pre-linked component, as the bindings generate it.
pub trait WorldPre: Send + Sync + Sized + 'static {
    type Bindings: Send + Sync + 'static;
    const WORLD: World;
    fn typed(pre: InstancePre<PluginState>) -> wasmtime::Result<Self>;
    fn instantiate<'a>(
        &'a self,
        store: &'a mut Store<PluginState>,
    ) -> impl Future<Output = wasmtime::Result<Self::Bindings>> + Send + 'a;
}

macro_rules! world_pre {
    ($pre:ty, $bindings:ty, $world:expr) => {
        impl WorldPre for $pre {
            type Bindings = $bindings;
            const WORLD: World = $world;
            fn typed(pre: InstancePre<PluginState>) -> wasmtime::Result<Self> {
                <$pre>::new(pre)
            }
            fn instantiate<'a>(
                &'a self,
                store: &'a mut Store<PluginState>,
            ) -> impl Future<Output = wasmtime::Result<Self::Bindings>> + Send + 'a {
                self.instantiate_async(store)
            }
        }
    };
}

use super::bindings::{connector, datagram, transport};
world_pre!(
    connector::ConnectorPre<PluginState>,
    connector::Connector,
    World::Connector
);
world_pre!(
    transport::TransportPre<PluginState>,
    transport::Transport,
    World::Transport
);
world_pre!(
    datagram::DatagramPre<PluginState>,
    datagram::Datagram,
    World::Datagram
);

pub struct Warm<B> {
    pub store: Store<PluginState>,
    pub bindings: B,
    generation: u64,
}

impl<B> Warm<B> {
    /// Starts the compute deadline for the next call.
    pub fn arm(&mut self) {
        self.store.data_mut().resumed_at = Instant::now();
        self.store.set_epoch_deadline(1);
    }
}

pub struct Pool<P: WorldPre> {
    spec: PluginSpec,
    id: Identity,
    module: RwLock<Arc<(P, u64)>>,
    idle: Mutex<Vec<Warm<P::Bindings>>>,
}

impl<P: WorldPre> Pool<P> {
    /// Loads the plugin now, so a bad file stops start-up with its reason.
    /// `owner` names what uses it in the plugin's log lines.
    pub fn new(spec: PluginSpec, owner: &str) -> Result<Self, PluginError> {
        let pre = load::prepare(&spec, P::WORLD, P::typed)?;
        Ok(Pool {
            id: Identity {
                plugin: spec.name.clone(),
                owner: owner.into(),
                config: spec.config.clone(),
            },
            module: RwLock::new(Arc::new((pre, 0))),
            idle: Mutex::new(Vec::new()),
            spec,
        })
    }

    /// Loads the plugin and watches its file for changes.
    pub fn watched(spec: PluginSpec, owner: &str) -> Result<Arc<Self>, PluginError> {
        let path = spec.path.clone();
        Ok(super::reload::watched(Pool::new(spec, owner)?, path))
    }

    pub fn spec(&self) -> &PluginSpec {
        &self.spec
    }

    /// An idle instance of the current module, or a new one.
    pub async fn acquire(&self) -> Result<Warm<P::Bindings>, String> {
        let module = self
            .module
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if self.spec.isolation == Isolation::Pooled {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            while let Some(w) = idle.pop() {
                if w.generation == module.1 {
                    return Ok(w);
                }
            }
        }
        let rt = runtime().map_err(|e| self.named(e))?;
        let mut store = load::new_store(&rt.engine, &self.spec, self.id.clone(), None)
            .map_err(|e| self.named(e))?;
        let bindings = module
            .0
            .instantiate(&mut store)
            .await
            .map_err(|e| self.failure(&store, &e))?;
        Ok(Warm {
            store,
            bindings,
            generation: module.1,
        })
    }

    /// Keeps an instance whose call ended normally for the next one.
    pub fn release(&self, w: Warm<P::Bindings>) {
        if self.spec.isolation != Isolation::Pooled || w.store.data().live_conns != 0 {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.spec.instances {
            idle.push(w);
        }
    }

    /// A message about this plugin, with the plugin named and the text
    /// escaped (it may come from the plugin or from the peer).
    pub fn named(&self, e: impl std::fmt::Display) -> String {
        format!(
            "plugin {}: {}",
            self.spec.name,
            gost_core::escape::esc(e.to_string())
        )
    }

    /// A failed call in words: a trap, the compute deadline, or the
    /// memory limit.
    pub fn failure(&self, store: &Store<PluginState>, e: &wasmtime::Error) -> String {
        if store.data().limits.hit {
            self.named(format!("out of memory (limit {} bytes)", self.spec.memory))
        } else {
            self.named(describe_error(e))
        }
    }
}

impl<P: WorldPre> super::reload::Reload for Pool<P> {
    fn plugin(&self) -> &str {
        &self.spec.name
    }

    fn reload(&self) -> Result<(), PluginError> {
        let pre = load::prepare(&self.spec, P::WORLD, P::typed)?;
        let mut m = self.module.write().unwrap_or_else(|p| p.into_inner());
        *m = Arc::new((pre, m.1 + 1));
        drop(m);
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(())
    }
}
