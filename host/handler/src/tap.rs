//! GOST's TAP handler (`tap`; handler/tap): the `tap` listener's device
//! joined to a UDP tunnel of bare Ethernet frames. A client (a service
//! with a forwarder: the server) sends every frame of its device to the
//! server, directly or through the chain, and writes every frame it gets
//! back to the device. The server learns which client sends from which
//! MAC address: a frame for a known MAC goes to its client, a broadcast
//! to every client (and to the device), anything else to its device.
//! There is no keep-alive or authentication in GOST's TAP tunnel.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use gost_chain::router::{Router, UdpUpstream};
use gost_transport::listener::Conn;
use gost_transport::tun::TunConn;
use tokio::net::UdpSocket;

use super::{ConnContext, HandleFuture, Handler, HandlerError};

/// The largest frame either side reads (GOST's `MaxMessageSize`).
const MAX_FRAME: usize = 65535;

type Mac = [u8; 6];

pub struct TapHandler {
    router: Router,
    /// The server(s) a client sends to (the forwarder's nodes), in turn.
    targets: Vec<String>,
    next: AtomicUsize,
    /// The server's clients by MAC address.
    clients: Mutex<HashMap<Mac, SocketAddr>>,
}

/// Ends the handler: the listener makes a new device.
#[derive(Debug, thiserror::Error)]
#[error("tap device: {0}")]
struct DeviceError(io::Error);

enum End {
    Device(DeviceError),
    Tunnel(io::Error),
}

impl TapHandler {
    pub fn new(router: Router, targets: Vec<String>) -> Self {
        TapHandler {
            router,
            targets,
            next: AtomicUsize::new(0),
            clients: Mutex::default(),
        }
    }

    async fn serve(
        &self,
        mut stream: gost_core::stream::Stream,
        ctx: ConnContext,
    ) -> Result<(), HandlerError> {
        let Some(tap) = stream.take_attached::<TunConn>() else {
            return Err(HandlerError::Protocol(
                "the tap handler serves the device of a tap listener only".into(),
            ));
        };
        drop(stream);
        tracing::info!(service = %ctx.service, device = %tap.name, "tap handler started");
        // GOST's back-off between tunnel attempts: 1s doubling to 6s.
        let mut delay = Duration::ZERO;
        loop {
            let r = if self.targets.is_empty() {
                self.server(&tap, &ctx).await
            } else {
                self.client(&tap, &ctx).await
            };
            let e = match r {
                End::Device(e) => return Err(HandlerError::Io(io::Error::other(e.to_string()))),
                End::Tunnel(e) => e,
            };
            delay = (delay * 2).clamp(Duration::from_secs(1), Duration::from_secs(6));
            tracing::warn!(service = %ctx.service, error = %e, retry = ?delay, "tap: tunnel failed");
            tokio::time::sleep(delay).await;
        }
    }

    async fn client(&self, tap: &TunConn, ctx: &ConnContext) -> End {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.targets.len();
        let target = &self.targets[i];
        let mut up = match self.router.dial_udp(target, ctx.peer.ip()).await {
            Ok(up) => up,
            Err(e) => return End::Tunnel(io::Error::other(e.to_string())),
        };
        tracing::debug!(service = %ctx.service, server = %target, "tap: tunnel open");
        match client_relay(tap, &mut up).await {
            Ok(never) => match never {},
            Err(e) => e,
        }
    }

    async fn server(&self, tap: &TunConn, ctx: &ConnContext) -> End {
        let sock = match UdpSocket::bind(ctx.local).await {
            Ok(s) => s,
            Err(e) => return End::Tunnel(e),
        };
        tracing::info!(service = %ctx.service, addr = %ctx.local, device = %tap.name, "tap server listening");
        let mut from_dev = vec![0u8; MAX_FRAME];
        let mut from_sock = vec![0u8; MAX_FRAME];
        loop {
            tokio::select! {
                r = tap.device.recv(&mut from_dev) => {
                    let n = match r {
                        Ok(n) => n,
                        Err(e) => return End::Device(DeviceError(e)),
                    };
                    let frame = &from_dev[..n];
                    let Some((dst, _)) = macs(frame) else { continue };
                    let to: Vec<SocketAddr> = {
                        let clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
                        if is_broadcast(&dst) {
                            clients.values().copied().collect()
                        } else {
                            clients.get(&dst).copied().into_iter().collect()
                        }
                    };
                    for addr in to {
                        if let Err(e) = sock.send_to(frame, addr).await {
                            if e.kind() != io::ErrorKind::ConnectionRefused {
                                return End::Tunnel(e);
                            }
                        }
                    }
                }
                r = sock.recv_from(&mut from_sock) => {
                    let (n, from) = match r {
                        Ok(r) => r,
                        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                        Err(e) => return End::Tunnel(e),
                    };
                    let frame = &from_sock[..n];
                    let Some((dst, src)) = macs(frame) else {
                        tracing::debug!(client = %from, len = n, "tap: not an Ethernet frame, discarded");
                        continue;
                    };
                    let others: Vec<SocketAddr> = {
                        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
                        if clients.insert(src, from) != Some(from) {
                            tracing::debug!(service = %ctx.service, mac = %mac_text(&src), client = %from, "tap: route to client");
                        }
                        if is_broadcast(&dst) {
                            clients.iter().filter(|(m, _)| **m != src).map(|(_, a)| *a).collect()
                        } else {
                            clients.get(&dst).copied().into_iter().collect()
                        }
                    };
                    let known = !is_broadcast(&dst) && !others.is_empty();
                    for addr in others {
                        if let Err(e) = sock.send_to(frame, addr).await {
                            if e.kind() != io::ErrorKind::ConnectionRefused {
                                return End::Tunnel(e);
                            }
                        }
                    }
                    if !known {
                        if let Err(e) = tap.device.send(frame).await {
                            return End::Device(DeviceError(e));
                        }
                    }
                }
            }
        }
    }
}

async fn client_relay(
    tap: &TunConn,
    up: &mut UdpUpstream,
) -> Result<std::convert::Infallible, End> {
    let mut from_dev = vec![0u8; MAX_FRAME];
    let mut from_up = vec![0u8; MAX_FRAME];
    loop {
        tokio::select! {
            r = tap.device.recv(&mut from_dev) => {
                let n = r.map_err(|e| End::Device(DeviceError(e)))?;
                match up.send(&from_dev[..n]).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                    Err(e) => return Err(End::Tunnel(e)),
                }
            }
            r = up.recv(&mut from_up) => {
                let n = match r {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                    Err(e) => return Err(End::Tunnel(e)),
                };
                if macs(&from_up[..n]).is_some() {
                    tap.device.send(&from_up[..n]).await.map_err(|e| End::Device(DeviceError(e)))?;
                }
            }
        }
    }
}

/// Destination and source MAC of an Ethernet frame.
fn macs(frame: &[u8]) -> Option<(Mac, Mac)> {
    if frame.len() < 14 {
        return None;
    }
    Some((frame[..6].try_into().ok()?, frame[6..12].try_into().ok()?))
}

/// Broadcast and multicast (the group bit), as GOST's `IsBroadcast`
/// treats them.
fn is_broadcast(mac: &Mac) -> bool {
    mac[0] & 1 == 1
}

fn mac_text(m: &Mac) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Handler for TapHandler {
    fn handle(&self, conn: Conn, ctx: ConnContext) -> HandleFuture<'_> {
        super::tcp_only("tap", conn, move |s| self.serve(s, ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_their_addresses() {
        let mut f = [0u8; 14];
        f[..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        let (dst, src) = macs(&f).unwrap();
        assert!(is_broadcast(&dst));
        assert!(!is_broadcast(&src));
        assert_eq!(mac_text(&src), "02:00:00:00:00:01");
        assert_eq!(macs(&f[..13]), None);
    }
}
