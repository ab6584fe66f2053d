//! SOCKS5 UDP ASSOCIATE (RFC 1928 §7): a UDP socket per association,
//! relaying datagrams between the client and any target until the TCP
//! control connection closes.
//!
//! Like GOST, the relay socket is bound on the IP the client reached the
//! TCP listener on (the address reported as BND.ADDR, so replies carry the
//! source IP the client expects), accepts datagrams only from the control
//! connection's client IP, and replies to the UDP address the client last
//! sent from. Fragmented datagrams (FRAG != 0) are dropped, as RFC 1928
//! allows for servers without reassembly. The target side ([`Targets`]) is
//! shared with GOST's UDP-over-TCP command (`udptun`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::UdpSocket;

use super::{Handshake, TargetAddr};
use crate::{ConnContext, HandlerError};
use gost_chain::connector::udp_tun::UdpTunnel;
use gost_chain::router::{DialError, Router};
use gost_core::limiter::traffic;
use gost_proto::socks::{parse_header, put_addr};
use gost_proto::socks::{reply, REP_GENERAL_FAILURE, REP_SUCCEEDED};

/// Longest header the relay puts before a reply: RSV FRAG ATYP, an IPv6
/// address and a port. Replies never carry a domain name.
const REPLY_HEADER_MAX: usize = 3 + 1 + 16 + 2;
/// Longest header a client may send: RSV FRAG ATYP LEN, a 255-byte domain
/// name and a port.
const REQUEST_HEADER_MAX: usize = 3 + 2 + 255 + 2;

/// Runs one association: replies with the relay address, then relays until
/// the client closes the control connection.
pub(super) async fn associate(
    mut hs: Handshake,
    ctx: &ConnContext,
    buffer_size: usize,
    router: &Router,
) -> Result<(), HandlerError> {
    let local_ip = hs.io.get_ref().local_addr()?.ip().to_canonical();
    let client_ip = ctx.peer.ip().to_canonical();
    let relay = match UdpSocket::bind((local_ip, 0)).await {
        Ok(s) => s,
        Err(e) => {
            let _ = hs.write(&reply(REP_GENERAL_FAILURE, None)).await;
            return Err(e.into());
        }
    };
    // As GOST, the chain is dialed before the reply, so a client learns
    // at once that its datagrams could not go anywhere.
    let targets = match Targets::through(router, ctx.peer.ip()).await {
        Ok(t) => t,
        Err(e) => {
            let _ = hs.write(&reply(REP_GENERAL_FAILURE, None)).await;
            return Err(e.into());
        }
    };
    let relay_addr = relay.local_addr()?;
    hs.write(&reply(REP_SUCCEEDED, Some(relay_addr))).await?;
    tracing::debug!(service = %ctx.service, client = %ctx.peer, relay = %relay_addr, "socks5 udp associate");

    let mut assoc = Association {
        relay,
        client_ip,
        client_addr: None,
        targets,
        ctx,
        pacer: traffic::Pacer::new(ctx.traffic.clone()),
    };
    let mut from_client = vec![0u8; REQUEST_HEADER_MAX + buffer_size];
    let mut from_v4 = vec![0u8; REPLY_HEADER_MAX + buffer_size];
    let mut from_v6 = vec![0u8; REPLY_HEADER_MAX + buffer_size];
    let mut from_tunnel = vec![0u8; REPLY_HEADER_MAX + buffer_size];
    let mut control_buf = [0u8; 256];
    loop {
        tokio::select! {
            // The association lives as long as the control connection;
            // anything the client sends there is read and discarded, as
            // GOST does.
            r = hs.io.read(&mut control_buf) => match r {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if gost_chain::relay::is_disconnect(&e) => break,
                Err(e) => return Err(e.into()),
            },
            r = assoc.relay.recv_from(&mut from_client), if assoc.pacer.open(true) => match r {
                Ok((n, from)) => assoc.on_client_datagram(&from_client[..n], from).await,
                Err(e) => tracing::trace!(error = %e, "socks5 udp relay receive"),
            },
            r = recv_from(assoc.targets.v4.as_ref(), &mut from_v4[REPLY_HEADER_MAX..]), if assoc.pacer.open(false) => {
                assoc.on_target_datagram(r, &mut from_v4).await
            }
            r = recv_from(assoc.targets.v6.as_ref(), &mut from_v6[REPLY_HEADER_MAX..]), if assoc.pacer.open(false) => {
                assoc.on_target_datagram(r, &mut from_v6).await
            }
            r = recv_tunnel(assoc.targets.tunnel.as_mut(), &mut from_tunnel[REPLY_HEADER_MAX..]), if assoc.pacer.open(false) => {
                // The chain's stream is gone or broken: no datagram can
                // reach a target any more.
                if let Err(e) = &r {
                    tracing::debug!(service = %ctx.service, client = %ctx.peer, error = %e, "socks5 udp: chain tunnel ended");
                    break;
                }
                assoc.on_target_datagram(r, &mut from_tunnel).await
            }
            _ = assoc.pacer.wait(), if assoc.pacer.waiting() => {}
        }
    }
    tracing::debug!(service = %ctx.service, client = %ctx.peer, relay = %relay_addr, "socks5 udp association closed");
    Ok(())
}

/// Receives on a target-side socket that may not exist yet.
pub(crate) async fn recv_from(
    sock: Option<&UdpSocket>,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr)> {
    match sock {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// Receives from the chain's tunnel, if datagrams go through one.
pub(crate) async fn recv_tunnel(
    tunnel: Option<&mut UdpTunnel>,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr)> {
    match tunnel {
        Some(t) => t.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

struct Association<'a> {
    /// Faces the client.
    relay: UdpSocket,
    client_ip: IpAddr,
    /// Where replies go: the source of the client's latest datagram.
    client_addr: Option<SocketAddr>,
    targets: Targets,
    ctx: &'a ConnContext,
    /// The service's traffic limiter, for this association (GOST's per
    /// packet connection: `$$` is per association).
    pacer: traffic::Pacer,
}

/// The sockets facing the targets, one per address family, opened on
/// first use; or, when the service has a chain, the tunnel from its last
/// node, which every datagram takes.
pub(crate) struct Targets {
    pub(crate) v4: Option<UdpSocket>,
    pub(crate) v6: Option<UdpSocket>,
    pub(crate) tunnel: Option<UdpTunnel>,
    resolve_timeout: Duration,
    /// The service's bypass: datagrams to targets it matches are dropped,
    /// as GOST's UDP relay does.
    bypass: Option<std::sync::Arc<gost_core::bypass::BypassGroup>>,
    /// The service's name, which a bypass plugin is told.
    service: std::sync::Arc<str>,
    /// The service's hosts and resolver, consulted before the system's,
    /// as for its TCP dials.
    hosts: Option<std::sync::Arc<gost_core::hosts::Hosts>>,
    resolver: Option<std::sync::Arc<gost_core::resolver::Resolver>>,
}

impl Targets {
    /// Targets reached from this host, under `router`'s bypass, hosts
    /// and resolver but not its chain.
    pub(crate) fn direct(router: &Router) -> Self {
        Targets {
            v4: None,
            v6: None,
            tunnel: None,
            resolve_timeout: router.dial_timeout,
            bypass: router.bypass.clone(),
            service: router.service.clone(),
            hosts: router.hosts.clone(),
            resolver: router.resolver.clone(),
        }
    }

    /// Targets reached the way `router` goes: through its chain when it
    /// routes datagrams through one, directly otherwise.
    pub(crate) async fn through(router: &Router, client: IpAddr) -> Result<Self, DialError> {
        let mut t = Targets::direct(router);
        t.tunnel = router.dial_udp_association(client).await?;
        Ok(t)
    }

    /// Binds the socket for targets of its address family at `addr` on
    /// this host (a bound relay or BIND socket) and returns its address.
    pub(crate) async fn bind(&mut self, addr: &str) -> io::Result<SocketAddr> {
        let sock = UdpSocket::bind(addr).await?;
        let bound = sock.local_addr()?;
        if bound.is_ipv4() {
            self.v4 = Some(sock);
        } else {
            self.v6 = Some(sock);
        }
        Ok(bound)
    }

    /// Sends a payload to a target. Failures drop the datagram, as a lost
    /// datagram would be.
    pub(crate) async fn send(&mut self, target: TargetAddr, payload: &[u8]) {
        if let Some(b) = &self.bypass {
            let dst = target.to_string();
            if b.check(&self.service, "udp", &dst).await {
                tracing::debug!(dst = %gost_core::escape::esc(&dst), "udp: datagram to a bypassed target dropped");
                return;
            }
        }
        if let Some(t) = &mut self.tunnel {
            if let Err(e) = t.send_to(payload, &target.to_string()).await {
                tracing::debug!(dst = %gost_core::escape::esc(&target), error = %e, "socks5 udp: send through the chain");
            }
            return;
        }
        let dst = match target {
            TargetAddr::Ip(a) => a,
            TargetAddr::Domain(host, port) => match self.resolve(&host, port).await {
                Some(a) => a,
                None => {
                    tracing::debug!(host = %gost_core::escape::esc(&host), "socks5 udp: cannot resolve target");
                    return;
                }
            },
        };
        let sock = match self.socket(dst.is_ipv4()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "socks5 udp: cannot open a target socket");
                return;
            }
        };
        if let Err(e) = sock.send_to(payload, dst).await {
            tracing::debug!(dst = %gost_core::escape::esc(&dst), error = %e, "socks5 udp: send to target");
        }
    }

    async fn socket(&mut self, v4: bool) -> io::Result<&UdpSocket> {
        let slot = if v4 { &mut self.v4 } else { &mut self.v6 };
        if slot.is_none() {
            let any: IpAddr = if v4 {
                Ipv4Addr::UNSPECIFIED.into()
            } else {
                Ipv6Addr::UNSPECIFIED.into()
            };
            *slot = Some(UdpSocket::bind((any, 0)).await?);
        }
        slot.as_ref()
            .ok_or_else(|| io::Error::other("target socket missing"))
    }

    /// A domain target: the service's hosts, then its resolver, else the
    /// system's, preferring IPv4 as GOST does.
    async fn resolve(&self, host: &str, port: u16) -> Option<SocketAddr> {
        if self.hosts.is_some() || self.resolver.is_some() {
            let addr = tokio::time::timeout(
                self.resolve_timeout,
                gost_core::resolver::resolve_addr(
                    &format!("{host}:{port}"),
                    self.hosts.as_deref(),
                    self.resolver.as_deref(),
                ),
            )
            .await
            .ok()?
            .ok()?;
            // Unchanged (a name only the system knows) when hosts alone is
            // set and has no entry for it.
            if let Ok(a) = addr.parse() {
                return Some(a);
            }
        }
        let addrs: Vec<SocketAddr> =
            tokio::time::timeout(self.resolve_timeout, tokio::net::lookup_host((host, port)))
                .await
                .ok()?
                .ok()?
                .collect();
        addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| addrs.first())
            .copied()
    }
}

impl Association<'_> {
    /// A datagram from the client: unwrap it and send the payload on.
    /// Failures drop the datagram, as a lost datagram would be; they do not
    /// end the association.
    async fn on_client_datagram(&mut self, dgram: &[u8], from: SocketAddr) {
        if from.ip().to_canonical() != self.client_ip {
            tracing::trace!(from = %from, "socks5 udp: datagram from a stranger dropped");
            return;
        }
        if let Some(s) = &self.ctx.stats {
            s.add_input(dgram.len() as u64);
        }
        self.pacer.charge(true, dgram.len());
        self.client_addr = Some(from);
        let Some((target, header_len)) = parse_header(dgram) else {
            tracing::trace!(from = %from, "socks5 udp: malformed or fragmented datagram dropped");
            return;
        };
        self.targets.send(target, &dgram[header_len..]).await;
    }

    /// A datagram from a target, received at `buf[REPLY_HEADER_MAX..]`:
    /// the header is written just before the payload so the reply goes out
    /// without a copy.
    async fn on_target_datagram(&mut self, r: io::Result<(usize, SocketAddr)>, buf: &mut [u8]) {
        let (n, from) = match r {
            Ok(x) => x,
            Err(e) => {
                tracing::trace!(error = %e, "socks5 udp: target receive");
                return;
            }
        };
        let Some(to) = self.client_addr else { return };
        let mut header = Vec::with_capacity(REPLY_HEADER_MAX);
        header.extend_from_slice(&[0, 0, 0]);
        put_addr(&mut header, from);
        let start = REPLY_HEADER_MAX - header.len();
        buf[start..REPLY_HEADER_MAX].copy_from_slice(&header);
        let dgram = &buf[start..REPLY_HEADER_MAX + n];
        self.pacer.charge(false, dgram.len());
        match self.relay.send_to(dgram, to).await {
            Ok(sent) => {
                if let Some(s) = &self.ctx.stats {
                    s.add_output(sent as u64);
                }
            }
            Err(e) => tracing::debug!(to = %to, error = %e, "socks5 udp: send to client"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gost_proto::socks::*;

    #[test]
    fn datagram_headers() {
        let d = [0, 0, 0, 1, 127, 0, 0, 1, 0, 53, b'x'];
        assert_eq!(
            parse_header(&d),
            Some((TargetAddr::Ip("127.0.0.1:53".parse().unwrap()), 10))
        );
        let mut d6 = vec![0, 0, 0, 4];
        d6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        d6.extend_from_slice(&[0, 80]);
        assert_eq!(
            parse_header(&d6),
            Some((TargetAddr::Ip("[::1]:80".parse().unwrap()), 22))
        );
        let dn = [0, 0, 0, 3, 2, b'h', b'o', 1, 0, b'p'];
        assert_eq!(
            parse_header(&dn),
            Some((TargetAddr::Domain("ho".into(), 256), 9))
        );
        // Fragmented, truncated, unknown type, empty name.
        assert_eq!(parse_header(&[0, 0, 1, 1, 127, 0, 0, 1, 0, 53]), None);
        assert_eq!(parse_header(&[0, 0, 0, 1, 127, 0, 0]), None);
        assert_eq!(parse_header(&[0, 0, 0, 9, 1, 2, 3, 4, 0, 1]), None);
        assert_eq!(parse_header(&[0, 0, 0, 3, 0, 0, 1]), None);
        assert_eq!(parse_header(&[0, 0, 0, 3, 200, b'a']), None);
    }
}
