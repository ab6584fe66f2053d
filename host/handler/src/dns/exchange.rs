//! One upstream DNS server as GOST's exchanger names it
//! (go-gost/x resolver/exchanger): `udp://host:port` (also a bare
//! `host:port`), `tcp://`, `tls://` or `dot://` (DNS over TLS, RFC 7858),
//! `https://host[:port]/path` (DNS over HTTPS, RFC 8484, POST). Every
//! exchange dials through the handler's router, so upstreams are reached
//! through its chain, as GOST's are. The port is 53 unless given, for
//! `tls` too, as in GOST. TLS upstreams are not verified (GOST's
//! InsecureSkipVerify); the handshake still proves the server holds its key.

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use gost_chain::router::Router;
use gost_core::stream::Stream;
use gost_transport::tls::config::TlsSettings;
use gost_transport::tls::TlsDialer;
use gost_transport::Dialer;
use tokio::io::AsyncReadExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Udp,
    Tcp,
    Tls,
    Https,
}

/// The largest DNS message (a TCP length prefix's range).
const MAX_MESSAGE: usize = 65_535;
/// A DoH response head longer than this is refused.
const MAX_HEAD: usize = 16 * 1024;

pub struct Upstream {
    /// As configured, for logs.
    pub shown: String,
    proto: Proto,
    /// `host:port` to dial.
    addr: String,
    /// DoH: the request target and `Host`.
    path: String,
    authority: String,
    tls: Option<TlsDialer>,
    timeout: Duration,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("dial {addr}: {source}")]
    Dial {
        addr: String,
        source: gost_chain::router::DialError,
    },
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Protocol(String),
}

impl Upstream {
    pub fn parse(spec: &str, timeout: Duration) -> Result<Upstream, String> {
        let spec = spec.trim();
        let (scheme, rest) = spec.split_once("://").unwrap_or(("udp", spec));
        let proto = match scheme.to_ascii_lowercase().as_str() {
            "udp" => Proto::Udp,
            "tcp" => Proto::Tcp,
            "tls" | "dot" => Proto::Tls,
            "https" => Proto::Https,
            other => {
                return Err(format!(
                    "upstream {spec:?}: scheme {other:?} is not one of udp, tcp, tls, dot, https"
                ))
            }
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("upstream {spec:?}: no address"));
        }
        let default_port = if proto == Proto::Https { 443 } else { 53 };
        let addr = if gost_core::addr::split_host_port(authority).is_ok() {
            authority.to_string()
        } else if authority.contains(':') && !authority.starts_with('[') {
            format!("[{authority}]:{default_port}")
        } else {
            format!("{authority}:{default_port}")
        };
        let tls = match proto {
            Proto::Tls | Proto::Https => {
                let settings = TlsSettings {
                    alpn: if proto == Proto::Https {
                        vec!["http/1.1".into()]
                    } else {
                        Vec::new()
                    },
                    ..Default::default()
                };
                Some(
                    TlsDialer::new(settings, None)
                        .map_err(|e| format!("upstream {spec:?}: {e}"))?,
                )
            }
            _ => None,
        };
        Ok(Upstream {
            shown: spec.to_string(),
            proto,
            addr,
            path: path.to_string(),
            authority: authority.to_string(),
            tls,
            timeout,
        })
    }

    /// Sends `query` and returns the reply's bytes, within the timeout.
    pub async fn exchange(
        &self,
        router: &Router,
        client: IpAddr,
        query: &[u8],
    ) -> Result<Vec<u8>, ExchangeError> {
        tokio::time::timeout(self.timeout, self.exchange_unbounded(router, client, query))
            .await
            .map_err(|_| ExchangeError::Timeout(self.timeout))?
    }

    async fn exchange_unbounded(
        &self,
        router: &Router,
        client: IpAddr,
        query: &[u8],
    ) -> Result<Vec<u8>, ExchangeError> {
        let dial_err = |source| ExchangeError::Dial {
            addr: self.addr.clone(),
            source,
        };
        if self.proto == Proto::Udp {
            let mut up = router
                .dial_udp(&self.addr, client)
                .await
                .map_err(dial_err)?;
            up.send(query).await?;
            let mut buf = vec![0u8; MAX_MESSAGE];
            loop {
                let n = up.recv(&mut buf).await?;
                // A reply to another query (a late one) is not ours.
                if n >= 2 && buf[..2] == query[..2] {
                    buf.truncate(n);
                    return Ok(buf);
                }
            }
        }
        let up = router
            .dial_tcp(&self.addr, client)
            .await
            .map_err(dial_err)?;
        let mut stream: Stream = up.into_lazy_stream();
        if let Some(tls) = &self.tls {
            stream = tls.handshake(stream, &self.addr).await?;
        }
        if self.proto == Proto::Https {
            return self.post(stream, query).await;
        }
        let len = u16::try_from(query.len())
            .map_err(|_| ExchangeError::Protocol("query longer than 65535 bytes".into()))?;
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(query);
        stream.write_all_now(&framed).await?;
        read_framed(&mut stream).await?.ok_or_else(|| {
            ExchangeError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the reply",
            ))
        })
    }

    /// DNS over HTTPS: one POST of the query on its own connection.
    async fn post(&self, mut stream: Stream, query: &[u8]) -> Result<Vec<u8>, ExchangeError> {
        let mut req = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/dns-message\r\nAccept: application/dns-message\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.path,
            self.authority,
            query.len()
        )
        .into_bytes();
        req.extend_from_slice(query);
        stream.write_all_now(&req).await?;
        let mut buf = Vec::with_capacity(1024);
        let (status, framing, head_len) = loop {
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(ExchangeError::Protocol(
                    "connection closed before the response head".into(),
                ));
            }
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let field = |name: &str| {
                        resp.headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case(name))
                            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
                    };
                    use gost_proto::http1::Framing;
                    let framing =
                        if field("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
                            Framing::Chunked
                        } else if let Some(cl) = field("content-length") {
                            let n: u64 = cl.parse().map_err(|_| {
                                ExchangeError::Protocol(format!("bad Content-Length {cl:?}"))
                            })?;
                            Framing::Length(n)
                        } else {
                            Framing::UntilClose
                        };
                    break (resp.code.unwrap_or(0), framing, n);
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
                Ok(httparse::Status::Partial) => {
                    return Err(ExchangeError::Protocol("response head too long".into()))
                }
                Err(e) => return Err(ExchangeError::Protocol(format!("bad response: {e}"))),
            }
        };
        if status != 200 {
            return Err(ExchangeError::Protocol(format!(
                "returned status code {status}"
            )));
        }
        let mut dec = gost_proto::http1::Decoder::new(framing);
        let mut body = Vec::new();
        let mut pending = buf.split_off(head_len);
        loop {
            let used = dec
                .decode(&pending, &mut body)
                .map_err(|e| ExchangeError::Protocol(format!("bad response body: {e}")))?;
            pending.drain(..used);
            if body.len() > MAX_MESSAGE {
                return Err(ExchangeError::Protocol("response body too long".into()));
            }
            if dec.payload_done() {
                return Ok(body);
            }
            if stream.read_buf(&mut pending).await? == 0 {
                if dec.ends_at_eof() {
                    return Ok(body);
                }
                return Err(ExchangeError::Protocol("response body cut short".into()));
            }
        }
    }
}

/// One length-prefixed DNS message from a stream (RFC 1035 4.2.2);
/// `None` when the stream ends before a message starts.
pub async fn read_framed(stream: &mut Stream) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match stream.read_exact(&mut len[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    stream.read_exact(&mut len[1..]).await?;
    let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut msg).await?;
    Ok(Some(msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_as_gost_names_them() {
        let t = Duration::from_secs(1);
        let u = Upstream::parse("1.1.1.1", t).unwrap();
        assert_eq!((u.proto, u.addr.as_str()), (Proto::Udp, "1.1.1.1:53"));
        let u = Upstream::parse("tcp://[::1]:5353", t).unwrap();
        assert_eq!((u.proto, u.addr.as_str()), (Proto::Tcp, "[::1]:5353"));
        let u = Upstream::parse("dot://dns.example", t).unwrap();
        assert_eq!((u.proto, u.addr.as_str()), (Proto::Tls, "dns.example:53"));
        let u = Upstream::parse("https://1.0.0.1/dns-query", t).unwrap();
        assert_eq!(
            (u.proto, u.addr.as_str(), u.path.as_str()),
            (Proto::Https, "1.0.0.1:443", "/dns-query")
        );
        assert!(Upstream::parse("quic://x", t).unwrap_err().contains("quic"));
        assert!(Upstream::parse("tcp://", t).is_err());
    }
}
