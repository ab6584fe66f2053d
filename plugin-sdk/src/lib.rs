//! Write gost-rs plugins in Rust.
//!
//! A plugin is a WebAssembly component built for `wasm32-wasip2`. It
//! implements one of the traits [`Handler`], [`Forwarder`] or [`Observer`]
//! and exports it with the matching macro. Enable only that world's cargo
//! feature (`handler`, `forwarder` or `observer`) so the component declares
//! nothing else.
//!
//! A handler that answers every client with a greeting and then relays it to
//! a backend named in the plugin's config:
//!
//! ```no_run
//! use std::io::Write;
//! use gost_plugin_sdk::handler::{dial, ConnInfo, Outcome, RelayStreams};
//! use gost_plugin_sdk::{log, log_enabled, Conn, Handler, Level};
//!
//! struct Greeter;
//!
//! impl Handler for Greeter {
//!     fn handle(info: &ConnInfo, mut client: Conn) -> Outcome {
//!         // Formatting costs more than the check: skip it when no log
//!         // would keep the line.
//!         if log_enabled(Level::Debug) {
//!             log(Level::Debug, &format!("client {}", info.client_addr()));
//!         }
//!         let backend = gost_plugin_sdk::config_json();
//!         let addr = backend.trim_matches(|c| "{}\"".contains(c));
//!         if client.write_all(b"hello\n").is_err() {
//!             return Outcome::Done;
//!         }
//!         match dial("tcp", addr) {
//!             Ok(upstream) => Outcome::Relay(RelayStreams::new(client, upstream)),
//!             Err(e) => Outcome::Fail(e),
//!         }
//!     }
//! }
//!
//! gost_plugin_sdk::export_handler!(Greeter);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` and point a
//! service at the `.wasm` file: `handler: {type: wasm, plugin: {type: wasm,
//! path: greeter.wasm}}`.
//!
//! Built for any other target (as `cargo test` does), the host's side is
//! the mock in [`testing`]: the same types and functions, answered by a
//! [`testing::MockHost`] the test sets up, so plugin logic is unit-tested
//! natively.

#[doc(hidden)]
pub mod common {
    wit_bindgen::generate!({
        world: "common",
        path: "wit",
    });
}

#[cfg(target_family = "wasm")]
pub use common::gost::plugin::runtime::config as config_json;
#[cfg(target_family = "wasm")]
pub use common::gost::plugin::runtime::{log, log_enabled};
#[cfg(target_family = "wasm")]
pub use common::gost::plugin::types::Conn;
pub use common::gost::plugin::types::Level;
#[cfg(not(target_family = "wasm"))]
pub use testing::host::{config_json, log, log_enabled};
#[cfg(not(target_family = "wasm"))]
pub use testing::MockConn as Conn;

#[cfg(not(target_family = "wasm"))]
pub mod testing;

/// The stream a handler reads and writes; the host owns the socket.
pub type Stream = Conn;

impl std::io::Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let max = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let data = Conn::read(self, max).map_err(std::io::Error::other)?;
        buf[..data.len()].copy_from_slice(&data);
        Ok(data.len())
    }
}

impl std::io::Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Conn::write(self, buf).map_err(std::io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(feature = "handler")]
pub mod handler {
    //! The `handler` world: one call per accepted connection.

    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)] // generated export shims
    pub mod bindings {
        wit_bindgen::generate!({
            world: "handler",
            path: "wit",
            with: {
                "gost:plugin/types@0.3.0": crate::common::gost::plugin::types,
                "gost:plugin/runtime@0.3.0": crate::common::gost::plugin::runtime,
                "gost:plugin/network@0.3.0": generate,
            },
            pub_export_macro: true,
            default_bindings_module: "gost_plugin_sdk::handler::bindings",
            export_macro_name: "export_handler_world",
        });
    }

    #[cfg(target_family = "wasm")]
    pub use crate::common::gost::plugin::types::ConnInfo;
    #[cfg(not(target_family = "wasm"))]
    pub use crate::testing::host::{authenticate, dial};
    #[cfg(not(target_family = "wasm"))]
    pub use crate::testing::{ConnInfo, Outcome, RelayStreams};
    #[cfg(target_family = "wasm")]
    pub use bindings::gost::plugin::network::{authenticate, dial};
    #[cfg(target_family = "wasm")]
    pub use bindings::{Outcome, RelayStreams};

    mod buf_conn;
    pub use buf_conn::BufConn;

    #[cfg(target_family = "wasm")]
    impl RelayStreams {
        /// Both streams with nothing to write before the relay.
        pub fn new(client: crate::Conn, upstream: crate::Conn) -> Self {
            RelayStreams {
                client,
                upstream,
                to_client: Vec::new(),
                to_upstream: Vec::new(),
            }
        }
    }

    /// A protocol handler. `handle` runs once per connection; the instance
    /// may serve many connections one after another, so keep per-client
    /// state on the stack.
    pub trait Handler {
        /// `info` answers questions about the connection (`client_addr()`,
        /// `local_addr()`, `service()`, `network()`); each is a host call,
        /// so ask only for what you use.
        fn handle(info: &ConnInfo, client: crate::Conn) -> Outcome;
    }
}

#[cfg(feature = "handler")]
pub use handler::Handler;

/// Exports a [`Handler`] implementation as the plugin's `handle` function.
/// Built natively (for `cargo test`), it only checks the signature: the
/// [`testing`] host calls the handler itself.
#[cfg(all(feature = "handler", target_family = "wasm"))]
#[macro_export]
macro_rules! export_handler {
    ($ty:ident) => {
        impl $crate::handler::bindings::Guest for $ty {
            fn handle(
                info: &$crate::handler::ConnInfo,
                client: $crate::Conn,
            ) -> $crate::handler::Outcome {
                <$ty as $crate::handler::Handler>::handle(info, client)
            }
        }
        $crate::handler::bindings::export_handler_world!($ty);
    };
}

#[cfg(all(feature = "handler", not(target_family = "wasm")))]
#[macro_export]
macro_rules! export_handler {
    ($ty:ident) => {
        const _: fn(&$crate::handler::ConnInfo, $crate::Conn) -> $crate::handler::Outcome =
            <$ty as $crate::handler::Handler>::handle;
    };
}

#[cfg(feature = "forwarder")]
pub mod forwarder {
    //! The `forwarder` world: picks a node for each connection.

    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)] // generated export shims
    pub mod bindings {
        wit_bindgen::generate!({
            world: "forwarder",
            path: "wit",
            with: {
                "gost:plugin/types@0.3.0": crate::common::gost::plugin::types,
                "gost:plugin/runtime@0.3.0": crate::common::gost::plugin::runtime,
            },
            pub_export_macro: true,
            default_bindings_module: "gost_plugin_sdk::forwarder::bindings",
            export_macro_name: "export_forwarder_world",
        });
    }

    pub use bindings::{Node, RequestInfo, Selection};

    /// A node selector. The instance lives as long as the hop, so it can
    /// keep what it learns from [`Forwarder::feedback`] in statics.
    pub trait Forwarder {
        fn select(req: RequestInfo, nodes: Vec<Node>) -> Selection;
        /// How a dial to the node `select` picked went. Ignored by default.
        fn feedback(_node: u32, _ok: bool, _latency_us: u64) {}
    }
}

#[cfg(feature = "forwarder")]
pub use forwarder::Forwarder;

/// Exports a [`Forwarder`] implementation as the plugin's `select` and
/// `feedback` functions. Built natively, it only checks the signatures.
#[cfg(all(feature = "forwarder", target_family = "wasm"))]
#[macro_export]
macro_rules! export_forwarder {
    ($ty:ident) => {
        impl $crate::forwarder::bindings::Guest for $ty {
            fn select(
                req: $crate::forwarder::RequestInfo,
                nodes: ::std::vec::Vec<$crate::forwarder::Node>,
            ) -> $crate::forwarder::Selection {
                <$ty as $crate::forwarder::Forwarder>::select(req, nodes)
            }
            fn feedback(node: u32, ok: bool, latency_us: u64) {
                <$ty as $crate::forwarder::Forwarder>::feedback(node, ok, latency_us)
            }
        }
        $crate::forwarder::bindings::export_forwarder_world!($ty);
    };
}

#[cfg(all(feature = "forwarder", not(target_family = "wasm")))]
#[macro_export]
macro_rules! export_forwarder {
    ($ty:ident) => {
        const _: fn(
            $crate::forwarder::RequestInfo,
            ::std::vec::Vec<$crate::forwarder::Node>,
        ) -> $crate::forwarder::Selection = <$ty as $crate::forwarder::Forwarder>::select;
    };
}

#[cfg(feature = "observer")]
pub mod observer {
    //! The `observer` world: receives GOST's status and stats events.

    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)] // generated export shims
    pub mod bindings {
        wit_bindgen::generate!({
            world: "observer",
            path: "wit",
            with: {
                "gost:plugin/types@0.3.0": crate::common::gost::plugin::types,
                "gost:plugin/runtime@0.3.0": crate::common::gost::plugin::runtime,
            },
            pub_export_macro: true,
            default_bindings_module: "gost_plugin_sdk::observer::bindings",
            export_macro_name: "export_observer_world",
        });
    }

    pub use bindings::{Event, EventData, Stats, Status};

    impl Event {
        /// The event in the JSON shape of GOST's observer events, as
        /// GOST's HTTP observer plugins receive them, so a sink can pass it
        /// on unchanged.
        pub fn to_json(&self) -> serde_json::Value {
            use serde_json::json;
            let mut v = json!({"kind": self.kind, "service": self.service});
            if !self.client.is_empty() {
                v["client"] = json!(self.client);
            }
            match &self.data {
                EventData::Status(s) => {
                    v["type"] = json!("status");
                    v["status"] = json!({"state": s.state, "msg": s.msg});
                }
                EventData::Stats(s) => {
                    v["type"] = json!("stats");
                    v["stats"] = json!({
                        "totalConns": s.total_conns,
                        "currentConns": s.current_conns,
                        "inputBytes": s.input_bytes,
                        "outputBytes": s.output_bytes,
                        "totalErrs": s.total_errs,
                    });
                }
            }
            v
        }
    }

    /// An event sink. Returning `Err` makes the host send the same batch
    /// again next period.
    pub trait Observer {
        fn observe(events: Vec<Event>) -> Result<(), String>;
    }
}

#[cfg(feature = "observer")]
pub use observer::Observer;

/// Exports an [`Observer`] implementation as the plugin's `observe` function.
/// Built natively, it only checks the signature.
#[cfg(all(feature = "observer", target_family = "wasm"))]
#[macro_export]
macro_rules! export_observer {
    ($ty:ident) => {
        impl $crate::observer::bindings::Guest for $ty {
            fn observe(
                events: ::std::vec::Vec<$crate::observer::Event>,
            ) -> ::std::result::Result<(), ::std::string::String> {
                <$ty as $crate::observer::Observer>::observe(events)
            }
        }
        $crate::observer::bindings::export_observer_world!($ty);
    };
}

#[cfg(all(feature = "observer", not(target_family = "wasm")))]
#[macro_export]
macro_rules! export_observer {
    ($ty:ident) => {
        const _: fn(
            ::std::vec::Vec<$crate::observer::Event>,
        ) -> ::std::result::Result<(), ::std::string::String> =
            <$ty as $crate::observer::Observer>::observe;
    };
}

#[cfg(feature = "connector")]
pub mod connector {
    //! The `connector` world: the client side of a protocol, one call per
    //! connection a chain makes through the node.

    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)] // generated export shims
    pub mod bindings {
        wit_bindgen::generate!({
            world: "connector",
            path: "wit",
            with: {
                "gost:plugin/types@0.3.0": crate::common::gost::plugin::types,
                "gost:plugin/runtime@0.3.0": crate::common::gost::plugin::runtime,
            },
            pub_export_macro: true,
            default_bindings_module: "gost_plugin_sdk::connector::bindings",
            export_macro_name: "export_connector_world",
        });
    }

    pub use bindings::{ConnectRequest, Connected};

    // The mock host of native builds has no stream to hand back: a
    // connector's logic is tested in wasm (the e2e tests) only.
    #[cfg(target_family = "wasm")]
    impl Connected {
        /// The node's stream with nothing read past the node's reply.
        pub fn new(node: crate::Conn) -> Self {
            Connected {
                node,
                early: Vec::new(),
            }
        }
    }

    /// A protocol's client side. `connect` speaks the handshake on `node`
    /// (the stream to the chain node, already through its dialer) and
    /// hands it back for the host to relay.
    pub trait Connector {
        fn connect(req: ConnectRequest, node: crate::Conn) -> Result<Connected, String>;
    }
}

#[cfg(feature = "connector")]
pub use connector::Connector;

/// Exports a [`Connector`] implementation as the plugin's `connect`.
#[cfg(feature = "connector")]
#[macro_export]
macro_rules! export_connector {
    ($ty:ident) => {
        impl $crate::connector::bindings::Guest for $ty {
            fn connect(
                req: $crate::connector::ConnectRequest,
                node: $crate::Conn,
            ) -> ::std::result::Result<$crate::connector::Connected, ::std::string::String> {
                <$ty as $crate::connector::Connector>::connect(req, node)
            }
        }
        $crate::connector::bindings::export_connector_world!($ty);
    };
}

#[cfg(feature = "transport")]
pub mod transport {
    //! The `transport` world: wraps one connection's bytes both ways.

    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)] // generated export shims
    pub mod bindings {
        wit_bindgen::generate!({
            world: "transport",
            path: "wit",
            with: {
                "gost:plugin/types@0.3.0": crate::common::gost::plugin::types,
                "gost:plugin/runtime@0.3.0": crate::common::gost::plugin::runtime,
            },
            pub_export_macro: true,
            default_bindings_module: "gost_plugin_sdk::transport::bindings",
            export_macro_name: "export_transport_world",
        });
    }

    pub use bindings::Side;

    /// A transport. An instance serves one connection at a time, from
    /// `start` until it closes, so it keeps that connection's state in
    /// statics and resets them in `start`.
    pub trait Transport {
        /// Bytes to send before any other; none by default.
        fn start(_side: Side) -> Result<Vec<u8>, String> {
            Ok(Vec::new())
        }
        /// The user's bytes to the wire's.
        fn encode(data: Vec<u8>) -> Result<Vec<u8>, String>;
        /// The wire's bytes to the user's: what is complete so far.
        fn decode(data: Vec<u8>) -> Result<Vec<u8>, String>;
    }
}

#[cfg(feature = "transport")]
pub use transport::Transport;

/// Exports a [`Transport`] implementation as the plugin's `start`,
/// `encode` and `decode`.
#[cfg(feature = "transport")]
#[macro_export]
macro_rules! export_transport {
    ($ty:ident) => {
        impl $crate::transport::bindings::Guest for $ty {
            fn start(
                side: $crate::transport::Side,
            ) -> ::std::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                <$ty as $crate::transport::Transport>::start(side)
            }
            fn encode(
                data: ::std::vec::Vec<u8>,
            ) -> ::std::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                <$ty as $crate::transport::Transport>::encode(data)
            }
            fn decode(
                data: ::std::vec::Vec<u8>,
            ) -> ::std::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                <$ty as $crate::transport::Transport>::decode(data)
            }
        }
        $crate::transport::bindings::export_transport_world!($ty);
    };
}

#[cfg(feature = "datagram")]
pub mod datagram {
    //! The `datagram` world: a UDP protocol handler, one call per datagram.

    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)] // generated export shims
    pub mod bindings {
        wit_bindgen::generate!({
            world: "datagram",
            path: "wit",
            with: {
                "gost:plugin/types@0.3.0": crate::common::gost::plugin::types,
                "gost:plugin/runtime@0.3.0": crate::common::gost::plugin::runtime,
            },
            pub_export_macro: true,
            default_bindings_module: "gost_plugin_sdk::datagram::bindings",
            export_macro_name: "export_datagram_world",
        });
    }

    pub use bindings::{DatagramInfo, ForwardTo, Verdict};

    /// A UDP protocol handler: what to do with each datagram a client
    /// sends.
    pub trait Datagram {
        fn on_datagram(info: DatagramInfo, data: Vec<u8>) -> Verdict;
    }
}

#[cfg(feature = "datagram")]
pub use datagram::Datagram;

/// Exports a [`Datagram`] implementation as the plugin's `on-datagram`.
#[cfg(feature = "datagram")]
#[macro_export]
macro_rules! export_datagram {
    ($ty:ident) => {
        impl $crate::datagram::bindings::Guest for $ty {
            fn on_datagram(
                info: $crate::datagram::DatagramInfo,
                data: ::std::vec::Vec<u8>,
            ) -> $crate::datagram::Verdict {
                <$ty as $crate::datagram::Datagram>::on_datagram(info, data)
            }
        }
        $crate::datagram::bindings::export_datagram_world!($ty);
    };
}
