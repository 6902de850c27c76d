//! The HTTP error enum and its RFC 9457 rendering.
//!
//! Handlers return [`ApiError`]; its response carries a [`ProblemDraft`]
//! extension and no body. The `observe` middleware renders every draft (and
//! any other 4xx/5xx that has no problem body, e.g. from axum's routing) into
//! `application/problem+json` with the request id and path, so no error can
//! leave without the same shape.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};

use plinth_contract::{FieldError, PROBLEMS, problem_type};
use plinth_store::StoreError;

#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    NotFound(String),
    Conflict {
        detail: String,
        errors: Vec<FieldError>,
    },
    PayloadTooLarge(usize),
    UnsupportedMediaType(String),
    Validation(Vec<FieldError>),
    PreconditionFailed(String),
    TooManyRequests {
        policy: String,
        retry_after_secs: u64,
        /// (limit, window, remaining, reset) for the RateLimit headers, when
        /// the caller did not add them itself.
        limit: Option<(u32, u32, u64, u64)>,
    },
    /// 401 with its `WWW-Authenticate` challenge.
    Unauthorized {
        detail: String,
        challenge: String,
    },
    Forbidden(String),
    Unavailable,
    Internal,
}

/// What the middleware needs to render a problem body.
#[derive(Debug, Clone)]
pub struct ProblemDraft {
    pub slug: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
}

impl ApiError {
    fn draft(self) -> (StatusCode, ProblemDraft) {
        let d = |slug, detail: String| ProblemDraft {
            slug,
            detail,
            errors: Vec::new(),
        };
        match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, d("bad-request", m)),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, d("not-found", m)),
            ApiError::Conflict { detail, errors } => (
                StatusCode::CONFLICT,
                ProblemDraft {
                    slug: "conflict",
                    detail,
                    errors,
                },
            ),
            ApiError::PayloadTooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                d(
                    "payload-too-large",
                    format!("the request body is larger than the limit of {limit} bytes"),
                ),
            ),
            ApiError::UnsupportedMediaType(m) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                d("unsupported-media-type", m),
            ),
            ApiError::Validation(errors) => {
                let n = errors.len();
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    ProblemDraft {
                        slug: "validation",
                        detail: format!(
                            "{n} field{} invalid: {}",
                            if n == 1 { " is" } else { "s are" },
                            errors
                                .iter()
                                .map(|e| if e.field.is_empty() {
                                    e.message.clone()
                                } else {
                                    format!("{} {}", e.field, e.message)
                                })
                                .collect::<Vec<_>>()
                                .join("; ")
                        ),
                        errors,
                    },
                )
            }
            ApiError::PreconditionFailed(m) => {
                (StatusCode::PRECONDITION_FAILED, d("precondition-failed", m))
            }
            ApiError::TooManyRequests {
                policy,
                retry_after_secs,
                ..
            } => (
                StatusCode::TOO_MANY_REQUESTS,
                d(
                    "too-many-requests",
                    format!(
                        "the `{policy}` rate limit is exhausted; retry in {retry_after_secs} s"
                    ),
                ),
            ),
            ApiError::Unauthorized { detail, .. } => {
                (StatusCode::UNAUTHORIZED, d("unauthorized", detail))
            }
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, d("forbidden", m)),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                d(
                    "unavailable",
                    "the database is not available; retry later".into(),
                ),
            ),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                d(
                    "internal",
                    "an unexpected error occurred; the request id identifies it in the server logs"
                        .into(),
                ),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut extra: Vec<(axum::http::HeaderName, axum::http::HeaderValue)> = Vec::new();
        match &self {
            ApiError::TooManyRequests {
                retry_after_secs,
                policy,
                limit,
            } => {
                extra.push((axum::http::header::RETRY_AFTER, (*retry_after_secs).into()));
                if let Some((q, w, r, t)) = limit {
                    if let Ok(v) = format!("\"{policy}\";q={q};w={w}").parse() {
                        extra.push((axum::http::HeaderName::from_static("ratelimit-policy"), v));
                    }
                    if let Ok(v) = format!("\"{policy}\";r={r};t={t}").parse() {
                        extra.push((axum::http::HeaderName::from_static("ratelimit"), v));
                    }
                }
            }
            ApiError::Unauthorized { challenge, .. } => {
                extra.push((
                    axum::http::header::WWW_AUTHENTICATE,
                    crate::auth::challenge_value(challenge),
                ));
            }
            _ => {}
        }
        let (status, draft) = self.draft();
        let mut r = status.into_response();
        for (k, v) in extra {
            r.headers_mut().insert(k, v);
        }
        r.extensions_mut().insert(draft);
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound => ApiError::NotFound("no record with this id".into()),
            StoreError::UnknownCollection(c) => ApiError::NotFound(format!("no collection `{c}`")),
            StoreError::TenantRequired(c) => ApiError::BadRequest(format!(
                "`{c}` is tenant-scoped: name the tenant with the X-Plinth-Tenant header"
            )),
            StoreError::UnknownTenant => {
                ApiError::NotFound("no tenant with this id (X-Plinth-Tenant)".into())
            }
            StoreError::Forbidden => ApiError::Forbidden(
                "the permission rule does not allow a record with these values".into(),
            ),
            StoreError::Unique { fields } => ApiError::Conflict {
                detail: format!(
                    "another record already has this value of {}",
                    fields
                        .iter()
                        .map(|f| format!("`{f}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                errors: fields
                    .into_iter()
                    .map(|f| FieldError {
                        field: f,
                        code: "unique",
                        message: "is already taken by another record".into(),
                    })
                    .collect(),
            },
            StoreError::RelationNotFound { field } => ApiError::Validation(vec![FieldError {
                field,
                code: "relation_not_found",
                message: "refers to a record that does not exist".into(),
            }]),
            StoreError::Referenced { collection, field } => ApiError::Conflict {
                detail: format!(
                    "the record is still referred to by `{collection}.{field}`; delete or change those records first"
                ),
                errors: Vec::new(),
            },
            StoreError::VersionMismatch => ApiError::Conflict {
                detail: "the record was changed concurrently; retry".into(),
                errors: Vec::new(),
            },
            StoreError::Unavailable(msg) | StoreError::Locked(msg) => {
                tracing::warn!(error = %msg, "database unavailable");
                ApiError::Unavailable
            }
            StoreError::Internal(msg) => {
                tracing::error!(error = %msg, "store error");
                ApiError::Internal
            }
        }
    }
}

/// The problem slug and generic detail for a bare status (routing errors etc.).
pub fn draft_for_status(status: StatusCode) -> ProblemDraft {
    let slug = PROBLEMS
        .iter()
        .find(|(_, s, ..)| *s == status.as_u16())
        .map_or(
            if status.is_server_error() {
                "internal"
            } else {
                "bad-request"
            },
            |(slug, ..)| *slug,
        );
    let detail = match slug {
        "not-found" => "no such route".to_owned(),
        "method-not-allowed" => "this route does not support the method".to_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    ProblemDraft {
        slug,
        detail,
        errors: Vec::new(),
    }
}

/// The RFC 9457 body.
pub fn problem_body(
    status: StatusCode,
    draft: &ProblemDraft,
    instance: &str,
    request_id: &str,
) -> Json {
    let title = PROBLEMS
        .iter()
        .find(|(s, ..)| *s == draft.slug)
        .map_or("Error", |(_, _, t, _)| *t);
    let mut body = json!({
        "type": problem_type(draft.slug),
        "title": title,
        "status": status.as_u16(),
        "detail": draft.detail,
        "instance": instance,
        "request_id": request_id,
    });
    if !draft.errors.is_empty() {
        body["errors"] = draft
            .errors
            .iter()
            .map(|e| json!({"field": e.field, "code": e.code, "message": e.message}))
            .collect();
    }
    body
}
