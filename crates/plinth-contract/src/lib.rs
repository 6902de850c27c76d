//! Plinth's contract: the JSON Schemas and the OpenAPI 3.1 document generated
//! from the schema, and request validation with those same schemas.
//!
//! This is the JSON half of the HTTP layer, kept apart from axum so the CLI
//! (`plinth openapi`, `plinth contract diff`) can use it. It knows JSON
//! but neither HTTP nor SQL.

mod auth_paths;
pub mod diff;
pub mod json_schema;
pub mod openapi;
pub mod validate;

pub use openapi::{PROBLEMS, openapi, problem_type};
pub use validate::{Contract, FieldError, RecordBody, merge_patch, record_json};
