//! GOST's HTTP/2 proxy (`-L http2://`, `-F http2://`) through the real
//! binary: gost client to gost server with authentication, many
//! connections over one HTTP/2 connection counted each; an HTTP/2 client
//! that is not ours (Python's `h2` package, installed into an ignored
//! virtual environment from `tests/requirements.txt`) for `CONNECT`, 407,
//! probe resistance and `knock`, a failed dial and a reset stream that
//! leave the connection's other streams alone; curl over HTTP/2 for a
//! plain request; and the refusal of an http2 connector without the
//! http2 dialer. Certificates are made at test time (`pki`).

use std::net::TcpStream;
use std::process::Command;

use base64::Engine;
use gost_e2e::homed::{client, logs, start, via_socks5};
use gost_e2e::pki::Pki;
use gost_e2e::tunnel::*;
use gost_e2e::*;

const BODY: &str = "hello over the http2 proxy";

/// Runs `tests/http2/proxy_client.py` with `plan` against port `port`.
fn h2_client(port: u16, plan: serde_json::Value, gs: &[&Gost]) -> serde_json::Value {
    let python = python_with_websockets();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("http2/proxy_client.py");
    let out = Command::new(python)
        .arg(script)
        .arg(port.to_string())
        .arg(plan.to_string())
        .output()
        .expect("run the python h2 client");
    assert!(
        out.status.success(),
        "h2 client failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        logs(gs)
    );
    serde_json::from_slice(&out.stdout).expect("h2 client output")
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// gost client to gost server with credentials: fetches through it, many
/// connections over one TCP connection each counted by the server; a
/// wrong password gets nowhere.
#[test]
fn gost_to_gost_over_http2_with_auth_counts_each_connection() {
    let pki = Pki::generate("http2-pair");
    let origin = http_origin("127.0.0.1:0", BODY);
    let echo = tcp_echo_server();
    let (b, api) = (free_port(), free_port());
    let server = start(
        &[
            "-L",
            &format!(
                "http2://u:p@127.0.0.1:{b}?{}&enableStats=true",
                cert_query(&pki)
            ),
            "-api",
            &format!("127.0.0.1:{api}"),
        ],
        &[b, api],
    );
    let node = format!("http2://u:p@127.0.0.1:{b}?{}", verify(&pki));
    let (c, p) = client(&[&node]);
    for _ in 0..2 {
        assert_eq!(
            via_socks5(p, origin),
            (true, BODY.to_string()),
            "{}",
            logs(&[&c, &server])
        );
    }
    const CONNS: usize = 20;
    let open: Vec<TcpStream> = (0..CONNS).map(|_| socks5_connect(p, echo)).collect();
    assert_eq!(
        established_on(b),
        1,
        "{CONNS} connections should share one HTTP/2 connection\n{}",
        logs(&[&c, &server])
    );
    echo_concurrently(open, 200_000);
    let st = wait_stats(api, "service-0", &[&c, &server], |s| {
        n(s, "currentConns") == 0 && n(s, "totalConns") == CONNS as u64 + 2
    });
    assert_eq!(n(&st, "totalErrs"), 0, "{st}");

    let bad = format!("http2://u:wrong@127.0.0.1:{b}?{}", verify(&pki));
    let (c2, p2) = client(&[&bad]);
    let (ok, _) = via_socks5(p2, origin);
    assert!(!ok, "a wrong password must not get through");
    assert!(
        c2.log().contains("407"),
        "the client should report the 407\n{}",
        logs(&[&c2])
    );
}

/// Python's h2 client: CONNECT with and without credentials, a failed
/// dial (503) and a reset stream on the same connection as a tunnel that
/// keeps working; probe resistance and a knock host.
#[test]
fn a_foreign_h2_client_gets_407_503_and_stream_errors_stay_on_their_stream() {
    let pki = Pki::generate("http2-python");
    let echo = tcp_echo_server();
    let closed = free_port();
    let (b, pr) = (free_port(), free_port());
    let server = start(
        &[
            "-L",
            &format!("http2://u:p@127.0.0.1:{b}?{}", cert_query(&pki)),
            "-L",
            &format!(
                "http2://u:p@127.0.0.1:{pr}?{}&probeResist=code:404&knock=knock.example",
                cert_query(&pki)
            ),
        ],
        &[b, pr],
    );
    let auth = basic("u", "p");
    let plan = serde_json::json!([
        {"do": "connect", "name": "noauth", "target": echo.to_string()},
        {"do": "connect", "name": "wrong", "target": echo.to_string(), "auth": basic("u", "x")},
        {"do": "connect", "name": "a", "target": echo.to_string(), "auth": auth},
        {"do": "echo", "name": "a", "data": "first"},
        {"do": "connect", "name": "dead", "target": format!("127.0.0.1:{closed}"), "auth": auth},
        {"do": "connect", "name": "b", "target": echo.to_string(), "auth": auth},
        {"do": "reset", "name": "b"},
        {"do": "echo", "name": "a", "data": "still here", "as": "a.again"},
    ]);
    let got = h2_client(b, plan, &[&server]);
    assert_eq!(got["noauth"]["status"], 407, "{got}");
    assert_eq!(
        got["noauth"]["headers"]["proxy-authenticate"], "Basic realm=\"gost\"",
        "{got}"
    );
    assert_eq!(got["wrong"]["status"], 407, "{got}");
    assert_eq!(got["a"]["status"], 200, "{got}");
    assert_eq!(got["a.echo"], "first", "{got}");
    assert_eq!(got["dead"]["status"], 503, "{got}");
    assert_eq!(got["b"]["status"], 200, "{got}");
    assert_eq!(got["a.again"], "still here", "{got}\n{}", logs(&[&server]));

    let plan = serde_json::json!([
        {"do": "connect", "name": "probe", "target": echo.to_string()},
        {"do": "connect", "name": "knock", "target": "knock.example:443"},
        {"do": "connect", "name": "ok", "target": echo.to_string(), "auth": auth},
        {"do": "echo", "name": "ok", "data": "behind probe resistance"},
    ]);
    let got = h2_client(pr, plan, &[&server]);
    assert_eq!(got["probe"]["status"], 404, "{got}");
    assert_eq!(got["knock"]["status"], 407, "{got}");
    assert_eq!(got["ok.echo"], "behind probe resistance", "{got}");
}

/// A plain (non-CONNECT) request over HTTP/2: curl's own HTTP/2 client
/// sent to the proxy (`--connect-to`), and Python's h2 with `:scheme`
/// http; the origin is plain HTTP/1.1.
#[test]
fn plain_requests_over_http2_reach_an_http1_origin() {
    let pki = Pki::generate("http2-plain");
    let origin = http_origin("127.0.0.1:0", BODY);
    let b = free_port();
    let server = start(
        &["-L", &format!("http2://127.0.0.1:{b}?{}", cert_query(&pki))],
        &[b],
    );
    let got = h2_client(
        b,
        serde_json::json!([
            {"do": "get", "name": "get", "authority": origin.to_string(), "path": "/x"},
        ]),
        &[&server],
    );
    assert_eq!(got["get"]["status"], 200, "{got}\n{}", logs(&[&server]));
    assert_eq!(got["get"]["body"], BODY, "{got}");

    // curl speaks HTTP/2 over TLS to the proxy as if it were the origin:
    // `:authority` names the origin, which the proxy then asks in HTTP/1.1.
    let (ok, body) = curl_body(&[
        "-k",
        "--http2",
        "--connect-to",
        &format!("{origin}:127.0.0.1:{b}"),
        &format!("https://{origin}/"),
    ]);
    assert!(ok, "curl failed\n{}", logs(&[&server]));
    assert_eq!(body, BODY);
}

/// The http2 connector needs the http2 dialer and the http2 handler the
/// http2 listener, as in GOST; both say so.
#[test]
fn http2_connector_and_handler_refuse_other_transports() {
    let pki = Pki::generate("http2-mismatch");
    let origin = http_origin("127.0.0.1:0", BODY);
    let (t, h) = (free_port(), free_port());
    let server = start(
        &[
            "-L",
            &format!("http+tls://127.0.0.1:{t}?{}", cert_query(&pki)),
            "-L",
            &format!("http2+tls://127.0.0.1:{h}?{}", cert_query(&pki)),
        ],
        &[t, h],
    );
    let (c, p) = client(&[&format!("http2+tls://127.0.0.1:{t}?{}", verify(&pki))]);
    let (ok, _) = via_socks5(p, origin);
    assert!(!ok);
    // The log is read from the process's output by a thread of its own,
    // so the line may land a moment after the client sees the refusal.
    c.wait_log("needs the http2 dialer");
    let (_c2, p2) = client(&[&format!("http+tls://127.0.0.1:{h}?{}", verify(&pki))]);
    let (ok, _) = via_socks5(p2, origin);
    assert!(!ok);
    server.wait_log("serves the http2 listener only");
}
