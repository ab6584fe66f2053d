//! The `sshd` and `ssh` dialers (go-gost/x `dialer/sshd`, `dialer/ssh`):
//! one SSH session per node, made on first use and again once it has
//! died, authenticated with the node's `user:pass` and/or
//! `privateKeyFile`. As in GOST, the server's host key is not checked.
//!
//! `sshd`: the stream carries no bytes; the `sshd` connector opens a
//! `direct-tcpip` channel on the session ([`SshClient`]) for each
//! connection. `ssh`: each stream is a `gost-tunnel` channel of its own,
//! for any connector; a session that cannot open one is dropped, so the
//! next connection makes a new one.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::client::{AuthResult, Config, Handle};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};
use tokio::sync::{mpsc, Mutex};

use gost_core::config::DialerConfig;
use gost_core::escape::esc;
use gost_core::stream::{Endpoints, Stream};

use super::server::{Mode, GOST_TUNNEL};
use super::{keys, NoData};
use crate::{BoxFuture, Multiplex};

/// GOST's keep-alive defaults (`internal/util/ssh`).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_RETRIES: usize = 1;

/// Connections a `tcpip-forward` brings: each `forwarded-tcpip` channel
/// the server opens for the bound port, with the address of the peer
/// that connected there.
pub type Forwarded = mpsc::Receiver<(Stream, SocketAddr)>;

/// How many forwarded connections wait for the rtcp service to take
/// them; past that the server's channel is refused.
const FORWARD_BACKLOG: usize = 128;

/// The remote forwards of a session, by the port bound on the server.
type Forwards = Arc<std::sync::Mutex<HashMap<u32, mpsc::Sender<(Stream, SocketAddr)>>>>;

/// A live SSH session to an `sshd` node, for the connector.
pub struct SshClient {
    handle: Handle<ClientSide>,
    ends: Endpoints,
    forwards: Forwards,
}

impl SshClient {
    /// A `direct-tcpip` channel to `addr` (`host:port`), from
    /// `0.0.0.0:0` as Go's SSH client says.
    pub async fn direct_tcpip(&self, addr: &str) -> io::Result<Stream> {
        let (host, port) = gost_core::addr::host_and_port(addr)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // RFC 4254 7.2: host and port to connect, originator and its port.
        let mut data = Vec::new();
        for (text, number) in [(host, u32::from(port)), ("0.0.0.0", 0)] {
            data.extend_from_slice(&(text.len() as u32).to_be_bytes());
            data.extend_from_slice(text.as_bytes());
            data.extend_from_slice(&number.to_be_bytes());
        }
        self.open("direct-tcpip", data).await.map_err(|e| match e {
            russh::Error::ChannelOpenFailure(reason) => io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("sshd node refused the direct-tcpip channel: {reason:?}"),
            ),
            other => io::Error::other(format!("direct-tcpip channel: {other}")),
        })
    }

    /// A channel of `channel_type` with its type-specific `data`. Its
    /// number is remembered for the loop detector as soon as russh has
    /// chosen it, before the server can have seen the request, so a loop
    /// through a pooled session is cut like one through new sockets.
    async fn open(&self, channel_type: &str, data: Vec<u8>) -> Result<Stream, russh::Error> {
        let (id_tx, id_rx) = tokio::sync::oneshot::channel();
        let record = async {
            if let Ok(id) = id_rx.await {
                gost_core::dialer::loops::record_stream(self.ends, u32::from(id));
            }
        };
        let open = self.handle.channel_open_custom(channel_type, data, id_tx);
        let (opened, ()) = tokio::join!(open, record);
        opened.map(|channel| Stream::boxed(channel.into_stream(), self.ends))
    }

    /// Asks the server to listen on `addr` (`host:port`; port 0 lets it
    /// choose) with a `tcpip-forward` request: the port it bound, and the
    /// connections it forwards from there.
    pub async fn tcpip_forward(&self, addr: &str) -> io::Result<(u16, Forwarded)> {
        let (host, port) = gost_core::addr::host_and_port(addr)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let (tx, rx) = mpsc::channel(FORWARD_BACKLOG);
        let chosen = self
            .handle
            .tcpip_forward(host, u32::from(port))
            .await
            .map_err(|e| match e {
                russh::Error::RequestDenied => io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("the sshd node refused to listen on {}", esc(addr)),
                ),
                other => io::Error::other(format!("tcpip-forward: {other}")),
            })?;
        let bound = if port == 0 { chosen } else { u32::from(port) };
        self.forwards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(bound, tx);
        let bound = u16::try_from(bound).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the sshd node bound port {bound}"),
            )
        })?;
        Ok((bound, rx))
    }
}

struct ClientSide {
    forwards: Forwards,
    ends: Endpoints,
}

impl russh::client::Handler for ClientSide {
    type Error = russh::Error;

    /// GOST's dialer takes any host key (`InsecureIgnoreHostKey`).
    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }

    /// A connection to a port the server listens on for us: handed to
    /// the forward's rtcp service, or refused when there is none (any
    /// more) or its queue is full.
    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: russh::Channel<russh::client::Msg>,
        _connected_address: &str,
        connected_port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: russh::client::ChannelOpenHandle,
        _session: &mut russh::client::Session,
    ) -> Result<(), Self::Error> {
        let sender = self
            .forwards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&connected_port)
            .cloned();
        let permit = match &sender {
            Some(tx) => tx.try_reserve().ok(),
            None => None,
        };
        let Some(permit) = permit else {
            if sender.as_ref().is_some_and(|tx| tx.is_closed()) {
                self.forwards
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&connected_port);
            }
            tracing::debug!(
                port = connected_port,
                "sshd: forwarded-tcpip channel refused: no forward takes it"
            );
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        reply.accept().await;
        let peer = originator_address
            .parse::<std::net::IpAddr>()
            .map(|ip| SocketAddr::new(ip, originator_port as u16))
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        permit.send((Stream::boxed(channel.into_stream(), self.ends), peer));
        Ok(())
    }
}

#[derive(Debug)]
struct Login {
    user: String,
    password: Option<String>,
    key: Option<Arc<PrivateKey>>,
}

pub struct SshdDialer {
    mode: Mode,
    config: Arc<Config>,
    login: Login,
    handshake_timeout: Option<Duration>,
    sessions: Mutex<HashMap<String, Arc<SshClient>>>,
}

impl std::fmt::Debug for SshdDialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshdDialer")
            .field("mode", &self.mode)
            .field("user", &self.login.user)
            .field("key", &self.login.key.is_some())
            .finish()
    }
}

impl SshdDialer {
    pub fn from_config(mode: Mode, cfg: &DialerConfig) -> Result<Self, String> {
        let name = mode.name();
        let md = &cfg.metadata;
        let err = |e: gost_core::metadata::MetadataError| format!("dialer metadata: {e}");
        if md.get_bool("passphraseFromKeyring").map_err(err)? == Some(true) {
            return Err(format!(
                "{name} dialer: passphraseFromKeyring is not supported; give passphrase"
            ));
        }
        let key = match md
            .get_string("privateKeyFile")
            .map_err(err)?
            .filter(|k| !k.is_empty())
        {
            Some(path) => {
                let pass = md.get_string("passphrase").map_err(err)?;
                Some(Arc::new(
                    keys::load_private_key(&path, pass.as_deref())
                        .map_err(|e| format!("{name} dialer: {e}"))?,
                ))
            }
            None => None,
        };
        let (user, password) = match &cfg.auth {
            Some(a) => (
                a.username.clone(),
                Some(a.password.clone()).filter(|p| !p.is_empty()),
            ),
            None => (String::new(), None),
        };
        let mut config = Config {
            nodelay: true,
            inactivity_timeout: None,
            ..Default::default()
        };
        if md.get_bool("keepalive").map_err(err)? == Some(true) {
            let interval = match md.get_duration("keepalive.interval").map_err(err)? {
                Some(d) => Some(d),
                None => md.get_duration("ttl").map_err(err)?,
            };
            config.keepalive_interval = Some(
                interval
                    .filter(|d| !d.is_zero())
                    .unwrap_or(KEEPALIVE_INTERVAL),
            );
            config.keepalive_max = md
                .get_int("keepalive.retries")
                .map_err(err)?
                .filter(|n| *n > 0)
                .map_or(KEEPALIVE_RETRIES, |n| n as usize);
        }
        Ok(SshdDialer {
            mode,
            config: Arc::new(config),
            login: Login {
                user,
                password,
                key,
            },
            handshake_timeout: md
                .get_duration("handshakeTimeout")
                .map_err(err)?
                .filter(|d| !d.is_zero()),
            sessions: Mutex::new(HashMap::new()),
        })
    }

    async fn new_session(&self, stream: Stream) -> io::Result<SshClient> {
        let ends = stream.endpoints();
        let forwards = Forwards::default();
        let side = ClientSide {
            forwards: forwards.clone(),
            ends,
        };
        let mut handle = russh::client::connect_stream(self.config.clone(), stream, side)
            .await
            .map_err(|e| self.ssh_io("handshake", e))?;
        let login = &self.login;
        let mut ok = false;
        let accepted = |r: Result<AuthResult, russh::Error>| {
            r.map(|r| r.success())
                .map_err(|e| self.ssh_io("authentication", e))
        };
        if let Some(p) = &login.password {
            ok = accepted(handle.authenticate_password(&login.user, p).await)?;
        }
        if let (false, Some(key)) = (ok, &login.key) {
            let hash = handle
                .best_supported_rsa_hash()
                .await
                .map_err(|e| self.ssh_io("authentication", e))?
                .flatten();
            let key = PrivateKeyWithHashAlg::new(key.clone(), hash);
            ok = accepted(handle.authenticate_publickey(&login.user, key).await)?;
        }
        if !ok && login.password.is_none() && login.key.is_none() {
            ok = accepted(handle.authenticate_none(&login.user).await)?;
        }
        if !ok {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} node refused the login of user \"{}\"",
                    self.mode.name(),
                    esc(&login.user)
                ),
            ));
        }
        Ok(SshClient {
            handle,
            ends,
            forwards,
        })
    }

    async fn session(
        &self,
        node_addr: &str,
        connect: BoxFuture<'_, io::Result<Stream>>,
    ) -> io::Result<Arc<SshClient>> {
        let mut sessions = self.sessions.lock().await;
        if let Some(s) = sessions.get(node_addr) {
            if !s.handle.is_closed() {
                return Ok(s.clone());
            }
            sessions.remove(node_addr);
        }
        let made = async { self.new_session(connect.await?).await };
        let client = match self.handshake_timeout {
            Some(t) => tokio::time::timeout(t, made).await.map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{} handshake: not done within {t:?}", self.mode.name()),
                )
            })??,
            None => made.await?,
        };
        let client = Arc::new(client);
        sessions.insert(node_addr.to_string(), client.clone());
        Ok(client)
    }

    fn ssh_io(&self, what: &str, e: russh::Error) -> io::Error {
        let name = self.mode.name();
        match e {
            russh::Error::IO(e) => io::Error::new(e.kind(), format!("{name} {what}: {e}")),
            other => io::Error::other(format!("{name} {what}: {other}")),
        }
    }

    /// A `gost-tunnel` channel (no type-specific data) over the node's
    /// session.
    async fn tunnel(&self, node_addr: &str, client: Arc<SshClient>) -> io::Result<Stream> {
        match client.open(GOST_TUNNEL, Vec::new()).await {
            Ok(stream) => Ok(stream),
            Err(e) => {
                // GOST drops a session that cannot open a channel (often
                // one dead but not yet known to be): the next connection
                // makes a new one.
                let mut sessions = self.sessions.lock().await;
                if sessions
                    .get(node_addr)
                    .is_some_and(|s| Arc::ptr_eq(s, &client))
                {
                    sessions.remove(node_addr);
                }
                drop(sessions);
                let _ = client
                    .handle
                    .disconnect(russh::Disconnect::ByApplication, "", "")
                    .await;
                Err(match e {
                    russh::Error::ChannelOpenFailure(reason) => io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        format!("ssh node refused the gost-tunnel channel: {reason:?}"),
                    ),
                    other => self.ssh_io("gost-tunnel channel", other),
                })
            }
        }
    }
}

pooled_dialer!(SshdDialer);

impl Multiplex for SshdDialer {
    fn open<'a>(
        &'a self,
        node_addr: &'a str,
        connect: BoxFuture<'a, io::Result<Stream>>,
    ) -> BoxFuture<'a, io::Result<Stream>> {
        Box::pin(async move {
            let client = self.session(node_addr, connect).await?;
            if self.mode == Mode::Tunnel {
                return self.tunnel(node_addr, client).await;
            }
            let ends = client.ends;
            Ok(Stream::boxed_with(
                NoData("the sshd dialer's connection carries no data itself: use the sshd connector (sshd://)"),
                ends,
                Box::new(client),
            ))
        })
    }
}
