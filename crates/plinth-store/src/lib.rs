//! Plinth's store: the only crate that builds SQL.
//!
//! Invariants (see docs/ARCHITECTURE.md):
//! - SQL is built with `sea-query` and every value a client sent is a bound
//!   parameter; identifiers come only from the checked [`Schema`].
//! - Every write is one transaction; the relation checks, the write itself
//!   and (later) audit, idempotency and outbox rows commit or fail together.
//! - A store is bound to the schema it has applied: it refuses to open on a
//!   database whose recorded schema differs from the one given.
//!
//! Today the only dialect is embedded SQLite (rusqlite; one writer thread with
//! group commit, one read-only connection per thread, WAL). PostgreSQL
//! will be a second variant behind the same API.

mod accounts;
mod ddl;
mod identity;
pub mod migrate;
mod postgres;
mod query;
mod sqlite;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;

use plinth_domain::{Record, Schema, Value};

pub use ddl::{Dialect, schema_ddl};
pub use identity::{
    ApiKey, ApiKeyAuth, Credentials, Member, MemberChange, NewApiKey, NewSession, Refresh,
    SecurityEvent, Session, SessionPrincipal, StoredSigningKey, Tenant, User,
};
pub use postgres::{PostgresConfig, redact_url};
pub use query::{ListQuery, Page};

/// What the store must know about who is asking, for every record operation.
///
/// Invariant (docs/ARCHITECTURE.md): every statement on a tenant-scoped
/// collection carries the request's tenant. The store adds the condition
/// itself, from this value, to every statement it builds; an `Access`
/// without a tenant makes any operation on a tenant-scoped collection fail
/// with [`StoreError::TenantRequired`] instead of running unscoped. The
/// permission rule's filter (if any) is added the same way, so list pages,
/// totals, gets, updates and deletes all see only permitted records.
#[derive(Debug, Clone)]
pub struct Access {
    tenant: Option<String>,
    filter: Option<plinth_domain::filter::Filter>,
    operator: bool,
}

impl Access {
    /// A request's access: its tenant (if one was selected and checked) and
    /// the filter its permission rule resolved to (if the rule depends on records).
    pub fn request(
        tenant: Option<String>,
        filter: Option<plinth_domain::filter::Filter>,
    ) -> Access {
        Access {
            tenant,
            filter,
            operator: false,
        }
    }

    /// An operator's access from the command line (`plinth explain`): no
    /// tenant condition, no rule. Never built from an HTTP request.
    pub fn operator() -> Access {
        Access {
            tenant: None,
            filter: None,
            operator: true,
        }
    }

    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// The same access without the rule filter (what a writer may see of
    /// the record it just changed).
    pub(crate) fn without_filter(&self) -> Access {
        Access {
            filter: None,
            ..self.clone()
        }
    }

    /// A new record must satisfy the rule filter (create rules over `record.*`).
    pub(crate) fn check_new(&self, r: &Record) -> Result<()> {
        match &self.filter {
            Some(f) if !f.matches(r) => Err(StoreError::Forbidden),
            _ => Ok(()),
        }
    }
}

/// Errors a store operation can end in. Everything a client can cause has its
/// own variant; `Internal` is a bug or a broken database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("record not found")]
    NotFound,
    #[error("unique constraint violated on {}", fields.join(", "))]
    Unique { fields: Vec<String> },
    #[error("field `{field}` refers to a record that does not exist")]
    RelationNotFound { field: String },
    #[error("the record is still referred to by `{collection}.{field}`")]
    Referenced { collection: String, field: String },
    #[error("the record changed since it was read")]
    VersionMismatch,
    #[error("unknown collection `{0}`")]
    UnknownCollection(String),
    #[error("the permission rule does not allow this record")]
    Forbidden,
    #[error("no tenant with this id")]
    UnknownTenant,
    #[error("collection `{0}` is tenant-scoped and the request names no tenant")]
    TenantRequired(String),
    #[error("{0}")]
    Locked(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("internal store error: {0}")]
    Internal(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Where and how to open the embedded database.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    pub data_dir: PathBuf,
    /// Take an exclusive lock on the data directory for the store's life, so
    /// a second server on the same directory is refused (`serve` sets it).
    pub exclusive: bool,
}

/// The state of the database relative to the schema file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaState {
    /// The database had no schema; the file's schema was just applied.
    Created,
    /// The database's schema matches the file.
    Matches,
    /// The database has another schema; each line names one difference.
    Differs(Vec<String>),
}

/// Compares the schema text a database recorded with the file's schema.
fn compare_recorded(recorded: &str, canonical: &str, schema: &Schema) -> SchemaState {
    if recorded == canonical {
        return SchemaState::Matches;
    }
    match Schema::from_canonical(recorded) {
        Ok(old) => {
            let d = plinth_domain::diff_schemas(&old, schema);
            if d.is_empty() {
                SchemaState::Matches
            } else {
                SchemaState::Differs(d)
            }
        }
        Err(e) => SchemaState::Differs(vec![format!(
            "the schema recorded in the database cannot be read ({e})"
        )]),
    }
}

/// A handle to the database, cheap to clone, bound to one applied schema.
#[derive(Clone)]
pub struct Store {
    inner: Backend,
    /// Rate-limit state of the embedded database (one process per data
    /// directory, so memory is the shared state). PostgreSQL keeps it in a table.
    limits: Arc<std::sync::Mutex<std::collections::HashMap<String, f64>>>,
    /// Identity lookups of the embedded database (see `accounts::IdentityCache`).
    identity: Arc<accounts::IdentityCache>,
}

/// Seconds since the Unix epoch, as a float.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[derive(Clone)]
enum Backend {
    Sqlite(Arc<sqlite::Sqlite>),
    Postgres(Arc<postgres::Postgres>),
}

impl Store {
    /// Opens (creating if needed) the SQLite database under `data_dir`, and
    /// applies `schema` if the database has none. If the database has a
    /// different schema, returns [`SchemaState::Differs`] and no store: nothing
    /// is changed.
    pub fn open_sqlite(
        config: &SqliteConfig,
        schema: Arc<Schema>,
    ) -> Result<(Option<Store>, SchemaState)> {
        let (db, state) = sqlite::Sqlite::open(config, schema)?;
        Ok((
            db.map(|d| Store {
                inner: Backend::Sqlite(Arc::new(d)),
                limits: Arc::default(),
                identity: Arc::default(),
            }),
            state,
        ))
    }

    /// Connects to PostgreSQL and, like [`Store::open_sqlite`], applies the
    /// schema to an empty database or compares it with the recorded one.
    pub async fn open_postgres(
        config: &PostgresConfig,
        schema: Arc<Schema>,
    ) -> Result<(Option<Store>, SchemaState)> {
        let (db, state) = postgres::Postgres::open(config, schema).await?;
        Ok((
            db.map(|d| Store {
                inner: Backend::Postgres(Arc::new(d)),
                limits: Arc::default(),
                identity: Arc::default(),
            }),
            state,
        ))
    }

    pub fn dialect(&self) -> Dialect {
        match &self.inner {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    pub fn schema(&self) -> &Arc<Schema> {
        match &self.inner {
            Backend::Sqlite(db) => db.schema(),
            Backend::Postgres(db) => db.schema(),
        }
    }

    /// A random secret shared by every process on this database (created on first use).
    pub async fn secret(&self, name: &str) -> Result<Vec<u8>> {
        match &self.inner {
            Backend::Sqlite(db) => {
                let (w, name) = (db.clone(), name.to_owned());
                db.writer.write(move |tx| w.secret(tx, &name)).await
            }
            Backend::Postgres(db) => db.secret(name).await,
        }
    }

    /// Counts one request against `policy` for `key` (GCRA) and says whether
    /// it is allowed. With PostgreSQL the state is shared by every instance.
    pub async fn rate_limit(
        &self,
        key: &str,
        policy: &plinth_domain::ratelimit::Policy,
    ) -> Result<plinth_domain::ratelimit::Decision> {
        match &self.inner {
            Backend::Postgres(db) => db.rate_limit(key, policy).await,
            Backend::Sqlite(_) => {
                let now = unix_now();
                let mut map = self
                    .limits
                    .lock()
                    .map_err(|_| StoreError::Internal("rate-limit state poisoned".into()))?;
                if map.len() > 100_000 {
                    // Keys whose quota is full again carry no state.
                    map.retain(|_, tat| *tat > now);
                }
                let d = plinth_domain::ratelimit::decide(policy, map.get(key).copied(), now);
                if d.allowed {
                    map.insert(key.to_owned(), d.tat);
                }
                Ok(d)
            }
        }
    }

    /// Checks the database answers: a read of the database itself and, for
    /// SQLite, a round trip through the writer.
    pub async fn ping(&self) -> Result<()> {
        match &self.inner {
            Backend::Sqlite(db) => {
                db.ping()?;
                db.writer
                    .write(|conn| {
                        conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                            .map_err(sqlite::map_err)?;
                        Ok(())
                    })
                    .await
            }
            Backend::Postgres(db) => db.ping().await,
        }
    }

    /// Inserts a new record. `fields` holds a value for every user field of
    /// the collection (defaults already applied). Relations are checked in the
    /// same transaction.
    pub async fn insert(
        &self,
        collection: &str,
        access: &Access,
        fields: Vec<(String, Value)>,
    ) -> Result<Record> {
        match &self.inner {
            Backend::Sqlite(db) => {
                let (w, c, a) = (db.clone(), collection.to_owned(), access.clone());
                db.writer
                    .write(move |tx| w.insert(tx, &c, &a, fields))
                    .await
            }
            Backend::Postgres(db) => db.insert(collection, access, fields).await,
        }
    }

    /// Reads run on the calling thread for SQLite (see `Sqlite::read`);
    /// SQLite writes are queued to the writer thread (see `writer`).
    pub async fn get(&self, collection: &str, access: &Access, id: &str) -> Result<Record> {
        match &self.inner {
            Backend::Sqlite(db) => db.get(collection, access, id),
            Backend::Postgres(db) => db.get(collection, access, id).await,
        }
    }

    /// Read-modify-write of one record in one transaction: `f` sees the
    /// current record and returns the fields to change (none: no write). An
    /// `Err` from `f` aborts without writing and is handed back as `Ok(Err)`.
    pub async fn modify<E, F>(
        &self,
        collection: &str,
        access: &Access,
        id: &str,
        f: F,
    ) -> Result<std::result::Result<Record, E>>
    where
        E: Send + 'static,
        F: FnOnce(&Record) -> std::result::Result<Vec<(String, Value)>, E> + Send + 'static,
    {
        match &self.inner {
            Backend::Sqlite(db) => {
                let (w, c, a, id) = (
                    db.clone(),
                    collection.to_owned(),
                    access.clone(),
                    id.to_owned(),
                );
                db.writer
                    .write(move |tx| w.modify(tx, &c, &a, &id, f))
                    .await
            }
            Backend::Postgres(db) => db.modify(collection, access, id, f).await,
        }
    }

    /// Deletes a record; with `expected_version`, only if it is still at that version.
    pub async fn delete(
        &self,
        collection: &str,
        access: &Access,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<()> {
        match &self.inner {
            Backend::Sqlite(db) => {
                let (w, c, a, id) = (
                    db.clone(),
                    collection.to_owned(),
                    access.clone(),
                    id.to_owned(),
                );
                db.writer
                    .write(move |tx| w.delete(tx, &c, &a, &id, expected_version))
                    .await
            }
            Backend::Postgres(db) => db.delete(collection, access, id, expected_version).await,
        }
    }

    /// One page of records matching the query, in its order.
    pub async fn list(&self, collection: &str, access: &Access, query: ListQuery) -> Result<Page> {
        match &self.inner {
            Backend::Sqlite(db) => db.list(collection, access, &query),
            Backend::Postgres(db) => db.list(collection, access, &query).await,
        }
    }

    /// Records with the given ids (for expanding relations), as `access` may see them.
    pub async fn get_many(
        &self,
        collection: &str,
        access: &Access,
        ids: Vec<String>,
    ) -> Result<Vec<Record>> {
        match &self.inner {
            Backend::Sqlite(db) => db.get_many(collection, access, &ids),
            Backend::Postgres(db) => db.get_many(collection, access, &ids).await,
        }
    }

    /// The SQL of a list query and the database's plan for it.
    pub async fn explain(
        &self,
        collection: &str,
        access: &Access,
        query: ListQuery,
    ) -> Result<(String, Vec<String>)> {
        match &self.inner {
            Backend::Sqlite(db) => db.explain(collection, access, &query),
            Backend::Postgres(db) => db.explain(collection, access, &query).await,
        }
    }
}

#[cfg(test)]
mod send_tests {
    use super::*;

    fn is_send<T: Send>(_: T) {}

    #[allow(dead_code)]
    fn store_futures_are_send(s: &Store, q: ListQuery, a: &Access) {
        is_send(s.get("a", a, "b"));
        is_send(s.list("a", a, q));
        is_send(s.insert("a", a, Vec::new()));
        is_send(s.delete("a", a, "b", None));
        is_send(s.ping());
        is_send(s.secret("x"));
        is_send(s.get_many("a", a, Vec::new()));
        is_send(s.modify::<(), _>("a", a, "b", |_| Ok(Vec::new())));
        is_send(s.rotate_refresh("h", "n", 0, 0, None));
        is_send(s.session_principal("s", "u", None, 0));
        is_send(s.change_member("t", "u", None));
        is_send(s.credentials("e"));
    }
}
