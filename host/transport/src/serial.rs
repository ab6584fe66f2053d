//! GOST's serial port transport (`listener/serial`, `dialer/serial`,
//! `internal/util/serial`): a serial port is one byte stream, opened with
//! tokio-serial.
//!
//! An address is GOST's `port[,baud[,parity]]`: `/dev/ttyUSB0`,
//! `/dev/ttyUSB0,115200`, `COM1,9600,odd`. The baud rate defaults to 9600
//! and parity to none; data bits (8), stop bits (1) and flow control
//! (none) are fixed, as GOST's are. Where GOST reads a field it does not
//! understand as the default (a baud rate that is not a number, an
//! unknown parity), this refuses it with a message naming the field.
//!
//! The listener holds one connection at a time: the port is opened when
//! the service starts (a missing device stops it with the device named),
//! handed to the handler, and after that connection ends it is opened
//! again a second later, as GOST's listener loop does.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_serial::SerialPortBuilderExt;

use crate::kinds::{DialerKind, ListenerKind, Socket, Transports};
use crate::listener::{AcceptFuture, Accepted, Conn, Listener};
use crate::{BoxFuture, Dialer};
use gost_core::context::UNIX_PEER;
use gost_core::escape::esc;
use gost_core::metadata::{Metadata, MetadataError};
use gost_core::stream::Stream;

pub fn register(t: &mut Transports) {
    t.add_listener(ListenerKind {
        names: &["serial"],
        socket: Socket::Serial,
        upgrade: None,
        uses_tls: false,
        summary: "a serial port (`port[,baud[,parity]]`) as the one connection, reopened after it ends; `timeout`",
    });
    t.add_dialer(DialerKind {
        names: &["serial"],
        build: |_, _| Ok(Some(Arc::new(SerialDialer))),
        summary: "a serial port at the node's address (`port[,baud[,parity]]`)",
    });
}

/// GOST's default baud rate.
pub const DEFAULT_BAUD: u32 = 9600;

/// How long GOST's listener waits before opening the port again.
const REOPEN_DELAY: Duration = Duration::from_secs(1);

/// Parity GOST can set (its Linux port refuses mark and space).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Parity {
    #[default]
    None,
    Odd,
    Even,
}

/// A port and how to talk to it, from GOST's `port[,baud[,parity]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialConfig {
    pub name: String,
    pub baud: u32,
    pub parity: Parity,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SerialConfigError {
    #[error("serial address {addr}: no port name (expected port[,baud[,parity]])")]
    NoName { addr: String },
    #[error("serial address {addr}: more than three fields (expected port[,baud[,parity]])")]
    TooManyFields { addr: String },
    #[error("serial address {addr}: baud rate {baud} is not a positive whole number")]
    BadBaud { addr: String, baud: String },
    #[error("serial address {addr}: parity {parity} is not one of none, odd, even")]
    BadParity { addr: String, parity: String },
    #[error("serial address {addr}: parity {parity} is not supported (GOST's serial port sets none, odd or even)")]
    UnsupportedParity { addr: String, parity: String },
}

impl SerialConfig {
    pub fn parse(addr: &str) -> Result<Self, SerialConfigError> {
        let shown = || esc(addr).to_string();
        let fields: Vec<&str> = addr.split(',').map(str::trim).collect();
        if fields.len() > 3 {
            return Err(SerialConfigError::TooManyFields { addr: shown() });
        }
        let name = fields[0];
        if name.is_empty() {
            return Err(SerialConfigError::NoName { addr: shown() });
        }
        let baud = match fields.get(1) {
            None => DEFAULT_BAUD,
            Some(b) => b.parse::<u32>().ok().filter(|b| *b > 0).ok_or_else(|| {
                SerialConfigError::BadBaud {
                    addr: shown(),
                    baud: esc(b).to_string(),
                }
            })?,
        };
        let parity = match fields.get(2).map(|p| p.to_ascii_lowercase()) {
            None => Parity::None,
            Some(p) => match p.as_str() {
                "" | "n" | "none" => Parity::None,
                "o" | "odd" => Parity::Odd,
                "e" | "even" => Parity::Even,
                "m" | "mark" | "s" | "space" => {
                    return Err(SerialConfigError::UnsupportedParity {
                        addr: shown(),
                        parity: esc(&p).to_string(),
                    })
                }
                _ => {
                    return Err(SerialConfigError::BadParity {
                        addr: shown(),
                        parity: esc(&p).to_string(),
                    })
                }
            },
        };
        Ok(SerialConfig {
            name: name.to_string(),
            baud,
            parity,
        })
    }

    /// Opens the port: 8 data bits, 1 stop bit, no flow control, raw.
    /// The error names the port.
    pub fn open(&self, read_timeout: Option<Duration>) -> io::Result<Stream> {
        let parity = match self.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Odd => tokio_serial::Parity::Odd,
            Parity::Even => tokio_serial::Parity::Even,
        };
        // GOST opens ports without TIOCEXCL or an exclusive lock: a second
        // open (another connection to the same port) is not refused. Set
        // on the builder: dropped after the open, a lock taken meanwhile
        // refused an open made at the same time.
        let port = tokio_serial::new(&self.name, self.baud)
            .exclusive(false)
            .data_bits(tokio_serial::DataBits::Eight)
            .stop_bits(tokio_serial::StopBits::One)
            .flow_control(tokio_serial::FlowControl::None)
            .parity(parity)
            .open_native_async()
            .map_err(|e| {
                let kind = match e.kind {
                    tokio_serial::ErrorKind::NoDevice => io::ErrorKind::NotFound,
                    tokio_serial::ErrorKind::InvalidInput => io::ErrorKind::InvalidInput,
                    tokio_serial::ErrorKind::Io(k) => k,
                    _ => io::ErrorKind::Other,
                };
                io::Error::new(
                    kind,
                    format!("serial port {}: {}", esc(&self.name), esc(&e.description)),
                )
            })?;
        Ok(Stream::boxed(
            SerialIo {
                port,
                read_timeout,
                waiting: None,
                closed: false,
                reader: None,
            },
            Default::default(),
        ))
    }
}

/// GOST's serial `timeout` (listener and handler metadata): a read that
/// gets no byte for that long ends the connection. GOST sets it as the
/// terminal's VTIME, in tenths of a second from 0.1 s to 25.5 s, and this
/// keeps those bounds. Zero or absent: reads wait for ever.
pub fn read_timeout_from(md: &Metadata, keys: &[&str]) -> Result<Option<Duration>, MetadataError> {
    for k in keys {
        if let Some(d) = md.get_duration(k)? {
            if d.is_zero() {
                return Ok(None);
            }
            let tenths = (d.as_millis() / 100).clamp(1, 255) as u64;
            return Ok(Some(Duration::from_millis(tenths * 100)));
        }
    }
    Ok(None)
}

/// An open port; with a read timeout, a read that waits that long ends
/// the stream as GOST's zero-byte read (VMIN 0, VTIME) does.
///
/// A port has no half-close: GOST closes it when the other side's bytes
/// end, which ends its reads too. Here shutting the write side down ends
/// the reads (a waiting read sees the end at once), so a relay finishes
/// and the port is closed when the peer has gone.
struct SerialIo {
    port: tokio_serial::SerialStream,
    read_timeout: Option<Duration>,
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
    closed: bool,
    /// The task of a read waiting for bytes, woken by a shutdown.
    reader: Option<std::task::Waker>,
}

impl AsyncRead for SerialIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.closed {
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut this.port).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.waiting = None;
                this.reader = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                this.reader = Some(cx.waker().clone());
                let Some(t) = this.read_timeout else {
                    return Poll::Pending;
                };
                let sleep = this
                    .waiting
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(t)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.waiting = None;
                        Poll::Ready(Ok(()))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for SerialIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.port).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.port).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = std::task::ready!(Pin::new(&mut self.port).poll_flush(cx));
        self.closed = true;
        if let Some(w) = self.reader.take() {
            w.wake();
        }
        Poll::Ready(r)
    }
}

/// GOST's serial listener: one connection at a time on one port.
pub struct SerialListen {
    addr: String,
    config: SerialConfig,
    read_timeout: Option<Duration>,
    /// The port opened when the service started, for the first accept.
    first: Mutex<Option<Stream>>,
    /// Held by the connection being served.
    busy: Arc<Semaphore>,
    /// Whether the device failed to open last time, so that a device
    /// that stays away is logged once, not every second.
    failing: AtomicBool,
}

impl SerialListen {
    /// Opens the port at `addr` now, so that a bad address or a missing
    /// device stops the service with a message.
    pub fn bind(addr: &str, read_timeout: Option<Duration>) -> io::Result<Self> {
        let config = SerialConfig::parse(addr)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let port = config.open(read_timeout)?;
        Ok(SerialListen {
            addr: addr.to_string(),
            config,
            read_timeout,
            first: Mutex::new(Some(port)),
            busy: Arc::new(Semaphore::new(1)),
            failing: AtomicBool::new(false),
        })
    }

    async fn next_port(&self) -> Stream {
        if let Some(port) = self.first.lock().expect("serial listener lock").take() {
            return port;
        }
        loop {
            tokio::time::sleep(REOPEN_DELAY).await;
            match self.config.open(self.read_timeout) {
                Ok(port) => {
                    if self.failing.swap(false, Ordering::Relaxed) {
                        tracing::info!(port = %esc(&self.config.name), "serial port open again");
                    }
                    return port;
                }
                Err(e) => {
                    if !self.failing.swap(true, Ordering::Relaxed) {
                        tracing::error!(error = %e, "serial listener: cannot open the port; retrying every second");
                    }
                }
            }
        }
    }
}

impl Listener for SerialListen {
    fn local_addr(&self) -> std::net::SocketAddr {
        UNIX_PEER
    }

    fn addr_text(&self) -> String {
        self.addr.clone()
    }

    fn accept(&self) -> AcceptFuture<'_> {
        Box::pin(async move {
            let permit = self
                .busy
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| io::Error::other("serial listener closed"))?;
            let port = self.next_port().await;
            Ok(Accepted {
                conn: Conn::Stream(Stream::boxed(
                    Held {
                        inner: port,
                        _permit: permit,
                    },
                    Default::default(),
                )),
                peer: UNIX_PEER,
                local: UNIX_PEER,
            })
        })
    }
}

/// The listener's connection: dropping it closes the port and lets the
/// listener open it again.
struct Held {
    inner: Stream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Held {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Held {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Opens the port a `port[,baud[,parity]]` address names, reads waiting
/// for ever (GOST's dialer sets no timeout).
pub fn open(addr: &str) -> io::Result<Stream> {
    SerialConfig::parse(addr)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?
        .open(None)
}

/// The `serial` dialer: the node's address is the port; there is no
/// handshake of its own.
#[derive(Debug)]
pub struct SerialDialer;

impl Dialer for SerialDialer {
    fn dial<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Stream>> {
        Box::pin(std::future::ready(open(addr)))
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
    fn addresses_read_as_gost_reads_them() {
        let c = SerialConfig::parse("COM1").unwrap();
        assert_eq!(
            (c.name.as_str(), c.baud, c.parity),
            ("COM1", 9600, Parity::None)
        );
        let c = SerialConfig::parse("/dev/ttyUSB0,115200").unwrap();
        assert_eq!((c.baud, c.parity), (115200, Parity::None));
        let c = SerialConfig::parse("COM1,9600,ODD").unwrap();
        assert_eq!(c.parity, Parity::Odd);
        assert_eq!(
            SerialConfig::parse("COM1,9600,e").unwrap().parity,
            Parity::Even
        );
        assert_eq!(
            SerialConfig::parse("COM1,9600,none").unwrap().parity,
            Parity::None
        );
    }

    #[test]
    fn bad_addresses_name_the_field() {
        let e = SerialConfig::parse("COM1,0").unwrap_err();
        assert!(matches!(e, SerialConfigError::BadBaud { .. }), "{e}");
        assert!(e.to_string().contains("baud rate 0"), "{e}");
        let e = SerialConfig::parse("COM1,fast").unwrap_err();
        assert!(e.to_string().contains("baud rate fast"), "{e}");
        let e = SerialConfig::parse("COM1,9600,weird").unwrap_err();
        assert!(e.to_string().contains("parity weird"), "{e}");
        let e = SerialConfig::parse("COM1,9600,mark").unwrap_err();
        assert!(matches!(e, SerialConfigError::UnsupportedParity { .. }));
        assert!(matches!(
            SerialConfig::parse(",9600").unwrap_err(),
            SerialConfigError::NoName { .. }
        ));
        assert!(matches!(
            SerialConfig::parse("COM1,9600,odd,8").unwrap_err(),
            SerialConfigError::TooManyFields { .. }
        ));
    }

    #[test]
    fn timeouts_keep_gosts_vtime_bounds() {
        let md = |v: &str| {
            let mut m = Metadata::new();
            m.insert("serial.timeout", v);
            read_timeout_from(&m, &["timeout", "serial.timeout"]).unwrap()
        };
        assert_eq!(md("0s"), None);
        assert_eq!(md("10ms"), Some(Duration::from_millis(100)));
        assert_eq!(md("1500ms"), Some(Duration::from_millis(1500)));
        assert_eq!(md("1h"), Some(Duration::from_millis(25500)));
    }

    #[tokio::test]
    async fn a_missing_device_is_named() {
        let Err(e) = open("/dev/gost-no-such-tty,9600") else {
            panic!("opened a missing device")
        };
        assert!(e.to_string().contains("/dev/gost-no-such-tty"), "{e}");
    }
}
