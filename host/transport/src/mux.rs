//! The multiplexing transports (GOST's listener and dialer `mtcp`, `mtls`,
//! `mws`, `mwss`, after go-gost/x `internal/util/mux`): TCP, TLS or
//! WebSocket carrying one xtaci/smux session, whose streams are each a
//! proxied connection, so that one connection between two gost peers
//! carries many. The frames are `gost_proto::smux`; the `mux.*` metadata
//! sets the session ([`config`]); the transport under it takes the options
//! of `tls`, `ws` or `wss`.

mod config;
mod pool;
mod session;

use std::io;
use std::sync::Arc;

pub use config::{MuxConfig, MuxConfigError};
pub use pool::SessionPool;
pub use session::{MuxStream, Session, SessionEnd, SEND_QUEUE};

use crate::kinds::{DialerKind, ListenerKind, Socket, Transports};
use crate::tls::{client_settings, handshake_timeout, server_config, TlsDialer, TlsUpgrade};
use crate::ws::stream::WsOptions;
use crate::ws::ws_error;
use crate::{BoxFuture, Dialer, Multiplex, MultiplexUpgrade, Streams, Upgrade};
use gost_core::config::{DialerConfig, ListenerConfig};
use gost_core::metadata::Metadata;
use gost_core::stream::Stream;

/// What carries the session on the server side.
enum Carrier {
    Tcp,
    Tls(TlsUpgrade),
    Ws {
        tls: Option<TlsUpgrade>,
        opts: WsOptions,
    },
}

pub struct MuxUpgrade {
    carrier: Carrier,
    cfg: MuxConfig,
}

impl Upgrade for MuxUpgrade {
    /// The connection the session runs over.
    fn upgrade(&self, stream: Stream) -> BoxFuture<'_, io::Result<Stream>> {
        Box::pin(async move {
            match &self.carrier {
                Carrier::Tcp => Ok(stream),
                Carrier::Tls(tls) => tls.upgrade(stream).await,
                Carrier::Ws { tls, opts } => {
                    let stream = crate::tls::upgrade_if(tls.as_ref(), stream).await?;
                    let ends = stream.endpoints();
                    let ws = crate::ws::stream::accept(stream, opts)
                        .await
                        .map_err(ws_error)?;
                    Ok(Stream::boxed(ws, ends))
                }
            }
        })
    }

    fn multiplex(&self) -> Option<&dyn MultiplexUpgrade> {
        Some(self)
    }
}

impl MultiplexUpgrade for MuxUpgrade {
    fn session(&self, stream: Stream) -> BoxFuture<'_, io::Result<Box<dyn Streams>>> {
        Box::pin(async move {
            let carried = self.upgrade(stream).await?;
            Ok(Box::new(Session::server(carried, &self.cfg)) as Box<dyn Streams>)
        })
    }
}

/// What carries the session on the client side.
#[derive(Debug)]
enum DialCarrier {
    Tcp,
    Tls(TlsDialer),
    Ws {
        tls: Option<TlsDialer>,
        opts: WsOptions,
    },
}

impl DialCarrier {
    async fn handshake(&self, stream: Stream, node_addr: &str) -> io::Result<Stream> {
        match self {
            DialCarrier::Tcp => Ok(stream),
            DialCarrier::Tls(tls) => tls.connect(stream, node_addr).await,
            DialCarrier::Ws { tls, opts } => {
                let stream = match tls {
                    Some(tls) => tls.connect(stream, node_addr).await?,
                    None => stream,
                };
                let ends = stream.endpoints();
                let ws = crate::ws::stream::connect(stream, node_addr, opts)
                    .await
                    .map_err(ws_error)?;
                Ok(Stream::boxed(ws, ends))
            }
        }
    }
}

/// The client side: a node's sessions, a stream per connection.
#[derive(Debug)]
pub struct MuxDialer {
    carrier: DialCarrier,
    cfg: MuxConfig,
    pool: SessionPool,
}

pooled_dialer!(MuxDialer);

impl Multiplex for MuxDialer {
    fn open<'a>(
        &'a self,
        node_addr: &'a str,
        connect: BoxFuture<'a, io::Result<Stream>>,
    ) -> BoxFuture<'a, io::Result<Stream>> {
        Box::pin(self.pool.open(node_addr, &self.cfg, connect, move |s| {
            self.carrier.handshake(s, node_addr)
        }))
    }
}

fn listener_mux(cfg: &ListenerConfig, default_version: u8) -> Result<MuxConfig, String> {
    MuxConfig::from_metadata(&cfg.metadata, default_version)
        .map_err(|e| format!("listener metadata: {e}"))
}

fn dialer_mux(cfg: &DialerConfig, default_version: u8) -> Result<MuxConfig, String> {
    MuxConfig::from_metadata(&cfg.metadata, default_version)
        .map_err(|e| format!("dialer metadata: {e}"))
}

fn ws_options(md: &Metadata, side: &str) -> Result<WsOptions, String> {
    WsOptions::from_metadata(md).map_err(|e| format!("{side} metadata: {e}"))
}

fn dialer(carrier: DialCarrier, cfg: MuxConfig) -> Arc<dyn Dialer> {
    Arc::new(MuxDialer {
        carrier,
        cfg,
        pool: SessionPool::default(),
    })
}

pub fn register(r: &mut Transports) {
    r.add_listener(ListenerKind {
        names: &["mtcp"],
        socket: Socket::Tcp,
        upgrade: Some(|cfg, _| {
            Ok(Arc::new(MuxUpgrade {
                carrier: Carrier::Tcp,
                cfg: listener_mux(cfg, 2)?,
            }))
        }),
        uses_tls: false,
        summary: "smux sessions over TCP (`mux.*` options; version 2 by default)",
    });
    r.add_listener(ListenerKind {
        names: &["mtls"],
        socket: Socket::Tcp,
        upgrade: Some(|cfg, root| {
            let tls = TlsUpgrade::new(server_config(cfg.tls.as_deref(), root)?);
            Ok(Arc::new(MuxUpgrade {
                carrier: Carrier::Tls(tls),
                cfg: listener_mux(cfg, 1)?,
            }))
        }),
        uses_tls: true,
        summary: "smux sessions over TLS (`mux.*` options)",
    });
    r.add_listener(ListenerKind {
        names: &["mws"],
        socket: Socket::Tcp,
        upgrade: Some(|cfg, _| {
            Ok(Arc::new(MuxUpgrade {
                carrier: Carrier::Ws {
                    tls: None,
                    opts: ws_options(&cfg.metadata, "listener")?,
                },
                cfg: listener_mux(cfg, 1)?,
            }))
        }),
        uses_tls: false,
        summary: "smux sessions over WebSocket (`mux.*` and `ws` options)",
    });
    r.add_listener(ListenerKind {
        names: &["mwss"],
        socket: Socket::Tcp,
        upgrade: Some(|cfg, root| {
            let tls = TlsUpgrade::new(server_config(cfg.tls.as_deref(), root)?);
            Ok(Arc::new(MuxUpgrade {
                carrier: Carrier::Ws {
                    tls: Some(tls),
                    opts: ws_options(&cfg.metadata, "listener")?,
                },
                cfg: listener_mux(cfg, 1)?,
            }))
        }),
        uses_tls: true,
        summary: "smux sessions over WebSocket over TLS",
    });
    r.add_dialer(DialerKind {
        names: &["mtcp"],
        build: |cfg, _| Ok(Some(dialer(DialCarrier::Tcp, dialer_mux(cfg, 2)?))),
        summary: "smux sessions over TCP, pooled per node (version 2 by default)",
    });
    r.add_dialer(DialerKind {
        names: &["mtls"],
        build: |cfg, node| {
            let tls = TlsDialer::new(
                client_settings(cfg.tls.as_ref(), node),
                handshake_timeout(cfg)?,
            )
            .map_err(|e| e.to_string())?;
            Ok(Some(dialer(DialCarrier::Tls(tls), dialer_mux(cfg, 1)?)))
        },
        summary: "smux sessions over TLS, pooled per node; the tls dialer's options",
    });
    r.add_dialer(DialerKind {
        names: &["mws"],
        build: |cfg, _| {
            let carrier = DialCarrier::Ws {
                tls: None,
                opts: ws_options(&cfg.metadata, "dialer")?,
            };
            Ok(Some(dialer(carrier, dialer_mux(cfg, 1)?)))
        },
        summary: "smux sessions over WebSocket, pooled per node; the ws dialer's options",
    });
    r.add_dialer(DialerKind {
        names: &["mwss"],
        build: |cfg, node| {
            let tls = TlsDialer::new(
                client_settings(cfg.tls.as_ref(), node),
                handshake_timeout(cfg)?,
            )
            .map_err(|e| e.to_string())?;
            let carrier = DialCarrier::Ws {
                tls: Some(tls),
                opts: ws_options(&cfg.metadata, "dialer")?,
            };
            Ok(Some(dialer(carrier, dialer_mux(cfg, 1)?)))
        },
        summary: "smux sessions over WebSocket over TLS, pooled per node",
    });
}
