//! GOST's transparent TCP proxy handler (`red`, `redir`, `redirect`;
//! handler/redirect/tcp): the client did not ask for a proxy, the kernel
//! steered its connection here, so the target is where the connection
//! was going. With iptables/nftables `REDIRECT` the kernel keeps that
//! destination for `SO_ORIGINAL_DST` (`IP6T_SO_ORIGINAL_DST` for IPv6);
//! with `TPROXY` (`tproxy: true`, on a `red` listener with `tproxy: true`)
//! the accepted socket's own local address is the destination.
//!
//! With `sniffing`, an HTTP request's `Host` or a ClientHello's SNI
//! names the target instead, on the original destination's port (GOST's
//! red handler); `sniffing.fallback` dials the original destination when
//! that fails, `sniffing.dialOriginalDst` always dials it.

use std::net::SocketAddr;
use std::time::Duration;

use gost_core::metadata::{Metadata, MetadataError};
use gost_core::stream::Stream;

use super::{ConnContext, HandleFuture, Handler, HandlerError};
use gost_chain::connector::upstream::Upstream;
use gost_chain::relay::{self, RelayOptions};
use gost_chain::router::{DialError, Router};
use gost_transport::listener::Conn;

#[derive(Debug, Clone, Default)]
pub struct RedirectOptions {
    /// `tproxy`: the destination is the socket's local address.
    pub tproxy: bool,
    /// `sniffing` and `sniffing.timeout`.
    pub sniffing: Option<Duration>,
    /// `sniffing.fallback`: the original destination when the sniffed
    /// host cannot be dialed.
    pub fallback: bool,
    /// `sniffing.dialOriginalDst`: sniff (for the bypass), dial the
    /// original destination.
    pub dial_original: bool,
    /// `idleTimeout`.
    pub idle_timeout: Option<Duration>,
}

impl RedirectOptions {
    pub fn from_metadata(md: &Metadata) -> Result<Self, MetadataError> {
        Ok(RedirectOptions {
            tproxy: md.get_bool("tproxy")?.unwrap_or(false),
            sniffing: super::sniffing::from_metadata(md)?,
            fallback: md.get_bool("sniffing.fallback")?.unwrap_or(false),
            dial_original: md.get_bool("sniffing.dialOriginalDst")?.unwrap_or(false),
            idle_timeout: md.get_duration("idleTimeout")?.filter(|d| !d.is_zero()),
        })
    }
}

pub struct RedirectHandler {
    router: Router,
    opts: RedirectOptions,
}

impl RedirectHandler {
    pub fn new(router: Router, opts: RedirectOptions) -> Self {
        RedirectHandler { router, opts }
    }

    /// Where the client's connection was going.
    fn original_dst(&self, client: &Stream) -> Result<SocketAddr, HandlerError> {
        let Some(tcp) = client.tcp() else {
            return Err(HandlerError::Protocol(
                "redirect: the connection is not a plain TCP socket (use the red listener)".into(),
            ));
        };
        if self.opts.tproxy {
            return Ok(tcp.local_addr()?);
        }
        let sock = socket2::SockRef::from(tcp);
        let peer = tcp.peer_addr()?;
        let dst = if peer.ip().to_canonical().is_ipv4() && peer.is_ipv4() {
            sock.original_dst_v4()
        } else {
            sock.original_dst_v6()
        };
        let dst = dst.map_err(|e| {
            HandlerError::Protocol(format!(
                "redirect: no original destination (SO_ORIGINAL_DST: {e}); was the connection redirected here by iptables/nftables?"
            ))
        })?;
        let dst = dst.as_socket().ok_or_else(|| {
            HandlerError::Protocol("redirect: the original destination is not an IP address".into())
        })?;
        Ok(SocketAddr::new(dst.ip().to_canonical(), dst.port()))
    }

    async fn serve(&self, mut client: Stream, ctx: ConnContext) -> Result<(), HandlerError> {
        let dst = self.original_dst(&client)?;
        let original = dst.to_string();
        // GOST checks the bypass on the original destination first, so
        // address rules hold whatever the sniffed name is.
        self.router.check_bypass("tcp", &original).await?;
        let upstream = match self.opts.sniffing {
            Some(timeout) => Box::pin(self.dial_sniffed(&mut client, &ctx, dst, timeout)).await?,
            None => Box::pin(self.dial(&ctx, &original)).await?,
        };
        let opts = RelayOptions {
            idle_timeout: self.opts.idle_timeout,
        };
        relay::relay(client, upstream, &ctx, &opts).await?;
        Ok(())
    }

    async fn dial(&self, ctx: &ConnContext, addr: &str) -> Result<Upstream, DialError> {
        tracing::debug!(service = %ctx.service, client = %ctx.peer, dst = %gost_core::escape::esc(addr), "redirect");
        self.router.dial_tcp(addr, ctx.peer.ip()).await
    }

    async fn dial_sniffed(
        &self,
        client: &mut Stream,
        ctx: &ConnContext,
        dst: SocketAddr,
        timeout: Duration,
    ) -> Result<Upstream, DialError> {
        let original = dst.to_string();
        let sniffed = super::sniffing::sniff(client, timeout, 0).await;
        if sniffed.host.is_empty() || self.opts.dial_original {
            if !sniffed.host.is_empty() {
                let named = sniffed_target(&sniffed.host, dst.port());
                self.router.check_bypass("tcp", &named).await?;
            }
            return self.dial(ctx, &original).await;
        }
        let named = sniffed_target(&sniffed.host, dst.port());
        match self.dial(ctx, &named).await {
            Ok(up) => Ok(up),
            Err(e) if self.opts.fallback && !e.is_bypass() => {
                tracing::debug!(service = %ctx.service, client = %ctx.peer, host = %gost_core::escape::esc(&named), error = %e, "redirect: sniffed host failed, dialing the original destination");
                self.dial(ctx, &original).await
            }
            Err(e) => Err(e),
        }
    }
}

/// The sniffed host (any port it names dropped) on the original
/// destination's port, as GOST joins them.
fn sniffed_target(host: &str, port: u16) -> String {
    let bare = match gost_core::addr::split_host_port(host) {
        Ok((h, _)) => h,
        Err(_) => host,
    };
    let bare = bare.trim_start_matches('[').trim_end_matches(']');
    if bare.contains(':') {
        format!("[{bare}]:{port}")
    } else {
        format!("{bare}:{port}")
    }
}

impl Handler for RedirectHandler {
    fn handle(&self, conn: Conn, ctx: ConnContext) -> HandleFuture<'_> {
        super::tcp_only("red", conn, move |s| self.serve(s, ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sniffed_host_takes_the_original_port() {
        assert_eq!(sniffed_target("example.com", 8443), "example.com:8443");
        assert_eq!(sniffed_target("example.com:80", 8080), "example.com:8080");
        assert_eq!(sniffed_target("[::1]:80", 81), "[::1]:81");
        assert_eq!(sniffed_target("::1", 81), "[::1]:81");
    }

    /// A connection nobody redirected has no original destination: an
    /// error naming the cause, not a dial to ourselves.
    #[tokio::test]
    async fn a_connection_not_redirected_is_refused() {
        let (_c, s) = gost_core::test_util::tcp_pair().await;
        let h = RedirectHandler::new(Router::default(), RedirectOptions::default());
        let err = h.original_dst(&Stream::from(s)).unwrap_err();
        assert!(err.to_string().contains("SO_ORIGINAL_DST"), "{err}");
    }
}
