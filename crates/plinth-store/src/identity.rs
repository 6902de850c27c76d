//! Accounts, sessions, tenants, memberships, API keys and signing keys: the
//! identity tables, for both dialects.
//!
//! Each operation is written once, as an `async fn` over [`Exec`], a minimal
//! "run this sea-query statement" interface. The PostgreSQL executor awaits
//! sqlx; the SQLite executor runs synchronously on the connection it was given
//! (the writer thread's savepoint, or the calling thread's read connection),
//! and [`run_now`] drives such a future to completion without an executor.
//! So the logic (and its transaction boundaries) is the same on both.
//!
//! What is stored: argon2id PHC strings for passwords, SHA-256 hex digests of
//! refresh tokens and API key secrets (never the tokens), and Ed25519 signing
//! keys (PKCS#8, base64) — which are secrets: whoever reads this table can
//! mint access tokens, exactly as whoever reads `_plinth_meta` can forge
//! cursors. Times are Unix seconds.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use sea_query::{
    Alias, ColumnDef, DeleteStatement, Expr, ExprTrait, ForeignKey, ForeignKeyAction, Index,
    InsertStatement, LockType, Order, PostgresQueryBuilder, Query, SelectStatement,
    SqliteQueryBuilder, Table, UpdateStatement,
};

use crate::ddl::Dialect;
use crate::{Result, StoreError};

pub(crate) const USERS_TABLE: &str = "_plinth_users";
pub(crate) const TENANTS_TABLE: &str = "_plinth_tenants";
pub(crate) const MEMBERS: &str = "_plinth_members";
const SESSIONS: &str = "_plinth_sessions";
const REFRESH: &str = "_plinth_refresh_tokens";
const API_KEYS: &str = "_plinth_api_keys";
const SIGNING_KEYS: &str = "_plinth_signing_keys";
const EVENTS: &str = "_plinth_security_events";

fn a(name: &str) -> Alias {
    Alias::new(name)
}

fn c(table: &str, column: &str) -> Expr {
    Expr::col((a(table), a(column)))
}

// ------------------------------------------------------------------ tables

fn text(name: &str) -> ColumnDef {
    let mut d = ColumnDef::new(a(name));
    d.text().not_null();
    d
}

fn opt_text(name: &str) -> ColumnDef {
    let mut d = ColumnDef::new(a(name));
    d.text().null();
    d
}

fn int(name: &str) -> ColumnDef {
    let mut d = ColumnDef::new(a(name));
    d.big_integer().not_null();
    d
}

fn opt_int(name: &str) -> ColumnDef {
    let mut d = ColumnDef::new(a(name));
    d.big_integer().null();
    d
}

fn pk(name: &str) -> ColumnDef {
    let mut d = text(name);
    d.primary_key();
    d
}

fn fk(from: &str, column: &str, to: &str) -> sea_query::ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(a(from), a(column))
        .to(a(to), a("id"))
        .on_delete(ForeignKeyAction::Restrict)
        .to_owned()
}

/// Statements that create the identity tables if they are missing (run at
/// every start, before the collections' tables, which may refer to them).
pub(crate) fn identity_ddl(dialect: Dialect) -> Vec<String> {
    let tables = [
        Table::create()
            .table(a(USERS_TABLE))
            .if_not_exists()
            .col(pk("id"))
            .col(text("email").unique_key().to_owned())
            .col(text("password_hash"))
            .col(int("created_at"))
            .col(int("password_changed_at"))
            .to_owned(),
        Table::create()
            .table(a(TENANTS_TABLE))
            .if_not_exists()
            .col(pk("id"))
            .col(text("name"))
            .col(text("created_by"))
            .col(int("created_at"))
            .to_owned(),
        Table::create()
            .table(a(MEMBERS))
            .if_not_exists()
            .col(text("tenant_id"))
            .col(text("user_id"))
            .col(text("role"))
            .col(int("created_at"))
            .primary_key(Index::create().col(a("tenant_id")).col(a("user_id")))
            .foreign_key(&mut fk(MEMBERS, "tenant_id", TENANTS_TABLE))
            .foreign_key(&mut fk(MEMBERS, "user_id", USERS_TABLE))
            .to_owned(),
        Table::create()
            .table(a(SESSIONS))
            .if_not_exists()
            .col(pk("id"))
            .col(text("user_id"))
            .col(opt_text("user_agent"))
            .col(opt_text("ip"))
            .col(int("created_at"))
            .col(int("last_used_at"))
            .col(int("idle_expires_at"))
            .col(int("expires_at"))
            .col(opt_int("revoked_at"))
            .col(opt_text("revoked_reason"))
            .foreign_key(&mut fk(SESSIONS, "user_id", USERS_TABLE))
            .to_owned(),
        Table::create()
            .table(a(REFRESH))
            .if_not_exists()
            .col(
                ColumnDef::new(a("hash"))
                    .text()
                    .not_null()
                    .primary_key()
                    .to_owned(),
            )
            .col(text("session_id"))
            .col(int("issued_at"))
            .col(opt_int("spent_at"))
            .foreign_key(&mut fk(REFRESH, "session_id", SESSIONS))
            .to_owned(),
        Table::create()
            .table(a(API_KEYS))
            .if_not_exists()
            .col(pk("id"))
            .col(text("tenant_id"))
            .col(text("name"))
            .col(text("role"))
            .col(text("prefix").unique_key().to_owned())
            .col(text("secret_hash"))
            .col(text("created_by"))
            .col(int("created_at"))
            .col(opt_int("expires_at"))
            .col(opt_int("last_used_at"))
            .col(opt_int("revoked_at"))
            .foreign_key(&mut fk(API_KEYS, "tenant_id", TENANTS_TABLE))
            .to_owned(),
        Table::create()
            .table(a(SIGNING_KEYS))
            .if_not_exists()
            .col(
                ColumnDef::new(a("kid"))
                    .text()
                    .not_null()
                    .primary_key()
                    .to_owned(),
            )
            .col(text("private_key"))
            .col(text("public_key"))
            .col(int("created_at"))
            .to_owned(),
        Table::create()
            .table(a(EVENTS))
            .if_not_exists()
            .col(pk("id"))
            .col(int("at"))
            .col(text("kind"))
            .col(opt_text("user_id"))
            .col(opt_text("session_id"))
            .col(opt_text("ip"))
            .col(opt_text("detail"))
            .to_owned(),
    ];
    let indexes = [
        ("_plinth_members_user_idx", MEMBERS, "user_id"),
        ("_plinth_sessions_user_idx", SESSIONS, "user_id"),
        ("_plinth_refresh_session_idx", REFRESH, "session_id"),
        ("_plinth_api_keys_tenant_idx", API_KEYS, "tenant_id"),
        ("_plinth_events_user_idx", EVENTS, "user_id"),
    ]
    .map(|(name, table, column)| {
        Index::create()
            .if_not_exists()
            .name(name)
            .table(a(table))
            .col(a(column))
            .to_owned()
    });
    let mut out: Vec<String> = tables
        .iter()
        .map(|t| match dialect {
            Dialect::Sqlite => t.to_string(SqliteQueryBuilder),
            Dialect::Postgres => t.to_string(PostgresQueryBuilder),
        })
        .collect();
    out.extend(indexes.iter().map(|i| match dialect {
        Dialect::Sqlite => i.to_string(SqliteQueryBuilder),
        Dialect::Postgres => i.to_string(PostgresQueryBuilder),
    }));
    out
}

// ------------------------------------------------------------------ executor

/// One value of a result row (identity tables hold only text and integers).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Text(String),
}

impl Cell {
    fn text(&self) -> Result<String> {
        match self {
            Cell::Text(s) => Ok(s.clone()),
            other => Err(StoreError::Internal(format!(
                "expected text, got {other:?}"
            ))),
        }
    }
    fn opt_text(&self) -> Result<Option<String>> {
        match self {
            Cell::Null => Ok(None),
            _ => self.text().map(Some),
        }
    }
    fn int(&self) -> Result<i64> {
        match self {
            Cell::Int(i) => Ok(*i),
            other => Err(StoreError::Internal(format!(
                "expected an integer, got {other:?}"
            ))),
        }
    }
    fn opt_int(&self) -> Result<Option<i64>> {
        match self {
            Cell::Null => Ok(None),
            _ => self.int().map(Some),
        }
    }
}

pub(crate) type Row = Vec<Cell>;

fn cell(row: &Row, i: usize) -> Result<&Cell> {
    row.get(i)
        .ok_or_else(|| StoreError::Internal(format!("result row has no column {i}")))
}

pub(crate) enum Stmt {
    Select(SelectStatement),
    Insert(InsertStatement),
    Update(UpdateStatement),
    Delete(DeleteStatement),
}

impl Stmt {
    pub(crate) fn build(&self, dialect: Dialect) -> (String, sea_query::Values) {
        match (self, dialect) {
            (Stmt::Select(q), Dialect::Sqlite) => q.build(SqliteQueryBuilder),
            (Stmt::Select(q), Dialect::Postgres) => q.build(PostgresQueryBuilder),
            (Stmt::Insert(q), Dialect::Sqlite) => q.build(SqliteQueryBuilder),
            (Stmt::Insert(q), Dialect::Postgres) => q.build(PostgresQueryBuilder),
            (Stmt::Update(q), Dialect::Sqlite) => q.build(SqliteQueryBuilder),
            (Stmt::Update(q), Dialect::Postgres) => q.build(PostgresQueryBuilder),
            (Stmt::Delete(q), Dialect::Sqlite) => q.build(SqliteQueryBuilder),
            (Stmt::Delete(q), Dialect::Postgres) => q.build(PostgresQueryBuilder),
        }
    }
}

/// Runs statements inside the caller's transaction.
pub(crate) trait Exec {
    fn dialect(&self) -> Dialect;
    async fn rows(&mut self, q: Stmt) -> Result<Vec<Row>>;
    async fn exec(&mut self, q: Stmt) -> Result<u64>;
}

/// Drives a future that never waits (one over the SQLite executor) to its end.
pub(crate) fn run_now<T>(fut: impl Future<Output = Result<T>>) -> Result<T> {
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => Err(StoreError::Internal(
            "a SQLite identity operation tried to wait".into(),
        )),
    }
}

fn insert(table: &str, cols: &[&str], values: Vec<sea_query::Value>) -> Result<Stmt> {
    let mut q = Query::insert();
    q.into_table(a(table))
        .columns(cols.iter().map(|n| a(n)))
        .values(values.into_iter().map(Expr::val))
        .map_err(|e| StoreError::Internal(e.to_string()))?;
    Ok(Stmt::Insert(q))
}

fn v_text(s: &str) -> sea_query::Value {
    sea_query::Value::String(Some(s.to_owned()))
}

fn v_opt_text(s: Option<&str>) -> sea_query::Value {
    sea_query::Value::String(s.map(str::to_owned))
}

fn v_int(i: i64) -> sea_query::Value {
    sea_query::Value::BigInt(Some(i))
}

fn v_opt_int(i: Option<i64>) -> sea_query::Value {
    sea_query::Value::BigInt(i)
}

/// A new random id: UUIDv7 like records, so rows sort by creation.
fn new_id() -> String {
    plinth_domain::value::new_id()
}

// ------------------------------------------------------------------ types

/// An account as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub email: String,
    pub created_at: i64,
}

/// An account with its password hash, for sign-in.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: User,
    pub password_hash: String,
}

/// A signed-in device: one refresh-token family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub created_at: i64,
    pub last_used_at: i64,
    pub expires_at: i64,
    pub idle_expires_at: i64,
}

/// What a new session starts with.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub user_id: String,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// SHA-256 (hex) of the first refresh token.
    pub refresh_hash: String,
    pub now: i64,
    /// Seconds a refresh token stays usable without being used.
    pub idle_secs: i64,
    /// Seconds the session lives at most, however often it is refreshed.
    pub absolute_secs: i64,
}

/// The outcome of presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// The token was current: it is now spent and the new one is current.
    Rotated { session_id: String, user_id: String },
    /// The token had been used before: the whole session (token family) is
    /// now revoked and a security event recorded (RFC 9700 §4.14.2).
    Reused { session_id: String, user_id: String },
    /// Unknown token, or its session is revoked or expired.
    Invalid,
}

/// What an access token's session currently allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPrincipal {
    pub email: String,
    /// The user's role in the requested tenant, if they are a member.
    pub role: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: String,
    pub email: String,
    pub role: String,
    pub created_at: i64,
}

/// Why a membership change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    Done(Member),
    /// No account has that email (adding) or that id is no member (changing).
    NoSuchUser,
    AlreadyMember,
    /// The change would leave the tenant without an owner.
    LastOwner,
}

/// An API key as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub role: String,
    pub prefix: String,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// An API key with the hash of its secret, for authentication.
#[derive(Debug, Clone)]
pub struct ApiKeyAuth {
    pub key: ApiKey,
    pub secret_hash: String,
}

#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub tenant_id: String,
    pub name: String,
    pub role: String,
    pub prefix: String,
    pub secret_hash: String,
    pub created_by: String,
    pub now: i64,
    pub expires_at: Option<i64>,
}

/// A stored Ed25519 signing key.
#[derive(Debug, Clone)]
pub struct StoredSigningKey {
    pub kid: String,
    /// PKCS#8 DER, base64.
    pub private_key: String,
    /// The raw 32-byte public key, base64.
    pub public_key: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityEvent {
    pub id: String,
    pub at: i64,
    pub kind: String,
    pub session_id: Option<String>,
    pub ip: Option<String>,
    pub detail: Option<String>,
}

// ------------------------------------------------------------------ users

fn user_of(row: &Row) -> Result<User> {
    Ok(User {
        id: cell(row, 0)?.text()?,
        email: cell(row, 1)?.text()?,
        created_at: cell(row, 2)?.int()?,
    })
}

pub(crate) async fn create_user<E: Exec>(
    e: &mut E,
    email: &str,
    password_hash: &str,
    now: i64,
) -> Result<User> {
    let user = User {
        id: new_id(),
        email: email.to_owned(),
        created_at: now,
    };
    let q = insert(
        USERS_TABLE,
        &[
            "id",
            "email",
            "password_hash",
            "created_at",
            "password_changed_at",
        ],
        vec![
            v_text(&user.id),
            v_text(email),
            v_text(password_hash),
            v_int(now),
            v_int(now),
        ],
    )?;
    match e.exec(q).await {
        Err(StoreError::Unique { .. }) => Err(StoreError::Unique {
            fields: vec!["email".into()],
        }),
        Err(other) => Err(other),
        Ok(_) => Ok(user),
    }
}

fn select_user() -> SelectStatement {
    Query::select()
        .columns(["id", "email", "created_at", "password_hash"].map(a))
        .from(a(USERS_TABLE))
        .to_owned()
}

pub(crate) async fn credentials<E: Exec>(e: &mut E, email: &str) -> Result<Option<Credentials>> {
    credentials_where(e, "email", email).await
}

pub(crate) async fn credentials_by_id<E: Exec>(e: &mut E, id: &str) -> Result<Option<Credentials>> {
    credentials_where(e, "id", id).await
}

/// The account whose `column` (email or id, both unique) is `value`.
async fn credentials_where<E: Exec>(
    e: &mut E,
    column: &str,
    value: &str,
) -> Result<Option<Credentials>> {
    let rows = e
        .rows(Stmt::Select(
            select_user()
                .and_where(Expr::col(a(column)).eq(value))
                .to_owned(),
        ))
        .await?;
    rows.first()
        .map(|r| {
            Ok(Credentials {
                user: user_of(r)?,
                password_hash: cell(r, 3)?.text()?,
            })
        })
        .transpose()
}

/// Sets a new password and revokes every session of the user but `keep`.
pub(crate) async fn set_password<E: Exec>(
    e: &mut E,
    user_id: &str,
    password_hash: &str,
    keep: Option<&str>,
    now: i64,
) -> Result<u64> {
    e.exec(Stmt::Update(
        Query::update()
            .table(a(USERS_TABLE))
            .value(a("password_hash"), password_hash)
            .value(a("password_changed_at"), now)
            .and_where(Expr::col(a("id")).eq(user_id))
            .to_owned(),
    ))
    .await?;
    revoke_sessions(e, user_id, keep, now, "password_changed").await
}

// ------------------------------------------------------------------ sessions

const SESSION_COLS: [&str; 8] = [
    "id",
    "user_id",
    "user_agent",
    "ip",
    "created_at",
    "last_used_at",
    "expires_at",
    "idle_expires_at",
];

fn session_of(row: &Row) -> Result<Session> {
    Ok(Session {
        id: cell(row, 0)?.text()?,
        user_id: cell(row, 1)?.text()?,
        user_agent: cell(row, 2)?.opt_text()?,
        ip: cell(row, 3)?.opt_text()?,
        created_at: cell(row, 4)?.int()?,
        last_used_at: cell(row, 5)?.int()?,
        expires_at: cell(row, 6)?.int()?,
        idle_expires_at: cell(row, 7)?.int()?,
    })
}

pub(crate) async fn create_session<E: Exec>(e: &mut E, s: NewSession) -> Result<Session> {
    let expires_at = s.now.saturating_add(s.absolute_secs);
    let session = Session {
        id: new_id(),
        user_id: s.user_id,
        user_agent: s.user_agent,
        ip: s.ip,
        created_at: s.now,
        last_used_at: s.now,
        expires_at,
        idle_expires_at: Ord::min(s.now.saturating_add(s.idle_secs), expires_at),
    };
    e.exec(insert(
        SESSIONS,
        &SESSION_COLS,
        vec![
            v_text(&session.id),
            v_text(&session.user_id),
            v_opt_text(session.user_agent.as_deref()),
            v_opt_text(session.ip.as_deref()),
            v_int(session.created_at),
            v_int(session.last_used_at),
            v_int(session.expires_at),
            v_int(session.idle_expires_at),
        ],
    )?)
    .await?;
    e.exec(insert(
        REFRESH,
        &["hash", "session_id", "issued_at"],
        vec![v_text(&s.refresh_hash), v_text(&session.id), v_int(s.now)],
    )?)
    .await?;
    Ok(session)
}

/// Spends a refresh token and issues its successor, or detects reuse.
pub(crate) async fn rotate_refresh<E: Exec>(
    e: &mut E,
    hash: &str,
    new_hash: &str,
    now: i64,
    idle_secs: i64,
    ip: Option<&str>,
) -> Result<Refresh> {
    let mut q = Query::select();
    q.expr(c(REFRESH, "spent_at"))
        .expr(c(SESSIONS, "id"))
        .expr(c(SESSIONS, "user_id"))
        .expr(c(SESSIONS, "revoked_at"))
        .expr(c(SESSIONS, "idle_expires_at"))
        .expr(c(SESSIONS, "expires_at"))
        .from(a(REFRESH))
        .inner_join(
            a(SESSIONS),
            c(SESSIONS, "id").equals((a(REFRESH), a("session_id"))),
        )
        .and_where(c(REFRESH, "hash").eq(hash));
    if e.dialect() == Dialect::Postgres {
        // Two refreshes with one token serialise on the session row.
        q.lock_with_tables(LockType::Update, [a(SESSIONS)]);
    }
    let rows = e.rows(Stmt::Select(q)).await?;
    let Some(row) = rows.first() else {
        return Ok(Refresh::Invalid);
    };
    let spent = cell(row, 0)?.opt_int()?;
    let session_id = cell(row, 1)?.text()?;
    let user_id = cell(row, 2)?.text()?;
    let revoked = cell(row, 3)?.opt_int()?;
    let idle_expires = cell(row, 4)?.int()?;
    let expires = cell(row, 5)?.int()?;
    if revoked.is_some() {
        return Ok(Refresh::Invalid);
    }
    let claimed = if spent.is_some() {
        0
    } else {
        e.exec(Stmt::Update(
            Query::update()
                .table(a(REFRESH))
                .value(a("spent_at"), now)
                .and_where(Expr::col(a("hash")).eq(hash))
                .and_where(Expr::col(a("spent_at")).is_null())
                .to_owned(),
        ))
        .await?
    };
    if claimed == 0 {
        revoke_session(e, &user_id, &session_id, now, "refresh_token_reuse").await?;
        record_event(
            e,
            "refresh_token_reuse",
            Some(&user_id),
            Some(&session_id),
            ip,
            Some("a spent refresh token was presented; the session was revoked"),
            now,
        )
        .await?;
        return Ok(Refresh::Reused {
            session_id,
            user_id,
        });
    }
    if now >= idle_expires || now >= expires {
        return Ok(Refresh::Invalid);
    }
    e.exec(insert(
        REFRESH,
        &["hash", "session_id", "issued_at"],
        vec![v_text(new_hash), v_text(&session_id), v_int(now)],
    )?)
    .await?;
    let mut u = Query::update();
    u.table(a(SESSIONS))
        .value(a("last_used_at"), now)
        .value(
            a("idle_expires_at"),
            Ord::min(now.saturating_add(idle_secs), expires),
        )
        .and_where(Expr::col(a("id")).eq(session_id.as_str()));
    if let Some(ip) = ip {
        u.value(a("ip"), ip);
    }
    e.exec(Stmt::Update(u)).await?;
    Ok(Refresh::Rotated {
        session_id,
        user_id,
    })
}

/// The account a refresh token belongs to (for per-account rate limits).
pub(crate) async fn refresh_owner<E: Exec>(e: &mut E, hash: &str) -> Result<Option<String>> {
    let rows = e
        .rows(Stmt::Select(
            Query::select()
                .expr(c(SESSIONS, "user_id"))
                .from(a(REFRESH))
                .inner_join(
                    a(SESSIONS),
                    c(SESSIONS, "id").equals((a(REFRESH), a("session_id"))),
                )
                .and_where(c(REFRESH, "hash").eq(hash))
                .to_owned(),
        ))
        .await?;
    rows.first().map(|r| cell(r, 0)?.text()).transpose()
}

/// Revokes one session of a user; false if there is no such active session.
pub(crate) async fn revoke_session<E: Exec>(
    e: &mut E,
    user_id: &str,
    session_id: &str,
    now: i64,
    reason: &str,
) -> Result<bool> {
    let n = e
        .exec(Stmt::Update(
            Query::update()
                .table(a(SESSIONS))
                .value(a("revoked_at"), now)
                .value(a("revoked_reason"), reason)
                .and_where(Expr::col(a("id")).eq(session_id))
                .and_where(Expr::col(a("user_id")).eq(user_id))
                .and_where(Expr::col(a("revoked_at")).is_null())
                .to_owned(),
        ))
        .await?;
    Ok(n > 0)
}

/// Revokes every active session of a user except `keep`.
pub(crate) async fn revoke_sessions<E: Exec>(
    e: &mut E,
    user_id: &str,
    keep: Option<&str>,
    now: i64,
    reason: &str,
) -> Result<u64> {
    let mut q = Query::update();
    q.table(a(SESSIONS))
        .value(a("revoked_at"), now)
        .value(a("revoked_reason"), reason)
        .and_where(Expr::col(a("user_id")).eq(user_id))
        .and_where(Expr::col(a("revoked_at")).is_null());
    if let Some(keep) = keep {
        q.and_where(Expr::col(a("id")).ne(keep));
    }
    e.exec(Stmt::Update(q)).await
}

/// The user's sessions that can still be used, newest first.
pub(crate) async fn sessions<E: Exec>(e: &mut E, user_id: &str, now: i64) -> Result<Vec<Session>> {
    let rows = e
        .rows(Stmt::Select(
            Query::select()
                .columns(SESSION_COLS.map(a))
                .from(a(SESSIONS))
                .and_where(Expr::col(a("user_id")).eq(user_id))
                .and_where(Expr::col(a("revoked_at")).is_null())
                .and_where(Expr::col(a("expires_at")).gt(now))
                .and_where(Expr::col(a("idle_expires_at")).gt(now))
                .order_by(a("created_at"), Order::Desc)
                .order_by(a("id"), Order::Desc)
                .to_owned(),
        ))
        .await?;
    rows.iter().map(session_of).collect()
}

/// The hot path of every request with an access token: is its session
/// still live, and what role does its user hold in `tenant` right now?
pub(crate) async fn session_principal<E: Exec>(
    e: &mut E,
    session_id: &str,
    user_id: &str,
    tenant: Option<&str>,
    now: i64,
) -> Result<Option<(SessionPrincipal, i64)>> {
    // Only equality on keys in SQL: a range condition on a bound value
    // (`expires_at > ?`) makes SQLite re-plan the statement at every
    // execution (its plan may depend on the value), which costs more than
    // the whole rest of the lookup. Liveness is checked here instead.
    let mut q = Query::select();
    q.expr(c(USERS_TABLE, "email"))
        .expr(c(SESSIONS, "revoked_at"))
        .expr(c(SESSIONS, "expires_at"))
        .from(a(SESSIONS))
        .inner_join(
            a(USERS_TABLE),
            c(USERS_TABLE, "id").equals((a(SESSIONS), a("user_id"))),
        )
        .and_where(c(SESSIONS, "id").eq(session_id))
        .and_where(c(SESSIONS, "user_id").eq(user_id));
    if let Some(t) = tenant {
        q.expr(c(MEMBERS, "role")).left_join(
            a(MEMBERS),
            c(MEMBERS, "user_id")
                .equals((a(SESSIONS), a("user_id")))
                .and(c(MEMBERS, "tenant_id").eq(t)),
        );
    }
    let rows = e.rows(Stmt::Select(q)).await?;
    let Some(r) = rows.first() else {
        return Ok(None);
    };
    let expires_at = cell(r, 2)?.int()?;
    if cell(r, 1)?.opt_int()?.is_some() || expires_at <= now {
        return Ok(None);
    }
    Ok(Some((
        SessionPrincipal {
            email: cell(r, 0)?.text()?,
            role: match tenant {
                Some(_) => cell(r, 3)?.opt_text()?,
                None => None,
            },
        },
        expires_at,
    )))
}

pub(crate) async fn record_event<E: Exec>(
    e: &mut E,
    kind: &str,
    user_id: Option<&str>,
    session_id: Option<&str>,
    ip: Option<&str>,
    detail: Option<&str>,
    now: i64,
) -> Result<()> {
    e.exec(insert(
        EVENTS,
        &["id", "at", "kind", "user_id", "session_id", "ip", "detail"],
        vec![
            v_text(&new_id()),
            v_int(now),
            v_text(kind),
            v_opt_text(user_id),
            v_opt_text(session_id),
            v_opt_text(ip),
            v_opt_text(detail),
        ],
    )?)
    .await?;
    Ok(())
}

pub(crate) async fn events<E: Exec>(e: &mut E, user_id: &str) -> Result<Vec<SecurityEvent>> {
    let rows = e
        .rows(Stmt::Select(
            Query::select()
                .columns(["id", "at", "kind", "session_id", "ip", "detail"].map(a))
                .from(a(EVENTS))
                .and_where(Expr::col(a("user_id")).eq(user_id))
                .order_by(a("at"), Order::Desc)
                .order_by(a("id"), Order::Desc)
                .limit(100)
                .to_owned(),
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok(SecurityEvent {
                id: cell(r, 0)?.text()?,
                at: cell(r, 1)?.int()?,
                kind: cell(r, 2)?.text()?,
                session_id: cell(r, 3)?.opt_text()?,
                ip: cell(r, 4)?.opt_text()?,
                detail: cell(r, 5)?.opt_text()?,
            })
        })
        .collect()
}

// ------------------------------------------------------------------ tenants

pub(crate) async fn create_tenant<E: Exec>(
    e: &mut E,
    name: &str,
    owner: &str,
    now: i64,
) -> Result<Tenant> {
    let t = Tenant {
        id: new_id(),
        name: name.to_owned(),
        created_at: now,
    };
    e.exec(insert(
        TENANTS_TABLE,
        &["id", "name", "created_by", "created_at"],
        vec![v_text(&t.id), v_text(name), v_text(owner), v_int(now)],
    )?)
    .await?;
    e.exec(insert(
        MEMBERS,
        &["tenant_id", "user_id", "role", "created_at"],
        vec![v_text(&t.id), v_text(owner), v_text("owner"), v_int(now)],
    )?)
    .await?;
    Ok(t)
}

/// The tenants a user belongs to, with their role in each.
pub(crate) async fn tenants_of<E: Exec>(e: &mut E, user_id: &str) -> Result<Vec<(Tenant, String)>> {
    let rows = e
        .rows(Stmt::Select(
            Query::select()
                .expr(c(TENANTS_TABLE, "id"))
                .expr(c(TENANTS_TABLE, "name"))
                .expr(c(TENANTS_TABLE, "created_at"))
                .expr(c(MEMBERS, "role"))
                .from(a(MEMBERS))
                .inner_join(
                    a(TENANTS_TABLE),
                    c(TENANTS_TABLE, "id").equals((a(MEMBERS), a("tenant_id"))),
                )
                .and_where(c(MEMBERS, "user_id").eq(user_id))
                .order_by((a(TENANTS_TABLE), a("created_at")), Order::Asc)
                .order_by((a(TENANTS_TABLE), a("id")), Order::Asc)
                .to_owned(),
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                Tenant {
                    id: cell(r, 0)?.text()?,
                    name: cell(r, 1)?.text()?,
                    created_at: cell(r, 2)?.int()?,
                },
                cell(r, 3)?.text()?,
            ))
        })
        .collect()
}

fn select_members() -> SelectStatement {
    Query::select()
        .expr(c(MEMBERS, "user_id"))
        .expr(c(USERS_TABLE, "email"))
        .expr(c(MEMBERS, "role"))
        .expr(c(MEMBERS, "created_at"))
        .from(a(MEMBERS))
        .inner_join(
            a(USERS_TABLE),
            c(USERS_TABLE, "id").equals((a(MEMBERS), a("user_id"))),
        )
        .to_owned()
}

fn member_of(r: &Row) -> Result<Member> {
    Ok(Member {
        user_id: cell(r, 0)?.text()?,
        email: cell(r, 1)?.text()?,
        role: cell(r, 2)?.text()?,
        created_at: cell(r, 3)?.int()?,
    })
}

pub(crate) async fn members<E: Exec>(e: &mut E, tenant: &str) -> Result<Vec<Member>> {
    let rows = e
        .rows(Stmt::Select(
            select_members()
                .and_where(c(MEMBERS, "tenant_id").eq(tenant))
                .order_by((a(MEMBERS), a("created_at")), Order::Asc)
                .order_by((a(MEMBERS), a("user_id")), Order::Asc)
                .to_owned(),
        ))
        .await?;
    rows.iter().map(member_of).collect()
}

async fn member<E: Exec>(e: &mut E, tenant: &str, user_id: &str) -> Result<Option<Member>> {
    let rows = e
        .rows(Stmt::Select(
            select_members()
                .and_where(c(MEMBERS, "tenant_id").eq(tenant))
                .and_where(c(MEMBERS, "user_id").eq(user_id))
                .to_owned(),
        ))
        .await?;
    rows.first().map(member_of).transpose()
}

/// Serialises membership changes of one tenant (PostgreSQL; the SQLite
/// writer is serial already) so the last-owner check cannot race.
async fn lock_tenant<E: Exec>(e: &mut E, tenant: &str) -> Result<bool> {
    let mut q = Query::select();
    q.column(a("id"))
        .from(a(TENANTS_TABLE))
        .and_where(Expr::col(a("id")).eq(tenant));
    if e.dialect() == Dialect::Postgres {
        q.lock(LockType::Update);
    }
    Ok(!e.rows(Stmt::Select(q)).await?.is_empty())
}

async fn owners<E: Exec>(e: &mut E, tenant: &str) -> Result<i64> {
    let rows = e
        .rows(Stmt::Select(
            Query::select()
                .expr(Expr::col(a("user_id")).count())
                .from(a(MEMBERS))
                .and_where(Expr::col(a("tenant_id")).eq(tenant))
                .and_where(Expr::col(a("role")).eq("owner"))
                .to_owned(),
        ))
        .await?;
    rows.first().map_or(Ok(0), |r| cell(r, 0)?.int())
}

pub(crate) async fn add_member<E: Exec>(
    e: &mut E,
    tenant: &str,
    email: &str,
    role: &str,
    now: i64,
) -> Result<MemberChange> {
    if !lock_tenant(e, tenant).await? {
        return Err(StoreError::NotFound);
    }
    let Some(user) = credentials(e, email).await? else {
        return Ok(MemberChange::NoSuchUser);
    };
    if member(e, tenant, &user.user.id).await?.is_some() {
        return Ok(MemberChange::AlreadyMember);
    }
    e.exec(insert(
        MEMBERS,
        &["tenant_id", "user_id", "role", "created_at"],
        vec![
            v_text(tenant),
            v_text(&user.user.id),
            v_text(role),
            v_int(now),
        ],
    )?)
    .await?;
    Ok(MemberChange::Done(Member {
        user_id: user.user.id,
        email: user.user.email,
        role: role.to_owned(),
        created_at: now,
    }))
}

/// Changes a member's role (`Some`) or removes them (`None`), keeping at
/// least one owner.
pub(crate) async fn change_member<E: Exec>(
    e: &mut E,
    tenant: &str,
    user_id: &str,
    role: Option<&str>,
) -> Result<MemberChange> {
    if !lock_tenant(e, tenant).await? {
        return Err(StoreError::NotFound);
    }
    let Some(current) = member(e, tenant, user_id).await? else {
        return Ok(MemberChange::NoSuchUser);
    };
    if current.role == "owner" && role != Some("owner") && owners(e, tenant).await? <= 1 {
        return Ok(MemberChange::LastOwner);
    }
    let key = |q: &mut UpdateStatement| {
        q.and_where(Expr::col(a("tenant_id")).eq(tenant))
            .and_where(Expr::col(a("user_id")).eq(user_id));
    };
    match role {
        Some(r) => {
            let mut q = Query::update();
            q.table(a(MEMBERS)).value(a("role"), r);
            key(&mut q);
            e.exec(Stmt::Update(q)).await?;
            Ok(MemberChange::Done(Member {
                role: r.to_owned(),
                ..current
            }))
        }
        None => {
            e.exec(Stmt::Delete(
                Query::delete()
                    .from_table(a(MEMBERS))
                    .and_where(Expr::col(a("tenant_id")).eq(tenant))
                    .and_where(Expr::col(a("user_id")).eq(user_id))
                    .to_owned(),
            ))
            .await?;
            Ok(MemberChange::Done(current))
        }
    }
}

// ------------------------------------------------------------------ API keys

const KEY_COLS: [&str; 11] = [
    "id",
    "tenant_id",
    "name",
    "role",
    "prefix",
    "created_by",
    "created_at",
    "expires_at",
    "last_used_at",
    "revoked_at",
    "secret_hash",
];

fn key_of(r: &Row) -> Result<ApiKey> {
    Ok(ApiKey {
        id: cell(r, 0)?.text()?,
        tenant_id: cell(r, 1)?.text()?,
        name: cell(r, 2)?.text()?,
        role: cell(r, 3)?.text()?,
        prefix: cell(r, 4)?.text()?,
        created_by: cell(r, 5)?.text()?,
        created_at: cell(r, 6)?.int()?,
        expires_at: cell(r, 7)?.opt_int()?,
        last_used_at: cell(r, 8)?.opt_int()?,
        revoked_at: cell(r, 9)?.opt_int()?,
    })
}

pub(crate) async fn create_api_key<E: Exec>(e: &mut E, k: NewApiKey) -> Result<ApiKey> {
    let key = ApiKey {
        id: new_id(),
        tenant_id: k.tenant_id,
        name: k.name,
        role: k.role,
        prefix: k.prefix,
        created_by: k.created_by,
        created_at: k.now,
        expires_at: k.expires_at,
        last_used_at: None,
        revoked_at: None,
    };
    e.exec(insert(
        API_KEYS,
        &KEY_COLS,
        vec![
            v_text(&key.id),
            v_text(&key.tenant_id),
            v_text(&key.name),
            v_text(&key.role),
            v_text(&key.prefix),
            v_text(&key.created_by),
            v_int(key.created_at),
            v_opt_int(key.expires_at),
            v_opt_int(None),
            v_opt_int(None),
            v_text(&k.secret_hash),
        ],
    )?)
    .await?;
    Ok(key)
}

pub(crate) async fn api_keys<E: Exec>(e: &mut E, tenant: &str) -> Result<Vec<ApiKey>> {
    let rows = e
        .rows(Stmt::Select(
            Query::select()
                .columns(KEY_COLS.map(a))
                .from(a(API_KEYS))
                .and_where(Expr::col(a("tenant_id")).eq(tenant))
                .order_by(a("created_at"), Order::Desc)
                .order_by(a("id"), Order::Desc)
                .to_owned(),
        ))
        .await?;
    rows.iter().map(key_of).collect()
}

pub(crate) async fn api_key_by_prefix<E: Exec>(
    e: &mut E,
    prefix: &str,
) -> Result<Option<ApiKeyAuth>> {
    let rows = e
        .rows(Stmt::Select(
            Query::select()
                .columns(KEY_COLS.map(a))
                .from(a(API_KEYS))
                .and_where(Expr::col(a("prefix")).eq(prefix))
                .to_owned(),
        ))
        .await?;
    rows.first()
        .map(|r| {
            Ok(ApiKeyAuth {
                key: key_of(r)?,
                secret_hash: cell(r, 10)?.text()?,
            })
        })
        .transpose()
}

pub(crate) async fn revoke_api_key<E: Exec>(
    e: &mut E,
    tenant: &str,
    id: &str,
    now: i64,
) -> Result<bool> {
    let n = e
        .exec(Stmt::Update(
            Query::update()
                .table(a(API_KEYS))
                .value(a("revoked_at"), now)
                .and_where(Expr::col(a("tenant_id")).eq(tenant))
                .and_where(Expr::col(a("id")).eq(id))
                .and_where(Expr::col(a("revoked_at")).is_null())
                .to_owned(),
        ))
        .await?;
    Ok(n > 0)
}

pub(crate) async fn touch_api_key<E: Exec>(e: &mut E, id: &str, now: i64) -> Result<()> {
    e.exec(Stmt::Update(
        Query::update()
            .table(a(API_KEYS))
            .value(a("last_used_at"), now)
            .and_where(Expr::col(a("id")).eq(id))
            .to_owned(),
    ))
    .await?;
    Ok(())
}

// ------------------------------------------------------------------ signing keys

pub(crate) async fn signing_keys<E: Exec>(e: &mut E) -> Result<Vec<StoredSigningKey>> {
    let rows = e
        .rows(Stmt::Select(
            Query::select()
                .columns(["kid", "private_key", "public_key", "created_at"].map(a))
                .from(a(SIGNING_KEYS))
                .order_by(a("created_at"), Order::Asc)
                .order_by(a("kid"), Order::Asc)
                .to_owned(),
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok(StoredSigningKey {
                kid: cell(r, 0)?.text()?,
                private_key: cell(r, 1)?.text()?,
                public_key: cell(r, 2)?.text()?,
                created_at: cell(r, 3)?.int()?,
            })
        })
        .collect()
}

pub(crate) async fn add_signing_key<E: Exec>(e: &mut E, k: &StoredSigningKey) -> Result<()> {
    e.exec(insert(
        SIGNING_KEYS,
        &["kid", "private_key", "public_key", "created_at"],
        vec![
            v_text(&k.kid),
            v_text(&k.private_key),
            v_text(&k.public_key),
            v_int(k.created_at),
        ],
    )?)
    .await?;
    Ok(())
}

/// Deletes the keys whose successor was created before `before` (so every
/// token they signed has expired), keeping the newest whatever its age.
pub(crate) async fn prune_signing_keys<E: Exec>(e: &mut E, before: i64) -> Result<u64> {
    let keys = signing_keys(e).await?;
    let mut n = 0;
    for pair in keys.windows(2) {
        if pair[1].created_at < before {
            n += e
                .exec(Stmt::Delete(
                    Query::delete()
                        .from_table(a(SIGNING_KEYS))
                        .and_where(Expr::col(a("kid")).eq(pair[0].kid.as_str()))
                        .to_owned(),
                ))
                .await?;
        }
    }
    Ok(n)
}
