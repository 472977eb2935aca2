//! End-to-end tests: the real API, the real Redis queue, real workers and a
//! real PostgreSQL, against Git repositories built in each test. Every test
//! has its own database and Redis namespace, so they run in parallel.

mod analysis;
mod browser;
mod chaos;
mod cli;
mod embeddings;
mod github;
mod helpers;
mod history;
mod hooks;
mod limits;
mod local_sync;
mod mcp;
mod mcp_http;
mod migrate_guard;
mod observability;
mod ops;
mod robustness;
mod scan_diff;
mod schedules;
mod security;
mod telemetry;
mod webhooks;
