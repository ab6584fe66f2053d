//! Unix sockets (GOST's `listener/unix` and `dialer/unix`): the service's
//! address, or a chain node's, is the socket's path. A unix connection is
//! a byte stream like TCP and flows through handlers and connectors the
//! same way; it has no IP address, so its client is
//! [`gost_core::context::UNIX_PEER`], which logs show as `@` like GOST.
//!
//! As with Go's `net.Listen("unix")`, a path that exists already (a
//! socket left behind by a process that died) is not removed: binding
//! fails with "address in use", naming the path. The listener removes its
//! socket file when it closes, as Go's unix listener does.

use std::io;
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

use crate::kinds::{DialerKind, ListenerKind, Socket, Transports};
use crate::listener::{AcceptFuture, Accepted, Conn, Listener};
use crate::{BoxFuture, Dialer};
use gost_core::context::UNIX_PEER;
use gost_core::metadata::{Metadata, MetadataError};
use gost_core::stream::Stream;

pub fn register(t: &mut Transports) {
    t.add_listener(ListenerKind {
        names: &["unix"],
        socket: Socket::Unix,
        upgrade: None,
        uses_tls: false,
        summary: "a unix socket at the service's address (a path); `mode` sets its permissions",
    });
    t.add_dialer(DialerKind {
        names: &["unix"],
        build: |_, _| Ok(Some(std::sync::Arc::new(UnixDialer))),
        summary: "a unix socket at the node's address (a path)",
    });
}

/// The unix socket's stream, as every other transport's.
pub fn stream(s: UnixStream) -> Stream {
    Stream::boxed(s, Default::default())
}

/// A unix socket listening at a path, removed when the listener closes.
pub struct UnixListen {
    inner: UnixListener,
    path: PathBuf,
}

impl UnixListen {
    /// Binds `path`, then sets its permission bits to `mode` when given
    /// (GOST's `mode` listener metadata).
    pub fn bind(path: &str, mode: Option<u32>) -> io::Result<Self> {
        if path.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a unix listener needs a socket path as its address",
            ));
        }
        let inner = UnixListener::bind(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("unix socket {}: {e}", gost_core::escape::esc(path)),
            )
        })?;
        let listen = UnixListen {
            inner,
            path: PathBuf::from(path),
        };
        if let Some(mode) = mode {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "unix socket {}: mode {mode:#o}: {e}",
                        gost_core::escape::esc(path)
                    ),
                )
            })?;
        }
        Ok(listen)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UnixListen {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Listener for UnixListen {
    fn local_addr(&self) -> std::net::SocketAddr {
        UNIX_PEER
    }

    fn addr_text(&self) -> String {
        self.path.display().to_string()
    }

    fn accept(&self) -> AcceptFuture<'_> {
        Box::pin(async move {
            let (s, _) = self.inner.accept().await?;
            Ok(Accepted {
                conn: Conn::Stream(stream(s)),
                peer: UNIX_PEER,
                local: UNIX_PEER,
            })
        })
    }
}

/// GOST's `mode`: an integer, or a string read as Go's
/// `strconv.ParseInt(s, 0, 32)` reads it (`0660` and `0o660` octal,
/// `0x1b0` hexadecimal, else decimal). Zero or absent leaves the mode the
/// process's umask gives.
pub fn mode_from_metadata(md: &Metadata) -> Result<Option<u32>, MetadataError> {
    let bad = |v: &serde_json::Value| MetadataError {
        key: "mode".into(),
        value: v.to_string(),
        expected: "file permission bits, as an integer or a string such as \"0660\"",
    };
    let Some(v) = md.get("mode") else {
        return Ok(None);
    };
    let n = match v {
        serde_json::Value::Number(n) => n.as_u64().ok_or_else(|| bad(v))?,
        serde_json::Value::String(s) if s.trim().is_empty() => return Ok(None),
        serde_json::Value::String(s) => parse_go_int(s.trim()).ok_or_else(|| bad(v))?,
        _ => return Err(bad(v)),
    };
    if n > 0o7777 {
        return Err(bad(v));
    }
    Ok((n > 0).then_some(n as u32))
}

fn parse_go_int(s: &str) -> Option<u64> {
    let lower = s.to_ascii_lowercase();
    if let Some(h) = lower.strip_prefix("0x") {
        u64::from_str_radix(h, 16).ok()
    } else if let Some(o) = lower.strip_prefix("0o") {
        u64::from_str_radix(o, 8).ok()
    } else if let Some(b) = lower.strip_prefix("0b") {
        u64::from_str_radix(b, 2).ok()
    } else if lower.len() > 1 && lower.starts_with('0') {
        u64::from_str_radix(&lower[1..], 8).ok()
    } else {
        lower.parse().ok()
    }
}

/// The `unix` dialer: the node's address is a socket path; there is no
/// handshake of its own.
#[derive(Debug)]
pub struct UnixDialer;

/// Connects to the unix socket at `path`, naming it on failure.
pub async fn connect(path: &str) -> io::Result<Stream> {
    UnixStream::connect(path).await.map(stream).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("unix socket {}: {e}", gost_core::escape::esc(path)),
        )
    })
}

impl Dialer for UnixDialer {
    fn dial<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Stream>> {
        Box::pin(connect(addr))
    }

    fn handshake<'a>(
        &'a self,
        stream: Stream,
        _node_addr: &'a str,
    ) -> BoxFuture<'a, io::Result<Stream>> {
        Box::pin(std::future::ready(Ok(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_reads_as_go_reads_it() {
        let md = |v: serde_json::Value| {
            let mut m = Metadata::new();
            m.insert("mode", v);
            mode_from_metadata(&m)
        };
        assert_eq!(md("0660".into()).unwrap(), Some(0o660));
        assert_eq!(md("0o600".into()).unwrap(), Some(0o600));
        assert_eq!(md("0x1b0".into()).unwrap(), Some(0o660));
        assert_eq!(md("432".into()).unwrap(), Some(0o660));
        assert_eq!(md(432.into()).unwrap(), Some(0o660));
        assert_eq!(md(0.into()).unwrap(), None);
        assert!(md("rw-".into()).is_err());
        assert!(md("0999".into()).is_err());
        assert!(md(70000.into()).is_err());
    }

    #[tokio::test]
    async fn a_stale_socket_file_is_refused_and_closing_removes_the_file() {
        let dir = std::env::temp_dir().join(format!("gost-unix-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let p = path.to_str().unwrap();
        let l = UnixListen::bind(p, Some(0o600)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let err = UnixListen::bind(p, None).err().expect("path in use");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains("s.sock"), "{err}");
        drop(l);
        assert!(!path.exists());
        drop(UnixListen::bind(p, None).unwrap());
        std::fs::remove_dir(&dir).unwrap();
    }
}
