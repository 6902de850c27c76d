//! `plinth contract diff`: the API-drift guard (owned by the contract-diff work).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

#[derive(Subcommand)]
pub enum ContractCommand {
    /// Classify every change between two OpenAPI documents as breaking or compatible.
    ///
    /// Either `plinth contract diff OLD.json NEW.json`, or
    /// `plinth contract diff --schema plinth.toml --against openapi.json`
    /// (the committed contract is OLD, the schema's contract is NEW).
    /// Exit code 1 when any change is breaking.
    Diff(DiffArgs),
}

#[derive(Args)]
pub struct DiffArgs {
    /// The old contract (OpenAPI 3.1 JSON).
    pub old: Option<PathBuf>,
    /// The new contract (OpenAPI 3.1 JSON).
    pub new: Option<PathBuf>,
    /// Generate the new contract from this schema file instead of reading NEW.
    #[arg(long, env = "PLINTH_SCHEMA")]
    pub schema: Option<PathBuf>,
    /// The committed contract to compare the schema's contract against.
    #[arg(long)]
    pub against: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
    pub format: DiffFormat,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DiffFormat {
    Text,
    Json,
    Markdown,
}

pub fn run(cmd: ContractCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ContractCommand::Diff(_args) => {
            anyhow::bail!("`plinth contract diff` is being built in this change")
        }
    }
}
