//! SOCKS5 BIND (RFC 1928 §4) as GOST serves it with `bind=true`: listen,
//! tell the client where (first reply), accept one connection, tell the
//! client who connected (second reply), then relay.
//!
//! GOST listens on the request's DST address (usually 0.0.0.0:0, so any
//! free port) rather than treating it as the expected peer, and reports the
//! control connection's local IP (or `publicAddr`) with the bound port.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

use super::{Granted, Handshake, TargetAddr};
use crate::{ConnContext, HandlerError};
use gost_chain::connector::upstream::Upstream;
use gost_proto::socks::put_host;
use gost_proto::socks::{reply, REP_GENERAL_FAILURE, REP_SUCCEEDED, VERSION};

pub(super) async fn bind(
    mut hs: Handshake,
    ctx: &ConnContext,
    target: &TargetAddr,
    public_addr: Option<&str>,
    idle_timeout: Option<Duration>,
) -> Result<(), HandlerError> {
    let listener = match TcpListener::bind(target.to_string()).await {
        Ok(l) => l,
        Err(e) => {
            let _ = hs.write(&reply(REP_GENERAL_FAILURE, None)).await;
            return Err(e.into());
        }
    };
    let port = listener.local_addr()?.port();
    let first = match public_addr {
        Some(host) => {
            let mut out = vec![VERSION, REP_SUCCEEDED, 0];
            put_host(&mut out, host, port);
            out
        }
        None => {
            let ip = hs.io.get_ref().local_addr()?.ip().to_canonical();
            reply(REP_SUCCEEDED, Some(SocketAddr::new(ip, port)))
        }
    };
    hs.write(&first).await?;
    tracing::debug!(service = %ctx.service, client = %ctx.peer, port, "socks5 bind listening");

    // Until the peer comes, watch the control connection so a client that
    // gives up does not leave the listener open. Bytes it sends meanwhile
    // are read ahead and stay in the stream for the relay.
    let limit = hs.io.get_ref().rewound().len() + 1;
    let accepted = tokio::select! {
        r = listener.accept() => r,
        r = hs.io.get_mut().read_ahead(limit) => match r {
            Ok(0) | Err(_) => {
                tracing::debug!(service = %ctx.service, client = %ctx.peer, "socks5 bind: client left before a peer connected");
                return Ok(());
            }
            Ok(_) => listener.accept().await,
        },
    };
    drop(listener);
    let (peer, peer_addr) = match accepted {
        Ok(x) => x,
        Err(e) => {
            let _ = hs.write(&reply(REP_GENERAL_FAILURE, None)).await;
            return Err(e.into());
        }
    };
    let _ = peer.set_nodelay(true);
    hs.write(&reply(REP_SUCCEEDED, Some(peer_addr))).await?;
    tracing::debug!(service = %ctx.service, client = %ctx.peer, peer = %peer_addr, "socks5 bind: peer connected");
    Granted::new(hs, Upstream::direct(peer), target.clone())
        .relay(ctx, idle_timeout)
        .await
}

/// GOST's multiplexed BIND (0xF2, `mbind.go`): listen strictly on the
/// requested address (a port in use is a failure reply), answer with the
/// control connection's local IP (or `publicAddr`) and the bound port,
/// then serve the client's peers over an smux session on the connection.
#[cfg(feature = "mux")]
pub(super) async fn mux_bind(
    mut hs: Handshake,
    ctx: &ConnContext,
    target: &TargetAddr,
    public_addr: Option<&str>,
    mux: &gost_transport::mux::MuxConfig,
    idle_timeout: Option<Duration>,
) -> Result<(), HandlerError> {
    let listener = match crate::mbind::listen(&target.to_string()).await {
        Ok(l) => l,
        Err(e) => {
            let _ = hs.write(&reply(REP_GENERAL_FAILURE, None)).await;
            return Err(HandlerError::Protocol(format!(
                "socks5 mbind on {}: {e}",
                gost_core::escape::esc(&target.to_string())
            )));
        }
    };
    let port = listener.local_addr()?.map_or(0, |a| a.port());
    let first = match public_addr {
        Some(host) => {
            let mut out = vec![VERSION, REP_SUCCEEDED, 0];
            put_host(&mut out, host, port);
            out
        }
        None => {
            let ip = hs.io.get_ref().local_addr()?.ip().to_canonical();
            reply(REP_SUCCEEDED, Some(SocketAddr::new(ip, port)))
        }
    };
    hs.write(&first).await?;
    let (mut control, early) = hs.finish();
    // Frames the client sent right after its request are the session's.
    control.unread(&early);
    crate::mbind::serve(
        control,
        listener,
        crate::mbind::PeerHeader::Socks5,
        mux,
        ctx,
        idle_timeout,
    )
    .await
}
