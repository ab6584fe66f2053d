//! A DNS-over-UDP filter: a query for a blocked name (or any name under
//! one) is answered by the plugin itself with NXDOMAIN; every other query
//! goes to the upstream resolver, whose answer the host passes back.
//!
//! `config: {upstream: "1.1.1.1:53", blocked: [ads.example, tracker.test]}`.
//! Datagrams that are not DNS queries are dropped.

use gost_plugin_sdk::datagram::{DatagramInfo, ForwardTo, Verdict};
use gost_plugin_sdk::{log, Datagram, Level};
use serde_json::Value;

const HEADER: usize = 12;
const RCODE_NXDOMAIN: u8 = 3;

struct DnsFilter;

impl Datagram for DnsFilter {
    fn on_datagram(_info: DatagramInfo, data: Vec<u8>) -> Verdict {
        let Some((name, question_end)) = question(&data) else {
            return Verdict::Drop;
        };
        let config: Value =
            serde_json::from_str(&gost_plugin_sdk::config_json()).unwrap_or(Value::Null);
        let blocked = config["blocked"].as_array().is_some_and(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .any(|b| is_under(&name, b))
        });
        if blocked {
            log(Level::Info, &format!("blocked {name}"));
            return Verdict::Reply(nxdomain(&data[..question_end]));
        }
        match config["upstream"].as_str() {
            Some(up) => Verdict::Forward(ForwardTo {
                address: up.to_string(),
                data,
            }),
            None => Verdict::Drop,
        }
    }
}

/// Whether `name` is `domain` or a name under it, ignoring case and a
/// trailing dot.
fn is_under(name: &str, domain: &str) -> bool {
    let domain = domain.trim_end_matches('.');
    name.eq_ignore_ascii_case(domain)
        || (name.len() > domain.len()
            && name.as_bytes()[name.len() - domain.len() - 1] == b'.'
            && name[name.len() - domain.len()..].eq_ignore_ascii_case(domain))
}

/// The first question's name and where the question ends, for a query
/// (QR clear) with at least one question.
fn question(msg: &[u8]) -> Option<(String, usize)> {
    if msg.len() < HEADER || msg[2] & 0x80 != 0 {
        return None;
    }
    let qdcount = u16::from_be_bytes([msg[4], msg[5]]);
    if qdcount == 0 {
        return None;
    }
    let mut at = HEADER;
    let mut labels: Vec<String> = Vec::new();
    loop {
        let len = *msg.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        // Compression pointers have no place in a query's first name.
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(msg.get(at..at + len)?).into_owned());
        at += len;
    }
    // QTYPE and QCLASS.
    at += 4;
    (at <= msg.len()).then(|| (labels.join("."), at))
}

/// An NXDOMAIN answer to the query whose header and first question are
/// `query`.
fn nxdomain(query: &[u8]) -> Vec<u8> {
    let mut r = query.to_vec();
    // QR, the query's opcode and RD; RA.
    r[2] = 0x80 | (query[2] & 0x79);
    r[3] = 0x80 | RCODE_NXDOMAIN;
    // One question, no records.
    r[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    r
}

gost_plugin_sdk::export_datagram!(DnsFilter);
