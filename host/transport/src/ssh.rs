//! GOST's SSH port forwarding transports (go-gost/x `listener/sshd`,
//! `dialer/sshd`), with russh. The `sshd` listener is an SSH server whose
//! clients (OpenSSH's `ssh -L`, `-D`, `-R`, or a gost `sshd` node) ask for
//! `direct-tcpip` channels and `tcpip-forward` requests; each becomes a
//! stream for the `sshd` handler, carrying what was asked
//! ([`DirectTcpip`], [`RemoteForward`]) as its extension. The `sshd`
//! dialer keeps one SSH session per node, which the `sshd` connector asks
//! for a `direct-tcpip` channel per connection ([`SshClient`]).
//!
//!
//! GOST's tunnel transport `ssh` shares both halves ([`Mode::Tunnel`]):
//! its listener hands each `gost-tunnel` channel to the service's handler
//! as a stream, and its dialer opens one per connection over the node's
//! session. russh knows no channel types beyond RFC 4254's, so it is
//! vendored with a hook for them (vendor/russh/PATCHES.md).

mod client;
mod keys;
mod server;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub use client::{Forwarded, SshClient, SshdDialer};
pub use server::{DirectTcpip, Mode, RemoteForward, SshdUpgrade};

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
        upgrade: Some(|cfg, root| {
            Ok(Arc::new(SshdUpgrade::from_config(Mode::Sshd, cfg, root)?))
        }),
        uses_tls: false,
        summary: "an SSH server for port forwarding (`direct-tcpip`, `tcpip-forward`) with the `sshd` handler; password and `authorizedKeys` auth, host key from `privateKeyFile` or generated",
    });
    r.add_dialer(DialerKind {
        names: &["sshd"],
        build: |cfg, _| Ok(Some(Arc::new(SshdDialer::from_config(Mode::Sshd, cfg)?))),
        summary:
            "an SSH session per node for the `sshd` connector; password or `privateKeyFile` auth",
    });
    r.add_listener(ListenerKind {
        names: &["ssh"],
        socket: Socket::Tcp,
        upgrade: Some(|cfg, root| {
            Ok(Arc::new(SshdUpgrade::from_config(Mode::Tunnel, cfg, root)?))
        }),
        uses_tls: false,
        summary: "GOST's SSH tunnel: each `gost-tunnel` channel is a connection for the handler; password and `authorizedKeys` auth, host key from `privateKeyFile` or generated",
    });
    r.add_dialer(DialerKind {
        names: &["ssh"],
        build: |cfg, _| Ok(Some(Arc::new(SshdDialer::from_config(Mode::Tunnel, cfg)?))),
        summary: "GOST's SSH tunnel: an SSH session per node, a `gost-tunnel` channel per connection; password or `privateKeyFile` auth",
    });
}
