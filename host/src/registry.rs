//! The one table from GOST type names to what builds them (GOST's
//! `registry` package, filled by explicit `register` calls instead of
//! `init()`): each module that implements a listener, dialer, connector or
//! handler has a `register(&mut Registry)`, and the factory calls them
//! all once ([`crate::factory::registry`]) and hands the table down to
//! whatever builds from config. Every "not supported" refusal and the
//! compatibility table in the docs read it, so a transport is one module
//! plus its `register` call.

use std::sync::Arc;

use crate::config::{Config, DialerConfig, ListenerConfig, TLSNodeConfig};
use crate::connector::{Common, Connector, ConnectorBuildError};
use crate::metadata::Metadata;
use crate::transport::{Dialer, Upgrade};

/// What a listener binds before any transport runs over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socket {
    Tcp,
    Udp,
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

/// Why an object of a config cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("service \"{service}\": {msg}")]
    Service { service: String, msg: String },
    #[error("service \"{service}\": cannot listen on {addr}: {source}")]
    Bind {
        service: String,
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Invalid(String),
}

pub type BuildConnector = fn(&Metadata, Common) -> Result<Box<dyn Connector>, ConnectorBuildError>;

pub struct ConnectorKind {
    pub names: &'static [&'static str],
    /// Whether it can carry UDP (GOST's socks5 and relay can).
    pub udp: bool,
    pub build: BuildConnector,
    pub summary: &'static str,
}

#[derive(Default)]
pub struct Registry {
    listeners: Vec<ListenerKind>,
    dialers: Vec<DialerKind>,
    connectors: Vec<ConnectorKind>,
}

impl Registry {
    pub fn add_listener(&mut self, kind: ListenerKind) {
        self.listeners.push(kind);
    }

    pub fn add_dialer(&mut self, kind: DialerKind) {
        self.dialers.push(kind);
    }

    pub fn add_connector(&mut self, kind: ConnectorKind) {
        self.connectors.push(kind);
    }

    /// The connector a config names; an empty type is GOST's `http`.
    pub fn connector(&self, name: &str) -> Option<&ConnectorKind> {
        let name = if name.is_empty() { "http" } else { name };
        self.connectors.iter().find(|k| k.names.contains(&name))
    }

    pub fn connectors(&self) -> &[ConnectorKind] {
        &self.connectors
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
