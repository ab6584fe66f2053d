//! GOST's `relay` handler (handler/relay, protocol go-gost/relay): a small
//! binary request naming the target (and credentials), then raw bytes, or
//! length-prefixed datagrams for UDP. With a forwarder the request's
//! target is ignored and a forwarder node is used instead, which makes
//! relay a port-forwarding endpoint that clients reach through a chain.
//!
//! Request: `VER(1)=1 CMD(1) FLEN(2) FEATURES`; each feature is
//! `TYPE(1) LEN(2) DATA` (1 user/pass, 2 address, 4 network). Response:
//! `VER STATUS FLEN(2)=0`. CMD 0 or 1 is CONNECT; the 0x80 bit asks for
//! UDP, as does the network feature. A UDP datagram travels as
//! `LEN(2) DATA` on the connection.
//!
//! As GOST, the success response is held back until the target's first
//! bytes (or first datagram) and sent right before them, unless `nodelay`
//! is set; failures are answered at once. A client that waits for the
//! response before speaking needs `nodelay` on the server.
//!
//! CMD 2 is BIND, allowed with `bind=true`. A UDP BIND (how GOST's relay
//! connector carries a SOCKS5 UDP association) binds a UDP socket here at
//! the requested address, answers at once with its address in an address
//! feature, then carries datagrams to and from any target as socks5
//! UDP-over-TCP frames (`LEN(2) FRAG ATYP ADDR PORT DATA`). A TCP BIND
//! (reverse forwarding, `rtcp`) listens strictly at the requested address
//! (a port in use is answered "service unavailable"), answers with the
//! bound address, then serves the port's peers over an smux session on
//! the connection ([`crate::mbind`]).

use std::sync::Arc;
use std::time::Duration;

use gost_core::stream::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::forward::ForwardHandler;
use super::socks::udp::Targets;
use super::socks::udptun::relay_frames;
use super::stream::ClientStream;
use super::{ConnContext, HandleFuture, Handler, HandlerError};
use gost_chain::connector::upstream::Upstream;
use gost_chain::relay::{self, RelayOptions};
use gost_chain::router::{DialError, Router, UdpUpstream};
use gost_core::auth::Auther;
use gost_core::limiter::traffic;
use gost_core::metadata::{Metadata, MetadataError};
use gost_proto::relay::*;
use gost_proto::socks::put_host;
use gost_transport::listener::Conn;

const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(15);
const DEFAULT_UDP_BUFFER: usize = 4096;

#[derive(Debug, Clone)]
pub struct RelayHandlerOptions {
    /// `readTimeout`: the request must arrive within this (GOST: 15s).
    pub read_timeout: Duration,
    /// `idleTimeout`: close a TCP relay with no traffic for this long.
    pub idle_timeout: Option<Duration>,
    /// `udp.bufferSize` (or `udpBufferSize`): largest datagram relayed.
    pub udp_buffer_size: usize,
    /// `nodelay`: answer OK as soon as the target is reached, instead of
    /// (GOST's default) right before the target's first bytes.
    pub nodelay: bool,
    /// `bind`: serve BIND requests (GOST refuses them by default).
    pub bind: bool,
    /// `mux.*`: the session of a TCP BIND.
    #[cfg(feature = "mux")]
    pub mux: gost_transport::mux::MuxConfig,
}

impl RelayHandlerOptions {
    pub fn from_metadata(md: &Metadata) -> Result<Self, MetadataError> {
        let buffer = match md.get_int("udp.bufferSize")? {
            Some(v) => Some(v),
            None => md.get_int("udpBufferSize")?,
        };
        Ok(RelayHandlerOptions {
            read_timeout: md
                .get_duration("readTimeout")?
                .filter(|t| !t.is_zero())
                .unwrap_or(DEFAULT_READ_TIMEOUT),
            idle_timeout: md.get_duration("idleTimeout")?.filter(|t| !t.is_zero()),
            udp_buffer_size: buffer
                .filter(|b| *b > 0)
                .map(|b| (b as usize).min(u16::MAX as usize))
                .unwrap_or(DEFAULT_UDP_BUFFER),
            nodelay: md.get_bool("nodelay")?.unwrap_or(false),
            bind: md.get_bool("bind")?.unwrap_or(false),
            #[cfg(feature = "mux")]
            mux: gost_transport::mux::MuxConfig::default(),
        })
    }
}

pub struct RelayHandler {
    router: Router,
    auther: Option<Arc<dyn Auther>>,
    /// The forwarder: when set, every request goes to one of its nodes.
    forward: Option<ForwardHandler>,
    opts: RelayHandlerOptions,
}

/// A parsed request.
#[derive(Debug, Default, PartialEq, Eq)]
struct Request {
    cmd: u8,
    user: Option<(String, String)>,
    /// `host:port`, IPv6 in brackets, or a unix socket's path; empty
    /// when the request names none.
    addr: String,
    udp: bool,
    /// The network feature named a unix socket (GOST's `unix` network).
    unix: bool,
}

impl RelayHandler {
    pub fn new(
        router: Router,
        auther: Option<Arc<dyn Auther>>,
        forward: Option<ForwardHandler>,
        opts: RelayHandlerOptions,
    ) -> Self {
        RelayHandler {
            router,
            auther,
            forward,
            opts,
        }
    }

    pub(crate) async fn serve(&self, stream: Stream, ctx: ConnContext) -> Result<(), HandlerError> {
        let mut client = ClientStream::new(stream, ctx.stats.clone());
        let req =
            // Handshake and dial steps run in short-lived boxes: inline,
            // their state (the UDP dial's above all) would size the future
            // every idle relayed connection keeps.
            match Box::pin(tokio::time::timeout(self.opts.read_timeout, read_request(&mut client))).await {
                Ok(Ok(r)) => r,
                // GOST closes without a response when the request cannot be
                // read: there is no version to answer in.
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(HandlerError::Protocol(format!(
                        "relay: request not complete within {:?}",
                        self.opts.read_timeout
                    )))
                }
            };
        if let Some(auther) = &self.auther {
            let (user, pass) = req.user.clone().unwrap_or_default();
            let who = gost_core::auth::AuthRequest::new(&user, &pass).from(&ctx.service, ctx.peer);
            match auther.authenticate(who).await {
                Some(id) => {
                    tracing::debug!(service = %ctx.service, client = %ctx.peer, client_id = id, "relay: authenticated")
                }
                None => {
                    let _ = client.send(&response(STATUS_UNAUTHORIZED)).await;
                    return Err(HandlerError::Protocol(format!(
                        "relay: authentication failed for user {user:?}"
                    )));
                }
            }
        }
        let network = if req.udp {
            "udp"
        } else if req.unix {
            "unix"
        } else {
            "tcp"
        };
        tracing::debug!(service = %ctx.service, client = %ctx.peer, cmd = req.cmd, dst = %gost_core::escape::esc(&req.addr), network, "relay request");
        if let Some(fwd) = &self.forward {
            return self.forward(client, fwd, &ctx, network).await;
        }
        match req.cmd & CMD_MASK {
            0 | CMD_CONNECT => self.connect(client, &ctx, &req, network).await,
            CMD_BIND => Box::pin(self.bind(client, &ctx, &req)).await,
            other => {
                let _ = client.send(&response(STATUS_BAD_REQUEST)).await;
                Err(HandlerError::Protocol(format!(
                    "relay: unknown command {other}"
                )))
            }
        }
    }

    async fn connect(
        &self,
        mut client: ClientStream,
        ctx: &ConnContext,
        req: &Request,
        network: &str,
    ) -> Result<(), HandlerError> {
        if req.addr.is_empty() {
            let _ = client.send(&response(STATUS_BAD_REQUEST)).await;
            return Err(HandlerError::Protocol("relay: target not specified".into()));
        }
        if req.udp {
            let mut sock = match Box::pin(self.router.dial_udp(&req.addr, ctx.peer.ip())).await {
                Ok(s) => s,
                Err(e) => {
                    let _ = client.send(&response(dial_failure(&e))).await;
                    return Err(e.into());
                }
            };
            return self.relay_udp(client, &mut sock, ctx).await;
        }
        let dialed = if req.unix {
            // As GOST: the socket on this host, not through the chain.
            match self.router.check_bypass("unix", &req.addr).await {
                Ok(()) => gost_transport::unix::connect(&req.addr)
                    .await
                    .map(Upstream::direct)
                    .map_err(|source| DialError::Io {
                        network: "unix",
                        addr: req.addr.clone(),
                        source,
                    }),
                Err(e) => Err(e),
            }
        } else {
            Box::pin(self.router.dial_tcp(&req.addr, ctx.peer.ip())).await
        };
        let upstream = match dialed {
            Ok(s) => s,
            Err(e) => {
                let _ = client.send(&response(dial_failure(&e))).await;
                return Err(e.into());
            }
        };
        tracing::debug!(service = %ctx.service, client = %ctx.peer, dst = %gost_core::escape::esc(&req.addr), network, "relay connect");
        self.relay_stream(client, upstream, ctx).await
    }

    /// A BIND request: a UDP socket here, answered at once, then frames
    /// to and from any target the service's bypass lets through.
    async fn bind(
        &self,
        mut client: ClientStream,
        ctx: &ConnContext,
        req: &Request,
    ) -> Result<(), HandlerError> {
        if !self.opts.bind {
            // As GOST without `bind=true`.
            let _ = client.send(&response(STATUS_FORBIDDEN)).await;
            tracing::debug!(service = %ctx.service, client = %ctx.peer, "relay: BIND not allowed");
            return Ok(());
        }
        if !req.udp {
            return self.bind_tcp(client, ctx, req).await;
        }
        let at = if req.addr.is_empty() {
            "0.0.0.0:0"
        } else {
            &req.addr
        };
        let mut targets = Targets::direct(&self.router);
        let bound = match targets.bind(at).await {
            Ok(a) => a,
            Err(e) => {
                let _ = client
                    .write_all(&response(STATUS_SERVICE_UNAVAILABLE))
                    .await;
                return Err(HandlerError::Protocol(format!(
                    "relay: UDP BIND on {at}: {e}"
                )));
            }
        };
        let mut ok = vec![VERSION, STATUS_OK];
        let mut addr = Vec::new();
        put_host(&mut addr, &bound.ip().to_string(), bound.port());
        ok.extend_from_slice(&(3 + addr.len() as u16).to_be_bytes());
        ok.push(FEATURE_ADDR);
        ok.extend_from_slice(&(addr.len() as u16).to_be_bytes());
        ok.extend_from_slice(&addr);
        client.send(&ok).await?;
        tracing::debug!(service = %ctx.service, client = %ctx.peer, bind = %bound, "relay: udp bind");
        relay_frames(
            client.into_inner(),
            Vec::new(),
            targets,
            ctx,
            self.opts.udp_buffer_size,
        )
        .await?;
        tracing::debug!(service = %ctx.service, client = %ctx.peer, bind = %bound, "relay: udp bind closed");
        Ok(())
    }

    /// GOST's TCP BIND: a port here (or with network `unix` a unix
    /// socket, `runix`) whose peers come to the client as streams of an
    /// smux session on its connection.
    #[cfg(feature = "mux")]
    async fn bind_tcp(
        &self,
        mut client: ClientStream,
        ctx: &ConnContext,
        req: &Request,
    ) -> Result<(), HandlerError> {
        let at = if req.addr.is_empty() && !req.unix {
            "0.0.0.0:0"
        } else {
            &req.addr
        };
        let listened = if req.unix {
            crate::mbind::listen_unix(at)
        } else {
            crate::mbind::listen(at).await
        };
        let listener = match listened {
            Ok(l) => l,
            Err(e) => {
                let _ = client
                    .write_all(&response(STATUS_SERVICE_UNAVAILABLE))
                    .await;
                return Err(HandlerError::Protocol(format!(
                    "relay: BIND on {}: {e}",
                    gost_core::escape::esc(at)
                )));
            }
        };
        let answer = match listener.local_addr()? {
            Some(bound) => response_with_addrs(STATUS_OK, &[bound]),
            None => response_with_name(STATUS_OK, at).ok_or_else(|| {
                HandlerError::Protocol("relay: BIND: unix socket path over 255 bytes".into())
            })?,
        };
        client.send(&answer).await?;
        crate::mbind::serve(
            client.into_inner(),
            listener,
            crate::mbind::PeerHeader::Relay,
            &self.opts.mux,
            ctx,
            self.opts.idle_timeout,
        )
        .await
    }

    #[cfg(not(feature = "mux"))]
    async fn bind_tcp(
        &self,
        mut client: ClientStream,
        _ctx: &ConnContext,
        _req: &Request,
    ) -> Result<(), HandlerError> {
        let _ = client
            .write_all(&response(STATUS_SERVICE_UNAVAILABLE))
            .await;
        Err(HandlerError::Protocol(
            "relay: TCP BIND needs the mux feature, which this build lacks".into(),
        ))
    }

    /// Forwarder mode: the node the hop picks, whatever the request named.
    async fn forward(
        &self,
        mut client: ClientStream,
        fwd: &ForwardHandler,
        ctx: &ConnContext,
        network: &str,
    ) -> Result<(), HandlerError> {
        if network == "udp" {
            let (mut sock, _node) = match Box::pin(fwd.dial(ctx, "udp", |a| async move {
                self.router.dial_udp(&a, ctx.peer.ip()).await
            }))
            .await
            {
                Ok(x) => x,
                Err(e) => {
                    let _ = client.send(&response(forward_failure(&e))).await;
                    return Err(e);
                }
            };
            return self.relay_udp(client, &mut sock, ctx).await;
        }
        let (upstream, _node) = match Box::pin(fwd.dial(ctx, network, |a| async move {
            if network == "unix" {
                self.router.dial_unix(&a, ctx.peer.ip()).await
            } else {
                self.router.dial_tcp(&a, ctx.peer.ip()).await
            }
        }))
        .await
        {
            Ok(x) => x,
            Err(e) => {
                let _ = client.send(&response(forward_failure(&e))).await;
                return Err(e);
            }
        };
        self.relay_stream(client, upstream, ctx).await
    }

    /// Answers OK, at once with `nodelay`, else (as GOST) right before
    /// the target's first bytes, then relays.
    async fn relay_stream(
        &self,
        mut client: ClientStream,
        upstream: Upstream,
        ctx: &ConnContext,
    ) -> Result<(), HandlerError> {
        let opts = RelayOptions {
            idle_timeout: self.opts.idle_timeout,
        };
        if self.opts.nodelay {
            client.send(&response(STATUS_OK)).await?;
            relay::relay(client.into_inner(), upstream, ctx, &opts).await?;
        } else {
            let client = client.into_inner();
            relay::relay_answering(client, upstream, response(STATUS_OK), ctx, &opts).await?;
        }
        Ok(())
    }

    /// [`Self::relay_stream`] for datagrams: without `nodelay` the OK goes
    /// out with the first datagram back.
    async fn relay_udp(
        &self,
        mut client: ClientStream,
        sock: &mut UdpUpstream,
        ctx: &ConnContext,
    ) -> Result<(), HandlerError> {
        let answer = if self.opts.nodelay {
            client.send(&response(STATUS_OK)).await?;
            None
        } else {
            Some(response(STATUS_OK))
        };
        relay_datagrams(
            client.into_inner(),
            sock,
            ctx,
            self.opts.udp_buffer_size,
            answer,
        )
        .await
    }
}

/// GOST answers a target its bypass refuses "forbidden", for TCP and UDP
/// alike, and any other failed dial "network unreachable".
fn dial_failure(e: &DialError) -> u8 {
    if e.is_bypass() {
        STATUS_FORBIDDEN
    } else {
        STATUS_NETWORK_UNREACHABLE
    }
}

/// GOST answers "service unavailable" when the hop has no node left and
/// "host unreachable" when the node's dial failed.
fn forward_failure(e: &HandlerError) -> u8 {
    match e {
        HandlerError::NoNode => STATUS_SERVICE_UNAVAILABLE,
        _ => STATUS_HOST_UNREACHABLE,
    }
}

fn response(status: u8) -> [u8; 4] {
    [VERSION, status, 0, 0]
}

/// Reads the request with exact reads, so no byte past it is consumed.
async fn read_request(client: &mut ClientStream) -> Result<Request, HandlerError> {
    let mut head = [0u8; 4];
    client.read_exact(&mut head).await?;
    if head[0] != VERSION {
        return Err(HandlerError::Protocol(format!(
            "relay: unsupported version {}",
            head[0]
        )));
    }
    let flen = u16::from_be_bytes([head[2], head[3]]) as usize;
    let mut features = vec![0u8; flen];
    client.read_exact(&mut features).await?;
    parse_request(head[1], &features).map_err(HandlerError::Protocol)
}

fn parse_request(cmd: u8, mut features: &[u8]) -> Result<Request, String> {
    let mut req = Request {
        cmd,
        udp: cmd & FLAG_UDP != 0,
        ..Request::default()
    };
    while !features.is_empty() {
        let (kind, data, rest) = split_feature(features).ok_or("relay: truncated feature")?;
        features = rest;
        match kind {
            FEATURE_USER_AUTH => req.user = Some(parse_user(data)?),
            FEATURE_ADDR => req.addr = parse_addr(data)?,
            FEATURE_NETWORK => {
                let id = data
                    .get(..2)
                    .map(|b| u16::from_be_bytes([b[0], b[1]]))
                    .ok_or("relay: truncated network feature")?;
                match id {
                    NETWORK_TCP => {}
                    NETWORK_UDP => req.udp = true,
                    NETWORK_UNIX => req.unix = true,
                    other => return Err(format!("relay: network {other:#x} is not supported")),
                }
            }
            // Tunnel ids belong to GOST's tunnel handler; a plain relay
            // ignores them, as GOST's does.
            FEATURE_TUNNEL => {}
            other => return Err(format!("relay: unknown feature {other}")),
        }
    }
    if req.unix {
        if req.udp {
            return Err("relay: UDP over a unix socket is not supported".into());
        }
        // A unix socket's path travels as a name with port 0.
        req.addr = host_only(&req.addr).to_string();
    }
    Ok(req)
}

fn parse_user(b: &[u8]) -> Result<(String, String), String> {
    let short = || "relay: truncated user/password feature".to_string();
    let ulen = *b.first().ok_or_else(short)? as usize;
    let user = b.get(1..1 + ulen).ok_or_else(short)?;
    let plen = *b.get(1 + ulen).ok_or_else(short)? as usize;
    let pass = b.get(2 + ulen..2 + ulen + plen).ok_or_else(short)?;
    Ok((
        String::from_utf8_lossy(user).into_owned(),
        String::from_utf8_lossy(pass).into_owned(),
    ))
}

/// UDP over the relay connection: `LEN(2) DATA` frames each way, until the
/// client closes; `answer`, if held back, goes out before the first frame.
async fn relay_datagrams(
    mut client: Stream,
    sock: &mut UdpUpstream,
    ctx: &ConnContext,
    buffer_size: usize,
    mut answer: Option<[u8; 4]>,
) -> Result<(), HandlerError> {
    let mut inbuf: Vec<u8> = Vec::new();
    let mut out = vec![0u8; 2 + buffer_size];
    let mut pacer = traffic::Pacer::new(ctx.traffic.clone());
    loop {
        while inbuf.len() >= 2 {
            let len = u16::from_be_bytes([inbuf[0], inbuf[1]]) as usize;
            if inbuf.len() < 2 + len {
                break;
            }
            match sock.send(&inbuf[2..2 + len]).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e.into()),
            }
            inbuf.drain(..2 + len);
        }
        inbuf.reserve(buffer_size + 2);
        tokio::select! {
            r = client.read_buf(&mut inbuf), if pacer.open(true) => match r {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    if let Some(s) = &ctx.stats {
                        s.add_input(n as u64);
                    }
                    pacer.charge(true, n);
                }
                Err(e) if gost_chain::relay::is_disconnect(&e) => return Ok(()),
                Err(e) => return Err(e.into()),
            },
            r = sock.recv(&mut out[2..]), if pacer.open(false) => {
                let n = match r {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                    Err(e) => return Err(e.into()),
                };
                out[..2].copy_from_slice(&(n as u16).to_be_bytes());
                pacer.charge(false, 2 + n);
                if let Some(a) = answer.take() {
                    client.write_all(&a).await?;
                }
                client.write_all_now(&out[..2 + n]).await?;
                if let Some(s) = &ctx.stats {
                    s.add_output(2 + n as u64);
                }
            }
            _ = pacer.wait(), if pacer.waiting() => {}
        }
    }
}

impl Handler for RelayHandler {
    fn handle(&self, conn: Conn, ctx: ConnContext) -> HandleFuture<'_> {
        super::tcp_only("relay", conn, |s| self.serve(s, ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feature(kind: u8, data: &[u8]) -> Vec<u8> {
        let mut f = vec![kind];
        f.extend_from_slice(&(data.len() as u16).to_be_bytes());
        f.extend_from_slice(data);
        f
    }

    #[test]
    fn requests() {
        let mut f = feature(FEATURE_USER_AUTH, &[1, b'u', 2, b'p', b'w']);
        f.extend(feature(
            FEATURE_ADDR,
            &[3, 4, b'h', b'o', b's', b't', 0, 80],
        ));
        let r = parse_request(CMD_CONNECT, &f).unwrap();
        assert_eq!(r.user, Some(("u".into(), "pw".into())));
        assert_eq!(r.addr, "host:80");
        assert!(!r.udp);

        let mut f = feature(
            FEATURE_ADDR,
            &[4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 53],
        );
        f.extend(feature(FEATURE_NETWORK, &[0, 1]));
        let r = parse_request(0, &f).unwrap();
        assert_eq!(r.addr, "[::1]:53");
        assert!(r.udp);
        assert!(parse_request(CMD_CONNECT | FLAG_UDP, &[]).unwrap().udp);

        let v4 = feature(FEATURE_ADDR, &[1, 127, 0, 0, 1, 0x1f, 0x90]);
        assert_eq!(parse_request(1, &v4).unwrap().addr, "127.0.0.1:8080");

        for bad in [
            vec![FEATURE_ADDR, 0],
            feature(FEATURE_ADDR, &[9, 1, 2]),
            feature(FEATURE_ADDR, &[1, 127, 0]),
            feature(FEATURE_USER_AUTH, &[5, b'u']),
            feature(FEATURE_NETWORK, &[0, 2]),
            feature(0x77, &[]),
        ] {
            assert!(parse_request(1, &bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn options() {
        let md: Metadata =
            serde_json::from_str(r#"{"readTimeout":"2s","udp.bufferSize":70000}"#).unwrap();
        let o = RelayHandlerOptions::from_metadata(&md).unwrap();
        assert_eq!(o.read_timeout, Duration::from_secs(2));
        assert_eq!(o.udp_buffer_size, 65535);
        assert!(!o.bind);
        let bind: Metadata = serde_json::from_str(r#"{"bind":true}"#).unwrap();
        assert!(RelayHandlerOptions::from_metadata(&bind).unwrap().bind);
    }
}
