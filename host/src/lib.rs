//! gost-rs, the program: building services, chains and observers from
//! config (`factory`), the running program with its live changes (`app`),
//! the web API, the metrics scrape endpoint, the command line and logging.
//! The layers below are crates of their own, from the bottom up:
//! `gost-proto` (wire formats), `gost-core`, `gost-transport`,
//! `gost-chain`, `gost-handler`, `gost-service`, `gost-plugin`.

pub mod api;
pub mod app;
pub mod cli;
pub mod factory;
pub mod logger;
pub mod multiprocess;
pub mod plugin_tool;
pub mod scrape;
