//! Serial ports through the real binary, on pseudo-terminal pairs the
//! test opens (openpty): gost opens the pair's terminal side as its
//! serial port and the test plays the device on the other side. Covers
//! GOST's serial tutorial cases: TCP into a serial port (`-F serial://`),
//! a serial port to a TCP service (`-L serial:// -F tcp://`, the port
//! reopened after its `timeout` ends a connection), one serial port to
//! another (`serial` listener and handler with a forwarder), and bad
//! addresses and missing devices refused with the field or device named.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::thread;
use std::time::{Duration, Instant};

use gost_e2e::*;

/// A pseudo-terminal pair: `device` is the side gost opens as a serial
/// port; the test reads and writes the other side.
struct Pty {
    master: std::fs::File,
    /// Held open so the master never reads EIO while gost reopens.
    _slave: OwnedFd,
    device: String,
}

impl Pty {
    fn open() -> Pty {
        let (mut m, mut s) = (-1, -1);
        // SAFETY: openpty writes two new descriptors, owned from here on.
        let rc = unsafe {
            libc::openpty(
                &mut m,
                &mut s,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors are ours and open.
        let (master, slave) = unsafe { (std::fs::File::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
        let device = std::fs::read_link(format!("/proc/self/fd/{s}"))
            .unwrap()
            .to_string_lossy()
            .into_owned();
        Pty {
            master,
            _slave: slave,
            device,
        }
    }

    fn send(&mut self, b: &[u8]) {
        self.master.write_all(b).unwrap();
    }

    /// Reads exactly `n` bytes, failing after [`TIMEOUT`].
    fn recv(&mut self, n: usize, g: &Gost) -> Vec<u8> {
        let mut out = vec![0u8; n];
        let mut got = 0;
        let start = Instant::now();
        while got < n {
            let left = TIMEOUT.saturating_sub(start.elapsed());
            assert!(
                !left.is_zero(),
                "{} of {n} bytes from the serial port; log:\n{}",
                got,
                g.log()
            );
            let mut pfd = libc::pollfd {
                fd: self.master.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) };
            if rc <= 0 {
                continue;
            }
            got += self.master.read(&mut out[got..]).unwrap();
        }
        out
    }
}

fn tcp(port: u16) -> TcpStream {
    let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c
}

/// GOST's "TCP service to a local serial port": `-L tcp://... -F
/// serial://DEVICE` (the serial dialer and connector), bytes both ways,
/// and the YAML form with the serial handler's forwarder node naming
/// the port.
#[test]
fn tcp_into_a_serial_port() {
    let mut pty = Pty::open();
    let port = free_port();
    let g = Gost::start(&[
        "-L",
        &format!("tcp://127.0.0.1:{port}/ignored:1"),
        "-F",
        &format!("serial://{}", pty.device),
    ]);
    g.wait_tcp(port);
    let mut c = tcp(port);
    let msg = random_bytes(2000, 1);
    c.write_all(&msg).unwrap();
    assert_eq!(pty.recv(msg.len(), &g), msg);
    let reply = random_bytes(1500, 2);
    pty.send(&reply);
    let mut back = vec![0u8; reply.len()];
    c.read_exact(&mut back).unwrap();
    assert_eq!(back, reply);
    drop(c);
    drop(g);

    let mut pty = Pty::open();
    let dir = TempDir::new("serial-yaml");
    let port = free_port();
    let cfg = dir.write(
        "gost.yaml",
        &format!(
            r#"
services:
- name: to-serial
  addr: 127.0.0.1:{port}
  listener: {{type: tcp}}
  handler: {{type: serial}}
  forwarder: {{nodes: [{{name: tty, addr: {}}}]}}
"#,
            pty.device
        ),
    );
    let g = Gost::start(&["-C", &cfg]);
    g.wait_tcp(port);
    let mut c = tcp(port);
    c.write_all(b"AT\r").unwrap();
    assert_eq!(pty.recv(3, &g), b"AT\r");
    pty.send(b"OK\r\n");
    let mut back = [0u8; 4];
    c.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"OK\r\n");
}

/// GOST's "serial port to a TCP service": `-L serial://DEVICE -F
/// tcp://echo`. With `timeout`, a quiet port ends the connection and
/// the listener opens the port again for the next one.
#[test]
fn a_serial_port_to_a_tcp_service_and_reopened_after_its_timeout() {
    let mut pty = Pty::open();
    let echo = tcp_echo_server();
    let g = Gost::start(&[
        "-D",
        "-L",
        &format!("serial://{},9600,even?timeout=300ms", pty.device),
        "-F",
        &format!("tcp://{echo}"),
    ]);
    g.wait_log(r#""msg":"listening""#);
    let msg = random_bytes(1000, 3);
    pty.send(&msg);
    assert_eq!(pty.recv(msg.len(), &g), msg);
    // Quiet past the timeout: the connection ends, and a second later
    // the port is open again.
    g.wait_log("serial: relaying");
    let first = g.log().matches("serial: relaying").count();
    thread::sleep(Duration::from_millis(1800));
    let start = Instant::now();
    loop {
        pty.send(b"again");
        if let Some(b) = try_recv(&mut pty, 5, Duration::from_millis(500)) {
            assert_eq!(b, b"again");
            break;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "the port was not reopened; log:\n{}",
            g.log()
        );
    }
    assert!(
        g.log().matches("serial: relaying").count() > first,
        "a second connection; log:\n{}",
        g.log()
    );
}

/// Bytes already waiting, or `None` after `wait`.
fn try_recv(pty: &mut Pty, n: usize, wait: Duration) -> Option<Vec<u8>> {
    let mut out = vec![0u8; n];
    let mut got = 0;
    let start = Instant::now();
    while got < n && start.elapsed() < wait {
        let mut pfd = libc::pollfd {
            fd: pty.master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 50) } > 0 {
            got += pty.master.read(&mut out[got..]).unwrap();
        }
    }
    (got == n).then_some(out)
}

/// GOST's "serial port to another" (`-L serial://COM1,9600,odd/COM2`,
/// here in YAML since the ports' paths have slashes): a serial listener
/// and handler whose forwarder node is the second port, opened with the
/// first one's baud rate and parity.
#[test]
fn one_serial_port_to_another() {
    let (mut a, mut b) = (Pty::open(), Pty::open());
    let dir = TempDir::new("serial-two");
    let cfg = dir.write(
        "gost.yaml",
        &format!(
            r#"
services:
- name: two-ports
  addr: {},19200,odd
  listener: {{type: serial}}
  handler: {{type: serial}}
  forwarder: {{nodes: [{{name: b, addr: {}}}]}}
"#,
            a.device, b.device
        ),
    );
    let g = Gost::start(&["-C", &cfg]);
    g.wait_log(r#""msg":"listening""#);
    a.send(b"ping");
    assert_eq!(b.recv(4, &g), b"ping");
    b.send(b"pong");
    assert_eq!(a.recv(4, &g), b"pong");
}

/// Bad addresses stop the service with the field named; a missing
/// device stops a serial listener with the device named, and fails
/// only the connection that dials it, whose error names it.
#[test]
fn bad_serial_addresses_and_missing_devices() {
    let pty = Pty::open();
    for (addr, says) in [
        (format!("{},9600,weird", pty.device), "parity weird"),
        (format!("{},0", pty.device), "baud rate 0"),
        (
            format!("{},9600,mark", pty.device),
            "parity mark is not supported",
        ),
        ("/dev/gost-no-such-tty".to_string(), "/dev/gost-no-such-tty"),
    ] {
        let (status, out, err) = run_gost(&["-L", &format!("serial://{addr}")]);
        assert!(!status.success(), "{addr}: started");
        assert!(
            out.contains(says) || err.contains(says),
            "{addr}: expected {says:?}:\n{out}{err}"
        );
    }

    let port = free_port();
    let g = Gost::start(&[
        "-L",
        &format!("tcp://127.0.0.1:{port}/ignored:1"),
        "-F",
        "serial:///dev/gost-no-such-tty",
    ]);
    g.wait_tcp(port);
    let mut c = tcp(port);
    let mut buf = [0u8; 1];
    assert_eq!(c.read(&mut buf).unwrap_or(0), 0, "closed");
    g.wait_log("/dev/gost-no-such-tty");
    // The service goes on serving.
    g.wait_tcp(port);
}
