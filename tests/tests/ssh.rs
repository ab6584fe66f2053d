//! SSH port forwarding (GOST's `sshd` listener, handler, dialer and
//! connector) against OpenSSH: its `ssh` client (`-D`, `-L`, `-R`, with
//! a password through sshpass and with keys from ssh-keygen) against our
//! `sshd` service, and our `sshd` connector (its channels and its bind
//! for `rtcp`) against OpenSSH's own sshd, started here on a free port
//! with its own config, and against our sshd. Keys are made at test time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use gost_e2e::homed::{assert_a_loop_is_cut, client, logs, spawn, start, via_socks5};
use gost_e2e::*;

const BODY: &str = "hello over ssh";
const SSH: &str = "/usr/bin/ssh";
const SSHD: &str = "/usr/sbin/sshd";
const SSHPASS: &str = "/usr/bin/sshpass";

/// The tools this file drives; missing ones fail the test with the
/// package to install (the CI script installs them).
fn need(path: &str, package: &str) {
    assert!(
        std::path::Path::new(path).exists(),
        "{path} is missing: apt-get install {package}"
    );
}

/// OpenSSH client options for a loopback server whose host key is new
/// each run: no config file, no known hosts, no agent.
fn ssh_args(port: u16, user: &str) -> Vec<String> {
    [
        "-F",
        "/dev/null",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ExitOnForwardFailure=yes",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "IdentityAgent=none",
        "-p",
        &port.to_string(),
        "-l",
        user,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A long-running `ssh -N` (forwards only), killed when dropped.
struct SshClient(Child);

impl Drop for SshClient {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl SshClient {
    /// Waits until ssh listens on `port` (a `-D` or `-L` port), failing
    /// with ssh's output if it exits first.
    fn wait_listening(&mut self, port: u16) {
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = self.0.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(e) = self.0.stderr.as_mut() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("ssh exited ({status}) before port {port} opened: {err}");
            }
            assert!(start.elapsed() < TIMEOUT, "ssh never listened on {port}");
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `ssh` with a password through sshpass, or with a key (`-i`).
enum Login<'a> {
    Password(&'a str),
    Key(&'a str),
}

fn ssh_command(port: u16, user: &str, login: &Login, extra: &[&str]) -> Command {
    let mut cmd = match login {
        Login::Password(p) => {
            need(SSHPASS, "sshpass");
            let mut c = Command::new(SSHPASS);
            c.args(["-p", p, SSH]);
            c.args([
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "PreferredAuthentications=password",
            ]);
            c
        }
        Login::Key(k) => {
            let mut c = Command::new(SSH);
            c.args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", k]);
            c
        }
    };
    need(SSH, "openssh-client");
    cmd.args(ssh_args(port, user)).args(extra).arg("127.0.0.1");
    cmd.stdin(Stdio::null());
    cmd
}

fn ssh_forwarding(port: u16, user: &str, login: &Login, forwards: &[&str]) -> SshClient {
    let mut extra = vec!["-N"];
    extra.extend_from_slice(forwards);
    let child = ssh_command(port, user, login, &extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    SshClient(child)
}

/// An ssh that should end by itself (a refusal): its output, or a
/// failure after the timeout.
fn ssh_once(port: u16, user: &str, login: &Login, extra: &[&str]) -> Output {
    let mut child = ssh_command(port, user, login, extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            panic!("ssh {extra:?} did not end");
        }
        thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn curl_direct(port: u16) -> (bool, String) {
    curl_body(&[&format!("http://127.0.0.1:{port}/")])
}

/// `ssh -D`, `-L` and `-R` at once over one session to our sshd, logged
/// in with a password: SOCKS through the session with curl, a local
/// forward, and a remote forward gost binds and sends back.
#[test]
fn openssh_client_forwards_through_gost_sshd_with_a_password() {
    let origin = http_origin("127.0.0.1:0", BODY);
    let p = free_port();
    let api = free_port();
    let g = start(
        &[
            "-L",
            &format!("sshd://alice:s3cret@127.0.0.1:{p}?enableStats=true"),
            "-api",
            &format!("127.0.0.1:{api}"),
        ],
        &[p],
    );
    let (d, l, r) = (free_port(), free_port(), free_port());
    let mut ssh = ssh_forwarding(
        p,
        "alice",
        &Login::Password("s3cret"),
        &[
            "-D",
            &format!("127.0.0.1:{d}"),
            "-L",
            &format!("127.0.0.1:{l}:{origin}"),
            "-R",
            &format!("127.0.0.1:{r}:{origin}"),
        ],
    );
    ssh.wait_listening(d);
    ssh.wait_listening(l);
    for _ in 0..3 {
        let got = curl_body(&[
            "--socks5-hostname",
            &format!("127.0.0.1:{d}"),
            &format!("http://{origin}/"),
        ]);
        assert_eq!(got, (true, BODY.to_string()), "ssh -D\n{}", g.log());
    }
    assert_eq!(
        curl_direct(l),
        (true, BODY.to_string()),
        "ssh -L\n{}",
        g.log()
    );
    // The remote forward is bound by gost once ssh's request is answered.
    g.wait_tcp(r);
    assert_eq!(
        curl_direct(r),
        (true, BODY.to_string()),
        "ssh -R\n{}",
        g.log()
    );
    // Each channel is a connection of the service; the -R forward is one
    // more, open while the session lasts.
    let st = tunnel::wait_stats(api, "service-0", &[&g], |s| tunnel::n(s, "totalConns") >= 5);
    assert_eq!(tunnel::n(&st, "totalErrs"), 0, "{st}\n{}", g.log());
    drop(ssh);
    // The session's end ends its remote forward.
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", r)).is_ok() {
        assert!(
            start.elapsed() < TIMEOUT,
            "port {r} still bound after ssh left\n{}",
            g.log()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// A big transfer each way through `ssh -L` to an echo server: flow
/// control across many windows.
#[test]
fn bulk_through_ssh_local_forward() {
    let echo = tcp_echo_server();
    let p = free_port();
    let g = start(&["-L", &format!("sshd://bob:pw@127.0.0.1:{p}")], &[p]);
    let l = free_port();
    let mut ssh = ssh_forwarding(
        p,
        "bob",
        &Login::Password("pw"),
        &["-L", &format!("127.0.0.1:{l}:{echo}")],
    );
    ssh.wait_listening(l);
    let data = random_bytes(8 << 20, 22);
    let mut s = TcpStream::connect(("127.0.0.1", l)).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut w = s.try_clone().unwrap();
    let sent = data.clone();
    let writer = thread::spawn(move || {
        w.write_all(&sent).unwrap();
        w.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    writer.join().unwrap();
    assert!(
        back == data,
        "echoed {} of {} bytes\n{}",
        back.len(),
        data.len(),
        g.log()
    );
}

/// Key logins from an `authorizedKeys` file: the listed key forwards,
/// another key and a password are refused, the refusal is logged with
/// the client's address and counted, and the good session is untouched.
#[test]
fn authorized_keys_let_in_only_listed_keys() {
    let dir = TempDir::new("ssh-keys");
    let (good, good_pub) = ssh_keygen(&dir, "good", "");
    let (bad, _) = ssh_keygen(&dir, "bad", "");
    let keys = dir.write(
        "authorized_keys",
        &format!("# the one allowed key\n{good_pub}"),
    );
    let origin = http_origin("127.0.0.1:0", BODY);
    let p = free_port();
    let api = free_port();
    let g = start(
        &[
            "-L",
            &format!("sshd://127.0.0.1:{p}?authorizedKeys={keys}&enableStats=true"),
            "-api",
            &format!("127.0.0.1:{api}"),
        ],
        &[p],
    );
    let l = free_port();
    let mut ssh = ssh_forwarding(
        p,
        "anyone",
        &Login::Key(&good),
        &["-L", &format!("127.0.0.1:{l}:{origin}")],
    );
    ssh.wait_listening(l);
    assert_eq!(curl_direct(l), (true, BODY.to_string()), "{}", g.log());

    let out = ssh_once(p, "anyone", &Login::Key(&bad), &["-N"]);
    assert!(!out.status.success(), "a wrong key got in");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Permission denied"), "ssh said: {err}");
    // No password method is offered without an auther.
    let out = ssh_once(p, "anyone", &Login::Password("guess"), &["-N"]);
    assert!(!out.status.success(), "a password got in");

    g.wait_log("authentication failed for user");
    let log = g.log();
    let line = log
        .lines()
        .find(|l| l.contains("authentication failed for user"))
        .unwrap();
    assert!(
        line.contains("anyone") && line.contains("127.0.0.1:"),
        "{log}"
    );
    tunnel::wait_stats(api, "service-0", &[&g], |s| tunnel::n(s, "totalErrs") >= 1);
    assert_eq!(curl_direct(l), (true, BODY.to_string()), "{}", g.log());
}

/// What an SSH client may not have: a shell (the server forwards only),
/// a remote forward on a port that is taken, a target the bypass
/// refuses. Each is refused alone; the session and service go on.
#[test]
fn forwards_a_client_may_not_have_are_refused() {
    let origin = http_origin("127.0.0.1:0", BODY);
    let p = free_port();
    let g = start(
        &[
            "-L",
            &format!("sshd://u:p@127.0.0.1:{p}?bypass=blocked.test"),
        ],
        &[p],
    );

    let out = ssh_once(p, "u", &Login::Password("p"), &["true"]);
    assert!(!out.status.success(), "a shell command ran: {out:?}");

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let t = taken.local_addr().unwrap().port();
    let out = ssh_once(
        p,
        "u",
        &Login::Password("p"),
        &["-N", "-R", &format!("127.0.0.1:{t}:{origin}")],
    );
    assert!(
        !out.status.success(),
        "a forward on a taken port was granted"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("remote port forwarding failed"),
        "ssh said: {err}"
    );
    g.wait_log("sshd tcpip-forward 127.0.0.1:");

    let (l, ok) = (free_port(), free_port());
    let mut ssh = ssh_forwarding(
        p,
        "u",
        &Login::Password("p"),
        &[
            "-L",
            &format!("127.0.0.1:{l}:blocked.test:80"),
            "-L",
            &format!("127.0.0.1:{ok}:{origin}"),
        ],
    );
    ssh.wait_listening(l);
    ssh.wait_listening(ok);
    let (done, body) = curl_direct(l);
    assert!(
        !done && body.is_empty(),
        "a bypassed target answered: {body}"
    );
    assert_eq!(curl_direct(ok), (true, BODY.to_string()), "{}", g.log());
}

/// gost to gost: a socks5 client whose chain is one `sshd` node, to a
/// gost sshd service: connections through one SSH session, and a wrong
/// password refused without harm to the next client.
#[test]
fn gost_sshd_connector_to_gost_sshd() {
    let origin = http_origin("127.0.0.1:0", BODY);
    let p = free_port();
    let server = start(&["-L", &format!("sshd://carol:pw@127.0.0.1:{p}")], &[p]);

    let (bad, bp) = client(&[&format!("sshd://carol:wrong@127.0.0.1:{p}")]);
    let (done, _) = via_socks5(bp, origin);
    assert!(!done, "a wrong password got through");
    assert!(
        bad.log().contains("refused the login"),
        "{}",
        logs(&[&bad, &server])
    );

    let (c, cp) = client(&[&format!("sshd://carol:pw@127.0.0.1:{p}")]);
    for _ in 0..5 {
        assert_eq!(
            via_socks5(cp, origin),
            (true, BODY.to_string()),
            "{}",
            logs(&[&c, &server])
        );
    }
    // One SSH session carries them all.
    assert_eq!(tunnel::established_on(p), 1, "{}", logs(&[&c, &server]));
}

/// OpenSSH's sshd, started here unprivileged on a free port with its
/// own host key and an authorized user key, killed when dropped.
struct OpenSshd {
    _sshd: SshClient,
    _dir: TempDir,
    port: u16,
    /// The user's private key file.
    user_key: String,
}

impl OpenSshd {
    fn start() -> OpenSshd {
        need(SSHD, "openssh-server");
        let dir = TempDir::new("openssh-sshd");
        let (host_key, _) = ssh_keygen(&dir, "host_key", "");
        let (user_key, user_pub) = ssh_keygen(&dir, "user_key", "");
        let keys = dir.write("authorized_keys", &user_pub);
        let p = free_port();
        let config = dir.write(
            "sshd_config",
            &format!(
                "Port {p}\nListenAddress 127.0.0.1\nHostKey {host_key}\nAuthorizedKeysFile {keys}\n\
                 PidFile none\nUsePAM no\nStrictModes no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n\
                 AllowTcpForwarding yes\nLogLevel ERROR\n"
            ),
        );
        // Privilege separation wants its empty directory (made by the
        // service's start script, which is not run here).
        if unsafe_is_root() {
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let sshd = Command::new(SSHD)
            .args(["-D", "-e", "-f", &config])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut sshd = SshClient(sshd);
        sshd.wait_listening(p);
        OpenSshd {
            _sshd: sshd,
            _dir: dir,
            port: p,
            user_key,
        }
    }

    /// An sshd node for the current user, logging in with the key.
    fn node(&self) -> String {
        format!(
            "sshd://{}@127.0.0.1:{}?privateKeyFile={}",
            current_user(),
            self.port,
            self.user_key
        )
    }
}

/// Our sshd connector against OpenSSH's sshd: key login, connections as
/// direct-tcpip channels.
#[test]
fn gost_sshd_connector_to_openssh_sshd() {
    let sshd = OpenSshd::start();
    let origin = http_origin("127.0.0.1:0", BODY);
    let (c, cp) = client(&[&sshd.node()]);
    for _ in 0..3 {
        assert_eq!(
            via_socks5(cp, origin),
            (true, BODY.to_string()),
            "{}",
            c.log()
        );
    }
    let echo = tcp_echo_server();
    let mut s = socks5_to(cp, echo);
    let data = random_bytes(1 << 20, 7);
    let mut w = s.try_clone().unwrap();
    let sent = data.clone();
    let writer = thread::spawn(move || {
        w.write_all(&sent).unwrap();
        w.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    writer.join().unwrap();
    assert!(
        back == data,
        "echoed {} of {} bytes\n{}",
        back.len(),
        data.len(),
        c.log()
    );
}

fn unsafe_is_root() -> bool {
    current_user() == "root"
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A SOCKS5 CONNECT through the proxy on `port` to `target`.
fn socks5_to(port: u16, target: SocketAddr) -> TcpStream {
    let s = tunnel::socks5_connect(port, target);
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// Reverse forwarding through an SSH server (`rtcp` with an `sshd` last
/// node, the `tcpip-forward` request): the server listens, and each
/// connection there comes back as a `forwarded-tcpip` channel that the
/// rtcp service forwards to its target. Against our sshd service and
/// against OpenSSH's sshd.
#[test]
fn rtcp_through_an_sshd_node_binds_on_the_ssh_server() {
    let origin = http_origin("127.0.0.1:0", BODY);
    let p = free_port();
    let ours = start(&["-L", &format!("sshd://u:pw@127.0.0.1:{p}")], &[p]);
    let openssh = OpenSshd::start();
    for (node, server) in [
        (format!("sshd://u:pw@127.0.0.1:{p}"), Some(&ours)),
        (openssh.node(), None),
    ] {
        let r = free_port();
        let c = spawn(&["-L", &format!("rtcp://127.0.0.1:{r}/{origin}"), "-F", &node]);
        let started = Instant::now();
        for _ in 0..3 {
            loop {
                let got = curl_direct(r);
                if got == (true, BODY.to_string()) {
                    break;
                }
                let mut gs = vec![&*c];
                gs.extend(server.map(|s| &**s));
                assert!(
                    started.elapsed() < TIMEOUT,
                    "{node}: {got:?}\n{}",
                    logs(&gs)
                );
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// An sshd service whose own chain is an sshd node to itself loops
/// through its pooled session: the hop count each direct-tcpip channel
/// carries ends it.
#[test]
fn a_loop_through_a_pooled_sshd_session_ends_at_the_hop_limit() {
    assert_a_loop_is_cut(&format!("sshd://127.0.0.1:{}", free_port()));
}
