//! GOST's `unix` handler (handler/unix): relays each connection, usually
//! a `unix` or `runix` listener's, to a unix socket.
//!
//! With a forwarder, the target is the node's address, a socket path:
//! dialed directly, or through the service's chain to the socket on the
//! chain's last node (a relay node asked for network `unix`). Without a
//! forwarder the connection goes through the chain as it is: its last
//! node is the destination, typically a `unix` node (`-F unix:///path`),
//! whose dialer reaches the socket. Without either there is nowhere to go.

use std::time::Duration;

use gost_core::metadata::{Metadata, MetadataError};
use gost_core::stream::Stream;

use super::forward::ForwardHandler;
use super::{ConnContext, HandleFuture, Handler, HandlerError};
use gost_chain::relay::{self, RelayOptions};
use gost_chain::router::Router;
use gost_transport::listener::Conn;

/// The address GOST's unix handler asks the chain for when it has no
/// forwarder: a name with no meaning, which the last node (a `unix`
/// node, the destination itself) ignores.
const THROUGH_CHAIN: &str = "@";

#[derive(Debug, Clone, Default)]
pub struct UnixOptions {
    /// `idleTimeout`: close a relay with no traffic for this long.
    pub idle_timeout: Option<Duration>,
}

impl UnixOptions {
    pub fn from_metadata(md: &Metadata) -> Result<Self, MetadataError> {
        Ok(UnixOptions {
            idle_timeout: md.get_duration("idleTimeout")?.filter(|d| !d.is_zero()),
        })
    }
}

pub struct UnixHandler {
    router: Router,
    forward: Option<ForwardHandler>,
    opts: UnixOptions,
}

impl UnixHandler {
    pub fn new(router: Router, forward: Option<ForwardHandler>, opts: UnixOptions) -> Self {
        UnixHandler {
            router,
            forward,
            opts,
        }
    }

    async fn serve(&self, client: Stream, ctx: ConnContext) -> Result<(), HandlerError> {
        let ip = ctx.peer.ip();
        let (upstream, dst) = match &self.forward {
            Some(fwd) => {
                let (up, node) = Box::pin(fwd.dial(&ctx, "unix", |path| async move {
                    self.router.dial_unix(&path, ip).await
                }))
                .await?;
                (up, node.addr.clone())
            }
            None if self.router.chain.is_none() => {
                return Err(HandlerError::Protocol(
                    "unix handler: no forwarder and no chain, nowhere to send the connection"
                        .into(),
                ))
            }
            None => (
                Box::pin(self.router.dial_tcp(THROUGH_CHAIN, ip)).await?,
                THROUGH_CHAIN.to_string(),
            ),
        };
        tracing::debug!(service = %ctx.service, client = %gost_core::context::Client(ctx.peer), dst = %gost_core::escape::esc(&dst), "unix: relaying");
        let opts = RelayOptions {
            idle_timeout: self.opts.idle_timeout,
        };
        relay::relay(client, upstream, &ctx, &opts).await?;
        Ok(())
    }
}

impl Handler for UnixHandler {
    fn handle(&self, conn: Conn, ctx: ConnContext) -> HandleFuture<'_> {
        super::tcp_only("unix", conn, move |s| self.serve(s, ctx))
    }
}
