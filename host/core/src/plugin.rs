//! GOST's HTTP plugin protocol (go-gost/x `internal/plugin` and each
//! module's `plugin/http.go`): a decision is one `POST` of a JSON body to
//! the plugin's `addr`, answered `200` with a JSON body. Everything else
//! (refused connection, other status, an answer that is not the expected
//! JSON, too large, too late) is a failed call, and each module decides
//! what a failed call means for its decision, as GOST's client does.
//!
//! One client serves every module. Connections are kept for reuse, as Go's
//! HTTP client keeps them, so a plugin consulted on every connection costs
//! one request, not one TCP handshake, per decision.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::PluginConfig;
use crate::escape::esc;

/// GOST's client waits without limit when `timeout` is unset; gost-rs
/// bounds every decision, so a hung plugin cannot hold connections forever.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Every GOST plugin answer is a small JSON object; a larger one is a
/// broken or hostile plugin and is not read further.
pub const MAX_ANSWER: usize = 64 * 1024;
/// Idle connections kept per plugin.
const MAX_IDLE: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{owner}: plugin type '{ty}' is not supported (http)")]
    Type { owner: String, ty: String },
    #[error("{owner}: plugin addr \"{addr}\" is not http://host:port[/path]")]
    Addr { owner: String, addr: String },
    #[error("{owner}: https plugin addresses are not supported yet")]
    Https { owner: String },
}

/// Why one call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("connect {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("request: {0}")]
    Request(hyper::http::Error),
    #[error("answer larger than {MAX_ANSWER} bytes")]
    TooLarge,
    #[error("answer is not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl CallError {
    /// One log line per kind of failure, so a plugin failing the same way
    /// on every connection writes one line per interval.
    fn kind(&self) -> &'static str {
        match self {
            CallError::Connect(..) => "connect",
            CallError::Timeout(_) => "timeout",
            CallError::Http(_) => "http",
            CallError::Status(_) => "status",
            CallError::Request(_) => "request",
            CallError::TooLarge => "too-large",
            CallError::Json(_) => "json",
        }
    }
}

/// A module's HTTP plugin: `kind` and `name` as GOST's log fields name the
/// object (`auther`, `"auther-0"`).
pub struct HttpPlugin {
    kind: &'static str,
    name: String,
    /// `host:port`, dialed and sent as `Host`.
    authority: String,
    path: String,
    token: String,
    timeout: Duration,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    failures: AtomicU64,
}

impl std::fmt::Debug for HttpPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpPlugin")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("authority", &self.authority)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl HttpPlugin {
    /// `cfg.addr` as GOST takes it: a URL `http://host:port/path` (the
    /// scheme may be left out).
    pub fn new(kind: &'static str, name: &str, cfg: &PluginConfig) -> Result<Self, PluginError> {
        let owner = format!("{kind} \"{name}\"");
        if cfg.r#type != "http" {
            return Err(PluginError::Type {
                owner,
                ty: cfg.r#type.clone(),
            });
        }
        if cfg.addr.starts_with("https://") || cfg.tls.is_some() {
            return Err(PluginError::Https { owner });
        }
        let rest = cfg.addr.strip_prefix("http://").unwrap_or(&cfg.addr);
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if crate::config::split_host_port(authority).is_err()
            || rest.contains("://")
            || hyper::Uri::try_from(path).is_err()
        {
            return Err(PluginError::Addr {
                owner,
                addr: cfg.addr.clone(),
            });
        }
        Ok(HttpPlugin {
            kind,
            name: name.to_string(),
            authority: authority.to_string(),
            path: path.to_string(),
            token: cfg.token.clone(),
            timeout: if cfg.timeout.0.is_zero() {
                DEFAULT_TIMEOUT
            } else {
                cfg.timeout.0
            },
            idle: Mutex::new(Vec::new()),
            failures: AtomicU64::new(0),
        })
    }

    /// Failed calls so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// POSTs `req` and decodes the answer. A failure is counted and logged
    /// (one line per kind of failure and interval) with `fallback`, what
    /// the module decides instead, and then returned.
    pub async fn call<Q: Serialize, A: DeserializeOwned>(
        &self,
        req: &Q,
        fallback: &'static str,
    ) -> Result<A, CallError> {
        let body = serde_json::to_vec(req)?;
        let path = self.path.clone();
        self.timed(
            self.exchange(hyper::Method::POST, &path, Some(body)),
            fallback,
        )
        .await
    }

    /// GETs the plugin's URL with `query` added, as GOST's ingress plugin
    /// asks for a rule; failures as in [`HttpPlugin::call`].
    pub async fn get<A: DeserializeOwned>(
        &self,
        query: &[(&str, &str)],
        fallback: &'static str,
    ) -> Result<A, CallError> {
        let (path, old) = match self.path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (self.path.as_str(), None),
        };
        let target = {
            let mut q = url::form_urlencoded::Serializer::new(old.unwrap_or("").to_string());
            for (k, v) in query {
                q.append_pair(k, v);
            }
            format!("{path}?{}", q.finish())
        };
        self.timed(self.exchange(hyper::Method::GET, &target, None), fallback)
            .await
    }

    /// Sends `req` with `method` and takes a `200` as success, the
    /// answer's body unread beyond its size limit: GOST's sd plugin
    /// registers (`POST`), renews (`PUT`) and deregisters (`DELETE`) so.
    /// Failures as in [`HttpPlugin::call`].
    pub async fn send<Q: Serialize>(
        &self,
        method: hyper::Method,
        req: &Q,
        fallback: &'static str,
    ) -> Result<(), CallError> {
        let body = serde_json::to_vec(req)?;
        let path = self.path.clone();
        self.timed(
            async {
                self.exchange_bytes(method, &path, Some(body)).await?;
                Ok(())
            },
            fallback,
        )
        .await
    }

    async fn timed<A>(
        &self,
        work: impl std::future::Future<Output = Result<A, CallError>>,
        fallback: &'static str,
    ) -> Result<A, CallError> {
        let r = match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout(self.timeout)),
        };
        if let Err(e) = &r {
            let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
            if let Some(left_out) =
                crate::repeat::check(("plugin", self.kind, &self.name, e.kind()))
            {
                tracing::warn!(
                    kind = self.kind, name = %esc(&self.name), error = %esc(&e.to_string()), failures, left_out,
                    "plugin call failed: {fallback}"
                );
            }
        }
        r
    }

    async fn exchange<A: DeserializeOwned>(
        &self,
        method: hyper::Method,
        target: &str,
        body: Option<Vec<u8>>,
    ) -> Result<A, CallError> {
        let body = self.exchange_bytes(method, target, body).await?;
        Ok(serde_json::from_slice(&body)?)
    }

    async fn exchange_bytes(
        &self,
        method: hyper::Method,
        target: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, CallError> {
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(target)
            .header(hyper::header::HOST, self.authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if !self.token.is_empty() {
            builder = builder.header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            );
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(CallError::Request)?;
        let (mut sender, reused) = self.sender().await?;
        let resp = match sender.try_send_request(request).await {
            Ok(resp) => resp,
            // A kept connection the plugin closed while it was idle: the
            // request was not sent, so it goes once more on a new one,
            // as Go's client does.
            Err(mut e) if reused && e.message().is_some() => {
                let Some(request) = e.take_message() else {
                    return Err(e.into_error().into());
                };
                sender = self.connect().await?;
                sender.send_request(request).await?
            }
            Err(e) => return Err(e.into_error().into()),
        };
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(CallError::Status(status));
        }
        let body = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| match e.downcast::<hyper::Error>() {
                Ok(e) => CallError::Http(*e),
                Err(_) => CallError::TooLarge,
            })?
            .to_bytes();
        self.give_back(sender);
        Ok(body)
    }

    /// An idle connection that can take a request (and `true`), or a new
    /// one.
    async fn sender(&self) -> Result<(SendRequest<Full<Bytes>>, bool), CallError> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match idle {
                Some(mut s) if !s.is_closed() => {
                    if s.ready().await.is_ok() {
                        return Ok((s, true));
                    }
                }
                Some(_) => {}
                None => break,
            }
        }
        Ok((self.connect().await?, false))
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, CallError> {
        let tcp = tokio::net::TcpStream::connect(self.authority.as_str())
            .await
            .map_err(|e| CallError::Connect(self.authority.clone(), e))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            // The connection ends when the plugin closes it or the sender
            // is dropped; either way there is nobody to tell.
            let _ = conn.await;
        });
        Ok(sender)
    }

    fn give_back(&self, sender: SendRequest<Full<Bytes>>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(sender);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(addr: &str) -> PluginConfig {
        PluginConfig {
            r#type: "http".into(),
            addr: addr.into(),
            ..Default::default()
        }
    }

    #[test]
    fn addresses_as_gost_takes_them() {
        let p = HttpPlugin::new("auther", "a", &cfg("http://127.0.0.1:8000/auth")).unwrap();
        assert_eq!(
            (p.authority.as_str(), p.path.as_str()),
            ("127.0.0.1:8000", "/auth")
        );
        let p = HttpPlugin::new("auther", "a", &cfg("localhost:80")).unwrap();
        assert_eq!(
            (p.authority.as_str(), p.path.as_str()),
            ("localhost:80", "/")
        );
        assert_eq!(p.timeout, DEFAULT_TIMEOUT);
        for bad in ["http://nohost/x", "ftp://h:1/x", ""] {
            let e = HttpPlugin::new("bypass", "b", &cfg(bad))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("bypass \"b\"") && e.contains("not http://"),
                "{bad}: {e}"
            );
        }
        let e = HttpPlugin::new("hosts", "h", &cfg("https://h:1/x")).unwrap_err();
        assert!(e.to_string().contains("https"), "{e}");
        let mut grpc = cfg("h:1");
        grpc.r#type = "grpc".into();
        let e = HttpPlugin::new("hosts", "h", &grpc).unwrap_err();
        assert!(e.to_string().contains("'grpc'"), "{e}");
    }
}
