//! GOST's router objects (`routers:`, go-gost/x `router`): a table from a
//! destination network to a gateway, which the TUN server asks for the
//! client that carries a network's packets (GOST: "router currently can
//! only be used in TUN device").
//!
//! As in GOST, the first route whose `dst` is the address itself or a
//! network holding it wins (the table's order, not the longest prefix);
//! with a plugin, the plugin is asked instead.
//!
//! A service holds a router through its [`Slot`], one per name for the
//! whole process: a changed router object is put in the slot and the
//! running TUN server reads it at its next packet, so no device is
//! rebuilt for a change of routes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use ipnet::IpNet;

use crate::config::RouterConfig;
use crate::plugin::{Plugin, PluginError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// As written: a network (CIDR) or one address.
    pub dst: String,
    /// `dst` as a network, when it is one.
    pub net: Option<IpNet>,
    pub gateway: String,
}

impl Route {
    /// GOST's `ParseRoute`: no route without a destination.
    pub fn parse(dst: &str, gateway: &str) -> Option<Route> {
        let dst = dst.trim();
        if dst.is_empty() {
            return None;
        }
        Some(Route {
            dst: dst.to_string(),
            net: dst.parse().ok(),
            gateway: gateway.trim().to_string(),
        })
    }

    fn matches(&self, dst: IpAddr, text: &str) -> bool {
        self.dst == text || self.net.is_some_and(|n| n.contains(&dst))
    }

    /// The gateway as an address, which the TUN server looks its clients
    /// up by.
    pub fn gateway_ip(&self) -> Option<IpAddr> {
        self.gateway.parse().ok()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("router \"{name}\": {what} is not supported yet (inline routes or an http plugin)")]
    Loader { name: String, what: &'static str },
    #[error("router \"{name}\": route {dst:?} -> {gateway:?}: {why}")]
    Route {
        name: String,
        dst: String,
        gateway: String,
        why: &'static str,
    },
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

#[derive(Debug)]
pub struct Router {
    name: String,
    routes: Vec<Route>,
    plugin: Option<Plugin>,
}

impl Router {
    /// GOST's `ParseRouter`: `dst` (or the deprecated `net`) with a
    /// gateway. A route with either half empty is skipped, as GOST skips
    /// it; a `dst` that is neither a network nor an address is refused,
    /// where GOST keeps a route that can never match.
    pub fn from_config(cfg: &RouterConfig) -> Result<Router, RouterError> {
        if let Some(p) = &cfg.plugin {
            return Ok(Router {
                name: cfg.name.clone(),
                routes: Vec::new(),
                plugin: Some(Plugin::new_http("router", &cfg.name, p)?),
            });
        }
        for (what, set) in [
            ("file", cfg.file.is_some()),
            ("redis", cfg.redis.is_some()),
            ("http", cfg.http.is_some()),
            ("reload", !cfg.reload.0.is_zero()),
        ] {
            if set {
                return Err(RouterError::Loader {
                    name: cfg.name.clone(),
                    what,
                });
            }
        }
        let mut routes = Vec::new();
        for r in &cfg.routes {
            let dst = if r.dst.is_empty() { &r.net } else { &r.dst };
            if dst.trim().is_empty() || r.gateway.trim().is_empty() {
                continue;
            }
            let Some(route) = Route::parse(dst, &r.gateway) else {
                continue;
            };
            let bad = |why| RouterError::Route {
                name: cfg.name.clone(),
                dst: dst.clone(),
                gateway: r.gateway.clone(),
                why,
            };
            if route.net.is_none() && route.dst.parse::<IpAddr>().is_err() {
                return Err(bad(
                    "the destination is neither a network (CIDR) nor an address",
                ));
            }
            routes.push(route);
        }
        Ok(Router {
            name: cfg.name.clone(),
            routes,
            plugin: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The route for `dst`. A plugin is asked as GOST's
    /// `router/plugin/http.go` asks it: `GET` with `dst` in the query,
    /// `{net, dst, gateway}` back; a failed call is no route, as in GOST.
    pub async fn route(&self, dst: IpAddr) -> Option<Route> {
        let text = dst.to_string();
        let Some(p) = &self.plugin else {
            return self.routes.iter().find(|r| r.matches(dst, &text)).cloned();
        };
        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(default)]
            net: String,
            #[serde(default)]
            dst: String,
            #[serde(default)]
            gateway: String,
        }
        let a: Answer = p.get_json(&[("dst", &text)], "no route").await.ok()?;
        let d = if a.dst.is_empty() { a.net } else { a.dst };
        Route::parse(&d, &a.gateway)
    }
}

/// Where a running service finds the router of a name now.
pub type Slot = Arc<RwLock<Option<Arc<Router>>>>;

/// The slot of router `name` (made empty on first use).
pub fn slot(name: &str) -> Slot {
    static ALL: OnceLock<Mutex<HashMap<String, Slot>>> = OnceLock::new();
    ALL.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(name.to_string())
        .or_default()
        .clone()
}

/// Puts `router` in its name's slot and gives the slot.
pub fn publish(router: Router) -> Slot {
    let s = slot(&router.name);
    *s.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(router));
    s
}

/// The router in `slot` now.
pub fn current(slot: &Slot) -> Option<Arc<Router>> {
    slot.read().unwrap_or_else(|p| p.into_inner()).clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouterRouteConfig;

    fn route(net: &str, dst: &str, gw: &str) -> RouterRouteConfig {
        RouterRouteConfig {
            net: net.into(),
            dst: dst.into(),
            gateway: gw.into(),
        }
    }

    #[tokio::test]
    async fn the_first_matching_route_wins_as_in_gost() {
        let cfg = RouterConfig {
            name: "r".into(),
            routes: vec![
                route("", "10.0.0.0/8", "192.168.123.2"),
                route("", "10.1.0.0/16", "192.168.123.3"),
                route("172.16.0.0/12", "", "192.168.123.4"),
                route("", "192.0.2.7", "192.168.123.5"),
                route("", "198.51.100.0/24", ""),
            ],
            ..Default::default()
        };
        let r = Router::from_config(&cfg).unwrap();
        let gw = |ip: &str| {
            let r = &r;
            let ip: IpAddr = ip.parse().unwrap();
            async move { r.route(ip).await.map(|r| r.gateway) }
        };
        assert_eq!(gw("10.1.2.3").await.as_deref(), Some("192.168.123.2"));
        assert_eq!(gw("172.20.0.1").await.as_deref(), Some("192.168.123.4"));
        assert_eq!(gw("192.0.2.7").await.as_deref(), Some("192.168.123.5"));
        assert_eq!(gw("192.0.2.8").await, None);
        assert_eq!(gw("198.51.100.1").await, None, "no gateway, no route");
    }

    #[test]
    fn loaders_and_bad_destinations_are_refused() {
        let cfg = RouterConfig {
            name: "r".into(),
            routes: vec![route("", "nonsense", "1.2.3.4")],
            ..Default::default()
        };
        let e = Router::from_config(&cfg).unwrap_err().to_string();
        assert!(e.contains("router \"r\"") && e.contains("nonsense"), "{e}");
        let cfg = RouterConfig {
            name: "r".into(),
            file: Some(Default::default()),
            ..Default::default()
        };
        let e = Router::from_config(&cfg).unwrap_err().to_string();
        assert!(e.contains("file"), "{e}");
    }

    /// GOST's HTTP router plugin: `GET ?dst=`, the route from `dst` or
    /// else `net`; a refused call is no route.
    #[tokio::test]
    async fn the_plugin_is_asked_as_gost_asks_it() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut c, _) = l.accept().await.unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = c.read(&mut b).await.unwrap();
                head.extend_from_slice(&b[..n]);
            }
            let body = r#"{"net": "10.0.0.0/8", "gateway": "192.168.123.2"}"#;
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            c.write_all(resp.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&head).into_owned()
        });
        let plugin = |addr: String| RouterConfig {
            name: "rp".into(),
            plugin: Some(crate::config::PluginConfig {
                r#type: "http".into(),
                addr,
                ..Default::default()
            }),
            ..Default::default()
        };
        let r = Router::from_config(&plugin(format!("http://{addr}/router"))).unwrap();
        let got = r.route("10.1.2.3".parse().unwrap()).await.unwrap();
        assert_eq!(
            (got.net, got.gateway.as_str()),
            (Some("10.0.0.0/8".parse().unwrap()), "192.168.123.2")
        );
        let head = server.await.unwrap();
        assert!(head.starts_with("GET /router?dst=10.1.2.3 "), "{head}");
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gone = closed.local_addr().unwrap();
        drop(closed);
        let r = Router::from_config(&plugin(format!("http://{gone}/router"))).unwrap();
        assert_eq!(r.route("10.1.2.3".parse().unwrap()).await, None);
    }

    #[tokio::test]
    async fn a_published_router_replaces_the_one_in_its_slot() {
        let make = |gw: &str| {
            Router::from_config(&RouterConfig {
                name: "router-slot-test".into(),
                routes: vec![route("", "10.0.0.0/8", gw)],
                ..Default::default()
            })
            .unwrap()
        };
        let held = publish(make("192.168.123.2"));
        publish(make("192.168.123.3"));
        let now = current(&held).unwrap();
        let r = now.route("10.0.0.1".parse().unwrap()).await.unwrap();
        assert_eq!(r.gateway, "192.168.123.3");
    }
}
