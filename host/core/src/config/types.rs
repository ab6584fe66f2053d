//! The GOST v3 configuration schema (go-gost/x `config/config.go`).
//!
//! Every struct and key is GOST's, in GOST's field order, so a GOST file
//! loads unchanged and `-O yaml|json` prints the same document. Go's
//! `omitempty` is `skip_serializing_if = "is_default"` here; fields Go
//! always writes (names, `type`, selector fields, stats) are always written.
//!
//! GOST (viper + mapstructure) matches keys case-insensitively; the
//! all-lowercase spelling of each camelCase key is accepted as an alias,
//! which covers what users actually write (`pathprefix`, `maxfails`).
//! Deprecated fields are kept: GOST still reads them and, when set, writes
//! them back.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::Duration;
use crate::metadata::Metadata;

/// Go's `omitempty`: the zero value is left out.
fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// A node list without the spare capacity a growing `Vec` keeps: most
/// lists hold one node, and a node's config is large, so the spare room
/// would be most of a configured service's memory.
fn shrunk<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    let mut v = Vec::<T>::deserialize(d)?;
    v.shrink_to_fit();
    Ok(v)
}

/// A map of header names to values, sorted like Go's encoders sort maps.
pub type StringMap = BTreeMap<String, String>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    #[serde(skip_serializing_if = "is_default")]
    pub output: String,
    #[serde(skip_serializing_if = "is_default")]
    pub level: String,
    #[serde(skip_serializing_if = "is_default")]
    pub format: String,
    #[serde(skip_serializing_if = "is_default")]
    pub rotation: Option<LogRotationConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogRotationConfig {
    /// Megabytes before the file is rotated (GOST's default: 100).
    #[serde(
        rename = "maxSize",
        alias = "maxsize",
        skip_serializing_if = "is_default"
    )]
    pub max_size: i64,
    /// Days to keep old files (0: keep).
    #[serde(
        rename = "maxAge",
        alias = "maxage",
        skip_serializing_if = "is_default"
    )]
    pub max_age: i64,
    #[serde(
        rename = "maxBackups",
        alias = "maxbackups",
        skip_serializing_if = "is_default"
    )]
    pub max_backups: i64,
    #[serde(
        rename = "localTime",
        alias = "localtime",
        skip_serializing_if = "is_default"
    )]
    pub local_time: bool,
    #[serde(skip_serializing_if = "is_default")]
    pub compress: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoggerConfig {
    pub name: String,
    #[serde(skip_serializing_if = "is_default")]
    pub log: Option<LogConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProfilingConfig {
    pub addr: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct APIConfig {
    /// `host:port`, or `unix:///path` for a unix socket.
    pub addr: String,
    #[serde(
        rename = "pathPrefix",
        alias = "pathprefix",
        skip_serializing_if = "is_default"
    )]
    pub path_prefix: String,
    #[serde(skip_serializing_if = "is_default")]
    pub accesslog: bool,
    #[serde(skip_serializing_if = "is_default")]
    pub auth: Option<AuthConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub auther: String,
    /// gost-rs: origins a browser may call the API from (`*`: any, as GOST).
    #[serde(skip_serializing_if = "is_default")]
    pub cors: Vec<String>,
    /// gost-rs: `Host` names an API without auth answers besides loopback
    /// and IP addresses (`*`: any, as GOST).
    #[serde(skip_serializing_if = "is_default")]
    pub hosts: Vec<String>,
    /// gost-rs: let `POST /config?path=` write outside the config's
    /// directory, as GOST does.
    #[serde(
        rename = "savePathAnywhere",
        alias = "savepathanywhere",
        skip_serializing_if = "is_default"
    )]
    pub save_path_anywhere: bool,
    /// gost-rs: accept writes whose body is not `application/json`, as GOST.
    #[serde(
        rename = "anyContentType",
        alias = "anycontenttype",
        skip_serializing_if = "is_default"
    )]
    pub any_content_type: bool,
    /// gost-rs: show passwords, tokens and passphrases as `******` in the
    /// API's reads (GOST shows them).
    #[serde(
        rename = "maskSecrets",
        alias = "masksecrets",
        skip_serializing_if = "is_default"
    )]
    pub mask_secrets: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    pub addr: String,
    #[serde(skip_serializing_if = "is_default")]
    pub path: String,
    #[serde(skip_serializing_if = "is_default")]
    pub auth: Option<AuthConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub auther: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TLSConfig {
    #[serde(
        rename = "certFile",
        alias = "certfile",
        skip_serializing_if = "is_default"
    )]
    pub cert_file: String,
    #[serde(
        rename = "keyFile",
        alias = "keyfile",
        skip_serializing_if = "is_default"
    )]
    pub key_file: String,
    #[serde(
        rename = "caFile",
        alias = "cafile",
        skip_serializing_if = "is_default"
    )]
    pub ca_file: String,
    #[serde(skip_serializing_if = "is_default")]
    pub secure: bool,
    #[serde(
        rename = "serverName",
        alias = "servername",
        skip_serializing_if = "is_default"
    )]
    pub server_name: String,
    #[serde(skip_serializing_if = "is_default")]
    pub options: Option<TLSOptions>,
    /// Validity of the self-signed certificate GOST generates when no
    /// certificate is given; likewise `commonName` and `organization`.
    #[serde(skip_serializing_if = "is_default")]
    pub validity: Duration,
    #[serde(
        rename = "commonName",
        alias = "commonname",
        skip_serializing_if = "is_default"
    )]
    pub common_name: String,
    #[serde(skip_serializing_if = "is_default")]
    pub organization: String,
    #[serde(
        rename = "rejectUnknownSNI",
        alias = "rejectunknownsni",
        skip_serializing_if = "is_default"
    )]
    pub reject_unknown_sni: bool,
    #[serde(
        rename = "serverNames",
        alias = "servernames",
        skip_serializing_if = "is_default"
    )]
    pub server_names: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TLSOptions {
    #[serde(
        rename = "minVersion",
        alias = "minversion",
        skip_serializing_if = "is_default"
    )]
    pub min_version: String,
    #[serde(
        rename = "maxVersion",
        alias = "maxversion",
        skip_serializing_if = "is_default"
    )]
    pub max_version: String,
    #[serde(
        rename = "cipherSuites",
        alias = "ciphersuites",
        skip_serializing_if = "is_default"
    )]
    pub cipher_suites: Vec<String>,
    #[serde(skip_serializing_if = "is_default")]
    pub alpn: Vec<String>,
}

/// An external implementation of a module: GOST's `grpc` and `http`
/// plugin clients, or (gost-rs) a `wasm` component.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PluginConfig {
    pub r#type: String,
    pub addr: String,
    #[serde(skip_serializing_if = "is_default")]
    pub tls: Option<TLSConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub timeout: Duration,
    #[serde(skip_serializing_if = "is_default")]
    pub token: String,
    /// (`wasm`) The component file.
    #[serde(skip_serializing_if = "is_default")]
    pub path: String,
    /// (`wasm`) Free-form settings the plugin reads as JSON.
    #[serde(skip_serializing_if = "is_default")]
    pub config: Option<serde_json::Value>,
    /// (`wasm`) Resource limits of each instance.
    #[serde(skip_serializing_if = "is_default")]
    pub limits: Option<PluginLimits>,
    /// (`wasm` handlers) `pooled` (default) reuses warm instances one
    /// connection at a time; `per-connection` gives each a fresh instance.
    #[serde(skip_serializing_if = "is_default")]
    pub isolation: String,
    /// (`wasm`) A host directory the plugin may read and write, seen by the
    /// plugin as `/data`. No other file is reachable.
    #[serde(skip_serializing_if = "is_default")]
    pub dir: String,
    /// (`wasm`) `ip:port` addresses the plugin may open TCP connections
    /// to. No other network access is possible.
    #[serde(skip_serializing_if = "is_default")]
    pub connect: Vec<String>,
}

/// Limits of a `wasm` plugin instance; zero values take the defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PluginLimits {
    /// Linear memory: bytes, or a size such as `64MiB`.
    #[serde(skip_serializing_if = "is_default")]
    pub memory: Option<serde_json::Value>,
    /// How long the plugin may compute without waiting on I/O or the host.
    #[serde(skip_serializing_if = "is_default")]
    pub deadline: Duration,
    /// Warm instances kept idle per service.
    #[serde(skip_serializing_if = "is_default")]
    pub instances: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AutherConfig {
    pub name: String,
    #[serde(skip_serializing_if = "is_default")]
    pub auths: Vec<AuthConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub reload: Duration,
    #[serde(skip_serializing_if = "is_default")]
    pub file: Option<FileLoader>,
    #[serde(skip_serializing_if = "is_default")]
    pub redis: Option<RedisLoader>,
    #[serde(skip_serializing_if = "is_default")]
    pub http: Option<HTTPLoader>,
    #[serde(skip_serializing_if = "is_default")]
    pub plugin: Option<PluginConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    #[serde(skip_serializing_if = "is_default")]
    pub username: String,
    #[serde(skip_serializing_if = "is_default")]
    pub password: String,
    #[serde(skip_serializing_if = "is_default")]
    pub file: String,
}

/// How a hop picks a node; all three fields are always written, as in Go.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SelectorConfig {
    pub strategy: String,
    #[serde(rename = "maxFails", alias = "maxfails")]
    pub max_fails: i64,
    #[serde(rename = "failTimeout", alias = "failtimeout")]
    pub fail_timeout: Duration,
    #[serde(
        rename = "maxLatency",
        alias = "maxlatency",
        skip_serializing_if = "is_default"
    )]
    pub max_latency: Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdmissionConfig {
    pub name: String,
    /// Deprecated by GOST: use `whitelist`.
    #[serde(skip_serializing_if = "is_default")]
    pub reverse: bool,
    #[serde(skip_serializing_if = "is_default")]
    pub whitelist: bool,
    #[serde(skip_serializing_if = "is_default")]
    pub matchers: Vec<String>,
    #[serde(skip_serializing_if = "is_default")]
    pub reload: Duration,
    #[serde(skip_serializing_if = "is_default")]
    pub file: Option<FileLoader>,
    #[serde(skip_serializing_if = "is_default")]
    pub redis: Option<RedisLoader>,
    #[serde(skip_serializing_if = "is_default")]
    pub http: Option<HTTPLoader>,
    #[serde(skip_serializing_if = "is_default")]
    pub plugin: Option<PluginConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BypassConfig {
    pub name: String,
    /// Deprecated by GOST: use `whitelist`.
    #[serde(skip_serializing_if = "is_default")]
    pub reverse: bool,
    #[serde(skip_serializing_if = "is_default")]
    pub whitelist: bool,
    #[serde(skip_serializing_if = "is_default")]
    pub network: String,
    #[serde(skip_serializing_if = "is_default")]
    pub matchers: Vec<String>,
    #[serde(skip_serializing_if = "is_default")]
    pub reload: Duration,
    #[serde(skip_serializing_if = "is_default")]
    pub file: Option<FileLoader>,
    #[serde(skip_serializing_if = "is_default")]
    pub redis: Option<RedisLoader>,
    #[serde(skip_serializing_if = "is_default")]
    pub http: Option<HTTPLoader>,
    #[serde(skip_serializing_if = "is_default")]
    pub plugin: Option<PluginConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FileLoader {
    pub path: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisLoader {
    pub addr: String,
    #[serde(skip_serializing_if = "is_default")]
    pub db: i64,
    #[serde(skip_serializing_if = "is_default")]
    pub username: String,
    #[serde(skip_serializing_if = "is_default")]
    pub password: String,
    #[serde(skip_serializing_if = "is_default")]
    pub key: String,
    #[serde(skip_serializing_if = "is_default")]
    pub r#type: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HTTPLoader {
    pub url: String,
    #[serde(skip_serializing_if = "is_default")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NameserverConfig {
    pub addr: String,
    #[serde(skip_serializing_if = "is_default")]
    pub chain: String,
    #[serde(skip_serializing_if = "is_default")]
    pub prefer: String,
    #[serde(
        rename = "clientIP",
        alias = "clientip",
        skip_serializing_if = "is_default"
    )]
    pub client_ip: String,
    #[serde(skip_serializing_if = "is_default")]
    pub hostname: String,
    #[serde(skip_serializing_if = "is_default")]
    pub ttl: Duration,
    #[serde(skip_serializing_if = "is_default")]
    pub timeout: Duration,
    #[serde(skip_serializing_if = "is_default")]
    pub r#async: bool,
    #[serde(skip_serializing_if = "is_default")]
    pub only: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResolverConfig {
    pub name: String,
    #[serde(skip_serializing_if = "is_default")]
    pub nameservers: Vec<NameserverConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub plugin: Option<PluginConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostMappingConfig {
    pub ip: String,
    pub hostname: String,
    #[serde(skip_serializing_if = "is_default")]
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostsConfig {
    pub name: String,
    #[serde(skip_serializing_if = "is_default")]
    pub mappings: Vec<HostMappingConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub reload: Duration,
    #[serde(skip_serializing_if = "is_default")]
    pub file: Option<FileLoader>,
    #[serde(skip_serializing_if = "is_default")]
    pub redis: Option<RedisLoader>,
    #[serde(skip_serializing_if = "is_default")]
    pub http: Option<HTTPLoader>,
    #[serde(skip_serializing_if = "is_default")]
    pub plugin: Option<PluginConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IngressRuleConfig {
    pub hostname: String,
    pub endpoint: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IngressConfig {
    pub name: String,
    #[serde(skip_serializing_if = "is_default")]
    pub rules: Vec<IngressRuleConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub reload: Duration,
    #[serde(skip_serializing_if = "is_default")]
    pub file: Option<FileLoader>,
    #[serde(skip_serializing_if = "is_default")]
    pub redis: Option<RedisLoader>,
    #[serde(skip_serializing_if = "is_default")]
    pub http: Option<HTTPLoader>,
    #[serde(skip_serializing_if = "is_default")]
    pub plugin: Option<PluginConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SDConfig {
    pub name: String,
    #[serde(skip_serializing_if = "is_default")]
    pub plugin: Option<PluginConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouterRouteConfig {
    /// Deprecated by GOST: use `dst`.
    #[serde(skip_serializing_if = "is_default")]
    pub net: String,
    #[serde(skip_serializing_if = "is_default")]
    pub dst: String,
    pub gateway: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouterConfig {
    pub name: String,
    #[serde(skip_serializing_if = "is_default")]
    pub routes: Vec<RouterRouteConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub reload: Duration,
    #[serde(skip_serializing_if = "is_default")]
    pub file: Option<FileLoader>,
    #[serde(skip_serializing_if = "is_default")]
    pub redis: Option<RedisLoader>,
    #[serde(skip_serializing_if = "is_default")]
    pub http: Option<HTTPLoader>,
    #[serde(skip_serializing_if = "is_default")]
    pub plugin: Option<PluginConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecorderConfig {
    pub name: String,
    #[serde(skip_serializing_if = "is_default")]
    pub file: Option<FileRecorder>,
    #[serde(skip_serializing_if = "is_default")]
    pub tcp: Option<TCPRecorder>,
    #[serde(skip_serializing_if = "is_default")]
    pub http: Option<HTTPRecorder>,
    #[serde(skip_serializing_if = "is_default")]
    pub redis: Option<RedisRecorder>,
    #[serde(skip_serializing_if = "is_default")]
    pub plugin: Option<PluginConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FileRecorder {
    pub path: String,
    #[serde(skip_serializing_if = "is_default")]
    pub sep: String,
    #[serde(skip_serializing_if = "is_default")]
    pub rotation: Option<LogRotationConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TCPRecorder {
    pub addr: String,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HTTPRecorder {
    pub url: String,
    #[serde(skip_serializing_if = "is_default")]
    pub timeout: Duration,
    #[serde(skip_serializing_if = "is_default")]
    pub header: StringMap,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisRecorder {
    pub addr: String,
    #[serde(skip_serializing_if = "is_default")]
    pub db: i64,
    #[serde(skip_serializing_if = "is_default")]
    pub username: String,
    #[serde(skip_serializing_if = "is_default")]
    pub password: String,
    #[serde(skip_serializing_if = "is_default")]
    pub key: String,
    #[serde(skip_serializing_if = "is_default")]
    pub r#type: String,
}

/// A service's use of a named recorder (`record` says what is recorded).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecorderObject {
    pub name: String,
    pub record: String,
    #[serde(skip_serializing_if = "is_default")]
    pub metadata: Metadata,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RewriterConfig {
    pub name: String,
    #[serde(skip_serializing_if = "is_default")]
    pub plugin: Option<PluginConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheConfig {
    pub name: String,
    #[serde(skip_serializing_if = "is_default")]
    pub memory: Option<MemoryCache>,
    #[serde(skip_serializing_if = "is_default")]
    pub redis: Option<RedisCache>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisCache {
    pub addr: String,
    #[serde(skip_serializing_if = "is_default")]
    pub db: i64,
    #[serde(skip_serializing_if = "is_default")]
    pub username: String,
    #[serde(skip_serializing_if = "is_default")]
    pub password: String,
    #[serde(skip_serializing_if = "is_default")]
    pub ttl: Duration,
    /// Key prefix (GOST's default: `gost:cache:`).
    #[serde(skip_serializing_if = "is_default")]
    pub key: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryCache {
    #[serde(skip_serializing_if = "is_default")]
    pub ttl: Duration,
    #[serde(
        rename = "maxSize",
        alias = "maxsize",
        skip_serializing_if = "is_default"
    )]
    pub max_size: i64,
    #[serde(
        rename = "maxBytes",
        alias = "maxbytes",
        skip_serializing_if = "is_default"
    )]
    pub max_bytes: i64,
    #[serde(
        rename = "cleanupInterval",
        alias = "cleanupinterval",
        skip_serializing_if = "is_default"
    )]
    pub cleanup_interval: Duration,
    /// `oldest` or `lru`.
    #[serde(skip_serializing_if = "is_default")]
    pub eviction: String,
}

/// Used for `limiters` (traffic), `climiters` (connections) and
/// `rlimiters` (request rate) alike.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimiterConfig {
    pub name: String,
    #[serde(skip_serializing_if = "is_default")]
    pub limits: Vec<String>,
    #[serde(skip_serializing_if = "is_default")]
    pub reload: Duration,
    #[serde(skip_serializing_if = "is_default")]
    pub file: Option<FileLoader>,
    #[serde(skip_serializing_if = "is_default")]
    pub redis: Option<RedisLoader>,
    #[serde(skip_serializing_if = "is_default")]
    pub http: Option<HTTPLoader>,
    #[serde(skip_serializing_if = "is_default")]
    pub plugin: Option<PluginConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ObserverConfig {
    pub name: String,
    #[serde(skip_serializing_if = "is_default")]
    pub plugin: Option<PluginConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListenerConfig {
    pub r#type: String,
    #[serde(skip_serializing_if = "is_default")]
    pub chain: String,
    #[serde(
        rename = "chainGroup",
        alias = "chaingroup",
        skip_serializing_if = "is_default"
    )]
    pub chain_group: Option<Box<ChainGroupConfig>>,
    #[serde(skip_serializing_if = "is_default")]
    pub auther: String,
    #[serde(skip_serializing_if = "is_default")]
    pub authers: Vec<String>,
    #[serde(skip_serializing_if = "is_default")]
    pub auth: Option<AuthConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub tls: Option<Box<TLSConfig>>,
    /// (gost-rs) The component of a `wasm` listener (a transport plugin).
    #[serde(skip_serializing_if = "is_default")]
    pub plugin: Option<Box<PluginConfig>>,
    #[serde(skip_serializing_if = "is_default")]
    pub metadata: Metadata,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HandlerConfig {
    pub r#type: String,
    #[serde(skip_serializing_if = "is_default")]
    pub retries: i64,
    #[serde(skip_serializing_if = "is_default")]
    pub chain: String,
    #[serde(
        rename = "chainGroup",
        alias = "chaingroup",
        skip_serializing_if = "is_default"
    )]
    pub chain_group: Option<Box<ChainGroupConfig>>,
    #[serde(skip_serializing_if = "is_default")]
    pub auther: String,
    #[serde(skip_serializing_if = "is_default")]
    pub authers: Vec<String>,
    #[serde(skip_serializing_if = "is_default")]
    pub auth: Option<AuthConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub tls: Option<Box<TLSConfig>>,
    #[serde(skip_serializing_if = "is_default")]
    pub limiter: String,
    #[serde(skip_serializing_if = "is_default")]
    pub observer: String,
    /// (gost-rs) The component of a `wasm` handler.
    #[serde(skip_serializing_if = "is_default")]
    pub plugin: Option<Box<PluginConfig>>,
    #[serde(skip_serializing_if = "is_default")]
    pub metadata: Metadata,
}

/// Fixed targets of a service: inline `nodes`, a named `hop`, or a
/// `hopGroup`. `nodes` is always written, as Go does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ForwarderConfig {
    /// Deprecated by GOST: use `hop`.
    #[serde(skip_serializing_if = "is_default")]
    pub name: String,
    #[serde(skip_serializing_if = "is_default")]
    pub hop: String,
    #[serde(skip_serializing_if = "is_default")]
    pub selector: Option<SelectorConfig>,
    #[serde(deserialize_with = "shrunk")]
    pub nodes: Vec<ForwardNodeConfig>,
    #[serde(
        rename = "hopGroup",
        alias = "hopgroup",
        skip_serializing_if = "is_default"
    )]
    pub hop_group: Option<ForwardHopGroupConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ForwardHopGroupConfig {
    #[serde(skip_serializing_if = "is_default")]
    pub hops: Vec<ForwardHopConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub selector: Option<SelectorConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ForwardHopConfig {
    #[serde(skip_serializing_if = "is_default")]
    pub hop: String,
    #[serde(skip_serializing_if = "is_default")]
    pub matcher: Option<NodeMatcherConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub probe: Option<ProbeConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ForwardNodeConfig {
    #[serde(skip_serializing_if = "is_default")]
    pub name: String,
    #[serde(skip_serializing_if = "is_default")]
    pub addr: String,
    #[serde(skip_serializing_if = "is_default")]
    pub network: String,
    #[serde(skip_serializing_if = "is_default")]
    pub bypass: String,
    #[serde(skip_serializing_if = "is_default")]
    pub bypasses: Vec<String>,
    /// Deprecated by GOST: use `matcher`.
    #[serde(skip_serializing_if = "is_default")]
    pub protocol: String,
    /// Deprecated by GOST: use `matcher`.
    #[serde(skip_serializing_if = "is_default")]
    pub host: String,
    /// Deprecated by GOST: use `matcher`.
    #[serde(skip_serializing_if = "is_default")]
    pub path: String,
    /// Deprecated by GOST: use `matcher`.
    #[serde(skip_serializing_if = "is_default")]
    pub filter: Option<Box<NodeFilterConfig>>,
    #[serde(skip_serializing_if = "is_default")]
    pub matcher: Option<Box<NodeMatcherConfig>>,
    /// Deprecated by GOST: use `http.auth`.
    #[serde(skip_serializing_if = "is_default")]
    pub auth: Option<AuthConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub http: Option<Box<HTTPNodeConfig>>,
    #[serde(skip_serializing_if = "is_default")]
    pub tls: Option<Box<TLSNodeConfig>>,
    #[serde(skip_serializing_if = "is_default")]
    pub probe: Option<Box<ProbeConfig>>,
    #[serde(skip_serializing_if = "is_default")]
    pub metadata: Metadata,
}

/// A hop's node used as a forwarder target, as GOST does when a forwarder
/// refers to a hop: the fields both share carry over.
impl From<&NodeConfig> for ForwardNodeConfig {
    fn from(n: &NodeConfig) -> Self {
        ForwardNodeConfig {
            name: n.name.clone(),
            addr: n.addr.clone(),
            network: n.network.clone(),
            bypass: n.bypass.clone(),
            bypasses: n.bypasses.clone(),
            filter: n.filter.clone(),
            matcher: n.matcher.clone(),
            http: n.http.clone(),
            tls: n.tls.clone(),
            probe: n.probe.clone(),
            metadata: n.metadata.clone(),
            ..Default::default()
        }
    }
}

/// Go writes these keys capitalised in JSON (no json tag) and lowercase in
/// YAML; GOST reads either. We write the lowercase form its docs use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HTTPURLRewriteConfig {
    #[serde(rename = "match", alias = "Match")]
    pub r#match: String,
    #[serde(alias = "Replacement")]
    pub replacement: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HTTPBodyRewriteConfig {
    /// MIME types the rewrite applies to.
    #[serde(rename = "type", alias = "Type")]
    pub r#type: String,
    #[serde(rename = "match", alias = "Match")]
    pub r#match: String,
    #[serde(alias = "Replacement")]
    pub replacement: String,
    /// A named rewriter plugin.
    #[serde(skip_serializing_if = "is_default")]
    pub rewriter: String,
    #[serde(
        rename = "maxChunkSize",
        alias = "maxchunksize",
        skip_serializing_if = "is_default"
    )]
    pub max_chunk_size: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeFilterConfig {
    #[serde(skip_serializing_if = "is_default")]
    pub host: String,
    #[serde(skip_serializing_if = "is_default")]
    pub protocol: String,
    #[serde(skip_serializing_if = "is_default")]
    pub path: String,
}

/// A routing rule choosing this node. `priority` 0 means "by rule length",
/// negative disables the priority short-cut, positive is explicit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeMatcherConfig {
    #[serde(skip_serializing_if = "is_default")]
    pub rule: String,
    #[serde(skip_serializing_if = "is_default")]
    pub priority: i64,
    #[serde(
        rename = "bodySize",
        alias = "bodysize",
        skip_serializing_if = "is_default"
    )]
    pub body_size: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProbeConfig {
    pub r#type: String,
    #[serde(skip_serializing_if = "is_default")]
    pub addr: String,
    pub interval: Duration,
    pub timeout: Duration,
    #[serde(
        rename = "httpPath",
        alias = "httppath",
        skip_serializing_if = "is_default"
    )]
    pub http_path: String,
    #[serde(
        rename = "httpHost",
        alias = "httphost",
        skip_serializing_if = "is_default"
    )]
    pub http_host: String,
    #[serde(
        rename = "httpHeaders",
        alias = "httpheaders",
        skip_serializing_if = "is_default"
    )]
    pub http_headers: StringMap,
    #[serde(
        rename = "expectedStatus",
        alias = "expectedstatus",
        skip_serializing_if = "is_default"
    )]
    pub expected_status: i64,
    #[serde(skip_serializing_if = "is_default")]
    pub command: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HTTPNodeConfig {
    /// Rewrites the Host header.
    #[serde(skip_serializing_if = "is_default")]
    pub host: String,
    /// Deprecated by GOST: use `requestHeader`.
    #[serde(skip_serializing_if = "is_default")]
    pub header: StringMap,
    #[serde(
        rename = "requestHeader",
        alias = "requestheader",
        skip_serializing_if = "is_default"
    )]
    pub request_header: StringMap,
    #[serde(
        rename = "responseHeader",
        alias = "responseheader",
        skip_serializing_if = "is_default"
    )]
    pub response_header: StringMap,
    /// Deprecated by GOST: use `rewriteURL`.
    #[serde(skip_serializing_if = "is_default")]
    pub rewrite: Vec<HTTPURLRewriteConfig>,
    #[serde(
        rename = "rewriteURL",
        alias = "rewriteurl",
        skip_serializing_if = "is_default"
    )]
    pub rewrite_url: Vec<HTTPURLRewriteConfig>,
    /// Deprecated by GOST: use `rewriteResponseBody`.
    #[serde(
        rename = "rewriteBody",
        alias = "rewritebody",
        skip_serializing_if = "is_default"
    )]
    pub rewrite_body: Vec<HTTPBodyRewriteConfig>,
    #[serde(
        rename = "rewriteRequestBody",
        alias = "rewriterequestbody",
        skip_serializing_if = "is_default"
    )]
    pub rewrite_request_body: Vec<HTTPBodyRewriteConfig>,
    #[serde(
        rename = "rewriteResponseBody",
        alias = "rewriteresponsebody",
        skip_serializing_if = "is_default"
    )]
    pub rewrite_response_body: Vec<HTTPBodyRewriteConfig>,
    /// Comma-separated status codes that mark the node failed, e.g. `429,5xx`.
    #[serde(
        rename = "failCodes",
        alias = "failcodes",
        skip_serializing_if = "is_default"
    )]
    pub fail_codes: String,
    /// Basic auth sent to the node.
    #[serde(skip_serializing_if = "is_default")]
    pub auth: Option<AuthConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TLSNodeConfig {
    #[serde(
        rename = "serverName",
        alias = "servername",
        skip_serializing_if = "is_default"
    )]
    pub server_name: String,
    #[serde(skip_serializing_if = "is_default")]
    pub secure: bool,
    #[serde(skip_serializing_if = "is_default")]
    pub options: Option<TLSOptions>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DialerConfig {
    pub r#type: String,
    #[serde(skip_serializing_if = "is_default")]
    pub auth: Option<AuthConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub tls: Option<TLSConfig>,
    /// (gost-rs) The component of a `wasm` dialer (a transport plugin).
    #[serde(skip_serializing_if = "is_default")]
    pub plugin: Option<Box<PluginConfig>>,
    #[serde(skip_serializing_if = "is_default")]
    pub metadata: Metadata,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectorConfig {
    pub r#type: String,
    #[serde(skip_serializing_if = "is_default")]
    pub auth: Option<AuthConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub tls: Option<TLSConfig>,
    /// (gost-rs) The component of a `wasm` connector.
    #[serde(skip_serializing_if = "is_default")]
    pub plugin: Option<Box<PluginConfig>>,
    #[serde(skip_serializing_if = "is_default")]
    pub metadata: Metadata,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SockOptsConfig {
    #[serde(skip_serializing_if = "is_default")]
    pub mark: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceConfig {
    pub name: String,
    #[serde(skip_serializing_if = "is_default")]
    pub addr: String,
    /// Deprecated by GOST: use `metadata.interface`.
    #[serde(skip_serializing_if = "is_default")]
    pub interface: String,
    /// Deprecated by GOST: use `metadata.so_mark`.
    #[serde(skip_serializing_if = "is_default")]
    pub sockopts: Option<SockOptsConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub admission: String,
    #[serde(skip_serializing_if = "is_default")]
    pub admissions: Vec<String>,
    #[serde(skip_serializing_if = "is_default")]
    pub bypass: String,
    #[serde(skip_serializing_if = "is_default")]
    pub bypasses: Vec<String>,
    #[serde(skip_serializing_if = "is_default")]
    pub resolver: String,
    #[serde(skip_serializing_if = "is_default")]
    pub hosts: String,
    #[serde(skip_serializing_if = "is_default")]
    pub limiter: String,
    #[serde(skip_serializing_if = "is_default")]
    pub quotas: Vec<String>,
    #[serde(skip_serializing_if = "is_default")]
    pub climiter: String,
    #[serde(skip_serializing_if = "is_default")]
    pub rlimiter: String,
    #[serde(skip_serializing_if = "is_default")]
    pub logger: String,
    #[serde(skip_serializing_if = "is_default")]
    pub loggers: Vec<String>,
    #[serde(skip_serializing_if = "is_default")]
    pub observer: String,
    #[serde(skip_serializing_if = "is_default")]
    pub rewriter: String,
    #[serde(skip_serializing_if = "is_default")]
    pub recorders: Vec<RecorderObject>,
    #[serde(skip_serializing_if = "is_default")]
    pub cache: String,
    #[serde(skip_serializing_if = "is_default")]
    pub handler: Option<HandlerConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub listener: Option<ListenerConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub forwarder: Option<ForwarderConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub metadata: Metadata,
    /// Live state, filled in by the web API's `GET /config`; never read.
    #[serde(skip_serializing_if = "is_default")]
    pub status: Option<ServiceStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceStatus {
    /// Unix seconds.
    #[serde(rename = "createTime", alias = "createtime")]
    pub create_time: i64,
    /// `running`, `ready`, `failed` or `closed`.
    pub state: String,
    /// Newest last.
    #[serde(skip_serializing_if = "is_default")]
    pub events: Vec<ServiceEvent>,
    /// Present only with `metadata.enableStats`.
    #[serde(skip_serializing_if = "is_default")]
    pub stats: Option<ServiceStats>,
    #[serde(
        rename = "stoppedByLimit",
        alias = "stoppedbylimit",
        skip_serializing_if = "is_default"
    )]
    pub stopped_by_limit: bool,
    #[serde(skip_serializing_if = "is_default")]
    pub quotas: Vec<ServiceQuota>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceEvent {
    /// Unix seconds.
    pub time: i64,
    pub msg: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceStats {
    #[serde(rename = "totalConns", alias = "totalconns")]
    pub total_conns: u64,
    #[serde(rename = "currentConns", alias = "currentconns")]
    pub current_conns: u64,
    #[serde(rename = "totalErrs", alias = "totalerrs")]
    pub total_errs: u64,
    /// Bytes read from the client.
    #[serde(rename = "inputBytes", alias = "inputbytes")]
    pub input_bytes: u64,
    /// Bytes written to the client.
    #[serde(rename = "outputBytes", alias = "outputbytes")]
    pub output_bytes: u64,
}

/// A named traffic-volume budget; services naming the same quota share it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QuotaConfig {
    pub name: String,
    #[serde(skip_serializing_if = "is_default")]
    pub limit: String,
    #[serde(
        rename = "startsAt",
        alias = "startsat",
        skip_serializing_if = "is_default"
    )]
    pub starts_at: String,
    #[serde(
        rename = "expiresAt",
        alias = "expiresat",
        skip_serializing_if = "is_default"
    )]
    pub expires_at: String,
    #[serde(skip_serializing_if = "is_default")]
    pub direction: String,
    #[serde(skip_serializing_if = "is_default")]
    pub flush: String,
    #[serde(skip_serializing_if = "is_default")]
    pub store: Option<QuotaStoreConfig>,
    /// Live state, output only.
    #[serde(skip_serializing_if = "is_default")]
    pub status: Option<QuotaStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QuotaStoreConfig {
    /// `file` (default) or `redis`.
    pub r#type: String,
    #[serde(skip_serializing_if = "is_default")]
    pub file: String,
    #[serde(skip_serializing_if = "is_default")]
    pub redis: Option<QuotaRedisConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QuotaRedisConfig {
    pub addr: String,
    #[serde(skip_serializing_if = "is_default")]
    pub db: i64,
    #[serde(skip_serializing_if = "is_default")]
    pub username: String,
    #[serde(skip_serializing_if = "is_default")]
    pub password: String,
    #[serde(skip_serializing_if = "is_default")]
    pub key: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QuotaStatus {
    pub used: u64,
    pub limit: u64,
    #[serde(
        rename = "startsAt",
        alias = "startsat",
        skip_serializing_if = "is_default"
    )]
    pub starts_at: i64,
    #[serde(
        rename = "expiresAt",
        alias = "expiresat",
        skip_serializing_if = "is_default"
    )]
    pub expires_at: i64,
    pub active: bool,
    #[serde(skip_serializing_if = "is_default")]
    pub expired: bool,
    pub blocked: bool,
    #[serde(skip_serializing_if = "is_default")]
    pub direction: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceQuota {
    pub name: String,
    pub used: u64,
    pub limit: u64,
    #[serde(
        rename = "startsAt",
        alias = "startsat",
        skip_serializing_if = "is_default"
    )]
    pub starts_at: i64,
    #[serde(
        rename = "expiresAt",
        alias = "expiresat",
        skip_serializing_if = "is_default"
    )]
    pub expires_at: i64,
    pub active: bool,
    #[serde(skip_serializing_if = "is_default")]
    pub expired: bool,
    pub blocked: bool,
    #[serde(skip_serializing_if = "is_default")]
    pub direction: String,
}

/// `hops` is always written, as Go does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChainConfig {
    pub name: String,
    pub hops: Vec<HopConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub metadata: Metadata,
}

/// One chain of a `chainGroup`. GOST also accepts a plain chain name here
/// (`chains: [a, b]`), which the custom `Deserialize` keeps working.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChainGroupEntry {
    #[serde(skip_serializing_if = "is_default")]
    pub chain: String,
    #[serde(skip_serializing_if = "is_default")]
    pub matcher: Option<NodeMatcherConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub probe: Option<ProbeConfig>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct ChainGroupEntryFields {
    chain: String,
    matcher: Option<NodeMatcherConfig>,
    probe: Option<ProbeConfig>,
}

impl<'de> Deserialize<'de> for ChainGroupEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = ChainGroupEntry;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a chain name or {chain, matcher, probe}")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ChainGroupEntry, E> {
                Ok(ChainGroupEntry {
                    chain: v.to_string(),
                    ..Default::default()
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ChainGroupEntry, A::Error> {
                let f =
                    ChainGroupEntryFields::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(ChainGroupEntry {
                    chain: f.chain,
                    matcher: f.matcher,
                    probe: f.probe,
                })
            }
        }
        deserializer.deserialize_any(EntryVisitor)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChainGroupConfig {
    #[serde(skip_serializing_if = "is_default")]
    pub chains: Vec<ChainGroupEntry>,
    #[serde(skip_serializing_if = "is_default")]
    pub selector: Option<SelectorConfig>,
}

/// A set of nodes and how to pick one. Inside a chain, a hop with neither
/// `nodes` nor `plugin` refers to the top-level hop of the same name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HopConfig {
    pub name: String,
    /// Deprecated by GOST: use `metadata.interface`.
    #[serde(skip_serializing_if = "is_default")]
    pub interface: String,
    /// Deprecated by GOST: use `metadata.so_mark`.
    #[serde(skip_serializing_if = "is_default")]
    pub sockopts: Option<SockOptsConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub selector: Option<SelectorConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub bypass: String,
    #[serde(skip_serializing_if = "is_default")]
    pub bypasses: Vec<String>,
    #[serde(skip_serializing_if = "is_default")]
    pub resolver: String,
    #[serde(skip_serializing_if = "is_default")]
    pub hosts: String,
    #[serde(skip_serializing_if = "is_default", deserialize_with = "shrunk")]
    pub nodes: Vec<NodeConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub reload: Duration,
    #[serde(skip_serializing_if = "is_default")]
    pub file: Option<FileLoader>,
    #[serde(skip_serializing_if = "is_default")]
    pub redis: Option<RedisLoader>,
    #[serde(skip_serializing_if = "is_default")]
    pub http: Option<HTTPLoader>,
    #[serde(skip_serializing_if = "is_default")]
    pub plugin: Option<PluginConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub metadata: Metadata,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeConfig {
    pub name: String,
    #[serde(skip_serializing_if = "is_default")]
    pub addr: String,
    #[serde(skip_serializing_if = "is_default")]
    pub network: String,
    #[serde(skip_serializing_if = "is_default")]
    pub bypass: String,
    #[serde(skip_serializing_if = "is_default")]
    pub bypasses: Vec<String>,
    #[serde(skip_serializing_if = "is_default")]
    pub resolver: String,
    #[serde(skip_serializing_if = "is_default")]
    pub hosts: String,
    #[serde(skip_serializing_if = "is_default")]
    pub connector: Option<ConnectorConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub dialer: Option<DialerConfig>,
    /// Deprecated by GOST: use `metadata.interface`.
    #[serde(skip_serializing_if = "is_default")]
    pub interface: String,
    /// Deprecated by GOST: use `metadata.netns`.
    #[serde(skip_serializing_if = "is_default")]
    pub netns: String,
    /// Deprecated by GOST: use `metadata.so_mark`.
    #[serde(skip_serializing_if = "is_default")]
    pub sockopts: Option<SockOptsConfig>,
    /// Deprecated by GOST: use `matcher`.
    #[serde(skip_serializing_if = "is_default")]
    pub filter: Option<Box<NodeFilterConfig>>,
    #[serde(skip_serializing_if = "is_default")]
    pub matcher: Option<Box<NodeMatcherConfig>>,
    #[serde(skip_serializing_if = "is_default")]
    pub http: Option<Box<HTTPNodeConfig>>,
    #[serde(skip_serializing_if = "is_default")]
    pub tls: Option<Box<TLSNodeConfig>>,
    #[serde(skip_serializing_if = "is_default")]
    pub probe: Option<Box<ProbeConfig>>,
    #[serde(skip_serializing_if = "is_default")]
    pub metadata: Metadata,
}

/// The whole document. `services` is always written (as `[]` when empty,
/// where Go's JSON encoder would write `null`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub services: Vec<ServiceConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub chains: Vec<ChainConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub hops: Vec<HopConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub authers: Vec<AutherConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub admissions: Vec<AdmissionConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub bypasses: Vec<BypassConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub resolvers: Vec<ResolverConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub hosts: Vec<HostsConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub ingresses: Vec<IngressConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub routers: Vec<RouterConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub sds: Vec<SDConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub recorders: Vec<RecorderConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub rewriters: Vec<RewriterConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub caches: Vec<CacheConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub limiters: Vec<LimiterConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub quotas: Vec<QuotaConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub climiters: Vec<LimiterConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub rlimiters: Vec<LimiterConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub observers: Vec<ObserverConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub loggers: Vec<LoggerConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub tls: Option<TLSConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub log: Option<LogConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub profiling: Option<ProfilingConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub api: Option<APIConfig>,
    #[serde(skip_serializing_if = "is_default")]
    pub metrics: Option<MetricsConfig>,
}
