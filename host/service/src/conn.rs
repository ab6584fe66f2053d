//! One connection's task, from the accepted connection (or a stream of a
//! multiplexed session) to the handler's end.
//!
//! An idle connection keeps this task for its whole life, so its size is
//! memory per connection. What only the start needs travels in a
//! [`ConnStart`] box that is freed before the handler runs (an async
//! block keeps every captured value for its whole life, moved out or
//! not), and the handler is polled through [`Serving`], a plain struct,
//! instead of nested async scopes and a `select!`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::sync::futures::Notified;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use gost_core::connections::{self, Conn as Listed};
use gost_core::context::Client;
use gost_core::limiter::conn::ConnPermit;
use gost_core::metrics::Histogram;
use gost_core::stats::Stats;
use gost_handler::{ConnContext, HandleFuture, Handler};
use gost_transport::listener::Conn;
use gost_transport::Upgrade;

use super::record::ConnRecord;

/// What a connection's task needs before its handler starts.
pub(crate) struct ConnStart {
    pub handler: Arc<dyn Handler>,
    pub conn: Conn,
    pub ctx: ConnContext,
    /// The listener's transport, run on the connection first.
    pub upgrade: Option<Arc<dyn Upgrade>>,
    pub permit: Option<ConnPermit>,
    pub record: Option<Box<ConnRecord>>,
    /// The metrics' request duration, when on.
    pub duration: Option<Arc<Histogram>>,
    /// Local hops behind the connection (see `gost_core::dialer::loops`).
    pub hops: u8,
}

/// Serves one connection until its handler returns, the service stops
/// (`cancel`) or the API closes it.
#[allow(clippy::manual_async_fn)]
pub(crate) fn serve(
    start: Box<ConnStart>,
    cancel: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    async move {
        let ConnStart {
            handler,
            conn,
            ctx,
            upgrade,
            permit,
            record,
            duration,
            hops,
        } = *start;
        let _permit = permit;
        let begun = Instant::now();
        let stats = ctx.stats.clone();
        let _guard = stats.as_ref().map(|s| s.open_conn());
        let listed = super::register(&ctx);
        let service = ctx.service.clone();
        let peer = ctx.peer;
        let conn = match (upgrade, conn) {
            (Some(up), Conn::Stream(s)) => {
                let upgraded = {
                    let upgrading = up.upgrade(s);
                    tokio::select! {
                        r = upgrading => r,
                        _ = cancel.cancelled() => return,
                    }
                };
                match upgraded {
                    Ok(s) => Conn::Stream(s),
                    Err(e) => return upgrade_failed(&service, peer, stats.as_deref(), e),
                }
            }
            (_, conn) => conn,
        };
        let serving = Serving {
            handling: handler.handle(conn, ctx),
            listed: listed.as_ref().map(|l| l.conn()),
            hops,
            stop: cancel.cancelled(),
            closed: listed.as_ref().map(|l| l.conn().closed()),
        };
        let Some(result) = serving.await else {
            return;
        };
        if let Some(r) = record {
            r.finish(&result);
        }
        super::report(&service, peer, begun, duration, stats.as_deref(), result);
    }
}

/// A failed transport handshake: a client that closes before its first
/// byte (a port probe, a health check) is not an error, as in GOST; any
/// other failure counts as a server error of the service.
fn upgrade_failed(service: &str, peer: SocketAddr, stats: Option<&Stats>, e: std::io::Error) {
    if gost_chain::relay::is_disconnect(&e) {
        tracing::debug!(service = %service, client = %Client(peer), error = %e, "transport");
        return;
    }
    let msg = e.to_string();
    match gost_core::repeat::check((service, "transport", &msg)) {
        Some(0) => {
            tracing::error!(service = %service, client = %Client(peer), error = %msg, "transport")
        }
        Some(n) => {
            tracing::error!(service = %service, client = %Client(peer), error = %msg, repeated = n, "transport")
        }
        None => {}
    }
    if let Some(s) = stats {
        s.add_error();
    }
}

pin_project_lite::pin_project! {
    /// The handler's future with the connection's task-locals (its local
    /// hop count, its registry entry) set around each poll, raced against
    /// the service's stop and the API's close; `None` when one of those
    /// ended it. The handler goes first: it is what usually woke the task.
    struct Serving<'a> {
        handling: HandleFuture<'a>,
        listed: Option<&'a Arc<Listed>>,
        hops: u8,
        #[pin]
        stop: WaitForCancellationFuture<'a>,
        #[pin]
        closed: Option<Notified<'a>>,
    }
}

impl Future for Serving<'_> {
    type Output = Option<Result<(), gost_handler::HandlerError>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let handling = this.handling;
        let listed = *this.listed;
        let polled = gost_core::dialer::loops::enter(*this.hops, || {
            connections::enter(listed, || handling.as_mut().poll(cx))
        });
        if let Poll::Ready(r) = polled {
            return Poll::Ready(Some(r));
        }
        if this.stop.poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        if let Some(closed) = this.closed.as_pin_mut() {
            if closed.poll(cx).is_ready() {
                if let Some(l) = listed {
                    tracing::info!(service = %l.service, client = %Client(l.client), id = l.id, "connection closed through the API");
                }
                return Poll::Ready(None);
            }
        }
        Poll::Pending
    }
}
