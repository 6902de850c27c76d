//! Plinth's HTTP layer: the only crate that knows axum.
//!
//! The path of a request: `observe` middleware (request id, problem rendering,
//! one log line) → CORS (if configured) → router → handler (`records`) →
//! contract (validate) → store (one transaction) → JSON response.

mod auth;
mod cursor;
mod error;
mod identity;
mod records;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};

use plinth_contract::Contract;
use plinth_store::Store;

pub use auth::{AuthConfig, TENANT_HEADER, new_stored_key};
pub use error::ApiError;
use error::{ProblemDraft, draft_for_status, problem_body};

static DOCS_HTML: &str = include_str!("../assets/docs.html");
const DOCS_CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'";
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// HTTP settings (from flags / env in the binary).
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub max_body_bytes: usize,
    /// Rate limits per route class (`read`: GET/HEAD, `write`: the rest),
    /// keyed by client IP; empty = off.
    pub rate_limits: Vec<plinth_domain::ratelimit::Policy>,
    /// Exact origins allowed for CORS; empty = CORS off.
    pub cors_origins: Vec<String>,
    pub auth: AuthConfig,
}

/// Sign-in and refresh budgets used when `--rate-limits` names none: per
/// client IP, and per account.
pub fn default_auth_limits() -> Vec<plinth_domain::ratelimit::Policy> {
    vec![
        plinth_domain::ratelimit::Policy {
            name: "auth-ip".into(),
            limit: 30,
            window_secs: 60,
        },
        plinth_domain::ratelimit::Policy {
            name: "auth-account".into(),
            limit: 10,
            window_secs: 60,
        },
    ]
}

impl HttpConfig {
    /// Checks the settings without starting anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        cors_layer(&self.cors_origins).map(|_| ())
    }
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub(crate) store: Store,
    pub(crate) contract: Arc<Contract>,
    pub(crate) config: Arc<HttpConfig>,
    /// Key of the cursor MACs, shared through the database.
    pub(crate) cursor_secret: Arc<Vec<u8>>,
    openapi: Arc<Vec<u8>>,
    pub(crate) auth: Arc<AuthConfig>,
    pub(crate) keys: Arc<auth::Keys>,
    pub(crate) rules: Arc<auth::Rules>,
}

/// A start-up configuration mistake (reported before listening).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid CORS origin {0:?}: use an exact origin like https://app.example.com")]
    CorsOrigin(String),
    #[error("the schema's JSON Schemas do not compile: {0}")]
    Contract(String),
    #[error("cannot read the server secret from the database: {0}")]
    Secret(plinth_store::StoreError),
    #[error("the token signing keys are unusable: {0}")]
    Keys(String),
}

/// Builds the application router.
pub async fn app(store: Store, config: HttpConfig) -> Result<Router, ConfigError> {
    let cursor_secret = store.secret("cursor").await.map_err(ConfigError::Secret)?;
    let schema = store.schema().clone();
    let contract = Contract::new(schema.clone()).map_err(ConfigError::Contract)?;
    let openapi = serde_json::to_vec(&plinth_contract::openapi(&schema)).unwrap_or_default();
    let cors = cors_layer(&config.cors_origins)?;
    let rules = auth::Rules::compile(&schema)?;
    let keys = Arc::new(auth::Keys::load(&store).await?);
    auth::spawn_key_refresh(keys.clone(), store.clone());
    let state = AppState {
        store,
        contract: Arc::new(contract),
        auth: Arc::new(config.auth.clone()),
        config: Arc::new(config),
        cursor_secret: Arc::new(cursor_secret),
        openapi: Arc::new(openapi),
        keys,
        rules: Arc::new(rules),
    };
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/openapi.json", get(openapi_json))
        .route("/docs", get(docs))
        .route("/.well-known/jwks.json", get(identity::jwks))
        .route("/v1/auth/signup", post(identity::signup))
        .route("/v1/auth/signin", post(identity::signin))
        .route("/v1/auth/refresh", post(identity::refresh))
        .route("/v1/auth/signout", post(identity::signout))
        .route("/v1/auth/me", get(identity::me))
        .route("/v1/auth/password", post(identity::change_password))
        .route("/v1/auth/events", get(identity::events))
        .route(
            "/v1/auth/sessions",
            get(identity::sessions).delete(identity::revoke_all_sessions),
        )
        .route("/v1/auth/sessions/{id}", delete(identity::revoke_session))
        .route(
            "/v1/tenants",
            get(identity::my_tenants).post(identity::create_tenant),
        )
        .route(
            "/v1/tenants/{tenant}/members",
            get(identity::members).post(identity::add_member),
        )
        .route(
            "/v1/tenants/{tenant}/members/{user}",
            axum::routing::patch(identity::change_member).delete(identity::remove_member),
        )
        .route(
            "/v1/tenants/{tenant}/api-keys",
            get(identity::api_keys).post(identity::create_api_key),
        )
        .route(
            "/v1/tenants/{tenant}/api-keys/{id}",
            delete(identity::revoke_api_key),
        )
        .route("/v1/{collection}", get(records::list).post(records::create))
        .route(
            "/v1/{collection}/{id}",
            get(records::get)
                .patch(records::patch)
                .delete(records::delete),
        )
        .fallback(not_found)
        .with_state(state.clone());
    if let Some(cors) = cors {
        router = router.layer(cors);
    }
    // A panic in a handler becomes a 500 (rendered as problem+json by
    // `observe`), never a dropped connection.
    router = router.layer(tower_http::catch_panic::CatchPanicLayer::new());
    if state
        .config
        .rate_limits
        .iter()
        .any(|p| p.name == "read" || p.name == "write")
    {
        router = router.layer(middleware::from_fn_with_state(state.clone(), rate_limit));
    }
    router = router.layer(middleware::from_fn_with_state(
        state.clone(),
        auth::authenticate,
    ));
    Ok(router.layer(middleware::from_fn_with_state(state, observe)))
}

fn cors_layer(origins: &[String]) -> Result<Option<CorsLayer>, ConfigError> {
    if origins.is_empty() {
        return Ok(None);
    }
    let mut list = Vec::new();
    for o in origins {
        let valid = (o.starts_with("https://") || o.starts_with("http://"))
            && !o.ends_with('/')
            && !o.contains('*')
            && o.split("://")
                .nth(1)
                .is_some_and(|h| !h.is_empty() && !h.contains('/'));
        let value = HeaderValue::from_str(o).ok().filter(|_| valid);
        list.push(value.ok_or_else(|| ConfigError::CorsOrigin(o.clone()))?);
    }
    // Credentials are never allowed: Plinth authenticates with bearer
    // tokens, so a wildcard or reflected origin never gains cookies.
    Ok(Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(list))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PATCH,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                header::IF_MATCH,
                header::IF_NONE_MATCH,
                REQUEST_ID,
                TENANT_HEADER,
                HeaderName::from_static("idempotency-key"),
            ])
            .expose_headers([REQUEST_ID, header::LOCATION, header::ETAG])
            .max_age(Duration::from_secs(600)),
    ))
}

async fn healthz() -> Response {
    json_ok(r#"{"status":"ok"}"#)
}

/// How long readiness waits for the database (reader and writer).
const READY_TIMEOUT: Duration = Duration::from_secs(2);

async fn readyz(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => json_ok(r#"{"status":"ready"}"#),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            ApiError::Unavailable.into_response()
        }
        Err(_) => {
            tracing::warn!("readiness check timed out: the database did not answer within 2 s");
            ApiError::Unavailable.into_response()
        }
    }
}

fn json_ok(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn openapi_json(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(state.openapi.as_ref().clone()),
    )
        .into_response()
}

async fn docs() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, DOCS_CSP),
        ],
        DOCS_HTML,
    )
        .into_response()
}

async fn not_found() -> Response {
    ApiError::NotFound("no such route".into()).into_response()
}

/// A client-supplied request id is kept if it is 1–128 visible safe characters.
fn valid_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    ok.then(|| s.to_owned())
}

/// The route template for logs and metrics: low-cardinality, never an id.
fn route_template(state: &AppState, path: &str) -> String {
    match path {
        "/healthz" | "/readyz" | "/v1/openapi.json" | "/docs" => return path.to_owned(),
        _ => {}
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let known = |c: &str| state.store.schema().collection(c).is_some();
    match parts.as_slice() {
        ["v1", c] if known(c) => format!("/v1/{c}"),
        ["v1", c, _] if known(c) => format!("/v1/{c}/{{id}}"),
        ["v1", "auth", "sessions", _] => "/v1/auth/sessions/{id}".to_owned(),
        ["v1", "auth", a] => format!("/v1/auth/{a}"),
        [".well-known", "jwks.json"] => "/.well-known/jwks.json".to_owned(),
        ["v1", "tenants"] => "/v1/tenants".to_owned(),
        ["v1", "tenants", _, sub @ ("members" | "api-keys")] => {
            format!("/v1/tenants/{{tenant}}/{sub}")
        }
        ["v1", "tenants", _, "members", _] => "/v1/tenants/{tenant}/members/{user}".to_owned(),
        ["v1", "tenants", _, "api-keys", _] => "/v1/tenants/{tenant}/api-keys/{id}".to_owned(),
        _ => "unmatched".to_owned(),
    }
}

/// Request id, problem rendering, security headers and the request log line.
async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(valid_request_id)
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        req.headers_mut().insert(REQUEST_ID, v);
    }
    let method = req.method().clone();
    let path = req.uri().path().to_owned();

    let span = tracing::info_span!("request", request_id = %request_id);
    let mut res = tracing::Instrument::instrument(next.run(req), span).await;

    let status = res.status();
    let draft = res.extensions_mut().remove::<ProblemDraft>();
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if draft.is_some() || (status.as_u16() >= 400 && !is_problem) {
        let draft = draft.unwrap_or_else(|| draft_for_status(status));
        let body = problem_body(status, &draft, &path, &request_id);
        let headers = std::mem::take(res.headers_mut());
        let mut new = (
            status,
            Body::from(serde_json::to_vec(&body).unwrap_or_default()),
        )
            .into_response();
        for (name, value) in &headers {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                new.headers_mut().append(name, value.clone());
            }
        }
        new.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        res = new;
    }
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert(REQUEST_ID, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        // The rest of the body was not read: the connection cannot be reused.
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let duration_ms = start.elapsed().as_secs_f64() * 1000.0;
    let route = route_template(&state, &path);
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(method = %method, route = %route, status = status.as_u16(), duration_ms, request_id = %request_id, "request");
    } else {
        tracing::info!(method = %method, route = %route, status = status.as_u16(), duration_ms, request_id = %request_id, "request");
    }
    res
}

/// Installs the SIGTERM/SIGINT handlers now (so a signal that arrives at any
/// moment after this call means "shut down gracefully", never "die") and
/// returns the future that completes on the first of them.
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    })
}

/// Counts the request against its route class's policy (GCRA, shared through
/// the database on PostgreSQL) and answers 429 when it is exhausted. Every
/// limited response carries `RateLimit-Policy` and `RateLimit`
/// (draft-ietf-httpapi-ratelimit-headers-11). Health probes are exempt.
async fn rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path == "/healthz" || path == "/readyz" {
        return next.run(req).await;
    }
    let class = if matches!(*req.method(), Method::GET | Method::HEAD) {
        "read"
    } else {
        "write"
    };
    let Some(policy) = state.config.rate_limits.iter().find(|p| p.name == class) else {
        return next.run(req).await;
    };
    let ip = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string());
    let decision = match state
        .store
        .rate_limit(&format!("{class}:{ip}"), policy)
        .await
    {
        Ok(d) => d,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let mut res = if decision.allowed {
        next.run(req).await
    } else {
        ApiError::TooManyRequests {
            policy: policy.name.clone(),
            retry_after_secs: decision.retry_after_secs,
            limit: None,
        }
        .into_response()
    };
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "\"{}\";q={};w={}",
        policy.name, policy.limit, policy.window_secs
    )) {
        h.insert(HeaderName::from_static("ratelimit-policy"), v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!(
        "\"{}\";r={};t={}",
        policy.name, decision.remaining, decision.reset_secs
    )) {
        h.insert(HeaderName::from_static("ratelimit"), v);
    }
    res
}

/// Counts one request against the policy named `class` for `key`; a 429
/// (with `Retry-After`) when it is exhausted. No such policy: no limit.
pub(crate) async fn rate_limited(state: &AppState, class: &str, key: &str) -> Result<(), ApiError> {
    let Some(policy) = state.config.rate_limits.iter().find(|p| p.name == class) else {
        return Ok(());
    };
    let d = state
        .store
        .rate_limit(&format!("{class}:{key}"), policy)
        .await?;
    if d.allowed {
        Ok(())
    } else {
        Err(ApiError::TooManyRequests {
            policy: policy.name.clone(),
            retry_after_secs: d.retry_after_secs,
            limit: Some((
                policy.limit,
                policy.window_secs,
                u64::from(d.remaining),
                d.reset_secs,
            )),
        })
    }
}

/// Serves until `shutdown` completes, then stops accepting connections and
/// lets in-flight requests finish for up to `drain`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutdown signal received; draining in-flight requests");
        let _ = tx.send(());
    });
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        res = &mut server => res,
        () = async {
            if rx.await.is_ok() {
                tokio::time::sleep(drain).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!(drain_secs = drain.as_secs(), "in-flight requests did not finish in time; exiting");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        let ok = HeaderValue::from_static("abc-123_x.y");
        assert_eq!(valid_request_id(&ok).as_deref(), Some("abc-123_x.y"));
        assert!(valid_request_id(&HeaderValue::from_static("has space")).is_none());
        assert!(valid_request_id(&HeaderValue::from_static("")).is_none());
        let long = HeaderValue::from_str(&"a".repeat(129)).expect("header");
        assert!(valid_request_id(&long).is_none());
    }

    #[test]
    fn cors_origins_are_exact() {
        assert!(cors_layer(&["https://app.example.com".into()]).is_ok());
        for bad in [
            "*",
            "https://*.example.com",
            "app.example.com",
            "https://a.com/",
            "https://",
        ] {
            assert!(cors_layer(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
