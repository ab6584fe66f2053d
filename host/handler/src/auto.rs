//! The `auto` handler (GOST's handler/auto and the default of `gost -L
//! :8080`): one port serving SOCKS4, SOCKS5 and HTTP proxy clients, told
//! apart by the first byte each protocol sends.

use std::sync::Arc;
use std::time::Duration;

use super::http::HttpHandler;
use super::{ConnContext, HandleFuture, Handler, HandlerError};
use gost_transport::listener::Conn;

/// First byte of a SOCKS4 request (its version).
const SOCKS4: u8 = 0x04;
/// First byte of a SOCKS5 greeting.
const SOCKS5: u8 = 0x05;

pub struct AutoHandler {
    http: HttpHandler,
    socks4: Arc<dyn Handler>,
    socks5: Arc<dyn Handler>,
    /// How long a client may stay silent before its first byte; the http
    /// handler's `readTimeout`, since the same options configure all three.
    first_byte_timeout: Duration,
}

impl AutoHandler {
    pub fn new(http: HttpHandler, socks4: Arc<dyn Handler>, socks5: Arc<dyn Handler>) -> Self {
        let first_byte_timeout = http.read_timeout();
        AutoHandler {
            http,
            socks4,
            socks5,
            first_byte_timeout,
        }
    }
}

impl Handler for AutoHandler {
    fn handle(&self, conn: Conn, ctx: ConnContext) -> HandleFuture<'_> {
        Box::pin(async move {
            let mut stream = match conn {
                Conn::Stream(s) => s,
                Conn::Udp(_) => {
                    return Err(HandlerError::Protocol(
                        "the auto handler serves TCP connections only".into(),
                    ))
                }
            };
            // Reading ahead leaves the byte in the stream for the chosen
            // handler, which then reads (and counts) the whole handshake.
            let n = match tokio::time::timeout(self.first_byte_timeout, stream.read_ahead(1)).await
            {
                Ok(r) => r?,
                // Silent clients are not errors, as for the http handler.
                Err(_) => return Ok(()),
            };
            if n == 0 {
                return Ok(());
            }
            match stream.rewound()[0] {
                SOCKS4 => self.socks4.handle(Conn::Stream(stream), ctx).await,
                SOCKS5 => self.socks5.handle(Conn::Stream(stream), ctx).await,
                _ => self.http.serve(stream, ctx).await,
            }
        })
    }
}
