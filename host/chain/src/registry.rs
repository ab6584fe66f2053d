//! The one table from GOST type names to what builds them (GOST's
//! `registry` package, filled by explicit `register` calls instead of
//! `init()`): the transports' listeners and dialers, and the connectors.
//! Handlers, which need the router, authers and plugins to build, join
//! them in the program's factory. Every "not supported" refusal and the
//! compatibility table in the docs read it, so a transport or a connector
//! is one module plus its `register` call.

use std::ops::Deref;
use std::sync::OnceLock;

use gost_transport::kinds::Transports;

use crate::connector::{ConnectorKind, Connectors};

#[derive(Default)]
pub struct Registry {
    transports: Transports,
    connectors: Connectors,
}

impl Registry {
    /// Every transport compiled into this build and every connector,
    /// built once.
    pub fn builtin() -> &'static Registry {
        static BUILTIN: OnceLock<Registry> = OnceLock::new();
        BUILTIN.get_or_init(|| Registry::builtin_with(|_, _| {}))
    }

    /// The built-in kinds and those `extend` adds: the program adds the
    /// plugin kinds (`wasm` listener, dialer and connector), whose crate
    /// sits above this one.
    pub fn builtin_with(extend: impl FnOnce(&mut Transports, &mut Connectors)) -> Registry {
        let mut r = Registry::default();
        gost_transport::register(&mut r.transports);
        crate::reverse::kinds::register(&mut r.transports);
        crate::connector::register(&mut r.connectors);
        extend(&mut r.transports, &mut r.connectors);
        r
    }

    /// The connector a config names; an empty type is GOST's `http`.
    pub fn connector(&self, name: &str) -> Option<&ConnectorKind> {
        self.connectors.get(name)
    }

    pub fn connectors(&self) -> &[ConnectorKind] {
        self.connectors.all()
    }
}

/// The listener and dialer lookups are the transports' own.
impl Deref for Registry {
    type Target = Transports;

    fn deref(&self) -> &Transports {
        &self.transports
    }
}
