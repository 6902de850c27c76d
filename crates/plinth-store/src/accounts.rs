//! The identity half of [`Store`]: each method runs one `identity` operation
//! in one transaction of the active dialect (the SQLite writer's savepoint,
//! or a PostgreSQL transaction), or, for reads, on a read connection.

use crate::identity::{
    self, ApiKey, ApiKeyAuth, Credentials, Member, MemberChange, NewApiKey, NewSession, Refresh,
    SecurityEvent, Session, SessionPrincipal, StoredSigningKey, Tenant, User, run_now,
};
use crate::postgres::{PgExec, pg_err};
use crate::sqlite::SqliteExec;
use crate::{Backend, Result, Store};

/// The answers of the two per-request identity lookups (session liveness and
/// role; API key by prefix), remembered for the embedded database only.
///
/// Sound because with SQLite exactly one process serves a data directory (it
/// holds the directory's lock) and every change to sessions, memberships and
/// keys goes through this `Store`: each such write bumps `generation` after it
/// commits, and an entry is used only while the generation it was read under
/// is current. A lookup notes the generation *before* reading, so a read that
/// races with a write is never served afterwards. Changes made with other
/// tools while the server runs are not seen until a restart (runbooks say so).
/// PostgreSQL serves several instances, so it is always asked.
#[derive(Default)]
pub(crate) struct IdentityCache {
    generation: std::sync::atomic::AtomicU64,
    sessions: std::sync::Mutex<std::collections::HashMap<SessionKey, (SessionPrincipal, i64, u64)>>,
    keys: std::sync::Mutex<std::collections::HashMap<String, (Option<ApiKeyAuth>, u64)>>,
}

/// (session id, user id, tenant).
type SessionKey = (String, String, Option<String>);

/// Most entries per map (then it starts over).
const CACHE_ENTRIES: usize = 16_384;

impl IdentityCache {
    fn current(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn bump(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Runs `$body` (an identity call over `$e`) in a write transaction.
/// Arguments the body uses must be owned locals: the SQLite arm moves them
/// to the writer thread.
macro_rules! write_tx {
    ($store:expr, |$e:ident| $body:expr) => {
        match &$store.inner {
            Backend::Sqlite(db) => {
                db.writer
                    .write(move |conn| {
                        let mut $e = SqliteExec(conn);
                        run_now($body)
                    })
                    .await
            }
            Backend::Postgres(db) => {
                let mut tx = db.pool().begin().await.map_err(pg_err)?;
                let out = {
                    let mut $e = PgExec(&mut tx);
                    $body.await
                };
                match out {
                    Ok(v) => {
                        tx.commit().await.map_err(pg_err)?;
                        Ok(v)
                    }
                    Err(err) => Err(err),
                }
            }
        }
    };
}

/// Runs `$body` on a read connection (SQLite: this thread's; PostgreSQL: the pool's).
macro_rules! read {
    ($store:expr, |$e:ident| $body:expr) => {
        match &$store.inner {
            Backend::Sqlite(db) => db.read(|conn| {
                let mut $e = SqliteExec(conn);
                run_now($body)
            }),
            Backend::Postgres(db) => {
                let mut conn = db.pool().acquire().await.map_err(pg_err)?;
                let mut $e = PgExec(&mut conn);
                $body.await
            }
        }
    };
}

impl Store {
    /// Creates an account; `Unique { fields: ["email"] }` if the email is taken.
    pub async fn create_user(&self, email: &str, password_hash: &str, now: i64) -> Result<User> {
        let (email, hash) = (email.to_owned(), password_hash.to_owned());
        write_tx!(self, |e| identity::create_user(&mut e, &email, &hash, now))
    }

    /// The account with this (normalised) email and its password hash.
    pub async fn credentials(&self, email: &str) -> Result<Option<Credentials>> {
        read!(self, |e| identity::credentials(&mut e, email))
    }

    pub async fn credentials_by_id(&self, user_id: &str) -> Result<Option<Credentials>> {
        read!(self, |e| identity::credentials_by_id(&mut e, user_id))
    }

    /// Sets a new password hash and revokes every other session of the user.
    pub async fn set_password(
        &self,
        user_id: &str,
        password_hash: &str,
        keep_session: Option<&str>,
        now: i64,
    ) -> Result<u64> {
        let (user, hash, keep) = (
            user_id.to_owned(),
            password_hash.to_owned(),
            keep_session.map(str::to_owned),
        );
        let out = write_tx!(self, |e| identity::set_password(
            &mut e,
            &user,
            &hash,
            keep.as_deref(),
            now
        ));
        // After the commit: cached lookups made before it are stale.
        self.identity.bump();
        out
    }

    pub async fn create_session(&self, s: NewSession) -> Result<Session> {
        write_tx!(self, |e| identity::create_session(&mut e, s))
    }

    /// Spends refresh token `hash` and makes `new_hash` current (or detects
    /// reuse and revokes the family; that outcome is committed too).
    pub async fn rotate_refresh(
        &self,
        hash: &str,
        new_hash: &str,
        now: i64,
        idle_secs: i64,
        ip: Option<&str>,
    ) -> Result<Refresh> {
        let (hash, new_hash, ip) = (hash.to_owned(), new_hash.to_owned(), ip.map(str::to_owned));
        let out = write_tx!(self, |e| identity::rotate_refresh(
            &mut e,
            &hash,
            &new_hash,
            now,
            idle_secs,
            ip.as_deref()
        ));
        // After the commit: cached lookups made before it are stale.
        self.identity.bump();
        out
    }

    /// The account a refresh token (SHA-256 hex) belongs to, if any.
    pub async fn refresh_owner(&self, hash: &str) -> Result<Option<String>> {
        read!(self, |e| identity::refresh_owner(&mut e, hash))
    }

    pub async fn revoke_session(
        &self,
        user_id: &str,
        session_id: &str,
        now: i64,
        reason: &str,
    ) -> Result<bool> {
        let (user, sid, reason) = (user_id.to_owned(), session_id.to_owned(), reason.to_owned());
        let out = write_tx!(self, |e| identity::revoke_session(
            &mut e, &user, &sid, now, &reason
        ));
        // After the commit: cached lookups made before it are stale.
        self.identity.bump();
        out
    }

    pub async fn revoke_sessions(
        &self,
        user_id: &str,
        keep: Option<&str>,
        now: i64,
        reason: &str,
    ) -> Result<u64> {
        let (user, keep, reason) = (
            user_id.to_owned(),
            keep.map(str::to_owned),
            reason.to_owned(),
        );
        let out = write_tx!(self, |e| identity::revoke_sessions(
            &mut e,
            &user,
            keep.as_deref(),
            now,
            &reason
        ));
        // After the commit: cached lookups made before it are stale.
        self.identity.bump();
        out
    }

    pub async fn sessions(&self, user_id: &str, now: i64) -> Result<Vec<Session>> {
        read!(self, |e| identity::sessions(&mut e, user_id, now))
    }

    /// Whether an access token's session is live, and its user's role in `tenant` now.
    pub async fn session_principal(
        &self,
        session_id: &str,
        user_id: &str,
        tenant: Option<&str>,
        now: i64,
    ) -> Result<Option<SessionPrincipal>> {
        if matches!(self.inner, Backend::Postgres(_)) {
            return read!(self, |e| identity::session_principal(
                &mut e, session_id, user_id, tenant, now
            ))
            .map(|o| o.map(|(p, _)| p));
        }
        let cache = &self.identity;
        let key = (
            session_id.to_owned(),
            user_id.to_owned(),
            tenant.map(str::to_owned),
        );
        let generation = cache.current();
        if let Ok(map) = cache.sessions.lock()
            && let Some((p, expires_at, g)) = map.get(&key)
            && *g == generation
            && *expires_at > now
        {
            return Ok(Some(p.clone()));
        }
        let found = read!(self, |e| identity::session_principal(
            &mut e, session_id, user_id, tenant, now
        ))?;
        if let (Some((p, expires_at)), Ok(mut map)) = (&found, cache.sessions.lock()) {
            if map.len() >= CACHE_ENTRIES {
                map.clear();
            }
            map.insert(key, (p.clone(), *expires_at, generation));
        }
        Ok(found.map(|(p, _)| p))
    }

    pub async fn record_event(
        &self,
        kind: &str,
        user_id: Option<&str>,
        ip: Option<&str>,
        detail: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let (kind, user, ip, detail) = (
            kind.to_owned(),
            user_id.map(str::to_owned),
            ip.map(str::to_owned),
            detail.map(str::to_owned),
        );
        write_tx!(self, |e| identity::record_event(
            &mut e,
            &kind,
            user.as_deref(),
            None,
            ip.as_deref(),
            detail.as_deref(),
            now
        ))
    }

    pub async fn security_events(&self, user_id: &str) -> Result<Vec<SecurityEvent>> {
        read!(self, |e| identity::events(&mut e, user_id))
    }

    /// Creates a tenant with `owner` as its first member (role `owner`).
    pub async fn create_tenant(&self, name: &str, owner: &str, now: i64) -> Result<Tenant> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        let out = write_tx!(self, |e| identity::create_tenant(
            &mut e, &name, &owner, now
        ));
        // After the commit: cached lookups made before it are stale.
        self.identity.bump();
        out
    }

    pub async fn tenants_of(&self, user_id: &str) -> Result<Vec<(Tenant, String)>> {
        read!(self, |e| identity::tenants_of(&mut e, user_id))
    }

    pub async fn members(&self, tenant: &str) -> Result<Vec<Member>> {
        read!(self, |e| identity::members(&mut e, tenant))
    }

    pub async fn add_member(
        &self,
        tenant: &str,
        email: &str,
        role: &str,
        now: i64,
    ) -> Result<MemberChange> {
        let (tenant, email, role) = (tenant.to_owned(), email.to_owned(), role.to_owned());
        let out = write_tx!(self, |e| identity::add_member(
            &mut e, &tenant, &email, &role, now
        ));
        // After the commit: cached lookups made before it are stale.
        self.identity.bump();
        out
    }

    /// Sets a member's role (`Some`) or removes them (`None`); never removes the last owner.
    pub async fn change_member(
        &self,
        tenant: &str,
        user_id: &str,
        role: Option<&str>,
    ) -> Result<MemberChange> {
        let (tenant, user, role) = (
            tenant.to_owned(),
            user_id.to_owned(),
            role.map(str::to_owned),
        );
        let out = write_tx!(self, |e| identity::change_member(
            &mut e,
            &tenant,
            &user,
            role.as_deref()
        ));
        // After the commit: cached lookups made before it are stale.
        self.identity.bump();
        out
    }

    pub async fn create_api_key(&self, k: NewApiKey) -> Result<ApiKey> {
        let out = write_tx!(self, |e| identity::create_api_key(&mut e, k));
        // After the commit: cached lookups made before it are stale.
        self.identity.bump();
        out
    }

    pub async fn api_keys(&self, tenant: &str) -> Result<Vec<ApiKey>> {
        read!(self, |e| identity::api_keys(&mut e, tenant))
    }

    pub async fn api_key_by_prefix(&self, prefix: &str) -> Result<Option<ApiKeyAuth>> {
        if matches!(self.inner, Backend::Postgres(_)) {
            return read!(self, |e| identity::api_key_by_prefix(&mut e, prefix));
        }
        let cache = &self.identity;
        let generation = cache.current();
        if let Ok(map) = cache.keys.lock()
            && let Some((k, g)) = map.get(prefix)
            && *g == generation
        {
            return Ok(k.clone());
        }
        let found = read!(self, |e| identity::api_key_by_prefix(&mut e, prefix))?;
        if let Ok(mut map) = cache.keys.lock() {
            if map.len() >= CACHE_ENTRIES {
                map.clear();
            }
            map.insert(prefix.to_owned(), (found.clone(), generation));
        }
        Ok(found)
    }

    pub async fn revoke_api_key(&self, tenant: &str, id: &str, now: i64) -> Result<bool> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        let out = write_tx!(self, |e| identity::revoke_api_key(
            &mut e, &tenant, &id, now
        ));
        // After the commit: cached lookups made before it are stale.
        self.identity.bump();
        out
    }

    pub async fn touch_api_key(&self, id: &str, now: i64) -> Result<()> {
        let id = id.to_owned();
        let out = write_tx!(self, |e| identity::touch_api_key(&mut e, &id, now));
        // After the commit: cached lookups made before it are stale.
        self.identity.bump();
        out
    }

    pub async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>> {
        read!(self, |e| identity::signing_keys(&mut e))
    }

    pub async fn add_signing_key(&self, k: StoredSigningKey) -> Result<()> {
        write_tx!(self, |e| identity::add_signing_key(&mut e, &k))
    }

    /// Deletes signing keys that were superseded before `before`.
    pub async fn prune_signing_keys(&self, before: i64) -> Result<u64> {
        write_tx!(self, |e| identity::prune_signing_keys(&mut e, before))
    }
}
