//! Serving a multiplexing listener's connection: one session, each of its
//! streams handed to the handler as a connection of its own, with its own
//! context (the session's client address), so stats, metrics and
//! observers count proxied connections, not sessions. Admission and the
//! connection limiters apply to the session, as GOST applies them to its
//! listener's connections.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::conn::ConnStart;
use super::{conn_context, HandlerSlot, Status};
use gost_core::limiter::conn::ConnPermit;
use gost_transport::listener::{Accepted, Conn};
use gost_transport::{Opened, Upgrade};

pub(super) struct Sessions {
    pub name: Arc<str>,
    pub status: Arc<Status>,
    /// The handler is read again for each stream: a replaced handler
    /// applies to new streams of a live session too.
    pub slot: Arc<HandlerSlot>,
    /// Each stream is a task of the service's, so a stop drains it.
    pub conns: TaskTracker,
    pub cancel: CancellationToken,
}

impl Sessions {
    pub async fn serve(
        self,
        upgrade: Arc<dyn Upgrade>,
        accepted: Accepted,
        permit: Option<ConnPermit>,
    ) {
        let _permit = permit;
        let Some(mux) = upgrade.multiplex() else {
            return;
        };
        let Conn::Stream(stream) = accepted.conn else {
            return;
        };
        let peer = accepted.peer;
        let made = tokio::select! {
            r = mux.session(stream) => r,
            _ = self.cancel.cancelled() => return,
        };
        let mut session = match made {
            Ok(s) => s,
            Err(e) if gost_chain::relay::is_disconnect(&e) => {
                tracing::debug!(service = %self.name, client = %peer, error = %e, "transport");
                return;
            }
            Err(e) => {
                tracing::error!(service = %self.name, client = %peer, error = %e, "transport");
                self.add_error();
                return;
            }
        };
        let mut streams = 0u64;
        loop {
            let next = tokio::select! {
                s = session.accept() => s,
                _ = self.cancel.cancelled() => return,
            };
            let opened = match next {
                None => break,
                Some(Ok(s)) => s,
                Some(Err(e)) => {
                    self.refused(peer, &e);
                    continue;
                }
            };
            streams += 1;
            if opened.hops > gost_core::dialer::loops::MAX_HOPS {
                if let Some(n) = gost_core::repeat::check((&*self.name, "loop")) {
                    tracing::warn!(service = %self.name, client = %peer, hops = opened.hops, repeated = n, "loop: stream opened by this gost through too many of its own services, refused");
                }
                continue;
            }
            self.spawn_stream(opened, peer, accepted.local);
        }
        let (reason, in_error) = session.end().unwrap_or_default();
        if in_error {
            tracing::error!(service = %self.name, client = %peer, streams, reason, "mux session");
            self.add_error();
        } else {
            tracing::debug!(service = %self.name, client = %peer, streams, reason, "mux session");
        }
    }

    fn spawn_stream(&self, opened: Opened, peer: SocketAddr, local: SocketAddr) {
        let Opened { stream, hops } = opened;
        let active = self.slot.get();
        let (mut ctx, duration) = conn_context(&self.name, &self.status, &active, peer, local);
        let record = super::record::ConnRecord::start(active.recorders.as_deref(), &mut ctx, "tcp");
        let start = ConnStart {
            handler: active.handler.clone(),
            conn: Conn::Stream(stream),
            ctx,
            upgrade: None,
            permit: None,
            record: record.map(Box::new),
            duration,
            hops,
        };
        self.conns
            .spawn(super::conn::serve(Box::new(start), self.cancel.clone()));
    }

    /// A stream the transport refused (a gRPC call to another method):
    /// counted as an error of the service and logged, a repeated message
    /// once per interval.
    fn refused(&self, peer: SocketAddr, e: &std::io::Error) {
        let msg = e.to_string();
        match gost_core::repeat::check((&*self.name, "transport", &msg)) {
            Some(0) => {
                tracing::error!(service = %self.name, client = %peer, error = %msg, "transport")
            }
            Some(n) => {
                tracing::error!(service = %self.name, client = %peer, error = %msg, repeated = n, "transport")
            }
            None => {}
        }
        self.add_error();
    }

    fn add_error(&self) {
        if let Some(s) = self.status.stats() {
            s.add_error();
        }
    }
}
