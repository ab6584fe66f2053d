//! GOST's UDP-over-TCP (SOCKS5 command 0xF3): datagrams travel as frames
//! on the SOCKS connection itself, for clients that cannot reach the
//! proxy over UDP (GOST's socks5 connector uses it to carry UDP through
//! a chain).
//!
//! A frame is a SOCKS5 UDP header whose RSV field holds the payload length:
//! `LEN(2) FRAG ATYP ADDR PORT PAYLOAD`; the relay sends FRAG 0xFF, as GOST
//! does. A request for port 0 gets a relay socket (needs `udp=true`); a
//! request for a port gets a socket bound there (needs `bind=true`).

use std::net::{Ipv4Addr, SocketAddr};

use gost_core::stream::Stream;
use tokio::io::AsyncReadExt;

use super::udp::{recv_from, recv_tunnel, Targets};
use super::{protocol, Handshake, TargetAddr};
use crate::{ConnContext, HandlerError};
use gost_chain::router::Router;
use gost_core::limiter::traffic;
use gost_proto::socks::{next_frame, put_addr, FRAG_TUN};
use gost_proto::socks::{reply, REP_GENERAL_FAILURE, REP_SUCCEEDED};

/// Room before a received payload for the frame header: LEN FRAG, then an
/// IPv6 address and port at most (sources are never domain names).
const HEADER_ROOM: usize = 3 + 1 + 16 + 2;
pub(super) async fn serve(
    mut hs: Handshake,
    ctx: &ConnContext,
    target: &TargetAddr,
    router: &Router,
    buffer_size: usize,
) -> Result<(), HandlerError> {
    let (targets, bound) = match open(target, router, ctx.peer.ip()).await {
        Ok(x) => x,
        Err(e) => {
            let _ = hs.write(&reply(REP_GENERAL_FAILURE, None)).await;
            return Err(e);
        }
    };
    hs.write(&reply(REP_SUCCEEDED, Some(bound))).await?;
    tracing::debug!(service = %ctx.service, client = %ctx.peer, bind = %bound, "socks5 udp-over-tcp");
    let (stream, inbuf) = hs.finish();
    relay_frames(stream, inbuf, targets, ctx, buffer_size).await?;
    tracing::debug!(service = %ctx.service, client = %ctx.peer, "socks5 udp-over-tcp closed");
    Ok(())
}

/// Relays frames on `stream` (whose first bytes already read are `inbuf`)
/// to and from `targets` until the client closes it; bytes on the stream
/// count into the service's stats. Shared by socks5 UDP-over-TCP and
/// relay UDP BIND, which frame datagrams alike.
pub(crate) async fn relay_frames(
    mut stream: Stream,
    mut inbuf: Vec<u8>,
    mut targets: Targets,
    ctx: &ConnContext,
    buffer_size: usize,
) -> Result<(), HandlerError> {
    let mut from_v4 = vec![0u8; HEADER_ROOM + buffer_size];
    let mut from_v6 = vec![0u8; HEADER_ROOM + buffer_size];
    let mut from_tunnel = vec![0u8; HEADER_ROOM + buffer_size];
    let mut pacer = traffic::Pacer::new(ctx.traffic.clone());
    loop {
        while let Some((dst, start, end)) = next_frame(&inbuf).map_err(protocol)? {
            targets.send(dst, &inbuf[start..end]).await;
            inbuf.drain(..end);
        }
        inbuf.reserve(buffer_size);
        let (r, buf) = tokio::select! {
            r = stream.read_buf(&mut inbuf), if pacer.open(true) => {
                match r {
                    Ok(0) => return Ok(()),
                    Ok(n) => {
                        if let Some(s) = &ctx.stats {
                            s.add_input(n as u64);
                        }
                        pacer.charge(true, n);
                        continue;
                    }
                    Err(e) if gost_chain::relay::is_disconnect(&e) => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
            }
            r = recv_from(targets.v4.as_ref(), &mut from_v4[HEADER_ROOM..]), if pacer.open(false) => (r, &mut from_v4),
            r = recv_from(targets.v6.as_ref(), &mut from_v6[HEADER_ROOM..]), if pacer.open(false) => (r, &mut from_v6),
            r = recv_tunnel(targets.tunnel.as_mut(), &mut from_tunnel[HEADER_ROOM..]), if pacer.open(false) => {
                if let Err(e) = &r {
                    tracing::debug!(service = %ctx.service, client = %ctx.peer, error = %e, "udp-over-tcp: chain tunnel ended");
                    return Ok(());
                }
                (r, &mut from_tunnel)
            }
            _ = pacer.wait(), if pacer.waiting() => continue,
        };
        let (n, from) = match r {
            Ok(x) => x,
            Err(e) => {
                tracing::trace!(error = %e, "udp-over-tcp: target receive");
                continue;
            }
        };
        // An empty payload would read as GOST's length-less form.
        if n == 0 {
            continue;
        }
        let mut header = Vec::with_capacity(HEADER_ROOM);
        header.extend_from_slice(&(n as u16).to_be_bytes());
        header.push(FRAG_TUN);
        put_addr(&mut header, from);
        let start = HEADER_ROOM - header.len();
        buf[start..HEADER_ROOM].copy_from_slice(&header);
        let frame = &buf[start..HEADER_ROOM + n];
        pacer.charge(false, frame.len());
        stream.write_all_now(frame).await?;
        if let Some(s) = &ctx.stats {
            s.add_output(frame.len() as u64);
        }
    }
}

/// Opens what the request asks for and returns it with the address to
/// report: for port 0 a relay, through the service's chain when it has
/// one (GOST's UDP through a chain of socks5 nodes), else a socket bound
/// on this host.
async fn open(
    target: &TargetAddr,
    router: &Router,
    client: std::net::IpAddr,
) -> Result<(Targets, SocketAddr), HandlerError> {
    let port = match target {
        TargetAddr::Ip(a) => a.port(),
        TargetAddr::Domain(_, p) => *p,
    };
    let mut targets = Targets::through(router, client).await?;
    if let Some(t) = &targets.tunnel {
        let bound = t
            .local_addr()
            .unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
        return Ok((targets, bound));
    }
    let at = if port == 0 {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)).to_string()
    } else {
        target.to_string()
    };
    let bound = targets.bind(&at).await?;
    Ok((targets, bound))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gost_proto::socks::*;

    #[test]
    fn frames() {
        let mut f = vec![0, 2, 0xFF, ATYP_IPV4, 127, 0, 0, 1, 0, 53, b'h', b'i', 9];
        assert_eq!(
            next_frame(&f).unwrap(),
            Some((TargetAddr::Ip("127.0.0.1:53".parse().unwrap()), 10, 12))
        );
        f.truncate(11);
        assert_eq!(next_frame(&f).unwrap(), None);
        let d = [0, 1, 0, ATYP_DOMAIN, 1, b'h', 0, 7, b'x'];
        assert_eq!(
            next_frame(&d).unwrap(),
            Some((TargetAddr::Domain("h".into(), 7), 8, 9))
        );
        assert!(next_frame(&[0, 1, 0, 9, 0]).is_err());
        assert!(next_frame(&[0, 0, 0, ATYP_DOMAIN, 0, 0, 7]).is_err());
        assert_eq!(next_frame(&[0, 0, 0]).unwrap(), None);
    }

    /// Client datagrams and tunnel frames at random: each parse returns,
    /// and a frame it accepts lies within the buffer.
    #[test]
    fn mutated_frames_and_datagram_headers() {
        let corpus: [&[u8]; 3] = [
            &[0, 2, 0xFF, ATYP_IPV4, 127, 0, 0, 1, 0, 53, b'h', b'i'],
            b"\x00\x01\x00\x03\x03a.b\x00\x35x",
            &[
                0, 0, 0, ATYP_IPV6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 53,
            ],
        ];
        for (seed, b) in gost_core::test_util::mutations(&corpus, 3000) {
            if let Ok(Some((_, start, end))) = next_frame(&b) {
                assert!(start <= end && end <= b.len(), "seed {seed}");
            }
            if let Some((_, at)) = gost_proto::socks::parse_header(&b) {
                assert!(at <= b.len(), "seed {seed}");
            }
        }
    }
}
