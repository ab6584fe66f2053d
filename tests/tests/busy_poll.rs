//! `GOST_BUSY_POLL`: the process keeps polling instead of sleeping while
//! relayed data flows, and sleeps again once it stops.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::thread;
use std::time::Duration;

use gost_e2e::*;

/// gost pinned to one CPU (so it runs its current-thread runtime on the
/// main thread) forwarding to an echo server, with `busy_poll` as
/// `GOST_BUSY_POLL` when given.
fn start_forward(busy_poll: Option<&str>) -> (Gost, u16) {
    let echo = tcp_echo_server();
    let port = free_port();
    let mut cmd = Command::new(gost_bin());
    cmd.args(["-L", &format!("tcp://127.0.0.1:{port}/{echo}")]);
    if let Some(v) = busy_poll {
        cmd.env("GOST_BUSY_POLL", v);
    }
    // SAFETY: only async-signal-safe libc calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let first = (0..libc::CPU_SETSIZE as usize)
                .find(|&c| libc::CPU_ISSET(c, &set))
                .unwrap_or(0);
            libc::CPU_ZERO(&mut set);
            libc::CPU_SET(first, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let g = Gost::start_with(&mut cmd);
    g.wait_tcp(port);
    (g, port)
}

/// Voluntary context switches (sleeps) of all of the process's threads.
fn sleeps(pid: i32) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        total += status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .map(|v| v.trim().parse::<u64>().unwrap())
            .unwrap_or(0);
    }
    total
}

/// User plus system CPU time of the process, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Sends 60 one-byte messages 5 ms apart through the forward, each echoed
/// back intact, and returns how often gost slept meanwhile.
fn sleeps_during_trickle(g: &Gost, port: u16) -> u64 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = [0u8; 1];
    // The first exchange has the connection set up before counting.
    s.write_all(b"a").unwrap();
    s.read_exact(&mut b).unwrap();
    let before = sleeps(g.pid());
    for i in 0..60u8 {
        thread::sleep(Duration::from_millis(5));
        s.write_all(&[i]).unwrap();
        s.read_exact(&mut b).unwrap();
        assert_eq!(b[0], i);
    }
    sleeps(g.pid()) - before
}

#[test]
fn busy_poll_keeps_polling_while_data_flows_and_sleeps_after() {
    let (plain, plain_port) = start_forward(None);
    let plain_sleeps = sleeps_during_trickle(&plain, plain_port);
    // Each 5 ms gap puts a normal gost to sleep: this is what busy polling
    // removes, and what makes the check below able to fail.
    assert!(
        plain_sleeps >= 30,
        "gost without busy polling slept only {plain_sleeps} times"
    );

    let (busy, port) = start_forward(Some("200ms"));
    let busy_sleeps = sleeps_during_trickle(&busy, port);
    assert!(
        busy_sleeps <= 5,
        "gost with GOST_BUSY_POLL=200ms slept {busy_sleeps} times while data flowed"
    );

    // Quiet for longer than the window: the poller stops and gost sleeps.
    thread::sleep(Duration::from_millis(400));
    let t0 = cpu_ticks(busy.pid());
    thread::sleep(Duration::from_millis(500));
    let used = cpu_ticks(busy.pid()) - t0;
    assert!(
        used <= 5,
        "gost still used {used} clock ticks of CPU in 500 ms after traffic stopped"
    );
}

#[test]
fn busy_poll_refuses_a_bad_duration() {
    let out = Command::new(gost_bin())
        .args(["-L", "tcp://127.0.0.1:0/127.0.0.1:9"])
        .env("GOST_BUSY_POLL", "fast")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("GOST_BUSY_POLL") && err.contains("\"fast\""),
        "stderr: {err}"
    );
}
