//! End-to-end tests of the `plinth` binary: each test starts the real server
//! as a child process (its own temp data dir and schema file) and checks the
//! behaviour documented in `docs/api.md` over HTTP.

#![allow(clippy::unwrap_used)]

mod harness;

mod auth;
mod cli;
mod concurrency;
mod contract_diff;
mod crud;
mod deprecation;
mod edge_cases;
mod errors;
mod lifecycle;
mod migrate;
mod multi_instance;
mod openapi;
mod ops;
mod querying;
mod rate_limits;
mod types;
