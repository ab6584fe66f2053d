//! The clients registered with one tunnel service (GOST's
//! `ConnectorPool`): tunnels by id, each with its connectors (one smux
//! session per registered client), picked at random by weight.
//!
//! A connector leaves the pool as soon as its session ends, rather than
//! at GOST's next 15-second sweep, so a killed client takes no new
//! visitor once its session is seen closed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use gost_core::stats::Stats;
use gost_proto::tunnel::{ConnectorId, TunnelId};
use gost_transport::mux::Session;

/// GOST's `MaxWeight`: a connector of this weight takes all new visitors
/// of its tunnel while it is there.
const MAX_WEIGHT: u8 = 0xff;

/// Most connectors one tunnel id may have at once.
pub const MAX_PER_TUNNEL: usize = 64;
/// Most connectors one tunnel service may hold at once.
pub const MAX_CONNECTORS: usize = 4096;

pub struct Connector {
    pub id: ConnectorId,
    pub tunnel: TunnelId,
    pub session: Session,
    /// The registered client's address.
    pub peer: SocketAddr,
    pub since: SystemTime,
}

impl Connector {
    fn weight(&self) -> u32 {
        match self.id.weight() {
            0 => 1,
            w => u32::from(w),
        }
    }
}

/// One tunnel id's connectors and its counters (visitor connections and
/// bytes).
#[derive(Default)]
pub struct Tunnel {
    connectors: Vec<Arc<Connector>>,
    /// Registrations answered but not added yet: counted against the
    /// bounds, so clients registering at once cannot pass them together.
    pending: usize,
    pub stats: Arc<Stats>,
}

#[derive(Default)]
pub struct Pool {
    tunnels: Mutex<HashMap<[u8; 16], Tunnel>>,
}

/// Why a client cannot register.
#[derive(Debug, PartialEq, Eq)]
pub enum Full {
    Tunnel,
    Service,
}

/// What the API and the logs show of a connected client.
#[derive(Debug, Clone)]
pub struct ConnectorInfo {
    pub tunnel: String,
    pub connector: String,
    pub network: &'static str,
    pub weight: u8,
    pub client: String,
    /// Unix seconds.
    pub since: u64,
    pub streams: usize,
}

impl ConnectorInfo {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "tunnel": self.tunnel,
            "connector": self.connector,
            "network": self.network,
            "weight": self.weight,
            "client": self.client,
            "since": self.since,
            "streams": self.streams,
        })
    }
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 16], Tunnel>> {
        // Every change under the lock is one push or one removal.
        self.tunnels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds a place for one more client of `tunnel`, to be taken by
    /// [`Pool::add`] or given back by [`Pool::unreserve`].
    pub fn reserve(&self, tunnel: &TunnelId) -> Result<(), Full> {
        let mut map = self.lock();
        for t in map.values_mut() {
            t.connectors.retain(|c| !c.session.is_closed());
        }
        let total: usize = map.values().map(|t| t.connectors.len() + t.pending).sum();
        if total >= MAX_CONNECTORS {
            return Err(Full::Service);
        }
        let t = map.entry(tunnel.key()).or_default();
        if t.connectors.len() + t.pending >= MAX_PER_TUNNEL {
            return Err(Full::Tunnel);
        }
        t.pending += 1;
        Ok(())
    }

    pub fn unreserve(&self, tunnel: &TunnelId) {
        if let Some(t) = self.lock().get_mut(&tunnel.key()) {
            t.pending = t.pending.saturating_sub(1);
        }
    }

    /// Adds a client whose place [`Pool::reserve`] held.
    pub fn add(&self, c: Arc<Connector>) {
        let mut map = self.lock();
        let t = map.entry(c.tunnel.key()).or_default();
        t.pending = t.pending.saturating_sub(1);
        t.connectors.push(c);
    }

    /// Removes `id`; a tunnel left without connectors keeps its counters
    /// until the service goes, so its totals stay visible.
    pub fn remove(&self, tunnel: &TunnelId, id: &ConnectorId) {
        if let Some(t) = self.lock().get_mut(&tunnel.key()) {
            t.connectors.retain(|c| c.id.0[..16] != id.0[..16]);
        }
    }

    /// A connector of `tunnel` for `udp` or TCP visitors, at random by
    /// weight; a weight-255 connector, if any, takes all (GOST's
    /// `GetConnector`). `pick` is a number in `0..u32::MAX`.
    pub fn get(
        &self,
        tunnel: &TunnelId,
        udp: bool,
        pick: u32,
    ) -> Option<(Arc<Connector>, Arc<Stats>)> {
        let map = self.lock();
        let t = map.get(&tunnel.key())?;
        let live = t
            .connectors
            .iter()
            .filter(|c| !c.session.is_closed() && c.id.is_udp() == udp);
        let max: Vec<&Arc<Connector>> = live
            .clone()
            .filter(|c| c.id.weight() == MAX_WEIGHT)
            .collect();
        let candidates: Vec<&Arc<Connector>> = if max.is_empty() { live.collect() } else { max };
        let total: u64 = candidates.iter().map(|c| u64::from(c.weight())).sum();
        if total == 0 {
            return None;
        }
        let mut at = u64::from(pick) % total;
        for c in candidates {
            let w = u64::from(c.weight());
            if at < w {
                return Some((c.clone(), t.stats.clone()));
            }
            at -= w;
        }
        None
    }

    /// The counters of `tunnel`, made on first use.
    pub fn stats(&self, tunnel: &TunnelId) -> Arc<Stats> {
        self.lock().entry(tunnel.key()).or_default().stats.clone()
    }

    pub fn connectors(&self) -> Vec<ConnectorInfo> {
        let map = self.lock();
        let mut out: Vec<ConnectorInfo> = map
            .values()
            .flat_map(|t| t.connectors.iter())
            .filter(|c| !c.session.is_closed())
            .map(|c| ConnectorInfo {
                tunnel: c.tunnel.to_string(),
                connector: c.id.to_string(),
                network: if c.id.is_udp() { "udp" } else { "tcp" },
                weight: c.id.weight(),
                client: c.peer.to_string(),
                since: c
                    .since
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
                streams: c.session.num_streams(),
            })
            .collect();
        out.sort_by(|a, b| (&a.tunnel, a.since).cmp(&(&b.tunnel, b.since)));
        out
    }

    /// Connected clients per tunnel id, for metrics.
    pub fn counts(&self) -> Vec<(String, usize, Arc<Stats>)> {
        self.lock()
            .iter()
            .map(|(k, t)| {
                let mut id = [0u8; 20];
                id[..16].copy_from_slice(k);
                let live = t
                    .connectors
                    .iter()
                    .filter(|c| !c.session.is_closed())
                    .count();
                (TunnelId(id).to_string(), live, t.stats.clone())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn connector(
        tunnel: TunnelId,
        n: u8,
        udp: bool,
        weight: u8,
    ) -> (Arc<Connector>, tokio::io::DuplexStream) {
        let (a, b) = tokio::io::duplex(1024);
        let session = Session::client(
            gost_core::stream::Stream::boxed(a, Default::default()),
            &Default::default(),
        );
        let c = Arc::new(Connector {
            id: ConnectorId::new([n; 16], udp, weight),
            tunnel,
            session,
            peer: "127.0.0.1:1".parse().unwrap(),
            since: SystemTime::now(),
        });
        (c, b)
    }

    #[tokio::test]
    async fn picks_by_weight_and_network_and_max_weight_takes_all() {
        let t = TunnelId::parse("3f8e5b56-6a8b-4a4f-9a35-2a2bbc3f0f01").unwrap();
        let pool = Pool::default();
        let (a, _ka) = connector(t, 1, false, 1).await;
        let (b, _kb) = connector(t, 2, false, 3).await;
        let (u, _ku) = connector(t, 3, true, 0).await;
        for c in [&a, &b, &u] {
            pool.reserve(&t).unwrap();
            pool.add(c.clone());
        }
        let picked: Vec<u8> = (0..4)
            .map(|i| pool.get(&t, false, i).unwrap().0.id.0[0])
            .collect();
        assert_eq!(picked, [1, 2, 2, 2]);
        assert_eq!(pool.get(&t, true, 7).unwrap().0.id.0[0], 3);
        let (m, _km) = connector(t, 4, false, 255).await;
        pool.reserve(&t).unwrap();
        pool.add(m);
        for i in 0..10 {
            assert_eq!(pool.get(&t, false, i).unwrap().0.id.0[0], 4);
        }
        pool.remove(&t, &ConnectorId::new([4; 16], false, 0));
        assert_eq!(pool.get(&t, false, 0).unwrap().0.id.0[0], 1);
        assert_eq!(pool.connectors().len(), 3);
        let other = TunnelId::parse("00000000-0000-0000-0000-000000000001").unwrap();
        assert!(pool.get(&other, false, 0).is_none());
    }

    #[tokio::test]
    async fn closed_sessions_take_no_visitors_and_a_tunnel_is_bounded() {
        let t = TunnelId::parse("3f8e5b56-6a8b-4a4f-9a35-2a2bbc3f0f01").unwrap();
        let pool = Pool::default();
        let (a, ka) = connector(t, 1, false, 1).await;
        pool.reserve(&t).unwrap();
        pool.add(a.clone());
        drop(ka);
        a.session.closed().await;
        assert!(pool.get(&t, false, 0).is_none());
        let mut keep = Vec::new();
        for n in 0..MAX_PER_TUNNEL - 1 {
            let (c, k) = connector(t, n as u8, false, 1).await;
            keep.push(k);
            pool.reserve(&t).unwrap();
            pool.add(c);
        }
        // A place held but not taken yet counts.
        pool.reserve(&t).unwrap();
        assert_eq!(pool.reserve(&t), Err(Full::Tunnel));
        pool.unreserve(&t);
        pool.reserve(&t).unwrap();
    }
}
