//! GOST's `sshd` connector (go-gost/x connector/sshd): over the `sshd`
//! dialer's SSH session to the node, each connection is a `direct-tcpip`
//! channel to its target, as `ssh -W` would open it. The node is any SSH
//! server that allows TCP forwarding (OpenSSH's sshd, or a gost `sshd`
//! service).
//!
//! GOST's connector also binds (`tcpip-forward`) for reverse
//! forwarding; that is not done here yet and is refused.

use std::io;

use gost_transport::ssh::SshClient;
use gost_transport::BoxFuture;

use super::bind::{BindNetwork, Bound};
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
            let Some(client) = stream
                .stream()
                .attached::<std::sync::Arc<SshClient>>()
                .cloned()
            else {
                return Err(ConnectError::Io {
                    connector: "sshd",
                    source: io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "the node's dialer is not sshd (use sshd:// or sshd+sshd://)",
                    ),
                });
            };
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

    fn bind<'a>(
        &'a self,
        _stream: Upstream,
        _network: BindNetwork,
        _addr: &'a str,
    ) -> BoxFuture<'a, Result<Bound, ConnectError>> {
        Box::pin(std::future::ready(Err(ConnectError::Io {
            connector: "sshd",
            source: io::Error::new(
                io::ErrorKind::Unsupported,
                "reverse forwarding (tcpip-forward) through an sshd node is not supported yet; use a socks5 or relay node as the last hop",
            ),
        })))
    }
}

pub(super) fn register(r: &mut Connectors) {
    r.add(ConnectorKind {
        names: &["sshd"],
        udp: false,
        build: |_, _| Ok(Box::new(SshdConnector)),
        summary: "SSH `direct-tcpip` channels over the `sshd` dialer's session (OpenSSH's sshd or a gost sshd service)",
    });
}
