//! GOST's `redis` and `http` loaders (x/internal/loader): the data of a
//! bypass, admission, hosts, limiter, auther or hop kept in a Redis key or
//! served over HTTP, read at start and again every `reload` period.
//!
//! A read never runs on a lookup's path: when the period has passed, a
//! lookup starts a read in the background and goes on with the data it
//! has; the next lookup after the read finishes takes the new data. A
//! source that cannot be reached, or that serves data its owner refuses,
//! leaves the last good data in place, and the log says so once per
//! failure streak.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{HTTPLoader, RedisLoader};
use crate::httpc::{self, Target};
use crate::redis::{RedisConn, RedisOptions};

/// GOST's key when `redis.key` is not set.
pub const DEFAULT_KEY: &str = "gost";
/// The `http` loader's request bound when `timeout` is not set.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// GOST reloads at most once a second.
pub const MIN_PERIOD: Duration = Duration::from_secs(1);

/// How a Redis key holds the data, as GOST reads each owner's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisKind {
    /// `SMEMBERS`: bypasses, admissions, hosts (default), limiters.
    Set,
    /// `LRANGE 0 -1`: hosts with `type: list`.
    List,
    /// `HGETALL`, each field and value as one `field value` line: authers.
    Hash,
    /// `GET`: hops (a YAML or JSON list of nodes).
    String,
}

impl RedisKind {
    /// A list with `type: list`, a set otherwise: hosts and limiters.
    pub fn set_or_list(redis: Option<&RedisLoader>) -> RedisKind {
        match redis.map(|r| r.r#type.as_str()) {
            Some("list") => RedisKind::List,
            _ => RedisKind::Set,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Source {
    Redis {
        opts: RedisOptions,
        key: String,
        kind: RedisKind,
    },
    Http {
        target: Target,
        timeout: Duration,
    },
}

impl Source {
    /// The source a config names: `redis` wins over `http` when both are
    /// set, as GOST reads both and the Redis data comes first; an error
    /// is a config that can never load.
    pub fn from_config(
        redis: Option<&RedisLoader>,
        http: Option<&HTTPLoader>,
        kind: RedisKind,
    ) -> Result<Option<Source>, String> {
        if let Some(r) = redis.filter(|r| !r.addr.is_empty()) {
            return Ok(Some(Source::Redis {
                opts: RedisOptions {
                    addr: r.addr.clone(),
                    db: r.db,
                    username: r.username.clone(),
                    password: r.password.clone(),
                },
                key: if r.key.is_empty() {
                    DEFAULT_KEY.to_string()
                } else {
                    r.key.clone()
                },
                kind,
            }));
        }
        if let Some(h) = http.filter(|h| !h.url.is_empty()) {
            let target = Target::parse(&h.url).map_err(|e| format!("http loader: {e}"))?;
            let timeout = if h.timeout.0.is_zero() {
                DEFAULT_HTTP_TIMEOUT
            } else {
                h.timeout.0
            };
            return Ok(Some(Source::Http { target, timeout }));
        }
        Ok(None)
    }

    /// Where lines came from, for messages: `redis 127.0.0.1:6379 key`.
    pub fn describe(&self) -> String {
        match self {
            Source::Redis { opts, key, .. } => format!(
                "redis {} {}",
                crate::escape::esc(&opts.addr),
                crate::escape::esc(key)
            ),
            Source::Http { target, .. } => crate::escape::esc(&target.url).to_string(),
        }
    }

    /// The data as text: list items one per line, as GOST joins them.
    pub async fn fetch(&self) -> Result<String, String> {
        match self {
            Source::Http { target, timeout } => {
                let r = httpc::request(target, "GET", &[], &[], *timeout)
                    .await
                    .map_err(|e| e.to_string())?;
                if r.status != 200 {
                    return Err(format!(
                        "{}: answered {}",
                        crate::escape::esc(&target.url),
                        r.status
                    ));
                }
                String::from_utf8(r.body).map_err(|_| {
                    format!("{}: the body is not UTF-8", crate::escape::esc(&target.url))
                })
            }
            Source::Redis { opts, key, kind } => {
                let mut c = RedisConn::connect(opts).await.map_err(|e| e.to_string())?;
                let k = key.as_bytes();
                let reply = match kind {
                    RedisKind::Set => c.command(&[b"SMEMBERS", k]).await,
                    RedisKind::List => c.command(&[b"LRANGE", k, b"0", b"-1"]).await,
                    RedisKind::Hash => c.command(&[b"HGETALL", k]).await,
                    RedisKind::String => c.command(&[b"GET", k]).await,
                }
                .map_err(|e| e.to_string())?;
                text_of(*kind, reply).map_err(|m| format!("{}: {m}", self.describe()))
            }
        }
    }

    /// [`Self::fetch`] from code that may or may not run on a Tokio
    /// runtime (building a config): on a thread of its own.
    pub fn fetch_blocking(&self) -> Result<String, String> {
        let src = self.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(src.fetch())
        })
        .join()
        .unwrap_or_else(|_| Err("loader thread failed".into()))
    }
}

fn text_of(kind: RedisKind, reply: gost_proto::resp::Reply) -> Result<String, String> {
    use gost_proto::resp::Reply;
    let utf8 = |b: Vec<u8>| String::from_utf8(b).map_err(|_| "a value is not UTF-8".to_string());
    let items = |r: Reply| -> Result<Vec<String>, String> {
        match r {
            Reply::Array(None) => Ok(Vec::new()),
            Reply::Array(Some(v)) => v
                .into_iter()
                .map(|i| match i {
                    Reply::Bulk(Some(b)) => utf8(b),
                    _ => Err("an item is not a string".into()),
                })
                .collect(),
            _ => Err("the key does not hold the expected type".into()),
        }
    };
    match kind {
        RedisKind::String => match reply {
            Reply::Bulk(Some(b)) => utf8(b),
            Reply::Bulk(None) => Ok(String::new()),
            _ => Err("the key does not hold a string".into()),
        },
        RedisKind::Hash => {
            let v = items(reply)?;
            Ok(v.chunks(2)
                .map(|p| p.join(" "))
                .collect::<Vec<_>>()
                .join("\n"))
        }
        RedisKind::Set | RedisKind::List => Ok(items(reply)?.join("\n")),
    }
}

/// An owner's loader and the data it last gave that was taken.
pub type Loaded<T> = Option<(Arc<Remote>, std::sync::RwLock<T>)>;

/// A source read again every period, with the outcome of the last read
/// waiting for its owner to take.
pub struct Remote {
    pub source: Source,
    owner: String,
    period: Option<Duration>,
    state: Mutex<State>,
}

struct State {
    started: Instant,
    fetching: bool,
    failing: bool,
    done: Option<Result<String, String>>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("owner", &self.owner)
            .field("source", &self.source.describe())
            .finish()
    }
}

impl Remote {
    /// `reload` zero reads once (at start), as in GOST.
    pub fn new(owner: &str, source: Source, reload: Duration) -> Arc<Self> {
        Arc::new(Remote {
            source,
            owner: owner.to_string(),
            period: (!reload.is_zero()).then(|| reload.max(MIN_PERIOD)),
            state: Mutex::new(State {
                started: Instant::now(),
                fetching: false,
                failing: false,
                done: None,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The first read, done before the owner is first used; `None` when
    /// the source could not be read (logged).
    pub fn initial(&self) -> Option<String> {
        let r = self.source.fetch_blocking();
        self.lock().started = Instant::now();
        self.outcome(r)
    }

    /// A finished read's data, if one finished since the last call, and
    /// a new read started in the background when the period has passed.
    pub fn poll(self: &Arc<Self>) -> Option<String> {
        let done = {
            let mut st = self.lock();
            let due = self
                .period
                .is_some_and(|p| !st.fetching && st.started.elapsed() >= p);
            if due {
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    st.fetching = true;
                    st.started = Instant::now();
                    let me = self.clone();
                    rt.spawn(async move {
                        let r = me.source.fetch().await;
                        let mut st = me.lock();
                        st.fetching = false;
                        st.done = Some(r);
                    });
                }
            }
            st.done.take()
        }?;
        self.outcome(done)
    }

    fn outcome(&self, r: Result<String, String>) -> Option<String> {
        let mut st = self.lock();
        match r {
            Ok(text) => {
                if st.failing {
                    st.failing = false;
                    tracing::info!(owner = %self.owner, source = %self.source.describe(), "loader: the source is back");
                }
                Some(text)
            }
            Err(e) => {
                if !st.failing {
                    st.failing = true;
                    tracing::warn!(owner = %self.owner, error = %e, "loader: cannot read the source; keeping the last good data");
                }
                None
            }
        }
    }

    /// Data read but refused by its owner (a bad rule): logged, and the
    /// last good data stays.
    pub fn refused(&self, error: &dyn std::fmt::Display) {
        tracing::warn!(owner = %self.owner, source = %self.source.describe(), error = %error, "loader: data refused; keeping the last good data");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gost_proto::resp::Reply;

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Some(s.as_bytes().to_vec()))
    }

    #[test]
    fn redis_data_becomes_lines_as_gost_joins_it() {
        let arr = Reply::Array(Some(vec![bulk("a"), bulk("b")]));
        assert_eq!(text_of(RedisKind::Set, arr.clone()).unwrap(), "a\nb");
        assert_eq!(text_of(RedisKind::List, arr).unwrap(), "a\nb");
        let hash = Reply::Array(Some(vec![bulk("alice"), bulk("pw"), bulk("bob"), bulk("")]));
        assert_eq!(text_of(RedisKind::Hash, hash).unwrap(), "alice pw\nbob ");
        assert_eq!(text_of(RedisKind::String, bulk("[]")).unwrap(), "[]");
        assert_eq!(text_of(RedisKind::String, Reply::Bulk(None)).unwrap(), "");
        assert!(text_of(RedisKind::Set, bulk("x")).is_err());
        assert!(text_of(RedisKind::String, Reply::Integer(1)).is_err());
    }

    #[test]
    fn sources_from_config() {
        let r = RedisLoader {
            addr: "127.0.0.1:6379".into(),
            r#type: "list".into(),
            ..Default::default()
        };
        let kind = RedisKind::set_or_list(Some(&r));
        assert_eq!(kind, RedisKind::List);
        match Source::from_config(Some(&r), None, kind).unwrap() {
            Some(Source::Redis { key, kind, .. }) => {
                assert_eq!((key.as_str(), kind), (DEFAULT_KEY, RedisKind::List))
            }
            other => panic!("{other:?}"),
        }
        let h = HTTPLoader {
            url: "https://x/".into(),
            ..Default::default()
        };
        assert!(Source::from_config(None, Some(&h), RedisKind::Set).is_err());
        assert!(Source::from_config(None, None, RedisKind::Set)
            .unwrap()
            .is_none());
    }
}
