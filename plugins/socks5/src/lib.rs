//! A SOCKS5 proxy handler (RFC 1928) as a plugin: CONNECT only, with the
//! user/password method (RFC 1929) checked by the service's auther. After
//! the handshake it hands both connections back, so the host relays the
//! payload natively.

use std::io::{BufRead, Read, Write};

use gost_plugin_sdk::handler::{authenticate, dial, BufConn, ConnInfo, Outcome};
use gost_plugin_sdk::{log, log_enabled, Conn, Handler, Level};

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0;
const USER_PASS: u8 = 2;
const NO_METHOD: u8 = 0xff;
const CMD_CONNECT: u8 = 1;

// Reply codes.
const SUCCEEDED: u8 = 0;
const HOST_UNREACHABLE: u8 = 4;
const CONNECTION_REFUSED: u8 = 5;
const COMMAND_NOT_SUPPORTED: u8 = 7;
const ADDRESS_NOT_SUPPORTED: u8 = 8;

struct Socks5;

impl Handler for Socks5 {
    fn handle(info: &ConnInfo, client: Conn) -> Outcome {
        // One host read usually brings a whole message, and each reply goes
        // out with the read for the next one: a host call per round trip.
        // Replies written on the way out of a failed handshake are sent when
        // `c` is dropped.
        let mut c = BufConn::with_capacity(512, client);
        let target = match handshake(&mut c) {
            Ok(Step::Target(t)) => t,
            Ok(Step::Refused(why)) => return Outcome::Fail(why),
            // The client went away: not the server's failure.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Outcome::Done,
            Err(e) => return Outcome::Fail(format!("socks5 handshake: {e}")),
        };
        let upstream = match dial("tcp", &target) {
            Ok(u) => u,
            Err(e) => {
                let code = if e.contains("refused") {
                    CONNECTION_REFUSED
                } else {
                    HOST_UNREACHABLE
                };
                let _ = c.write_all(&reply(code));
                return Outcome::Fail(format!("connect {target}: {e}"));
            }
        };
        if log_enabled(Level::Debug) {
            log(Level::Debug, &format!("{} -> {target}", info.client_addr()));
        }
        // The success reply goes out with the relay, and bytes the client
        // sent after its request go on to the target.
        let _ = c.write_all(&reply(SUCCEEDED));
        c.relay(upstream)
    }
}

enum Step {
    Target(String),
    Refused(String),
}

fn handshake(r: &mut BufConn) -> std::io::Result<Step> {
    let [ver, n] = read_array(r)?;
    if ver != VERSION {
        return Ok(Step::Refused(format!("not SOCKS5 (version {ver})")));
    }
    let mut offered = [0u8; 255];
    let methods = &mut offered[..n as usize];
    r.read_exact(methods)?;
    // Without an auther the host lets an empty user in; then no password
    // is needed, as GOST's socks5 handler does.
    let open = authenticate("", "").is_some();
    let method = if open && methods.contains(&NO_AUTH) {
        NO_AUTH
    } else if methods.contains(&USER_PASS) {
        USER_PASS
    } else {
        NO_METHOD
    };
    r.write_all(&[VERSION, method])?;
    match method {
        NO_METHOD => return Ok(Step::Refused("no acceptable auth method".into())),
        USER_PASS => {
            let [_sub, ulen] = read_array(r)?;
            let user = read_string(r, ulen as usize)?;
            let [plen] = read_array(r)?;
            let pass = read_string(r, plen as usize)?;
            if authenticate(&user, &pass).is_none() {
                r.write_all(&[1, 1])?;
                return Ok(Step::Refused(format!(
                    "user {user:?}: authentication failed"
                )));
            }
            r.write_all(&[1, 0])?;
        }
        _ => {}
    }
    let [ver, cmd, _rsv, atyp] = read_array(r)?;
    if ver != VERSION {
        return Ok(Step::Refused(format!("bad request version {ver}")));
    }
    let host = match atyp {
        1 => {
            let a: [u8; 4] = read_array(r)?;
            std::net::Ipv4Addr::from(a).to_string()
        }
        3 => {
            let [len] = read_array(r)?;
            read_string(r, len as usize)?
        }
        4 => {
            let a: [u8; 16] = read_array(r)?;
            format!("[{}]", std::net::Ipv6Addr::from(a))
        }
        other => {
            r.write_all(&reply(ADDRESS_NOT_SUPPORTED))?;
            return Ok(Step::Refused(format!("address type {other} not supported")));
        }
    };
    let port = u16::from_be_bytes(read_array(r)?);
    if cmd != CMD_CONNECT {
        r.write_all(&reply(COMMAND_NOT_SUPPORTED))?;
        return Ok(Step::Refused(format!("command {cmd} not supported")));
    }
    Ok(Step::Target(format!("{host}:{port}")))
}

fn read_array<const N: usize>(r: &mut impl Read) -> std::io::Result<[u8; N]> {
    let mut a = [0u8; N];
    r.read_exact(&mut a)?;
    Ok(a)
}

fn read_string(r: &mut impl BufRead, len: usize) -> std::io::Result<String> {
    let mut b = vec![0u8; len];
    r.read_exact(&mut b)?;
    String::from_utf8(b).map_err(|_| std::io::Error::other("name is not UTF-8"))
}

/// A reply with the bound address left as 0.0.0.0:0, which clients ignore
/// for CONNECT.
fn reply(code: u8) -> [u8; 10] {
    [VERSION, code, 0, 1, 0, 0, 0, 0, 0, 0]
}

gost_plugin_sdk::export_handler!(Socks5);
