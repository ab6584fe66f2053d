//! The client side of GOST's UDP-over-TCP (SOCKS5 command 0xF3): after
//! the socks5 connector has asked its node for a UDP tunnel, datagrams
//! travel on the chain's TCP stream as frames `LEN(2) FRAG ATYP ADDR PORT
//! PAYLOAD`, each naming its target on the way out and its source on the
//! way back. This is how GOST carries UDP through a chain.
//!
//! A relay node's UDP BIND opens this tunnel too, with the same frames; its
//! UDP CONNECT opens one to a single target, with bare `LEN(2) PAYLOAD`
//! frames.
//!
//! A socks5 node with `relay: udp` (GOST's `relayUDP`) is asked for a
//! standard UDP ASSOCIATE instead: datagrams then leave this host over UDP
//! for the relay port the node reports, with the standard SOCKS5 UDP
//! header, while the chain's stream stays open to hold the association.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::UdpSocket;

use super::upstream::LazyResponse;
use super::upstream::Upstream;
use super::ConnectError;
use gost_core::stream::Stream;
use gost_proto::socks::TargetAddr;

/// GOST marks tunnelled frames with this FRAG value.
const FRAG_TUN: u8 = 0xFF;
/// The largest frame: a header with a 255-byte name and a 64 KiB payload.
const MAX_FRAME: usize = 3 + 2 + 255 + 2 + u16::MAX as usize;

/// How datagrams are framed on the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// socks5 0xF3 and relay UDP BIND: each frame names its target or
    /// source.
    Socks,
    /// relay UDP CONNECT: frames carry the payload only, to and from the
    /// one target the tunnel was opened for.
    Relay,
}

/// Datagrams through the last node of a route, framed on the chain's
/// stream or, for a socks5 node with `relay: udp`, sent over UDP to the
/// relay port the node's UDP ASSOCIATE granted.
#[derive(Debug)]
pub struct UdpTunnel(Kind);

#[derive(Debug)]
enum Kind {
    Framed(Framed),
    Associated(Associated),
}

impl UdpTunnel {
    /// Wraps a stream whose node (socks5, or relay by UDP BIND) has
    /// granted the tunnel.
    pub fn new(stream: Stream) -> Self {
        UdpTunnel(Kind::Framed(Framed::new(stream, Framing::Socks, None)))
    }

    /// Wraps a stream whose relay node was asked for a UDP CONNECT; a lazy
    /// node's grant is still owed on it.
    pub fn relay(up: Upstream) -> Self {
        let (stream, owed) = up.into_parts();
        UdpTunnel(Kind::Framed(Framed::new(stream, Framing::Relay, owed)))
    }

    /// A socks5 UDP association: `socket` is connected to the node's relay
    /// port, `control` is the stream the ASSOCIATE went on, kept open for
    /// the association's life (closing it ends the association).
    pub fn associated(control: Stream, socket: UdpSocket, opts: AssociateOptions) -> Self {
        UdpTunnel(Kind::Associated(Associated {
            control,
            socket,
            inbuf: vec![0; opts.buffer_size.max(1)],
            timeout: opts.timeout,
        }))
    }

    /// The local address datagrams leave from: the stream to the first
    /// node, or the UDP socket of an association.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.0 {
            Kind::Framed(f) => f.local,
            Kind::Associated(a) => a.socket.local_addr().ok(),
        }
    }

    /// Sends one datagram to `target` (`host:port`); names are resolved by
    /// the last node, so the target's DNS stays on the far side. A relay
    /// tunnel sends to the target it was opened for, whatever `target` says.
    pub async fn send_to(&mut self, payload: &[u8], target: &str) -> io::Result<()> {
        match &mut self.0 {
            Kind::Framed(f) => f.send_to(payload, target).await,
            Kind::Associated(a) => a.send_to(payload, target).await,
        }
    }

    /// Receives the next datagram into `buf` (cut to its length) and the
    /// address it came from. Cancel-safe: a partly read frame is kept.
    /// Datagrams whose source is a name rather than an address are
    /// dropped, as there is no address to report for them. A relay
    /// tunnel's frames carry no source, so it answers [`UdpTunnel::recv`]
    /// only.
    pub async fn recv_from(&mut self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match &mut self.0 {
            Kind::Framed(f) => f.recv_from(buf).await,
            Kind::Associated(a) => loop {
                match a.recv(buf).await? {
                    (n, TargetAddr::Ip(from)) => return Ok((n, from)),
                    (_, src) => {
                        tracing::trace!(src = %src, "udp association: datagram from a name dropped")
                    }
                }
            },
        }
    }

    /// Receives the next datagram into `buf` (cut to its length), from
    /// whichever source. Cancel-safe.
    pub async fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.0 {
            Kind::Framed(f) => f.recv(buf).await,
            Kind::Associated(a) => a.recv(buf).await.map(|(n, _)| n),
        }
    }
}

/// GOST's `udp.bufferSize` and `udp.timeout` for a socks5 association.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssociateOptions {
    /// The largest datagram (with its SOCKS header) taken from the node;
    /// longer ones are cut, as GOST's fixed read buffer cuts them.
    pub buffer_size: usize,
    /// How long a receive waits for the node before the association is
    /// given up.
    pub timeout: Option<Duration>,
}

/// Stream-framed datagrams (socks5 0xF3, relay UDP BIND and CONNECT).
#[derive(Debug)]
struct Framed {
    framing: Framing,
    /// `send_to` and `recv` both take the tunnel mutably, so one stream
    /// serves both directions: a receive is never in flight during a send.
    stream: Stream,
    /// Bytes of frames not yet complete, kept between reads so
    /// [`Framed::recv_from`] can be cancelled without losing any.
    inbuf: Vec<u8>,
    local: Option<SocketAddr>,
    /// A lazy relay node's response, read off before the first frame.
    owed: Option<LazyResponse>,
}

impl Framed {
    fn new(stream: Stream, framing: Framing, owed: Option<LazyResponse>) -> Self {
        let local = stream.local_addr().ok();
        Framed {
            framing,
            stream,
            inbuf: Vec::new(),
            local,
            owed,
        }
    }

    async fn send_to(&mut self, payload: &[u8], target: &str) -> io::Result<()> {
        let len = u16::try_from(payload.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "datagram longer than 65535 bytes",
            )
        })?;
        if self.framing == Framing::Relay {
            let mut frame = Vec::with_capacity(2 + payload.len());
            frame.extend_from_slice(&len.to_be_bytes());
            frame.extend_from_slice(payload);
            return self.stream.write_all_now(&frame).await;
        }
        let (host, port) = super::split_addr("socks5", target)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let mut frame = Vec::with_capacity(3 + 1 + 1 + host.len() + 2 + payload.len());
        frame.extend_from_slice(&len.to_be_bytes());
        frame.push(FRAG_TUN);
        gost_proto::socks::put_host(&mut frame, &host, port);
        frame.extend_from_slice(payload);
        self.stream.write_all_now(&frame).await
    }

    async fn recv_from(&mut self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        if self.framing == Framing::Relay {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a relay UDP tunnel's datagrams carry no source address",
            ));
        }
        self.recv_addressed(buf).await
    }

    async fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.framing {
            Framing::Socks => self.recv_addressed(buf).await.map(|(n, _)| n),
            Framing::Relay => loop {
                if let Some(owed) = &mut self.owed {
                    let (used, done) = owed.feed(&self.inbuf).map_err(ConnectError::into_io)?;
                    self.inbuf.drain(..used);
                    if done {
                        self.owed = None;
                    }
                }
                if let Some(len) = relay_frame_len(&self.inbuf).filter(|_| self.owed.is_none()) {
                    let n = len.min(buf.len());
                    buf[..n].copy_from_slice(&self.inbuf[2..2 + n]);
                    self.inbuf.drain(..2 + len);
                    return Ok(n);
                }
                self.fill().await?;
            },
        }
    }

    async fn recv_addressed(&mut self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let frame = gost_proto::socks::next_frame(&self.inbuf)
                .map_err(|msg| io::Error::new(io::ErrorKind::InvalidData, msg))?;
            if let Some((src, start, end)) = frame {
                let n = (end - start).min(buf.len());
                buf[..n].copy_from_slice(&self.inbuf[start..start + n]);
                self.inbuf.drain(..end);
                match src {
                    TargetAddr::Ip(a) => return Ok((n, a)),
                    TargetAddr::Domain(..) => {
                        tracing::trace!(src = %src, "udp tunnel: frame from a name dropped");
                        continue;
                    }
                }
            }
            self.fill().await?;
        }
    }

    /// Reads more of the stream into the frame buffer.
    async fn fill(&mut self) -> io::Result<()> {
        self.inbuf
            .reserve(MAX_FRAME.saturating_sub(self.inbuf.len()).min(8192));
        if self.stream.read_buf(&mut self.inbuf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "udp tunnel closed by the node",
            ));
        }
        Ok(())
    }
}

/// A socks5 UDP association (`relay: udp`): each datagram goes over UDP
/// to the node's relay port with the standard SOCKS5 header `RSV(2) FRAG
/// ATYP ADDR PORT`. The socket is connected to that port, so the kernel
/// drops datagrams from any other source.
#[derive(Debug)]
struct Associated {
    control: Stream,
    socket: UdpSocket,
    /// One datagram from the node, header included.
    inbuf: Vec<u8>,
    timeout: Option<Duration>,
}

impl Associated {
    async fn send_to(&mut self, payload: &[u8], target: &str) -> io::Result<()> {
        let dgram = encode_datagram(target, payload)?;
        self.socket.send(&dgram).await.map(|_| ())
    }

    /// The next well-formed datagram: its payload copied into `buf` (cut to
    /// its length) and its source. Malformed and fragmented ones are
    /// dropped, as RFC 1928 lets a client drop fragments. Cancel-safe: a
    /// datagram is taken whole or not at all.
    async fn recv(&mut self, buf: &mut [u8]) -> io::Result<(usize, TargetAddr)> {
        let work = async {
            loop {
                let n = tokio::select! {
                    r = self.socket.recv(&mut self.inbuf) => r?,
                    e = watch_control(&mut self.control) => return Err(e),
                };
                let dgram = &self.inbuf[..n];
                match gost_proto::socks::parse_header(dgram) {
                    Some((src, start)) => {
                        let len = (n - start).min(buf.len());
                        buf[..len].copy_from_slice(&dgram[start..start + len]);
                        return Ok((len, src));
                    }
                    None => {
                        tracing::trace!(
                            len = n,
                            "udp association: malformed or fragmented datagram dropped"
                        )
                    }
                }
            }
        };
        match self.timeout {
            Some(t) => tokio::time::timeout(t, work).await.map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("udp association: no datagram within {t:?} (udp.timeout)"),
                )
            })?,
            None => work.await,
        }
    }
}

/// Waits for the end of an association's control stream: the node closes
/// it to end the association. Bytes on it mean nothing and are skipped.
async fn watch_control(control: &mut Stream) -> io::Error {
    let mut junk = [0u8; 64];
    loop {
        match control.read(&mut junk).await {
            Ok(0) => {
                return io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "udp association closed by the node",
                )
            }
            Ok(n) => tracing::trace!(
                len = n,
                "udp association: bytes on the control stream skipped"
            ),
            Err(e) => return e,
        }
    }
}

/// A SOCKS5 UDP datagram to `target` (`host:port`): `RSV(2) FRAG(0) ATYP
/// ADDR PORT DATA`.
fn encode_datagram(target: &str, payload: &[u8]) -> io::Result<Vec<u8>> {
    let (host, port) = super::split_addr("socks5", target)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    if host.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("socks5 udp: target {target:?} has no host"),
        ));
    }
    let mut out = Vec::with_capacity(3 + 2 + host.len() + 2 + payload.len());
    out.extend_from_slice(&[0, 0, 0]);
    gost_proto::socks::put_host(&mut out, &host, port);
    out.extend_from_slice(payload);
    Ok(out)
}

/// The payload length of the complete relay frame `LEN(2) PAYLOAD` at the
/// start of `buf`, if it is all there.
fn relay_frame_len(buf: &[u8]) -> Option<usize> {
    let len = u16::from_be_bytes([*buf.first()?, *buf.get(1)?]) as usize;
    (buf.len() >= 2 + len).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn frames_out_and_back_with_partial_reads() {
        let (c, mut s) = gost_core::test_util::tcp_pair().await;
        let mut tun = UdpTunnel::new(c.into());
        tun.send_to(b"hi", "a.b:53").await.unwrap();
        let mut out = [0u8; 12];
        s.read_exact(&mut out).await.unwrap();
        assert_eq!(out, [0, 2, 0xFF, 3, 3, b'a', b'.', b'b', 0, 53, b'h', b'i']);

        // A frame from a name (dropped), then one from an address, split
        // across writes.
        let server = tokio::spawn(async move {
            s.write_all(&[0, 1, 0xFF, 3, 1, b'x', 0, 1, b'!'])
                .await
                .unwrap();
            s.write_all(&[0, 3, 0xFF, 1, 127, 0]).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            s.write_all(&[0, 1, 0, 9, b'a', b'b', b'c']).await.unwrap();
            s
        });
        let mut buf = [0u8; 8];
        let (n, from) = tun.recv_from(&mut buf).await.unwrap();
        assert_eq!(
            (&buf[..n], from),
            (&b"abc"[..], "127.0.0.1:9".parse().unwrap())
        );
        drop(server.await.unwrap());
        let err = tun.recv_from(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn relay_frames_carry_the_payload_only() {
        let (c, mut s) = gost_core::test_util::tcp_pair().await;
        let mut tun = UdpTunnel::relay(Upstream::direct(c));
        tun.send_to(b"hi", "ignored:1").await.unwrap();
        let mut out = [0u8; 4];
        s.read_exact(&mut out).await.unwrap();
        assert_eq!(out, [0, 2, b'h', b'i']);

        // An empty datagram, then one split across writes.
        let server = tokio::spawn(async move {
            s.write_all(&[0, 0, 0]).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            s.write_all(&[3, b'a', b'b', b'c']).await.unwrap();
            s
        });
        let mut buf = [0u8; 8];
        assert_eq!(tun.recv(&mut buf).await.unwrap(), 0);
        assert_eq!(tun.recv(&mut buf).await.unwrap(), 3);
        assert_eq!(&buf[..3], b"abc");
        let err = tun.recv_from(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
        drop(server.await.unwrap());
        let err = tun.recv(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn socks5_datagrams_encode_by_address_type() {
        assert_eq!(
            encode_datagram("[::1]:2", b"d").unwrap(),
            [&[0, 0, 0, 4][..], &[0; 15], &[1, 0, 2, b'd']].concat()
        );
        assert_eq!(
            encode_datagram("a:1", b"").unwrap(),
            [0, 0, 0, 3, 1, b'a', 0, 1]
        );
        for bad in [":53", "nohost", "h:99999"] {
            let err = encode_datagram(bad, b"x").unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn an_association_gives_up_after_udp_timeout() {
        let (control, _node) = gost_core::test_util::tcp_pair().await;
        let relay = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.connect(relay.local_addr().unwrap()).await.unwrap();
        let opts = AssociateOptions {
            buffer_size: 64,
            timeout: Some(std::time::Duration::from_millis(50)),
        };
        let mut tun = UdpTunnel::associated(control.into(), socket, opts);
        let err = tun.recv(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(err.to_string().contains("udp.timeout"), "{err}");
    }
}
