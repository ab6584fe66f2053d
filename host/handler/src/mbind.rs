//! GOST's multiplexed BIND, the server half of reverse forwarding (`rtcp`):
//! the SOCKS5 extension command 0xF2 and relay's TCP BIND. After the BIND
//! answer the client's connection carries an smux session in which this
//! side is the smux *client*: each connection the bound port accepts gets
//! a stream opened here, which starts with a header naming the peer (a
//! SOCKS5 reply, or a relay response with an address feature, as GOST's
//! `mbind.go` and relay `tcpHandler` write them) and then carries the
//! peer's bytes. Streams the client opens are refused, as in GOST.
//!
//! The bound port lives as long as the session: when the client goes
//! away, the port is closed and its open connections end. A relay BIND
//! with network `unix` (`runix`) binds a unix socket instead, strictly
//! too (an existing path is an error), removed when the session ends;
//! its peers are announced as GOST names them, `@`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::{ConnContext, HandlerError};
use gost_chain::connector::upstream::Upstream;
use gost_chain::relay::{self, RelayOptions};
use gost_core::stream::Stream;
use gost_transport::mux::MuxConfig;
use gost_transport::mux::Session;

/// How each stream announces its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerHeader {
    Socks5,
    Relay,
}

impl PeerHeader {
    fn encode(self, peer: SocketAddr) -> Vec<u8> {
        if peer == gost_core::context::UNIX_PEER {
            if let Some(b) =
                gost_proto::relay::response_with_name(gost_proto::relay::STATUS_OK, "@")
            {
                return b;
            }
        }
        match self {
            PeerHeader::Socks5 => {
                gost_proto::socks::reply(gost_proto::socks::REP_SUCCEEDED, Some(peer))
            }
            PeerHeader::Relay => {
                gost_proto::relay::response_with_addrs(gost_proto::relay::STATUS_OK, &[peer])
            }
        }
    }
}

/// What a BIND listens on.
pub(crate) enum BindListener {
    Tcp(TcpListener),
    Unix(gost_transport::unix::UnixListen),
}

impl BindListener {
    /// The bound TCP address; `None` for a unix socket.
    pub(crate) fn local_addr(&self) -> std::io::Result<Option<SocketAddr>> {
        match self {
            BindListener::Tcp(l) => l.local_addr().map(Some),
            BindListener::Unix(_) => Ok(None),
        }
    }

    fn describe(&self) -> String {
        match self {
            BindListener::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| "?".into(), |a| a.to_string()),
            BindListener::Unix(l) => {
                gost_core::escape::esc(&l.path().display().to_string()).to_string()
            }
        }
    }

    async fn accept(&self) -> std::io::Result<(Stream, SocketAddr)> {
        match self {
            BindListener::Tcp(l) => {
                let (s, a) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok((
                    Stream::from(s),
                    SocketAddr::new(a.ip().to_canonical(), a.port()),
                ))
            }
            BindListener::Unix(l) => {
                use gost_transport::listener::{Conn, Listener};
                let a = l.accept().await?;
                match a.conn {
                    Conn::Stream(s) => Ok((s, a.peer)),
                    Conn::Udp(_) => Err(std::io::Error::other(
                        "a unix listener gave a datagram session",
                    )),
                }
            }
        }
    }
}

/// Binds `addr` strictly (a port in use is an error, as GOST's
/// `ListenConfig.Listen`); an empty host is every interface.
pub(crate) async fn listen(addr: &str) -> std::io::Result<BindListener> {
    let at = gost_transport::listener::resolve_bind_addr(addr)?;
    TcpListener::bind(at).await.map(BindListener::Tcp)
}

/// Binds a unix socket at `path`, which must not exist yet.
pub(crate) fn listen_unix(path: &str) -> std::io::Result<BindListener> {
    gost_transport::unix::UnixListen::bind(path, None).map(BindListener::Unix)
}

/// Serves the session over `control` (whose BIND was answered already)
/// until the client closes it or it breaks.
pub(crate) async fn serve(
    control: Stream,
    listener: BindListener,
    header: PeerHeader,
    mux: &MuxConfig,
    ctx: &ConnContext,
    idle_timeout: Option<Duration>,
) -> Result<(), HandlerError> {
    let bound = listener.describe();
    let session = Session::client(control, mux);
    let mut peers = JoinSet::new();
    tracing::info!(service = %ctx.service, client = %ctx.peer, bind = %bound, "bind: listening for the client's peers");
    loop {
        let (peer, peer_addr) = tokio::select! {
            _ = session.closed() => break,
            // Finished peer tasks are reaped as they end.
            Some(_) = peers.join_next(), if !peers.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(service = %ctx.service, client = %ctx.peer, bind = %bound, error = %e, "bind: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let mut stream = match session.open().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(service = %ctx.service, client = %ctx.peer, peer = %gost_core::context::Client(peer_addr), error = %e, "bind: session gone, peer dropped");
                break;
            }
        };
        let ctx = ctx.clone();
        peers.spawn(async move {
            if let Err(e) = stream.write_all(&header.encode(peer_addr)).await {
                tracing::debug!(service = %ctx.service, client = %ctx.peer, peer = %gost_core::context::Client(peer_addr), error = %e, "bind: stream closed before the peer header");
                return;
            }
            tracing::debug!(service = %ctx.service, client = %ctx.peer, peer = %gost_core::context::Client(peer_addr), "bind: peer connected");
            let opts = RelayOptions { idle_timeout };
            let res = relay::relay(
                peer,
                Upstream::direct(stream.into_stream()),
                &ctx,
                &opts,
            )
            .await;
            if let Err(e) = res {
                tracing::debug!(service = %ctx.service, client = %ctx.peer, peer = %gost_core::context::Client(peer_addr), error = %e, "bind: peer relay ended");
            }
        });
    }
    drop(listener);
    // A peer that broke the frame protocol is the handler's error, logged
    // and counted once by the service.
    if session.ended_in_error() {
        let end = session.end().unwrap_or_default();
        return Err(HandlerError::Protocol(format!(
            "bind {bound}: mux session: {end}; port closed"
        )));
    }
    tracing::info!(service = %ctx.service, client = %ctx.peer, bind = %bound, "bind: client left, port closed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SOCKS5 header GOST's `mbind.go` writes on each stream:
    /// `gosocks5.NewReply(Succeeded, peer)`.
    #[test]
    fn socks5_peer_header_is_a_success_reply_naming_the_peer() {
        let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        assert_eq!(
            PeerHeader::Socks5.encode(peer),
            [5, 0, 0, 1, 127, 0, 0, 1, 0x9c, 0x40]
        );
    }
}
