//! The host, mocked, for unit tests of plugin logic with `cargo test`.
//!
//! Built for anything but WebAssembly, the SDK's [`Conn`](crate::Conn),
//! `ConnInfo`, `Outcome`, `RelayStreams`, [`log`](crate::log),
//! [`config_json`](crate::config_json), `dial` and `authenticate` are the
//! ones here: the plugin's code compiles unchanged, and a [`MockHost`]
//! answers its calls from what the test set up. Each test runs on its own
//! thread, and the mock host's state is the thread's, so tests do not see
//! each other.
//!
//! ```
//! # #[cfg(feature = "handler")] {
//! use std::io::{Read, Write};
//! use gost_plugin_sdk::handler::{dial, ConnInfo, Outcome, RelayStreams};
//! use gost_plugin_sdk::testing::MockHost;
//! use gost_plugin_sdk::{Conn, Handler};
//!
//! /// Reads a target line, then relays to it.
//! struct Line;
//! impl Handler for Line {
//!     fn handle(_info: &ConnInfo, mut client: Conn) -> Outcome {
//!         let mut b = [0u8; 64];
//!         let n = Read::read(&mut client, &mut b).unwrap_or(0);
//!         let target = String::from_utf8_lossy(&b[..n]).trim().to_string();
//!         match dial("tcp", &target) {
//!             Ok(up) => Outcome::Relay(RelayStreams::new(client, up)),
//!             Err(e) => {
//!                 let _ = client.write_all(b"no\n");
//!                 Outcome::Fail(e)
//!             }
//!         }
//!     }
//! }
//!
//! let run = MockHost::new().upstream("10.0.0.1:80", &[]).handle::<Line>(&[b"10.0.0.1:80\n"]);
//! assert!(matches!(run.outcome, Outcome::Relay(_)));
//! assert_eq!(run.dialed[0].0, "10.0.0.1:80");
//! let run = MockHost::new().handle::<Line>(&[b"10.9.9.9:80\n"]);
//! assert!(matches!(run.outcome, Outcome::Fail(_)));
//! assert_eq!(run.client.written(), b"no\n");
//! # }
//! ```

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::rc::Rc;

use crate::Level;

#[derive(Default)]
struct Pipe {
    /// What the peer sends, chunk by chunk as reads return it.
    input: VecDeque<Vec<u8>>,
    written: Vec<u8>,
    write_shut: bool,
    peer: String,
}

/// A connection whose peer is the test: reads return the chunks given to
/// [`MockConn::new`] one at a time (then end of stream), and what the
/// plugin writes is kept for [`Peer::written`].
pub struct MockConn(Rc<RefCell<Pipe>>);

/// The test's end of a [`MockConn`].
#[derive(Clone)]
pub struct Peer(Rc<RefCell<Pipe>>);

impl MockConn {
    /// A connection from `peer` (`ip:port`) that reads `chunks`.
    pub fn new(peer: &str, chunks: &[&[u8]]) -> (MockConn, Peer) {
        let pipe = Rc::new(RefCell::new(Pipe {
            input: chunks.iter().map(|c| c.to_vec()).collect(),
            peer: peer.into(),
            ..Default::default()
        }));
        (MockConn(pipe.clone()), Peer(pipe))
    }

    /// Returns the next chunk, at most `max` bytes of it; empty at the end.
    pub fn read(&self, max: u32) -> Result<Vec<u8>, String> {
        let mut p = self.0.borrow_mut();
        let Some(mut chunk) = p.input.pop_front() else {
            return Ok(Vec::new());
        };
        if chunk.len() > max as usize {
            let rest = chunk.split_off(max as usize);
            p.input.push_front(rest);
        }
        Ok(chunk)
    }

    /// Keeps `data` for the test; an error after `shutdown_write`, as the
    /// host gives.
    pub fn write(&self, data: &[u8]) -> Result<(), String> {
        let mut p = self.0.borrow_mut();
        if p.write_shut {
            return Err("write after shutdown-write".into());
        }
        p.written.extend_from_slice(data);
        Ok(())
    }

    pub fn exchange(&self, data: &[u8], max: u32) -> Result<Vec<u8>, String> {
        self.write(data)?;
        self.read(max)
    }

    pub fn shutdown_write(&self) -> Result<(), String> {
        self.0.borrow_mut().write_shut = true;
        Ok(())
    }

    pub fn peer_addr(&self) -> String {
        self.0.borrow().peer.clone()
    }
}

impl fmt::Debug for MockConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MockConn({})", self.0.borrow().peer)
    }
}

impl Peer {
    /// Everything the plugin wrote to the connection.
    pub fn written(&self) -> Vec<u8> {
        self.0.borrow().written.clone()
    }

    /// Whether the plugin shut its writing side.
    pub fn write_shut(&self) -> bool {
        self.0.borrow().write_shut
    }

    /// Input chunks the plugin did not read.
    pub fn unread(&self) -> Vec<u8> {
        self.0.borrow().input.iter().flatten().copied().collect()
    }
}

/// What the host tells a handler about its connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub service: String,
    pub network: String,
    pub client_addr: String,
    pub local_addr: String,
}

impl ConnInfo {
    pub fn service(&self) -> String {
        self.service.clone()
    }
    pub fn network(&self) -> String {
        self.network.clone()
    }
    pub fn client_addr(&self) -> String {
        self.client_addr.clone()
    }
    pub fn local_addr(&self) -> String {
        self.local_addr.clone()
    }
}

impl Default for ConnInfo {
    fn default() -> Self {
        ConnInfo {
            service: "service-0".into(),
            network: "tcp".into(),
            client_addr: "127.0.0.1:40000".into(),
            local_addr: "127.0.0.1:1080".into(),
        }
    }
}

/// The handler world's `relay-streams`, over mock connections.
#[derive(Debug)]
pub struct RelayStreams {
    pub client: MockConn,
    pub upstream: MockConn,
    pub to_client: Vec<u8>,
    pub to_upstream: Vec<u8>,
}

impl RelayStreams {
    /// Both streams with nothing to write before the relay.
    pub fn new(client: MockConn, upstream: MockConn) -> Self {
        RelayStreams {
            client,
            upstream,
            to_client: Vec::new(),
            to_upstream: Vec::new(),
        }
    }
}

/// The handler world's `outcome`, over mock connections.
#[derive(Debug)]
pub enum Outcome {
    Done,
    Relay(RelayStreams),
    Fail(String),
}

/// What the host answers: the plugin's config, the addresses `dial`
/// reaches, the users `authenticate` knows, and the log level.
#[derive(Default, Clone)]
pub struct MockHost {
    config: String,
    upstreams: HashMap<String, Vec<Vec<u8>>>,
    users: Option<HashMap<(String, String), String>>,
    level: Option<Level>,
    info: ConnInfo,
}

/// How a handler call went: its outcome, the client's end, each
/// connection it dialed (address and the test's end) and its log lines.
#[derive(Debug)]
pub struct Run {
    pub outcome: Outcome,
    pub client: Peer,
    pub dialed: Vec<(String, Peer)>,
    pub logs: Vec<(Level, String)>,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.0.borrow();
        write!(
            f,
            "Peer({}, written {:?})",
            p.peer,
            String::from_utf8_lossy(&p.written)
        )
    }
}

impl MockHost {
    pub fn new() -> Self {
        MockHost {
            config: "{}".into(),
            level: Some(Level::Debug),
            ..Default::default()
        }
    }

    /// The plugin's `config`, as JSON.
    pub fn config(mut self, json: &str) -> Self {
        self.config = json.into();
        self
    }

    /// `dial("tcp", addr)` succeeds, and the connection reads `replies`.
    /// Any other address is refused.
    pub fn upstream(mut self, addr: &str, replies: &[&[u8]]) -> Self {
        self.upstreams
            .insert(addr.into(), replies.iter().map(|r| r.to_vec()).collect());
        self
    }

    /// `authenticate(user, password)` lets this user in as `id`; with no
    /// user given, every client is let in as an empty id, as a service
    /// without an auther does.
    pub fn user(mut self, user: &str, password: &str, id: &str) -> Self {
        self.users
            .get_or_insert_with(HashMap::new)
            .insert((user.into(), password.into()), id.into());
        self
    }

    /// The lowest level `log_enabled` says yes to; `None` for none.
    pub fn log_level(mut self, level: Option<Level>) -> Self {
        self.level = level;
        self
    }

    /// What `ConnInfo` answers.
    pub fn conn_info(mut self, info: ConnInfo) -> Self {
        self.info = info;
        self
    }

    /// Makes this the host of the current thread, for code that is not a
    /// handler (a forwarder's `select`, an observer's `observe`): their
    /// `config_json` and `log` calls then reach it. [`logs`] takes the lines.
    pub fn install(self) {
        HOST.with(|h| {
            *h.borrow_mut() = State {
                host: self,
                dialed: Vec::new(),
                logs: Vec::new(),
            }
        });
    }

    /// Runs the handler `H` on a client that sends `client_sends`, chunk
    /// by chunk.
    #[cfg(feature = "handler")]
    pub fn handle<H: crate::Handler>(self, client_sends: &[&[u8]]) -> Run {
        let info = self.info.clone();
        self.install();
        let (conn, client) = MockConn::new(&info.client_addr, client_sends);
        let outcome = H::handle(&info, conn);
        HOST.with(|h| {
            let mut s = h.borrow_mut();
            Run {
                outcome,
                client,
                dialed: std::mem::take(&mut s.dialed),
                logs: std::mem::take(&mut s.logs),
            }
        })
    }
}

/// The lines logged on this thread since the host was installed.
pub fn logs() -> Vec<(Level, String)> {
    HOST.with(|h| std::mem::take(&mut h.borrow_mut().logs))
}

#[derive(Default)]
struct State {
    host: MockHost,
    dialed: Vec<(String, Peer)>,
    logs: Vec<(Level, String)>,
}

thread_local! {
    static HOST: RefCell<State> = RefCell::new(State {
        host: MockHost::new(),
        ..Default::default()
    });
}

fn rank(l: Level) -> u8 {
    match l {
        Level::Trace => 0,
        Level::Debug => 1,
        Level::Info => 2,
        Level::Warn => 3,
        Level::Error => 4,
    }
}

/// The mock's side of the host calls; the SDK re-exports these in place
/// of the real imports when not built for WebAssembly.
pub mod host {
    use super::*;

    pub fn log(level: Level, msg: &str) {
        HOST.with(|h| h.borrow_mut().logs.push((level, msg.to_string())));
    }

    pub fn log_enabled(level: Level) -> bool {
        HOST.with(|h| {
            h.borrow()
                .host
                .level
                .is_some_and(|min| rank(level) >= rank(min))
        })
    }

    pub fn config_json() -> String {
        HOST.with(|h| h.borrow().host.config.clone())
    }

    pub fn dial(network: &str, address: &str) -> Result<MockConn, String> {
        if network != "tcp" {
            return Err(format!("network \"{network}\" is not supported (tcp)"));
        }
        HOST.with(|h| {
            let mut s = h.borrow_mut();
            let Some(replies) = s.host.upstreams.get(address) else {
                return Err(format!("dial tcp {address}: connection refused"));
            };
            let chunks: Vec<&[u8]> = replies.iter().map(|r| r.as_slice()).collect();
            let (conn, peer) = MockConn::new(address, &chunks);
            s.dialed.push((address.to_string(), peer));
            Ok(conn)
        })
    }

    pub fn authenticate(user: &str, password: &str) -> Option<String> {
        HOST.with(|h| match &h.borrow().host.users {
            None => Some(String::new()),
            Some(users) => users.get(&(user.into(), password.into())).cloned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn reads_come_in_chunks_and_writes_are_kept() {
        let (mut c, peer) = MockConn::new("1.2.3.4:5", &[b"hello", b"world"]);
        let mut b = [0u8; 3];
        assert_eq!(Read::read(&mut c, &mut b).unwrap(), 3);
        assert_eq!(&b, b"hel");
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"loworld");
        c.write_all(b"ok").unwrap();
        c.shutdown_write().unwrap();
        assert!(MockConn::write(&c, b"late").is_err());
        assert_eq!(peer.written(), b"ok");
        assert!(peer.write_shut());
        assert_eq!(c.peer_addr(), "1.2.3.4:5");
    }

    #[test]
    fn host_answers_from_its_setup() {
        MockHost::new()
            .config(r#"{"a":1}"#)
            .upstream("10.0.0.1:80", &[b"hi"])
            .user("u", "p", "id-u")
            .log_level(Some(Level::Info))
            .install();
        assert_eq!(host::config_json(), r#"{"a":1}"#);
        assert!(host::dial("tcp", "10.0.0.2:80").is_err());
        assert!(host::dial("udp", "10.0.0.1:80").is_err());
        assert_eq!(
            host::dial("tcp", "10.0.0.1:80").unwrap().read(9),
            Ok(b"hi".to_vec())
        );
        assert_eq!(host::authenticate("u", "p").as_deref(), Some("id-u"));
        assert_eq!(host::authenticate("u", "x"), None);
        assert!(!host::log_enabled(Level::Debug) && host::log_enabled(Level::Warn));
        host::log(Level::Info, "line");
        assert_eq!(logs(), vec![(Level::Info, "line".to_string())]);
    }
}
