//! Planned migrations on a database: the SQL of each step for its dialect,
//! the data checks that can block a step, and applying a plan as one
//! transaction that records a new schema version.
//!
//! A migration never runs beside a server on the embedded database (it takes
//! the data-directory lock). On PostgreSQL it holds the same advisory lock as
//! schema application and re-checks the recorded version, so two processes
//! cannot apply at once or apply a stale plan.
//!
//! Changes to how a field is stored are `ALTER TABLE … ALTER COLUMN` on
//! PostgreSQL (constraints found by name in the catalog). SQLite cannot alter
//! a column, so the step rebuilds the table (<https://www.sqlite.org/lang_altertable.html>,
//! "other kinds of table schema changes"): a new table made by the same DDL as
//! a fresh one, the rows copied and converted, the old table dropped, the new
//! one renamed, its indexes made again, then `PRAGMA foreign_key_check`.
//! Every data check runs again inside the apply transaction (PostgreSQL locks
//! the checked tables first), so data that stopped fitting since the plan
//! leaves the database unchanged.

use std::path::PathBuf;

use sea_query::{
    Alias, Expr, ExprTrait, Order, PostgresQueryBuilder, Query, QueryBuilder, SelectStatement,
    SqliteQueryBuilder, Table,
};
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, Connection as _, Row as _};

use plinth_domain::migrate::{Safety, Step};
use plinth_domain::{Collection, DefaultValue, Field, FieldType, Schema, Value};

use crate::ddl::relation_index_sql;
use crate::ddl::{Dialect, collection_ddl, collection_indexes, column, index_names, index_sql};
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
    /// Why a storage change has no SQL (the column is stored the same way,
    /// or a later step rebuilds the table).
    pub note: Option<String>,
    /// What the data checks found, when it does not block the step.
    pub findings: Vec<String>,
    /// Why the step cannot run as planned (found by looking at the data),
    /// one line per failed check; empty when it can run.
    pub blockers: Vec<String>,
    /// The data checks, run again inside the apply transaction.
    checks: Vec<Check>,
}

/// How an apply ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The plan ran and was recorded as this version.
    Applied(i64),
    /// The data no longer fits a step (it changed since the plan was made):
    /// why. The transaction was rolled back.
    Blocked(String),
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

/// The value existing records get from a field's default.
fn default_value(field: &Field) -> Option<Value> {
    Some(match field.default.as_ref()? {
        DefaultValue::Literal(v) => v.clone(),
        DefaultValue::Now => Value::Text(plinth_domain::value::now_timestamp()),
        DefaultValue::Today => Value::Text(plinth_domain::value::today()),
        // Existing records have no creator to take it from.
        DefaultValue::AuthUserId => return None,
    })
}

/// A default as the plan shows it.
fn show(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Text(s) | Value::Json(s) => format!("{s:?}"),
    }
}

/// A quoted identifier. Every identifier here is a checked schema name
/// (lower snake case), so quoting cannot be escaped.
fn qi(name: &str) -> String {
    format!("\"{name}\"")
}

/// A value from the schema file (a default, an enum value) as an SQL literal,
/// escaped by sea-query, typed for the column.
fn literal(v: &Value, ty: FieldType, dialect: Dialect) -> String {
    let v = crate::query::typed(v, ty);
    match dialect {
        Dialect::Sqlite => SqliteQueryBuilder.value_to_string(&v),
        Dialect::Postgres => {
            let lit = PostgresQueryBuilder.value_to_string(&v);
            match ty {
                FieldType::Datetime => format!("{lit}::timestamptz"),
                FieldType::Date => format!("{lit}::date"),
                FieldType::Json => format!("{lit}::json"),
                _ => lit,
            }
        }
    }
}

fn text_literal(s: &str, dialect: Dialect) -> String {
    literal(&Value::Text(s.to_owned()), FieldType::Text, dialect)
}

/// The PostgreSQL type of a field's column (as `ddl::column` makes it).
fn pg_type(ty: FieldType) -> &'static str {
    match ty {
        FieldType::Integer => "bigint",
        FieldType::Number => "double precision",
        FieldType::Boolean => "boolean",
        FieldType::Datetime => "timestamp with time zone",
        FieldType::Date => "date",
        FieldType::Json => "json",
        _ => "text COLLATE \"C\"",
    }
}

/// The expression that converts column `c` from type `from` to `to`. The
/// data checks have made sure every value converts; NULL stays NULL.
fn convert(c: &str, from: FieldType, to: FieldType, dialect: Dialect) -> String {
    use FieldType as T;
    let col = qi(c);
    if from == to {
        return col;
    }
    match dialect {
        Dialect::Sqlite => match (from, to) {
            (_, T::Integer) => format!("CAST({col} AS INTEGER)"),
            (_, T::Number) => format!("CAST({col} AS REAL)"),
            (T::Integer, _) => format!("CAST({col} AS TEXT)"),
            // Dates and timestamps are stored as their canonical text.
            (T::Date, T::Datetime) => format!("{col} || 'T00:00:00.000000Z'"),
            _ => col,
        },
        Dialect::Postgres => match (from, to) {
            _ if pg_type(from) == pg_type(to) => col,
            (T::Datetime, _) => {
                format!("to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
            }
            (T::Date, T::Datetime) => format!("({col}::timestamp AT TIME ZONE 'UTC')"),
            (T::Date, _) => format!("to_char({col}, 'YYYY-MM-DD')"),
            (_, T::Integer) => format!("{col}::bigint"),
            (_, T::Number) => format!("{col}::double precision"),
            (_, T::Datetime) => format!("{col}::timestamptz"),
            (_, T::Date) => format!("{col}::date"),
            _ => format!("{col}::text"),
        },
    }
}

/// The name of the index a relation field gets (see `ddl::relation_index_sql`).
fn relation_index_name(c: &str, field: &str) -> String {
    plinth_domain::Index {
        fields: vec![field.to_owned()],
        unique: false,
    }
    .name(c)
}

/// The relation indexes a collection has: (field, index name).
fn relation_indexes(c: &Collection) -> Vec<(String, String)> {
    let all = index_names(c);
    c.relations()
        .map(|(f, _)| (f.name.clone(), relation_index_name(&c.name, &f.name)))
        .filter(|(_, n)| all.contains(n) && !c.indexes.iter().any(|ix| ix.name(&c.name) == *n))
        .collect()
}

fn render_select(q: &SelectStatement, dialect: Dialect) -> String {
    match dialect {
        Dialect::Sqlite => q.to_string(SqliteQueryBuilder),
        Dialect::Postgres => q.to_string(PostgresQueryBuilder),
    }
}

/// The SQL of one step.
struct StepSql {
    sql: Vec<String>,
    /// PostgreSQL: it holds locks that block writes while it scans or
    /// rewrites the table.
    locking: bool,
    /// Why there is no SQL, when there is none for a storage change.
    note: Option<String>,
}

impl StepSql {
    fn plain(sql: Vec<String>) -> StepSql {
        StepSql {
            sql,
            locking: false,
            note: None,
        }
    }
}

/// The tables as they stand between the steps of a plan, so each step's SQL
/// is written for the table it will meet (a SQLite rebuild makes the table as
/// it is at its point of the plan).
struct StepWriter<'a> {
    dialect: Dialect,
    wanted: &'a Schema,
    tables: Schema,
    /// SQLite: the columns of each table that are not fields (system columns),
    /// copied as they are by a rebuild.
    system: Vec<(String, Vec<String>)>,
    /// SQLite: the table before a rebuild that a later step makes.
    pending: Option<Collection>,
}

impl StepWriter<'_> {
    fn table(&self, name: &str) -> Option<&Collection> {
        self.tables.collection(name)
    }

    fn table_mut(&mut self, name: &str) -> Option<&mut Collection> {
        self.tables.collections.iter_mut().find(|c| c.name == name)
    }

    /// Moves the tables past `step`.
    fn advance(&mut self, step: &Step) {
        match step {
            Step::DropIndex { collection, index } => {
                if let Some(c) = self.table_mut(collection) {
                    c.indexes.retain(|ix| ix != index);
                }
            }
            Step::DropField { collection, field } => {
                if let Some(c) = self.table_mut(collection) {
                    c.fields.retain(|f| f.name != *field);
                }
            }
            Step::DropCollection { collection } => {
                self.tables.collections.retain(|c| c.name != *collection);
            }
            Step::RenameField {
                collection,
                from,
                to,
            } => {
                if let Some(f) = self
                    .table_mut(collection)
                    .and_then(|c| c.fields.iter_mut().find(|f| f.name == *from))
                {
                    f.name.clone_from(to);
                }
            }
            Step::CreateCollection { collection } => {
                self.tables.collections.push(collection.clone());
            }
            Step::AddField { collection, field } => {
                if let Some(c) = self.table_mut(collection) {
                    c.fields.push(field.clone());
                }
            }
            Step::AlterField { collection, to, .. } => {
                if let Some(f) = self
                    .table_mut(collection)
                    .and_then(|c| c.fields.iter_mut().find(|f| f.name == to.name))
                {
                    *f = (**to).clone();
                }
            }
            Step::AddIndex { collection, index } => {
                if let Some(c) = self.table_mut(collection) {
                    c.indexes.push(index.clone());
                }
            }
            Step::ContractOnly { .. } => {}
        }
    }

    /// Whether SQLite needs a table rebuild for `step`: it cannot alter a
    /// column, add a NOT NULL column without a default or a UNIQUE one, or
    /// drop a UNIQUE or indexed (relation) column.
    fn sqlite_rebuilds(&self, step: &Step) -> bool {
        match step {
            Step::AlterField { .. } => true,
            Step::AddField { field, .. } => {
                field.unique || (field.required && field.default.is_none())
            }
            Step::DropField { collection, field } => self
                .table(collection)
                .and_then(|c| c.field(field))
                .is_some_and(|f| f.unique || f.ty == FieldType::Relation),
            _ => false,
        }
    }

    /// The SQL of `step`, given the step after it (SQLite rebuilds a table
    /// once for consecutive steps on it). `constraints`: the PostgreSQL
    /// constraints of an altered column, (name, kind).
    fn step(
        &mut self,
        step: &Step,
        next: Option<&Step>,
        constraints: &[(String, String)],
    ) -> Result<StepSql> {
        let before = self
            .pending
            .take()
            .or_else(|| self.table(step.collection()).cloned());
        let rebuild = self.dialect == Dialect::Sqlite && self.sqlite_rebuilds(step);
        self.advance(step);
        let after = self.table(step.collection()).cloned();
        let (Some(before), Some(mut after)) = (before, after) else {
            // Collections created or dropped.
            return Ok(StepSql::plain(self.plain(step)));
        };
        if rebuild {
            if next.is_some_and(|n| n.collection() == step.collection() && self.sqlite_rebuilds(n))
            {
                self.pending = Some(before);
                return Ok(StepSql {
                    sql: Vec::new(),
                    locking: false,
                    note: Some(format!(
                        "no SQL of its own: `{}` is rebuilt once, with the next step",
                        after.name
                    )),
                });
            }
            // Columns in the order of the schema file, as a fresh table has them.
            if let Some(w) = self.wanted.collection(&after.name) {
                after.fields.sort_by_key(|f| {
                    w.fields
                        .iter()
                        .position(|wf| wf.name == f.name)
                        .unwrap_or(usize::MAX)
                });
            }
            let same = collection_ddl(&before, Dialect::Sqlite).first()
                == collection_ddl(&after, Dialect::Sqlite).first()
                && after.fields.iter().all(|f| {
                    before.field(&f.name).is_some_and(|b| {
                        convert(&f.name, b.ty, f.ty, Dialect::Sqlite) == qi(&f.name)
                    })
                });
            let sql = if same {
                Vec::new()
            } else {
                self.rebuild(&before, &after)?
            };
            if let Some(c) = self.table_mut(&after.name) {
                *c = after;
            }
            return Ok(StepSql::plain(sql));
        }
        let mut out = match step {
            Step::AlterField { from, to, .. } => {
                let (sql, locking) = self.pg_alter(&after, from, to, constraints);
                StepSql {
                    sql,
                    locking,
                    note: None,
                }
            }
            Step::AddField { field, .. } => StepSql {
                sql: self.plain(step),
                locking: self.dialect == Dialect::Postgres && field.unique,
                note: None,
            },
            _ => StepSql::plain(self.plain(step)),
        };
        if !matches!(step, Step::DropField { .. }) {
            out.sql
                .extend(self.relation_indexes_between(&before, &after));
        }
        Ok(out)
    }

    /// Creates and drops relation indexes whose need changed between two
    /// states of a table (a field renamed or made a relation, a declared index
    /// that starts with a relation field added or dropped).
    fn relation_indexes_between(&self, before: &Collection, after: &Collection) -> Vec<String> {
        let had = relation_indexes(before);
        let has = relation_indexes(after);
        let mut out = Vec::new();
        for (_, name) in &had {
            if !has.iter().any(|(_, n)| n == name) {
                out.push(format!("DROP INDEX {}", qi(name)));
            }
        }
        for (field, name) in &has {
            if !had.iter().any(|(_, n)| n == name) {
                out.extend(relation_index_sql(after, field, self.dialect));
            }
        }
        out
    }

    /// Steps with one plain statement per dialect.
    fn plain(&self, step: &Step) -> Vec<String> {
        let dialect = self.dialect;
        let render = |t: &sea_query::TableAlterStatement| match dialect {
            Dialect::Sqlite => t.to_string(SqliteQueryBuilder),
            Dialect::Postgres => t.to_string(PostgresQueryBuilder),
        };
        match step {
            Step::DropIndex { collection, index } => {
                vec![format!("DROP INDEX {}", qi(&index.name(collection)))]
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
                if let (true, Some(v)) = (field.required, default_value(field)) {
                    col.default(crate::query::typed(&v, field.ty));
                }
                if let (FieldType::Relation, Some(target)) = (field.ty, &field.collection) {
                    col.extra(format!(
                        "REFERENCES {} (\"id\") ON DELETE RESTRICT",
                        qi(crate::ddl::table_of(target))
                    ));
                }
                vec![render(
                    Table::alter().table(Alias::new(collection)).add_column(col),
                )]
            }
            Step::AddIndex { collection, index } => self
                .table(collection)
                .map(|c| vec![index_sql(c, index, dialect)])
                .unwrap_or_default(),
            Step::AlterField { .. } | Step::ContractOnly { .. } => Vec::new(),
        }
    }

    /// SQLite: the table `before` rebuilt as `after` (same name), rows copied
    /// and converted field by field.
    fn rebuild(&self, before: &Collection, after: &Collection) -> Result<Vec<String>> {
        let d = Dialect::Sqlite;
        let name = &after.name;
        let tmp = format!("{name}__new");
        let mut fresh = after.clone();
        fresh.name.clone_from(&tmp);
        // The CREATE TABLE of a fresh collection (its indexes come below,
        // under the table's real name).
        let create = collection_ddl(&fresh, d)
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Internal(format!("no CREATE TABLE for `{name}`")))?;
        let system: Vec<String> = self
            .system
            .iter()
            .find(|(t, _)| t == name)
            .map(|(_, cols)| cols.clone())
            .unwrap_or_else(|| {
                plinth_domain::schema::SYSTEM_FIELDS
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect()
            });
        let mut cols: Vec<String> = system.clone();
        let mut exprs: Vec<String> = system.iter().map(|c| qi(c)).collect();
        for f in &after.fields {
            let fill = || default_value(f).map(|v| literal(&v, f.ty, d));
            let expr = match before.field(&f.name) {
                Some(b) => {
                    let e = convert(&f.name, b.ty, f.ty, d);
                    match (f.required && !b.required).then(fill).flatten() {
                        Some(v) => Some(format!("coalesce({e}, {v})")),
                        None => Some(e),
                    }
                }
                None if f.required => fill(),
                None => None,
            };
            if let Some(e) = expr {
                cols.push(f.name.clone());
                exprs.push(e);
            }
        }
        let copy = Query::insert()
            .into_table(Alias::new(&tmp))
            .columns(cols.iter().map(Alias::new))
            .select_from(
                Query::select()
                    .exprs(exprs.into_iter().map(Expr::cust))
                    .from(Alias::new(name))
                    .to_owned(),
            )
            .map(|q| q.to_string(SqliteQueryBuilder))
            .map_err(|e| StoreError::Internal(format!("cannot copy the rows of `{name}`: {e}")))?;
        let mut out = vec![
            create,
            copy,
            Table::drop()
                .table(Alias::new(name))
                .to_string(SqliteQueryBuilder),
            Table::rename()
                .table(Alias::new(&tmp), Alias::new(name))
                .to_string(SqliteQueryBuilder),
        ];
        out.extend(collection_indexes(after, d));
        Ok(out)
    }

    /// PostgreSQL: one column altered in place.
    fn pg_alter(
        &self,
        table: &Collection,
        from: &Field,
        to: &Field,
        constraints: &[(String, String)],
    ) -> (Vec<String>, bool) {
        let d = Dialect::Postgres;
        let t = qi(&table.name);
        let c = qi(&to.name);
        let alter = |what: String| format!("ALTER TABLE {t} {what}");
        let mut out = Vec::new();
        let mut locking = false;
        let enum_check = |f: &Field| (f.ty == FieldType::Enum).then(|| f.values.clone());
        let check_changes = enum_check(from) != enum_check(to);
        let target = |f: &Field| {
            (f.ty == FieldType::Relation)
                .then(|| f.collection.clone())
                .flatten()
        };
        let target_changes = target(from) != target(to);
        for (name, kind) in constraints {
            let drop = match kind.as_str() {
                "c" => check_changes,
                "u" => from.unique && !to.unique,
                "f" => target_changes,
                _ => false,
            };
            if drop {
                out.push(alter(format!("DROP CONSTRAINT {}", qi(name))));
            }
        }
        if pg_type(from.ty) != pg_type(to.ty) {
            // A default left by an added field would have to convert too;
            // fresh tables have none (Plinth always writes every column).
            out.push(alter(format!("ALTER COLUMN {c} DROP DEFAULT")));
            out.push(alter(format!(
                "ALTER COLUMN {c} TYPE {} USING {}",
                pg_type(to.ty),
                convert(&to.name, from.ty, to.ty, d)
            )));
            locking = true;
        }
        if to.required && !from.required {
            if let Some(v) = default_value(to) {
                out.push(
                    Query::update()
                        .table(Alias::new(&table.name))
                        .value(Alias::new(&to.name), crate::query::bind_as(&v, to.ty, d))
                        .and_where(Expr::col(Alias::new(&to.name)).is_null())
                        .to_string(PostgresQueryBuilder),
                );
            }
            out.push(alter(format!("ALTER COLUMN {c} SET NOT NULL")));
            locking = true;
        }
        if from.required && !to.required {
            out.push(alter(format!("ALTER COLUMN {c} DROP NOT NULL")));
        }
        if check_changes && to.ty == FieldType::Enum {
            let values: Vec<String> = to.values.iter().map(|v| text_literal(v, d)).collect();
            out.push(alter(format!("ADD CHECK ({c} IN ({}))", values.join(", "))));
            locking = true;
        }
        if to.unique && !from.unique {
            out.push(alter(format!("ADD UNIQUE ({c})")));
            locking = true;
        }
        if target_changes && let Some(target) = target(to) {
            out.push(alter(format!(
                "ADD FOREIGN KEY ({c}) REFERENCES {} (\"id\") ON DELETE RESTRICT",
                qi(crate::ddl::table_of(&target))
            )));
            locking = true;
        }
        (out, locking)
    }
}

/// What a data check tests on the values of a column, in Rust (where SQL
/// cannot say it the same way on both databases).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueKind {
    Integer,
    Number,
    Email,
    Url,
    Datetime,
    Date,
}

impl ValueKind {
    fn of(ty: FieldType) -> Option<ValueKind> {
        Some(match ty {
            FieldType::Integer => ValueKind::Integer,
            FieldType::Number => ValueKind::Number,
            FieldType::Email => ValueKind::Email,
            FieldType::Url => ValueKind::Url,
            FieldType::Datetime => ValueKind::Datetime,
            FieldType::Date => ValueKind::Date,
            _ => return None,
        })
    }

    fn accepts(self, s: &str) -> bool {
        match self {
            ValueKind::Integer => s.parse::<i64>().is_ok(),
            // Finite, and not a non-zero number too small for a double
            // (PostgreSQL refuses those where Rust rounds them to zero).
            ValueKind::Number => s.parse::<f64>().is_ok_and(|v| {
                v.is_finite()
                    && (v != 0.0
                        || s.split(['e', 'E'])
                            .next()
                            .is_some_and(|m| !m.bytes().any(|b| (b'1'..=b'9').contains(&b))))
            }),
            ValueKind::Email => plinth_domain::value::is_email(s),
            ValueKind::Url => plinth_domain::value::is_http_url(s),
            // Stored as text on SQLite: only Plinth's own form converts to the
            // same instant on both databases.
            ValueKind::Datetime => {
                plinth_domain::value::normalize_datetime(s).as_deref() == Some(s)
            }
            ValueKind::Date => plinth_domain::value::normalize_date(s).as_deref() == Some(s),
        }
    }

    fn noun(self) -> &'static str {
        match self {
            ValueKind::Integer => "an integer",
            ValueKind::Number => "a finite number",
            ValueKind::Email => "an email address",
            ValueKind::Url => "an http(s) URL",
            ValueKind::Datetime => "a UTC timestamp in Plinth's form (2026-01-02T03:04:05.000000Z)",
            ValueKind::Date => "a date (YYYY-MM-DD)",
        }
    }
}

#[derive(Debug, Clone)]
enum Test {
    /// The records matching a condition.
    Rows(Expr),
    /// The records whose non-null value of `column` fails `kind`.
    Values { column: String, kind: ValueKind },
}

/// A question to the live data before a step runs.
#[derive(Debug, Clone)]
struct Check {
    table: String,
    test: Test,
    /// What the records found have ("have no `views` value").
    what: String,
    /// Whether finding `at_least` records blocks the step (else it is reported).
    blocks: bool,
    at_least: u64,
    /// What to do about them (or, for a report, what the step does).
    hint: String,
    /// A text column to break the records found down by value.
    by_value: Option<String>,
}

/// What a check found.
#[derive(Debug, Default)]
struct Found {
    count: u64,
    examples: Vec<String>,
    by_value: Vec<(String, i64)>,
}

const EXAMPLES: u64 = 3;
/// Rows read per query by a value check on PostgreSQL.
const PAGE: u64 = 1000;

impl Check {
    fn rows(table: &str, bad: Expr, what: String, hint: String) -> Check {
        Check::new(table, Test::Rows(bad), what, hint)
    }

    fn new(table: &str, test: Test, what: String, hint: String) -> Check {
        Check {
            table: table.to_owned(),
            test,
            what,
            blocks: true,
            at_least: 1,
            hint,
            by_value: None,
        }
    }

    fn queries(&self, dialect: Dialect) -> (String, String, Option<String>) {
        let Test::Rows(bad) = &self.test else {
            return (String::new(), String::new(), None);
        };
        let t = Alias::new(&self.table);
        let count = Query::select()
            .expr(Expr::cust("count(*)"))
            .from(t.clone())
            .and_where(bad.clone())
            .to_owned();
        let ids = Query::select()
            .column(Alias::new("id"))
            .from(t.clone())
            .and_where(bad.clone())
            .order_by(Alias::new("id"), Order::Asc)
            .limit(EXAMPLES)
            .to_owned();
        let by = self.by_value.as_ref().map(|c| {
            let q = Query::select()
                .column(Alias::new(c))
                .expr(Expr::cust("count(*)"))
                .from(t)
                .and_where(bad.clone())
                .group_by_col(Alias::new(c))
                .order_by_expr(Expr::cust("count(*)"), Order::Desc)
                .order_by(Alias::new(c), Order::Asc)
                .limit(5)
                .to_owned();
            render_select(&q, dialect)
        });
        (
            render_select(&count, dialect),
            render_select(&ids, dialect),
            by,
        )
    }

    fn blocked_by(&self, found: &Found) -> bool {
        self.blocks && found.count >= self.at_least
    }

    /// The plan's line about what was found.
    fn report(&self, found: &Found) -> String {
        let n = found.count;
        let records = if n == 1 { "record" } else { "records" };
        let what = if n == 1 {
            self.what
                .replacen("have ", "has ", 1)
                .replacen("share ", "shares ", 1)
                .replacen("exist,", "exists,", 1)
        } else {
            self.what.clone()
        };
        let mut line = format!("{n} {records} of `{}` {what}", self.table);
        if n == 0 {
            return line;
        }
        if !found.examples.is_empty() {
            line.push_str(&format!(" (e.g. {})", found.examples.join(", ")));
        }
        if !found.by_value.is_empty() {
            let by: Vec<String> = found
                .by_value
                .iter()
                .map(|(v, n)| format!("{v:?} ×{n}"))
                .collect();
            line.push_str(&format!(" [by value: {}]", by.join(", ")));
        }
        if !self.hint.is_empty() {
            line.push_str("; ");
            line.push_str(&self.hint);
        }
        line
    }
}

/// The applied column a wanted field of `collection` is stored in before the
/// plan runs (a rename runs inside the plan), or `None` for a field the plan
/// adds.
fn applied_column<'a>(
    applied: &'a Collection,
    steps: &'a [Step],
    name: &'a str,
) -> Option<&'a str> {
    if plinth_domain::schema::SYSTEM_FIELDS.contains(&name) {
        return Some(name);
    }
    let renamed = steps.iter().find_map(|s| match s {
        Step::RenameField {
            collection,
            from,
            to,
        } if *collection == applied.name && to == name => Some(from.as_str()),
        _ => None,
    });
    renamed.or_else(|| applied.field(name).map(|f| f.name.as_str()))
}

fn col(c: &str) -> Expr {
    Expr::col(Alias::new(c))
}

/// Records sharing values of `cols` (nulls never collide).
fn duplicates(table: &str, cols: &[&str]) -> Expr {
    let tuple = |cols: &[&str]| Expr::tuple(cols.iter().map(|c| col(c)));
    let mut sub = Query::select();
    sub.from(Alias::new(table));
    for c in cols {
        sub.column(Alias::new(*c))
            .and_where(col(c).is_not_null())
            .group_by_col(Alias::new(*c));
    }
    sub.and_having(Expr::cust("count(*) > 1"));
    tuple(cols).in_subquery(sub.to_owned())
}

/// Records of `table` whose `c` names no record of `target` (every non-null
/// value, when the target is not a table yet).
fn dangling(table: &str, c: &str, target: &str, applied: &Schema) -> Expr {
    let set = col(c).is_not_null();
    if applied.collection(target).is_none() && target != plinth_domain::schema::USERS {
        return set;
    }
    let found = Query::select()
        .expr(Expr::val(1i64))
        .from_as(
            Alias::new(crate::ddl::table_of(target)),
            Alias::new("_target"),
        )
        .and_where(
            Expr::col((Alias::new("_target"), Alias::new("id")))
                .equals((Alias::new(table), Alias::new(c))),
        )
        .to_owned();
    set.and(Expr::exists(found).not())
}

/// The data checks of one step against the applied tables.
fn checks_for(step: &Step, applied: &Schema, steps: &[Step]) -> Vec<Check> {
    let mut out = Vec::new();
    match step {
        Step::AddIndex { collection, index } if index.unique => {
            let Some(a) = applied.collection(collection) else {
                return out;
            };
            let mut cols = Vec::new();
            for f in &index.fields {
                match applied_column(a, steps, f) {
                    Some(c) => cols.push(c),
                    None => {
                        // Added by the plan: all null (never collide), or all
                        // the default (the same in every record).
                        let added_with_default = steps.iter().any(|s| {
                            matches!(s, Step::AddField { collection: c, field }
                                if c == collection && field.name == *f && field.required && field.default.is_some())
                        });
                        if !added_with_default {
                            return out;
                        }
                    }
                }
            }
            let what = format!(
                "share their values of ({}) with another record",
                index.fields.join(", ")
            );
            let hint = "a unique index cannot be built until they differ".to_owned();
            if cols.is_empty() {
                let mut c = Check::rows(collection, Expr::cust("1 = 1"), what, hint);
                c.at_least = 2;
                out.push(c);
            } else {
                out.push(Check::rows(
                    collection,
                    duplicates(collection, &cols),
                    what,
                    hint,
                ));
            }
        }
        Step::AddField { collection, field } if field.required && field.default.is_none() => {
            out.push(Check::rows(
                collection,
                Expr::cust("1 = 1"),
                format!("exist, and `{}` is required without a default", field.name),
                "add it optional (or with a default), backfill, then make it required".into(),
            ));
        }
        Step::AddField { collection, field } if field.required && field.unique => {
            let mut c = Check::rows(
                collection,
                Expr::cust("1 = 1"),
                format!(
                    "would share the default of the unique field `{}`",
                    field.name
                ),
                "add it optional, give the records distinct values, then make it required".into(),
            );
            c.at_least = 2;
            out.push(c);
        }
        Step::AlterField {
            collection,
            from,
            to,
        } => out.extend(alter_checks(collection, from, to, applied)),
        _ => {}
    }
    out
}

/// One check per change of a field that narrows what it accepts
/// ([`FieldChange::narrows`]); `from` names the column as it is now.
fn alter_checks(t: &str, from: &Field, to: &Field, applied: &Schema) -> Vec<Check> {
    use plinth_domain::migrate::{FieldChange, field_changes};
    let c = from.name.as_str();
    let shown = format!("`{}`", to.name);
    let enum_check = || {
        let mut check = Check::rows(
            t,
            col(c)
                .is_not_null()
                .and(col(c).is_not_in(to.values.iter().map(String::as_str))),
            format!(
                "have a {shown} value that is not one of {}",
                to.values.join(", ")
            ),
            "change those records first (or keep the values)".into(),
        );
        check.by_value = Some(c.to_owned());
        check
    };
    let relation_check = |target: &str| {
        Check::rows(
            t,
            dangling(t, c, target, applied),
            format!("have a {shown} value that is no record of `{target}`"),
            "change or clear those values first".into(),
        )
    };
    let mut out = Vec::new();
    for change in field_changes(from, to).iter().filter(|ch| ch.narrows()) {
        match change {
            FieldChange::Type {
                to: FieldType::Enum,
                ..
            }
            | FieldChange::EnumValues { .. } => {
                out.push(enum_check());
            }
            FieldChange::Type {
                to: FieldType::Relation,
                ..
            } => out.extend(to.collection.as_deref().map(relation_check)),
            FieldChange::Target { to: target, .. } => out.push(relation_check(target)),
            FieldChange::Type {
                from: ty, to: new, ..
            } => {
                let Some(kind) = ValueKind::of(*new) else {
                    continue;
                };
                let test = if *ty == FieldType::Number {
                    // number → integer: whole numbers within the 64-bit range.
                    let q = qi(c);
                    Test::Rows(Expr::cust(format!(
                        "{q} IS NOT NULL AND ({q} <> round({q}) OR {q} < -9223372036854775808.0 OR {q} >= 9223372036854775808.0)"
                    )))
                } else {
                    Test::Values {
                        column: c.to_owned(),
                        kind,
                    }
                };
                out.push(Check::new(
                    t,
                    test,
                    format!("have a {shown} value that is not {}", kind.noun()),
                    "change or clear those values first".into(),
                ));
            }
            FieldChange::Required(_) => {
                let fill = default_value(to);
                let mut check = Check::rows(
                    t,
                    col(c).is_null(),
                    format!("have no {shown} value"),
                    match &fill {
                        Some(v) => format!("the step sets them to the default {}", show(v)),
                        None => "give them a value (or declare a `default`) first".into(),
                    },
                );
                check.blocks = fill.is_none();
                out.push(check);
                if fill.is_some() && to.unique {
                    let mut check = Check::rows(
                        t,
                        col(c).is_null(),
                        format!(
                            "have no {shown} value and would share the default of a unique field"
                        ),
                        "give them distinct values first".into(),
                    );
                    check.at_least = 2;
                    out.push(check);
                }
            }
            FieldChange::Unique(_) => out.push(Check::rows(
                t,
                duplicates(t, &[c]),
                format!("share their {shown} value with another record"),
                "make them differ first".into(),
            )),
        }
    }
    out
}

fn map_sqlite(e: rusqlite::Error) -> StoreError {
    crate::sqlite::map_err(e)
}

fn map_pg(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn run_check_sqlite(conn: &rusqlite::Connection, check: &Check) -> Result<Found> {
    let mut found = Found::default();
    match &check.test {
        Test::Rows(_) => {
            let (count_sql, ids_sql, by_sql) = check.queries(Dialect::Sqlite);
            found.count = count(
                conn.query_row(&count_sql, [], |r| r.get(0))
                    .map_err(map_sqlite)?,
            );
            if found.count == 0 {
                return Ok(found);
            }
            let mut st = conn.prepare(&ids_sql).map_err(map_sqlite)?;
            found.examples = st
                .query_map([], |r| r.get(0))
                .map_err(map_sqlite)?
                .collect::<rusqlite::Result<_>>()
                .map_err(map_sqlite)?;
            if let Some(sql) = by_sql {
                let mut st = conn.prepare(&sql).map_err(map_sqlite)?;
                found.by_value = st
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(map_sqlite)?
                    .collect::<rusqlite::Result<_>>()
                    .map_err(map_sqlite)?;
            }
        }
        Test::Values { column, kind } => {
            let q = Query::select()
                .column(Alias::new("id"))
                .column(Alias::new(column))
                .from(Alias::new(&check.table))
                .and_where(col(column).is_not_null())
                .order_by(Alias::new("id"), Order::Asc)
                .to_owned();
            let mut st = conn
                .prepare(&q.to_string(SqliteQueryBuilder))
                .map_err(map_sqlite)?;
            let mut rows = st.query([]).map_err(map_sqlite)?;
            while let Some(row) = rows.next().map_err(map_sqlite)? {
                use rusqlite::types::ValueRef;
                let ok = match row.get_ref(1).map_err(map_sqlite)? {
                    ValueRef::Text(t) => std::str::from_utf8(t).is_ok_and(|s| kind.accepts(s)),
                    ValueRef::Integer(i) => kind.accepts(&i.to_string()),
                    _ => false,
                };
                if !ok {
                    found.count += 1;
                    if found.examples.len() < EXAMPLES as usize {
                        found.examples.push(row.get(0).map_err(map_sqlite)?);
                    }
                }
            }
        }
    }
    Ok(found)
}

async fn run_check_pg(conn: &mut sqlx::PgConnection, check: &Check) -> Result<Found> {
    let mut found = Found::default();
    match &check.test {
        Test::Rows(_) => {
            let (count_sql, ids_sql, by_sql) = check.queries(Dialect::Postgres);
            let n: i64 = sqlx::query_scalar(AssertSqlSafe(count_sql))
                .fetch_one(&mut *conn)
                .await
                .map_err(map_pg)?;
            found.count = count(n);
            if found.count == 0 {
                return Ok(found);
            }
            found.examples = sqlx::query_scalar(AssertSqlSafe(ids_sql))
                .fetch_all(&mut *conn)
                .await
                .map_err(map_pg)?;
            if let Some(sql) = by_sql {
                found.by_value = sqlx::query_as(AssertSqlSafe(sql))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(map_pg)?;
            }
        }
        Test::Values { column, kind } => {
            // Pages in id order, the last id bound as a parameter.
            let mut last = String::new();
            loop {
                let (sql, values) = Query::select()
                    .column(Alias::new("id"))
                    .expr(Expr::cust(format!("{}::text", qi(column))))
                    .from(Alias::new(&check.table))
                    .and_where(col(column).is_not_null())
                    .and_where(col("id").gt(last.as_str()))
                    .order_by(Alias::new("id"), Order::Asc)
                    .limit(PAGE)
                    .build(PostgresQueryBuilder);
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for v in values.0 {
                    query = match v {
                        sea_query::Value::String(s) => query.bind(s),
                        sea_query::Value::BigUnsigned(n) => {
                            query.bind(n.and_then(|n| i64::try_from(n).ok()))
                        }
                        other => {
                            return Err(StoreError::Internal(format!(
                                "unexpected bound value {other:?}"
                            )));
                        }
                    };
                }
                let rows = query.fetch_all(&mut *conn).await.map_err(map_pg)?;
                for row in &rows {
                    let value: String = row.try_get(1).map_err(map_pg)?;
                    if !kind.accepts(&value) {
                        found.count += 1;
                        if found.examples.len() < EXAMPLES as usize {
                            found.examples.push(row.try_get(0).map_err(map_pg)?);
                        }
                    }
                }
                match rows.last() {
                    Some(row) if rows.len() as u64 == PAGE => {
                        last = row.try_get(0).map_err(map_pg)?
                    }
                    _ => break,
                }
            }
        }
    }
    Ok(found)
}

/// The PostgreSQL constraints on one column: (name, kind: c, u or f).
async fn pg_constraints(
    conn: &mut sqlx::PgConnection,
    table: &str,
    column: &str,
) -> Result<Vec<(String, String)>> {
    sqlx::query_as(
        "SELECT con.conname::text, con.contype::text FROM pg_constraint con \
         JOIN pg_class rel ON rel.oid = con.conrelid \
         JOIN pg_namespace n ON n.oid = rel.relnamespace \
         JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = ANY (con.conkey) \
         WHERE n.nspname = current_schema() AND rel.relname = $1 AND a.attname = $2 \
         AND cardinality(con.conkey) = 1 AND con.contype IN ('c', 'u', 'f') \
         ORDER BY con.conname",
    )
    .bind(table)
    .bind(column)
    .fetch_all(conn)
    .await
    .map_err(map_pg)
}

const HISTORY_DDL_SQLITE: &str = "CREATE TABLE IF NOT EXISTS _plinth_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL, checksum TEXT NOT NULL, steps TEXT NOT NULL)";
const HISTORY_DDL_PG: &str = "CREATE TABLE IF NOT EXISTS _plinth_migrations (version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), checksum TEXT NOT NULL, steps TEXT NOT NULL)";

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
                // A rebuild renames its new table into place; references from
                // other tables must follow the name, not the old table.
                conn.pragma_update(None, "legacy_alter_table", "OFF")
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

    async fn run_check(&mut self, check: &Check) -> Result<Found> {
        if let Some((conn, _)) = &self.sqlite {
            return run_check_sqlite(conn, check);
        }
        if let Some(conn) = &mut self.pg {
            return run_check_pg(conn, check).await;
        }
        Ok(Found::default())
    }

    /// The steps from `applied` to `wanted` with SQL, safety, and what the
    /// data checks found.
    pub async fn plan(
        &mut self,
        applied: &Applied,
        steps: Vec<Step>,
        wanted: &Schema,
    ) -> Result<Vec<PlannedStep>> {
        let dialect = self.dialect();
        let mut system = Vec::new();
        if dialect == Dialect::Sqlite {
            for (table, cols) in self.catalog().await?.tables {
                let fields = applied.schema.collection(&table);
                let sys: Vec<String> = cols
                    .into_iter()
                    .filter(|c| fields.is_none_or(|f| f.field(c).is_none()))
                    .collect();
                system.push((table, sys));
            }
        }
        let mut writer = StepWriter {
            dialect,
            wanted,
            tables: applied.schema.clone(),
            system,
            pending: None,
        };
        let mut out = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let mut safety = step.safety();
            let constraints = match (step, &mut self.pg) {
                (
                    Step::AlterField {
                        collection, from, ..
                    },
                    Some(conn),
                ) => pg_constraints(conn, collection, &from.name).await?,
                _ => Vec::new(),
            };
            let StepSql {
                sql,
                locking,
                mut note,
            } = writer.step(step, steps.get(i + 1), &constraints)?;
            if sql.is_empty() && note.is_none() && matches!(step, Step::AlterField { .. }) {
                note = Some("no SQL: the column is stored the same way".into());
            }
            if dialect == Dialect::Postgres
                && safety == Safety::Safe
                && (locking || matches!(step, Step::AddIndex { .. }))
            {
                safety = Safety::Locking;
            }
            let checks = checks_for(step, &applied.schema, &steps);
            let mut results = Vec::new();
            for c in &checks {
                let found = self.run_check(c).await?;
                results.push((c, found));
            }
            let blockers = results
                .iter()
                .filter(|(c, f)| c.blocked_by(f))
                .map(|(c, f)| c.report(f))
                .collect();
            let findings = results
                .iter()
                .filter(|(c, f)| !c.blocked_by(f))
                .map(|(c, f)| c.report(f))
                .collect();
            out.push(PlannedStep {
                step: step.clone(),
                safety,
                sql,
                note,
                findings,
                blockers,
                checks,
            });
        }
        Ok(out)
    }

    /// Runs `plan` in one transaction if the database is still at
    /// `from_version` and the data still passes every check, and records
    /// `wanted` as the next version.
    pub async fn apply(
        &mut self,
        from_version: i64,
        plan: &[PlannedStep],
        wanted: &Schema,
    ) -> Result<ApplyOutcome> {
        let version = from_version + 1;
        let record = Record {
            version,
            canonical: wanted.canonical(),
            checksum: checksum(wanted),
            summary: plan
                .iter()
                .map(|p| p.step.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        };
        if let Some((conn, _)) = &mut self.sqlite {
            // Foreign keys are checked once, after every step (a rebuild drops
            // a table others refer to); the pragma cannot change inside a
            // transaction.
            conn.pragma_update(None, "foreign_keys", "OFF")
                .map_err(map_sqlite)?;
            let outcome = apply_sqlite(conn, from_version, plan, &record);
            conn.pragma_update(None, "foreign_keys", "ON")
                .map_err(map_sqlite)?;
            return outcome;
        }
        if let Some(conn) = &mut self.pg {
            return apply_pg(conn, from_version, plan, &record).await;
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

/// What an apply records.
struct Record {
    version: i64,
    canonical: String,
    checksum: String,
    summary: String,
}

fn apply_sqlite(
    conn: &mut rusqlite::Connection,
    from_version: i64,
    plan: &[PlannedStep],
    record: &Record,
) -> Result<ApplyOutcome> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(map_sqlite)?;
    let current: i64 = tx
        .query_row("SELECT max(version) FROM _plinth_schema", [], |r| r.get(0))
        .map_err(map_sqlite)?;
    if current != from_version {
        return Err(StoreError::VersionMismatch);
    }
    // The data as it is now, under the write lock, before any step.
    for p in plan {
        for c in &p.checks {
            let found = run_check_sqlite(&tx, c)?;
            if c.blocked_by(&found) {
                return Ok(ApplyOutcome::Blocked(format!(
                    "{}: {}",
                    p.step,
                    c.report(&found)
                )));
            }
        }
    }
    for p in plan {
        for sql in &p.sql {
            tx.execute_batch(sql)
                .map_err(|e| StoreError::Internal(format!("{} failed: {e}", p.step)))?;
        }
    }
    let broken: Vec<(String, String)> = {
        let mut st = tx
            .prepare("SELECT \"table\", parent FROM pragma_foreign_key_check")
            .map_err(map_sqlite)?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(map_sqlite)?
            .collect::<rusqlite::Result<_>>()
            .map_err(map_sqlite)?
    };
    if let Some((table, parent)) = broken.first() {
        return Ok(ApplyOutcome::Blocked(format!(
            "{} record(s) would refer to records that do not exist (first: `{table}` → `{parent}`)",
            broken.len()
        )));
    }
    let now = plinth_domain::value::now_timestamp();
    tx.execute(
        "INSERT INTO _plinth_schema (version, applied_at, schema) VALUES (?1, ?2, ?3)",
        rusqlite::params![record.version, now, record.canonical],
    )
    .map_err(map_sqlite)?;
    tx.execute(
        "INSERT INTO _plinth_migrations (version, applied_at, checksum, steps) VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![record.version, now, record.checksum, record.summary],
    )
    .map_err(map_sqlite)?;
    tx.commit().map_err(map_sqlite)?;
    Ok(ApplyOutcome::Applied(record.version))
}

async fn apply_pg(
    conn: &mut sqlx::PgConnection,
    from_version: i64,
    plan: &[PlannedStep],
    record: &Record,
) -> Result<ApplyOutcome> {
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
    // Servers may be writing: the checked tables are locked first, so the
    // data checked is the data the steps convert.
    let mut locked: Vec<&str> = Vec::new();
    for c in plan.iter().flat_map(|p| &p.checks) {
        if !locked.contains(&c.table.as_str()) {
            locked.push(&c.table);
        }
    }
    locked.sort_unstable();
    for t in &locked {
        sqlx::query(AssertSqlSafe(format!(
            "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
            qi(t)
        )))
        .execute(&mut *tx)
        .await
        .map_err(map_pg)?;
    }
    for p in plan {
        for c in &p.checks {
            let found = run_check_pg(&mut tx, c).await?;
            if c.blocked_by(&found) {
                return Ok(ApplyOutcome::Blocked(format!(
                    "{}: {}",
                    p.step,
                    c.report(&found)
                )));
            }
        }
    }
    for p in plan {
        for sql in &p.sql {
            sqlx::query(AssertSqlSafe(sql.clone()))
                .execute(&mut *tx)
                .await
                .map_err(|e| StoreError::Internal(format!("{} failed: {e}", p.step)))?;
        }
    }
    sqlx::query("INSERT INTO _plinth_schema (version, applied_at, schema) VALUES ($1, now(), $2)")
        .bind(record.version)
        .bind(&record.canonical)
        .execute(&mut *tx)
        .await
        .map_err(map_pg)?;
    sqlx::query("INSERT INTO _plinth_migrations (version, checksum, steps) VALUES ($1, $2, $3)")
        .bind(record.version)
        .bind(&record.checksum)
        .bind(&record.summary)
        .execute(&mut *tx)
        .await
        .map_err(map_pg)?;
    tx.commit().await.map_err(map_pg)?;
    Ok(ApplyOutcome::Applied(record.version))
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::path::Path;
    use std::sync::Arc;

    use super::*;

    fn block<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    /// A SQLite database made by the store for `src`, with `rows` inserted.
    fn database(dir: &Path, src: &str, rows: &str) -> Schema {
        let schema = plinth_domain::parse_schema(src).expect("valid schema");
        let config = crate::SqliteConfig {
            data_dir: dir.to_owned(),
            exclusive: false,
        };
        let (store, _) =
            crate::Store::open_sqlite(&config, Arc::new(schema.clone())).expect("open");
        drop(store);
        let conn = raw(dir);
        // Rows as they are given, even broken references.
        conn.pragma_update(None, "foreign_keys", "OFF")
            .expect("fk off");
        conn.execute_batch(rows).expect("rows");
        schema
    }

    fn raw(dir: &Path) -> rusqlite::Connection {
        rusqlite::Connection::open(dir.join("plinth.db")).expect("open")
    }

    fn plan_for(session: &mut Session, wanted: &Schema) -> (Applied, Vec<PlannedStep>) {
        let applied = block(session.applied())
            .expect("applied")
            .expect("a schema");
        let steps = plinth_domain::migrate::plan(&applied.schema, wanted).expect("plannable");
        let planned = block(session.plan(&applied, steps, wanted)).expect("plan");
        (applied, planned)
    }

    const POSTS: &str = "[collections.posts.fields]\nn = { type = \"text\" }\n[collections.comments.fields]\npost = { type = \"relation\", collection = \"posts\" }\n";

    fn row(table: &str, id: &str, col: &str, value: &str) -> String {
        format!(
            "INSERT INTO {table} (id, created_at, updated_at, version, {col}) VALUES ('{id}', '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z', 1, {value});"
        )
    }

    #[test]
    fn data_that_stops_fitting_after_the_plan_blocks_the_apply() {
        let dir = tempfile::tempdir().expect("tempdir");
        database(dir.path(), POSTS, &row("posts", "p1", "n", "'12'"));
        let wanted = plinth_domain::parse_schema(
            &POSTS.replace("n = { type = \"text\" }", "n = { type = \"integer\" }"),
        )
        .expect("valid");
        let mut session = block(Session::open(Target::Sqlite {
            data_dir: dir.path().to_owned(),
        }))
        .expect("session");
        let (applied, planned) = plan_for(&mut session, &wanted);
        assert!(
            planned.iter().all(|p| p.blockers.is_empty()),
            "{planned:#?}"
        );
        assert_eq!(
            planned[0].findings,
            ["0 records of `posts` have a `n` value that is not an integer"]
        );
        // Another writer, between plan and apply.
        raw(dir.path())
            .execute_batch(&row("posts", "p2", "n", "'twelve'"))
            .expect("insert");
        let outcome = block(session.apply(applied.version, &planned, &wanted)).expect("apply");
        let ApplyOutcome::Blocked(why) = outcome else {
            panic!("{outcome:?}")
        };
        assert!(
            why.contains("1 record of `posts` has a `n` value that is not an integer (e.g. p2)"),
            "{why}"
        );
        // Nothing changed: the column is still text, the version still 1.
        let conn = raw(dir.path());
        let ty: String = conn
            .query_row(
                "SELECT type FROM pragma_table_info('posts') WHERE name = 'n'",
                [],
                |r| r.get(0),
            )
            .expect("column");
        assert!(ty.eq_ignore_ascii_case("text"), "{ty}");
        let v: i64 = conn
            .query_row("SELECT max(version) FROM _plinth_schema", [], |r| r.get(0))
            .expect("version");
        assert_eq!(v, 1);
    }

    #[test]
    fn a_rebuilt_table_equals_a_fresh_one_and_keeps_references() {
        let dir = tempfile::tempdir().expect("tempdir");
        database(
            dir.path(),
            POSTS,
            &format!(
                "{}{}",
                row("posts", "p1", "n", "'12'"),
                row("comments", "c1", "post", "'p1'")
            ),
        );
        let wanted = plinth_domain::parse_schema(&POSTS.replace(
            "n = { type = \"text\" }",
            "n = { type = \"integer\", required = true, unique = true }\nm = { type = \"text\", unique = true }",
        ))
        .expect("valid");
        let mut session = block(Session::open(Target::Sqlite {
            data_dir: dir.path().to_owned(),
        }))
        .expect("session");
        let (applied, planned) = plan_for(&mut session, &wanted);
        // The added unique field and the altered one: one rebuild.
        assert_eq!(planned.len(), 2, "{planned:#?}");
        assert!(planned[0].sql.is_empty(), "{planned:#?}");
        assert!(planned[1].sql[0].starts_with("CREATE TABLE \"posts__new\""));
        let outcome = block(session.apply(applied.version, &planned, &wanted)).expect("apply");
        assert_eq!(outcome, ApplyOutcome::Applied(2));
        assert!(block(session.drift(&wanted)).expect("drift").is_empty());
        drop(session);

        let conn = raw(dir.path());
        let live: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'posts'",
                [],
                |r| r.get(0),
            )
            .expect("table");
        let posts = wanted.collection("posts").expect("posts");
        assert_eq!(live, collection_ddl(posts, Dialect::Sqlite)[0]);
        let n: i64 = conn
            .query_row("SELECT n FROM posts WHERE id = 'p1'", [], |r| r.get(0))
            .expect("converted");
        assert_eq!(n, 12);
        // comments still refers to the (new) posts table, and it is enforced.
        let parent: String = conn
            .query_row(
                "SELECT \"table\" FROM pragma_foreign_key_list('comments')",
                [],
                |r| r.get(0),
            )
            .expect("fk");
        assert_eq!(parent, "posts");
        conn.pragma_update(None, "foreign_keys", "ON")
            .expect("fk on");
        assert!(
            conn.execute("DELETE FROM posts WHERE id = 'p1'", [])
                .is_err()
        );
        assert!(
            conn.execute_batch(&row("comments", "c2", "post", "'nope'"))
                .is_err()
        );
    }

    #[test]
    fn broken_references_found_after_the_steps_block_the_apply() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A reference that foreign keys never saw (written with them off).
        database(dir.path(), POSTS, &row("comments", "c1", "post", "'gone'"));
        let wanted = plinth_domain::parse_schema(&POSTS.replace(
            "post = { type = \"relation\", collection = \"posts\" }",
            "post = { type = \"relation\", collection = \"posts\", unique = true }",
        ))
        .expect("valid");
        let mut session = block(Session::open(Target::Sqlite {
            data_dir: dir.path().to_owned(),
        }))
        .expect("session");
        let (applied, planned) = plan_for(&mut session, &wanted);
        let outcome = block(session.apply(applied.version, &planned, &wanted)).expect("apply");
        assert_eq!(
            outcome,
            ApplyOutcome::Blocked(
                "1 record(s) would refer to records that do not exist (first: `comments` → `posts`)"
                    .into()
            )
        );
    }

    #[test]
    fn postgres_alters_columns_in_place() {
        let wanted = plinth_domain::parse_schema(
            "[collections.teams.fields]\nname = { type = \"text\" }\n[collections.posts.fields]\ns = { type = \"enum\", values = [\"a\", \"it's\"], required = true, default = \"a\" }\nt = { type = \"relation\", collection = \"teams\" }\n",
        )
        .expect("valid");
        let applied = plinth_domain::parse_schema(
            "[collections.teams.fields]\nname = { type = \"text\" }\n[collections.posts.fields]\ns = { type = \"text\", unique = true }\nt = { type = \"text\" }\n",
        )
        .expect("valid");
        let mut w = StepWriter {
            dialect: Dialect::Postgres,
            wanted: &wanted,
            tables: applied.clone(),
            system: Vec::new(),
            pending: None,
        };
        let steps = plinth_domain::migrate::plan(&applied, &wanted).expect("plannable");
        let s = w
            .step(&steps[0], None, &[("posts_s_key".into(), "u".into())])
            .expect("sql");
        assert_eq!(
            s.sql,
            [
                "ALTER TABLE \"posts\" DROP CONSTRAINT \"posts_s_key\"",
                "UPDATE \"posts\" SET \"s\" = 'a' WHERE \"s\" IS NULL",
                "ALTER TABLE \"posts\" ALTER COLUMN \"s\" SET NOT NULL",
                // sea-query's escaped string form, as in CREATE TABLE.
                "ALTER TABLE \"posts\" ADD CHECK (\"s\" IN ('a', E'it\\'s'))",
            ]
        );
        assert!(s.locking);
        let t = w.step(&steps[1], None, &[]).expect("sql");
        assert_eq!(
            t.sql,
            [
                "ALTER TABLE \"posts\" ADD FOREIGN KEY (\"t\") REFERENCES \"teams\" (\"id\") ON DELETE RESTRICT",
                "CREATE INDEX \"posts_t_idx\" ON \"posts\" (\"t\" NULLS FIRST)",
            ]
        );
        // The way back drops what was added and converts nothing.
        let back = plinth_domain::migrate::plan(&wanted, &applied).expect("plannable");
        let mut w = StepWriter {
            dialect: Dialect::Postgres,
            wanted: &applied,
            tables: wanted.clone(),
            system: Vec::new(),
            pending: None,
        };
        let s = w
            .step(&back[0], None, &[("posts_s_check".into(), "c".into())])
            .expect("sql");
        assert_eq!(
            s.sql,
            [
                "ALTER TABLE \"posts\" DROP CONSTRAINT \"posts_s_check\"",
                "ALTER TABLE \"posts\" ALTER COLUMN \"s\" DROP NOT NULL",
                "ALTER TABLE \"posts\" ADD UNIQUE (\"s\")",
            ]
        );
        let t = w
            .step(&back[1], None, &[("posts_t_fkey".into(), "f".into())])
            .expect("sql");
        assert_eq!(
            t.sql,
            [
                "ALTER TABLE \"posts\" DROP CONSTRAINT \"posts_t_fkey\"",
                "DROP INDEX \"posts_t_idx\"",
            ]
        );
    }

    #[test]
    fn conversions_per_dialect() {
        use FieldType as T;
        assert_eq!(
            convert("d", T::Date, T::Datetime, Dialect::Sqlite),
            "\"d\" || 'T00:00:00.000000Z'"
        );
        assert_eq!(
            convert("d", T::Date, T::Datetime, Dialect::Postgres),
            "(\"d\"::timestamp AT TIME ZONE 'UTC')"
        );
        assert_eq!(convert("e", T::Email, T::Text, Dialect::Postgres), "\"e\"");
        assert_eq!(
            convert("n", T::Text, T::Integer, Dialect::Sqlite),
            "CAST(\"n\" AS INTEGER)"
        );
        assert!(ValueKind::Integer.accepts("-12"));
        assert!(!ValueKind::Integer.accepts("1.5"));
        assert!(!ValueKind::Number.accepts("NaN"));
        assert!(!ValueKind::Number.accepts("1e-400"));
        assert!(ValueKind::Number.accepts("-0.0e5"));
        assert!(ValueKind::Number.accepts(".5"));
        assert!(ValueKind::Datetime.accepts("2026-01-02T03:04:05.000000Z"));
        assert!(!ValueKind::Datetime.accepts("2026-01-02T03:04:05Z"));
        assert!(ValueKind::Date.accepts("2026-01-02"));
    }
}
