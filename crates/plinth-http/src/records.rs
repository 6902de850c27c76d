//! `/v1/{collection}` and `/v1/{collection}/{id}`.

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};

use plinth_contract::record_json;
use plinth_domain::Collection;
use plinth_store::StoreError;

use crate::AppState;
use crate::error::ApiError;

type ApiResult = Result<Response, ApiError>;

fn collection<'a>(state: &'a AppState, name: &str) -> Result<&'a Collection, ApiError> {
    state
        .store
        .schema()
        .collection(name)
        .ok_or_else(|| ApiError::NotFound(format!("no collection `{name}`")))
}

/// Ids are UUIDs; anything else cannot exist. Compared in lowercase.
fn record_id(raw: &str) -> Result<String, ApiError> {
    if plinth_domain::value::is_valid_id(raw) {
        Ok(raw.to_ascii_lowercase())
    } else {
        Err(ApiError::NotFound("no record with this id".into()))
    }
}

fn json_response(status: StatusCode, body: &Json) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// Requires a JSON media type: `application/json`, or any `+json` type the
/// route accepts (PATCH takes `application/merge-patch+json`).
fn require_json(headers: &HeaderMap, allow_merge_patch: bool) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let ok = essence == "application/json"
        || (allow_merge_patch && essence == "application/merge-patch+json");
    if ok {
        Ok(())
    } else if ct.is_empty() {
        Err(ApiError::UnsupportedMediaType(
            "the request needs a Content-Type: application/json body".into(),
        ))
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "expected application/json{}, not {essence}",
            if allow_merge_patch {
                " or application/merge-patch+json"
            } else {
                ""
            }
        )))
    }
}

/// Reads at most `limit` bytes and parses them as JSON.
async fn read_json(body: Body, limit: usize) -> Result<Json, ApiError> {
    let bytes: Bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut source: Option<&dyn std::error::Error> = Some(&e);
        while let Some(s) = source {
            if s.is::<http_body_util::LengthLimitError>() {
                return ApiError::PayloadTooLarge(limit);
            }
            source = s.source();
        }
        ApiError::BadRequest("the request body could not be read".into())
    })?;
    if bytes.is_empty() {
        return Err(ApiError::BadRequest(
            "the request body is empty; send a JSON object".into(),
        ));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))
}

/// `limit` query parameter: 1..=200, default 20. Other parameters are ignored.
fn parse_limit(query: Option<&str>) -> Result<u32, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|_| ApiError::BadRequest("the query string is malformed".into()))?;
    let mut limit = None;
    for (k, v) in pairs {
        if k == "limit" {
            if limit.is_some() {
                return Err(ApiError::BadRequest(
                    "`limit` is given more than once".into(),
                ));
            }
            let n: u32 = v.parse().map_err(|_| {
                ApiError::BadRequest(format!(
                    "`limit` must be an integer from 1 to 200, not {v:?}"
                ))
            })?;
            if !(1..=200).contains(&n) {
                return Err(ApiError::BadRequest(format!(
                    "`limit` must be from 1 to 200, not {n}"
                )));
            }
            limit = Some(n);
        }
    }
    Ok(limit.unwrap_or(20))
}

pub async fn list(
    State(state): State<AppState>,
    Path(coll): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let c = collection(&state, &coll)?;
    let limit = parse_limit(query.as_deref())?;
    let query = plinth_store::ListQuery {
        filter: None,
        sort: plinth_domain::sort::Sort::newest_first(),
        after: None,
        limit,
        total: false,
    };
    let page = state.store.list(&c.name, query).await?;
    let items: Vec<Json> = page.records.iter().map(record_json).collect();
    Ok(json_response(StatusCode::OK, &json!({ "items": items })))
}

pub async fn create(
    State(state): State<AppState>,
    Path(coll): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let c = collection(&state, &coll)?;
    require_json(&headers, false)?;
    let input = read_json(body, state.config.max_body_bytes).await?;
    let fields = state
        .contract
        .validate_create(c, &input)
        .map_err(ApiError::Validation)?;
    let record = state.store.insert(&c.name, fields).await?;
    let mut r = json_response(StatusCode::CREATED, &record_json(&record));
    if let Ok(loc) = format!("/v1/{}/{}", c.name, record.id).parse() {
        r.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(r)
}

pub async fn get(
    State(state): State<AppState>,
    Path((coll, id)): Path<(String, String)>,
) -> ApiResult {
    let c = collection(&state, &coll)?;
    let id = record_id(&id)?;
    let record = state.store.get(&c.name, &id).await?;
    Ok(json_response(StatusCode::OK, &record_json(&record)))
}

/// How often a merge patch is retried when a concurrent write wins the race.
const PATCH_ATTEMPTS: usize = 5;

pub async fn patch(
    State(state): State<AppState>,
    Path((coll, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let c = collection(&state, &coll)?;
    let id = record_id(&id)?;
    require_json(&headers, true)?;
    let patch = read_json(body, state.config.max_body_bytes).await?;
    for _ in 0..PATCH_ATTEMPTS {
        let current = state.store.get(&c.name, &id).await?;
        let changes = state
            .contract
            .apply_patch(c, &current, &patch)
            .map_err(ApiError::Validation)?;
        if changes.is_empty() {
            // An empty merge patch changes nothing (RFC 7396).
            return Ok(json_response(StatusCode::OK, &record_json(&current)));
        }
        match state
            .store
            .update(&c.name, &id, changes, current.version)
            .await
        {
            Ok(record) => return Ok(json_response(StatusCode::OK, &record_json(&record))),
            Err(StoreError::VersionMismatch) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::VersionMismatch.into())
}

pub async fn delete(
    State(state): State<AppState>,
    Path((coll, id)): Path<(String, String)>,
) -> ApiResult {
    let c = collection(&state, &coll)?;
    let id = record_id(&id)?;
    state.store.delete(&c.name, &id, None).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_parsing() {
        assert_eq!(parse_limit(None).ok(), Some(20));
        assert_eq!(parse_limit(Some("limit=200")).ok(), Some(200));
        assert_eq!(parse_limit(Some("other=x&limit=1")).ok(), Some(1));
        for bad in [
            "limit=0",
            "limit=201",
            "limit=abc",
            "limit=-1",
            "limit=1&limit=2",
            "limit=",
        ] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad}");
        }
    }
}
