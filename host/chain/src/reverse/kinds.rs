//! The reverse listeners' entries in the registry, apart from the
//! listeners themselves: those dial through the router, which builds on
//! the registry, so the registry must not reach them.

use gost_transport::kinds::{ListenerKind, Socket, Transports};

/// Adds `rtcp` and `runix` (with smux, the `mux` feature) and `rudp`.
pub fn register(t: &mut Transports) {
    #[cfg(feature = "mux")]
    t.add_listener(ListenerKind {
        names: &["rtcp"],
        socket: Socket::ReverseTcp,
        upgrade: None,
        uses_tls: false,
        summary: "reverse TCP forwarding: the port is bound on the chain's last node (socks5 or relay BIND, an sshd node's `tcpip-forward`)",
    });
    #[cfg(feature = "mux")]
    t.add_listener(ListenerKind {
        names: &["runix"],
        socket: Socket::ReverseUnix,
        upgrade: None,
        uses_tls: false,
        summary: "reverse unix socket forwarding: the socket is bound on the chain's last node (relay BIND)",
    });
    t.add_listener(ListenerKind {
        names: &["rudp"],
        socket: Socket::ReverseUdp,
        upgrade: None,
        uses_tls: false,
        summary: "reverse UDP forwarding: the port is bound on the chain's last node (socks5 or relay UDP BIND)",
    });
}
