//! The protocol handlers as a client meets them: every handler that
//! parses client bytes gets the input's request bytes on an in-memory
//! connection, with and without authentication, and its target (through
//! a `forward` chain node on loopback) answers with the input's reply
//! bytes; the same handlers behind a node whose port is closed see the
//! dial fail. Whatever the bytes name, nothing leaves loopback: the only
//! route is that node. BIND stays off (refused after parsing), as it
//! would listen on whatever address the bytes name.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use gost_core::stream::{Endpoints, Stream};
use gost_handler::{auto, http, relay, socks, ConnContext, Handler};
use gost_transport::listener::Conn;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longer than any handler's own deadline here (`readTimeout: 2s`, dial
/// timeout 2 s): a handler still running after it hangs.
const HANG: Duration = Duration::from_secs(10);

struct Rig {
    rt: tokio::runtime::Runtime,
    /// What the answering target writes to the next connection.
    answer: Arc<Mutex<Vec<u8>>>,
    handlers: Vec<(&'static str, Box<dyn Handler>)>,
}

fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let answer = Arc::new(Mutex::new(Vec::new()));
        let handlers = rt.block_on(async {
            let dead = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
                l.local_addr().expect("its address")
            };
            let mut handlers = parsing_handlers(dead, "http");
            handlers.extend(parsing_handlers(
                answering_target(answer.clone()).await,
                "forward",
            ));
            handlers
        });
        Rig {
            rt,
            answer,
            handlers,
        }
    })
}

/// A loopback target that writes the current answer to each connection,
/// closes its sending side and reads until the handler closes.
async fn answering_target(answer: Arc<Mutex<Vec<u8>>>) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = l.local_addr().expect("its address");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let bytes = answer.lock().expect("the answer").clone();
            tokio::spawn(async move {
                let _ = s.write_all(&bytes).await;
                let _ = s.shutdown().await;
                let _ = tokio::io::copy(&mut s, &mut tokio::io::sink()).await;
            });
        }
    });
    addr
}

fn parsing_handlers(node: SocketAddr, connector: &str) -> Vec<(&'static str, Box<dyn Handler>)> {
    let yaml = format!(
        "services:\n- name: s\n  addr: :0\n  handler:\n    type: socks5\n    chain: c\n  listener:\n    type: tcp\nchains:\n- name: c\n  hops:\n  - name: h\n    nodes:\n    - name: n\n      addr: {node}\n      connector:\n        type: {connector}\n"
    );
    let root = gost_core::config::Config::from_yaml_str(&yaml)
        .expect("the rig's config")
        .config;
    let mut router = gost_chain::router::build(
        &root,
        &root.services[0],
        gost_chain::registry::Registry::builtin(),
    )
    .expect("the rig's router");
    router.dial_timeout = Duration::from_secs(2);
    let md: gost_core::metadata::Metadata = [("udp", "true"), ("readTimeout", "2s")]
        .into_iter()
        .collect();
    let auther = || -> Option<Arc<dyn gost_core::auth::Auther>> {
        Some(Arc::new(gost_core::auth::StaticAuther::new([(
            "u".to_string(),
            "p".to_string(),
        )])))
    };
    let o5 = socks::Socks5Options::from_metadata(&md).expect("socks5 options");
    let o4 = socks::Socks4Options::from_metadata(&md).expect("socks4 options");
    let oh = http::HttpOptions::from_metadata(&md).expect("http options");
    let or = relay::RelayHandlerOptions::from_metadata(&md).expect("relay options");
    let socks5 = |a| socks::Socks5Handler::new(router.clone(), a, o5.clone());
    let socks4 = |a| socks::Socks4Handler::new(router.clone(), a, o4.clone());
    let http = |a| http::HttpHandler::new(router.clone(), a, oh.clone());
    let relay = |a| relay::RelayHandler::new(router.clone(), a, None, or.clone());
    vec![
        ("socks5", Box::new(socks5(None))),
        ("socks5+auth", Box::new(socks5(auther()))),
        ("socks4", Box::new(socks4(None))),
        ("socks4+auth", Box::new(socks4(auther()))),
        ("http", Box::new(http(None))),
        ("http+auth", Box::new(http(auther()))),
        ("relay", Box::new(relay(None))),
        ("relay+auth", Box::new(relay(auther()))),
        (
            "auto",
            Box::new(auto::AutoHandler::new(
                http(None),
                Arc::new(socks4(None)),
                Arc::new(socks5(None)),
            )),
        ),
    ]
}

/// `LEN(2) REQUEST ANSWER`: what the client sends, then what the target
/// answers. A handler may fail; it must not panic or hang.
pub fn handlers(data: &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let (request, answer) = rest.split_at(usize::from(u16::from_be_bytes(*len)).min(rest.len()));
    let rig = rig();
    *rig.answer.lock().expect("the answer") = answer.to_vec();
    rig.rt.block_on(async {
        for (name, h) in &rig.handlers {
            let served = tokio::time::timeout(HANG, serve(h.as_ref(), request)).await;
            assert!(served.is_ok(), "{name} did not finish");
        }
    });
}

/// One connection: the client writes `request`, closes its sending side
/// and reads whatever comes back.
async fn serve(h: &dyn Handler, request: &[u8]) {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let addr = SocketAddr::from(([127, 0, 0, 1], 1));
    let ends = Endpoints {
        local: Some(addr),
        peer: Some(addr),
    };
    let ctx = ConnContext {
        service: "fuzz".into(),
        peer: addr,
        local: addr,
        stats: None,
        traffic: None,
    };
    let client = async move {
        let _ = client.write_all(request).await;
        let _ = client.shutdown().await;
        let _ = client.read_to_end(&mut Vec::new()).await;
    };
    let conn = Conn::Stream(Stream::boxed(server, ends));
    let _ = tokio::join!(h.handle(conn, ctx), client);
}

/// Sniffing's read-ahead as a sniffing service runs it, with a body
/// prefix of up to the byte the input starts with: whatever it makes of
/// the bytes, every byte read stays in the stream, so the upstream gets
/// exactly what the client sent.
pub fn sniffing(data: &[u8]) {
    let Some((&limit, sent)) = data.split_first() else {
        return;
    };
    let rig = rig();
    rig.rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let sent = sent.to_vec();
        let writer = tokio::spawn(async move {
            let _ = client.write_all(&sent).await;
            let _ = client.shutdown().await;
        });
        let mut stream = Stream::boxed(server, Endpoints::default());
        let sniffed = tokio::time::timeout(
            HANG,
            gost_handler::sniffing::sniff(&mut stream, Duration::from_secs(2), usize::from(limit)),
        )
        .await
        .expect("sniffing did not finish");
        let _ = sniffed.request();
        let mut upstream = Vec::new();
        stream
            .read_to_end(&mut upstream)
            .await
            .expect("reading an in-memory stream");
        writer.await.expect("the writer");
        assert_eq!(upstream, data[1..], "sniffing lost or changed bytes");
    });
}
