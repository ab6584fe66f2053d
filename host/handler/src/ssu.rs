//! GOST's `ssu` handler: Shadowsocks UDP. On a `udp` listener each
//! client address is a session whose datagrams are Shadowsocks packets
//! (each naming its target; replies name their source); on a stream
//! listener the stream is a Shadowsocks stream carrying GOST's
//! UDP-over-TCP frames, which is how GOST's `ssu` connector crosses a
//! chain.
//!
//! A datagram that does not decrypt, or a 2022 packet whose id was
//! already seen in its session (a replay), is dropped without an answer:
//! counted as an error of the service, logged for the first one of a
//! session.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use shadowsocks::relay::udprelay::crypto_io::{decrypt_client_payload, encrypt_server_payload};
use shadowsocks::relay::udprelay::options::UdpSocketControlData;

use gost_chain::router::Router;
use gost_chain::ss::{server_context, Address, Cipher};
use gost_core::metadata::{Metadata, MetadataError};
use gost_core::stream::Stream;
use gost_proto::socks::TargetAddr;
use gost_transport::listener::udp::UdpConn;
use gost_transport::listener::Conn;

use crate::socks::udp::{recv_from, recv_tunnel, Targets};
use crate::{ConnContext, HandleFuture, Handler, HandlerError};

/// GOST's default `udpBufferSize`.
const DEFAULT_BUFFER: usize = 4096;
/// GOST's ssu `readTimeout` default: the stream form's first packet.
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct SsuOptions {
    pub read_timeout: Duration,
    /// `udpBufferSize` (`udp.bufferSize`): the largest reply payload.
    pub buffer_size: usize,
}

impl SsuOptions {
    pub fn from_metadata(md: &Metadata) -> Result<Self, MetadataError> {
        let size = match md.get_int("udpBufferSize")? {
            Some(n) => Some(n),
            None => md.get_int("udp.bufferSize")?,
        };
        Ok(SsuOptions {
            read_timeout: md
                .get_duration("readTimeout")?
                .filter(|t| !t.is_zero())
                .unwrap_or(DEFAULT_READ_TIMEOUT),
            buffer_size: size
                .filter(|n| *n > 0)
                .map_or(DEFAULT_BUFFER, |n| n.min(65535) as usize),
        })
    }
}

pub struct SsuHandler {
    router: Router,
    cipher: Cipher,
    opts: SsuOptions,
}

impl SsuHandler {
    pub fn new(router: Router, cipher: Cipher, opts: SsuOptions) -> Self {
        SsuHandler {
            router,
            cipher,
            opts,
        }
    }
}

impl Handler for SsuHandler {
    fn handle(&self, conn: Conn, ctx: ConnContext) -> HandleFuture<'_> {
        match conn {
            Conn::Stream(s) => Box::pin(self.over_stream(s, ctx)),
            Conn::Udp(u) => Box::pin(self.packets(u, ctx)),
        }
    }
}

impl SsuHandler {
    async fn over_stream(&self, s: Stream, ctx: ConnContext) -> Result<(), HandlerError> {
        let (stream, _first) = crate::ss::accept(&self.cipher, s, self.opts.read_timeout).await?;
        let targets = Targets::through(&self.router, ctx.peer.ip()).await?;
        tracing::debug!(service = %ctx.service, client = %ctx.peer, "ssu over stream");
        crate::socks::udptun::relay_frames(stream, Vec::new(), targets, &ctx, self.opts.buffer_size)
            .await
    }

    /// One client address's packets, until the session idles for the
    /// listener's `ttl` (or, without `keepalive`, after the first reply,
    /// as the listener's other handlers do).
    async fn packets(&self, mut client: UdpConn, ctx: ConnContext) -> Result<(), HandlerError> {
        let mut targets = Targets::through(&self.router, ctx.peer.ip()).await?;
        let mut session = Session::new(self.cipher.clone());
        let size = self.opts.buffer_size;
        let (mut v4, mut v6, mut tun) = (vec![0u8; size], vec![0u8; size], vec![0u8; size]);
        let ttl = client.ttl;
        let mut deadline = tokio::time::Instant::now() + ttl;
        let result = loop {
            let (r, buf) = tokio::select! {
                d = client.recv() => {
                    let Some(mut d) = d else { break Ok(()) };
                    if let Some(s) = &ctx.stats {
                        s.add_input(d.len() as u64);
                    }
                    if let Some((n, target)) = session.open(&mut d, &ctx) {
                        targets.send(target, &d[..n]).await;
                    }
                    deadline = tokio::time::Instant::now() + ttl;
                    continue;
                }
                r = recv_from(targets.v4.as_ref(), &mut v4) => (r, &v4),
                r = recv_from(targets.v6.as_ref(), &mut v6) => (r, &v6),
                r = recv_tunnel(targets.tunnel.as_mut(), &mut tun) => {
                    if let Err(e) = &r {
                        tracing::debug!(service = %ctx.service, client = %ctx.peer, error = %e, "ssu: chain tunnel ended");
                        break Ok(());
                    }
                    (r, &tun)
                }
                _ = tokio::time::sleep_until(deadline) => break Ok(()),
            };
            let (n, from) = match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::trace!(error = %e, "ssu: target receive");
                    continue;
                }
            };
            let packet = session.seal(from, &buf[..n]);
            client.send(&packet).await?;
            if let Some(s) = &ctx.stats {
                s.add_output(packet.len() as u64);
            }
            deadline = tokio::time::Instant::now() + ttl;
            if !client.keepalive {
                break Ok(());
            }
        };
        if session.dropped > 1 {
            tracing::debug!(service = %ctx.service, client = %ctx.peer, dropped = session.dropped, "ssu: bad datagrams dropped in this session");
        }
        result
    }
}

/// Packet state of one client address.
struct Session {
    cipher: Cipher,
    /// Ours, for 2022 replies: a random session id and a packet counter.
    server_session: u64,
    next_packet: u64,
    /// The client's latest session and user, which replies go to.
    reply_to: Option<UdpSocketControlData>,
    windows: HashMap<u64, Window>,
    dropped: u64,
}

/// Sessions of one client address whose packet ids are remembered; a
/// client opens a new one now and then, never many at once.
const MAX_WINDOWS: usize = 16;

impl Session {
    fn new(cipher: Cipher) -> Self {
        Session {
            cipher,
            server_session: rand::random(),
            next_packet: 0,
            reply_to: None,
            windows: HashMap::new(),
            dropped: 0,
        }
    }

    /// Decrypts a client packet in place: the payload's length (at the
    /// start of `d`) and its target, or `None` for a packet dropped.
    fn open(&mut self, d: &mut [u8], ctx: &ConnContext) -> Option<(usize, TargetAddr)> {
        let ss = server_context();
        let c = &self.cipher;
        let why = match decrypt_client_payload(&ss, c.method(), c.key(), d, c.users.as_deref()) {
            Ok((n, addr, control)) => match control {
                Some(ctl) if !self.fresh(&ctl) => {
                    "a 2022 packet id seen before (replay)".to_string()
                }
                control => {
                    if control.is_some() {
                        self.reply_to = control;
                    }
                    return Some((n, target(addr)));
                }
            },
            Err(e) => e.to_string(),
        };
        self.dropped += 1;
        if let Some(s) = &ctx.stats {
            s.add_error();
        }
        if self.dropped == 1 {
            tracing::warn!(service = %ctx.service, client = %ctx.peer, error = %why.escape_debug(), "ssu: datagram dropped, no answer");
        }
        None
    }

    /// Whether a 2022 packet's id is new in its session (SIP022's sliding
    /// window).
    fn fresh(&mut self, ctl: &UdpSocketControlData) -> bool {
        if !self.windows.contains_key(&ctl.client_session_id) && self.windows.len() >= MAX_WINDOWS {
            self.windows.clear();
        }
        self.windows
            .entry(ctl.client_session_id)
            .or_default()
            .check(ctl.packet_id)
    }

    /// Encrypts a reply from `from`.
    fn seal(&mut self, from: SocketAddr, payload: &[u8]) -> BytesMut {
        let mut control = UdpSocketControlData::default();
        let mut key = self.cipher.key();
        if let Some(to) = &self.reply_to {
            control.client_session_id = to.client_session_id;
            control.server_session_id = self.server_session;
            control.packet_id = self.next_packet;
            self.next_packet += 1;
            if let Some(u) = &to.user {
                key = u.key();
            }
        }
        let mut out = BytesMut::new();
        encrypt_server_payload(
            &server_context(),
            self.cipher.method(),
            key,
            &Address::SocketAddress(from),
            &control,
            payload,
            &mut out,
        );
        out
    }
}

fn target(a: Address) -> TargetAddr {
    match a {
        Address::SocketAddress(s) => TargetAddr::Ip(s),
        Address::DomainNameAddress(h, p) => TargetAddr::Domain(h, p),
    }
}

/// The packet ids seen lately in one session: the highest, and a bit for
/// each of the [`WINDOW`] below it.
#[derive(Default)]
struct Window {
    top: Option<u64>,
    seen: u128,
}

const WINDOW: u64 = 128;

impl Window {
    fn check(&mut self, id: u64) -> bool {
        let Some(top) = self.top else {
            self.top = Some(id);
            self.seen = 1;
            return true;
        };
        if id > top {
            let shift = id - top;
            self.seen = if shift >= WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.top = Some(id);
            return true;
        }
        let back = top - id;
        if back >= WINDOW {
            return false;
        }
        let bit = 1u128 << back;
        if self.seen & bit != 0 {
            return false;
        }
        self.seen |= bit;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_takes_each_packet_id_once() {
        let mut w = Window::default();
        assert!(w.check(5));
        assert!(!w.check(5));
        assert!(w.check(3));
        assert!(!w.check(3));
        assert!(w.check(200));
        assert!(!w.check(5), "too old");
        assert!(w.check(199));
        assert!(!w.check(199));
        assert!(!w.check(72), "128 below the top: out of the window");
        assert!(w.check(73));
    }
}
