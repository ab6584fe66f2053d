//! GOST's service discovery (`sds:`, go-gost/core `sd`, go-gost/x
//! `sd/plugin`): where each tunnel's clients are registered when several
//! public tunnel servers share the work. A tunnel handler registers each
//! client that binds with it (the tunnel id as the service name, the
//! handler's node id, its entry point as the address), renews it while it
//! stays, deregisters it when it leaves, and asks for a tunnel it has no
//! client of, to forward the visitor to the entry point of a node that
//! has one.
//!
//! The operations sit behind [`Sd`] so another plugin protocol (gRPC)
//! can be added beside GOST's HTTP one.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use crate::config::SDConfig;
use crate::plugin::{CallError, Plugin, PluginError};

/// One registered instance, in GOST's JSON form (its HTTP plugin's
/// `sdService`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Service {
    /// The instance: the tunnel client's connector id.
    pub id: String,
    /// The tunnel id.
    pub name: String,
    /// The tunnel handler's node id.
    pub node: String,
    /// `tcp` or `udp`.
    pub network: String,
    /// The node's entry point, where other nodes send its visitors.
    pub address: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SdError {
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error("sd \"{name}\": {error}")]
    Call { name: String, error: CallError },
}

pub type SdFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, SdError>> + Send + 'a>>;

/// GOST's `sd.SD`.
pub trait Sd: Send + Sync + std::fmt::Debug {
    fn register<'a>(&'a self, service: &'a Service) -> SdFuture<'a, ()>;
    fn deregister<'a>(&'a self, service: &'a Service) -> SdFuture<'a, ()>;
    fn renew<'a>(&'a self, service: &'a Service) -> SdFuture<'a, ()>;
    /// The instances registered under `name`.
    fn get<'a>(&'a self, name: &'a str) -> SdFuture<'a, Vec<Service>>;
}

/// The sd object `cfg` describes: GOST's HTTP plugin, or without a
/// plugin this process's own registry of that name (GOST has none and
/// ignores such an object), which several tunnel services of one gost
/// can share.
pub fn from_config(cfg: &SDConfig) -> Result<Arc<dyn Sd>, SdError> {
    match &cfg.plugin {
        Some(p) => Ok(Arc::new(HttpSd {
            plugin: Plugin::new_http("sd", &cfg.name, p)?,
            name: cfg.name.clone(),
        })),
        None => Ok(MemorySd::named(&cfg.name)),
    }
}

/// GOST's HTTP sd plugin: the one URL with `POST` (register), `PUT`
/// (renew), `DELETE` (deregister), each with the service as its JSON
/// body and `200` for success, and `GET ?name=` answered
/// `{"services": [...]}`.
#[derive(Debug)]
pub struct HttpSd {
    plugin: Plugin,
    name: String,
}

impl HttpSd {
    fn err(&self, error: CallError) -> SdError {
        SdError::Call {
            name: self.name.clone(),
            error,
        }
    }

    async fn send(
        &self,
        method: hyper::Method,
        service: &Service,
        fallback: &'static str,
    ) -> Result<(), SdError> {
        self.plugin
            .send_json(method, service, fallback)
            .await
            .map_err(|e| self.err(e))
    }
}

impl Sd for HttpSd {
    fn register<'a>(&'a self, service: &'a Service) -> SdFuture<'a, ()> {
        Box::pin(self.send(hyper::Method::POST, service, "not registered"))
    }

    fn deregister<'a>(&'a self, service: &'a Service) -> SdFuture<'a, ()> {
        Box::pin(self.send(hyper::Method::DELETE, service, "not deregistered"))
    }

    fn renew<'a>(&'a self, service: &'a Service) -> SdFuture<'a, ()> {
        Box::pin(self.send(hyper::Method::PUT, service, "not renewed"))
    }

    fn get<'a>(&'a self, name: &'a str) -> SdFuture<'a, Vec<Service>> {
        Box::pin(async move {
            #[derive(Deserialize)]
            struct Answer {
                #[serde(default)]
                services: Vec<Option<Service>>,
            }
            let a: Answer = self
                .plugin
                .get_json(&[("name", name)], "no other node")
                .await
                .map_err(|e| self.err(e))?;
            Ok(a.services.into_iter().flatten().collect())
        })
    }
}

/// An sd kept in this process, one per name, so a rebuilt handler finds
/// the registrations made before.
#[derive(Debug, Default)]
pub struct MemorySd {
    services: Mutex<HashMap<String, Vec<Service>>>,
}

/// Registrations one name holds at most; more are dropped (a visitor then
/// reaches the tunnel through the nodes already listed).
const MAX_PER_NAME: usize = 1024;

impl MemorySd {
    fn named(name: &str) -> Arc<dyn Sd> {
        static ALL: OnceLock<Mutex<HashMap<String, Arc<MemorySd>>>> = OnceLock::new();
        let mut all = ALL
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        all.entry(name.to_string()).or_default().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Service>>> {
        self.services.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Sd for MemorySd {
    fn register<'a>(&'a self, service: &'a Service) -> SdFuture<'a, ()> {
        let mut map = self.lock();
        let list = map.entry(service.name.clone()).or_default();
        list.retain(|s| !(s.id == service.id && s.node == service.node));
        if list.len() < MAX_PER_NAME {
            list.push(service.clone());
        }
        Box::pin(async { Ok(()) })
    }

    fn deregister<'a>(&'a self, service: &'a Service) -> SdFuture<'a, ()> {
        let mut map = self.lock();
        if let Some(list) = map.get_mut(&service.name) {
            list.retain(|s| !(s.id == service.id && s.node == service.node));
            if list.is_empty() {
                map.remove(&service.name);
            }
        }
        Box::pin(async { Ok(()) })
    }

    fn renew<'a>(&'a self, _service: &'a Service) -> SdFuture<'a, ()> {
        // Registrations here end only by deregistering, so there is no
        // lease to extend.
        Box::pin(async { Ok(()) })
    }

    fn get<'a>(&'a self, name: &'a str) -> SdFuture<'a, Vec<Service>> {
        let list = self.lock().get(name).cloned().unwrap_or_default();
        Box::pin(async { Ok(list) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_is_gosts() {
        let s = Service {
            id: "c".into(),
            name: "t".into(),
            node: "n".into(),
            network: "tcp".into(),
            address: "127.0.0.1:8000".into(),
        };
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({"id": "c", "name": "t", "node": "n", "network": "tcp", "address": "127.0.0.1:8000"})
        );
        let back: Service = serde_json::from_str(r#"{"name": "t", "node": "n"}"#).unwrap();
        assert_eq!((back.name.as_str(), back.id.as_str()), ("t", ""));
    }

    #[tokio::test]
    async fn the_in_process_sd_is_shared_by_name() {
        let cfg = SDConfig {
            name: "sd-test-shared".into(),
            plugin: None,
        };
        let (a, b) = (from_config(&cfg).unwrap(), from_config(&cfg).unwrap());
        let s = Service {
            id: "c1".into(),
            name: "t1".into(),
            node: "n1".into(),
            network: "tcp".into(),
            address: ":1".into(),
        };
        a.register(&s).await.unwrap();
        a.register(&s).await.unwrap();
        assert_eq!(b.get("t1").await.unwrap(), vec![s.clone()]);
        assert!(b.get("t2").await.unwrap().is_empty());
        let gone = Service {
            network: String::new(),
            address: String::new(),
            ..s
        };
        b.deregister(&gone).await.unwrap();
        assert!(a.get("t1").await.unwrap().is_empty());
    }

    #[test]
    fn a_grpc_plugin_is_refused_here() {
        let cfg = SDConfig {
            name: "s".into(),
            plugin: Some(crate::config::PluginConfig {
                r#type: "grpc".into(),
                addr: "127.0.0.1:1".into(),
                ..Default::default()
            }),
        };
        let e = from_config(&cfg).unwrap_err().to_string();
        assert!(e.contains("grpc"), "{e}");
    }
}
