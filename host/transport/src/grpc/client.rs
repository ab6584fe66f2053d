//! The client side: one HTTP/2 connection per node (GOST's dialer keeps
//! one gRPC client per address), a tunnel call per proxied connection;
//! a connection that died is replaced by the next call.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use h2::client::SendRequest;
use http::Request;

use super::config::{ClientKeepalive, DialerConfig};
use super::stream::{Active, CallStream, Side};
use super::{CONNECTION_WINDOW, STREAM_WINDOW};
use gost_core::stream::{Endpoints, Stream};
use gost_proto::grpc::CONTENT_TYPE;

#[derive(Debug)]
struct Conn {
    send: SendRequest<Bytes>,
    active: Arc<Active>,
    closed: Arc<AtomicBool>,
    ends: Endpoints,
}

#[derive(Debug, Default)]
pub struct Pool {
    /// Held across making a connection, so calls starting at once share
    /// the one new connection.
    conns: tokio::sync::Mutex<HashMap<String, Arc<Conn>>>,
}

/// What a call names: the `:scheme`, `:authority` and `:path`.
pub struct Target<'a> {
    pub scheme: &'a str,
    pub authority: &'a str,
    pub path: &'a str,
}

impl Pool {
    /// A tunnel call to the node at `key`, over its connection or over a
    /// new one made by `connect` and `handshake` (TLS, unless insecure).
    pub async fn call<C, H, F>(
        &self,
        key: &str,
        cfg: &DialerConfig,
        target: Target<'_>,
        connect: C,
        handshake: H,
    ) -> io::Result<Stream>
    where
        C: Future<Output = io::Result<Stream>>,
        H: FnOnce(Stream) -> F,
        F: Future<Output = io::Result<Stream>>,
    {
        let mut map = self.conns.lock().await;
        if let Some(c) = map.get(key).cloned() {
            if !c.closed.load(Ordering::Acquire) {
                drop(map);
                match open(&c, &target).await {
                    Ok(s) => return Ok(s),
                    Err(e) => {
                        tracing::debug!(node = %key, error = %e, "grpc: connection lost, making a new one");
                        map = self.conns.lock().await;
                    }
                }
            }
            if map.get(key).is_some_and(|cur| Arc::ptr_eq(cur, &c)) {
                map.remove(key);
            }
        }
        if let Some(c) = map
            .get(key)
            .filter(|c| !c.closed.load(Ordering::Acquire))
            .cloned()
        {
            drop(map);
            return open(&c, &target).await;
        }
        let made = tokio::time::timeout(cfg.min_connect_timeout, async {
            let raw = connect.await?;
            let carried = handshake(raw).await?;
            start(carried, cfg.keepalive.clone()).await
        })
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "grpc: no connection within {:?} (minConnectTimeout)",
                    cfg.min_connect_timeout
                ),
            )
        })??;
        let conn = Arc::new(made);
        let stream = open(&conn, &target).await?;
        map.insert(key.to_string(), conn);
        Ok(stream)
    }
}

/// The HTTP/2 client over `stream`, its connection driven by a task of
/// its own that also sends the keep-alive pings.
async fn start(stream: Stream, keepalive: Option<ClientKeepalive>) -> io::Result<Conn> {
    let ends = stream.endpoints();
    let (send, mut conn) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake::<_, Bytes>(stream)
        .await
        .map_err(|e| io::Error::other(format!("grpc: HTTP/2 handshake: {e}")))?;
    let active = Arc::new(Active::default());
    let closed = Arc::new(AtomicBool::new(false));
    let pings = conn.ping_pong();
    let (active2, closed2) = (active.clone(), closed.clone());
    tokio::spawn(async move {
        let ended = match (keepalive, pings) {
            (Some(ka), Some(mut pings)) => {
                let alive = async {
                    loop {
                        tokio::time::sleep(ka.time).await;
                        if !ka.permit_without_stream && active2.count() == 0 {
                            continue;
                        }
                        match tokio::time::timeout(ka.timeout, pings.ping(h2::Ping::opaque())).await
                        {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => return format!("keepalive: {e}"),
                            Err(_) => return "keepalive: ping not answered".to_string(),
                        }
                    }
                };
                tokio::select! {
                    r = &mut conn => r.err().map(|e| e.to_string()),
                    why = alive => Some(why),
                }
            }
            _ => conn.await.err().map(|e| e.to_string()),
        };
        closed2.store(true, Ordering::Release);
        if let Some(why) = ended {
            tracing::debug!(error = %gost_core::escape::esc(&why), "grpc: connection ended");
        }
    });
    Ok(Conn {
        send,
        active,
        closed,
        ends,
    })
}

/// A tunnel call over `conn`. The response's headers are not waited
/// for: grpc-go's server sends them with its first message, and the
/// protocol over the tunnel may have the client speak first.
async fn open(conn: &Conn, target: &Target<'_>) -> io::Result<Stream> {
    let mut send = conn
        .send
        .clone()
        .ready()
        .await
        .map_err(|e| io::Error::new(io::ErrorKind::ConnectionReset, format!("grpc: {e}")))?;
    let req = Request::builder()
        .method(http::Method::POST)
        .uri(format!(
            "{}://{}{}",
            target.scheme, target.authority, target.path
        ))
        .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
        .header(http::header::TE, "trailers")
        .header(http::header::USER_AGENT, "grpc-gost-rs")
        .body(())
        .map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "grpc: request to {}: {e}",
                    gost_core::escape::esc(target.authority)
                ),
            )
        })?;
    let (response, stream) = send
        .send_request(req, false)
        .map_err(|e| io::Error::new(io::ErrorKind::ConnectionReset, format!("grpc: {e}")))?;
    gost_core::dialer::loops::record_stream(conn.ends, response.stream_id().as_u32());
    let call = CallStream::new(
        Side::Client {
            response: Some(response),
        },
        None,
        stream,
        conn.active.clone(),
    );
    Ok(Stream::boxed(call, conn.ends))
}
