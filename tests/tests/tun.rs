//! GOST's TUN tunnel (`tun` listener and handler) between two network
//! namespaces joined by a veth pair: the server gost in one, the client
//! gost in the other, each with its TUN device; ping (ICMP echo from a
//! raw socket) and a TCP connection cross the tunnel, directly and
//! through a socks5 node; a client with the wrong passphrase is refused;
//! routes are installed as GOST installs them; the device goes away when
//! gost stops.
//!
//! Needs root and /dev/net/tun; without them each test says why and
//! passes without running. The manual steps are in docs/handlers.md.

use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use gost_e2e::netns::{gost_in, system_python, Killed, Netns};
use gost_e2e::*;

/// Two namespaces, the server's at 10.99.0.1 and the client's at
/// 10.99.0.2 on the veth between them.
fn pair(tag: &str) -> Option<(Netns, Netns)> {
    if !std::path::Path::new("/dev/net/tun").exists() {
        eprintln!("skipped: /dev/net/tun is missing");
        return None;
    }
    let server = Netns::create_bare(&format!("{tag}s"))?;
    let client = Netns::create_bare(&format!("{tag}c"))?;
    server.veth(&client, "10.99.0.1/24", "10.99.0.2/24");
    Some((server, client))
}

/// ICMP echo to `dst` from a raw socket in `ns` (no ping binary needed);
/// true when a reply came within `tries` seconds.
fn ping(ns: &Netns, dst: &str, tries: u32) -> bool {
    let script = format!(
        "import socket, struct, sys\n\
         def csum(b):\n    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))\n    \
             s = (s >> 16) + (s & 0xffff); s += s >> 16\n    return ~s & 0xffff\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)\n\
         s.settimeout(1)\n\
         for i in range({tries}):\n    \
             h = struct.pack('!BBHHH', 8, 0, 0, 0x4753, i) + b'gost-tun'\n    \
             h = h[:2] + struct.pack('!H', csum(h)) + h[4:]\n    \
             s.sendto(h, ('{dst}', 0))\n    \
             try:\n        \
                 while True:\n            \
                     d, a = s.recvfrom(1500)\n            \
                     if a[0] == '{dst}' and d[20] == 0 and d[28:] == b'gost-tun':\n                \
                         sys.exit(0)\n    \
             except socket.timeout:\n        pass\n\
         sys.exit(1)\n"
    );
    ns.exec(system_python())
        .args(["-c", &script])
        .status()
        .is_ok_and(|s| s.success())
}

fn assert_ping(ns: &Netns, dst: &str, logs: &[&Gost]) {
    let start = Instant::now();
    while !ping(ns, dst, 1) {
        let all: Vec<String> = logs.iter().map(|g| g.log()).collect();
        assert!(
            start.elapsed() < TIMEOUT,
            "no echo reply from {dst}; logs:\n{}",
            all.join("\n---\n")
        );
    }
}

/// A TCP server in `ns` on `addr:port` that sends `hello` to each client.
fn greeter(ns: &Netns, addr: &str, port: u16) -> Killed {
    let script = format!(
        "import socket\n\
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('{addr}', {port})); s.listen(8)\n\
         while True:\n    c, _ = s.accept(); c.sendall(b'hello over tun'); c.close()\n"
    );
    Killed(
        ns.exec(system_python())
            .args(["-c", &script])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn tcp_hello(ns: &Netns, addr: &str, port: u16) -> String {
    let script = format!(
        "import socket\n\
         c = socket.create_connection(('{addr}', {port}), timeout=5)\n\
         print(c.recv(100).decode())\n"
    );
    let out = ns
        .exec(system_python())
        .args(["-c", &script])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn server(ns: &Netns, port: u16, extra: &str) -> Gost {
    gost_in(
        ns,
        &[
            "-D",
            "-L",
            &format!("tun://:{port}?net=192.168.123.1/24&name=gtun0{extra}"),
        ],
    )
}

fn client_url(port: u16, extra: &str) -> String {
    format!(
        "tun://:0/10.99.0.1:{port}?net=192.168.123.2/24&name=gtun0&keepalive=true&ttl=1s{extra}"
    )
}

/// Ping and TCP across the tunnel both ways; the client's device is gone
/// once its gost stops.
#[test]
fn tun_carries_ping_and_tcp_and_removes_its_device() {
    let Some((s_ns, c_ns)) = pair("tun") else {
        return;
    };
    let port = free_udp_port();
    let s = server(&s_ns, port, "");
    let mut c = gost_in(&c_ns, &["-D", "-L", &client_url(port, "")]);
    assert_ping(&c_ns, "192.168.123.1", &[&s, &c]);
    assert_ping(&s_ns, "192.168.123.2", &[&s, &c]);
    let tcp = free_port();
    let _g = greeter(&s_ns, "192.168.123.1", tcp);
    let start = Instant::now();
    while tcp_hello(&c_ns, "192.168.123.1", tcp) != "hello over tun" {
        assert!(start.elapsed() < TIMEOUT, "no TCP across the tunnel");
        thread::sleep(Duration::from_millis(100));
    }
    assert!(c_ns.ip_output(&["link", "show", "gtun0"]).is_some());
    c.stop();
    let start = Instant::now();
    while c_ns.ip_output(&["link", "show", "gtun0"]).is_some() {
        assert!(start.elapsed() < TIMEOUT, "the device outlived gost");
        thread::sleep(Duration::from_millis(50));
    }
}

/// The client's tunnel through a chain: UDP over a socks5 node.
#[test]
fn tun_through_a_socks5_chain() {
    let Some((s_ns, c_ns)) = pair("tunchain") else {
        return;
    };
    let (port, socks) = (free_udp_port(), free_port());
    let s = server(&s_ns, port, "");
    let node = gost_in(
        &c_ns,
        &["-D", "-L", &format!("socks5://127.0.0.1:{socks}?udp=true")],
    );
    let c = gost_in(
        &c_ns,
        &[
            "-D",
            "-L",
            &client_url(port, ""),
            "-F",
            &format!("socks5://127.0.0.1:{socks}"),
        ],
    );
    assert_ping(&c_ns, "192.168.123.1", &[&s, &c, &node]);
    node.wait_log("socks5 udp-over-tcp");
}

/// With an auther (user: the client's tunnel address, password: its
/// passphrase), a wrong passphrase gets no route and no answer; the
/// right one does.
#[test]
fn tun_refuses_a_wrong_passphrase() {
    let Some((s_ns, c_ns)) = pair("tunauth") else {
        return;
    };
    let port = free_udp_port();
    let s = gost_in(
        &s_ns,
        &[
            "-D",
            "-L",
            &format!("tun://192.168.123.2:right@:{port}?net=192.168.123.1/24&name=gtun0"),
        ],
    );
    let mut bad = gost_in(&c_ns, &["-D", "-L", &client_url(port, "&passphrase=wrong")]);
    s.wait_log("keepalive refused");
    assert!(
        !ping(&c_ns, "192.168.123.1", 2),
        "a refused client got through"
    );
    bad.stop();
    let good = gost_in(&c_ns, &["-D", "-L", &client_url(port, "&passphrase=right")]);
    assert_ping(&c_ns, "192.168.123.1", &[&s, &good]);
}

/// `route` with `gw` on the server: the route is in its table via the
/// client's tunnel address, and packets to that network reach the client,
/// which owns an address in it. `route` on the client goes through its
/// device.
#[test]
fn tun_routes_go_through_the_gateway_client() {
    let Some((s_ns, c_ns)) = pair("tunroute") else {
        return;
    };
    let port = free_udp_port();
    let s = server(&s_ns, port, "&gw=192.168.123.2&route=10.200.0.0/16");
    c_ns.ip(&["addr", "add", "10.200.0.5/32", "dev", "lo"]);
    let c = gost_in(
        &c_ns,
        &["-D", "-L", &client_url(port, "&route=10.201.0.0/16")],
    );
    s.wait_log("tun server listening");
    c.wait_log("tun: keepalive answered");
    let table = s_ns.ip_output(&["route", "show", "10.200.0.0/16"]).unwrap();
    assert!(table.contains("via 192.168.123.2 dev gtun0"), "{table}");
    let table = c_ns.ip_output(&["route", "show", "10.201.0.0/16"]).unwrap();
    assert!(table.contains("dev gtun0"), "{table}");
    assert_ping(&s_ns, "10.200.0.5", &[&s, &c]);
}

/// TAP: Ethernet frames (ARP included) across the tunnel; ping and TCP
/// between the two devices, directly and with the client through a
/// socks5 node; the device is gone once gost stops.
#[test]
fn tap_carries_frames_and_removes_its_device() {
    let Some((s_ns, c_ns)) = pair("tap") else {
        return;
    };
    let (port, socks) = (free_udp_port(), free_port());
    let s = gost_in(
        &s_ns,
        &[
            "-D",
            "-L",
            &format!("tap://:{port}?net=192.168.124.1/24&name=gtap0"),
        ],
    );
    let mut c = gost_in(
        &c_ns,
        &[
            "-D",
            "-L",
            &format!("tap://:0/10.99.0.1:{port}?net=192.168.124.2/24&name=gtap0"),
        ],
    );
    assert_ping(&c_ns, "192.168.124.1", &[&s, &c]);
    let tcp = free_port();
    let _g = greeter(&s_ns, "192.168.124.1", tcp);
    let start = Instant::now();
    while tcp_hello(&c_ns, "192.168.124.1", tcp) != "hello over tun" {
        assert!(start.elapsed() < TIMEOUT, "no TCP across the tap tunnel");
        thread::sleep(Duration::from_millis(100));
    }
    c.stop();
    let start = Instant::now();
    while c_ns.ip_output(&["link", "show", "gtap0"]).is_some() {
        assert!(start.elapsed() < TIMEOUT, "the device outlived gost");
        thread::sleep(Duration::from_millis(50));
    }
    // The same client through a chain.
    let node = gost_in(
        &c_ns,
        &["-D", "-L", &format!("socks5://127.0.0.1:{socks}?udp=true")],
    );
    let c = gost_in(
        &c_ns,
        &[
            "-D",
            "-L",
            &format!("tap://:0/10.99.0.1:{port}?net=192.168.124.2/24&name=gtap0"),
            "-F",
            &format!("socks5://127.0.0.1:{socks}"),
        ],
    );
    assert_ping(&c_ns, "192.168.124.1", &[&s, &c, &node]);
    node.wait_log("socks5 udp-over-tcp");
}

/// The server's listener names a `routers` object (GOST's
/// `router`/`tun.router`): packets for a network the listener routes into
/// the device without a gateway go to the client the router names as
/// gateway. A router changed through the web API takes effect at once,
/// with the same device (no new one is made for a change of routes).
#[test]
fn tun_router_names_the_gateway_client_and_changes_live() {
    let Some((s_ns, c_ns)) = pair("tunrtr") else {
        return;
    };
    let dir = TempDir::new("tun-router");
    let api = dir.path("api.sock");
    let port = free_udp_port();
    let yaml = format!(
        "api:
  addr: unix://{api}
services:
  - name: tun
    addr: :{port}
    handler:
      type: tun
    listener:
      type: tun
      metadata:
        net: 192.168.123.1/24
        name: gtun0
        route: 10.200.0.0/16
        router: router-0
routers:
  - name: router-0
    routes:
      - dst: 10.200.0.0/16
        gateway: 192.168.123.2
"
    );
    let file = dir.write("server.yaml", &yaml);
    let s = gost_in(&s_ns, &["-D", "-C", &file]);
    c_ns.ip(&["addr", "add", "10.200.0.5/32", "dev", "lo"]);
    let c = gost_in(&c_ns, &["-D", "-L", &client_url(port, "")]);
    s.wait_log("tun server listening");
    c.wait_log("tun: keepalive answered");
    assert_ping(&s_ns, "10.200.0.5", &[&s, &c]);
    let index = || {
        s_ns.ip_output(&["-o", "link", "show", "gtun0"])
            .and_then(|l| l.split(':').next().map(str::to_string))
            .expect("the server's device")
    };
    let before = index();
    let put = |gateway: &str| {
        let body = format!(r#"{{"routes": [{{"dst": "10.200.0.0/16", "gateway": "{gateway}"}}]}}"#);
        let out = std::process::Command::new("/usr/bin/curl")
            .args(["-s", "--max-time", "5", "--unix-socket", &api, "-X", "PUT"])
            .args(["-H", "Content-Type: application/json", "-d"])
            .arg(&body)
            .arg("http://gost/config/routers/router-0")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.contains("\"OK\""), "{text}\n{}", s.log());
    };
    // A gateway no client has: the network's packets are dropped.
    put("192.168.123.9");
    let start = Instant::now();
    while ping(&s_ns, "10.200.0.5", 1) {
        assert!(start.elapsed() < TIMEOUT, "the new route was not applied");
    }
    put("192.168.123.2");
    assert_ping(&s_ns, "10.200.0.5", &[&s, &c]);
    assert_eq!(index(), before, "a router change made a new device");
}
