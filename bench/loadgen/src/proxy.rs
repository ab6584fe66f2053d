//! Reaching the target through a proxy: SOCKS5 (no authentication,
//! CONNECT), an HTTP proxy (CONNECT tunnel, or absolute-URI requests for
//! `keepalive`) or GOST's relay protocol (CONNECT). Every handshake message
//! is encoded once when the [`Dialer`] is built; a connection then costs
//! only the writes and reads of the handshake itself, into the caller's
//! buffer, with no allocation. The stream under the handshake is plain TCP
//! or TLS ([`Transport`]).

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http;
use crate::tls::Transport;

/// How the client reaches `--target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// TCP straight to the target (or to a port forwarder listening there).
    Direct,
    /// SOCKS5 CONNECT through the proxy, then the traffic in the tunnel.
    Socks5,
    /// `CONNECT host:port HTTP/1.1` through the proxy, then the traffic.
    HttpConnect,
    /// HTTP requests with an absolute URI sent to the proxy itself, which
    /// forwards them (keep-alive test through an HTTP proxy).
    HttpForward,
    /// GOST relay CONNECT. As GOST's relay connector does by default, the
    /// request is written and the traffic follows without waiting; the
    /// server's response (held back by a GOST server until the target's
    /// first bytes, unless it runs with `nodelay`) is read just before the
    /// first byte of the answer ([`Dialer::read_owed`]).
    Relay,
}

/// SOCKS5 greeting: version 5, one method offered, "no authentication".
pub const SOCKS5_GREETING: [u8; 3] = [5, 1, 0];

/// SOCKS5 CONNECT request for an address (IPv4 or IPv6 form).
pub fn socks5_connect_request(target: SocketAddr) -> Vec<u8> {
    let mut out = vec![5, 1, 0];
    match target {
        SocketAddr::V4(a) => {
            out.push(1);
            out.extend_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            out.push(4);
            out.extend_from_slice(&a.ip().octets());
        }
    }
    out.extend_from_slice(&target.port().to_be_bytes());
    out
}

/// Checks the server's method choice (2 bytes).
pub fn socks5_check_method(reply: [u8; 2]) -> Result<()> {
    match reply {
        [5, 0] => Ok(()),
        [5, 0xff] => bail!("SOCKS5 proxy accepts none of the offered methods (no-auth)"),
        [5, m] => bail!("SOCKS5 proxy chose method {m:#04x}, not no-auth"),
        [v, _] => bail!("not a SOCKS5 reply (version {v})"),
    }
}

/// Total length of a SOCKS5 CONNECT reply once its first 5 bytes are known
/// (the fifth is the domain length for ATYP 3); fails unless the reply says
/// "succeeded".
pub fn socks5_reply_len(head: [u8; 5]) -> Result<usize> {
    if head[0] != 5 {
        bail!("not a SOCKS5 reply (version {})", head[0]);
    }
    if head[1] != 0 {
        bail!("SOCKS5 CONNECT refused: reply code {}", head[1]);
    }
    Ok(match head[3] {
        1 => 4 + 4 + 2,
        4 => 4 + 16 + 2,
        3 => 4 + 1 + usize::from(head[4]) + 2,
        t => bail!("SOCKS5 reply with unknown address type {t}"),
    })
}

/// GOST relay protocol version.
pub const RELAY_VERSION: u8 = 1;
const RELAY_CMD_CONNECT: u8 = 1;
const RELAY_FEATURE_ADDR: u8 = 2;

/// Relay CONNECT request: `VER=1 CMD=1 FLEN(2)` then one address feature
/// `TYPE=2 LEN(2) ATYP ADDR PORT(2)` (the SOCKS5 address encoding), as
/// go-gost/relay encodes it.
pub fn relay_connect_request(target: SocketAddr) -> Vec<u8> {
    let addr = &socks5_connect_request(target)[3..];
    let feature_len = 3 + addr.len();
    let mut out = vec![RELAY_VERSION, RELAY_CMD_CONNECT];
    out.extend_from_slice(&(feature_len as u16).to_be_bytes());
    out.push(RELAY_FEATURE_ADDR);
    out.extend_from_slice(&(addr.len() as u16).to_be_bytes());
    out.extend_from_slice(addr);
    out
}

/// Length of the features that follow a relay response head
/// `VER STATUS FLEN(2)`; an error unless the status is 0 (OK).
pub fn relay_response_features(head: [u8; 4]) -> Result<usize> {
    if head[0] != RELAY_VERSION {
        bail!("not a relay response (version {})", head[0]);
    }
    if head[1] != 0 {
        bail!("relay CONNECT refused: status {}", head[1]);
    }
    Ok(usize::from(u16::from_be_bytes([head[2], head[3]])))
}

/// `CONNECT host:port HTTP/1.1` request for an address.
pub fn http_connect_request(target: SocketAddr) -> Vec<u8> {
    format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").into_bytes()
}

/// Absolute-URI keep-alive GET for an address, sent to a forwarding proxy.
pub fn http_absolute_request(target: SocketAddr) -> Vec<u8> {
    format!("GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\n\r\n").into_bytes()
}

/// Length of the proxy's answer to CONNECT at the start of `buf`, once its
/// head is complete; an error unless the status is 2xx.
pub fn http_connect_reply_len(buf: &[u8]) -> Result<Option<usize>> {
    let Some(end) = http::head_end(buf) else {
        return Ok(None);
    };
    let status = buf
        .strip_prefix(b"HTTP/1.")
        .and_then(|r| r.get(2..5))
        .context("proxy answer to CONNECT is not HTTP/1.x")?;
    if status[0] != b'2' {
        let line = buf.split(|&b| b == b'\r').next().unwrap_or_default();
        bail!("proxy refused CONNECT: {}", String::from_utf8_lossy(line));
    }
    Ok(Some(end))
}

/// Connects to `--target`, directly or through the proxy, with every
/// handshake message prepared in advance.
#[derive(Debug)]
pub struct Dialer {
    pub via: Via,
    /// Where the TCP connection goes: the proxy, or the target.
    pub connect_to: SocketAddr,
    /// SOCKS5 CONNECT, HTTP CONNECT or relay request (empty otherwise).
    handshake: Vec<u8>,
    /// Request used on kept-alive connections (`keepalive`, `idle`).
    keepalive_request: Vec<u8>,
}

impl Dialer {
    /// `forward_http`: with an HTTP proxy, send absolute-URI requests to it
    /// instead of opening a CONNECT tunnel.
    /// `relay`: through a GOST relay server (exclusive with the others).
    pub fn new(
        target: SocketAddr,
        socks5: Option<SocketAddr>,
        http_proxy: Option<SocketAddr>,
        relay: Option<SocketAddr>,
        forward_http: bool,
    ) -> Result<Self> {
        let keepalive = http::REQUEST_KEEPALIVE.to_vec();
        if let Some(p) = relay {
            if socks5.is_some() || http_proxy.is_some() {
                bail!("--relay, --socks5 and --http-proxy are exclusive");
            }
            return Ok(Dialer {
                via: Via::Relay,
                connect_to: p,
                handshake: relay_connect_request(target),
                keepalive_request: keepalive,
            });
        }
        Ok(match (socks5, http_proxy) {
            (Some(_), Some(_)) => bail!("--socks5 and --http-proxy are exclusive"),
            (None, None) => Dialer {
                via: Via::Direct,
                connect_to: target,
                handshake: Vec::new(),
                keepalive_request: keepalive,
            },
            (Some(p), None) => Dialer {
                via: Via::Socks5,
                connect_to: p,
                handshake: socks5_connect_request(target),
                keepalive_request: keepalive,
            },
            (None, Some(p)) if forward_http => Dialer {
                via: Via::HttpForward,
                connect_to: p,
                handshake: Vec::new(),
                keepalive_request: http_absolute_request(target),
            },
            (None, Some(p)) => Dialer {
                via: Via::HttpConnect,
                connect_to: p,
                handshake: http_connect_request(target),
                keepalive_request: keepalive,
            },
        })
    }

    /// The name used in result lines.
    pub fn via_name(&self) -> &'static str {
        match self.via {
            Via::Direct => "direct",
            Via::Socks5 => "socks5",
            Via::HttpConnect => "http-connect",
            Via::HttpForward => "http-forward",
            Via::Relay => "relay",
        }
    }

    /// A response is still owed after [`Self::handshake`] (relay): the
    /// caller reads it with [`Self::read_owed`] before the answer's bytes.
    pub fn owes_response(&self) -> bool {
        self.via == Via::Relay
    }

    /// The kept-alive request: absolute URI for a forwarding HTTP proxy.
    pub fn keepalive_request(&self) -> &[u8] {
        &self.keepalive_request
    }

    /// TCP connection (with TCP_NODELAY when `nodelay`), the transport's
    /// handshake (TLS) and, through a tunnelling proxy, the proxy's.
    /// `buf` (at least 512 bytes) receives the proxy's answers. With relay
    /// the response is still owed ([`Self::owes_response`]).
    pub async fn connect<T: Transport>(
        &self,
        t: &T,
        buf: &mut [u8],
        nodelay: bool,
    ) -> Result<T::Stream> {
        let tcp = TcpStream::connect(self.connect_to)
            .await
            .with_context(|| format!("connect {}", self.connect_to))?;
        if nodelay {
            tcp.set_nodelay(true)?;
        }
        let mut s = t.establish(tcp).await.context("TLS handshake")?;
        self.handshake(&mut s, buf).await?;
        Ok(s)
    }

    /// Reads the relay response still owed after [`Self::handshake`]
    /// (nothing for the other modes): exactly its bytes, never beyond.
    pub async fn read_owed<S: AsyncRead + Unpin>(&self, s: &mut S, buf: &mut [u8]) -> Result<()> {
        if self.via != Via::Relay {
            return Ok(());
        }
        let mut head = [0u8; 4];
        s.read_exact(&mut head).await.context("relay response")?;
        let n = relay_response_features(head)?;
        if n > buf.len() {
            bail!("relay response features longer than {} bytes", buf.len());
        }
        s.read_exact(&mut buf[..n])
            .await
            .context("relay response features")?;
        Ok(())
    }

    /// The tunnel handshake on a fresh connection (nothing for direct and
    /// forwarding; for relay only the request is written). Reads exactly
    /// the proxy's answer, never beyond it.
    pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        s: &mut S,
        buf: &mut [u8],
    ) -> Result<()> {
        match self.via {
            Via::Direct | Via::HttpForward => Ok(()),
            Via::Relay => {
                s.write_all(&self.handshake).await?;
                Ok(())
            }
            Via::Socks5 => {
                // Greeting and request in two round trips: some servers
                // (microsocks) discard bytes sent ahead of their reply.
                s.write_all(&SOCKS5_GREETING).await?;
                let mut m = [0u8; 2];
                s.read_exact(&mut m).await.context("SOCKS5 method reply")?;
                socks5_check_method(m)?;
                s.write_all(&self.handshake).await?;
                let mut head = [0u8; 5];
                s.read_exact(&mut head).await.context("SOCKS5 reply")?;
                let total = socks5_reply_len(head)?;
                let rest = &mut buf[..total - head.len()];
                s.read_exact(rest).await.context("SOCKS5 reply address")?;
                Ok(())
            }
            Via::HttpConnect => {
                s.write_all(&self.handshake).await?;
                // The target says nothing before our first request, so all
                // bytes read here are the proxy's answer.
                let mut filled = 0;
                loop {
                    if filled == buf.len() {
                        bail!("proxy answer to CONNECT larger than {} bytes", buf.len());
                    }
                    let n = s.read(&mut buf[filled..]).await?;
                    if n == 0 {
                        bail!("proxy closed the connection during CONNECT");
                    }
                    filled += n;
                    if let Some(end) = http_connect_reply_len(&buf[..filled])? {
                        if end != filled {
                            bail!("unexpected bytes after the CONNECT answer");
                        }
                        return Ok(());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socks5_request_encoding() {
        let v4: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            socks5_connect_request(v4),
            [5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90]
        );
        let v6: SocketAddr = "[::1]:443".parse().unwrap();
        let r = socks5_connect_request(v6);
        assert_eq!(&r[..4], &[5, 1, 0, 4]);
        assert_eq!(r.len(), 4 + 16 + 2);
        assert_eq!(r[19], 1);
        assert_eq!(&r[20..], &[1, 0xbb]);
    }

    #[test]
    fn socks5_replies() {
        assert!(socks5_check_method([5, 0]).is_ok());
        assert!(socks5_check_method([5, 2]).is_err());
        assert!(socks5_check_method([5, 0xff]).is_err());
        assert!(socks5_check_method([4, 0]).is_err());
        assert_eq!(socks5_reply_len([5, 0, 0, 1, 127]).unwrap(), 10);
        assert_eq!(socks5_reply_len([5, 0, 0, 4, 0]).unwrap(), 22);
        assert_eq!(socks5_reply_len([5, 0, 0, 3, 9]).unwrap(), 16);
        assert!(socks5_reply_len([5, 5, 0, 1, 0]).is_err()); // refused
        assert!(socks5_reply_len([5, 0, 0, 7, 0]).is_err());
        assert!(socks5_reply_len([4, 0, 0, 1, 0]).is_err());
    }

    #[test]
    fn relay_encoding() {
        let v4: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            relay_connect_request(v4),
            [1, 1, 0, 10, 2, 0, 7, 1, 127, 0, 0, 1, 0x1f, 0x90]
        );
        let v6: SocketAddr = "[::1]:443".parse().unwrap();
        let r = relay_connect_request(v6);
        assert_eq!(&r[..4], &[1, 1, 0, 22]);
        assert_eq!(&r[4..8], &[2, 0, 19, 4]);
        assert_eq!(r.len(), 4 + 3 + 19);
        assert_eq!(relay_response_features([1, 0, 0, 0]).unwrap(), 0);
        assert_eq!(relay_response_features([1, 0, 1, 2]).unwrap(), 258);
        assert!(relay_response_features([1, 6, 0, 0]).is_err()); // unreachable
        assert!(relay_response_features([5, 0, 0, 0]).is_err());
    }

    #[test]
    fn http_requests() {
        let t: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        assert_eq!(
            http_connect_request(t),
            b"CONNECT 127.0.0.1:9000 HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n\r\n"
        );
        let get = http_absolute_request(t);
        assert_eq!(
            get,
            b"GET http://127.0.0.1:9000/ HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n\r\n"
        );
        // The target server's parser accepts it as a keep-alive request.
        let r = http::parse_request(&get).unwrap().unwrap();
        assert_eq!(r.len, get.len());
        assert!(!r.close);
    }

    #[test]
    fn http_connect_replies() {
        let ok = b"HTTP/1.1 200 Connection established\r\n\r\n";
        assert_eq!(http_connect_reply_len(ok).unwrap(), Some(ok.len()));
        assert_eq!(http_connect_reply_len(&ok[..20]).unwrap(), None);
        let ok10 = b"HTTP/1.0 200 Connection established\r\nProxy-agent: tinyproxy\r\n\r\n";
        assert_eq!(http_connect_reply_len(ok10).unwrap(), Some(ok10.len()));
        let denied = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
        let e = http_connect_reply_len(denied).unwrap_err().to_string();
        assert!(e.contains("403"), "{e}");
        assert!(http_connect_reply_len(b"SSH-2.0-x\r\n\r\n").is_err());
    }

    #[test]
    fn dialer_modes() {
        let t: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let p: SocketAddr = "127.0.0.1:1080".parse().unwrap();
        let d = Dialer::new(t, None, None, None, true).unwrap();
        assert_eq!((d.via, d.connect_to), (Via::Direct, t));
        assert_eq!(d.keepalive_request(), http::REQUEST_KEEPALIVE);
        let d = Dialer::new(t, Some(p), None, None, true).unwrap();
        assert_eq!((d.via, d.connect_to), (Via::Socks5, p));
        let d = Dialer::new(t, None, Some(p), None, true).unwrap();
        assert_eq!(d.via, Via::HttpForward);
        assert!(d
            .keepalive_request()
            .starts_with(b"GET http://127.0.0.1:9000/"));
        let d = Dialer::new(t, None, Some(p), None, false).unwrap();
        assert_eq!(d.via, Via::HttpConnect);
        assert!(Dialer::new(t, Some(p), Some(p), None, false).is_err());
        let d = Dialer::new(t, None, None, Some(p), false).unwrap();
        assert_eq!((d.via, d.connect_to), (Via::Relay, p));
        assert!(d.owes_response());
        assert!(Dialer::new(t, Some(p), None, Some(p), false).is_err());
        assert!(Dialer::new(t, None, Some(p), Some(p), false).is_err());
    }
}
