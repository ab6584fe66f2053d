//! GOST's `ss` and `ssu` connectors: the client side of Shadowsocks over
//! the stream a dialer opened to the node.
//!
//! `ss` names the target in its first packet. The header goes out at
//! once, without waiting for the client's first bytes, so protocols where
//! the server speaks first work (GOST's connector writes it with the
//! first data instead; the bytes on the wire are the same).
//!
//! `ssu` carries UDP through the stream as GOST does over a chain: a
//! Shadowsocks stream (naming the first target, which GOST's server
//! ignores) whose plaintext is GOST's UDP-over-TCP frames, `LEN(2) 0xFF
//! ATYP ADDR PORT PAYLOAD`.

use std::io;

use shadowsocks::relay::tcprelay::proxy_stream::ProxyClientStream;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use gost_core::stream::Stream;
use gost_transport::BoxFuture;

use super::udp_tun::UdpTunnel;
use super::upstream::Upstream;
use super::{
    split_addr, Common, ConnectError, Connector, ConnectorBuildError, ConnectorKind, Connectors,
};
use crate::ss::{address, client_context, Cipher};

#[derive(Debug)]
pub struct SsConnector {
    cipher: Cipher,
    /// `ssu`: UDP only.
    udp: bool,
}

impl SsConnector {
    fn name_of(udp: bool) -> &'static str {
        if udp {
            "ssu"
        } else {
            "ss"
        }
    }

    fn build(udp: bool, c: Common) -> Result<Box<dyn Connector>, ConnectorBuildError> {
        let name = Self::name_of(udp);
        let auth = c
            .auth
            .as_ref()
            .map(|a| (a.username.as_str(), a.password.as_str()));
        let cipher =
            Cipher::client(name, auth).map_err(|e| ConnectorBuildError::Invalid(e.to_string()))?;
        Ok(Box::new(SsConnector { cipher, udp }))
    }

    /// Puts the Shadowsocks stream over `up`, with `target` in its
    /// header, and sends the header now.
    async fn open(&self, up: &mut Upstream, target: &str) -> Result<(), ConnectError> {
        let connector = self.name();
        let (host, port) = split_addr(connector, target)?;
        let target = address(&host, port);
        let cipher = &self.cipher;
        up.wrap(|s| {
            let ends = s.endpoints();
            let ss = ProxyClientStream::from_stream(client_context(), s, &cipher.config, target);
            Stream::boxed(ss, ends)
        });
        // An empty write sends the salt and the header (for 2022 with its
        // padding): see ProxyClientStream's first write. `write_all` would
        // not call the stream for an empty buffer, so it is polled here.
        let w = up.writer();
        let flushed = async {
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut *w).poll_write(cx, &[])).await?;
            w.flush().await
        }
        .await;
        flushed.map_err(|source| ConnectError::Io { connector, source })
    }
}

impl Connector for SsConnector {
    fn name(&self) -> &'static str {
        Self::name_of(self.udp)
    }

    fn connect<'a>(
        &'a self,
        stream: &'a mut Upstream,
        addr: &'a str,
    ) -> BoxFuture<'a, Result<(), ConnectError>> {
        if self.udp {
            return Box::pin(std::future::ready(Err(ConnectError::Io {
                connector: "ssu",
                source: io::Error::new(
                    io::ErrorKind::Unsupported,
                    "TCP is not supported (as in GOST; use an ss node)",
                ),
            })));
        }
        Box::pin(self.open(stream, addr))
    }

    fn udp_tunnel<'a>(
        &'a self,
        mut stream: Upstream,
        target: Option<&'a str>,
        _node: &'a str,
    ) -> BoxFuture<'a, Result<UdpTunnel, ConnectError>> {
        Box::pin(async move {
            if !self.udp {
                return Err(ConnectError::NoUdp { connector: "ss" });
            }
            self.open(&mut stream, target.unwrap_or("0.0.0.0:0"))
                .await?;
            Ok(UdpTunnel::new(stream.into_stream().await?))
        })
    }
}

/// `ss` (TCP) and `ssu` (UDP through the chain's stream).
pub fn register(r: &mut Connectors) {
    r.add(ConnectorKind {
        names: &["ss"],
        udp: false,
        build: |_, c| SsConnector::build(false, c),
        summary: "Shadowsocks TCP: AEAD and 2022 ciphers, 2022 multi-user keys `iPSK:uPSK`",
    });
    r.add(ConnectorKind {
        names: &["ssu"],
        udp: true,
        build: |_, c| SsConnector::build(true, c),
        summary:
            "Shadowsocks UDP, carried as GOST does over the chain's stream (UDP-over-TCP frames)",
    });
}
