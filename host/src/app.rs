//! Builds the running program from a config (GOST's loader + program):
//! every service is bound before any starts, then all run until shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::auth::{Auther, AutherGroup, StaticAuther, TableAuther};
use crate::chain::selector::{Selector, Strategy};
use crate::chain::{Hop, Node};
use crate::config::{Config, ForwardNodeConfig, Kind, SelectorConfig, ServiceConfig};
use crate::handler::auto::AutoHandler;
use crate::handler::forward::{ForwardHandler, ForwardOptions};
use crate::handler::http::{HttpHandler, HttpOptions};
use crate::handler::socks::{Socks4Handler, Socks4Options, Socks5Handler, Socks5Options};
use crate::handler::{Handler, HandlerDeps};
use crate::listener::tcp::TcpListen;
use crate::listener::udp::{UdpListen, UdpOptions};
use crate::listener::{resolve_bind_addr, Listener};
use crate::metadata::MetadataError;
use crate::router::Router;
use crate::service::{Hooks, Service, Status};

/// Listener types this build can run; anything else GOST knows is refused
/// by name instead of being ignored.
pub const LISTENERS: &[&str] = &["tcp", "udp"];
/// Handler types this build can run.
pub const HANDLERS: &[&str] = &[
    "tcp", "udp", "forward", "http", "auto", "socks4", "socks4a", "socks5", "socks", "wasm",
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

/// The running program: the effective config and each service's status,
/// which the web API reads.
pub struct App {
    config: Config,
    statuses: HashMap<String, Arc<Status>>,
}

impl App {
    /// The config as GOST's `GET /config` shows it: each service with its
    /// live status.
    pub fn config_with_status(&self) -> Config {
        let mut cfg = self.config.clone();
        for svc in &mut cfg.services {
            if let Some(st) = self.statuses.get(&svc.name) {
                svc.status = Some(st.snapshot());
            }
        }
        cfg
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
    let observers = build_observers(&config)?;
    let mut services = Vec::new();
    let mut statuses = HashMap::new();
    for cfg in &config.services {
        match build_service(&config, cfg, &observers) {
            Ok(svc) => {
                statuses.insert(cfg.name.clone(), svc.status.clone());
                services.push(svc);
            }
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Built {
        app: Arc::new(App { config, statuses }),
        services,
    })
}

impl Built {
    /// Runs every service until `shutdown` fires and all have drained.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tasks = tokio::task::JoinSet::new();
        for svc in self.services {
            tasks.spawn(svc.run(shutdown.clone()));
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// What this build cannot run yet, each named as the config names it.
fn unsupported(cfg: &Config) -> Vec<String> {
    let mut out = cfg.unsupported(|kind, ty| match kind {
        Kind::Listener => LISTENERS.contains(&ty),
        Kind::Handler => HANDLERS.contains(&ty),
        // Connectors matter only in chains, and a service that uses a chain
        // is refused below; a forwarder's hop dials its nodes' addresses
        // directly, as in GOST.
        Kind::Connector | Kind::Dialer => true,
        // Where a wasm plugin is not wired in yet, its owner is refused
        // below or as an unsupported section.
        Kind::Plugin => matches!(ty, "wasm" | "http"),
    });
    for h in &cfg.hops {
        if let Some(p) = h.plugin.as_ref().filter(|p| p.r#type != "wasm") {
            out.push(format!(
                "hop \"{}\": plugin type '{}' is not supported yet",
                h.name, p.r#type
            ));
        }
    }
    for svc in &cfg.services {
        let name = &svc.name;
        // With ignoreChain the CLI's chain-0 stays unused, as in GOST; a
        // malformed value is reported when the service is built.
        let uses_chain = !svc
            .metadata
            .get_bool("ignoreChain")
            .ok()
            .flatten()
            .unwrap_or(false);
        if let Some(h) = &svc.handler {
            if h.plugin.is_some() && h.r#type != "wasm" {
                out.push(format!(
                    "service \"{name}\": handler.plugin is only used by handler type wasm, not '{}'",
                    h.r#type
                ));
            }
            if uses_chain && (!h.chain.is_empty() || h.chain_group.is_some()) {
                out.push(format!(
                    "service \"{name}\": handler chains are not supported yet"
                ));
            }
            for (what, set) in [
                ("limiter", !h.limiter.is_empty()),
                ("observer", !h.observer.is_empty()),
                ("tls", h.tls.is_some()),
            ] {
                if set {
                    out.push(format!(
                        "service \"{name}\": handler.{what} is not supported yet"
                    ));
                }
            }
        }
        if let Some(l) = &svc.listener {
            if uses_chain && (!l.chain.is_empty() || l.chain_group.is_some()) {
                out.push(format!(
                    "service \"{name}\": listener chains are not supported yet"
                ));
            }
            if !l.auther.is_empty() || !l.authers.is_empty() || l.auth.is_some() || l.tls.is_some()
            {
                out.push(format!(
                    "service \"{name}\": listener auth/tls is not supported yet"
                ));
            }
        }
        for (what, set) in [
            (
                "admission",
                !svc.admission.is_empty() || !svc.admissions.is_empty(),
            ),
            ("bypass", !svc.bypass.is_empty() || !svc.bypasses.is_empty()),
            ("resolver", !svc.resolver.is_empty()),
            ("hosts", !svc.hosts.is_empty()),
            ("limiter", !svc.limiter.is_empty()),
            ("climiter", !svc.climiter.is_empty()),
            ("rlimiter", !svc.rlimiter.is_empty()),
            ("recorders", !svc.recorders.is_empty()),
            ("logger", !svc.logger.is_empty() || !svc.loggers.is_empty()),
        ] {
            if set {
                out.push(format!("service \"{name}\": {what} is not supported yet"));
            }
        }
    }
    for section in cfg.non_empty_sections() {
        // Chains are refused where a service uses one (above).
        if !matches!(
            section,
            "services" | "hops" | "chains" | "api" | "log" | "authers" | "observers"
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
    if cfg.api.as_ref().is_some_and(|a| !a.auther.is_empty()) {
        out.push("api.auther is not supported yet (use api.auth)".into());
    }
    if cfg.log.as_ref().is_some_and(|l| l.rotation.is_some()) {
        out.push("log.rotation is not supported yet".into());
    }
    out
}

/// Every observer of the `observers` section, by name. Each is built once
/// and shared by the services that name it.
fn build_observers(
    config: &Config,
) -> Result<HashMap<String, Arc<dyn crate::observer::Observer>>, Vec<BuildError>> {
    let mut out = HashMap::new();
    let mut errors = Vec::new();
    for o in &config.observers {
        let err = |msg: String| BuildError::Invalid(format!("observer \"{}\": {msg}", o.name));
        let Some(p) = &o.plugin else {
            errors.push(err("needs a plugin (type http or wasm)".into()));
            continue;
        };
        let built: Result<Arc<dyn crate::observer::Observer>, BuildError> = match p.r#type.as_str()
        {
            "http" => crate::observer::http::HttpObserver::new(&o.name, &p.addr, p.timeout.0)
                .map(|h| Arc::new(h) as _)
                .map_err(BuildError::Invalid),
            "wasm" => crate::plugin::PluginSpec::from_config(p)
                .and_then(|spec| {
                    let path = spec.path.clone();
                    crate::plugin::observer::WasmObserver::new(&o.name, spec)
                        .map(|w| crate::plugin::reload::watched(w, path))
                })
                .map(|w| w as _)
                .map_err(|e| err(e.to_string())),
            other => Err(err(format!("plugin type '{other}' is not supported"))),
        };
        match built {
            Ok(b) => {
                out.insert(o.name.clone(), b);
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn build_service(
    root: &Config,
    cfg: &ServiceConfig,
    observers: &HashMap<String, Arc<dyn crate::observer::Observer>>,
) -> Result<Service, BuildError> {
    let md = &cfg.metadata;
    let enable_stats = md
        .get_bool("enableStats")
        .map_err(|e| md_err(cfg, "metadata", e))?
        .unwrap_or(false);
    let hooks = Hooks::from_metadata(md).map_err(|e| md_err(cfg, "metadata", e))?;
    md.get_bool("ignoreChain")
        .map_err(|e| md_err(cfg, "metadata", e))?;
    let mut router = Router::default();
    if let Some(t) = md
        .get_duration("dialTimeout")
        .map_err(|e| md_err(cfg, "metadata", e))?
    {
        if !t.is_zero() {
            router.dial_timeout = t;
        }
    }
    let status = Arc::new(Status::new(&cfg.name, enable_stats));

    let handler_type = cfg
        .handler
        .as_ref()
        .map(|h| h.r#type.as_str())
        .unwrap_or_default();
    let listener_type = cfg
        .listener
        .as_ref()
        .map(|l| l.r#type.as_str())
        .unwrap_or_default();
    let deps = HandlerDeps {
        router,
        auther: build_auther(root, cfg),
    };
    let handler: Arc<dyn Handler> = match handler_type {
        "tcp" | "udp" | "forward" => build_forwarding(root, cfg, deps.router)?,
        "socks4" | "socks4a" => Arc::new(build_socks4(cfg, deps)?),
        "socks5" | "socks" => Arc::new(build_socks5(cfg, deps)?),
        "http" => Arc::new(build_http_handler(cfg, deps)?),
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
    let mut service = Service::new(&cfg.name, status, listener, handler, hooks);
    if !cfg.observer.is_empty() {
        let obs = observers
            .get(&cfg.observer)
            .ok_or_else(|| svc_err(cfg, format!("observer \"{}\" not found", cfg.observer)))?;
        let reporter = crate::observer::reporter::Reporter::from_metadata(obs.clone(), md)
            .map_err(|e| md_err(cfg, "metadata", e))?;
        service = service.with_observer(reporter);
    }
    Ok(service)
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
        .map(|a| {
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
            Arc::new(TableAuther::new(&a.name, users, file, reload)) as Arc<dyn Auther>
        })
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
    let h = crate::plugin::handler::build(spec, &cfg.name, deps)
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
    let udp = cfg.listener.as_ref().is_some_and(|l| l.r#type == "udp")
        || cfg.handler.as_ref().is_some_and(|h| h.r#type == "udp");
    if udp {
        return Err(BuildError::Unsupported(format!(
            "service \"{}\": hop \"{}\": wasm forwarders for UDP are not supported yet",
            cfg.name, hop.name
        )));
    }
    let mut nodes = Vec::with_capacity(hop.nodes.len());
    for n in hop.nodes.iter().map(ForwardNodeConfig::from) {
        nodes.push(Arc::new(Node::from_forward_config(&n).map_err(|e| {
            md_err(cfg, &format!("node \"{}\" metadata", n.name), e)
        })?));
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
        nodes.push(Arc::new(Node::from_forward_config(n).map_err(|e| {
            md_err(cfg, &format!("node \"{}\" metadata", n.name), e)
        })?));
    }
    let hop = Hop {
        name: hop_name,
        nodes,
        selector: build_selector(cfg, selector_cfg)?,
    };
    let h = cfg.handler.as_ref();
    let opts = ForwardOptions::from_metadata(
        h.map(|h| &h.metadata).unwrap_or(&Default::default()),
        h.map(|h| h.retries).unwrap_or(0),
    )
    .map_err(|e| md_err(cfg, "handler.metadata", e))?;
    Ok(ForwardHandler::new(Arc::new(hop), router, opts))
}
