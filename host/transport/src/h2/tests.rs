//! The h2 transport against raw HTTP/2 peers (the `h2` crate's own client
//! and server standing in for Go's): the requests GOST's dialer sends,
//! the answers GOST's listener gives, and our two sides together, over
//! in-memory pipes.

use std::time::Duration;

use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

use super::*;

fn md(json: serde_json::Value) -> Metadata {
    serde_json::from_value(json).unwrap()
}

fn pipe() -> (Stream, Stream) {
    let (a, b) = duplex(1 << 20);
    (
        Stream::boxed(a, Endpoints::default()),
        Stream::boxed(b, Endpoints::default()),
    )
}

fn upgrade(path: Option<&str>) -> H2Upgrade {
    H2Upgrade {
        tls: None,
        opts: H2ListenerOptions {
            path: path.map(str::to_string),
            backlog: 8,
        },
    }
}

fn h2c_dialer(json: serde_json::Value) -> H2Dialer {
    H2Dialer {
        tls: None,
        opts: H2DialerOptions::from_metadata(&md(json)).unwrap(),
        conns: tokio::sync::Mutex::new(HashMap::new()),
    }
}

#[test]
fn listener_answers_as_gost_does() {
    let req = |m: Method, uri: &str| Request::builder().method(m).uri(uri).body(()).unwrap();
    let none = H2ListenerOptions::from_metadata(&md(serde_json::json!({}))).unwrap();
    assert_eq!(none.backlog, 128);
    assert_eq!(none.admit(&req(Method::CONNECT, "example.com:443")), Ok(()));
    assert_eq!(
        none.admit(&req(Method::GET, "http://example.com/x")),
        Err(StatusCode::METHOD_NOT_ALLOWED)
    );
    let path =
        H2ListenerOptions::from_metadata(&md(serde_json::json!({"path": "/tun", "backlog": 4})))
            .unwrap();
    assert_eq!(path.backlog, 4);
    assert_eq!(path.admit(&req(Method::GET, "https://h/tun")), Ok(()));
    assert_eq!(path.admit(&req(Method::POST, "https://h/tun")), Ok(()));
    for (m, uri) in [
        (Method::GET, "https://h/other"),
        (Method::GET, "https://h/tun?x=1"),
        (Method::CONNECT, "h:443"),
    ] {
        assert_eq!(
            path.admit(&req(m, uri)),
            Err(StatusCode::BAD_REQUEST),
            "{uri}"
        );
    }
}

#[test]
fn dialer_requests_are_gosts() {
    let d = H2DialerOptions::from_metadata(&md(serde_json::json!({}))).unwrap();
    let r = d.request("10.0.0.1:8443", true).unwrap();
    assert_eq!(r.method(), Method::CONNECT);
    assert_eq!(r.uri().to_string(), "10.0.0.1:8443");
    assert!(r.uri().scheme().is_none() && r.uri().path_and_query().is_none());

    let d = H2DialerOptions::from_metadata(&md(serde_json::json!({
        "host": "example.com", "path": "/h2", "header": {"X-Token": "abc"}
    })))
    .unwrap();
    let r = d.request("10.0.0.1:8443", true).unwrap();
    assert_eq!(r.method(), Method::GET);
    assert_eq!(r.uri().to_string(), "https://example.com/h2");
    assert_eq!(r.headers()["x-token"], "abc");
    let r = d.request("10.0.0.1:8443", false).unwrap();
    assert_eq!(r.uri().to_string(), "http://example.com/h2");

    for bad in [
        serde_json::json!({"path": "h2"}),
        serde_json::json!({"header": "x"}),
        serde_json::json!({"header": {"bad name": "v"}}),
        serde_json::json!({"header": {"x": "line\nbreak"}}),
    ] {
        assert!(
            H2DialerOptions::from_metadata(&md(bad.clone())).is_err(),
            "{bad}"
        );
    }
}

/// Our dialer's CONNECT as a raw HTTP/2 server sees it: `:method
/// CONNECT`, `:authority` the node, no `:scheme` or `:path`, then data
/// both ways on the one stream.
#[tokio::test]
async fn dialer_sends_a_connect_stream() {
    let (a, b) = pipe();
    let server = tokio::spawn(async move {
        let mut conn = h2::server::handshake(b).await.unwrap();
        let (req, mut respond) = conn.accept().await.unwrap().unwrap();
        let head = (
            req.method().clone(),
            req.uri().to_string(),
            req.headers().get("x-a").cloned(),
        );
        // The connection is driven by its own task from here on.
        tokio::spawn(async move { while conn.accept().await.is_some() {} });
        let mut send = respond.send_response(Response::new(()), false).unwrap();
        let mut body = req.into_body();
        let got = body.data().await.unwrap().unwrap();
        send.send_data(Bytes::from_static(b"pong"), true).unwrap();
        (head, got)
    });
    let d = h2c_dialer(serde_json::json!({"header": {"X-A": "1"}}));
    let mut s = d.open("node:80", Box::pin(async { Ok(a) })).await.unwrap();
    s.write_all(b"ping").await.unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"pong");
    let ((method, uri, xa), got) = server.await.unwrap();
    assert_eq!(method, Method::CONNECT);
    assert_eq!(uri, "node:80");
    assert_eq!(xa.unwrap(), "1");
    assert_eq!(&got[..], b"ping");
}

/// A raw client sending what GOST's dialer sends: a `CONNECT` is served
/// without a `path`; with one, only a request for it; 405 and 400
/// otherwise, each refusal reported once.
#[tokio::test]
async fn listener_serves_gost_requests_and_refuses_others() {
    for (path, method, uri, status) in [
        (None, Method::CONNECT, "node:80", 200),
        (None, Method::GET, "http://node:80/", 405),
        (Some("/tun"), Method::GET, "http://node:80/tun", 200),
        (Some("/tun"), Method::GET, "http://node:80/other", 400),
        (Some("/tun"), Method::CONNECT, "node:80", 400),
    ] {
        let (a, b) = pipe();
        let up = upgrade(path);
        let session = tokio::spawn(async move {
            let mut s = up.session(b).await.unwrap();
            let r = match s.accept().await {
                Some(Ok(Opened { stream: mut st, .. })) => {
                    let mut buf = [0u8; 4];
                    st.read_exact(&mut buf).await.unwrap();
                    st.write_all(&buf).await.unwrap();
                    st.shutdown().await.unwrap();
                    let mut rest = Vec::new();
                    st.read_to_end(&mut rest).await.unwrap();
                    Ok(rest.len())
                }
                Some(Err(why)) => Err(why.to_string()),
                None => panic!("no request"),
            };
            // The session outlives its streams, as the service keeps it.
            (r, s)
        });
        let (client, conn) = h2::client::handshake(a).await.unwrap();
        tokio::spawn(conn);
        let mut client = client.ready().await.unwrap();
        let req = Request::builder()
            .method(method.clone())
            .uri(uri)
            .body(())
            .unwrap();
        let (resp, mut send) = client.send_request(req, false).unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(
            resp.status().as_u16(),
            status,
            "{method} {uri} path {path:?}"
        );
        if status == 200 {
            send.send_data(Bytes::from_static(b"echo"), true).unwrap();
            let mut body = resp.into_body();
            let got = body.data().await.unwrap().unwrap();
            assert_eq!(&got[..], b"echo");
            while let Some(rest) = body.data().await {
                assert!(rest.unwrap().is_empty(), "more bytes than were echoed");
            }
            assert_eq!(session.await.unwrap().0, Ok(0));
        } else {
            let why = session.await.unwrap().0.unwrap_err();
            assert!(why.contains(&status.to_string()), "{why}");
            assert!(why.contains(method.as_str()), "{why}");
        }
    }
}

/// Our dialer and listener together, with a `path`: many streams over
/// one connection, each with its own bytes.
#[tokio::test]
async fn dialer_and_listener_share_one_connection() {
    let (a, b) = pipe();
    let up = upgrade(Some("/x"));
    tokio::spawn(async move {
        let mut s = up.session(b).await.unwrap();
        while let Some(Ok(Opened { stream: mut st, .. })) = s.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = st.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    st.write_all(&buf[..n]).await.unwrap();
                }
                st.shutdown().await.unwrap();
            });
        }
    });
    let d = Arc::new(h2c_dialer(serde_json::json!({"path": "/x"})));
    let mut spare = Some(a);
    let mut streams = Vec::new();
    for _ in 0..5 {
        let raw = spare.take();
        let connect: BoxFuture<'_, io::Result<Stream>> =
            Box::pin(
                async move { raw.ok_or_else(|| io::Error::other("a second connection was made")) },
            );
        streams.push(d.open("node:80", connect).await.unwrap());
    }
    let mut jobs = Vec::new();
    for (i, s) in streams.into_iter().enumerate() {
        jobs.push(tokio::spawn(async move {
            let msg: Vec<u8> = (0..3_000_000u32)
                .map(|x| (x as usize * 7 + i) as u8)
                .collect();
            let (mut r, mut w) = tokio::io::split(s);
            let sent = msg.clone();
            let writer = tokio::spawn(async move {
                w.write_all(&sent).await.unwrap();
                w.shutdown().await.unwrap();
            });
            let mut back = Vec::new();
            r.read_to_end(&mut back).await.unwrap();
            writer.await.unwrap();
            assert_eq!(back.len(), msg.len());
            assert!(back == msg, "stream {i} bytes differ");
        }));
    }
    for j in jobs {
        j.await.unwrap();
    }
}

/// A peer that never reads: our writer stops once the stream's window is
/// used up, instead of buffering without bound.
#[tokio::test]
async fn a_peer_that_never_reads_stops_the_writer() {
    let (a, b) = pipe();
    let up = upgrade(None);
    let (keep_tx, mut keep_rx) = mpsc::channel::<Stream>(1);
    tokio::spawn(async move {
        let mut s = up.session(b).await.unwrap();
        let st = s.accept().await.unwrap().unwrap().stream;
        keep_tx.send(st).await.unwrap();
        // Keep the session (and its connection) alive.
        std::future::pending::<()>().await;
    });
    let d = h2c_dialer(serde_json::json!({}));
    let mut s = d.open("node:80", Box::pin(async { Ok(a) })).await.unwrap();
    let _unread = keep_rx.recv().await.unwrap();
    let chunk = vec![7u8; 16 * 1024];
    let mut written = 0usize;
    loop {
        match tokio::time::timeout(Duration::from_millis(300), s.write(&chunk)).await {
            Ok(Ok(n)) => written += n,
            Ok(Err(e)) => panic!("write failed: {e}"),
            Err(_) => break,
        }
        assert!(
            written <= 2 * STREAM_WINDOW as usize,
            "{written} bytes accepted"
        );
    }
    assert!(written >= 65_535, "only {written} bytes before stalling");
}

/// Garbage after the preface ends that connection as a fault; a client
/// that resets its stream ends only that stream, read as a disconnect.
#[tokio::test]
async fn garbage_and_resets() {
    let (mut a, b) = pipe();
    let up = upgrade(None);
    let session = tokio::spawn(async move {
        let mut s = up.session(b).await?;
        while s.accept().await.is_some() {}
        Ok::<_, io::Error>(s.end())
    });
    a.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    a.write_all(&[0xff; 64]).await.unwrap();
    // Refused in the handshake or by the running connection, as a fault.
    let (why, fault) = match session.await.unwrap() {
        Ok(end) => end.unwrap(),
        Err(e) => (e.to_string(), e.kind() == io::ErrorKind::InvalidData),
    };
    assert!(fault, "{why}");

    let (a, b) = pipe();
    let up = upgrade(None);
    let server = tokio::spawn(async move {
        let mut s = up.session(b).await.unwrap();
        let mut st = s.accept().await.unwrap().unwrap().stream;
        let mut buf = [0u8; 8];
        let e = loop {
            match st.read(&mut buf).await {
                Ok(0) => panic!("a reset read as an orderly end"),
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        // The connection stays up for the next stream.
        let next = s.accept().await.is_some();
        (e.kind(), next)
    });
    let (client, conn) = h2::client::handshake(a).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let connect = || {
        Request::builder()
            .method(Method::CONNECT)
            .uri("node:80")
            .body(())
            .unwrap()
    };
    let (resp, mut send) = client.send_request(connect(), false).unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    send.send_data(Bytes::from_static(b"x"), false).unwrap();
    send.send_reset(h2::Reason::CANCEL);
    let mut client = client.ready().await.unwrap();
    let (resp, _send2) = client.send_request(connect(), false).unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    let (kind, next) = server.await.unwrap();
    assert_eq!(kind, io::ErrorKind::ConnectionReset);
    assert!(next);
}
