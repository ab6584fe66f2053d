//! A handler that misbehaves on purpose, chosen by the first byte the client
//! sends, so one service can show that a bad connection ends alone:
//! `t` traps, `l` loops forever, `m` allocates until memory runs out,
//! `w` writes after shutting its write side, `r` shuts its write side and
//! then asks the host to write to the client before relaying (to a
//! connection back to the same service), `i` answers with what its
//! `conn-info` says (`service network client-addr local-addr`), `o`
//! prints to stdout and stderr (a short line each, a 5,000-byte line and
//! then 1,000 short lines) before it echoes, anything else is echoed back
//! and the connection is done.

use std::io::{Read, Write};

use gost_plugin_sdk::handler::{dial, ConnInfo, Outcome, RelayStreams};
use gost_plugin_sdk::{Conn, Handler};

struct Faulty;

impl Handler for Faulty {
    fn handle(info: &ConnInfo, mut client: Conn) -> Outcome {
        let mut b = [0u8; 1];
        if client.read_exact(&mut b).is_err() {
            return Outcome::Done;
        }
        match b[0] {
            b't' => panic!("asked to trap"),
            b'l' => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            b'm' => {
                let mut hog: Vec<Vec<u8>> = Vec::new();
                loop {
                    hog.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hog);
                }
            }
            b'w' => {
                let _ = client.shutdown_write();
                match client.write(b"late") {
                    Ok(()) => Outcome::Fail("write after shutdown succeeded".into()),
                    Err(e) => Outcome::Fail(e),
                }
            }
            b'r' => {
                let _ = client.shutdown_write();
                match dial("tcp", &info.local_addr()) {
                    Ok(upstream) => Outcome::Relay(RelayStreams {
                        client,
                        upstream,
                        to_client: b"late".to_vec(),
                        to_upstream: Vec::new(),
                    }),
                    Err(e) => Outcome::Fail(e),
                }
            }
            b'i' => {
                let line = format!(
                    "{} {} {} {}\n",
                    info.service(),
                    info.network(),
                    info.client_addr(),
                    info.local_addr()
                );
                let _ = client.write_all(line.as_bytes());
                Outcome::Done
            }
            b'o' => {
                println!("to stdout from {}", info.service());
                eprintln!("to stderr");
                println!("{}", "x".repeat(5000));
                for i in 0..1000 {
                    println!("flood {i}");
                }
                let _ = client.write_all(b"o");
                Outcome::Done
            }
            other => {
                let _ = client.write_all(&[other]);
                Outcome::Done
            }
        }
    }
}

gost_plugin_sdk::export_handler!(Faulty);
