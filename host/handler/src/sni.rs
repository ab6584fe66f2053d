//! GOST's `sni` handler (go-gost/x handler/sni): every connection is
//! sniffed, and routed by what it names: a TLS ClientHello by its server
//! name (port 443), an HTTP request by its `Host` (port 80 unless it
//! names one). The target is dialed through the service's router (chain,
//! bypass, hosts, resolver; `hash: host` keys the hash selector on it),
//! and the sniffed bytes go to it first, untouched.
//!
//! As in GOST: traffic that is neither is dropped without an answer; an
//! HTTP request whose host the bypass matches gets 403 (as our sniffing
//! forward handler answers), a ClientHello the bypass matches is closed;
//! a ClientHello without a server name or a request without a host has
//! nowhere to go and is closed with an error.

use std::time::Duration;

use gost_chain::relay::{self, RelayOptions};
use gost_chain::router::Router;
use gost_core::escape::esc;
use gost_core::metadata::{Metadata, MetadataError};
use gost_core::stream::Stream;
use gost_transport::listener::Conn;

use crate::{ConnContext, HandleFuture, Handler, HandlerError};

/// GOST's default `readTimeout`: how long the first request may take.
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(15);

/// GOST's MITM keys of this handler: TLS interception is not built, and
/// ignoring them would pass traffic the user meant to inspect.
const MITM_KEYS: [&str; 6] = [
    "mitm.certFile",
    "mitm.caCertFile",
    "mitm.keyFile",
    "mitm.caKeyFile",
    "mitm.alpn",
    "mitm.bypass",
];

#[derive(Debug, Clone)]
pub struct SniOptions {
    /// `readTimeout`: the sniff's deadline.
    pub read_timeout: Duration,
    /// `idleTimeout`, as the other proxy handlers take it.
    pub idle_timeout: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum SniOptionsError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("metadata {0}: TLS interception (MITM) is not supported")]
    Mitm(&'static str),
}

impl SniOptions {
    pub fn from_metadata(md: &Metadata) -> Result<Self, SniOptionsError> {
        if let Some(k) = MITM_KEYS.into_iter().find(|k| md.contains_key(k)) {
            return Err(SniOptionsError::Mitm(k));
        }
        Ok(SniOptions {
            read_timeout: md
                .get_duration("readTimeout")?
                .filter(|t| !t.is_zero())
                .unwrap_or(DEFAULT_READ_TIMEOUT),
            idle_timeout: md.get_duration("idleTimeout")?.filter(|t| !t.is_zero()),
        })
    }
}

pub struct SniHandler {
    router: Router,
    opts: SniOptions,
}

impl SniHandler {
    pub fn new(router: Router, opts: SniOptions) -> Self {
        SniHandler { router, opts }
    }

    /// Sniffs the client and dials what it names; `None` for traffic that
    /// is neither TLS nor HTTP.
    async fn open(
        &self,
        client: &mut Stream,
        ctx: &ConnContext,
    ) -> Result<Option<gost_chain::connector::upstream::Upstream>, HandlerError> {
        let sniffed = crate::sniffing::sniff(client, self.opts.read_timeout, 0).await;
        let port = match sniffed.protocol {
            "tls" => 443,
            "http" => 80,
            _ => {
                tracing::debug!(service = %ctx.service, client = %ctx.peer, "sni: neither TLS nor HTTP, dropped");
                return Ok(None);
            }
        };
        if sniffed.host.is_empty() {
            tracing::debug!(service = %ctx.service, client = %ctx.peer, protocol = sniffed.protocol, "sni: no server name");
            return Err(HandlerError::Protocol(format!(
                "sni: the {} request names no host",
                sniffed.protocol
            )));
        }
        let addr = crate::sniffing::with_port(&sniffed.host, port);
        if let Err(e) = self.router.check_bypass("tcp", &addr).await {
            if sniffed.protocol == "http" {
                client
                    .write_all_now(crate::http::bare_response(403).as_bytes())
                    .await?;
            }
            tracing::debug!(service = %ctx.service, client = %ctx.peer, host = %esc(&addr), "bypass");
            return Err(e.into());
        }
        tracing::debug!(service = %ctx.service, client = %ctx.peer, protocol = sniffed.protocol, host = %esc(&addr), "sni");
        Ok(Some(self.router.dial_tcp(&addr, ctx.peer.ip()).await?))
    }
}

impl Handler for SniHandler {
    fn handle(&self, conn: Conn, ctx: ConnContext) -> HandleFuture<'_> {
        crate::tcp_only("sni", conn, move |mut client| async move {
            let Some(upstream) = Box::pin(self.open(&mut client, &ctx)).await? else {
                return Ok(());
            };
            let opts = RelayOptions {
                idle_timeout: self.opts.idle_timeout,
            };
            relay::relay(client, upstream, &ctx, &opts).await?;
            Ok(())
        })
    }
}
