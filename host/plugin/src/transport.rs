//! The `wasm` listener and dialer: a plugin of the `transport` world wraps
//! each connection's bytes both ways, under any handler or connector.
//!
//! Each chunk costs one call into the plugin: a write is one `encode`, a
//! read from the wire one `decode`. An instance serves one connection from
//! `start` until the connection closes, then goes back to the pool. The
//! two directions share it, so one call runs at a time: whichever side
//! polls drives the call in flight and wakes the other when it ends.
//!
//! What a plugin can do wrong is bounded: a call's output may be at most
//! [`MAX_GROWTH`] times its input plus [`GROWTH_SLACK`], a decoder may hold
//! back at most [`MAX_WITHHELD`] bytes without returning any, and a trap,
//! an error or a broken bound closes that connection alone, logged once.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use gost_core::config::PluginConfig;
use gost_core::stream::Stream;
use gost_transport::{BoxFuture, Dialer, Upgrade};

use super::bindings::transport::{Side, Transport, TransportPre};
use super::pool::{Pool, Warm};
use super::spec::PluginSpec;
use super::state::PluginState;

/// The largest chunk handed to one `encode` or read for one `decode`.
const CHUNK: usize = 64 * 1024;
/// A call may return at most this many times its input...
pub const MAX_GROWTH: usize = 4;
/// ...plus this much (a frame header, padding, a held-back frame).
pub const GROWTH_SLACK: usize = 64 * 1024;
/// Wire bytes a decoder may take without returning any before the
/// connection is closed: far above any frame a transport would buffer.
pub const MAX_WITHHELD: usize = 1 << 20;

type TransportPool = Pool<TransportPre<PluginState>>;
type CallResult = wasmtime::Result<Result<Vec<u8>, String>>;
type CallFuture = Pin<Box<dyn Future<Output = (Warm<Transport>, CallResult)> + Send>>;

/// The plugin of a `wasm` listener or dialer (`plugin: {type: wasm, ...}`).
pub fn pool(plugin: Option<&PluginConfig>, what: &str) -> Result<Arc<TransportPool>, String> {
    let plugin = plugin.ok_or_else(|| {
        format!("{what} type 'wasm' needs {what}.plugin (a component of the transport world)")
    })?;
    let spec = PluginSpec::from_config(plugin).map_err(|e| e.to_string())?;
    Pool::watched(spec, what).map_err(|e| e.to_string())
}

/// The server side: wraps each accepted connection.
pub struct WasmUpgrade(pub Arc<TransportPool>);

impl Upgrade for WasmUpgrade {
    fn upgrade(&self, stream: Stream) -> BoxFuture<'_, io::Result<Stream>> {
        Box::pin(wrap(self.0.clone(), stream, Side::Server))
    }
}

/// The client side: wraps the connection to the node.
pub struct WasmDialer(pub Arc<TransportPool>);

impl std::fmt::Debug for WasmDialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WasmDialer")
            .field(&self.0.spec().name)
            .finish()
    }
}

impl Dialer for WasmDialer {
    fn handshake<'a>(
        &'a self,
        stream: Stream,
        _node_addr: &'a str,
    ) -> BoxFuture<'a, io::Result<Stream>> {
        Box::pin(wrap(self.0.clone(), stream, Side::Client))
    }
}

/// Starts the plugin on `stream` and sends its preamble.
async fn wrap(pool: Arc<TransportPool>, mut stream: Stream, side: Side) -> io::Result<Stream> {
    let mut w = pool.acquire().await.map_err(io::Error::other)?;
    w.arm();
    let preamble = match w.bindings.call_start(&mut w.store, side).await {
        Ok(Ok(p)) => p,
        Ok(Err(msg)) => return Err(io::Error::other(pool.named(msg))),
        Err(e) => return Err(io::Error::other(pool.failure(&w.store, &e))),
    };
    if preamble.len() > GROWTH_SLACK {
        return Err(io::Error::other(pool.named(format!(
            "preamble of {} bytes (at most {GROWTH_SLACK})",
            preamble.len()
        ))));
    }
    if !preamble.is_empty() {
        stream.write_all(&preamble).await?;
    }
    let ends = stream.endpoints();
    let wrapped = Wrapped(Mutex::new(Inner {
        pool,
        io: stream,
        inst: Some(w),
        call: None,
        wakers: Arc::new(Wakers::default()),
        decoded: Vec::new(),
        decoded_at: 0,
        wire: vec![0; CHUNK],
        read_eof: false,
        withheld: 0,
        out: Vec::new(),
        out_at: 0,
        encoded: None,
        failed: None,
    }));
    Ok(Stream::boxed(wrapped, ends))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Encode,
    Decode,
}

struct Call {
    dir: Dir,
    /// The input's length.
    len: usize,
    fut: CallFuture,
}

/// The wakers of the two sides: a call in flight wakes both when it ends,
/// whichever side polled it last.
#[derive(Default)]
struct Wakers {
    read: Mutex<Option<Waker>>,
    write: Mutex<Option<Waker>>,
}

impl Wake for Wakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        for slot in [&self.read, &self.write] {
            if let Some(w) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
                w.wake();
            }
        }
    }
}

/// `Sync` through the mutex (a call in flight is `Send` only); each poll
/// takes it uncontended, the relay polling one side at a time.
struct Wrapped(Mutex<Inner>);

struct Inner {
    pool: Arc<TransportPool>,
    io: Stream,
    /// The instance, when no call holds it.
    inst: Option<Warm<Transport>>,
    call: Option<Call>,
    wakers: Arc<Wakers>,
    /// Decoded bytes not read yet.
    decoded: Vec<u8>,
    decoded_at: usize,
    /// Scratch for wire reads.
    wire: Vec<u8>,
    read_eof: bool,
    /// Wire bytes decoded since the decoder last returned any.
    withheld: usize,
    /// Encoded bytes not written to the wire yet.
    out: Vec<u8>,
    out_at: usize,
    /// The input length of an encode that ended, for the writer to report.
    encoded: Option<usize>,
    failed: Option<String>,
}

impl Inner {
    fn broken(&self) -> io::Error {
        io::Error::other(self.failed.clone().unwrap_or_default())
    }

    fn fail(&mut self, msg: String) -> io::Error {
        tracing::warn!(
            plugin = &*self.pool.spec().name,
            error = %msg,
            "transport plugin failed, connection closed"
        );
        self.failed = Some(msg);
        self.broken()
    }

    fn start(&mut self, dir: Dir, data: Vec<u8>) {
        let Some(mut w) = self.inst.take() else {
            return;
        };
        let len = data.len();
        let fut: CallFuture = Box::pin(async move {
            w.arm();
            let r = match dir {
                Dir::Encode => w.bindings.call_encode(&mut w.store, &data).await,
                Dir::Decode => w.bindings.call_decode(&mut w.store, &data).await,
            };
            (w, r)
        });
        self.call = Some(Call { dir, len, fut });
    }

    /// Drives the call in flight; `Ready` once there is none. Its result
    /// lands where its side looks for it.
    fn drive(&mut self, cx: &mut Context<'_>, reader: bool) -> Poll<io::Result<()>> {
        let Some(call) = self.call.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let slot = if reader {
            &self.wakers.read
        } else {
            &self.wakers.write
        };
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
        let waker = Waker::from(self.wakers.clone());
        let (w, r) = match call.fut.as_mut().poll(&mut Context::from_waker(&waker)) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(done) => done,
        };
        let Call { dir, len, .. } = self.call.take().expect("polled above");
        let output = match r {
            Ok(Ok(o)) => o,
            Ok(Err(msg)) => return Poll::Ready(Err(self.fail(self.pool.named(msg)))),
            // A trapped instance is dropped with `w`.
            Err(e) => {
                let msg = self.pool.failure(&w.store, &e);
                return Poll::Ready(Err(self.fail(msg)));
            }
        };
        let bound = len.saturating_mul(MAX_GROWTH).saturating_add(GROWTH_SLACK);
        if output.len() > bound {
            let msg = self.pool.named(format!(
                "{} returned {} bytes for {len} (at most {bound})",
                if dir == Dir::Encode {
                    "encode"
                } else {
                    "decode"
                },
                output.len()
            ));
            return Poll::Ready(Err(self.fail(msg)));
        }
        self.inst = Some(w);
        match dir {
            Dir::Encode => {
                self.out = output;
                self.out_at = 0;
                self.encoded = Some(len);
            }
            Dir::Decode => {
                if output.is_empty() {
                    self.withheld += len;
                    if self.withheld > MAX_WITHHELD {
                        let msg = self.pool.named(format!(
                            "decode held back {} bytes without returning any (at most {MAX_WITHHELD})",
                            self.withheld
                        ));
                        return Poll::Ready(Err(self.fail(msg)));
                    }
                } else {
                    self.withheld = 0;
                }
                self.decoded = output;
                self.decoded_at = 0;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Writes the encoded bytes still owed to the wire.
    fn flush_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_at < self.out.len() {
            let n =
                std::task::ready!(Pin::new(&mut self.io).poll_write(cx, &self.out[self.out_at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_at += n;
        }
        self.out.clear();
        self.out_at = 0;
        Poll::Ready(Ok(()))
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.decoded_at < self.decoded.len() {
                let n = buf.remaining().min(self.decoded.len() - self.decoded_at);
                buf.put_slice(&self.decoded[self.decoded_at..self.decoded_at + n]);
                self.decoded_at += n;
                return Poll::Ready(Ok(()));
            }
            if self.failed.is_some() {
                return Poll::Ready(Err(self.broken()));
            }
            if self.call.is_some() {
                std::task::ready!(self.drive(cx, true))?;
                continue;
            }
            if self.read_eof {
                return Poll::Ready(Ok(()));
            }
            let mut wire = ReadBuf::new(&mut self.wire);
            std::task::ready!(Pin::new(&mut self.io).poll_read(cx, &mut wire))?;
            let got = wire.filled().to_vec();
            if got.is_empty() {
                self.read_eof = true;
                continue;
            }
            self.start(Dir::Decode, got);
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            if self.failed.is_some() {
                return Poll::Ready(Err(self.broken()));
            }
            std::task::ready!(self.flush_out(cx))?;
            // An encode of an earlier attempt at this write ended: the
            // caller retries with the same bytes, so they are taken.
            if let Some(n) = self.encoded.take() {
                return Poll::Ready(Ok(n));
            }
            if self.call.is_some() {
                std::task::ready!(self.drive(cx, false))?;
                continue;
            }
            if buf.is_empty() {
                return Poll::Ready(Ok(0));
            }
            let n = buf.len().min(CHUNK);
            self.start(Dir::Encode, buf[..n].to_vec());
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.failed.is_some() {
                return Poll::Ready(Err(self.broken()));
            }
            std::task::ready!(self.flush_out(cx))?;
            match self.call.as_ref().map(|c| c.dir) {
                Some(Dir::Encode) => std::task::ready!(self.drive(cx, false))?,
                _ => return Pin::new(&mut self.io).poll_flush(cx),
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(w) = self.inst.take() {
            if self.failed.is_none() {
                self.pool.release(w);
            }
        }
    }
}

impl Wrapped {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl AsyncRead for Wrapped {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.inner().poll_read(cx, buf)
    }
}

impl AsyncWrite for Wrapped {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.inner().poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.inner();
        std::task::ready!(inner.poll_flush(cx))?;
        Pin::new(&mut inner.io).poll_shutdown(cx)
    }
}
