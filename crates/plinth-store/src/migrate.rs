//! Planned migrations on a database: the SQL of each step for its dialect,
//! the data checks that can block a step, and applying a plan as one
//! transaction that records a new schema version.
//!
//! A migration never runs beside a server on the embedded database (it takes
//! the data-directory lock). On PostgreSQL it holds the same advisory lock as
//! schema application and re-checks the recorded version, so two processes
//! cannot apply at once or apply a stale plan.

use std::path::PathBuf;

use sea_query::{Alias, PostgresQueryBuilder, SqliteQueryBuilder, Table};
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, Connection as _};

use plinth_domain::migrate::{Safety, Step};
use plinth_domain::{DefaultValue, Field, FieldType, Schema, Value};

use crate::ddl::{Dialect, collection_ddl, column, index_names, index_sql, relation_index_sql};
use crate::{PostgresConfig, Result, StoreError};

/// Which database to migrate.
#[derive(Debug, Clone)]
pub enum Target {
    Sqlite { data_dir: PathBuf },
    Postgres(PostgresConfig),
}

impl Target {
    pub fn dialect(&self) -> Dialect {
        match self {
            Target::Sqlite { .. } => Dialect::Sqlite,
            Target::Postgres(_) => Dialect::Postgres,
        }
    }
}

/// The schema a database has applied, and its version.
#[derive(Debug, Clone)]
pub struct Applied {
    pub version: i64,
    pub schema: Schema,
}

/// One step with its SQL and what the data says about it.
#[derive(Debug, Clone)]
pub struct PlannedStep {
    pub step: Step,
    pub safety: Safety,
    pub sql: Vec<String>,
    /// Why the step cannot run as planned (found by looking at the data).
    pub blocker: Option<String>,
}

/// One applied version.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub version: i64,
    pub applied_at: String,
    pub checksum: String,
    pub steps: String,
}

/// SHA-256 of a schema's canonical text (hex).
pub fn checksum(schema: &Schema) -> String {
    Sha256::digest(schema.canonical().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn literal(field: &Field) -> Option<sea_query::Value> {
    let v = match field.default.as_ref()? {
        DefaultValue::Literal(v) => v.clone(),
        DefaultValue::Now => Value::Text(plinth_domain::value::now_timestamp()),
        DefaultValue::Today => Value::Text(plinth_domain::value::today()),
        // Existing records have no creator to take it from.
        DefaultValue::AuthUserId => return None,
    };
    Some(crate::query::typed(&v, field.ty))
}

/// The SQL of one step for `dialect`.
pub fn step_sql(step: &Step, wanted: &Schema, dialect: Dialect) -> Vec<String> {
    let render = |t: &sea_query::TableAlterStatement| match dialect {
        Dialect::Sqlite => t.to_string(SqliteQueryBuilder),
        Dialect::Postgres => t.to_string(PostgresQueryBuilder),
    };
    match step {
        Step::DropIndex { collection, index } => {
            vec![format!("DROP INDEX \"{}\"", index.name(collection))]
        }
        Step::DropField { collection, field } => vec![render(
            Table::alter()
                .table(Alias::new(collection))
                .drop_column(Alias::new(field)),
        )],
        Step::DropCollection { collection } => vec![match dialect {
            Dialect::Sqlite => Table::drop()
                .table(Alias::new(collection))
                .to_string(SqliteQueryBuilder),
            Dialect::Postgres => Table::drop()
                .table(Alias::new(collection))
                .to_string(PostgresQueryBuilder),
        }],
        Step::RenameField {
            collection,
            from,
            to,
        } => vec![render(
            Table::alter()
                .table(Alias::new(collection))
                .rename_column(Alias::new(from), Alias::new(to)),
        )],
        Step::CreateCollection { collection } => collection_ddl(collection, dialect),
        Step::AddField { collection, field } => {
            let mut col = column(field, dialect);
            // Existing records get the default (the column is NOT NULL).
            if let (true, Some(v)) = (field.required, literal(field)) {
                col.default(v);
            }
            if let (FieldType::Relation, Some(target)) = (field.ty, &field.collection) {
                // Names are the schema's checked identifiers.
                col.extra(format!(
                    "REFERENCES \"{}\" (\"id\") ON DELETE RESTRICT",
                    crate::ddl::table_of(target)
                ));
            }
            let mut out = vec![render(
                Table::alter().table(Alias::new(collection)).add_column(col),
            )];
            if field.ty == FieldType::Relation
                && let Some(c) = wanted.collection(collection)
            {
                out.extend(relation_index_sql(c, &field.name, dialect));
            }
            out
        }
        Step::AddIndex { collection, index } => wanted
            .collection(collection)
            .map(|c| vec![index_sql(c, index, dialect)])
            .unwrap_or_default(),
        Step::ContractOnly { .. } => Vec::new(),
    }
}

fn map_sqlite(e: rusqlite::Error) -> StoreError {
    crate::sqlite::map_err(e)
}

fn map_pg(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

const HISTORY_DDL_SQLITE: &str = "CREATE TABLE IF NOT EXISTS _plinth_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL, checksum TEXT NOT NULL, steps TEXT NOT NULL)";
const HISTORY_DDL_PG: &str = "CREATE TABLE IF NOT EXISTS _plinth_migrations (version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), checksum TEXT NOT NULL, steps TEXT NOT NULL)";

/// A question to the data: does this step's precondition fail?
fn data_check(step: &Step, dialect: Dialect) -> Option<(String, String)> {
    match step {
        Step::AddIndex { collection, index } if index.unique => {
            let cols: Vec<String> = index.fields.iter().map(|f| format!("\"{f}\"")).collect();
            let not_null: Vec<String> = cols.iter().map(|c| format!("{c} IS NOT NULL")).collect();
            Some((
                format!(
                    "SELECT 1 FROM \"{collection}\" WHERE {} GROUP BY {} HAVING count(*) > 1 LIMIT 1",
                    not_null.join(" AND "),
                    cols.join(", ")
                ),
                format!(
                    "records of `{collection}` already share values of ({}); a unique index cannot be built until they differ",
                    index.fields.join(", ")
                ),
            ))
        }
        Step::AddField { collection, field } if field.required && field.default.is_none() => {
            let _ = dialect;
            Some((
                format!("SELECT 1 FROM \"{collection}\" LIMIT 1"),
                format!(
                    "`{collection}` has records and `{}` is required without a default: add it optional (or with a default), backfill, then make it required",
                    field.name
                ),
            ))
        }
        _ => None,
    }
}

/// Steps SQLite cannot run without a table rebuild.
fn sqlite_limits(step: &Step, applied: &Schema) -> Option<String> {
    let Step::DropField { collection, field } = step else {
        return None;
    };
    let f = applied.collection(collection)?.field(field)?;
    (f.unique || f.ty == FieldType::Relation).then(|| {
        format!(
            "SQLite cannot drop the {} column `{collection}.{field}` without a table rebuild; not supported by migrate yet",
            if f.unique { "unique" } else { "relation" }
        )
    })
}

/// What the database catalog holds: (table, columns) and index names.
#[derive(Debug, Default)]
struct Catalog {
    tables: Vec<(String, Vec<String>)>,
    indexes: Vec<String>,
}

/// An open migration session on one database.
pub struct Session {
    target: Target,
    sqlite: Option<(rusqlite::Connection, std::fs::File)>,
    pg: Option<sqlx::PgConnection>,
}

impl Session {
    pub async fn open(target: Target) -> Result<Session> {
        match &target {
            Target::Sqlite { data_dir } => {
                let path = data_dir.join("plinth.db");
                if !path.exists() {
                    return Err(StoreError::Unavailable(format!(
                        "no database in {}; `plinth serve` creates it on first start",
                        data_dir.display()
                    )));
                }
                let lock = crate::sqlite::lock_data_dir(data_dir)?;
                let conn = rusqlite::Connection::open(&path).map_err(map_sqlite)?;
                conn.busy_timeout(std::time::Duration::from_secs(5))
                    .map_err(map_sqlite)?;
                conn.pragma_update(None, "foreign_keys", "ON")
                    .map_err(map_sqlite)?;
                conn.execute_batch(HISTORY_DDL_SQLITE).map_err(map_sqlite)?;
                for stmt in crate::identity::identity_ddl(Dialect::Sqlite) {
                    conn.execute_batch(&stmt).map_err(map_sqlite)?;
                }
                Ok(Session {
                    target,
                    sqlite: Some((conn, lock)),
                    pg: None,
                })
            }
            Target::Postgres(config) => {
                let mut conn = sqlx::PgConnection::connect(&config.url)
                    .await
                    .map_err(|e| {
                        StoreError::Unavailable(format!(
                            "cannot connect to {}: {e}",
                            crate::redact_url(&config.url)
                        ))
                    })?;
                // Under the schema lock: concurrent CREATE TABLE IF NOT EXISTS
                // can collide in PostgreSQL's catalog.
                let mut tx = conn.begin().await.map_err(map_pg)?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(crate::postgres::SCHEMA_LOCK)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_pg)?;
                sqlx::query(HISTORY_DDL_PG)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_pg)?;
                for stmt in crate::identity::identity_ddl(Dialect::Postgres) {
                    sqlx::query(sqlx::AssertSqlSafe(stmt.as_str()))
                        .execute(&mut *tx)
                        .await
                        .map_err(map_pg)?;
                }
                tx.commit().await.map_err(map_pg)?;
                Ok(Session {
                    target,
                    sqlite: None,
                    pg: Some(conn),
                })
            }
        }
    }

    pub fn dialect(&self) -> Dialect {
        self.target.dialect()
    }

    /// The recorded schema, or `None` for a database without one.
    pub async fn applied(&mut self) -> Result<Option<Applied>> {
        let row: Option<(i64, String)> = if let Some((conn, _)) = &self.sqlite {
            rusqlite::OptionalExtension::optional(conn.query_row(
                "SELECT version, schema FROM _plinth_schema ORDER BY version DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            ))
            .map_err(map_sqlite)?
        } else if let Some(conn) = &mut self.pg {
            sqlx::query_as(
                "SELECT version, schema FROM _plinth_schema ORDER BY version DESC LIMIT 1",
            )
            .fetch_optional(conn)
            .await
            .map_err(map_pg)?
        } else {
            None
        };
        match row {
            None => Ok(None),
            Some((version, text)) => Ok(Some(Applied {
                version,
                schema: Schema::from_canonical(&text).map_err(|e| {
                    StoreError::Internal(format!("the recorded schema cannot be read: {e}"))
                })?,
            })),
        }
    }

    async fn exists(&mut self, sql: &str) -> Result<bool> {
        if let Some((conn, _)) = &self.sqlite {
            let hit = rusqlite::OptionalExtension::optional(conn.query_row(sql, [], |_| Ok(())))
                .map_err(map_sqlite)?;
            return Ok(hit.is_some());
        }
        if let Some(conn) = &mut self.pg {
            let hit = sqlx::query(AssertSqlSafe(sql.to_owned()))
                .fetch_optional(conn)
                .await
                .map_err(map_pg)?;
            return Ok(hit.is_some());
        }
        Ok(false)
    }

    /// The steps from `applied` to `wanted` with SQL, safety and data blockers.
    pub async fn plan(
        &mut self,
        applied: &Applied,
        steps: Vec<Step>,
        wanted: &Schema,
    ) -> Result<Vec<PlannedStep>> {
        let dialect = self.dialect();
        let mut out = Vec::new();
        for step in steps {
            let mut safety = step.safety();
            if dialect == Dialect::Postgres && matches!(step, Step::AddIndex { .. }) {
                safety = Safety::Locking;
            }
            let mut blocker = None;
            if dialect == Dialect::Sqlite {
                blocker = sqlite_limits(&step, &applied.schema);
            }
            if blocker.is_none()
                && let Some((sql, why)) = data_check(&step, dialect)
                && self.exists(&sql).await?
            {
                blocker = Some(why);
            }
            let sql = step_sql(&step, wanted, dialect);
            out.push(PlannedStep {
                step,
                safety,
                sql,
                blocker,
            });
        }
        Ok(out)
    }

    /// Runs `plan` in one transaction if the database is still at
    /// `from_version`, and records `wanted` as the next version.
    pub async fn apply(
        &mut self,
        from_version: i64,
        plan: &[PlannedStep],
        wanted: &Schema,
    ) -> Result<i64> {
        let version = from_version + 1;
        let canonical = wanted.canonical();
        let sum = checksum(wanted);
        let summary: Vec<String> = plan.iter().map(|p| p.step.to_string()).collect();
        let summary = summary.join("\n");
        if let Some((conn, _)) = &mut self.sqlite {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(map_sqlite)?;
            let current: i64 = tx
                .query_row("SELECT max(version) FROM _plinth_schema", [], |r| r.get(0))
                .map_err(map_sqlite)?;
            if current != from_version {
                return Err(StoreError::VersionMismatch);
            }
            for p in plan {
                for sql in &p.sql {
                    tx.execute_batch(sql)
                        .map_err(|e| StoreError::Internal(format!("{} failed: {e}", p.step)))?;
                }
            }
            let now = plinth_domain::value::now_timestamp();
            tx.execute(
                "INSERT INTO _plinth_schema (version, applied_at, schema) VALUES (?1, ?2, ?3)",
                rusqlite::params![version, now, canonical],
            )
            .map_err(map_sqlite)?;
            tx.execute(
                "INSERT INTO _plinth_migrations (version, applied_at, checksum, steps) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![version, now, sum, summary],
            )
            .map_err(map_sqlite)?;
            tx.commit().map_err(map_sqlite)?;
            return Ok(version);
        }
        if let Some(conn) = &mut self.pg {
            let mut tx = conn.begin().await.map_err(map_pg)?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(crate::postgres::SCHEMA_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(map_pg)?;
            let current: i64 = sqlx::query_scalar("SELECT max(version) FROM _plinth_schema")
                .fetch_one(&mut *tx)
                .await
                .map_err(map_pg)?;
            if current != from_version {
                return Err(StoreError::VersionMismatch);
            }
            for p in plan {
                for sql in &p.sql {
                    sqlx::query(AssertSqlSafe(sql.clone()))
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| StoreError::Internal(format!("{} failed: {e}", p.step)))?;
                }
            }
            sqlx::query(
                "INSERT INTO _plinth_schema (version, applied_at, schema) VALUES ($1, now(), $2)",
            )
            .bind(version)
            .bind(&canonical)
            .execute(&mut *tx)
            .await
            .map_err(map_pg)?;
            sqlx::query(
                "INSERT INTO _plinth_migrations (version, checksum, steps) VALUES ($1, $2, $3)",
            )
            .bind(version)
            .bind(&sum)
            .bind(&summary)
            .execute(&mut *tx)
            .await
            .map_err(map_pg)?;
            tx.commit().await.map_err(map_pg)?;
            return Ok(version);
        }
        Err(StoreError::Internal("no connection".into()))
    }

    /// Tables, columns and indexes as the database catalog has them.
    async fn catalog(&mut self) -> Result<Catalog> {
        let mut cat = Catalog::default();
        if let Some((conn, _)) = &self.sqlite {
            let mut st = conn
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '\\_plinth%' ESCAPE '\\'")
                .map_err(map_sqlite)?;
            let tables: Vec<String> = st
                .query_map([], |r| r.get(0))
                .map_err(map_sqlite)?
                .collect::<rusqlite::Result<_>>()
                .map_err(map_sqlite)?;
            for t in tables {
                let mut st = conn
                    .prepare("SELECT name FROM pragma_table_info(?1)")
                    .map_err(map_sqlite)?;
                let cols: Vec<String> = st
                    .query_map([&t], |r| r.get(0))
                    .map_err(map_sqlite)?
                    .collect::<rusqlite::Result<_>>()
                    .map_err(map_sqlite)?;
                cat.tables.push((t, cols));
            }
            let mut st = conn
                .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex%' AND name NOT LIKE '\\_plinth%' ESCAPE '\\'")
                .map_err(map_sqlite)?;
            cat.indexes = st
                .query_map([], |r| r.get(0))
                .map_err(map_sqlite)?
                .collect::<rusqlite::Result<_>>()
                .map_err(map_sqlite)?;
        } else if let Some(conn) = &mut self.pg {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT table_name::text, column_name::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name NOT LIKE '\\_plinth%' ORDER BY table_name, ordinal_position",
            )
            .fetch_all(&mut *conn)
            .await
            .map_err(map_pg)?;
            for (t, c) in rows {
                match cat.tables.iter_mut().find(|(n, _)| *n == t) {
                    Some((_, cols)) => cols.push(c),
                    None => cat.tables.push((t, vec![c])),
                }
            }
            // Constraint-backed indexes (primary keys, unique columns) are not Plinth's names.
            cat.indexes = sqlx::query_scalar(
                "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() AND indexname NOT IN (SELECT conname FROM pg_constraint) AND indexname NOT LIKE '\\_plinth%'",
            )
            .fetch_all(&mut *conn)
            .await
            .map_err(map_pg)?;
        }
        Ok(cat)
    }

    /// Differences between the recorded schema and the live catalog (changes
    /// made by hand): missing or extra tables, columns and indexes.
    pub async fn drift(&mut self, applied: &Schema) -> Result<Vec<String>> {
        let cat = self.catalog().await?;
        let mut out = Vec::new();
        let mut expected_indexes: Vec<String> = Vec::new();
        for c in &applied.collections {
            expected_indexes.extend(index_names(c));
            let Some((_, cols)) = cat.tables.iter().find(|(t, _)| *t == c.name) else {
                out.push(format!("table `{}` is missing", c.name));
                continue;
            };
            let want: Vec<&str> = ["id", "created_at", "updated_at", "version"]
                .into_iter()
                .chain(c.tenant_scoped.then_some(crate::ddl::TENANT_COLUMN))
                .chain(c.fields.iter().map(|f| f.name.as_str()))
                .collect();
            for w in &want {
                if !cols.iter().any(|c| c == w) {
                    out.push(format!("column `{}.{w}` is missing", c.name));
                }
            }
            for col in cols {
                if !want.contains(&col.as_str()) {
                    out.push(format!(
                        "column `{}.{col}` is not in the recorded schema",
                        c.name
                    ));
                }
            }
        }
        for (t, _) in &cat.tables {
            if applied.collection(t).is_none() {
                out.push(format!("table `{t}` is not in the recorded schema"));
            }
        }
        for ix in &expected_indexes {
            if !cat.indexes.contains(ix) {
                out.push(format!("index `{ix}` is missing"));
            }
        }
        for ix in &cat.indexes {
            if !expected_indexes.contains(ix) {
                out.push(format!("index `{ix}` is not Plinth's"));
            }
        }
        Ok(out)
    }

    /// The schema recorded as `version`, if any.
    pub async fn schema_at(&mut self, version: i64) -> Result<Option<Schema>> {
        let text: Option<String> = if let Some((conn, _)) = &self.sqlite {
            rusqlite::OptionalExtension::optional(conn.query_row(
                "SELECT schema FROM _plinth_schema WHERE version = ?1",
                [version],
                |r| r.get(0),
            ))
            .map_err(map_sqlite)?
        } else if let Some(conn) = &mut self.pg {
            sqlx::query_scalar("SELECT schema FROM _plinth_schema WHERE version = $1")
                .bind(version)
                .fetch_optional(conn)
                .await
                .map_err(map_pg)?
        } else {
            None
        };
        text.map(|t| {
            Schema::from_canonical(&t).map_err(|e| {
                StoreError::Internal(format!("schema version {version} cannot be read: {e}"))
            })
        })
        .transpose()
    }

    /// Every version applied by `plinth migrate`, oldest first.
    pub async fn history(&mut self) -> Result<Vec<HistoryEntry>> {
        if let Some((conn, _)) = &self.sqlite {
            let mut st = conn
                .prepare("SELECT version, applied_at, checksum, steps FROM _plinth_migrations ORDER BY version")
                .map_err(map_sqlite)?;
            let rows = st
                .query_map([], |r| {
                    Ok(HistoryEntry {
                        version: r.get(0)?,
                        applied_at: r.get(1)?,
                        checksum: r.get(2)?,
                        steps: r.get(3)?,
                    })
                })
                .map_err(map_sqlite)?;
            return rows
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(map_sqlite);
        }
        if let Some(conn) = &mut self.pg {
            let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
                "SELECT version, to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), checksum, steps FROM _plinth_migrations ORDER BY version",
            )
            .fetch_all(conn)
            .await
            .map_err(map_pg)?;
            return Ok(rows
                .into_iter()
                .map(|(version, applied_at, checksum, steps)| HistoryEntry {
                    version,
                    applied_at,
                    checksum,
                    steps,
                })
                .collect());
        }
        Ok(Vec::new())
    }
}
