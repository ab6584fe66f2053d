//! What a connector's BIND gives back for reverse forwarding (`rtcp`,
//! `rudp`): the stream the node answered on, now carrying either an smux
//! session (TCP) or UDP-over-TCP frames (UDP), and how the node announces
//! each peer of a TCP BIND on its stream.

use gost_core::stream::Stream;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindNetwork {
    Tcp,
    Udp,
    /// A unix socket at a path on the node (`runix`), multiplexed as TCP.
    Unix,
}

/// The header that starts each stream of a multiplexed TCP BIND.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerHeader {
    /// A SOCKS5 reply whose address is the peer's (GOST's `mbind.go`).
    Socks5,
    /// A relay response with the peer's address feature (GOST's relay
    /// `tcpHandler`).
    Relay,
}

#[derive(Debug)]
pub struct Bound {
    /// The address the node reports it bound, as it reports it.
    pub addr: String,
    pub stream: Stream,
    pub header: PeerHeader,
    /// The session's settings when the connector has its own (tunnel);
    /// otherwise the listener's.
    #[cfg(feature = "mux")]
    pub mux: Option<gost_transport::mux::MuxConfig>,
    /// The sshd connector's bind: the connections come as SSH channels
    /// the node opens, not over `stream` (which is then unused).
    #[cfg(feature = "ssh")]
    pub forwarded: Option<gost_transport::ssh::Forwarded>,
}

/// The address a BIND asks for: GOST's `0.0.0.0` defaults for TCP and
/// UDP, a unix socket's path as it is.
pub fn wire_addr_for(network: BindNetwork, addr: &str) -> String {
    match network {
        BindNetwork::Unix => addr.to_string(),
        _ => wire_addr(addr),
    }
}

/// GOST's connectors ask for `0.0.0.0:port` when the address has no host
/// (`:2222`), and for any port on all IPv4 interfaces when it is empty.
pub fn wire_addr(addr: &str) -> String {
    if addr.is_empty() {
        return "0.0.0.0:0".into();
    }
    match addr.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => addr.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_without_host_asks_for_all_ipv4_interfaces() {
        assert_eq!(wire_addr(":2222"), "0.0.0.0:2222");
        assert_eq!(wire_addr(""), "0.0.0.0:0");
        assert_eq!(wire_addr("127.0.0.1:80"), "127.0.0.1:80");
        assert_eq!(wire_addr("[::1]:80"), "[::1]:80");
    }
}
