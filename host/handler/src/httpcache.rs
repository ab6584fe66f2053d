//! GOST's HTTP response cache (go-gost/x `internal/util/httpcache` over
//! `cache/memory.go`): responses of sniffed HTTP requests, kept by
//! method, host and request target, served without asking the upstream
//! while fresh, and, with `cache.serveStale`, served when expired if the
//! upstream cannot answer. A named store (`caches:`) is shared by every
//! service that names it; each service brings its own policy (handler
//! metadata `cache.*`).
//!
//! Memory is bounded: a response larger than `cache.maxBodyBytes` is not
//! kept, and a store holds at most `maxSize` entries and `maxBytes` bytes
//! ([`DEFAULT_MAX_BYTES`] when unset; GOST leaves it unbounded), the
//! oldest (or least recently used) going first. Expired entries stay for
//! serve-stale until evicted or swept (`cleanupInterval`).
//!
//! The `redis` store (GOST's `cache/redis.go`) keeps each response as
//! one Redis string under `<key prefix><method> <host> <target>`: the
//! response as HTTP/1.1 bytes (status line, fields, body), as GOST stores
//! the response it wrote, with Redis's own expiry (`PX`). As in GOST an
//! expired entry is gone, so `cache.serveStale` has nothing to serve from
//! it. A Redis that cannot be reached makes every lookup a miss and every
//! store a loss, said once per failure streak in the log.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt};
use hyper::body::{Body, Frame, SizeHint};
use hyper::{HeaderMap, Method, Response, StatusCode};

use gost_core::config::MemoryCache as MemoryCacheConfig;
use gost_core::metadata::{Metadata, MetadataError};

/// A store's byte bound when its config sets none.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;
/// GOST's `cache.maxBodyBytes` default: the largest response kept.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// What an entry costs besides its body and fields (key, bookkeeping).
const ENTRY_OVERHEAD: u64 = 256;

#[derive(Debug, Clone)]
struct Entry {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    expires: Option<Instant>,
    /// Its key in the eviction order.
    seq: u64,
    size: u64,
}

#[derive(Debug)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Eviction order: insertion (`oldest`) or last use (`lru`).
    order: BTreeMap<u64, String>,
    next_seq: u64,
    bytes: u64,
    last_sweep: Instant,
}

/// A named in-memory store (`caches: [{name, memory: {...}}]`).
#[derive(Debug)]
pub struct MemoryStore {
    ttl: Option<Duration>,
    max_size: usize,
    max_bytes: u64,
    lru: bool,
    cleanup: Option<Duration>,
    inner: Mutex<Inner>,
}

/// A `caches` entry that cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("memory.eviction: {0:?} is neither oldest nor lru")]
pub struct EvictionError(String);

impl MemoryStore {
    pub fn from_config(cfg: &MemoryCacheConfig) -> Result<MemoryStore, EvictionError> {
        let lru = match cfg.eviction.to_ascii_lowercase().as_str() {
            "" | "oldest" => false,
            "lru" => true,
            other => return Err(EvictionError(gost_core::escape::esc(other).to_string())),
        };
        let positive = |d: gost_core::config::Duration| (!d.is_zero()).then_some(d.0);
        Ok(MemoryStore {
            ttl: positive(cfg.ttl),
            max_size: cfg.max_size.max(0) as usize,
            max_bytes: match cfg.max_bytes {
                n if n > 0 => n as u64,
                _ => DEFAULT_MAX_BYTES,
            },
            lru,
            cleanup: positive(cfg.cleanup_interval),
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                order: BTreeMap::new(),
                next_seq: 0,
                bytes: 0,
                last_sweep: Instant::now(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry and whether it has expired.
    fn get(&self, key: &str) -> Option<(Entry, bool)> {
        let mut inner = self.lock();
        let seq = inner.next_seq;
        let e = inner.entries.get_mut(key)?;
        let old = e.seq;
        if self.lru {
            e.seq = seq;
        }
        let found = e.clone();
        if self.lru {
            inner.next_seq += 1;
            inner.order.remove(&old);
            inner.order.insert(seq, key.to_string());
        }
        let expired = found.expires.is_some_and(|t| Instant::now() >= t);
        Some((found, expired))
    }

    fn set(&self, key: String, mut e: Entry, ttl: Option<Duration>) {
        let now = Instant::now();
        e.expires = ttl.or(self.ttl).map(|t| now + t);
        e.size = e.body.len() as u64
            + e.headers
                .iter()
                .map(|(k, v)| (k.as_str().len() + v.len()) as u64)
                .sum::<u64>()
            + key.len() as u64
            + ENTRY_OVERHEAD;
        if e.size > self.max_bytes {
            return;
        }
        let mut inner = self.lock();
        e.seq = inner.next_seq;
        inner.next_seq += 1;
        inner.bytes += e.size;
        inner.order.insert(e.seq, key.clone());
        if let Some(old) = inner.entries.insert(key, e) {
            inner.bytes -= old.size;
            inner.order.remove(&old.seq);
        }
        if self
            .cleanup
            .is_some_and(|every| now.duration_since(inner.last_sweep) >= every)
        {
            inner.last_sweep = now;
            let expired: Vec<String> = inner
                .entries
                .iter()
                .filter(|(_, e)| e.expires.is_some_and(|t| now >= t))
                .map(|(k, _)| k.clone())
                .collect();
            for k in expired {
                inner.remove(&k);
            }
        }
        while inner.bytes > self.max_bytes
            || (self.max_size > 0 && inner.entries.len() > self.max_size)
        {
            let Some((_, k)) = inner.order.pop_first() else {
                break;
            };
            inner.remove(&k);
        }
    }

    /// Entries and bytes held now.
    pub fn usage(&self) -> (usize, u64) {
        let inner = self.lock();
        (inner.entries.len(), inner.bytes)
    }
}

impl Inner {
    fn remove(&mut self, key: &str) {
        if let Some(e) = self.entries.remove(key) {
            self.bytes -= e.size;
            self.order.remove(&e.seq);
        }
    }
}

/// A `caches` entry's store: `memory` (shared by the services naming
/// it) or `redis`.
#[derive(Debug, Clone)]
pub enum Store {
    Memory(Arc<MemoryStore>),
    Redis(Arc<RedisStore>),
}

/// GOST's default key prefix of the redis store.
pub const DEFAULT_REDIS_PREFIX: &str = "gost:cache:";

/// A `redis` store: one connection, made again when it breaks.
pub struct RedisStore {
    opts: gost_core::redis::RedisOptions,
    prefix: String,
    ttl: Option<Duration>,
    conn: tokio::sync::Mutex<Option<gost_core::redis::RedisConn>>,
    failing: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("addr", &self.opts.addr)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl RedisStore {
    pub fn from_config(cfg: &gost_core::config::RedisCache) -> Self {
        RedisStore {
            opts: gost_core::redis::RedisOptions {
                addr: cfg.addr.clone(),
                db: cfg.db,
                username: cfg.username.clone(),
                password: cfg.password.clone(),
            },
            prefix: if cfg.key.is_empty() {
                DEFAULT_REDIS_PREFIX.to_string()
            } else {
                cfg.key.clone()
            },
            ttl: (!cfg.ttl.is_zero()).then_some(cfg.ttl.0),
            conn: tokio::sync::Mutex::new(None),
            failing: Default::default(),
        }
    }

    /// One command; a broken connection is made again once.
    async fn command(&self, args: &[&[u8]]) -> Option<gost_proto::resp::Reply> {
        use std::sync::atomic::Ordering;
        let mut conn = self.conn.lock().await;
        let mut last = None;
        for _ in 0..2 {
            if conn.is_none() {
                match gost_core::redis::RedisConn::connect(&self.opts).await {
                    Ok(c) => *conn = Some(c),
                    Err(e) => {
                        last = Some(e);
                        break;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { break };
            match c.command(args).await {
                Ok(r) => {
                    if self.failing.swap(false, Ordering::Relaxed) {
                        tracing::info!(redis = %gost_core::escape::esc(&self.opts.addr), "cache: redis is back");
                    }
                    return Some(r);
                }
                Err(e) => {
                    *conn = None;
                    let server = matches!(e, gost_core::redis::RedisError::Server { .. });
                    last = Some(e);
                    if server {
                        break;
                    }
                }
            }
        }
        if !self.failing.swap(true, Ordering::Relaxed) {
            if let Some(e) = last {
                tracing::warn!(error = %e, "cache: redis cannot be used, requests go to the upstream until it is back");
            }
        }
        None
    }

    async fn get(&self, key: &str) -> Option<Response<Bytes>> {
        let k = format!("{}{key}", self.prefix);
        match self.command(&[b"GET", k.as_bytes()]).await? {
            gost_proto::resp::Reply::Bulk(Some(b)) => {
                let parsed = parse_response(&b);
                if parsed.is_none() {
                    tracing::debug!(key = %gost_core::escape::esc(&k), "cache: redis entry is not an HTTP response, ignored");
                }
                parsed
            }
            _ => None,
        }
    }

    async fn set(&self, key: String, data: Vec<u8>, ttl: Option<Duration>) {
        let k = format!("{}{key}", self.prefix);
        match ttl.or(self.ttl).map(|t| t.as_millis().max(1).to_string()) {
            Some(ms) => {
                self.command(&[b"SET", k.as_bytes(), &data, b"PX", ms.as_bytes()])
                    .await
            }
            None => self.command(&[b"SET", k.as_bytes(), &data]).await,
        };
    }
}

/// A response as HTTP/1.1 bytes: its fields with the body's length.
fn encode_response(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    for (k, v) in headers {
        if k == hyper::header::CONTENT_LENGTH || k == hyper::header::TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

/// A stored response: ours, or GOST's (the bytes it wrote to its
/// client, a chunked body included).
fn parse_response(b: &[u8]) -> Option<Response<Bytes>> {
    use gost_proto::http1::{Decoder, Framing};
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut r = httparse::Response::new(&mut fields);
    let httparse::Status::Complete(len) = r.parse(b).ok()? else {
        return None;
    };
    let status = StatusCode::from_u16(r.code?).ok()?;
    let mut headers = HeaderMap::new();
    let mut chunked = false;
    for h in r.headers.iter() {
        let name = hyper::header::HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        if name == hyper::header::TRANSFER_ENCODING {
            chunked = true;
            continue;
        }
        headers.append(name, hyper::header::HeaderValue::from_bytes(h.value).ok()?);
    }
    let rest = &b[len..];
    let body = if chunked {
        let mut out = Vec::new();
        let mut dec = Decoder::new(Framing::Chunked);
        dec.decode(rest, &mut out).ok()?;
        headers.insert(hyper::header::CONTENT_LENGTH, out.len().into());
        out
    } else {
        rest.to_vec()
    };
    let mut resp = Response::new(Bytes::from(body));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Some(resp)
}

/// One service's policy over a shared store.
#[derive(Debug)]
pub struct HttpCache {
    store: Store,
    ttl: Option<Duration>,
    status_ttl: HashMap<u16, Duration>,
    serve_stale: bool,
    methods: Vec<Method>,
    max_body_bytes: usize,
}

impl HttpCache {
    /// The policy in handler metadata: `cache.ttl`, `cache.status.<code>`
    /// (a TTL per status), `cache.serveStale`, `cache.methods` (GET and
    /// HEAD when unset), `cache.maxBodyBytes`.
    pub fn from_metadata(store: Store, md: &Metadata) -> Result<Self, MetadataError> {
        let mut status_ttl = HashMap::new();
        for code in 100u16..600 {
            if let Some(d) = md.get_duration(&format!("cache.status.{code}"))? {
                status_ttl.insert(code, d);
            }
        }
        let methods = md
            .get_strings("cache.methods")?
            .unwrap_or_default()
            .iter()
            .map(|m| {
                Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()).map_err(|_| {
                    MetadataError {
                        key: "cache.methods".into(),
                        value: format!("{m:?}"),
                        expected: "HTTP methods",
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HttpCache {
            store,
            ttl: md.get_duration("cache.ttl")?.filter(|d| !d.is_zero()),
            status_ttl,
            serve_stale: md.get_bool("cache.serveStale")?.unwrap_or(false),
            methods: if methods.is_empty() {
                vec![Method::GET, Method::HEAD]
            } else {
                methods
            },
            max_body_bytes: match md.get_int("cache.maxBodyBytes")? {
                Some(n) if n > 0 => n as usize,
                _ => DEFAULT_MAX_BODY_BYTES,
            },
        })
    }

    pub fn cacheable_request<B>(&self, req: &hyper::Request<B>) -> bool {
        self.methods.contains(req.method())
    }

    /// A method the policy caches and a 2xx or 3xx status (GOST's rule).
    pub fn cacheable(&self, method: &Method, status: u16) -> bool {
        self.methods.contains(method) && (200..400).contains(&status)
    }

    pub fn serve_stale(&self) -> bool {
        self.serve_stale
    }

    /// The response kept under `key` and whether it has expired.
    pub async fn lookup(&self, key: &str) -> Option<(Response<Bytes>, bool)> {
        let store = match &self.store {
            Store::Memory(m) => m,
            Store::Redis(r) => return r.get(key).await.map(|resp| (resp, false)),
        };
        let (e, stale) = store.get(key)?;
        let mut resp = Response::new(e.body);
        *resp.status_mut() = e.status;
        *resp.headers_mut() = e.headers;
        Some((resp, stale))
    }

    /// `resp` with its body copied aside as it streams to the client; a
    /// body that ends whole and within `cache.maxBodyBytes` is kept.
    pub fn tee(
        self: &Arc<Self>,
        resp: Response<BoxBody<Bytes, hyper::Error>>,
        key: String,
    ) -> Response<BoxBody<Bytes, hyper::Error>> {
        let (parts, body) = resp.into_parts();
        let tee = Tee {
            inner: body,
            kept: Some(Vec::new()),
            status: parts.status,
            headers: parts.headers.clone(),
            key,
            cache: Arc::clone(self),
        };
        Response::from_parts(parts, tee.boxed())
    }

    fn store(&self, key: String, status: StatusCode, headers: HeaderMap, body: Vec<u8>) {
        let ttl = self.status_ttl.get(&status.as_u16()).copied().or(self.ttl);
        let store = match &self.store {
            Store::Memory(m) => m,
            Store::Redis(r) => {
                let data = encode_response(status, &headers, &body);
                let r = Arc::clone(r);
                tokio::spawn(async move { r.set(key, data, ttl).await });
                return;
            }
        };
        let entry = Entry {
            status,
            headers,
            body: body.into(),
            expires: None,
            seq: 0,
            size: 0,
        };
        store.set(key, entry, ttl);
    }
}

struct Tee {
    inner: BoxBody<Bytes, hyper::Error>,
    /// `None` once the body outgrew the limit.
    kept: Option<Vec<u8>>,
    status: StatusCode,
    headers: HeaderMap,
    key: String,
    cache: Arc<HttpCache>,
}

impl Tee {
    /// Keeps the body gathered, when it is whole and within the limit.
    fn finish(&mut self) {
        if let Some(body) = self.kept.take() {
            let headers = std::mem::take(&mut self.headers);
            self.cache
                .store(std::mem::take(&mut self.key), self.status, headers, body);
        }
    }
}

impl Body for Tee {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let (Some(d), Some(kept)) = (f.data_ref(), this.kept.as_mut()) {
                    if kept.len() + d.len() > this.cache.max_body_bytes {
                        this.kept = None;
                    } else {
                        kept.extend_from_slice(d);
                    }
                }
                // A body of known length is not polled past its end.
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Some(Err(_)) => this.kept = None,
            None => this.finish(),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        // An empty body is stored by the poll that reports its end.
        self.kept.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(max_size: i64, max_bytes: i64, eviction: &str) -> Arc<MemoryStore> {
        Arc::new(
            MemoryStore::from_config(&MemoryCacheConfig {
                max_size,
                max_bytes,
                eviction: eviction.into(),
                ..Default::default()
            })
            .unwrap(),
        )
    }

    fn entry(body: &'static [u8]) -> Entry {
        Entry {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from_static(body),
            expires: None,
            seq: 0,
            size: 0,
        }
    }

    #[test]
    fn stores_are_bounded_in_entries_and_bytes() {
        let s = store(2, 0, "");
        for k in ["a", "b", "c"] {
            s.set(k.into(), entry(b"x"), None);
        }
        assert!(s.get("a").is_none());
        assert!(s.get("b").is_some() && s.get("c").is_some());
        assert_eq!(s.usage().0, 2);
        // LRU keeps the entry just used.
        let s = store(2, 0, "lru");
        s.set("a".into(), entry(b"x"), None);
        s.set("b".into(), entry(b"x"), None);
        s.get("a");
        s.set("c".into(), entry(b"x"), None);
        assert!(s.get("a").is_some() && s.get("b").is_none());
        // A byte bound: each entry costs its body, fields and overhead.
        let s = store(0, 1000, "oldest");
        for i in 0..20 {
            s.set(format!("k{i}"), entry(&[0u8; 100]), None);
        }
        let (n, bytes) = s.usage();
        assert!(bytes <= 1000 && (2..20).contains(&n), "{n} {bytes}");
        // Replacing a key does not count it twice.
        let s = store(0, 0, "");
        s.set("a".into(), entry(b"1"), None);
        let one = s.usage().1;
        s.set("a".into(), entry(b"2"), None);
        assert_eq!(s.usage(), (1, one));
        assert_eq!(s.get("a").unwrap().0.body, Bytes::from_static(b"2"));
        assert!(MemoryStore::from_config(&MemoryCacheConfig {
            eviction: "lfu".into(),
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn expired_entries_stay_for_serve_stale() {
        let s = store(0, 0, "");
        s.set("a".into(), entry(b"x"), Some(Duration::from_millis(1)));
        s.set("b".into(), entry(b"x"), None);
        std::thread::sleep(Duration::from_millis(5));
        assert!(s.get("a").unwrap().1, "expired");
        assert!(!s.get("b").unwrap().1, "no TTL: never expires");
    }

    #[tokio::test]
    async fn a_response_is_kept_once_its_body_ends_within_the_limit() {
        let md: Metadata =
            serde_json::from_str(r#"{"cache.ttl": "60s", "cache.maxBodyBytes": 8}"#).unwrap();
        let cache =
            Arc::new(HttpCache::from_metadata(Store::Memory(store(0, 0, "")), &md).unwrap());
        assert!(cache.cacheable(&Method::GET, 301) && !cache.cacheable(&Method::POST, 200));
        assert!(!cache.cacheable(&Method::GET, 404));
        for (key, body) in [("small", &b"1234"[..]), ("big", &b"123456789"[..])] {
            let resp = Response::new(
                http_body_util::Full::new(Bytes::from_static(body))
                    .map_err(|never| match never {})
                    .boxed(),
            );
            let teed = cache.tee(resp, key.into());
            let got = teed.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(got, body);
        }
        let (resp, stale) = cache.lookup("small").await.unwrap();
        assert!(!stale);
        assert_eq!(resp.body(), &Bytes::from_static(b"1234"));
        assert!(cache.lookup("big").await.is_none());
    }

    #[test]
    fn responses_are_stored_as_http_bytes_and_gosts_chunked_ones_read() {
        let mut h = HeaderMap::new();
        h.insert("x-a", "1".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        let b = encode_response(StatusCode::MOVED_PERMANENTLY, &h, b"body");
        assert_eq!(
            b,
            b"HTTP/1.1 301 Moved Permanently\r\nx-a: 1\r\nContent-Length: 4\r\n\r\nbody"
        );
        let r = parse_response(&b).unwrap();
        assert_eq!(
            (r.status().as_u16(), r.body().as_ref()),
            (301, &b"body"[..])
        );
        assert_eq!(r.headers()["x-a"], "1");
        let go =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n";
        let r = parse_response(go).unwrap();
        assert_eq!(r.body().as_ref(), b"abcd");
        assert_eq!(r.headers()["content-length"], "4");
        assert!(r.headers().get("transfer-encoding").is_none());
        assert!(parse_response(b"not http").is_none());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
                .is_none()
        );
    }
}
