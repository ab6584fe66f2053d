//! Host bindings generated from `wit/`, one module per world. The shared
//! `types` and `runtime` interfaces are generated once (in `common`) and
//! reused by the others, so one trait impl serves every world.
//!
//! Only imports that may wait on the network (a dial, an auther that may
//! be a plugin) are async. The others run as
//! plain host calls: an async import costs a boxed future and a trip
//! through the fiber's executor on every call, and a handshake makes
//! several of these calls per connection.

pub mod common {
    wasmtime::component::bindgen!({
        world: "common",
        path: "../../wit",
        imports: {
            "gost:plugin/types.[method]conn.peer-addr": trappable,
            "gost:plugin/types.[drop]conn": trappable,
            "gost:plugin/types.[method]conn-info.service": trappable,
            "gost:plugin/types.[method]conn-info.network": trappable,
            "gost:plugin/types.[method]conn-info.client-addr": trappable,
            "gost:plugin/types.[method]conn-info.local-addr": trappable,
            "gost:plugin/types.[drop]conn-info": trappable,
            "gost:plugin/runtime.log": trappable,
            "gost:plugin/runtime.log-enabled": trappable,
            "gost:plugin/runtime.config": trappable,
            default: async | trappable,
        },
        with: {
            "gost:plugin/types.conn": crate::conn::ConnRes,
            "gost:plugin/types.conn-info": crate::conn::ConnInfoRes,
        },
    });
}

/// A plugin world: its exports, with the shared interfaces taken from
/// `common` so their host impls are written once.
macro_rules! world {
    ($module:ident, $world:literal $(, $sync:literal)*) => {
        pub mod $module {
            wasmtime::component::bindgen!({
                world: $world,
                path: "../../wit",
                imports: { $($sync: trappable,)* default: async | trappable },
                exports: { default: async },
                with: {
                    "gost:plugin/types": crate::bindings::common::gost::plugin::types,
                    "gost:plugin/runtime": crate::bindings::common::gost::plugin::runtime,
                },
            });
        }
    };
}

world!(handler, "handler");
world!(forwarder, "forwarder");
world!(observer, "observer");
world!(connector, "connector");
world!(transport, "transport");
world!(datagram, "datagram");
