//! A tiny tunnel protocol of our own. The client sends one line,
//!
//! ```text
//! TUNNEL <token> <host:port>\n
//! ```
//!
//! and gets `OK\n` once the target is connected, then the connection is a
//! plain byte pipe to the target. Any error gets `ERR <reason>\n` and the
//! connection closes. Tokens come from the config:
//! `config: {tokens: [s3cret, ...]}`; each token names the client in logs.

use std::io::{BufRead, BufReader, Write};

use gost_plugin_sdk::handler::{dial, ConnInfo, Outcome, RelayStreams};
use gost_plugin_sdk::{log, Conn, Handler, Level};
use serde_json::Value;

/// A request line longer than this is not our protocol.
const MAX_LINE: u64 = 1024;

struct TokenTunnel;

impl Handler for TokenTunnel {
    fn handle(info: &ConnInfo, mut client: Conn) -> Outcome {
        let mut line = String::new();
        let mut r = BufReader::with_capacity(MAX_LINE as usize, &mut client);
        if std::io::Read::take(&mut r, MAX_LINE)
            .read_line(&mut line)
            .is_err()
        {
            return Outcome::Done;
        }
        // Bytes after the request line are the tunnel's first payload.
        let early = r.buffer().to_vec();
        drop(r);
        let mut fields = line.split_whitespace();
        let (Some("TUNNEL"), Some(token), Some(target), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return refuse(client, "bad request line");
        };
        if !allowed(token) {
            return refuse(client, "bad token");
        }
        let upstream = match dial("tcp", target) {
            Ok(u) => u,
            Err(e) => return refuse(client, &e),
        };
        if !early.is_empty() && upstream.write(&early).is_err() {
            return refuse(client, "target closed");
        }
        if client.write_all(b"OK\n").is_err() {
            return Outcome::Done;
        }
        log(Level::Info, &format!("{} -> {target}", info.client_addr()));
        Outcome::Relay(RelayStreams::new(client, upstream))
    }
}

fn allowed(token: &str) -> bool {
    let config: Value = serde_json::from_str(&gost_plugin_sdk::config_json()).unwrap_or_default();
    config["tokens"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t.as_str() == Some(token)))
}

fn refuse(mut client: Conn, why: &str) -> Outcome {
    let _ = client.write_all(format!("ERR {why}\n").as_bytes());
    Outcome::Fail(why.to_string())
}

gost_plugin_sdk::export_handler!(TokenTunnel);

/// The protocol against the SDK's mock host, natively: `cargo test`.
#[cfg(test)]
mod tests {
    use super::*;
    use gost_plugin_sdk::testing::MockHost;

    fn host() -> MockHost {
        MockHost::new()
            .config(r#"{"tokens": ["s3cret"]}"#)
            .upstream("10.0.0.1:80", &[])
    }

    #[test]
    fn a_good_token_is_relayed_with_its_early_bytes() {
        let run = host().handle::<TokenTunnel>(&[b"TUNNEL s3cret 10.0.0.1:80\nGET / HTTP/1.0\r\n"]);
        assert!(matches!(run.outcome, Outcome::Relay(_)), "{run:?}");
        assert_eq!(run.client.written(), b"OK\n");
        let (addr, upstream) = &run.dialed[0];
        assert_eq!(addr, "10.0.0.1:80");
        assert_eq!(upstream.written(), b"GET / HTTP/1.0\r\n");
        assert_eq!(run.logs.len(), 1);
        assert!(run.logs[0].1.ends_with("-> 10.0.0.1:80"), "{:?}", run.logs);
    }

    #[test]
    fn refusals_say_why() {
        for (line, why) in [
            (&b"TUNNEL wrong 10.0.0.1:80\n"[..], "bad token"),
            (b"HELLO\n", "bad request line"),
            (b"TUNNEL s3cret 10.0.0.1:80 extra\n", "bad request line"),
        ] {
            let run = host().handle::<TokenTunnel>(&[line]);
            assert!(
                matches!(&run.outcome, Outcome::Fail(w) if w == why),
                "{run:?}"
            );
            assert_eq!(run.client.written(), format!("ERR {why}\n").as_bytes());
            assert!(run.dialed.is_empty());
        }
        let run = host().handle::<TokenTunnel>(&[b"TUNNEL s3cret 10.0.0.2:80\n"]);
        assert!(
            matches!(&run.outcome, Outcome::Fail(w) if w.contains("refused")),
            "{run:?}"
        );
        assert!(run.client.written().starts_with(b"ERR "));
    }

    #[test]
    fn a_line_split_across_reads_is_one_request() {
        let run = host().handle::<TokenTunnel>(&[b"TUNNEL s3c", b"ret 10.0.0.1", b":80\n"]);
        assert!(matches!(run.outcome, Outcome::Relay(_)), "{run:?}");
    }
}
