//! The service's part of GOST's recorders: the client's address when a
//! connection is accepted (`recorder.service.client.address`) and one
//! JSON record when its handler is done (`recorder.service.handler`).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use gost_core::context::{ConnContext, UNIX_PEER};
use gost_core::recorder::{self, HandlerRecord, Recorder, ServiceRecorders};
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

/// A connection's handler record, written when the handler returns.
pub(crate) struct ConnRecord {
    recorder: Arc<Recorder>,
    rec: HandlerRecord,
    start: Instant,
    stats: Arc<Stats>,
}

impl ConnRecord {
    /// Starts the record if the service records its handler: the
    /// connection gets counters of its own (adding into the service's),
    /// so the record has its bytes. Boxed: every connection's task holds
    /// the result, recorded or not, and the record itself is some 380
    /// bytes, which inline would grow each idle connection by as much.
    pub(crate) fn start(
        recorders: Option<&ServiceRecorders>,
        ctx: &mut ConnContext,
        network: &str,
    ) -> Option<Box<Self>> {
        let recorder = recorders?.get(recorder::HANDLER)?.clone();
        let stats = Arc::new(Stats::linked(ctx.stats.take().into_iter().collect()));
        ctx.stats = Some(stats.clone());
        let shown = |a: std::net::SocketAddr| gost_core::context::Client(a).to_string();
        let remote = shown(ctx.peer);
        let rec = HandlerRecord {
            service: ctx.service.to_string(),
            network: network.into(),
            remote_addr: remote.clone(),
            local_addr: shown(ctx.local),
            client_addr: remote.clone(),
            src_addr: remote,
            dst_addr: shown(ctx.local),
            client_ip: client_ip(ctx.peer),
            sid: recorder::sid(),
            time: recorder::rfc3339_nano(SystemTime::now()),
            ..Default::default()
        };
        Some(Box::new(ConnRecord {
            recorder,
            rec,
            start: Instant::now(),
            stats,
        }))
    }

    pub(crate) fn finish(mut self: Box<Self>, result: &Result<(), gost_handler::HandlerError>) {
        let s = self.stats.snapshot();
        self.rec.input_bytes = s.input_bytes;
        self.rec.output_bytes = s.output_bytes;
        self.rec.set_duration(self.start.elapsed());
        if let Err(e) = result {
            self.rec.err = e.to_string();
        }
        self.recorder.record(self.rec.to_json());
    }
}
