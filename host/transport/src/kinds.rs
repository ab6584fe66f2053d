//! The listener and dialer kinds of the transports this build has: names
//! (GOST's first, then aliases), what builds each from config, and what
//! the compatibility table says of it. Each transport adds its own with a
//! `register` call in [`crate::register`].

use std::sync::Arc;

use gost_core::config::{Config, DialerConfig, ListenerConfig, TLSNodeConfig};

use crate::{Dialer, Upgrade};

/// What a listener binds before any transport runs over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socket {
    Tcp,
    Udp,
    /// Nothing bound here: the port is bound on the last node of the
    /// listener's chain (`rtcp`, `rudp`).
    ReverseTcp,
    ReverseUdp,
    /// TCP for GOST's `red` listener: `tproxy` and `reuseport` metadata.
    Redirect,
    /// UDP for GOST's `redu` listener: transparent, with each datagram's
    /// original destination.
    RedirectUdp,
    /// A unix socket at the path the service's address names (`unix`).
    Unix,
    /// Nothing bound here: the socket is bound on the last node of the
    /// listener's chain (`runix`).
    ReverseUnix,
    /// A TUN device (`tun`); the handler binds the tunnel's UDP port.
    Tun,
    /// A TAP device (`tap`), the same for Ethernet frames.
    Tap,
    /// GOST's `dns` listener: UDP, or by its `mode` TCP or TLS.
    Dns,
    /// Standard input and output (`stdio`): nothing bound.
    Stdio,
    /// A serial port (`serial`), opened at the service's address.
    Serial,
}

pub type BuildUpgrade = fn(&ListenerConfig, &Config) -> Result<Arc<dyn Upgrade>, String>;
pub type BuildDialer =
    fn(&DialerConfig, Option<&TLSNodeConfig>) -> Result<Option<Arc<dyn Dialer>>, String>;

pub struct ListenerKind {
    /// The GOST name first, then its aliases.
    pub names: &'static [&'static str],
    pub socket: Socket,
    /// The transport's server side over each accepted connection; none
    /// for plain `tcp` and `udp`.
    pub upgrade: Option<BuildUpgrade>,
    /// Whether it reads the listener's `tls` block.
    pub uses_tls: bool,
    /// What the compatibility table says of it.
    pub summary: &'static str,
}

pub struct DialerKind {
    pub names: &'static [&'static str],
    /// `None` from the builder is plain TCP: nothing to run per connection.
    pub build: BuildDialer,
    pub summary: &'static str,
}

#[derive(Default)]
pub struct Transports {
    listeners: Vec<ListenerKind>,
    dialers: Vec<DialerKind>,
}

impl Transports {
    pub fn add_listener(&mut self, kind: ListenerKind) {
        self.listeners.push(kind);
    }

    pub fn add_dialer(&mut self, kind: DialerKind) {
        self.dialers.push(kind);
    }

    /// The listener a config names; an empty type is GOST's `tcp`.
    pub fn listener(&self, name: &str) -> Option<&ListenerKind> {
        let name = if name.is_empty() { "tcp" } else { name };
        self.listeners.iter().find(|k| k.names.contains(&name))
    }

    pub fn dialer(&self, name: &str) -> Option<&DialerKind> {
        let name = if name.is_empty() { "tcp" } else { name };
        self.dialers.iter().find(|k| k.names.contains(&name))
    }

    pub fn listeners(&self) -> &[ListenerKind] {
        &self.listeners
    }

    pub fn dialers(&self) -> &[DialerKind] {
        &self.dialers
    }

    pub fn dialer_names(&self) -> Vec<&'static str> {
        self.dialers.iter().flat_map(|k| k.names).copied().collect()
    }
}
