//! SOCKS5 (`socks5`, `socks`; GOST's handler/socks/v5): RFC 1928 with the
//! user/password method of RFC 1929, CONNECT, BIND, UDP ASSOCIATE and
//! GOST's UDP-over-TCP command (0xF3).
//!
//! As in GOST, a service with an auther accepts only user/password, and
//! UDP (ASSOCIATE, and UDP-over-TCP with port 0) and BIND (and
//! UDP-over-TCP with a port) are off unless enabled (`udp=true`,
//! `bind=true`); a disabled command is answered "not allowed" (0x02).
//! GOST's multiplexed BIND (0xF2, for reverse forwarding: see
//! [`crate::mbind`]) needs `bind=true` too. GOST's other extensions (TLS
//! methods 0x80/0x82, Tor's resolve commands) are answered "command not
//! supported" like any unknown command.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use gost_core::stream::Stream;
use gost_proto::socks::{
    reply, ATYP_DOMAIN, ATYP_IPV4, ATYP_IPV6, REP_ATYP_NOT_SUPPORTED, REP_CMD_NOT_SUPPORTED,
    REP_CONN_REFUSED, REP_GENERAL_FAILURE, REP_HOST_UNREACHABLE, REP_NET_UNREACHABLE,
    REP_NOT_ALLOWED, REP_SUCCEEDED, VERSION,
};

use super::{finish_silent, protocol, Granted, Handshake, ReadError, TargetAddr};
use crate::{ConnContext, HandleFuture, Handler, HandlerError};
use gost_chain::router::{DialError, Router};
use gost_core::auth::Auther;
use gost_core::metadata::{Metadata, MetadataError};
use gost_transport::listener::Conn;

const METHOD_NO_AUTH: u8 = 0x00;
const METHOD_USER_PASS: u8 = 0x02;
const METHOD_NONE_ACCEPTABLE: u8 = 0xFF;
/// RFC 1929 sub-negotiation version and status codes.
const USER_PASS_VERSION: u8 = 1;
const USER_PASS_OK: u8 = 0;
const USER_PASS_FAILURE: u8 = 1;

const CMD_CONNECT: u8 = 1;
const CMD_BIND: u8 = 2;
const CMD_UDP_ASSOCIATE: u8 = 3;
/// GOST's UDP-over-TCP extension.
const CMD_UDP_TUN: u8 = gost_proto::socks::CMD_UDP_TUN;
#[cfg(feature = "mux")]
const CMD_MUX_BIND: u8 = gost_proto::socks::CMD_MUX_BIND;

/// GOST's UDP relay buffer when `udp.bufferSize` is not set.
const DEFAULT_UDP_BUFFER: usize = 4096;
/// The largest UDP payload there is.
const MAX_UDP_BUFFER: usize = 65535;

/// Typed handler metadata, parsed once at start-up.
#[derive(Debug, Clone)]
pub struct Socks5Options {
    /// `readTimeout`: the whole handshake (greeting, authentication and
    /// request) must arrive within this.
    pub read_timeout: Duration,
    /// `sniffing`: check a CONNECT's inner host against the service's
    /// bypass; `None` when off.
    pub sniffing: Option<Duration>,
    /// `idleTimeout`: close a CONNECT relay with no traffic for this long.
    pub idle_timeout: Option<Duration>,
    /// `udp`: allow UDP ASSOCIATE (off by default, as in GOST).
    pub udp: bool,
    /// `udp.bufferSize` (or `udpBufferSize`): largest datagram relayed;
    /// longer ones are truncated, as GOST's fixed buffer does.
    pub udp_buffer_size: usize,
    /// `bind`: allow BIND (off by default, as in GOST).
    pub bind: bool,
    /// `publicAddr` (or `socks.publicAddr`): the host BIND reports instead
    /// of the control connection's local IP, for a server behind NAT.
    pub public_addr: Option<String>,
    /// `mux.*`: the session of a multiplexed BIND.
    #[cfg(feature = "mux")]
    pub mux: gost_transport::mux::MuxConfig,
}

impl Default for Socks5Options {
    fn default() -> Self {
        Socks5Options {
            read_timeout: super::DEFAULT_READ_TIMEOUT,
            idle_timeout: None,
            sniffing: None,
            udp: false,
            udp_buffer_size: DEFAULT_UDP_BUFFER,
            bind: false,
            public_addr: None,
            #[cfg(feature = "mux")]
            mux: gost_transport::mux::MuxConfig::default(),
        }
    }
}

impl Socks5Options {
    pub fn from_metadata(md: &Metadata) -> Result<Self, MetadataError> {
        let buffer = match md.get_int("udp.bufferSize")? {
            Some(v) => Some(v),
            None => md.get_int("udpBufferSize")?,
        };
        Ok(Socks5Options {
            read_timeout: super::read_timeout(md)?,
            idle_timeout: super::idle_timeout(md)?,
            sniffing: crate::sniffing::from_metadata(md)?,
            udp: md.get_bool("udp")?.unwrap_or(false),
            udp_buffer_size: buffer
                .filter(|b| *b > 0)
                .map(|b| (b as usize).min(MAX_UDP_BUFFER))
                .unwrap_or(DEFAULT_UDP_BUFFER),
            bind: md.get_bool("bind")?.unwrap_or(false),
            public_addr: match md.get_string("socks.publicAddr")? {
                Some(v) if !v.is_empty() => Some(v),
                _ => md.get_string("publicAddr")?.filter(|v| !v.is_empty()),
            },
            #[cfg(feature = "mux")]
            mux: gost_transport::mux::MuxConfig::default(),
        })
    }
}

/// A request after the method negotiation.
#[derive(Debug)]
struct Request {
    cmd: u8,
    target: TargetAddr,
}

pub struct Socks5Handler {
    router: Router,
    auther: Option<Arc<dyn Auther>>,
    opts: Socks5Options,
}

impl Socks5Handler {
    pub fn new(router: Router, auther: Option<Arc<dyn Auther>>, opts: Socks5Options) -> Self {
        Socks5Handler {
            router,
            auther,
            opts,
        }
    }

    /// The greeting and request, then either a granted CONNECT to relay or
    /// any other command served to its end.
    /// Works on a stream whose first byte was only peeked (the `auto`
    /// handler), since the whole greeting is read here.
    async fn handshake(
        &self,
        stream: Stream,
        ctx: &ConnContext,
    ) -> Result<Option<Granted>, HandlerError> {
        let mut hs = Handshake::new(stream, ctx, self.opts.read_timeout);
        let user = match self.negotiate(&mut hs, ctx).await {
            Ok(u) => u,
            Err(e) => return finish_silent(Err(e)).map(|()| None),
        };
        let req = match read_request(&mut hs).await {
            Ok(r) => r,
            Err((code, e)) => {
                let _ = hs.write(&reply(code, None)).await;
                return finish_silent(Err(e)).map(|()| None);
            }
        };
        tracing::debug!(service = %ctx.service, client = %ctx.peer, cmd = req.cmd, dst = %gost_core::escape::esc(&req.target), user = user.as_deref().unwrap_or(""), "socks5 request");
        gost_core::recorder::note(|r| {
            r.host = req.target.to_string();
            if matches!(req.cmd, CMD_UDP_ASSOCIATE | CMD_UDP_TUN) {
                r.network = "udp".into();
            }
        });
        // The rare commands' state is boxed: inline, it would size every
        // CONNECT's handshake.
        match req.cmd {
            CMD_CONNECT => self.connect(hs, req.target, ctx).await.map(Some),
            CMD_UDP_ASSOCIATE if self.opts.udp => Box::pin(super::udp::associate(
                hs,
                ctx,
                self.opts.udp_buffer_size,
                &self.router,
            ))
            .await
            .map(|()| None),
            CMD_BIND if self.opts.bind => Box::pin(super::bind::bind(
                hs,
                ctx,
                &req.target,
                self.opts.public_addr.as_deref(),
                self.opts.idle_timeout,
            ))
            .await
            .map(|()| None),
            #[cfg(feature = "mux")]
            CMD_MUX_BIND if self.opts.bind => Box::pin(super::bind::mux_bind(
                hs,
                ctx,
                &req.target,
                self.opts.public_addr.as_deref(),
                &self.opts.mux,
                self.opts.idle_timeout,
            ))
            .await
            .map(|()| None),
            CMD_UDP_TUN if self.udp_tun_allowed(&req.target) => Box::pin(super::udptun::serve(
                hs,
                ctx,
                &req.target,
                &self.router,
                self.opts.udp_buffer_size,
            ))
            .await
            .map(|()| None),
            // GOST answers disabled commands and counts no error.
            #[cfg(feature = "mux")]
            CMD_MUX_BIND => {
                hs.write(&reply(REP_NOT_ALLOWED, None)).await?;
                tracing::debug!(service = %ctx.service, client = %ctx.peer, cmd = req.cmd, "socks5 command not allowed");
                Ok(None)
            }
            CMD_UDP_ASSOCIATE | CMD_BIND | CMD_UDP_TUN => {
                hs.write(&reply(REP_NOT_ALLOWED, None)).await?;
                tracing::debug!(service = %ctx.service, client = %ctx.peer, cmd = req.cmd, "socks5 command not allowed");
                Ok(None)
            }
            other => {
                let _ = hs.write(&reply(REP_CMD_NOT_SUPPORTED, None)).await;
                Err(protocol(format!("socks5: unsupported command {other}")))
            }
        }
    }

    /// GOST's UDP-over-TCP: port 0 asks for a relay (needs `udp`), a port
    /// for a socket bound there (needs `bind`).
    fn udp_tun_allowed(&self, target: &TargetAddr) -> bool {
        let port = match target {
            TargetAddr::Ip(a) => a.port(),
            TargetAddr::Domain(_, p) => *p,
        };
        if port == 0 {
            self.opts.udp
        } else {
            self.opts.bind
        }
    }

    /// Method selection and, with an auther, RFC 1929 user/password.
    /// Returns the client id the auther gave, if any.
    async fn negotiate(
        &self,
        hs: &mut Handshake,
        ctx: &ConnContext,
    ) -> Result<Option<String>, ReadError> {
        let version = hs.u8().await?;
        if version != VERSION {
            // Not SOCKS5: no reply the client could read.
            return Err(protocol(format!("socks5: unsupported version {version}")).into());
        }
        let n = hs.u8().await? as usize;
        let methods = hs.bytes(n).await?;
        let wanted = if self.auther.is_some() {
            METHOD_USER_PASS
        } else {
            METHOD_NO_AUTH
        };
        let method = if methods.contains(&wanted) {
            wanted
        } else {
            METHOD_NONE_ACCEPTABLE
        };
        hs.write(&[VERSION, method]).await?;
        let Some(auther) = &self.auther else {
            return if method == METHOD_NO_AUTH {
                Ok(None)
            } else {
                Err(protocol("socks5: client offers no acceptable method").into())
            };
        };
        if method != METHOD_USER_PASS {
            return Err(protocol("socks5: client offers no user/password method").into());
        }
        let version = hs.u8().await?;
        if version != USER_PASS_VERSION {
            let _ = hs.write(&[USER_PASS_VERSION, USER_PASS_FAILURE]).await;
            return Err(protocol(format!(
                "socks5: unsupported user/password version {version}"
            ))
            .into());
        }
        let n = hs.u8().await? as usize;
        let user = String::from_utf8_lossy(hs.bytes(n).await?).into_owned();
        let n = hs.u8().await? as usize;
        let pass = String::from_utf8_lossy(hs.bytes(n).await?).into_owned();
        match auther
            .authenticate(
                gost_core::auth::AuthRequest::new(&user, &pass).from(&ctx.service, ctx.peer),
            )
            .await
        {
            Some(id) => {
                hs.write(&[USER_PASS_VERSION, USER_PASS_OK]).await?;
                Ok(Some(id))
            }
            None => {
                let _ = hs.write(&[USER_PASS_VERSION, USER_PASS_FAILURE]).await;
                Err(protocol(format!("socks5: authentication failed for user {user:?}")).into())
            }
        }
    }

    async fn connect(
        &self,
        mut hs: Handshake,
        target: TargetAddr,
        ctx: &ConnContext,
    ) -> Result<Granted, HandlerError> {
        let upstream = match self
            .router
            .dial_tcp(&target.to_string(), ctx.peer.ip())
            .await
        {
            Ok(u) => u,
            Err(e) => {
                let _ = hs.write(&reply(dial_reply_code(&e), None)).await;
                return Err(e.into());
            }
        };
        // RFC 1928 §6: BND is the address the proxy connected from.
        hs.write(&reply(REP_SUCCEEDED, upstream.local_addr().ok()))
            .await?;
        hs.guard_tunnel(self.opts.sniffing, &self.router).await?;
        Ok(Granted::new(hs, upstream, target))
    }
}

/// Reads `VER CMD RSV ATYP DST.ADDR DST.PORT`; an error carries the reply
/// code the client gets before the connection is closed.
async fn read_request(hs: &mut Handshake) -> Result<Request, (u8, ReadError)> {
    let fail = |e: ReadError| (REP_GENERAL_FAILURE, e);
    let head = hs.bytes(4).await.map_err(fail)?;
    let (version, cmd, atyp) = (head[0], head[1], head[3]);
    if version != VERSION {
        return Err(fail(
            protocol(format!("socks5: unsupported request version {version}")).into(),
        ));
    }
    let target = match atyp {
        ATYP_IPV4 => {
            let b = hs.bytes(4).await.map_err(fail)?;
            let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            TargetAddr::Ip(SocketAddr::from((ip, hs.u16().await.map_err(fail)?)))
        }
        ATYP_IPV6 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(hs.bytes(16).await.map_err(fail)?);
            let ip = Ipv6Addr::from(o);
            TargetAddr::Ip(SocketAddr::from((ip, hs.u16().await.map_err(fail)?)))
        }
        ATYP_DOMAIN => {
            let n = hs.u8().await.map_err(fail)? as usize;
            let name = hs.bytes(n).await.map_err(fail)?.to_vec();
            let port = hs.u16().await.map_err(fail)?;
            match String::from_utf8(name) {
                Ok(h) if !h.is_empty() => TargetAddr::Domain(h, port),
                _ => {
                    return Err((
                        REP_HOST_UNREACHABLE,
                        protocol("socks5: invalid domain name").into(),
                    ))
                }
            }
        }
        other => {
            return Err((
                REP_ATYP_NOT_SUPPORTED,
                protocol(format!("socks5: unsupported address type {other}")).into(),
            ))
        }
    };
    Ok(Request { cmd, target })
}

/// The reply code for a failed dial, from what the OS reported.
fn dial_reply_code(e: &DialError) -> u8 {
    match e {
        DialError::Bypassed { .. } => REP_NOT_ALLOWED,
        DialError::Timeout { .. } => REP_HOST_UNREACHABLE,
        DialError::Io { source, .. } => match source.kind() {
            io::ErrorKind::ConnectionRefused => REP_CONN_REFUSED,
            io::ErrorKind::NetworkUnreachable => REP_NET_UNREACHABLE,
            io::ErrorKind::HostUnreachable
            | io::ErrorKind::TimedOut
            | io::ErrorKind::NotFound
            | io::ErrorKind::AddrNotAvailable => REP_HOST_UNREACHABLE,
            _ => REP_GENERAL_FAILURE,
        },
    }
}

impl super::Exchange for Socks5Handler {
    fn exchange<'a>(
        &'a self,
        stream: Stream,
        ctx: &'a ConnContext,
    ) -> impl std::future::Future<Output = Result<Option<Granted>, HandlerError>> + Send + 'a {
        self.handshake(stream, ctx)
    }

    fn idle_timeout(&self) -> Option<Duration> {
        self.opts.idle_timeout
    }
}

impl Handler for Socks5Handler {
    fn handle(&self, conn: Conn, ctx: ConnContext) -> HandleFuture<'_> {
        crate::tcp_only("socks5", conn, |s| super::serve(self, s, ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_encode_both_families() {
        assert_eq!(
            reply(REP_SUCCEEDED, Some("1.2.3.4:258".parse().unwrap())),
            [5, 0, 0, 1, 1, 2, 3, 4, 1, 2]
        );
        let r = reply(REP_GENERAL_FAILURE, Some("[::1]:80".parse().unwrap()));
        assert_eq!(&r[..4], &[5, 1, 0, 4]);
        assert_eq!(r.len(), 22);
        // A v4-mapped address is reported as the IPv4 it is.
        let r = reply(REP_SUCCEEDED, Some("[::ffff:10.0.0.1]:1".parse().unwrap()));
        assert_eq!(r, [5, 0, 0, 1, 10, 0, 0, 1, 0, 1]);
        assert_eq!(
            reply(REP_CMD_NOT_SUPPORTED, None),
            [5, 7, 0, 1, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn dial_errors_map_to_reply_codes() {
        let io_err = |kind| DialError::Io {
            network: "tcp",
            addr: "x:1".into(),
            source: io::Error::from(kind),
        };
        assert_eq!(
            dial_reply_code(&io_err(io::ErrorKind::ConnectionRefused)),
            REP_CONN_REFUSED
        );
        assert_eq!(
            dial_reply_code(&io_err(io::ErrorKind::NetworkUnreachable)),
            REP_NET_UNREACHABLE
        );
        assert_eq!(
            dial_reply_code(&io_err(io::ErrorKind::HostUnreachable)),
            REP_HOST_UNREACHABLE
        );
        assert_eq!(
            dial_reply_code(&io_err(io::ErrorKind::PermissionDenied)),
            REP_GENERAL_FAILURE
        );
        let bypassed = DialError::Bypassed {
            network: "tcp",
            addr: "x:1".into(),
        };
        assert_eq!(dial_reply_code(&bypassed), REP_NOT_ALLOWED);
    }

    #[test]
    fn options_from_metadata() {
        let md: Metadata =
            serde_json::from_str(r#"{"readTimeout":"2s","udp":true,"udp.bufferSize":100000}"#)
                .unwrap();
        let o = Socks5Options::from_metadata(&md).unwrap();
        assert_eq!(o.read_timeout, Duration::from_secs(2));
        assert!(o.udp);
        assert_eq!(o.udp_buffer_size, MAX_UDP_BUFFER);
        let d = Socks5Options::from_metadata(&Metadata::new()).unwrap();
        assert_eq!(d.read_timeout, Duration::from_secs(15));
        assert!(!d.udp);
        let bind: Metadata =
            serde_json::from_str(r#"{"bind":true,"publicAddr":"example.net"}"#).unwrap();
        let o = Socks5Options::from_metadata(&bind).unwrap();
        assert!(o.bind && !o.udp);
        assert_eq!(o.public_addr.as_deref(), Some("example.net"));
    }
}
