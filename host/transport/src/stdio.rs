//! GOST's `stdio` listener: the process's standard input and output are
//! the service's one connection (for an SSH `ProxyCommand`, or a pipe
//! between two programs). It accepts that connection once; when the
//! handler is done with it, the program exits with status 0, as GOST's
//! does. Logs go to standard error by default, so they do not mix with
//! the relayed bytes; a `log.output: stdout` would.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::kinds::{ListenerKind, Socket, Transports};
use crate::listener::{AcceptFuture, Accepted, Conn, Listener};
use gost_core::context::UNIX_PEER;
use gost_core::stream::Stream;

pub fn register(t: &mut Transports) {
    t.add_listener(ListenerKind {
        names: &["stdio"],
        socket: Socket::Stdio,
        upgrade: None,
        uses_tls: false,
        summary: "standard input and output as the one connection; gost exits when it ends",
    });
}

#[derive(Default)]
pub struct StdioListen {
    taken: AtomicBool,
}

impl Listener for StdioListen {
    fn local_addr(&self) -> std::net::SocketAddr {
        UNIX_PEER
    }

    fn addr_text(&self) -> String {
        "stdio".into()
    }

    fn accept(&self) -> AcceptFuture<'_> {
        Box::pin(async move {
            if self.taken.swap(true, Ordering::SeqCst) {
                // One connection only: later accepts wait until the
                // service stops.
                std::future::pending::<()>().await;
            }
            Ok(Accepted {
                conn: Conn::Stream(Stream::boxed(Stdio::new(), Default::default())),
                peer: UNIX_PEER,
                local: UNIX_PEER,
            })
        })
    }
}

/// Standard input and output as one stream. Dropping it (the handler is
/// done) ends the program, as closing GOST's stdio connection does.
struct Stdio {
    input: tokio::io::Stdin,
    output: tokio::io::Stdout,
}

impl Stdio {
    fn new() -> Self {
        Stdio {
            input: tokio::io::stdin(),
            output: tokio::io::stdout(),
        }
    }
}

impl Drop for Stdio {
    fn drop(&mut self) {
        tracing::info!("stdio: the connection ended; exiting");
        std::process::exit(0);
    }
}

impl AsyncRead for Stdio {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.input).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stdio {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.output).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.output).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.output).poll_flush(cx)
    }
}
