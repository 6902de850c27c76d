//! `plinth contract diff`: the API-drift guard. The rules live in
//! `plinth_contract::diff`; this module reads the inputs and prints the
//! result (see docs/contract-diff.md).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value as Json;

use plinth_contract::diff::{ContractDiff, diff};

#[derive(Subcommand)]
pub enum ContractCommand {
    /// Classify every change between two OpenAPI documents as breaking or compatible.
    ///
    /// Either `plinth contract diff OLD.json NEW.json`, or
    /// `plinth contract diff --schema plinth.toml --against openapi.json`
    /// (the committed contract is OLD, the schema's contract is NEW).
    /// Exit code 1 when any change is breaking (or the schema is invalid),
    /// 2 when an input cannot be read or is not an OpenAPI 3 JSON document.
    #[command(
        override_usage = "plinth contract diff [--format FORMAT] <OLD> <NEW>\n       \
                          plinth contract diff [--format FORMAT] [--schema plinth.toml] --against <OPENAPI.json>"
    )]
    Diff(DiffArgs),
}

#[derive(Args)]
pub struct DiffArgs {
    /// The old contract (OpenAPI 3.1 JSON).
    #[arg(
        value_name = "OLD",
        required_unless_present = "against",
        conflicts_with = "against",
        requires = "new"
    )]
    pub old: Option<PathBuf>,
    /// The new contract (OpenAPI 3.1 JSON).
    #[arg(value_name = "NEW", required_unless_present = "against")]
    pub new: Option<PathBuf>,
    /// With --against: generate the new contract from this schema file
    /// (default plinth.toml). Ignored when OLD and NEW are given.
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

/// Exit code for inputs that cannot be read or parsed (as for usage errors).
const INPUT_ERROR: u8 = 2;

pub fn run(cmd: ContractCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ContractCommand::Diff(args) => Ok(run_diff(&args)),
    }
}

enum Inputs {
    Documents {
        old: Json,
        new: Json,
    },
    /// The schema file has mistakes; they have been printed.
    InvalidSchema,
}

fn run_diff(args: &DiffArgs) -> ExitCode {
    let (old, new) = match inputs(args) {
        Ok(Inputs::Documents { old, new }) => (old, new),
        Ok(Inputs::InvalidSchema) => return ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(INPUT_ERROR);
        }
    };
    let report = match diff(&old, &new) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(INPUT_ERROR);
        }
    };
    if let Err(e) = std::io::stdout()
        .lock()
        .write_all(render(&report, args.format).as_bytes())
    {
        eprintln!("error: cannot write the report: {e}");
        return ExitCode::from(INPUT_ERROR);
    }
    if report.has_breaking() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn render(report: &ContractDiff, format: DiffFormat) -> String {
    match format {
        DiffFormat::Text => report.to_text(),
        DiffFormat::Json => format!("{:#}\n", report.to_json()),
        DiffFormat::Markdown => report.to_markdown(),
    }
}

fn inputs(args: &DiffArgs) -> anyhow::Result<Inputs> {
    match (&args.old, &args.new, &args.against) {
        (Some(old), Some(new), None) => Ok(Inputs::Documents {
            old: read_json(old)?,
            new: read_json(new)?,
        }),
        (None, None, Some(against)) => {
            let old = read_json(against)?;
            let path = args
                .schema
                .clone()
                .unwrap_or_else(|| PathBuf::from("plinth.toml"));
            match crate::cli::load_schema(&path)? {
                Some(schema) => Ok(Inputs::Documents {
                    old,
                    new: plinth_contract::openapi(&schema),
                }),
                None => Ok(Inputs::InvalidSchema),
            }
        }
        // clap enforces one of the two forms; this is a safety net.
        _ => anyhow::bail!(
            "give either OLD.json NEW.json, or --against openapi.json (with --schema plinth.toml)"
        ),
    }
}

fn read_json(path: &Path) -> anyhow::Result<Json> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not valid JSON (contract diff reads OpenAPI documents as JSON)",
            path.display()
        )
    })
}
