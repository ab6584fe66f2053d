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

pub mod handler {
    wasmtime::component::bindgen!({
        world: "handler",
        path: "../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "gost:plugin/types": crate::plugin::bindings::common::gost::plugin::types,
            "gost:plugin/runtime": crate::plugin::bindings::common::gost::plugin::runtime,
        },
    });
}

pub mod forwarder {
    wasmtime::component::bindgen!({
        world: "forwarder",
        path: "../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "gost:plugin/types": crate::plugin::bindings::common::gost::plugin::types,
            "gost:plugin/runtime": crate::plugin::bindings::common::gost::plugin::runtime,
        },
    });
}

pub mod observer {
    wasmtime::component::bindgen!({
        world: "observer",
        path: "../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "gost:plugin/types": crate::plugin::bindings::common::gost::plugin::types,
            "gost:plugin/runtime": crate::plugin::bindings::common::gost::plugin::runtime,
        },
    });
}
