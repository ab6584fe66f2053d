//! The service's part of GOST's recorders: the client's address when a
//! connection is accepted (`recorder.service.client.address`) and one
//! JSON record when its handler is done (`recorder.service.handler`).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use gost_core::context::{ConnContext, UNIX_PEER};
use gost_core::recorder::{self, HandlerRecord, Notes, ServiceRecorders};
use gost_core::stats::Stats;

/// The client's IP as GOST records it (`@` for a unix socket's client).
fn client_ip(peer: std::net::SocketAddr) -> String {
    if peer == UNIX_PEER {
        "@".into()
    } else {
        peer.ip().to_string()
    }
}

/// Records a newly accepted client, before admission, as GOST does.
pub(crate) fn accepted(recorders: Option<&ServiceRecorders>, peer: std::net::SocketAddr) {
    if let Some(r) = recorders {
        r.record(recorder::CLIENT_ADDRESS, || client_ip(peer).into_bytes());
    }
}

/// A connection's handler record, filled by the handler and the router
/// while the handler runs (in [`recorder::enter`]) and written when it
/// returns.
pub(crate) struct ConnRecord {
    notes: Arc<Notes>,
    start: Instant,
}

impl ConnRecord {
    /// Starts the record if the service records its handler: the
    /// connection gets counters of its own (adding into the service's),
    /// so the record has its bytes. The record itself lives in the
    /// notes' allocation, so a connection's task holds two words for it.
    pub(crate) fn start(
        recorders: Option<&ServiceRecorders>,
        ctx: &mut ConnContext,
        network: &str,
    ) -> Option<Self> {
        let recorders = recorders?;
        let recorder = recorders.get(recorder::HANDLER)?.clone();
        let stats = Arc::new(Stats::linked(ctx.stats.take().into_iter().collect()));
        ctx.stats = Some(stats.clone());
        let shown = |a: std::net::SocketAddr| gost_core::context::Client(a).to_string();
        let remote = shown(ctx.peer);
        // As GOST's handlers start it: `src`, `dst` and `host` wait for
        // the dial, `clientIP` for an HTTP request's forwarding headers.
        let rec = HandlerRecord {
            service: ctx.service.to_string(),
            network: network.into(),
            remote_addr: remote.clone(),
            local_addr: shown(ctx.local),
            client_addr: remote,
            sid: recorder::sid(),
            time: recorder::rfc3339_nano(SystemTime::now()),
            ..Default::default()
        };
        Some(ConnRecord {
            notes: Arc::new(Notes::new(
                rec,
                recorder,
                stats,
                recorders.body_limit(recorder::HANDLER),
            )),
            start: Instant::now(),
        })
    }

    /// The notes the handler's task fills.
    pub(crate) fn notes(&self) -> &Arc<Notes> {
        &self.notes
    }

    pub(crate) fn finish(self, result: &Result<(), gost_handler::HandlerError>) {
        let err = result.as_ref().err().map(|e| e.to_string());
        self.notes.finish(self.start, err);
    }
}
