//! Who is asking, and what they may do.
//!
//! The `authenticate` middleware turns the `Authorization` header into a
//! [`Principal`] (request extension): anonymous, a user with a live session,
//! or an API key. Access tokens are checked against the signing keys *and*
//! the database on every request — the session must still be live and the
//! role is read from the membership table at that moment — so a revoked
//! session, a removed member or a changed role takes effect on the very next
//! request; a token never carries authority past that.
//!
//! [`authorize`] turns a principal, a collection and an action into a
//! `plinth_store::Access` (the tenant, plus the filter a record-dependent
//! rule resolved to) or a 401/403. The store adds that access to every
//! statement it builds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use plinth_auth::{KeyRing, SigningKey, TokenError, VerificationKey};
use plinth_domain::rule::{AuthFacts, Resolved, Rule};
use plinth_domain::{Action, Collection, Permission, Schema};
use plinth_store::{Access, Store, StoredSigningKey};

use crate::error::ApiError;
use crate::{AppState, ConfigError};

/// The header that selects the tenant a request acts in.
pub const TENANT_HEADER: HeaderName = HeaderName::from_static("x-plinth-tenant");

/// Identity settings (from flags / env in the binary).
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `iss` and `aud` of access tokens.
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    /// A refresh token unused this long expires.
    pub refresh_idle: Duration,
    /// A session ends this long after sign-in, however often it is refreshed.
    pub refresh_absolute: Duration,
    pub password_policy: plinth_auth::PasswordPolicy,
    /// Whether anyone may create an account (`POST /v1/auth/signup`).
    pub signup: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            issuer: "plinth".into(),
            audience: "plinth".into(),
            access_ttl: Duration::from_secs(15 * 60),
            refresh_idle: Duration::from_secs(14 * 24 * 3600),
            refresh_absolute: Duration::from_secs(90 * 24 * 3600),
            password_policy: plinth_auth::PasswordPolicy::default(),
            signup: true,
        }
    }
}

/// Runs password hashing or verification on a few dedicated threads (one per
/// CPU). Each argon2id call holds 19 MiB for tens of milliseconds; run on
/// tokio's blocking pool (up to 512 threads, each with its own allocator
/// arena that keeps freed memory), a sign-in burst would leave hundreds of
/// megabytes resident. Here at most one call per CPU runs at a time and the
/// memory stays with those threads; queued calls wait their turn (the per-IP
/// and per-account limits keep the queue short).
pub(crate) async fn hashing<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    type Job = Box<dyn FnOnce() + Send>;
    static POOL: std::sync::OnceLock<Mutex<std::sync::mpsc::Sender<Job>>> =
        std::sync::OnceLock::new();
    let pool = POOL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        for i in 0..n {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("plinth-hash-{i}"))
                .spawn(move || {
                    loop {
                        // Take one job, then let go of the queue while it runs.
                        let job = match rx.lock() {
                            Ok(q) => q.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password-hashing thread");
            }
        }
        Mutex::new(tx)
    });
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    pool.lock()
        .map_err(|_| ApiError::Internal)?
        .send(job)
        .map_err(|_| ApiError::Internal)?;
    rx.await.map_err(|_| ApiError::Internal)
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

pub(crate) fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

// ------------------------------------------------------------------ keys

/// The signing keys, shared by every instance through the database.
pub(crate) struct Keys {
    ring: RwLock<KeyRing>,
    /// Tokens whose signature was already verified, with their claims. An
    /// Ed25519 verification costs tens of microseconds; a token is checked on
    /// every request it is sent with. Only the exact token string hits, expiry
    /// is checked on every hit, and the cache is emptied whenever the keys
    /// change (so a removed key's tokens stop working at once).
    verified: Mutex<HashMap<String, plinth_auth::Claims>>,
    /// When the keys were last read from the database (reloads triggered by
    /// an unknown `kid` are limited: anyone can send one).
    last_reload: Mutex<Instant>,
}

/// How often an instance re-reads the keys to pick up a rotation.
pub(crate) const KEY_REFRESH: Duration = Duration::from_secs(60);
const MIN_RELOAD_GAP: Duration = Duration::from_secs(5);
/// Most verified tokens remembered (then the cache starts over).
const VERIFIED_CACHE: usize = 16_384;

fn ring_of(stored: &[StoredSigningKey]) -> Result<Option<KeyRing>, String> {
    let Some((newest, older)) = stored.split_last() else {
        return Ok(None);
    };
    let decode = |k: &StoredSigningKey| -> Result<(Vec<u8>, [u8; 32]), String> {
        let private = STANDARD
            .decode(&k.private_key)
            .map_err(|e| format!("signing key {}: {e}", k.kid))?;
        let public: [u8; 32] = STANDARD
            .decode(&k.public_key)
            .map_err(|e| format!("signing key {}: {e}", k.kid))?
            .try_into()
            .map_err(|_| format!("signing key {}: public key is not 32 bytes", k.kid))?;
        Ok((private, public))
    };
    let (private, public) = decode(newest)?;
    let current =
        SigningKey::from_parts(newest.kid.clone(), private, public).map_err(|e| e.to_string())?;
    let mut verification = Vec::new();
    for k in older {
        let (_, public) = decode(k)?;
        verification.push(VerificationKey::new(k.kid.clone(), public).map_err(|e| e.to_string())?);
    }
    KeyRing::new(current, verification)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// A fresh key in the form the store keeps.
pub fn new_stored_key(now: i64) -> Result<StoredSigningKey, String> {
    let k = SigningKey::generate().map_err(|e| e.to_string())?;
    Ok(StoredSigningKey {
        kid: k.kid,
        private_key: STANDARD.encode(&k.private_pkcs8),
        public_key: STANDARD.encode(k.public),
        created_at: now,
    })
}

impl Keys {
    /// Reads the keys, creating the first one on a new database.
    pub(crate) async fn load(store: &Store) -> Result<Keys, ConfigError> {
        let mut stored = store.signing_keys().await.map_err(ConfigError::Secret)?;
        if stored.is_empty() {
            let k = new_stored_key(now()).map_err(ConfigError::Keys)?;
            store
                .add_signing_key(k)
                .await
                .map_err(ConfigError::Secret)?;
            stored = store.signing_keys().await.map_err(ConfigError::Secret)?;
        }
        let ring = ring_of(&stored)
            .map_err(ConfigError::Keys)?
            .ok_or_else(|| ConfigError::Keys("no signing key".into()))?;
        Ok(Keys {
            ring: RwLock::new(ring),
            verified: Mutex::new(HashMap::new()),
            last_reload: Mutex::new(Instant::now()),
        })
    }

    /// Re-reads the keys (a rotation by another instance or `plinth keys rotate`).
    pub(crate) async fn reload(&self, store: &Store) {
        if let Ok(mut last) = self.last_reload.lock() {
            *last = Instant::now();
        }
        match store.signing_keys().await {
            Ok(stored) => match ring_of(&stored) {
                Ok(Some(ring)) => {
                    let changed = self
                        .ring
                        .read()
                        .map(|r| r.kids().ne(ring.kids()))
                        .unwrap_or(true);
                    if let Ok(mut slot) = self.ring.write() {
                        *slot = ring;
                    }
                    if changed && let Ok(mut v) = self.verified.lock() {
                        v.clear();
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "signing keys in the database are unusable"),
            },
            Err(e) => tracing::warn!(error = %e, "cannot reload signing keys"),
        }
    }

    pub(crate) fn sign(&self, claims: &plinth_auth::Claims) -> Result<String, ApiError> {
        let ring = self.ring.read().map_err(|_| ApiError::Internal)?;
        ring.sign(claims).map_err(|e| {
            tracing::error!(error = %e, "cannot sign an access token");
            ApiError::Internal
        })
    }

    pub(crate) fn jwks(&self) -> serde_json::Value {
        self.ring
            .read()
            .map(|r| r.jwks())
            .unwrap_or_else(|_| serde_json::json!({"keys": []}))
    }

    async fn verify(
        &self,
        store: &Store,
        cfg: &AuthConfig,
        token: &str,
    ) -> Result<plinth_auth::Claims, TokenError> {
        let t = now();
        if let Ok(v) = self.verified.lock()
            && let Some(c) = v.get(token)
        {
            if t > c.exp.saturating_add(plinth_auth::LEEWAY_SECS) {
                return Err(TokenError::Expired);
            }
            return Ok(c.clone());
        }
        let attempt = || -> Result<plinth_auth::Claims, TokenError> {
            let ring = self.ring.read().map_err(|_| TokenError::Malformed)?;
            let claims = ring.verify(token, &cfg.issuer, &cfg.audience, t)?;
            if let Ok(mut v) = self.verified.lock() {
                if v.len() >= VERIFIED_CACHE {
                    v.clear();
                }
                v.insert(token.to_owned(), claims.clone());
            }
            Ok(claims)
        };
        match attempt() {
            Err(TokenError::UnknownKid { kid }) => {
                let due = self
                    .last_reload
                    .lock()
                    .map(|t| t.elapsed() >= MIN_RELOAD_GAP)
                    .unwrap_or(false);
                if !due {
                    return Err(TokenError::UnknownKid { kid });
                }
                self.reload(store).await;
                attempt()
            }
            other => other,
        }
    }
}

// ------------------------------------------------------------------ principal

/// Who is asking.
#[derive(Debug, Clone)]
pub(crate) enum Principal {
    Anonymous {
        tenant: Option<String>,
    },
    User {
        user_id: String,
        session_id: String,
        email: String,
        tenant: Option<String>,
        /// The role in `tenant`, read from the database for this request.
        role: Option<String>,
    },
    ApiKey {
        key_id: String,
        tenant: String,
        role: String,
    },
}

impl Principal {
    pub(crate) fn tenant(&self) -> Option<&str> {
        match self {
            Principal::Anonymous { tenant } | Principal::User { tenant, .. } => tenant.as_deref(),
            Principal::ApiKey { tenant, .. } => Some(tenant),
        }
    }

    pub(crate) fn role(&self) -> Option<&str> {
        match self {
            Principal::Anonymous { .. } => None,
            Principal::User { role, .. } => role.as_deref(),
            Principal::ApiKey { role, .. } => Some(role),
        }
    }

    pub(crate) fn user_id(&self) -> Option<&str> {
        match self {
            Principal::User { user_id, .. } => Some(user_id),
            _ => None,
        }
    }

    pub(crate) fn is_anonymous(&self) -> bool {
        matches!(self, Principal::Anonymous { .. })
    }

    fn facts(&self) -> AuthFacts<'_> {
        AuthFacts {
            user_id: self.user_id(),
            tenant_id: self.tenant(),
            role: self.role(),
            kind: match self {
                Principal::Anonymous { .. } => None,
                Principal::User { .. } => Some("user"),
                Principal::ApiKey { .. } => Some("api_key"),
            },
            email: match self {
                Principal::User { email, .. } => Some(email),
                _ => None,
            },
        }
    }
}

/// A 401 for a bad credential, with its `WWW-Authenticate` challenge.
pub(crate) fn invalid_token(description: &str) -> ApiError {
    ApiError::Unauthorized {
        detail: format!("the access token is not valid: {description}"),
        challenge: format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\"",
            description.replace('"', "'")
        ),
    }
}

/// A 401 for a request that needs a credential and sent none.
pub(crate) fn sign_in_required(detail: impl Into<String>) -> ApiError {
    ApiError::Unauthorized {
        detail: detail.into(),
        challenge: "Bearer".into(),
    }
}

fn tenant_header(headers: &axum::http::HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(&TENANT_HEADER) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("");
    if plinth_domain::value::is_valid_id(s) {
        Ok(Some(s.to_ascii_lowercase()))
    } else {
        Err(ApiError::BadRequest(
            "X-Plinth-Tenant must be a tenant id (a UUID)".into(),
        ))
    }
}

/// The `authenticate` middleware: puts a [`Principal`] into the request.
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    // Routes that never look at the principal do not judge credentials either:
    // a stale token must not fail a health probe or the contract.
    if matches!(
        req.uri().path(),
        "/healthz" | "/readyz" | "/v1/openapi.json" | "/docs" | "/.well-known/jwks.json"
    ) {
        req.extensions_mut()
            .insert(Principal::Anonymous { tenant: None });
        return next.run(req).await;
    }
    match principal_of(&state, req.headers()).await {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

async fn principal_of(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<Principal, ApiError> {
    let header_tenant = tenant_header(headers)?;
    let Some(auth) = headers.get(header::AUTHORIZATION) else {
        return Ok(Principal::Anonymous {
            tenant: header_tenant,
        });
    };
    let auth = auth.to_str().unwrap_or("");
    let token = match auth.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") && !t.trim().is_empty() => {
            t.trim()
        }
        _ => {
            return Err(ApiError::Unauthorized {
                detail: "the Authorization header must be `Bearer <token>`".into(),
                challenge: "Bearer error=\"invalid_request\"".into(),
            });
        }
    };
    if token.starts_with(plinth_auth::API_KEY_PREFIX) {
        return api_key_principal(state, token, header_tenant).await;
    }
    let claims = state
        .keys
        .verify(&state.store, &state.auth, token)
        .await
        .map_err(|e| invalid_token(e.description()))?;
    let tenant = header_tenant.or(claims.tid.clone());
    let live = state
        .store
        .session_principal(&claims.sid, &claims.sub, tenant.as_deref(), now())
        .await?;
    let Some(live) = live else {
        return Err(invalid_token("the session was revoked or has expired"));
    };
    Ok(Principal::User {
        user_id: claims.sub,
        session_id: claims.sid,
        email: live.email,
        tenant,
        role: live.role,
    })
}

/// How often an API key's `last_used_at` is written at most.
const TOUCH_EVERY: i64 = 60;

async fn api_key_principal(
    state: &AppState,
    token: &str,
    header_tenant: Option<String>,
) -> Result<Principal, ApiError> {
    let bad = || invalid_token("the API key is not valid");
    let (prefix, secret) = plinth_auth::parse_api_key(token).ok_or_else(bad)?;
    let found = state.store.api_key_by_prefix(prefix).await?;
    // Hash and compare even when no key has this prefix, so timing says nothing.
    let presented = plinth_auth::token_hash(secret);
    let stored = found
        .as_ref()
        .and_then(|k| unhex32(&k.secret_hash))
        .unwrap_or([0u8; 32]);
    let Some(found) = found.filter(|_| plinth_auth::hash_eq(&presented, &stored)) else {
        return Err(bad());
    };
    let key = found.key;
    let t = now();
    if key.revoked_at.is_some() {
        return Err(invalid_token("the API key was revoked"));
    }
    if key.expires_at.is_some_and(|e| e <= t) {
        return Err(invalid_token("the API key has expired"));
    }
    if let Some(h) = header_tenant
        && h != key.tenant_id
    {
        return Err(ApiError::Forbidden(
            "an API key acts only in its own tenant; drop X-Plinth-Tenant or send the key's tenant"
                .into(),
        ));
    }
    if key.last_used_at.is_none_or(|u| t - u >= TOUCH_EVERY) {
        let (store, id) = (state.store.clone(), key.id.clone());
        tokio::spawn(async move {
            if let Err(e) = store.touch_api_key(&id, t).await {
                tracing::warn!(error = %e, "cannot record an API key's last use");
            }
        });
    }
    Ok(Principal::ApiKey {
        key_id: key.id,
        tenant: key.tenant_id,
        role: key.role,
    })
}

// ------------------------------------------------------------------ authorization

/// Every collection's rules, checked and compiled once at start-up.
pub(crate) struct Rules(HashMap<(String, Action), Rule>);

impl Rules {
    pub(crate) fn compile(schema: &Schema) -> Result<Rules, ConfigError> {
        let roles = schema.role_names();
        let mut out = HashMap::new();
        for c in &schema.collections {
            for a in Action::ALL {
                if let Permission::Rule(src) = c.permissions.get(a) {
                    let rule = plinth_domain::rule::check_rule(src, c, &roles).map_err(|e| {
                        ConfigError::Contract(format!(
                            "rule for `{}` of `{}`: {e}",
                            a.as_str(),
                            c.name
                        ))
                    })?;
                    out.insert((c.name.clone(), a), rule);
                }
            }
        }
        Ok(Rules(out))
    }
}

/// What `principal` may do with `action` on `c`: the store access to use,
/// or the error to answer.
pub(crate) fn authorize(
    state: &AppState,
    principal: &Principal,
    c: &Collection,
    action: Action,
) -> Result<Access, ApiError> {
    let tenant = principal.tenant().map(str::to_owned);
    if c.tenant_scoped && tenant.is_none() {
        return Err(ApiError::BadRequest(format!(
            "`{}` is tenant-scoped: name the tenant with the X-Plinth-Tenant header (or use a token issued for a tenant)",
            c.name
        )));
    }
    let perm = c.permissions.get(action);
    let resolved = match perm {
        Permission::Nobody => Resolved::Deny,
        Permission::Public => Resolved::Allow,
        Permission::Authenticated if principal.is_anonymous() => Resolved::Deny,
        // In a tenant-scoped collection, "signed in" means "a member of the tenant".
        Permission::Authenticated if c.tenant_scoped && principal.role().is_none() => {
            return Err(not_a_member(tenant.as_deref()));
        }
        Permission::Authenticated => Resolved::Allow,
        Permission::Roles(roles) => match principal.role() {
            Some(r) if roles.iter().any(|x| x == r) => Resolved::Allow,
            _ => Resolved::Deny,
        },
        Permission::Rule(_) => match state.rules.0.get(&(c.name.clone(), action)) {
            Some(rule) => rule.resolve(&principal.facts()),
            None => Resolved::Deny,
        },
    };
    match resolved {
        Resolved::Allow => Ok(Access::request(tenant, None)),
        Resolved::Where(f) => Ok(Access::request(tenant, Some(f))),
        Resolved::Deny if principal.is_anonymous() && *perm != Permission::Nobody => Err(
            sign_in_required(format!("sign in to {} `{}`", action.as_str(), c.name)),
        ),
        Resolved::Deny if c.tenant_scoped && principal.role().is_none() => {
            Err(not_a_member(principal.tenant()))
        }
        Resolved::Deny => Err(ApiError::Forbidden(format!(
            "you may not {} `{}`",
            action.as_str(),
            c.name
        ))),
    }
}

fn not_a_member(tenant: Option<&str>) -> ApiError {
    ApiError::Forbidden(format!(
        "you are not a member of tenant {}",
        tenant.unwrap_or("")
    ))
}

/// A `WWW-Authenticate` value.
pub(crate) fn challenge_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

/// Keeps the keys fresh: re-reads them every [`KEY_REFRESH`].
pub(crate) fn spawn_key_refresh(keys: Arc<Keys>, store: Store) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(KEY_REFRESH);
        tick.tick().await;
        loop {
            tick.tick().await;
            keys.reload(&store).await;
        }
    });
}
