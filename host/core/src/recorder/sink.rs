//! Where a recorder's records go, and the task that writes its queue
//! out. GOST's choice among the sinks of one config is kept: `file`,
//! then `tcp`, `http`, `redis`, the first that is set.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::config::RecorderConfig;
use crate::httpc::{self, Target};
use crate::redis::{RedisConn, RedisOptions};
use crate::rotate::{RotatingFile, Rotation};

/// Bounds a TCP connect and write, and an HTTP request, when the config
/// sets no `timeout` (GOST waits without end; a queue cannot).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) enum Sink {
    File {
        path: String,
        sep: Vec<u8>,
        file: Option<tokio::fs::File>,
    },
    /// A file with `rotation`: lumberjack's rules, as GOST's recorder
    /// uses them ([`crate::rotate`]); written off the runtime's threads.
    Rotating {
        path: String,
        sep: Vec<u8>,
        rotation: Rotation,
        file: Option<Arc<std::sync::Mutex<RotatingFile>>>,
    },
    Tcp {
        addr: String,
        timeout: Duration,
    },
    Http {
        target: Target,
        headers: Vec<(String, String)>,
        timeout: Duration,
    },
    /// GOST's recorder plugin: one call per record.
    Plugin(crate::plugin::Plugin),
    Redis {
        opts: RedisOptions,
        key: String,
        kind: RedisKind,
        conn: Option<RedisConn>,
    },
}

#[derive(Debug, Clone, Copy)]
pub(super) enum RedisKind {
    Set,
    List,
    SortedSet,
}

fn or_default(t: Duration) -> Duration {
    if t.is_zero() {
        DEFAULT_TIMEOUT
    } else {
        t
    }
}

impl Sink {
    pub(super) fn check(cfg: &RecorderConfig) -> Result<(), String> {
        Sink::from_config(cfg).map(drop)
    }

    pub(super) fn from_config(cfg: &RecorderConfig) -> Result<Self, String> {
        if let Some(p) = &cfg.plugin {
            let plugin =
                crate::plugin::Plugin::new("recorder", &cfg.name, p).map_err(|e| e.to_string())?;
            return Ok(Sink::Plugin(plugin));
        }
        if let Some(f) = cfg.file.as_ref().filter(|f| !f.path.is_empty()) {
            if let Some(r) = &f.rotation {
                return Ok(Sink::Rotating {
                    path: f.path.clone(),
                    sep: f.sep.clone().into_bytes(),
                    rotation: Rotation::from_config(r),
                    file: None,
                });
            }
            return Ok(Sink::File {
                path: f.path.clone(),
                sep: f.sep.clone().into_bytes(),
                file: None,
            });
        }
        if let Some(t) = cfg.tcp.as_ref().filter(|t| !t.addr.is_empty()) {
            return Ok(Sink::Tcp {
                addr: t.addr.clone(),
                timeout: or_default(t.timeout.0),
            });
        }
        if let Some(h) = cfg.http.as_ref().filter(|h| !h.url.is_empty()) {
            let target = Target::parse(&h.url).map_err(|e| format!("http: {e}"))?;
            let mut headers: Vec<(String, String)> = Vec::new();
            for (k, v) in &h.header {
                let bad = |s: &str| s.bytes().any(|b| b == b'\r' || b == b'\n');
                if k.is_empty() || bad(k) || bad(v) || k.contains(':') {
                    return Err(format!(
                        "http.header \"{}\": not a valid header",
                        crate::escape::esc(k)
                    ));
                }
                headers.push((k.clone(), v.clone()));
            }
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                headers.push(("Content-Type".into(), "application/json".into()));
            }
            return Ok(Sink::Http {
                target,
                headers,
                timeout: or_default(h.timeout.0),
            });
        }
        if let Some(r) = cfg.redis.as_ref().filter(|r| !r.addr.is_empty()) {
            if r.key.is_empty() {
                return Err("redis.key is required".into());
            }
            let kind = match r.r#type.as_str() {
                "" | "set" => RedisKind::Set,
                "list" => RedisKind::List,
                "sset" => RedisKind::SortedSet,
                other => {
                    return Err(format!(
                        "redis.type '{}' is not one of set, list, sset",
                        crate::escape::esc(other)
                    ))
                }
            };
            return Ok(Sink::Redis {
                opts: RedisOptions {
                    addr: r.addr.clone(),
                    db: r.db,
                    username: r.username.clone(),
                    password: r.password.clone(),
                },
                key: r.key.clone(),
                kind,
                conn: None,
            });
        }
        Err("needs one of file.path, tcp.addr, http.url or redis.addr".into())
    }

    /// Writes the queue out until every sender is gone. A failed write
    /// drops its record; the first failure of a streak is logged, and so
    /// is the recovery.
    pub(super) async fn run(
        mut self,
        name: String,
        mut rx: mpsc::Receiver<Vec<u8>>,
        dropped: Arc<AtomicU64>,
    ) {
        let mut failing = false;
        while let Some(rec) = rx.recv().await {
            match self.write(&rec).await {
                Ok(()) => {
                    if failing {
                        failing = false;
                        tracing::info!(recorder = %name, "recorder: writing records again");
                    }
                }
                Err(e) => {
                    let total = dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    if !failing {
                        failing = true;
                        tracing::warn!(recorder = %name, error = %e, dropped = total, "recorder: cannot write records, dropping them until the sink is back");
                    }
                }
            }
        }
    }

    pub(super) async fn write(&mut self, rec: &[u8]) -> Result<(), String> {
        match self {
            Sink::File { path, sep, file } => {
                if file.is_none() {
                    let p = std::path::Path::new(path.as_str());
                    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                        let _ = tokio::fs::create_dir_all(dir).await;
                    }
                    let f = tokio::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(p)
                        .await
                        .map_err(|e| format!("file {}: {e}", crate::escape::esc(&path)))?;
                    *file = Some(f);
                }
                let mut line = Vec::with_capacity(rec.len() + sep.len());
                line.extend_from_slice(rec);
                line.extend_from_slice(sep);
                let f = file.as_mut().ok_or("file closed")?;
                let r = async {
                    f.write_all(&line).await?;
                    f.flush().await
                }
                .await;
                if let Err(e) = r {
                    *file = None;
                    return Err(format!("file {}: {e}", crate::escape::esc(&path)));
                }
                Ok(())
            }
            Sink::Rotating {
                path,
                sep,
                rotation,
                file,
            } => {
                let shown = format!("file {}", crate::escape::esc(path.as_str()));
                let f = match file {
                    Some(f) => f.clone(),
                    None => {
                        let (p, r) = (std::path::PathBuf::from(&*path), rotation.clone());
                        let opened = tokio::task::spawn_blocking(move || RotatingFile::open(&p, r))
                            .await
                            .map_err(|e| format!("{shown}: {e}"))?
                            .map_err(|e| format!("{shown}: {e}"))?;
                        file.insert(Arc::new(std::sync::Mutex::new(opened))).clone()
                    }
                };
                let mut line = Vec::with_capacity(rec.len() + sep.len());
                line.extend_from_slice(rec);
                line.extend_from_slice(sep);
                let r = tokio::task::spawn_blocking(move || {
                    use std::io::Write;
                    let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
                    f.write_all(&line).and_then(|()| f.flush())
                })
                .await;
                match r {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => {
                        *file = None;
                        Err(format!("{shown}: {e}"))
                    }
                    Err(e) => Err(format!("{shown}: {e}")),
                }
            }
            // One connection per record, as GOST does: the receiver sees
            // a record end where its connection does.
            Sink::Tcp { addr, timeout } => {
                let work = async {
                    let mut c = tokio::net::TcpStream::connect(addr.as_str()).await?;
                    c.write_all(rec).await?;
                    c.shutdown().await
                };
                match tokio::time::timeout(*timeout, work).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(format!("tcp {}: {e}", crate::escape::esc(&addr))),
                    Err(_) => Err(format!(
                        "tcp {}: timed out after {timeout:?}",
                        crate::escape::esc(&addr)
                    )),
                }
            }
            Sink::Http {
                target,
                headers,
                timeout,
            } => {
                let r = httpc::request(target, "POST", headers, rec, *timeout)
                    .await
                    .map_err(|e| e.to_string())?;
                if r.status >= 400 {
                    return Err(format!(
                        "{}: answered {}",
                        crate::escape::esc(&target.url),
                        r.status
                    ));
                }
                Ok(())
            }
            // GOST sends the recorder object's metadata; gost-rs's
            // records carry none, which GOST sends as `null`.
            Sink::Plugin(p) => {
                let req = gost_proto::plugin::RecordRequest {
                    data: rec.to_vec(),
                    metadata: b"null".to_vec(),
                };
                match p.call(req, "record dropped").await {
                    Ok(a) if a.ok => Ok(()),
                    Ok(_) => Err("the plugin answered ok: false".into()),
                    Err(e) => Err(e.to_string()),
                }
            }
            Sink::Redis {
                opts,
                key,
                kind,
                conn,
            } => {
                let cmd: [&[u8]; 4];
                let args: &[&[u8]] = match kind {
                    RedisKind::Set => {
                        cmd = [b"SADD", key.as_bytes(), rec, b""];
                        &cmd[..3]
                    }
                    RedisKind::List => {
                        cmd = [b"LPUSH", key.as_bytes(), rec, b""];
                        &cmd[..3]
                    }
                    RedisKind::SortedSet => {
                        cmd = [b"ZINCRBY", key.as_bytes(), b"1", rec];
                        &cmd[..]
                    }
                };
                // A connection that broke since the last record is made
                // again once before the record counts as lost.
                for attempt in 0..2 {
                    if conn.is_none() {
                        *conn = Some(RedisConn::connect(opts).await.map_err(|e| e.to_string())?);
                    }
                    let Some(c) = conn.as_mut() else { break };
                    match c.command(args).await {
                        Ok(_) => return Ok(()),
                        Err(e) => {
                            *conn = None;
                            if attempt == 1 || matches!(e, crate::redis::RedisError::Server { .. })
                            {
                                return Err(e.to_string());
                            }
                        }
                    }
                }
                Err("redis: not connected".into())
            }
        }
    }
}
