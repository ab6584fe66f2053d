//! The object factory: what a config's services, handlers, listeners and
//! observers are built from, by the types in [`gost_chain::registry`]. The
//! running program ([`crate::app`]) asks it for new objects when it
//! starts or changes a service.

use std::sync::{Arc, OnceLock};

use gost_chain::chain::selector::Selector;
use gost_chain::chain::{Hop, Node};
use gost_chain::registry::Registry;
use gost_chain::router::Router;
use gost_core::auth::Auther;
use gost_core::config::{
    AutherConfig, Config, ForwardNodeConfig, Kind, ListenerConfig, SelectorConfig, ServiceConfig,
};
use gost_core::metadata::MetadataError;
use gost_handler::auto::AutoHandler;
use gost_handler::file::{FileHandler, FileOptions};
use gost_handler::forward::{ForwardHandler, ForwardOptions};
use gost_handler::http::{HttpHandler, HttpOptions};
use gost_handler::relay::{RelayHandler, RelayHandlerOptions};
use gost_handler::socks::{Socks4Handler, Socks4Options, Socks5Handler, Socks5Options};
use gost_handler::{Handler, HandlerDeps};
use gost_service::{Hooks, Pipeline, Service, Status};
use gost_transport::kinds::Socket;
use gost_transport::listener::tcp::TcpListen;
use gost_transport::listener::udp::{UdpListen, UdpOptions};
use gost_transport::listener::{resolve_bind_addr, Listener};

/// Why an object of a config cannot be built.
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

pub(crate) fn svc_err(cfg: &ServiceConfig, msg: impl Into<String>) -> BuildError {
    BuildError::Service {
        service: cfg.name.clone(),
        msg: msg.into(),
    }
}

pub(crate) fn md_err(cfg: &ServiceConfig, what: &str, e: MetadataError) -> BuildError {
    svc_err(cfg, format!("{what}: {e}"))
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

/// `sniffing` on a handler that does not sniff.
fn sniffing_unsupported(svc: &ServiceConfig) -> Option<String> {
    let kinds = kinds();
    let h = svc.handler.as_ref()?;
    let on = h
        .metadata
        .get_bool("sniffing")
        .ok()
        .flatten()
        .unwrap_or(false);
    let sniffs = kinds.handler(&h.r#type).is_some_and(|k| k.caps.sniffing);
    (on && !sniffs).then(|| {
        format!(
            "service \"{}\": sniffing is supported by the {} handlers only",
            svc.name,
            kinds.handler_names(|c| c.sniffing).join(", ")
        )
    })
}

/// Whether this build has the listener, handler, connector, dialer or
/// plugin type `ty`.
fn supported(kind: Kind, ty: &str) -> bool {
    match kind {
        Kind::Listener => registry().listener(ty).is_some(),
        Kind::Handler => kinds().handler(ty).is_some(),
        Kind::Connector => registry().connector(ty).is_some(),
        Kind::Dialer => registry().dialer(ty).is_some(),
        // Where a wasm plugin is not wired in yet, its owner is refused
        // below or as an unsupported section.
        // An empty type is GOST's default, gRPC.
        Kind::Plugin => {
            matches!(ty, "wasm" | "http")
                || (cfg!(feature = "grpc-plugin") && matches!(ty, "grpc" | ""))
        }
    }
}

/// [`check`] for a change to one service: the service's own checks
/// against `root`'s other objects, which are unchanged and were checked
/// when they were set; the same messages in the same order as a check of
/// the whole config gives for this service.
pub(crate) fn check_service(root: &Config, svc: &ServiceConfig) -> Result<(), Vec<String>> {
    let mut errors: Vec<String> = Vec::new();
    if let Err(errs) = root.validate_service(svc) {
        errors.extend(errs.into_iter().map(|e| e.to_string()));
    }
    errors.extend(Config::unsupported_service(svc, supported));
    errors.extend(service_unsupported(root, svc));
    errors.extend(gost_chain::router::unsupported_service(root, svc));
    errors.extend(sniffing_unsupported(svc));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// What this build cannot run yet, each named as the config names it.
pub(crate) fn unsupported(cfg: &Config) -> Vec<String> {
    let mut out = cfg.unsupported(supported);
    for h in &cfg.hops {
        // Types this build lacks are refused as plugin types above.
        if let Some(p) = h.plugin.as_ref().filter(|p| p.r#type != "wasm") {
            out.push(format!(
                "hop \"{}\": plugin type '{}' is not supported yet",
                h.name, p.r#type
            ));
        }
    }
    for o in &cfg.observers {
        if let Some(p) = o
            .plugin
            .as_ref()
            .filter(|p| !matches!(p.r#type.as_str(), "http" | "wasm"))
        {
            out.push(format!(
                "observer \"{}\": plugin type '{}' is not supported yet (http, wasm)",
                o.name, p.r#type
            ));
        }
    }
    for svc in &cfg.services {
        out.extend(service_unsupported(cfg, svc));
    }
    out.extend(gost_chain::router::unsupported(cfg));
    out.extend(cfg.services.iter().filter_map(sniffing_unsupported));
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
                | "ingresses"
                | "sds"
                | "routers"
                | "caches"
                | "resolvers"
                | "climiters"
                | "rlimiters"
                | "limiters"
                | "observers"
                | "recorders"
                | "tls"
        ) {
            out.push(format!("config section '{section}' is not supported yet"));
        }
    }
    for a in &cfg.authers {
        if let Err(e) = gost_core::loader::Source::from_config(
            a.redis.as_ref(),
            a.http.as_ref(),
            gost_core::loader::RedisKind::Hash,
        ) {
            out.push(format!("auther \"{}\": {e}", a.name));
        }
    }
    out
}

/// What one service's handler and listener ask for that this build
/// refuses.
fn service_unsupported(cfg: &Config, svc: &ServiceConfig) -> Vec<String> {
    let mut out = Vec::new();
    let name = &svc.name;
    for r in &svc.recorders {
        if !gost_core::recorder::RECORDS.contains(&r.record.as_str()) {
            out.push(format!(
                "service \"{name}\": {}",
                gost_core::recorder::RecorderError::Record {
                    record: gost_core::escape::esc(&r.record).to_string()
                }
            ));
        }
    }
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
        let kinds = kinds();
        let observes = kinds.handler(&h.r#type).is_some_and(|k| k.caps.observer);
        if !h.observer.is_empty() && !observes {
            out.push(format!(
                "service \"{name}\": handler.observer is not used by handler type '{}' (only by {})",
                h.r#type,
                kinds.handler_names(|c| c.observer).join(", ")
            ));
        }
        if h.tls.is_some() {
            out.push(format!(
                "service \"{name}\": handler.tls is not supported yet"
            ));
        }
    }
    let sniffing_forward = svc.handler.as_ref().is_some_and(|h| {
        matches!(h.r#type.as_str(), "tcp" | "forward")
            && h.metadata.get_bool("sniffing").ok().flatten() == Some(true)
    });
    if !svc.cache.is_empty() && !sniffing_forward {
        out.push(format!(
            "service \"{name}\": cache is used by tcp and forward handlers with sniffing: true only"
        ));
    }
    if let Some(l) = &svc.listener {
        let listener_auth = !l.auther.is_empty() || !l.authers.is_empty() || l.auth.is_some();
        // The SSH listeners authenticate their clients themselves.
        if listener_auth && !matches!(l.r#type.as_str(), "ssh" | "sshd") {
            out.push(format!(
                "service \"{name}\": listener auth is not supported yet"
            ));
        }
        if let Some(t) = &l.tls {
            if t.reject_unknown_sni || !t.server_names.is_empty() {
                out.push(format!(
                    "service \"{name}\": listener tls rejectUnknownSNI and serverNames are not supported yet"
                ));
            }
        }
        let registry = registry();
        let uses_tls = registry.listener(&l.r#type).is_some_and(|k| k.uses_tls);
        if l.tls.is_some() && !uses_tls {
            out.push(format!(
                "service \"{name}\": listener type '{}' does not use a tls block (only {})",
                l.r#type,
                registry
                    .listeners()
                    .iter()
                    .filter(|k| k.uses_tls)
                    .flat_map(|k| k.names)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    out
}

/// Named objects are built whether or not a service uses them yet, so one
/// that could never run (created through the API for later use, or left in
/// a file) is refused now rather than when a service first names it.
fn unbuildable_objects(cfg: &Config) -> Vec<String> {
    use gost_core::limiter::{conn::ConnLimiter, rate::RateLimiter, traffic::TrafficLimiter};
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
    // A plugin of another type is refused as such above.
    let remote_or_none = |p: &Option<gost_core::config::PluginConfig>| {
        p.as_ref()
            .is_none_or(|p| matches!(p.r#type.as_str(), "http" | "grpc" | ""))
    };
    for a in cfg.authers.iter().filter(|a| remote_or_none(&a.plugin)) {
        let r = gost_core::auth::named(a);
        note("auther", &a.name, r.map(drop).map_err(|e| text(&e)));
    }
    for b in &cfg.bypasses {
        let r = gost_core::bypass::Bypass::from_config(b);
        note("bypass", &b.name, r.map(drop).map_err(|e| text(&e)));
    }
    for a in &cfg.admissions {
        let r = gost_core::admission::Admission::from_config(a);
        note("admission", &a.name, r.map(drop).map_err(|e| text(&e)));
    }
    for h in &cfg.hosts {
        let r = gost_core::hosts::find(cfg, &h.name);
        note("hosts", &h.name, r.map(drop).map_err(|e| text(&e)));
    }
    for i in &cfg.ingresses {
        let r = build_ingress(i);
        note("ingress", &i.name, r.map(drop).map_err(|e| text(&e)));
    }
    for r in cfg.routers.iter().filter(|r| remote_or_none(&r.plugin)) {
        let res = gost_core::router::Router::from_config(r);
        note("router", &r.name, res.map(drop).map_err(|e| text(&e)));
    }
    for s in cfg.sds.iter().filter(|s| remote_or_none(&s.plugin)) {
        let r = gost_core::sd::from_config(s);
        note("sd", &s.name, r.map(drop).map_err(|e| text(&e)));
    }
    for r in &cfg.resolvers {
        let res = gost_core::resolver::find(cfg, &r.name);
        note("resolver", &r.name, res.map(drop).map_err(|e| text(&e)));
    }
    for r in &cfg.recorders {
        let res = gost_core::recorder::check(r);
        note("recorder", &r.name, res.map_err(|e| text(&e)));
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
pub(crate) struct Parts {
    pub(crate) pipeline: Pipeline,
    hooks: Hooks,
    /// `shutdownGracePeriod`: how long live connections may finish after
    /// a stop (GOST has no such key and closes them at once).
    grace: std::time::Duration,
    enable_stats: bool,
    /// Reports to the service's `observer`; it belongs to the running
    /// service, so a change to it restarts the service (see `apply`).
    observer: Option<gost_service::observer::reporter::Reporter>,
}

impl Parts {
    pub(crate) fn into_service(self, name: &str, listener: Box<dyn Listener>) -> Service {
        let status = Arc::new(Status::new(name, self.enable_stats));
        let service =
            Service::new(name, status, listener, self.pipeline, self.hooks).with_grace(self.grace);
        match self.observer {
            Some(r) => service.with_observer(r),
            None => service,
        }
    }
}

pub(crate) fn build_service(root: &Config, cfg: &ServiceConfig) -> Result<Service, BuildError> {
    let parts = build_parts(root, cfg)?;
    let listener = bind_listener(root, cfg)?;
    Ok(parts.into_service(&cfg.name, listener))
}

/// The reporter of the observer a service names.
fn build_observer(
    root: &Config,
    cfg: &ServiceConfig,
) -> Result<Option<gost_service::observer::reporter::Reporter>, BuildError> {
    if cfg.observer.is_empty() {
        return Ok(None);
    }
    gost_service::observer::reporter::Reporter::from_metadata(build_sink(root, cfg)?, &cfg.metadata)
        .map(Some)
        .map_err(|e| md_err(cfg, "metadata", e))
}

/// The sink of the observer a service names.
pub(crate) fn build_sink(
    root: &Config,
    cfg: &ServiceConfig,
) -> Result<Arc<dyn gost_service::observer::Observer>, BuildError> {
    named_sink(root, cfg, &cfg.observer)
}

/// A sink from the `observers` section.
fn named_sink(
    root: &Config,
    cfg: &ServiceConfig,
    name: &str,
) -> Result<Arc<dyn gost_service::observer::Observer>, BuildError> {
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
    let observer: Arc<dyn gost_service::observer::Observer> = match p.r#type.as_str() {
        "http" => Arc::new(
            gost_service::observer::http::HttpObserver::new(&o.name, &p.addr, p.timeout.0)
                .map_err(BuildError::Invalid)?,
        ),
        "wasm" => {
            let spec = gost_plugin::PluginSpec::from_config(p).map_err(|e| err(e.to_string()))?;
            let path = spec.path.clone();
            let w = gost_plugin::observer::WasmObserver::new(&o.name, spec)
                .map_err(|e| err(e.to_string()))?;
            gost_plugin::reload::watched(w, path)
        }
        other => return Err(err(format!("plugin type '{other}' is not supported"))),
    };
    Ok(observer)
}

/// The `file`, `redis` or `http` loader of a forwarder's named hop: its
/// nodes are forwarder nodes, built as the inline ones are.
fn forwarder_loader(
    root: &Config,
    cfg: &ServiceConfig,
    hop: &gost_core::config::HopConfig,
) -> Result<Option<gost_chain::chain::loader::NodeLoader>, BuildError> {
    let path = hop
        .file
        .as_ref()
        .map(|f| f.path.as_str())
        .filter(|p| !p.is_empty());
    let remote = gost_core::loader::Source::from_config(
        hop.redis.as_ref(),
        hop.http.as_ref(),
        gost_core::loader::RedisKind::String,
    )
    .map_err(|e| svc_err(cfg, format!("hop \"{}\": {e}", hop.name)))?;
    if path.is_none() && remote.is_none() {
        return Ok(None);
    }
    let owner = format!("hop \"{}\"", hop.name);
    let root = Arc::new(root.clone());
    gost_chain::chain::loader::NodeLoader::new(
        &owner,
        path,
        remote,
        hop.reload.0,
        Box::new(move |n| {
            Node::from_forward_config(&ForwardNodeConfig::from(n), &root).map_err(|e| e.to_string())
        }),
    )
    .map(Some)
    .map_err(|e| svc_err(cfg, format!("{owner}: {e}")))
}

/// GOST hands a forwarder only to handlers that forward (tcp, udp, relay,
/// ...) and ignores it elsewhere; say so, once per start or change of the
/// service, instead of ignoring it silently.
pub(crate) fn warn_unused_forwarder(cfg: &ServiceConfig) {
    let handler = cfg
        .handler
        .as_ref()
        .map(|h| h.r#type.as_str())
        .unwrap_or_default();
    let forwards = kinds().handler(handler).is_some_and(|k| k.caps.forwarder);
    if cfg.forwarder.is_some() && !forwards {
        tracing::warn!(service = %cfg.name, handler, "the handler does not use a forwarder; forwarder ignored (as GOST does)");
    }
}

pub(crate) fn build_parts(root: &Config, cfg: &ServiceConfig) -> Result<Parts, BuildError> {
    let md = &cfg.metadata;
    let enable_stats = md
        .get_bool("enableStats")
        .map_err(|e| md_err(cfg, "metadata", e))?
        .unwrap_or(false);
    let hooks = Hooks::from_metadata(md).map_err(|e| md_err(cfg, "metadata", e))?;
    let grace = md
        .get_duration("shutdownGracePeriod")
        .map_err(|e| md_err(cfg, "metadata", e))?
        .unwrap_or(gost_service::DEFAULT_GRACE);
    let router = gost_chain::router::build(root, cfg, registry())
        .map_err(|e| svc_err(cfg, e.to_string()))?;
    let admission = gost_core::admission::group(root, &cfg.admission, &cfg.admissions)
        .map_err(|e| svc_err(cfg, e.to_string()))?;
    let limiters =
        gost_core::limiter::service_limiters(root, cfg).map_err(|e| svc_err(cfg, e.to_string()))?;
    if let Some(h) = cfg.handler.as_ref().filter(|h| !h.limiter.is_empty()) {
        gost_core::limiter::handler_limiter(root, &h.limiter)
            .map_err(|e| svc_err(cfg, format!("handler.limiter: {e}")))?;
        tracing::warn!(service = %cfg.name, limiter = %h.limiter,
            "handler.limiter paces nothing with inline or file limits: GOST asks a handler's limiter per client, which only a limiter plugin answers; use the service's limiter");
    }
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
    let mut auther = build_auther(root, cfg)?;
    if gost_core::connections::global().is_some() {
        auther = auther.map(gost_core::connections::auther);
    }
    if cfg
        .recorders
        .iter()
        .any(|r| r.record == gost_core::recorder::HANDLER)
    {
        auther = auther.map(gost_core::recorder::auther);
    }
    if handler_observer.is_some() {
        auther = auther.map(gost_service::observer::clients::auther);
    }
    let anonymous = auther.is_none();
    let deps = HandlerDeps { router, auther };
    let kind = kinds().handler(handler_type).ok_or_else(|| {
        svc_err(
            cfg,
            format!("handler type '{handler_type}' is not supported"),
        )
    })?;
    let handler = (kind.build)(root, cfg, deps)?;
    let handler = match handler_observer {
        Some(name) => {
            let sink = named_sink(root, cfg, name)?;
            let reporter = handler_options(cfg, |md| {
                gost_service::observer::reporter::Reporter::from_metadata(sink, md)
            })?;
            match tunnel_clients(handler_type, &cfg.name) {
                Some(source) => {
                    gost_service::observer::clients::reported(handler, &cfg.name, reporter, source)
                }
                None => gost_service::observer::clients::observed(
                    handler, &cfg.name, reporter, anonymous,
                ),
            }
        }
        None => handler,
    };
    Ok(Parts {
        pipeline: Pipeline {
            handler,
            admission,
            limiters,
            recorders: gost_core::recorder::for_service(root, cfg)
                .map_err(|e| svc_err(cfg, e.to_string()))?,
        },
        hooks,
        grace,
        enable_stats,
        observer: build_observer(root, cfg)?,
    })
}

pub(crate) fn bind_listener(
    root: &Config,
    cfg: &ServiceConfig,
) -> Result<Box<dyn Listener>, BuildError> {
    let default = ListenerConfig::default();
    let lcfg = cfg.listener.as_ref().unwrap_or(&default);
    let Some(kind) = registry().listener(lcfg.r#type.trim()) else {
        return Err(svc_err(
            cfg,
            format!("listener type '{}' is not supported", lcfg.r#type),
        ));
    };
    // The transport is built before binding: a bad certificate stops the
    // service with a message naming the file, with nothing bound.
    let (socket, build_upgrade) = match kind.socket {
        Socket::Dns => dns_listener_socket(cfg, lcfg)?,
        s => (s, kind.upgrade),
    };
    let upgrade = match build_upgrade {
        Some(build) => Some(build(lcfg, root).map_err(|e| svc_err(cfg, format!("listener: {e}")))?),
        None => None,
    };
    let lmd = cfg.listener.as_ref().map(|l| &l.metadata);
    // A unix socket's address is a path, not a host and port.
    let addr = match socket {
        Socket::Unix | Socket::ReverseUnix | Socket::Stdio | Socket::Serial => {
            gost_core::context::UNIX_PEER
        }
        _ => resolve_bind_addr(&cfg.addr)
            .map_err(|e| svc_err(cfg, format!("addr \"{}\": {e}", cfg.addr)))?,
    };
    let bind_err = |source| BuildError::Bind {
        service: cfg.name.clone(),
        addr: cfg.addr.clone(),
        source,
    };
    let listener: Box<dyn Listener> = match socket {
        Socket::Tcp | Socket::Dns => {
            let backlog = match lmd {
                Some(m) => m
                    .get_int("backlog")
                    .map_err(|e| md_err(cfg, "listener.metadata", e))?,
                None => None,
            };
            Box::new(
                TcpListen::bind(addr, backlog.filter(|b| *b > 0).unwrap_or(1024) as u32)
                    .map_err(bind_err)?
                    .with_upgrade(upgrade),
            )
        }
        Socket::Redirect => {
            let empty = gost_core::metadata::Metadata::default();
            let m = lmd.unwrap_or(&empty);
            let flag = |k: &str| {
                m.get_bool(k)
                    .map_err(|e| md_err(cfg, "listener.metadata", e))
            };
            if flag("mptcp")?.unwrap_or(false) {
                return Err(svc_err(cfg, "listener.metadata: mptcp is not supported"));
            }
            let opts = gost_transport::listener::tcp::ListenOpts {
                transparent: flag("tproxy")?.unwrap_or(false),
                reuse_port: flag("reuseport")?.unwrap_or(false),
            };
            let backlog = m
                .get_int("backlog")
                .map_err(|e| md_err(cfg, "listener.metadata", e))?;
            Box::new(
                TcpListen::bind_with(
                    addr,
                    backlog.filter(|b| *b > 0).unwrap_or(1024) as u32,
                    opts,
                )
                .map_err(bind_err)?,
            )
        }
        Socket::RedirectUdp => {
            // GOST's redu sessions idle out after 30s unless `ttl` says.
            let dflt = UdpOptions {
                ttl: std::time::Duration::from_secs(30),
                ..UdpOptions::default()
            };
            let opts = match lmd {
                Some(m) => {
                    udp_options_from(m, dflt).map_err(|e| md_err(cfg, "listener.metadata", e))?
                }
                None => dflt,
            };
            Box::new(
                gost_transport::listener::redu::RedirectUdpListen::bind(addr, opts)
                    .map_err(bind_err)?,
            )
        }
        Socket::Udp => {
            let opts = match lmd {
                Some(m) => udp_options(m).map_err(|e| md_err(cfg, "listener.metadata", e))?,
                None => UdpOptions::default(),
            };
            Box::new(UdpListen::bind(addr, opts).map_err(bind_err)?)
        }
        #[cfg(feature = "tun")]
        Socket::Tun | Socket::Tap => {
            let empty = gost_core::metadata::Metadata::default();
            let (kind, config) = if socket == Socket::Tap {
                (
                    "tap",
                    gost_transport::tun::TunConfig::tap_from_metadata(lmd.unwrap_or(&empty)),
                )
            } else {
                (
                    "tun",
                    gost_transport::tun::TunConfig::from_metadata(lmd.unwrap_or(&empty)),
                )
            };
            let config = config.map_err(|e| svc_err(cfg, e))?;
            let handler = cfg
                .handler
                .as_ref()
                .map(|h| h.r#type.as_str())
                .unwrap_or_default();
            if handler != kind {
                return Err(svc_err(
                    cfg,
                    format!(
                        "the {kind} listener works with the {kind} handler only, not {handler:?}"
                    ),
                ));
            }
            Box::new(gost_transport::tun::TunListen::bind(addr, config).map_err(bind_err)?)
        }
        #[cfg(not(feature = "tun"))]
        Socket::Tun | Socket::Tap => {
            return Err(svc_err(
                cfg,
                "listener types 'tun' and 'tap' need the tun feature, which this build lacks",
            ))
        }
        Socket::Stdio => Box::new(gost_transport::stdio::StdioListen::default()),
        #[cfg(feature = "serial")]
        Socket::Serial => {
            let read_timeout = match lmd {
                Some(m) => gost_transport::serial::read_timeout_from(
                    m,
                    &["timeout", "serial.timeout", "listener.serial.timeout"],
                )
                .map_err(|e| md_err(cfg, "listener.metadata", e))?,
                None => None,
            };
            Box::new(
                gost_transport::serial::SerialListen::bind(&cfg.addr, read_timeout)
                    .map_err(bind_err)?,
            )
        }
        #[cfg(not(feature = "serial"))]
        Socket::Serial => {
            return Err(svc_err(
                cfg,
                "listener type 'serial' needs the serial feature, which this build lacks",
            ))
        }
        Socket::Unix => {
            let mode = match lmd {
                Some(m) => gost_transport::unix::mode_from_metadata(m)
                    .map_err(|e| md_err(cfg, "listener.metadata", e))?,
                None => None,
            };
            Box::new(gost_transport::unix::UnixListen::bind(&cfg.addr, mode).map_err(bind_err)?)
        }
        #[cfg(feature = "mux")]
        Socket::ReverseUnix => {
            let router = reverse_router(root, cfg)?;
            let mux = match lmd {
                Some(m) => gost_transport::mux::MuxConfig::from_metadata(m, 1)
                    .map_err(|e| svc_err(cfg, format!("listener.metadata: {e}")))?,
                None => gost_transport::mux::MuxConfig::default(),
            };
            Box::new(gost_chain::reverse::RtcpListener::unix(
                router, &cfg.addr, mux,
            ))
        }
        #[cfg(not(feature = "mux"))]
        Socket::ReverseUnix => {
            return Err(svc_err(
                cfg,
                "listener type 'runix' needs the mux feature, which this build lacks",
            ))
        }
        #[cfg(feature = "mux")]
        Socket::ReverseTcp => {
            let router = reverse_router(root, cfg)?;
            let mux = match lmd {
                Some(m) => gost_transport::mux::MuxConfig::from_metadata(m, 1)
                    .map_err(|e| svc_err(cfg, format!("listener.metadata: {e}")))?,
                None => gost_transport::mux::MuxConfig::default(),
            };
            Box::new(gost_chain::reverse::RtcpListener::new(
                router, &cfg.addr, mux,
            ))
        }
        #[cfg(not(feature = "mux"))]
        Socket::ReverseTcp => {
            return Err(svc_err(
                cfg,
                "listener type 'rtcp' needs the mux feature, which this build lacks",
            ))
        }
        Socket::ReverseUdp => {
            let router = reverse_router(root, cfg)?;
            let opts = match lmd {
                Some(m) => udp_options(m).map_err(|e| md_err(cfg, "listener.metadata", e))?,
                None => UdpOptions::default(),
            };
            // GOST's rudp sessions live until their ttl, replies or not.
            let opts = UdpOptions {
                keepalive: true,
                ..opts
            };
            Box::new(gost_chain::reverse::RudpListener::new(
                router, &cfg.addr, opts,
            ))
        }
    };
    Ok(listener)
}

/// What a reverse listener binds through: its own chain, which it needs.
fn reverse_router(root: &Config, cfg: &ServiceConfig) -> Result<Router, BuildError> {
    let router = gost_chain::router::build_for_listener(root, cfg, registry())
        .map_err(|e| svc_err(cfg, e.to_string()))?;
    if router.chain.is_none() {
        return Err(svc_err(
            cfg,
            "a reverse listener (rtcp, rudp, runix) needs listener.chain: the port is bound on the chain's last node",
        ));
    }
    Ok(router)
}

/// What GOST's `dns` listener binds for its `mode`: UDP (the default),
/// TCP, or TCP with the `tls` listener's handshake (DNS over TLS).
fn dns_listener_socket(
    cfg: &ServiceConfig,
    lcfg: &ListenerConfig,
) -> Result<(Socket, Option<gost_transport::kinds::BuildUpgrade>), BuildError> {
    let mode = lcfg
        .metadata
        .get_string("mode")
        .map_err(|e| md_err(cfg, "listener.metadata", e))?
        .unwrap_or_default();
    match mode.to_ascii_lowercase().as_str() {
        "" | "udp" => Ok((Socket::Udp, None)),
        "tcp" => Ok((Socket::Tcp, None)),
        "tls" => match registry().listener("tls") {
            Some(tls) => Ok((Socket::Tcp, tls.upgrade)),
            None => Err(svc_err(cfg, "dns listener mode tls: this build has no tls")),
        },
        "https" => Err(svc_err(
            cfg,
            "dns listener mode https (DNS over HTTPS) is not supported yet; use udp, tcp or tls",
        )),
        other => Err(svc_err(
            cfg,
            format!("dns listener mode {other:?} is not one of udp, tcp, tls"),
        )),
    }
}

/// The addresses of the forwarder's nodes (its own, or its hop's), for
/// handlers that dial them themselves (`tun`, `tap`).
#[cfg(feature = "tun")]
fn forwarder_addrs(root: &Config, cfg: &ServiceConfig) -> Result<Vec<String>, BuildError> {
    let Some(fwd) = &cfg.forwarder else {
        return Ok(Vec::new());
    };
    let addrs: Vec<String> = if fwd.hop.is_empty() {
        fwd.nodes.iter().map(|n| n.addr.clone()).collect()
    } else {
        root.hops
            .iter()
            .find(|h| h.name == fwd.hop)
            .ok_or_else(|| svc_err(cfg, format!("forwarder.hop \"{}\" not found", fwd.hop)))?
            .nodes
            .iter()
            .map(|n| n.addr.clone())
            .collect()
    };
    for a in &addrs {
        if gost_core::addr::split_host_port(a).is_err() {
            return Err(svc_err(
                cfg,
                format!(
                    "forwarder node {a:?}: needs host:port (GOST's raw IP tunnel is not supported)"
                ),
            ));
        }
    }
    Ok(addrs)
}

/// The service's auther, as GOST picks it: the named `handler.auther` and
/// `handler.authers` (tried in order), or else `handler.auth`
/// (`user:pass@` on `-L`). Names were checked by `Config::validate`.
fn build_auther(root: &Config, cfg: &ServiceConfig) -> Result<Option<Arc<dyn Auther>>, BuildError> {
    let Some(h) = cfg.handler.as_ref() else {
        return Ok(None);
    };
    gost_core::auth::from_config(root, &h.auther, &h.authers, h.auth.as_ref())
        .map_err(|e| svc_err(cfg, e.to_string()))
}

/// An auther of the top-level `authers` section.
pub fn named_auther(a: &AutherConfig) -> Result<Arc<dyn Auther>, String> {
    gost_core::auth::named(a).map_err(|e| e.to_string())
}

/// Parses the handler's metadata into a handler's typed options.
fn handler_options<T>(
    cfg: &ServiceConfig,
    parse: impl FnOnce(&gost_core::metadata::Metadata) -> Result<T, MetadataError>,
) -> Result<T, BuildError> {
    let empty = gost_core::metadata::Metadata::default();
    let md = cfg.handler.as_ref().map(|h| &h.metadata).unwrap_or(&empty);
    parse(md).map_err(|e| md_err(cfg, "handler.metadata", e))
}

/// The handler's `mux.*` for the session of a multiplexed BIND (smux
/// version 1 unless set, as GOST's handlers have it).
#[cfg(feature = "mux")]
fn bind_mux(cfg: &ServiceConfig) -> Result<gost_transport::mux::MuxConfig, BuildError> {
    let empty = gost_core::metadata::Metadata::default();
    let md = cfg.handler.as_ref().map(|h| &h.metadata).unwrap_or(&empty);
    gost_transport::mux::MuxConfig::from_metadata(md, 1)
        .map_err(|e| svc_err(cfg, format!("handler.metadata: {e}")))
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
    #[allow(unused_mut)]
    let mut opts = handler_options(cfg, Socks5Options::from_metadata)?;
    #[cfg(feature = "mux")]
    {
        opts.mux = bind_mux(cfg)?;
    }
    Ok(Socks5Handler::new(deps.router, deps.auther, opts))
}

/// A Shadowsocks handler's cipher: `handler.auth` gives the method
/// (username) and password, which `ss://method:password@` on `-L` fills;
/// `users` metadata the 2022 identity users.
#[cfg(feature = "ss")]
fn ss_cipher(
    cfg: &ServiceConfig,
    kind: &'static str,
) -> Result<gost_chain::ss::Cipher, BuildError> {
    let empty = gost_core::metadata::Metadata::default();
    let h = cfg.handler.as_ref();
    let md = h.map(|h| &h.metadata).unwrap_or(&empty);
    let auth = h
        .and_then(|h| h.auth.as_ref())
        .map(|a| (a.username.as_str(), a.password.as_str()));
    let cipher =
        gost_chain::ss::Cipher::server(kind, auth, md).map_err(|e| svc_err(cfg, e.to_string()))?;
    if md.contains_key("hash") {
        return Err(svc_err(
            cfg,
            format!("{kind}: metadata \"hash\" (node selection by target host) is not supported"),
        ));
    }
    // GOST v2's `key` (the raw key instead of the password) is parsed and
    // then ignored by GOST v3; say so rather than ignore it silently too.
    if md.contains_key("key") {
        tracing::warn!(service = %cfg.name, handler = kind, "metadata \"key\" ignored, as GOST v3 does: the key comes from the password");
    }
    Ok(cipher)
}

/// With a forwarder, relay sends every request to the forwarder's nodes.
fn build_relay(
    root: &Config,
    cfg: &ServiceConfig,
    deps: HandlerDeps,
) -> Result<RelayHandler, BuildError> {
    #[allow(unused_mut)]
    let mut opts = handler_options(cfg, RelayHandlerOptions::from_metadata)?;
    #[cfg(feature = "mux")]
    {
        opts.mux = bind_mux(cfg)?;
    }
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
        gost_plugin::PluginSpec::from_config(plugin).map_err(|e| svc_err(cfg, e.to_string()))?;
    // On a UDP listener the plugin is of the datagram world.
    let udp = cfg
        .listener
        .as_ref()
        .and_then(|l| registry().listener(l.r#type.trim()))
        .is_some_and(|k| k.socket == Socket::Udp);
    if udp {
        let h = gost_plugin::datagram::build(spec, &cfg.name, deps.router)
            .map_err(|e| svc_err(cfg, e.to_string()))?;
        return Ok(h);
    }
    let opts = handler_options(cfg, gost_plugin::handler::WasmHandlerOptions::from_metadata)?;
    let h = gost_plugin::handler::build(spec, &cfg.name, deps, opts)
        .map_err(|e| svc_err(cfg, e.to_string()))?;
    Ok(h)
}

/// The router a `tun` listener names (`router`, `tun.router`), put in
/// its slot now: the running server reads routes from the slot, so a
/// changed router takes effect without a new device.
#[cfg(feature = "tun")]
fn tun_router(
    root: &Config,
    cfg: &ServiceConfig,
) -> Result<Option<gost_core::router::Slot>, BuildError> {
    let empty = gost_core::metadata::Metadata::default();
    let md = cfg.listener.as_ref().map_or(&empty, |l| &l.metadata);
    let tun = gost_transport::tun::TunConfig::from_metadata(md).map_err(|e| svc_err(cfg, e))?;
    let Some(name) = tun.router else {
        return Ok(None);
    };
    let rc = root
        .routers
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| svc_err(cfg, format!("listener: router \"{name}\" not found")))?;
    let router =
        gost_core::router::Router::from_config(rc).map_err(|e| svc_err(cfg, e.to_string()))?;
    Ok(Some(gost_core::router::publish(router)))
}

/// An ingress of the `ingresses` section; its endpoints must be tunnel
/// ids.
fn build_ingress(
    cfg: &gost_core::config::IngressConfig,
) -> Result<gost_core::ingress::Ingress, gost_core::ingress::IngressError> {
    gost_core::ingress::Ingress::from_config(cfg, |e| {
        gost_proto::tunnel::TunnelId::parse(e).is_some()
    })
}

/// `handler: {type: tunnel}`: the ingress it names (`ingress`) or its
/// inline `tunnel` rules, and its entry point, bound now.
/// The tunnel handler reports each tunnel id as a client (GOST's tunnel
/// handler stats: its visitors' connections and bytes).
#[cfg(feature = "tunnel")]
fn tunnel_clients(
    handler_type: &str,
    service: &str,
) -> Option<gost_service::observer::clients::ClientSource> {
    if handler_type != "tunnel" {
        return None;
    }
    let service = service.to_string();
    Some(Box::new(move || {
        let all = gost_handler::tunnel::tunnel_counts();
        Some(
            all.into_iter()
                .filter(|(name, ..)| *name == service)
                .flat_map(|(_, _, tunnels)| tunnels.into_iter().map(|(t, _, s)| (t, s)))
                .collect(),
        )
    }))
}

#[cfg(not(feature = "tunnel"))]
fn tunnel_clients(
    _handler_type: &str,
    _service: &str,
) -> Option<gost_service::observer::clients::ClientSource> {
    None
}

#[cfg(feature = "tunnel")]
fn build_tunnel(
    root: &Config,
    cfg: &ServiceConfig,
    deps: HandlerDeps,
) -> Result<Arc<dyn Handler>, BuildError> {
    use gost_handler::tunnel::{TunnelHandler, TunnelOptions};
    let empty = gost_core::metadata::Metadata::default();
    let md = cfg.handler.as_ref().map_or(&empty, |h| &h.metadata);
    let opts =
        TunnelOptions::from_metadata(md).map_err(|e| svc_err(cfg, format!("handler: {e}")))?;
    let ingress_named = |name: &str, key: &str| -> Result<Arc<_>, BuildError> {
        let i = root
            .ingresses
            .iter()
            .find(|i| i.name == name)
            .ok_or_else(|| svc_err(cfg, format!("handler: {key}: ingress \"{name}\" not found")))?;
        Ok(Arc::new(
            build_ingress(i).map_err(|e| svc_err(cfg, e.to_string()))?,
        ))
    };
    let ingress = match &opts.ingress {
        Some(name) => Some(ingress_named(name, "ingress")?),
        None => None,
    };
    let entry_ingresses = opts
        .entrypoints
        .iter()
        .map(|e| {
            e.ingress
                .as_deref()
                .map(|name| ingress_named(name, "entrypoints"))
                .transpose()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let sd = match &opts.sd {
        Some(name) => {
            let c = root
                .sds
                .iter()
                .find(|s| s.name == *name)
                .ok_or_else(|| svc_err(cfg, format!("handler: sd: sd \"{name}\" not found")))?;
            Some(gost_core::sd::from_config(c).map_err(|e| svc_err(cfg, e.to_string()))?)
        }
        None => None,
    };
    let h = TunnelHandler::new(&cfg.name, opts, ingress, entry_ingresses, deps.auther, sd)
        .map_err(|e| svc_err(cfg, format!("handler: tunnel entry point: {e}")))?;
    Ok(Arc::new(h))
}

fn udp_options(md: &gost_core::metadata::Metadata) -> Result<UdpOptions, MetadataError> {
    udp_options_from(md, UdpOptions::default())
}

/// The UDP listener keys over defaults `d`.
fn udp_options_from(
    md: &gost_core::metadata::Metadata,
    d: UdpOptions,
) -> Result<UdpOptions, MetadataError> {
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
    gost_chain::chain::build::selector(&format!("service \"{}\"", cfg.name), sel)
        .map_err(|e| BuildError::Invalid(e.to_string()))
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
    let err = |e: gost_plugin::PluginError| svc_err(cfg, format!("hop \"{}\": {e}", hop.name));
    let spec = gost_plugin::PluginSpec::from_config(plugin).map_err(err)?;
    let path = spec.path.clone();
    let fwd = gost_plugin::forwarder::WasmForwardHandler::new(
        &hop.name,
        &cfg.name,
        spec,
        nodes,
        router,
        opts.idle_timeout,
    )
    .map_err(err)?;
    Ok(gost_plugin::reload::watched(fwd, path))
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
    let mut loader = None;
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
        loader = forwarder_loader(root, cfg, hop)?;
        (
            hop.name.clone(),
            nodes,
            hop.selector.as_ref().or(fwd.selector.as_ref()),
        )
    } else {
        (cfg.name.clone(), fwd.nodes.clone(), fwd.selector.as_ref())
    };
    if node_cfgs.is_empty() && loader.is_none() {
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
        loader,
    };
    let h = cfg.handler.as_ref();
    let md = h.map(|h| &h.metadata).cloned().unwrap_or_default();
    let mut opts = ForwardOptions::from_metadata(&md, h.map(|h| h.retries).unwrap_or(0))
        .map_err(|e| md_err(cfg, "handler.metadata", e))?;
    if !cfg.cache.is_empty() {
        let store = cache_store(root, cfg)?;
        let policy = gost_handler::httpcache::HttpCache::from_metadata(store, &md)
            .map_err(|e| md_err(cfg, "handler.metadata", e))?;
        opts.cache = Some(Arc::new(policy));
    }
    let hop = Arc::new(hop);
    gost_chain::chain::health::watch_forwarder(&cfg.name, &hop);
    Ok(ForwardHandler::new(hop, router, opts))
}

/// The named store a service's `cache` names: `memory` (GOST reads it
/// first), shared with every other service naming it while its config
/// stays the same (a changed config starts a new, empty store), or
/// `redis`.
fn cache_store(
    root: &Config,
    cfg: &ServiceConfig,
) -> Result<gost_handler::httpcache::Store, BuildError> {
    use gost_handler::httpcache::{MemoryStore, RedisStore, Store};
    type Stores = std::collections::HashMap<
        String,
        (gost_core::config::MemoryCache, std::sync::Weak<MemoryStore>),
    >;
    static STORES: std::sync::Mutex<Option<Stores>> = std::sync::Mutex::new(None);
    let c = root
        .caches
        .iter()
        .find(|c| c.name == cfg.cache)
        .ok_or_else(|| svc_err(cfg, format!("cache \"{}\" not found", cfg.cache)))?;
    let mem = match (&c.memory, &c.redis) {
        (Some(m), _) => m.clone(),
        (None, Some(r)) if !r.addr.is_empty() => {
            return Ok(Store::Redis(Arc::new(RedisStore::from_config(r))))
        }
        _ => {
            return Err(svc_err(
                cfg,
                format!("cache \"{}\" needs a memory block or redis.addr", c.name),
            ))
        }
    };
    let mut stores = STORES.lock().unwrap_or_else(|p| p.into_inner());
    let stores = stores.get_or_insert_with(Default::default);
    stores.retain(|_, (_, w)| w.strong_count() > 0);
    if let Some(store) = stores
        .get(&c.name)
        .filter(|(m, _)| *m == mem)
        .and_then(|(_, w)| w.upgrade())
    {
        return Ok(Store::Memory(store));
    }
    let store = Arc::new(
        MemoryStore::from_config(&mem)
            .map_err(|e| svc_err(cfg, format!("cache \"{}\": {e}", c.name)))?,
    );
    stores.insert(c.name.clone(), (mem, Arc::downgrade(&store)));
    Ok(Store::Memory(store))
}

/// Every kind of object this build makes from config: the registry of
/// listeners, dialers and connectors (handed down to what builds chains
/// and listeners) and, kept here at the top since a handler is built from
/// everything below it (router, auther, plugins), the handlers.
pub struct Kinds {
    pub registry: &'static Registry,
    handlers: Vec<HandlerKind>,
}

impl Kinds {
    pub fn add_handler(&mut self, kind: HandlerKind) {
        self.handlers.push(kind);
    }

    /// The handler a config names; an empty type is GOST's `auto`.
    pub fn handler(&self, name: &str) -> Option<&HandlerKind> {
        let name = if name.is_empty() { "auto" } else { name };
        self.handlers.iter().find(|k| k.names.contains(&name))
    }

    pub fn handlers(&self) -> &[HandlerKind] {
        &self.handlers
    }

    /// The names of the handlers that have a capability.
    pub fn handler_names(&self, cap: impl Fn(&HandlerCaps) -> bool) -> Vec<&'static str> {
        self.handlers
            .iter()
            .filter(|k| cap(&k.caps))
            .flat_map(|k| k.names)
            .copied()
            .collect()
    }
}

/// What a handler does besides its protocol, for refusals and the docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct HandlerCaps {
    /// Serves datagrams (a `udp` listener's sessions, or UDP relayed for
    /// its clients).
    pub udp: bool,
    /// Uses the service's `forwarder`.
    pub forwarder: bool,
    /// Honours `sniffing`.
    pub sniffing: bool,
    /// Reports per-client stats to `handler.observer`.
    pub observer: bool,
    /// Serves BIND (a port on this host for the client's peer).
    pub bind: bool,
}

pub type BuildHandler =
    fn(&Config, &ServiceConfig, HandlerDeps) -> Result<Arc<dyn Handler>, BuildError>;

pub struct HandlerKind {
    pub names: &'static [&'static str],
    pub caps: HandlerCaps,
    pub build: BuildHandler,
    pub summary: &'static str,
}

/// What this build has: every listener, dialer, connector and handler.
pub fn kinds() -> &'static Kinds {
    static KINDS: OnceLock<Kinds> = OnceLock::new();
    KINDS.get_or_init(|| {
        let mut kinds = Kinds {
            registry: Box::leak(Box::new(Registry::builtin_with(gost_plugin::register))),
            handlers: Vec::new(),
        };
        register(&mut kinds);
        kinds
    })
}

/// The registry of listeners, dialers and connectors.
pub fn registry() -> &'static Registry {
    kinds().registry
}

/// The handlers this build has, as GOST names them.
fn register(r: &mut Kinds) {
    let forwarding: fn(&Config, &ServiceConfig, HandlerDeps) -> _ =
        |root, cfg, deps| build_forwarding(root, cfg, deps.router);
    r.add_handler(HandlerKind {
        names: &["tcp", "forward"],
        caps: HandlerCaps {
            forwarder: true,
            sniffing: true,
            ..Default::default()
        },
        build: forwarding,
        summary: "TCP port forwarding to the forwarder's nodes",
    });
    r.add_handler(HandlerKind {
        names: &["udp"],
        caps: HandlerCaps {
            udp: true,
            forwarder: true,
            ..Default::default()
        },
        build: forwarding,
        summary: "UDP port forwarding, a session per client address",
    });
    r.add_handler(HandlerKind {
        names: &["rtcp"],
        caps: HandlerCaps {
            forwarder: true,
            sniffing: true,
            ..Default::default()
        },
        build: forwarding,
        summary:
            "reverse TCP forwarding: an `rtcp` listener's connections to the forwarder's nodes",
    });
    r.add_handler(HandlerKind {
        names: &["rudp"],
        caps: HandlerCaps {
            udp: true,
            forwarder: true,
            ..Default::default()
        },
        build: forwarding,
        summary: "reverse UDP forwarding: an `rudp` listener's sessions to the forwarder's nodes",
    });
    #[cfg(feature = "mux")]
    r.add_handler(HandlerKind {
        names: &["runix"],
        caps: HandlerCaps {
            forwarder: true,
            sniffing: true,
            ..Default::default()
        },
        build: forwarding,
        summary: "reverse unix socket forwarding: a `runix` listener's connections to the forwarder's nodes over TCP",
    });
    r.add_handler(HandlerKind {
        names: &["red", "redir", "redirect"],
        caps: HandlerCaps {
            sniffing: true,
            ..Default::default()
        },
        build: |_, cfg, deps| {
            let opts =
                handler_options(cfg, gost_handler::redirect::RedirectOptions::from_metadata)?;
            Ok(Arc::new(gost_handler::redirect::RedirectHandler::new(
                deps.router,
                opts,
            )))
        },
        summary: "transparent TCP proxy: the original destination from SO_ORIGINAL_DST (REDIRECT) or, with `tproxy`, the socket (TPROXY); `sniffing` routes by Host/SNI",
    });
    r.add_handler(HandlerKind {
        names: &["redu"],
        caps: HandlerCaps {
            udp: true,
            ..Default::default()
        },
        build: |_, _, deps| Ok(Arc::new(gost_handler::redu::RedirectUdpHandler::new(deps.router))),
        summary: "transparent UDP proxy: each `redu` session to its original destination, directly or through the chain",
    });
    #[cfg(feature = "tun")]
    r.add_handler(HandlerKind {
        names: &["tun"],
        caps: HandlerCaps {
            udp: true,
            forwarder: true,
            ..Default::default()
        },
        build: |root, cfg, deps| {
            let listener = cfg.listener.as_ref().map(|l| l.r#type.as_str()).unwrap_or_default();
            if listener != "tun" {
                return Err(svc_err(
                    cfg,
                    format!("the tun handler works with the tun listener only, not {listener:?}"),
                ));
            }
            let opts = handler_options(cfg, gost_handler::tun::TunOptions::from_metadata)?;
            Ok(Arc::new(gost_handler::tun::TunHandler::new(
                deps.router,
                deps.auther,
                forwarder_addrs(root, cfg)?,
                opts,
                tun_router(root, cfg)?,
            )))
        },
        summary: "GOST's TUN tunnel: the `tun` listener's device joined to a UDP tunnel of IP packets; a client (with a forwarder: the server) or the server",
    });
    #[cfg(feature = "tun")]
    r.add_handler(HandlerKind {
        names: &["tap"],
        caps: HandlerCaps {
            udp: true,
            forwarder: true,
            ..Default::default()
        },
        build: |root, cfg, deps| {
            let listener = cfg.listener.as_ref().map(|l| l.r#type.as_str()).unwrap_or_default();
            if listener != "tap" {
                return Err(svc_err(
                    cfg,
                    format!("the tap handler works with the tap listener only, not {listener:?}"),
                ));
            }
            let key = handler_options(cfg, |m| m.get_string("key"))?;
            if key.is_some_and(|k| !k.is_empty()) {
                return Err(svc_err(
                    cfg,
                    "tap handler: `key` (GOST's Shadowsocks cipher on the frames) is not supported; use an encrypted chain",
                ));
            }
            Ok(Arc::new(gost_handler::tap::TapHandler::new(
                deps.router,
                forwarder_addrs(root, cfg)?,
            )))
        },
        summary: "GOST's TAP tunnel: the `tap` listener's device joined to a UDP tunnel of Ethernet frames; a client (with a forwarder: the server) or the server",
    });
    r.add_handler(HandlerKind {
        names: &["unix"],
        caps: HandlerCaps {
            forwarder: true,
            ..Default::default()
        },
        build: |root, cfg, deps| {
            let opts = handler_options(cfg, gost_handler::unix::UnixOptions::from_metadata)?;
            let forward = match &cfg.forwarder {
                Some(_) => Some(build_forward_handler(root, cfg, deps.router.clone())?),
                None => None,
            };
            Ok(Arc::new(gost_handler::unix::UnixHandler::new(
                deps.router,
                forward,
                opts,
            )))
        },
        summary: "to a unix socket: the forwarder's node (a path), or through the chain to its last node",
    });
    #[cfg(feature = "serial")]
    r.add_handler(HandlerKind {
        names: &["serial"],
        caps: HandlerCaps {
            forwarder: true,
            ..Default::default()
        },
        build: |root, cfg, deps| {
            let opts = handler_options(cfg, gost_handler::serial::SerialOptions::from_metadata)?;
            let forward = match &cfg.forwarder {
                Some(_) if deps.router.chain.is_some() => {
                    return Err(svc_err(
                        cfg,
                        "serial handler: a forwarder's serial port through a chain (a remote port behind a relay node) is not supported; forward to a port on this host, or send the connection through the chain without a forwarder",
                    ))
                }
                Some(_) => {
                    // The ports' settings are the service's own on a
                    // serial listener, GOST's defaults elsewhere.
                    let listener = cfg.listener.as_ref().map(|l| l.r#type.as_str());
                    let port = if listener == Some("serial") {
                        gost_transport::serial::SerialConfig::parse(&cfg.addr)
                            .map_err(|e| svc_err(cfg, e.to_string()))?
                    } else {
                        gost_transport::serial::SerialConfig {
                            name: String::new(),
                            baud: gost_transport::serial::DEFAULT_BAUD,
                            parity: Default::default(),
                        }
                    };
                    Some((build_forward_handler(root, cfg, deps.router.clone())?, port))
                }
                None => None,
            };
            Ok(Arc::new(gost_handler::serial::SerialHandler::new(
                deps.router,
                forward,
                opts,
            )))
        },
        summary: "to a serial port on this host (the forwarder's node, with the service's baud rate and parity), or through the chain to its last node",
    });
    r.add_handler(HandlerKind {
        names: &["http"],
        caps: HandlerCaps {
            sniffing: true,
            observer: true,
            ..Default::default()
        },
        build: |_, cfg, deps| Ok(Arc::new(build_http_handler(cfg, deps)?)),
        summary: "HTTP proxy: CONNECT and plain requests, keep-alive, `auth`",
    });
    #[cfg(feature = "h2")]
    r.add_handler(HandlerKind {
        names: &["http2"],
        caps: HandlerCaps::default(),
        build: |_, cfg, deps| {
            let opts = handler_options(cfg, gost_handler::http2::Http2Options::from_metadata)?;
            Ok(Arc::new(gost_handler::http2::Http2Handler::new(
                deps.router,
                deps.auther,
                opts,
            )))
        },
        summary: "HTTP/2 proxy over the `http2` listener: CONNECT and plain requests, `auth`",
    });
    r.add_handler(HandlerKind {
        names: &["socks4", "socks4a"],
        caps: HandlerCaps {
            sniffing: true,
            observer: true,
            ..Default::default()
        },
        build: |_, cfg, deps| Ok(Arc::new(build_socks4(cfg, deps)?)),
        summary: "SOCKS4 and SOCKS4a CONNECT",
    });
    r.add_handler(HandlerKind {
        names: &["socks5", "socks"],
        caps: HandlerCaps {
            udp: true,
            sniffing: true,
            observer: true,
            bind: true,
            ..Default::default()
        },
        build: |_, cfg, deps| Ok(Arc::new(build_socks5(cfg, deps)?)),
        summary: "SOCKS5 CONNECT, BIND, UDP ASSOCIATE and GOST's UDP-over-TCP",
    });
    r.add_handler(HandlerKind {
        names: &["auto"],
        caps: HandlerCaps {
            sniffing: true,
            observer: true,
            ..Default::default()
        },
        // As GOST's auto: all three handlers get the same metadata.
        build: |_, cfg, deps| {
            Ok(Arc::new(AutoHandler::new(
                build_http_handler(cfg, deps.clone())?,
                Arc::new(build_socks4(cfg, deps.clone())?),
                Arc::new(build_socks5(cfg, deps)?),
            )))
        },
        summary: "HTTP, SOCKS4 and SOCKS5 on one port, by the first byte",
    });
    r.add_handler(HandlerKind {
        names: &["relay"],
        caps: HandlerCaps {
            udp: true,
            forwarder: true,
            observer: true,
            bind: true,
            ..Default::default()
        },
        build: |root, cfg, deps| Ok(Arc::new(build_relay(root, cfg, deps)?)),
        summary: "GOST's relay protocol, TCP and UDP, with a forwarder or not",
    });
    #[cfg(feature = "ss")]
    r.add_handler(HandlerKind {
        names: &["ss"],
        caps: HandlerCaps::default(),
        build: |_, cfg, deps| {
            let opts = handler_options(cfg, gost_handler::ss::SsOptions::from_metadata)?;
            let cipher = ss_cipher(cfg, "ss")?;
            Ok(Arc::new(gost_handler::ss::SsHandler::new(
                deps.router,
                cipher,
                opts,
            )))
        },
        summary: "Shadowsocks TCP: AEAD and 2022 ciphers, 2022 `users`; replays and probes get no answer",
    });
    #[cfg(feature = "ss")]
    r.add_handler(HandlerKind {
        names: &["ssu"],
        caps: HandlerCaps {
            udp: true,
            ..Default::default()
        },
        build: |_, cfg, deps| {
            let opts = handler_options(cfg, gost_handler::ssu::SsuOptions::from_metadata)?;
            let cipher = ss_cipher(cfg, "ssu")?;
            Ok(Arc::new(gost_handler::ssu::SsuHandler::new(
                deps.router,
                cipher,
                opts,
            )))
        },
        summary:
            "Shadowsocks UDP on a `udp` listener, or GOST's UDP-over-TCP in a Shadowsocks stream",
    });
    r.add_handler(HandlerKind {
        names: &["wasm"],
        caps: HandlerCaps {
            udp: true,
            observer: true,
            ..Default::default()
        },
        build: |_, cfg, deps| build_wasm_handler(cfg, deps),
        summary: "a WebAssembly component of the `handler` world; of the `datagram` world on a `udp` listener",
    });
    r.add_handler(HandlerKind {
        names: &["file"],
        caps: HandlerCaps::default(),
        build: |_, cfg, deps| {
            let opts = handler_options(cfg, FileOptions::from_metadata)?;
            let h = FileHandler::new(opts, deps.auther).map_err(|e| svc_err(cfg, e.to_string()))?;
            Ok(Arc::new(h))
        },
        summary: "static files from `file.dir`, uploads with `file.put`, Basic auth by the auther",
    });
    #[cfg(feature = "ssh")]
    r.add_handler(HandlerKind {
        names: &["sshd"],
        caps: HandlerCaps::default(),
        build: |_, cfg, deps| {
            let opts = handler_options(cfg, gost_handler::sshd::SshdOptions::from_metadata)?;
            Ok(Arc::new(gost_handler::sshd::SshdHandler::new(deps.router, opts)))
        },
        summary: "the sshd listener's port forwarding: `direct-tcpip` through the router, `tcpip-forward` bound on this host",
    });
    r.add_handler(HandlerKind {
        names: &["sni"],
        caps: HandlerCaps::default(),
        build: |_, cfg, deps| {
            let empty = gost_core::metadata::Metadata::default();
            let md = cfg.handler.as_ref().map_or(&empty, |h| &h.metadata);
            let opts = gost_handler::sni::SniOptions::from_metadata(md)
                .map_err(|e| svc_err(cfg, format!("handler: {e}")))?;
            Ok(Arc::new(gost_handler::sni::SniHandler::new(deps.router, opts)))
        },
        summary: "routes by the TLS ClientHello's SNI (port 443) or the HTTP `Host` (port 80); other traffic is dropped",
    });
    #[cfg(feature = "tunnel")]
    r.add_handler(HandlerKind {
        names: &["tunnel"],
        caps: HandlerCaps {
            udp: true,
            bind: true,
            observer: true,
            ..Default::default()
        },
        build: build_tunnel,
        summary: "GOST's reverse tunnels: clients register tunnel ids (BIND), visitors reach them by id or through the ingress; an entry point routes HTTP by Host and TLS by SNI",
    });
    #[cfg(feature = "dns")]
    r.add_handler(HandlerKind {
        names: &["dns"],
        caps: HandlerCaps {
            udp: true,
            ..Default::default()
        },
        build: |root, cfg, deps| {
            let opts = handler_options(cfg, gost_handler::dns::DnsOptions::from_metadata)?;
            let rate = gost_core::limiter::service_limiters(root, cfg)
                .map_err(|e| svc_err(cfg, e.to_string()))?
                .rate;
            let h = gost_handler::dns::DnsHandler::new(deps.router, rate, opts)
                .map_err(|e| svc_err(cfg, format!("handler: {e}")))?;
            Ok(Arc::new(h))
        },
        summary: "DNS proxy: upstreams over udp, tcp, tls, https; cache, `bypass`, `hosts`, `rlimiter` per query",
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compatibility table of `docs/compatibility.md`, as the registry
    /// has it.
    fn compatibility_table() -> String {
        let kinds = kinds();
        let names = |n: &[&str]| {
            let mut it = n.iter().map(|s| format!("`{s}`"));
            let first = it.next().unwrap_or_default();
            let rest: Vec<String> = it.collect();
            if rest.is_empty() {
                first
            } else {
                format!("{first} ({})", rest.join(", "))
            }
        };
        let yes = |b: bool| if b { "yes" } else { "" };
        let mut out = String::from("### Listeners\n\n| name | what |\n|---|---|\n");
        for k in kinds.registry.listeners() {
            out += &format!("| {} | {} |\n", names(k.names), k.summary);
        }
        out += "\n### Dialers\n\n| name | what |\n|---|---|\n";
        for k in kinds.registry.dialers() {
            out += &format!("| {} | {} |\n", names(k.names), k.summary);
        }
        out += "\n### Connectors\n\n| name | UDP | what |\n|---|---|---|\n";
        for k in kinds.registry.connectors() {
            out += &format!("| {} | {} | {} |\n", names(k.names), yes(k.udp), k.summary);
        }
        out += "\n### Handlers\n\n| name | UDP | forwarder | sniffing | per-client observer | BIND | what |\n|---|---|---|---|---|---|---|\n";
        for k in &kinds.handlers {
            let c = k.caps;
            out += &format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                names(k.names),
                yes(c.udp),
                yes(c.forwarder),
                yes(c.sniffing),
                yes(c.observer),
                yes(c.bind),
                k.summary
            );
        }
        out
    }

    /// The docs' table is the registry's: a new kind, or a changed
    /// capability, fails here until the docs say so too.
    #[test]
    fn docs_compatibility_table_matches_the_registry() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/compatibility.md");
        let doc = std::fs::read_to_string(path).expect("docs/compatibility.md");
        let (begin, end) = ("<!-- registry:begin -->\n", "<!-- registry:end -->");
        let start = doc.find(begin).expect("begin marker") + begin.len();
        let stop = doc.find(end).expect("end marker");
        let want = compatibility_table();
        assert!(
            doc[start..stop] == want,
            "docs/compatibility.md disagrees with the registry; the table should read:\n{want}"
        );
    }
}
