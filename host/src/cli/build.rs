//! `-L`/`-F` URLs to a config: go-gost/x `config/cmd/cmd.go`
//! (`BuildConfigFromCmd`, `buildServiceConfig`, `buildNodeConfig`) step by
//! step, so `-O yaml` prints what GOST prints: same generated names
//! (`service-0`, `chain-0`, `hop-0`, `node-0`, `target-0`, `bypass-0`...),
//! same metadata routing, same defaults.
//!
//! Where GOST silently turns a mistake into something else (an unknown
//! scheme into `auto`, port `99999` into a random port, `retries=x` into
//! 0), we stop with an error quoting the argument instead.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::Value;

use super::registry;
use super::url::GoUrl;
use super::CliError;
use gost_core::config::{
    parse_port_range, split_host_port, AdmissionConfig, AuthConfig, BypassConfig, ChainConfig,
    Config, ConnectorConfig, DialerConfig, Duration, ForwardNodeConfig, ForwarderConfig,
    HandlerConfig, HopConfig, HostMappingConfig, HostsConfig, LimiterConfig, ListenerConfig,
    NameserverConfig, NodeConfig, PluginConfig, ResolverConfig, SelectorConfig, ServiceConfig,
    TLSConfig,
};
use gost_core::metadata::{Metadata, MetadataError};

/// The query parameters of one URL with their keys exactly as typed. GOST
/// reads them case-insensitively but deletes the keys it consumes by exact
/// name; keeping a plain map reproduces what ends up in `metadata`.
type Map = BTreeMap<String, Value>;

/// Listeners whose address is a filesystem path.
const PATH_PROTOCOLS: &[&str] = &["unix", "runix", "serial"];
/// Listeners that may run without an address.
const ADDRLESS_LISTENERS: &[&str] = &["stdio", "tun", "tap", "tungo"];
/// Listeners that, given forward targets, make the handler their namesake.
const FORWARD_LISTENERS: &[&str] = &[
    "tcp", "udp", "rtcp", "rudp", "tun", "tap", "dns", "unix", "runix", "serial",
];

/// Errors about one argument, quoted as given.
struct ArgCtx<'a> {
    flag: &'static str,
    arg: &'a str,
}

impl ArgCtx<'_> {
    fn err(&self, msg: impl Into<String>) -> CliError {
        CliError::Arg {
            flag: self.flag,
            arg: self.arg.to_string(),
            msg: msg.into(),
        }
    }

    fn md(&self, e: MetadataError) -> CliError {
        self.err(e.to_string())
    }
}

/// GOST's `Norm`: a missing scheme is `auto`, `https` is `http+tls`.
pub(crate) fn norm(s: &str) -> Result<GoUrl, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty argument".into());
    }
    let owned;
    let s = if s.starts_with(':') || !s.contains("://") {
        owned = format!("auto://{s}");
        owned.as_str()
    } else {
        s
    };
    let mut url = GoUrl::parse(s)?;
    if url.scheme == "https" {
        url.scheme = "http+tls".into();
    }
    Ok(url)
}

fn query_map(url: &GoUrl) -> Map {
    url.query()
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect()
}

/// GOST's `cutHost`: takes the host out of the raw text before URL parsing,
/// so host lists and port ranges (`:8000-8010`) reach the builder as typed.
fn cut_host(s: &str) -> (String, String) {
    let Some(n) = s.find("://") else {
        return (String::new(), s.to_string());
    };
    let mut start = n + 3;
    let end = s[start..]
        .find(['/', '?'])
        .map(|i| i + start)
        .unwrap_or(s.len());
    if let Some(at) = s[start..end].rfind('@') {
        start += at + 1;
    }
    (
        s[start..end].to_string(),
        format!("{}{}", &s[..start], &s[end..]),
    )
}

/// The first of `keys` that is present, as GOST's getters with several keys.
fn first_present<'a>(md: &Metadata, keys: &[&'a str]) -> Option<&'a str> {
    keys.iter().copied().find(|k| md.contains_key(k))
}

fn string_of(md: &Metadata, keys: &[&str]) -> Result<String, MetadataError> {
    match first_present(md, keys) {
        Some(k) => Ok(md.get_string(k)?.unwrap_or_default()),
        None => Ok(String::new()),
    }
}

/// GOST's `parseSelector`: `strategy`, `maxFails`/`max_fails`,
/// `failTimeout`/`fail_timeout`; defaults round, 1, 30s once any is set.
fn parse_selector(m: &mut Map) -> Result<Option<SelectorConfig>, MetadataError> {
    let md = Metadata::from(m.clone());
    let strategy = md.get_string("strategy")?.unwrap_or_default();
    let max_fails = match first_present(&md, &["maxFails", "max_fails"]) {
        Some(k) => md.get_int(k)?.unwrap_or(0),
        None => 0,
    };
    let fail_timeout = match first_present(&md, &["failTimeout", "fail_timeout"]) {
        Some(k) => md.get_duration(k)?.unwrap_or_default(),
        None => std::time::Duration::ZERO,
    };
    if strategy.is_empty() && max_fails <= 0 && fail_timeout.is_zero() {
        return Ok(None);
    }
    for k in [
        "strategy",
        "maxFails",
        "max_fails",
        "failTimeout",
        "fail_timeout",
    ] {
        m.remove(k);
    }
    Ok(Some(SelectorConfig {
        strategy: if strategy.is_empty() {
            "round".into()
        } else {
            strategy
        },
        max_fails: if max_fails <= 0 { 1 } else { max_fails },
        fail_timeout: if fail_timeout.is_zero() {
            Duration::from_secs(30)
        } else {
            Duration(fail_timeout)
        },
        max_latency: Duration::ZERO,
    }))
}

/// `bypass=[~]a,b` / `admission=[~]a,b`: `~` makes it a whitelist.
fn matchers(v: &str) -> (bool, Vec<String>) {
    let (whitelist, v) = match v.strip_prefix('~') {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    (
        whitelist,
        v.split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    )
}

fn add_bypass(cfg: &mut Config, v: &str) -> String {
    let (whitelist, matchers) = matchers(v);
    let name = format!("bypass-{}", cfg.bypasses.len());
    cfg.bypasses.push(BypassConfig {
        name: name.clone(),
        whitelist,
        matchers,
        ..Default::default()
    });
    name
}

fn add_resolver(cfg: &mut Config, v: &str, prefer: &str) -> String {
    let name = format!("resolver-{}", cfg.resolvers.len());
    let nameservers = v
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|addr| NameserverConfig {
            addr: addr.to_string(),
            prefer: prefer.to_string(),
            ..Default::default()
        })
        .collect();
    cfg.resolvers.push(ResolverConfig {
        name: name.clone(),
        nameservers,
        plugin: None,
    });
    name
}

/// `hosts=example.com:127.0.0.1,...`: hostname, then IP after the first `:`.
fn add_hosts(cfg: &mut Config, v: &str) -> String {
    let name = format!("hosts-{}", cfg.hosts.len());
    let mappings = v
        .split(',')
        .filter_map(|s| s.split_once(':'))
        .map(|(hostname, ip)| HostMappingConfig {
            ip: ip.to_string(),
            hostname: hostname.to_string(),
            aliases: Vec::new(),
        })
        .collect();
    cfg.hosts.push(HostsConfig {
        name: name.clone(),
        mappings,
        ..Default::default()
    });
    name
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(s))
        .ok()
}

/// `user:pass@` of a URL. For `ss*` schemes a lone user part may be
/// SIP002's base64 of `method:password`.
fn url_auth(url: &GoUrl) -> Option<AuthConfig> {
    let user = url.user.as_ref()?;
    if url.scheme.starts_with("ss") && user.password.is_none() && !user.username.is_empty() {
        let decoded = base64_decode(&user.username).and_then(|b| String::from_utf8(b).ok());
        if let Some((method, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
            return Some(AuthConfig {
                username: method.to_string(),
                password: password.to_string(),
                file: String::new(),
            });
        }
    }
    Some(AuthConfig {
        username: user.username.clone(),
        password: user.password.clone().unwrap_or_default(),
        file: String::new(),
    })
}

/// The `auth=` parameter: base64 of `user[:pass]`, used when the URL has
/// no `user:pass@`.
fn query_auth(
    ctx: &ArgCtx,
    md: &Metadata,
    auth: Option<AuthConfig>,
) -> Result<Option<AuthConfig>, CliError> {
    if auth.is_some() {
        return Ok(auth);
    }
    let v = md
        .get_string("auth")
        .map_err(|e| ctx.md(e))?
        .unwrap_or_default();
    if v.is_empty() {
        return Ok(None);
    }
    let decoded = base64_decode(&v)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ctx.err(format!("auth \"{v}\" is not base64 of user:password")))?;
    let (username, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
    Ok(Some(AuthConfig {
        username: username.to_string(),
        password: password.to_string(),
        file: String::new(),
    }))
}

/// Splits the remaining parameters by prefix: `a.x` goes to `a` only,
/// anything unprefixed to every part.
fn route<const N: usize>(m: &Map, prefixes: [&str; N]) -> [Map; N] {
    let mut parts: [Map; N] = std::array::from_fn(|_| Map::new());
    'next: for (k, v) in m {
        for (i, p) in prefixes.iter().enumerate() {
            if let Some(rest) = k.strip_prefix(p) {
                parts[i].insert(rest.to_string(), v.clone());
                continue 'next;
            }
        }
        for part in &mut parts {
            part.insert(k.clone(), v.clone());
        }
    }
    parts
}

/// Expands `host:port` or `host:lo-hi` into one address per port.
fn expand(addr: &str) -> Result<Vec<String>, String> {
    let (host, port) = split_host_port(addr)?;
    let (lo, hi) = parse_port_range(port)?;
    Ok((lo..=hi).map(|p| join_host_port(host, p)).collect())
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Split a `handler+listener` or `connector+dialer` scheme.
fn split_scheme<'a>(ctx: &ArgCtx, scheme: &'a str) -> Result<(&'a str, &'a str), CliError> {
    let parts: Vec<&str> = scheme.split('+').collect();
    match parts.as_slice() {
        [one] => Ok((one, one)),
        [a, b] => Ok((a, b)),
        _ => Err(ctx.err(format!(
            "invalid scheme '{scheme}': expected at most two parts joined by '+'"
        ))),
    }
}

/// `BuildConfigFromCmd`. `gost_id` is `_GOST_ID` of a `--` group child,
/// which GOST puts in front of forward target names (`go-1@target-0`).
pub(crate) fn build_cmd_config(
    services: &[String],
    nodes: &[String],
    gost_id: Option<&str>,
) -> Result<Config, CliError> {
    let mut cfg = Config::default();
    if !nodes.is_empty() {
        let mut chain = ChainConfig {
            name: "chain-0".into(),
            ..Default::default()
        };
        for (i, node) in nodes.iter().enumerate() {
            let hop = build_hop(&mut cfg, i, node)?;
            chain.hops.push(hop);
        }
        cfg.chains.push(chain);
    }

    let prefix = gost_id
        .filter(|id| !id.is_empty())
        .map(|id| format!("go-{id}@"))
        .unwrap_or_default();
    let mut built: Vec<(ServiceConfig, &str)> = Vec::new();
    for arg in services {
        let svc = arg.trim();
        if svc.is_empty() {
            continue;
        }
        let ctx = ArgCtx { flag: "-L", arg };
        let full = if svc.starts_with(':') || !svc.contains("://") {
            format!("auto://{svc}")
        } else {
            svc.to_string()
        };
        let (host, remain) = cut_host(&full);
        let mut url = norm(&remain).map_err(|e| ctx.err(e))?;
        url.host = host;
        for s in build_services(&ctx, &url, &prefix)? {
            built.push((s, arg));
        }
    }

    let has_chain = !cfg.chains.is_empty();
    for (i, (mut service, arg)) in built.into_iter().enumerate() {
        let ctx = ArgCtx { flag: "-L", arg };
        service.name = format!("service-{i}");
        if has_chain {
            let listener_type = service
                .listener
                .as_ref()
                .map(|l| l.r#type.as_str())
                .unwrap_or_default();
            if matches!(listener_type, "rtcp" | "rudp" | "runix") {
                if let Some(l) = service.listener.as_mut() {
                    l.chain = "chain-0".into();
                }
            } else if let Some(h) = service.handler.as_mut() {
                h.chain = "chain-0".into();
            }
        }
        lift_service_objects(&ctx, &mut cfg, &mut service)?;
        cfg.services.push(service);
    }
    Ok(cfg)
}

/// The objects GOST makes from a service's handler parameters:
/// `retries`, `admission`, `bypass`, `resolver`, `hosts`, `limiter.*`,
/// `climiter`, `rlimiter`. Only the handler's copy of each key is consumed;
/// the listener and service keep theirs, as in GOST.
fn lift_service_objects(
    ctx: &ArgCtx,
    cfg: &mut Config,
    service: &mut ServiceConfig,
) -> Result<(), CliError> {
    let Some(handler) = service.handler.as_mut() else {
        return Ok(());
    };
    let mut mh: Map = std::mem::take(&mut handler.metadata).into_iter().collect();
    let md = Metadata::from(mh.clone());
    let get_string = |k: &str| {
        md.get_string(k)
            .map(Option::unwrap_or_default)
            .map_err(|e| ctx.md(e))
    };

    if let Some(n) = md
        .get_int("retries")
        .map_err(|e| ctx.md(e))?
        .filter(|n| *n > 0)
    {
        handler.retries = n;
        mh.remove("retries");
    }
    let v = get_string("admission")?;
    if !v.is_empty() {
        let (whitelist, matchers) = matchers(&v);
        let name = format!("admission-{}", cfg.admissions.len());
        cfg.admissions.push(AdmissionConfig {
            name: name.clone(),
            whitelist,
            matchers,
            ..Default::default()
        });
        service.admission = name;
        mh.remove("admission");
    }
    let v = get_string("bypass")?;
    if !v.is_empty() {
        service.bypass = add_bypass(cfg, &v);
        mh.remove("bypass");
    }
    let v = get_string("resolver")?;
    if !v.is_empty() {
        let prefer = get_string("prefer")?;
        service.resolver = add_resolver(cfg, &v, &prefer);
        mh.remove("resolver");
    }
    let v = get_string("hosts")?;
    if !v.is_empty() {
        service.hosts = add_hosts(cfg, &v);
        mh.remove("hosts");
    }

    let (lin, lout) = (get_string("limiter.in")?, get_string("limiter.out")?);
    let (cin, cout) = (
        get_string("limiter.conn.in")?,
        get_string("limiter.conn.out")?,
    );
    if !(lin.is_empty() && lout.is_empty() && cin.is_empty() && cout.is_empty()) {
        let mut limits = Vec::new();
        if !lin.is_empty() || !lout.is_empty() {
            limits.push(format!("$ {lin} {lout}"));
        }
        if !cin.is_empty() || !cout.is_empty() {
            limits.push(format!("$$ {cin} {cout}"));
        }
        let name = format!("limiter-{}", cfg.limiters.len());
        cfg.limiters.push(LimiterConfig {
            name: name.clone(),
            limits,
            ..Default::default()
        });
        service.limiter = name;
        for k in [
            "limiter.in",
            "limiter.out",
            "limiter.conn.in",
            "limiter.conn.out",
        ] {
            mh.remove(k);
        }
    }
    if let Some(n) = md
        .get_int("climiter")
        .map_err(|e| ctx.md(e))?
        .filter(|n| *n > 0)
    {
        let name = format!("climiter-{}", cfg.climiters.len());
        cfg.climiters.push(LimiterConfig {
            name: name.clone(),
            limits: vec![format!("$ {n}")],
            ..Default::default()
        });
        service.climiter = name;
        mh.remove("climiter");
    }
    if let Some(r) = md
        .get_float("rlimiter")
        .map_err(|e| ctx.md(e))?
        .filter(|r| *r > 0.0)
    {
        let name = format!("rlimiter-{}", cfg.rlimiters.len());
        cfg.rlimiters.push(LimiterConfig {
            name: name.clone(),
            limits: vec![format!("$ {r}")],
            ..Default::default()
        });
        service.rlimiter = name;
        mh.remove("rlimiter");
    }
    handler.metadata = Metadata::from(mh);
    Ok(())
}

/// `buildServiceConfig`: one `-L` URL, one service per port of its range.
fn build_services(ctx: &ArgCtx, url: &GoUrl, prefix: &str) -> Result<Vec<ServiceConfig>, CliError> {
    let (h, l) = split_scheme(ctx, &url.scheme)?;
    if h == l {
        if !registry::is_handler(h) && !registry::is_listener(h) {
            return Err(ctx.err(format!("unknown scheme '{h}'")));
        }
    } else {
        if !registry::is_handler(h) {
            return Err(ctx.err(format!("unknown handler '{h}'")));
        }
        if !registry::is_listener(l) && l != "wasm" {
            return Err(ctx.err(format!("unknown listener '{l}'")));
        }
    }
    let is_path_based = PATH_PROTOCOLS.contains(&l) || PATH_PROTOCOLS.contains(&h);
    let is_path_addr = is_path_based && url.host.is_empty();

    let mut handler = if registry::is_handler(h) { h } else { "auto" }.to_string();
    // (gost-rs) `socks5+wasm://:1080?transport=FILE`: a transport plugin;
    // `wasm://` alone is the wasm handler over TCP.
    let listener = if registry::is_listener(l) || (l == "wasm" && h != l) {
        l
    } else if handler == "ssu" {
        "udp"
    } else {
        "tcp"
    }
    .to_string();

    let addrs = if is_path_addr {
        vec![if url.path.is_empty() {
            url.host.clone()
        } else {
            url.path.clone()
        }]
    } else if is_path_based
        || (url.host.is_empty() && ADDRLESS_LISTENERS.contains(&listener.as_str()))
    {
        vec![url.host.clone()]
    } else if url.host.is_empty() {
        return Err(ctx.err("missing address (e.g. :8080)"));
    } else {
        expand(&url.host).map_err(|e| ctx.err(e))?
    };
    let mut services: Vec<ServiceConfig> = addrs
        .into_iter()
        .map(|addr| ServiceConfig {
            addr,
            ..Default::default()
        })
        .collect();

    // Forward mode: the path lists the targets.
    let mut targets: Vec<ForwardNodeConfig> = Vec::new();
    let remotes = url.path.trim_matches('/');
    if !remotes.is_empty() && !is_path_addr {
        for remote in remotes.split(',') {
            if remote.is_empty() {
                return Err(ctx.err("empty forward target"));
            }
            let addrs = match split_host_port(remote) {
                Ok(_) if !remote.contains("://") => expand(remote)
                    .map_err(|e| ctx.err(format!("forward target \"{remote}\": {e}")))?,
                _ => vec![remote.to_string()],
            };
            for addr in addrs {
                targets.push(ForwardNodeConfig {
                    name: format!("{prefix}target-{}", targets.len()),
                    addr,
                    ..Default::default()
                });
            }
        }
        if handler != "relay" {
            handler = if FORWARD_LISTENERS.contains(&listener.as_str()) {
                listener.clone()
            } else {
                "forward".into()
            };
        }
    }
    if listener == "stdio" && targets.is_empty() && !url.host.is_empty() {
        targets.push(ForwardNodeConfig {
            name: format!("{prefix}target-0"),
            addr: url.host.clone(),
            ..Default::default()
        });
        if handler == "auto" {
            handler = "tcp".into();
        }
    }
    if !targets.is_empty() {
        let count = services.len();
        for (i, svc) in services.iter_mut().enumerate() {
            let nodes = if count == 1 || targets.len() == 1 {
                targets.clone()
            } else if let Some(t) = targets.get(i) {
                vec![t.clone()]
            } else {
                continue;
            };
            svc.forwarder = Some(ForwarderConfig {
                nodes,
                ..Default::default()
            });
        }
    }

    let mut m = query_map(url);
    let md = Metadata::from(m.clone());
    let auth = query_auth(ctx, &md, url_auth(url))?;
    m.remove("auth");

    let tls_field = |keys: &[&str]| string_of(&md, keys).map_err(|e| ctx.md(e));
    let tls = TLSConfig {
        cert_file: tls_field(&["tls.certFile", "certFile", "cert"])?,
        key_file: tls_field(&["tls.keyFile", "keyFile", "key"])?,
        ca_file: tls_field(&["tls.caFile", "caFile", "ca"])?,
        ..Default::default()
    };
    for k in [
        "tls.certFile",
        "certFile",
        "cert",
        "tls.keyFile",
        "keyFile",
        "key",
        "tls.caFile",
        "caFile",
        "ca",
    ] {
        m.remove(k);
    }
    let tls = (!tls.cert_file.is_empty()).then_some(tls);

    let dns = md
        .get_string("dns")
        .map_err(|e| ctx.md(e))?
        .unwrap_or_default();
    if !dns.is_empty() {
        m.insert(
            "dns".into(),
            Value::Array(dns.split(',').map(|s| Value::String(s.into())).collect()),
        );
    }
    relocate(ctx, &md, &mut m, "service.")?;
    for (key, target) in [
        ("netns", "service.netns"),
        ("netns.out", "service.netns.out"),
    ] {
        let v = md
            .get_string(key)
            .map_err(|e| ctx.md(e))?
            .unwrap_or_default();
        if !v.is_empty() {
            m.insert(target.into(), Value::String(v));
            m.remove(key);
        }
    }

    let selector = parse_selector(&mut m).map_err(|e| ctx.md(e))?;
    let [service_md, handler_md, listener_md] = route(&m, ["service.", "handler.", "listener."]);

    let mut handler_cfg = HandlerConfig {
        r#type: handler,
        auth,
        metadata: Metadata::from(handler_md),
        ..Default::default()
    };
    if handler_cfg.r#type == "wasm" {
        handler_cfg.plugin = Some(Box::new(wasm_plugin(
            ctx,
            &mut handler_cfg.metadata,
            "plugin",
            "handler",
        )?));
    }
    let mut listener_cfg = ListenerConfig {
        r#type: listener,
        tls: tls.map(Box::new),
        metadata: Metadata::from(listener_md),
        ..Default::default()
    };
    if listener_cfg.r#type == "wasm" {
        listener_cfg.plugin = Some(Box::new(wasm_plugin(
            ctx,
            &mut listener_cfg.metadata,
            "transport",
            "listener",
        )?));
    }
    if matches!(listener_cfg.r#type.as_str(), "ssh" | "sshd") {
        listener_cfg.auth = handler_cfg.auth.take();
    }
    for svc in &mut services {
        if let Some(f) = svc.forwarder.as_mut() {
            f.selector = selector.clone();
        }
        svc.handler = Some(handler_cfg.clone());
        svc.listener = Some(listener_cfg.clone());
        svc.metadata = Metadata::from(service_md.clone());
    }
    Ok(services)
}

/// (gost-rs) `-L wasm://:1080?plugin=FILE&isolation=per-connection`: the
/// handler's component (the connector's with `-F`) named by `key`, and its
/// isolation, taken out of the metadata.
fn wasm_plugin(
    ctx: &ArgCtx,
    md: &mut Metadata,
    key: &str,
    what: &str,
) -> Result<PluginConfig, CliError> {
    let mut take = |key: &str| -> Result<String, CliError> {
        let v = md
            .get_string(key)
            .map_err(|e| ctx.md(e))?
            .unwrap_or_default();
        md.remove(key);
        Ok(v)
    };
    let path = take(key)?;
    if path.is_empty() {
        return Err(ctx.err(format!("the wasm {what} needs {key}=FILE (a component)")));
    }
    Ok(PluginConfig {
        r#type: "wasm".into(),
        path,
        isolation: take("isolation")?,
        ..Default::default()
    })
}

/// `interface`, `so_mark` and `proxyProtocol` move under `prefix` (the
/// service's or the hop's metadata), as GOST does.
fn relocate(ctx: &ArgCtx, md: &Metadata, m: &mut Map, prefix: &str) -> Result<(), CliError> {
    let v = md
        .get_string("interface")
        .map_err(|e| ctx.md(e))?
        .unwrap_or_default();
    if !v.is_empty() {
        m.insert(format!("{prefix}interface"), Value::String(v));
        m.remove("interface");
    }
    for key in ["so_mark", "proxyProtocol"] {
        if let Some(n) = md.get_int(key).map_err(|e| ctx.md(e))?.filter(|n| *n > 0) {
            m.insert(format!("{prefix}{key}"), Value::from(n));
            m.remove(key);
        }
    }
    Ok(())
}

/// One `-F`: hop `hop-<i>` of `chain-0`, one node per address in its host
/// list.
fn build_hop(cfg: &mut Config, i: usize, arg: &str) -> Result<HopConfig, CliError> {
    let ctx = ArgCtx { flag: "-F", arg };
    let url = norm(arg).map_err(|e| ctx.err(e))?;
    let mut m = query_map(&url);
    let md = Metadata::from(m.clone());
    let mut hop = HopConfig {
        name: format!("hop-{i}"),
        selector: parse_selector(&mut m).map_err(|e| ctx.md(e))?,
        ..Default::default()
    };
    let get_string = |k: &str| {
        md.get_string(k)
            .map(Option::unwrap_or_default)
            .map_err(|e| ctx.md(e))
    };
    let v = get_string("bypass")?;
    if !v.is_empty() {
        hop.bypass = add_bypass(cfg, &v);
        m.remove("bypass");
    }
    let v = get_string("resolver")?;
    if !v.is_empty() {
        hop.resolver = add_resolver(cfg, &v, "");
        m.remove("resolver");
    }
    let v = get_string("hosts")?;
    if !v.is_empty() {
        hop.hosts = add_hosts(cfg, &v);
        m.remove("hosts");
    }
    relocate(&ctx, &md, &mut m, "hop.")?;

    // Everything but node/connector/dialer keys is also hop metadata;
    // `hop.` keys are the hop's alone.
    let mut hop_md = Map::new();
    for (k, v) in m.clone() {
        if k.starts_with("node.") || k.starts_with("connector.") || k.starts_with("dialer.") {
            continue;
        }
        if let Some(rest) = k.strip_prefix("hop.") {
            hop_md.insert(rest.to_string(), v);
            m.remove(&k);
            continue;
        }
        hop_md.insert(k, v);
    }
    hop.metadata = Metadata::from(hop_md);

    let (node, path_based) = build_node(&ctx, &url, &mut m)?;
    for addr in node.addr.split(',').filter(|a| !a.is_empty()) {
        if !path_based {
            let (_, port) =
                split_host_port(addr).map_err(|e| ctx.err(format!("address \"{addr}\": {e}")))?;
            parse_port_range(port).map_err(|e| ctx.err(format!("address \"{addr}\": {e}")))?;
        }
        hop.nodes.push(NodeConfig {
            name: format!("node-{}", hop.nodes.len()),
            addr: addr.to_string(),
            ..node.clone()
        });
    }
    if hop.nodes.is_empty() {
        return Err(ctx.err("missing address (e.g. host:port)"));
    }
    Ok(hop)
}

/// `buildNodeConfig`. Returns the node (its `addr` possibly a list) and
/// whether the address is a path.
fn build_node(ctx: &ArgCtx, url: &GoUrl, m: &mut Map) -> Result<(NodeConfig, bool), CliError> {
    let (c, d) = split_scheme(ctx, &url.scheme)?;
    if c == d {
        if c != "auto" && !registry::is_connector(c) && !registry::is_dialer(c) {
            return Err(ctx.err(format!("unknown scheme '{c}'")));
        }
    } else {
        if !registry::is_connector(c) {
            return Err(ctx.err(format!("unknown connector '{c}'")));
        }
        if !registry::is_dialer(d) && d != "wasm" {
            return Err(ctx.err(format!("unknown dialer '{d}'")));
        }
    }
    let path_based = ["unix", "serial"].contains(&c)
        || ["unix", "serial"].contains(&d)
        || url.scheme.split('+').any(|s| PATH_PROTOCOLS.contains(&s));
    let md = Metadata::from(m.clone());
    let connector = if registry::is_connector(c) { c } else { "http" };
    let dialer = if registry::is_dialer(d) || (d == "wasm" && c != d) {
        d
    } else if connector == "ssu" {
        "udp"
    } else {
        "tcp"
    };

    let auth = query_auth(ctx, &md, url_auth(url))?;
    m.remove("auth");

    let field = |keys: &[&str]| string_of(&md, keys).map_err(|e| ctx.md(e));
    let secure = match first_present(&md, &["tls.secure", "secure"]) {
        Some(k) => md.get_bool(k).map_err(|e| ctx.md(e))?.unwrap_or(false),
        None => false,
    };
    let mut tls = TLSConfig {
        cert_file: field(&["tls.certFile", "certFile", "cert"])?,
        key_file: field(&["tls.keyFile", "keyFile", "key"])?,
        ca_file: field(&["tls.caFile", "caFile", "ca"])?,
        secure,
        server_name: field(&["tls.servername", "servername"])?,
        ..Default::default()
    };
    if tls.server_name.is_empty() {
        tls.server_name = url.hostname().to_string();
    }
    // GOST deletes `serverName` but reads `servername`: only the exact
    // spelling `serverName` leaves the metadata.
    for k in [
        "tls.certFile",
        "certFile",
        "cert",
        "tls.keyFile",
        "keyFile",
        "key",
        "tls.caFile",
        "caFile",
        "ca",
        "tls.secure",
        "secure",
        "tls.servername",
        "serverName",
    ] {
        m.remove(k);
    }
    let tls = (tls.secure
        || !tls.cert_file.is_empty()
        || !tls.ca_file.is_empty()
        || !tls.server_name.is_empty())
    .then_some(tls);

    let [node_md, connector_md, dialer_md] = route(m, ["node.", "connector.", "dialer."]);
    let addr = if path_based && url.host.is_empty() {
        url.path.clone()
    } else {
        url.host.clone()
    };
    let mut node = NodeConfig {
        addr,
        metadata: Metadata::from(node_md),
        connector: Some(ConnectorConfig {
            r#type: connector.to_string(),
            auth,
            metadata: Metadata::from(connector_md),
            ..Default::default()
        }),
        dialer: Some(DialerConfig {
            r#type: dialer.to_string(),
            tls,
            metadata: Metadata::from(dialer_md),
            ..Default::default()
        }),
        ..Default::default()
    };
    if let Some(d) = node.dialer.as_mut().filter(|d| d.r#type == "wasm") {
        d.plugin = Some(Box::new(wasm_plugin(
            ctx,
            &mut d.metadata,
            "transport",
            "dialer",
        )?));
    }
    if let Some(c) = node.connector.as_mut().filter(|c| c.r#type == "wasm") {
        c.plugin = Some(Box::new(wasm_plugin(
            ctx,
            &mut c.metadata,
            "plugin",
            "connector",
        )?));
    }
    if matches!(dialer, "ssh" | "sshd") {
        if let (Some(c), Some(d)) = (node.connector.as_mut(), node.dialer.as_mut()) {
            d.auth = c.auth.take();
        }
    }
    Ok((node, path_based))
}
