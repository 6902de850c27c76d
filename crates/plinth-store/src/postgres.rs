//! The PostgreSQL dialect: sqlx's connection pool, SQL from sea-query.
//!
//! Several Plinth processes may share one database, so everything that must
//! be serialised is serialised by PostgreSQL: read-modify-writes lock the row
//! (`SELECT … FOR UPDATE`), unique fields are constraints, and the first
//! schema application holds an advisory lock.

use std::sync::Arc;
use std::time::Duration;

use sea_query::{Alias, Expr, ExprTrait, PostgresQueryBuilder, Query, SelectStatement, Values};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Arguments, AssertSqlSafe, PgPool, Row};

use plinth_domain::filter::field_type;
use plinth_domain::{Collection, FieldType, Record, Schema, Value};

use crate::ddl::{Dialect, schema_ddl};
use crate::query::{self, ListQuery, Page};
use crate::{Access, Result, SchemaState, StoreError};

const SCHEMA_TABLE: &str = "_plinth_schema";
const META_TABLE: &str = "_plinth_meta";
const LIMIT_TABLE: &str = "_plinth_ratelimit";
/// Advisory lock key held while a schema is applied (any 64-bit constant).
pub(crate) const SCHEMA_LOCK: i64 = 0x706c_696e_7468; // "plinth"

/// Connection settings for PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/database?…`
    pub url: String,
    pub max_connections: u32,
    /// Longest a statement may run before PostgreSQL cancels it.
    pub statement_timeout: Duration,
    /// Longest a request waits for a free connection.
    pub acquire_timeout: Duration,
}

pub(crate) struct Postgres {
    schema: Arc<Schema>,
    pool: PgPool,
}

fn col(name: &str) -> Alias {
    Alias::new(name)
}

/// The URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match url.parse::<PgConnectOptions>() {
        Ok(o) => format!(
            "postgres://{}@{}:{}/{}",
            o.get_username(),
            o.get_host(),
            o.get_port(),
            o.get_database().unwrap_or("")
        ),
        Err(_) => "an unparseable database URL".into(),
    }
}

fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // unique_violation: the constraint names the field(s).
            Some("23505") => StoreError::Unique {
                fields: db
                    .constraint()
                    .map(|c| vec![c.to_owned()])
                    .unwrap_or_default(),
            },
            // serialization_failure, deadlock, query_canceled (statement timeout),
            // too_many_connections, admin shutdown, read-only transaction, disk full.
            Some("40001" | "40P01" | "57014" | "53300" | "57P01" | "25006" | "53100") => {
                StoreError::Unavailable(db.message().to_owned())
            }
            _ => StoreError::Internal(db.message().to_owned()),
        },
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Internal(e.to_string()),
    }
}

/// Names the fields of a unique constraint or index from its name.
fn unique_fields(c: &Collection, constraint: &str) -> Vec<String> {
    // Column constraint: "<table>_<column>_key".
    if let Some(f) = constraint
        .strip_prefix(&format!("{}_", c.name))
        .and_then(|r| r.strip_suffix("_key"))
        && c.field(f).is_some()
    {
        return vec![f.to_owned()];
    }
    c.indexes
        .iter()
        .find(|ix| ix.unique && ix.name(&c.name) == constraint)
        .map(|ix| ix.fields.clone())
        .unwrap_or_else(|| vec![constraint.to_owned()])
}

fn args(values: &Values) -> Result<PgArguments> {
    use sea_query::Value as V;
    let mut a = PgArguments::default();
    for v in &values.0 {
        let r = match v {
            V::Bool(b) => a.add(*b),
            V::TinyInt(i) => a.add(i.map(i16::from)),
            V::SmallInt(i) => a.add(*i),
            V::Int(i) => a.add(*i),
            V::BigInt(i) => a.add(*i),
            V::TinyUnsigned(i) => a.add(i.map(i16::from)),
            V::SmallUnsigned(i) => a.add(i.map(i32::from)),
            V::Unsigned(i) => a.add(i.map(i64::from)),
            V::BigUnsigned(i) => a.add(i.and_then(|i| i64::try_from(i).ok())),
            V::Float(f) => a.add(*f),
            V::Double(f) => a.add(*f),
            V::String(s) => a.add(s.clone()),
            V::Char(c) => a.add(c.map(String::from)),
            V::Bytes(b) => a.add(b.clone()),
            other => {
                return Err(StoreError::Internal(format!(
                    "unsupported bound value {other:?}"
                )));
            }
        };
        r.map_err(|e| StoreError::Internal(format!("cannot bind a value: {e}")))?;
    }
    Ok(a)
}

/// Select expression of a column in Plinth's canonical text forms.
fn select_column(name: &str, ty: FieldType) -> Expr {
    match ty {
        FieldType::Datetime => Expr::cust(format!(
            "to_char(\"{name}\" AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        )),
        FieldType::Date => Expr::cust(format!("to_char(\"{name}\", 'YYYY-MM-DD')")),
        FieldType::Json => Expr::cust(format!("\"{name}\"::text")),
        _ => Expr::col(col(name)),
    }
}

fn select_record(c: &Collection) -> SelectStatement {
    let mut q = Query::select();
    q.from(col(&c.name));
    for sys in ["id", "created_at", "updated_at", "version"] {
        let ty = field_type(c, sys).unwrap_or(FieldType::Text);
        q.expr_as(select_column(sys, ty), col(sys));
    }
    for f in &c.fields {
        q.expr_as(select_column(&f.name, f.ty), col(&f.name));
    }
    q
}

fn read_record(c: &Collection, row: &PgRow) -> std::result::Result<Record, sqlx::Error> {
    let mut fields = Vec::with_capacity(c.fields.len());
    for (i, f) in c.fields.iter().enumerate() {
        let idx = i + 4;
        let v = match f.ty {
            FieldType::Integer => row.try_get::<Option<i64>, _>(idx)?.map(Value::Int),
            FieldType::Number => row.try_get::<Option<f64>, _>(idx)?.map(Value::Float),
            FieldType::Boolean => row.try_get::<Option<bool>, _>(idx)?.map(Value::Bool),
            FieldType::Json => row.try_get::<Option<String>, _>(idx)?.map(Value::Json),
            _ => row.try_get::<Option<String>, _>(idx)?.map(Value::Text),
        };
        fields.push((f.name.clone(), v.unwrap_or(Value::Null)));
    }
    Ok(Record {
        id: row.try_get(0)?,
        created_at: row.try_get(1)?,
        updated_at: row.try_get(2)?,
        version: row.try_get(3)?,
        fields,
    })
}

/// Up to `limit` records of `rows` (which holds at most limit + 1), and
/// whether more follow.
fn page_of(c: &Collection, rows: &[PgRow], limit: u32) -> Result<(Vec<Record>, bool)> {
    let mut records = rows
        .iter()
        .map(|r| read_record(c, r))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(map_err)?;
    let more = records.len() > limit as usize;
    records.truncate(limit as usize);
    Ok((records, more))
}

/// One row of `q` as a record, if any.
async fn fetch_one<'e, E>(
    executor: E,
    c: &Collection,
    q: &SelectStatement,
) -> Result<Option<Record>>
where
    E: sqlx::PgExecutor<'e>,
{
    let (sql, values) = q.build(PostgresQueryBuilder);
    let row = sqlx::query_with(AssertSqlSafe(sql.as_str()), args(&values)?)
        .fetch_optional(executor)
        .await
        .map_err(map_err)?;
    row.map(|r| read_record(c, &r)).transpose().map_err(map_err)
}

impl Postgres {
    pub(crate) async fn open(
        config: &PostgresConfig,
        schema: Arc<Schema>,
    ) -> Result<(Option<Postgres>, SchemaState)> {
        let options: PgConnectOptions = config
            .url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("the database URL is not valid: {e}")))?;
        let timeout_ms = config.statement_timeout.as_millis().to_string();
        let options = options
            .options([("statement_timeout", timeout_ms.as_str())])
            .application_name("plinth");
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot connect to {}: {e}",
                    redact_url(&config.url)
                ))
            })?;
        let db = Postgres { schema, pool };
        let state = db.apply_or_compare().await?;
        if let SchemaState::Differs(_) = state {
            return Ok((None, state));
        }
        Ok((Some(db), state))
    }

    pub(crate) fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn collection(&self, name: &str) -> Result<&Collection> {
        self.schema
            .collection(name)
            .ok_or_else(|| StoreError::UnknownCollection(name.to_owned()))
    }

    async fn apply_or_compare(&self) -> Result<SchemaState> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        // Two instances starting together: one applies, the other waits and
        // then finds the schema applied.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SCHEMA_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        for stmt in [
            format!(
                "CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL, schema TEXT NOT NULL)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {META_TABLE} (key TEXT PRIMARY KEY, value BYTEA NOT NULL)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {LIMIT_TABLE} (key TEXT PRIMARY KEY, tat DOUBLE PRECISION NOT NULL)"
            ),
        ]
        .into_iter()
        .chain(crate::identity::identity_ddl(Dialect::Postgres))
        {
            sqlx::query(AssertSqlSafe(stmt.as_str()))
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        let applied: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT schema FROM {SCHEMA_TABLE} ORDER BY version DESC LIMIT 1"
        )))
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        let canonical = self.schema.canonical();
        let state = match applied {
            Some(text) => crate::compare_recorded(&text, &canonical, &self.schema),
            None => {
                for stmt in schema_ddl(&self.schema, Dialect::Postgres) {
                    sqlx::query(AssertSqlSafe(stmt.as_str()))
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                }
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO {SCHEMA_TABLE} (version, applied_at, schema) VALUES (1, now(), $1)"
                )))
                .bind(&canonical)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                SchemaState::Created
            }
        };
        tx.commit().await.map_err(map_err)?;
        Ok(state)
    }

    pub(crate) async fn secret(&self, name: &str) -> Result<Vec<u8>> {
        let (sql, values) = query::insert_secret(META_TABLE, name)?.build(PostgresQueryBuilder);
        sqlx::query_with(AssertSqlSafe(sql.as_str()), args(&values)?)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT value FROM {META_TABLE} WHERE key = $1"
        )))
        .bind(name)
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)
    }

    /// GCRA with the state in PostgreSQL (row-locked per key), timed by
    /// PostgreSQL's clock so every instance agrees on "now".
    pub(crate) async fn rate_limit(
        &self,
        key: &str,
        policy: &plinth_domain::ratelimit::Policy,
    ) -> Result<plinth_domain::ratelimit::Decision> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {LIMIT_TABLE} (key, tat) VALUES ($1, 0) ON CONFLICT (key) DO NOTHING"
        )))
        .bind(key)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        let (tat, now): (f64, f64) = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT tat, extract(epoch from clock_timestamp())::float8 FROM {LIMIT_TABLE} WHERE key = $1 FOR UPDATE"
        )))
        .bind(key)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        let d = plinth_domain::ratelimit::decide(policy, Some(tat), now);
        if d.allowed {
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE {LIMIT_TABLE} SET tat = $2 WHERE key = $1"
            )))
            .bind(key)
            .bind(d.tat)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(d)
    }

    pub(crate) async fn ping(&self) -> Result<()> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT count(*) FROM {SCHEMA_TABLE}"
        )))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    /// Every non-null relation value must name an existing record.
    async fn check_relations(
        &self,
        tx: &mut sqlx::PgConnection,
        c: &Collection,
        fields: &[(String, Value)],
        tenant: Option<&str>,
    ) -> Result<()> {
        for (f, target) in c.relations() {
            // Owner fields hold the signed-in user, set by the server.
            if f.server_set() {
                continue;
            }
            let Some((_, Value::Text(id))) = fields.iter().find(|(n, _)| *n == f.name) else {
                continue;
            };
            let mut q = Query::select();
            q.expr(Expr::val(1i32))
                .from(col(crate::ddl::table_of(target)))
                .and_where(Expr::col(col("id")).eq(id.as_str()))
                .lock(sea_query::LockType::KeyShare);
            if let Some(cond) = query::target_scope(&self.schema, c, target, tenant) {
                q.cond_where(cond);
            }
            let (sql, values) = q.build(PostgresQueryBuilder);
            let found = sqlx::query_with(AssertSqlSafe(sql.as_str()), args(&values)?)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
            if found.is_none() {
                return Err(StoreError::RelationNotFound {
                    field: f.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// Names every violated unique constraint (PostgreSQL reports one).
    async fn unique(
        &self,
        c: &Collection,
        r: &Record,
        tenant: Option<&str>,
        e: StoreError,
    ) -> StoreError {
        let StoreError::Unique { fields } = e else {
            return e;
        };
        let mut all = Vec::new();
        for (group, probe) in query::unique_probes(c, r, tenant, Dialect::Postgres) {
            let (sql, values) = probe.build(PostgresQueryBuilder);
            let Ok(args) = args(&values) else { continue };
            let hit = sqlx::query_with(AssertSqlSafe(sql.as_str()), args)
                .fetch_optional(&self.pool)
                .await;
            if matches!(hit, Ok(Some(_))) {
                all.extend(group);
            }
        }
        if all.is_empty() {
            all = fields.iter().flat_map(|n| unique_fields(c, n)).collect();
        }
        StoreError::Unique { fields: all }
    }

    pub(crate) async fn insert(
        &self,
        coll: &str,
        access: &Access,
        input: Vec<(String, Value)>,
    ) -> Result<Record> {
        let c = self.collection(coll)?;
        let scope = query::scope(c, access, Dialect::Postgres)?;
        let tenant = scope.tenant.as_deref();
        let record = Record::new_in(c, &input);
        access.check_new(&record)?;
        let q = query::insert_record(c, &record, tenant, Dialect::Postgres)?;
        let (sql, values) = q.build(PostgresQueryBuilder);
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        if let Some(t) = tenant {
            let (sql, values) = query::tenant_probe(t)
                .lock(sea_query::LockType::KeyShare)
                .to_owned()
                .build(PostgresQueryBuilder);
            let found = sqlx::query_with(AssertSqlSafe(sql.as_str()), args(&values)?)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
            if found.is_none() {
                return Err(StoreError::UnknownTenant);
            }
        }
        self.check_relations(&mut tx, c, &record.fields, tenant)
            .await?;
        if let Err(e) = sqlx::query_with(AssertSqlSafe(sql.as_str()), args(&values)?)
            .execute(&mut *tx)
            .await
        {
            drop(tx);
            return Err(self.unique(c, &record, tenant, map_err(e)).await);
        }
        tx.commit().await.map_err(map_err)?;
        Ok(record)
    }

    pub(crate) async fn get(&self, coll: &str, access: &Access, id: &str) -> Result<Record> {
        let c = self.collection(coll)?;
        let scope = query::scope(c, access, Dialect::Postgres)?;
        let mut q = select_record(c);
        q.and_where(Expr::col(col("id")).eq(id))
            .cond_where(scope.cond);
        fetch_one(&self.pool, c, &q)
            .await?
            .ok_or(StoreError::NotFound)
    }

    pub(crate) async fn modify<E>(
        &self,
        coll: &str,
        access: &Access,
        id: &str,
        f: impl FnOnce(&Record) -> std::result::Result<Vec<(String, Value)>, E>,
    ) -> Result<std::result::Result<Record, E>> {
        let c = self.collection(coll)?;
        let scope = query::scope(c, access, Dialect::Postgres)?;
        let tenant = scope.tenant.as_deref();
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        // Lock the row: concurrent read-modify-writes from any instance queue here.
        let mut q = select_record(c);
        q.and_where(Expr::col(col("id")).eq(id))
            .cond_where(scope.cond.clone())
            .lock(sea_query::LockType::Update);
        let current = fetch_one(&mut *tx, c, &q)
            .await?
            .ok_or(StoreError::NotFound)?;
        let changes = match f(&current) {
            Ok(ch) => ch,
            Err(e) => return Ok(Err(e)),
        };
        if changes.is_empty() {
            return Ok(Ok(current));
        }
        let u = query::update_record(c, &scope, id, &changes, None, Dialect::Postgres)?;
        let (sql, values) = u.build(PostgresQueryBuilder);
        self.check_relations(&mut tx, c, &changes, tenant).await?;
        if let Err(e) = sqlx::query_with(AssertSqlSafe(sql.as_str()), args(&values)?)
            .execute(&mut *tx)
            .await
        {
            drop(tx);
            let merged = query::merged(&current, &changes);
            return Err(self.unique(c, &merged, tenant, map_err(e)).await);
        }
        // The new state may no longer match the rule; the writer sees it anyway.
        let unfiltered = query::scope(c, &access.without_filter(), Dialect::Postgres)?;
        let mut q = select_record(c);
        q.and_where(Expr::col(col("id")).eq(id))
            .cond_where(unfiltered.cond);
        let record = fetch_one(&mut *tx, c, &q)
            .await?
            .ok_or(StoreError::NotFound)?;
        tx.commit().await.map_err(map_err)?;
        Ok(Ok(record))
    }

    pub(crate) async fn delete(
        &self,
        coll: &str,
        access: &Access,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<()> {
        let c = self.collection(coll)?;
        let scope = query::scope(c, access, Dialect::Postgres)?;
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        // Not found (or not permitted) before anything else; the row lock
        // keeps it so until the delete.
        let mut q = select_record(c);
        q.and_where(Expr::col(col("id")).eq(id))
            .cond_where(scope.cond.clone())
            .lock(sea_query::LockType::Update);
        if fetch_one(&mut *tx, c, &q).await?.is_none() {
            return Err(StoreError::NotFound);
        }
        for (collection, field, probe) in query::reference_probes(&self.schema, &c.name, id) {
            let (sql, values) = probe.build(PostgresQueryBuilder);
            let found = sqlx::query_with(AssertSqlSafe(sql.as_str()), args(&values)?)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
            if found.is_some() {
                return Err(StoreError::Referenced {
                    collection: collection.to_owned(),
                    field: field.to_owned(),
                });
            }
        }
        let q = query::delete_record(c, &scope, id, expected_version);
        let (sql, values) = q.build(PostgresQueryBuilder);
        let n = sqlx::query_with(AssertSqlSafe(sql.as_str()), args(&values)?)
            .execute(&mut *tx)
            .await
            .map_err(|e| match map_err(e) {
                // A reference added concurrently: the foreign key refused.
                StoreError::Internal(m) if m.contains("foreign key") => StoreError::Referenced {
                    collection: "another collection".into(),
                    field: "a relation".into(),
                },
                other => other,
            })?
            .rows_affected();
        if n == 0 {
            let mut q = select_record(c);
            q.and_where(Expr::col(col("id")).eq(id))
                .cond_where(scope.cond);
            return match fetch_one(&mut *tx, c, &q).await? {
                Some(_) => Err(StoreError::VersionMismatch),
                None => Err(StoreError::NotFound),
            };
        }
        tx.commit().await.map_err(map_err)?;
        Ok(())
    }

    pub(crate) async fn list(
        &self,
        coll: &str,
        access: &Access,
        query: &ListQuery,
    ) -> Result<Page> {
        let c = self.collection(coll)?;
        let scope = query::scope(c, access, Dialect::Postgres)?;
        let mut q = select_record(c);
        query::apply(&mut q, &c.name, &scope, query, Dialect::Postgres);
        let (sql, values) = q.build(PostgresQueryBuilder);
        if !query.total {
            // One statement sees one snapshot by itself.
            let rows = sqlx::query_with(AssertSqlSafe(sql.as_str()), args(&values)?)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
            let (records, more) = page_of(c, &rows, query.limit)?;
            return Ok(Page {
                records,
                more,
                total: None,
            });
        }
        // Page and count see one snapshot.
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let rows = sqlx::query_with(AssertSqlSafe(sql.as_str()), args(&values)?)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        let (records, more) = page_of(c, &rows, query.limit)?;
        let total = {
            let mut q = Query::select();
            q.expr(Expr::cust("COUNT(*)"))
                .from(col(&c.name))
                .cond_where(scope.cond.clone());
            if let Some(f) = &query.filter {
                q.cond_where(query::filter_condition(f, Dialect::Postgres));
            }
            let (sql, values) = q.build(PostgresQueryBuilder);
            let n: i64 = sqlx::query_scalar_with(AssertSqlSafe(sql.as_str()), args(&values)?)
                .fetch_one(&mut *tx)
                .await
                .map_err(map_err)?;
            Some(u64::try_from(n).unwrap_or(0))
        };
        tx.commit().await.map_err(map_err)?;
        Ok(Page {
            records,
            more,
            total,
        })
    }

    pub(crate) async fn get_many(
        &self,
        coll: &str,
        access: &Access,
        ids: &[String],
    ) -> Result<Vec<Record>> {
        let c = self.collection(coll)?;
        let scope = query::scope(c, access, Dialect::Postgres)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = select_record(c);
        q.and_where(Expr::col(col("id")).is_in(ids.iter().map(String::as_str)))
            .cond_where(scope.cond);
        let (sql, values) = q.build(PostgresQueryBuilder);
        let rows = sqlx::query_with(AssertSqlSafe(sql.as_str()), args(&values)?)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(|r| read_record(c, r))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(map_err)
    }

    pub(crate) async fn explain(
        &self,
        coll: &str,
        access: &Access,
        query: &ListQuery,
    ) -> Result<(String, Vec<String>)> {
        let c = self.collection(coll)?;
        let scope = query::scope(c, access, Dialect::Postgres)?;
        let mut q = select_record(c);
        query::apply(&mut q, &c.name, &scope, query, Dialect::Postgres);
        let (sql, values) = q.build(PostgresQueryBuilder);
        let rows = sqlx::query_with(AssertSqlSafe(format!("EXPLAIN {sql}")), args(&values)?)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        let plan = rows
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(map_err)?;
        Ok((sql, plan))
    }
}

pub(crate) fn pg_err(e: sqlx::Error) -> StoreError {
    map_err(e)
}

/// Runs identity statements on a PostgreSQL connection (see `identity`).
pub(crate) struct PgExec<'c>(pub(crate) &'c mut sqlx::PgConnection);

impl crate::identity::Exec for PgExec<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn rows(&mut self, q: crate::identity::Stmt) -> Result<Vec<crate::identity::Row>> {
        use crate::identity::Cell;
        use sqlx::{Column, TypeInfo};
        let (sql, values) = q.build(Dialect::Postgres);
        let rows = sqlx::query_with(AssertSqlSafe(sql.as_str()), args(&values)?)
            .fetch_all(&mut *self.0)
            .await
            .map_err(map_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut row = Vec::with_capacity(r.columns().len());
            for (i, column) in r.columns().iter().enumerate() {
                let cell = match column.type_info().name() {
                    "INT8" => r.try_get::<Option<i64>, _>(i).map(|v| v.map(Cell::Int)),
                    "INT4" => r
                        .try_get::<Option<i32>, _>(i)
                        .map(|v| v.map(|v| Cell::Int(i64::from(v)))),
                    _ => r.try_get::<Option<String>, _>(i).map(|v| v.map(Cell::Text)),
                }
                .map_err(map_err)?;
                row.push(cell.unwrap_or(Cell::Null));
            }
            out.push(row);
        }
        Ok(out)
    }

    async fn exec(&mut self, q: crate::identity::Stmt) -> Result<u64> {
        let (sql, values) = q.build(Dialect::Postgres);
        let done = sqlx::query_with(AssertSqlSafe(sql.as_str()), args(&values)?)
            .execute(&mut *self.0)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        let r = redact_url("postgres://alice:s3cret@db.example:6543/app?sslmode=require");
        assert_eq!(r, "postgres://alice@db.example:6543/app");
        assert!(!redact_url("not a url").contains("not"));
    }
}
