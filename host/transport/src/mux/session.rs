//! An smux session over one connection, speaking xtaci/smux's protocol as
//! GOST uses it: the client opens odd stream ids from 3, the server even
//! ones; version 1 has one receive budget per session, version 2 adds a
//! per-stream window that the receiver re-opens with `UPD` frames.
//!
//! Three tasks run per session: a reader that dispatches frames to
//! streams, a writer that batches frames onto the connection, and the
//! keep-alive. What a session may hold, whatever its peer does:
//!
//! - received and not yet read, over all streams: at most
//!   `mux.maxReceiveBuffer` plus one frame (65535 bytes). At the limit the
//!   reader stops reading the connection, as smux does;
//! - queued to send: at most [`SEND_QUEUE`] frames of at most
//!   `mux.maxFrameSize` bytes, plus the bytes of one batch being written;
//!   a writer finding the queue full waits;
//! - control frames waiting (window updates, keep-alive, the `FIN` of a
//!   stream dropped while the queue was full): at most two per stream and
//!   one keep-alive.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::{CancellationToken, PollSender};

use super::MuxConfig;
use crate::{BoxFuture, Opened, Streams};
use gost_core::stream::{Endpoints, Stream};
use gost_proto::smux::{self, Cmd, FrameError, WindowUpdate};

/// Frames queued for the writer, in the order streams wrote them.
pub const SEND_QUEUE: usize = 64;

/// How many streams the peer may open before they are accepted (smux's
/// `defaultAcceptBacklog`); past it the reader waits.
const ACCEPT_BACKLOG: usize = 1024;

/// The writer gathers frames up to this many bytes into one write.
const BATCH: usize = 64 * 1024;

/// Why a session ended.
#[derive(Debug)]
pub enum SessionEnd {
    /// The peer closed the connection.
    Eof,
    Io(io::Error),
    /// The peer broke the frame protocol.
    Protocol(FrameError),
    /// Nothing arrived for `mux.keepaliveTimeout`.
    KeepaliveTimeout,
    /// Closed on our side: every user of the session is gone.
    Closed,
}

impl SessionEnd {
    /// Whether the end is the peer's fault or a broken connection rather
    /// than an orderly close by either side.
    pub fn is_error(&self) -> bool {
        match self {
            SessionEnd::Eof | SessionEnd::Closed => false,
            SessionEnd::Io(e) => !matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::NotConnected
            ),
            SessionEnd::Protocol(_) | SessionEnd::KeepaliveTimeout => true,
        }
    }
}

impl std::fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionEnd::Eof => f.write_str("closed by the peer"),
            SessionEnd::Io(e) => write!(f, "connection error: {e}"),
            SessionEnd::Protocol(e) => write!(f, "protocol error: {e}"),
            SessionEnd::KeepaliveTimeout => f.write_str("keep-alive timeout"),
            SessionEnd::Closed => f.write_str("closed"),
        }
    }
}

/// What the writer sends in the order it was queued.
enum Out {
    Syn(u32),
    Psh(u32, Bytes),
    Fin(u32),
}

/// What the writer sends ahead of queued data.
enum Ctl {
    Nop,
    /// The window update's numbers are read when it is written, so one
    /// queued update carries everything consumed by then.
    Upd(Arc<StreamShared>),
    /// The `FIN` of a stream dropped while the queue was full; the writer
    /// sends everything queued before it first.
    Fin(u32),
}

#[derive(Default)]
struct Control {
    queue: VecDeque<Ctl>,
    nop_queued: bool,
}

struct Shared {
    cfg: MuxConfig,
    /// The connection's addresses, which each stream reports as its own.
    ends: Endpoints,
    streams: Mutex<HashMap<u32, Arc<StreamShared>>>,
    next_id: Mutex<u32>,
    data_tx: mpsc::Sender<Out>,
    control: Mutex<Control>,
    control_notify: Notify,
    /// Bytes the session may still receive before it stops reading
    /// (smux's token bucket).
    bucket: AtomicI64,
    bucket_notify: Notify,
    /// A frame arrived since the last keep-alive check.
    active: AtomicBool,
    die: CancellationToken,
    end: Mutex<Option<SessionEnd>>,
    /// The session handle and every live stream; the session closes when
    /// the last one goes.
    users: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn version(&self) -> u8 {
        self.cfg.version
    }

    /// Ends the session once, with its first reason, and wakes every
    /// stream so it sees the end.
    fn close(&self, end: SessionEnd) {
        {
            let mut slot = lock(&self.end);
            if slot.is_none() {
                *slot = Some(end);
            }
        }
        self.die.cancel();
        self.bucket_notify.notify_one();
        let streams: Vec<_> = lock(&self.streams).drain().map(|(_, s)| s).collect();
        for s in streams {
            let mut st = s.lock();
            st.wake_reader();
            st.wake_writer();
        }
    }

    fn closed_error(&self) -> io::Error {
        let why = lock(&self.end)
            .as_ref()
            .map_or_else(|| "closed".to_string(), |e| e.to_string());
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            format!("mux session {why}"),
        )
    }

    fn push_control(&self, ctl: Ctl) {
        {
            let mut c = lock(&self.control);
            if matches!(ctl, Ctl::Nop) {
                if c.nop_queued {
                    return;
                }
                c.nop_queued = true;
            }
            c.queue.push_back(ctl);
        }
        self.control_notify.notify_one();
    }

    fn return_tokens(&self, n: usize) {
        let n = n as i64;
        if n > 0 && self.bucket.fetch_add(n, Ordering::AcqRel) + n > 0 {
            self.bucket_notify.notify_one();
        }
    }

    fn release(&self) {
        if self.users.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.close(SessionEnd::Closed);
        }
    }
}

struct StreamShared {
    id: u32,
    state: Mutex<StreamState>,
}

impl StreamShared {
    fn new(id: u32) -> Arc<Self> {
        Arc::new(StreamShared {
            id,
            state: Mutex::new(StreamState {
                buf: VecDeque::new(),
                buffered: 0,
                fin_recv: false,
                write_closed: false,
                read_waker: None,
                write_waker: None,
                num_read: 0,
                incr: 0,
                num_written: 0,
                peer_consumed: 0,
                peer_window: smux::INITIAL_PEER_WINDOW,
                upd_queued: false,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, StreamState> {
        lock(&self.state)
    }
}

struct StreamState {
    buf: VecDeque<Bytes>,
    buffered: usize,
    /// The peer sent `FIN`: reads end once the buffer is drained.
    fin_recv: bool,
    /// We sent (or queued) our `FIN`.
    write_closed: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    // Version 2 flow control, modulo 2^32 as smux counts.
    num_read: u32,
    incr: u32,
    num_written: u32,
    peer_consumed: u32,
    peer_window: u32,
    upd_queued: bool,
}

impl StreamState {
    fn wake_reader(&mut self) {
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
    }
    fn wake_writer(&mut self) {
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }
}

/// One end of a multiplexed session: client or server.
pub struct Session {
    shared: Arc<Shared>,
    accept: Option<mpsc::Receiver<MuxStream>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("peer", &self.shared.ends.peer)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Session {
    /// The side that opens streams (a dialer).
    pub fn client(stream: Stream, cfg: &MuxConfig) -> Session {
        Session::new(stream, cfg, true)
    }

    /// The side that accepts streams (a listener).
    pub fn server(stream: Stream, cfg: &MuxConfig) -> Session {
        Session::new(stream, cfg, false)
    }

    fn new(stream: Stream, cfg: &MuxConfig, client: bool) -> Session {
        let (data_tx, data_rx) = mpsc::channel(SEND_QUEUE);
        let shared = Arc::new(Shared {
            cfg: cfg.clone(),
            ends: stream.endpoints(),
            streams: Mutex::new(HashMap::new()),
            next_id: Mutex::new(if client { 1 } else { 0 }),
            data_tx,
            control: Mutex::new(Control::default()),
            control_notify: Notify::new(),
            bucket: AtomicI64::new(cfg.max_receive_buffer as i64),
            bucket_notify: Notify::new(),
            active: AtomicBool::new(false),
            die: CancellationToken::new(),
            end: Mutex::new(None),
            users: AtomicUsize::new(1),
        });
        let (rd, wr) = tokio::io::split(stream);
        let (accept_tx, accept_rx) = if client {
            (None, None)
        } else {
            let (tx, rx) = mpsc::channel(ACCEPT_BACKLOG);
            (Some(tx), Some(rx))
        };
        tokio::spawn(read_loop(shared.clone(), rd, accept_tx));
        tokio::spawn(write_loop(shared.clone(), wr, data_rx));
        if !cfg.keepalive_disabled {
            tokio::spawn(keepalive(shared.clone()));
        }
        Session {
            shared,
            accept: accept_rx,
        }
    }

    /// The next stream the peer opened; `None` once the session ended
    /// (or on the client side, which accepts none).
    pub async fn accept(&mut self) -> Option<MuxStream> {
        let rx = self.accept.as_mut()?;
        tokio::select! {
            s = rx.recv() => s,
            _ = self.shared.die.cancelled() => None,
        }
    }

    /// Opens a stream (smux's `OpenStream`): its `SYN` is queued before
    /// anything written to it.
    pub async fn open(&self) -> io::Result<MuxStream> {
        let sh = &self.shared;
        if sh.die.is_cancelled() {
            return Err(sh.closed_error());
        }
        let sid = {
            let mut next = lock(&sh.next_id);
            *next = next.checked_add(2).ok_or_else(|| {
                io::Error::other("mux session: stream ids exhausted, a new session is needed")
            })?;
            *next
        };
        let st = StreamShared::new(sid);
        lock(&sh.streams).insert(sid, st.clone());
        gost_core::dialer::loops::record_stream(sh.ends, sid);
        let sent = tokio::select! {
            r = sh.data_tx.send(Out::Syn(sid)) => r.is_ok(),
            _ = sh.die.cancelled() => false,
        };
        if !sent {
            lock(&sh.streams).remove(&sid);
            return Err(sh.closed_error());
        }
        Ok(MuxStream::new(sh.clone(), st))
    }

    pub fn is_closed(&self) -> bool {
        self.shared.die.is_cancelled()
    }

    /// Waits until the session has ended.
    pub async fn closed(&self) {
        self.shared.die.cancelled().await
    }

    /// Why the session ended, once it has.
    pub fn end(&self) -> Option<String> {
        lock(&self.shared.end).as_ref().map(|e| e.to_string())
    }

    /// Whether the session ended by the peer's fault or a broken
    /// connection (counted as an error by the listener).
    pub fn ended_in_error(&self) -> bool {
        lock(&self.shared.end)
            .as_ref()
            .is_some_and(|e| e.is_error())
    }

    /// Streams open now.
    pub fn num_streams(&self) -> usize {
        lock(&self.shared.streams).len()
    }
}

impl Streams for Session {
    fn accept(&mut self) -> BoxFuture<'_, Option<io::Result<Opened>>> {
        Box::pin(async move {
            let s = Session::accept(self).await?;
            let id = s.id();
            Some(Ok(Opened::new(s.into_stream(), self.shared.ends, id)))
        })
    }

    fn end(&self) -> Option<(String, bool)> {
        lock(&self.shared.end)
            .as_ref()
            .map(|e| (e.to_string(), e.is_error()))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shared.release();
    }
}

/// Reads frames until the connection or the protocol fails.
async fn read_loop(
    sh: Arc<Shared>,
    mut rd: ReadHalf<Stream>,
    accept: Option<mpsc::Sender<MuxStream>>,
) {
    let end = tokio::select! {
        end = read_frames(&sh, &mut rd, accept.as_ref()) => end,
        _ = sh.die.cancelled() => return,
    };
    sh.close(end);
}

async fn read_frames(
    sh: &Arc<Shared>,
    rd: &mut ReadHalf<Stream>,
    accept: Option<&mpsc::Sender<MuxStream>>,
) -> SessionEnd {
    let mut head = [0u8; smux::HEADER_LEN];
    loop {
        while sh.bucket.load(Ordering::Acquire) <= 0 {
            sh.bucket_notify.notified().await;
        }
        if let Err(e) = rd.read_exact(&mut head).await {
            return eof_or(e);
        }
        sh.active.store(true, Ordering::Relaxed);
        let h = match smux::parse_header(&head, sh.version()) {
            Ok(h) => h,
            Err(e) => return SessionEnd::Protocol(e),
        };
        match h.cmd {
            Cmd::Nop => {}
            Cmd::Syn => {
                let Some(accept) = accept else {
                    // A client's peer does not open streams in GOST;
                    // smux would queue it unaccepted. Refuse it at once.
                    if !lock(&sh.streams).contains_key(&h.sid) {
                        let _ = sh.data_tx.try_send(Out::Fin(h.sid));
                    }
                    continue;
                };
                // smux ignores a SYN for a stream id in use.
                let fresh = match lock(&sh.streams).entry(h.sid) {
                    std::collections::hash_map::Entry::Occupied(_) => None,
                    std::collections::hash_map::Entry::Vacant(v) => {
                        Some(v.insert(StreamShared::new(h.sid)).clone())
                    }
                };
                match fresh {
                    Some(st) => {
                        let stream = MuxStream::new(sh.clone(), st);
                        if accept.send(stream).await.is_err() {
                            return SessionEnd::Closed;
                        }
                    }
                    None => {
                        tracing::debug!(sid = h.sid, "mux: SYN for a stream id in use, ignored")
                    }
                }
            }
            Cmd::Fin => {
                let st = lock(&sh.streams).get(&h.sid).cloned();
                if let Some(st) = st {
                    let mut s = st.lock();
                    s.fin_recv = true;
                    s.wake_reader();
                    if s.write_closed {
                        drop(s);
                        lock(&sh.streams).remove(&h.sid);
                    }
                }
            }
            Cmd::Psh => {
                if h.length == 0 {
                    continue;
                }
                let mut data = BytesMut::zeroed(usize::from(h.length));
                if let Err(e) = rd.read_exact(&mut data).await {
                    return eof_or(e);
                }
                let st = lock(&sh.streams).get(&h.sid).cloned();
                // Data for a stream that is gone is dropped, as smux does.
                if let Some(st) = st {
                    let mut s = st.lock();
                    s.buffered += data.len();
                    s.buf.push_back(data.freeze());
                    sh.bucket.fetch_sub(i64::from(h.length), Ordering::AcqRel);
                    s.wake_reader();
                }
            }
            Cmd::Upd => {
                let mut upd = [0u8; smux::UPD_LEN];
                if let Err(e) = rd.read_exact(&mut upd).await {
                    return eof_or(e);
                }
                let u = smux::parse_update(&upd);
                let st = lock(&sh.streams).get(&h.sid).cloned();
                if let Some(st) = st {
                    let mut s = st.lock();
                    s.peer_consumed = u.consumed;
                    s.peer_window = u.window;
                    s.wake_writer();
                }
            }
        }
    }
}

fn eof_or(e: io::Error) -> SessionEnd {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        SessionEnd::Eof
    } else {
        SessionEnd::Io(e)
    }
}

/// Writes queued frames, control frames first, batching what is queued.
async fn write_loop(sh: Arc<Shared>, mut wr: WriteHalf<Stream>, mut rx: mpsc::Receiver<Out>) {
    let version = sh.version();
    let encode = |o: Out, buf: &mut Vec<u8>| match o {
        Out::Syn(sid) => smux::encode_header(version, Cmd::Syn, 0, sid, buf),
        Out::Fin(sid) => smux::encode_header(version, Cmd::Fin, 0, sid, buf),
        Out::Psh(sid, data) => smux::encode_data(version, sid, &data, buf),
    };
    let mut buf = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            biased;
            _ = sh.die.cancelled() => return,
            _ = sh.control_notify.notified() => {}
            o = rx.recv() => match o {
                Some(o) => encode(o, &mut buf),
                None => return,
            },
        }
        while buf.len() < BATCH {
            match rx.try_recv() {
                Ok(o) => encode(o, &mut buf),
                Err(_) => break,
            }
        }
        let ctl = {
            let mut c = lock(&sh.control);
            c.nop_queued = false;
            std::mem::take(&mut c.queue)
        };
        if ctl.iter().any(|c| matches!(c, Ctl::Fin(_))) {
            while let Ok(o) = rx.try_recv() {
                encode(o, &mut buf);
            }
        }
        for c in ctl {
            match c {
                Ctl::Nop => smux::encode_header(version, Cmd::Nop, 0, 0, &mut buf),
                Ctl::Fin(sid) => smux::encode_header(version, Cmd::Fin, 0, sid, &mut buf),
                Ctl::Upd(st) => {
                    let consumed = {
                        let mut s = st.lock();
                        s.upd_queued = false;
                        s.num_read
                    };
                    let window = u32::try_from(sh.cfg.max_stream_buffer).unwrap_or(u32::MAX);
                    smux::encode_update(st.id, WindowUpdate { consumed, window }, &mut buf);
                }
            }
        }
        if buf.is_empty() {
            continue;
        }
        let written = tokio::select! {
            r = async { wr.write_all(&buf).await?; wr.flush().await } => r,
            _ = sh.die.cancelled() => return,
        };
        if let Err(e) = written {
            sh.close(SessionEnd::Io(e));
            return;
        }
        buf.clear();
        if buf.capacity() > 4 * BATCH {
            buf.shrink_to(BATCH);
        }
    }
}

/// smux's keep-alive: a `NOP` every interval, and the session closed when
/// nothing arrived for a whole timeout (unless it stopped reading itself,
/// its receive budget spent).
async fn keepalive(sh: Arc<Shared>) {
    let start = tokio::time::Instant::now();
    let mut ping =
        tokio::time::interval_at(start + sh.cfg.keepalive_interval, sh.cfg.keepalive_interval);
    let mut check =
        tokio::time::interval_at(start + sh.cfg.keepalive_timeout, sh.cfg.keepalive_timeout);
    loop {
        tokio::select! {
            _ = sh.die.cancelled() => return,
            _ = ping.tick() => sh.push_control(Ctl::Nop),
            _ = check.tick() => {
                if !sh.active.swap(false, Ordering::Relaxed)
                    && sh.bucket.load(Ordering::Acquire) > 0
                {
                    sh.close(SessionEnd::KeepaliveTimeout);
                    return;
                }
            }
        }
    }
}

/// A stream of a session, a connection of its own to whoever uses it.
pub struct MuxStream {
    sh: Arc<Shared>,
    st: Arc<StreamShared>,
    tx: PollSender<Out>,
}

impl MuxStream {
    fn new(sh: Arc<Shared>, st: Arc<StreamShared>) -> MuxStream {
        sh.users.fetch_add(1, Ordering::AcqRel);
        let tx = PollSender::new(sh.data_tx.clone());
        MuxStream { sh, st, tx }
    }

    pub fn id(&self) -> u32 {
        self.st.id
    }

    /// The stream as every handler and connector takes it, with the
    /// session's connection addresses.
    pub fn into_stream(self) -> Stream {
        let ends = self.sh.ends;
        Stream::boxed(self, ends)
    }
}

impl AsyncRead for MuxStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let mut s = this.st.lock();
        let mut n = 0;
        while out.remaining() > 0 {
            let Some(front) = s.buf.front_mut() else {
                break;
            };
            let take = front.len().min(out.remaining());
            out.put_slice(&front.split_to(take));
            if front.is_empty() {
                s.buf.pop_front();
            }
            n += take;
        }
        if n > 0 {
            s.buffered -= n;
            let mut upd = false;
            if this.sh.version() == 2 {
                s.num_read = s.num_read.wrapping_add(n as u32);
                s.incr = s.incr.wrapping_add(n as u32);
                let threshold = (this.sh.cfg.max_stream_buffer / 2) as u32;
                if s.incr >= threshold || s.num_read == n as u32 {
                    s.incr = 0;
                    upd = !s.upd_queued;
                    s.upd_queued = true;
                }
            }
            drop(s);
            this.sh.return_tokens(n);
            if upd {
                this.sh.push_control(Ctl::Upd(this.st.clone()));
            }
            return Poll::Ready(Ok(()));
        }
        if s.fin_recv {
            return Poll::Ready(Ok(()));
        }
        if this.sh.die.is_cancelled() {
            return Poll::Ready(Err(this.sh.closed_error()));
        }
        s.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for MuxStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut n = data.len().min(this.sh.cfg.max_frame_size);
        {
            let mut s = this.st.lock();
            if s.write_closed {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "mux stream: write after shutdown",
                )));
            }
            if this.sh.die.is_cancelled() {
                return Poll::Ready(Err(this.sh.closed_error()));
            }
            if this.sh.version() == 2 {
                // smux's sliding window, in modular arithmetic.
                let inflight = s.num_written.wrapping_sub(s.peer_consumed) as i32;
                if inflight < 0 {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "mux stream: peer consumed more than sent",
                    )));
                }
                let win = (s.peer_window as i32).wrapping_sub(inflight);
                if win <= 0 {
                    s.write_waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                n = n.min(win as usize);
            }
        }
        if ready!(this.tx.poll_reserve(cx)).is_err() {
            return Poll::Ready(Err(this.sh.closed_error()));
        }
        let frame = Out::Psh(this.st.id, Bytes::copy_from_slice(&data[..n]));
        if this.tx.send_item(frame).is_err() {
            return Poll::Ready(Err(this.sh.closed_error()));
        }
        let mut s = this.st.lock();
        s.num_written = s.num_written.wrapping_add(n as u32);
        Poll::Ready(Ok(n))
    }

    /// Frames are queued in order and the writer flushes whenever its
    /// queue runs dry, so there is nothing to wait for here.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Sends `FIN` after the data written so far: the peer reads to the
    /// end, then sees end of stream; reading here goes on (half close).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.st.lock().write_closed || this.sh.die.is_cancelled() {
            return Poll::Ready(Ok(()));
        }
        if ready!(this.tx.poll_reserve(cx)).is_err() {
            return Poll::Ready(Ok(()));
        }
        let _ = this.tx.send_item(Out::Fin(this.st.id));
        let mut s = this.st.lock();
        s.write_closed = true;
        if s.fin_recv {
            drop(s);
            lock(&this.sh.streams).remove(&this.st.id);
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for MuxStream {
    fn drop(&mut self) {
        let (unread, send_fin) = {
            let mut s = self.st.lock();
            let send_fin = !s.write_closed;
            s.write_closed = true;
            s.buf.clear();
            (std::mem::take(&mut s.buffered), send_fin)
        };
        lock(&self.sh.streams).remove(&self.st.id);
        self.sh.return_tokens(unread);
        if send_fin && !self.sh.die.is_cancelled() {
            if let Err(mpsc::error::TrySendError::Full(_)) =
                self.sh.data_tx.try_send(Out::Fin(self.st.id))
            {
                self.sh.push_control(Ctl::Fin(self.st.id));
            }
        }
        self.sh.release();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{duplex, DuplexStream};

    use super::*;

    fn cfg(version: u8) -> MuxConfig {
        MuxConfig {
            version,
            keepalive_disabled: true,
            ..MuxConfig::default()
        }
    }

    /// A session's connection and the raw peer end of it.
    fn wire(capacity: usize) -> (Stream, DuplexStream) {
        let (a, b) = duplex(capacity);
        (Stream::boxed(a, Endpoints::default()), b)
    }

    async fn frame(raw: &mut DuplexStream, version: u8) -> (Cmd, u32, Vec<u8>) {
        let mut head = [0u8; smux::HEADER_LEN];
        raw.read_exact(&mut head).await.unwrap();
        let h = smux::parse_header(&head, version).unwrap();
        let mut body = vec![0u8; usize::from(h.length)];
        raw.read_exact(&mut body).await.unwrap();
        (h.cmd, h.sid, body)
    }

    fn bytes(version: u8, cmd: Cmd, sid: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match cmd {
            Cmd::Psh => smux::encode_data(version, sid, payload, &mut out),
            _ => smux::encode_header(version, cmd, 0, sid, &mut out),
        }
        out
    }

    /// The client's stream ids are odd from 3, as smux's `OpenStream`
    /// counts them; data, then `FIN` on shutdown; the peer's `FIN` is the
    /// end of the stream.
    #[tokio::test]
    async fn client_streams_speak_smux_frames() {
        let (conn, mut raw) = wire(1 << 16);
        let session = Session::client(conn, &cfg(1));
        let mut s = session.open().await.unwrap();
        assert_eq!(frame(&mut raw, 1).await, (Cmd::Syn, 3, vec![]));
        s.write_all(b"hi").await.unwrap();
        assert_eq!(frame(&mut raw, 1).await, (Cmd::Psh, 3, b"hi".to_vec()));
        s.shutdown().await.unwrap();
        assert_eq!(frame(&mut raw, 1).await, (Cmd::Fin, 3, vec![]));
        raw.write_all(&bytes(1, Cmd::Psh, 3, b"yo")).await.unwrap();
        raw.write_all(&bytes(1, Cmd::Fin, 3, b"")).await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"yo");
        let _second = session.open().await.unwrap();
        assert_eq!(frame(&mut raw, 1).await, (Cmd::Syn, 5, vec![]));
    }

    /// Version 2: the first read announces the window (`UPD` with the
    /// bytes consumed and `mux.maxStreamBuffer`), as smux's `tryReadv2`.
    #[tokio::test]
    async fn server_v2_accepts_a_stream_and_announces_its_window() {
        let (conn, mut raw) = wire(1 << 16);
        let mut session = Session::server(conn, &cfg(2));
        raw.write_all(&bytes(2, Cmd::Syn, 3, b"")).await.unwrap();
        raw.write_all(&bytes(2, Cmd::Psh, 3, b"abc")).await.unwrap();
        let mut s = session.accept().await.unwrap();
        assert_eq!(s.id(), 3);
        let mut buf = [0u8; 3];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"abc");
        let mut upd = Vec::new();
        smux::encode_update(
            3,
            WindowUpdate {
                consumed: 3,
                window: 65_536,
            },
            &mut upd,
        );
        let (cmd, sid, body) = frame(&mut raw, 2).await;
        assert_eq!((cmd, sid), (Cmd::Upd, 3));
        assert_eq!(body, upd[smux::HEADER_LEN..]);
        s.write_all(b"xyz").await.unwrap();
        assert_eq!(frame(&mut raw, 2).await, (Cmd::Psh, 3, b"xyz".to_vec()));
    }

    /// Version 2: a writer stops at the peer's window (smux's initial
    /// guess, 256 KiB) and goes on when an `UPD` opens it.
    #[tokio::test]
    async fn v2_sender_waits_for_the_peer_window() {
        let (conn, mut raw) = wire(1 << 20);
        let session = Session::client(conn, &cfg(2));
        let mut s = session.open().await.unwrap();
        let total = 300_000;
        let writer = tokio::spawn(async move {
            s.write_all(&vec![7u8; total]).await.unwrap();
            s
        });
        let mut got = 0;
        while got < smux::INITIAL_PEER_WINDOW as usize {
            let (cmd, _, body) = frame(&mut raw, 2).await;
            if cmd == Cmd::Psh {
                got += body.len();
            }
        }
        assert_eq!(got, smux::INITIAL_PEER_WINDOW as usize);
        let more = tokio::time::timeout(Duration::from_millis(200), frame(&mut raw, 2)).await;
        assert!(more.is_err(), "sent past the window: {more:?}");
        let mut upd = Vec::new();
        let window = smux::INITIAL_PEER_WINDOW;
        smux::encode_update(
            3,
            WindowUpdate {
                consumed: window,
                window,
            },
            &mut upd,
        );
        raw.write_all(&upd).await.unwrap();
        while got < total {
            let (cmd, _, body) = frame(&mut raw, 2).await;
            assert_eq!(cmd, Cmd::Psh);
            got += body.len();
        }
        assert_eq!(got, total);
        writer.await.unwrap();
    }

    /// A peer that sends to a stream nobody reads fills the session's
    /// receive budget, then the session stops reading its connection:
    /// what it buffers stays within `mux.maxReceiveBuffer` plus a frame.
    #[tokio::test]
    async fn receive_buffering_is_bounded() {
        let (conn, mut raw) = wire(1024);
        let c = MuxConfig {
            max_receive_buffer: 4096,
            max_stream_buffer: 4096,
            ..cfg(1)
        };
        let mut session = Session::server(conn, &c);
        let frames = 64;
        let sender = tokio::spawn(async move {
            raw.write_all(&bytes(1, Cmd::Syn, 3, b"")).await.unwrap();
            for _ in 0..frames {
                raw.write_all(&bytes(1, Cmd::Psh, 3, &[1u8; 1024]))
                    .await
                    .unwrap();
            }
            raw
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!sender.is_finished(), "the session read past its budget");
        let held = 4096 - session.shared.bucket.load(Ordering::Acquire);
        assert!((4096..=4096 + 1024).contains(&held), "holding {held} bytes");
        let mut s = session.accept().await.unwrap();
        let mut buf = vec![0u8; frames * 1024];
        s.read_exact(&mut buf).await.unwrap();
        sender.await.unwrap();
    }

    /// A frame smux refuses ends the session: its streams fail, and the
    /// end says why and that it was the peer's fault.
    #[tokio::test]
    async fn a_bad_frame_ends_the_session() {
        let (conn, mut raw) = wire(1 << 16);
        let mut session = Session::server(conn, &cfg(1));
        raw.write_all(&bytes(1, Cmd::Syn, 3, b"")).await.unwrap();
        let mut s = session.accept().await.unwrap();
        raw.write_all(&[1, 9, 0, 0, 3, 0, 0, 0]).await.unwrap();
        let mut buf = [0u8; 1];
        let err = s.read(&mut buf).await.unwrap_err();
        assert!(err.to_string().contains("unknown smux command 9"), "{err}");
        assert!(session.accept().await.is_none());
        let (why, in_error) = Streams::end(&session).unwrap();
        assert!(in_error && why.contains("protocol error"), "{why}");
    }
}
