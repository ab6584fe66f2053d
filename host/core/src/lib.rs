//! GOST's building blocks, below every listener, handler and chain: the
//! address and metadata forms, the config schema, the one stream type,
//! per-connection context and service counters, opening TCP connections,
//! and the routing modules (bypass, hosts, resolver, admission, limiter,
//! routing rules, metrics series) that chains and handlers consult.

pub mod addr;
pub mod admission;
pub mod auth;
pub mod bypass;
pub mod config;
pub mod connections;
pub mod context;
pub mod dialer;
pub mod escape;
pub mod hosts;
pub mod httpc;
pub mod ingress;
pub mod limiter;
pub mod loader;
pub mod metadata;
pub mod metrics;
pub mod nofile;
pub mod plugin;
pub mod recorder;
pub mod redis;
pub mod repeat;
pub mod resolver;
pub mod rotate;
pub mod router;
pub mod routing;
pub mod sd;
pub mod stats;
pub mod stream;

/// Helpers for the unit tests of this crate and the crates above it.
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
