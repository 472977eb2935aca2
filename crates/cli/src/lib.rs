//! The `projsync` binary's library: configuration, wiring of the components
//! (store, queue, pipeline, API) and the terminal front-ends (watch, demo).
//! It owns process concerns — config layering, logging and telemetry,
//! signals, exit codes — and nothing else: behaviour lives in the crates it
//! wires together.

pub mod app;
pub mod config;
pub mod demo;
pub mod hook;
pub mod logging;
pub mod watch;

pub use config::Settings;
