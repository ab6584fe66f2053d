//! The type names GOST 3.3's `gost` binary registers (go-gost/gost
//! `cmd/gost/register.go` imports, go-gost/x `Register(...)` calls).
//!
//! GOST decides what a URL scheme means by looking it up in these
//! registries: `http` is a handler, so `http://:8080` is `http+tcp`; `tls`
//! is only a listener, so `tls://:443` is `auto+tls`. A name in no registry
//! silently becomes `auto`/`tcp` in GOST; we refuse it instead, since it is
//! almost always a typo.

pub const HANDLERS: &[&str] = &[
    "api", "auto", "dns", "file", "forward", "http", "http2", "http3", "masque", "metrics", "red",
    "redir", "redirect", "redu", "relay", "router", "rtcp", "rudp", "runix", "serial", "sni",
    "socks", "socks4", "socks4a", "socks5", "ss", "sshd", "ssu", "tap", "tcp", "tun", "tungo",
    "tunnel", "udp", "unix", "wasm",
];

pub const LISTENERS: &[&str] = &[
    "dns", "dtls", "ftcp", "grpc", "h2", "h2c", "h3", "http2", "http3", "icmp", "icmp6", "kcp",
    "mtcp", "mtls", "mws", "mwss", "ohttp", "otls", "pht", "phts", "quic", "red", "redir",
    "redirect", "redu", "rtcp", "rudp", "runix", "serial", "ssh", "sshd", "stdio", "tap", "tcp",
    "tls", "tun", "tungo", "udp", "unix", "ws", "wss", "wt",
];

pub const CONNECTORS: &[&str] = &[
    "direct", "forward", "http", "http2", "masque", "relay", "router", "serial", "sni", "socks",
    "socks4", "socks4a", "socks5", "ss", "sshd", "ssu", "tcp", "tunnel", "unix", "virtual", "wasm",
];

pub const DIALERS: &[&str] = &[
    "direct",
    "dtls",
    "ftcp",
    "grpc",
    "h2",
    "h2c",
    "h3",
    "h3-masque",
    "http2",
    "http3",
    "icmp",
    "icmp6",
    "kcp",
    "mtcp",
    "mtls",
    "mws",
    "mwss",
    "ohttp",
    "ohttps",
    "otls",
    "pht",
    "phts",
    "quic",
    "serial",
    "ssh",
    "sshd",
    "tcp",
    "tls",
    "udp",
    "unix",
    "utls",
    "virtual",
    "ws",
    "wss",
    "wt",
];

pub fn is_handler(name: &str) -> bool {
    HANDLERS.contains(&name)
}

pub fn is_listener(name: &str) -> bool {
    LISTENERS.contains(&name)
}

pub fn is_connector(name: &str) -> bool {
    CONNECTORS.contains(&name)
}

pub fn is_dialer(name: &str) -> bool {
    DIALERS.contains(&name)
}
