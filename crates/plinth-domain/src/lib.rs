//! Plinth's domain: the schema model (`plinth.toml`), its checker, field values
//! and schema differences.
//!
//! This crate knows neither HTTP nor SQL nor JSON; the store, contract and HTTP
//! crates build on it. See `docs/ARCHITECTURE.md`.

pub mod diff;
pub mod filter;
pub mod migrate;
pub mod parse;
pub mod ratelimit;
pub mod rule;
pub mod schema;
pub mod sort;
pub mod value;

pub use diff::diff_schemas;
pub use parse::{Diagnostic, Report, parse_schema};
pub use schema::{Bound, Collection, DefaultValue, Deprecation, Field, FieldType, Index, Schema};
pub use value::{Record, Value};
