//! SOCKS4 and SOCKS4a (`socks4`, `socks4a`; GOST's handler/socks/v4).
//!
//! CONNECT only. BIND is answered "rejected": GOST does not implement it
//! either (it closes the connection without a reply), and a rejection at
//! least tells the client why. With an auther, the request's user id is
//! checked with an empty password, as GOST does, since SOCKS4 carries no
//! password.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use gost_core::stream::Stream;

use super::{finish_silent, ipv4_or_zero, protocol, Granted, Handshake, ReadError, TargetAddr};
use crate::{ConnContext, HandleFuture, Handler, HandlerError};
use gost_chain::router::Router;
use gost_core::auth::Auther;
use gost_core::metadata::{Metadata, MetadataError};
use gost_transport::listener::Conn;

const VERSION: u8 = 4;
const CMD_CONNECT: u8 = 1;
const CMD_BIND: u8 = 2;
/// Reply codes (the reply's version byte is 0).
const GRANTED: u8 = 0x5A;
const REJECTED: u8 = 0x5B;
const REJECTED_USERID: u8 = 0x5D;

/// Typed handler metadata, parsed once at start-up.
#[derive(Debug, Clone)]
pub struct Socks4Options {
    /// `readTimeout`: the whole request must arrive within this.
    pub read_timeout: Duration,
    /// `sniffing`: check a CONNECT's inner host against the service's
    /// bypass; `None` when off.
    pub sniffing: Option<Duration>,
    /// `idleTimeout`: close a relay with no traffic for this long.
    pub idle_timeout: Option<Duration>,
}

impl Default for Socks4Options {
    fn default() -> Self {
        Socks4Options {
            read_timeout: super::DEFAULT_READ_TIMEOUT,
            idle_timeout: None,
            sniffing: None,
        }
    }
}

impl Socks4Options {
    pub fn from_metadata(md: &Metadata) -> Result<Self, MetadataError> {
        Ok(Socks4Options {
            read_timeout: super::read_timeout(md)?,
            idle_timeout: super::idle_timeout(md)?,
            sniffing: crate::sniffing::from_metadata(md)?,
        })
    }
}

/// One parsed SOCKS4 request (after the version byte).
#[derive(Debug)]
struct Request {
    cmd: u8,
    target: TargetAddr,
    user_id: String,
}

pub struct Socks4Handler {
    router: Router,
    auther: Option<Arc<dyn Auther>>,
    opts: Socks4Options,
}

impl Socks4Handler {
    pub fn new(router: Router, auther: Option<Arc<dyn Auther>>, opts: Socks4Options) -> Self {
        Socks4Handler {
            router,
            auther,
            opts,
        }
    }

    /// The request, then a granted CONNECT to relay.
    /// Works on a stream whose first byte was only peeked (the `auto`
    /// handler), since the whole request is read here.
    async fn handshake(
        &self,
        stream: Stream,
        ctx: &ConnContext,
    ) -> Result<Option<Granted>, HandlerError> {
        let mut hs = Handshake::new(stream, ctx, self.opts.read_timeout);
        let req = match read_request(&mut hs).await {
            Ok(r) => r,
            Err(e) => return finish_silent(Err(e)).map(|()| None),
        };
        tracing::debug!(service = %ctx.service, client = %ctx.peer, cmd = req.cmd, dst = %gost_core::escape::esc(&req.target), user = %gost_core::escape::esc(&req.user_id), "socks4 request");
        if let Some(auther) = &self.auther {
            let who =
                gost_core::auth::AuthRequest::new(&req.user_id, "").from(&ctx.service, ctx.peer);
            if auther.authenticate(who).await.is_none() {
                let _ = hs.write(&reply(REJECTED_USERID, None)).await;
                return Err(protocol(format!(
                    "socks4: user id {:?} rejected",
                    req.user_id
                )));
            }
        }
        match req.cmd {
            CMD_CONNECT => {}
            CMD_BIND => {
                let _ = hs.write(&reply(REJECTED, None)).await;
                return Err(protocol("socks4: BIND is not supported"));
            }
            other => {
                let _ = hs.write(&reply(REJECTED, None)).await;
                return Err(protocol(format!("socks4: unknown command {other}")));
            }
        }
        let upstream = match self
            .router
            .dial_tcp(&req.target.to_string(), ctx.peer.ip())
            .await
        {
            Ok(u) => u,
            Err(e) => {
                let _ = hs.write(&reply(REJECTED, None)).await;
                return Err(e.into());
            }
        };
        hs.write(&reply(GRANTED, upstream.local_addr().ok()))
            .await?;
        hs.guard_tunnel(self.opts.sniffing, &self.router).await?;
        Ok(Some(Granted::new(hs, upstream, req.target)))
    }
}

/// Reads a request. A wrong version is closed without a reply (the client
/// does not speak SOCKS4, so it could not read one); any other malformed
/// or incomplete request gets "rejected" first.
async fn read_request(hs: &mut Handshake) -> Result<Request, ReadError> {
    let version = hs.u8().await?;
    if version != VERSION {
        return Err(protocol(format!("socks4: unsupported version {version}")).into());
    }
    match read_body(hs).await {
        Ok(r) => Ok(r),
        Err(ReadError::Failed(e)) => {
            let _ = hs.write(&reply(REJECTED, None)).await;
            Err(ReadError::Failed(e))
        }
        // The version byte has arrived, so the client is no longer silent.
        Err(ReadError::Silent) => Err(protocol("socks4: truncated request").into()),
    }
}

async fn read_body(hs: &mut Handshake) -> Result<Request, ReadError> {
    let cmd = hs.u8().await?;
    let port = hs.u16().await?;
    let b = hs.bytes(4).await?;
    let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
    let user_id = String::from_utf8_lossy(&hs.until_nul("user id").await?).into_owned();
    // SOCKS4a: 0.0.0.x (x != 0) means a host name follows the user id.
    let o = ip.octets();
    let target = if o[..3] == [0, 0, 0] && o[3] != 0 {
        let host = hs.until_nul("host name").await?;
        match String::from_utf8(host) {
            Ok(h) if !h.is_empty() => TargetAddr::Domain(h, port),
            _ => return Err(protocol("socks4a: invalid host name").into()),
        }
    } else {
        TargetAddr::Ip(SocketAddr::from((ip, port)))
    };
    Ok(Request {
        cmd,
        target,
        user_id,
    })
}

/// `VN=0 CD DSTPORT DSTIP`; the address is the bound one when granted.
fn reply(code: u8, bound: Option<SocketAddr>) -> [u8; 8] {
    let (port, ip) = bound
        .map(|a| (a.port(), ipv4_or_zero(a.ip())))
        .unwrap_or((0, [0; 4]));
    let p = port.to_be_bytes();
    [0, code, p[0], p[1], ip[0], ip[1], ip[2], ip[3]]
}

impl super::Exchange for Socks4Handler {
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

impl Handler for Socks4Handler {
    fn handle(&self, conn: Conn, ctx: ConnContext) -> HandleFuture<'_> {
        crate::tcp_only("socks4", conn, |s| super::serve(self, s, ctx))
    }
}
