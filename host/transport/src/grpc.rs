//! The `grpc` transport (GOST's listener/grpc and dialer/grpc): each
//! proxied connection is a call of GOST's streaming method
//! `/GostTunel/Tunnel` (or the one its `path` names), its bytes in
//! `Chunk` messages ([`gost_proto::grpc`]), over HTTP/2 with the `h2`
//! crate, on TLS unless `grpcInsecure`. The client keeps one HTTP/2
//! connection per node, as GOST's dialer keeps one gRPC client, so the
//! transport multiplexes like `mtls`.

mod client;
mod config;
mod server;
mod stream;

use std::io;
use std::sync::Arc;

pub use config::{ClientKeepalive, DialerConfig, GrpcConfigError, ListenerConfig, ServerKeepalive};
pub use stream::MAX_WRITE;

use crate::kinds::{DialerKind, ListenerKind, Socket, Transports};
use crate::tls::{client_settings, handshake_timeout, server_config, TlsDialer, TlsUpgrade};
use crate::{BoxFuture, Dialer, Multiplex, MultiplexUpgrade, Streams, Upgrade};
use gost_core::stream::Stream;

/// The window each call announces: what a call may hold received and
/// not yet read (grpc-go starts at 64 KiB and grows it up to 16 MiB).
pub const STREAM_WINDOW: u32 = 1024 * 1024;

/// The window of a whole connection, over all its calls.
pub const CONNECTION_WINDOW: u32 = 4 * 1024 * 1024;

/// ALPN `h2`, which grpc-go asks of a TLS peer.
const ALPN_H2: &str = "h2";

pub struct GrpcUpgrade {
    tls: Option<TlsUpgrade>,
    cfg: ListenerConfig,
    method: String,
}

impl Upgrade for GrpcUpgrade {
    /// The connection HTTP/2 runs over.
    fn upgrade(&self, stream: Stream) -> BoxFuture<'_, io::Result<Stream>> {
        Box::pin(crate::tls::upgrade_if(self.tls.as_ref(), stream))
    }

    fn multiplex(&self) -> Option<&dyn MultiplexUpgrade> {
        Some(self)
    }
}

impl MultiplexUpgrade for GrpcUpgrade {
    fn session(&self, stream: Stream) -> BoxFuture<'_, io::Result<Box<dyn Streams>>> {
        Box::pin(async move {
            let carried = self.upgrade(stream).await?;
            let conn = server::serve(carried, &self.cfg, &self.method).await?;
            Ok(Box::new(conn) as Box<dyn Streams>)
        })
    }
}

#[derive(Debug)]
pub struct GrpcDialer {
    tls: Option<TlsDialer>,
    cfg: DialerConfig,
    method: String,
    pool: client::Pool,
}

impl GrpcDialer {
    /// The `:authority`: the `host` option, else the node's host, without
    /// its port as GOST sends it.
    fn authority(&self, node_addr: &str) -> String {
        let host = if self.cfg.authority.is_empty() {
            node_addr
        } else {
            &self.cfg.authority
        };
        let host = gost_core::addr::host_of(host);
        if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        }
    }
}

pooled_dialer!(GrpcDialer);

impl Multiplex for GrpcDialer {
    fn open<'a>(
        &'a self,
        node_addr: &'a str,
        connect: BoxFuture<'a, io::Result<Stream>>,
    ) -> BoxFuture<'a, io::Result<Stream>> {
        Box::pin(async move {
            let authority = self.authority(node_addr);
            let target = client::Target {
                scheme: if self.tls.is_some() { "https" } else { "http" },
                authority: &authority,
                path: &self.method,
            };
            self.pool
                .call(node_addr, &self.cfg, target, connect, |s| async move {
                    match &self.tls {
                        Some(tls) => tls.connect(s, node_addr).await,
                        None => Ok(s),
                    }
                })
                .await
        })
    }
}

fn listener(
    cfg: &gost_core::config::ListenerConfig,
    root: &gost_core::config::Config,
) -> Result<Arc<dyn Upgrade>, String> {
    let md = ListenerConfig::from_metadata(&cfg.metadata)
        .map_err(|e| format!("listener metadata: {e}"))?;
    let tls = if md.insecure {
        None
    } else {
        let mut server = (*server_config(cfg.tls.as_deref(), root)?).clone();
        if server.alpn_protocols.is_empty() {
            server.alpn_protocols = vec![ALPN_H2.as_bytes().to_vec()];
        }
        Some(TlsUpgrade::new(Arc::new(server)))
    };
    Ok(Arc::new(GrpcUpgrade {
        tls,
        method: gost_proto::grpc::method_path(&md.path),
        cfg: md,
    }))
}

fn dialer(
    cfg: &gost_core::config::DialerConfig,
    node: Option<&gost_core::config::TLSNodeConfig>,
) -> Result<Option<Arc<dyn Dialer>>, String> {
    let md =
        DialerConfig::from_metadata(&cfg.metadata).map_err(|e| format!("dialer metadata: {e}"))?;
    let tls = if md.insecure {
        None
    } else {
        let mut settings = client_settings(cfg.tls.as_ref(), node);
        if settings.alpn.is_empty() {
            settings.alpn = vec![ALPN_H2.to_string()];
        }
        Some(TlsDialer::new(settings, handshake_timeout(cfg)?).map_err(|e| e.to_string())?)
    };
    Ok(Some(Arc::new(GrpcDialer {
        tls,
        method: gost_proto::grpc::method_path(&md.path),
        cfg: md,
        pool: client::Pool::default(),
    })))
}

pub fn register(r: &mut Transports) {
    r.add_listener(ListenerKind {
        names: &["grpc"],
        socket: Socket::Tcp,
        upgrade: Some(listener),
        uses_tls: true,
        summary: "GOST's gRPC tunnel (`/GostTunel/Tunnel`, `path`) over HTTP/2 on TLS, or plain with `grpcInsecure`",
    });
    r.add_dialer(DialerKind {
        names: &["grpc"],
        build: dialer,
        summary: "GOST's gRPC tunnel, one HTTP/2 connection per node; `grpcInsecure`, `host`, `path`, `keepalive`",
    });
}
