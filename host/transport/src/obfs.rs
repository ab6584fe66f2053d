//! GOST's simple obfuscation transports, listener and dialer `ohttp`
//! (dialer alias `ohttps`, which GOST registers with the same plain
//! dialer) and `otls`: the first bytes look like a WebSocket upgrade or a
//! TLS 1.2 handshake, the data after them is not encrypted. The bytes are
//! [`gost_proto::obfs`]'s.

mod http;
mod tls;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::kinds::{DialerKind, ListenerKind, Socket, Transports};
use crate::{BoxFuture, Dialer, Upgrade};
use gost_core::metadata::{Metadata, MetadataError};
use gost_core::stream::Stream;

/// How long a client may take for its preamble (GOST sets none; one is
/// set so a silent client cannot hold its connection).
pub const PREAMBLE_TIMEOUT: Duration = Duration::from_secs(30);

fn preamble_error(transport: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{transport}: {e}"))
}

/// The `header` option: a map of header names to values.
fn headers(md: &Metadata, keys: &[&'static str]) -> Result<Vec<(String, String)>, MetadataError> {
    let Some(k) = keys.iter().copied().find(|k| md.contains_key(k)) else {
        return Ok(Vec::new());
    };
    let bad = |v: &serde_json::Value| MetadataError {
        key: k.into(),
        value: v.to_string(),
        expected: "a map of header names (HTTP tokens) to values without line breaks",
    };
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    match md.get(k) {
        Some(serde_json::Value::Object(map)) => map
            .iter()
            .map(|(name, v)| {
                let value = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if name.is_empty() || !name.chars().all(token) || value.contains(['\r', '\n']) {
                    return Err(bad(v));
                }
                Ok((name.clone(), value))
            })
            .collect(),
        Some(serde_json::Value::Null) | None => Ok(Vec::new()),
        Some(v) => Err(bad(v)),
    }
}

fn host(md: &Metadata, keys: &[&'static str]) -> Result<Option<String>, MetadataError> {
    for k in keys {
        if let Some(h) = md.get_string(k)?.filter(|h| !h.is_empty()) {
            return Ok(Some(h));
        }
    }
    Ok(None)
}

struct HttpUpgrade {
    header: Vec<(String, String)>,
}

impl Upgrade for HttpUpgrade {
    fn upgrade(&self, stream: Stream) -> BoxFuture<'_, io::Result<Stream>> {
        Box::pin(crate::within(
            "ohttp",
            Some(PREAMBLE_TIMEOUT),
            http::accept(stream, &self.header),
        ))
    }
}

#[derive(Debug)]
struct HttpDialer {
    host: Option<String>,
    header: Vec<(String, String)>,
}

impl Dialer for HttpDialer {
    fn handshake<'a>(
        &'a self,
        stream: Stream,
        node_addr: &'a str,
    ) -> BoxFuture<'a, io::Result<Stream>> {
        Box::pin(async move {
            let host = self.host.as_deref().unwrap_or(node_addr);
            Ok(http::connect(stream, host, &self.header))
        })
    }
}

struct TlsUpgrade;

impl Upgrade for TlsUpgrade {
    fn upgrade(&self, stream: Stream) -> BoxFuture<'_, io::Result<Stream>> {
        Box::pin(crate::within(
            "otls",
            Some(PREAMBLE_TIMEOUT),
            tls::accept(stream),
        ))
    }
}

#[derive(Debug)]
struct TlsDialer {
    host: Option<String>,
}

impl Dialer for TlsDialer {
    fn handshake<'a>(
        &'a self,
        stream: Stream,
        node_addr: &'a str,
    ) -> BoxFuture<'a, io::Result<Stream>> {
        Box::pin(async move {
            let host = self.host.as_deref().unwrap_or(node_addr);
            Ok(tls::connect(stream, host))
        })
    }
}

pub fn register(r: &mut Transports) {
    r.add_listener(ListenerKind {
        names: &["ohttp"],
        socket: Socket::Tcp,
        upgrade: Some(|cfg, _| {
            let header = headers(&cfg.metadata, &["header"])
                .map_err(|e| format!("listener metadata: {e}"))?;
            Ok(Arc::new(HttpUpgrade { header }))
        }),
        uses_tls: false,
        summary: "GOST's HTTP obfuscation: a WebSocket-upgrade-looking preamble (`header`), then raw bytes",
    });
    r.add_listener(ListenerKind {
        names: &["otls"],
        socket: Socket::Tcp,
        upgrade: Some(|_, _| Ok(Arc::new(TlsUpgrade))),
        uses_tls: false,
        summary: "GOST's TLS obfuscation: a fake TLS 1.2 handshake, then data in unencrypted TLS records",
    });
    r.add_dialer(DialerKind {
        names: &["ohttp", "ohttps"],
        build: |cfg, _| {
            let md = &cfg.metadata;
            let d = HttpDialer {
                host: host(md, &["obfs.host", "host"]).map_err(|e| format!("dialer metadata: {e}"))?,
                header: headers(md, &["obfs.header", "header"])
                    .map_err(|e| format!("dialer metadata: {e}"))?,
            };
            Ok(Some(Arc::new(d)))
        },
        summary: "GOST's HTTP obfuscation (`host`, `header`); `ohttps` is the same plain dialer, as in GOST",
    });
    r.add_dialer(DialerKind {
        names: &["otls"],
        build: |cfg, _| {
            let host =
                host(&cfg.metadata, &["host"]).map_err(|e| format!("dialer metadata: {e}"))?;
            Ok(Some(Arc::new(TlsDialer { host })))
        },
        summary: "GOST's TLS obfuscation; `host` is the fake hello's server name",
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_option_is_a_map_of_tokens() {
        let mut md = Metadata::new();
        md.insert("header", serde_json::json!({"X-A": "1", "server": "nginx"}));
        let mut h = headers(&md, &["header"]).unwrap();
        h.sort();
        assert_eq!(
            h,
            [
                ("X-A".into(), "1".into()),
                ("server".into(), "nginx".into())
            ]
        );
        md.insert("header", serde_json::json!({"X-A": "1\r\nEvil: yes"}));
        assert!(headers(&md, &["header"]).is_err());
        md.insert("header", serde_json::json!({"bad name": "1"}));
        assert!(headers(&md, &["header"]).is_err());
        md.insert("header", serde_json::json!("x"));
        assert!(headers(&md, &["header"]).is_err());
    }
}
