//! Handler-level observers (GOST's `handler.observer`): a handler counts
//! each connection for the client it authenticated as (the auther's client
//! id; the empty id without an auther) and reports every client whose
//! counters changed as a `handler` stats event each `observer.period`.
//!
//! No handler has to know: [`observed`] wraps the handler so that each
//! connection carries its own counters in a task-local, and [`auther`]
//! wraps the service's auther so that a successful login attaches the
//! client's counters to them. Every handler that authenticates through the
//! auther (http, socks4/5, relay, auto, wasm) is covered by that.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::reporter::{stats_event, Reporter};
use super::Event;
use gost_core::auth::Auther;
use gost_core::stats::Stats;
use gost_handler::{ConnContext, HandleFuture, Handler};
use gost_transport::listener::Conn;

tokio::task_local! {
    /// The counters of the connection being handled, and where its client's
    /// counters live.
    static CONN: (Arc<Stats>, Arc<ClientTable>);
}

/// Per-client counters of one handler (GOST's `HandlerStats`).
pub struct ClientTable {
    service: String,
    clients: Mutex<HashMap<String, Arc<Stats>>>,
}

impl ClientTable {
    fn client(&self, id: &str) -> Arc<Stats> {
        let mut all = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(id.to_string()).or_default().clone()
    }

    /// A `handler` stats event for each client whose counters changed.
    pub fn events(&self, reset_traffic: bool) -> Vec<Event> {
        let all: Vec<(String, Arc<Stats>)> = self
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        client_events(&self.service, &all, reset_traffic)
    }
}

/// A handler whose connections count per client.
struct Observed {
    inner: Arc<dyn Handler>,
    table: Arc<ClientTable>,
    /// Without an auther every connection is the anonymous client's.
    anonymous: bool,
    /// Started with the first connection, which runs on the runtime.
    reporter: Mutex<Option<Reporter>>,
    started: OnceLock<()>,
}

/// Wraps `handler` so its connections count per client and `reporter`
/// reports them. `anonymous`: the service has no auther.
pub fn observed(
    handler: Arc<dyn Handler>,
    service: &str,
    reporter: Reporter,
    anonymous: bool,
) -> Arc<dyn Handler> {
    Arc::new(Observed {
        inner: handler,
        table: Arc::new(ClientTable {
            service: service.into(),
            clients: Mutex::default(),
        }),
        anonymous,
        reporter: Mutex::new(Some(reporter)),
        started: OnceLock::new(),
    })
}

/// Wraps the service's auther so that a login names the connection's
/// client.
pub fn auther(inner: Arc<dyn Auther>) -> Arc<dyn Auther> {
    Arc::new(ClientAuther(inner))
}

struct ClientAuther(Arc<dyn Auther>);

impl Auther for ClientAuther {
    fn authenticate<'a>(
        &'a self,
        req: gost_core::auth::AuthRequest<'a>,
    ) -> gost_core::auth::AuthFuture<'a> {
        Box::pin(async move {
            let id = self.0.authenticate(req).await?;
            let _ = CONN.try_with(|(conn, table)| conn.attach_client(table.client(&id)));
            Some(id)
        })
    }
}

impl Observed {
    fn start_reporter(&self) {
        self.started.get_or_init(|| {
            let taken = self
                .reporter
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(r) = taken {
                let service: Arc<str> = self.table.service.as_str().into();
                let table = Arc::downgrade(&self.table);
                tokio::spawn(r.run_clients(service, move |reset| {
                    table.upgrade().map(|t| t.events(reset))
                }));
            }
        });
    }

    async fn serve(
        &self,
        conn: Conn,
        mut ctx: ConnContext,
    ) -> Result<(), gost_handler::HandlerError> {
        self.start_reporter();
        let stats = Arc::new(Stats::linked(ctx.stats.take().into_iter().collect()));
        if self.anonymous {
            stats.attach_client(self.table.client(""));
        }
        ctx.stats = Some(stats.clone());
        let result = CONN
            .scope(
                (stats.clone(), self.table.clone()),
                self.inner.handle(conn, ctx),
            )
            .await;
        stats.end_client(result.as_ref().is_err_and(|e| e.is_server_error()));
        result
    }
}

impl Handler for Observed {
    fn handle(&self, conn: Conn, ctx: ConnContext) -> HandleFuture<'_> {
        Box::pin(self.serve(conn, ctx))
    }
}

/// Where a handler that keeps per-client counters of its own (the tunnel
/// handler, per tunnel id) gets them for [`reported`]: each client's id
/// and counters, `None` once the handler is gone.
pub type ClientSource = Box<dyn Fn() -> Option<Vec<(String, Arc<Stats>)>> + Send + Sync>;

/// A handler whose own per-client counters are reported (GOST's tunnel
/// handler reports each tunnel id as a client).
struct Reported {
    inner: Arc<dyn Handler>,
    service: String,
    source: Arc<ClientSource>,
    reporter: Mutex<Option<Reporter>>,
    started: OnceLock<()>,
}

/// Wraps `handler` so that `reporter` reports the clients `source`
/// gives, from the first connection on (which runs on the runtime).
pub fn reported(
    handler: Arc<dyn Handler>,
    service: &str,
    reporter: Reporter,
    source: ClientSource,
) -> Arc<dyn Handler> {
    Arc::new(Reported {
        inner: handler,
        service: service.into(),
        source: Arc::new(source),
        reporter: Mutex::new(Some(reporter)),
        started: OnceLock::new(),
    })
}

/// `handler` stats events of the clients whose counters changed.
fn client_events(service: &str, clients: &[(String, Arc<Stats>)], reset: bool) -> Vec<Event> {
    let mut events: Vec<Event> = clients
        .iter()
        .filter_map(|(client, stats)| {
            let s = stats_event(stats, reset)?;
            let mut ev = Event::stats(service, s);
            ev.kind = "handler".into();
            ev.client = client.clone();
            Some(ev)
        })
        .collect();
    events.sort_by(|a, b| a.client.cmp(&b.client));
    events
}

impl Handler for Reported {
    fn handle(&self, conn: Conn, ctx: ConnContext) -> HandleFuture<'_> {
        self.started.get_or_init(|| {
            let taken = self
                .reporter
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(r) = taken {
                let service: Arc<str> = self.service.as_str().into();
                let source = Arc::downgrade(&self.source);
                let name = self.service.clone();
                tokio::spawn(r.run_clients(service, move |reset| {
                    let clients = (source.upgrade()?)()?;
                    Some(client_events(&name, &clients, reset))
                }));
            }
        });
        self.inner.handle(conn, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gost_core::auth::{AuthRequest, StaticAuther};

    #[tokio::test]
    async fn a_login_counts_for_its_client() {
        let table = Arc::new(ClientTable {
            service: "svc".into(),
            clients: Mutex::default(),
        });
        let a = auther(Arc::new(StaticAuther::new([("alice".into(), "pw".into())])));
        let conn = Arc::new(Stats::default());
        CONN.scope((conn.clone(), table.clone()), async {
            assert!(a
                .authenticate(AuthRequest::new("alice", "bad"))
                .await
                .is_none());
            assert_eq!(
                a.authenticate(AuthRequest::new("alice", "pw"))
                    .await
                    .as_deref(),
                Some("alice")
            );
        })
        .await;
        conn.add_input(4);
        let ev = table.events(false);
        assert_eq!(ev.len(), 1);
        assert_eq!(
            (ev[0].kind.as_str(), ev[0].client.as_str()),
            ("handler", "alice")
        );
        let s = ev[0].stats.unwrap();
        assert_eq!((s.total_conns, s.current_conns, s.input_bytes), (1, 1, 4));
        // Unchanged since: nothing to report.
        assert!(table.events(false).is_empty());
        // Outside a connection the auther still answers.
        assert!(a
            .authenticate(AuthRequest::new("alice", "pw"))
            .await
            .is_some());
    }
}
