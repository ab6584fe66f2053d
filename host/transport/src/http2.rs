//! GOST's `http2` listener and dialer (go-gost/x listener/http2 and
//! dialer/http2): an HTTP/2 proxy's transport, which only the `http2`
//! handler and connector speak over. The listener is an HTTP/2 server
//! over TLS (ALPN `h2`); each request, a `CONNECT` or a plain proxy
//! request, is handed to the handler whole ([`Request`]) to answer, as
//! GOST's listener hands its handler the request and response writer.
//! The dialer keeps one HTTP/2 connection per node and hands the
//! connector a handle on it ([`Client`]), which sends the `CONNECT` for
//! each proxied connection, as GOST's dialer hands its connector an HTTP
//! client. Neither side's stream carries bytes until the handler or the
//! connector has turned the exchange into a tunnel: a handler or
//! connector of another type over them fails with a message.
//!
//! Bounds are the `h2` transport's: a stream's unread bytes stay within
//! its window, a connection's within the connection window; a listener
//! connection has at most [`crate::h2::MAX_STREAMS`] streams open and
//! queues at most `backlog` requests not yet taken by the handler.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use h2::server::SendResponse;
use h2::RecvStream;
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request as HttpRequest, Response, StatusCode,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use crate::h2::{h2_io, h2_server_tls, H2Dialer, H2DialerOptions, H2Stream};
use crate::kinds::{DialerKind, ListenerKind, Socket, Transports};
use crate::tls::{client_settings, handshake_timeout, TlsDialer, TlsUpgrade};
use crate::{within, BoxFuture, Multiplex, MultiplexUpgrade, Opened, Streams, Upgrade};
use gost_core::escape::esc;
use gost_core::metadata::Metadata;
use gost_core::stream::{Endpoints, Stream};

/// How long a client may take to send the connection preface.
const PREFACE_TIMEOUT: Duration = Duration::from_secs(30);
/// GOST's listener `backlog` default.
const DEFAULT_BACKLOG: usize = 128;
/// The largest request or response head accepted.
const MAX_HEADER_LIST: u32 = 64 * 1024;

/// One request on the `http2` listener, for the handler to answer.
pub struct Request {
    /// Method, URI (the `CONNECT` target is its authority) and headers.
    pub head: http::request::Parts,
    /// Whether the request came without a body (END_STREAM on its head).
    pub no_body: bool,
    body: RequestBody,
    respond: SendResponse<Bytes>,
    ends: Endpoints,
}

impl Request {
    /// Answers with `resp`. With `end`, that is all (no body) and `None`
    /// comes back; otherwise the stream whose reads are the request body
    /// and whose writes are the response body (a `CONNECT` tunnel's two
    /// directions), ended by shutting it down.
    pub fn respond(mut self, resp: Response<()>, end: bool) -> io::Result<Option<Stream>> {
        let send = self.respond.send_response(resp, end).map_err(h2_io)?;
        if end {
            return Ok(None);
        }
        Ok(Some(Stream::boxed(
            H2Stream::new(send, self.body.recv),
            self.ends,
        )))
    }

    /// The request body, for a plain request passed on before it is
    /// answered; a `CONNECT` leaves it to [`Request::respond`]'s stream.
    pub fn body(&mut self) -> &mut RequestBody {
        &mut self.body
    }
}

/// A request body's bytes, the window given back as they are read.
pub struct RequestBody {
    recv: RecvStream,
    pending: Bytes,
}

impl AsyncRead for RequestBody {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.pending.is_empty() {
            match std::task::ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    this.pending = data;
                }
                Some(Err(e)) => return Poll::Ready(Err(h2_io(e))),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending.split_to(n));
        Poll::Ready(Ok(()))
    }
}

/// A handle on the `http2` dialer's connection to a node.
pub struct Client {
    send: SendRequest<Bytes>,
    ends: Endpoints,
    slot: crate::h2::StreamSlot,
}

/// Why a `CONNECT` did not become a tunnel.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The node answered with this status instead of 200.
    #[error("the node answered {0}")]
    Refused(StatusCode),
}

impl Client {
    /// A `CONNECT` to `authority` with `headers`: the stream once the node
    /// answers 200.
    pub async fn connect(
        self,
        authority: &str,
        headers: &[(String, String)],
    ) -> Result<Stream, ConnectError> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            let bad = || {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("header {}: not a valid HTTP header field", esc(k)),
                )
            };
            map.append(
                HeaderName::from_bytes(k.as_bytes()).map_err(|_| bad())?,
                HeaderValue::from_str(v).map_err(|_| bad())?,
            );
        }
        let mut req = HttpRequest::builder()
            .method(Method::CONNECT)
            .uri(authority)
            .body(())
            .map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("CONNECT {}: {e}", esc(authority)),
                )
            })?;
        *req.headers_mut() = map;
        let mut send = self.send.ready().await.map_err(h2_io)?;
        let (resp, body) = send.send_request(req, false).map_err(h2_io)?;
        gost_core::dialer::loops::record_stream(self.ends, resp.stream_id().as_u32());
        let resp = resp.await.map_err(h2_io)?;
        if resp.status() != StatusCode::OK {
            return Err(ConnectError::Refused(resp.status()));
        }
        Ok(Stream::boxed_with(
            H2Stream::new(body, resp.into_body()),
            self.ends,
            Box::new(self.slot),
        ))
    }
}

/// The stream a [`Request`] or [`Client`] travels on: no bytes of its own.
struct Exchange(&'static str);

impl Exchange {
    fn refuse(&self) -> io::Error {
        io::Error::new(io::ErrorKind::Unsupported, self.0)
    }
}

impl AsyncRead for Exchange {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Err(self.refuse()))
    }
}

impl AsyncWrite for Exchange {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(self.refuse()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

const LISTENER_ONLY: &str =
    "the http2 listener carries HTTP/2 requests for the http2 handler only (use -L http2://)";
const DIALER_ONLY: &str =
    "the http2 dialer carries CONNECT requests of the http2 connector only (use -F http2://)";

/// The server side.
struct Http2Upgrade {
    tls: TlsUpgrade,
    backlog: usize,
}

impl Upgrade for Http2Upgrade {
    fn upgrade(&self, stream: Stream) -> BoxFuture<'_, io::Result<Stream>> {
        Box::pin(crate::tls::upgrade_if(Some(&self.tls), stream))
    }

    fn multiplex(&self) -> Option<&dyn MultiplexUpgrade> {
        Some(self)
    }
}

impl MultiplexUpgrade for Http2Upgrade {
    fn session(&self, stream: Stream) -> BoxFuture<'_, io::Result<Box<dyn Streams>>> {
        Box::pin(async move {
            let carried = self.upgrade(stream).await?;
            let ends = carried.endpoints();
            let conn = within("http2", Some(PREFACE_TIMEOUT), async {
                h2::server::Builder::new()
                    .initial_window_size(crate::h2::STREAM_WINDOW)
                    .initial_connection_window_size(crate::h2::CONNECTION_WINDOW)
                    .max_concurrent_streams(crate::h2::MAX_STREAMS)
                    .max_header_list_size(MAX_HEADER_LIST)
                    .handshake::<_, Bytes>(carried)
                    .await
                    .map_err(|e| crate::handshake_error("http2", h2_io(e)))
            })
            .await?;
            let (tx, rx) = mpsc::channel(self.backlog);
            let end = Arc::new(Mutex::new(None));
            let slot = end.clone();
            let backlog = self.backlog;
            tokio::spawn(async move {
                let r = serve(conn, backlog, ends, &tx).await;
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            });
            Ok(Box::new(Session { rx, end }) as Box<dyn Streams>)
        })
    }
}

enum Item {
    Request(Opened),
    Refused(String),
}

struct Session {
    rx: mpsc::Receiver<Item>,
    end: Arc<Mutex<Option<(String, bool)>>>,
}

impl Streams for Session {
    fn accept(&mut self) -> BoxFuture<'_, Option<io::Result<Opened>>> {
        Box::pin(async move {
            Some(match self.rx.recv().await? {
                Item::Request(o) => Ok(o),
                Item::Refused(why) => Err(io::Error::new(io::ErrorKind::InvalidData, why)),
            })
        })
    }

    fn end(&self) -> Option<(String, bool)> {
        self.end.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Hands each request to the service until the connection ends; the
/// end's reason and whether it was a fault.
async fn serve(
    mut conn: h2::server::Connection<Stream, Bytes>,
    backlog: usize,
    ends: Endpoints,
    tx: &mpsc::Sender<Item>,
) -> (String, bool) {
    loop {
        let next = tokio::select! {
            r = conn.accept() => r,
            _ = tx.closed() => return ("closed by the service".into(), false),
        };
        let (req, respond) = match next {
            None => return ("connection closed".into(), false),
            Some(Err(e)) => {
                let e = h2_io(e);
                let fault = !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::ConnectionAborted
                );
                return (e.to_string(), fault);
            }
            Some(Ok(r)) => r,
        };
        let id = respond.stream_id().as_u32();
        let (head, body) = req.into_parts();
        let request = Request {
            no_body: body.is_end_stream(),
            head,
            body: RequestBody {
                recv: body,
                pending: Bytes::new(),
            },
            respond,
            ends,
        };
        let s = Stream::boxed_with(Exchange(LISTENER_ONLY), ends, Box::new(request));
        match tx.try_send(Item::Request(Opened::new(s, ends, id))) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                // Dropping the request resets its stream, as GOST drops a
                // connection its full queue has no room for.
                let what = format!("http2: {backlog} requests queued, request refused");
                let _ = tx.try_send(Item::Refused(what));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return ("closed by the service".into(), false)
            }
        }
    }
}

/// The client side: one HTTP/2 connection per node (the `h2` dialer's
/// pool), a [`Client`] handle per proxied connection.
#[derive(Debug)]
struct Http2Dialer(H2Dialer);

pooled_dialer!(Http2Dialer);

impl Multiplex for Http2Dialer {
    fn open<'a>(
        &'a self,
        node_addr: &'a str,
        connect: BoxFuture<'a, io::Result<Stream>>,
    ) -> BoxFuture<'a, io::Result<Stream>> {
        Box::pin(async move {
            let c = self.0.pooled(node_addr, connect).await?;
            let client = Client {
                send: c.send,
                ends: c.ends,
                slot: c.slot,
            };
            Ok(Stream::boxed_with(
                Exchange(DIALER_ONLY),
                c.ends,
                Box::new(client),
            ))
        })
    }
}

fn backlog(md: &Metadata) -> Result<usize, String> {
    match md
        .get_int("backlog")
        .map_err(|e| format!("listener metadata: {e}"))?
    {
        Some(n) if n > 0 => Ok(n as usize),
        _ => Ok(DEFAULT_BACKLOG),
    }
}

pub fn register(r: &mut Transports) {
    r.add_listener(ListenerKind {
        names: &["http2"],
        socket: Socket::Tcp,
        upgrade: Some(|cfg, root| {
            Ok(Arc::new(Http2Upgrade {
                tls: h2_server_tls(cfg, root)?,
                backlog: backlog(&cfg.metadata)?,
            }))
        }),
        uses_tls: true,
        summary: "HTTP/2 proxy server over TLS, for the `http2` handler; each request a connection",
    });
    r.add_dialer(DialerKind {
        names: &["http2"],
        build: |cfg, node| {
            let mut settings = client_settings(cfg.tls.as_ref(), node);
            if settings.alpn.is_empty() {
                settings.alpn = vec!["h2".into()];
            }
            let tls =
                TlsDialer::new(settings, handshake_timeout(cfg)?).map_err(|e| e.to_string())?;
            Ok(Some(Arc::new(Http2Dialer(H2Dialer::new(
                Some(tls),
                H2DialerOptions::default(),
            )))))
        },
        summary: "HTTP/2 over TLS, one connection per node, for the `http2` connector",
    });
}
