//! The `ws` and `wss` transports (GOST's listener/ws and dialer/ws, the
//! latter over TLS): a WebSocket upgrade, then the proxy protocol's bytes
//! in binary messages, as [`crate::ws::stream`] speaks them byte for byte like
//! GOST's gorilla/websocket.

pub mod stream;

use std::io;
use std::sync::Arc;

use super::tls::{client_settings, handshake_timeout, server_config, TlsDialer, TlsUpgrade};
use super::{BoxFuture, Dialer, Stacked, Upgrade};
use crate::kinds::{DialerKind, ListenerKind, Socket, Transports};
use crate::ws::stream::{WsError, WsOptions};
use gost_core::config::DialerConfig;
use gost_core::stream::Stream;

/// A failed upgrade as an I/O error: a client that went away stays a
/// disconnect (not counted), anything else is the client's protocol error.
pub(super) fn ws_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => super::handshake_error("ws", e),
        WsError::Timeout => io::Error::new(io::ErrorKind::TimedOut, "ws handshake: timed out"),
        other => io::Error::new(io::ErrorKind::InvalidData, format!("ws handshake: {other}")),
    }
}

/// The server side: the upgrade request on each accepted connection.
pub struct WsUpgrade {
    opts: WsOptions,
}

impl Upgrade for WsUpgrade {
    fn upgrade(&self, stream: Stream) -> BoxFuture<'_, io::Result<Stream>> {
        Box::pin(async move {
            let ends = stream.endpoints();
            let ws = crate::ws::stream::accept(stream, &self.opts)
                .await
                .map_err(ws_error)?;
            Ok(Stream::boxed(ws, ends))
        })
    }
}

/// The client side: the upgrade request to a node, over TLS for `wss`.
#[derive(Debug)]
pub struct WsDialer {
    opts: WsOptions,
    tls: Option<TlsDialer>,
}

impl WsDialer {
    fn build(cfg: &DialerConfig, tls: Option<TlsDialer>) -> Result<Self, String> {
        let opts =
            WsOptions::from_metadata(&cfg.metadata).map_err(|e| format!("dialer metadata: {e}"))?;
        Ok(WsDialer { opts, tls })
    }
}

impl Dialer for WsDialer {
    fn handshake<'a>(
        &'a self,
        stream: Stream,
        node_addr: &'a str,
    ) -> BoxFuture<'a, io::Result<Stream>> {
        Box::pin(async move {
            let stream = match &self.tls {
                Some(tls) => tls.connect(stream, node_addr).await?,
                None => stream,
            };
            // GOST asks for the node's address (port included) as Host
            // unless the `host` option says otherwise.
            let ends = stream.endpoints();
            let ws = crate::ws::stream::connect(stream, node_addr, &self.opts)
                .await
                .map_err(ws_error)?;
            Ok(Stream::boxed(ws, ends))
        })
    }
}

pub fn register(r: &mut Transports) {
    r.add_listener(ListenerKind {
        names: &["ws"],
        socket: Socket::Tcp,
        upgrade: Some(|cfg, _| {
            let opts = WsOptions::from_metadata(&cfg.metadata)
                .map_err(|e| format!("listener metadata: {e}"))?;
            Ok(Arc::new(WsUpgrade { opts }))
        }),
        uses_tls: false,
        summary: "WebSocket over TCP (GOST's path `/ws`, binary messages)",
    });
    r.add_listener(ListenerKind {
        names: &["wss"],
        socket: Socket::Tcp,
        upgrade: Some(|cfg, root| {
            let opts = WsOptions::from_metadata(&cfg.metadata)
                .map_err(|e| format!("listener metadata: {e}"))?;
            let tls = TlsUpgrade::new(server_config(cfg.tls.as_deref(), root)?);
            Ok(Arc::new(Stacked(vec![
                Arc::new(tls),
                Arc::new(WsUpgrade { opts }),
            ])))
        }),
        uses_tls: true,
        summary: "WebSocket over TLS",
    });
    r.add_dialer(DialerKind {
        names: &["ws"],
        build: |cfg, _| Ok(Some(Arc::new(WsDialer::build(cfg, None)?))),
        summary: "WebSocket over TCP; `path`, `host`, `header`, `keepalive` pings",
    });
    r.add_dialer(DialerKind {
        names: &["wss"],
        build: |cfg, node| {
            let tls = TlsDialer::new(
                client_settings(cfg.tls.as_ref(), node),
                handshake_timeout(cfg)?,
            )
            .map_err(|e| e.to_string())?;
            Ok(Some(Arc::new(WsDialer::build(cfg, Some(tls))?)))
        },
        summary: "WebSocket over TLS; the tls dialer's options and the ws ones",
    });
}
