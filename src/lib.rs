//! Billing and tenant control plane of the IoT SaaS. See README.md for the architecture.

pub mod accounts;
pub mod app;
pub mod billing;
pub mod cli;
pub mod config;
pub mod db;
pub mod deploy;
pub mod event_secret;
pub mod gitops;
pub mod http;
pub mod license;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod placement;
pub mod plans;
pub mod poke;
pub mod pool;
pub mod quantity;
pub mod render;
pub mod review;
pub mod rollout;
pub mod seal;
pub mod secrets;
#[cfg(test)]
#[path = "../tests/tools/skip.rs"]
mod skip;
pub mod status;
pub mod supervisor;
pub mod watcher;
