//! The load-generating subcommands. Each runs on a current-thread runtime
//! (the script pins it to one core together with the target server), keeps
//! one buffer per connection and no allocation per request, and is bounded
//! in time: every wait has a deadline and every loop checks a stop flag.
//!
//! Each run prints one JSON line on stdout (the machine-readable result,
//! consumed by `loadgen report`) and a human sentence on stderr.
//!
//! Every subcommand is generic over the [`Transport`] (plain TCP or TLS,
//! `--tls`) and monomorphised for both, so the plain-TCP code is the same
//! as it was before TLS: `TcpStream` all the way, no boxing.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::proxy::Dialer;
use crate::tls::{read_or_eof, Plain, Tls, Transport};
use crate::{http, procstat, server::CHUNK};

/// Options shared by every client subcommand.
#[derive(clap::Args, Clone, Debug)]
pub struct Common {
    /// Address to connect to: the target server, or a port forwarder in
    /// front of it. With --socks5 / --http-proxy: the address the proxy is
    /// asked to reach.
    #[arg(long)]
    pub target: SocketAddr,
    /// Go through this SOCKS5 proxy (no authentication): CONNECT to
    /// --target on every new connection, then the same traffic.
    #[arg(long, conflicts_with = "http_proxy")]
    pub socks5: Option<SocketAddr>,
    /// Go through this HTTP proxy: `keepalive` sends absolute-URI requests
    /// (`GET http://TARGET/`) to it on kept-alive connections; the other
    /// subcommands open a `CONNECT TARGET` tunnel per connection.
    #[arg(long)]
    pub http_proxy: Option<SocketAddr>,
    /// Go through this GOST relay server: a relay CONNECT to --target on
    /// every new connection (request written without waiting, response read
    /// before the answer, as GOST's relay connector does), then the traffic.
    #[arg(long, conflicts_with_all = ["socks5", "http_proxy"])]
    pub relay: Option<SocketAddr>,
    /// Speak TLS to the address the client connects to (the proxy, or
    /// --target): a full handshake on every new connection (no session
    /// resumption), any server certificate accepted, handshake signatures
    /// verified; then the usual protocol inside. TLS connections set
    /// TCP_NODELAY, as TLS clients commonly do.
    #[arg(long)]
    pub tls: bool,
    /// SNI name sent with --tls (an IP address sends no SNI).
    #[arg(long, default_value = "localhost")]
    pub tls_server_name: String,
    /// Name of the system under test, copied into the result line.
    #[arg(long, default_value = "")]
    pub label: String,
    /// Repetition number, copied into the result line.
    #[arg(long, default_value_t = 0)]
    pub round: u32,
    /// PID of the proxy. The CPU time (and for `idle` the memory) of its
    /// process tree is sampled around the measured window, so the result
    /// also says how much work the proxy did per CPU-second. Repeat the
    /// option for a proxy made of several processes (a chain of two gost):
    /// the figures are summed over all the trees.
    #[arg(long)]
    pub watch_pid: Vec<u32>,
}

#[derive(clap::Args, Debug)]
pub struct BulkArgs {
    #[command(flatten)]
    pub common: Common,
    /// Bytes to transfer (overrides --seconds).
    #[arg(long)]
    pub bytes: Option<u64>,
    /// Transfer for this long when --bytes is not given.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Download from a `source` server instead of uploading to a `sink`.
    #[arg(long)]
    pub download: bool,
    /// Hard bound on the whole run, seconds.
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,
}

#[derive(clap::Args, Debug)]
pub struct KeepaliveArgs {
    #[command(flatten)]
    pub common: Common,
    /// Concurrent connections, each with one request outstanding.
    #[arg(long, default_value_t = 50)]
    pub conns: usize,
    /// Measured window.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Unmeasured run before the window (fills caches, grows buffers).
    #[arg(long, default_value_t = 0.5)]
    pub warmup: f64,
}

#[derive(clap::Args, Debug)]
pub struct ConnrateArgs {
    #[command(flatten)]
    pub common: Common,
    /// Concurrent workers, each doing connect / request / response / close.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Measured window.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Unmeasured run before the window.
    #[arg(long, default_value_t = 0.5)]
    pub warmup: f64,
    /// Close (RST) as soon as the response is complete instead of waiting
    /// for the server's FIN to come back through the proxy.
    #[arg(long)]
    pub no_wait_eof: bool,
}

#[derive(clap::Args, Debug)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 9000)]
    pub conns: usize,
    /// How long to keep them open once all are up, seconds.
    #[arg(long, default_value_t = 3.0)]
    pub hold: f64,
    /// With --watch-pid: wait this long after "ready" before sampling the
    /// proxy's memory (lets it finish lazy allocations). Must be <= hold.
    #[arg(long, default_value_t = 1.0)]
    pub settle: f64,
    /// Connections being opened at the same time (keeps the proxy's accept
    /// backlog from overflowing, which would cost SYN retransmit seconds).
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// Bound on opening all connections, seconds.
    #[arg(long, default_value_t = 60.0)]
    pub open_timeout: f64,
}

/// Prints the JSON result on stdout and the human text on stderr.
fn emit(result: &Value, human: &str) {
    println!("{result}");
    eprintln!("{human}");
}

/// The dialer for a client subcommand; `forward_http` selects absolute-URI
/// requests instead of a CONNECT tunnel when an HTTP proxy is given.
fn dialer(c: &Common, forward_http: bool) -> Result<Arc<Dialer>> {
    Ok(Arc::new(Dialer::new(
        c.target,
        c.socks5,
        c.http_proxy,
        c.relay,
        forward_http,
    )?))
}

/// Runs a subcommand's body on plain TCP or on TLS (`--tls`): one
/// monomorphised copy each.
macro_rules! on_transport {
    ($c:expr, $body:ident, $a:expr) => {
        if $c.tls {
            let t = Tls::new(&$c.tls_server_name)?;
            $body($a, Arc::new(t)).await
        } else {
            $body($a, Arc::new(Plain)).await
        }
    };
}

/// Text for the human line: how the target was reached.
fn via_text<T: Transport>(d: &Dialer, t: &T) -> String {
    let tls = if t.is_tls() { " over TLS" } else { "" };
    match d.via {
        crate::proxy::Via::Direct => tls.to_string(),
        _ => format!(" via {} {}{tls}", d.via_name(), d.connect_to),
    }
}

fn secs(s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("invalid duration {s}"))
}

/// CPU seconds of the watched process trees, summed (`None` unwatched).
fn cpu(pids: &[u32]) -> Result<Option<f64>> {
    if pids.is_empty() {
        return Ok(None);
    }
    let mut total = 0.0;
    for &p in pids {
        total += procstat::cpu_seconds(p)?;
    }
    Ok(Some(total))
}

/// Memory of the watched process trees, summed (`None` unwatched).
fn memory(pids: &[u32]) -> Result<Option<procstat::Mem>> {
    if pids.is_empty() {
        return Ok(None);
    }
    let mut total = procstat::Mem::default();
    for &p in pids {
        let m = procstat::memory(p)?;
        total.pss_kib += m.pss_kib;
        total.rss_kib += m.rss_kib;
        total.processes += m.processes;
    }
    Ok(Some(total))
}

fn process_count(pids: &[u32]) -> Result<usize> {
    let mut n = 0;
    for &p in pids {
        n += procstat::process_count(p)?;
    }
    Ok(n)
}

/// Proxy CPU seconds spent between two samples, and work per CPU-second.
fn per_cpu(before: Option<f64>, after: Option<f64>, work: f64) -> (Value, Value) {
    match (before, after) {
        (Some(b), Some(a)) => {
            let used = (a - b).max(0.0);
            let per = if used > 0.0 {
                json!(work / used)
            } else {
                Value::Null
            };
            (json!(used), per)
        }
        _ => (Value::Null, Value::Null),
    }
}

fn cpu_text(used: &Value, per: &Value, unit: &str) -> String {
    match (used.as_f64(), per.as_f64()) {
        (Some(u), Some(p)) => format!("; proxy CPU {u:.2} s, {} {unit}/CPU-s", crate::fmt_num(p)),
        (Some(u), None) => format!("; proxy CPU {u:.2} s"),
        _ => String::new(),
    }
}

/// Reads one response (framed by Content-Length) into `buf`, of which the
/// first `filled` bytes already arrived; returns how many bytes arrived
/// beyond it.
async fn read_response<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut [u8],
    mut filled: usize,
) -> Result<usize> {
    loop {
        if let Some(total) = http::response_len(&buf[..filled])? {
            if filled >= total {
                return Ok(filled - total);
            }
        }
        if filled == buf.len() {
            bail!("response larger than {} bytes", buf.len());
        }
        let n = s.read(&mut buf[filled..]).await?;
        if n == 0 {
            bail!("connection closed before the response was complete");
        }
        filled += n;
    }
}

/// What one request on a kept-alive connection found.
#[derive(Debug, PartialEq, Eq)]
enum Exchange {
    /// Answered; the connection stays open.
    Open,
    /// Answered with `Connection: close` (an HTTP proxy that does not keep
    /// client connections alive): reconnect for the next request.
    Closing,
    /// The peer had closed the connection before this request (EOF or reset
    /// before any byte of the answer): not answered, reconnect and retry.
    /// tinyproxy does this without announcing `Connection: close`.
    Stale,
}

/// The peer is gone: reset, or (TLS) closed without close_notify.
fn is_reset(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(
        e.kind(),
        ConnectionReset | BrokenPipe | ConnectionAborted | UnexpectedEof
    )
}

/// One request on a kept-alive connection. Extra bytes after the response
/// would mean the stream is out of step, so they are an error. Returns
/// true when the response announced `Connection: close` (an HTTP proxy
/// that does not keep client connections alive): the caller reconnects.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    request: &[u8],
    buf: &mut [u8],
) -> Result<Exchange> {
    match s.write_all(request).await {
        Err(e) if is_reset(&e) => return Ok(Exchange::Stale),
        r => r?,
    }
    let first = match s.read(buf).await {
        Ok(0) => return Ok(Exchange::Stale),
        Err(e) if is_reset(&e) => return Ok(Exchange::Stale),
        r => r?,
    };
    let extra = read_response(s, buf, first).await?;
    if extra != 0 {
        bail!("unexpected bytes after the response");
    }
    let head = http::head_end(buf).map_or(&buf[..0], |e| &buf[..e]);
    Ok(if http::response_closes(head) {
        Exchange::Closing
    } else {
        Exchange::Open
    })
}

/// Waits for worker tasks after the stop flag is set; any still stuck after
/// the grace period (a proxy that stopped answering) is aborted.
async fn join_all(handles: Vec<JoinHandle<()>>, grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    for h in handles {
        let abort = h.abort_handle();
        if tokio::time::timeout_at(deadline, h).await.is_err() {
            abort.abort();
        }
    }
}

/// A connection for kept-alive requests (`keepalive`, `idle`). Through a
/// relay, whose response comes only with the target's first bytes, one
/// request is exchanged here so that the stream handed back is settled.
async fn open_kept<T: Transport>(
    d: &Dialer,
    t: &T,
    buf: &mut [u8],
    nodelay: bool,
) -> Result<T::Stream> {
    let mut s = d.connect(t, buf, nodelay).await?;
    if d.owes_response() {
        s.write_all(d.keepalive_request()).await?;
        d.read_owed(&mut s, buf).await?;
        if read_response(&mut s, buf, 0).await? != 0 {
            bail!("unexpected bytes after the first response");
        }
    }
    Ok(s)
}

pub async fn bulk(a: BulkArgs) -> Result<()> {
    on_transport!(a.common, bulk_on, a)
}

async fn bulk_on<T: Transport>(a: BulkArgs, t: Arc<T>) -> Result<()> {
    let c = &a.common;
    let bound = secs(a.timeout)?;
    let limit = secs(a.seconds)?;
    let d = dialer(c, false)?;
    let cpu0 = cpu(&c.watch_pid)?;
    let t0 = Instant::now();
    let mut negotiated = None;
    let total = tokio::time::timeout(bound, async {
        let mut hs = [0u8; 512];
        let mut s = d.connect(&*t, &mut hs, t.is_tls()).await?;
        negotiated = T::describe(&s);
        let mut total: u64 = 0;
        if a.download {
            d.read_owed(&mut s, &mut hs).await?;
            let mut buf = vec![0u8; CHUNK.len()];
            loop {
                let want = match a.bytes {
                    Some(b) => (b - total).min(buf.len() as u64) as usize,
                    None => buf.len(),
                };
                if want == 0 || (a.bytes.is_none() && t0.elapsed() >= limit) {
                    break;
                }
                let n = s.read(&mut buf[..want]).await?;
                if n == 0 {
                    bail!("source closed the stream after {total} bytes");
                }
                total += n as u64;
            }
        } else {
            loop {
                let want = match a.bytes {
                    Some(b) => (b - total).min(CHUNK.len() as u64) as usize,
                    None => CHUNK.len(),
                };
                if want == 0 || (a.bytes.is_none() && t0.elapsed() >= limit) {
                    break;
                }
                s.write_all(&CHUNK[..want]).await?;
                total += want as u64;
            }
            // The sink closes once it has read everything: wait for that so
            // the figure counts bytes delivered, not bytes buffered. (A
            // relay response, if one comes, is read and dropped here.)
            s.shutdown().await?;
            let mut b = [0u8; 64];
            while read_or_eof(&mut s, &mut b).await? != 0 {}
        }
        anyhow::Ok(total)
    })
    .await
    .context("bulk transfer exceeded --timeout")??;
    let dt = t0.elapsed().as_secs_f64();
    let cpu1 = cpu(&c.watch_pid)?;
    let mib = total as f64 / (1024.0 * 1024.0);
    let rate = mib / dt;
    let (used, per) = per_cpu(cpu0, cpu1, mib);
    let dir = if a.download { "download" } else { "upload" };
    emit(
        &json!({
            "test": "bulk", "label": c.label, "round": c.round, "direction": dir,
            "via": d.via_name(), "tls": t.is_tls(), "tls_negotiated": negotiated,
            "bytes": total, "seconds": dt, "mib_per_s": rate,
            "proxy_cpu_s": used, "mib_per_cpu_s": per,
        }),
        &format!(
            "bulk {} r{} {dir}{}: {} MiB/s ({mib:.0} MiB in {dt:.2} s){}{}",
            c.label,
            c.round,
            via_text(&d, &*t),
            crate::fmt_num(rate),
            negotiated.map(|n| format!(" [{n}]")).unwrap_or_default(),
            cpu_text(&used, &per, "MiB")
        ),
    );
    Ok(())
}

pub async fn keepalive(a: KeepaliveArgs) -> Result<()> {
    on_transport!(a.common, keepalive_on, a)
}

async fn keepalive_on<T: Transport>(a: KeepaliveArgs, t: Arc<T>) -> Result<()> {
    let c = &a.common;
    anyhow::ensure!(a.conns > 0, "--conns must be positive");
    let window = secs(a.seconds)?;
    let warmup = secs(a.warmup)?;
    let d = dialer(c, true)?;
    // Connect everything (and do the TLS and SOCKS5 handshakes) before the
    // clock starts.
    let mut streams = Vec::with_capacity(a.conns);
    let mut hs = [0u8; 512];
    for _ in 0..a.conns {
        let s = tokio::time::timeout(Duration::from_secs(10), open_kept(&d, &*t, &mut hs, true))
            .await
            .context("connect timed out")??;
        streams.push(s);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    // Connections the proxy closed after a complete answer (announced with
    // `Connection: close` or not): not errors, but the rate then includes a
    // new connection per request, so they are reported.
    let reconnects = Arc::new(AtomicU64::new(0));
    let handles: Vec<JoinHandle<()>> = streams
        .into_iter()
        .map(|mut s| {
            let (stop, done, errors) = (stop.clone(), done.clone(), errors.clone());
            let (reconnects, d, t) = (reconnects.clone(), d.clone(), t.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while !stop.load(Relaxed) {
                    match exchange(&mut s, d.keepalive_request(), &mut buf).await {
                        Ok(Exchange::Open) => {
                            done.fetch_add(1, Relaxed);
                            continue;
                        }
                        Ok(Exchange::Closing) => {
                            done.fetch_add(1, Relaxed);
                            reconnects.fetch_add(1, Relaxed);
                        }
                        // Closed by the proxy after the previous answer:
                        // reconnect at once and send the request again.
                        Ok(Exchange::Stale) => {
                            reconnects.fetch_add(1, Relaxed);
                        }
                        Err(_) => {
                            // Broken connection: count it and reconnect,
                            // slowly enough that a dead proxy does not
                            // become a busy loop.
                            errors.fetch_add(1, Relaxed);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                    match open_kept(&d, &*t, &mut buf, true).await {
                        Ok(n) => {
                            s = n;
                        }
                        Err(_) => {
                            errors.fetch_add(1, Relaxed);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(warmup).await;
    let (n0, e0, r0, t0) = (
        done.load(Relaxed),
        errors.load(Relaxed),
        reconnects.load(Relaxed),
        Instant::now(),
    );
    let cpu0 = cpu(&c.watch_pid)?;
    tokio::time::sleep(window).await;
    let (n1, e1, r1, dt) = (
        done.load(Relaxed),
        errors.load(Relaxed),
        reconnects.load(Relaxed),
        t0.elapsed(),
    );
    let cpu1 = cpu(&c.watch_pid)?;
    stop.store(true, Relaxed);
    join_all(handles, Duration::from_secs(5)).await;
    let requests = n1 - n0;
    let dt = dt.as_secs_f64();
    let rps = requests as f64 / dt;
    let (used, per) = per_cpu(cpu0, cpu1, requests as f64);
    emit(
        &json!({
            "test": "keepalive", "label": c.label, "round": c.round, "conns": a.conns,
            "via": d.via_name(), "tls": t.is_tls(), "seconds": dt, "requests": requests, "errors": e1 - e0,
            "proxy_closed": r1 - r0, "rps": rps,
            "proxy_cpu_s": used, "requests_per_cpu_s": per,
        }),
        &format!(
            "keepalive {} r{}{}: {} req/s ({} conns, {requests} requests in {dt:.2} s, {} errors{}){}",
            c.label,
            c.round,
            via_text(&d, &*t),
            crate::fmt_num(rps),
            a.conns,
            e1 - e0,
            if r1 > r0 {
                format!(", {} reconnects: proxy closed after the answer", r1 - r0)
            } else {
                String::new()
            },
            cpu_text(&used, &per, "req")
        ),
    );
    Ok(())
}

/// One short-lived connection: connect, one `Connection: close` request,
/// read the response and then EOF (the server closes first, so TIME_WAIT
/// lands on the target server's side), then close with SO_LINGER 0 so the
/// client's final packet is a RST: neither the client nor the proxy keeps
/// a TIME_WAIT socket, and loopback's ~28k ephemeral ports do not run out
/// at 15k+ connections per second.
/// Through a proxy the tunnel handshake comes first, on the same buffer;
/// with --tls a full TLS handshake before that (the client never sends
/// close_notify: its RST ends the TLS session with the TCP connection).
async fn one_connection<T: Transport>(
    d: &Dialer,
    t: &T,
    buf: &mut [u8],
    wait_eof: bool,
    nodelay: bool,
) -> Result<()> {
    let tcp = TcpStream::connect(d.connect_to).await?;
    SockRef::from(&tcp).set_linger(Some(Duration::ZERO))?;
    if nodelay {
        tcp.set_nodelay(true)?;
    }
    let mut s = t.establish(tcp).await?;
    d.handshake(&mut s, buf).await?;
    s.write_all(http::REQUEST_CLOSE).await?;
    d.read_owed(&mut s, buf).await?;
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            bail!("response larger than {} bytes", buf.len());
        }
        let n = read_or_eof(&mut s, &mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
        if !wait_eof && matches!(http::response_len(&buf[..filled])?, Some(t) if filled >= t) {
            return Ok(());
        }
    }
    match http::response_len(&buf[..filled])? {
        Some(total) if filled >= total => Ok(()),
        _ => bail!("connection closed before the response was complete"),
    }
}

pub async fn connrate(a: ConnrateArgs) -> Result<()> {
    on_transport!(a.common, connrate_on, a)
}

async fn connrate_on<T: Transport>(a: ConnrateArgs, t: Arc<T>) -> Result<()> {
    let c = &a.common;
    anyhow::ensure!(a.concurrency > 0, "--concurrency must be positive");
    let window = secs(a.seconds)?;
    let warmup = secs(a.warmup)?;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let d = dialer(c, false)?;
    let wait_eof = !a.no_wait_eof;
    // Plain TCP keeps Nagle as before (one write per connection). TLS and
    // relay write twice in a row (Finished or the relay request, then the
    // request), which Nagle could hold for a delayed ACK.
    let nodelay = t.is_tls() || d.owes_response();
    let handles: Vec<JoinHandle<()>> = (0..a.concurrency)
        .map(|_| {
            let (stop, done, errors) = (stop.clone(), done.clone(), errors.clone());
            let (first_error, d, t) = (first_error.clone(), d.clone(), t.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while !stop.load(Relaxed) {
                    match one_connection(&d, &*t, &mut buf, wait_eof, nodelay).await {
                        Ok(()) => {
                            done.fetch_add(1, Relaxed);
                        }
                        Err(e) => {
                            errors.fetch_add(1, Relaxed);
                            if let Ok(mut f) = first_error.lock() {
                                f.get_or_insert_with(|| format!("{e:#}"));
                            }
                            // E.g. EADDRNOTAVAIL: back off instead of spinning.
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(warmup).await;
    let (n0, e0, t0) = (done.load(Relaxed), errors.load(Relaxed), Instant::now());
    let cpu0 = cpu(&c.watch_pid)?;
    tokio::time::sleep(window).await;
    let (n1, e1, dt) = (done.load(Relaxed), errors.load(Relaxed), t0.elapsed());
    let cpu1 = cpu(&c.watch_pid)?;
    stop.store(true, Relaxed);
    join_all(handles, Duration::from_secs(5)).await;
    let conns = n1 - n0;
    let dt = dt.as_secs_f64();
    let cps = conns as f64 / dt;
    let (used, per) = per_cpu(cpu0, cpu1, conns as f64);
    let first = first_error.lock().ok().and_then(|f| f.clone());
    emit(
        &json!({
            "test": "connrate", "label": c.label, "round": c.round,
            "via": d.via_name(), "tls": t.is_tls(), "concurrency": a.concurrency, "seconds": dt, "connections": conns,
            "errors": e1 - e0, "first_error": first, "cps": cps,
            "proxy_cpu_s": used, "conns_per_cpu_s": per,
        }),
        &format!(
            "connrate {} r{}{}: {} conn/s ({} workers, {conns} connections in {dt:.2} s, {} errors{}){}",
            c.label,
            c.round,
            via_text(&d, &*t),
            crate::fmt_num(cps),
            a.concurrency,
            e1 - e0,
            first.map(|e| format!(", first: {e}")).unwrap_or_default(),
            cpu_text(&used, &per, "conn")
        ),
    );
    Ok(())
}

/// Opens one connection and proves it is forwarded end to end by a full
/// request/response, then hands the idle stream back.
async fn open_idle<T: Transport>(d: &Dialer, t: &T) -> Result<T::Stream> {
    let mut buf = [0u8; 512];
    let mut s = open_kept(d, t, &mut buf, t.is_tls()).await?;
    match exchange(&mut s, d.keepalive_request(), &mut buf).await? {
        Exchange::Open => Ok(s),
        Exchange::Closing => bail!("the answer closed the connection"),
        Exchange::Stale => bail!("connection closed before the response"),
    }
}

fn per_conn(base: u64, held: u64, conns: usize) -> Value {
    if conns == 0 {
        return Value::Null;
    }
    json!((held as f64 - base as f64) / conns as f64)
}

pub async fn idle(a: IdleArgs) -> Result<()> {
    on_transport!(a.common, idle_on, a)
}

async fn idle_on<T: Transport>(a: IdleArgs, t: Arc<T>) -> Result<()> {
    let c = &a.common;
    anyhow::ensure!(a.concurrency > 0, "--concurrency must be positive");
    let hold = secs(a.hold)?;
    let settle = secs(a.settle)?.min(hold);
    let d = dialer(c, false)?;
    let base = memory(&c.watch_pid)?;
    let sem = Arc::new(tokio::sync::Semaphore::new(a.concurrency));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Result<T::Stream>>();
    for _ in 0..a.conns {
        let (sem, tx, d, t) = (sem.clone(), tx.clone(), d.clone(), t.clone());
        tokio::spawn(async move {
            let Ok(_permit) = sem.acquire_owned().await else {
                return;
            };
            let r = tokio::time::timeout(Duration::from_secs(10), open_idle(&d, &*t))
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("open timed out")));
            let _ = tx.send(r);
        });
    }
    drop(tx);
    let t0 = Instant::now();
    let deadline = tokio::time::Instant::now() + secs(a.open_timeout)?;
    let mut held = Vec::with_capacity(a.conns);
    let mut errors = 0usize;
    let mut first_error = None;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Ok(s))) => held.push(s),
            Ok(Some(Err(e))) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
            Ok(None) => break,
            Err(_) => {
                first_error.get_or_insert_with(|| "--open-timeout reached".to_string());
                break;
            }
        }
    }
    let open_s = t0.elapsed().as_secs_f64();
    // The script (or a person) watching stdout measures the proxy now.
    println!("ready {} {errors}", held.len());
    eprintln!(
        "idle {} r{}{}: {} of {} connections open in {open_s:.2} s, holding {:.1} s",
        c.label,
        c.round,
        via_text(&d, &*t),
        held.len(),
        a.conns,
        a.hold
    );
    let ready_at = tokio::time::Instant::now();
    tokio::time::sleep(settle).await;
    let at_hold = memory(&c.watch_pid)?;
    tokio::time::sleep_until(ready_at + hold).await;
    let opened = held.len();
    drop(held);
    // Wait until the proxy has torn the connections down (socat: until its
    // children have exited and been reaped), so the next test does not pay
    // for this one's teardown in its throughput or its CPU figures.
    let drain_start = Instant::now();
    if let Some(b) = base {
        let drain_bound = Duration::from_secs(30);
        while process_count(&c.watch_pid)? > b.processes && drain_start.elapsed() < drain_bound {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drain_s = drain_start.elapsed().as_secs_f64();
    let (b, h) = (base.unwrap_or_default(), at_hold.unwrap_or_default());
    let (pss, rss) = if base.is_some() {
        (
            per_conn(b.pss_kib, h.pss_kib, opened),
            per_conn(b.rss_kib, h.rss_kib, opened),
        )
    } else {
        (Value::Null, Value::Null)
    };
    let mem_text = match (pss.as_f64(), rss.as_f64()) {
        (Some(p), Some(r)) => format!(
            "; proxy PSS {} -> {} KiB, RSS {} -> {} KiB ({} processes): {p:.2} KiB PSS, {r:.2} KiB RSS per connection",
            b.pss_kib, h.pss_kib, b.rss_kib, h.rss_kib, h.processes
        ),
        _ => String::new(),
    };
    emit(
        &json!({
            "test": "idle", "label": c.label, "round": c.round, "conns": a.conns,
            "via": d.via_name(), "tls": t.is_tls(),
            "opened": opened, "errors": errors, "first_error": first_error,
            "open_seconds": open_s, "drain_seconds": drain_s,
            "base_pss_kib": base.map(|m| m.pss_kib), "held_pss_kib": at_hold.map(|m| m.pss_kib),
            "base_rss_kib": base.map(|m| m.rss_kib), "held_rss_kib": at_hold.map(|m| m.rss_kib),
            "processes": at_hold.map(|m| m.processes),
            "pss_kib_per_conn": pss, "rss_kib_per_conn": rss,
        }),
        &format!(
            "idle {} r{}: {opened}/{} held, {errors} errors{}{mem_text}",
            c.label,
            c.round,
            a.conns,
            first_error
                .as_ref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default(),
        ),
    );
    if opened == 0 {
        bail!("no connection could be opened");
    }
    Ok(())
}
