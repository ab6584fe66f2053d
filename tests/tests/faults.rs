//! Faults around a running gost, end to end: an upstream that resets or
//! stalls, clients that half-close or go quiet, an observer that hangs,
//! running out of file descriptors, and SIGTERM and SIGHUP while
//! connections are live.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use gost_e2e::*;

/// Reads until the peer closes (EOF or reset); how long that took.
fn wait_closed(c: &mut TcpStream, within: Duration) -> Duration {
    let start = Instant::now();
    c.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("not closed within {within:?}")
            }
            Err(_) => return start.elapsed(),
        }
    }
}

fn echo_once(c: &mut TcpStream, msg: &[u8]) {
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    c.read_exact(&mut got).unwrap();
    assert_eq!(got, msg);
}

/// A gost forwarding `127.0.0.1:port` to `target` with `query` on the URL.
fn forward(target: impl std::fmt::Display, query: &str) -> (Gost, u16) {
    let port = free_port();
    let g = Gost::start(&["-L", &format!("tcp://127.0.0.1:{port}/{target}?{query}")]);
    g.wait_tcp(port);
    (g, port)
}

/// The process's user plus system CPU time.
fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

#[test]
fn an_upstream_reset_mid_stream_closes_the_client_and_nothing_else() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = l.local_addr().unwrap();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { break };
            thread::spawn(move || {
                let mut buf = [0u8; 5];
                if c.read_exact(&mut buf).is_err() {
                    return;
                }
                let _ = c.write_all(b"partial answer");
                thread::sleep(Duration::from_millis(100));
                // SO_LINGER 0: close sends RST instead of FIN.
                let linger = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                // SAFETY: setsockopt on a socket we own, with a valid struct.
                unsafe {
                    use std::os::fd::AsRawFd;
                    libc::setsockopt(
                        c.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        (&linger as *const libc::linger).cast(),
                        std::mem::size_of::<libc::linger>() as libc::socklen_t,
                    );
                }
            });
        }
    });
    let (g, port) = forward(upstream, "");
    let mut bystander = TcpStream::connect(("127.0.0.1", port)).unwrap();
    for _ in 0..3 {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(b"hello").unwrap();
        let mut got = [0u8; 14];
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"partial answer");
        wait_closed(&mut c, TIMEOUT);
    }
    // The service goes on: a connection opened before the resets, and new
    // ones, are served.
    bystander.write_all(b"still").unwrap();
    let mut got = [0u8; 14];
    bystander.set_read_timeout(Some(TIMEOUT)).unwrap();
    bystander.read_exact(&mut got).unwrap();
    assert!(!g.log().contains("panicked"), "{}", g.log());
}

#[test]
fn a_stalled_upstream_is_closed_on_both_sides_by_the_idle_timeout() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = l.local_addr().unwrap();
    let (closed_tx, closed_rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { break };
            let closed_tx = closed_tx.clone();
            // Reads what comes, answers nothing, and reports when gost
            // closes a connection that carried data (not the start-up
            // probe's).
            thread::spawn(move || {
                let mut buf = [0u8; 1024];
                let start = Instant::now();
                let mut got = 0;
                c.set_read_timeout(Some(TIMEOUT)).unwrap();
                loop {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n,
                    }
                }
                if got > 0 {
                    let _ = closed_tx.send(start.elapsed());
                }
            });
        }
    });
    let (_g, port) = forward(upstream, "idleTimeout=1s");
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(b"anyone there?").unwrap();
    let client_side = wait_closed(&mut c, Duration::from_secs(10));
    let upstream_side = closed_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(client_side >= Duration::from_millis(900), "{client_side:?}");
    assert!(client_side < Duration::from_secs(5), "{client_side:?}");
    assert!(upstream_side < Duration::from_secs(5), "{upstream_side:?}");
}

#[test]
fn a_half_closed_client_still_gets_its_answer_and_a_quiet_one_is_closed() {
    let echo = tcp_echo_server();
    let (_g, port) = forward(echo, "");
    // Half-close: the client's FIN reaches the upstream, which answers
    // everything and closes; the client reads all of it, then EOF.
    let data = random_bytes(256 * 1024, 11);
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let writer = {
        let mut w = c.try_clone().unwrap();
        let data = data.clone();
        thread::spawn(move || {
            w.write_all(&data).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut got = Vec::new();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data);

    // A client that connects to a proxy and never sends its handshake is
    // closed by the handler's read timeout.
    let socks = free_port();
    let g = Gost::start(&["-L", &format!("socks5://127.0.0.1:{socks}?readTimeout=1s")]);
    g.wait_tcp(socks);
    let mut quiet = TcpStream::connect(("127.0.0.1", socks)).unwrap();
    let took = wait_closed(&mut quiet, Duration::from_secs(10));
    assert!(took >= Duration::from_millis(900), "{took:?}");
}

#[test]
fn a_hung_observer_holds_up_neither_traffic_nor_the_stop() {
    // An observer that accepts and never answers.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let observer = l.local_addr().unwrap();
    thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming() {
            held.extend(c.ok());
        }
    });
    let echo = tcp_echo_server();
    let port = free_port();
    let dir = TempDir::new("hung-observer");
    let cfg = format!(
        "services:\n- name: svc\n  addr: 127.0.0.1:{port}\n  observer: obs\n  handler: {{type: tcp}}\n  listener: {{type: tcp}}\n  forwarder: {{nodes: [{{name: t, addr: \"{echo}\"}}]}}\n  metadata: {{enableStats: true, observer.period: 1s}}\nobservers:\n- name: obs\n  plugin: {{type: http, addr: \"http://{observer}\", timeout: 30s}}\n"
    );
    let file = dir.write("gost.yaml", &cfg);
    let mut g = Gost::start(&["-C", &file]);
    g.wait_tcp(port);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        echo_once(&mut c, b"ping");
    }
    let stop = Instant::now();
    assert!(g.stop().success(), "{}", g.log());
    // The observer's last report is given up after the grace period.
    assert!(
        stop.elapsed() < Duration::from_secs(12),
        "{:?}",
        stop.elapsed()
    );
}

#[test]
fn out_of_file_descriptors_accept_backs_off_and_recovers() {
    let port = free_port();
    let mut cmd = Command::new(gost_bin());
    // A SOCKS5 service whose clients send nothing: each accepted
    // connection holds exactly one descriptor until its read timeout.
    cmd.args(["-L", &format!("socks5://127.0.0.1:{port}?readTimeout=60s")]);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the
    // child between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 48,
                rlim_max: 48,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let g = Gost::start_with(&mut cmd);
    g.wait_tcp(port);
    // More connections than descriptors: the kernel queues the rest.
    let mut held: Vec<TcpStream> = (0..60)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    g.wait_log("accept failed");
    // Out of descriptors: the service retries accept with a back-off, not
    // in a busy loop, and logs once per attempt.
    let (cpu0, log0) = (cpu_time(g.pid()), g.log().matches("accept failed").count());
    thread::sleep(Duration::from_secs(4));
    let cpu = cpu_time(g.pid()) - cpu0;
    let logged = g.log().matches("accept failed").count() - log0;
    assert!(cpu < Duration::from_millis(400), "CPU {cpu:?} in 4 s");
    assert!(
        logged <= 4,
        "{logged} accept errors logged in 4 s:\n{}",
        g.log()
    );
    // Once connections close, service resumes: those waiting in the accept
    // queue and new ones get their SOCKS5 answer.
    let mut waiting = held.pop().unwrap();
    drop(held);
    for c in [
        &mut waiting,
        &mut TcpStream::connect(("127.0.0.1", port)).unwrap(),
    ] {
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        c.write_all(&[5, 1, 0]).unwrap();
        let mut reply = [0u8; 2];
        c.read_exact(&mut reply).unwrap();
        assert_eq!(reply, [5, 0]);
    }
}

#[test]
fn sigterm_under_load_drains_for_the_grace_period_then_closes_and_runs_post_down() {
    let dir = TempDir::new("sigterm-load");
    let out = dir.path("post-down.txt");
    let echo = tcp_echo_server();
    let port = free_port();
    let cfg = format!(
        "services:\n- name: svc\n  addr: 127.0.0.1:{port}\n  handler: {{type: tcp}}\n  listener: {{type: tcp}}\n  forwarder: {{nodes: [{{name: t, addr: \"{echo}\"}}]}}\n  metadata:\n    shutdownGracePeriod: 2s\n    postDown: [\"sh -c 'echo done > {out}'\"]\n"
    );
    let file = dir.write("gost.yaml", &cfg);
    let mut g = Gost::start(&["-C", &file]);
    g.wait_tcp(port);
    let mut live: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    for c in &mut live {
        echo_once(c, b"before");
    }
    let term = Instant::now();
    g.signal(libc::SIGTERM);
    g.wait_log("shutting down");
    // New connections are refused at once...
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(term.elapsed() < Duration::from_secs(1), "still accepting");
        thread::sleep(Duration::from_millis(10));
    }
    // ...live ones keep working during the grace period...
    for c in &mut live {
        echo_once(c, b"during");
    }
    // ...and are closed when it ends; then postDown runs and gost exits.
    for c in &mut live {
        wait_closed(c, Duration::from_secs(10));
    }
    let closed = term.elapsed();
    assert!(closed >= Duration::from_millis(1900), "{closed:?}");
    // Well before the default grace period of 5 s.
    assert!(closed < Duration::from_millis(4500), "{closed:?}");
    assert!(g.wait_exit().success(), "{}", g.log());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "done\n");
}

#[test]
fn sighup_reload_under_load_drops_no_live_connection() {
    let dir = TempDir::new("sighup-load");
    let (a, b) = (tcp_echo_server(), tcp_echo_server());
    let (port, extra) = (free_port(), free_port());
    let service = |target| {
        format!(
            "- name: svc\n  addr: 127.0.0.1:{port}\n  handler: {{type: tcp}}\n  listener: {{type: tcp}}\n  forwarder: {{nodes: [{{name: t, addr: \"{target}\"}}]}}\n"
        )
    };
    let file = dir.write("gost.yaml", &format!("services:\n{}", service(a)));
    let g = Gost::start(&["-C", &file]);
    g.wait_tcp(port);
    // Live connections with traffic flowing while the reload happens.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
                let mut rounds = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    echo_once(&mut c, format!("worker {i} round {rounds}").as_bytes());
                    rounds += 1;
                    thread::sleep(Duration::from_millis(5));
                }
                rounds
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    // The reload changes the service's handler (new target) and adds one.
    std::fs::write(
        &file,
        format!(
            "services:\n{}- name: extra\n  addr: 127.0.0.1:{extra}\n  handler: {{type: tcp}}\n  listener: {{type: tcp}}\n  forwarder: {{nodes: [{{name: t, addr: \"{b}\"}}]}}\n",
            service(b)
        ),
    )
    .unwrap();
    g.signal(libc::SIGHUP);
    g.wait_tcp(extra);
    // Longer than the grace period: a drain would have closed them.
    thread::sleep(Duration::from_secs(6));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        let rounds = w
            .join()
            .expect("a live connection failed during the reload");
        assert!(rounds > 10, "{rounds}");
    }
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    echo_once(&mut c, b"after");
}

/// Sends `CONNECT target` on a new connection to `port`; the status code
/// and the connection, ready to relay when it is 200.
fn connect_via_http(port: u16, target: &str) -> (u16, TcpStream) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(c, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(c.read(&mut b).unwrap(), 1, "closed mid-head: {head:?}");
        head.push(b[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let code = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, c)
}

/// A nameserver that never answers: a request for a name fails with 503
/// once the resolver's timeout passes, and while it waits, requests for
/// addresses through the same service go through at once.
#[test]
fn a_dns_timeout_fails_only_the_requests_that_need_a_name() {
    let echo = tcp_echo_server();
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = free_port();
    let dir = TempDir::new("dns-timeout");
    let cfg = dir.write(
        "gost.yaml",
        &format!(
            "services:
- name: front
  addr: 127.0.0.1:{port}
  resolver: r
  handler: {{type: http}}
  listener: {{type: tcp}}
resolvers:
- name: r
  nameservers:
  - {{addr: \"udp://{}\", timeout: 1500ms}}
",
            silent.local_addr().unwrap()
        ),
    );
    let g = Gost::start(&["-C", &cfg]);
    g.wait_tcp(port);

    let waiting = thread::spawn(move || {
        let start = Instant::now();
        let (code, _) = connect_via_http(port, &format!("stalled.test:{}", echo.port()));
        (code, start.elapsed())
    });
    thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let (code, mut c) = connect_via_http(port, &echo.to_string());
    assert_eq!(code, 200);
    echo_once(&mut c, b"not held up by the lookup");
    assert!(
        start.elapsed() < Duration::from_millis(1000),
        "an address waited {:?} behind a name's lookup",
        start.elapsed()
    );

    let (code, took) = waiting.join().unwrap();
    assert_eq!(code, 503, "log:\n{}", g.log());
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(10),
        "the lookup failed after {took:?}"
    );
    let (code, mut c) = connect_via_http(port, &echo.to_string());
    assert_eq!(code, 200);
    echo_once(&mut c, b"still serving");
}
