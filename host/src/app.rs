//! Builds the running program from a config (GOST's loader + program):
//! every service is bound before any starts, then all run until shutdown.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Auther, AutherGroup, StaticAuther, TableAuther};
use crate::chain::selector::{Selector, Strategy};
use crate::chain::{Hop, Node};
use crate::config::{AutherConfig, Config, ForwardNodeConfig, Kind, SelectorConfig, ServiceConfig};
use crate::handler::auto::AutoHandler;
use crate::handler::forward::{ForwardHandler, ForwardOptions};
use crate::handler::http::{HttpHandler, HttpOptions};
use crate::handler::relay::{RelayHandler, RelayHandlerOptions};
use crate::handler::socks::{Socks4Handler, Socks4Options, Socks5Handler, Socks5Options};
use crate::handler::{Handler, HandlerDeps};
use crate::listener::tcp::TcpListen;
use crate::listener::udp::{UdpListen, UdpOptions};
use crate::listener::{resolve_bind_addr, Listener};
use crate::metadata::MetadataError;
use crate::router::Router;
use crate::service::{HandlerSlot, Hooks, Pipeline, Service, State, Status};

/// Listener types this build can run; anything else GOST knows is refused
/// by name instead of being ignored.
pub const LISTENERS: &[&str] = &["tcp", "udp"];
/// Handler types this build can run.
pub const HANDLERS: &[&str] = &[
    "tcp", "udp", "forward", "http", "auto", "socks4", "socks4a", "socks5", "socks", "relay",
    "wasm",
];

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("service \"{service}\": {msg}")]
    Service { service: String, msg: String },
    #[error("service \"{service}\": cannot listen on {addr}: {source}")]
    Bind {
        service: String,
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Invalid(String),
}

fn svc_err(cfg: &ServiceConfig, msg: impl Into<String>) -> BuildError {
    BuildError::Service {
        service: cfg.name.clone(),
        msg: msg.into(),
    }
}

fn md_err(cfg: &ServiceConfig, what: &str, e: MetadataError) -> BuildError {
    svc_err(cfg, format!("{what}: {e}"))
}

/// The running program: the effective config and the running services,
/// which the web API reads and changes.
pub struct App {
    config: RwLock<Config>,
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
    sink: Option<Arc<crate::observer::SinkSlot>>,
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
            .config
            .read()
            .unwrap_or_else(|p| p.into_inner())
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
        let a = named_auther(&cfg);
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
        check(&new).map_err(|errs| ApplyError::Invalid(errs.join("; ")))?;
        let old = self.config();
        let (old_v, new_v) = (to_value(&old), to_value(&new));
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
        let plan = Plan::new(&old, &new, &old_v, &new_v)?;
        let loggers =
            crate::logger::prepare(&new).map_err(|e| ApplyError::Invalid(e.to_string()))?;

        // Everything that could be built and bound is; what is left are the
        // addresses that services going away (or restarting) still hold.
        for name in &plan.stops {
            self.stop(name).await;
        }
        let mut ready = Vec::with_capacity(plan.starts.len());
        for start in plan.starts {
            let listener = match start.listener {
                Some(l) => l,
                None => match bind_listener(start.cfg) {
                    Ok(l) => l,
                    Err(e) => {
                        // New listeners must go before the old services
                        // bind their addresses again.
                        drop(ready);
                        self.restore(&old, &plan.stops);
                        tracing::error!(error = %e, "change not applied: every service runs on its previous config");
                        return Err(apply_err(e));
                    }
                },
            };
            ready.push(start.parts.into_service(&start.cfg.name, listener));
        }

        // Lines of restarted and new services go to their loggers from the
        // first one on.
        loggers.install();
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
        // Plugins are loaded from files the change may not mention: an API
        // update of an object that names a plugin, or any other change,
        // picks up a replaced file now rather than at the next poll.
        // Compiling may take a while: off the async workers.
        let _ = tokio::task::spawn_blocking(crate::plugin::reload::refresh).await;
        for service in ready {
            self.spawn(service);
        }
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = new;
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

/// What a change does, worked out and built before anything running is
/// touched: a new service starts, a removed one stops, a service whose
/// address, listener or service metadata changed, or that gains or loses
/// its observer, restarts; a service whose observer object changed gets
/// the new sink, and one whose handler or any object it refers to (chain,
/// hop, auther, ...) changed gets a new pipeline, while its listener,
/// status and live connections carry on.
struct Plan<'a> {
    swaps: Vec<(String, Pipeline)>,
    /// Services whose observer object changed: its new sink.
    sinks: Vec<(String, Arc<dyn crate::observer::Observer>)>,
    starts: Vec<Start<'a>>,
    /// Running services that go away: removed or restarted.
    stops: Vec<String>,
}

/// A service to (re)start, bound while the change is planned unless a
/// service that stops holds its port; then it is bound after that stop.
struct Start<'a> {
    cfg: &'a ServiceConfig,
    parts: Parts,
    listener: Option<Box<dyn Listener>>,
}

impl<'a> Plan<'a> {
    /// `old_v` and `new_v` are the two configs as JSON.
    fn new(
        old: &Config,
        new: &'a Config,
        old_v: &serde_json::Value,
        new_v: &serde_json::Value,
    ) -> Result<Plan<'a>, ApplyError> {
        let mut plan = Plan {
            swaps: Vec::new(),
            sinks: Vec::new(),
            starts: Vec::new(),
            stops: old
                .services
                .iter()
                .filter(|s| !new.services.iter().any(|n| n.name == s.name))
                .map(|s| s.name.clone())
                .collect(),
        };
        let mut to_start = Vec::new();
        for svc in &new.services {
            let prev = old.services.iter().find(|s| s.name == svc.name);
            if prev.is_none_or(|p| p != svc) {
                warn_unused_forwarder(svc);
            }
            let Some(prev) = prev else {
                to_start.push(svc);
                continue;
            };
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
                plan.stops.push(svc.name.clone());
                to_start.push(svc);
                continue;
            }
            if prev.observer != svc.observer || observer_changed(old, new, svc) {
                let sink = build_sink(new, svc).map_err(apply_err)?;
                plan.sinks.push((svc.name.clone(), sink));
            }
            if without_observer(&a) != without_observer(&b)
                || handler_dependencies(old_v, &a) != handler_dependencies(new_v, &b)
            {
                let parts = build_parts(new, svc).map_err(apply_err)?;
                plan.swaps.push((svc.name.clone(), parts.pipeline));
            }
        }
        let held: Vec<u16> = old
            .services
            .iter()
            .filter(|s| plan.stops.contains(&s.name))
            .filter_map(|s| port(&s.addr))
            .collect();
        for cfg in to_start {
            let parts = build_parts(new, cfg).map_err(apply_err)?;
            let listener = match port(&cfg.addr) {
                Some(p) if held.contains(&p) => None,
                _ => Some(bind_listener(cfg).map_err(apply_err)?),
            };
            plan.starts.push(Start {
                cfg,
                parts,
                listener,
            });
        }
        Ok(plan)
    }
}

/// The fixed port of a service address (`None` for port 0 or a bad
/// address, which bind reports).
fn port(addr: &str) -> Option<u16> {
    let (_, port) = crate::listener::split_host_port(addr).ok()?;
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

/// Everything that makes a config unusable here: GOST-level mistakes
/// (`Config::validate`) and features this build refuses.
pub fn check(config: &Config) -> Result<(), Vec<String>> {
    let mut errors: Vec<String> = Vec::new();
    if let Err(errs) = config.validate() {
        errors.extend(errs.into_iter().map(|e| e.to_string()));
    }
    errors.extend(unsupported(config));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
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
        config: RwLock::new(config),
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

/// What this build cannot run yet, each named as the config names it.
fn unsupported(cfg: &Config) -> Vec<String> {
    let mut out = cfg.unsupported(|kind, ty| match kind {
        Kind::Listener => LISTENERS.contains(&ty),
        Kind::Handler => HANDLERS.contains(&ty),
        Kind::Connector => crate::connector::CONNECTORS.contains(&ty),
        Kind::Dialer => crate::dialer::DIALERS.contains(&ty),
        // Where a wasm plugin is not wired in yet, its owner is refused
        // below or as an unsupported section.
        Kind::Plugin => matches!(ty, "wasm" | "http"),
    });
    for h in &cfg.hops {
        // Other types than these two are refused as plugin types above.
        if let Some(p) = h.plugin.as_ref().filter(|p| p.r#type == "http") {
            out.push(format!(
                "hop \"{}\": plugin type '{}' is not supported yet",
                h.name, p.r#type
            ));
        }
    }
    for svc in &cfg.services {
        let name = &svc.name;
        if let Some(h) = &svc.handler {
            if h.plugin.is_some() && h.r#type != "wasm" {
                out.push(format!(
                    "service \"{name}\": handler.plugin is only used by handler type wasm, not '{}'",
                    h.r#type
                ));
            }
            let plugin_hop = svc
                .forwarder
                .as_ref()
                .and_then(|f| cfg.hops.iter().find(|hop| hop.name == f.hop))
                .filter(|hop| hop.plugin.is_some());
            if let (Some(hop), "relay") = (plugin_hop, h.r#type.as_str()) {
                out.push(format!(
                    "service \"{name}\": hop \"{}\" with a plugin is not supported as the relay handler's forwarder yet (tcp, udp and forward handlers use it)",
                    hop.name
                ));
            }
            if !h.observer.is_empty()
                && !crate::observer::clients::HANDLERS.contains(&h.r#type.as_str())
            {
                out.push(format!(
                    "service \"{name}\": handler.observer is not used by handler type '{}' (only by {})",
                    h.r#type,
                    crate::observer::clients::HANDLERS.join(", ")
                ));
            }
            for (what, set) in [("limiter", !h.limiter.is_empty()), ("tls", h.tls.is_some())] {
                if set {
                    out.push(format!(
                        "service \"{name}\": handler.{what} is not supported yet"
                    ));
                }
            }
        }
        if let Some(l) = &svc.listener {
            if !l.auther.is_empty() || !l.authers.is_empty() || l.auth.is_some() || l.tls.is_some()
            {
                out.push(format!(
                    "service \"{name}\": listener auth/tls is not supported yet"
                ));
            }
        }
        for (what, set) in [("recorders", !svc.recorders.is_empty())] {
            if set {
                out.push(format!("service \"{name}\": {what} is not supported yet"));
            }
        }
    }
    out.extend(crate::router::unsupported(cfg));
    out.extend(unbuildable_objects(cfg));
    for section in cfg.non_empty_sections() {
        if !matches!(
            section,
            "services"
                | "hops"
                | "chains"
                | "api"
                | "metrics"
                | "log"
                | "loggers"
                | "authers"
                | "bypasses"
                | "admissions"
                | "hosts"
                | "resolvers"
                | "climiters"
                | "rlimiters"
                | "limiters"
                | "observers"
        ) {
            out.push(format!("config section '{section}' is not supported yet"));
        }
    }
    for a in &cfg.authers {
        for (what, set) in [
            ("redis", a.redis.is_some()),
            ("http", a.http.is_some()),
            ("plugin", a.plugin.is_some()),
        ] {
            if set {
                out.push(format!(
                    "auther \"{}\": {what} loader is not supported yet",
                    a.name
                ));
            }
        }
    }
    out
}

/// Named objects are built whether or not a service uses them yet, so one
/// that could never run (created through the API for later use, or left in
/// a file) is refused now rather than when a service first names it.
fn unbuildable_objects(cfg: &Config) -> Vec<String> {
    use crate::limiter::{conn::ConnLimiter, rate::RateLimiter, traffic::TrafficLimiter};
    let mut out = Vec::new();
    let mut note = |what: &str, name: &str, r: Result<(), String>| {
        if let Err(e) = r {
            // Most errors name their object already.
            if e.contains(&format!("\"{name}\"")) {
                out.push(e);
            } else {
                out.push(format!("{what} \"{name}\": {e}"));
            }
        }
    };
    let text = |e: &dyn std::fmt::Display| e.to_string();
    for b in &cfg.bypasses {
        let r = crate::bypass::Bypass::from_config(b);
        note("bypass", &b.name, r.map(drop).map_err(|e| text(&e)));
    }
    for a in &cfg.admissions {
        let r = crate::admission::Admission::from_config(a);
        note("admission", &a.name, r.map(drop).map_err(|e| text(&e)));
    }
    for h in &cfg.hosts {
        let r = crate::hosts::find(cfg, &h.name);
        note("hosts", &h.name, r.map(drop).map_err(|e| text(&e)));
    }
    for r in &cfg.resolvers {
        let res = crate::resolver::find(cfg, &r.name);
        note("resolver", &r.name, res.map(drop).map_err(|e| text(&e)));
    }
    for l in &cfg.limiters {
        let r = TrafficLimiter::from_config(l);
        note("limiter", &l.name, r.map(drop).map_err(|e| text(&e)));
    }
    for l in &cfg.climiters {
        let r = ConnLimiter::from_config(l);
        note("climiter", &l.name, r.map(drop).map_err(|e| text(&e)));
    }
    for l in &cfg.rlimiters {
        let r = RateLimiter::from_config(l);
        note("rlimiter", &l.name, r.map(drop).map_err(|e| text(&e)));
    }
    out
}

/// What a service is made of besides its listener and status: all that a
/// change to its handler or the objects it uses rebuilds.
struct Parts {
    pipeline: Pipeline,
    hooks: Hooks,
    enable_stats: bool,
    /// Reports to the service's `observer`; it belongs to the running
    /// service, so a change to it restarts the service (see `apply`).
    observer: Option<crate::observer::reporter::Reporter>,
}

impl Parts {
    fn into_service(self, name: &str, listener: Box<dyn Listener>) -> Service {
        let status = Arc::new(Status::new(name, self.enable_stats));
        let service = Service::new(name, status, listener, self.pipeline, self.hooks);
        match self.observer {
            Some(r) => service.with_observer(r),
            None => service,
        }
    }
}

fn build_service(root: &Config, cfg: &ServiceConfig) -> Result<Service, BuildError> {
    let parts = build_parts(root, cfg)?;
    let listener = bind_listener(cfg)?;
    Ok(parts.into_service(&cfg.name, listener))
}

/// The reporter of the observer a service names.
fn build_observer(
    root: &Config,
    cfg: &ServiceConfig,
) -> Result<Option<crate::observer::reporter::Reporter>, BuildError> {
    if cfg.observer.is_empty() {
        return Ok(None);
    }
    crate::observer::reporter::Reporter::from_metadata(build_sink(root, cfg)?, &cfg.metadata)
        .map(Some)
        .map_err(|e| md_err(cfg, "metadata", e))
}

/// The sink of the observer a service names.
fn build_sink(
    root: &Config,
    cfg: &ServiceConfig,
) -> Result<Arc<dyn crate::observer::Observer>, BuildError> {
    named_sink(root, cfg, &cfg.observer)
}

/// A sink from the `observers` section.
fn named_sink(
    root: &Config,
    cfg: &ServiceConfig,
    name: &str,
) -> Result<Arc<dyn crate::observer::Observer>, BuildError> {
    let o = root
        .observers
        .iter()
        .find(|o| o.name == name)
        .ok_or_else(|| svc_err(cfg, format!("observer \"{name}\" not found")))?;
    let err = |msg: String| BuildError::Invalid(format!("observer \"{}\": {msg}", o.name));
    let p = o
        .plugin
        .as_ref()
        .ok_or_else(|| err("needs a plugin (type http or wasm)".into()))?;
    let observer: Arc<dyn crate::observer::Observer> = match p.r#type.as_str() {
        "http" => Arc::new(
            crate::observer::http::HttpObserver::new(&o.name, &p.addr, p.timeout.0)
                .map_err(BuildError::Invalid)?,
        ),
        "wasm" => {
            let spec = crate::plugin::PluginSpec::from_config(p).map_err(|e| err(e.to_string()))?;
            let path = spec.path.clone();
            let w = crate::plugin::observer::WasmObserver::new(&o.name, spec)
                .map_err(|e| err(e.to_string()))?;
            crate::plugin::reload::watched(w, path)
        }
        other => return Err(err(format!("plugin type '{other}' is not supported"))),
    };
    Ok(observer)
}

/// GOST hands a forwarder only to handlers that forward (tcp, udp, relay,
/// ...) and ignores it elsewhere; say so, once per start or change of the
/// service, instead of ignoring it silently.
fn warn_unused_forwarder(cfg: &ServiceConfig) {
    let handler = cfg
        .handler
        .as_ref()
        .map(|h| h.r#type.as_str())
        .unwrap_or_default();
    if cfg.forwarder.is_some() && !matches!(handler, "tcp" | "udp" | "forward" | "relay") {
        tracing::warn!(service = %cfg.name, handler, "the handler does not use a forwarder; forwarder ignored (as GOST does)");
    }
}

fn build_parts(root: &Config, cfg: &ServiceConfig) -> Result<Parts, BuildError> {
    let md = &cfg.metadata;
    let enable_stats = md
        .get_bool("enableStats")
        .map_err(|e| md_err(cfg, "metadata", e))?
        .unwrap_or(false);
    let hooks = Hooks::from_metadata(md).map_err(|e| md_err(cfg, "metadata", e))?;
    let router = crate::router::build(root, cfg).map_err(|e| svc_err(cfg, e.to_string()))?;
    let admission = crate::admission::group(root, &cfg.admission, &cfg.admissions)
        .map_err(|e| svc_err(cfg, e.to_string()))?;
    let limiters =
        crate::limiter::service_limiters(root, cfg).map_err(|e| svc_err(cfg, e.to_string()))?;
    let handler_type = cfg
        .handler
        .as_ref()
        .map(|h| h.r#type.as_str())
        .unwrap_or_default();
    let handler_observer = cfg
        .handler
        .as_ref()
        .map(|h| h.observer.as_str())
        .filter(|o| !o.is_empty());
    let mut auther = build_auther(root, cfg);
    if handler_observer.is_some() {
        auther = auther.map(crate::observer::clients::auther);
    }
    let anonymous = auther.is_none();
    let deps = HandlerDeps { router, auther };
    let handler: Arc<dyn Handler> = match handler_type {
        "tcp" | "udp" | "forward" => build_forwarding(root, cfg, deps.router)?,
        "socks4" | "socks4a" => Arc::new(build_socks4(cfg, deps)?),
        "socks5" | "socks" => Arc::new(build_socks5(cfg, deps)?),
        "http" => Arc::new(build_http_handler(cfg, deps)?),
        "relay" => Arc::new(build_relay(root, cfg, deps)?),
        "wasm" => build_wasm_handler(cfg, deps)?,
        // As GOST's auto: all three handlers get the same metadata.
        "auto" => Arc::new(AutoHandler::new(
            build_http_handler(cfg, deps.clone())?,
            Arc::new(build_socks4(cfg, deps.clone())?),
            Arc::new(build_socks5(cfg, deps)?),
        )),
        other => {
            return Err(svc_err(
                cfg,
                format!("handler type '{other}' is not supported"),
            ))
        }
    };
    let handler = match handler_observer {
        Some(name) => {
            let sink = named_sink(root, cfg, name)?;
            let reporter = handler_options(cfg, |md| {
                crate::observer::reporter::Reporter::from_metadata(sink, md)
            })?;
            crate::observer::clients::observed(handler, &cfg.name, reporter, anonymous)
        }
        None => handler,
    };
    Ok(Parts {
        pipeline: Pipeline {
            handler,
            admission,
            limiters,
        },
        hooks,
        enable_stats,
        observer: build_observer(root, cfg)?,
    })
}

fn bind_listener(cfg: &ServiceConfig) -> Result<Box<dyn Listener>, BuildError> {
    let listener_type = cfg
        .listener
        .as_ref()
        .map(|l| l.r#type.as_str())
        .unwrap_or_default();
    let addr = resolve_bind_addr(&cfg.addr)
        .map_err(|e| svc_err(cfg, format!("addr \"{}\": {e}", cfg.addr)))?;
    let lmd = cfg.listener.as_ref().map(|l| &l.metadata);
    let bind_err = |source| BuildError::Bind {
        service: cfg.name.clone(),
        addr: cfg.addr.clone(),
        source,
    };
    let listener: Box<dyn Listener> = match listener_type {
        "" | "tcp" => {
            let backlog = match lmd {
                Some(m) => m
                    .get_int("backlog")
                    .map_err(|e| md_err(cfg, "listener.metadata", e))?,
                None => None,
            };
            Box::new(
                TcpListen::bind(addr, backlog.filter(|b| *b > 0).unwrap_or(1024) as u32)
                    .map_err(bind_err)?,
            )
        }
        "udp" => {
            let opts = match lmd {
                Some(m) => udp_options(m).map_err(|e| md_err(cfg, "listener.metadata", e))?,
                None => UdpOptions::default(),
            };
            Box::new(UdpListen::bind(addr, opts).map_err(bind_err)?)
        }
        other => {
            return Err(svc_err(
                cfg,
                format!("listener type '{other}' is not supported"),
            ))
        }
    };
    Ok(listener)
}

/// The service's auther, as GOST picks it: the named `handler.auther` and
/// `handler.authers` (tried in order), or else `handler.auth`
/// (`user:pass@` on `-L`). Names were checked by `Config::validate`.
fn build_auther(root: &Config, cfg: &ServiceConfig) -> Option<Arc<dyn Auther>> {
    let h = cfg.handler.as_ref()?;
    let named: Vec<Arc<dyn Auther>> = std::iter::once(&h.auther)
        .chain(&h.authers)
        .filter(|n| !n.is_empty())
        .filter_map(|n| root.authers.iter().find(|a| &a.name == n))
        .map(named_auther)
        .collect();
    if !named.is_empty() {
        return Some(Arc::new(AutherGroup(named)));
    }
    let auth = h.auth.as_ref()?;
    if auth.username.is_empty() && auth.password.is_empty() {
        return None;
    }
    Some(Arc::new(StaticAuther::new([(
        auth.username.clone(),
        auth.password.clone(),
    )])))
}

/// An auther of the top-level `authers` section.
pub fn named_auther(a: &AutherConfig) -> Arc<dyn Auther> {
    let users = a
        .auths
        .iter()
        .filter(|u| !u.username.is_empty())
        .map(|u| (u.username.clone(), u.password.clone()));
    let file = a
        .file
        .as_ref()
        .filter(|f| !f.path.is_empty())
        .map(|f| f.path.clone().into());
    let reload = Some(a.reload.0).filter(|r| !r.is_zero());
    Arc::new(TableAuther::new(&a.name, users, file, reload))
}

/// Parses the handler's metadata into a handler's typed options.
fn handler_options<T>(
    cfg: &ServiceConfig,
    parse: impl FnOnce(&crate::metadata::Metadata) -> Result<T, MetadataError>,
) -> Result<T, BuildError> {
    let empty = crate::metadata::Metadata::default();
    let md = cfg.handler.as_ref().map(|h| &h.metadata).unwrap_or(&empty);
    parse(md).map_err(|e| md_err(cfg, "handler.metadata", e))
}

fn build_http_handler(cfg: &ServiceConfig, deps: HandlerDeps) -> Result<HttpHandler, BuildError> {
    let opts = handler_options(cfg, HttpOptions::from_metadata)?;
    Ok(HttpHandler::new(deps.router, deps.auther, opts))
}

fn build_socks4(cfg: &ServiceConfig, deps: HandlerDeps) -> Result<Socks4Handler, BuildError> {
    let opts = handler_options(cfg, Socks4Options::from_metadata)?;
    Ok(Socks4Handler::new(deps.router, deps.auther, opts))
}

fn build_socks5(cfg: &ServiceConfig, deps: HandlerDeps) -> Result<Socks5Handler, BuildError> {
    let opts = handler_options(cfg, Socks5Options::from_metadata)?;
    Ok(Socks5Handler::new(deps.router, deps.auther, opts))
}

/// With a forwarder, relay sends every request to the forwarder's nodes.
fn build_relay(
    root: &Config,
    cfg: &ServiceConfig,
    deps: HandlerDeps,
) -> Result<RelayHandler, BuildError> {
    let opts = handler_options(cfg, RelayHandlerOptions::from_metadata)?;
    let forward = match &cfg.forwarder {
        Some(_) => Some(build_forward_handler(root, cfg, deps.router.clone())?),
        None => None,
    };
    Ok(RelayHandler::new(deps.router, deps.auther, forward, opts))
}

/// `handler: {type: wasm, plugin: {type: wasm, path: ...}}`.
fn build_wasm_handler(
    cfg: &ServiceConfig,
    deps: HandlerDeps,
) -> Result<Arc<dyn Handler>, BuildError> {
    let plugin = cfg
        .handler
        .as_ref()
        .and_then(|h| h.plugin.as_ref())
        .ok_or_else(|| svc_err(cfg, "handler type 'wasm' needs handler.plugin"))?;
    let spec =
        crate::plugin::PluginSpec::from_config(plugin).map_err(|e| svc_err(cfg, e.to_string()))?;
    let opts = handler_options(
        cfg,
        crate::plugin::handler::WasmHandlerOptions::from_metadata,
    )?;
    let h = crate::plugin::handler::build(spec, &cfg.name, deps, opts)
        .map_err(|e| svc_err(cfg, e.to_string()))?;
    Ok(h)
}

fn udp_options(md: &crate::metadata::Metadata) -> Result<UdpOptions, MetadataError> {
    let d = UdpOptions::default();
    let pos =
        |v: Option<i64>, dflt: usize| v.filter(|v| *v > 0).map(|v| v as usize).unwrap_or(dflt);
    Ok(UdpOptions {
        read_buffer_size: pos(md.get_int("readBufferSize")?, d.read_buffer_size).min(65535),
        read_queue_size: pos(md.get_int("readQueueSize")?, d.read_queue_size),
        backlog: pos(md.get_int("backlog")?, d.backlog),
        keepalive: md.get_bool("keepalive")?.unwrap_or(false),
        ttl: md
            .get_duration("ttl")?
            .filter(|t| !t.is_zero())
            .unwrap_or(d.ttl),
    })
}

fn build_selector(
    cfg: &ServiceConfig,
    sel: Option<&SelectorConfig>,
) -> Result<Selector, BuildError> {
    let Some(sel) = sel else {
        return Ok(Selector::new(Strategy::Round, 0, Duration::ZERO));
    };
    let strategy = Strategy::parse(&sel.strategy).ok_or_else(|| {
        svc_err(
            cfg,
            format!(
                "selector strategy '{}' is not supported (round, rand, fifo, hash)",
                sel.strategy
            ),
        )
    })?;
    Ok(Selector::new(
        strategy,
        sel.max_fails.max(0) as u64,
        sel.fail_timeout.0,
    ))
}

/// A forwarder whose hop has a wasm plugin selects with it; any other uses
/// the hop's selector.
fn build_forwarding(
    root: &Config,
    cfg: &ServiceConfig,
    router: Router,
) -> Result<Arc<dyn Handler>, BuildError> {
    let hop = cfg
        .forwarder
        .as_ref()
        .filter(|f| !f.hop.is_empty())
        .and_then(|f| root.hops.iter().find(|h| h.name == f.hop));
    let Some((hop, plugin)) = hop.and_then(|h| Some((h, h.plugin.as_ref()?))) else {
        return Ok(Arc::new(build_forward_handler(root, cfg, router)?));
    };
    // The plugin picks among the nodes and their addresses are dialed
    // through the service's router: nothing else of the hop or its nodes
    // would be applied.
    let what = |set: Vec<String>| {
        format!(
            "sets {}; a plugin hop takes only name, nodes and plugin, and its nodes only \
             name and addr (the plugin picks the node, and its address is dialed through \
             the service's router)",
            set.join(", ")
        )
    };
    let hop_set = settings_beyond(hop, &["name", "nodes", "plugin"]);
    if !hop_set.is_empty() {
        return Err(svc_err(
            cfg,
            format!("hop \"{}\" {}", hop.name, what(hop_set)),
        ));
    }
    for n in &hop.nodes {
        let set = settings_beyond(n, &["name", "addr"]);
        if !set.is_empty() {
            return Err(svc_err(
                cfg,
                format!("hop \"{}\": node \"{}\" {}", hop.name, n.name, what(set)),
            ));
        }
    }
    let mut nodes = Vec::with_capacity(hop.nodes.len());
    for n in hop.nodes.iter().map(ForwardNodeConfig::from) {
        nodes.push(Arc::new(
            Node::from_forward_config(&n, root).map_err(|e| svc_err(cfg, e.to_string()))?,
        ));
    }
    let h = cfg.handler.as_ref();
    let opts = ForwardOptions::from_metadata(
        h.map(|h| &h.metadata).unwrap_or(&Default::default()),
        h.map(|h| h.retries).unwrap_or(0),
    )
    .map_err(|e| md_err(cfg, "handler.metadata", e))?;
    let err = |e: crate::plugin::PluginError| svc_err(cfg, format!("hop \"{}\": {e}", hop.name));
    let spec = crate::plugin::PluginSpec::from_config(plugin).map_err(err)?;
    let path = spec.path.clone();
    let fwd = crate::plugin::forwarder::WasmForwardHandler::new(
        &hop.name,
        &cfg.name,
        spec,
        nodes,
        router,
        opts.idle_timeout,
    )
    .map_err(err)?;
    Ok(crate::plugin::reload::watched(fwd, path))
}

/// The settings `v` sets beyond `keep`, by their config names. Used for
/// plugin hops, where none of the others would be applied: refusing them
/// beats ignoring a matcher or a bypass the user relies on.
fn settings_beyond(v: &impl serde::Serialize, keep: &[&str]) -> Vec<String> {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::Object(m)) => m
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| !keep.contains(&k.as_str()))
            .collect(),
        _ => Vec::new(),
    }
}

fn build_forward_handler(
    root: &Config,
    cfg: &ServiceConfig,
    router: Router,
) -> Result<ForwardHandler, BuildError> {
    let fwd = cfg.forwarder.as_ref().ok_or_else(|| {
        svc_err(
            cfg,
            "port forwarding needs a forwarder with at least one node",
        )
    })?;
    let (hop_name, node_cfgs, selector_cfg): (
        String,
        Vec<ForwardNodeConfig>,
        Option<&SelectorConfig>,
    ) = if !fwd.hop.is_empty() {
        let hop = root
            .hops
            .iter()
            .find(|h| h.name == fwd.hop)
            .ok_or_else(|| svc_err(cfg, format!("forwarder.hop \"{}\" not found", fwd.hop)))?;
        let nodes = hop.nodes.iter().map(ForwardNodeConfig::from).collect();
        (
            hop.name.clone(),
            nodes,
            hop.selector.as_ref().or(fwd.selector.as_ref()),
        )
    } else {
        (cfg.name.clone(), fwd.nodes.clone(), fwd.selector.as_ref())
    };
    if node_cfgs.is_empty() {
        return Err(svc_err(cfg, "forwarder has no nodes"));
    }
    let mut nodes = Vec::with_capacity(node_cfgs.len());
    for n in &node_cfgs {
        if n.addr.is_empty() {
            return Err(svc_err(
                cfg,
                format!("forwarder node \"{}\" has no addr", n.name),
            ));
        }
        nodes.push(Arc::new(
            Node::from_forward_config(n, root).map_err(|e| svc_err(cfg, e.to_string()))?,
        ));
    }
    let hop = Hop {
        name: hop_name,
        nodes,
        selector: build_selector(cfg, selector_cfg)?,
        bypass: None,
        file: None,
    };
    let h = cfg.handler.as_ref();
    let opts = ForwardOptions::from_metadata(
        h.map(|h| &h.metadata).unwrap_or(&Default::default()),
        h.map(|h| h.retries).unwrap_or(0),
    )
    .map_err(|e| md_err(cfg, "handler.metadata", e))?;
    Ok(ForwardHandler::new(Arc::new(hop), router, opts))
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
