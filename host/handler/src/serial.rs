//! GOST's `serial` handler (handler/serial): relays each connection,
//! usually a `serial` listener's port, onwards.
//!
//! With a forwarder, the target is a serial port on this host: the
//! node's address names the port, and the baud rate and parity are the
//! service's own (`COM1,9600,odd` on a `serial` listener; GOST's defaults,
//! 9600 and none, on any other listener). Without a forwarder the
//! connection goes through the chain as it is: its last node is the
//! destination (`-L serial://COM1 -F tcp://host:port`). Without either
//! there is nowhere to go.

use std::time::Duration;

use gost_core::metadata::{Metadata, MetadataError};
use gost_core::stream::Stream;
use gost_transport::serial::SerialConfig;

use super::forward::ForwardHandler;
use super::{ConnContext, HandleFuture, Handler, HandlerError};
use gost_chain::connector::upstream::Upstream;
use gost_chain::relay::{self, RelayOptions};
use gost_chain::router::{DialError, Router};
use gost_transport::listener::Conn;

/// The address GOST's serial handler asks the chain for when it has no
/// forwarder: a name with no meaning, which the last node ignores.
const THROUGH_CHAIN: &str = "@";

#[derive(Debug, Clone, Default)]
pub struct SerialOptions {
    /// `timeout` (`serial.timeout`): a read from a port the handler opens
    /// that waits this long ends the connection.
    pub read_timeout: Option<Duration>,
}

impl SerialOptions {
    pub fn from_metadata(md: &Metadata) -> Result<Self, MetadataError> {
        Ok(SerialOptions {
            read_timeout: gost_transport::serial::read_timeout_from(
                md,
                &["timeout", "serial.timeout"],
            )?,
        })
    }
}

pub struct SerialHandler {
    router: Router,
    /// The forwarder, with the baud rate and parity its ports are opened
    /// with (the name is each node's address).
    forward: Option<(ForwardHandler, SerialConfig)>,
    opts: SerialOptions,
}

impl SerialHandler {
    pub fn new(
        router: Router,
        forward: Option<(ForwardHandler, SerialConfig)>,
        opts: SerialOptions,
    ) -> Self {
        SerialHandler {
            router,
            forward,
            opts,
        }
    }

    async fn serve(&self, client: Stream, ctx: ConnContext) -> Result<(), HandlerError> {
        let (upstream, dst) = match &self.forward {
            Some((fwd, port)) => {
                let (up, node) = Box::pin(fwd.dial(&ctx, "serial", |name| {
                    let cfg = SerialConfig {
                        name,
                        ..port.clone()
                    };
                    let read_timeout = self.opts.read_timeout;
                    async move {
                        cfg.open(read_timeout)
                            .map(Upstream::direct)
                            .map_err(|source| DialError::Io {
                                network: "serial",
                                addr: cfg.name.clone(),
                                source,
                            })
                    }
                }))
                .await?;
                (up, node.addr.clone())
            }
            None if self.router.chain.is_none() => {
                return Err(HandlerError::Protocol(
                    "serial handler: no forwarder and no chain, nowhere to send the connection"
                        .into(),
                ))
            }
            None => (
                Box::pin(self.router.dial_tcp(THROUGH_CHAIN, ctx.peer.ip())).await?,
                THROUGH_CHAIN.to_string(),
            ),
        };
        tracing::debug!(service = %ctx.service, dst = %gost_core::escape::esc(&dst), "serial: relaying");
        relay::relay(client, upstream, &ctx, &RelayOptions::default()).await?;
        Ok(())
    }
}

impl Handler for SerialHandler {
    fn handle(&self, conn: Conn, ctx: ConnContext) -> HandleFuture<'_> {
        super::tcp_only("serial", conn, move |s| self.serve(s, ctx))
    }
}
