//! A service = listener + handler (+ forwarder inside the handler), with
//! its status, events, stats and hooks (GOST's `service` package).

mod conn;
pub mod hooks;
pub mod observer;
mod record;
mod session;
pub mod status;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use gost_core::admission::AdmissionGroup;
use gost_core::connections;
use gost_core::limiter::ServiceLimiters;
use gost_handler::{ConnContext, Handler};
use gost_transport::listener::Listener;

pub use hooks::Hooks;
pub use status::{State, Status};

/// How long live connections may take to finish after a stop was asked for.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// GOST's accept back-off: 1s, doubling, at most 5s.
const MAX_ACCEPT_DELAY: Duration = Duration::from_secs(5);

/// What a running service applies to each new connection: admission,
/// connection limiters and the handler. Replacing it (a chain, auther,
/// admission or handler option changed through the API) affects new
/// connections only: live ones keep what they started with.
pub struct Pipeline {
    pub handler: Arc<dyn Handler>,
    pub admission: Option<Arc<AdmissionGroup>>,
    pub limiters: ServiceLimiters,
    /// The service's recorders, if it names any.
    pub recorders: Option<Arc<gost_core::recorder::ServiceRecorders>>,
}

pub struct HandlerSlot(RwLock<Arc<Pipeline>>);

impl HandlerSlot {
    pub fn new(pipeline: Pipeline) -> Self {
        HandlerSlot(RwLock::new(Arc::new(pipeline)))
    }

    pub fn set(&self, pipeline: Pipeline) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(pipeline);
    }

    fn get(&self) -> Arc<Pipeline> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

pub struct Service {
    pub name: Arc<str>,
    pub status: Arc<Status>,
    listener: Box<dyn Listener>,
    handler: Arc<HandlerSlot>,
    hooks: Hooks,
    grace: Duration,
    listener_closed: CancellationToken,
    observer: Option<crate::observer::reporter::Reporter>,
}

impl Service {
    /// The listener is already bound: GOST binds every service before any
    /// starts, so a port in use stops start-up as a whole.
    pub fn new(
        name: &str,
        status: Arc<Status>,
        listener: Box<dyn Listener>,
        pipeline: Pipeline,
        hooks: Hooks,
    ) -> Self {
        Service {
            name: name.into(),
            status,
            listener,
            handler: Arc::new(HandlerSlot::new(pipeline)),
            hooks,
            grace: DEFAULT_GRACE,
            listener_closed: CancellationToken::new(),
            observer: None,
        }
    }

    /// Where to put a replacement handler while the service runs.
    pub fn handler_slot(&self) -> Arc<HandlerSlot> {
        self.handler.clone()
    }

    /// Fires once the service has stopped listening after a stop, so its
    /// address can be bound again (while its connections may still drain).
    pub fn listener_closed(&self) -> CancellationToken {
        self.listener_closed.clone()
    }

    /// Reports status changes and stats to an observer (`observer:`).
    pub fn with_observer(mut self, reporter: crate::observer::reporter::Reporter) -> Self {
        self.observer = Some(reporter);
        self
    }

    /// The sink of the service's observer, to replace while it runs.
    pub fn observer_sink(&self) -> Option<Arc<crate::observer::SinkSlot>> {
        self.observer.as_ref().map(|r| r.sink())
    }

    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Runs the service until `shutdown` fires, then drains: stops
    /// accepting, lets live connections finish for the grace period, and
    /// closes the rest. Hooks run around it; a failing `preUp` keeps the
    /// service from serving at all and leaves it `failed`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let name = self.name.clone();
        let observing = self.start_observer();
        if let Err(e) = hooks::run(&name, "preUp", &self.hooks.pre_up).await {
            tracing::error!(service = %name, error = %e, "preUp failed, service not started");
            self.status.add_event(format!("service {name}: {e}"));
            self.status.set_state(State::Failed);
            self.listener_closed.cancel();
            stop_observer(observing).await;
            return;
        }
        if let Err(e) = hooks::run(&name, "postUp", &self.hooks.post_up).await {
            tracing::warn!(service = %name, error = %e, "postUp failed");
            self.status.add_event(format!("service {name}: {e}"));
        }
        self.status.set_state(State::Ready);
        let addr = self.listener.addr_text();
        self.status
            .add_event(format!("service {name} is listening on {addr}"));
        tracing::info!(service = %name, %addr, "listening");

        let conns = TaskTracker::new();
        let conn_cancel = CancellationToken::new();
        self.accept_loop(&shutdown, &conns, &conn_cancel).await;

        if let Err(e) = hooks::run(&name, "preDown", &self.hooks.pre_down).await {
            tracing::warn!(service = %name, error = %e, "preDown failed");
        }
        let Service {
            listener,
            hooks: h,
            grace,
            status,
            listener_closed,
            ..
        } = self;
        drop(listener);
        listener_closed.cancel();
        conns.close();
        if tokio::time::timeout(grace, conns.wait()).await.is_err() {
            tracing::info!(service = %name, open = conns.len(), "grace period over, closing connections");
            conn_cancel.cancel();
            conns.wait().await;
        }
        status.set_state(State::Closed);
        stop_observer(observing).await;
        if let Err(e) = hooks::run(&name, "postDown", &h.post_down).await {
            tracing::warn!(service = %name, error = %e, "postDown failed");
        }
    }

    /// The observer first hears the state the service is in now
    /// (`running`), then every change.
    fn start_observer(&mut self) -> Option<(tokio::task::JoinHandle<()>, CancellationToken)> {
        let reporter = self.observer.take()?;
        let changes = self.status.watch()?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(reporter.run(
            self.name.clone(),
            self.status.clone(),
            self.status.state(),
            changes,
            stop.clone(),
        ));
        Some((task, stop))
    }

    async fn accept_loop(
        &self,
        shutdown: &CancellationToken,
        conns: &TaskTracker,
        conn_cancel: &CancellationToken,
    ) {
        let mut delay = Duration::ZERO;
        let upgrade = self.listener.upgrade();
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.listener.accept() => r,
            };
            let accepted = match accepted {
                Ok(a) => a,
                Err(e) => {
                    delay = (delay * 2).clamp(Duration::from_secs(1), MAX_ACCEPT_DELAY);
                    tracing::warn!(service = %self.name, error = %e, retry_in = ?delay, "accept failed");
                    // A reverse listener's BIND failing or ending is news
                    // for the status too, not only the log.
                    self.status.add_event(format!("service {}: {e}", self.name));
                    self.status.set_state(State::Failed);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    if self.status.state() == State::Failed {
                        self.status.set_state(State::Ready);
                    }
                    continue;
                }
            };
            delay = Duration::ZERO;
            let hops = gost_core::dialer::loops::hops(accepted.peer, accepted.local);
            if hops > gost_core::dialer::loops::MAX_HOPS {
                if let Some(n) = gost_core::repeat::check((&*self.name, "loop")) {
                    tracing::warn!(service = %self.name, client = %gost_core::context::Client(accepted.peer), hops, repeated = n, "loop: connection dialed by this gost through too many of its own services, refused");
                }
                continue;
            }
            let active = self.handler.get();
            record::accepted(active.recorders.as_deref(), accepted.peer);
            if let Some(adm) = &active.admission {
                if !adm.check(&self.name, accepted.peer).await {
                    tracing::debug!(service = %self.name, client = %gost_core::context::Client(accepted.peer), "refused by admission");
                    continue;
                }
            }
            if let Some(r) = &active.limiters.rate {
                if !r.allow(accepted.peer.ip()) {
                    continue;
                }
            }
            let permit = match &active.limiters.conn {
                Some(c) => match c.acquire(accepted.peer.ip()) {
                    Some(p) => Some(p),
                    None => continue,
                },
                None => None,
            };
            if let Some(up) = upgrade.as_ref().filter(|u| u.multiplex().is_some()) {
                let sessions = session::Sessions {
                    name: self.name.clone(),
                    status: self.status.clone(),
                    slot: self.handler.clone(),
                    conns: conns.clone(),
                    cancel: conn_cancel.clone(),
                };
                conns.spawn(sessions.serve(up.clone(), accepted, permit));
                continue;
            }
            let (mut ctx, duration) = conn_context(
                &self.name,
                &self.status,
                &active,
                accepted.peer,
                accepted.local,
            );
            let record = record::ConnRecord::start(
                active.recorders.as_deref(),
                &mut ctx,
                accepted.conn.network(),
            );
            let start = conn::ConnStart {
                handler: active.handler.clone(),
                conn: accepted.conn,
                ctx,
                upgrade: upgrade.clone(),
                permit,
                record: record.map(Box::new),
                duration,
                hops,
            };
            conns.spawn(conn::serve(Box::new(start), conn_cancel.clone()));
        }
    }
}

/// A connection's context: the service's counters (linked with the
/// client's in the metrics, when those are on, and counters of the
/// connection's own when the registry of live connections is on) and its
/// traffic limiter buckets; and the metrics' request duration, when on.
fn conn_context(
    name: &Arc<str>,
    status: &Status,
    active: &Pipeline,
    peer: std::net::SocketAddr,
    local: std::net::SocketAddr,
) -> (ConnContext, Option<Arc<gost_core::metrics::Histogram>>) {
    let mut stats = status.stats().cloned();
    let mut duration = None;
    if let Some(m) = gost_core::metrics::global() {
        let client = m.client(name, peer.ip());
        let links = stats.into_iter().chain([client]).collect();
        stats = Some(Arc::new(gost_core::stats::Stats::linked(links)));
        duration = Some(m.request_duration(name));
    } else if connections::global().is_some() {
        stats = Some(Arc::new(gost_core::stats::Stats::linked(
            stats.into_iter().collect(),
        )));
    }
    let ctx = ConnContext {
        service: name.clone(),
        peer,
        local,
        stats,
        traffic: active
            .limiters
            .traffic
            .as_ref()
            .map(|t| Arc::new(t.for_conn(peer.ip()))),
    };
    (ctx, duration)
}

/// Lets the observer send what is queued, for at most the grace period.
async fn stop_observer(observing: Option<(tokio::task::JoinHandle<()>, CancellationToken)>) {
    if let Some((task, stop)) = observing {
        stop.cancel();
        let _ = tokio::time::timeout(DEFAULT_GRACE, task).await;
    }
}
