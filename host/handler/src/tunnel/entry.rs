//! The tunnel handler's public entry point (GOST's `entrypoint`): a TCP
//! port where visitors need no GOST client. By the first byte: a relay
//! request (0x01) names its tunnel itself; a TLS ClientHello is routed by
//! its SNI and an HTTP request by its `Host`, through the ingress.
//!
//! Unlike GOST, whose entry point is an HTTP reverse proxy that routes
//! each request of a keep-alive connection on its own, a connection here
//! is routed once, by its first request, and then relayed as it is: the
//! tunnel client's target sees the visitor's bytes unchanged (no
//! `Gost-Sid` or `Gost-Forwarded-Node` headers are added).

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

use super::{join, read_request, status, stream_head, Shared};
use crate::sniffing;
use crate::{ConnContext, HandlerError};
use gost_core::escape::esc;
use gost_core::stream::Stream;
use gost_proto::relay::{STATUS_BAD_REQUEST, STATUS_OK, STATUS_SERVICE_UNAVAILABLE, VERSION};
use gost_proto::tunnel::TunnelId;

/// GOST's `entrypoint.readTimeout` default: the visitor's first request
/// (relay request, ClientHello or HTTP head) must arrive within this.
const READ_TIMEOUT: Duration = Duration::from_secs(15);
/// Most visitor connections the entry point serves at once; more wait in
/// the listen backlog.
const MAX_VISITORS: usize = 16_384;

pub(crate) struct Entry {
    pub(crate) addr: String,
    pub(crate) local: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Entry {
    /// Binds `addr` and serves it for as long as the service's state
    /// lives.
    pub(crate) fn bind(addr: &str, shared: Weak<Shared>) -> std::io::Result<Entry> {
        let at = gost_transport::listener::resolve_bind_addr(addr)?;
        let std = std::net::TcpListener::bind(at)?;
        std.set_nonblocking(true)?;
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|e| std::io::Error::other(format!("entry point: no runtime: {e}")))?;
        let listener = {
            let _guard = rt.enter();
            tokio::net::TcpListener::from_std(std)?
        };
        let local = listener.local_addr()?;
        tracing::info!(entrypoint = %local, "tunnel: entry point listening");
        let task = rt.spawn(accept_loop(listener, shared));
        Ok(Entry {
            addr: addr.to_string(),
            local,
            task,
        })
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, shared: Weak<Shared>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_VISITORS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "tunnel: entry point accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().unwrap_or(peer);
        tokio::spawn(async move {
            let ctx = ConnContext {
                service: format!("{}-ep-{local}", shared.service).into(),
                peer: SocketAddr::new(peer.ip().to_canonical(), peer.port()),
                local,
                stats: None,
                traffic: None,
            };
            if let Err(e) = serve(&shared, Stream::from(tcp), &ctx).await {
                let line = e.to_string();
                if let Some(left_out) = gost_core::repeat::check(("tunnel-entry", &line)) {
                    tracing::warn!(service = %ctx.service, client = %ctx.peer, error = %line, left_out, "tunnel: entry point refused a visitor");
                }
            }
            drop(permit);
        });
    }
}

async fn serve(shared: &Shared, mut stream: Stream, ctx: &ConnContext) -> Result<(), HandlerError> {
    match tokio::time::timeout(READ_TIMEOUT, stream.read_ahead(1)).await {
        Ok(Ok(n)) if n > 0 => {}
        Ok(Err(e)) => return Err(e.into()),
        _ => return Ok(()),
    }
    if stream.rewound().first() == Some(&VERSION) {
        return Box::pin(relay_visitor(shared, stream, ctx)).await;
    }
    let sniffed = sniffing::sniff(&mut stream, READ_TIMEOUT, 0).await;
    let (http, port) = match sniffed.protocol {
        "http" => (true, 80),
        "tls" => (false, 443),
        _ => {
            shared.count_refused();
            return Err(HandlerError::Protocol(
                "tunnel entry point: neither a relay request, TLS nor HTTP".into(),
            ));
        }
    };
    if sniffed.host.is_empty() {
        shared.count_refused();
        if http {
            let _ = stream.write_all_now(BAD_GATEWAY).await;
        }
        return Err(HandlerError::Protocol(format!(
            "tunnel entry point: {} without a host name",
            sniffed.protocol
        )));
    }
    let host = sniffing::with_port(&sniffed.host, port);
    let endpoint = match shared.ingress() {
        Some(i) => i.endpoint(&shared.service, &host).await,
        None => None,
    };
    let tunnel = endpoint
        .and_then(|e| TunnelId::parse(&e))
        .filter(|t| !t.is_private());
    let Some(tunnel) = tunnel else {
        shared.count_refused();
        if http {
            let _ = stream.write_all_now(BAD_GATEWAY).await;
        }
        return Err(HandlerError::Protocol(format!(
            "tunnel entry point: no route to host {:?}",
            esc(&host)
        )));
    };
    let Some((mut up, _, stats)) = shared.dial(&tunnel, false).await else {
        shared.count_refused();
        if http {
            let _ = stream.write_all_now(UNAVAILABLE).await;
        }
        return Err(HandlerError::Protocol(format!(
            "tunnel entry point: host {:?}: tunnel {tunnel} has no connected client",
            esc(&host)
        )));
    };
    up.write_all(&stream_head(&ctx.peer.to_string(), &host)?)
        .await?;
    tracing::debug!(service = %ctx.service, client = %ctx.peer, host = %esc(&host), tunnel = %tunnel, "tunnel entry point: visitor joined");
    join(stream, up.into_stream(), ctx, stats, None).await
}

/// What GOST's entry point answers an HTTP visitor whose host has no
/// route.
const BAD_GATEWAY: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n";
/// ... and one whose tunnel has no client.
const UNAVAILABLE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";

/// A relay request at the entry point names its tunnel; no ingress.
async fn relay_visitor(
    shared: &Shared,
    mut stream: Stream,
    ctx: &ConnContext,
) -> Result<(), HandlerError> {
    let req = match tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream)).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(HandlerError::Protocol(
                "tunnel entry point: relay request not complete in time".into(),
            ))
        }
    };
    // GOST takes the id's 16 bytes only, so a private flag does not
    // hide the tunnel from a visitor who knows its id.
    let Some(tunnel) = req
        .tunnel
        .map(|t| TunnelId::parse(&t.to_string()).unwrap_or(t))
    else {
        shared.count_refused();
        let _ = stream.write_all_now(&status(STATUS_BAD_REQUEST)).await;
        return Err(HandlerError::Protocol(
            "tunnel entry point: relay request without a tunnel id".into(),
        ));
    };
    let Some((mut up, _, stats)) = shared.dial(&tunnel, req.udp).await else {
        shared.count_refused();
        let _ = stream
            .write_all_now(&status(STATUS_SERVICE_UNAVAILABLE))
            .await;
        return Err(HandlerError::Protocol(format!(
            "tunnel entry point: tunnel {tunnel} has no connected client"
        )));
    };
    stream.write_all_now(&status(STATUS_OK)).await?;
    up.write_all(&stream_head(&req.src, &req.dst)?).await?;
    join(stream, up.into_stream(), ctx, stats, None).await
}
