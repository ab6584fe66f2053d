//! GOST's SSH port forwarding transports (go-gost/x `listener/sshd`,
//! `dialer/sshd`), with russh. The `sshd` listener is an SSH server whose
//! clients (OpenSSH's `ssh -L`, `-D`, `-R`, or a gost `sshd` node) ask for
//! `direct-tcpip` channels and `tcpip-forward` requests; each becomes a
//! stream for the `sshd` handler, carrying what was asked
//! ([`DirectTcpip`], [`RemoteForward`]) as its extension. The `sshd`
//! dialer keeps one SSH session per node, which the `sshd` connector asks
//! for a `direct-tcpip` channel per connection ([`SshClient`]).
//!
//! GOST's other SSH transport, `ssh` (its own `gost-tunnel` channel type),
//! is absent: russh neither opens nor accepts channels of a type it does
//! not know.

mod client;
mod keys;
mod server;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub use client::{SshClient, SshdDialer};
pub use server::{DirectTcpip, RemoteForward, SshdUpgrade};

use crate::kinds::{DialerKind, ListenerKind, Socket, Transports};

/// The bytes a stream carries when what matters is its extension: the
/// `sshd` dialer's session (the connector opens a channel over it) and a
/// `tcpip-forward` request (the handler listens for it). Reads end at
/// once; writes fail, naming what to use instead.
struct NoData(&'static str);

impl AsyncRead for NoData {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for NoData {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::Error::new(io::ErrorKind::Unsupported, self.0)))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

pub fn register(r: &mut Transports) {
    r.add_listener(ListenerKind {
        names: &["sshd"],
        socket: Socket::Tcp,
        upgrade: Some(|cfg, root| Ok(Arc::new(SshdUpgrade::from_config(cfg, root)?))),
        uses_tls: false,
        summary: "an SSH server for port forwarding (`direct-tcpip`, `tcpip-forward`) with the `sshd` handler; password and `authorizedKeys` auth, host key from `privateKeyFile` or generated",
    });
    r.add_dialer(DialerKind {
        names: &["sshd"],
        build: |cfg, _| Ok(Some(Arc::new(SshdDialer::from_config(cfg)?))),
        summary:
            "an SSH session per node for the `sshd` connector; password or `privateKeyFile` auth",
    });
}
