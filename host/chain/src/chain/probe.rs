//! Health probes of chain group entries (GOST's chain group `probe` and
//! `internal/probe`): a task per entry checks the chain every `interval`
//! and marks the entry's probe marker on failure, so the group's selector
//! passes over it like over a chain whose routes failed.

use std::time::{Duration, Instant};

use super::{route, Chain, GroupEntry, Marker};
use gost_core::config::ProbeConfig;

/// GOST's defaults.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A response head larger than this is not a health check answer.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub enum ProbeKind {
    /// The chain reaches `addr`.
    Tcp,
    /// The chain reaches `addr` and a GET there answers `expected`.
    Http {
        path: String,
        host: String,
        headers: Vec<(String, String)>,
        expected: u16,
    },
    /// `sh -c command` exits 0; the chain is not used.
    Cmd { command: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub kind: ProbeKind,
    pub addr: String,
    pub interval: Duration,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Route(#[from] route::RouteError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("bad HTTP response: {0}")]
    Http(String),
    #[error("expected status {expected}, got {got}")]
    Status { expected: u16, got: u16 },
    #[error("command exited with {0}")]
    Exit(std::process::ExitStatus),
}

/// One check's result, kept for the API: when it ran, how long it took,
/// and why it failed.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub at: std::time::SystemTime,
    pub latency: Duration,
    pub error: Option<String>,
}

impl Probe {
    /// The probe a `probe:` block describes. GOST drops a probe it cannot
    /// run; here it is refused so the mistake is seen at start-up.
    pub fn from_config(cfg: &ProbeConfig) -> Result<Probe, String> {
        let kind = match cfg.r#type.as_str() {
            "" | "tcp" => ProbeKind::Tcp,
            "http" => http_kind(cfg)?,
            "cmd" if cfg.command.trim().is_empty() => {
                return Err("probe type cmd needs a command".into())
            }
            "cmd" => ProbeKind::Cmd {
                command: cfg.command.clone(),
            },
            other => {
                return Err(format!(
                    "probe type '{other}' is not supported (tcp, http, cmd)"
                ))
            }
        };
        if !matches!(kind, ProbeKind::Cmd { .. }) && cfg.addr.trim().is_empty() {
            return Err(format!(
                "probe type {} needs an addr",
                if cfg.r#type.is_empty() {
                    "tcp"
                } else {
                    &cfg.r#type
                }
            ));
        }
        Ok(Probe {
            kind,
            addr: cfg.addr.trim().to_string(),
            interval: non_zero(cfg.interval.0, DEFAULT_INTERVAL),
            timeout: non_zero(cfg.timeout.0, DEFAULT_TIMEOUT),
        })
    }

    pub fn type_name(&self) -> &'static str {
        match self.kind {
            ProbeKind::Tcp => "tcp",
            ProbeKind::Http { .. } => "http",
            ProbeKind::Cmd { .. } => "cmd",
        }
    }

    /// One check of `chain`, bounded by the probe's timeout.
    pub async fn check(&self, chain: &Chain) -> Result<(), ProbeError> {
        tokio::time::timeout(self.timeout, self.check_unbounded(chain))
            .await
            .map_err(|_| ProbeError::Timeout(self.timeout))?
    }

    async fn check_unbounded(&self, chain: &Chain) -> Result<(), ProbeError> {
        if let ProbeKind::Cmd { command } = &self.kind {
            return run_command(command).await;
        }
        let host = gost_core::addr::host_of(&self.addr);
        let nodes = chain.route(&self.addr, host, None);
        let mut up = if nodes.nodes.is_empty() {
            crate::connector::upstream::Upstream::direct(
                gost_core::dialer::dial_tcp(&self.addr).await?,
            )
        } else {
            route::dial(&chain.name, &nodes, &self.addr).await?
        };
        let ProbeKind::Http {
            path,
            host,
            headers,
            expected,
        } = &self.kind
        else {
            return Ok(());
        };
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("Connection: close\r\n\r\n");
        up.write_all(req.as_bytes()).await?;
        let got = read_status(&mut up).await?;
        if got != *expected {
            return Err(ProbeError::Status {
                expected: *expected,
                got,
            });
        }
        Ok(())
    }
}

fn non_zero(d: Duration, default: Duration) -> Duration {
    if d.is_zero() {
        default
    } else {
        d
    }
}

fn http_kind(cfg: &ProbeConfig) -> Result<ProbeKind, String> {
    let bad = |s: &str| s.chars().any(|c| c.is_ascii_control() || c == ' ');
    let path = if cfg.http_path.is_empty() {
        "/".to_string()
    } else {
        cfg.http_path.clone()
    };
    if !path.starts_with('/') || bad(&path) {
        return Err(format!(
            "probe httpPath '{path}' must start with / and have no spaces"
        ));
    }
    let host = if cfg.http_host.is_empty() {
        cfg.addr.trim().to_string()
    } else {
        cfg.http_host.clone()
    };
    if bad(&host) {
        return Err(format!(
            "probe httpHost '{host}' has spaces or control characters"
        ));
    }
    let mut headers = Vec::with_capacity(cfg.http_headers.len());
    for (k, v) in cfg.http_headers.iter() {
        if k.is_empty() || bad(k) || k.contains(':') || v.chars().any(|c| c == '\r' || c == '\n') {
            return Err(format!(
                "probe httpHeaders entry '{k}' is not a valid header"
            ));
        }
        headers.push((k.clone(), v.clone()));
    }
    let expected = match cfg.expected_status {
        0 => 200,
        s @ 100..=999 => s as u16,
        s => return Err(format!("probe expectedStatus {s} is not an HTTP status")),
    };
    Ok(ProbeKind::Http {
        path,
        host,
        headers,
        expected,
    })
}

/// The status code of the response on `up`, read only as far as its head.
async fn read_status(up: &mut crate::connector::upstream::Upstream) -> Result<u16, ProbeError> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        if up.read_buf(&mut buf).await? == 0 {
            return Err(ProbeError::Http(
                "connection closed before the response head".into(),
            ));
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                return resp
                    .code
                    .ok_or_else(|| ProbeError::Http("no status code".into()))
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_RESPONSE_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Err(ProbeError::Http("response head too large".into()))
            }
            Err(e) => return Err(ProbeError::Http(e.to_string())),
        }
    }
}

/// GOST runs the command with `sh -c`; exit 0 is healthy. The child is
/// killed if the probe times out.
async fn run_command(command: &str) -> Result<(), ProbeError> {
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .status()
        .await?;
    if status.success() {
        Ok(())
    } else {
        Err(ProbeError::Exit(status))
    }
}

/// Starts probing `entry` if it has a probe: at once, then every
/// interval, until the entry is dropped (service removed, or its handler
/// rebuilt by a reload). Without a Tokio runtime (a config check outside
/// the server) nothing is started.
pub fn start(entry: &GroupEntry) {
    let Some(probe) = entry.probe.clone() else {
        return;
    };
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        tracing::debug!(chain = %entry.chain.name, "no runtime: chain group probe not started");
        return;
    };
    let chain = entry.chain.clone();
    let marker = entry.probe_marker.clone();
    let last = entry.probe_last.clone();
    let stop = entry.probe_stop.clone();
    rt.spawn(async move {
        stop.run_until_cancelled(run(&probe, &chain, &marker, &last))
            .await;
        tracing::debug!(chain = %chain.name, "chain group probe stopped: group dropped");
    });
}

async fn run(
    probe: &Probe,
    chain: &Chain,
    marker: &Marker,
    last: &std::sync::Mutex<Option<Outcome>>,
) {
    let mut ticker = tokio::time::interval(probe.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut healthy = true;
    let kind = probe.type_name();
    let name = chain.name.as_str();
    loop {
        ticker.tick().await;
        let started = Instant::now();
        let result = probe.check(chain).await;
        let latency = started.elapsed();
        let latency_ms = latency.as_millis() as u64;
        *last.lock().unwrap_or_else(|p| p.into_inner()) = Some(Outcome {
            at: std::time::SystemTime::now(),
            latency,
            error: result.as_ref().err().map(ToString::to_string),
        });
        match &result {
            Ok(()) => {
                marker.reset();
                tracing::debug!(
                    chain = name,
                    r#type = kind,
                    ok = true,
                    latency_ms,
                    "chain group probe"
                );
            }
            Err(e) => {
                marker.mark();
                tracing::debug!(chain = name, r#type = kind, ok = false, latency_ms, error = %e, "chain group probe");
            }
        }
        if result.is_ok() != healthy {
            healthy = result.is_ok();
            let state = if healthy {
                "failed -> healthy"
            } else {
                "healthy -> failed"
            };
            tracing::info!(
                chain = name,
                r#type = kind,
                state,
                "chain group probe state changed"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn cfg(yaml: &str) -> ProbeConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn probe(yaml: &str) -> Probe {
        let mut p = Probe::from_config(&cfg(yaml)).unwrap();
        p.timeout = Duration::from_secs(5);
        p
    }

    /// A chain without hops: its route is empty, so the probe dials the
    /// target directly, as a fully bypassed chain does.
    fn direct_chain() -> Chain {
        Chain {
            name: "c".into(),
            hops: Vec::new(),
            marker: Default::default(),
            weight: 1,
            backup: false,
        }
    }

    /// Answers every connection with `status` and hands back what the
    /// first request said.
    async fn http_server(status: u16) -> (String, tokio::task::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = Vec::new();
            while !req.ends_with(b"\r\n\r\n") {
                let mut b = [0u8; 1];
                if s.read(&mut b).await.unwrap() == 0 {
                    break;
                }
                req.push(b[0]);
            }
            let resp = format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\nok");
            s.write_all(resp.as_bytes()).await.unwrap();
            String::from_utf8(req).unwrap()
        });
        (addr, task)
    }

    #[test]
    fn config_defaults_and_refusals() {
        let p = Probe::from_config(&cfg("{type: http, addr: 'a:80'}")).unwrap();
        assert_eq!(p.interval, DEFAULT_INTERVAL);
        assert_eq!(p.timeout, DEFAULT_TIMEOUT);
        assert_eq!(
            p.kind,
            ProbeKind::Http {
                path: "/".into(),
                host: "a:80".into(),
                headers: Vec::new(),
                expected: 200
            }
        );
        let p = Probe::from_config(&cfg("{addr: 'a:1', interval: 200ms, timeout: 1s}")).unwrap();
        assert_eq!(p.kind, ProbeKind::Tcp);
        assert_eq!(p.interval, Duration::from_millis(200));
        let refused = |yaml: &str, want: &str| {
            let err = Probe::from_config(&cfg(yaml)).unwrap_err();
            assert!(err.contains(want), "{yaml}: {err}");
        };
        refused(
            "{type: icmp, addr: 'a:1'}",
            "probe type 'icmp' is not supported",
        );
        refused("{type: tcp}", "probe type tcp needs an addr");
        refused("{}", "probe type tcp needs an addr");
        refused("{type: http}", "probe type http needs an addr");
        refused("{type: cmd}", "probe type cmd needs a command");
        refused(
            "{type: http, addr: 'a:1', expectedStatus: 42}",
            "expectedStatus 42",
        );
        refused(
            "{type: http, addr: 'a:1', httpPath: 'x y'}",
            "httpPath 'x y'",
        );
        refused(
            "{type: http, addr: 'a:1', httpHeaders: {'X-A': \"1\\r\\nEvil: 1\"}}",
            "httpHeaders entry 'X-A'",
        );
        let bad: Result<ProbeConfig, _> = serde_yaml::from_str("{type: tcp, interval: 5x}");
        assert!(bad.unwrap_err().to_string().contains("invalid duration"));
    }

    #[tokio::test]
    async fn tcp_probe_open_and_closed_port() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = l.local_addr().unwrap();
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        let chain = direct_chain();
        probe(&format!("{{addr: '{open}'}}"))
            .check(&chain)
            .await
            .unwrap();
        let err = probe(&format!("{{addr: '{closed}'}}"))
            .check(&chain)
            .await
            .unwrap_err();
        assert!(matches!(err, ProbeError::Io(_)), "{err}");
    }

    #[tokio::test]
    async fn http_probe_checks_the_status() {
        let chain = direct_chain();
        let (addr, req) = http_server(200).await;
        probe(&format!(
            "{{type: http, addr: '{addr}', httpPath: /health, httpHost: h.test, httpHeaders: {{X-Probe: yes}}}}"
        ))
        .check(&chain)
        .await
        .unwrap();
        let req = req.await.unwrap();
        assert!(
            req.starts_with("GET /health HTTP/1.1\r\nHost: h.test\r\n"),
            "{req}"
        );
        assert!(req.contains("X-Probe: yes\r\n"), "{req}");
        let (addr, _) = http_server(503).await;
        let err = probe(&format!("{{type: http, addr: '{addr}'}}"))
            .check(&chain)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ProbeError::Status {
                    expected: 200,
                    got: 503
                }
            ),
            "{err}"
        );
        let (addr, _) = http_server(503).await;
        probe(&format!(
            "{{type: http, addr: '{addr}', expectedStatus: 503}}"
        ))
        .check(&chain)
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn cmd_probe_exit_status_and_timeout() {
        let chain = direct_chain();
        probe("{type: cmd, command: 'true'}")
            .check(&chain)
            .await
            .unwrap();
        let err = probe("{type: cmd, command: 'exit 3'}")
            .check(&chain)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProbeError::Exit(s) if s.code() == Some(3)),
            "{err}"
        );
        let mut p = probe("{type: cmd, command: 'sleep 30'}");
        p.timeout = Duration::from_millis(200);
        let err = p.check(&chain).await.unwrap_err();
        assert!(matches!(err, ProbeError::Timeout(_)), "{err}");
    }

    async fn wait_for(cond: impl Fn() -> bool) {
        for _ in 0..400 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("condition not met in time");
    }

    #[tokio::test]
    async fn runner_marks_resets_and_ends_with_the_group() {
        let dir = std::env::temp_dir().join(format!("gost-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let flag = dir.join("healthy");
        let _ = std::fs::remove_file(&flag);
        let mut p = probe(&format!(
            "{{type: cmd, command: 'test -f {}'}}",
            flag.display()
        ));
        p.interval = Duration::from_millis(50);
        let entry = GroupEntry::new(Arc::new(direct_chain()), None, Some(p));
        let marker = entry.probe_marker.clone();
        start(&entry);
        let last = entry.probe_last.clone();
        let outcome = move || last.lock().unwrap().clone();
        wait_for(|| marker.count() >= 2).await;
        let failed = outcome().expect("a check ran");
        assert!(failed
            .error
            .as_deref()
            .is_some_and(|e| e.contains("exited")));
        std::fs::write(&flag, b"").unwrap();
        wait_for(|| marker.count() == 0).await;
        wait_for(|| outcome().is_some_and(|o| o.error.is_none())).await;
        // The task shares the marker; once it ends, only this copy is left.
        drop(entry);
        wait_for(|| Arc::strong_count(&marker) == 1).await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn dropping_the_group_aborts_an_in_flight_check() {
        let mut p = probe("{type: cmd, command: 'sleep 30'}");
        p.timeout = Duration::from_secs(60);
        let entry = GroupEntry::new(Arc::new(direct_chain()), None, Some(p));
        let marker = entry.probe_marker.clone();
        start(&entry);
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(entry);
        wait_for(|| Arc::strong_count(&marker) == 1).await;
        assert_eq!(marker.count(), 0, "an aborted check is not a failure");
    }
}
