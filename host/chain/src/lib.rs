//! GOST's chains and what dials through them: the connectors (the client
//! side of each proxy protocol), chains, hops and nodes with their
//! selectors, the router (bypass, hosts, resolver, then a chain), the
//! byte relay, the reverse forwarding listeners that bind through a chain
//! (`rtcp`, `rudp`), and the registry of listener, dialer and connector
//! kinds.

pub mod chain;
pub mod connector;
pub mod registry;
pub mod relay;
pub mod reverse;
pub mod router;
#[cfg(feature = "ss")]
pub mod ss;
