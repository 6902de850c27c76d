//! The embedded SQLite dialect: rusqlite, one writer thread, per-thread readers.
//!
//! One writer connection owned by the writer thread (SQLite allows one writer
//! at a time; serialising writes in-process avoids busy retries, and batching
//! them shares commits), and one read-only connection per thread that reads,
//! which WAL lets run concurrently with the writer.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::{Arc, Weak};

use rusqlite::{Connection, OpenFlags, OptionalExtension, ffi};
use sea_query::{
    Alias, Expr, ExprTrait, Order, Query, SelectStatement, SqliteQueryBuilder, Values,
};

use plinth_domain::{Collection, FieldType, Record, Schema, Value};

use crate::ddl::{Dialect, schema_ddl};
use crate::query::{self, ListQuery, Page};
use crate::writer::Writer;
use crate::{Access, Result, SchemaState, SqliteConfig, StoreError};

const DB_FILE: &str = "plinth.db";
const SCHEMA_TABLE: &str = "_plinth_schema";
const META_TABLE: &str = "_plinth_meta";

pub(crate) struct Sqlite {
    schema: Arc<Schema>,
    pub(crate) writer: Writer,
    path: PathBuf,
    /// Identifies this database in the per-thread reader cache; dropped with
    /// the store, which lets threads close their readers of it.
    token: Arc<()>,
    /// Held (locked) for the store's life when the config asks for exclusivity.
    _lock: Option<std::fs::File>,
}

const LOCK_FILE: &str = "plinth.lock";

/// Locks the data directory against a second Plinth process.
pub(crate) fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(format!(
            "another Plinth process is using {} (it holds {LOCK_FILE}); stop it first or use another --data-dir",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Unavailable(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

thread_local! {
    /// Read-only connections of this thread, one per open database.
    static READERS: RefCell<Vec<(Weak<()>, Connection)>> = const { RefCell::new(Vec::new()) };
}

fn configure(conn: &Connection, read_only: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // WAL: readers never block the writer. NORMAL sync is durable against
    // process crashes; a power loss may lose the last commits but never
    // corrupts (docs/decisions/0001-scope.md).
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Query planner stability: a statement is planned once, not re-planned
    // whenever a bound value might change the plan (SQLite's STAT4 build
    // otherwise re-prepares such statements at every execution).
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    if read_only {
        conn.pragma_update(None, "query_only", "ON")?;
    }
    conn.set_prepared_statement_cache_capacity(128);
    Ok(())
}

pub(crate) fn map_err(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(err, msg) = &e {
        match err.extended_code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                // "UNIQUE constraint failed: posts.slug, posts.other"
                let fields = msg
                    .as_deref()
                    .and_then(|m| m.split_once(": "))
                    .map(|(_, cols)| {
                        cols.split(", ")
                            .map(|c| c.rsplit('.').next().unwrap_or(c).to_owned())
                            .filter(|c| c != crate::ddl::TENANT_COLUMN)
                            .collect()
                    })
                    .unwrap_or_default();
                return StoreError::Unique { fields };
            }
            _ if matches!(
                err.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::ReadOnly
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::PermissionDenied
                    | rusqlite::ErrorCode::FileLockingProtocolFailed
            ) =>
            {
                return StoreError::Unavailable(e.to_string());
            }
            _ => {}
        }
    }
    StoreError::Internal(e.to_string())
}

/// Converts sea-query's bound values into rusqlite's.
fn params(values: &Values) -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value as R;
    use sea_query::Value as V;
    values
        .0
        .iter()
        .map(|v| match v {
            V::Bool(Some(b)) => R::Integer(i64::from(*b)),
            V::TinyInt(Some(i)) => R::Integer(i64::from(*i)),
            V::SmallInt(Some(i)) => R::Integer(i64::from(*i)),
            V::Int(Some(i)) => R::Integer(i64::from(*i)),
            V::BigInt(Some(i)) => R::Integer(*i),
            V::TinyUnsigned(Some(i)) => R::Integer(i64::from(*i)),
            V::SmallUnsigned(Some(i)) => R::Integer(i64::from(*i)),
            V::Unsigned(Some(i)) => R::Integer(i64::from(*i)),
            V::BigUnsigned(Some(i)) => i64::try_from(*i).map_or(R::Real(*i as f64), R::Integer),
            V::Float(Some(f)) => R::Real(f64::from(*f)),
            V::Double(Some(f)) => R::Real(*f),
            V::String(Some(s)) => R::Text(s.clone()),
            V::Char(Some(c)) => R::Text(c.to_string()),
            V::Bytes(Some(b)) => R::Blob(b.clone()),
            _ => R::Null,
        })
        .collect()
}

fn col(name: &str) -> Alias {
    Alias::new(name)
}

fn select_record(c: &Collection) -> SelectStatement {
    let mut q = Query::select();
    q.from(col(&c.name))
        .columns(["id", "created_at", "updated_at", "version"].map(col));
    for f in &c.fields {
        q.column(col(&f.name));
    }
    q
}

fn read_record(c: &Collection, row: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    let mut fields = Vec::with_capacity(c.fields.len());
    for (i, f) in c.fields.iter().enumerate() {
        let idx = i + 4;
        let v = match f.ty {
            FieldType::Integer => row.get::<_, Option<i64>>(idx)?.map(Value::Int),
            FieldType::Number => row.get::<_, Option<f64>>(idx)?.map(Value::Float),
            FieldType::Boolean => row.get::<_, Option<i64>>(idx)?.map(|b| Value::Bool(b != 0)),
            FieldType::Json => row.get::<_, Option<String>>(idx)?.map(Value::Json),
            _ => row.get::<_, Option<String>>(idx)?.map(Value::Text),
        };
        fields.push((f.name.clone(), v.unwrap_or(Value::Null)));
    }
    Ok(Record {
        id: row.get(0)?,
        created_at: row.get(1)?,
        updated_at: row.get(2)?,
        version: row.get(3)?,
        fields,
    })
}

impl Sqlite {
    pub(crate) fn open(
        config: &SqliteConfig,
        schema: Arc<Schema>,
    ) -> Result<(Option<Sqlite>, SchemaState)> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot create data directory {}: {e}",
                config.data_dir.display()
            ))
        })?;
        let lock = if config.exclusive {
            Some(lock_data_dir(&config.data_dir)?)
        } else {
            None
        };
        let path = config.data_dir.join(DB_FILE);
        let mut writer = Connection::open(&path)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        configure(&writer, false).map_err(map_err)?;
        let state = apply_or_compare(&mut writer, &schema)?;
        if let SchemaState::Differs(_) = state {
            return Ok((None, state));
        }
        Ok((
            Some(Sqlite {
                schema,
                writer: Writer::start(writer)?,
                path,
                token: Arc::new(()),
                _lock: lock,
            }),
            state,
        ))
    }

    /// Runs `f` with this thread's read-only connection to the database
    /// (opened on first use). Reads run on the calling thread: a read from a
    /// WAL database is microseconds, far less than handing it to another
    /// thread and back (docs/decisions/0002-sqlite-driver.md).
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        READERS.with(|cell| {
            let mut readers = cell.borrow_mut();
            let mine = Arc::downgrade(&self.token);
            let pos = match readers.iter().position(|(t, _)| t.ptr_eq(&mine)) {
                Some(pos) => pos,
                None => {
                    // Close connections of databases that were dropped.
                    readers.retain(|(t, _)| t.strong_count() > 0);
                    let conn = Connection::open_with_flags(
                        &self.path,
                        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .map_err(map_err)?;
                    configure(&conn, true).map_err(map_err)?;
                    readers.push((mine, conn));
                    readers.len() - 1
                }
            };
            f(&readers[pos].1)
        })
    }

    pub(crate) fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    fn collection(&self, name: &str) -> Result<&Collection> {
        self.schema
            .collection(name)
            .ok_or_else(|| StoreError::UnknownCollection(name.to_owned()))
    }

    /// A random 32-byte secret named `name`, created on first use and kept
    /// in the database so every process on it shares it.
    pub(crate) fn secret(&self, conn: &Connection, name: &str) -> Result<Vec<u8>> {
        let (sql, values) = query::insert_secret(META_TABLE, name)?.build(SqliteQueryBuilder);
        conn.execute(&sql, rusqlite::params_from_iter(params(&values)))
            .map_err(map_err)?;
        let (sql, values) = Query::select()
            .column(col("value"))
            .from(col(META_TABLE))
            .and_where(Expr::col(col("key")).eq(name))
            .build(SqliteQueryBuilder);
        conn.query_row(&sql, rusqlite::params_from_iter(params(&values)), |r| {
            r.get(0)
        })
        .map_err(map_err)
    }

    pub(crate) fn ping(&self) -> Result<()> {
        self.read(|conn| {
            // Reads the database file itself, not just the connection.
            conn.query_row("SELECT count(*) FROM _plinth_schema", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(map_err)?;
            Ok(())
        })
    }

    pub(crate) fn insert(
        &self,
        tx: &Connection,
        coll: &str,
        access: &Access,
        input: Vec<(String, Value)>,
    ) -> Result<Record> {
        let c = self.collection(coll)?;
        let scope = query::scope(c, access, Dialect::Sqlite)?;
        let record = Record::new_in(c, &input);
        access.check_new(&record)?;
        let tenant = scope.tenant.as_deref();
        let q = query::insert_record(c, &record, tenant, Dialect::Sqlite)?;
        let (sql, values) = q.build(SqliteQueryBuilder);

        if let Some(t) = tenant {
            let (sql, values) = query::tenant_probe(t).build(SqliteQueryBuilder);
            let found = tx
                .prepare_cached(&sql)
                .and_then(|mut st| {
                    st.query_row(rusqlite::params_from_iter(params(&values)), |_| Ok(()))
                        .optional()
                })
                .map_err(map_err)?;
            if found.is_none() {
                return Err(StoreError::UnknownTenant);
            }
        }
        self.check_relations(tx, c, &record.fields, tenant)?;
        tx.prepare_cached(&sql)
            .and_then(|mut st| st.execute(rusqlite::params_from_iter(params(&values))))
            .map_err(|e| Self::name_uniques(tx, c, &record, tenant, map_err(e)))?;
        Ok(record)
    }

    /// Replaces a unique violation's field list with every violated constraint.
    fn name_uniques(
        tx: &Connection,
        c: &Collection,
        r: &Record,
        tenant: Option<&str>,
        e: StoreError,
    ) -> StoreError {
        let StoreError::Unique { fields } = e else {
            return e;
        };
        let mut all = Vec::new();
        for (group, probe) in query::unique_probes(c, r, tenant, Dialect::Sqlite) {
            let (sql, values) = probe.build(SqliteQueryBuilder);
            let hit = tx
                .query_row(
                    &sql,
                    rusqlite::params_from_iter(params(&values)),
                    |_| Ok(()),
                )
                .optional();
            if matches!(hit, Ok(Some(()))) {
                all.extend(group);
            }
        }
        StoreError::Unique {
            fields: if all.is_empty() { fields } else { all },
        }
    }

    /// Every non-null relation value must name an existing record.
    fn check_relations(
        &self,
        conn: &Connection,
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
            q.expr(Expr::val(1i64))
                .from(col(crate::ddl::table_of(target)))
                .and_where(Expr::col(col("id")).eq(id.as_str()));
            if let Some(cond) = query::target_scope(&self.schema, c, target, tenant) {
                q.cond_where(cond);
            }
            let (sql, values) = q.build(SqliteQueryBuilder);
            let found = conn
                .prepare_cached(&sql)
                .and_then(|mut st| {
                    st.query_row(rusqlite::params_from_iter(params(&values)), |_| Ok(()))
                        .optional()
                })
                .map_err(map_err)?;
            if found.is_none() {
                return Err(StoreError::RelationNotFound {
                    field: f.name.clone(),
                });
            }
        }
        Ok(())
    }

    fn fetch(conn: &Connection, c: &Collection, scope: &query::Scope, id: &str) -> Result<Record> {
        let (sql, values) = select_record(c)
            .and_where(Expr::col(col("id")).eq(id))
            .cond_where(scope.cond.clone())
            .build(SqliteQueryBuilder);
        conn.prepare_cached(&sql)
            .and_then(|mut st| {
                st.query_row(rusqlite::params_from_iter(params(&values)), |row| {
                    read_record(c, row)
                })
                .optional()
            })
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)
    }

    pub(crate) fn get(&self, coll: &str, access: &Access, id: &str) -> Result<Record> {
        let c = self.collection(coll)?;
        let scope = query::scope(c, access, Dialect::Sqlite)?;
        self.read(|conn| Self::fetch(conn, c, &scope, id))
    }

    /// Reads the record and computes its changes with `f` inside the write
    /// transaction, so concurrent read-modify-writes serialise instead of
    /// racing (no lost updates, no retries).
    pub(crate) fn modify<E>(
        &self,
        tx: &Connection,
        coll: &str,
        access: &Access,
        id: &str,
        f: impl FnOnce(&Record) -> std::result::Result<Vec<(String, Value)>, E>,
    ) -> Result<std::result::Result<Record, E>> {
        let c = self.collection(coll)?;
        let scope = query::scope(c, access, Dialect::Sqlite)?;
        let tenant = scope.tenant.as_deref();
        let current = Self::fetch(tx, c, &scope, id)?;
        let changes = match f(&current) {
            Ok(ch) => ch,
            Err(e) => return Ok(Err(e)),
        };
        if changes.is_empty() {
            return Ok(Ok(current));
        }
        let q = query::update_record(
            c,
            &scope,
            id,
            &changes,
            Some(current.version),
            Dialect::Sqlite,
        )?;
        let (sql, values) = q.build(SqliteQueryBuilder);
        self.check_relations(tx, c, &changes, tenant)?;
        let merged = query::merged(&current, &changes);
        let n = tx
            .prepare_cached(&sql)
            .and_then(|mut st| st.execute(rusqlite::params_from_iter(params(&values))))
            .map_err(|e| Self::name_uniques(tx, c, &merged, tenant, map_err(e)))?;
        if n == 0 {
            // Unreachable while this connection is the only writer.
            return Err(StoreError::VersionMismatch);
        }
        // The new state may no longer match the rule; the writer sees it anyway.
        let unfiltered = query::scope(c, &access.without_filter(), Dialect::Sqlite)?;
        let record = Self::fetch(tx, c, &unfiltered, id)?;
        Ok(Ok(record))
    }

    pub(crate) fn delete(
        &self,
        tx: &Connection,
        coll: &str,
        access: &Access,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<()> {
        let c = self.collection(coll)?;
        let scope = query::scope(c, access, Dialect::Sqlite)?;
        // Not found (or not permitted) before anything else.
        Self::fetch(tx, c, &scope, id)?;
        for (collection, field, probe) in query::reference_probes(&self.schema, &c.name, id) {
            let (sql, values) = probe.build(SqliteQueryBuilder);
            let found = tx
                .prepare_cached(&sql)
                .and_then(|mut st| {
                    st.query_row(rusqlite::params_from_iter(params(&values)), |_| Ok(()))
                        .optional()
                })
                .map_err(map_err)?;
            if found.is_some() {
                return Err(StoreError::Referenced {
                    collection: collection.to_owned(),
                    field: field.to_owned(),
                });
            }
        }
        let q = query::delete_record(c, &scope, id, expected_version);
        let (sql, values) = q.build(SqliteQueryBuilder);
        let n = tx
            .prepare_cached(&sql)
            .and_then(|mut st| st.execute(rusqlite::params_from_iter(params(&values))))
            .map_err(map_err)?;
        if n == 0 {
            return match Self::fetch(tx, c, &scope, id) {
                Ok(_) => Err(StoreError::VersionMismatch),
                Err(e) => Err(e),
            };
        }
        Ok(())
    }

    pub(crate) fn list(&self, coll: &str, access: &Access, query: &ListQuery) -> Result<Page> {
        let c = self.collection(coll)?;
        let scope = query::scope(c, access, Dialect::Sqlite)?;
        let mut q = select_record(c);
        query::apply(&mut q, &c.name, &scope, query, Dialect::Sqlite);
        let (sql, values) = q.build(SqliteQueryBuilder);
        self.read(|conn| {
            // Page and count see one snapshot.
            let tx = conn.unchecked_transaction().map_err(map_err)?;
            let conn = &*tx;
            let mut records = {
                let mut st = conn.prepare_cached(&sql).map_err(map_err)?;
                let rows = st
                    .query_map(rusqlite::params_from_iter(params(&values)), |row| {
                        read_record(c, row)
                    })
                    .map_err(map_err)?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(map_err)?
            };
            let more = records.len() > query.limit as usize;
            records.truncate(query.limit as usize);
            let total = if query.total {
                let mut q = Query::select();
                q.expr(Expr::cust("COUNT(*)"))
                    .from(col(&c.name))
                    .cond_where(scope.cond.clone());
                if let Some(f) = &query.filter {
                    q.cond_where(query::filter_condition(f, Dialect::Sqlite));
                }
                let (sql, values) = q.build(SqliteQueryBuilder);
                let n: i64 = conn
                    .prepare_cached(&sql)
                    .and_then(|mut st| {
                        st.query_row(rusqlite::params_from_iter(params(&values)), |r| r.get(0))
                    })
                    .map_err(map_err)?;
                Some(u64::try_from(n).unwrap_or(0))
            } else {
                None
            };
            drop(tx);
            Ok(Page {
                records,
                more,
                total,
            })
        })
    }

    /// Records of `coll` with the given ids (any order; missing ids skipped).
    pub(crate) fn get_many(
        &self,
        coll: &str,
        access: &Access,
        ids: &[String],
    ) -> Result<Vec<Record>> {
        let c = self.collection(coll)?;
        let scope = query::scope(c, access, Dialect::Sqlite)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let (sql, values) = select_record(c)
            .and_where(Expr::col(col("id")).is_in(ids.iter().map(String::as_str)))
            .cond_where(scope.cond)
            .build(SqliteQueryBuilder);
        self.read(|conn| {
            let mut st = conn.prepare(&sql).map_err(map_err)?;
            let rows = st
                .query_map(rusqlite::params_from_iter(params(&values)), |row| {
                    read_record(c, row)
                })
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })
    }

    /// The SQL and SQLite's query plan for a list query.
    pub(crate) fn explain(
        &self,
        coll: &str,
        access: &Access,
        query: &ListQuery,
    ) -> Result<(String, Vec<String>)> {
        let c = self.collection(coll)?;
        let scope = query::scope(c, access, Dialect::Sqlite)?;
        let mut q = select_record(c);
        query::apply(&mut q, &c.name, &scope, query, Dialect::Sqlite);
        let (sql, values) = q.build(SqliteQueryBuilder);
        let plan = self.read(|conn| {
            let mut st = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .map_err(map_err)?;
            let rows = st
                .query_map(rusqlite::params_from_iter(params(&values)), |row| {
                    row.get::<_, String>(3)
                })
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })?;
        Ok((sql, plan))
    }
}

/// Applies the schema to an empty database, or compares it with the recorded one.
fn apply_or_compare(conn: &mut Connection, schema: &Schema) -> Result<SchemaState> {
    let tx = conn.transaction().map_err(map_err)?;
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (
            version INTEGER PRIMARY KEY,
            applied_at TEXT NOT NULL,
            schema TEXT NOT NULL
        )"
    ))
    .map_err(map_err)?;
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {META_TABLE} (key TEXT PRIMARY KEY, value BLOB NOT NULL)"
    ))
    .map_err(map_err)?;
    for stmt in crate::identity::identity_ddl(Dialect::Sqlite) {
        tx.execute_batch(&stmt).map_err(map_err)?;
    }
    let (sql, values) = Query::select()
        .column(col("schema"))
        .from(col(SCHEMA_TABLE))
        .order_by(col("version"), Order::Desc)
        .limit(1)
        .build(SqliteQueryBuilder);
    let applied: Option<String> = tx
        .query_row(&sql, rusqlite::params_from_iter(params(&values)), |r| {
            r.get(0)
        })
        .optional()
        .map_err(map_err)?;
    let canonical = schema.canonical();
    let state = match applied {
        Some(text) => crate::compare_recorded(&text, &canonical, schema),
        None => {
            for stmt in schema_ddl(schema, Dialect::Sqlite) {
                tx.execute_batch(&stmt).map_err(map_err)?;
            }
            let mut q = Query::insert();
            q.into_table(col(SCHEMA_TABLE))
                .columns(["version", "applied_at", "schema"].map(col))
                .values([
                    Expr::val(1i64),
                    Expr::val(plinth_domain::value::now_timestamp()),
                    Expr::val(canonical),
                ])
                .map_err(|e| StoreError::Internal(e.to_string()))?;
            let (sql, values) = q.build(SqliteQueryBuilder);
            tx.execute(&sql, rusqlite::params_from_iter(params(&values)))
                .map_err(map_err)?;
            SchemaState::Created
        }
    };
    tx.commit().map_err(map_err)?;
    Ok(state)
}

/// Runs identity statements on a SQLite connection (see `identity`).
pub(crate) struct SqliteExec<'c>(pub(crate) &'c Connection);

impl crate::identity::Exec for SqliteExec<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn rows(&mut self, q: crate::identity::Stmt) -> Result<Vec<crate::identity::Row>> {
        use crate::identity::Cell;
        use rusqlite::types::ValueRef;
        let (sql, values) = q.build(Dialect::Sqlite);
        let mut st = self.0.prepare_cached(&sql).map_err(map_err)?;
        let n = st.column_count();
        let mut rows = st
            .query(rusqlite::params_from_iter(params(&values)))
            .map_err(map_err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(map_err)? {
            let mut row = Vec::with_capacity(n);
            for i in 0..n {
                row.push(match r.get_ref(i).map_err(map_err)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(v) => Cell::Int(v),
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        Cell::Text(String::from_utf8_lossy(t).into_owned())
                    }
                    ValueRef::Real(_) => {
                        return Err(StoreError::Internal(
                            "unexpected REAL in an identity table".into(),
                        ));
                    }
                });
            }
            out.push(row);
        }
        Ok(out)
    }

    async fn exec(&mut self, q: crate::identity::Stmt) -> Result<u64> {
        let (sql, values) = q.build(Dialect::Sqlite);
        let n = self
            .0
            .prepare_cached(&sql)
            .and_then(|mut st| st.execute(rusqlite::params_from_iter(params(&values))))
            .map_err(map_err)?;
        Ok(n as u64)
    }
}
