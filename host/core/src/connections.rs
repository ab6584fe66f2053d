//! The registry of live connections, which the web API lists and closes
//! (`GET /connections`, `DELETE /connections/{id}`) and the dashboard
//! shows. GOST has none; it is off until the web API turns it on, so a
//! proxy without the API pays nothing per connection.
//!
//! Its cost per connection, with it on: one insert into and one removal
//! from one of [`SHARDS`] locked maps (picked by the connection's id, so
//! two connections rarely share a lock), and one entry of about
//! [`ENTRY_BYTES`] plus the target's and user's text. Bytes are not
//! counted here: the entry holds the connection's own [`Stats`], the
//! atomics the relay adds to anyway when a service counts (linked into
//! the service's), so reading a connection's bytes takes no lock and the
//! relay takes none more. What a handler learns later (the user it
//! authenticated, the target, the chain's nodes) is set through the
//! task-local [`scope`] the service runs the handler in, once per dial
//! or login, not per read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::stats::Stats;

/// Number of independently locked maps.
pub const SHARDS: usize = 32;

/// The size of one entry with its allocations, not counting the text of
/// its target, user and nodes (checked by a unit test against the types).
pub const ENTRY_BYTES: usize = 384;

/// One live connection.
#[derive(Debug)]
pub struct Conn {
    pub id: u64,
    pub service: Arc<str>,
    pub client: SocketAddr,
    /// Wall time, for the API; `opened` gives the age.
    pub since: SystemTime,
    opened: Instant,
    stats: Arc<Stats>,
    learned: Mutex<Learned>,
    /// Cancelled by [`Registry::close`], and with the service's stop.
    close: CancellationToken,
}

/// What the handler learns about a connection while serving it.
#[derive(Debug, Default)]
struct Learned {
    user: Option<Box<str>>,
    target: Option<Box<str>>,
    chain: Option<Box<str>>,
    nodes: Vec<Box<str>>,
}

/// A connection as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConnInfo {
    pub id: u64,
    pub service: String,
    pub client: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// Bytes read from the client.
    pub input_bytes: u64,
    /// Bytes written to the client.
    pub output_bytes: u64,
    /// Unix time of the accept, in milliseconds.
    pub since: u64,
    /// Seconds since the accept.
    pub age: f64,
}

impl Conn {
    fn learned(&self) -> std::sync::MutexGuard<'_, Learned> {
        self.learned.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_user(&self, user: &str) {
        self.learned().user = Some(crate::escape::esc(user).to_string().into());
    }

    /// The target the client asked for. A client that makes several
    /// requests (HTTP keep-alive) shows its latest.
    pub fn set_target(&self, target: &str) {
        let mut l = self.learned();
        l.target = Some(crate::escape::esc(target).to_string().into());
        l.chain = None;
        l.nodes.clear();
    }

    /// The chain and nodes the latest dial goes through.
    pub fn set_route<'a>(&self, chain: &str, nodes: impl Iterator<Item = &'a str>) {
        let mut l = self.learned();
        l.chain = Some(chain.into());
        l.nodes = nodes.map(Box::from).collect();
    }

    /// Bytes from and to the client so far.
    pub fn bytes(&self) -> (u64, u64) {
        let s = self.stats.snapshot();
        (s.input_bytes, s.output_bytes)
    }

    pub fn info(&self) -> ConnInfo {
        let (input_bytes, output_bytes) = self.bytes();
        let l = self.learned();
        ConnInfo {
            id: self.id,
            service: self.service.to_string(),
            client: crate::context::Client(self.client).to_string(),
            user: l.user.as_deref().map(String::from),
            target: l.target.as_deref().map(String::from),
            chain: l.chain.as_deref().map(String::from),
            nodes: l.nodes.iter().map(|n| n.to_string()).collect(),
            input_bytes,
            output_bytes,
            since: self
                .since
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or_default(),
            age: self.opened.elapsed().as_secs_f64(),
        }
    }

    /// Cancelled once [`Registry::close`] was called for this connection,
    /// or its service stopped.
    pub fn stop(&self) -> &CancellationToken {
        &self.close
    }
}

type Shard = Mutex<HashMap<u64, Arc<Conn>>>;

/// The live connections of every service.
#[derive(Debug)]
pub struct Registry {
    next: AtomicU64,
    shards: Box<[Shard]>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            next: AtomicU64::new(1),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

/// Removes the connection from the registry when it ends.
#[derive(Debug)]
pub struct Registered {
    registry: &'static Registry,
    conn: Arc<Conn>,
}

impl Registered {
    pub fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.shard(self.conn.id).remove(&self.conn.id);
    }
}

impl Registry {
    fn shard(&self, id: u64) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.shards[id as usize % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a connection whose bytes count in `stats`; it stays listed
    /// until the returned guard is dropped. Its [`Conn::stop`] is a child
    /// of the service's `stop`, so the connection waits on one token.
    pub fn register(
        &'static self,
        service: Arc<str>,
        client: SocketAddr,
        stats: Arc<Stats>,
        stop: &CancellationToken,
    ) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            id,
            service,
            client,
            since: SystemTime::now(),
            opened: Instant::now(),
            stats,
            learned: Mutex::default(),
            close: stop.child_token(),
        });
        self.shard(id).insert(id, conn.clone());
        Registered {
            registry: self,
            conn,
        }
    }

    /// Asks the connection `id` to close; false if there is none.
    pub fn close(&self, id: u64) -> bool {
        let conn = self.shard(id).get(&id).cloned();
        match conn {
            Some(c) => {
                c.close.cancel();
                true
            }
            None => false,
        }
    }

    pub fn get(&self, id: u64) -> Option<Arc<Conn>> {
        self.shard(id).get(&id).cloned()
    }

    /// Every live connection (of `service` when given), oldest first.
    /// Each shard is locked only while its entries are copied out.
    pub fn list(&self, service: Option<&str>) -> Vec<Arc<Conn>> {
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            let s = shard.lock().unwrap_or_else(|p| p.into_inner());
            all.extend(
                s.values()
                    .filter(|c| service.is_none_or(|n| *c.service == *n))
                    .cloned(),
            );
        }
        all.sort_unstable_by_key(|c| c.id);
        all
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

static GLOBAL: OnceLock<Registry> = OnceLock::new();

/// Turns the registry on (the web API does, before services start).
pub fn enable() -> &'static Registry {
    GLOBAL.get_or_init(Registry::default)
}

pub fn global() -> Option<&'static Registry> {
    GLOBAL.get()
}

tokio::task_local! {
    static CURRENT: Arc<Conn>;
}

/// Runs `f` (one poll of a connection's handler) with `conn` as the
/// connection it serves, so the router and auther can say what they
/// learn about it. Set per poll, as [`crate::dialer::loops::enter`].
pub fn enter<R>(conn: Option<&Arc<Conn>>, f: impl FnOnce() -> R) -> R {
    match conn {
        Some(c) => CURRENT.sync_scope(c.clone(), f),
        None => f(),
    }
}

/// Runs `f` on the connection the current task serves, if it is listed.
pub fn with_current(f: impl FnOnce(&Conn)) {
    let _ = CURRENT.try_with(|c| f(c));
}

/// Wraps a service's auther so that a login names the user of the
/// connection it was made on.
pub fn auther(inner: Arc<dyn crate::auth::Auther>) -> Arc<dyn crate::auth::Auther> {
    Arc::new(NamingAuther(inner))
}

struct NamingAuther(Arc<dyn crate::auth::Auther>);

impl crate::auth::Auther for NamingAuther {
    fn authenticate<'a>(
        &'a self,
        req: crate::auth::AuthRequest<'a>,
    ) -> crate::auth::AuthFuture<'a> {
        Box::pin(async move {
            let user = req.user;
            let id = self.0.authenticate(req).await?;
            with_current(|c| c.set_user(user));
            Some(id)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> &'static Registry {
        Box::leak(Box::default())
    }

    #[test]
    fn entries_live_as_long_as_their_guard() {
        let r = registry();
        let stats = Arc::new(Stats::default());
        let a = r.register(
            "a".into(),
            "127.0.0.1:1".parse().unwrap(),
            stats.clone(),
            &CancellationToken::new(),
        );
        let b = r.register(
            "b".into(),
            "127.0.0.1:2".parse().unwrap(),
            stats,
            &CancellationToken::new(),
        );
        assert_eq!(r.len(), 2);
        assert_eq!(r.list(Some("b")).len(), 1);
        let ids: Vec<u64> = r.list(None).iter().map(|c| c.id).collect();
        assert_eq!(ids, [a.conn().id, b.conn().id]);
        drop(a);
        assert_eq!(r.len(), 1);
        assert!(r.list(Some("a")).is_empty());
        drop(b);
        assert!(r.is_empty());
    }

    #[test]
    fn bytes_are_the_connection_stats() {
        let r = registry();
        let service = Arc::new(Stats::default());
        let conn = Arc::new(Stats::linked(vec![service.clone()]));
        let g = r.register(
            "s".into(),
            "127.0.0.1:1".parse().unwrap(),
            conn.clone(),
            &CancellationToken::new(),
        );
        conn.add_input(5);
        conn.add_output(7);
        let info = g.conn().info();
        assert_eq!((info.input_bytes, info.output_bytes), (5, 7));
        assert_eq!(service.snapshot().input_bytes, 5);
    }

    #[tokio::test]
    async fn close_wakes_the_connection_even_before_it_waits() {
        let r = registry();
        let g = r.register(
            "s".into(),
            "127.0.0.1:1".parse().unwrap(),
            Arc::new(Stats::default()),
            &CancellationToken::new(),
        );
        assert!(r.close(g.conn().id));
        tokio::time::timeout(
            std::time::Duration::from_secs(1),
            g.conn().stop().cancelled(),
        )
        .await
        .expect("woken");
        assert!(!r.close(u64::MAX));
    }

    #[test]
    fn a_service_stop_stops_its_listed_connections() {
        let r = registry();
        let service = CancellationToken::new();
        let g = r.register(
            "s".into(),
            "127.0.0.1:1".parse().unwrap(),
            Arc::new(Stats::default()),
            &service,
        );
        assert!(!g.conn().stop().is_cancelled());
        service.cancel();
        assert!(g.conn().stop().is_cancelled());
    }

    #[tokio::test]
    async fn the_handler_sets_what_it_learns_through_the_scope() {
        let r = registry();
        let g = r.register(
            "s".into(),
            "127.0.0.1:1".parse().unwrap(),
            Arc::new(Stats::default()),
            &CancellationToken::new(),
        );
        enter(Some(g.conn()), || {
            with_current(|c| c.set_user("alice"));
            with_current(|c| c.set_target("<img src=x>\n:80"));
            with_current(|c| c.set_route("c", ["n1", "n2"].into_iter()));
        });
        let info = g.conn().info();
        assert_eq!(info.user.as_deref(), Some("alice"));
        // Client-controlled text is escaped as for logs.
        assert!(!info.target.as_deref().unwrap().contains('\n'));
        assert_eq!(info.nodes, ["n1", "n2"]);
        // Outside a scope nothing happens.
        with_current(|_| panic!("no current connection"));
    }

    #[test]
    fn an_entry_fits_its_stated_size() {
        let entry = std::mem::size_of::<Conn>() + 2 * std::mem::size_of::<usize>();
        let stats = std::mem::size_of::<Stats>() + 2 * std::mem::size_of::<usize>();
        let slot = std::mem::size_of::<(u64, Arc<Conn>)>() + 1;
        let guard = std::mem::size_of::<Registered>();
        let total = entry + stats + slot + guard;
        assert!(total <= ENTRY_BYTES, "{total}");
        println!("entry {entry} + stats {stats} + map slot {slot} + guard {guard} = {total} bytes");
    }
}
