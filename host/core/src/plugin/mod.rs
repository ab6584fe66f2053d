//! GOST's plugin protocols (go-gost/x `internal/plugin` and each module's
//! `plugin/http.go` and `plugin/grpc.go`): a decision is one call to an
//! external server, over HTTP (a JSON body, `200` and a JSON answer) or
//! gRPC (a unary call of the module's service). Everything else (refused
//! connection, another status, an answer that is not the expected message,
//! too large, too late) is a failed call, and each module decides what a
//! failed call means for its decision, as GOST's client does.
//!
//! One client serves every module and both protocols: a module builds the
//! request message of `gost_proto::plugin` and gets its answer back; which
//! protocol carries it is the plugin's `type`.

mod http;

#[cfg(feature = "grpc-plugin")]
mod grpc;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gost_proto::plugin::Call;

use crate::config::PluginConfig;
use crate::escape::esc;

/// GOST's client waits without limit when `timeout` is unset; gost-rs
/// bounds every decision, so a hung plugin cannot hold connections forever.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Every GOST plugin answer is a small message; a larger one is a broken
/// or hostile plugin and is not read further.
pub const MAX_ANSWER: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{owner}: plugin type '{ty}' is not supported (http, grpc)")]
    Type { owner: String, ty: String },
    #[error("{owner}: plugin type 'grpc' is not in this build (feature grpc-plugin)")]
    NoGrpc { owner: String },
    #[error("{owner}: plugin addr \"{addr}\" is not {form}")]
    Addr {
        owner: String,
        addr: String,
        form: &'static str,
    },
    #[error("{owner}: https plugin addresses are not supported yet")]
    Https { owner: String },
    #[error("{owner}: plugin token is not a valid header value")]
    Token { owner: String },
    #[error("{owner}: plugin type '{ty}' is not supported here (http only)")]
    HttpOnly { owner: String, ty: String },
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
    #[cfg(feature = "grpc-plugin")]
    #[error("gRPC: {0}")]
    Grpc(Box<tonic::Status>),
    #[cfg(feature = "grpc-plugin")]
    #[error("this call is made over HTTP only")]
    NotHttp,
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
            #[cfg(feature = "grpc-plugin")]
            CallError::NotHttp => "not-http",
            #[cfg(feature = "grpc-plugin")]
            CallError::Grpc(s) => s.code().description(),
        }
    }
}

enum Client {
    Http(http::HttpClient),
    /// Boxed: tonic's endpoint settings are large.
    #[cfg(feature = "grpc-plugin")]
    Grpc(Box<grpc::GrpcClient>),
}

/// A module's plugin: `kind` and `name` as GOST's log fields name the
/// object (`auther`, `"auther-0"`).
pub struct Plugin {
    kind: &'static str,
    name: String,
    timeout: Duration,
    client: Client,
    failures: AtomicU64,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let protocol = match &self.client {
            Client::Http(_) => "http",
            #[cfg(feature = "grpc-plugin")]
            Client::Grpc(_) => "grpc",
        };
        f.debug_struct("Plugin")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("protocol", &protocol)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// `cfg.type` as GOST reads it: `http`, or `grpc` (also GOST's
    /// choice when `type` is left out).
    pub fn new(kind: &'static str, name: &str, cfg: &PluginConfig) -> Result<Self, PluginError> {
        let owner = format!("{kind} \"{name}\"");
        let client = match cfg.r#type.as_str() {
            "http" => Client::Http(http::HttpClient::new(&owner, cfg)?),
            #[cfg(feature = "grpc-plugin")]
            "grpc" | "" => Client::Grpc(Box::new(grpc::GrpcClient::new(&owner, cfg)?)),
            #[cfg(not(feature = "grpc-plugin"))]
            "grpc" | "" => return Err(PluginError::NoGrpc { owner }),
            other => {
                return Err(PluginError::Type {
                    owner,
                    ty: other.to_string(),
                })
            }
        };
        Ok(Plugin {
            kind,
            name: name.to_string(),
            timeout: if cfg.timeout.0.is_zero() {
                DEFAULT_TIMEOUT
            } else {
                cfg.timeout.0
            },
            client,
            failures: AtomicU64::new(0),
        })
    }

    /// Failed calls so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Sends `req` and decodes the answer. A failure is counted and logged
    /// (one line per kind of failure and interval) with `fallback`, what
    /// the module decides instead, and then returned.
    pub async fn call<Q: Call + Send + Sync>(
        &self,
        req: Q,
        fallback: &'static str,
    ) -> Result<Q::Reply, CallError>
    where
        Q::Reply: Send,
    {
        let work = async {
            match &self.client {
                Client::Http(c) => c.call(&req).await,
                #[cfg(feature = "grpc-plugin")]
                Client::Grpc(c) => c.call(req).await,
            }
        };
        self.timed(work, fallback).await
    }

    /// A plugin that speaks GOST's HTTP protocol only (sd, router: GOST
    /// defines their gRPC services too, which gost-rs does not speak yet).
    pub fn new_http(
        kind: &'static str,
        name: &str,
        cfg: &PluginConfig,
    ) -> Result<Self, PluginError> {
        if cfg.r#type != "http" {
            return Err(PluginError::HttpOnly {
                owner: format!("{kind} \"{name}\""),
                ty: cfg.r#type.clone(),
            });
        }
        Self::new(kind, name, cfg)
    }

    /// Sends `body` with `method` to the plugin's URL and takes a `200` as
    /// success, the answer unread beyond its size limit: GOST's sd plugin
    /// registers (`POST`), renews (`PUT`) and deregisters (`DELETE`) so.
    /// Failures as in [`Plugin::call`].
    pub async fn send_json<Q: serde::Serialize + Sync>(
        &self,
        method: hyper::Method,
        body: &Q,
        fallback: &'static str,
    ) -> Result<(), CallError> {
        let work = async {
            let c = match &self.client {
                Client::Http(c) => c,
                #[cfg(feature = "grpc-plugin")]
                Client::Grpc(_) => return Err(CallError::NotHttp),
            };
            let body = serde_json::to_vec(body)?;
            c.exchange(method, c.path(), Some(body)).await.map(|_| ())
        };
        self.timed(work, fallback).await
    }

    /// GETs the plugin's URL with `query` added and decodes the JSON
    /// answer, as GOST's sd and router plugins are asked. Failures as in
    /// [`Plugin::call`].
    pub async fn get_json<A: serde::de::DeserializeOwned>(
        &self,
        query: &[(&str, &str)],
        fallback: &'static str,
    ) -> Result<A, CallError> {
        let work = async {
            let c = match &self.client {
                Client::Http(c) => c,
                #[cfg(feature = "grpc-plugin")]
                Client::Grpc(_) => return Err(CallError::NotHttp),
            };
            let body = c
                .exchange(hyper::Method::GET, &c.with_query(query), None)
                .await?;
            Ok(serde_json::from_slice(&body)?)
        };
        self.timed(work, fallback).await
    }

    /// Runs one call within the plugin's timeout; a failure is counted and
    /// logged (one line per kind of failure and interval) with `fallback`,
    /// what the module decides instead, and then returned.
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
}
