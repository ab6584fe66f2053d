//! GOST's metadata of the `grpc` listener and dialer (go-gost/x
//! `listener/grpc/metadata.go`, `dialer/grpc/metadata.go`): the same keys
//! and aliases, the same defaults.

use std::time::Duration;

use gost_core::metadata::{Metadata, MetadataError};

#[derive(Debug, thiserror::Error)]
pub enum GrpcConfigError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// grpc-go's server enforces a ping policy; the HTTP/2 library here
    /// answers every ping itself, so a policy would be named and not kept.
    #[error(
        "{0} is not supported: the listener answers every HTTP/2 ping and enforces no ping policy"
    )]
    PingPolicy(&'static str),
}

/// The first of `keys` present, as GOST's `mdutil` getters read aliases.
fn first<T>(
    md: &Metadata,
    keys: &[&'static str],
    get: impl Fn(&Metadata, &str) -> Result<Option<T>, MetadataError>,
) -> Result<Option<T>, MetadataError> {
    for k in keys {
        if let Some(v) = get(md, k)? {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

fn duration(md: &Metadata, keys: &[&'static str]) -> Result<Option<Duration>, MetadataError> {
    Ok(first(md, keys, Metadata::get_duration)?.filter(|d| !d.is_zero()))
}

fn flag(md: &Metadata, keys: &[&'static str]) -> Result<bool, MetadataError> {
    Ok(first(md, keys, Metadata::get_bool)?.unwrap_or(false))
}

fn string(md: &Metadata, keys: &[&'static str]) -> Result<String, MetadataError> {
    Ok(first(md, keys, Metadata::get_string)?.unwrap_or_default())
}

const INSECURE: &[&str] = &["grpc.insecure", "grpcInsecure", "insecure"];
const PATH: &[&str] = &["grpc.path", "path"];
const KEEPALIVE: &[&str] = &["grpc.keepalive", "keepalive", "keepAlive"];
const KEEPALIVE_TIME: &[&str] = &["grpc.keepalive.time", "keepalive.time"];
const KEEPALIVE_TIMEOUT: &[&str] = &["grpc.keepalive.timeout", "keepalive.timeout"];

/// How the server side pings its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerKeepalive {
    /// A ping goes out after this long without one.
    pub time: Duration,
    /// A ping unanswered this long closes the connection.
    pub timeout: Duration,
    /// A connection without calls for this long is told to go away.
    pub max_connection_idle: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Calls accepted and not yet taken by the service (GOST's
    /// `backlog`, 128); past it a call is refused.
    pub backlog: usize,
    /// Plain HTTP/2 (`h2c`) instead of TLS.
    pub insecure: bool,
    pub path: String,
    pub keepalive: ServerKeepalive,
}

impl ListenerConfig {
    pub fn from_metadata(md: &Metadata) -> Result<Self, GrpcConfigError> {
        let backlog = first(md, &["grpc.backlog", "backlog"], Metadata::get_int)?
            .filter(|n| *n > 0)
            .map_or(128, |n| usize::try_from(n).unwrap_or(usize::MAX));
        // grpc-go's server pings a client silent for two hours and waits
        // 20 seconds for the answer; GOST's `keepalive` sets 60s and 30s
        // unless told otherwise.
        let keepalive = if flag(md, KEEPALIVE)? {
            for (key, what) in [
                (
                    &["grpc.keepalive.minTime", "keepalive.minTime"][..],
                    "keepalive.minTime",
                ),
                (
                    &[
                        "grpc.keepalive.permitWithoutStream",
                        "keepalive.permitWithoutStream",
                    ][..],
                    "keepalive.permitWithoutStream",
                ),
            ] {
                if key.iter().any(|k| md.contains_key(k)) {
                    return Err(GrpcConfigError::PingPolicy(what));
                }
            }
            ServerKeepalive {
                time: duration(md, KEEPALIVE_TIME)?.unwrap_or(Duration::from_secs(60)),
                timeout: duration(md, KEEPALIVE_TIMEOUT)?.unwrap_or(Duration::from_secs(30)),
                max_connection_idle: duration(
                    md,
                    &[
                        "grpc.keepalive.maxConnectionIdle",
                        "keepalive.maxConnectionIdle",
                    ],
                )?,
            }
        } else {
            ServerKeepalive {
                time: Duration::from_secs(2 * 60 * 60),
                timeout: Duration::from_secs(20),
                max_connection_idle: None,
            }
        };
        Ok(ListenerConfig {
            backlog,
            insecure: flag(md, INSECURE)?,
            path: string(md, PATH)?,
            keepalive,
        })
    }
}

/// How the client side pings its server (none unless `keepalive`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKeepalive {
    pub time: Duration,
    pub timeout: Duration,
    /// Ping also while no call is open.
    pub permit_without_stream: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialerConfig {
    pub insecure: bool,
    /// The `:authority` (GOST's `grpc.authority`/`host`); the node's host
    /// when empty.
    pub authority: String,
    pub path: String,
    pub keepalive: Option<ClientKeepalive>,
    /// How long making a connection (TCP, TLS, HTTP/2 preface) may take.
    pub min_connect_timeout: Duration,
}

impl DialerConfig {
    pub fn from_metadata(md: &Metadata) -> Result<Self, GrpcConfigError> {
        let keepalive = if flag(md, KEEPALIVE)? {
            Some(ClientKeepalive {
                time: duration(md, KEEPALIVE_TIME)?.unwrap_or(Duration::from_secs(30)),
                timeout: duration(md, KEEPALIVE_TIMEOUT)?.unwrap_or(Duration::from_secs(30)),
                permit_without_stream: flag(
                    md,
                    &[
                        "grpc.keepalive.permitWithoutStream",
                        "keepalive.permitWithoutStream",
                    ],
                )?,
            })
        } else {
            None
        };
        Ok(DialerConfig {
            insecure: flag(md, INSECURE)?,
            authority: string(md, &["grpc.authority", "grpc.host", "host"])?,
            path: string(md, PATH)?,
            keepalive,
            min_connect_timeout: duration(md, &["grpc.minConnectTimeout", "minConnectTimeout"])?
                .unwrap_or(Duration::from_secs(30)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(pairs: &[(&str, &str)]) -> Metadata {
        let mut m = Metadata::new();
        for (k, v) in pairs {
            m.insert(*k, *v);
        }
        m
    }

    #[test]
    fn listener_defaults_and_keys() {
        let c = ListenerConfig::from_metadata(&md(&[])).unwrap();
        assert_eq!(c.backlog, 128);
        assert!(!c.insecure);
        assert_eq!(c.path, "");
        assert_eq!(c.keepalive.time, Duration::from_secs(7200));
        let c = ListenerConfig::from_metadata(&md(&[
            ("grpcInsecure", "true"),
            ("path", "/a/b"),
            ("backlog", "5"),
            ("keepalive", "true"),
            ("keepalive.timeout", "3s"),
            ("grpc.keepalive.maxConnectionIdle", "1m"),
        ]))
        .unwrap();
        assert!(c.insecure);
        assert_eq!(c.path, "/a/b");
        assert_eq!(c.backlog, 5);
        assert_eq!(
            c.keepalive,
            ServerKeepalive {
                time: Duration::from_secs(60),
                timeout: Duration::from_secs(3),
                max_connection_idle: Some(Duration::from_secs(60)),
            }
        );
        let e = ListenerConfig::from_metadata(&md(&[
            ("keepalive", "true"),
            ("keepalive.minTime", "10s"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("keepalive.minTime"), "{e}");
        assert!(ListenerConfig::from_metadata(&md(&[("keepalive", "maybe")])).is_err());
    }

    #[test]
    fn dialer_defaults_and_keys() {
        let c = DialerConfig::from_metadata(&md(&[])).unwrap();
        assert_eq!(c.keepalive, None);
        assert_eq!(c.min_connect_timeout, Duration::from_secs(30));
        let c = DialerConfig::from_metadata(&md(&[
            ("grpc.insecure", "true"),
            ("host", "example.com"),
            ("grpc.authority", "a.example"),
            ("keepAlive", "true"),
            ("keepalive.permitWithoutStream", "true"),
        ]))
        .unwrap();
        assert!(c.insecure);
        assert_eq!(c.authority, "a.example");
        assert_eq!(
            c.keepalive,
            Some(ClientKeepalive {
                time: Duration::from_secs(30),
                timeout: Duration::from_secs(30),
                permit_without_stream: true,
            })
        );
    }
}
