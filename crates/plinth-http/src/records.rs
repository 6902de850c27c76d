//! `/v1/{collection}` and `/v1/{collection}/{id}`.

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};

use plinth_contract::{RecordBody, record_json};
use plinth_domain::{Action, Collection, Value, filter, sort};
use plinth_store::StoreError;

use crate::auth::{Principal, authorize, sign_in_required};
use crate::error::ApiError;
use crate::{AppState, cursor};

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

fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// The deprecation a response should announce: the collection's, else the
/// earliest of the deprecated fields the response carries.
fn deprecation_of(
    c: &Collection,
    carries: impl Fn(&str) -> bool,
) -> Option<&plinth_domain::Deprecation> {
    c.deprecation.as_ref().or_else(|| {
        c.fields
            .iter()
            .filter(|f| carries(&f.name))
            .filter_map(|f| f.deprecation.as_ref())
            .min_by(|a, b| a.since.cmp(&b.since))
    })
}

/// `Deprecation` (RFC 9745), `Sunset` (RFC 8594) and a `Link` to the docs.
fn announce(mut r: Response, d: Option<&plinth_domain::Deprecation>) -> Response {
    let Some(d) = d else { return r };
    let h = r.headers_mut();
    if let Some(t) = plinth_domain::value::date_unix(&d.since)
        && let Ok(v) = format!("@{t}").parse()
    {
        h.insert("deprecation", v);
    }
    if let Some(t) = d
        .sunset
        .as_deref()
        .and_then(plinth_domain::value::date_unix)
        .and_then(|t| u64::try_from(t).ok())
    {
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t);
        if let Ok(v) = httpdate::fmt_http_date(when).parse() {
            h.insert("sunset", v);
        }
    }
    h.insert(
        header::LINK,
        header::HeaderValue::from_static("</docs>; rel=\"deprecation\"; type=\"text/html\""),
    );
    r
}

/// A record response with its ETag.
fn record_response(status: StatusCode, record: &plinth_domain::Record) -> Response {
    with_etag(json_response(status, &RecordBody(record)), record)
}

/// A list page serialized without intermediate JSON values.
#[derive(serde::Serialize)]
struct PageBody<'a> {
    items: Vec<RecordBody<'a>>,
    next_cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
}

/// Requires a JSON media type: `application/json`, or any `+json` type the
/// route accepts (PATCH takes `application/merge-patch+json`).
pub(crate) fn require_json(headers: &HeaderMap, allow_merge_patch: bool) -> Result<(), ApiError> {
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
pub(crate) async fn read_json(body: Body, limit: usize) -> Result<Json, ApiError> {
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

/// The parameters of `GET /v1/{collection}`.
#[derive(Debug, Default, PartialEq)]
struct ListParams {
    limit: Option<String>,
    filter: Option<String>,
    sort: Option<String>,
    cursor: Option<String>,
    fields: Option<String>,
    expand: Option<String>,
    total: Option<String>,
}

const LIST_PARAMS: &str = "limit, filter, sort, cursor, fields, expand, total";

fn parse_list_params(query: Option<&str>) -> Result<ListParams, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|_| ApiError::BadRequest("the query string is malformed".into()))?;
    let mut p = ListParams::default();
    for (k, v) in pairs {
        let slot = match k.as_str() {
            "limit" => &mut p.limit,
            "filter" => &mut p.filter,
            "sort" => &mut p.sort,
            "cursor" => &mut p.cursor,
            "fields" => &mut p.fields,
            "expand" => &mut p.expand,
            "total" => &mut p.total,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter `{other}`; this route takes {LIST_PARAMS}"
                )));
            }
        };
        if slot.is_some() {
            return Err(ApiError::BadRequest(format!(
                "`{k}` is given more than once"
            )));
        }
        *slot = Some(v);
    }
    Ok(p)
}

/// `limit`: 1..=200, default 20.
fn parse_limit(v: Option<&str>) -> Result<u32, ApiError> {
    let Some(v) = v else { return Ok(20) };
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
    Ok(n)
}

fn parse_bool(name: &str, v: Option<&str>) -> Result<bool, ApiError> {
    match v {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::BadRequest(format!(
            "`{name}` must be true or false, not {other:?}"
        ))),
    }
}

/// A comma-separated list of names, each checked by `check`.
fn name_list(
    name: &str,
    v: Option<&str>,
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<Option<Vec<String>>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    let mut out: Vec<String> = Vec::new();
    for part in v.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(ApiError::BadRequest(format!("`{name}` has an empty entry")));
        }
        check(part).map_err(|m| ApiError::BadRequest(format!("`{name}`: {m}")))?;
        if !out.iter().any(|x| x == part) {
            out.push(part.to_owned());
        }
    }
    Ok(Some(out))
}

fn query_error(param: &str, e: &plinth_domain::filter::FilterError) -> ApiError {
    ApiError::BadRequest(format!(
        "`{param}` at position {}: {}",
        e.position, e.message
    ))
}

pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(coll): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let c = collection(&state, &coll)?;
    let access = authorize(&state, &principal, c, Action::List)?;
    let p = parse_list_params(query.as_deref())?;
    let limit = parse_limit(p.limit.as_deref())?;
    let total = parse_bool("total", p.total.as_deref())?;
    let filter = match p.filter.as_deref().filter(|f| !f.trim().is_empty()) {
        None => None,
        Some(text) => {
            let expr = filter::parse_filter(text).map_err(|e| query_error("filter", &e))?;
            Some(filter::check_filter(c, &expr).map_err(|e| query_error("filter", &e))?)
        }
    };
    let sort = sort::parse_sort(c, p.sort.as_deref().unwrap_or(""))
        .map_err(|e| query_error("sort", &e))?;
    let fields = name_list("fields", p.fields.as_deref(), |f| {
        if filter::field_type(c, f).is_some() {
            Ok(())
        } else {
            Err(format!("`{}` has no field `{f}`", c.name))
        }
    })?;
    let expand = name_list("expand", p.expand.as_deref(), |f| match c.field(f) {
        Some(field) if field.collection.as_deref() == Some(plinth_domain::schema::USERS) => Err(
            format!("`{f}` relates to user accounts, which cannot be expanded"),
        ),
        Some(field) if field.collection.is_some() => Ok(()),
        Some(_) => Err(format!("`{f}` is not a relation field")),
        None => Err(format!("`{}` has no field `{f}`", c.name)),
    })?;
    // The cursor is bound to the collection, filter and sort it came from.
    let filter_text = p.filter.as_deref().map(str::trim).unwrap_or("");
    let qhash = cursor::query_hash(&c.name, filter_text, &sort);
    let after = match p.cursor.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(token) => Some(cursor::decode(&state.cursor_secret, &qhash, &sort, token).map_err(|e| {
            ApiError::BadRequest(match e {
                cursor::CursorError::Malformed => "`cursor` is not a cursor this server issued".into(),
                cursor::CursorError::OtherQuery => {
                    "`cursor` belongs to another filter or sort; send the same filter and sort as the request that returned it".into()
                }
            })
        })?),
    };
    let page = state
        .store
        .list(
            &c.name,
            &access,
            plinth_store::ListQuery {
                filter,
                sort: sort.clone(),
                after,
                limit,
                total,
            },
        )
        .await?;
    let next_cursor = match (page.more, page.records.last()) {
        (true, Some(last)) => Some(cursor::encode(
            &state.cursor_secret,
            &qhash,
            &sort.key_of(last),
        )),
        _ => None,
    };
    // The page's own fields, then the records inlined by `expand`.
    let deprecated = deprecation_of(c, |f| {
        fields
            .as_ref()
            .is_none_or(|list| list.iter().any(|x| x == f))
    })
    .or_else(|| {
        expand.iter().flatten().find_map(|rel| {
            let target = c.field(rel)?.collection.as_deref()?;
            deprecation_of(state.store.schema().collection(target)?, |_| true)
        })
    })
    .cloned();
    let deprecated = deprecated.as_ref();
    if fields.is_none() && expand.is_none() {
        let body = PageBody {
            items: page.records.iter().map(RecordBody).collect(),
            next_cursor,
            total: page.total,
        };
        return Ok(announce(json_response(StatusCode::OK, &body), deprecated));
    }
    let mut items: Vec<Json> = page.records.iter().map(record_json).collect();
    if let Some(expand) = &expand {
        expand_relations(&state, &principal, c, &page.records, expand, &mut items).await?;
    }
    if let Some(fields) = &fields {
        for item in &mut items {
            if let Json::Object(m) = item {
                m.retain(|k, _| k == "expand" || fields.iter().any(|f| f == k));
            }
        }
    }
    let mut body = json!({ "items": items, "next_cursor": next_cursor });
    if let Some(t) = page.total {
        body["total"] = json!(t);
    }
    Ok(announce(json_response(StatusCode::OK, &body), deprecated))
}

/// Adds `"expand": {"<field>": <record>}` to each item (one query per field).
async fn expand_relations(
    state: &AppState,
    principal: &Principal,
    c: &Collection,
    records: &[plinth_domain::Record],
    fields: &[String],
    items: &mut [Json],
) -> Result<(), ApiError> {
    for name in fields {
        let Some(target) = c.field(name).and_then(|f| f.collection.clone()) else {
            continue;
        };
        let mut ids: Vec<String> = records
            .iter()
            .filter_map(|r| r.get(name).and_then(|v| v.as_str()).map(str::to_owned))
            .collect();
        ids.sort();
        ids.dedup();
        // Related records are read as the caller may read them: another
        // tenant's, or ones the target's read rule hides, are never inlined.
        let Some(tc) = state.store.schema().collection(&target) else {
            continue;
        };
        let Ok(access) = authorize(state, principal, tc, Action::Read) else {
            continue;
        };
        let related = state.store.get_many(&target, &access, ids).await?;
        for (record, item) in records.iter().zip(items.iter_mut()) {
            let Some(id) = record.get(name).and_then(|v| v.as_str()) else {
                continue;
            };
            if let Some(r) = related.iter().find(|r| r.id == id)
                && let Json::Object(m) = item
            {
                let e = m.entry("expand").or_insert_with(|| json!({}));
                e[name.as_str()] = record_json(r);
            }
        }
    }
    Ok(())
}

pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(coll): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let c = collection(&state, &coll)?;
    let access = authorize(&state, &principal, c, Action::Create)?;
    require_json(&headers, false)?;
    let input = read_json(body, state.config.max_body_bytes).await?;
    let mut fields = state
        .contract
        .validate_create(c, &input)
        .map_err(ApiError::Validation)?;
    // Owner fields take the signed-in user, whatever the body said (the
    // contract refuses them in bodies anyway).
    for f in c.fields.iter().filter(|f| f.server_set()) {
        let owner = principal.user_id().map(|u| Value::Text(u.to_owned()));
        if f.required && owner.is_none() {
            return Err(if principal.is_anonymous() {
                sign_in_required(format!(
                    "`{}` records record their creator in `{}`: sign in as a user",
                    c.name, f.name
                ))
            } else {
                ApiError::Forbidden(format!(
                    "`{}` records record their creator in `{}`; an API key is not a user",
                    c.name, f.name
                ))
            });
        }
        if let Some(slot) = fields.iter_mut().find(|(n, _)| *n == f.name) {
            slot.1 = owner.unwrap_or(Value::Null);
        }
    }
    let record = state.store.insert(&c.name, &access, fields).await?;
    let mut r = announce(
        record_response(StatusCode::CREATED, &record),
        deprecation_of(c, |_| true),
    );
    if let Ok(loc) = format!("/v1/{}/{}", c.name, record.id).parse() {
        r.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(r)
}

/// Splits an entity-tag list (`*`, or `"a", W/"b,c"`); commas may appear
/// inside a quoted tag. `None` if the text is not such a list.
fn parse_entity_tags(s: &str) -> Option<Vec<String>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && (b[i] == b',' || b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if i == b.len() {
            return Some(out);
        }
        let start = i;
        if b[i] == b'*' {
            i += 1;
        } else {
            if b[i..].starts_with(b"W/") {
                i += 2;
            }
            if b.get(i) != Some(&b'"') {
                return None;
            }
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if !(b[i] == 0x21 || (0x23..=0x7e).contains(&b[i])) {
                    return None;
                }
                i += 1;
            }
            if i == b.len() {
                return None;
            }
            i += 1;
        }
        out.push(s.get(start..i)?.to_owned());
        // After a tag: only whitespace, then a comma or the end.
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if i < b.len() && b[i] != b',' {
            return None;
        }
    }
}

/// The entity tags of a conditional header (RFC 9110 §8.8.3, §13.1.1);
/// `None` when the header is absent. A malformed value is kept as one tag
/// that can never match: a malformed If-Match therefore fails (412) and a
/// malformed If-None-Match never prevents anything, so neither is silently
/// turned into an unconditional write.
fn entity_tags(headers: &HeaderMap, name: header::HeaderName) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut seen = false;
    for v in headers.get_all(&name) {
        seen = true;
        match v.to_str().ok().and_then(parse_entity_tags) {
            Some(tags) => out.extend(tags),
            None => out.push(String::from("\u{0}malformed")),
        }
    }
    seen.then_some(out)
}

/// If-Match uses strong comparison: weak tags never match (RFC 9110 §13.1.1).
fn if_match_holds(tags: &[String], etag: &str) -> bool {
    tags.iter().any(|t| t == "*" || t == etag)
}

/// If-None-Match uses weak comparison (RFC 9110 §13.1.2).
fn if_none_match_matches(tags: &[String], etag: &str) -> bool {
    tags.iter()
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

fn with_etag(mut r: Response, record: &plinth_domain::Record) -> Response {
    if let Ok(v) = record.etag().parse() {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// Checks If-Match / If-None-Match of an unsafe request against the current
/// record (RFC 9110 §13.2.2); on success returns the version the write must
/// still find, if the client made it conditional.
fn preconditions(
    headers: &HeaderMap,
    current: &plinth_domain::Record,
) -> Result<Option<i64>, ApiError> {
    let etag = current.etag();
    let mut conditional = false;
    if let Some(tags) = entity_tags(headers, header::IF_MATCH) {
        if !if_match_holds(&tags, &etag) {
            return Err(ApiError::PreconditionFailed(format!(
                "If-Match does not match the record's current ETag {etag}; fetch it again and retry"
            )));
        }
        conditional = true;
    }
    if let Some(tags) = entity_tags(headers, header::IF_NONE_MATCH) {
        if if_none_match_matches(&tags, &etag) {
            return Err(ApiError::PreconditionFailed(
                "If-None-Match matches the record's current ETag".into(),
            ));
        }
        conditional = true;
    }
    Ok(conditional.then_some(current.version))
}

/// A conditional delete lost a race with another write.
fn changed_since() -> ApiError {
    ApiError::PreconditionFailed(
        "the record changed since the precondition was checked; fetch it again and retry".into(),
    )
}

pub async fn get(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((coll, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let c = collection(&state, &coll)?;
    let access = authorize(&state, &principal, c, Action::Read)?;
    let id = record_id(&id)?;
    let record = state.store.get(&c.name, &access, &id).await?;
    if let Some(tags) = entity_tags(&headers, header::IF_MATCH)
        && !if_match_holds(&tags, &record.etag())
    {
        return Err(ApiError::PreconditionFailed(
            "If-Match does not match the record's current ETag".into(),
        ));
    }
    if let Some(tags) = entity_tags(&headers, header::IF_NONE_MATCH)
        && if_none_match_matches(&tags, &record.etag())
    {
        return Ok(with_etag(StatusCode::NOT_MODIFIED.into_response(), &record));
    }
    Ok(announce(
        record_response(StatusCode::OK, &record),
        deprecation_of(c, |_| true),
    ))
}

pub async fn patch(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((coll, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let c = collection(&state, &coll)?.clone();
    let access = authorize(&state, &principal, &c, Action::Update)?;
    let id = record_id(&id)?;
    require_json(&headers, true)?;
    let patch = read_json(body, state.config.max_body_bytes).await?;
    let contract = state.contract.clone();
    let name = c.name.clone();
    // Preconditions and the merge run inside the write transaction, against
    // the record as it is at that moment.
    let outcome = state
        .store
        .modify(&name, &access, &id, move |current| {
            preconditions(&headers, current)?;
            contract
                .apply_patch(&c, current, &patch)
                .map_err(ApiError::Validation)
        })
        .await?;
    let record = outcome?;
    let deprecated = state
        .store
        .schema()
        .collection(&name)
        .and_then(|c| deprecation_of(c, |_| true).cloned());
    Ok(announce(
        record_response(StatusCode::OK, &record),
        deprecated.as_ref(),
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((coll, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let c = collection(&state, &coll)?;
    let access = authorize(&state, &principal, c, Action::Delete)?;
    let id = record_id(&id)?;
    let expected =
        if headers.contains_key(header::IF_MATCH) || headers.contains_key(header::IF_NONE_MATCH) {
            let current = state.store.get(&c.name, &access, &id).await?;
            preconditions(&headers, &current)?
        } else {
            None
        };
    match state.store.delete(&c.name, &access, &id, expected).await {
        Ok(()) => Ok(announce(
            StatusCode::NO_CONTENT.into_response(),
            c.deprecation.as_ref(),
        )),
        Err(StoreError::VersionMismatch) => Err(changed_since()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_parsing() {
        assert_eq!(parse_limit(None).ok(), Some(20));
        assert_eq!(parse_limit(Some("200")).ok(), Some(200));
        for bad in ["0", "201", "abc", "-1", ""] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn entity_tag_lists() {
        let p = |s: &str| parse_entity_tags(s);
        assert_eq!(p("*"), Some(vec!["*".into()]));
        assert_eq!(
            p(r#""a", W/"b,c" ,"""#),
            Some(vec![r#""a""#.into(), r#"W/"b,c""#.into(), r#""""#.into()])
        );
        assert_eq!(p(" \t"), Some(vec![]));
        for bad in [
            "a",
            r#""a"#,
            r#""a" "b""#,
            r#"W/a"#,
            "\"a\u{7f}\"",
            r#""a"x"#,
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }

    #[test]
    fn list_params() {
        let p =
            parse_list_params(Some("limit=5&filter=views%20%3E%201&sort=-title")).expect("valid");
        assert_eq!(p.limit.as_deref(), Some("5"));
        assert_eq!(p.filter.as_deref(), Some("views > 1"));
        assert!(parse_list_params(Some("fitler=x")).is_err());
        assert!(parse_list_params(Some("limit=1&limit=2")).is_err());
    }
}
