//! Host bindings generated from `wit/`, one module per world. The shared
//! `types` and `runtime` interfaces are generated once (in `common`) and
//! reused by the others, so one trait impl serves every world.

pub mod common {
    wasmtime::component::bindgen!({
        world: "common",
        path: "../wit",
        imports: { default: async | trappable },
        with: {
            "gost:plugin/types.conn": crate::plugin::conn::ConnRes,
        },
    });
}

/// A plugin world: its exports, with the shared interfaces taken from
/// `common` so their host impls are written once.
macro_rules! world {
    ($module:ident, $world:literal) => {
        pub mod $module {
            wasmtime::component::bindgen!({
                world: $world,
                path: "../wit",
                imports: { default: async | trappable },
                exports: { default: async },
                with: {
                    "gost:plugin/types": crate::plugin::bindings::common::gost::plugin::types,
                    "gost:plugin/runtime": crate::plugin::bindings::common::gost::plugin::runtime,
                },
            });
        }
    };
}

world!(handler, "handler");
world!(forwarder, "forwarder");
world!(observer, "observer");
