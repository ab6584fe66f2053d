//! An observer sink implemented by a plugin of the `observer` world. One
//! long-lived instance per observer takes the batches one at a time; after
//! a trap the next batch gets a fresh instance.

use wasmtime::Store;

use super::bindings::observer::{
    Event as WitEvent, EventData, Observer as ObserverWorld, ObserverPre, Stats, Status,
};
use super::load::{self, World};
use super::spec::PluginSpec;
use super::state::{Identity, PluginState};
use super::{runtime, PluginError};
use gost_service::observer::{Event, ObserveFuture, Observer, ObserverError};

pub struct WasmObserver {
    name: String,
    spec: PluginSpec,
    id: Identity,
    /// The module and its generation; replaced on reload.
    pre: super::reload::Versioned<ObserverPre<PluginState>>,
    instance: tokio::sync::Mutex<Option<Instance>>,
}

struct Instance {
    store: Store<PluginState>,
    world: ObserverWorld,
    generation: u64,
}

impl WasmObserver {
    /// Loads the plugin now, so a bad file stops start-up with its reason.
    pub fn new(name: &str, spec: PluginSpec) -> Result<Self, PluginError> {
        let rt = runtime()?;
        let pre = compile(&spec)?;
        // Opening the granted directory now reports a missing one at start.
        load::new_store(&rt.engine, &spec, identity(name, &spec), None)?;
        Ok(WasmObserver {
            name: name.into(),
            id: identity(name, &spec),
            spec,
            pre: super::reload::Versioned::new(pre),
            instance: tokio::sync::Mutex::new(None),
        })
    }

    fn err(&self, msg: String) -> ObserverError {
        ObserverError {
            observer: self.name.clone(),
            msg: format!("plugin {}: {msg}", self.spec.name),
        }
    }

    async fn call(&self, events: &[Event]) -> Result<(), ObserverError> {
        let mut slot = self.instance.lock().await;
        let (pre, generation) = self.pre.get();
        if slot.as_ref().is_none_or(|i| i.generation != generation) {
            let rt = runtime().map_err(|e| self.err(e.to_string()))?;
            let mut store = load::new_store(&rt.engine, &self.spec, self.id.clone(), None)
                .map_err(|e| self.err(e.to_string()))?;
            let world = pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| self.err(store.data().describe_failure(&e)))?;
            *slot = Some(Instance {
                store,
                world,
                generation,
            });
        }
        let Some(Instance {
            store, world: inst, ..
        }) = slot.as_mut()
        else {
            return Err(self.err("no instance".into()));
        };
        let batch: Vec<WitEvent> = events.iter().map(to_wit).collect();
        store.data_mut().resumed_at = std::time::Instant::now();
        store.set_epoch_deadline(1);
        match inst.call_observe(&mut *store, &batch).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(msg)) => Err(self.err(msg)),
            Err(e) => {
                let what = store.data().describe_failure(&e);
                *slot = None;
                Err(self.err(what))
            }
        }
    }
}

fn compile(spec: &PluginSpec) -> Result<ObserverPre<PluginState>, PluginError> {
    load::prepare(spec, World::Observer, ObserverPre::new)
}

impl super::reload::Reload for WasmObserver {
    fn plugin(&self) -> &str {
        &self.spec.name
    }

    fn reload(&self) -> Result<(), PluginError> {
        self.pre.replace(compile(&self.spec)?);
        Ok(())
    }
}

fn identity(name: &str, spec: &PluginSpec) -> Identity {
    Identity {
        plugin: spec.name.clone(),
        owner: format!("observer {name}").into(),
        config: spec.config.clone(),
    }
}

fn to_wit(e: &Event) -> WitEvent {
    let data = match (&e.status, &e.stats) {
        (Some(s), _) => EventData::Status(Status {
            state: s.state.clone(),
            msg: s.msg.clone(),
        }),
        (None, Some(s)) => EventData::Stats(Stats {
            total_conns: s.total_conns,
            current_conns: s.current_conns,
            input_bytes: s.input_bytes,
            output_bytes: s.output_bytes,
            total_errs: s.total_errs,
        }),
        (None, None) => EventData::Status(Status {
            state: String::new(),
            msg: String::new(),
        }),
    };
    WitEvent {
        kind: e.kind.clone(),
        service: e.service.clone(),
        client: e.client.clone(),
        data,
    }
}

impl Observer for WasmObserver {
    fn observe<'a>(&'a self, events: &'a [Event]) -> ObserveFuture<'a> {
        Box::pin(self.call(events))
    }
}
