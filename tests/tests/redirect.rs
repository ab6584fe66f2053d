//! The transparent proxy (`red`) in a network namespace of its own, with
//! real nftables rules: an nftables `redirect` (iptables REDIRECT) steers
//! a client's connections to gost, which finds their destination with
//! SO_ORIGINAL_DST; a `tproxy` rule (TPROXY, with its policy routing)
//! delivers them to a transparent listener, whose socket address is the
//! destination; with `sniffing` the HTTP Host names the target. `redu`
//! gets datagrams by TPROXY and relays them to their original
//! destination, directly or through a socks5 node, until `ttl`. The
//! client runs as `nobody` so the rules match its connections and not
//! gost's own. The origin, gost and the client all run inside the
//! namespace, which is deleted afterwards, pass or fail.
//!
//! Needs root (to create the namespace) and nftables (installed with
//! apt-get the first time it is missing); without them each test says
//! why and passes without running. The manual steps are in
//! docs/handlers.md.

use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use gost_e2e::netns::{gost_in, system_python, Killed, Netns};
use gost_e2e::*;

/// An HTTP origin in the namespace on every address at `port`, serving
/// `index.html` with `body`.
fn origin(ns: &Netns, dir: &TempDir, port: u16, body: &str) -> Killed {
    dir.write("index.html", body);
    Killed(
        ns.exec("python3")
            .args(["-m", "http.server", &port.to_string(), "--bind", "0.0.0.0"])
            .arg("--directory")
            .arg(&dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3"),
    )
}

/// curl as `nobody` in the namespace, retried until `want` comes back.
fn curl_as_nobody(ns: &Netns, args: &[&str], want: &str, g: &Gost) {
    let start = Instant::now();
    loop {
        let out = ns
            .exec("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "curl"])
            .args(["-s", "-m", "5"])
            .args(args)
            .output()
            .unwrap();
        let body = String::from_utf8_lossy(&out.stdout);
        if body.contains(want) {
            return;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "curl {args:?} never got {want:?} (last: {body:?}); log:\n{}",
            g.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// REDIRECT: the client's connection to the origin lands on gost, which
/// reads the original destination with SO_ORIGINAL_DST and dials it.
#[test]
fn red_finds_the_redirected_destination() {
    let Some(ns) = Netns::create("red") else {
        return;
    };
    let dir = TempDir::new("red-www");
    let (origin_port, red) = (free_port(), free_port());
    let _origin = origin(&ns, &dir, origin_port, "hello from the origin");
    ns.nft(&format!(
        "table ip gost {{\n chain out {{\n  type nat hook output priority -100;\n  \
         meta skuid 65534 tcp dport {origin_port} redirect to :{red}\n }}\n}}\n"
    ));
    let g = gost_in(&ns, &["-D", "-L", &format!("red://127.0.0.1:{red}")]);
    curl_as_nobody(
        &ns,
        &[&format!("http://127.0.0.1:{origin_port}/")],
        "hello from the origin",
        &g,
    );
    g.wait_log(&format!(r#""dst":"127.0.0.1:{origin_port}""#));
}

/// TPROXY: the connection keeps its destination as the accepted socket's
/// local address on a transparent listener (`tproxy` on listener and
/// handler, as `?tproxy=true` sets both).
#[test]
fn red_tproxy_takes_the_socket_address() {
    let Some(ns) = Netns::create("tproxy") else {
        return;
    };
    let dir = TempDir::new("tproxy-www");
    let (origin_port, red) = (free_port(), free_port());
    let _origin = origin(&ns, &dir, origin_port, "hello through tproxy");
    // Marked packets of the client are routed back in through lo, where
    // the prerouting rule hands them to gost's transparent socket.
    ns.ip(&["rule", "add", "fwmark", "1", "lookup", "100"]);
    ns.ip(&[
        "route",
        "add",
        "local",
        "0.0.0.0/0",
        "dev",
        "lo",
        "table",
        "100",
    ]);
    ns.nft(&format!(
        "table ip gost {{\n chain pre {{\n  type filter hook prerouting priority -150;\n  \
         meta mark 1 tcp dport {origin_port} tproxy to 127.0.0.1:{red}\n }}\n \
         chain out {{\n  type route hook output priority -150;\n  \
         meta skuid 65534 tcp dport {origin_port} meta mark set 1\n }}\n}}\n"
    ));
    let g = gost_in(
        &ns,
        &["-D", "-L", &format!("red://127.0.0.1:{red}?tproxy=true")],
    );
    curl_as_nobody(
        &ns,
        &[&format!("http://127.0.0.1:{origin_port}/")],
        "hello through tproxy",
        &g,
    );
    g.wait_log(&format!(r#""dst":"127.0.0.1:{origin_port}""#));
}

/// `sniffing`: the HTTP Host names the target, on the original port.
#[test]
fn red_sniffing_dials_the_host_the_request_names() {
    let Some(ns) = Netns::create("redsniff") else {
        return;
    };
    let dir = TempDir::new("redsniff-www");
    let (origin_port, red) = (free_port(), free_port());
    let _origin = origin(&ns, &dir, origin_port, "hello by host name");
    ns.nft(&format!(
        "table ip gost {{\n chain out {{\n  type nat hook output priority -100;\n  \
         meta skuid 65534 tcp dport {origin_port} redirect to :{red}\n }}\n}}\n"
    ));
    let g = gost_in(
        &ns,
        &["-D", "-L", &format!("red://127.0.0.1:{red}?sniffing=true")],
    );
    curl_as_nobody(
        &ns,
        &[
            "-H",
            "Host: 127.0.0.2",
            &format!("http://127.0.0.1:{origin_port}/"),
        ],
        "hello by host name",
        &g,
    );
    g.wait_log(&format!(r#""dst":"127.0.0.2:{origin_port}""#));
}

/// A UDP echo target in the namespace on every address at `port`,
/// answering `echo:` and the datagram. It shares the port with gost's
/// per-session sockets bound to the original destination, so it sets
/// SO_REUSEADDR as they do.
fn udp_echo(ns: &Netns, port: u16) -> Killed {
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('0.0.0.0', {port}))\n\
         while True:\n    d, a = s.recvfrom(65535)\n    s.sendto(b'echo:' + d, a)\n"
    );
    Killed(
        ns.exec("python3")
            .args(["-c", &script])
            .stdout(Stdio::null())
            .spawn()
            .expect("python3"),
    )
}

/// As `nobody`, from one socket: `count` datagrams to `dst`, each answered
/// by the echo from `dst` itself (the reply's source is the original
/// destination). Retried until gost is up; returns the client's port.
fn udp_exchange_as_nobody(ns: &Netns, dst: &str, count: u32, g: &Gost) -> u16 {
    let (host, port) = dst.rsplit_once(':').unwrap();
    let script = format!(
        "import socket, sys\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.settimeout(1)\n\
         s.bind(('127.0.0.1', 0))\n\
         for i in range({count}):\n    \
             m = b'ping-%d' % i\n    \
             s.sendto(m, ('{host}', {port}))\n    \
             d, a = s.recvfrom(65535)\n    \
             assert d == b'echo:' + m, d\n    \
             assert a == ('{host}', {port}), a\n\
         print(s.getsockname()[1])\n"
    );
    let start = Instant::now();
    loop {
        let out = ns
            .exec("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(system_python())
            .args(["-c", &script])
            .output()
            .unwrap();
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "the UDP exchange with {dst} failed: {}; log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            g.log()
        );
        thread::sleep(Duration::from_millis(200));
    }
}

/// TPROXY for UDP: `nobody`'s datagrams to `port` go to the transparent
/// socket at `redu`.
fn tproxy_udp_rules(ns: &Netns, port: u16, redu: u16) {
    ns.ip(&["rule", "add", "fwmark", "1", "lookup", "100"]);
    ns.ip(&[
        "route",
        "add",
        "local",
        "0.0.0.0/0",
        "dev",
        "lo",
        "table",
        "100",
    ]);
    ns.nft(&format!(
        "table ip gost {{\n chain pre {{\n  type filter hook prerouting priority -150;\n  \
         meta mark 1 udp dport {port} tproxy to 127.0.0.1:{redu}\n }}\n \
         chain out {{\n  type route hook output priority -150;\n  \
         meta skuid 65534 udp dport {port} meta mark set 1\n }}\n}}\n"
    ));
}

/// redu: datagrams each way between a client and a UDP target that TPROXY
/// steers through gost; replies come from the target's address.
#[test]
fn redu_relays_datagrams_to_the_original_destination() {
    let Some(ns) = Netns::create("redu") else {
        return;
    };
    let (target, redu) = (free_udp_port(), free_udp_port());
    let _echo = udp_echo(&ns, target);
    tproxy_udp_rules(&ns, target, redu);
    let g = gost_in(&ns, &["-D", "-L", &format!("redu://127.0.0.1:{redu}")]);
    let dst = format!("127.0.0.1:{target}");
    udp_exchange_as_nobody(&ns, &dst, 3, &g);
    g.wait_log(&format!(r#""dst":"{dst}""#));
}

/// redu through a chain: the session goes over a socks5 node's UDP relay.
#[test]
fn redu_relays_through_a_socks5_chain() {
    let Some(ns) = Netns::create("reduchain") else {
        return;
    };
    let (target, redu, socks) = (free_udp_port(), free_udp_port(), free_port());
    let _echo = udp_echo(&ns, target);
    tproxy_udp_rules(&ns, target, redu);
    let node = gost_in(
        &ns,
        &["-D", "-L", &format!("socks5://127.0.0.1:{socks}?udp=true")],
    );
    let g = gost_in(
        &ns,
        &[
            "-D",
            "-L",
            &format!("redu://127.0.0.1:{redu}"),
            "-F",
            &format!("socks5://127.0.0.1:{socks}"),
        ],
    );
    let dst = format!("127.0.0.1:{target}");
    udp_exchange_as_nobody(&ns, &dst, 3, &g);
    // The socks5 node carried it, over GOST's UDP-over-TCP.
    node.wait_log("socks5 udp-over-tcp");
}

/// A session idle for `ttl` ends; the client's next datagram opens a new one.
#[test]
fn redu_session_ends_at_its_ttl() {
    let Some(ns) = Netns::create("reduttl") else {
        return;
    };
    let (target, redu) = (free_udp_port(), free_udp_port());
    let _echo = udp_echo(&ns, target);
    tproxy_udp_rules(&ns, target, redu);
    let g = gost_in(
        &ns,
        &["-D", "-L", &format!("redu://127.0.0.1:{redu}?ttl=1s")],
    );
    let dst = format!("127.0.0.1:{target}");
    let client = udp_exchange_as_nobody(&ns, &dst, 2, &g);
    // The client's session (an earlier attempt's may end first).
    let start = Instant::now();
    while !g.log().lines().any(|l| {
        l.contains("redu: session ended")
            && l.contains(&format!(r#""client":"127.0.0.1:{client}""#))
    }) {
        assert!(
            start.elapsed() < TIMEOUT,
            "the session never ended; log:\n{}",
            g.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
    // It idled out after its ttl (1s from the last reply, just before
    // `start`), not at once and not at the default 30s.
    let waited = start.elapsed();
    assert!(
        waited > Duration::from_millis(500) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}
