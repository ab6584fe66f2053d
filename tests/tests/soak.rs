//! Soak: thousands of connections held through forward, SOCKS5, HTTP
//! CONNECT and a wasm handler at once, carrying echoed traffic for a while
//! with API changes and a plugin reload in the middle. Every byte must
//! come back exactly, the services' stats must count exactly what the
//! clients sent and received, and afterwards the process must give back
//! its file descriptors, threads and most of its memory.
//!
//! The other end-to-end tests use blocking sockets and threads; this one
//! holds up to 9,000 connections, so its clients run on a tokio runtime.
//! `GOST_SOAK_SECS` and `GOST_SOAK_CONNS` make it longer or larger
//! (`bench/soak.sh`); the defaults keep it under a minute.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gost_e2e::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The four entry points, in the order connections are spread over them.
const KINDS: [&str; 4] = ["fwd", "s5", "hp", "wasm"];

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
        })
        .unwrap_or(default)
}

/// Raises this process's open-file limit to its hard limit (children,
/// gost among them, inherit it); returns the new limit.
fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        lim.rlim_cur
    }
}

/// What /proc says of a process: open fds, threads, resident KiB.
#[derive(Debug, Clone, Copy)]
struct Usage {
    fds: usize,
    threads: u64,
    rss_kib: u64,
}

fn usage(pid: i32) -> Usage {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd")
        .count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    Usage {
        fds,
        threads: field("Threads:"),
        rss_kib: field("VmRSS:"),
    }
}

/// An echo server on the test's runtime: thousands of connections would
/// be thousands of threads with the blocking helper.
async fn echo_server() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// Bytes a client wrote and read on its socket, handshakes included: what
/// the service's stats must show.
#[derive(Default)]
struct Counted {
    sent: AtomicU64,
    received: AtomicU64,
    conns: AtomicU64,
}

struct Conn {
    s: TcpStream,
    counted: Arc<Counted>,
}

impl Conn {
    async fn send(&mut self, data: &[u8]) {
        self.s.write_all(data).await.expect("write");
        self.counted
            .sent
            .fetch_add(data.len() as u64, Ordering::Relaxed);
    }

    async fn recv_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        self.s.read_exact(&mut buf).await.expect("read");
        self.counted.received.fetch_add(n as u64, Ordering::Relaxed);
        buf
    }

    /// Reads up to the end of an HTTP response head.
    async fn recv_head(&mut self) -> String {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.extend(self.recv_exact(1).await);
        }
        String::from_utf8(head).expect("an HTTP head")
    }
}

/// Connects through `kind`'s entry point to the echo server.
async fn open(kind: &str, port: u16, echo: SocketAddr, counted: Arc<Counted>) -> Conn {
    let s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut c = Conn { s, counted };
    match kind {
        "fwd" => {}
        "s5" | "wasm" => {
            c.send(&[5, 1, 0]).await;
            assert_eq!(c.recv_exact(2).await, [5, 0]);
            let SocketAddr::V4(v4) = echo else {
                unreachable!("the echo server is on 127.0.0.1")
            };
            let mut req = vec![5, 1, 0, 1];
            req.extend(v4.ip().octets());
            req.extend(v4.port().to_be_bytes());
            c.send(&req).await;
            let reply = c.recv_exact(10).await;
            assert_eq!(reply[1], 0, "{kind}: SOCKS5 reply {reply:?}");
        }
        "hp" => {
            c.send(format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\n").as_bytes())
                .await;
            let head = c.recv_head().await;
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        }
        _ => unreachable!("{kind}"),
    }
    c.counted.conns.fetch_add(1, Ordering::Relaxed);
    c
}

/// The connection's `round`th message: its length and bytes depend on
/// both, so a byte delivered to the wrong connection or out of order is
/// caught.
fn message(id: u64, round: u64) -> Vec<u8> {
    let len = 1 + ((id * 7919 + round * 104_729) % 8192) as usize;
    (0..len)
        .map(|i| (id as usize * 31 + round as usize * 17 + i) as u8)
        .collect()
}

/// What one cycle of the soak needs: where to connect and what to count.
struct Rig<'a> {
    rt: &'a tokio::runtime::Runtime,
    gost: &'a Gost,
    ports: &'a [u16],
    echo: SocketAddr,
    counted: &'a [Arc<Counted>],
    conns: u64,
    baseline: Usage,
}

/// What a cycle saw of gost: with every connection open, at its highest
/// resident memory, and the round trips made.
struct Cycle {
    opened_in: Duration,
    all_open: Usage,
    peak: Usage,
    rounds: u64,
}

impl Rig<'_> {
    /// Opens every connection (a few hundred handshakes at a time), runs
    /// echoed traffic on all of them for `secs` with `middle` run halfway,
    /// then closes them all, checking every byte.
    fn cycle(&self, secs: u64, middle: impl FnOnce()) -> Cycle {
        let started = Instant::now();
        let mut held = Vec::with_capacity(self.conns as usize);
        self.rt.block_on(async {
            for batch in (0..self.conns).collect::<Vec<_>>().chunks(250) {
                let opening: Vec<_> = batch
                    .iter()
                    .map(|&id| {
                        let k = (id % 4) as usize;
                        let c = self.counted[k].clone();
                        let (port, echo) = (self.ports[k], self.echo);
                        tokio::spawn(async move { (id, open(KINDS[k], port, echo, c).await) })
                    })
                    .collect();
                for o in opening {
                    held.push(o.await.expect("a connection to open"));
                }
            }
        });
        let opened_in = started.elapsed();
        // A forward connection is open on the client's side before gost
        // has dialed its target: give the last ones a moment.
        let want = self.baseline.fds + 2 * self.conns as usize;
        let settle = Instant::now();
        let all_open = loop {
            let u = usage(self.gost.pid());
            if u.fds >= want || settle.elapsed() > TIMEOUT {
                break u;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            all_open.fds >= want,
            "{} connections but {all_open:?} against {:?}",
            self.conns,
            self.baseline
        );

        // Each connection sends a message, reads its echo, waits a while;
        // until the deadline.
        let deadline = Instant::now() + Duration::from_secs(secs);
        let rounds = Arc::new(AtomicU64::new(0));
        let traffic: Vec<_> = held
            .into_iter()
            .map(|(id, mut c)| {
                let rounds = rounds.clone();
                self.rt.spawn(async move {
                    let mut round = 0;
                    tokio::time::sleep(Duration::from_millis(id % 1000)).await;
                    while Instant::now() < deadline {
                        let m = message(id, round);
                        c.send(&m).await;
                        assert!(
                            c.recv_exact(m.len()).await == m,
                            "connection {id} round {round}: wrong bytes"
                        );
                        round += 1;
                        rounds.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(1000 + id % 1500)).await;
                    }
                    c.s.shutdown().await.expect("shutdown");
                    let mut rest = Vec::new();
                    c.s.read_to_end(&mut rest).await.expect("read to the end");
                    assert!(
                        rest.is_empty(),
                        "connection {id}: {} unexpected bytes",
                        rest.len()
                    );
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(secs / 2));
        middle();
        let mut peak = all_open;
        while !traffic.iter().all(|t| t.is_finished()) {
            let u = usage(self.gost.pid());
            if u.rss_kib > peak.rss_kib {
                peak = u;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        self.rt.block_on(async {
            for t in traffic {
                t.await.expect("a connection's traffic");
            }
        });
        let rounds = rounds.load(Ordering::Relaxed);
        assert!(
            rounds >= self.conns,
            "only {rounds} round trips on {} connections",
            self.conns
        );
        Cycle {
            opened_in,
            all_open,
            peak,
            rounds,
        }
    }

    /// gost once descriptors and threads are back where they started
    /// (the blocking pool's idle threads time out), or after a while.
    fn settled(&self) -> Usage {
        let start = Instant::now();
        loop {
            let u = usage(self.gost.pid());
            let back = u.fds <= self.baseline.fds + 2 && u.threads <= self.baseline.threads + 2;
            if back || start.elapsed() > Duration::from_secs(30) {
                return u;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn thousands_of_connections_keep_every_byte_and_give_back_their_resources() {
    let hard = raise_nofile();
    let secs = env_or("GOST_SOAK_SECS", 20);
    // A short first cycle: memory the allocator keeps after it is reused
    // by the second, so growth across the second is a leak.
    let warm_secs = (secs / 4).max(3);
    // Each connection holds two descriptors here (client, echo side) and
    // two in gost; leave room for everything else.
    let conns = env_or("GOST_SOAK_CONNS", 9_000).min(hard.saturating_sub(1_000) / 2);
    assert!(conns >= 1_000, "open-file hard limit {hard} is too low");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let echo = rt.block_on(echo_server());

    let dir = TempDir::new("soak");
    let plugin = dir.path("socks5.wasm");
    std::fs::copy(plugin_wasm("socks5"), &plugin).unwrap();
    let api = free_port();
    let ports: Vec<u16> = KINDS.iter().map(|_| free_port()).collect();
    let config = dir.write(
        "gost.yaml",
        &format!(
            "api: {{addr: 127.0.0.1:{api}}}
log: {{level: info}}
services:
- {{name: fwd, addr: 127.0.0.1:{}, handler: {{type: tcp}}, listener: {{type: tcp}}, forwarder: {{nodes: [{{name: echo, addr: {echo}}}]}}, metadata: {{enableStats: true}}}}
- {{name: s5, addr: 127.0.0.1:{}, handler: {{type: socks5}}, listener: {{type: tcp}}, metadata: {{enableStats: true}}}}
- {{name: hp, addr: 127.0.0.1:{}, handler: {{type: http}}, listener: {{type: tcp}}, metadata: {{enableStats: true}}}}
- {{name: wasm, addr: 127.0.0.1:{}, handler: {{type: wasm, plugin: {{type: wasm, path: {plugin}}}}}, listener: {{type: tcp}}, metadata: {{enableStats: true}}}}
",
            ports[0], ports[1], ports[2], ports[3]
        ),
    );
    let gost = Gost::start(&["-C", &config]);
    for p in &ports {
        gost.wait_tcp(*p);
    }
    let baseline_totals: Vec<u64> = KINDS
        .iter()
        .map(|k| {
            wait_settled(api, k)["status"]["stats"]["totalConns"]
                .as_u64()
                .unwrap()
        })
        .collect();
    // The lowest of a few samples: an API connection may still be closing.
    let baseline = (0..5)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            usage(gost.pid())
        })
        .min_by_key(|u| u.fds)
        .expect("samples");

    let counted: Vec<Arc<Counted>> = KINDS.iter().map(|_| Arc::default()).collect();
    let rig = Rig {
        rt: &rt,
        gost: &gost,
        ports: &ports,
        echo,
        counted: &counted,
        conns,
        baseline,
    };
    let first = rig.cycle(warm_secs, || {});
    let after_first = rig.settled();

    // The measured cycle, with API changes and a plugin reload halfway.
    let cycle = rig.cycle(secs, || {
        let extra = free_port();
        let body = format!(
            r#"{{"name":"extra","addr":"127.0.0.1:{extra}","handler":{{"type":"socks5"}},"listener":{{"type":"tcp"}}}}"#
        );
        for _ in 0..5 {
            let (st, b) = http_request(api, "POST", "/config/services", Some(&body), None);
            assert_eq!(st, 200, "{b}");
            gost.wait_tcp(extra);
            let (st, b) = http_request(api, "DELETE", "/config/services/extra", None, None);
            assert_eq!(st, 200, "{b}");
        }
        let wasm = std::fs::read(&plugin).unwrap();
        std::fs::write(&plugin, &wasm).unwrap();
    });

    // Stats: exact, once every connection has closed.
    for (k, kind) in KINDS.iter().enumerate() {
        let svc = wait_service(api, kind, |s| s["status"]["stats"]["currentConns"] == 0);
        let st = &svc["status"]["stats"];
        let c = &counted[k];
        assert_eq!(
            st["totalConns"].as_u64().unwrap() - baseline_totals[k],
            c.conns.load(Ordering::Relaxed),
            "{kind}: {st}"
        );
        assert_eq!(
            st["inputBytes"],
            c.sent.load(Ordering::Relaxed),
            "{kind}: {st}"
        );
        assert_eq!(
            st["outputBytes"],
            c.received.load(Ordering::Relaxed),
            "{kind}: {st}"
        );
        assert_eq!(st["totalErrs"], 0, "{kind}: {st}");
    }
    assert!(
        gost.log().contains("plugin reloaded"),
        "the plugin was not reloaded; log:\n{}",
        gost.log()
    );

    let end = rig.settled();
    eprintln!(
        "soak: {conns} connections; first cycle {warm_secs} s, opened in {:?}, {} round trips, \
         peak {:?}; second cycle {secs} s, opened in {:?}, {} round trips; gost at start \
         {baseline:?}, after the first cycle {after_first:?}, all open {:?}, peak {:?}, end {end:?}",
        first.opened_in, first.rounds, first.peak, cycle.opened_in, cycle.rounds, cycle.all_open, cycle.peak
    );
    assert!(end.fds <= baseline.fds + 2, "fds: {baseline:?} -> {end:?}");
    assert!(
        end.threads <= baseline.threads + 2,
        "threads: {baseline:?} -> {end:?}"
    );
    // What the allocator kept after the first cycle is reused by the
    // second; more than a little growth across it is a leak.
    assert!(
        end.rss_kib <= after_first.rss_kib + 4 * 1024,
        "memory grew across a second cycle: {after_first:?} -> {end:?}"
    );
}
