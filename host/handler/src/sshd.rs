//! The `sshd` handler (go-gost/x `handler/sshd`), the other half of the
//! `sshd` listener: a `direct-tcpip` channel (`ssh -L`, `ssh -D`) is
//! dialed through the router (bypass, hosts, resolver, chain) and
//! relayed; a `tcpip-forward` request (`ssh -R`) gets a listening socket
//! on this host, as GOST binds it (no chain), each connection to it going
//! back to the client on a `forwarded-tcpip` channel, until the client
//! cancels the forward or its session ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::{ConnContext, HandleFuture, Handler, HandlerError};
use gost_chain::connector::upstream::Upstream;
use gost_chain::relay::{self, RelayOptions};
use gost_chain::router::Router;
use gost_core::escape::esc;
use gost_core::metadata::{Metadata, MetadataError};
use gost_core::stream::Stream;
use gost_transport::listener::Conn;
use gost_transport::ssh::{DirectTcpip, RemoteForward};

#[derive(Debug, Clone, Default)]
pub struct SshdOptions {
    /// `idleTimeout`: close a relay with no traffic for this long.
    pub idle_timeout: Option<Duration>,
}

impl SshdOptions {
    pub fn from_metadata(md: &Metadata) -> Result<Self, MetadataError> {
        Ok(SshdOptions {
            idle_timeout: md.get_duration("idleTimeout")?.filter(|d| !d.is_zero()),
        })
    }
}

pub struct SshdHandler {
    router: Router,
    opts: SshdOptions,
}

impl SshdHandler {
    pub fn new(router: Router, opts: SshdOptions) -> Self {
        SshdHandler { router, opts }
    }

    async fn serve(&self, mut stream: Stream, ctx: ConnContext) -> Result<(), HandlerError> {
        if let Some(target) = stream.attached::<DirectTcpip>() {
            let addr = target.addr();
            return self.direct(stream, &addr, ctx).await;
        }
        if let Some(forward) = stream.take_attached::<RemoteForward>() {
            drop(stream);
            return self.remote(Arc::from(forward), ctx).await;
        }
        Err(HandlerError::Protocol(
            "the sshd handler serves the sshd listener's channels only (listener type sshd)".into(),
        ))
    }

    async fn direct(
        &self,
        client: Stream,
        addr: &str,
        ctx: ConnContext,
    ) -> Result<(), HandlerError> {
        tracing::debug!(service = %ctx.service, client = %ctx.peer, target = %esc(addr), "sshd direct-tcpip");
        let upstream = self.router.dial_tcp(addr, ctx.peer.ip()).await?;
        let opts = RelayOptions {
            idle_timeout: self.opts.idle_timeout,
        };
        relay::relay(client, upstream, &ctx, &opts).await?;
        Ok(())
    }

    async fn remote(
        &self,
        forward: Arc<RemoteForward>,
        ctx: ConnContext,
    ) -> Result<(), HandlerError> {
        let host = match forward.host.as_str() {
            // OpenSSH sends "" (or "*") for every address.
            "*" => "",
            h => h,
        };
        let requested = if host.contains(':') {
            format!("[{host}]:{}", forward.port)
        } else {
            format!("{host}:{}", forward.port)
        };
        let bound = async {
            let port = u16::try_from(forward.port).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "port out of range")
            })?;
            let addr: SocketAddr = if host.is_empty() {
                gost_transport::listener::resolve_bind_addr(&format!(":{port}"))?
            } else {
                tokio::net::lookup_host((host, port))
                    .await?
                    .next()
                    .ok_or_else(|| std::io::Error::other("no address"))?
            };
            TcpListener::bind(addr).await
        };
        let listener = match bound.await {
            Ok(l) => l,
            Err(e) => {
                forward.answer(Err(e.to_string()));
                return Err(HandlerError::Protocol(format!(
                    "sshd tcpip-forward {}: {e}",
                    esc(&requested)
                )));
            }
        };
        let local = listener.local_addr()?;
        forward.answer(Ok(local.port()));
        tracing::debug!(service = %ctx.service, client = %ctx.peer, bind = %local, "sshd tcpip-forward");
        let opts = RelayOptions {
            idle_timeout: self.opts.idle_timeout,
        };
        // Each forwarded connection is a task of this forward's: they
        // end with it.
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                _ = forward.done() => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                accepted = listener.accept() => {
                    let (tcp, from) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::debug!(service = %ctx.service, bind = %local, error = %e, "sshd tcpip-forward accept");
                            continue;
                        }
                    };
                    let forward = forward.clone();
                    let ctx = ctx.clone();
                    let opts = opts.clone();
                    conns.spawn(async move {
                        let channel = match forward.open(local.port(), from).await {
                            Ok(c) => c,
                            Err(e) => {
                                tracing::debug!(service = %ctx.service, client = %ctx.peer, from = %from, error = %e, "sshd forwarded-tcpip");
                                return;
                            }
                        };
                        if let Err(e) = relay::relay(channel, Upstream::direct(tcp), &ctx, &opts).await {
                            tracing::debug!(service = %ctx.service, client = %ctx.peer, from = %from, error = %e, "sshd forwarded-tcpip relay");
                        }
                    });
                }
            }
        }
        tracing::debug!(service = %ctx.service, client = %ctx.peer, bind = %local, "sshd tcpip-forward ended");
        Ok(())
    }
}

impl Handler for SshdHandler {
    fn handle(&self, conn: Conn, ctx: ConnContext) -> HandleFuture<'_> {
        super::tcp_only("sshd", conn, move |s| self.serve(s, ctx))
    }
}
