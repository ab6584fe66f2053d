//! A forwarder whose hop picks nodes with a plugin of the `forwarder`
//! world: `hops: [{name, plugin: {type: wasm, path}}]` referenced by
//! `forwarder: {hop: NAME}`.
//!
//! Before asking the plugin, the host peeks at the client's first bytes
//! (without consuming them) for a TLS SNI or HTTP `Host`, so a plugin can
//! route by name. After dialing the chosen node it reports the outcome and
//! the dial latency through `feedback`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gost_core::stream::Stream;
use wasmtime::Store;

use super::bindings::forwarder::{
    Forwarder as ForwarderWorld, ForwarderPre, Node as WitNode, RequestInfo, Selection,
};
use super::load::{self, World};
use super::spec::PluginSpec;
use super::state::{Identity, PluginState};
use super::{runtime, sniff, PluginError};
use gost_chain::chain::Node;
use gost_chain::relay::{self, RelayOptions};
use gost_chain::router::Router;
use gost_handler::{ConnContext, HandleFuture, Handler, HandlerError};
use gost_transport::listener::Conn;

/// How long the host waits for the client's first bytes before asking the
/// plugin without a host name (clients of server-first protocols send
/// nothing).
const SNIFF_WAIT: Duration = Duration::from_millis(300);
const SNIFF_BYTES: usize = 4096;

pub struct WasmForwardHandler {
    hop: String,
    spec: PluginSpec,
    id: Identity,
    /// The module and its generation; replaced on reload.
    pre: super::reload::Versioned<ForwarderPre<PluginState>>,
    nodes: Vec<Arc<Node>>,
    wit_nodes: Vec<WitNode>,
    router: Router,
    idle_timeout: Option<Duration>,
    instance: tokio::sync::Mutex<Option<Instance>>,
}

struct Instance {
    store: Store<PluginState>,
    world: ForwarderWorld,
    generation: u64,
}

/// Where the plugin sent a connection.
enum Target {
    Node(usize),
    Address(String),
}

impl WasmForwardHandler {
    pub fn new(
        hop: &str,
        service: &str,
        spec: PluginSpec,
        nodes: Vec<Arc<Node>>,
        router: Router,
        idle_timeout: Option<Duration>,
    ) -> Result<Self, PluginError> {
        let pre = compile(&spec)?;
        let wit_nodes = nodes
            .iter()
            .map(|n| WitNode {
                name: n.name.clone(),
                addr: n.addr.clone(),
            })
            .collect();
        Ok(WasmForwardHandler {
            hop: hop.into(),
            id: Identity {
                plugin: spec.name.clone(),
                owner: service.into(),
                config: spec.config.clone(),
            },
            spec,
            pre: super::reload::Versioned::new(pre),
            nodes,
            wit_nodes,
            router,
            idle_timeout,
            instance: tokio::sync::Mutex::new(None),
        })
    }

    fn err(&self, msg: impl std::fmt::Display) -> HandlerError {
        HandlerError::Plugin(format!(
            "plugin {} (hop {}): {msg}",
            self.spec.name, self.hop
        ))
    }

    /// Runs `f` on the hop's instance, creating it on first use and
    /// dropping it after a trap.
    async fn with_instance<R>(
        &self,
        f: impl AsyncFnOnce(&mut Store<PluginState>, &ForwarderWorld) -> wasmtime::Result<R>,
    ) -> Result<R, HandlerError> {
        let mut slot = self.instance.lock().await;
        let (pre, generation) = self.pre.get();
        if slot.as_ref().is_none_or(|i| i.generation != generation) {
            let rt = runtime().map_err(|e| self.err(e))?;
            let mut store = load::new_store(&rt.engine, &self.spec, self.id.clone(), None)
                .map_err(|e| self.err(e))?;
            let world = pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| self.err(store.data().describe_failure(&e)))?;
            *slot = Some(Instance {
                store,
                world,
                generation,
            });
        }
        let Some(Instance { store, world, .. }) = slot.as_mut() else {
            return Err(self.err("no instance"));
        };
        store.data_mut().resumed_at = Instant::now();
        store.set_epoch_deadline(1);
        match f(store, world).await {
            Ok(r) => Ok(r),
            Err(e) => {
                let what = store.data().describe_failure(&e);
                *slot = None;
                Err(self.err(what))
            }
        }
    }

    async fn select(&self, req: RequestInfo) -> Result<Target, HandlerError> {
        let nodes = &self.wit_nodes;
        let sel = self
            .with_instance(async |store, inst| inst.call_select(store, &req, nodes).await)
            .await?;
        match sel {
            Selection::Node(i) if (i as usize) < self.nodes.len() => Ok(Target::Node(i as usize)),
            Selection::Node(i) => Err(self.err(format!(
                "selected node {i}, but the hop has {} nodes",
                self.nodes.len()
            ))),
            Selection::Address(a) if gost_core::addr::split_host_port(&a).is_ok() => {
                Ok(Target::Address(a))
            }
            Selection::Address(a) => {
                Err(self.err(format!("selected address {a:?}, not host:port")))
            }
            Selection::Reject(why) => {
                Err(self.err(format!("rejected: {}", gost_core::escape::esc(why))))
            }
        }
    }

    async fn serve(&self, conn: Conn, ctx: ConnContext) -> Result<(), HandlerError> {
        let mut conn = conn;
        let host = match &mut conn {
            Conn::Stream(client) => match peek_host(client).await {
                Peeked::Host(h) => h,
                Peeked::NoHost => String::new(),
                // Nothing to route: the client left before sending anything.
                Peeked::Closed => return Ok(()),
            },
            // A datagram names no host the host could sniff.
            Conn::Udp(_) => String::new(),
        };
        let req = RequestInfo {
            service: ctx.service.to_string(),
            network: conn.network().into(),
            client_addr: ctx.peer.to_string(),
            host,
        };
        let target = self.select(req).await?;
        let (addr, node) = match &target {
            Target::Node(i) => (self.nodes[*i].addr.clone(), Some(*i)),
            Target::Address(a) => (a.clone(), None),
        };
        match conn {
            Conn::Stream(client) => {
                let upstream = self
                    .dial(&ctx, node, self.router.dial_tcp(&addr, ctx.peer.ip()))
                    .await?;
                tracing::debug!(service = %ctx.service, client = %ctx.peer, dst = %gost_core::escape::esc(&addr), "forward (wasm)");
                let opts = RelayOptions {
                    idle_timeout: self.idle_timeout,
                };
                relay::relay(client, upstream, &ctx, &opts).await?;
                Ok(())
            }
            Conn::Udp(mut client) => {
                let mut upstream = self
                    .dial(&ctx, node, self.router.dial_udp(&addr, ctx.peer.ip()))
                    .await?;
                tracing::debug!(service = %ctx.service, client = %ctx.peer, dst = %gost_core::escape::esc(&addr), "udp session (wasm)");
                gost_handler::forward::relay_udp(&mut client, &mut upstream, &ctx).await
            }
        }
    }

    /// Dials the selected target and tells the plugin how a node did.
    async fn dial<T>(
        &self,
        ctx: &ConnContext,
        node: Option<usize>,
        dial: impl std::future::Future<Output = Result<T, gost_chain::router::DialError>>,
    ) -> Result<T, HandlerError> {
        let start = Instant::now();
        let dialed = dial.await;
        if let Some(i) = node {
            let (ok, us) = (dialed.is_ok(), start.elapsed().as_micros() as u64);
            let fb = self
                .with_instance(async |store, inst| {
                    inst.call_feedback(store, i as u32, ok, us).await
                })
                .await;
            if let Err(e) = fb {
                tracing::warn!(service = %ctx.service, error = %e, "forwarder feedback failed");
            }
        }
        Ok(dialed?)
    }
}

enum Peeked {
    Host(String),
    NoHost,
    Closed,
}

/// The host name in the client's first bytes, waiting briefly for the
/// rest of a ClientHello or request head that arrives in pieces. The bytes
/// are read ahead and stay in the stream for the relay.
async fn peek_host(client: &mut Stream) -> Peeked {
    let deadline = tokio::time::Instant::now() + SNIFF_WAIT;
    loop {
        let bytes = client.rewound();
        if let Some(h) = sniff::host(bytes) {
            return Peeked::Host(h);
        }
        if bytes.len() >= SNIFF_BYTES || (!bytes.is_empty() && !sniff::may_name_host(bytes)) {
            return Peeked::NoHost;
        }
        match tokio::time::timeout_at(deadline, client.read_ahead(SNIFF_BYTES)).await {
            Err(_) => return Peeked::NoHost,
            Ok(Ok(0)) | Ok(Err(_)) if client.rewound().is_empty() => return Peeked::Closed,
            Ok(Ok(0)) | Ok(Err(_)) => return Peeked::NoHost,
            Ok(Ok(_)) => {}
        }
    }
}

fn compile(spec: &PluginSpec) -> Result<ForwarderPre<PluginState>, PluginError> {
    load::prepare(spec, World::Forwarder, ForwarderPre::new)
}

/// A new module starts with a fresh instance: what the old one learned
/// from feedback is not carried over.
impl super::reload::Reload for WasmForwardHandler {
    fn plugin(&self) -> &str {
        &self.spec.name
    }

    fn reload(&self) -> Result<(), PluginError> {
        self.pre.replace(compile(&self.spec)?);
        Ok(())
    }
}

impl Handler for WasmForwardHandler {
    fn handle(&self, conn: Conn, ctx: ConnContext) -> HandleFuture<'_> {
        Box::pin(self.serve(conn, ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn host_sent_in_pieces_is_found_without_polling() {
        let (mut c, s) = gost_core::test_util::tcp_pair().await;
        c.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            c.write_all(b"st: a.example\r\n\r\n").await.unwrap();
            c
        });
        let start = Instant::now();
        let mut s = Stream::from(s);
        match peek_host(&mut s).await {
            Peeked::Host(h) => assert_eq!(h, "a.example"),
            _ => panic!("no host"),
        }
        assert!(start.elapsed() < SNIFF_WAIT);
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn silence_and_close_are_told_apart() {
        let (c, s) = gost_core::test_util::tcp_pair().await;
        let mut s = Stream::from(s);
        assert!(matches!(peek_host(&mut s).await, Peeked::NoHost));
        drop(c);
        assert!(matches!(peek_host(&mut s).await, Peeked::Closed));
        let (mut c, s) = gost_core::test_util::tcp_pair().await;
        c.write_all(b"\x05\x01\x00").await.unwrap();
        let mut s = Stream::from(s);
        assert!(matches!(peek_host(&mut s).await, Peeked::NoHost));
        assert_eq!(s.rewound(), b"\x05\x01\x00", "the bytes stay for the relay");
    }
}
