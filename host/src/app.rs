//! The running program (GOST's loader + program): every service is bound
//! before any starts, then all run until shutdown; changes through the API
//! or a reload are applied live, and a change that cannot be applied
//! restores what ran before. What it runs comes from [`crate::factory`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::factory::{
    bind_listener, build_parts, build_service, build_sink, check, check_service, named_auther,
    unsupported, warn_unused_forwarder, Parts,
};
use gost_core::auth::Auther;
use gost_core::config::{AutherConfig, Config, ServiceConfig};
use gost_service::{HandlerSlot, Pipeline, Service, State, Status};
use gost_transport::listener::Listener;

pub use crate::factory::BuildError;

/// The running program: the effective config and the running services,
/// which the web API reads and changes.
pub struct App {
    /// Shared with a change being built off the async workers; replaced
    /// (or, for a one-service change, edited in place) when it commits.
    config: RwLock<Arc<Config>>,
    services: Mutex<HashMap<String, Running>>,
    /// Serializes changes: each one diffs against the config the previous
    /// one left.
    writer: tokio::sync::Mutex<()>,
    root: CancellationToken,
    tasks: TaskTracker,
    /// Where `POST /config` saves by default: the loaded config file.
    config_file: OnceLock<PathBuf>,
    reloader: OnceLock<Reloader>,
    /// Authers used outside services (`api.auther`, `metrics.auther`),
    /// each with the config it was built from.
    authers: Mutex<HashMap<String, BuiltAuther>>,
}

type BuiltAuther = (AutherConfig, Arc<dyn Auther>);

/// Reads the configuration again from where it came from (`-C` files and
/// flags), for `POST /config/reload`, SIGHUP and `-R`.
pub type Reloader = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// One running service as the app controls it.
struct Running {
    status: Arc<Status>,
    handler: Arc<HandlerSlot>,
    /// Where the service's observer reports, when it has one.
    sink: Option<Arc<gost_service::observer::SinkSlot>>,
    cancel: CancellationToken,
    listener_closed: CancellationToken,
}

/// Why a change was refused or failed; in every case nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The candidate config is inconsistent or unsupported.
    #[error("{0}")]
    Invalid(String),
    /// An object of that kind and name exists already.
    #[error("{0}")]
    Duplicate(String),
    /// No object of that kind and name exists.
    #[error("{0}")]
    NotFound(String),
    /// A service could not be started (e.g. its address is in use).
    #[error("{0}")]
    Failed(String),
}

/// Sections read once at start-up (the API and metrics servers, the main
/// log): a change would be silently ignored, so it is refused instead.
const STARTUP_SECTIONS: &[&str] = &["api", "metrics", "log"];

/// How long a stop may take to release a service's address before an
/// update gives up on it (preDown hooks run first).
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

impl App {
    /// The config as GOST's `GET /config` shows it: each service with its
    /// live status.
    pub fn config_with_status(&self) -> Config {
        let mut cfg = self.config();
        let services = lock(&self.services);
        for svc in &mut cfg.services {
            if let Some(r) = services.get(&svc.name) {
                svc.status = Some(r.status.snapshot());
            }
        }
        cfg
    }

    /// The config as configured, without live status.
    pub fn config(&self) -> Config {
        Config::clone(&self.config.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The config as it is now, without copying it.
    fn snapshot(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The state of every running service, for the metrics gauges.
    pub fn service_states(&self) -> Vec<State> {
        lock(&self.services)
            .values()
            .map(|r| r.status.state())
            .collect()
    }

    /// The named auther as currently configured: a change made through
    /// the API applies to the next request, as GOST's registry lookups do.
    pub fn auther(&self, name: &str) -> Option<Arc<dyn Auther>> {
        let cfg = self
            .snapshot()
            .authers
            .iter()
            .find(|a| a.name == name)
            .cloned()?;
        let mut cache = lock(&self.authers);
        if let Some((built_from, a)) = cache.get(name) {
            if *built_from == cfg {
                return Some(a.clone());
            }
        }
        // The config check built it once already; an auther that cannot
        // be built lets nobody in.
        let a = named_auther(&cfg)
            .map_err(|e| tracing::warn!(auther = %name, error = %e, "auther"))
            .ok()?;
        cache.insert(name.to_string(), (cfg, a.clone()));
        Some(a)
    }

    pub fn set_config_file(&self, path: PathBuf) {
        let _ = self.config_file.set(path);
    }

    pub fn config_file(&self) -> Option<&PathBuf> {
        self.config_file.get()
    }

    pub fn set_reloader(&self, reloader: Reloader) {
        let _ = self.reloader.set(reloader);
    }

    /// Reads the config again and applies it (GOST's reload).
    pub async fn reload(&self) -> Result<(), ApplyError> {
        let reloader = self
            .reloader
            .get()
            .ok_or_else(|| ApplyError::Invalid("no config source to reload from".into()))?;
        self.apply(reloader().map_err(ApplyError::Invalid)?).await
    }

    /// Applies the config `change` makes from the current one. Changes are
    /// serialized, so two requests editing the same object cannot lose one
    /// another's edit.
    pub async fn update(
        &self,
        change: impl FnOnce(&Config) -> Result<Config, ApplyError>,
    ) -> Result<(), ApplyError> {
        let _writer = self.writer.lock().await;
        let new = change(&self.config())?;
        self.apply_locked(new).await
    }

    /// Makes `new` the running config, touching only what changed (see
    /// [`Plan`]). Everything is checked, built and, where the address is
    /// free, bound before anything running changes, so a refused change
    /// leaves all as it was. Addresses held by services that stop are bound
    /// after they stop; if one of those fails, every stopped service is
    /// restarted on its previous config and the config stays the old one.
    pub async fn apply(&self, new: Config) -> Result<(), ApplyError> {
        let _writer = self.writer.lock().await;
        self.apply_locked(new).await
    }

    async fn apply_locked(&self, mut new: Config) -> Result<(), ApplyError> {
        for svc in &mut new.services {
            svc.status = None;
        }
        let old = self.snapshot();
        let new = Arc::new(new);
        let (plan, loggers) = off_workers({
            let (old, new) = (old.clone(), new.clone());
            move || prepare_config(&old, &new)
        })
        .await?;
        self.commit(plan, &new, &old, Some(loggers)).await?;
        drop(old);
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(())
    }

    /// Creates, replaces or deletes the service `name` (`next` is `None`
    /// to delete), at the cost of that one service: only it is checked
    /// (against the objects it refers to) and built, off the async
    /// workers, and the config is edited in place. `exists` refuses the
    /// change given whether the service exists now (a duplicate create, an
    /// update or delete of a missing service). A change that touches the
    /// per-service loggers, which are routed as a whole, takes the path of
    /// a whole-config change.
    pub async fn change_service(
        &self,
        name: &str,
        mut next: Option<ServiceConfig>,
        exists: impl FnOnce(bool) -> Result<(), ApplyError>,
    ) -> Result<(), ApplyError> {
        let _writer = self.writer.lock().await;
        let root = self.snapshot();
        let index = root.services.iter().position(|s| s.name == name);
        exists(index.is_some())?;
        if let Some(n) = &mut next {
            n.status = None;
        }
        let prev = index.map(|i| root.services[i].clone());
        let logs = |s: &Option<ServiceConfig>| {
            s.as_ref()
                .is_some_and(|s| !s.logger.is_empty() || !s.loggers.is_empty())
        };
        if logs(&prev) || logs(&next) {
            let mut new = Config::clone(&root);
            drop(root);
            match (index, next) {
                (Some(i), Some(n)) => new.services[i] = n,
                (Some(i), None) => drop(new.services.remove(i)),
                (None, Some(n)) => new.services.push(n),
                (None, None) => {}
            }
            return self.apply_locked(new).await;
        }
        if prev == next {
            // Nothing to rebuild, but an update is also how a user asks
            // for a replaced plugin file to load now.
            return off_workers(|| Ok(())).await;
        }
        let plan = off_workers({
            let (root, prev, next) = (root.clone(), prev.clone(), next.clone());
            move || Plan::for_service(&root, prev.as_ref(), next.as_ref())
        })
        .await?;
        self.commit(plan, &root, &root, None).await?;
        drop(root);
        let mut guard = self.config.write().unwrap_or_else(|p| p.into_inner());
        // Nothing else holds the config now (readers copy it under the
        // lock), so this edits it without a copy.
        let cfg = Arc::make_mut(&mut guard);
        match (index, next) {
            (Some(i), Some(n)) => cfg.services[i] = n,
            (Some(i), None) => drop(cfg.services.remove(i)),
            (None, Some(n)) => cfg.services.push(n),
            (None, None) => {}
        }
        Ok(())
    }

    /// Runs a planned change: stops what goes away, binds the addresses
    /// those held, then swaps in new pipelines and sinks and starts new
    /// services. `root` is the config the new objects come from; if a bind
    /// fails, the stopped services restart on `old`.
    async fn commit(
        &self,
        plan: Plan,
        root: &Config,
        old: &Config,
        loggers: Option<crate::logger::ServiceLoggers>,
    ) -> Result<(), ApplyError> {
        // Everything that could be built and bound is; what is left are the
        // addresses that services going away (or restarting) still hold.
        for name in &plan.stops {
            self.stop(name).await;
        }
        let mut ready = Vec::with_capacity(plan.starts.len());
        for start in plan.starts {
            let listener = match start.listener {
                Some(l) => l,
                None => match bind_listener(root, &start.cfg) {
                    Ok(l) => l,
                    Err(e) => {
                        // New listeners must go before the old services
                        // bind their addresses again.
                        drop(ready);
                        self.restore(old, &plan.stops);
                        tracing::error!(error = %e, "change not applied: every service runs on its previous config");
                        return Err(apply_err(e));
                    }
                },
            };
            ready.push(start.parts.into_service(&start.cfg.name, listener));
        }

        // Lines of restarted and new services go to their loggers from the
        // first one on.
        if let Some(loggers) = loggers {
            loggers.install();
        }
        {
            let services = lock(&self.services);
            for (name, pipeline) in plan.swaps {
                if let Some(r) = services.get(&name) {
                    tracing::info!(service = %name, "handler replaced for new connections");
                    r.handler.set(pipeline);
                }
            }
            for (name, sink) in plan.sinks {
                if let Some(slot) = services.get(&name).and_then(|r| r.sink.as_ref()) {
                    tracing::info!(service = %name, "observer replaced");
                    slot.set(sink);
                }
            }
        }
        for service in ready {
            self.spawn(service);
        }
        Ok(())
    }

    /// Brings back, on their previous config, the services a failed change
    /// stopped. They restart (new status), as after any stop.
    fn restore(&self, old: &Config, stopped: &[String]) {
        for cfg in old.services.iter().filter(|s| stopped.contains(&s.name)) {
            match build_service(old, cfg) {
                Ok(back) => {
                    tracing::warn!(service = %cfg.name, "restarted on its previous config");
                    self.spawn(back);
                }
                Err(e) => {
                    tracing::error!(service = %cfg.name, error = %e, "cannot restart on its previous config")
                }
            }
        }
    }

    fn spawn(&self, service: Service) {
        let cancel = self.root.child_token();
        let name = service.name.to_string();
        let running = Running {
            status: service.status.clone(),
            handler: service.handler_slot(),
            sink: service.observer_sink(),
            cancel: cancel.clone(),
            listener_closed: service.listener_closed(),
        };
        self.tasks.spawn(service.run(cancel));
        lock(&self.services).insert(name, running);
    }

    /// Stops a service and waits until its address is free; its live
    /// connections drain in the background as on shutdown.
    async fn stop(&self, name: &str) {
        let Some(r) = lock(&self.services).remove(name) else {
            return;
        };
        r.cancel.cancel();
        if tokio::time::timeout(STOP_TIMEOUT, r.listener_closed.cancelled())
            .await
            .is_err()
        {
            tracing::warn!(service = %name, "service did not release its address in time");
        }
    }
}

/// Runs the building of a change on the blocking pool, away from the
/// async workers that relay traffic: checking and building a service
/// (compiling a plugin, reading a file) may take a while.
async fn off_workers<T: Send + 'static>(
    build: impl FnOnce() -> Result<T, ApplyError> + Send + 'static,
) -> Result<T, ApplyError> {
    tokio::task::spawn_blocking(move || {
        // Plugins are loaded from files the change may not mention: an
        // API update of an object that names a plugin, or any other
        // change, picks up a replaced file now rather than at the next
        // poll.
        gost_plugin::reload::refresh();
        build()
    })
    .await
    .unwrap_or_else(|e| {
        Err(ApplyError::Failed(format!(
            "building the change failed: {e}"
        )))
    })
}

/// A whole-config change (reload, `POST /config`, any object but a
/// service) worked out: the config checked and every service it touches
/// built.
fn prepare_config(
    old: &Config,
    new: &Config,
) -> Result<(Plan, crate::logger::ServiceLoggers), ApplyError> {
    check(new).map_err(|errs| ApplyError::Invalid(errs.join("; ")))?;
    let (old_v, new_v) = (to_value(old), to_value(new));
    let fixed: Vec<&str> = STARTUP_SECTIONS
        .iter()
        .copied()
        .filter(|k| old_v.get(k) != new_v.get(k))
        .collect();
    if !fixed.is_empty() {
        return Err(ApplyError::Invalid(format!(
            "changing the {} section{} at run time is not supported yet: restart gost",
            fixed.join(", "),
            if fixed.len() > 1 { "s" } else { "" }
        )));
    }
    let plan = Plan::new(old, new, &old_v, &new_v)?;
    let loggers = crate::logger::prepare(new).map_err(|e| ApplyError::Invalid(e.to_string()))?;
    Ok((plan, loggers))
}

/// What a change does, worked out and built before anything running is
/// touched: a new service starts, a removed one stops, a service whose
/// address, listener or service metadata changed, or that gains or loses
/// its observer, restarts; a service whose observer object changed gets
/// the new sink, and one whose handler or any object it refers to (chain,
/// hop, auther, ...) changed gets a new pipeline, while its listener,
/// status and live connections carry on.
#[derive(Default)]
struct Plan {
    swaps: Vec<(String, Pipeline)>,
    /// Services whose observer object changed: its new sink.
    sinks: Vec<(String, Arc<dyn gost_service::observer::Observer>)>,
    starts: Vec<Start>,
    /// Running services that go away: removed or restarted.
    stops: Vec<String>,
}

/// A service to (re)start, bound while the change is planned unless a
/// service that stops holds its port; then it is bound after that stop.
struct Start {
    cfg: ServiceConfig,
    parts: Parts,
    listener: Option<Box<dyn Listener>>,
}

impl Plan {
    /// `old_v` and `new_v` are the two configs as JSON.
    fn new(
        old: &Config,
        new: &Config,
        old_v: &serde_json::Value,
        new_v: &serde_json::Value,
    ) -> Result<Plan, ApplyError> {
        let names: HashMap<&str, &ServiceConfig> =
            new.services.iter().map(|s| (s.name.as_str(), s)).collect();
        let before: HashMap<&str, &ServiceConfig> =
            old.services.iter().map(|s| (s.name.as_str(), s)).collect();
        let mut plan = Plan {
            stops: old
                .services
                .iter()
                .filter(|s| !names.contains_key(s.name.as_str()))
                .map(|s| s.name.clone())
                .collect(),
            ..Plan::default()
        };
        let mut to_start = Vec::new();
        for svc in &new.services {
            let prev = before.get(svc.name.as_str()).copied();
            if prev.is_none_or(|p| p != svc) {
                warn_unused_forwarder(svc);
            }
            let Some(prev) = prev else {
                to_start.push(svc);
                continue;
            };
            let changed = |a: &serde_json::Value, b: &serde_json::Value| {
                handler_dependencies(old_v, a) != handler_dependencies(new_v, b)
            };
            if plan.update(old, new, prev, svc, changed)? {
                to_start.push(svc);
            }
        }
        let held: Vec<u16> = plan
            .stops
            .iter()
            .filter_map(|n| before.get(n.as_str()))
            .filter_map(|s| port(&s.addr))
            .collect();
        for cfg in to_start {
            plan.start(new, cfg, &held)?;
        }
        Ok(plan)
    }

    /// The plan of a change to the one service `prev` (now) or `next`
    /// (after), in a config whose other objects stay as they are in
    /// `root`: only that service is checked and built.
    fn for_service(
        root: &Config,
        prev: Option<&ServiceConfig>,
        next: Option<&ServiceConfig>,
    ) -> Result<Plan, ApplyError> {
        let mut plan = Plan::default();
        let Some(next) = next else {
            plan.stops.extend(prev.map(|p| p.name.clone()));
            return Ok(plan);
        };
        check_service(root, next).map_err(|errs| ApplyError::Invalid(errs.join("; ")))?;
        warn_unused_forwarder(next);
        // The objects the service refers to are the same before and after,
        // so its handler changes only if the service's own config does.
        let restart = match prev {
            Some(prev) => plan.update(root, root, prev, next, |_, _| false)?,
            None => true,
        };
        if restart {
            let held: Vec<u16> = prev.and_then(|p| port(&p.addr)).into_iter().collect();
            plan.start(root, next, &held)?;
        }
        Ok(plan)
    }

    /// Plans the change of a running service from `prev` to `svc`; true
    /// when it restarts (it is then in `stops`, and the caller starts
    /// it). `deps_changed` tells whether the objects its handler uses
    /// changed, given both as JSON.
    fn update(
        &mut self,
        old: &Config,
        new: &Config,
        prev: &ServiceConfig,
        svc: &ServiceConfig,
        deps_changed: impl Fn(&serde_json::Value, &serde_json::Value) -> bool,
    ) -> Result<bool, ApplyError> {
        let (a, b) = (to_value(prev), to_value(svc));
        // A service that gains or loses its observer starts or stops
        // reporting, which only a restart does; a changed or renamed
        // observer is swapped in while the service runs.
        let reporting = prev.observer.is_empty() != svc.observer.is_empty();
        let restart = reporting
            || ["addr", "listener", "metadata"]
                .iter()
                .any(|k| a.get(k) != b.get(k));
        if restart {
            self.stops.push(svc.name.clone());
            return Ok(true);
        }
        if prev.observer != svc.observer || observer_changed(old, new, svc) {
            let sink = build_sink(new, svc).map_err(apply_err)?;
            self.sinks.push((svc.name.clone(), sink));
        }
        if without_observer(&a) != without_observer(&b) || deps_changed(&a, &b) {
            let parts = build_parts(new, svc).map_err(apply_err)?;
            self.swaps.push((svc.name.clone(), parts.pipeline));
        }
        Ok(false)
    }

    /// Builds a service to start and binds its address, unless a stopping
    /// service holds that port (`held`): then it is bound after the stop.
    fn start(
        &mut self,
        root: &Config,
        cfg: &ServiceConfig,
        held: &[u16],
    ) -> Result<(), ApplyError> {
        let parts = build_parts(root, cfg).map_err(apply_err)?;
        let listener = match port(&cfg.addr) {
            Some(p) if held.contains(&p) => None,
            _ => Some(bind_listener(root, cfg).map_err(apply_err)?),
        };
        self.starts.push(Start {
            cfg: cfg.clone(),
            parts,
            listener,
        });
        Ok(())
    }
}

/// The fixed port of a service address (`None` for port 0 or a bad
/// address, which bind reports).
fn port(addr: &str) -> Option<u16> {
    let (_, port) = gost_core::addr::split_host_port(addr).ok()?;
    port.parse().ok().filter(|p| *p != 0)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each update under this lock is a single insert or removal.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn to_value<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

/// Whether the observer object a service names differs between configs;
/// its sink is then replaced in the running service.
fn observer_changed(old: &Config, new: &Config, svc: &ServiceConfig) -> bool {
    if svc.observer.is_empty() {
        return false;
    }
    let find = |c: &Config| {
        c.observers
            .iter()
            .find(|o| o.name == svc.observer)
            .map(to_value)
    };
    find(old) != find(new)
}

fn apply_err(e: BuildError) -> ApplyError {
    match e {
        BuildError::Bind { .. } => ApplyError::Failed(e.to_string()),
        _ => ApplyError::Invalid(e.to_string()),
    }
}

/// The named objects a service may use, directly or through other objects
/// (a chain's hops, a hop's bypass, ...), with their config. Any string in
/// the service that equals an object's name counts as a reference: a false
/// match only costs an unneeded handler rebuild, and no kind of reference
/// (today's or one added later) can be missed.
fn dependencies(
    root: &serde_json::Value,
    service: &serde_json::Value,
) -> BTreeMap<(String, String), serde_json::Value> {
    let mut names = BTreeSet::new();
    collect_strings(service, &mut names);
    let mut deps = BTreeMap::new();
    let Some(sections) = root.as_object() else {
        return deps;
    };
    loop {
        let mut found = Vec::new();
        for (section, list) in sections.iter().filter(|(k, _)| *k != "services") {
            for obj in list.as_array().into_iter().flatten() {
                let Some(name) = obj.get("name").and_then(|n| n.as_str()) else {
                    continue;
                };
                let key = (section.clone(), name.to_string());
                if names.contains(name) && !deps.contains_key(&key) {
                    found.push((key, obj.clone()));
                }
            }
        }
        if found.is_empty() {
            return deps;
        }
        for (key, obj) in found {
            collect_strings(&obj, &mut names);
            deps.insert(key, obj);
        }
    }
}

/// A service's config but for the name of its observer, which the running
/// service can swap without a new pipeline.
fn without_observer(service: &serde_json::Value) -> serde_json::Value {
    let mut v = service.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("observer");
    }
    v
}

/// The objects the service's pipeline is built from: all of its
/// dependencies except the service's own observer, whose sink is swapped
/// on its own (unless the handler names it too).
fn handler_dependencies(
    root: &serde_json::Value,
    service: &serde_json::Value,
) -> BTreeMap<(String, String), serde_json::Value> {
    let mut deps = dependencies(root, service);
    let observer = service.get("observer").and_then(|o| o.as_str());
    let handler_observer = service
        .pointer("/handler/observer")
        .and_then(|o| o.as_str());
    if let Some(o) = observer.filter(|o| Some(*o) != handler_observer) {
        deps.remove(&("observers".to_string(), o.to_string()));
    }
    deps
}

fn collect_strings(v: &serde_json::Value, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::String(s) => {
            out.insert(s.clone());
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

/// Services built and bound, ready to run.
pub struct Built {
    pub app: Arc<App>,
    services: Vec<Service>,
}

/// Checks the config and binds every service. Nothing runs yet: a port in
/// use or an unsupported type stops start-up before any hook has run.
pub fn build(config: Config) -> Result<Built, Vec<BuildError>> {
    let mut errors: Vec<BuildError> = Vec::new();
    if let Err(errs) = config.validate() {
        errors.extend(errs.into_iter().map(|e| BuildError::Invalid(e.to_string())));
    }
    errors.extend(
        unsupported(&config)
            .into_iter()
            .map(BuildError::Unsupported),
    );
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut services = Vec::new();
    for cfg in &config.services {
        warn_unused_forwarder(cfg);
        match build_service(&config, cfg) {
            Ok(svc) => services.push(svc),
            Err(e) => errors.push(e),
        }
    }
    match crate::logger::prepare(&config) {
        Ok(loggers) if errors.is_empty() => loggers.install(),
        Ok(_) => {}
        Err(e) => errors.push(BuildError::Invalid(e.to_string())),
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let app = App {
        config: RwLock::new(Arc::new(config)),
        services: Mutex::default(),
        writer: tokio::sync::Mutex::new(()),
        root: CancellationToken::new(),
        tasks: TaskTracker::new(),
        config_file: OnceLock::new(),
        reloader: OnceLock::new(),
        authers: Mutex::default(),
    };
    Ok(Built {
        app: Arc::new(app),
        services,
    })
}

impl Built {
    /// Starts every service and runs until `shutdown` fires and all
    /// services, including those created later through the API, have
    /// drained.
    pub async fn run(self, shutdown: CancellationToken) {
        for svc in self.services {
            self.app.spawn(svc);
        }
        shutdown.cancelled().await;
        // No change may start a service once the stop has begun.
        let _writer = self.app.writer.lock().await;
        self.app.root.cancel();
        self.app.tasks.close();
        self.app.tasks.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_no_service_uses_are_checked_too() {
        let cfg: Config = serde_yaml::from_str(
            r#"
climiters: [{name: few, limits: ["$ -1"]}]
resolvers: [{name: dns, nameservers: [{addr: "tls://127.0.0.1:853"}]}]
bypasses: [{name: ok, matchers: [example.com]}]
"#,
        )
        .unwrap();
        let errs = check(&cfg).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].starts_with("resolver \"dns\""), "{errs:?}");
        assert!(
            errs[1].starts_with("climiter \"few\": limits[0]"),
            "{errs:?}"
        );
    }

    #[test]
    fn sniffing_only_on_handlers_that_sniff() {
        let cfg: Config = serde_json::from_value(json!({
            "services": [
                {"name": "h", "addr": ":0", "handler": {"type": "relay", "metadata": {"sniffing": true}}},
                {"name": "s", "addr": ":0", "handler": {"type": "socks5", "metadata": {"sniffing": true}}},
            ],
        }))
        .unwrap();
        assert_eq!(
            unsupported(&cfg),
            ["service \"h\": sniffing is supported by the tcp, forward, rtcp, runix, red, redir, redirect, http, socks4, socks4a, socks5, socks, auto handlers only"]
        );
    }

    #[test]
    fn handler_observer_only_where_gost_reports_per_client() {
        let cfg: Config = serde_json::from_value(json!({
            "services": [
                {"name": "t", "addr": ":0", "handler": {"type": "tcp", "observer": "o"}},
                {"name": "s", "addr": ":0", "handler": {"type": "socks5", "observer": "o"}},
            ],
            "observers": [{"name": "o", "plugin": {"type": "http", "addr": "127.0.0.1:1"}}],
        }))
        .unwrap();
        let errs = unsupported(&cfg);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains("service \"t\": handler.observer is not used by handler type 'tcp'"),
            "{errs:?}"
        );
        let relay: Config = serde_json::from_value(json!({
            "services": [{"name": "r", "addr": ":0", "handler": {"type": "relay"},
                          "forwarder": {"hop": "h"}}],
            "hops": [{"name": "h", "plugin": {"type": "wasm", "path": "x.wasm"}}],
        }))
        .unwrap();
        let errs = unsupported(&relay);
        assert!(
            errs.iter()
                .any(|e| e.contains("hop \"h\" with a plugin is not supported as the relay")),
            "{errs:?}"
        );
    }

    /// A service change must check and build that service alone: an
    /// existing service that a check of the whole config refuses (and that
    /// could not be built) is planted in the running config, and creating,
    /// updating and deleting another service still succeed, while a
    /// whole-config change trips over the planted one.
    #[tokio::test]
    async fn a_service_change_checks_and_builds_that_service_only() {
        let svc = |name: &str, target: &str| -> ServiceConfig {
            serde_json::from_value(json!({
                "name": name, "addr": "127.0.0.1:0", "handler": {"type": "tcp"},
                "forwarder": {"nodes": [{"name": "t", "addr": target}]},
            }))
            .unwrap()
        };
        let cfg = Config {
            services: vec![svc("a", "127.0.0.1:9")],
            ..Config::default()
        };
        let built = build(cfg).map_err(|e| format!("{e:?}")).unwrap();
        let app = built.app.clone();
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(built.run(shutdown.clone()));
        while lock(&app.services).is_empty() {
            tokio::task::yield_now().await;
        }
        let status_of_a = Arc::as_ptr(&lock(&app.services)["a"].status);
        let planted: ServiceConfig = serde_json::from_value(json!({
            "name": "planted", "addr": "127.0.0.1:0",
            "handler": {"type": "no-such-handler", "chain": "no-such-chain"},
        }))
        .unwrap();
        Arc::make_mut(&mut app.config.write().unwrap())
            .services
            .push(planted);
        let absent = |exists: bool| match exists {
            false => Ok(()),
            true => Err(ApplyError::Duplicate("exists".into())),
        };
        let present = |exists: bool| match exists {
            true => Ok(()),
            false => Err(ApplyError::NotFound("absent".into())),
        };

        app.change_service("c", Some(svc("c", "127.0.0.1:9")), absent)
            .await
            .unwrap();
        app.change_service("c", Some(svc("c", "127.0.0.1:10")), present)
            .await
            .unwrap();
        let names: Vec<String> = app.config().services.into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["a", "planted", "c"]);
        // The running service "a" was not restarted.
        assert_eq!(Arc::as_ptr(&lock(&app.services)["a"].status), status_of_a);
        assert!(lock(&app.services).contains_key("c"));
        app.change_service("c", None, present).await.unwrap();
        assert!(lock(&app.services).get("c").is_none());

        // The same config as a whole is refused, naming the planted service.
        let err = app.update(|c| Ok(c.clone())).await.unwrap_err().to_string();
        assert!(err.contains("service \"planted\""), "{err}");
        // Refusals of the changed service itself are those of a whole check.
        let bad: ServiceConfig = serde_json::from_value(json!({
            "name": "d", "addr": "127.0.0.1:0", "handler": {"type": "tcp", "chain": "nope"},
        }))
        .unwrap();
        let err = app
            .change_service("d", Some(bad), absent)
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(err, "service \"d\": handler.chain \"nope\" not found");
        shutdown.cancel();
        run.await.unwrap();
    }

    #[test]
    fn dependencies_follow_references_through_other_objects() {
        let root = json!({
            "services": [{"name": "s", "handler": {"auther": "users"}, "forwarder": {"hop": "h"}}],
            "hops": [{"name": "h", "nodes": [{"name": "n", "bypass": "b"}]}, {"name": "other"}],
            "bypasses": [{"name": "b", "matchers": ["x"]}],
            "authers": [{"name": "users"}],
        });
        let deps = dependencies(&root, &root["services"][0]);
        let keys: Vec<_> = deps.keys().map(|(k, n)| format!("{k}/{n}")).collect();
        assert_eq!(keys, ["authers/users", "bypasses/b", "hops/h"]);

        // A change two steps away is seen; one to an unused object is not.
        let mut changed = root.clone();
        changed["bypasses"][0]["matchers"] = json!(["y"]);
        assert_ne!(dependencies(&changed, &changed["services"][0]), deps);
        let mut unrelated = root.clone();
        unrelated["hops"][1]["nodes"] = json!([{"name": "z"}]);
        assert_eq!(dependencies(&unrelated, &unrelated["services"][0]), deps);
    }
}
