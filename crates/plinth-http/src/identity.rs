//! `/v1/auth/*`, `/v1/tenants/*` and `/.well-known/jwks.json`: accounts,
//! sessions, tenants, members and API keys.

use axum::Extension;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use plinth_store::{MemberChange, NewApiKey, NewSession, Refresh, StoreError};

use crate::auth::{Principal, hex, invalid_token, now, secs, sign_in_required};

/// Unix seconds as an RFC 3339 timestamp (as records show them).
fn ts(secs: i64) -> String {
    plinth_domain::value::timestamp_of_unix(secs)
}

fn opt_ts(secs: Option<i64>) -> Option<String> {
    secs.map(ts)
}
use crate::error::ApiError;
use crate::records::{read_json, require_json};
use crate::{AppState, rate_limited};

type ApiResult = Result<Response, ApiError>;

fn json_response(status: StatusCode, body: &Json) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            // Tokens must not be cached by anything in between.
            (header::CACHE_CONTROL, "no-store"),
        ],
        bytes,
    )
        .into_response()
}

/// Reads a JSON body into `T`, answering 415/413/400/422 like record routes.
async fn body<T: serde::de::DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    require_json(headers, false)?;
    let json = read_json(body, state.config.max_body_bytes).await?;
    if !json.is_object() {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object".into(),
        ));
    }
    serde_json::from_value(json).map_err(|e| {
        ApiError::Validation(vec![plinth_contract::FieldError::new(
            "",
            "invalid",
            e.to_string(),
        )])
    })
}

/// One `password_policy` field error per rule the password breaks.
fn policy_errors(field: &str, reasons: Vec<String>) -> ApiError {
    ApiError::Validation(
        reasons
            .into_iter()
            .map(|r| plinth_contract::FieldError::new(field, "password_policy", r))
            .collect(),
    )
}

fn user_json(u: &plinth_store::User) -> Json {
    json!({"id": u.id, "email": u.email, "created_at": ts(u.created_at)})
}

fn member_json(m: &plinth_store::Member) -> Json {
    json!({"user_id": m.user_id, "email": m.email, "role": m.role, "created_at": ts(m.created_at)})
}

fn field_error(field: &str, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Validation(vec![plinth_contract::FieldError::new(field, code, message)])
}

fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect())
}

fn require_user(p: &Principal) -> Result<(&str, &str), ApiError> {
    match p {
        Principal::User {
            user_id,
            session_id,
            ..
        } => Ok((user_id, session_id)),
        Principal::ApiKey { .. } => Err(ApiError::Forbidden(
            "this route is for signed-in users; API keys cannot use it".into(),
        )),
        Principal::Anonymous { .. } => Err(sign_in_required("sign in first")),
    }
}

/// Access and refresh token for a session.
fn tokens(
    state: &AppState,
    user_id: &str,
    session_id: &str,
    tenant: Option<String>,
    refresh: &str,
) -> Result<Json, ApiError> {
    let ttl = secs(state.auth.access_ttl);
    let claims = plinth_auth::Claims::new(
        user_id,
        session_id,
        tenant,
        state.auth.issuer.clone(),
        state.auth.audience.clone(),
        now(),
        ttl,
    )
    .map_err(|_| ApiError::Internal)?;
    let access = state.keys.sign(&claims)?;
    Ok(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ttl,
        "refresh_token": refresh,
        "session_id": session_id,
    }))
}

async fn check_tenant_choice(
    state: &AppState,
    user_id: &str,
    tenant: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let Some(t) = tenant else { return Ok(None) };
    let t = t.to_ascii_lowercase();
    let mine = state.store.tenants_of(user_id).await?;
    if mine.iter().any(|(x, _)| x.id == t) {
        Ok(Some(t))
    } else {
        Err(field_error(
            "tenant_id",
            "not_a_member",
            "you are not a member of this tenant",
        ))
    }
}

/// Counts a sign-in or refresh against the per-IP and per-account budgets.
async fn auth_budget(state: &AppState, ip: &str, account: Option<&str>) -> Result<(), ApiError> {
    rate_limited(state, "auth-ip", ip).await?;
    if let Some(a) = account {
        rate_limited(state, "auth-account", a).await?;
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Credentials {
    email: String,
    password: String,
    #[serde(default)]
    tenant_id: Option<String>,
}

pub(crate) async fn signup(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    raw: Body,
) -> ApiResult {
    if !state.auth.signup {
        return Err(ApiError::Forbidden(
            "sign-up is closed on this server; ask an administrator for an account".into(),
        ));
    }
    let ip = addr.ip().to_string();
    auth_budget(&state, &ip, None).await?;
    let b: Credentials = body(&state, &headers, raw).await?;
    if b.tenant_id.is_some() {
        return Err(field_error(
            "tenant_id",
            "unknown_field",
            "a new account belongs to no tenant yet",
        ));
    }
    let email =
        plinth_auth::normalize_email(&b.email).map_err(|m| field_error("email", "format", m))?;
    if let Err(reasons) = state.auth.password_policy.check(&b.password, &email) {
        return Err(policy_errors("password", reasons));
    }
    let password = b.password;
    let hash = crate::auth::hashing(move || plinth_auth::hash_password(&password))
        .await?
        .map_err(|_| ApiError::Internal)?;
    let t = now();
    let user = match state.store.create_user(&email, &hash, t).await {
        Ok(u) => u,
        Err(StoreError::Unique { .. }) => {
            return Err(ApiError::Conflict {
                detail: "an account with this email already exists; sign in instead".into(),
                errors: vec![plinth_contract::FieldError::new(
                    "email",
                    "unique",
                    "is already registered",
                )],
            });
        }
        Err(e) => return Err(e.into()),
    };
    let body = start_session(&state, &user.id, None, &headers, &ip).await?;
    let mut body = body;
    body["user"] = user_json(&user);
    Ok(json_response(StatusCode::CREATED, &body))
}

async fn start_session(
    state: &AppState,
    user_id: &str,
    tenant: Option<String>,
    headers: &HeaderMap,
    ip: &str,
) -> Result<Json, ApiError> {
    let refresh = plinth_auth::new_refresh_token().map_err(|_| ApiError::Internal)?;
    let session = state
        .store
        .create_session(NewSession {
            user_id: user_id.to_owned(),
            user_agent: user_agent(headers),
            ip: Some(ip.to_owned()),
            refresh_hash: hex(&plinth_auth::token_hash(&refresh)),
            now: now(),
            idle_secs: secs(state.auth.refresh_idle),
            absolute_secs: secs(state.auth.refresh_absolute),
        })
        .await?;
    tokens(state, user_id, &session.id, tenant, &refresh)
}

/// The one answer to every failed sign-in: unknown account and wrong
/// password look the same (status, body and, through `dummy_verify`, time).
fn bad_credentials() -> ApiError {
    ApiError::Unauthorized {
        detail: "the email or password is wrong".into(),
        challenge: "Bearer".into(),
    }
}

pub(crate) async fn signin(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    raw: Body,
) -> ApiResult {
    let ip = addr.ip().to_string();
    let b: Credentials = body(&state, &headers, raw).await?;
    let email = plinth_auth::normalize_email(&b.email).unwrap_or_else(|_| b.email.clone());
    auth_budget(&state, &ip, Some(&email)).await?;
    let found = state.store.credentials(&email).await?;
    let password = b.password;
    let phc = found.as_ref().map(|c| c.password_hash.clone());
    let ok = crate::auth::hashing(move || match phc {
        Some(phc) => plinth_auth::verify_password(&password, &phc),
        None => {
            plinth_auth::dummy_verify(&password);
            false
        }
    })
    .await?;
    let Some(user) = found.filter(|_| ok).map(|c| c.user) else {
        return Err(bad_credentials());
    };
    let tenant = check_tenant_choice(&state, &user.id, b.tenant_id.as_deref()).await?;
    let mut body = start_session(&state, &user.id, tenant, &headers, &ip).await?;
    body["user"] = user_json(&user);
    Ok(json_response(StatusCode::OK, &body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefreshBody {
    refresh_token: String,
    #[serde(default)]
    tenant_id: Option<String>,
}

pub(crate) async fn refresh(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    raw: Body,
) -> ApiResult {
    let ip = addr.ip().to_string();
    auth_budget(&state, &ip, None).await?;
    let b: RefreshBody = body(&state, &headers, raw).await?;
    let hash = hex(&plinth_auth::token_hash(&b.refresh_token));
    // Per account too: the budget is spent before the token is, so a 429
    // never leaves the client with a spent token and no successor.
    if let Some(owner) = state.store.refresh_owner(&hash).await? {
        rate_limited(&state, "auth-account", &owner).await?;
    }
    let next = plinth_auth::new_refresh_token().map_err(|_| ApiError::Internal)?;
    let next_hash = hex(&plinth_auth::token_hash(&next));
    let outcome = state
        .store
        .rotate_refresh(
            &hash,
            &next_hash,
            now(),
            secs(state.auth.refresh_idle),
            Some(&ip),
        )
        .await?;
    match outcome {
        Refresh::Rotated {
            session_id,
            user_id,
        } => {
            let tenant = check_tenant_choice(&state, &user_id, b.tenant_id.as_deref()).await?;
            let body = tokens(&state, &user_id, &session_id, tenant, &next)?;
            Ok(json_response(StatusCode::OK, &body))
        }
        Refresh::Reused { .. } => {
            tracing::warn!("a spent refresh token was presented; its session was revoked");
            Err(invalid_token(
                "the refresh token was already used; the session has been revoked",
            ))
        }
        Refresh::Invalid => Err(invalid_token(
            "the refresh token is unknown, expired or revoked",
        )),
    }
}

pub(crate) async fn signout(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> ApiResult {
    let (user, session) = require_user(&p)?;
    state
        .store
        .revoke_session(user, session, now(), "signed_out")
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn me(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> ApiResult {
    match &p {
        Principal::User {
            user_id,
            session_id,
            email,
            tenant,
            role,
        } => {
            let tenants = state.store.tenants_of(user_id).await?;
            let user = state.store.credentials_by_id(user_id).await?;
            Ok(json_response(
                StatusCode::OK,
                &json!({
                    "kind": "user",
                    "user": {"id": user_id, "email": email, "created_at": user.map(|u| ts(u.user.created_at))},
                    "session_id": session_id,
                    "tenant_id": tenant,
                    "role": role,
                    "tenants": tenants.iter().map(|(t, r)| json!({"id": t.id, "name": t.name, "role": r})).collect::<Vec<_>>(),
                }),
            ))
        }
        Principal::ApiKey {
            key_id,
            tenant,
            role,
        } => Ok(json_response(
            StatusCode::OK,
            &json!({"kind": "api_key", "api_key_id": key_id, "tenant_id": tenant, "role": role}),
        )),
        Principal::Anonymous { .. } => Err(sign_in_required("sign in first")),
    }
}

pub(crate) async fn sessions(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> ApiResult {
    let (user, current) = require_user(&p)?;
    let list = state.store.sessions(user, now()).await?;
    let items: Vec<Json> = list
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "current": s.id == current,
                "user_agent": s.user_agent,
                "ip": s.ip,
                "created_at": ts(s.created_at),
                "last_used_at": ts(s.last_used_at),
                "expires_at": ts(s.expires_at),
            })
        })
        .collect();
    Ok(json_response(StatusCode::OK, &json!({ "items": items })))
}

pub(crate) async fn revoke_session(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult {
    let (user, _) = require_user(&p)?;
    let id = id.to_ascii_lowercase();
    if state
        .store
        .revoke_session(user, &id, now(), "revoked_by_user")
        .await?
    {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound("no active session with this id".into()))
    }
}

pub(crate) async fn revoke_all_sessions(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> ApiResult {
    let (user, _) = require_user(&p)?;
    state
        .store
        .revoke_sessions(user, None, now(), "revoked_by_user")
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordChange {
    current_password: String,
    new_password: String,
}

pub(crate) async fn change_password(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ConnectInfo(addr): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    raw: Body,
) -> ApiResult {
    let (user, session) = require_user(&p)?;
    let (user, session) = (user.to_owned(), session.to_owned());
    let ip = addr.ip().to_string();
    auth_budget(&state, &ip, Some(&user)).await?;
    let b: PasswordChange = body(&state, &headers, raw).await?;
    let Some(creds) = state.store.credentials_by_id(&user).await? else {
        return Err(invalid_token("the account no longer exists"));
    };
    if let Err(reasons) = state
        .auth
        .password_policy
        .check(&b.new_password, &creds.user.email)
    {
        return Err(policy_errors("new_password", reasons));
    }
    let (current, new, phc) = (b.current_password, b.new_password, creds.password_hash);
    let hashed = crate::auth::hashing(move || {
        if plinth_auth::verify_password(&current, &phc) {
            plinth_auth::hash_password(&new).map(Some)
        } else {
            Ok(None)
        }
    })
    .await?
    .map_err(|_| ApiError::Internal)?;
    let Some(hash) = hashed else {
        return Err(field_error(
            "current_password",
            "wrong_password",
            "is not the current password",
        ));
    };
    state
        .store
        .set_password(&user, &hash, Some(&session), now())
        .await?;
    let _ = state
        .store
        .record_event(
            "password_changed",
            Some(&user),
            Some(&ip),
            Some("other sessions were revoked"),
            now(),
        )
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn events(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> ApiResult {
    let (user, _) = require_user(&p)?;
    let list = state.store.security_events(user).await?;
    let items: Vec<Json> = list
        .iter()
        .map(|e| json!({"id": e.id, "at": ts(e.at), "kind": e.kind, "session_id": e.session_id, "ip": e.ip, "detail": e.detail}))
        .collect();
    Ok(json_response(StatusCode::OK, &json!({ "items": items })))
}

pub(crate) async fn jwks(State(state): State<AppState>) -> Response {
    let bytes = serde_json::to_vec(&state.keys.jwks()).unwrap_or_default();
    (
        [
            (header::CONTENT_TYPE, "application/jwk-set+json"),
            (header::CACHE_CONTROL, "max-age=60"),
        ],
        bytes,
    )
        .into_response()
}

// ------------------------------------------------------------------ tenants

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTenant {
    name: String,
}

pub(crate) async fn create_tenant(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    raw: Body,
) -> ApiResult {
    let (user, _) = require_user(&p)?;
    let user = user.to_owned();
    let b: NewTenant = body(&state, &headers, raw).await?;
    let name = b.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(field_error(
            "name",
            "invalid",
            "must be 1 to 200 characters",
        ));
    }
    let t = state.store.create_tenant(name, &user, now()).await?;
    let mut r = json_response(
        StatusCode::CREATED,
        &json!({"id": t.id, "name": t.name, "created_at": ts(t.created_at), "role": "owner"}),
    );
    if let Ok(loc) = format!("/v1/tenants/{}", t.id).parse() {
        r.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(r)
}

pub(crate) async fn my_tenants(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> ApiResult {
    let (user, _) = require_user(&p)?;
    let list = state.store.tenants_of(user).await?;
    let items: Vec<Json> = list
        .iter()
        .map(
            |(t, r)| json!({"id": t.id, "name": t.name, "created_at": ts(t.created_at), "role": r}),
        )
        .collect();
    Ok(json_response(StatusCode::OK, &json!({ "items": items })))
}

/// The caller's role in `tenant`, read now; 404 for non-members (a tenant
/// one does not belong to is not confirmed to exist).
async fn my_role(state: &AppState, p: &Principal, tenant: &str) -> Result<String, ApiError> {
    let (user, _) = require_user(p)?;
    let tenant = tenant.to_ascii_lowercase();
    state
        .store
        .tenants_of(user)
        .await?
        .into_iter()
        .find(|(t, _)| t.id == tenant)
        .map(|(_, r)| r)
        .ok_or_else(|| ApiError::NotFound("no tenant with this id".into()))
}

fn is_manager(role: &str) -> bool {
    role == "owner" || role == "admin"
}

fn check_role_name(state: &AppState, role: &str) -> Result<(), ApiError> {
    let roles = state.store.schema().role_names();
    if roles.contains(&role) {
        Ok(())
    } else {
        Err(field_error(
            "role",
            "enum",
            format!("must be one of: {}", roles.join(", ")),
        ))
    }
}

pub(crate) async fn members(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(tenant): Path<String>,
) -> ApiResult {
    my_role(&state, &p, &tenant).await?;
    let list = state.store.members(&tenant.to_ascii_lowercase()).await?;
    let items: Vec<Json> = list.iter().map(member_json).collect();
    Ok(json_response(StatusCode::OK, &json!({ "items": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewMember {
    email: String,
    role: String,
}

pub(crate) async fn add_member(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    raw: Body,
) -> ApiResult {
    let mine = my_role(&state, &p, &tenant).await?;
    let b: NewMember = body(&state, &headers, raw).await?;
    if !is_manager(&mine) {
        return Err(ApiError::Forbidden(
            "only owners and admins can add members".into(),
        ));
    }
    check_role_name(&state, &b.role)?;
    if b.role == "owner" && mine != "owner" {
        return Err(ApiError::Forbidden("only owners can make owners".into()));
    }
    let email =
        plinth_auth::normalize_email(&b.email).map_err(|m| field_error("email", "format", m))?;
    match state
        .store
        .add_member(&tenant.to_ascii_lowercase(), &email, &b.role, now())
        .await?
    {
        MemberChange::Done(m) => Ok(json_response(StatusCode::CREATED, &member_json(&m))),
        MemberChange::NoSuchUser => Err(field_error(
            "email",
            "no_account",
            "no account has this email; the person must sign up first",
        )),
        MemberChange::AlreadyMember => Err(ApiError::Conflict {
            detail: "this user is already a member; change their role instead".into(),
            errors: Vec::new(),
        }),
        MemberChange::LastOwner => Err(ApiError::Internal),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleChange {
    role: String,
}

/// Who may change or remove `target` (with role `theirs`): owners anyone,
/// admins everyone but owners, anyone themselves (leaving).
async fn may_manage(
    state: &AppState,
    p: &Principal,
    tenant: &str,
    target: &str,
) -> Result<String, ApiError> {
    let mine = my_role(state, p, tenant).await?;
    let me = p.user_id().unwrap_or("");
    let members = state.store.members(&tenant.to_ascii_lowercase()).await?;
    let Some(theirs) = members.iter().find(|m| m.user_id == target) else {
        return Err(ApiError::NotFound("no member with this user id".into()));
    };
    if mine == "owner" || (mine == "admin" && theirs.role != "owner") || me == target {
        Ok(mine)
    } else {
        Err(ApiError::Forbidden(
            "only owners can change owners, and only owners and admins can change members".into(),
        ))
    }
}

fn member_outcome(change: MemberChange, status: StatusCode) -> ApiResult {
    match change {
        MemberChange::Done(_) if status == StatusCode::NO_CONTENT => {
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        MemberChange::Done(m) => Ok(json_response(status, &member_json(&m))),
        MemberChange::NoSuchUser => Err(ApiError::NotFound("no member with this user id".into())),
        MemberChange::AlreadyMember => Err(ApiError::Internal),
        MemberChange::LastOwner => Err(ApiError::Conflict {
            detail: "a tenant needs at least one owner; make someone else owner first".into(),
            errors: Vec::new(),
        }),
    }
}

pub(crate) async fn change_member(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((tenant, user)): Path<(String, String)>,
    headers: HeaderMap,
    raw: Body,
) -> ApiResult {
    let user = user.to_ascii_lowercase();
    let mine = may_manage(&state, &p, &tenant, &user).await?;
    let b: RoleChange = body(&state, &headers, raw).await?;
    check_role_name(&state, &b.role)?;
    if (b.role == "owner" && mine != "owner") || (!is_manager(&mine) && b.role != "viewer") {
        return Err(ApiError::Forbidden(
            "only owners can make owners; members can only step down to viewer".into(),
        ));
    }
    let change = state
        .store
        .change_member(&tenant.to_ascii_lowercase(), &user, Some(&b.role))
        .await?;
    member_outcome(change, StatusCode::OK)
}

pub(crate) async fn remove_member(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((tenant, user)): Path<(String, String)>,
) -> ApiResult {
    let user = user.to_ascii_lowercase();
    may_manage(&state, &p, &tenant, &user).await?;
    let change = state
        .store
        .change_member(&tenant.to_ascii_lowercase(), &user, None)
        .await?;
    member_outcome(change, StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ API keys

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKey {
    name: String,
    role: String,
    /// RFC 3339 date-time.
    #[serde(default)]
    expires_at: Option<String>,
}

fn key_json(k: &plinth_store::ApiKey) -> Json {
    json!({
        "id": k.id,
        "name": k.name,
        "role": k.role,
        "prefix": k.prefix,
        "created_by": k.created_by,
        "created_at": ts(k.created_at),
        "expires_at": opt_ts(k.expires_at),
        "last_used_at": opt_ts(k.last_used_at),
        "revoked_at": opt_ts(k.revoked_at),
    })
}

async fn require_manager(
    state: &AppState,
    p: &Principal,
    tenant: &str,
) -> Result<String, ApiError> {
    let mine = my_role(state, p, tenant).await?;
    if is_manager(&mine) {
        Ok(mine)
    } else {
        Err(ApiError::Forbidden(
            "only owners and admins can manage API keys".into(),
        ))
    }
}

pub(crate) async fn create_api_key(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    raw: Body,
) -> ApiResult {
    let mine = require_manager(&state, &p, &tenant).await?;
    let b: NewKey = body(&state, &headers, raw).await?;
    let name = b.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(field_error(
            "name",
            "invalid",
            "must be 1 to 200 characters",
        ));
    }
    check_role_name(&state, &b.role)?;
    if b.role == "owner" || (b.role == "admin" && mine != "owner") {
        return Err(ApiError::Forbidden(
            "an API key cannot be an owner, and only owners can create admin keys".into(),
        ));
    }
    let t = now();
    let expires_at = match b.expires_at.as_deref() {
        None => None,
        Some(s) => Some(plinth_domain::value::datetime_unix(s).ok_or_else(|| {
            field_error(
                "expires_at",
                "format",
                "must be an RFC 3339 date-time, e.g. 2027-01-01T00:00:00Z",
            )
        })?),
    };
    if expires_at.is_some_and(|e| e <= t) {
        return Err(field_error(
            "expires_at",
            "invalid",
            "must be in the future",
        ));
    }
    let parts = plinth_auth::new_api_key().map_err(|_| ApiError::Internal)?;
    let key = state
        .store
        .create_api_key(NewApiKey {
            tenant_id: tenant.to_ascii_lowercase(),
            name: name.to_owned(),
            role: b.role,
            prefix: parts.prefix.clone(),
            secret_hash: hex(&parts.secret_hash),
            created_by: p.user_id().unwrap_or("").to_owned(),
            now: t,
            expires_at,
        })
        .await?;
    let mut body = key_json(&key);
    body["key"] = json!(parts.key);
    Ok(json_response(StatusCode::CREATED, &body))
}

pub(crate) async fn api_keys(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(tenant): Path<String>,
) -> ApiResult {
    require_manager(&state, &p, &tenant).await?;
    let list = state.store.api_keys(&tenant.to_ascii_lowercase()).await?;
    let items: Vec<Json> = list.iter().map(key_json).collect();
    Ok(json_response(StatusCode::OK, &json!({ "items": items })))
}

pub(crate) async fn revoke_api_key(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult {
    require_manager(&state, &p, &tenant).await?;
    if state
        .store
        .revoke_api_key(
            &tenant.to_ascii_lowercase(),
            &id.to_ascii_lowercase(),
            now(),
        )
        .await?
    {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound("no active API key with this id".into()))
    }
}
