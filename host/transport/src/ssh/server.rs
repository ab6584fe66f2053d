//! The `sshd` and `ssh` listeners (go-gost/x `listener/sshd`,
//! `listener/ssh`): an SSH server over each accepted connection.
//!
//! `sshd`: a `direct-tcpip` channel (`ssh -L`, `ssh -D`)
//! becomes a stream to the handler with the target it names; a
//! `tcpip-forward` request (`ssh -R`) becomes a stream with no bytes whose
//! extension the handler binds, answers, and serves with
//! `forwarded-tcpip` channels until the session ends or the client
//! cancels it. Anything else (a shell, a subsystem, X11, agent) is
//! refused.
//!
//! `ssh`: each channel of GOST's own type `gost-tunnel` is one stream to
//! the service's handler, its bytes the proxied connection's; channels
//! of any other type and every global request are refused, as GOST does.
//!
//! Bounds: `backlog` (default 128) streams wait per session for the
//! service to take them; a channel opened past that is refused with
//! "resource shortage". Each channel buffers at most the SSH window
//! (2 MiB) the client may send ahead.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::keys::PublicKey;
use russh::server::{Auth, ChannelOpenHandle, Config, Handle, Msg, RunningSession, Session};
use russh::{Channel, ChannelOpenFailure, MethodKind, MethodSet};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};

use gost_core::auth::Auther;
use gost_core::config::ListenerConfig;
use gost_core::escape::esc;
use gost_core::stream::{Endpoints, Stream};

use super::{keys, NoData};
use crate::{BoxFuture, MultiplexUpgrade, Opened, Streams, Upgrade};

/// GOST's listener queue (`backlog`).
const DEFAULT_BACKLOG: usize = 128;
/// How long a client has to send its SSH version line; without a bound
/// a silent connection would hold its task for ever.
const ID_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the handler has to answer a `tcpip-forward` request (it only
/// binds a socket).
const FORWARD_REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// GOST's channel type for one tunnelled connection
/// (go-gost/x `internal/util/ssh`).
pub const GOST_TUNNEL: &str = "gost-tunnel";

/// Which of GOST's SSH listeners, or dialers, this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `sshd`: port forwarding for OpenSSH clients and the sshd connector.
    Sshd,
    /// `ssh`: GOST's tunnel transport (`gost-tunnel` channels).
    Tunnel,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Sshd => "sshd",
            Mode::Tunnel => "ssh",
        }
    }
}

/// What a `direct-tcpip` channel asked to reach (RFC 4254 7.2).
#[derive(Debug)]
pub struct DirectTcpip {
    pub host: String,
    pub port: u32,
}

impl DirectTcpip {
    /// The target as `host:port`. Go's SSH library reads an empty host
    /// as `<nil>`; GOST maps it back to empty, and so do we.
    pub fn addr(&self) -> String {
        let host = if self.host == "<nil>" { "" } else { &self.host };
        if host.contains(':') {
            format!("[{host}]:{}", self.port)
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// A `tcpip-forward` request (RFC 4254 7.1): the address the client
/// wants listened on, how to answer it, and the session to open
/// `forwarded-tcpip` channels on.
pub struct RemoteForward {
    pub host: String,
    pub port: u32,
    handle: Handle,
    reply: Mutex<Option<oneshot::Sender<Result<u32, String>>>>,
    done: CancellationToken,
}

impl std::fmt::Debug for RemoteForward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteForward")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish()
    }
}

impl RemoteForward {
    /// Answers the request: `Ok(port)` with the port bound (the client
    /// learns it when it asked for port 0), or why it was refused.
    pub fn answer(&self, result: Result<u16, String>) {
        let sender = self.reply.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(s) = sender {
            let _ = s.send(result.map(u32::from));
        }
    }

    /// Ends when the client cancels the forward or the session ends.
    pub async fn done(&self) {
        self.done.cancelled().await
    }

    /// A `forwarded-tcpip` channel for a connection from `originator` to
    /// the forwarded `port` (the one bound).
    pub async fn open(&self, port: u16, originator: SocketAddr) -> io::Result<Stream> {
        let channel = self
            .handle
            .channel_open_forwarded_tcpip(
                self.host.clone(),
                u32::from(port),
                originator.ip().to_string(),
                u32::from(originator.port()),
            )
            .await
            .map_err(|e| io::Error::other(format!("open forwarded-tcpip channel: {e}")))?;
        Ok(Stream::boxed(channel.into_stream(), Endpoints::default()))
    }
}

/// Who may log in: GOST lets anyone in when the listener has neither an
/// auther nor authorized keys.
struct Access {
    auther: Option<Arc<dyn Auther>>,
    keys: Vec<PublicKey>,
}

impl Access {
    fn open(&self) -> bool {
        self.auther.is_none() && self.keys.is_empty()
    }

    fn methods(&self) -> MethodSet {
        let mut m = MethodSet::empty();
        if self.open() {
            m.push(MethodKind::None);
        }
        if self.auther.is_some() {
            m.push(MethodKind::Password);
        }
        if !self.keys.is_empty() {
            m.push(MethodKind::PublicKey);
        }
        m
    }

    fn knows(&self, key: &PublicKey) -> bool {
        self.keys.iter().any(|k| k.key_data() == key.key_data())
    }
}

pub struct SshdUpgrade {
    mode: Mode,
    config: Arc<Config>,
    access: Arc<Access>,
    backlog: usize,
}

impl SshdUpgrade {
    pub fn from_config(
        mode: Mode,
        cfg: &ListenerConfig,
        root: &gost_core::config::Config,
    ) -> Result<Self, String> {
        let name = mode.name();
        let md = &cfg.metadata;
        let get = |k: &str| {
            md.get_string(k)
                .map(|v| v.filter(|v| !v.is_empty()))
                .map_err(|e| format!("listener metadata: {e}"))
        };
        if md
            .get_bool("passphraseFromKeyring")
            .map_err(|e| format!("listener metadata: {e}"))?
            == Some(true)
        {
            return Err(format!(
                "{name} listener: passphraseFromKeyring is not supported; give passphrase"
            ));
        }
        let host_key = match get("privateKeyFile")? {
            Some(path) => keys::load_private_key(&path, get("passphrase")?.as_deref())
                .map_err(|e| format!("{name} listener: {e}"))?,
            None => keys::generate_host_key(),
        };
        let keys = match get("authorizedKeys")? {
            Some(path) => {
                keys::load_authorized_keys(&path).map_err(|e| format!("{name} listener: {e}"))?
            }
            None => Vec::new(),
        };
        let backlog = match md
            .get_int("backlog")
            .map_err(|e| format!("listener metadata: {e}"))?
        {
            Some(n) if n > 0 => n as usize,
            _ => DEFAULT_BACKLOG,
        };
        let access = Access {
            auther: gost_core::auth::from_config(
                root,
                &cfg.auther,
                &cfg.authers,
                cfg.auth.as_ref(),
            )
            .map_err(|e| e.to_string())?,
            keys,
        };
        let config = Config {
            server_id: russh::SshId::Standard(
                format!("SSH-2.0-gost-rs_{}", env!("CARGO_PKG_VERSION")).into(),
            ),
            methods: access.methods(),
            keys: vec![host_key],
            // OpenSSH asks with `none` first to learn the methods: that
            // answer need not be slowed down, the real attempts are.
            auth_rejection_time_initial: Some(Duration::ZERO),
            // GOST's sshd has no idle limit; port forwards may idle long.
            inactivity_timeout: None,
            nodelay: true,
            ..Default::default()
        };
        Ok(SshdUpgrade {
            mode,
            config: Arc::new(config),
            access: Arc::new(access),
            backlog,
        })
    }
}

impl Upgrade for SshdUpgrade {
    fn upgrade(&self, _stream: Stream) -> BoxFuture<'_, io::Result<Stream>> {
        Box::pin(std::future::ready(Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the SSH listeners' connections are SSH sessions, served as such",
        ))))
    }

    fn multiplex(&self) -> Option<&dyn MultiplexUpgrade> {
        Some(self)
    }
}

impl MultiplexUpgrade for SshdUpgrade {
    fn session(&self, stream: Stream) -> BoxFuture<'_, io::Result<Box<dyn Streams>>> {
        Box::pin(async move {
            let ends = stream.endpoints();
            let (tx, rx) = mpsc::channel(self.backlog);
            let closed = CancellationToken::new();
            let state = Arc::new(Mutex::new(AuthState::default()));
            let side = ServerSide {
                mode: self.mode,
                ends,
                peer: ends.peer,
                access: self.access.clone(),
                tx,
                forwards: HashMap::new(),
                closed: closed.clone(),
                _closed: closed.drop_guard(),
                state: state.clone(),
            };
            let running = tokio::time::timeout(
                ID_TIMEOUT,
                russh::server::run_stream(self.config.clone(), stream, side),
            )
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{}: no SSH version line within {ID_TIMEOUT:?}",
                        self.mode.name()
                    ),
                )
            })?
            .map_err(ssh_error)?;
            Ok(Box::new(SshdStreams {
                ends,
                rx,
                running: Some(running),
                end: None,
                state,
            }) as Box<dyn Streams>)
        })
    }
}

/// A client gone before its version line (a port probe, a health check)
/// keeps a disconnect's kind, so the service does not count it as an
/// error, as GOST does not.
fn ssh_error(e: russh::Error) -> io::Error {
    match e {
        russh::Error::IO(e) => e,
        russh::Error::Disconnect => io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "sshd: client disconnected before the handshake",
        ),
        other => io::Error::other(format!("sshd: {other}")),
    }
}

#[derive(Default)]
struct AuthState {
    authenticated: bool,
    /// The last user refused, for the session's end report.
    refused: Option<String>,
}

/// A stream for the handler, with the client's number for its channel
/// when it is one (for the loop detector's hop count).
type Queued = (Stream, Option<u32>);

struct SshdStreams {
    ends: Endpoints,
    rx: mpsc::Receiver<Queued>,
    running: Option<RunningSession<ServerSide>>,
    end: Option<(String, bool)>,
    state: Arc<Mutex<AuthState>>,
}

impl SshdStreams {
    fn ended(&mut self, r: Result<(), russh::Error>) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.end = Some(match (&r, state.authenticated, &state.refused) {
            (_, false, Some(user)) => (
                format!("authentication failed for user \"{}\"", esc(user)),
                true,
            ),
            (Ok(()), _, _) => ("closed".into(), false),
            (Err(russh::Error::IO(e)), _, _) if is_disconnect(e) => (e.to_string(), false),
            (Err(russh::Error::Disconnect), _, _) => ("client disconnected".into(), false),
            (Err(e), _, _) => (e.to_string(), true),
        });
    }
}

fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

impl Streams for SshdStreams {
    /// A channel's hops are looked up as late as can be, when the service
    /// takes it: the dialer learns the channel's number only once it has
    /// asked for it.
    fn accept(&mut self) -> BoxFuture<'_, Option<io::Result<Opened>>> {
        let ends = self.ends;
        let opened = move |(stream, id): Queued| {
            Ok(match id {
                Some(id) => Opened::new(stream, ends, id),
                None => Opened { stream, hops: 0 },
            })
        };
        Box::pin(async move {
            loop {
                let Some(running) = self.running.as_mut() else {
                    // The session is over: what it queued, then the end.
                    return self.rx.recv().await.map(opened);
                };
                let ended = tokio::select! {
                    s = self.rx.recv() => match s {
                        Some(s) => return Some(opened(s)),
                        // The handler is gone: the session is ending.
                        None => running.await,
                    },
                    r = &mut *running => r,
                };
                self.running = None;
                self.ended(ended);
            }
        })
    }

    fn end(&self) -> Option<(String, bool)> {
        self.end.clone()
    }
}

/// russh's per-connection handler: authentication and the requests.
struct ServerSide {
    mode: Mode,
    ends: Endpoints,
    peer: Option<SocketAddr>,
    access: Arc<Access>,
    tx: mpsc::Sender<Queued>,
    forwards: HashMap<(String, u32), CancellationToken>,
    /// Cancelled when the session ends (this handler is dropped): every
    /// remote forward of the session stops.
    closed: CancellationToken,
    _closed: DropGuard,
    state: Arc<Mutex<AuthState>>,
}

impl ServerSide {
    fn client(&self) -> String {
        self.peer.map(|p| p.to_string()).unwrap_or_default()
    }

    /// Refuses a channel of a type this listener does not serve, as GOST
    /// does: "unknown channel type", logged with what was asked.
    async fn refuse(&self, channel_type: &str, reply: ChannelOpenHandle) {
        tracing::warn!(client = %self.client(), channel_type = %esc(channel_type), "{}: unsupported channel type, refused", self.mode.name());
        reply.reject(ChannelOpenFailure::UnknownChannelType).await;
    }

    fn decide(&self, user: &str, ok: bool, method: &str) -> Auth {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            state.authenticated = true;
            return Auth::Accept;
        }
        tracing::debug!(client = %self.client(), user = %esc(user), method, "{}: authentication refused", self.mode.name());
        state.refused = Some(user.to_string());
        Auth::reject()
    }
}

impl russh::server::Handler for ServerSide {
    type Error = russh::Error;

    async fn auth_none(&mut self, user: &str) -> Result<Auth, Self::Error> {
        let open = self.access.open();
        if open {
            return Ok(self.decide(user, true, "none"));
        }
        Ok(Auth::reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let ok = match &self.access.auther {
            Some(a) => {
                let mut req = gost_core::auth::AuthRequest::new(user, password);
                req.client = self.peer;
                a.authenticate(req).await.is_some()
            }
            None => false,
        };
        Ok(self.decide(user, ok, "password"))
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        key: &PublicKey,
    ) -> Result<Auth, Self::Error> {
        // An unknown key offered is not yet a failed login (OpenSSH tries
        // each of its keys in turn), but it is one if nothing else works.
        let known = self.access.knows(key);
        if !known {
            self.decide(user, false, "publickey");
        }
        Ok(if known { Auth::Accept } else { Auth::reject() })
    }

    async fn auth_publickey(&mut self, user: &str, key: &PublicKey) -> Result<Auth, Self::Error> {
        let ok = self.access.knows(key);
        Ok(self.decide(user, ok, "publickey"))
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse("session", reply).await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.mode != Mode::Sshd {
            self.refuse("direct-tcpip", reply).await;
            return Ok(());
        }
        let Ok(permit) = self.tx.try_reserve() else {
            tracing::warn!(client = %self.client(), "sshd: stream queue is full, channel refused");
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        };
        let id = reply.peer_channel();
        reply.accept().await;
        let target = DirectTcpip {
            host: host.to_string(),
            port,
        };
        permit.send((
            Stream::boxed_with(channel.into_stream(), self.ends, Box::new(target)),
            Some(id),
        ));
        Ok(())
    }

    async fn channel_open_unknown(
        &mut self,
        channel: Channel<Msg>,
        channel_type: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.mode != Mode::Tunnel || channel_type != GOST_TUNNEL {
            self.refuse(channel_type, reply).await;
            return Ok(());
        }
        let Ok(permit) = self.tx.try_reserve() else {
            tracing::warn!(client = %self.client(), "ssh: stream queue is full, channel refused");
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        };
        let id = reply.peer_channel();
        reply.accept().await;
        permit.send((Stream::boxed(channel.into_stream(), self.ends), Some(id)));
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        if self.mode != Mode::Sshd {
            tracing::debug!(client = %self.client(), "ssh: tcpip-forward refused (gost-tunnel channels only)");
            return Ok(false);
        }
        let Ok(permit) = self.tx.try_reserve() else {
            tracing::warn!(client = %self.client(), "sshd: stream queue is full, tcpip-forward refused");
            return Ok(false);
        };
        let (reply, answer) = oneshot::channel();
        let done = self.closed.child_token();
        let forward = RemoteForward {
            host: address.to_string(),
            port: *port,
            handle: session.handle(),
            reply: Mutex::new(Some(reply)),
            done: done.clone(),
        };
        permit.send((
            Stream::boxed_with(
                NoData("a tcpip-forward request carries no data; the sshd handler serves it"),
                self.ends,
                Box::new(forward),
            ),
            None,
        ));
        match tokio::time::timeout(FORWARD_REPLY_TIMEOUT, answer).await {
            Ok(Ok(Ok(bound))) => {
                if *port == 0 {
                    *port = bound;
                }
                self.forwards.insert((address.to_string(), *port), done);
                Ok(true)
            }
            Ok(Ok(Err(why))) => {
                tracing::debug!(client = %self.client(), address = %esc(address), port = *port, error = %why, "sshd: tcpip-forward refused");
                done.cancel();
                Ok(false)
            }
            Ok(Err(_)) | Err(_) => {
                done.cancel();
                Ok(false)
            }
        }
    }

    async fn cancel_tcpip_forward(
        &mut self,
        address: &str,
        port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        match self.forwards.remove(&(address.to_string(), port)) {
            Some(done) => {
                done.cancel();
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
