//! GOST's reverse tunnels through the real binary: a public gost with the
//! `tunnel` handler (ingress, entry point), private gost clients that
//! register a tunnel id with an `rtcp`/`rudp` service over a `tunnel`
//! chain node, and local targets. GOST's own ingress e2e case is replayed
//! with its configs; bad input (unknown ids, wrong credentials, floods,
//! broken frames) is refused, counted and logged.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use gost_e2e::homed::{logs, spawn, start, Proc};
use gost_e2e::*;

/// GOST's e2e ingress id.
const TID: &str = "6be39003-f4fa-49e4-a6ef-1997684d160e";
const TID2: &str = "3f8e5b56-6a8b-4a4f-9a35-2a2bbc3f0f01";

/// An HTTP origin answering `body`, counting the requests it gets.
fn counting_origin(body: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { break };
            h.fetch_add(1, Ordering::SeqCst);
            thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut b) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = c.write_all(resp.as_bytes());
            });
        }
    });
    (addr, hits)
}

/// curl to the entry point with `Host: host`: (status, body).
fn get_host(port: u16, host: &str) -> (String, String) {
    let out = std::process::Command::new("/usr/bin/curl")
        .args(["-s", "--max-time", "5", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Host: {host}"))
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_string(), body.to_string())
}

/// Retries `get_host` until `want` is in the body (the client registered).
fn wait_host(port: u16, host: &str, want: &str, gs: &[&Gost]) {
    let start = Instant::now();
    loop {
        let (_, body) = get_host(port, host);
        if body.contains(want) {
            return;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "{host} never reached {want:?}\n{}",
            logs(gs)
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// The public side of GOST's ingress e2e test (testdata/ingress/server.yaml)
/// on fresh ports.
fn server_yaml(port: u16, entry: u16, extra: &str) -> String {
    format!(
        "services:
  - name: service-0
    addr: 127.0.0.1:{port}
    handler:
      type: tunnel
      metadata:
        entrypoint: 127.0.0.1:{entry}
        ingress: ingress-0
{extra}    listener:
      type: tcp
ingresses:
  - name: ingress-0
    rules:
      - hostname: example.local
        endpoint: {TID}
"
    )
}

/// The private side (testdata/ingress/client.yaml): an rtcp service over
/// a tunnel node, forwarding to `target`.
fn client_yaml(server: &str, target: SocketAddr, tid: &str, extra_md: &str) -> String {
    format!(
        "services:
  - name: service-0
    addr: :0
    handler:
      type: rtcp
    listener:
      type: rtcp
      chain: chain-0
    forwarder:
      nodes:
        - addr: {target}
chains:
  - name: chain-0
    hops:
      - nodes:
        - addr: {server}
          connector:
            type: tunnel
            metadata:
              tunnel.id: {tid}
{extra_md}          dialer:
            type: tcp
"
    )
}

fn with_config(dir: &TempDir, name: &str, yaml: &str, ports: &[u16]) -> Proc {
    let path = dir.write(name, yaml);
    start(&["-C", &path], ports)
}

/// GOST's IngressSuite: a mapped Host reaches the target through the
/// tunnel; an unmapped one gets no route and never reaches it.
#[test]
fn ingress_routes_a_mapped_host_and_refuses_an_unmapped_one() {
    let dir = TempDir::new("tunnel-ingress");
    let (origin, hits) = counting_origin("hello-gost");
    let (port, entry) = (free_port(), free_port());
    let server = with_config(
        &dir,
        "server.yaml",
        &server_yaml(port, entry, ""),
        &[port, entry],
    );
    let client = with_config(
        &dir,
        "client.yaml",
        &client_yaml(&format!("127.0.0.1:{port}"), origin, TID, ""),
        &[],
    );
    wait_host(entry, "example.local", "hello-gost", &[&server, &client]);
    let before = hits.load(Ordering::SeqCst);
    let (code, body) = get_host(entry, "nomapped.local");
    assert_eq!(code, "502", "{body}\n{}", logs(&[&server]));
    assert!(!body.contains("hello-gost"));
    thread::sleep(Duration::from_millis(200));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        before,
        "the unmapped host reached the target"
    );
    server.wait_log("no route to host");
    // A wildcard-free rule does not match a subdomain either.
    assert_eq!(get_host(entry, "www.example.local").0, "502");
}

/// `tunnel` inline rules with a wildcard, TLS routed by SNI, and a
/// visitor gost reaching the tunnel by port through the entry point's
/// relay path and through the handler's own port with `tunnel.direct`.
#[test]
fn tcp_by_port_tls_by_sni_and_wildcards() {
    let echo = tcp_echo_server();
    let (port, entry) = (free_port(), free_port());
    let server = start(
        &[
            "-L",
            &format!("tunnel://127.0.0.1:{port}?entrypoint=127.0.0.1:{entry}&tunnel=*.example.org:{TID}&tunnel.direct=true"),
        ],
        &[port, entry],
    );
    let client = start(
        &[
            "-L",
            &format!("rtcp://:0/{echo}"),
            "-F",
            &format!("tunnel://127.0.0.1:{port}?tunnel.id={TID}"),
        ],
        &[],
    );
    server.wait_log("tunnel: client registered");
    // By port: a visitor gost's tcp port, over the entry point (relay
    // request naming the id) and over the handler (tunnel.direct).
    for at in [entry, port] {
        let vport = free_port();
        let visitor = start(
            &[
                "-L",
                &format!("tcp://127.0.0.1:{vport}/anything:22"),
                "-F",
                &format!("tunnel://127.0.0.1:{at}?tunnel.id={TID}"),
            ],
            &[vport],
        );
        let mut c = TcpStream::connect(("127.0.0.1", vport)).unwrap();
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        let msg = random_bytes(200_000, 7);
        let mut w = c.try_clone().unwrap();
        let m2 = msg.clone();
        let writer = thread::spawn(move || w.write_all(&m2).unwrap());
        let mut back = vec![0u8; msg.len()];
        c.read_exact(&mut back).unwrap_or_else(|e| {
            panic!(
                "echo via :{at}: {e}\n{}",
                logs(&[&server, &client, &visitor])
            )
        });
        writer.join().unwrap();
        assert_eq!(back, msg);
    }
    // TLS by SNI: the entry point passes the handshake through to the
    // echo target, which echoes the ClientHello back.
    let hello = tls_client_hello("db.example.org");
    let mut c = TcpStream::connect(("127.0.0.1", entry)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(&hello).unwrap();
    let mut back = vec![0u8; hello.len()];
    c.read_exact(&mut back).unwrap();
    assert_eq!(back, hello);
    // An SNI no rule maps is closed without a byte.
    let mut c = TcpStream::connect(("127.0.0.1", entry)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(&tls_client_hello("db.example.net")).unwrap();
    let mut b = [0u8; 1];
    assert!(matches!(c.read(&mut b), Ok(0) | Err(_)));
}

/// A minimal TLS 1.2 ClientHello record with `sni`.
fn tls_client_hello(sni: &str) -> Vec<u8> {
    let name = sni.as_bytes();
    let mut sni_ext = Vec::new();
    sni_ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    sni_ext.push(0);
    sni_ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni_ext.extend_from_slice(name);
    let mut exts = vec![0, 0];
    exts.extend_from_slice(&(sni_ext.len() as u16).to_be_bytes());
    exts.extend_from_slice(&sni_ext);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7u8; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01]);
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// UDP: an rudp client registers a UDP connector; a visitor gost's udp
/// port reaches the private UDP echo through the tunnel.
#[test]
fn udp_through_rudp_over_a_tunnel() {
    let echo = udp_echo_server();
    let port = free_port();
    let server = start(
        &[
            "-L",
            &format!("tunnel://127.0.0.1:{port}?tunnel.direct=true"),
        ],
        &[port],
    );
    let client = start(
        &[
            "-L",
            &format!("rudp://:0/{echo}"),
            "-F",
            &format!("tunnel://127.0.0.1:{port}?tunnel.id={TID}"),
        ],
        &[],
    );
    server.wait_log("\"network\":\"udp\"");
    let vport = free_udp_port();
    let visitor = spawn(&[
        "-L",
        &format!("udp://127.0.0.1:{vport}/x:53"),
        "-F",
        &format!("tunnel://127.0.0.1:{port}?tunnel.id={TID}"),
    ]);
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    let mut got = 0;
    while got < 5 {
        let msg = format!("datagram {got}");
        let _ = s.send_to(msg.as_bytes(), ("127.0.0.1", vport));
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            if &buf[..n] == msg.as_bytes() {
                got += 1;
            }
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "no udp echo through the tunnel\n{}",
            logs(&[&server, &client, &visitor])
        );
    }
}

/// Starts a client registering `tid` with `weight`, forwarding to
/// `target`.
fn tunnel_client(server: u16, target: SocketAddr, tid: &str, weight: u8) -> Proc {
    spawn(&[
        "-L",
        &format!("rtcp://:0/{target}"),
        "-F",
        &format!("tunnel://127.0.0.1:{server}?tunnel.id={tid}&tunnel.weight={weight}"),
    ])
}

/// A TCP server that sends `name` first, then echoes.
fn greeting_echo(name: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { break };
            thread::spawn(move || {
                if c.write_all(name.as_bytes()).is_err() {
                    return;
                }
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || c.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A connection through the visitor port and the name of the client's
/// target it reached.
fn open_named(port: u16) -> (TcpStream, String) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut name = [0u8; 1];
    c.read_exact(&mut name).unwrap();
    (c, String::from_utf8_lossy(&name).into_owned())
}

/// Echoes `msg` on `c`; false if the connection broke.
fn echoes(c: &mut TcpStream, msg: &[u8]) -> bool {
    let mut back = vec![0u8; msg.len()];
    c.write_all(msg).is_ok() && c.read_exact(&mut back).is_ok() && back == msg
}

/// Two clients of one tunnel id share new connections by weight; one
/// killed mid-transfer ends its own visitors' connections only: the
/// other's carry on, every new connection goes to the survivor, and the
/// public side logs the loss.
#[test]
fn two_clients_share_a_tunnel_and_one_dies_mid_transfer() {
    let (a, b) = (greeting_echo("A"), greeting_echo("B"));
    let port = free_port();
    let server = start(
        &[
            "-L",
            &format!("tunnel://127.0.0.1:{port}?tunnel.direct=true"),
        ],
        &[port],
    );
    let ca = tunnel_client(port, a, TID, 1);
    let mut cb = tunnel_client(port, b, TID, 1);
    let vport = free_port();
    let v = start(
        &[
            "-L",
            &format!("tcp://127.0.0.1:{vport}/x:1"),
            "-F",
            &format!("tunnel://127.0.0.1:{port}?tunnel.id={TID}"),
        ],
        &[vport],
    );
    let t = Instant::now();
    while server.log().matches("tunnel: client registered").count() < 2 {
        assert!(t.elapsed() < TIMEOUT, "{}", logs(&[&server, &ca, &cb, &v]));
        thread::sleep(Duration::from_millis(50));
    }
    let mut open: Vec<(TcpStream, String)> = (0..30).map(|_| open_named(vport)).collect();
    let count = |open: &[(TcpStream, String)], n: &str| open.iter().filter(|(_, x)| x == n).count();
    assert!(
        count(&open, "A") >= 5 && count(&open, "B") >= 5,
        "load not shared: A {} B {}\n{}",
        count(&open, "A"),
        count(&open, "B"),
        logs(&[&server, &ca, &cb, &v])
    );
    let chunk = random_bytes(64 * 1024, 3);
    for (c, _) in open.iter_mut() {
        assert!(echoes(c, &chunk));
    }
    cb.stop();
    server.wait_log("tunnel: client left");
    for (c, name) in open.iter_mut() {
        let ok = echoes(c, &chunk);
        assert_eq!(
            ok,
            name == "A",
            "a connection to {name} after B died\n{}",
            logs(&[&server])
        );
    }
    for i in 0..20 {
        let (mut c, name) = open_named(vport);
        assert_eq!(
            name,
            "A",
            "new connection {i} after B died\n{}",
            logs(&[&server])
        );
        assert!(echoes(&mut c, b"still"));
    }
}

/// The client re-registers after the public side restarts (the rtcp
/// listener binds again with back-off).
#[test]
fn a_client_reconnects_after_the_public_side_restarts() {
    let (port, entry) = (free_port(), free_port());
    let args = [
        "-L".to_string(),
        format!("tunnel://127.0.0.1:{port}?entrypoint=127.0.0.1:{entry}&tunnel=app.local:{TID}"),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (origin, _) = counting_origin("private");
    let mut server = start(&args, &[port, entry]);
    let client = tunnel_client(port, origin, TID, 0);
    wait_host(entry, "app.local", "private", &[&server, &client]);
    server.stop();
    let server = start(&args, &[port, entry]);
    wait_host(entry, "app.local", "private", &[&server, &client]);
    assert!(
        client.log().contains("binding again") || client.log().matches("registered").count() >= 2,
        "{}",
        logs(&[&client])
    );
}

/// The chain to the public side over tls and wss.
#[test]
fn the_chain_over_tls_and_wss() {
    let (origin, _) = counting_origin("over-transport");
    for transport in ["tls", "wss"] {
        let (port, entry) = (free_port(), free_port());
        let server = start(
            &[
                "-L",
                &format!(
                    "tunnel+{transport}://127.0.0.1:{port}?entrypoint=127.0.0.1:{entry}&tunnel=app.local:{TID}"
                ),
            ],
            &[port, entry],
        );
        let client = spawn(&[
            "-L",
            &format!("rtcp://:0/{origin}"),
            "-F",
            &format!("tunnel+{transport}://127.0.0.1:{port}?tunnel.id={TID}"),
        ]);
        wait_host(entry, "app.local", "over-transport", &[&server, &client]);
    }
}

/// A raw relay request to the handler; the 4-byte answer, if any.
fn raw_request(port: u16, bytes: &[u8]) -> Option<[u8; 4]> {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(bytes).unwrap();
    let mut a = [0u8; 4];
    c.read_exact(&mut a).ok().map(|_| a)
}

fn tunnel_feature(tid: &str, weight: u8) -> Vec<u8> {
    let hex: String = tid.chars().filter(|c| *c != '-').collect();
    let mut f = vec![3, 0, 20];
    for i in 0..16 {
        f.push(u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap());
    }
    f.extend_from_slice(&[0, 0, 0, weight]);
    f
}

fn request(cmd: u8, features: &[u8]) -> Vec<u8> {
    let mut r = vec![1, cmd];
    r.extend_from_slice(&(features.len() as u16).to_be_bytes());
    r.extend_from_slice(features);
    r
}

/// Unknown ids, wrong credentials, a registration flood and malformed
/// frames: each refused with GOST's status (or closed), counted, logged;
/// the registered client keeps serving throughout.
#[test]
fn bad_input_is_refused_counted_and_logged() {
    let (origin, _) = counting_origin("still-here");
    let (port, entry, api) = (free_port(), free_port(), free_port());
    let server = start(
        &[
            "-L",
            &format!("tunnel://u:p@127.0.0.1:{port}?entrypoint=127.0.0.1:{entry}&tunnel=app.local:{TID}&enableStats=true"),
            "-api",
            &format!("127.0.0.1:{api}"),
        ],
        &[port, entry, api],
    );
    // Wrong credentials: the client's registration is refused.
    let bad = spawn(&[
        "-L",
        &format!("rtcp://:0/{origin}"),
        "-F",
        &format!("tunnel://u:wrong@127.0.0.1:{port}?tunnel.id={TID}"),
    ]);
    server.wait_log("authentication failed");
    bad.wait_log("unauthorized");
    let good = spawn(&[
        "-L",
        &format!("rtcp://:0/{origin}"),
        "-F",
        &format!("tunnel://u:p@127.0.0.1:{port}?tunnel.id={TID}"),
    ]);
    wait_host(entry, "app.local", "still-here", &[&server, &good]);
    let auth = [1, 0, 4, 1, b'u', 1, b'p'];
    // An unknown tunnel id: service unavailable (5).
    let mut f = auth.to_vec();
    f.extend_from_slice(&[2, 0, 7, 1, 127, 0, 0, 1, 0, 1]);
    f.extend_from_slice(&[2, 0, 7, 1, 127, 0, 0, 1, 0, 2]);
    f.extend_from_slice(&tunnel_feature(TID2, 0));
    assert_eq!(raw_request(entry, &request(1, &f)), Some([1, 5, 0, 0]));
    // Through the handler the unknown id has no route (host unreachable).
    assert_eq!(raw_request(port, &request(1, &f)), Some([1, 6, 0, 0]));
    // No tunnel id: bad request.
    assert_eq!(raw_request(port, &request(1, &auth)), Some([1, 1, 0, 0]));
    // Malformed: a wrong version, a truncated feature, garbage: closed.
    assert_eq!(raw_request(port, &[5, 1, 0, 0]), None);
    assert_eq!(raw_request(port, &[1, 1, 0, 5, 3, 0, 20, 1, 2]), None);
    assert_eq!(raw_request(port, &request(1, &[3, 0, 4, 1, 2, 3, 4])), None);
    assert_eq!(raw_request(entry, b"\x00\x01garbage\r\n\r\n"), None);
    // A registration flood on one id: 64 clients at most, then refused.
    let mut bind = auth.to_vec();
    bind.extend_from_slice(&[2, 0, 7, 1, 0, 0, 0, 0, 0, 0]);
    bind.extend_from_slice(&[2, 0, 7, 1, 0, 0, 0, 0, 0, 0]);
    bind.extend_from_slice(&tunnel_feature(TID2, 0));
    let bind = request(2, &bind);
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..70 {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(&bind).unwrap();
        let mut head = [0u8; 4];
        c.read_exact(&mut head).unwrap();
        if head[1] == 5 {
            refused += 1;
        } else {
            assert_eq!(head[1], 0);
            let mut rest = vec![0u8; u16::from_be_bytes([head[2], head[3]]) as usize];
            c.read_exact(&mut rest).unwrap();
            held.push(c);
        }
    }
    assert_eq!((held.len(), refused), (64, 6), "{}", logs(&[&server]));
    server.wait_log("it has 64 clients already");
    // The registered client kept serving.
    assert_eq!(get_host(entry, "app.local").1, "still-here");
    drop(held);
    // Refusals are counted as errors of the service.
    let s = gost_e2e::tunnel::stats(api, "service-0");
    assert!(gost_e2e::tunnel::n(&s, "totalErrs") >= 6, "{s}");
    // The connected clients are listed by the API.
    let (code, body) = http_get(api, "/tunnels", None);
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let list = &v["data"]["services"]["service-0"]["connectors"];
    assert!(
        list.as_array()
            .is_some_and(|l| l.iter().any(|c| c["tunnel"] == TID)),
        "{v}"
    );
}

/// The ingress changes live through the web API: a new rule routes a new
/// host at once, and the client registered before stays registered.
#[test]
fn ingress_rules_change_live_through_the_api() {
    let dir = TempDir::new("tunnel-api");
    let (origin, _) = counting_origin("hello-gost");
    let (port, entry, api) = (free_port(), free_port(), free_port());
    let yaml = format!(
        "{}api:\n  addr: 127.0.0.1:{api}\n",
        server_yaml(port, entry, "")
    );
    let server = with_config(&dir, "server.yaml", &yaml, &[port, entry, api]);
    let client = with_config(
        &dir,
        "client.yaml",
        &client_yaml(&format!("127.0.0.1:{port}"), origin, TID, ""),
        &[],
    );
    wait_host(entry, "example.local", "hello-gost", &[&server, &client]);
    assert_eq!(get_host(entry, "new.local").0, "502");
    let (code, body) = http_request(
        api,
        "PUT",
        "/config/ingresses/ingress-0",
        Some(&format!(
            r#"{{"name":"ingress-0","rules":[{{"hostname":"example.local","endpoint":"{TID}"}},{{"hostname":"*.new.local","endpoint":"{TID}"}}]}}"#
        )),
        None,
    );
    assert_eq!(code, 200, "{body}");
    let (code, body) = http_get(api, "/config/ingresses/ingress-0", None);
    assert!(code == 200 && body.contains("*.new.local"), "{body}");
    assert_eq!(
        get_host(entry, "new.local").1,
        "hello-gost",
        "{}",
        logs(&[&server])
    );
    assert_eq!(get_host(entry, "a.new.local").1, "hello-gost");
    // A rule whose endpoint is not a tunnel id is refused.
    let (code, body) = http_request(
        api,
        "POST",
        "/config/ingresses",
        Some(r#"{"name":"bad","rules":[{"hostname":"x","endpoint":"nope"}]}"#),
        None,
    );
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        client.log().matches("tunnel connector: registered").count(),
        1,
        "the client had to register again\n{}",
        logs(&[&client])
    );
}

/// A keep-alive origin whose bodies carry its name and the request's
/// `Gost-Sid` and `Gost-Forwarded-Node`.
fn header_origin(name: &'static str) -> SocketAddr {
    use std::io::{BufRead, BufReader};
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { break };
            thread::spawn(move || {
                let mut w = c.try_clone().unwrap();
                let mut r = BufReader::new(c);
                loop {
                    let (mut sid, mut node) = (String::new(), String::new());
                    let mut first = true;
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end();
                        if line.is_empty() && !first {
                            break;
                        }
                        first = false;
                        if let Some((k, v)) = line.split_once(':') {
                            match k.to_ascii_lowercase().as_str() {
                                "gost-sid" => sid = v.trim().into(),
                                "gost-forwarded-node" => node = v.trim().into(),
                                _ => {}
                            }
                        }
                    }
                    let body = format!("{name} sid={sid} node={node}");
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if w.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// One response with a `Content-Length` body off `r`: (status line,
/// body).
fn next_response(r: &mut std::io::BufReader<TcpStream>) -> (String, String) {
    use std::io::BufRead;
    let (mut status, mut len) = (String::new(), 0usize);
    loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "closed");
        if status.is_empty() {
            status = line.trim_end().to_string();
            continue;
        }
        if line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// GOST's entry point is an HTTP reverse proxy: each request of a visitor
/// connection is routed by its own Host, carries `Gost-Sid` (one per
/// visitor connection) and `Gost-Forwarded-Node` (the handler's id); a
/// request already carrying that id has looped and gets 503, a host
/// without a route 502, and the connection goes on.
#[test]
fn the_entry_point_routes_each_http_request_and_adds_gosts_headers() {
    let dir = TempDir::new("tunnel-per-request");
    let (a, b) = (header_origin("A"), header_origin("B"));
    let (port, entry) = (free_port(), free_port());
    let server_cfg = server_yaml(port, entry, "").replace(
        "        endpoint: {TID}\n".replace("{TID}", TID).as_str(),
        &format!("        endpoint: {TID}\n      - hostname: b.local\n        endpoint: {TID2}\n"),
    );
    let server = with_config(&dir, "server.yaml", &server_cfg, &[port, entry]);
    let srv = format!("127.0.0.1:{port}");
    let ca = with_config(&dir, "a.yaml", &client_yaml(&srv, a, TID, ""), &[]);
    let cb = with_config(&dir, "b.yaml", &client_yaml(&srv, b, TID2, ""), &[]);
    wait_host(entry, "example.local", "A sid=", &[&server, &ca]);
    wait_host(entry, "b.local", "B sid=", &[&server, &cb]);
    let c = TcpStream::connect(("127.0.0.1", entry)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut w = c.try_clone().unwrap();
    let mut r = std::io::BufReader::new(c);
    let mut ask = |host: &str, extra: &str| {
        write!(w, "GET / HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n").unwrap();
        next_response(&mut r)
    };
    let (s1, b1) = ask("example.local", "");
    let (s2, b2) = ask("b.local", "");
    assert!(s1.contains("200") && s2.contains("200"), "{s1} {s2}");
    let field = |body: &str, k: &str| {
        body.split_whitespace()
            .find_map(|p| p.strip_prefix(k))
            .unwrap_or("")
            .to_string()
    };
    assert!(b1.starts_with("A ") && b2.starts_with("B "), "{b1} / {b2}");
    let (sid, node) = (field(&b1, "sid="), field(&b1, "node="));
    assert_eq!(sid.len(), 20, "{b1}");
    assert_eq!(node.len(), 36, "{b1}");
    assert_eq!(
        (field(&b2, "sid="), field(&b2, "node=")),
        (sid.clone(), node.clone())
    );
    // A visitor's own session id is kept.
    let (_, b3) = ask("example.local", "Gost-Sid: mine\r\n");
    assert_eq!(field(&b3, "sid="), "mine", "{b3}");
    let (s4, _) = ask(
        "example.local",
        &format!("Gost-Forwarded-Node: x, {node}\r\n"),
    );
    assert!(s4.contains("503"), "{s4}");
    let (s5, _) = ask("unmapped.local", "");
    assert!(s5.contains("502"), "{s5}");
    let (s6, b6) = ask("b.local", "");
    assert!(s6.contains("200") && b6.starts_with("B "), "{s6} {b6}");
}

/// `entrypoint.proxyProtocol`: a PROXY header (v1 or v2) before the
/// visitor's bytes is taken off and its source stands for the visitor;
/// a connection without one is served as it is (go-proxyproto's default).
#[test]
fn the_entry_point_takes_proxy_protocol_headers() {
    let dir = TempDir::new("tunnel-proxy-protocol");
    let a = header_origin("A");
    let (port, entry) = (free_port(), free_port());
    let server = with_config(
        &dir,
        "server.yaml",
        &server_yaml(port, entry, "        entrypoint.proxyProtocol: 2\n"),
        &[port, entry],
    );
    let srv = format!("127.0.0.1:{port}");
    let client = with_config(&dir, "a.yaml", &client_yaml(&srv, a, TID, ""), &[]);
    wait_host(entry, "example.local", "A sid=", &[&server, &client]);
    let ask = |prefix: &[u8], host: &str| {
        let c = TcpStream::connect(("127.0.0.1", entry)).unwrap();
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut w = c.try_clone().unwrap();
        w.write_all(prefix).unwrap();
        write!(w, "GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
        next_response(&mut std::io::BufReader::new(c))
    };
    let (s, b) = ask(
        b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 80\r\n",
        "example.local",
    );
    assert!(
        s.contains("200") && b.starts_with("A "),
        "{s} {b}\n{}",
        logs(&[&server])
    );
    let (s, _) = ask(
        b"PROXY TCP4 203.0.113.7 127.0.0.1 40001 80\r\n",
        "nomapped.local",
    );
    assert!(s.contains("502"), "{s}");
    server.wait_log("203.0.113.7:40001");
    // v2: signature, PROXY command, TCP over IPv4, 12 address bytes.
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend([198, 51, 100, 9, 127, 0, 0, 1]);
    v2.extend(40002u16.to_be_bytes());
    v2.extend(80u16.to_be_bytes());
    let (s, _) = ask(&v2, "nomapped.local");
    assert!(s.contains("502"), "{s}");
    server.wait_log("198.51.100.9:40002");
    let (s, b) = ask(b"", "example.local");
    assert!(s.contains("200") && b.starts_with("A "), "{s} {b}");
}

/// `entrypoints`: another entry point with its own ingress, beside the
/// handler's `entrypoint` with the handler's.
#[test]
fn more_entry_points_each_with_its_ingress() {
    let dir = TempDir::new("tunnel-entrypoints");
    let (a, b) = (header_origin("A"), header_origin("B"));
    let (port, entry, entry2) = (free_port(), free_port(), free_port());
    let extra = format!(
        "        entrypoints:\n          - addr: 127.0.0.1:{entry2}\n            ingress: ingress-1\n"
    );
    let cfg = format!(
        "{}  - name: ingress-1\n    rules:\n      - hostname: b.local\n        endpoint: {TID2}\n",
        server_yaml(port, entry, &extra)
    );
    let server = with_config(&dir, "server.yaml", &cfg, &[port, entry, entry2]);
    let srv = format!("127.0.0.1:{port}");
    let ca = with_config(&dir, "a.yaml", &client_yaml(&srv, a, TID, ""), &[]);
    let cb = with_config(&dir, "b.yaml", &client_yaml(&srv, b, TID2, ""), &[]);
    wait_host(entry, "example.local", "A sid=", &[&server, &ca]);
    wait_host(entry2, "b.local", "B sid=", &[&server, &cb]);
    assert_eq!(get_host(entry2, "example.local").0, "502");
    assert_eq!(get_host(entry, "b.local").0, "502");
}

/// An HTTP observer that keeps every POSTed body and answers ok.
fn observer_sink() -> (u16, Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    use std::io::{BufRead, BufReader};
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = got.clone();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { break };
            let mut r = BufReader::new(c);
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0u8; len];
            if r.read_exact(&mut body).is_err() {
                continue;
            }
            if let Ok(v) = serde_json::from_slice(&body) {
                seen.lock().unwrap().push(v);
            }
            let _ = r.get_mut().write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}",
            );
        }
    });
    (port, got)
}

/// GOST's tunnel handler `handler.observer`: a `handler` stats event per
/// tunnel id (the client field), counting its visitors' connections and
/// bytes.
#[test]
fn handler_observer_reports_per_tunnel() {
    let dir = TempDir::new("tunnel-observer");
    let (origin, _) = counting_origin("hello-gost");
    let (obs, got) = observer_sink();
    let (port, entry) = (free_port(), free_port());
    let extra = "        observer.period: 1s\n";
    let cfg = server_yaml(port, entry, extra).replace(
        "      type: tunnel\n",
        "      type: tunnel\n      observer: web\n",
    ) + &format!(
        "observers:\n  - name: web\n    plugin: {{type: http, addr: 127.0.0.1:{obs}/observe}}\n"
    );
    let server = with_config(&dir, "server.yaml", &cfg, &[port, entry]);
    let srv = format!("127.0.0.1:{port}");
    let client = with_config(&dir, "c.yaml", &client_yaml(&srv, origin, TID, ""), &[]);
    wait_host(entry, "example.local", "hello-gost", &[&server, &client]);
    for _ in 0..2 {
        assert_eq!(get_host(entry, "example.local").0, "200");
    }
    let start = Instant::now();
    loop {
        let latest = got
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| b["events"].as_array().cloned().unwrap_or_default())
            .rfind(|e| e["kind"] == "handler" && e["client"] == TID);
        if let Some(ev) = latest {
            let s = &ev["stats"];
            if s["totalConns"].as_u64().unwrap_or(0) >= 3 && s["currentConns"] == 0 {
                assert_eq!(ev["service"], "service-0");
                assert!(s["outputBytes"].as_u64().unwrap() > 3 * 10, "{ev}");
                assert!(s["inputBytes"].as_u64().unwrap() > 0, "{ev}");
                break;
            }
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "no per-tunnel event: {:?}\n{}",
            got.lock().unwrap(),
            logs(&[&server])
        );
        thread::sleep(Duration::from_millis(200));
    }
}
