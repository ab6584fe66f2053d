//! The `wasm` handler on a UDP listener: a plugin of the `datagram` world
//! decides for each datagram a client sends whether to answer it itself,
//! forward it through the service's router, or drop it.
//!
//! The host keeps the client's session as GOST's UDP listener does (one
//! per client address, ended after the listener's `ttl` without
//! traffic). A session has one upstream at a time: the address the plugin
//! last forwarded to; forwarding to another replaces it. Answers from the
//! upstream go back to the client as they are. Each datagram is one call
//! on a pooled instance, so a plugin keeps no per-session state.

use std::sync::Arc;

use gost_chain::router::{Router, UdpUpstream};
use gost_handler::{ConnContext, HandleFuture, Handler, HandlerError};
use gost_transport::listener::udp::UdpConn;
use gost_transport::listener::Conn;

use super::bindings::datagram::{DatagramInfo, DatagramPre, Verdict};
use super::pool::Pool;
use super::spec::PluginSpec;
use super::state::PluginState;
use super::PluginError;

pub struct WasmDatagramHandler {
    pool: Arc<Pool<DatagramPre<PluginState>>>,
    router: Router,
}

/// Loads the plugin (a bad file stops start-up with its reason) and
/// watches its file.
pub fn build(
    spec: PluginSpec,
    service: &str,
    router: Router,
) -> Result<Arc<WasmDatagramHandler>, PluginError> {
    Ok(Arc::new(WasmDatagramHandler {
        pool: Pool::watched(spec, service)?,
        router,
    }))
}

impl WasmDatagramHandler {
    async fn verdict(&self, ctx: &ConnContext, data: Vec<u8>) -> Result<Verdict, HandlerError> {
        let mut w = self.pool.acquire().await.map_err(HandlerError::Plugin)?;
        let info = DatagramInfo {
            service: ctx.service.to_string(),
            client_addr: ctx.peer.to_string(),
        };
        w.arm();
        match w
            .bindings
            .call_on_datagram(&mut w.store, &info, &data)
            .await
        {
            Ok(v) => {
                self.pool.release(w);
                Ok(v)
            }
            // The instance may be in any state after a trap: dropped.
            Err(e) => Err(HandlerError::Plugin(self.pool.failure(&w.store, &e))),
        }
    }

    async fn serve(&self, mut client: UdpConn, ctx: ConnContext) -> Result<(), HandlerError> {
        let mut upstream: Option<(String, UdpUpstream)> = None;
        let mut buf = vec![0u8; client.max_datagram.max(1)];
        let ttl = client.ttl;
        let mut deadline = tokio::time::Instant::now() + ttl;
        loop {
            tokio::select! {
                dgram = client.recv() => {
                    let Some(dgram) = dgram else { return Ok(()) };
                    if let Some(s) = &ctx.stats {
                        s.add_input(dgram.len() as u64);
                    }
                    deadline = tokio::time::Instant::now() + ttl;
                    match self.verdict(&ctx, dgram).await? {
                        Verdict::Drop => {}
                        Verdict::Reply(bytes) => {
                            client.send(&bytes).await?;
                            if let Some(s) = &ctx.stats {
                                s.add_output(bytes.len() as u64);
                            }
                        }
                        Verdict::Forward(to) => {
                            if upstream.as_ref().is_none_or(|(a, _)| *a != to.address) {
                                let up = self.router.dial_udp(&to.address, ctx.peer.ip()).await?;
                                upstream = Some((to.address, up));
                            }
                            if let Some((_, up)) = upstream.as_mut() {
                                match up.send(&to.data).await {
                                    Ok(()) => {}
                                    // A closed port answers with ICMP; the
                                    // datagram is lost as it would be
                                    // without a proxy.
                                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                                    Err(e) => return Err(e.into()),
                                }
                            }
                        }
                    }
                }
                r = async { upstream.as_mut().map(|(_, u)| u).expect("guarded").recv(&mut buf).await }, if upstream.is_some() => {
                    let n = match r {
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                        Err(e) => return Err(e.into()),
                    };
                    client.send(&buf[..n]).await?;
                    if let Some(s) = &ctx.stats {
                        s.add_output(n as u64);
                    }
                    deadline = tokio::time::Instant::now() + ttl;
                }
                _ = tokio::time::sleep_until(deadline) => return Ok(()),
            }
        }
    }
}

impl Handler for WasmDatagramHandler {
    fn handle(&self, conn: Conn, ctx: ConnContext) -> HandleFuture<'_> {
        Box::pin(async move {
            match conn {
                Conn::Udp(u) => self.serve(u, ctx).await,
                Conn::Stream(_) => Err(HandlerError::Protocol(
                    "a datagram plugin serves UDP listeners only".into(),
                )),
            }
        })
    }
}
