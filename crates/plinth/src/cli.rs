//! Command-line interface: `check`, `serve`, `openapi`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use plinth_domain::{Report, Schema, parse_schema};
use plinth_store::{SchemaState, SqliteConfig, Store};

#[derive(Parser)]
#[command(
    name = "plinth",
    version,
    about = "A production-ready backend in one binary: declare your data model, get a versioned REST API."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a schema file; print every mistake with its position and a hint.
    Check(SchemaArgs),
    /// Serve the API for a schema.
    Serve(ServeArgs),
    /// Print the OpenAPI 3.1 contract for a schema.
    Openapi(SchemaArgs),
    /// Show the SQL and query plan of a list query, and whether an index serves it.
    Explain(ExplainArgs),
    /// Planned schema changes: `plinth migrate plan|apply|status|history`.
    #[command(subcommand)]
    Migrate(crate::migrate_cmd::MigrateCommand),
    /// Work with OpenAPI contracts (`plinth contract diff`).
    #[command(subcommand)]
    Contract(crate::contract_cmd::ContractCommand),
    /// Access-token signing keys: `plinth keys rotate`.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a new signing key current. Tokens signed by older keys stay valid
    /// until they expire; keys superseded longer ago than the access-token
    /// lifetime are deleted. Running servers pick the new key up within a minute.
    Rotate(RotateArgs),
}

#[derive(Args)]
struct RotateArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    tokens: TokenArgs,
}

/// Access-token settings shared by `serve` and `keys rotate`.
#[derive(Args)]
struct TokenArgs {
    /// Seconds an access token (JWT) is valid.
    #[arg(long, env = "PLINTH_ACCESS_TOKEN_TTL", default_value_t = 900)]
    access_token_ttl: u64,
}

#[derive(Args)]
struct ExplainArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The collection to query.
    collection: String,
    /// A filter expression, as in `?filter=` (empty: none).
    #[arg(default_value = "", allow_hyphen_values = true)]
    filter: String,
    /// A sort, as in `?sort=` (empty: -created_at).
    #[arg(default_value = "", allow_hyphen_values = true)]
    sort: String,
}

/// Flags every command that reads the schema takes.
#[derive(Args)]
pub(crate) struct SchemaArgs {
    /// The schema file.
    #[arg(long, env = "PLINTH_SCHEMA", default_value = "plinth.toml")]
    pub(crate) schema: PathBuf,
}

/// Flags every command that touches data takes.
#[derive(Args)]
pub(crate) struct DataArgs {
    #[command(flatten)]
    pub(crate) schema: SchemaArgs,
    /// Where the embedded database lives.
    #[arg(long, env = "PLINTH_DATA_DIR", default_value = "./plinth-data")]
    pub(crate) data_dir: PathBuf,
    /// Use PostgreSQL instead of the embedded database: postgres://user:password@host:port/db
    #[arg(long, env = "PLINTH_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Most PostgreSQL connections this process opens.
    #[arg(long, env = "PLINTH_DB_MAX_CONNECTIONS", default_value_t = 10)]
    db_max_connections: u32,
    /// Seconds a PostgreSQL statement may run before it is cancelled.
    #[arg(long, env = "PLINTH_DB_STATEMENT_TIMEOUT", default_value_t = 5)]
    db_statement_timeout: u64,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long, env = "PLINTH_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "PLINTH_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    max_body_bytes: usize,
    /// Comma-separated exact origins allowed by CORS (empty: CORS off).
    #[arg(
        long,
        env = "PLINTH_CORS_ORIGINS",
        value_delimiter = ',',
        default_value = ""
    )]
    cors_origins: Vec<String>,
    /// `safe`: apply schema changes whose planned steps are all safe before
    /// serving (`plinth migrate plan` shows them); `never`: refuse any change.
    #[arg(long = "migrate", env = "PLINTH_MIGRATE", value_enum, default_value_t = AutoMigrate::Never)]
    auto_migrate: AutoMigrate,
    /// Rate limits per client IP and route class, e.g. `read=600/60s,write=120/60s`
    /// (read = GET/HEAD; empty: off). Shared by all instances on PostgreSQL.
    #[arg(long, env = "PLINTH_RATE_LIMITS", default_value = "")]
    rate_limits: String,
    /// Seconds to let in-flight requests finish after SIGTERM/SIGINT.
    #[arg(long, env = "PLINTH_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    shutdown_timeout: u64,
    /// Log format.
    #[arg(long, env = "PLINTH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,
    #[command(flatten)]
    tokens: TokenArgs,
    /// `iss` of access tokens (e.g. the public base URL).
    #[arg(long, env = "PLINTH_TOKEN_ISSUER", default_value = "plinth")]
    token_issuer: String,
    /// `aud` of access tokens.
    #[arg(long, env = "PLINTH_TOKEN_AUDIENCE", default_value = "plinth")]
    token_audience: String,
    /// Seconds a refresh token stays usable without being used.
    #[arg(long, env = "PLINTH_REFRESH_IDLE_TTL", default_value_t = 14 * 24 * 3600)]
    refresh_idle_ttl: u64,
    /// Seconds a session lives at most, however often it is refreshed.
    #[arg(long, env = "PLINTH_REFRESH_ABSOLUTE_TTL", default_value_t = 90 * 24 * 3600)]
    refresh_absolute_ttl: u64,
    /// Fewest characters a password may have.
    #[arg(long, env = "PLINTH_PASSWORD_MIN_LENGTH", default_value_t = 12)]
    password_min_length: usize,
    /// A file of known-breached passwords (one per line, `#` comments) to refuse.
    #[arg(long, env = "PLINTH_BREACHED_PASSWORDS")]
    breached_passwords: Option<PathBuf>,
    /// `open`: anyone may sign up; `closed`: POST /v1/auth/signup answers 403.
    #[arg(long, env = "PLINTH_SIGNUP", value_enum, default_value_t = Signup::Open)]
    signup: Signup,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Signup {
    Open,
    Closed,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AutoMigrate {
    Never,
    Safe,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(a) => check(&a.schema),
        Command::Openapi(a) => openapi(&a.schema),
        Command::Serve(a) => serve(a),
        Command::Explain(a) => explain(a),
        Command::Contract(c) => crate::contract_cmd::run(c),
        Command::Migrate(c) => crate::migrate_cmd::run(c),
        Command::Keys(KeysCommand::Rotate(a)) => rotate_keys(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads and checks the schema; on mistakes prints them and returns `None`.
pub(crate) fn load_schema(path: &Path) -> Result<Option<Schema>> {
    let src = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read schema file {}", path.display()))?;
    match parse_schema(&src) {
        // The contract's validators must compile before anything uses the
        // schema (a database must never record a schema it cannot serve).
        Ok(s) => match plinth_contract::Contract::new(Arc::new(s.clone())) {
            Ok(_) => Ok(Some(s)),
            Err(e) => {
                eprintln!(
                    "{}: error: the schema's JSON Schemas do not compile: {e}",
                    path.display()
                );
                Ok(None)
            }
        },
        Err(diagnostics) => {
            let file = path.display().to_string();
            eprintln!(
                "{}",
                Report {
                    file: &file,
                    diagnostics: &diagnostics
                }
            );
            Ok(None)
        }
    }
}

fn check(path: &Path) -> Result<ExitCode> {
    Ok(match load_schema(path)? {
        Some(s) => {
            let fields: usize = s.collections.iter().map(|c| c.fields.len()).sum();
            println!(
                "{}: ok ({} collections, {fields} fields)",
                path.display(),
                s.collections.len()
            );
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    })
}

fn openapi(path: &Path) -> Result<ExitCode> {
    let Some(schema) = load_schema(path)? else {
        return Ok(ExitCode::FAILURE);
    };
    let doc = plinth_contract::openapi(&schema);
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(ExitCode::SUCCESS)
}

/// Opens the store for a command that reads data; refuses on schema differences.
/// The PostgreSQL URL, if one is set (an empty PLINTH_DATABASE_URL means "not set").
pub(crate) fn database_url(data: &DataArgs) -> Option<&str> {
    data.database_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
}

pub(crate) fn postgres_config(data: &DataArgs, url: &str) -> Result<plinth_store::PostgresConfig> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        anyhow::bail!(
            "--database-url must be a postgres:// URL (postgres://user:password@host:5432/database)"
        );
    }
    Ok(plinth_store::PostgresConfig {
        url: url.to_owned(),
        max_connections: data.db_max_connections.max(1),
        statement_timeout: Duration::from_secs(data.db_statement_timeout.max(1)),
        acquire_timeout: Duration::from_secs(5),
    })
}

async fn open_store(data: &DataArgs, schema: Schema, exclusive: bool) -> Result<Option<Store>> {
    open_store_in(data, &data.data_dir, schema, exclusive).await
}

async fn open_store_in(
    data: &DataArgs,
    data_dir: &Path,
    schema: Schema,
    exclusive: bool,
) -> Result<Option<Store>> {
    let schema_path = &data.schema.schema;
    // An empty PLINTH_DATABASE_URL means "not set".
    let url = data
        .database_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty());
    let (opened, place) = match url {
        Some(url) => {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                anyhow::bail!(
                    "--database-url must be a postgres:// URL (postgres://user:password@host:5432/database)"
                );
            }
            let config = plinth_store::PostgresConfig {
                url: url.to_owned(),
                max_connections: data.db_max_connections.max(1),
                statement_timeout: Duration::from_secs(data.db_statement_timeout.max(1)),
                acquire_timeout: Duration::from_secs(5),
            };
            let place = plinth_store::redact_url(url);
            let opened = Store::open_postgres(&config, Arc::new(schema))
                .await
                .with_context(|| format!("cannot open the database {place}"))?;
            (opened, place)
        }
        None => {
            let config = SqliteConfig {
                data_dir: data_dir.to_owned(),
                exclusive,
            };
            let place = data_dir.display().to_string();
            let opened = Store::open_sqlite(&config, Arc::new(schema))
                .with_context(|| format!("cannot open the database in {place}"))?;
            (opened, place)
        }
    };
    match opened {
        (Some(store), state) => {
            if state == SchemaState::Created {
                tracing::info!(database = %place, "applied the schema to a new database");
            }
            Ok(Some(store))
        }
        (None, SchemaState::Differs(diffs)) => {
            eprintln!("error: the schema file differs from the schema applied to the database:");
            for d in &diffs {
                eprintln!("  - {d}");
            }
            eprintln!(
                "Plinth never alters or drops data by itself: run `plinth migrate plan` to see the steps and `plinth migrate apply` to apply them (or restore the previous {}).",
                schema_path.display()
            );
            Ok(None)
        }
        (None, _) => anyhow::bail!("the database could not be opened"),
    }
}

fn explain(args: ExplainArgs) -> Result<ExitCode> {
    let Some(schema) = load_schema(&args.data.schema.schema)? else {
        return Ok(ExitCode::FAILURE);
    };
    let Some(c) = schema.collection(&args.collection).cloned() else {
        let names: Vec<&str> = schema.collections.iter().map(|c| c.name.as_str()).collect();
        anyhow::bail!(
            "no collection `{}` (collections: {})",
            args.collection,
            names.join(", ")
        );
    };
    let filter = if args.filter.trim().is_empty() {
        None
    } else {
        let e = plinth_domain::filter::parse_filter(&args.filter)
            .and_then(|e| plinth_domain::filter::check_filter(&c, &e))
            .map_err(|e| anyhow::anyhow!("filter {e}"))?;
        Some(e)
    };
    let sort =
        plinth_domain::sort::parse_sort(&c, &args.sort).map_err(|e| anyhow::anyhow!("sort {e}"))?;
    // Without a database, plan against an empty one with the same schema
    // (plans come from the schema's indexes), leaving --data-dir untouched.
    let scratch = std::env::temp_dir().join(format!("plinth-explain-{}", std::process::id()));
    let existing = args
        .data
        .database_url
        .as_deref()
        .is_some_and(|u| !u.trim().is_empty())
        || args.data.data_dir.join("plinth.db").exists();
    let dir = if existing {
        args.data.data_dir.clone()
    } else {
        scratch.clone()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let query = plinth_store::ListQuery {
        filter: filter.clone(),
        sort: sort.clone(),
        after: None,
        limit: 20,
        total: false,
    };
    let explained = runtime.block_on(async {
        let Some(store) = open_store_in(&args.data, &dir, schema, false).await? else {
            return anyhow::Ok(None);
        };
        Ok(Some(
            store
                .explain(&c.name, &plinth_store::Access::operator(), query)
                .await?,
        ))
    })?;
    let Some((sql, plan)) = explained else {
        return Ok(ExitCode::FAILURE);
    };
    if !existing {
        let _ = std::fs::remove_dir_all(&scratch);
        println!(
            "(no database in {}; planned against an empty one with the same schema)\n",
            args.data.data_dir.display()
        );
    }
    println!("SQL:\n  {sql}\n\nPlan:");
    for line in &plan {
        println!("  {line}");
    }
    // SQLite: "SCAN t" / "USE TEMP B-TREE"; PostgreSQL: "Seq Scan" / "Sort".
    // A scan *in index order* ("SCAN t USING INDEX", "Index Scan … Filter:")
    // is only cheap without a filter: with one, it reads records until the
    // page is full, which for a selective filter is most of the table.
    let walk_filtered = filter.is_some()
        && plan.iter().any(|l| {
            (l.starts_with("SCAN ") && l.contains(" INDEX "))
                || l.trim_start().starts_with("Filter:")
        });
    let scan = walk_filtered
        || plan
            .iter()
            .any(|l| (l.starts_with("SCAN ") && !l.contains(" INDEX ")) || l.contains("Seq Scan"));
    let temp_sort = plan.iter().any(|l| {
        let t = l.trim_start().trim_start_matches("->").trim_start();
        l.contains("TEMP B-TREE") || t.starts_with("Sort ") || t.starts_with("Incremental Sort")
    });
    println!();
    if !scan && !temp_sort {
        println!("Served by an index.");
    } else {
        if scan {
            println!(
                "SCAN: reads every record of `{}` (cost grows with the collection; PostgreSQL also scans tables too small for an index to pay off).",
                c.name
            );
        }
        if temp_sort {
            println!("SORT: sorts the matches in memory before returning a page.");
        }
        let mut fields: Vec<String> = Vec::new();
        if let Some(f) = &filter {
            equality_fields(f, &mut fields);
        }
        for k in &sort.keys {
            if k.field != "id" && !fields.contains(&k.field) {
                fields.push(k.field.clone());
            }
        }
        println!(
            "To serve it from an index, declare one with the fields compared with `=` first, then the sort fields:"
        );
        println!(
            "  [[collections.{}.indexes]]\n  fields = [{}]",
            c.name,
            fields
                .iter()
                .map(|f| format!("\"{f}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Fields compared with `=` in the top-level `&&` chain of a filter.
fn equality_fields(f: &plinth_domain::filter::Filter, out: &mut Vec<String>) {
    use plinth_domain::filter::{CmpOp, Filter};
    match f {
        Filter::And(a, b) => {
            equality_fields(a, out);
            equality_fields(b, out);
        }
        Filter::Cmp {
            field,
            op: CmpOp::Eq,
            ..
        } if !out.contains(field) => out.push(field.clone()),
        _ => {}
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PLINTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            // Events inside a request carry its request_id (span "request").
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
    }
}

fn serve(args: ServeArgs) -> Result<ExitCode> {
    let Some(schema) = load_schema(&args.data.schema.schema)? else {
        return Ok(ExitCode::FAILURE);
    };
    init_logs(args.log_format);
    let origins: Vec<String> = args
        .cors_origins
        .iter()
        .map(|o| o.trim().to_owned())
        .filter(|o| !o.is_empty())
        .collect();
    let mut rate_limits = plinth_domain::ratelimit::parse_policies(&args.rate_limits)
        .map_err(|e| anyhow::anyhow!("--rate-limits {e}"))?;
    for d in plinth_http::default_auth_limits() {
        if !rate_limits.iter().any(|p| p.name == d.name) {
            rate_limits.push(d);
        }
    }
    let breached = match &args.breached_passwords {
        Some(path) => Some(
            plinth_auth::PasswordPolicy::load_breached(path)
                .map_err(|e| anyhow::anyhow!("--breached-passwords {}: {e}", path.display()))?,
        ),
        None => None,
    };
    if args.password_min_length < 8 {
        anyhow::bail!("--password-min-length must be at least 8");
    }
    let auth = plinth_http::AuthConfig {
        issuer: args.token_issuer.clone(),
        audience: args.token_audience.clone(),
        access_ttl: Duration::from_secs(args.tokens.access_token_ttl.max(1)),
        refresh_idle: Duration::from_secs(args.refresh_idle_ttl.max(1)),
        refresh_absolute: Duration::from_secs(args.refresh_absolute_ttl.max(1)),
        password_policy: plinth_auth::PasswordPolicy {
            min_len: args.password_min_length,
            breached,
            ..plinth_auth::PasswordPolicy::default()
        },
        signup: args.signup == Signup::Open,
    };
    let http = plinth_http::HttpConfig {
        max_body_bytes: args.max_body_bytes,
        cors_origins: origins,
        rate_limits,
        auth,
    };
    // Refuse bad settings before touching the data directory.
    http.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        if args.auto_migrate == AutoMigrate::Safe {
            crate::migrate_cmd::apply_safe(&args.data, &schema).await?;
        }
        let Some(store) = open_store(&args.data, schema, true).await? else {
            return Ok(ExitCode::FAILURE);
        };
        let app = plinth_http::app(store, http).await?;
        let shutdown = plinth_http::shutdown_signal().context("cannot install signal handlers")?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(addr = %addr, "listening");
        plinth_http::serve(
            listener,
            app,
            shutdown,
            Duration::from_secs(args.shutdown_timeout),
        )
        .await?;
        tracing::info!("shutdown complete");
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

fn rotate_keys(args: RotateArgs) -> Result<ExitCode> {
    let Some(schema) = load_schema(&args.data.schema.schema)? else {
        return Ok(ExitCode::FAILURE);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let Some(store) = open_store(&args.data, schema, false).await? else {
            return Ok(ExitCode::FAILURE);
        };
        let now = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        )
        .unwrap_or(i64::MAX);
        let key = plinth_http::new_stored_key(now).map_err(|e| anyhow::anyhow!(e))?;
        let kid = key.kid.clone();
        store.add_signing_key(key).await?;
        // Keys superseded longer ago than a token lives (plus clock leeway) sign nothing valid.
        let ttl = i64::try_from(args.tokens.access_token_ttl).unwrap_or(i64::MAX);
        let pruned = store
            .prune_signing_keys(now.saturating_sub(ttl.saturating_add(60)))
            .await?;
        println!("new signing key {kid} is current; {pruned} expired key(s) deleted");
        println!("running servers use it within a minute; tokens signed by older keys stay valid until they expire");
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
