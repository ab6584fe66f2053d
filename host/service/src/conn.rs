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

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use gost_core::connections::{self, Conn as Listed};
use gost_core::context::Client;
use gost_core::limiter::conn::ConnPermit;
use gost_core::metrics::Histogram;
use gost_core::recorder::Notes;
use gost_core::stats::{OwnedConnGuard, Stats};
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
    /// Boxed: a recorded connection is the exception, and inline the
    /// record would grow every connection's task past its size class.
    pub record: Option<Box<ConnRecord>>,
    /// The metrics' request duration, when on.
    pub duration: Option<Arc<Histogram>>,
    /// Local hops behind the connection (see `gost_core::dialer::loops`).
    pub hops: u8,
}

/// What the task keeps for after the handler: none of it is borrowed
/// while the handler runs, which lets the compiler keep it once.
struct Tail {
    /// Boxed: a connection limiter is the exception.
    _permit: Option<Box<ConnPermit>>,
    record: Option<Box<ConnRecord>>,
    timing: Option<(Arc<Histogram>, Instant)>,
    /// Counts the connection open, and holds the counters it counts in.
    counted: Option<OwnedConnGuard>,
    service: Arc<str>,
    peer: SocketAddr,
}

/// Serves one connection until its handler returns, the service stops
/// (`cancel`) or the API closes it.
#[allow(clippy::manual_async_fn)]
pub(crate) fn serve(
    start: Box<ConnStart>,
    cancel: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    async move {
        let (handler, conn, ctx, hops, tail, listed, upgrade) = begin(*start, &cancel);
        let (conn, ctx) = match upgrade {
            None => (conn, ctx),
            // Boxed: its state would otherwise size every connection's
            // task, upgraded or not, for the connection's whole life.
            Some(up) => match Box::pin(upgraded(up, conn, ctx, &cancel)).await {
                Some(done) => done,
                None => return,
            },
        };
        let stop = listed.as_ref().map_or(&cancel, |l| l.conn().stop());
        let serving = Serving {
            handling: handler.handle(conn, ctx),
            listed: listed.as_ref().map(|l| l.conn()),
            notes: tail.record.as_ref().map(|r| r.notes()),
            hops,
            stop: stop.cancelled(),
        };
        let Some(result) = serving.await else {
            if let Some(l) = listed.as_ref().filter(|_| !cancel.is_cancelled()) {
                let l = l.conn();
                tracing::info!(service = %l.service, client = %Client(l.client), id = l.id, "connection closed through the API");
            }
            return;
        };
        let Tail {
            record,
            timing,
            counted,
            service,
            peer,
            ..
        } = tail;
        if let Some(r) = record {
            r.finish(&result);
        }
        let stats = counted.as_ref().map(|c| c.stats());
        report(&service, peer, timing, stats, result);
    }
}

type Begun = (
    Arc<dyn Handler>,
    Conn,
    ConnContext,
    u8,
    Tail,
    Option<connections::Registered>,
    Option<Arc<dyn Upgrade>>,
);

/// Takes the start apart outside the async block: a value borrowed there
/// stays in the task for its whole life, moved out or not.
fn begin(start: ConnStart, cancel: &CancellationToken) -> Begun {
    let ConnStart {
        handler,
        conn,
        ctx,
        upgrade,
        permit,
        record,
        duration,
        hops,
    } = start;
    let listed = register(&ctx, cancel);
    let tail = Tail {
        _permit: permit.map(Box::new),
        record,
        timing: duration.map(|h| (h, Instant::now())),
        counted: ctx.stats.as_ref().map(|s| s.open_conn_owned()),
        service: ctx.service.clone(),
        peer: ctx.peer,
    };
    (handler, conn, ctx, hops, tail, listed, upgrade)
}

/// Runs the listener's transport on the connection (counted and listed
/// already, as GOST counts a connection from its accept): the context
/// back with the transport's stream, or `None` when it failed or the
/// service stopped first.
async fn upgraded(
    up: Arc<dyn Upgrade>,
    conn: Conn,
    ctx: ConnContext,
    cancel: &CancellationToken,
) -> Option<(Conn, ConnContext)> {
    let Conn::Stream(s) = conn else {
        return Some((conn, ctx));
    };
    let upgraded = tokio::select! {
        r = up.upgrade(s) => r,
        _ = cancel.cancelled() => return None,
    };
    match upgraded {
        Ok(s) => Some((Conn::Stream(s), ctx)),
        Err(e) => {
            upgrade_failed(&ctx.service, ctx.peer, ctx.stats.as_deref(), e);
            None
        }
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
    /// the connection's stop (the service's, or its own in the registry,
    /// a child of the service's); `None` when that ended it. The handler
    /// goes first: it is what usually woke the task.
    struct Serving<'a> {
        handling: HandleFuture<'a>,
        listed: Option<&'a Arc<Listed>>,
        notes: Option<&'a Arc<Notes>>,
        hops: u8,
        #[pin]
        stop: WaitForCancellationFuture<'a>,
    }
}

impl Future for Serving<'_> {
    type Output = Option<Result<(), gost_handler::HandlerError>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let handling = this.handling;
        let listed = *this.listed;
        let notes = *this.notes;
        let polled = gost_core::dialer::loops::enter(*this.hops, || {
            connections::enter(listed, || {
                gost_core::recorder::enter(notes, || handling.as_mut().poll(cx))
            })
        });
        if let Poll::Ready(r) = polled {
            return Poll::Ready(Some(r));
        }
        if this.stop.poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

/// Lists the connection in the registry of live connections, when the
/// registry is on (`conn_context` then gives it counters of its own).
fn register(ctx: &ConnContext, stop: &CancellationToken) -> Option<connections::Registered> {
    let registry = connections::global()?;
    Some(registry.register(ctx.service.clone(), ctx.peer, ctx.stats.clone()?, stop))
}

/// Records how a handler's connection ended: its duration, and a server
/// error logged and counted.
fn report(
    service: &str,
    peer: SocketAddr,
    timing: Option<(Arc<Histogram>, Instant)>,
    stats: Option<&Stats>,
    result: Result<(), gost_handler::HandlerError>,
) {
    if let Some((h, start)) = timing {
        h.observe(start.elapsed());
    }
    if let Err(e) = result {
        if e.is_server_error() {
            let msg = e.to_string();
            match gost_core::repeat::check((service, "handler", &msg)) {
                Some(0) => {
                    tracing::error!(service = %service, client = %Client(peer), error = %msg, "handler")
                }
                Some(n) => {
                    tracing::error!(service = %service, client = %Client(peer), error = %msg, repeated = n, "handler")
                }
                None => {}
            }
            if let Some(s) = stats {
                s.add_error();
            }
        } else {
            tracing::debug!(service = %service, client = %Client(peer), error = %e, "handler");
        }
    }
}
