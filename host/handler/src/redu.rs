//! GOST's transparent UDP proxy handler (`redu`; handler/redirect/udp):
//! each session of a `redu` listener goes to the destination its
//! datagrams were addressed to before TPROXY steered them here (the
//! session's local address), directly or through the chain as the `udp`
//! handler's do, until it idles for the listener's `ttl`.

use gost_chain::router::Router;
use gost_transport::listener::{Conn, UdpConn};

use super::{ConnContext, HandleFuture, Handler, HandlerError};

pub struct RedirectUdpHandler {
    router: Router,
}

impl RedirectUdpHandler {
    pub fn new(router: Router) -> Self {
        RedirectUdpHandler { router }
    }

    async fn serve(&self, mut client: UdpConn, ctx: ConnContext) -> Result<(), HandlerError> {
        let dst = ctx.local.to_string();
        tracing::debug!(service = %ctx.service, client = %ctx.peer, dst = %dst, "redu");
        // The dial's state (name resolution, the chain) is boxed so it is
        // freed before the session's long relay.
        let mut upstream = Box::pin(self.router.dial_udp(&dst, ctx.peer.ip())).await?;
        let start = std::time::Instant::now();
        let r = super::forward::relay_udp(&mut client, &mut upstream, &ctx).await;
        tracing::debug!(service = %ctx.service, client = %ctx.peer, dst = %dst, duration = ?start.elapsed(), "redu: session ended");
        r
    }
}

impl Handler for RedirectUdpHandler {
    fn handle(&self, conn: Conn, ctx: ConnContext) -> HandleFuture<'_> {
        match conn {
            Conn::Udp(u) => Box::pin(self.serve(u, ctx)),
            Conn::Stream(_) => Box::pin(std::future::ready(Err(HandlerError::Protocol(
                "the redu handler serves the sessions of a redu listener only".into(),
            )))),
        }
    }
}
