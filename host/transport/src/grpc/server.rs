//! The server side of one HTTP/2 connection: each call of the tunnel
//! method is a stream for the service; any other request is answered
//! with grpc-go's status and handed to the service as a refusal to count.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use http::{Request, Response};
use tokio::sync::mpsc;

use super::config::ListenerConfig;
use super::stream::{status_trailers, Active, CallStream, Report, Side};
use super::{CONNECTION_WINDOW, STREAM_WINDOW};
use crate::{BoxFuture, Opened, Streams};
use gost_core::stream::{Endpoints, Stream};
use gost_proto::grpc::{status, CONTENT_TYPE};

/// Why a connection ended, once it has.
type End = Arc<Mutex<Option<(String, bool)>>>;

pub struct Connection {
    calls: mpsc::Receiver<io::Result<Opened>>,
    end: End,
}

impl Streams for Connection {
    fn accept(&mut self) -> BoxFuture<'_, Option<io::Result<Opened>>> {
        Box::pin(self.calls.recv())
    }

    fn end(&self) -> Option<(String, bool)> {
        self.end.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Runs the HTTP/2 server over `stream` (after TLS, when there is one).
pub async fn serve(stream: Stream, cfg: &ListenerConfig, method: &str) -> io::Result<Connection> {
    let ends = stream.endpoints();
    let handshake = h2::server::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake::<_, Bytes>(stream);
    let mut conn = crate::within("grpc", Some(PREFACE_TIMEOUT), async {
        // A client gone before its preface (grpcio closes a spare
        // connection so) keeps its I/O error's kind: not a protocol error.
        handshake.await.map_err(|e| {
            let kind = match e.get_io() {
                Some(io) => io.kind(),
                None => io::ErrorKind::InvalidData,
            };
            io::Error::new(kind, format!("grpc: {e}"))
        })
    })
    .await?;
    let (tx, rx) = mpsc::channel(cfg.backlog);
    let end: End = Arc::default();
    let keepalive = cfg.keepalive.clone();
    let method = method.to_string();
    let end2 = end.clone();
    tokio::spawn(async move {
        let active = Arc::new(Active::default());
        let mut pings = conn.ping_pong();
        let now = tokio::time::Instant::now;
        let mut idle_since = now();
        let mut next_ping = now() + keepalive.time;
        let mut pong_due: Option<tokio::time::Instant> = None;
        let result: Result<(), (String, bool)> = loop {
            if active.count() > 0 {
                idle_since = now();
            }
            let idle_deadline = keepalive
                .max_connection_idle
                .filter(|_| active.count() == 0)
                .map(|d| idle_since + d);
            tokio::select! {
                next = conn.accept() => match next {
                    Some(Ok((req, respond))) => {
                        next_ping = now() + keepalive.time;
                        let call = call(req, respond, &method, &active, ends, &tx);
                        let refused = call.is_err();
                        match tx.try_send(call) {
                            Ok(()) => {}
                            Err(mpsc::error::TrySendError::Full(Ok(stream))) => {
                                drop(stream);
                                tracing::warn!("grpc: connection queue is full, call discarded");
                            }
                            Err(_) if refused => {}
                            Err(_) => break Ok(()),
                        }
                    }
                    Some(Err(e)) => break Err(h2_end(e)),
                    None => break Ok(()),
                },
                _ = tokio::time::sleep_until(next_ping), if pings.is_some() && pong_due.is_none() => {
                    let p = pings.as_mut().expect("checked by the guard");
                    if let Err(e) = p.send_ping(h2::Ping::opaque()) {
                        break Err(h2_end(e));
                    }
                    pong_due = Some(now() + keepalive.timeout);
                }
                pong = std::future::poll_fn(|cx| pings.as_mut().expect("checked by the guard").poll_pong(cx)), if pong_due.is_some() => {
                    if let Err(e) = pong {
                        break Err(h2_end(e));
                    }
                    pong_due = None;
                    next_ping = now() + keepalive.time;
                }
                _ = tokio::time::sleep_until(pong_due.unwrap_or_else(now)), if pong_due.is_some() => {
                    break Err(("grpc: keepalive ping not answered".into(), true));
                }
                _ = tokio::time::sleep_until(idle_deadline.unwrap_or_else(now)), if idle_deadline.is_some() => {
                    conn.graceful_shutdown();
                    // The GOAWAY goes out; calls already on their way are
                    // still served until the peer closes.
                    while let Some(Ok((req, respond))) = conn.accept().await {
                        let _ = tx.try_send(call(req, respond, &method, &active, ends, &tx));
                    }
                    break Ok(());
                }
            }
        };
        let reason = match result {
            Ok(()) => ("connection closed".to_string(), false),
            Err(r) => r,
        };
        *end2.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    });
    Ok(Connection { calls: rx, end })
}

fn h2_end(e: h2::Error) -> (String, bool) {
    let disconnect = e.is_io()
        && e.get_io().is_some_and(|io| {
            matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::ConnectionAborted
            )
        });
    let graceful = e.is_go_away() && e.reason() == Some(h2::Reason::NO_ERROR);
    (format!("grpc: {e}"), !(disconnect || graceful))
}

/// A request to the tunnel method as a stream; any other is answered as
/// grpc-go answers it and reported as the error.
fn call(
    req: Request<h2::RecvStream>,
    mut respond: SendResponse<Bytes>,
    method: &str,
    active: &Arc<Active>,
    ends: Endpoints,
    report: &Report,
) -> io::Result<Opened> {
    let (parts, body) = req.into_parts();
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let grpc_type = content_type == CONTENT_TYPE.as_bytes()
        || content_type.starts_with(b"application/grpc+")
        || content_type.starts_with(b"application/grpc;");
    if parts.method != http::Method::POST || !grpc_type {
        // grpc-go: not a gRPC request at all.
        let code = if parts.method != http::Method::POST {
            http::StatusCode::METHOD_NOT_ALLOWED
        } else {
            http::StatusCode::UNSUPPORTED_MEDIA_TYPE
        };
        let _ = respond.send_response(
            Response::builder()
                .status(code)
                .body(())
                .expect("static response"),
            true,
        );
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "grpc: not a gRPC request ({} {}, content-type {})",
                parts.method,
                gost_core::escape::esc(parts.uri.path()),
                gost_core::escape::esc_bytes(content_type)
            ),
        ));
    }
    if parts.uri.path() != method {
        let msg = format!("unknown method {}", parts.uri.path());
        let mut resp = Response::builder()
            .status(http::StatusCode::OK)
            .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(())
            .expect("static response");
        resp.headers_mut()
            .extend(status_trailers(status::UNIMPLEMENTED, &msg));
        let _ = respond.send_response(resp, true);
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("grpc: call to {}", gost_core::escape::esc(parts.uri.path())),
        ));
    }
    if let Some(enc) = parts.headers.get("grpc-encoding") {
        if enc.as_bytes() != b"identity" {
            let msg = format!(
                "grpc: compressed calls are not supported (grpc-encoding {})",
                gost_core::escape::esc_bytes(enc.as_bytes())
            );
            let mut resp = Response::builder()
                .status(http::StatusCode::OK)
                .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
                .body(())
                .expect("static response");
            resp.headers_mut()
                .extend(status_trailers(status::UNIMPLEMENTED, &msg));
            let _ = respond.send_response(resp, true);
            return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
        }
    }
    let resp = Response::builder()
        .status(http::StatusCode::OK)
        .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
        .body(())
        .expect("static response");
    let id = respond.stream_id().as_u32();
    let send = respond
        .send_response(resp, false)
        .map_err(|e| io::Error::new(io::ErrorKind::ConnectionReset, format!("grpc: {e}")))?;
    let stream = CallStream::new(
        Side::Server {
            report: report.clone(),
        },
        Some(body),
        send,
        active.clone(),
    );
    Ok(Opened::new(Stream::boxed(stream, ends), ends, id))
}

/// The longest a connection may take to send its HTTP/2 preface.
pub const PREFACE_TIMEOUT: Duration = Duration::from_secs(30);
