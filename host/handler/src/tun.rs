//! GOST's TUN handler (`tun`; handler/tun): joins the `tun` listener's
//! device to a UDP tunnel of bare IP packets.
//!
//! - Client (the service has a forwarder: the server's `host:port`): it
//!   dials the server over UDP, directly or through the chain, sends the
//!   keep-alive that registers its device address (and carries its
//!   `passphrase`), then relays packets each way. With `keepalive` it
//!   repeats the keep-alive every `ttl` and reconnects when the server
//!   has said nothing for three of them; any other tunnel error
//!   reconnects after a second.
//! - Server (no forwarder): it binds the service's UDP address, learns
//!   each client's tunnel address from its keep-alives (checked with the
//!   handler's auther, the tunnel address as user and the passphrase as
//!   password), and sends each packet from the device to the client that
//!   owns its destination, directly or through the listener's routes'
//!   gateways; packets between clients go client to client unless `p2p`.
//!
//! The keep-alive bytes are `gost_proto::tun`'s.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gost_chain::router::{Router, UdpUpstream};
use gost_core::auth::Auther;
use gost_core::metadata::{Metadata, MetadataError};
use gost_proto::tun as wire;
use gost_transport::listener::Conn;
use gost_transport::tun::{TunConfig, TunConn};
use tokio::net::UdpSocket;

use super::{ConnContext, HandleFuture, Handler, HandlerError};

/// GOST's keep-alive period when `keepalive` is on and `ttl` unset.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(10);
/// The largest packet either side reads (GOST's `MaxMessageSize`).
const MAX_PACKET: usize = 65535;

#[derive(Debug, Clone, Default)]
pub struct TunOptions {
    /// `keepalive` with its period `ttl`: `None` sends the keep-alive
    /// once per connection.
    pub keepalive: Option<Duration>,
    /// `passphrase` (`token`, `tun.token`): the client's, at most 16
    /// bytes on the wire.
    pub passphrase: String,
    /// `p2p`: the server sends everything to the last client heard from.
    pub p2p: bool,
}

impl TunOptions {
    pub fn from_metadata(md: &Metadata) -> Result<Self, MetadataError> {
        let first_bool = |keys: &[&str]| -> Result<bool, MetadataError> {
            for k in keys {
                if let Some(v) = md.get_bool(k)? {
                    return Ok(v);
                }
            }
            Ok(false)
        };
        let keepalive = if first_bool(&["tun.keepalive", "keepalive", "keepAlive"])? {
            let ttl = match md.get_duration("tun.ttl")? {
                Some(t) => Some(t),
                None => md.get_duration("ttl")?,
            };
            Some(ttl.filter(|t| !t.is_zero()).unwrap_or(DEFAULT_KEEPALIVE))
        } else {
            None
        };
        let mut passphrase = String::new();
        for k in ["tun.token", "token", "passphrase"] {
            if let Some(v) = md.get_string(k)? {
                passphrase = v;
                break;
            }
        }
        Ok(TunOptions {
            keepalive,
            passphrase,
            p2p: first_bool(&["tun.p2p", "p2p"])?,
        })
    }
}

/// A tunnel error that ends the handler (the listener then makes a new
/// device); any other ends one connection attempt.
#[derive(Debug, thiserror::Error)]
#[error("tun device: {0}")]
struct DeviceError(io::Error);

pub struct TunHandler {
    router: Router,
    auther: Option<Arc<dyn Auther>>,
    /// The server(s) a client dials (the forwarder's nodes), in turn.
    targets: Vec<String>,
    next: AtomicUsize,
    opts: TunOptions,
    /// The server's clients by tunnel address (GOST keeps them across
    /// devices, as the handler outlives each).
    clients: Mutex<HashMap<IpAddr, SocketAddr>>,
    /// The listener's `router`, read at each packet its own routes miss.
    router_table: Option<gost_core::router::Slot>,
}

impl TunHandler {
    pub fn new(
        router: Router,
        auther: Option<Arc<dyn Auther>>,
        targets: Vec<String>,
        opts: TunOptions,
        router_table: Option<gost_core::router::Slot>,
    ) -> Self {
        TunHandler {
            router,
            auther,
            targets,
            next: AtomicUsize::new(0),
            opts,
            clients: Mutex::default(),
            router_table,
        }
    }

    async fn serve(
        &self,
        mut stream: gost_core::stream::Stream,
        ctx: ConnContext,
    ) -> Result<(), HandlerError> {
        let Some(tun) = stream.take_attached::<TunConn>() else {
            return Err(HandlerError::Protocol(
                "the tun handler serves the device of a tun listener only".into(),
            ));
        };
        drop(stream);
        tracing::info!(service = %ctx.service, device = %tun.name, "tun handler started");
        let r = if self.targets.is_empty() {
            self.server(&tun, &ctx).await
        } else {
            self.client(&tun, &ctx).await
        };
        match r {
            Ok(()) => Ok(()),
            Err(e) => Err(HandlerError::Io(io::Error::other(e.to_string()))),
        }
    }

    async fn client(&self, tun: &TunConn, ctx: &ConnContext) -> Result<(), DeviceError> {
        let Some(net) = tun.config.net else {
            return Err(DeviceError(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a tun client needs the listener's `net`",
            )));
        };
        let hello = wire::encode_keepalive(&self.opts.passphrase, &[net.addr()]);
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.targets.len();
            let target = &self.targets[i];
            let err = match self.router.dial_udp(target, ctx.peer.ip()).await {
                Ok(mut up) => {
                    tracing::debug!(service = %ctx.service, server = %target, "tun: tunnel open");
                    match self.client_relay(tun, &mut up, &hello).await {
                        Err(ClientEnd::Device(e)) => return Err(e),
                        Err(ClientEnd::Tunnel(e)) => e.to_string(),
                    }
                }
                Err(e) => e.to_string(),
            };
            tracing::warn!(service = %ctx.service, server = %target, error = %err, "tun: tunnel to the server failed; again in 1s");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn client_relay(
        &self,
        tun: &TunConn,
        up: &mut UdpUpstream,
        hello: &[u8],
    ) -> Result<std::convert::Infallible, ClientEnd> {
        up.send(hello).await.map_err(ClientEnd::Tunnel)?;
        let period = self.opts.keepalive;
        // Without keepalive the tunnel never times out (GOST's client).
        let far = Duration::from_secs(86400 * 365);
        let mut ticker = tokio::time::interval(period.unwrap_or(far));
        ticker.tick().await;
        let silence = period.map_or(far, |p| p * 3);
        let mut deadline = tokio::time::Instant::now() + silence;
        let mut from_dev = vec![0u8; MAX_PACKET];
        let mut from_up = vec![0u8; MAX_PACKET];
        loop {
            tokio::select! {
                r = tun.device.recv(&mut from_dev) => {
                    let n = r.map_err(|e| ClientEnd::Device(DeviceError(e)))?;
                    if is_ip(&from_dev[..n]) {
                        match up.send(&from_dev[..n]).await {
                            Ok(()) => {}
                            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                            Err(e) => return Err(ClientEnd::Tunnel(e)),
                        }
                    }
                }
                r = up.recv(&mut from_up) => {
                    let n = match r {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                        Err(e) => return Err(ClientEnd::Tunnel(e)),
                    };
                    let pkt = &from_up[..n];
                    if wire::is_reply(pkt) {
                        tracing::debug!("tun: keepalive answered");
                        deadline = tokio::time::Instant::now() + silence;
                    } else if is_ip(pkt) {
                        deadline = tokio::time::Instant::now() + silence;
                        tun.device.send(pkt).await.map_err(|e| ClientEnd::Device(DeviceError(e)))?;
                    } else {
                        tracing::debug!(len = n, "tun: not an IP packet, discarded");
                    }
                }
                _ = ticker.tick(), if period.is_some() => {
                    up.send(hello).await.map_err(ClientEnd::Tunnel)?;
                }
                _ = tokio::time::sleep_until(deadline), if period.is_some() => {
                    return Err(ClientEnd::Tunnel(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no keepalive answer from the server for three periods",
                    )));
                }
            }
        }
    }

    async fn server(&self, tun: &TunConn, ctx: &ConnContext) -> Result<(), DeviceError> {
        loop {
            let sock = match UdpSocket::bind(ctx.local).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(service = %ctx.service, addr = %ctx.local, error = %e, "tun: cannot bind the tunnel's UDP port; again in 1s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            tracing::info!(service = %ctx.service, addr = %ctx.local, device = %tun.name, "tun server listening");
            let e = self.server_relay(tun, &sock, ctx).await?;
            tracing::error!(service = %ctx.service, error = %e, "tun: the tunnel's UDP socket failed; again in 1s");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Runs until the device fails (`Err`) or the socket does (`Ok`).
    async fn server_relay(
        &self,
        tun: &TunConn,
        sock: &UdpSocket,
        ctx: &ConnContext,
    ) -> Result<io::Error, DeviceError> {
        let mut from_dev = vec![0u8; MAX_PACKET];
        let mut from_sock = vec![0u8; MAX_PACKET];
        loop {
            tokio::select! {
                r = tun.device.recv(&mut from_dev) => {
                    let n = r.map_err(DeviceError)?;
                    let pkt = &from_dev[..n];
                    let Some(dst) = destination(pkt) else {
                        tracing::debug!(len = n, "tun: not an IP packet, discarded");
                        continue;
                    };
                    match self.route_for(dst, &tun.config).await {
                        Some(addr) => {
                            if let Err(e) = sock.send_to(pkt, addr).await {
                                if e.kind() != io::ErrorKind::ConnectionRefused {
                                    return Ok(e);
                                }
                            }
                        }
                        None => tracing::debug!(dst = %dst, "tun: no route, packet discarded"),
                    }
                }
                r = sock.recv_from(&mut from_sock) => {
                    let (n, from) = match r {
                        Ok(r) => r,
                        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                        Err(e) => return Ok(e),
                    };
                    let pkt = &from_sock[..n];
                    if let Some(k) = wire::parse_keepalive(pkt) {
                        self.keepalive(sock, from, k, &tun.config, ctx).await;
                        continue;
                    }
                    let Some(dst) = destination(pkt) else {
                        tracing::debug!(client = %from, len = n, "tun: not an IP packet, discarded");
                        continue;
                    };
                    if !self.opts.p2p {
                        if let Some(addr) = self.route_for(dst, &tun.config).await {
                            if let Err(e) = sock.send_to(pkt, addr).await {
                                if e.kind() != io::ErrorKind::ConnectionRefused {
                                    return Ok(e);
                                }
                            }
                            continue;
                        }
                    }
                    tun.device.send(pkt).await.map_err(DeviceError)?;
                }
            }
        }
    }

    async fn keepalive(
        &self,
        sock: &UdpSocket,
        from: SocketAddr,
        k: wire::Keepalive<'_>,
        config: &TunConfig,
        ctx: &ConnContext,
    ) {
        if k.ips.is_empty() {
            return;
        }
        // Our own address: a keep-alive looped back, as GOST ignores.
        if config.net.is_some_and(|n| k.ips.contains(&n.addr())) {
            return;
        }
        if let Some(auther) = &self.auther {
            let pass = String::from_utf8_lossy(k.passphrase);
            let mut allowed = true;
            for ip in &k.ips {
                let user = ip.to_string();
                let who = gost_core::auth::AuthRequest::new(&user, &pass).from(&ctx.service, from);
                if auther.authenticate(who).await.is_none() {
                    allowed = false;
                    break;
                }
            }
            if !allowed {
                tracing::info!(service = %ctx.service, client = %from, ips = ?k.ips, "tun: keepalive refused (authentication failed)");
                return;
            }
        }
        tracing::debug!(service = %ctx.service, client = %from, ips = ?k.ips, "tun: keepalive");
        if let Err(e) = sock
            .send_to(&wire::encode_reply(from.ip().to_canonical()), from)
            .await
        {
            tracing::debug!(client = %from, error = %e, "tun: keepalive answer failed");
            return;
        }
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        for ip in k.ips {
            let key = if self.opts.p2p {
                Ipv6Addr::UNSPECIFIED.into()
            } else {
                ip
            };
            if clients.insert(key, from) != Some(from) {
                tracing::debug!(service = %ctx.service, ip = %ip, client = %from, "tun: route to client");
            }
        }
    }

    /// The client that owns `dst`, or the one that is the gateway of the
    /// listener's route to it (the longest prefix), or else of the
    /// listener's `router`'s route (GOST's `findRouteFor`).
    async fn route_for(&self, dst: IpAddr, config: &TunConfig) -> Option<SocketAddr> {
        {
            let clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
            if self.opts.p2p {
                return clients.get(&IpAddr::from(Ipv6Addr::UNSPECIFIED)).copied();
            }
            if let Some(a) = clients.get(&dst) {
                return Some(*a);
            }
            let gw = config
                .routes
                .iter()
                .filter(|r| r.net.contains(&dst))
                .max_by_key(|r| r.net.prefix_len())
                .and_then(|r| r.gateway);
            if let Some(gw) = gw {
                return clients.get(&gw).copied();
            }
        }
        let table = gost_core::router::current(self.router_table.as_ref()?)?;
        let gw = table.route(dst).await?.gateway_ip()?;
        let clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.get(&gw).copied()
    }
}

enum ClientEnd {
    Device(DeviceError),
    Tunnel(io::Error),
}

fn is_ip(pkt: &[u8]) -> bool {
    destination(pkt).is_some()
}

/// The destination of an IPv4 or IPv6 packet.
fn destination(pkt: &[u8]) -> Option<IpAddr> {
    match pkt.first()? >> 4 {
        4 if pkt.len() >= 20 => {
            let a: [u8; 4] = pkt[16..20].try_into().ok()?;
            Some(IpAddr::from(a))
        }
        6 if pkt.len() >= 40 => {
            let a: [u8; 16] = pkt[24..40].try_into().ok()?;
            Some(IpAddr::from(a))
        }
        _ => None,
    }
}

impl Handler for TunHandler {
    fn handle(&self, conn: Conn, ctx: ConnContext) -> HandleFuture<'_> {
        super::tcp_only("tun", conn, move |s| self.serve(s, ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_of_packets() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[16..20].copy_from_slice(&[10, 0, 0, 2]);
        assert_eq!(destination(&v4), Some("10.0.0.2".parse().unwrap()));
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[39] = 1;
        assert_eq!(destination(&v6), Some("::1".parse().unwrap()));
        assert_eq!(destination(&v4[..19]), None);
        assert_eq!(destination(b"GOST"), None);
    }

    #[test]
    fn gosts_keys() {
        let m: std::collections::BTreeMap<String, serde_json::Value> =
            serde_json::from_str(r#"{"keepalive": true, "passphrase": "userpass1", "p2p": true}"#)
                .unwrap();
        let o = TunOptions::from_metadata(&Metadata::from(m)).unwrap();
        assert_eq!(o.keepalive, Some(DEFAULT_KEEPALIVE));
        assert_eq!(o.passphrase, "userpass1");
        assert!(o.p2p);
        let o = TunOptions::from_metadata(&Metadata::default()).unwrap();
        assert_eq!(o.keepalive, None);
    }
}
