//! GOST's recorders (`recorders:` section, a service's `recorders:`): what
//! a service records (its clients' addresses, the addresses its router
//! dials, one JSON record per handled connection) goes to a file, a TCP
//! or HTTP server, or a Redis set, list or sorted set.
//!
//! A record never waits on its sink: it goes into the recorder's bounded
//! queue, and one task per recorder writes the queue out. A full queue (a
//! slow or unreachable sink) drops the record; drops are counted and
//! logged at most once per [`crate::repeat::WINDOW`], and a sink that
//! fails says so once per failure streak.

mod notes;
mod record;
mod sink;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::mpsc;

use crate::config::{Config, RecorderConfig, ServiceConfig};
pub use notes::{auther, current, emit, enter, note, noting, Notes};
pub use record::{
    add_header, canonical, forwarded_client_ip, rfc3339_nano, sid, DnsRecord, HandlerRecord,
    Header, HttpMessage, HttpRecord, TlsRecord, WebsocketRecord,
};
use sink::Sink;

/// Records GOST defines for services, by the name a service's
/// `recorders[].record` gives.
pub const CLIENT_ADDRESS: &str = "recorder.service.client.address";
pub const ROUTER_DIAL_ADDRESS: &str = "recorder.service.router.dial.address";
pub const ROUTER_DIAL_ADDRESS_ERROR: &str = "recorder.service.router.dial.address.error";
pub const HANDLER: &str = "recorder.service.handler";

/// The records written here; GOST's others (`.handler.serial`,
/// `.handler.tunnel`) belong to handlers this build does not have.
pub const RECORDS: &[&str] = &[
    CLIENT_ADDRESS,
    ROUTER_DIAL_ADDRESS,
    ROUTER_DIAL_ADDRESS_ERROR,
    HANDLER,
];

/// Records queued per recorder before new ones are dropped.
pub const QUEUE: usize = 4096;

/// GOST's bounds on the HTTP body prefix a handler record keeps (with
/// the service recorder's metadata `http.body`): `http.maxBodySize`
/// defaults to the first and is capped at the second.
pub const DEFAULT_BODY_SIZE: usize = 64 * 1024;
pub const MAX_BODY_SIZE: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error("recorder \"{name}\": {msg}")]
    Invalid { name: String, msg: String },
    #[error("recorder \"{0}\" not found")]
    NotFound(String),
    #[error("recorders: record '{record}' is not one this build writes ({})", RECORDS.join(", "))]
    Record { record: String },
    #[error("recorders: {0}")]
    Metadata(#[from] crate::metadata::MetadataError),
}

/// One named recorder: its queue, and the task writing it out, started
/// with the first record (the config is built off the runtime).
pub struct Recorder {
    name: String,
    tx: mpsc::Sender<Vec<u8>>,
    worker: Mutex<Option<(mpsc::Receiver<Vec<u8>>, Sink)>>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("name", &self.name)
            .finish()
    }
}

impl Recorder {
    fn new(cfg: &RecorderConfig) -> Result<Self, RecorderError> {
        let sink = Sink::from_config(cfg).map_err(|msg| RecorderError::Invalid {
            name: cfg.name.clone(),
            msg,
        })?;
        let (tx, rx) = mpsc::channel(QUEUE);
        Ok(Recorder {
            name: cfg.name.clone(),
            tx,
            worker: Mutex::new(Some((rx, sink))),
            dropped: Arc::default(),
        })
    }

    /// Queues one record; never waits.
    pub fn record(&self, data: Vec<u8>) {
        self.start();
        if self.tx.try_send(data).is_err() {
            let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if let Some(n) = crate::repeat::check(("recorder queue full", &self.name)) {
                tracing::warn!(recorder = %self.name, dropped = total, repeated = n, "recorder: queue full (the sink is slow or down), records dropped");
            }
        }
    }

    /// Records dropped so far: queue full or the sink failing.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn start(&self) {
        let mut slot = self.worker.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if let Some((rx, sink)) = slot.take() {
            rt.spawn(sink.run(self.name.clone(), rx, self.dropped.clone()));
        }
    }
}

/// Recorders in use, by name and config: services naming the same
/// recorder share its queue and its one connection or file, and a
/// changed config gives a new one while the old one drains.
static LIVE: Mutex<Option<HashMap<String, Live>>> = Mutex::new(None);

/// A recorder's config and the recorder while some service holds it.
type Live = (RecorderConfig, Weak<Recorder>);

/// The recorder named `name` in `root`.
pub fn find(root: &Config, name: &str) -> Result<Arc<Recorder>, RecorderError> {
    let cfg = root
        .recorders
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| RecorderError::NotFound(name.to_string()))?;
    let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
    let live = live.get_or_insert_with(HashMap::new);
    if let Some(r) = live
        .get(name)
        .filter(|(c, _)| c == cfg)
        .and_then(|(_, w)| w.upgrade())
    {
        return Ok(r);
    }
    let r = Arc::new(Recorder::new(cfg)?);
    live.retain(|_, (_, w)| w.strong_count() > 0);
    live.insert(name.to_string(), (cfg.clone(), Arc::downgrade(&r)));
    Ok(r)
}

/// Whether `cfg` could be built, without starting anything.
pub fn check(cfg: &RecorderConfig) -> Result<(), RecorderError> {
    Sink::check(cfg).map_err(|msg| RecorderError::Invalid {
        name: cfg.name.clone(),
        msg,
    })
}

/// A service's recorders by record.
#[derive(Debug, Default)]
pub struct ServiceRecorders {
    /// Each record's recorder, with the HTTP body prefix its records keep.
    by_record: Vec<(String, Arc<Recorder>, usize)>,
}

impl ServiceRecorders {
    /// The recorder for `record`: the first the service lists, as in GOST.
    pub fn get(&self, record: &str) -> Option<&Arc<Recorder>> {
        self.by_record
            .iter()
            .find(|(r, _, _)| r == record)
            .map(|(_, rec, _)| rec)
    }

    /// The HTTP body prefix `record`'s records keep (0: none).
    pub fn body_limit(&self, record: &str) -> usize {
        self.by_record
            .iter()
            .find(|(r, _, _)| r == record)
            .map_or(0, |(_, _, b)| *b)
    }

    /// Records `data` if the service records `record`; GOST writes no
    /// empty record.
    pub fn record(&self, record: &str, data: impl FnOnce() -> Vec<u8>) {
        if let Some(r) = self.get(record) {
            let data = data();
            if !data.is_empty() {
                r.record(data);
            }
        }
    }
}

/// The recorders `svc` names, or `None` when it names none.
pub fn for_service(
    root: &Config,
    svc: &ServiceConfig,
) -> Result<Option<Arc<ServiceRecorders>>, RecorderError> {
    if svc.recorders.is_empty() {
        return Ok(None);
    }
    let mut by_record = Vec::new();
    for o in &svc.recorders {
        if !RECORDS.contains(&o.record.as_str()) {
            return Err(RecorderError::Record {
                record: crate::escape::esc(&o.record).to_string(),
            });
        }
        let body = if o.metadata.get_bool("http.body")?.unwrap_or(false) {
            match o.metadata.get_int("http.maxBodySize")?.unwrap_or(0) {
                n if n <= 0 => DEFAULT_BODY_SIZE,
                n => (n as usize).min(MAX_BODY_SIZE),
            }
        } else {
            0
        };
        by_record.push((o.record.clone(), find(root, &o.name)?, body));
    }
    Ok(Some(Arc::new(ServiceRecorders { by_record })))
}

/// The host part of `addr` (`host:port`, `[v6]:port`), as GOST records a
/// dialed address.
pub fn host_of(addr: &str) -> &str {
    match addr.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => h
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(h),
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sink::Sink;

    #[test]
    fn dialed_addresses_are_recorded_without_the_port() {
        assert_eq!(host_of("example.com:443"), "example.com");
        assert_eq!(host_of("[::1]:80"), "::1");
        assert_eq!(host_of("10.0.0.1:8080"), "10.0.0.1");
        assert_eq!(host_of("/run/x.sock"), "/run/x.sock");
    }

    #[test]
    fn unknown_records_and_recorders_are_refused() {
        let root: Config = serde_json::from_value(serde_json::json!({
            "recorders": [{"name": "r", "tcp": {"addr": "127.0.0.1:9"}}],
            "services": [{"name": "s", "addr": ":0",
                "recorders": [{"name": "r", "record": "recorder.service.nope"}]}]
        }))
        .unwrap();
        let e = for_service(&root, &root.services[0]).unwrap_err();
        assert!(e.to_string().contains("recorder.service.nope"), "{e}");
        let mut svc = root.services[0].clone();
        svc.recorders[0].record = HANDLER.into();
        svc.recorders[0].name = "other".into();
        let e = for_service(&root, &svc).unwrap_err();
        assert_eq!(e.to_string(), "recorder \"other\" not found");
        svc.recorders[0].name = "r".into();
        let a = for_service(&root, &svc).unwrap().unwrap();
        let b = for_service(&root, &svc).unwrap().unwrap();
        assert!(Arc::ptr_eq(
            a.get(HANDLER).unwrap(),
            b.get(HANDLER).unwrap()
        ));
    }

    #[tokio::test]
    async fn a_file_with_rotation_rotates_as_lumberjack_does() {
        let dir = std::env::temp_dir().join(format!("gost-rec-rotate-{}", sid()));
        let path = dir.join("sub/records.log");
        let cfg: RecorderConfig = serde_json::from_value(serde_json::json!({
            "name": "rot",
            "file": {"path": path.to_str().unwrap(), "sep": "\n",
                     "rotation": {"maxSize": 1, "maxBackups": 2}}
        }))
        .unwrap();
        let mut sink = Sink::from_config(&cfg).unwrap();
        // 300 KiB records: the fourth takes the file past 1 MB.
        for i in 0..10u8 {
            let rec = vec![b'a' + i; 300 * 1024];
            sink.write(&rec).await.unwrap();
        }
        let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        let backups: Vec<&String> = names.iter().filter(|n| *n != "records.log").collect();
        assert_eq!(backups.len(), 2, "{names:?}");
        assert!(
            backups
                .iter()
                .all(|n| n.starts_with("records-") && n.ends_with(".log")),
            "{names:?}"
        );
        let live = std::fs::read(&path).unwrap();
        assert!(live.len() <= 1024 * 1024 && !live.is_empty());
        // The live file holds the latest records, each with its separator.
        assert!(live.ends_with(b"j\n"), "{}", live.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_sink_that_is_down_drops_records_without_waiting() {
        // A port nothing listens on: every write fails at once.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let cfg: RecorderConfig = serde_json::from_value(serde_json::json!(
            {"name": "down", "tcp": {"addr": addr.to_string(), "timeout": "1s"}}
        ))
        .unwrap();
        let r = Recorder::new(&cfg).unwrap();
        let start = std::time::Instant::now();
        for _ in 0..QUEUE * 2 {
            r.record(b"x".to_vec());
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        tokio::time::timeout(std::time::Duration::from_secs(20), async {
            while r.dropped() < (QUEUE * 2) as u64 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("every record counted as dropped");
    }
}
