//! `plinth migrate plan|apply|status|history`: planned schema changes.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use plinth_domain::migrate::Safety;
use plinth_store::StoreError;
use plinth_store::migrate::{ApplyOutcome, Session, Target};

use crate::cli::{DataArgs, load_schema};

#[derive(Subcommand)]
pub enum MigrateCommand {
    /// Show the steps from the database's schema to the schema file, with their SQL and safety.
    Plan(MigrateArgs),
    /// Apply the planned steps in one transaction and record the next schema version.
    Apply(ApplyArgs),
    /// The database's schema version and whether the schema file differs from it.
    Status(MigrateArgs),
    /// Every schema version applied by `plinth migrate`.
    History(MigrateArgs),
    /// Go back to the previous schema version: plan and apply the reverse steps
    /// (recorded as a new version). Dropped data does not come back.
    Rollback(ApplyArgs),
}

/// What `plan_or_apply` does.
#[derive(Clone, Copy)]
enum Mode {
    Plan,
    Apply { allow_destructive: bool },
    Rollback { allow_destructive: bool },
}

#[derive(Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    data: DataArgs,
}

#[derive(Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Also run destructive steps (dropping fields or collections loses their data).
    #[arg(long)]
    allow_destructive: bool,
}

fn target(data: &DataArgs) -> Result<Target> {
    Ok(match crate::cli::database_url(data) {
        Some(url) => Target::Postgres(crate::cli::postgres_config(data, url)?),
        None => Target::Sqlite {
            data_dir: data.data_dir.clone(),
        },
    })
}

pub fn run(cmd: MigrateCommand) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match cmd {
            MigrateCommand::Plan(a) => plan_or_apply(&a.data, Mode::Plan).await,
            MigrateCommand::Apply(a) => {
                plan_or_apply(
                    &a.data,
                    Mode::Apply {
                        allow_destructive: a.allow_destructive,
                    },
                )
                .await
            }
            MigrateCommand::Rollback(a) => {
                plan_or_apply(
                    &a.data,
                    Mode::Rollback {
                        allow_destructive: a.allow_destructive,
                    },
                )
                .await
            }
            MigrateCommand::Status(a) => status(&a.data).await,
            MigrateCommand::History(a) => history(&a.data).await,
        }
    })
}

/// `apply = None`: only print the plan.
async fn plan_or_apply(data: &DataArgs, mode: Mode) -> Result<ExitCode> {
    let mut session = Session::open(target(data)?).await?;
    let Some(applied) = session.applied().await? else {
        println!(
            "The database has no schema yet: `plinth serve` applies the schema file on its first start."
        );
        return Ok(ExitCode::SUCCESS);
    };
    // Changes made by hand to the database are reported before anything else.
    let drift = session.drift(&applied.schema).await?;
    if !drift.is_empty() {
        eprintln!(
            "error: the database differs from its recorded schema (version {}); someone changed it outside Plinth:",
            applied.version
        );
        for d in &drift {
            eprintln!("  - {d}");
        }
        eprintln!("Undo those changes by hand (or restore a backup) before planning a migration.");
        return Ok(ExitCode::FAILURE);
    }
    let wanted = if let Mode::Rollback { .. } = mode {
        let previous = applied.version - 1;
        match session.schema_at(previous).await? {
            Some(s) if previous >= 1 => {
                println!(
                    "Rolling back to the schema of version {previous} (it will be recorded as version {}).",
                    applied.version + 1
                );
                s
            }
            _ => {
                eprintln!(
                    "error: version {} is the first schema of this database; there is nothing to roll back to",
                    applied.version
                );
                return Ok(ExitCode::FAILURE);
            }
        }
    } else {
        let Some(file) = load_schema(&data.schema.schema)? else {
            return Ok(ExitCode::FAILURE);
        };
        file
    };
    let steps = match plinth_domain::migrate::plan(&applied.schema, &wanted) {
        Ok(s) => s,
        Err(reasons) => {
            eprintln!("error: these changes cannot be planned:");
            for r in &reasons {
                eprintln!("  - {r}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    if steps.is_empty() {
        println!(
            "The database (schema version {}) matches {}: nothing to do.",
            applied.version,
            data.schema.schema.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let planned = session.plan(&applied, steps, &wanted).await?;
    println!(
        "Schema version {} → {} ({} step{}, {:?}):",
        applied.version,
        applied.version + 1,
        planned.len(),
        if planned.len() == 1 { "" } else { "s" },
        session.dialect()
    );
    for (i, p) in planned.iter().enumerate() {
        let undo = match p.step.irreversible_because() {
            None => "reversible".to_owned(),
            Some(why) => format!("irreversible: {why}"),
        };
        println!("\n{}. [{}, {undo}] {}", i + 1, p.safety, p.step);
        for sql in &p.sql {
            println!("   {sql};");
        }
        if let Some(note) = &p.note {
            println!("   ({note})");
        }
        for f in &p.findings {
            println!("   check: {f}");
        }
        for b in &p.blockers {
            println!("   BLOCKED: {b}");
        }
    }
    let blocked = planned.iter().filter(|p| !p.blockers.is_empty()).count();
    let destructive = planned
        .iter()
        .filter(|p| p.safety == Safety::Destructive)
        .count();
    println!();
    let allow_destructive = match mode {
        Mode::Plan => None,
        Mode::Apply { allow_destructive } | Mode::Rollback { allow_destructive } => {
            Some(allow_destructive)
        }
    };
    let Some(allow_destructive) = allow_destructive else {
        if blocked > 0 {
            println!(
                "{blocked} step(s) are blocked; `plinth migrate apply` will refuse until they are resolved."
            );
            return Ok(ExitCode::FAILURE);
        }
        if destructive > 0 {
            println!(
                "{destructive} step(s) are destructive: `plinth migrate apply --allow-destructive` runs them."
            );
        } else {
            println!("Run `plinth migrate apply` to apply them in one transaction.");
        }
        return Ok(ExitCode::SUCCESS);
    };
    if blocked > 0 {
        eprintln!("error: {blocked} step(s) are blocked (see above); nothing was applied");
        return Ok(ExitCode::FAILURE);
    }
    if destructive > 0 && !allow_destructive {
        eprintln!(
            "error: {destructive} step(s) are destructive; nothing was applied. Re-run with --allow-destructive once the data may go."
        );
        return Ok(ExitCode::FAILURE);
    }
    match session.apply(applied.version, &planned, &wanted).await {
        Ok(ApplyOutcome::Applied(v)) => {
            println!("Applied: the database is at schema version {v}.");
            Ok(ExitCode::SUCCESS)
        }
        Ok(ApplyOutcome::Blocked(why)) => {
            eprintln!(
                "error: the data no longer fits the plan: {why}; the transaction was rolled back, nothing was applied"
            );
            Ok(ExitCode::FAILURE)
        }
        Err(StoreError::VersionMismatch) => {
            eprintln!(
                "error: the database's schema changed while planning (another migration ran); nothing was applied. Plan again."
            );
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("error: {e}; the transaction was rolled back, nothing was applied");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn status(data: &DataArgs) -> Result<ExitCode> {
    let Some(wanted) = load_schema(&data.schema.schema)? else {
        return Ok(ExitCode::FAILURE);
    };
    let mut session = Session::open(target(data)?).await?;
    let Some(applied) = session.applied().await? else {
        println!("no schema applied yet");
        return Ok(ExitCode::SUCCESS);
    };
    let drift = session.drift(&applied.schema).await?;
    for d in &drift {
        println!("drift: {d}");
    }
    let pending = plinth_domain::diff_schemas(&applied.schema, &wanted);
    println!(
        "schema version {} (checksum {})",
        applied.version,
        plinth_store::migrate::checksum(&applied.schema)
    );
    if pending.is_empty() {
        println!("up to date with {}", data.schema.schema.display());
    } else {
        println!(
            "{} difference(s) with {}; see `plinth migrate plan`",
            pending.len(),
            data.schema.schema.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn history(data: &DataArgs) -> Result<ExitCode> {
    let mut session = Session::open(target(data)?).await?;
    let entries = session.history().await?;
    if entries.is_empty() {
        println!("no migrations applied (the first schema version comes from `plinth serve`)");
    }
    for e in entries {
        println!(
            "version {}  {}  sha256:{}",
            e.version, e.applied_at, e.checksum
        );
        for line in e.steps.lines() {
            println!("  - {line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// For `serve --migrate safe`: applies the plan to the schema file if every
/// step is safe and unblocked; otherwise changes nothing (serve then refuses
/// and lists the differences). A database without a schema is left to serve.
pub async fn apply_safe(data: &DataArgs, wanted: &plinth_domain::Schema) -> Result<()> {
    if crate::cli::database_url(data).is_none() && !data.data_dir.join("plinth.db").exists() {
        return Ok(());
    }
    let mut session = Session::open(target(data)?).await?;
    let Some(applied) = session.applied().await? else {
        return Ok(());
    };
    let Ok(steps) = plinth_domain::migrate::plan(&applied.schema, wanted) else {
        tracing::warn!("the schema change cannot be planned; not migrating automatically");
        return Ok(());
    };
    if steps.is_empty() {
        return Ok(());
    }
    let planned = session.plan(&applied, steps, wanted).await?;
    let unsafe_steps = planned
        .iter()
        .filter(|p| p.safety != Safety::Safe || !p.blockers.is_empty())
        .count();
    if unsafe_steps > 0 {
        tracing::warn!(
            unsafe_steps,
            "not migrating automatically: some steps are not safe; see `plinth migrate plan`"
        );
        return Ok(());
    }
    match session.apply(applied.version, &planned, wanted).await {
        Ok(ApplyOutcome::Applied(v)) => {
            for p in &planned {
                tracing::info!(step = %p.step, "migrated");
            }
            tracing::info!(version = v, "applied the safe migration steps");
            Ok(())
        }
        Ok(ApplyOutcome::Blocked(why)) => {
            tracing::warn!(%why, "not migrating automatically: the data does not fit");
            Ok(())
        }
        // Another instance migrated first: the normal start will see the result.
        Err(StoreError::VersionMismatch) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
