//! GOST's `ssh` tunnel transport: `gost-tunnel` channels over one SSH
//! session per node. gost to gost (socks5 and relay, in a chain with
//! another transport, stats per connection, a wrong password, a loop),
//! and against Python's paramiko (installed in the test venv): paramiko
//! as a client opening `gost-tunnel` channels to our listener and
//! speaking SOCKS5 inside, and as a server taking our dialer's channels.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gost_e2e::homed::{assert_a_loop_is_cut, client, logs, start, via_socks5};
use gost_e2e::tunnel::{established_on, n, wait_stats};
use gost_e2e::*;

const BODY: &str = "hello over the ssh tunnel";

/// gost to gost: socks5 over ssh with a password; every connection a
/// channel of one session, each counted by the server's stats; a wrong
/// password refused without harm to the next client.
#[test]
fn socks5_over_ssh_shares_one_session_and_counts_each_connection() {
    let origin = http_origin("127.0.0.1:0", BODY);
    let (p, api) = (free_port(), free_port());
    let server = start(
        &[
            "-L",
            &format!("socks5+ssh://carol:pw@127.0.0.1:{p}?enableStats=true"),
            "-api",
            &format!("127.0.0.1:{api}"),
        ],
        &[p, api],
    );

    let (bad, bp) = client(&[&format!("socks5+ssh://carol:wrong@127.0.0.1:{p}")]);
    let (done, _) = via_socks5(bp, origin);
    assert!(!done, "a wrong password got through");
    assert!(
        bad.log().contains("refused the login"),
        "{}",
        logs(&[&bad, &server])
    );
    drop(bad);

    let (c, cp) = client(&[&format!("socks5+ssh://carol:pw@127.0.0.1:{p}")]);
    const CONNS: u64 = 5;
    for _ in 0..CONNS {
        assert_eq!(
            via_socks5(cp, origin),
            (true, BODY.to_string()),
            "{}",
            logs(&[&c, &server])
        );
    }
    assert_eq!(established_on(p), 1, "{}", logs(&[&c, &server]));
    let st = wait_stats(api, "service-0", &[&c, &server], |s| {
        n(s, "currentConns") == 0 && n(s, "totalConns") >= CONNS
    });
    assert_eq!(n(&st, "totalConns"), CONNS, "{st}");
}

/// relay over ssh as the second node of a chain whose first is socks5
/// over TLS, and the session replaced once the server restarts.
#[test]
fn relay_over_ssh_after_a_tls_node_and_a_new_session_after_a_restart() {
    let origin = http_origin("127.0.0.1:0", BODY);
    let (a, b) = (free_port(), free_port());
    let first = start(&["-L", &format!("socks5+tls://127.0.0.1:{a}")], &[a]);
    let ssh_node = format!("relay+ssh://u:p@127.0.0.1:{b}");
    let mut second = start(&["-L", &ssh_node], &[b]);
    let (c, cp) = client(&[&format!("socks5+tls://127.0.0.1:{a}"), &ssh_node]);
    for _ in 0..3 {
        assert_eq!(
            via_socks5(cp, origin),
            (true, BODY.to_string()),
            "{}",
            logs(&[&c, &first, &second])
        );
    }
    second.stop();
    drop(second);
    let second = start(&["-L", &ssh_node], &[b]);
    // The first try may still meet the dead session; a new one follows.
    let started = Instant::now();
    while via_socks5(cp, origin) != (true, BODY.to_string()) {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no new session\n{}",
            logs(&[&c, &first, &second])
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A service that is its own ssh node loops through its pooled session:
/// the hop count each channel carries ends it.
#[test]
fn a_loop_through_a_pooled_ssh_session_ends_at_the_hop_limit() {
    assert_a_loop_is_cut(&format!("relay+ssh://127.0.0.1:{}", free_port()));
}

/// paramiko as the client: it logs in with a password, is refused a
/// session channel, and opens `gost-tunnel` channels in which it speaks
/// SOCKS5 to reach the origin; a wrong password is refused.
#[test]
fn paramiko_client_opens_gost_tunnel_channels_to_our_listener() {
    let python = python_with_websockets();
    let origin = http_origin("127.0.0.1:0", BODY);
    let p = free_port();
    let server = start(
        &["-L", &format!("socks5+ssh://dave:pw@127.0.0.1:{p}")],
        &[p],
    );
    let run = |password: &str| {
        let out = Command::new(&python)
            .args(["-c", PARAMIKO_CLIENT])
            .args([&p.to_string(), "dave", password, &origin.to_string()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{text}{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            server.log()
        );
        text
    };
    let good = run("pw");
    assert!(good.contains("session refused: 3"), "{good}");
    assert_eq!(
        good.matches(&format!("body {BODY}")).count(),
        3,
        "{good}\n{}",
        server.log()
    );
    assert!(run("nope").contains("auth failed"));
}

const PARAMIKO_CLIENT: &str = r#"
import socket, struct, sys, paramiko
port, user, password, origin = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
host, oport = origin.rsplit(":", 1)
t = paramiko.Transport(("127.0.0.1", port))
t.start_client(timeout=10)
try:
    t.auth_password(user, password)
except paramiko.AuthenticationException:
    print("auth failed")
    sys.exit(0)
try:
    t.open_session(timeout=10)
    print("session opened")
except paramiko.ChannelException as e:
    print("session refused:", e.code)

def recv(ch, n):
    b = b""
    while len(b) < n:
        d = ch.recv(n - len(b))
        assert d, "closed"
        b += d
    return b

for _ in range(3):
    ch = t.open_channel("gost-tunnel", timeout=10)
    ch.settimeout(10)
    ch.sendall(b"\x05\x01\x00")
    assert recv(ch, 2) == b"\x05\x00"
    ch.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(host) + struct.pack(">H", int(oport)))
    assert recv(ch, 10)[1] == 0
    ch.sendall(b"GET / HTTP/1.1\r\nHost: o\r\n\r\n")
    data = b""
    while True:
        d = ch.recv(65536)
        if not d:
            break
        data += d
    print("body", data.split(b"\r\n\r\n", 1)[1].decode())
    ch.close()
t.close()
"#;

/// paramiko as the server: our `forward+ssh` dialer logs in with a
/// password and opens a `gost-tunnel` channel per connection over one
/// session; the server echoes each channel's bytes in upper case.
#[test]
fn our_dialer_opens_gost_tunnel_channels_to_a_paramiko_server() {
    let python = python_with_websockets();
    let mut server = Paramiko(
        Command::new(&python)
            .args(["-c", PARAMIKO_SERVER])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(server.0.stdout.take().unwrap()).lines();
    let sp: u16 = lines.next().unwrap().unwrap().trim().parse().unwrap();
    let l = free_port();
    let g = start(
        &[
            "-L",
            &format!("tcp://127.0.0.1:{l}/127.0.0.1:9"),
            "-F",
            &format!("forward+ssh://u:pw@127.0.0.1:{sp}"),
        ],
        &[l],
    );
    for i in 0..3 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", l)).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let msg = format!("hello {i}");
        std::io::Write::write_all(&mut s, msg.as_bytes()).unwrap();
        let mut back = vec![0u8; msg.len()];
        std::io::Read::read_exact(&mut s, &mut back).unwrap_or_else(|e| panic!("{e}\n{}", g.log()));
        assert_eq!(back, msg.to_uppercase().as_bytes());
    }
    drop(g);
    // Its output ends once it is gone.
    let _ = server.0.kill();
    let said: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(
        said.iter().filter(|l| l.as_str() == "login u").count(),
        1,
        "one session for all channels: {said:?}"
    );
    // One channel per connection, and maybe one for the start-up probe's.
    let channels = said
        .iter()
        .filter(|l| l.as_str() == "channel gost-tunnel")
        .count();
    assert!((3..=4).contains(&channels), "{said:?}");
    assert_eq!(channels + 1, said.len(), "{said:?}");
}

struct Paramiko(Child);

impl Drop for Paramiko {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const PARAMIKO_SERVER: &str = r#"
import socket, sys, threading, paramiko
key = paramiko.RSAKey.generate(2048)
def say(s):
    print(s, flush=True)
class Server(paramiko.ServerInterface):
    def get_allowed_auths(self, user):
        return "password"
    def check_auth_password(self, user, password):
        if (user, password) == ("u", "pw"):
            say("login " + user)
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED
    def check_channel_request(self, kind, chanid):
        say("channel " + kind)
        if kind == "gost-tunnel":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_UNKNOWN_CHANNEL_TYPE
def upper(ch):
    while True:
        d = ch.recv(65536)
        if not d:
            break
        ch.sendall(d.upper())
    ch.close()
def serve(conn):
    t = paramiko.Transport(conn)
    t.add_server_key(key)
    t.start_server(server=Server())
    while t.is_active():
        ch = t.accept(1)
        if ch is not None:
            threading.Thread(target=upper, args=(ch,), daemon=True).start()
l = socket.socket()
l.bind(("127.0.0.1", 0))
l.listen(8)
say(l.getsockname()[1])
while True:
    c, _ = l.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

#[test]
fn a_channel_of_another_type_is_refused_by_our_listener() {
    // The sshd listener's direct-tcpip is not the ssh listener's: OpenSSH
    // style forwarding asked of an ssh listener is refused.
    let python = python_with_websockets();
    let p = free_port();
    let server = start(&["-L", &format!("relay+ssh://127.0.0.1:{p}")], &[p]);
    let out = Command::new(&python)
        .args(["-c", PARAMIKO_OTHER_CHANNEL, &p.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("direct-tcpip refused: 3") && text.contains("x-other refused: 3"),
        "{text}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    server.wait_log("unsupported channel type");
}

const PARAMIKO_OTHER_CHANNEL: &str = r#"
import sys, paramiko
t = paramiko.Transport(("127.0.0.1", int(sys.argv[1])))
t.start_client(timeout=10)
t.auth_none("anyone")
for kind, dest in (("direct-tcpip", ("127.0.0.1", 9)), ("x-other", None)):
    try:
        t.open_channel(kind, dest_addr=dest, src_addr=("127.0.0.1", 1) if dest else None, timeout=10)
        print(kind, "opened")
    except paramiko.ChannelException as e:
        print(kind, "refused:", e.code)
t.close()
"#;

/// `authorizedKeys` on the ssh and sshd listeners: the listed key,
/// encrypted and opened with its `passphrase`, gets in; another key and
/// a wrong passphrase do not; `passphraseFromKeyring` is refused with a
/// message (there is no keyring to read here).
#[test]
fn authorized_keys_and_an_encrypted_client_key() {
    let dir = TempDir::new("ssh-tunnel-keys");
    let (good, good_pub) = ssh_keygen(&dir, "good", "s3cret");
    let (other, _) = ssh_keygen(&dir, "other", "");
    let keys = dir.write("authorized_keys", &good_pub);
    let origin = http_origin("127.0.0.1:0", BODY);
    for scheme in ["relay+ssh", "sshd"] {
        let p = free_port();
        let server = start(
            &[
                "-L",
                &format!("{scheme}://127.0.0.1:{p}?authorizedKeys={keys}"),
            ],
            &[p],
        );
        let node = |key: &str, pass: &str| {
            format!("{scheme}://erin@127.0.0.1:{p}?privateKeyFile={key}&passphrase={pass}")
        };
        let (c, cp) = client(&[&node(&good, "s3cret")]);
        assert_eq!(
            via_socks5(cp, origin),
            (true, BODY.to_string()),
            "{scheme}: {}",
            logs(&[&c, &server])
        );
        let (bad, bp) = client(&[&node(&other, "")]);
        assert!(
            !via_socks5(bp, origin).0,
            "{scheme}: an unlisted key got in"
        );
        assert!(bad.log().contains("refused the login"), "{}", bad.log());
        // A wrong passphrase stops the client at start-up, naming the file.
        let (status, out, err) =
            run_gost(&["-L", "socks5://127.0.0.1:0", "-F", &node(&good, "wrong")]);
        assert!(!status.success(), "{scheme}");
        assert!(
            format!("{out}{err}").contains("privateKeyFile"),
            "{out}{err}"
        );
        let (status, out, err) = run_gost(&[
            "-L",
            "socks5://127.0.0.1:0",
            "-F",
            &format!("{}&passphraseFromKeyring=true", node(&good, "")),
        ]);
        assert!(!status.success(), "{scheme}");
        assert!(
            format!("{out}{err}").contains("passphraseFromKeyring is not supported"),
            "{out}{err}"
        );
    }
}
