//! One function per fuzz target, each fed bytes a client, a peer or a
//! user controls. Besides "no panic, no hang", each checks what must hold
//! of its parser (a decoded frame encodes back to the same bytes; a body
//! decoder never claims more bytes than it was given; an escaped value
//! has no control bytes), so a fuzzer finds wrong answers too.
//!
//! The cargo-fuzz binaries in `libfuzzer/` call these with libFuzzer's
//! inputs (nightly, `fuzz/run.sh`); `tests/corpus.rs` replays the saved
//! corpus and a bounded number of its mutations on stable, in CI.

mod handlers;

pub use handlers::{handlers, sniffing};

use gost_proto::{grpc, http1, obfs, relay, smux, sni, socks, tls, tunnel};

/// A fuzz target: bytes in, a panic for anything that must not happen.
pub type Target = fn(&[u8]);

/// Every target by name, as the corpus folders are named.
pub const TARGETS: &[(&str, Target)] = &[
    ("socks_udp", socks_udp),
    ("relay_features", relay_features),
    ("tunnel_features", tunnel_features),
    ("smux_frames", smux_frames),
    ("http1_body", http1_body),
    ("client_hello", client_hello),
    ("config", config),
    ("cli", cli),
    ("values", values),
    ("escape", escape),
    ("handlers", handlers),
    ("sniffing", sniffing),
    ("grpc_messages", grpc_messages),
    ("obfs_http", obfs_http),
    ("obfs_tls", obfs_tls),
    ("sni_rewrite", sni_rewrite),
];

/// SOCKS5 UDP headers and UDP-over-TCP frames: a parsed address writes
/// out as bytes that read back as the same address (a domain that is an
/// IP literal, or an IPv4-mapped IPv6 address, is written in its plain
/// form once, and from then on unchanged).
pub fn socks_udp(data: &[u8]) {
    fn put(addr: &socks::TargetAddr) -> Vec<u8> {
        let mut out = vec![0, 0, 0];
        match addr {
            socks::TargetAddr::Ip(sa) => socks::put_addr(&mut out, *sa),
            socks::TargetAddr::Domain(host, port) => socks::put_host(&mut out, host, *port),
        }
        out
    }
    if let Some((addr, end)) = socks::parse_header(data) {
        assert!(end <= data.len());
        let once = put(&addr);
        let (again, _) = socks::parse_header(&once).expect("our own header parses");
        assert_eq!(put(&again), once, "{addr} does not re-encode stably");
    }
    let mut rest = data;
    while let Ok(Some((_, start, end))) = socks::next_frame(rest) {
        assert!(start <= end && end <= rest.len() && end > 0);
        rest = &rest[end..];
    }
}

/// A relay request's `TYPE LEN DATA` features and address features.
pub fn relay_features(data: &[u8]) {
    let mut rest = data;
    while let Some((kind, body, next)) = relay::split_feature(rest) {
        let mut out = Vec::new();
        relay::put_feature(&mut out, kind, body);
        assert_eq!(out, rest[..rest.len() - next.len()]);
        let _ = relay::parse_addr(body);
        rest = next;
    }
}

/// The tunnel side's features (user/pass, addresses, tunnel ids,
/// network): whatever parses encodes again to bytes that parse (a name
/// may come back as an address: `1.2.3.4` sent as a name is re-sent as
/// IPv4, as GOST does), and a tunnel id's text parses back to the same 16
/// bytes.
pub fn tunnel_features(data: &[u8]) {
    let Ok(features) = tunnel::parse_features(data) else {
        return;
    };
    if let Ok(b) = tunnel::encode(1, &features) {
        let again = tunnel::parse_features(&b[4..]).expect("re-encoded features parse");
        assert_eq!(again.len(), features.len());
    }
    for f in &features {
        if let tunnel::Feature::Tunnel(id) = f {
            let t = tunnel::TunnelId(*id);
            if !t.is_zero() {
                assert_eq!(
                    tunnel::TunnelId::parse(&t.to_string()).map(|p| p.key()),
                    Some(t.key())
                );
            }
        }
    }
}

/// smux frames of either version: each decoded frame encodes back to its
/// own bytes, and the decoder never reads past what it was given.
pub fn smux_frames(data: &[u8]) {
    let Some((&version, mut rest)) = data.split_first() else {
        return;
    };
    while let Ok(Some((frame, used))) = smux::decode(rest, version) {
        assert!(used <= rest.len() && used >= smux::HEADER_LEN);
        let mut out = Vec::new();
        smux::encode(frame, version, &mut out);
        assert_eq!(out, rest[..used], "{frame:?}");
        rest = &rest[used..];
    }
}

/// An HTTP/1.x body under each framing, cut into the pieces the second
/// byte chooses: counting (`advance`) and decoding agree, and a decoder
/// never takes more than it is given or yields more payload than it took.
pub fn http1_body(data: &[u8]) {
    let [kind, cut, body @ ..] = data else {
        return;
    };
    let framing = match kind % 3 {
        0 => http1::Framing::Length(u64::from(*cut) * 7),
        1 => http1::Framing::Chunked,
        _ => http1::Framing::UntilClose,
    };
    let piece = usize::from(*cut).max(1);
    let mut counting = http1::Decoder::new(framing);
    let mut decoding = http1::Decoder::new(framing);
    let mut payload = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let chunk = &rest[..piece.min(rest.len())];
        let counted = counting.advance(chunk);
        let before = payload.len();
        let decoded = decoding.decode(chunk, &mut payload);
        assert_eq!(counted, decoded, "advance and decode disagree");
        let Ok(used) = decoded else {
            return;
        };
        assert!(used <= chunk.len());
        assert!(payload.len() - before <= used);
        if used < chunk.len() && (decoding.done() || used == 0) {
            return;
        }
        rest = &rest[used..];
    }
}

/// A ClientHello's SNI, as sniffing and the forwarder plugins read it.
pub fn client_hello(data: &[u8]) {
    if let Some(name) = gost_handler::sniffing::server_name(data) {
        assert!(name.len() < data.len());
    }
}

/// A config file, YAML or JSON by the first byte, through the checks
/// that start-up and `POST /config` run.
pub fn config(data: &[u8]) {
    let Some((&kind, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let loaded = if kind % 2 == 0 {
        gost_core::config::Config::from_yaml_str(text)
    } else {
        gost_core::config::Config::from_json_str(text)
    };
    if let Ok(loaded) = loaded {
        let _ = gost::factory::check(&loaded.config);
    }
}

/// A command line, arguments separated by NUL bytes: parsed, turned into
/// a config and checked, as `gost -L ... -F ...` is.
pub fn cli(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let args: Vec<String> = text.split('\0').map(str::to_owned).collect();
    if let Ok(parsed) = gost::cli::parse_args(&args) {
        if let Ok(config) = gost::cli::build_config(&parsed) {
            let _ = gost::factory::check(&config);
        }
    }
}

/// The small text values of config and metadata: durations, port
/// ranges, host:port, routing rules, bypass globs, sizes, booleans.
pub fn values(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = gost_core::config::Duration::parse(text);
    if let Ok((lo, hi)) = gost_core::config::parse_port_range(text) {
        assert!(lo <= hi);
    }
    let _ = gost_core::addr::split_host_port(text);
    let _ = gost_core::addr::host_and_port(text);
    let _ = gost_core::routing::rule::parse(text);
    let _ = gost_core::bypass::pattern::Glob::parse(text);
    let _ = gost_core::limiter::traffic::parse_size(text);
    let _ = gost_core::metadata::parse_go_bool(text);
}

/// Whatever a client sends, its escaped form has no control or
/// bidirectional characters, so it cannot forge a log line, drive a
/// terminal or read differently than it is; the log writer's last guard
/// holds the same over a whole line.
pub fn escape(data: &[u8]) {
    use gost_core::escape::{esc, esc_bytes, is_unsafe, LineGuard};
    use std::io::Write;
    let shown = esc_bytes(data).to_string();
    assert!(!shown.chars().any(is_unsafe), "{shown:?}");
    if let Ok(text) = std::str::from_utf8(data) {
        let shown = esc(text).to_string();
        assert!(!shown.chars().any(is_unsafe), "{shown:?}");
    }
    let mut line = Vec::new();
    LineGuard(&mut line).write_all(data).unwrap();
    let body = line.strip_suffix(b"\n").unwrap_or(&line);
    let body = String::from_utf8(body.to_vec()).expect("the guard writes UTF-8");
    assert!(!body.chars().any(is_unsafe), "{body:?}");
}

/// gRPC tunnel messages as GOST's peers send them: the length prefix is
/// checked against the limit, `Chunk.data` is found inside the message,
/// and data written by `encode_chunk` reads back as itself.
pub fn grpc_messages(data: &[u8]) {
    const MAX: usize = 4 << 20;
    if let Ok(Some(len)) = grpc::message_len(data, MAX) {
        assert!(len <= MAX);
        if let Some(msg) = data.get(5..5 + len) {
            if let Ok(range) = grpc::decode_chunk(msg) {
                assert!(range.start <= range.end && range.end <= msg.len());
            }
        }
    }
    let mut out = Vec::new();
    grpc::encode_chunk(data, &mut out);
    assert_eq!(out.len(), grpc::chunk_message_len(data.len()));
    let len = grpc::message_len(&out, usize::MAX)
        .expect("our own prefix")
        .expect("a whole prefix");
    let range = grpc::decode_chunk(&out[5..5 + len]).expect("our own message");
    assert_eq!(out[5..][range], *data);
}

/// obfs-http heads: the client's request as the listener reads it, and
/// the server's answer as the dialer finds its end.
pub fn obfs_http(data: &[u8]) {
    if let Ok(Some(req)) = obfs::http::parse_request(data) {
        assert!(req.head_len <= data.len());
    }
    if let Ok(Some(end)) = obfs::http::response_end(data) {
        assert!(end <= data.len());
    }
}

/// obfs-tls: the listener's ClientHello parse, and the dialer's record
/// reader fed the server's bytes whole and cut into pieces (the second
/// byte picks the size): both ways give the same data and the same
/// verdict.
pub fn obfs_tls(data: &[u8]) {
    let _ = obfs::tls::parse_client_hello(data);
    let [_, cut, rest @ ..] = data else {
        return;
    };
    let mut whole = obfs::tls::ServerRecords::default();
    let mut whole_out = Vec::new();
    let whole_ok = whole.feed(rest, &mut whole_out).is_ok();
    let mut pieces = obfs::tls::ServerRecords::default();
    let mut pieces_out = Vec::new();
    let mut pieces_ok = true;
    for piece in rest.chunks(usize::from(*cut).max(1)) {
        if pieces.feed(piece, &mut pieces_out).is_err() {
            pieces_ok = false;
            break;
        }
    }
    assert_eq!(
        whole_ok, pieces_ok,
        "the verdict depends on how bytes arrive"
    );
    if whole_ok {
        assert_eq!(
            whole_out, pieces_out,
            "the data depends on how bytes arrive"
        );
    }
}

/// The sni connector's rewrites: a rewritten ClientHello is still one
/// whole record whose hello names the new host, and an HTTP head keeps
/// its request line.
pub fn sni_rewrite(data: &[u8]) {
    const HOST: &str = "rewritten.example";
    if let Some(out) = sni::rewrite_client_hello(data, HOST) {
        assert_eq!(
            tls::record_len(&out),
            Some(out.len()),
            "not one whole record"
        );
        let had_name = tls::ClientHello::parse(&data[5..]).and_then(|h| h.server_name());
        if had_name.is_some() {
            let hello = tls::ClientHello::parse(&out[5..]).expect("our own hello parses");
            assert_eq!(hello.server_name().as_deref(), Some(HOST));
        }
    }
    // Only a Host line is rewritten: a first line that is not one (the
    // request line) stays as it was.
    let out = sni::rewrite_http_host(data, HOST);
    if let Some(nl) = data.iter().position(|&b| b == b'\n') {
        let line = &data[..=nl];
        if !(line.len() >= 5 && line[..5].eq_ignore_ascii_case(b"host:")) {
            assert!(out.starts_with(line), "the request line changed");
        }
    }
}
