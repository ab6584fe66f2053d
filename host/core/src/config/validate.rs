//! Checks GOST itself does not make. GOST skips an object without a name,
//! ignores a reference to a name that does not exist and fails late on a
//! bad address; we report each of these before anything starts, naming the
//! object, the field and the value.

use std::collections::HashSet;
use std::fmt;

use super::ports::check_host_port;
use super::{
    ChainGroupConfig, Config, ConfigError, HopConfig, NodeConfig, PluginConfig, ServiceConfig,
};

/// The kinds of pluggable type names a config selects, for
/// [`Config::unsupported`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Listener,
    Handler,
    Connector,
    Dialer,
    /// `plugin.type` of any module (`grpc`, `http`, `wasm`).
    Plugin,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Listener => "listener",
            Kind::Handler => "handler",
            Kind::Connector => "connector",
            Kind::Dialer => "dialer",
            Kind::Plugin => "plugin",
        })
    }
}

/// GOST's defaults for an absent or empty type.
pub const DEFAULT_LISTENER: &str = "tcp";
pub const DEFAULT_HANDLER: &str = "auto";
pub const DEFAULT_CONNECTOR: &str = "http";
pub const DEFAULT_DIALER: &str = "tcp";

/// Listeners whose address is a path (or nothing), not `host:port`.
const PATH_LISTENERS: &[&str] = &["unix", "runix", "serial"];
/// Listeners that run without a listen address.
const ADDRLESS_LISTENERS: &[&str] = &["stdio", "tun", "tap", "tungo"];

/// Whether a service with this listener binds its `addr` as `host:port`.
fn listens_on_addr(listener: &str) -> bool {
    !PATH_LISTENERS.contains(&listener) && !ADDRLESS_LISTENERS.contains(&listener)
}

/// The names defined in one top-level list.
struct Names<'a>(HashSet<&'a str>);

impl<'a> Names<'a> {
    fn of<T>(items: &'a [T], name: impl Fn(&'a T) -> &'a str) -> Self {
        Names(items.iter().map(name).collect())
    }
}

struct Checker<'a> {
    errors: Vec<String>,
    chains: Names<'a>,
    hops: Names<'a>,
    authers: Names<'a>,
    admissions: Names<'a>,
    bypasses: Names<'a>,
    resolvers: Names<'a>,
    hosts: Names<'a>,
    recorders: Names<'a>,
    rewriters: Names<'a>,
    caches: Names<'a>,
    limiters: Names<'a>,
    quotas: Names<'a>,
    climiters: Names<'a>,
    rlimiters: Names<'a>,
    observers: Names<'a>,
    loggers: Names<'a>,
}

impl Checker<'_> {
    /// `owner: field "value" not found` for a set, non-existent reference.
    fn reference(&mut self, owner: &str, field: &str, value: &str, names: fn(&Self) -> &Names<'_>) {
        if !value.is_empty() && !names(self).0.contains(value) {
            self.errors
                .push(format!("{owner}: {field} \"{value}\" not found"));
        }
    }

    fn references(
        &mut self,
        owner: &str,
        field: &str,
        values: &[String],
        names: fn(&Self) -> &Names<'_>,
    ) {
        for v in values {
            self.reference(owner, field, v, names);
        }
    }

    fn chain_group(&mut self, owner: &str, field: &str, group: Option<&ChainGroupConfig>) {
        for entry in group.map(|g| g.chains.as_slice()).unwrap_or_default() {
            self.reference(
                owner,
                &format!("{field}.chainGroup chain"),
                &entry.chain,
                |c| &c.chains,
            );
        }
    }

    fn node(&mut self, owner: &str, node: &NodeConfig) {
        let owner = format!("{owner}: node \"{}\"", node.name);
        self.reference(&owner, "bypass", &node.bypass, |c| &c.bypasses);
        self.references(&owner, "bypasses", &node.bypasses, |c| &c.bypasses);
        self.reference(&owner, "resolver", &node.resolver, |c| &c.resolvers);
        self.reference(&owner, "hosts", &node.hosts, |c| &c.hosts);
    }

    fn hop(&mut self, owner: &str, hop: &HopConfig) {
        self.reference(owner, "bypass", &hop.bypass, |c| &c.bypasses);
        self.references(owner, "bypasses", &hop.bypasses, |c| &c.bypasses);
        self.reference(owner, "resolver", &hop.resolver, |c| &c.resolvers);
        self.reference(owner, "hosts", &hop.hosts, |c| &c.hosts);
        for node in &hop.nodes {
            self.node(owner, node);
        }
    }

    /// A service's own checks: its address and every reference it makes.
    /// Nothing here depends on other services, so a change to one service
    /// checks that service alone ([`Config::validate_service`]).
    fn service(&mut self, svc: &ServiceConfig) {
        let owner = format!("service \"{}\"", svc.name);
        let listener = svc
            .listener
            .as_ref()
            .map(|l| l.r#type.trim())
            .filter(|t| !t.is_empty());
        let listener = listener.unwrap_or(DEFAULT_LISTENER);
        if svc.addr.is_empty() {
            if !ADDRLESS_LISTENERS.contains(&listener) && !PATH_LISTENERS.contains(&listener) {
                self.errors.push(format!("{owner}: addr is required"));
            }
        } else if listens_on_addr(listener) {
            if let Err(why) = check_host_port(&svc.addr) {
                self.errors
                    .push(format!("{owner}: addr \"{}\": {why}", svc.addr));
            }
        }

        self.reference(&owner, "admission", &svc.admission, |c| &c.admissions);
        self.references(&owner, "admissions", &svc.admissions, |c| &c.admissions);
        self.reference(&owner, "bypass", &svc.bypass, |c| &c.bypasses);
        self.references(&owner, "bypasses", &svc.bypasses, |c| &c.bypasses);
        self.reference(&owner, "resolver", &svc.resolver, |c| &c.resolvers);
        self.reference(&owner, "hosts", &svc.hosts, |c| &c.hosts);
        self.reference(&owner, "limiter", &svc.limiter, |c| &c.limiters);
        self.references(&owner, "quotas", &svc.quotas, |c| &c.quotas);
        self.reference(&owner, "climiter", &svc.climiter, |c| &c.climiters);
        self.reference(&owner, "rlimiter", &svc.rlimiter, |c| &c.rlimiters);
        self.reference(&owner, "logger", &svc.logger, |c| &c.loggers);
        self.references(&owner, "loggers", &svc.loggers, |c| &c.loggers);
        self.reference(&owner, "observer", &svc.observer, |c| &c.observers);
        self.reference(&owner, "rewriter", &svc.rewriter, |c| &c.rewriters);
        self.reference(&owner, "cache", &svc.cache, |c| &c.caches);
        for rec in &svc.recorders {
            self.reference(&owner, "recorder", &rec.name, |c| &c.recorders);
        }
        if let Some(h) = &svc.handler {
            self.reference(&owner, "handler.chain", &h.chain, |c| &c.chains);
            self.chain_group(&owner, "handler", h.chain_group.as_deref());
            self.reference(&owner, "handler.auther", &h.auther, |c| &c.authers);
            self.references(&owner, "handler.authers", &h.authers, |c| &c.authers);
            self.reference(&owner, "handler.limiter", &h.limiter, |c| &c.limiters);
            self.reference(&owner, "handler.observer", &h.observer, |c| &c.observers);
        }
        if let Some(l) = &svc.listener {
            self.reference(&owner, "listener.chain", &l.chain, |c| &c.chains);
            self.chain_group(&owner, "listener", l.chain_group.as_deref());
            self.reference(&owner, "listener.auther", &l.auther, |c| &c.authers);
            self.references(&owner, "listener.authers", &l.authers, |c| &c.authers);
        }
        if let Some(f) = &svc.forwarder {
            self.reference(&owner, "forwarder.hop", &f.hop, |c| &c.hops);
            if f.hop.is_empty() {
                // GOST's deprecated spelling of `forwarder.hop`.
                self.reference(&owner, "forwarder.name", &f.name, |c| &c.hops);
            }
            for h in f
                .hop_group
                .as_ref()
                .map(|g| g.hops.as_slice())
                .unwrap_or_default()
            {
                self.reference(&owner, "forwarder.hopGroup hop", &h.hop, |c| &c.hops);
            }
            for n in &f.nodes {
                let node_owner = format!("{owner}: forwarder node \"{}\"", n.name);
                self.reference(&node_owner, "bypass", &n.bypass, |c| &c.bypasses);
                self.references(&node_owner, "bypasses", &n.bypasses, |c| &c.bypasses);
                // A reverse listener's addr is bound on the far end of
                // its chain: a node of the same address is on this host.
                let reverse = matches!(listener, "rtcp" | "rudp" | "runix")
                    || svc.listener.as_ref().is_some_and(|l| !l.chain.is_empty());
                if listens_on_addr(listener)
                    && !reverse
                    && super::self_loop::is_own_address(&svc.addr, &n.addr)
                {
                    self.errors.push(format!(
                        "{node_owner}: addr \"{}\" is the service's own address; forwarding there would loop",
                        n.addr
                    ));
                }
            }
        }
    }
}

/// The connector and dialer of each node of a hop, and its plugin.
fn hop_types(owner: &str, hop: &HopConfig, check: &mut dyn FnMut(&str, Kind, &str, &str)) {
    if let Some(p) = &hop.plugin {
        check(owner, Kind::Plugin, &p.r#type, "");
    }
    for node in &hop.nodes {
        let node_owner = format!("{owner}: node \"{}\"", node.name);
        let ct = node
            .connector
            .as_ref()
            .map(|x| x.r#type.as_str())
            .unwrap_or_default();
        check(&node_owner, Kind::Connector, ct, DEFAULT_CONNECTOR);
        let dt = node
            .dialer
            .as_ref()
            .map(|x| x.r#type.as_str())
            .unwrap_or_default();
        check(&node_owner, Kind::Dialer, dt, DEFAULT_DIALER);
    }
}

/// Collects `owner: kind type 'x' is not supported` for each type
/// `is_supported` refuses, an empty type counting as the default.
fn type_check<'a>(
    is_supported: &'a impl Fn(Kind, &str) -> bool,
    out: &'a mut Vec<String>,
) -> impl FnMut(&str, Kind, &str, &str) + 'a {
    move |owner, kind, ty, default| {
        let ty = match ty.trim() {
            "" => default,
            t => t,
        };
        if !is_supported(kind, ty) {
            out.push(format!("{owner}: {kind} type '{ty}' is not supported"));
        }
    }
}

/// A service's listener and handler types.
fn service_types(svc: &ServiceConfig, check: &mut dyn FnMut(&str, Kind, &str, &str)) {
    let owner = format!("service \"{}\"", svc.name);
    let lt = svc
        .listener
        .as_ref()
        .map(|l| l.r#type.as_str())
        .unwrap_or_default();
    check(&owner, Kind::Listener, lt, DEFAULT_LISTENER);
    let ht = svc
        .handler
        .as_ref()
        .map(|h| h.r#type.as_str())
        .unwrap_or_default();
    check(&owner, Kind::Handler, ht, DEFAULT_HANDLER);
}

/// `section[i]` lacks a name, or two entries share one: GOST ignores the
/// first and refuses the second at load time.
fn check_names<T>(errors: &mut Vec<String>, section: &str, items: &[T], name: impl Fn(&T) -> &str) {
    let mut seen = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let n = name(item);
        if n.is_empty() {
            errors.push(format!("{section}[{i}]: name is required"));
        } else if !seen.insert(n) {
            errors.push(format!("{section}: duplicate name \"{n}\""));
        }
    }
}

impl Config {
    /// Every problem found, not just the first. Messages name the object
    /// the way the config does: `service "service-0": handler.chain
    /// "chain-x" not found`.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        check_names(&mut errors, "services", &self.services, |s| &s.name);
        check_names(&mut errors, "chains", &self.chains, |s| &s.name);
        check_names(&mut errors, "hops", &self.hops, |s| &s.name);
        check_names(&mut errors, "authers", &self.authers, |s| &s.name);
        check_names(&mut errors, "admissions", &self.admissions, |s| &s.name);
        check_names(&mut errors, "bypasses", &self.bypasses, |s| &s.name);
        check_names(&mut errors, "resolvers", &self.resolvers, |s| &s.name);
        check_names(&mut errors, "hosts", &self.hosts, |s| &s.name);
        check_names(&mut errors, "ingresses", &self.ingresses, |s| &s.name);
        check_names(&mut errors, "routers", &self.routers, |s| &s.name);
        check_names(&mut errors, "sds", &self.sds, |s| &s.name);
        check_names(&mut errors, "recorders", &self.recorders, |s| &s.name);
        check_names(&mut errors, "rewriters", &self.rewriters, |s| &s.name);
        check_names(&mut errors, "caches", &self.caches, |s| &s.name);
        check_names(&mut errors, "limiters", &self.limiters, |s| &s.name);
        check_names(&mut errors, "quotas", &self.quotas, |s| &s.name);
        check_names(&mut errors, "climiters", &self.climiters, |s| &s.name);
        check_names(&mut errors, "rlimiters", &self.rlimiters, |s| &s.name);
        check_names(&mut errors, "observers", &self.observers, |s| &s.name);
        check_names(&mut errors, "loggers", &self.loggers, |s| &s.name);

        let mut c = self.checker(errors);
        for svc in &self.services {
            c.service(svc);
        }

        for chain in &self.chains {
            let owner = format!("chain \"{}\"", chain.name);
            for hop in &chain.hops {
                if hop.nodes.is_empty() && hop.plugin.is_none() {
                    // A bare hop in a chain names a top-level hop.
                    c.reference(&owner, "hop", &hop.name, |c| &c.hops);
                } else {
                    c.hop(&format!("{owner}: hop \"{}\"", hop.name), hop);
                }
            }
        }
        for hop in &self.hops {
            c.hop(&format!("hop \"{}\"", hop.name), hop);
        }
        for r in &self.resolvers {
            let owner = format!("resolver \"{}\"", r.name);
            for ns in &r.nameservers {
                c.reference(
                    &owner,
                    &format!("nameserver \"{}\" chain", ns.addr),
                    &ns.chain,
                    |c| &c.chains,
                );
            }
        }
        if let Some(api) = &self.api {
            c.reference("api", "auther", &api.auther, |c| &c.authers);
        }
        if let Some(m) = &self.metrics {
            c.reference("metrics", "auther", &m.auther, |c| &c.authers);
        }

        if c.errors.is_empty() {
            Ok(())
        } else {
            Err(c.errors.into_iter().map(ConfigError::Invalid).collect())
        }
    }

    /// The reference checker over this config's named objects (services
    /// excepted: nothing refers to a service).
    fn checker(&self, errors: Vec<String>) -> Checker<'_> {
        Checker {
            errors,
            chains: Names::of(&self.chains, |x| &x.name),
            hops: Names::of(&self.hops, |x| &x.name),
            authers: Names::of(&self.authers, |x| &x.name),
            admissions: Names::of(&self.admissions, |x| &x.name),
            bypasses: Names::of(&self.bypasses, |x| &x.name),
            resolvers: Names::of(&self.resolvers, |x| &x.name),
            hosts: Names::of(&self.hosts, |x| &x.name),
            recorders: Names::of(&self.recorders, |x| &x.name),
            rewriters: Names::of(&self.rewriters, |x| &x.name),
            caches: Names::of(&self.caches, |x| &x.name),
            limiters: Names::of(&self.limiters, |x| &x.name),
            quotas: Names::of(&self.quotas, |x| &x.name),
            climiters: Names::of(&self.climiters, |x| &x.name),
            rlimiters: Names::of(&self.rlimiters, |x| &x.name),
            observers: Names::of(&self.observers, |x| &x.name),
            loggers: Names::of(&self.loggers, |x| &x.name),
        }
    }

    /// [`Config::validate`]'s checks of one service against this config's
    /// other objects, for a change that touches that service only: its
    /// name's uniqueness is the caller's to check.
    pub fn validate_service(&self, svc: &ServiceConfig) -> Result<(), Vec<ConfigError>> {
        let mut c = self.checker(Vec::new());
        c.service(svc);
        if c.errors.is_empty() {
            Ok(())
        } else {
            Err(c.errors.into_iter().map(ConfigError::Invalid).collect())
        }
    }

    /// Every type name the config selects that `is_supported` refuses, as
    /// `service "service-0": listener type 'kcp' is not supported`. Absent
    /// types count as GOST's defaults (tcp listener, auto handler, http
    /// connector, tcp dialer).
    pub fn unsupported(&self, is_supported: impl Fn(Kind, &str) -> bool) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = type_check(&is_supported, &mut out);

        for svc in &self.services {
            service_types(svc, &mut check);
        }

        for chain in &self.chains {
            for h in &chain.hops {
                hop_types(
                    &format!("chain \"{}\": hop \"{}\"", chain.name, h.name),
                    h,
                    &mut check,
                );
            }
        }
        for h in &self.hops {
            hop_types(&format!("hop \"{}\"", h.name), h, &mut check);
        }

        let named = |section: &'static str, name: &str, p: &Option<PluginConfig>| {
            p.as_ref()
                .map(|p| (format!("{section} \"{name}\""), p.r#type.clone()))
        };
        let plugins = (self
            .authers
            .iter()
            .filter_map(|x| named("auther", &x.name, &x.plugin)))
        .chain(
            self.admissions
                .iter()
                .filter_map(|x| named("admission", &x.name, &x.plugin)),
        )
        .chain(
            self.bypasses
                .iter()
                .filter_map(|x| named("bypass", &x.name, &x.plugin)),
        )
        .chain(
            self.resolvers
                .iter()
                .filter_map(|x| named("resolver", &x.name, &x.plugin)),
        )
        .chain(
            self.hosts
                .iter()
                .filter_map(|x| named("hosts", &x.name, &x.plugin)),
        )
        .chain(
            self.ingresses
                .iter()
                .filter_map(|x| named("ingress", &x.name, &x.plugin)),
        )
        .chain(
            self.routers
                .iter()
                .filter_map(|x| named("router", &x.name, &x.plugin)),
        )
        .chain(
            self.sds
                .iter()
                .filter_map(|x| named("sd", &x.name, &x.plugin)),
        )
        .chain(
            self.recorders
                .iter()
                .filter_map(|x| named("recorder", &x.name, &x.plugin)),
        )
        .chain(
            self.rewriters
                .iter()
                .filter_map(|x| named("rewriter", &x.name, &x.plugin)),
        )
        .chain(
            self.limiters
                .iter()
                .filter_map(|x| named("limiter", &x.name, &x.plugin)),
        )
        .chain(
            self.climiters
                .iter()
                .filter_map(|x| named("climiter", &x.name, &x.plugin)),
        )
        .chain(
            self.rlimiters
                .iter()
                .filter_map(|x| named("rlimiter", &x.name, &x.plugin)),
        )
        .chain(
            self.observers
                .iter()
                .filter_map(|x| named("observer", &x.name, &x.plugin)),
        );
        for (owner, ty) in plugins {
            check(&owner, Kind::Plugin, &ty, "");
        }
        drop(check);
        out
    }

    /// [`Config::unsupported`] for one service's own types.
    pub fn unsupported_service(
        svc: &ServiceConfig,
        is_supported: impl Fn(Kind, &str) -> bool,
    ) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = type_check(&is_supported, &mut out);
        service_types(svc, &mut check);
        drop(check);
        out
    }

    /// The top-level keys that are set, in document order, so the runtime
    /// can refuse sections whose feature it lacks instead of ignoring them.
    pub fn non_empty_sections(&self) -> Vec<&'static str> {
        let sections: [(&'static str, bool); 25] = [
            ("services", !self.services.is_empty()),
            ("chains", !self.chains.is_empty()),
            ("hops", !self.hops.is_empty()),
            ("authers", !self.authers.is_empty()),
            ("admissions", !self.admissions.is_empty()),
            ("bypasses", !self.bypasses.is_empty()),
            ("resolvers", !self.resolvers.is_empty()),
            ("hosts", !self.hosts.is_empty()),
            ("ingresses", !self.ingresses.is_empty()),
            ("routers", !self.routers.is_empty()),
            ("sds", !self.sds.is_empty()),
            ("recorders", !self.recorders.is_empty()),
            ("rewriters", !self.rewriters.is_empty()),
            ("caches", !self.caches.is_empty()),
            ("limiters", !self.limiters.is_empty()),
            ("quotas", !self.quotas.is_empty()),
            ("climiters", !self.climiters.is_empty()),
            ("rlimiters", !self.rlimiters.is_empty()),
            ("observers", !self.observers.is_empty()),
            ("loggers", !self.loggers.is_empty()),
            ("tls", self.tls.is_some()),
            ("log", self.log.is_some()),
            ("profiling", self.profiling.is_some()),
            ("api", self.api.is_some()),
            ("metrics", self.metrics.is_some()),
        ];
        sections
            .into_iter()
            .filter(|(_, set)| *set)
            .map(|(name, _)| name)
            .collect()
    }
}
