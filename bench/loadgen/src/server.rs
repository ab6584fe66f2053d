//! Target servers behind the proxy under test. They run on the load
//! generator's core, so they must be cheap per request: one task per
//! connection, buffers allocated once per connection, one `write` per batch
//! of requests that arrived together.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::http;

/// What the server does with each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Writes back whatever it reads.
    Echo,
    /// Answers every HTTP/1.1 request with a fixed small response.
    Http,
    /// Reads and discards (target of a bulk upload).
    Sink,
    /// Writes an endless stream (source of a bulk download).
    Source,
}

/// Pattern written by `source` and by bulk uploads: a static buffer, so the
/// bulk paths never allocate or fill memory per write.
pub static CHUNK: [u8; 256 * 1024] = [b'x'; 256 * 1024];

/// Per-connection buffer for `http` and `echo`: small because the idle test
/// keeps ~9,000 of these alive at once.
const SMALL_BUF: usize = 4096;
/// A request head or body larger than this is refused (closes the
/// connection): nothing in the benchmark sends one.
const MAX_REQUEST: usize = 64 * 1024;

/// Accepts until the lifetime bound expires. Accept errors (EMFILE under a
/// connection storm) are logged at most once a second and retried after a
/// short pause instead of ending the server.
pub async fn run(
    listen: SocketAddr,
    mode: Mode,
    backlog: u32,
    max_seconds: u64,
    rcvbuf: Option<u32>,
) -> Result<()> {
    let socket = if listen.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }?;
    socket.set_reuseaddr(true)?;
    // Set on the listener so accepted sockets inherit it from the start.
    if let Some(n) = rcvbuf {
        socket
            .set_recv_buffer_size(n)
            .with_context(|| format!("cannot set SO_RCVBUF {n}"))?;
    }
    socket
        .bind(listen)
        .with_context(|| format!("cannot bind {listen}"))?;
    let listener = socket.listen(backlog)?;
    eprintln!(
        "loadgen server: {mode:?} on {} (lifetime bound {max_seconds} s)",
        listener.local_addr()?
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(max_seconds);
    let mut last_err_log: Option<std::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = tokio::time::sleep_until(deadline) => {
                eprintln!("loadgen server: lifetime bound reached, exiting");
                return Ok(());
            }
        };
        match accepted {
            Ok((stream, _)) => {
                // Request/response traffic: never wait for Nagle.
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    // Resets and broken pipes are normal at the end of a run.
                    let _ = serve(stream, mode).await;
                });
            }
            Err(e) => {
                if last_err_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    eprintln!("loadgen server: accept: {e}");
                    last_err_log = Some(std::time::Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

async fn serve(stream: TcpStream, mode: Mode) -> std::io::Result<()> {
    match mode {
        Mode::Echo => echo(stream).await,
        Mode::Http => serve_http(stream).await,
        Mode::Sink => sink(stream).await,
        Mode::Source => source(stream).await,
    }
}

async fn echo(mut s: TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; SMALL_BUF];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        s.write_all(&buf[..n]).await?;
    }
}

/// Reads until EOF, then closes: the bulk client waits for that close to
/// know every byte crossed the proxy.
async fn sink(mut s: TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    while s.read(&mut buf).await? != 0 {}
    Ok(())
}

async fn source(mut s: TcpStream) -> std::io::Result<()> {
    // Ends when the reader goes away (EPIPE / ECONNRESET).
    loop {
        s.write_all(&CHUNK).await?;
    }
}

/// Keep-alive aware HTTP/1.1: answers every complete request in the buffer
/// (pipelined ones too) with a single write, and closes after answering a
/// request that asked for it.
async fn serve_http(mut s: TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; SMALL_BUF];
    let mut out: Vec<u8> = Vec::with_capacity(http::RESPONSE_CLOSE.len() * 2);
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            if buf.len() >= MAX_REQUEST {
                return Ok(());
            }
            buf.resize(buf.len() * 2, 0);
        }
        let n = s.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
        let mut pos = 0;
        let mut close = false;
        while pos < filled {
            match http::parse_request(&buf[pos..filled]) {
                Ok(Some(req)) => {
                    pos += req.len;
                    if req.close {
                        out.extend_from_slice(http::RESPONSE_CLOSE);
                        close = true;
                        break;
                    }
                    out.extend_from_slice(http::RESPONSE_KEEPALIVE);
                }
                Ok(None) => break,
                Err(_) => {
                    out.extend_from_slice(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    close = true;
                    break;
                }
            }
        }
        if pos > 0 {
            buf.copy_within(pos..filled, 0);
            filled -= pos;
        }
        if !out.is_empty() {
            s.write_all(&out).await?;
            out.clear();
        }
        if close {
            // FIN from the server: the client reads EOF and then closes.
            return s.shutdown().await;
        }
    }
}
