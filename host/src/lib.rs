//! gost-rs host library: GOST v3 concepts as Rust modules.
//!
//! Each module is named after the GOST concept it implements so that a
//! reader who knows go-gost/x finds the same thing in the same place.

pub mod api;
pub mod app;
pub mod auth;
pub mod chain;
pub mod cli;
pub mod config;
pub mod handler;
pub mod listener;
pub mod logger;
pub mod metadata;
pub mod multiprocess;
pub mod observer;
pub mod plugin;
pub mod relay;
pub mod router;
pub mod service;
