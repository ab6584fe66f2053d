//! Wire formats shared by handlers and connectors (the server and the
//! client side of each protocol), as pure parse/encode code: both sides
//! use the same bytes, and fuzzing needs no sockets.

pub mod grpc;
pub mod http1;
pub mod obfs;
pub mod plugin;
pub mod relay;
pub mod resp;
pub mod smux;
pub mod sni;
pub mod socks;
pub mod tls;
pub mod tun;
pub mod tunnel;
