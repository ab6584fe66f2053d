//! gost-rs host library: GOST v3 concepts as Rust modules.
//!
//! Each module is named after the GOST concept it implements so that a
//! reader who knows go-gost/x finds the same thing in the same place.

pub mod addr;
pub mod admission;
pub mod api;
pub mod app;
pub mod auth;
pub mod bypass;
pub mod chain;
pub mod cli;
pub mod config;
pub mod connector;
pub mod context;
pub mod dialer;
pub mod factory;
pub mod handler;
pub mod hosts;
pub mod limiter;
pub mod listener;
pub mod logger;
pub mod metadata;
pub mod metrics;
pub mod multiprocess;
pub mod observer;
pub mod plugin;
pub mod registry;

/// The wire formats, a crate of their own: the bottom layer, which
/// nothing of the host may be imported into.
pub use gost_proto as proto;
pub mod relay;
pub mod resolver;
pub mod router;
pub mod routing;
pub mod service;
pub mod stats;
pub mod stream;
pub mod tls;
pub mod transport;
pub mod ws;

#[cfg(test)]
mod test_util;
