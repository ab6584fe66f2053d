//! Handlers: the protocol side of a service. A handler gets an accepted
//! connection, works out the target and relays.

pub mod auto;
#[cfg(feature = "dns")]
pub mod dns;
pub mod file;
pub mod forward;
pub mod http;
pub mod relay;
pub mod sni;
pub mod sniffing;
pub mod socks;
#[cfg(feature = "ss")]
pub mod ss;
#[cfg(feature = "ss")]
pub mod ssu;
pub mod stream;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use gost_transport::listener::Conn;

pub use gost_core::context::ConnContext;

/// What a protocol handler is built with besides its own options.
#[derive(Clone, Default)]
pub struct HandlerDeps {
    /// Dials targets (direct today; chains, hosts, resolver later).
    pub router: gost_chain::router::Router,
    /// Checks client credentials; `None` means no authentication.
    pub auther: Option<Arc<dyn gost_core::auth::Auther>>,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("no node available")]
    NoNode,
    /// The client broke the protocol (malformed request, wrong version,
    /// failed authentication); it got the protocol's error reply.
    #[error("{0}")]
    Protocol(String),
    #[error(transparent)]
    Dial(#[from] gost_chain::router::DialError),
    #[error(transparent)]
    Relay(#[from] gost_chain::relay::RelayError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A wasm plugin trapped, ran out of time or memory, or reported a
    /// failure; the message names the plugin.
    #[error("{0}")]
    Plugin(String),
}

impl HandlerError {
    /// GOST counts only server-side failures in totalErrs: a client that
    /// goes away or a connection that idles out is not an error.
    pub fn is_server_error(&self) -> bool {
        match self {
            HandlerError::Relay(e) => e.is_server_error(),
            HandlerError::Io(e) => !gost_chain::relay::is_disconnect(e),
            HandlerError::Dial(e) => !e.is_bypass(),
            HandlerError::NoNode | HandlerError::Protocol(_) | HandlerError::Plugin(_) => true,
        }
    }
}

pub type HandleFuture<'a> = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 'a>>;

pub trait Handler: Send + Sync {
    fn handle(&self, conn: Conn, ctx: ConnContext) -> HandleFuture<'_>;
}

/// The future of a handler that serves streams only: `serve`'s future boxed
/// as it is, with no wrapper around it that would keep a second copy of
/// the connection for its whole life; UDP gets an error naming `handler`.
pub(crate) fn tcp_only<'a, F>(
    handler: &'static str,
    conn: Conn,
    serve: impl FnOnce(gost_core::stream::Stream) -> F,
) -> HandleFuture<'a>
where
    F: Future<Output = Result<(), HandlerError>> + Send + 'a,
{
    match conn {
        Conn::Stream(s) => Box::pin(serve(s)),
        Conn::Udp(_) => Box::pin(std::future::ready(Err(HandlerError::Protocol(format!(
            "the {handler} handler serves TCP connections only"
        ))))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gost_chain::router::Router;

    /// A context for a connection accepted on `s`, without stats.
    fn test_ctx(s: &tokio::net::TcpStream) -> ConnContext {
        let addr = s.local_addr().unwrap();
        ConnContext {
            service: "t".into(),
            peer: addr,
            local: addr,
            stats: None,
            traffic: None,
        }
    }

    /// Every handler that parses client bytes, with UDP on and with and
    /// without authentication, behind a router whose only route is the
    /// chain node `node` on loopback (a closed port, or with the `forward`
    /// connector a local server): whatever target the bytes name, nothing
    /// leaves loopback. BIND stays off (refused after parsing), as
    /// it would listen on whatever address the bytes name.
    fn parsing_handlers(
        node: std::net::SocketAddr,
        connector: &str,
    ) -> Vec<(&'static str, Box<dyn Handler>)> {
        let yaml = format!(
            "services:\n- name: s\n  addr: :0\n  handler:\n    type: socks5\n    chain: c\n  listener:\n    type: tcp\nchains:\n- name: c\n  hops:\n  - name: h\n    nodes:\n    - name: n\n      addr: {node}\n      connector:\n        type: {connector}\n"
        );
        let root = gost_core::config::Config::from_yaml_str(&yaml)
            .unwrap()
            .config;
        let mut router = gost_chain::router::build(
            &root,
            &root.services[0],
            gost_chain::registry::Registry::builtin(),
        )
        .unwrap();
        router.dial_timeout = std::time::Duration::from_secs(2);
        let md: gost_core::metadata::Metadata = [("udp", "true"), ("readTimeout", "2s")]
            .into_iter()
            .collect();
        let auther = || -> Option<Arc<dyn gost_core::auth::Auther>> {
            Some(Arc::new(gost_core::auth::StaticAuther::new([(
                "u".to_string(),
                "p".to_string(),
            )])))
        };
        let o5 = socks::Socks5Options::from_metadata(&md).unwrap();
        let o4 = socks::Socks4Options::from_metadata(&md).unwrap();
        let oh = http::HttpOptions::from_metadata(&md).unwrap();
        let or = relay::RelayHandlerOptions::from_metadata(&md).unwrap();
        let socks5 = |a| socks::Socks5Handler::new(router.clone(), a, o5.clone());
        let socks4 = |a| socks::Socks4Handler::new(router.clone(), a, o4.clone());
        let http = |a| http::HttpHandler::new(router.clone(), a, oh.clone());
        let relay = |a| relay::RelayHandler::new(router.clone(), a, None, or.clone());
        vec![
            ("socks5", Box::new(socks5(None))),
            ("socks5+auth", Box::new(socks5(auther()))),
            ("socks4", Box::new(socks4(None))),
            ("socks4+auth", Box::new(socks4(auther()))),
            ("http", Box::new(http(None))),
            ("http+auth", Box::new(http(auther()))),
            ("relay", Box::new(relay(None))),
            ("relay+auth", Box::new(relay(auther()))),
            (
                "auto",
                Box::new(auto::AutoHandler::new(
                    http(None),
                    Arc::new(socks4(None)),
                    Arc::new(socks5(None)),
                )),
            ),
        ]
    }

    /// Well-formed requests of every parsing protocol; the test mutates
    /// them so that the parsers are driven past their first checks.
    const VALID: [&[u8]; 14] = [
        &[5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 80],
        b"\x05\x01\x00\x05\x01\x00\x03\x09localhost\x00\x50",
        &[5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0],
        &[5, 1, 0, 5, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80],
        &[5, 1, 2, 1, 1, b'u', 1, b'p', 5, 1, 0, 1, 127, 0, 0, 1, 0, 80],
        &[4, 1, 0, 80, 127, 0, 0, 1, b'u', 0],
        b"\x04\x01\x00\x50\x00\x00\x00\x01u\x00host\x00",
        &[4, 2, 0, 80, 127, 0, 0, 1, 0],
        b"CONNECT 127.0.0.1:80 HTTP/1.1\r\nHost: 127.0.0.1:80\r\nProxy-Authorization: Basic dTpw\r\n\r\n",
        b"GET http://127.0.0.1/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello",
        b"POST http://h/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        &[1, 1, 0, 17, 1, 0, 4, 1, b'u', 1, b'p', 2, 0, 7, 1, 127, 0, 0, 1, 0, 80],
        &[1, 0x81, 0, 14, 2, 0, 7, 1, 127, 0, 0, 1, 0, 53, 4, 0, 2, 0, 1],
        &[1, 2, 0, 10, 2, 0, 7, 3, 1, b'h', 0, 80, 3, 0],
    ];

    /// Well-formed target answers; the answering server mutates them.
    const ANSWERS: [&[u8]; 5] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nbody until close",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\nraw",
        b"HTTP/1.1 204 No Content\r\n\r\n",
    ];

    /// A loopback server that answers each connection at once with the
    /// next mutated [`ANSWERS`], then reads until the other side closes.
    async fn answering_server() -> std::net::SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            for n in 1u64.. {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let _ = s
                        .write_all(&gost_core::test_util::mutated(&ANSWERS, n))
                        .await;
                    let _ = s.shutdown().await;
                    let _ = tokio::io::copy(&mut s, &mut tokio::io::sink()).await;
                });
            }
        });
        addr
    }

    /// Random and truncated requests must end in an error or a refusal,
    /// never a panic or a hang, for every parsing handler: with no route
    /// to any target, and with every target answering random replies.
    #[tokio::test]
    async fn handlers_survive_random_requests() {
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let mut handlers = parsing_handlers(dead, "http");
        handlers.extend(parsing_handlers(answering_server().await, "forward"));
        for (seed, bytes) in gost_core::test_util::mutations(&VALID, 400) {
            for (name, h) in &handlers {
                let bytes = bytes.clone();
                let (mut c, s) = gost_core::test_util::tcp_pair().await;
                let ctx = test_ctx(&s);
                let client = async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let _ = c.write_all(&bytes).await;
                    let _ = c.shutdown().await;
                    let mut sink = Vec::new();
                    let _ = c.read_to_end(&mut sink).await;
                };
                let served = tokio::time::timeout(std::time::Duration::from_secs(10), async {
                    tokio::join!(h.handle(Conn::Stream(s.into()), ctx), client).0
                })
                .await;
                // Errors are expected; a panic fails the test, a hang here.
                assert!(served.is_ok(), "{name}: seed {seed} did not finish");
            }
        }
    }

    /// A connection keeps its handler's future for its whole life, idle or
    /// not, so the handshake's state must not size it: each handler runs
    /// its handshake in a box freed before the relay (see `tcp_only`).
    /// Before that, these futures took 1,488 to 1,952 bytes in a release
    /// build; now about 800 to 1,000 (debug builds a little more).
    #[tokio::test]
    async fn connection_futures_hold_the_relay_state_only() {
        let handlers: [(&str, Box<dyn Handler>, usize); 3] = [
            (
                "socks5",
                Box::new(socks::Socks5Handler::new(
                    Router::default(),
                    None,
                    Default::default(),
                )),
                1024,
            ),
            (
                "socks4",
                Box::new(socks::Socks4Handler::new(
                    Router::default(),
                    None,
                    Default::default(),
                )),
                1024,
            ),
            (
                "http",
                Box::new(http::HttpHandler::new(
                    Router::default(),
                    None,
                    Default::default(),
                )),
                1152,
            ),
        ];
        for (name, h, bound) in handlers {
            let (_c, s) = gost_core::test_util::tcp_pair().await;
            let ctx = test_ctx(&s);
            let fut = h.handle(Conn::Stream(s.into()), ctx);
            let size = std::mem::size_of_val(&*fut);
            assert!(size <= bound, "{name}: {size} bytes per connection");
        }
    }
}
