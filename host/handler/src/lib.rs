//! Handlers: the protocol side of a service. A handler gets an accepted
//! connection, works out the target and relays.

pub mod auto;
#[cfg(feature = "dns")]
pub mod dns;
pub mod file;
pub mod forward;
pub mod http;
#[cfg(feature = "h2")]
pub mod http2;
pub mod httpcache;
#[cfg(feature = "mux")]
mod mbind;
pub mod redirect;
pub mod redu;
pub mod relay;
#[cfg(feature = "serial")]
pub mod serial;
pub mod sni;
pub mod sniffing;
mod sniffing_http;
pub mod socks;
#[cfg(feature = "ss")]
pub mod ss;
#[cfg(feature = "ss")]
mod ss_buf;
#[cfg(feature = "ssh")]
pub mod sshd;
#[cfg(feature = "ss")]
pub mod ssu;
pub mod stream;
#[cfg(feature = "tun")]
pub mod tap;
#[cfg(feature = "tun")]
pub mod tun;
#[cfg(feature = "tunnel")]
pub mod tunnel;
pub mod unix;

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
