//! GOST's `sshd` connector (go-gost/x connector/sshd): over the `sshd`
//! dialer's SSH session to the node, each connection is a `direct-tcpip`
//! channel to its target, as `ssh -W` would open it. The node is any SSH
//! server that allows TCP forwarding (OpenSSH's sshd, or a gost `sshd`
//! service).
//!
//! Its bind is reverse forwarding through the SSH server (`rtcp` with an
//! `sshd` last node): a `tcpip-forward` request makes the server listen,
//! and each connection there comes back as a `forwarded-tcpip` channel.

use std::io;

use gost_transport::ssh::SshClient;
use gost_transport::BoxFuture;

use super::bind::{wire_addr, BindNetwork, Bound, PeerHeader};
use super::upstream::Upstream;
use super::{ConnectError, Connector, ConnectorKind, Connectors};

#[derive(Debug)]
pub struct SshdConnector;

impl Connector for SshdConnector {
    fn name(&self) -> &'static str {
        "sshd"
    }

    fn connect<'a>(
        &'a self,
        stream: &'a mut Upstream,
        addr: &'a str,
    ) -> BoxFuture<'a, Result<(), ConnectError>> {
        Box::pin(async move {
            let client = session(stream)?;
            let channel = client
                .direct_tcpip(addr)
                .await
                .map_err(|source| ConnectError::Io {
                    connector: "sshd",
                    source,
                })?;
            *stream = Upstream::direct(channel);
            Ok(())
        })
    }

    /// GOST binds TCP only (`unix` asks the server for a streamlocal
    /// forward, which is not done here), at `0.0.0.0` when the address
    /// has no host.
    fn bind<'a>(
        &'a self,
        stream: Upstream,
        network: BindNetwork,
        addr: &'a str,
    ) -> BoxFuture<'a, Result<Bound, ConnectError>> {
        Box::pin(async move {
            if network != BindNetwork::Tcp {
                return Err(ConnectError::NoBind { connector: "sshd" });
            }
            let client = session(&stream)?;
            let want = wire_addr(addr);
            let (host, _) =
                gost_core::addr::host_and_port(&want).map_err(|e| ConnectError::Io {
                    connector: "sshd",
                    source: io::Error::new(io::ErrorKind::InvalidInput, e),
                })?;
            let (port, forwarded) =
                client
                    .tcpip_forward(&want)
                    .await
                    .map_err(|source| ConnectError::Io {
                        connector: "sshd",
                        source,
                    })?;
            let bound = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            Ok(Bound {
                addr: bound,
                stream: stream.into_stream().await?,
                header: PeerHeader::Relay,
                #[cfg(feature = "mux")]
                mux: None,
                forwarded: Some(forwarded),
            })
        })
    }
}

/// The SSH session the `sshd` dialer attached to the node's stream.
fn session(stream: &Upstream) -> Result<std::sync::Arc<SshClient>, ConnectError> {
    stream
        .stream()
        .attached::<std::sync::Arc<SshClient>>()
        .cloned()
        .ok_or_else(|| ConnectError::Io {
            connector: "sshd",
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                "the node's dialer is not sshd (use sshd:// or sshd+sshd://)",
            ),
        })
}

pub(super) fn register(r: &mut Connectors) {
    r.add(ConnectorKind {
        names: &["sshd"],
        udp: false,
        build: |_, _| Ok(Box::new(SshdConnector)),
        summary: "SSH `direct-tcpip` channels over the `sshd` dialer's session (OpenSSH's sshd or a gost sshd service); binds for `rtcp` with `tcpip-forward`",
    });
}
