//! The `tls` transport (GOST's listener/tls and dialer/tls): TLS over TCP
//! with rustls, configured as [`crate::tls::config`] reads GOST's `tls` blocks.

pub mod config;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::{handshake_error, within, BoxFuture, Dialer, Upgrade};
use crate::kinds::{DialerKind, ListenerKind, Socket, Transports};
use crate::tls::config::TlsSettings;
use gost_core::config::{Config, DialerConfig, TLSNodeConfig};
use gost_core::stream::Stream;

/// The server side: a handshake with every accepted client.
pub struct TlsUpgrade {
    acceptor: TlsAcceptor,
    /// GOST has no listener-side limit (a silent client holds its
    /// connection until the handler's read times out); one bounds the
    /// handshake here so it cannot hold a connection forever.
    timeout: Duration,
}

/// How long a client may take for its TLS handshake.
pub const ACCEPT_TIMEOUT: Duration = Duration::from_secs(30);

impl TlsUpgrade {
    pub fn new(config: Arc<rustls::ServerConfig>) -> Self {
        TlsUpgrade {
            acceptor: TlsAcceptor::from(config),
            timeout: ACCEPT_TIMEOUT,
        }
    }
}

/// TLS over `stream` when the transport is configured with it (`h2`,
/// `grpc` without `grpcInsecure`, `mws`/`mwss`), the stream as it is
/// otherwise.
pub async fn upgrade_if(tls: Option<&TlsUpgrade>, stream: Stream) -> io::Result<Stream> {
    match tls {
        Some(tls) => tls.upgrade(stream).await,
        None => Ok(stream),
    }
}

impl Upgrade for TlsUpgrade {
    fn upgrade(&self, stream: Stream) -> BoxFuture<'_, io::Result<Stream>> {
        Box::pin(within("tls", Some(self.timeout), async move {
            let ends = stream.endpoints();
            let tls = self
                .acceptor
                .accept(stream)
                .await
                .map_err(|e| handshake_error("tls", e))?;
            Ok(Stream::boxed(tls, ends))
        }))
    }
}

/// The client side: the handshake with a node, its server name from
/// `serverName` or the node's host.
pub struct TlsDialer {
    connector: TlsConnector,
    settings: TlsSettings,
    /// GOST's dialer metadata `handshakeTimeout` (none by default).
    timeout: Option<Duration>,
}

impl std::fmt::Debug for TlsDialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsDialer")
            .field("settings", &self.settings)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl TlsDialer {
    pub fn new(
        settings: TlsSettings,
        timeout: Option<Duration>,
    ) -> Result<Self, crate::tls::config::TlsError> {
        let config = crate::tls::config::client_config(&settings)?;
        Ok(TlsDialer {
            connector: TlsConnector::from(config),
            settings,
            timeout,
        })
    }

    /// The handshake as a future, for transports stacked on TLS (`wss`).
    pub(crate) async fn connect(&self, stream: Stream, node_addr: &str) -> io::Result<Stream> {
        let host = gost_core::addr::host_of(node_addr);
        let name = crate::tls::config::server_name(&self.settings, host).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("tls handshake: {e}"))
        })?;
        within("tls", self.timeout, async move {
            let ends = stream.endpoints();
            let tls = self
                .connector
                .connect(name, stream)
                .await
                .map_err(|e| handshake_error("tls", e))?;
            Ok(Stream::boxed(tls, ends))
        })
        .await
    }
}

impl Dialer for TlsDialer {
    fn handshake<'a>(
        &'a self,
        stream: Stream,
        node_addr: &'a str,
    ) -> BoxFuture<'a, io::Result<Stream>> {
        Box::pin(self.connect(stream, node_addr))
    }
}

/// GOST's `tls` block as [`crate::tls::config`] takes it.
pub fn settings(cfg: &gost_core::config::TLSConfig) -> TlsSettings {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let path = |s: &str| (!s.is_empty()).then(|| std::path::PathBuf::from(s));
    let opts = cfg.options.clone().unwrap_or_default();
    TlsSettings {
        cert_file: path(&cfg.cert_file),
        key_file: path(&cfg.key_file),
        ca_file: path(&cfg.ca_file),
        secure: cfg.secure,
        server_name: some(&cfg.server_name),
        min_version: some(&opts.min_version),
        max_version: some(&opts.max_version),
        cipher_suites: opts.cipher_suites,
        alpn: opts.alpn,
        validity: cfg.validity.0,
        common_name: some(&cfg.common_name),
        organization: some(&cfg.organization),
    }
}

/// The certificate of listeners that name none, built once from the
/// top-level `tls` block as GOST does at start-up (see
/// [`crate::tls::config::DefaultCert::load`]); built again only if that block
/// changes. Unlike GOST it is made only when a listener needs it.
fn default_cert(root: &Config) -> Result<Arc<crate::tls::config::DefaultCert>, String> {
    static DEFAULT: Mutex<Option<(TlsSettingsKey, Arc<crate::tls::config::DefaultCert>)>> =
        Mutex::new(None);
    let global = root.tls.clone().unwrap_or_default();
    let key = serde_json::to_string(&global).unwrap_or_default();
    let mut slot = DEFAULT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((k, cert)) = slot.as_ref() {
        if *k == key {
            return Ok(cert.clone());
        }
    }
    let state_dir = std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".gost"));
    let cert = crate::tls::config::DefaultCert::load(
        &settings(&global),
        std::path::Path::new("."),
        state_dir.as_deref(),
    )
    .map_err(|e| e.to_string())?;
    match cert.origin() {
        crate::tls::config::CertOrigin::Configured => {}
        crate::tls::config::CertOrigin::WorkDir => {
            tracing::info!("tls: default certificate from cert.pem and key.pem")
        }
        crate::tls::config::CertOrigin::Saved(p) => {
            tracing::info!(file = %p.display(), "tls: default certificate loaded")
        }
        crate::tls::config::CertOrigin::Generated { saved: Ok(p) } => {
            tracing::info!(file = %p.display(), "tls: self-signed default certificate generated")
        }
        crate::tls::config::CertOrigin::Generated { saved: Err(e) } => {
            tracing::warn!(error = %e, "tls: self-signed default certificate generated, not saved")
        }
    }
    let cert = Arc::new(cert);
    *slot = Some((key, cert.clone()));
    Ok(cert)
}

/// The top-level `tls` block, serialised, that a default certificate was
/// built from.
type TlsSettingsKey = String;

/// A listener's server config: its own `tls` block over the default
/// certificate.
pub fn server_config(
    tls: Option<&gost_core::config::TLSConfig>,
    root: &Config,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let own = tls.map(settings).unwrap_or_default();
    crate::tls::config::server_config(&own, &*default_cert(root)?).map_err(|e| e.to_string())
}

/// A node's client settings: the dialer's `tls` block (files, `secure`,
/// `serverName`), with the node's own `tls` (GOST's node-level
/// `serverName`, `secure` and `options`) over it.
pub fn client_settings(
    dialer: Option<&gost_core::config::TLSConfig>,
    node: Option<&TLSNodeConfig>,
) -> TlsSettings {
    let mut s = dialer.map(settings).unwrap_or_default();
    if let Some(n) = node {
        if !n.server_name.is_empty() {
            s.server_name = Some(n.server_name.clone());
        }
        s.secure |= n.secure;
        if let Some(o) = &n.options {
            let some = |v: &str| (!v.is_empty()).then(|| v.to_string());
            s.min_version = some(&o.min_version).or(s.min_version);
            s.max_version = some(&o.max_version).or(s.max_version);
            if !o.cipher_suites.is_empty() {
                s.cipher_suites = o.cipher_suites.clone();
            }
            if !o.alpn.is_empty() {
                s.alpn = o.alpn.clone();
            }
        }
    }
    s
}

/// A dialer's `handshakeTimeout` (GOST: none by default).
pub fn handshake_timeout(cfg: &DialerConfig) -> Result<Option<Duration>, String> {
    cfg.metadata
        .get_duration("handshakeTimeout")
        .map(|t| t.filter(|t| !t.is_zero()))
        .map_err(|e| format!("dialer metadata: {e}"))
}

pub fn register(r: &mut Transports) {
    r.add_listener(ListenerKind {
        names: &["tls"],
        socket: Socket::Tcp,
        upgrade: Some(|cfg, root| {
            Ok(Arc::new(TlsUpgrade::new(server_config(
                cfg.tls.as_deref(),
                root,
            )?)))
        }),
        uses_tls: true,
        summary: "TLS over TCP (rustls); `caFile` requires client certificates",
    });
    r.add_dialer(DialerKind {
        names: &["tls"],
        build: |cfg, node| {
            let d = TlsDialer::new(
                client_settings(cfg.tls.as_ref(), node),
                handshake_timeout(cfg)?,
            )
            .map_err(|e| e.to_string())?;
            Ok(Some(Arc::new(d)))
        },
        summary: "TLS over TCP; `secure` verifies the node, `serverName` names it",
    });
}
